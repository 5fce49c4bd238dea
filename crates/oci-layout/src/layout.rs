//! One OCI image layout directory on disk: its files, the lock that serialises changes to
//! `index.json`, and crash-safe writes.
//!
//! On-disk protocol (every write):
//! 1. new content goes to a uniquely named file under `.hoist/tmp/` (never under `blobs/`);
//! 2. it is fsynced, checked (digest and size for blobs), then renamed into place;
//! 3. the directory that received it is fsynced.
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

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use oci_store::{BlobBody, PushCheck};
use oci_types::{Descriptor, Digest, Digester};
use rand::Rng;

use crate::index::IndexFile;
use crate::{Error, Result};

/// The directory where hoist keeps its own files inside a layout. Other tools ignore it (the
/// image-layout spec tells them to tolerate unknown files).
pub(crate) const HOIST_DIR: &str = ".hoist";
/// The `imageLayoutVersion` hoist writes.
pub(crate) const LAYOUT_VERSION: &str = "1.0.0";
/// How many bytes a write to disk gathers at least (fewer, larger writes).
const WRITE_BUFFER: usize = 256 << 10;
/// How many buffers may wait for the writer thread: the memory a blob write holds at most is
/// about this many times [`WRITE_BUFFER`].
const WRITE_QUEUE: usize = 2;
/// After this many new bytes of a blob, the disk is asked to start writing them out.
const WRITEBACK_STEP: u64 = 16 << 20;

/// How many uploads at most keep a running hash in memory (each a few hundred bytes).
const MAX_RUNNING_HASHES: usize = 4096;

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
        match fs::read(&header) {
            Ok(bytes) => {
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
        match fs::read(&path) {
            Ok(bytes) => {
                IndexFile::parse(&bytes).map_err(|reason| Error::InvalidLayout { path, reason })
            }
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
            self.write_atomically("index.json", &index.to_json())?;
        }
        Ok(result)
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
        // One thread writes, fed through a bounded channel: buffers change hands without a
        // copy, and hashing on this side runs up to WRITE_QUEUE buffers ahead of the disk
        // (tokio's own file type copies every buffer and overlaps only one write).
        let (sender, mut receiver) = tokio::sync::mpsc::channel::<Bytes>(WRITE_QUEUE);
        let path = tmp.to_path_buf();
        // Set when the content failed its checks: the file is deleted, so not synced.
        let abandoned = Arc::new(AtomicBool::new(false));
        let writer_abandoned = Arc::clone(&abandoned);
        let writer = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            write_new_file(&path, || receiver.blocking_recv(), &writer_abandoned)
        });
        let mut check = PushCheck::for_body(descriptor, &body);
        // Buffers of exactly WRITE_BUFFER bytes: one that grew past it (by `extend`) would keep
        // twice the capacity alive in the queue.
        let mut pending = BytesMut::with_capacity(WRITE_BUFFER);
        let fed: oci_store::Result<()> = async {
            'feed: while let Some(chunk) = body.next().await {
                let mut chunk: Bytes = chunk?;
                check.update(&chunk)?;
                if pending.is_empty() && chunk.len() >= WRITE_BUFFER {
                    // Already large: written as it is, without a copy.
                    if sender.send(chunk).await.is_err() {
                        break;
                    }
                    continue;
                }
                // Small pieces (from a network, say) are gathered into larger writes.
                while !chunk.is_empty() {
                    let take = (WRITE_BUFFER - pending.len()).min(chunk.len());
                    pending.extend_from_slice(&chunk.split_to(take));
                    if pending.len() == WRITE_BUFFER {
                        let full =
                            std::mem::replace(&mut pending, BytesMut::with_capacity(WRITE_BUFFER));
                        if sender.send(full.freeze()).await.is_err() {
                            // The writer stopped: its own error says why.
                            break 'feed;
                        }
                    }
                }
            }
            if !pending.is_empty() {
                let _ = sender.send(pending.split().freeze()).await;
            }
            Ok(())
        }
        .await;
        // Known before the writer finishes, so that content refused is not synced first.
        let verdict = check.finish();
        if fed.is_err() || verdict.is_err() {
            abandoned.store(true, Ordering::Relaxed);
        }
        drop(sender);
        let written = writer.await.map_err(join_error)?;
        fed?;
        written.map_err(io("cannot write", tmp))?;
        verdict?;
        let parent = target.parent().map(Path::to_path_buf).unwrap_or_default();
        tokio::fs::create_dir_all(&parent)
            .await
            .map_err(io("cannot create directory", &parent))?;
        tokio::fs::rename(tmp, target)
            .await
            .map_err(io("cannot rename into place", target))?;
        tokio::task::spawn_blocking(move || sync_dir(&parent))
            .await
            .map_err(join_error)??;
        Ok(())
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
        fs::rename(file, &target).map_err(|e| Error::io("cannot rename into place", &target, e))?;
        sync_dir(&parent)
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

