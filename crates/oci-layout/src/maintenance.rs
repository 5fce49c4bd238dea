//! Layout maintenance: `gc` (remove what nothing reachable from `index.json` needs) and `fsck`
//! (re-hash every blob, find what is missing or stray).

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use oci_store::GcOptions;
use oci_types::{Algorithm, Digest, Digester, MAX_MANIFEST_SIZE, Manifest, Repository};

use crate::layout::Layout;
use crate::{Error, LayoutStore, Result};

/// What [`LayoutStore::gc`] removed (or, in a dry run, would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GcReport {
    /// Blobs removed, with their sizes.
    pub removed_blobs: Vec<(Digest, u64)>,
    /// Stale uploads removed, by id.
    pub removed_uploads: Vec<String>,
    /// Temporary files left by interrupted writes, removed.
    pub removed_temp_files: usize,
    /// Bytes freed by all of the above.
    pub freed_bytes: u64,
    /// Whether nothing was actually removed.
    pub dry_run: bool,
}

/// What [`LayoutStore::fsck`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FsckReport {
    /// Blobs re-hashed.
    pub checked: usize,
    /// Blobs whose content does not match their name.
    pub corrupt: Vec<Digest>,
    /// Blobs that a reachable manifest needs but that are not there.
    pub missing: Vec<Digest>,
    /// Files under `blobs/` that are not named as a blob is (temporary files, wrong case).
    pub stray: Vec<PathBuf>,
    /// `index.json` entries that could not be read.
    pub unreadable_entries: usize,
}

impl FsckReport {
    /// Whether nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.corrupt.is_empty()
            && self.missing.is_empty()
            && self.stray.is_empty()
            && self.unreadable_entries == 0
    }
}

impl LayoutStore {
    /// Removes blobs that nothing reachable from `index.json` references, uploads and
    /// temporary files older than the grace period; in per-repository mode, in every layout.
    ///
    /// Runs under the layout's lock, so no manifest can be pushed meanwhile; refuses to run when
    /// a reachable manifest cannot be read, since its blobs could not be told apart from
    /// garbage.
    pub async fn gc(&self, options: &GcOptions) -> Result<GcReport> {
        let mut report = GcReport {
            dry_run: options.dry_run,
            ..GcReport::default()
        };
        for (default, layout) in self.layouts().await? {
            let options = options.clone();
            let one = tokio::task::spawn_blocking(move || gc_layout(&layout, &default, &options))
                .await
                .map_err(|e| Error::Store(crate::layout::join_error(e)))??;
            report.removed_blobs.extend(one.removed_blobs);
            report.removed_uploads.extend(one.removed_uploads);
            report.removed_temp_files += one.removed_temp_files;
            report.freed_bytes += one.freed_bytes;
        }
        Ok(report)
    }

    /// Re-hashes every blob and reports corrupt, missing and stray ones, and unreadable index
    /// entries; changes nothing.
    pub async fn fsck(&self) -> Result<FsckReport> {
        let mut report = FsckReport::default();
        for (default, layout) in self.layouts().await? {
            let one = tokio::task::spawn_blocking(move || fsck_layout(&layout, &default))
                .await
                .map_err(|e| Error::Store(crate::layout::join_error(e)))??;
            report.checked += one.checked;
            report.corrupt.extend(one.corrupt);
            report.missing.extend(one.missing);
            report.stray.extend(one.stray);
            report.unreadable_entries += one.unreadable_entries;
        }
        Ok(report)
    }
}

/// Everything reachable from `index.json`: the manifests of every entry and, through them,
/// configs, layers and index children. Returns the blobs found and the ones that are needed but
/// absent or unreadable (blocking).
fn reachable(layout: &Layout, default: &Repository) -> Result<Reachable> {
    let index = layout.read_index()?;
    let unreadable = index.unreadable_entries(default);
    let mut seen = BTreeSet::new();
    let mut missing = Vec::new();
    // Every entry is a root, including those whose `ref.name` hoist cannot read: their
    // images are the layout's too, and gc removed them.
    let (mut pending, undecodable) = index.all_descriptors();
    while let Some(descriptor) = pending.pop() {
        if !seen.insert(descriptor.digest.clone()) {
            continue;
        }
        let path = layout.blob_path(&descriptor.digest);
        if !path.is_file() {
            missing.push(descriptor.digest.clone());
            continue;
        }
        if !(descriptor.media_type.is_manifest() || descriptor.media_type.is_index()) {
            continue;
        }
        let bytes = match read_limited(&path, MAX_MANIFEST_SIZE as u64) {
            Ok(bytes) if descriptor.digest.verify(&bytes) => bytes,
            _ => {
                missing.push(descriptor.digest.clone());
                continue;
            }
        };
        if let Ok(manifest) = Manifest::parse(&bytes, &descriptor.media_type) {
            pending.extend(manifest.references().into_iter().cloned());
        }
    }
    Ok(Reachable {
        blobs: seen,
        missing,
        unreadable,
        undecodable,
    })
}

/// What [`reachable`] found.
struct Reachable {
    /// Every blob reachable from `index.json` that is there.
    blobs: BTreeSet<Digest>,
    /// Those needed but absent or unreadable.
    missing: Vec<Digest>,
    /// Entries whose repository hoist cannot tell (their descriptors are still roots).
    unreadable: usize,
    /// Entries that are not descriptors: what they reference cannot be known.
    undecodable: usize,
}

