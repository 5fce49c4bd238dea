//! Merging an image's layers into one tar with the whiteouts applied: the tar unpacks to the
//! tree the layers unpack to (flatten, export).
//!
//! Two passes over the layers, each streaming:
//! 1. top layer first, headers only: which layer gives each path its final entry. A path is
//!    hidden from the layers below one that deletes it (`.wh.NAME`), replaces a parent of it
//!    with something that is not a directory, or makes a parent opaque (`.wh..wh..opq`,
//!    wherever it stands in that layer); a layer's own whiteouts never hide its own entries.
//! 2. lowest layer first: every entry that is its path's final one is written with its data,
//!    so a directory still comes before what it holds.
//!
//! A hard link whose target is deleted or replaced above it would point at the wrong file, or
//! at none, in the merged tar: it becomes a regular file with the content its target had in
//! the link's layer, written after the rest (a third pass reads the layers that hold those
//! contents), and further links to the same content become links to it.
//!
//! Memory grows with the number of paths in the image (a few bytes over the path's length
//! each), never with the size of a file.

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};

use super::entries::{EntryKind, LayerLimits, TarEntry, read_entries};
use super::write::{EntryMeta, append_entry};
use super::{LayerReader, into_store_error};
use crate::{Error, Result};

/// Where a path's final entry is.
#[derive(Debug, Clone, Copy)]
struct Final {
    layer: usize,
    directory: bool,
}

/// What the first pass learns.
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
        let mut rest = path;
        while let Some(slash) = rest.iter().rposition(|b| *b == b'/') {
            let parent = &path[..slash];
            if self.deleted.contains(parent)
                || self.opaque.contains(parent)
                || self.finals.get(parent).is_some_and(|f| !f.directory)
            {
                return true;
            }
            rest = parent;
        }
        false
    }
}

/// Hard links whose target is gone or replaced above them: by (the layer holding the
/// content, the target's path), the links' paths.
type Orphans = HashMap<(usize, Vec<u8>), Vec<Vec<u8>>>;

/// Writes the merged tar of `count` layers into `out`; `open(i)` gives a reader of layer `i`
/// (lowest first), which is read to its end so that its `diff_id` is checked.
pub fn merge_layers(
    out: &mut dyn Write,
    count: usize,
    open: &mut dyn FnMut(usize) -> Result<LayerReader>,
    limits: &LayerLimits,
) -> Result<()> {
    let mut plan = Plan::default();
    for index in (0..count).rev() {
        let mut reader = open(index)?;
        let layer = reader.layer().digest.clone();
        let (mut deleted, mut opaque) = (Vec::new(), Vec::new());
        read_entries(&layer, &mut reader, limits, |entry| {
            match entry.kind {
                EntryKind::Opaque => opaque.push(entry.path),
                EntryKind::Whiteout => deleted.push(entry.path),
                _ if entry.path.is_empty() => {}
                _ if plan.finals.contains_key(&entry.path) || plan.hidden(&entry.path) => {}
                kind => {
                    let directory = kind == EntryKind::Directory;
                    plan.finals.insert(
                        entry.path,
                        Final {
                            layer: index,
                            directory,
                        },
                    );
                }
            }
            Ok(())
        })?;
        reader.finish()?;
        plan.deleted.extend(deleted);
        plan.opaque.extend(opaque);
    }

    let mut builder = tar::Builder::new(out);
    let mut orphans = Orphans::new();
    // The layer holding each path's content as the layers are applied in order.
    let mut holder: HashMap<Vec<u8>, usize> = HashMap::new();
    for index in 0..count {
        let mut reader = open(index)?;
        let layer = reader.layer().digest.clone();
        read_entries(&layer, &mut reader, limits, |entry| {
            if entry.path.is_empty()
                || matches!(entry.kind, EntryKind::Whiteout | EntryKind::Opaque)
            {
                return Ok(());
            }
            holder.insert(entry.path.clone(), index);
            if plan
                .finals
                .get(&entry.path)
                .is_none_or(|f| f.layer != index)
            {
                return Ok(());
            }
            if entry.kind == EntryKind::HardLink {
                let target = entry.link.clone().unwrap_or_default();
                let target_final = plan.finals.get(&target).map(|f| f.layer);
                if target_final.is_none_or(|layer| layer > index) {
                    let held_by =
                        holder
                            .get(&target)
                            .copied()
                            .ok_or_else(|| Error::LayerInvalid {
                                layer: layer.clone(),
                                entry: Some(entry.raw_name.clone()),
                                reason: format!(
                                    "a hard link to {}, which no layer up to this one holds",
                                    String::from_utf8_lossy(&target)
                                ),
                            })?;
                    orphans
                        .entry((held_by, target))
                        .or_default()
                        .push(entry.path);
                    return Ok(());
                }
            }
            write(&mut builder, &layer, entry, None)
        })?;
        reader.finish()?;
    }

    let mut holders: Vec<usize> = orphans.keys().map(|(layer, _)| *layer).collect();
    holders.sort_unstable();
    holders.dedup();
    for index in holders {
        let mut reader = open(index)?;
        let layer = reader.layer().digest.clone();
        read_entries(&layer, &mut reader, limits, |entry| {
            let Some(links) = orphans.remove(&(index, entry.path.clone())) else {
                return Ok(());
            };
            let mut links = links.into_iter();
            let Some(first) = links.next() else {
                return Ok(());
            };
            let link_meta = EntryMeta {
                path: &[],
                kind: EntryKind::HardLink,
                link: Some(&first),
                mode: entry.mode,
                uid: entry.uid,
                gid: entry.gid,
                mtime: entry.mtime,
                size: 0,
                device: (0, 0),
                xattrs: &[],
            };
            let rest: Vec<Vec<u8>> = links.collect();
            write(&mut builder, &layer, entry, Some(&first))?;
            for path in &rest {
                let meta = EntryMeta { path, ..link_meta };
                append_entry(&mut builder, &meta, io::empty())
                    .map_err(|e| write_error(&layer, path, e))?;
            }
            Ok(())
        })?;
        reader.finish()?;
    }
    let out = builder
        .into_inner()
        .map_err(|e| Error::io("writing the merged layer", e))?;
    out.flush()
        .map_err(|e| Error::io("writing the merged layer", e))
}

/// Writes `entry` (under `rename` when given, then as the file a link's target held).
fn write<W: Write>(
    builder: &mut tar::Builder<W>,
    layer: &oci_types::Digest,
    entry: TarEntry<'_>,
    rename: Option<&[u8]>,
) -> Result<()> {
    let path = rename.unwrap_or(&entry.path);
    let meta = EntryMeta {
        path,
        kind: entry.kind,
        link: entry.link.as_deref(),
        mode: entry.mode,
        uid: entry.uid,
        gid: entry.gid,
        mtime: entry.mtime,
        size: entry.size,
        device: entry.device,
        xattrs: &entry.xattrs,
    };
    append_entry(builder, &meta, entry.data).map_err(|e| write_error(layer, path, e))
}

fn write_error(layer: &oci_types::Digest, path: &[u8], error: io::Error) -> Error {
    into_store_error(error, || {
        format!(
            "writing {} of layer {layer} into the merged layer",
            String::from_utf8_lossy(path)
        )
    })
}