/// Writes every buffer `next` gives into the new file `path`, then syncs its data (blocking).
///
/// On Linux the file is written with `O_DIRECT` where its filesystem takes it, through a
/// [`DirectFile`]. Elsewhere, or where the filesystem refuses `O_DIRECT` (ramfs, tmpfs before
/// Linux 6.6), the writes go through the page cache, with [`write_through`] keeping the disk
/// busy meanwhile.
fn write_new_file(
    path: &Path,
    mut next: impl FnMut() -> Option<Bytes>,
    abandoned: &AtomicBool,
) -> std::io::Result<()> {
    let mut file = DirectFile::create(path)?;
    if !file.is_direct() {
        return match file.buffered.take() {
            Some(mut buffered) => write_through(&mut buffered, next, abandoned),
            None => Err(std::io::Error::other("no handle to write with")),
        };
    }
    while let Some(piece) = next() {
        file.write(&piece)?;
    }
    file.finish()?;
    if abandoned.load(Ordering::Relaxed) {
        return Ok(());
    }
    file.sync()
}

/// The alignment `O_DIRECT` asks of buffers, offsets and lengths (a page: enough for any
/// logical block size in use).
pub(crate) const DIRECT_ALIGN: usize = 4096;

/// A file being written at its end, with `O_DIRECT` where the system allows it (blocking): the
/// one implementation of direct writes, used by blob pushes ([`write_new_file`]) and by chunked
/// uploads (`LayoutWriter`).
///
/// Why: a buffered write copies every byte into fresh page-cache pages, and on virtual machines,
/// whose fresh memory pages are slow to touch, that copy is most of a pull's CPU. With
/// `O_DIRECT` the content goes from an aligned buffer of ours to the disk without that copy
/// (`cargo xtask bench layout` measures both against `dd`).
///
/// How: content is gathered into an aligned staging buffer of [`WRITE_BUFFER`] bytes, written
/// directly each time it fills; the bytes that do not fill an aligned block at the end go
/// through an ordinary handle appending to the same file, by [`DirectFile::finish`]. Where the
/// filesystem refuses `O_DIRECT` at open (`EINVAL`: ramfs, tmpfs before Linux 6.6), or the disk
/// refuses a direct write, or the file's end is not aligned, everything (from then on) goes
/// through that ordinary handle. Invariant: the direct handle, while there is one, is
/// positioned at the end of the file, because nothing was written through the other one yet.
pub(crate) struct DirectFile {
    path: PathBuf,
    /// `WRITE_BUFFER + DIRECT_ALIGN` bytes once first needed; the staged bytes are
    /// `staging[start..start + filled]`, `start` being where the aligned part begins (moving the
    /// `Vec` does not move its heap buffer).
    staging: Vec<u8>,
    start: usize,
    filled: usize,
    /// The `O_DIRECT` handle, while direct writes are possible.
    direct: Option<File>,
    /// An ordinary handle appending to the same file, opened when first needed.
    buffered: Option<File>,
}

