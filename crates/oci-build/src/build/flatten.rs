//! Merging an image's layers into one tar with whiteouts applied, so that the one layer
//! unpacks to the tree the image's layers unpack to.
//!
//! Two passes over the layers, streaming both:
//! 1. top layer first, headers only: which layer gives each path its final entry. A path is
//!    hidden from the layers below one that deletes it (`.wh.NAME`), replaces a parent of it
//!    with a non-directory, or marks a parent opaque (`.wh..wh..opq`, wherever it stands in
//!    that layer); a layer's own whiteouts never hide its own entries.
//! 2. lowest layer first: every entry that is its path's final one is written, with its data,
//!    so a directory still comes before what it holds.
//!
//! A hard link whose target is deleted or replaced above it would point at the wrong file (or
//! none) in the merged tar: it becomes a regular file with the content its target had in the
//! link's layer, written after the rest (a third pass reads the layers those contents are in).

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};

use tar::{EntryType, Header};

use super::layer::LayerOpener;
use super::tarball::{PaxRecords, WHITEOUT_PREFIX};
use crate::error::{Error, Result};

/// The name of the entry that makes its directory opaque.
const OPAQUE: &[u8] = b".wh..wh..opq";

/// Where a path's final entry is.
#[derive(Debug, Clone, Copy)]
struct Final {
    layer: usize,
    directory: bool,
}

/// Hard links whose target is gone or replaced above them: by (the layer that holds the
/// target's content, the target), the links' paths and headers.
type Orphans = HashMap<(usize, Vec<u8>), Vec<(Vec<u8>, Header)>>;

/// What pass 1 learns.
#[derive(Debug, Default)]
struct Plan {
    finals: HashMap<Vec<u8>, Final>,
    /// Paths deleted by a whiteout of a layer above the one being read.
    deleted: HashSet<Vec<u8>>,
    /// Directories made opaque by a layer above the one being read.
    opaque: HashSet<Vec<u8>>,
}

impl Plan {
    /// Whether an entry for `path` in a lower layer is hidden by what the layers above did.
    fn hidden(&self, path: &[u8]) -> bool {
        if self.deleted.contains(path) {
            return true;
        }
        let mut end = path.len();
        while let Some(slash) = path[..end].iter().rposition(|b| *b == b'/') {
            let parent = &path[..slash];
            if self.deleted.contains(parent) || self.opaque.contains(parent) {
                return true;
            }
            if self.finals.get(parent).is_some_and(|f| !f.directory) {
                return true;
            }
            end = slash;
        }
        false
    }
}

