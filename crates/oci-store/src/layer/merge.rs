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

/// A directory's final metadata, written where the directory first appears so that it comes
/// before everything it holds.
#[derive(Debug, Clone)]
struct DirMeta {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    xattrs: Vec<(String, Vec<u8>)>,
}

/// What the first pass learns.
#[derive(Debug, Default)]
struct Plan {
    finals: HashMap<Vec<u8>, Final>,
    /// Paths deleted by a whiteout of a layer above the one being read.
    deleted: HashSet<Vec<u8>>,
    /// Directories made opaque by a layer above the one being read.
    opaque: HashSet<Vec<u8>>,
    /// Paths that a layer above the one being read made something other than a directory:
    /// what lower layers hold below them is gone.
    replaced: HashSet<Vec<u8>>,
    /// The final metadata of the directories that stay.
    dirs: HashMap<Vec<u8>, DirMeta>,
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
                || self.replaced.contains(parent)
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
        let (mut deleted, mut opaque, mut replaced) = (Vec::new(), Vec::new(), Vec::new());
        read_entries(&layer, &mut reader, limits, |entry| {
            match entry.kind {
                EntryKind::Opaque => opaque.push(entry.path),
                EntryKind::Whiteout => deleted.push(entry.path),
                _ if entry.path.is_empty() => {}
                _ if plan.hidden(&entry.path) => {}
                kind => {
                    let directory = kind == EntryKind::Directory;
                    if !directory {
                        // Whatever lower layers hold below it is gone, even if a higher
                        // layer makes the path a directory again.
                        replaced.push(entry.path.clone());
                    }
                    if !plan.finals.contains_key(&entry.path) {
                        if directory {
                            plan.dirs.insert(
                                entry.path.clone(),
                                DirMeta {
                                    mode: entry.mode,
                                    uid: entry.uid,
                                    gid: entry.gid,
                                    mtime: entry.mtime,
                                    xattrs: entry.xattrs.clone(),
                                },
                            );
                        }
                        let path = entry.path;
                        plan.finals.insert(
                            path,
                            Final {
                                layer: index,
                                directory,
                            },
                        );
                    }
                }
            }
            Ok(())
        })?;
        reader.finish()?;
        plan.deleted.extend(deleted);
        plan.opaque.extend(opaque);
        plan.replaced.extend(replaced);
    }

    let mut builder = tar::Builder::new(out);
    let mut orphans = Orphans::new();
    let mut written_dirs: HashSet<Vec<u8>> = HashSet::new();
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
            // A directory that stays is written where it first appears, with its final
            // metadata, so that it comes before what the layers put in it. (Its parents stay
            // too, since it does.)
            if entry.kind == EntryKind::Directory
                && !written_dirs.contains(&entry.path)
                && plan.dirs.contains_key(&entry.path)
            {
                write_parents(&mut builder, &plan, &mut written_dirs, &entry.path, &layer)?;
                return write_dir(&mut builder, &plan, &mut written_dirs, &entry.path, &layer);
            }
            if entry.kind == EntryKind::Directory && written_dirs.contains(&entry.path) {
                return Ok(());
            }
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
            write_parents(&mut builder, &plan, &mut written_dirs, &entry.path, &layer)?;
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
            write_parents(&mut builder, &plan, &mut written_dirs, &first, &layer)?;
            write(&mut builder, &layer, entry, Some(&first))?;
            for path in &rest {
                write_parents(&mut builder, &plan, &mut written_dirs, path, &layer)?;
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

/// Writes the directory `path` once: with its final metadata when a layer has an entry for
/// it, else as tar and unpack make implicit parents (0755, owned by 0:0, time 0), so that
/// the same image still gives the same bytes.
fn write_dir<W: Write>(
    builder: &mut tar::Builder<W>,
    plan: &Plan,
    written: &mut HashSet<Vec<u8>>,
    path: &[u8],
    layer: &oci_types::Digest,
) -> Result<()> {
    if !written.insert(path.to_vec()) {
        return Ok(());
    }
    let implicit = DirMeta {
        mode: 0o755,
        uid: 0,
        gid: 0,
        mtime: 0,
        xattrs: Vec::new(),
    };
    let meta = plan.dirs.get(path).unwrap_or(&implicit);
    let dir = EntryMeta {
        path,
        kind: EntryKind::Directory,
        link: None,
        mode: meta.mode,
        uid: meta.uid,
        gid: meta.gid,
        mtime: meta.mtime,
        size: 0,
        device: (0, 0),
        xattrs: &meta.xattrs,
    };
    append_entry(builder, &dir, io::empty()).map_err(|e| write_error(layer, path, e))
}

/// Writes every parent directory of `path` not written yet, outermost first.
fn write_parents<W: Write>(
    builder: &mut tar::Builder<W>,
    plan: &Plan,
    written: &mut HashSet<Vec<u8>>,
    path: &[u8],
    layer: &oci_types::Digest,
) -> Result<()> {
    for (at, byte) in path.iter().enumerate() {
        if *byte == b'/' && !written.contains(&path[..at]) {
            write_dir(builder, plan, written, &path[..at], layer)?;
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BlobReader, body_from_bytes};
    use bytes::Bytes;
    use oci_types::{Descriptor, MediaType, media_type};

    /// A layer of entries: `d/` a directory, `f=text` a file, `l=>target` a hard link,
    /// `s->target` a symlink.
    fn layer(entries: &[&str]) -> Bytes {
        let mut builder = tar::Builder::new(Vec::new());
        for entry in entries {
            let (path, kind, link, data) = if let Some((p, t)) = entry.split_once("=>") {
                (p, EntryKind::HardLink, Some(t), "")
            } else if let Some((p, t)) = entry.split_once("->") {
                (p, EntryKind::Symlink, Some(t), "")
            } else if let Some((p, d)) = entry.split_once('=') {
                (p, EntryKind::File, None, d)
            } else if let Some(p) = entry.strip_suffix('/') {
                (p, EntryKind::Directory, None, "")
            } else {
                (*entry, EntryKind::File, None, "")
            };
            let (kind, path) = match path.rsplit_once('/').map_or(("", path), |(d, n)| (d, n)) {
                (dir, ".wh..wh..opq") => (EntryKind::Opaque, dir.to_owned()),
                (dir, name) if name.starts_with(".wh.") => (
                    EntryKind::Whiteout,
                    if dir.is_empty() {
                        name[4..].to_owned()
                    } else {
                        format!("{dir}/{}", &name[4..])
                    },
                ),
                _ => (kind, path.to_owned()),
            };
            let meta = EntryMeta {
                path: path.as_bytes(),
                kind,
                link: link.map(str::as_bytes),
                mode: 0o755,
                uid: 0,
                gid: 0,
                mtime: 0,
                size: data.len() as u64,
                device: (0, 0),
                xattrs: &[],
            };
            append_entry(&mut builder, &meta, data.as_bytes()).unwrap();
        }
        Bytes::from(builder.into_inner().unwrap())
    }

    /// The merged tar of `layers`, as `path kind [data or link]` lines.
    async fn merged(layers: Vec<Bytes>) -> Vec<String> {
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let count = layers.len();
            let mut open = |index: usize| -> Result<LayerReader> {
                let bytes = layers[index].clone();
                let descriptor =
                    Descriptor::of_bytes(MediaType::from_static(media_type::OCI_LAYER_TAR), &bytes);
                let _guard = handle.enter();
                Ok(LayerReader::new(
                    BlobReader::verified(descriptor, body_from_bytes(bytes)),
                    None,
                ))
            };
            merge_layers(&mut out, count, &mut open, &LayerLimits::default()).unwrap();
            let digest = oci_types::Digest::parse(&format!("sha256:{}", "0".repeat(64))).unwrap();
            let mut lines = Vec::new();
            read_entries(&digest, out.as_slice(), &LayerLimits::default(), |entry| {
                let mut data = String::new();
                entry.data.read_to_string(&mut data).unwrap();
                let link = entry
                    .link
                    .map(|l| String::from_utf8(l).unwrap())
                    .unwrap_or_default();
                lines.push(format!(
                    "{} {:?} {data}{link}",
                    String::from_utf8(entry.path).unwrap(),
                    entry.kind
                ));
                Ok(())
            })
            .unwrap();
            lines
        })
        .await
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn whiteouts_opaque_directories_and_replacements_apply_to_lower_layers_only() {
        let lines = merged(vec![
            layer(&[
                "a/",
                "a/x=lower",
                "b/",
                "b/old=old",
                "c/",
                "c/keep=k",
                "gone=g",
            ]),
            // `a` becomes a file: a/x is gone for good, even though `a` is a directory again
            // above; b is opaque (marker after this layer's own entry); c/keep is deleted and
            // made again in the same layer; `gone` is deleted.
            layer(&[
                "a=file",
                "b/new=new",
                "b/.wh..wh..opq",
                "c/keep=again",
                "c/.wh.keep",
                ".wh.gone",
            ]),
            layer(&["a/", "a/y=top"]),
        ])
        .await;
        assert_eq!(
            lines,
            [
                "a Directory ",
                "b Directory ",
                "c Directory ",
                "b/new File new",
                "c/keep File again",
                "a/y File top",
            ]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hard_link_whose_target_is_removed_above_becomes_the_file() {
        let lines = merged(vec![
            layer(&[
                "d/",
                "d/target=content",
                "d/link=>d/target",
                "d/second=>d/target",
            ]),
            layer(&["d/.wh.target"]),
        ])
        .await;
        assert_eq!(
            lines,
            [
                "d Directory ",
                "d/link File content",
                "d/second HardLink d/link"
            ]
        );
    }
}
