//! One OCI image layout directory on disk: its files, the lock that serialises changes to
//! `index.json`, and crash-safe writes.
//!
//! On-disk protocol (every write):
//! 1. new content goes to a uniquely named file under `.hoist/tmp/` (never under `blobs/`);
//! 2. it is fsynced, checked (digest and size for blobs), then renamed into place;
//! 3. the directory that received it is fsynced: at once for `index.json` and `oci-layout`,
//!    and for blobs before the next change of `index.json` (which fsyncs `blobs/` and each
//!    algorithm's directory first). A crash may lose blobs that nothing names yet, never one
//!    the index names, whichever process wrote it.
//!
//! `index.json` changes only while holding an exclusive advisory lock on `.hoist/lock`, and is
//! read again under that lock before each change, so concurrent processes never lose each
//! other's updates. Readers need no lock: the rename makes each version appear whole.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use futures::StreamExt;
use oci_store::{BlobBody, PushCheck};
use oci_types::{Descriptor, Digest, Digester};
use rand::Rng;

use crate::direct::{AlignedBuffer, Piece, gathering_size, write_new_file};
use crate::index::IndexFile;
use crate::{Error, Result};

/// The directory where hoist keeps its own files inside a layout. Other tools ignore it (the
/// image-layout spec tells them to tolerate unknown files).
pub(crate) const HOIST_DIR: &str = ".hoist";
/// The `imageLayoutVersion` hoist writes.
pub(crate) const LAYOUT_VERSION: &str = "1.0.0";
/// How many gathering buffers one blob write uses at most: one being filled, one waiting and
/// one being written. The memory a blob write holds is about this many times
/// [`gathering_size`].
const BUFFERS_PER_WRITE: usize = 3;

/// How many uploads at most keep a running hash in memory (each a few hundred bytes).
const MAX_RUNNING_HASHES: usize = 4096;

/// The largest `index.json` read (about 200,000 tags): a layout may come from anywhere, and
/// the index is read whole.
pub(crate) const MAX_INDEX_SIZE: u64 = 64 << 20;

/// One layout directory.
#[derive(Debug)]
pub(crate) struct Layout {
    dir: PathBuf,
    /// SHA-256 of each upload's data as far as this process wrote it, by upload id, so that a
    /// commit need not read the data back (uploads resumed from another process, or committed
    /// with another algorithm, are read back).
    running_hashes: std::sync::Mutex<HashMap<String, RunningHash>>,
}

/// The hash of an upload's first `size` bytes.
struct RunningHash {
    digester: Digester,
    size: u64,
}

