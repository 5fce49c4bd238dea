//! Merging an image's layers into one tar with the whiteouts applied: the tar unpacks to the
//! tree the layers unpack to (flatten, export).
//!
//! Two passes over the layers, each streaming:
//! 1. top layer first, headers only: which layer gives each path its final entry. A path is
//!    hidden from the layers below one that deletes it (`.wh.NAME`), replaces a parent of it
//!    with something that is not a directory, or makes a parent opaque (`.wh..wh..opq`,
//!    wherever it stands in that layer); a layer's own whiteouts never hide its own entries.
//!    The lowest layer is not read in this pass: what it would teach the plan concerns only
//!    its own entries (there is no layer below it to hide), so it is learnt while that layer
//!    is written, first in pass 2. A single-layer image is read once instead of twice.
//! 2. lowest layer first: every entry that is its path's final one is written with its data,
//!    so a directory still comes before what it holds. (A directory of the lowest layer whose
//!    entry comes after something it holds was written before it with the metadata of an
//!    implicit parent; its own entry is then written again, so that the tree unpacks the same.)
//!
//! A hard link whose target is deleted or replaced above it would point at the wrong file, or
//! at none, in the merged tar: it becomes a regular file with the content its target had in
//! the link's layer, written after the rest (a third pass reads the layers that hold those
//! contents), and further links to the same content become links to it.
//!
//! Memory grows with the number of paths in the image (a few bytes over the path's length
//! each), never with the size of a file; the paths, link targets and extended attributes of
//! all layers are counted against [`LayerLimits::max_image_metadata`].

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};

use super::entries::{EntryKind, LayerLimits, TarEntry, read_entries};
use super::paths::{PathMap, PathSet};
use super::write::{EntryMeta, append_entry};
use super::{LayerReader, into_store_error};
use crate::{Error, Result};

/// The paths, link targets and extended attributes of an image's layers so far, against
/// [`LayerLimits::max_image_metadata`]: for a consumer that remembers entries across layers.
#[derive(Debug)]
pub struct ImageMetadata {
    seen: u64,
    max: u64,
}

impl ImageMetadata {
    /// Nothing counted yet, against `limits`.
    pub fn new(limits: &LayerLimits) -> Self {
        Self {
            seen: 0,
            max: limits.max_image_metadata,
        }
    }

    /// Counts `entry` of `layer`; an error once the image is over the limit.
    pub fn count(&mut self, layer: &oci_types::Digest, entry: &TarEntry<'_>) -> Result<()> {
        self.add(entry.metadata_len(), layer, || entry.raw_name.clone(), "")
    }

    /// Counts the directory `path` that an entry of `layer` implies without an entry of its
    /// own, for a consumer that remembers it: a path of 120 components implies 119 more,
    /// so that remembering each parent of each entry would have cost 100 times the limit.
    pub fn count_implied(&mut self, layer: &oci_types::Digest, path: &[u8]) -> Result<()> {
        let name = || String::from_utf8_lossy(path).into_owned();
        let counting = ", counting the directories its paths imply";
        self.add(path.len() as u64, layer, name, counting)
    }

    fn add(
        &mut self,
        bytes: u64,
        layer: &oci_types::Digest,
        entry: impl FnOnce() -> String,
        counting: &str,
    ) -> Result<()> {
        self.seen = self.seen.saturating_add(bytes);
        if self.seen > self.max {
            return Err(Error::LayerInvalid {
                layer: layer.clone(),
                entry: Some(entry()),
                reason: format!(
                    "the image has more than {} bytes of paths, link targets and extended attributes (the limit){counting}",
                    self.max
                ),
            });
        }
        Ok(())
    }
}

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
    finals: PathMap<Final>,
    /// Paths deleted by a whiteout of a layer above the one being read.
    deleted: HashSet<Vec<u8>>,
    /// Paths that hide what lower layers hold below them: deleted by a layer above the one
    /// being read, made opaque by one, or made something other than a directory by one.
    hiding: PathSet,
    /// The final metadata of the directories that stay.
    dirs: HashMap<Vec<u8>, DirMeta>,
}