/// Writes the merged tar of the opener's layers into `out`.
pub(crate) fn flatten_layers(out: &mut dyn Write, opener: &mut LayerOpener) -> Result<()> {
    let count = opener.count();
    let mut plan = Plan::default();
    for index in (0..count).rev() {
        let mut reader = opener.open(index)?;
        let mut deleted = Vec::new();
        let mut opaque = Vec::new();
        {
            let mut archive = tar::Archive::new(&mut reader);
            let entries = archive.entries().map_err(|e| tar_error(index, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| tar_error(index, e))?;
                let path = clean_path(&entry.path_bytes(), index)?;
                if path.is_empty() {
                    continue;
                }
                let (parent, name) = split(&path);
                if name == OPAQUE {
                    opaque.push(parent.to_vec());
                    continue;
                }
                if let Some(deleted_name) = name.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
                    deleted.push(join(parent, deleted_name));
                    continue;
                }
                if plan.finals.contains_key(&path) || plan.hidden(&path) {
                    continue;
                }
                let directory = entry.header().entry_type() == EntryType::Directory;
                plan.finals.insert(
                    path,
                    Final {
                        layer: index,
                        directory,
                    },
                );
            }
        }
        reader
            .finish()
            .map_err(|e| Error::store(format!("reading layer {index}"), e))?;
        plan.deleted.extend(deleted);
        plan.opaque.extend(opaque);
    }

    let mut builder = tar::Builder::new(out);
    let mut orphans: Orphans = HashMap::new();
    // Which layer holds each path's content as the layers are applied in order.
    let mut current: HashMap<Vec<u8>, usize> = HashMap::new();
    for index in 0..count {
        let mut reader = opener.open(index)?;
        {
            let mut archive = tar::Archive::new(&mut reader);
            for entry in archive.entries().map_err(|e| tar_error(index, e))? {
                let mut entry = entry.map_err(|e| tar_error(index, e))?;
                let path = clean_path(&entry.path_bytes(), index)?;
                if path.is_empty() || split(&path).1.starts_with(WHITEOUT_PREFIX.as_bytes()) {
                    continue;
                }
                current.insert(path.clone(), index);
                let is_final = plan.finals.get(&path).is_some_and(|f| f.layer == index);
                if !is_final {
                    continue;
                }
                if entry.header().entry_type() == EntryType::Link {
                    let target = entry
                        .link_name_bytes()
                        .map(|t| clean_path(&t, index))
                        .transpose()?
                        .unwrap_or_default();
                    let target_final = plan.finals.get(&target).map(|f| f.layer);
                    if target_final.is_none_or(|layer| layer > index) {
                        let holder = current.get(&target).copied().ok_or_else(|| {
                            Error::invalid(format!(
                                "layer {index}: hard link {} points at {}, which no layer below holds",
                                String::from_utf8_lossy(&path),
                                String::from_utf8_lossy(&target)
                            ))
                        })?;
                        orphans
                            .entry((holder, target))
                            .or_default()
                            .push((path, entry.header().clone()));
                        continue;
                    }
                }
                let pax = pax_records(&mut entry, index)?;
                let link = entry.link_name_bytes().map(|l| l.into_owned());
                let mut header = entry.header().clone();
                write_entry(
                    &mut builder,
                    &mut header,
                    &path,
                    link.as_deref(),
                    pax,
                    &mut entry,
                )
                .map_err(|e| write_error(index, &path, e))?;
            }
        }
        reader
            .finish()
            .map_err(|e| Error::store(format!("reading layer {index}"), e))?;
    }

    // Third pass: the content of orphaned links' targets, from the layers that hold it.
    let mut holders: Vec<usize> = orphans.keys().map(|(layer, _)| *layer).collect();
    holders.sort_unstable();
    holders.dedup();
    for index in holders {
        let mut reader = opener.open(index)?;
        {
            let mut archive = tar::Archive::new(&mut reader);
            for entry in archive.entries().map_err(|e| tar_error(index, e))? {
                let mut entry = entry.map_err(|e| tar_error(index, e))?;
                let path = clean_path(&entry.path_bytes(), index)?;
                let Some(links) = orphans.remove(&(index, path)) else {
                    continue;
                };
                let pax = pax_records(&mut entry, index)?;
                let mut content = Vec::new();
                entry
                    .read_to_end(&mut content)
                    .map_err(|e| tar_error(index, e))?;
                let mut first: Option<Vec<u8>> = None;
                for (link_path, link_header) in links {
                    let mut header = entry.header().clone();
                    header.set_mtime(link_header.mtime().unwrap_or(0));
                    let result = match &first {
                        None => {
                            header.set_entry_type(EntryType::Regular);
                            write_entry(
                                &mut builder,
                                &mut header,
                                &link_path,
                                None,
                                pax.clone(),
                                &mut content.as_slice(),
                            )
                        }
                        Some(file) => {
                            header.set_entry_type(EntryType::Link);
                            write_entry(
                                &mut builder,
                                &mut header,
                                &link_path,
                                Some(file),
                                Vec::new(),
                                &mut io::empty(),
                            )
                        }
                    };
                    result.map_err(|e| write_error(index, &link_path, e))?;
                    first.get_or_insert(link_path);
                }
            }
        }
        reader
            .finish()
            .map_err(|e| Error::store(format!("reading layer {index}"), e))?;
    }
    builder
        .into_inner()
        .and_then(|out| out.flush())
        .map_err(|e| Error::invalid(format!("cannot write the flattened layer: {e}")))
}