impl DirectFile {
    /// Creates `path`, which must not exist.
    pub(crate) fn create(path: &Path) -> std::io::Result<Self> {
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::fs::OpenOptionsExt;
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_DIRECT)
                .open(path)
            {
                Ok(file) => Ok(Self::new(path, Some(file), None)),
                // The filesystem does not do direct I/O (ramfs; tmpfs before Linux 6.6); the
                // file was created all the same.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Self::create_buffered(path),
                Err(e) => Err(e),
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            OpenOptions::new().write(true).create_new(true).open(path)?;
            Self::create_buffered(path)
        }
    }

    /// [`DirectFile::create`] where direct I/O is not available: `path` (made or emptied)
    /// written through the page cache.
    fn create_buffered(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(Self::new(path, None, Some(file)))
    }

    /// Opens the existing file `path` to write after its end; gives its length too.
    ///
    /// A file whose length is not a multiple of [`DIRECT_ALIGN`] (an upload closed with an
    /// unaligned tail) cannot take direct writes at its end: it is written through the page
    /// cache from then on.
    pub(crate) fn append_to(path: &Path) -> std::io::Result<(Self, u64)> {
        let buffered = OpenOptions::new().append(true).open(path)?;
        let len = buffered.metadata()?.len();
        let direct = if len % DIRECT_ALIGN as u64 == 0 {
            Self::open_direct_at(path, len)?
        } else {
            None
        };
        Ok((Self::new(path, direct, Some(buffered)), len))
    }

    /// An `O_DIRECT` handle on `path` positioned at `offset`, or `None` where the filesystem
    /// refuses direct I/O.
    #[cfg(target_os = "linux")]
    fn open_direct_at(path: &Path, offset: u64) -> std::io::Result<Option<File>> {
        use std::io::{Seek, SeekFrom};
        use std::os::unix::fs::OpenOptionsExt;
        match OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
        {
            Ok(mut file) => {
                file.seek(SeekFrom::Start(offset))?;
                Ok(Some(file))
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(None),
            Err(e) => Err(e),
        }
    }

    #[cfg(not(target_os = "linux"))]
    #[allow(clippy::unnecessary_wraps)]
    fn open_direct_at(_path: &Path, _offset: u64) -> std::io::Result<Option<File>> {
        Ok(None)
    }

    fn new(path: &Path, direct: Option<File>, buffered: Option<File>) -> Self {
        Self {
            path: path.to_path_buf(),
            staging: Vec::new(),
            start: 0,
            filled: 0,
            direct,
            buffered,
        }
    }

    /// Whether writes still go to the disk directly.
    pub(crate) fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// Adds `bytes` to the staging buffer if they fit without filling it, so without any I/O
    /// (cheap enough for an async thread); says whether it did.
    pub(crate) fn try_stage(&mut self, bytes: &[u8]) -> bool {
        let fits = self.filled + bytes.len() < WRITE_BUFFER;
        if fits {
            self.copy_in(bytes);
        }
        fits
    }

    fn copy_in(&mut self, bytes: &[u8]) {
        if self.staging.is_empty() {
            self.staging = vec![0u8; WRITE_BUFFER + DIRECT_ALIGN];
            self.start = self
                .staging
                .as_ptr()
                .align_offset(DIRECT_ALIGN)
                .min(DIRECT_ALIGN);
        }
        let at = self.start + self.filled;
        self.staging[at..at + bytes.len()].copy_from_slice(bytes);
        self.filled += bytes.len();
    }

    /// Appends `bytes`: staged, and written a full staging buffer at a time.
    pub(crate) fn write(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            if self.direct.is_none() && self.filled == 0 && bytes.len() >= WRITE_BUFFER {
                // Through the page cache, a large piece needs no gathering (nor a copy).
                return self.write_buffered(bytes);
            }
            let take = (WRITE_BUFFER - self.filled).min(bytes.len());
            self.copy_in(&bytes[..take]);
            bytes = &bytes[take..];
            if self.filled == WRITE_BUFFER {
                self.write_staged(WRITE_BUFFER)?;
            }
        }
        Ok(())
    }

    /// Writes the first `len` staged bytes (a multiple of [`DIRECT_ALIGN`]) and moves the rest
    /// to the front.
    fn write_staged(&mut self, len: usize) -> std::io::Result<()> {
        let (start, filled) = (self.start, self.filled);
        let mut staging = std::mem::take(&mut self.staging);
        let result = self.write_blocks(&staging[start..start + len]);
        staging.copy_within(start + len..start + filled, start);
        self.staging = staging;
        self.filled -= len;
        result
    }

    /// Writes what is staged: the aligned blocks directly, the tail through the page cache.
    /// Nothing can be written directly after a tail: this ends the file's direct writing.
    pub(crate) fn finish(&mut self) -> std::io::Result<()> {
        let aligned = self.filled / DIRECT_ALIGN * DIRECT_ALIGN;
        self.write_staged(aligned)?;
        let (start, filled) = (self.start, self.filled);
        let staging = std::mem::take(&mut self.staging);
        let result = self.write_buffered(&staging[start..start + filled]);
        self.staging = staging;
        self.filled = 0;
        result
    }

    /// Writes whole aligned blocks (directly, unless that was refused).
    fn write_blocks(&mut self, mut blocks: &[u8]) -> std::io::Result<()> {
        while let (Some(direct), false) = (&mut self.direct, blocks.is_empty()) {
            match direct.write(blocks) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) if n % DIRECT_ALIGN == 0 => blocks = &blocks[n..],
                // A short, unaligned write (out of space, say): the rest cannot go direct.
                Ok(n) => {
                    blocks = &blocks[n..];
                    self.direct = None;
                }
                #[cfg(target_os = "linux")]
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    tracing::debug!(path = %self.path.display(), "direct write refused; writing through the page cache");
                    self.direct = None;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.write_buffered(blocks)
    }

    /// Appends through the page cache, which ends direct writing (the direct handle's position
    /// would no longer be the end of the file).
    fn write_buffered(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.direct = None;
        if self.buffered.is_none() {
            self.buffered = Some(OpenOptions::new().append(true).open(&self.path)?);
        }
        match &mut self.buffered {
            Some(file) => file.write_all(bytes),
            None => Ok(()),
        }
    }

    /// Makes what was written durable (what is staged is not: [`DirectFile::finish`] first).
    /// Either handle will do: a sync is of the file, whichever handle wrote.
    pub(crate) fn sync(&self) -> std::io::Result<()> {
        match (&self.direct, &self.buffered) {
            (Some(file), _) | (None, Some(file)) => file.sync_data(),
            (None, None) => File::open(&self.path)?.sync_data(),
        }
    }
}