fn read_limited(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    fs::File::open(path)?
        .take(limit + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The files under a layout's `blobs/`.
#[derive(Default)]
struct BlobFiles {
    /// Files named as a blob is, with their digest.
    named: Vec<(Digest, PathBuf)>,
    /// Anything else.
    stray: Vec<PathBuf>,
}

/// The blob files of a layout, well named or stray.
fn blob_files(layout: &Layout) -> Result<BlobFiles> {
    let blobs = layout.dir().join("blobs");
    let mut named = Vec::new();
    let mut stray = Vec::new();
    let algorithms = match fs::read_dir(&blobs) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BlobFiles::default()),
        Err(e) => return Err(Error::io("cannot read directory", blobs, e)),
    };
    for algorithm in algorithms {
        let algorithm = algorithm.map_err(|e| Error::io("cannot read directory", &blobs, e))?;
        let dir = algorithm.path();
        if !dir.is_dir() {
            stray.push(dir);
            continue;
        }
        let files = fs::read_dir(&dir).map_err(|e| Error::io("cannot read directory", &dir, e))?;
        for file in files {
            let file = file.map_err(|e| Error::io("cannot read directory", &dir, e))?;
            let name = format!(
                "{}:{}",
                algorithm.file_name().to_string_lossy(),
                file.file_name().to_string_lossy()
            );
            match Digest::parse(&name) {
                Ok(digest) if file.path().is_file() => named.push((digest, file.path())),
                _ => stray.push(file.path()),
            }
        }
    }
    Ok(BlobFiles { named, stray })
}

fn older_than(path: &Path, grace: Duration) -> bool {
    let modified = fs::symlink_metadata(path).and_then(|m| m.modified());
    modified.is_ok_and(|m| {
        SystemTime::now()
            .duration_since(m)
            .is_ok_and(|age| age >= grace)
    })
}

fn size_of(path: &Path) -> u64 {
    fs::symlink_metadata(path).map_or(0, |m| m.len())
}

fn gc_layout(layout: &Layout, default: &Repository, options: &GcOptions) -> Result<GcReport> {
    let mut report = GcReport {
        dry_run: options.dry_run,
        ..GcReport::default()
    };
    if !layout.exists() {
        return Ok(report);
    }
    let _lock = layout.lock_for_maintenance()?;
    let Reachable {
        blobs: needed,
        missing,
        undecodable,
        ..
    } = reachable(layout, default)?;
    if undecodable > 0 {
        return Err(Error::InvalidLayout {
            path: layout.dir().join("index.json"),
            reason: format!(
                "{undecodable} entries are not descriptors; run fsck: gc will not guess which \
                 blobs they reference"
            ),
        });
    }
    if let Some(digest) = missing.iter().find(|d| layout.blob_path(d).is_file()) {
        return Err(Error::InvalidLayout {
            path: layout.blob_path(digest),
            reason: "a reachable manifest cannot be read or does not match its digest; run fsck: \
                     gc will not guess which blobs it needs"
                .to_owned(),
        });
    }
    for (digest, path) in blob_files(layout)?.named {
        if needed.contains(&digest) || !older_than(&path, options.grace) {
            continue;
        }
        let size = size_of(&path);
        if !options.dry_run {
            fs::remove_file(&path).map_err(|e| Error::io("cannot remove", &path, e))?;
        }
        report.freed_bytes += size;
        report.removed_blobs.push((digest, size));
    }
    for entry in fs::read_dir(layout.uploads_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        let data = entry.path().join("data");
        let probe = if data.exists() {
            data.clone()
        } else {
            entry.path()
        };
        if !older_than(&probe, options.grace) {
            continue;
        }
        report.freed_bytes += size_of(&data);
        if !options.dry_run {
            fs::remove_dir_all(entry.path())
                .map_err(|e| Error::io("cannot remove", entry.path(), e))?;
            layout.forget_running_hash(&entry.file_name().to_string_lossy());
        }
        report
            .removed_uploads
            .push(entry.file_name().to_string_lossy().into_owned());
    }
    for entry in fs::read_dir(layout.tmp_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        let path = entry.path();
        if !older_than(&path, options.grace) {
            continue;
        }
        report.freed_bytes += size_of(&path);
        if !options.dry_run {
            fs::remove_file(&path).map_err(|e| Error::io("cannot remove", &path, e))?;
        }
        report.removed_temp_files += 1;
    }
    Ok(report)
}

fn fsck_layout(layout: &Layout, default: &Repository) -> Result<FsckReport> {
    let mut report = FsckReport::default();
    if !layout.exists() {
        return Ok(report);
    }
    let Reachable {
        missing,
        unreadable,
        ..
    } = reachable(layout, default)?;
    report.unreadable_entries = unreadable;
    let files = blob_files(layout)?;
    report.stray = files.stray;
    for (digest, path) in files.named {
        report.checked += 1;
        if hash_file(&path, digest.algorithm())? != digest {
            report.corrupt.push(digest);
        }
    }
    // A reachable manifest that is present but does not match is corrupt, not missing.
    report.missing = missing
        .into_iter()
        .filter(|d| !report.corrupt.contains(d))
        .filter(|d| !layout.blob_path(d).is_file())
        .collect();
    Ok(report)
}

fn hash_file(path: &Path, algorithm: Algorithm) -> Result<Digest> {
    let mut file = fs::File::open(path).map_err(|e| Error::io("cannot open", path, e))?;
    let mut digester = Digester::new(algorithm);
    std::io::copy(&mut file, &mut digester).map_err(|e| Error::io("cannot read", path, e))?;
    Ok(digester.finish())
}