/// The PAX records of an entry, without the ones this module writes itself.
fn pax_records(
    entry: &mut tar::Entry<'_, impl Read>,
    index: usize,
) -> Result<Vec<(String, Vec<u8>)>> {
    let mut records = Vec::new();
    if let Some(extensions) = entry.pax_extensions().map_err(|e| tar_error(index, e))? {
        for extension in extensions {
            let extension = extension.map_err(|e| tar_error(index, e))?;
            let Ok(key) = extension.key() else { continue };
            if matches!(key, "path" | "linkpath" | "size") {
                continue;
            }
            records.push((key.to_owned(), extension.value_bytes().to_vec()));
        }
    }
    Ok(records)
}

/// Writes one entry under `path` (and `link` as its link target), long names through PAX.
fn write_entry(
    builder: &mut tar::Builder<&mut dyn Write>,
    header: &mut Header,
    path: &[u8],
    link: Option<&[u8]>,
    mut pax: PaxRecords,
    data: &mut dyn Read,
) -> io::Result<()> {
    let mut name = path.to_vec();
    if header.entry_type() == EntryType::Directory {
        name.push(b'/');
    }
    let mut ustar = Header::new_ustar();
    // Name to device numbers as they were; the format is made ustar (GNU and v7 headers keep
    // other things, or nothing, where ustar has its magic and prefix).
    ustar.as_mut_bytes()[..345].copy_from_slice(&header.as_bytes()[..345]);
    ustar.as_mut_bytes()[257..265].copy_from_slice(b"ustar\x0000");
    if let Some(fields) = ustar.as_ustar_mut() {
        fields.prefix = [0; 155];
        fields.name = [0; 100];
    }
    if !super::tarball::set_ustar_name(&mut ustar, &name) {
        pax.push(("path".to_owned(), name.clone()));
        super::tarball::set_ustar_name(&mut ustar, &name[..name.len().min(100)]);
    }
    if let Some(link) = link {
        if link.len() > 100 {
            pax.push(("linkpath".to_owned(), link.to_vec()));
            ustar.set_link_name_literal(&link[..100])?;
        } else {
            ustar.set_link_name_literal(link)?;
        }
    }
    let size = match header.entry_type() {
        EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => header.size()?,
        _ => 0,
    };
    if header.entry_type() == EntryType::GNUSparse || header.entry_type() == EntryType::Continuous {
        ustar.set_entry_type(EntryType::Regular);
    }
    ustar.set_size(size);
    if size > 0o77_777_777_777 {
        pax.push(("size".to_owned(), size.to_string().into_bytes()));
    }
    ustar.set_cksum();
    if !pax.is_empty() {
        builder.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
    }
    *header = ustar;
    builder.append(header, data)
}

/// A tar path as a path in the image: no leading `/` or `./`, no trailing `/`, no empty or
/// `.` components; `..` is refused (it names something outside the image).
fn clean_path(raw: &[u8], layer: usize) -> Result<Vec<u8>> {
    let mut clean = Vec::with_capacity(raw.len());
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                return Err(Error::invalid(format!(
                    "layer {layer}: entry {:?} has a `..` component",
                    String::from_utf8_lossy(raw)
                )));
            }
            _ => {
                if !clean.is_empty() {
                    clean.push(b'/');
                }
                clean.extend_from_slice(part);
            }
        }
    }
    Ok(clean)
}

fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|b| *b == b'/') {
        Some(slash) => (&path[..slash], &path[slash + 1..]),
        None => (&[], path),
    }
}

fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut path = parent.to_vec();
    if !path.is_empty() {
        path.push(b'/');
    }
    path.extend_from_slice(name);
    path
}

fn tar_error(layer: usize, error: io::Error) -> Error {
    let store = oci_store::layer::into_store_error(error, || format!("reading layer {layer}"));
    Error::store(format!("reading the tar of layer {layer}"), store)
}

fn write_error(layer: usize, path: &[u8], error: io::Error) -> Error {
    Error::invalid(format!(
        "cannot write entry {} of layer {layer} into the flattened layer: {error}",
        String::from_utf8_lossy(path)
    ))
}