/// Writes every buffer `next` gives to `file`, then syncs its data (blocking).
///
/// The kernel would otherwise keep a whole blob in the page cache and write it only when the
/// final sync asks, so that the disk sat idle while the content arrived and the sync then
/// waited for all of it. A second thread syncs the file each time [`WRITEBACK_STEP`] more
/// bytes were written, which keeps the disk busy while the writing goes on, and leaves the
/// final sync only the tail.
fn write_through(
    file: &mut File,
    mut next: impl FnMut() -> Option<Bytes>,
    abandoned: &AtomicBool,
) -> std::io::Result<()> {
    let early = file.try_clone()?;
    std::thread::scope(|scope| {
        // Capacity one: a request made while a sync runs waits for it; further ones are
        // dropped, since the sync after the waiting one covers their bytes too.
        let (request, requests) = std::sync::mpsc::sync_channel::<()>(1);
        let syncer = scope.spawn(move || -> std::io::Result<()> {
            let mut first_error = None;
            while requests.recv().is_ok() {
                // The handles share one open file, and the kernel reports a writeback error
                // to it once: an error here must reach the caller, not only the next sync.
                if let Err(e) = early.sync_data() {
                    first_error.get_or_insert(e);
                }
            }
            first_error.map_or(Ok(()), Err)
        });
        let mut written = 0u64;
        let mut requested = 0u64;
        while let Some(buffer) = next() {
            file.write_all(&buffer)?;
            written += buffer.len() as u64;
            if written - requested >= WRITEBACK_STEP {
                let _ = request.try_send(());
                requested = written;
            }
        }
        drop(request);
        syncer
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the syncing thread panicked")))
    })?;
    if abandoned.load(Ordering::Relaxed) {
        return Ok(());
    }
    file.sync_data()
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `len` bytes that differ from block to block (so a block written twice or at the wrong
    /// offset shows).
    pub(crate) fn content(len: usize) -> Vec<u8> {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[3]
            })
            .collect()
    }

    /// Pieces of odd sizes around the alignment and the staging buffer, which add up to an
    /// unaligned length.
    pub(crate) const ODD_PIECES: &[usize] = &[
        1,
        4095,
        4097,
        (1 << 20) + 3,
        WRITE_BUFFER,
        WRITE_BUFFER - 1,
        333,
        3 * WRITE_BUFFER + 5,
    ];

    /// A scratch directory, and how a test's files in it are written.
    pub(crate) struct ScratchDir {
        pub(crate) dir: tempfile::TempDir,
        /// Whether the filesystem takes `O_DIRECT`.
        pub(crate) fs_direct: bool,
        /// Whether files are made as [`DirectFile::create`] makes them where the filesystem
        /// refuses `O_DIRECT` (even though this one takes it).
        pub(crate) refusal_simulated: bool,
    }

    impl ScratchDir {
        /// Whether a new file is written directly.
        pub(crate) fn direct(&self) -> bool {
            self.fs_direct && !self.refusal_simulated
        }

        fn create(&self, path: &Path) -> DirectFile {
            let file = if self.refusal_simulated {
                DirectFile::create_buffered(path)
            } else {
                DirectFile::create(path)
            };
            file.unwrap()
        }
    }

    /// Scratch directories on this machine, one per kind as far as it has them: one whose
    /// filesystem takes `O_DIRECT` (the temporary directory, or the test binary's under
    /// `target/`), one whose filesystem refuses it (`/dev/shm` before Linux 6.6, when tmpfs
    /// learnt `O_DIRECT`; or the directory `OCI_LAYOUT_NO_DIRECT_DIR` names, say a ramfs
    /// mounted in a private mount namespace:
    /// `unshare -m sh -c 'mount -t ramfs ramfs D && OCI_LAYOUT_NO_DIRECT_DIR=D cargo test'`),
    /// and, with `simulate`, a refusal simulated in the temporary directory.
    pub(crate) fn scratch_dirs(simulate: bool) -> Vec<ScratchDir> {
        let mut candidates = vec![std::env::temp_dir()];
        if let Some(dir) = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(Path::to_path_buf))
        {
            candidates.push(dir);
        }
        candidates.push(PathBuf::from("/dev/shm"));
        candidates.extend(std::env::var_os("OCI_LAYOUT_NO_DIRECT_DIR").map(PathBuf::from));
        let scratch = |parent: &Path| {
            tempfile::Builder::new()
                .prefix("oci-layout-direct-")
                .tempdir_in(parent)
        };
        let mut found: Vec<ScratchDir> = Vec::new();
        for candidate in candidates {
            let Ok(dir) = scratch(&candidate) else {
                continue;
            };
            let probe = dir.path().join("probe");
            let fs_direct = DirectFile::create(&probe).is_ok_and(|file| file.is_direct());
            fs::remove_file(&probe).unwrap();
            if found.iter().all(|other| other.fs_direct != fs_direct) {
                found.push(ScratchDir {
                    dir,
                    fs_direct,
                    refusal_simulated: false,
                });
            }
        }
        #[allow(clippy::print_stderr)] // A test saying what it could not test, as the suite does.
        for kind in [true, false] {
            if found.iter().all(|other| other.fs_direct != kind) {
                let what = if kind { "takes" } else { "refuses" };
                eprintln!("no filesystem here {what} O_DIRECT: that case is not tested");
            }
        }
        if simulate {
            found.push(ScratchDir {
                dir: scratch(&std::env::temp_dir()).unwrap(),
                fs_direct: found.first().is_some_and(|first| first.fs_direct),
                refusal_simulated: true,
            });
        }
        found
    }

    fn write_pieces(file: &mut DirectFile, data: &[u8], pieces: &[usize]) -> usize {
        let mut at = 0;
        for &len in pieces {
            file.write(&data[at..at + len]).unwrap();
            at += len;
        }
        at
    }

    #[test]
    fn odd_pieces_come_back_whole() {
        for scratch in scratch_dirs(true) {
            let path = scratch.dir.path().join("file");
            let total: usize = ODD_PIECES.iter().sum();
            let data = content(total);
            let mut file = scratch.create(&path);
            assert_eq!(file.is_direct(), scratch.direct());
            write_pieces(&mut file, &data, ODD_PIECES);
            // Only whole blocks were written so far, directly where the filesystem takes it.
            assert_eq!(file.is_direct(), scratch.direct());
            let written = fs::metadata(&path).unwrap().len() as usize;
            if scratch.direct() {
                assert_eq!(written % DIRECT_ALIGN, 0);
            }
            assert_eq!(written + file.filled, total);
            file.finish().unwrap();
            file.sync().unwrap();
            assert!(!file.is_direct(), "an unaligned tail ends direct writing");
            assert_eq!(
                fs::read(&path).unwrap(),
                data,
                "direct: {}",
                scratch.direct()
            );
        }
    }

    #[test]
    fn staged_bytes_are_written_with_the_next_full_buffer() {
        for scratch in scratch_dirs(true) {
            let path = scratch.dir.path().join("file");
            let data = content(2 * WRITE_BUFFER + 7);
            let mut file = scratch.create(&path);
            let mut at = 0;
            while at + 1000 < WRITE_BUFFER {
                assert!(file.try_stage(&data[at..at + 1000]));
                at += 1000;
            }
            assert!(
                !file.try_stage(&data[at..]),
                "a piece that fills the buffer is not staged"
            );
            assert_eq!(
                fs::metadata(&path).unwrap().len(),
                0,
                "staging writes nothing"
            );
            file.write(&data[at..]).unwrap();
            file.finish().unwrap();
            file.sync().unwrap();
            assert_eq!(
                fs::read(&path).unwrap(),
                data,
                "direct: {}",
                scratch.direct()
            );
        }
    }

    #[test]
    fn appending_continues_directly_only_at_an_aligned_end() {
        for scratch in scratch_dirs(true) {
            let path = scratch.dir.path().join("file");
            let data = content(6 << 20);
            let mut file = scratch.create(&path);
            let mut at = write_pieces(&mut file, &data, &[1 << 20]);
            file.finish().unwrap();
            file.sync().unwrap();
            // Aligned: direct writing goes on where the filesystem takes it (whatever wrote
            // the file before).
            let (mut file, len) = DirectFile::append_to(&path).unwrap();
            assert_eq!(len, 1 << 20);
            assert_eq!(file.is_direct(), scratch.fs_direct);
            at += write_pieces(&mut file, &data[at..], &[4097, (1 << 20) + 3]);
            file.finish().unwrap();
            file.sync().unwrap();
            drop(file);
            // Unaligned: through the page cache from then on.
            let (mut file, len) = DirectFile::append_to(&path).unwrap();
            assert_eq!(len as usize, at);
            assert!(!file.is_direct());
            at += write_pieces(&mut file, &data[at..], &[1, 4095, WRITE_BUFFER, 1 << 20]);
            file.finish().unwrap();
            file.sync().unwrap();
            drop(file);
            assert_eq!(
                fs::read(&path).unwrap(),
                &data[..at],
                "direct: {}",
                scratch.direct()
            );
        }
    }

    #[test]
    fn new_files_from_odd_pieces_come_back_whole() {
        for scratch in scratch_dirs(false) {
            let path = scratch.dir.path().join("blob");
            let total: usize = ODD_PIECES.iter().sum();
            let data = content(total);
            let mut at = 0;
            let mut pieces = ODD_PIECES.iter();
            let next = || {
                let len = *pieces.next()?;
                at += len;
                Some(Bytes::copy_from_slice(&data[at - len..at]))
            };
            write_new_file(&path, next, &AtomicBool::new(false)).unwrap();
            assert_eq!(
                fs::read(&path).unwrap(),
                data,
                "direct: {}",
                scratch.direct()
            );
        }
    }
}