/// What a layer hides in the layers below it, applied to the plan once the layer is read.
#[derive(Debug, Default)]
struct Hides {
    deleted: Vec<Vec<u8>>,
    opaque: Vec<Vec<u8>>,
    replaced: Vec<Vec<u8>>,
}

impl Plan {
    /// Learns what `entry` of layer `index` says (pass 1's work for one entry): the layer
    /// holding its path's final entry, and a directory's final metadata, unless a layer above
    /// or an entry before it settled them; what it hides below goes to `hides` (none for the
    /// lowest layer: nothing is below it).
    fn learn(&mut self, index: usize, entry: &TarEntry<'_>, mut hides: Option<&mut Hides>) {
        let mut hide = |what: fn(&mut Hides) -> &mut Vec<Vec<u8>>| {
            if let Some(hides) = hides.as_deref_mut() {
                what(hides).push(entry.path.clone());
            }
        };
        match entry.kind {
            EntryKind::Opaque => hide(|h| &mut h.opaque),
            EntryKind::Whiteout => hide(|h| &mut h.deleted),
            _ if entry.path.is_empty() => {}
            _ if self.hidden(&entry.path) => {}
            kind => {
                let directory = kind == EntryKind::Directory;
                if !directory {
                    // Whatever lower layers hold below it is gone, even if a higher layer
                    // makes the path a directory again.
                    hide(|h| &mut h.replaced);
                }
                if self.finals.get(&entry.path).is_none() {
                    if directory {
                        self.dirs.insert(
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
                    self.finals.insert_new(
                        &entry.path,
                        Final {
                            layer: index,
                            directory,
                        },
                    );
                }
            }
        }
    }

    /// Applies what a layer hides to the plan of the layers below it.
    fn hide(&mut self, hides: Hides) {
        for path in hides
            .deleted
            .iter()
            .chain(&hides.opaque)
            .chain(&hides.replaced)
        {
            self.hiding.insert(path);
        }
        self.deleted.extend(hides.deleted);
    }

    /// Whether an entry for `path` in a lower layer is hidden by what the layers above did.
    fn hidden(&self, path: &[u8]) -> bool {
        self.deleted.contains(path)
            || self.hiding.has_parent(path, |_| true)
            || self.finals.has_parent(path, |f| !f.directory)
    }
}

/// The directories written so far.
#[derive(Debug)]
struct WrittenDirs {
    /// Each with whether it was written as an implicit parent, with no entry of its own
    /// known then.
    all: PathMap<bool>,
    /// The image's paths so far, implicit parents among them.
    metadata: ImageMetadata,
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
    // Counted once for each layer: in pass 1, or for the lowest layer in pass 2.
    let mut metadata = ImageMetadata::new(limits);
    // The lowest layer is learnt in pass 2 (see the module's docs).
    for index in (1..count).rev() {
        let mut reader = open(index)?;
        let layer = reader.layer().digest.clone();
        let mut hides = Hides::default();
        read_entries(&layer, &mut reader, limits, |entry| {
            metadata.count(&layer, &entry)?;
            plan.learn(index, &entry, Some(&mut hides));
            Ok(())
        })?;
        reader.finish()?;
        plan.hide(hides);
    }

    let mut builder = tar::Builder::new(out);
    let mut orphans = Orphans::new();
    let mut written_dirs = WrittenDirs {
        all: PathMap::default(),
        metadata,
    };
    // The layer holding each path's content as the layers are applied in order.
    let mut holder: HashMap<Vec<u8>, usize> = HashMap::new();
    for index in 0..count {
        let mut reader = open(index)?;
        let layer = reader.layer().digest.clone();
        read_entries(&layer, &mut reader, limits, |entry| {
            if index == 0 {
                written_dirs.metadata.count(&layer, &entry)?;
                // What pass 1 would have learnt of it, learnt before it is needed: the
                // plan of an entry of the lowest layer depends only on the layers above and
                // on the entries before it.
                plan.learn(0, &entry, None);
            }
            if entry.path.is_empty()
                || matches!(entry.kind, EntryKind::Whiteout | EntryKind::Opaque)
            {
                return Ok(());
            }
            holder.insert(entry.path.clone(), index);
            // A directory that stays is written where it first appears, with its final
            // metadata, so that it comes before what the layers put in it. (Its parents stay
            // too, since it does.)
            if entry.kind == EntryKind::Directory && plan.dirs.contains_key(&entry.path) {
                let Some(implicit) = written_dirs.all.get_mut(&entry.path) else {
                    write_parents(&mut builder, &plan, &mut written_dirs, &entry.path, &layer)?;
                    return write_dir(&mut builder, &plan, &mut written_dirs, &entry.path, &layer);
                };
                if std::mem::take(implicit) {
                    // Only in the lowest layer, whose plan is learnt as it is written: the
                    // directory came after something it holds and was written as an
                    // implicit parent. Again, with its own metadata, which a tar applies to
                    // the directory it already made.
                    return append_dir(&mut builder, &plan, &entry.path, &layer);
                }
            }
            if entry.kind == EntryKind::Directory && written_dirs.all.get(&entry.path).is_some() {
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
    written: &mut WrittenDirs,
    path: &[u8],
    layer: &oci_types::Digest,
) -> Result<()> {
    let implicit = !plan.dirs.contains_key(path);
    if !written.all.insert_new(path, implicit) {
        return Ok(());
    }
    if implicit {
        written.metadata.count_implied(layer, path)?;
    }
    append_dir(builder, plan, path, layer)
}

/// Appends an entry for the directory `path`, as [`write_dir`] describes, written or not.
fn append_dir<W: Write>(
    builder: &mut tar::Builder<W>,
    plan: &Plan,
    path: &[u8],
    layer: &oci_types::Digest,
) -> Result<()> {
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
    written: &mut WrittenDirs,
    path: &[u8],
    layer: &oci_types::Digest,
) -> Result<()> {
    // Writing one parent adds no other: the missing ones can be found first.
    for end in written.all.missing_parents(path) {
        write_dir(builder, plan, written, &path[..end], layer)?;
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

    /// A reader of the uncompressed layer `bytes`, its store's side on `handle`'s runtime.
    fn tar_reader(bytes: Bytes, handle: &tokio::runtime::Handle) -> LayerReader {
        let descriptor =
            Descriptor::of_bytes(MediaType::from_static(media_type::OCI_LAYER_TAR), &bytes);
        let _guard = handle.enter();
        LayerReader::new(
            BlobReader::verified(descriptor, body_from_bytes(bytes)),
            None,
        )
    }

    /// The merged tar of `layers`, as `path kind [data or link]` lines.
    async fn merged(layers: Vec<Bytes>) -> Vec<String> {
        merged_with(layers, |_| String::new()).await.0
    }

    /// The merged tar of `layers`, as `path kind [data or link]` lines each followed by what
    /// `more` says of the entry, and how many times each layer was opened.
    async fn merged_with(
        layers: Vec<Bytes>,
        more: fn(&TarEntry<'_>) -> String,
    ) -> (Vec<String>, Vec<usize>) {
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let count = layers.len();
            let mut opened = vec![0; count];
            let mut open = |index: usize| {
                opened[index] += 1;
                Ok(tar_reader(layers[index].clone(), &handle))
            };
            merge_layers(&mut out, count, &mut open, &LayerLimits::default()).unwrap();
            let digest = oci_types::Digest::parse(&format!("sha256:{}", "0".repeat(64))).unwrap();
            let mut lines = Vec::new();
            read_entries(&digest, out.as_slice(), &LayerLimits::default(), |entry| {
                let more = more(&entry);
                let mut data = String::new();
                entry.data.read_to_string(&mut data).unwrap();
                let link = entry
                    .link
                    .map(|l| String::from_utf8(l).unwrap())
                    .unwrap_or_default();
                lines.push(format!(
                    "{} {:?} {data}{link}{more}",
                    String::from_utf8(entry.path).unwrap(),
                    entry.kind
                ));
                Ok(())
            })
            .unwrap();
            (lines, opened)
        })
        .await
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_names_of_all_layers_are_limited() {
        // Three layers of 27 bytes of names each (three 9-byte paths), within a layer's
        // limit of 40, all three over the image's limit of 80: whichever pass reads them.
        let layers: Vec<Bytes> = (0..3)
            .map(|n| {
                layer(&[
                    &format!("{n}/aaaaaaa=x"),
                    &format!("{n}/bbbbbbb=x"),
                    &format!("{n}/ccccccc=x"),
                ])
            })
            .collect();
        let handle = tokio::runtime::Handle::current();
        let merge = move |limits: LayerLimits| {
            let (layers, handle) = (layers.clone(), handle.clone());
            tokio::task::spawn_blocking(move || {
                let mut open = |index: usize| Ok(tar_reader(layers[index].clone(), &handle));
                merge_layers(&mut Vec::new(), layers.len(), &mut open, &limits)
            })
        };
        let limits = LayerLimits::default()
            .with_max_metadata(40)
            .with_max_image_metadata(80);
        let error = merge(limits).await.unwrap().unwrap_err();
        assert!(
            error
                .to_string()
                .contains("the image has more than 80 bytes"),
            "{error}"
        );
        // The directories `0`, `1` and `2`, written as implicit parents, count too: 84.
        let error = merge(limits.with_max_image_metadata(83))
            .await
            .unwrap()
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("counting the directories its paths imply"),
            "{error}"
        );
        merge(limits.with_max_image_metadata(84))
            .await
            .unwrap()
            .unwrap();
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

    /// The lowest layer is read once, in the pass that writes (what it teaches the plan
    /// concerns only its own entries); the others twice. A single layer is read once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_lowest_layer_is_read_once() {
        let (lines, opened) =
            merged_with(vec![layer(&["a/", "a/x=1", "b=2"])], |_| String::new()).await;
        assert_eq!(lines, ["a Directory ", "a/x File 1", "b File 2"]);
        assert_eq!(opened, [1]);
        let (_, opened) = merged_with(
            vec![layer(&["a=1"]), layer(&["b=2"]), layer(&["c=3"])],
            |_| String::new(),
        )
        .await;
        assert_eq!(opened, [1, 2, 2]);
    }

    /// A layer of `(path, kind, mode, content)` entries, in that order.
    fn layer_with_modes(entries: &[(&str, EntryKind, u32, &str)]) -> Bytes {
        let mut builder = tar::Builder::new(Vec::new());
        for &(path, kind, mode, data) in entries {
            let meta = EntryMeta {
                path: path.as_bytes(),
                kind,
                link: None,
                mode,
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

    /// An entry's permission bits, as `merged_with` appends them to its line.
    fn mode_of(entry: &TarEntry<'_>) -> String {
        format!(" {:o}", entry.mode)
    }

    /// The plan the lowest layer learns as it is written is the one pass 1 would have made:
    /// within it, a file hides what a later entry puts below its path, a hard link to a
    /// target deleted above becomes the file, and a directory claimed above keeps the upper
    /// layer's metadata.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_lowest_layer_is_planned_as_it_is_written() {
        let upper = layer_with_modes(&[
            ("d", EntryKind::Directory, 0o700, ""),
            ("t", EntryKind::Whiteout, 0o644, ""),
        ]);
        let (lines, _) = merged_with(
            vec![
                layer(&["f=file", "f/under=no", "d/", "d/x=1", "t=content", "l=>t"]),
                upper,
            ],
            mode_of,
        )
        .await;
        assert_eq!(
            lines,
            [
                "f File file 755",
                "d Directory  700",
                "d/x File 1 755",
                "l File content 755",
            ]
        );
    }

    /// A directory of the lowest layer whose entry comes after a file in it: written first
    /// as an implicit parent, then again with its own metadata, so that the tree unpacks as
    /// the layer does.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_directory_after_its_contents_gets_its_own_metadata() {
        let lowest = layer_with_modes(&[
            ("d/f", EntryKind::File, 0o644, "x"),
            ("d", EntryKind::Directory, 0o700, ""),
        ]);
        let (lines, opened) = merged_with(vec![lowest.clone()], mode_of).await;
        assert_eq!(
            lines,
            ["d Directory  755", "d/f File x 644", "d Directory  700"]
        );
        assert_eq!(opened, [1]);
        // Under another layer, the same.
        let (lines, _) = merged_with(vec![lowest, layer(&["e=2"])], mode_of).await;
        assert_eq!(
            lines,
            [
                "d Directory  755",
                "d/f File x 644",
                "d Directory  700",
                "e File 2 755"
            ]
        );
    }
}