impl std::fmt::Debug for RunningHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningHash")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Layout {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            running_hashes: std::sync::Mutex::default(),
        }
    }

    fn running_hashes(&self) -> std::sync::MutexGuard<'_, HashMap<String, RunningHash>> {
        self.running_hashes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes the running hash of upload `id` if it covers exactly its `size` bytes on disk.
    pub(crate) fn take_running_hash(&self, id: &str, size: u64) -> Option<Digester> {
        let hash = self.running_hashes().remove(id)?;
        (hash.size == size).then_some(hash.digester)
    }

    /// Keeps the hash of upload `id`'s first `size` bytes for the next writer of it in this
    /// process.
    pub(crate) fn keep_running_hash(&self, id: &str, digester: Digester, size: u64) {
        let mut hashes = self.running_hashes();
        if hashes.len() < MAX_RUNNING_HASHES || hashes.contains_key(id) {
            hashes.insert(id.to_owned(), RunningHash { digester, size });
        }
    }

    /// Forgets upload `id`'s running hash (committed or cancelled).
    pub(crate) fn forget_running_hash(&self, id: &str) {
        self.running_hashes().remove(id);
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn blob_path(&self, digest: &Digest) -> PathBuf {
        // A `Digest` is validated: its parts are `[a-z0-9]` only, so this stays inside `blobs/`.
        self.dir
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(digest.encoded())
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.dir.join(HOIST_DIR).join("tmp")
    }

    pub(crate) fn uploads_dir(&self) -> PathBuf {
        self.dir.join(HOIST_DIR).join("uploads")
    }

    fn lock_path(&self) -> PathBuf {
        self.dir.join(HOIST_DIR).join("lock")
    }

    /// Whether the layout has been created (its `oci-layout` file exists).
    pub(crate) fn exists(&self) -> bool {
        self.dir.join("oci-layout").is_file()
    }

    /// Checks an existing layout's `oci-layout` and `index.json`; a directory that is missing or
    /// empty is a layout yet to be created.
    pub(crate) fn validate(&self) -> Result<()> {
        let header = self.dir.join("oci-layout");
        match read_at_most(&header, 64 << 10) {
            Ok(None) => Err(Error::InvalidLayout {
                path: header,
                reason: "larger than 64 KiB, not an oci-layout file".to_owned(),
            }),
            Ok(Some(bytes)) => {
                let value: serde_json::Value =
                    serde_json::from_slice(&bytes).map_err(|e| Error::InvalidLayout {
                        path: header.clone(),
                        reason: format!("not valid JSON: {e}"),
                    })?;
                let version = value
                    .get("imageLayoutVersion")
                    .and_then(serde_json::Value::as_str);
                if !version.is_some_and(|v| v.starts_with("1.")) {
                    return Err(Error::InvalidLayout {
                        path: header,
                        reason: format!("imageLayoutVersion is {version:?}, expected 1.x"),
                    });
                }
                self.read_index()?;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // `ensure_created` makes these before it writes `oci-layout` last: another
                // process may be creating the layout right now.
                let being_created = |name: &std::ffi::OsStr| {
                    name == "blobs" || name == "index.json" || name == HOIST_DIR
                };
                let names: Vec<std::ffi::OsString> = match fs::read_dir(&self.dir) {
                    Ok(entries) => entries
                        .filter_map(std::result::Result::ok)
                        .map(|entry| entry.file_name())
                        .collect(),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
                    Err(e) => return Err(Error::io("cannot read directory", &self.dir, e)),
                };
                // The creating process may have finished between the read above and the
                // listing: then the layout is there to check.
                if names.iter().any(|name| name == "oci-layout") && self.exists() {
                    return self.validate();
                }
                let fresh = names.iter().all(|name| being_created(name));
                if fresh {
                    Ok(())
                } else {
                    Err(Error::InvalidLayout {
                        path: self.dir.clone(),
                        reason: "not an OCI image layout: it has files but no oci-layout file"
                            .to_owned(),
                    })
                }
            }
            Err(e) => Err(Error::io("cannot read", header, e)),
        }
    }

    /// Reads `index.json`; a layout not yet created has an empty index.
    pub(crate) fn read_index(&self) -> Result<IndexFile> {
        let path = self.dir.join("index.json");
        match read_at_most(&path, MAX_INDEX_SIZE) {
            Ok(Some(bytes)) => {
                IndexFile::parse(&bytes).map_err(|reason| Error::InvalidLayout { path, reason })
            }
            Ok(None) => Err(Error::InvalidLayout {
                path,
                reason: format!("larger than {MAX_INDEX_SIZE} bytes"),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound && !self.exists() => {
                Ok(IndexFile::empty())
            }
            Err(e) => Err(Error::io("cannot read", path, e)),
        }
    }

    /// Creates the layout's skeleton if it is missing: `oci-layout`, `index.json`, `blobs/` and
    /// hoist's own directories. Safe to call from many processes at once.
    pub(crate) fn ensure_created(&self) -> Result<()> {
        for dir in [self.dir.join("blobs"), self.tmp_dir(), self.uploads_dir()] {
            fs::create_dir_all(&dir).map_err(|e| Error::io("cannot create directory", dir, e))?;
        }
        if self.exists() && self.dir.join("index.json").is_file() {
            return Ok(());
        }
        let _lock = self.lock()?;
        if !self.dir.join("index.json").is_file() {
            self.write_atomically("index.json", &IndexFile::empty().to_json())?;
        }
        if !self.exists() {
            let header = format!("{{\"imageLayoutVersion\":\"{LAYOUT_VERSION}\"}}");
            self.write_atomically("oci-layout", header.as_bytes())?;
        }
        Ok(())
    }

    /// Takes the exclusive lock that serialises changes to `index.json` (blocking).
    fn lock(&self) -> Result<File> {
        let path = self.lock_path();
        let hoist_dir = self.dir.join(HOIST_DIR);
        // A layout written by another tool has no `.hoist/` yet.
        fs::create_dir_all(&hoist_dir)
            .map_err(|e| Error::io("cannot create directory", hoist_dir, e))?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("cannot open lock file", &path, e))?;
        file.lock()
            .map_err(|e| Error::io("cannot lock", &path, e))?;
        Ok(file)
    }

    /// Takes the layout's lock for maintenance (gc), which must not race with manifest pushes
    /// (blocking).
    pub(crate) fn lock_for_maintenance(&self) -> Result<File> {
        self.lock()
    }

    /// Changes `index.json` under the lock: reads it again, applies `change`, and writes it back
    /// atomically when `change` reports that it changed something (blocking).
    pub(crate) fn update_index<R>(
        &self,
        change: impl FnOnce(&mut IndexFile) -> oci_store::Result<(bool, R)>,
    ) -> oci_store::Result<R> {
        self.ensure_created()?;
        let _lock = self.lock()?;
        let mut index = self.read_index()?;
        let (changed, result) = change(&mut index)?;
        if changed {
            self.sync_blob_dirs()?;
            self.write_atomically("index.json", &index.to_json())?;
        }
        Ok(result)
    }

    /// Fsyncs `blobs/` and each algorithm's directory in it, so that every blob renamed into
    /// them so far, by this process or another, survives a crash (blocking). Blob writes leave
    /// this to the next change of `index.json`: one sync there instead of one per blob, and
    /// still before anything can name the blob.
    fn sync_blob_dirs(&self) -> Result<()> {
        let blobs = self.dir.join("blobs");
        let entries = match fs::read_dir(&blobs) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("cannot read directory", blobs, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("cannot read directory", &blobs, e))?;
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                sync_dir(&entry.path())?;
            }
        }
        sync_dir(&blobs)
    }

    /// Writes a file of the layout's top directory through a temporary file, fsync and rename,
    /// then fsyncs the directory (blocking).
    fn write_atomically(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let tmp = self.tmp_dir().join(format!("{name}.{}.tmp", random_id()));
        let result = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(|e| Error::io("cannot create", &tmp, e))?;
            file.write_all(bytes)
                .map_err(|e| Error::io("cannot write", &tmp, e))?;
            file.sync_all()
                .map_err(|e| Error::io("cannot sync", &tmp, e))?;
            let target = self.dir.join(name);
            fs::rename(&tmp, &target)
                .map_err(|e| Error::io("cannot rename into place", target, e))?;
            sync_dir(&self.dir)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Stores a blob from a stream: the content goes to a temporary file while it is hashed;
    /// only if digest and size match is it fsynced and renamed into `blobs/`. A blob already
    /// present is verified against the stream but not written again.
    pub(crate) async fn write_blob(
        &self,
        descriptor: &Descriptor,
        mut body: BlobBody,
    ) -> oci_store::Result<()> {
        let target = self.blob_path(&descriptor.digest);
        if tokio::fs::metadata(&target)
            .await
            .is_ok_and(|m| m.len() == descriptor.size)
        {
            let mut check = PushCheck::for_body(descriptor, &body);
            while let Some(chunk) = body.next().await {
                check.update(&chunk?)?;
            }
            return check.finish();
        }
        self.ensure_created_async().await?;
        let tmp = self.tmp_dir().join(format!("blob-{}.partial", random_id()));
        let result = self.write_blob_to(descriptor, body, &tmp, &target).await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }

    async fn write_blob_to(
        &self,
        descriptor: &Descriptor,
        mut body: BlobBody,
        tmp: &Path,
        target: &Path,
    ) -> oci_store::Result<()> {
        let io = |context: &str, path: &Path| {
            let context = format!("{context} {}", path.display());
            move |e| oci_store::Error::io(context, e)
        };
        // One thread writes, fed through a bounded channel: gathered buffers go to it and come
        // back to be filled again, and hashing on this side runs up to two buffers ahead of
        // the disk (tokio's own file type copies every buffer and overlaps only one write).
        let (sender, mut receiver) = tokio::sync::mpsc::channel::<Piece>(BUFFERS_PER_WRITE);
        let (give_back, mut given_back) = tokio::sync::mpsc::unbounded_channel::<AlignedBuffer>();
        // Set when the content failed its checks: the file is deleted, so not synced.
        let abandoned = Arc::new(AtomicBool::new(false));
        let writer_abandoned = Arc::clone(&abandoned);
        let (tmp_owned, target_owned) = (tmp.to_path_buf(), target.to_path_buf());
        let gather = gathering_size(descriptor.size);
        // The writing thread also moves the file into place: one hand-off per blob, not three.
        let writer = tokio::task::spawn_blocking(move || -> oci_store::Result<()> {
            let (tmp, target) = (tmp_owned, target_owned);
            write_new_file(
                &tmp,
                gather,
                || receiver.blocking_recv(),
                |buffer| {
                    let _ = give_back.send(buffer);
                },
                &writer_abandoned,
            )
            .map_err(io("cannot write", &tmp))?;
            if writer_abandoned.load(Ordering::Relaxed) {
                return Ok(());
            }
            let parent = target.parent().unwrap_or(&target);
            fs::create_dir_all(parent).map_err(io("cannot create directory", parent))?;
            // Made durable with the next change of `index.json` (`sync_blob_dirs`).
            fs::rename(&tmp, &target).map_err(io("cannot rename into place", &target))
        });
        let mut check = PushCheck::for_body(descriptor, &body);
        let fed: oci_store::Result<()> = async {
            let mut filling = AlignedBuffer::with_capacity(gather);
            let mut buffers = 1;
            'feed: while let Some(chunk) = body.next().await {
                let chunk: Bytes = chunk?;
                check.update(&chunk)?;
                if filling.is_empty() && chunk.len() >= gather {
                    // Already large: handed over as it is. Through the page cache it is written
                    // without a copy; a direct write stages it on the writer's thread, not here.
                    if sender.send(Piece::Whole(chunk)).await.is_err() {
                        break;
                    }
                    continue;
                }
                // Small pieces (from a network, say) are gathered into larger writes.
                let mut rest: &[u8] = &chunk;
                while !rest.is_empty() {
                    rest = &rest[filling.fill(rest)..];
                    if !filling.is_full() {
                        continue;
                    }
                    let full = Piece::Gathered(std::mem::take(&mut filling));
                    if sender.send(full).await.is_err() {
                        // The writer stopped: its own error says why.
                        break 'feed;
                    }
                    filling = match given_back.try_recv() {
                        Ok(buffer) => buffer,
                        Err(_) if buffers < BUFFERS_PER_WRITE => {
                            buffers += 1;
                            AlignedBuffer::with_capacity(gather)
                        }
                        Err(_) => match given_back.recv().await {
                            Some(buffer) => buffer,
                            None => break 'feed,
                        },
                    };
                }
            }
            if !filling.is_empty() {
                let _ = sender.send(Piece::Gathered(filling)).await;
            }
            Ok(())
        }
        .await;
        // Known before the writer finishes, so that content refused is neither synced nor
        // moved into place.
        let verdict = check.finish();
        if fed.is_err() || verdict.is_err() {
            abandoned.store(true, Ordering::Relaxed);
        }
        drop(sender);
        let written = writer.await.map_err(join_error)?;
        fed?;
        written?;
        verdict
    }

    /// Moves a verified file (a finished upload) into `blobs/` (blocking).
    pub(crate) fn install_blob(&self, file: &Path, digest: &Digest) -> Result<()> {
        let target = self.blob_path(digest);
        let parent = target.parent().map(Path::to_path_buf).unwrap_or_default();
        fs::create_dir_all(&parent)
            .map_err(|e| Error::io("cannot create directory", &parent, e))?;
        File::open(file)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io("cannot sync", file, e))?;
        // Made durable with the next change of `index.json` (`sync_blob_dirs`).
        fs::rename(file, &target).map_err(|e| Error::io("cannot rename into place", &target, e))
    }

    pub(crate) async fn ensure_created_async(&self) -> oci_store::Result<()> {
        // A layout another tool wrote exists without hoist's own directories.
        if self.exists() && self.tmp_dir().is_dir() && self.uploads_dir().is_dir() {
            return Ok(());
        }
        let layout = Self::new(self.dir.clone());
        tokio::task::spawn_blocking(move || layout.ensure_created())
            .await
            .map_err(join_error)??;
        Ok(())
    }
}

/// The file at `path` whole, or `None` when it holds more than `max` bytes (read no further).
pub(crate) fn read_at_most(path: &Path, max: u64) -> io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    File::open(path)?.take(max + 1).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= max).then_some(bytes))
}

/// Fsyncs a directory so that a rename into it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("cannot sync directory", dir, e))
}

/// 32 random hex characters: names of temporary files and upload ids.
pub(crate) fn random_id() -> String {
    format!("{:032x}", rand::rng().random::<u128>())
}

pub(crate) fn join_error(error: tokio::task::JoinError) -> oci_store::Error {
    oci_store::Error::Backend {
        backend: "oci-layout".to_owned(),
        message: "a blocking file operation failed".to_owned(),
        source: Some(Box::new(error)),
    }
}
