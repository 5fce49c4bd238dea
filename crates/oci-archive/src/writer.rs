//! An archive being written, as an [`OciInterface`] for pushes, with an explicit
//! [`ArchiveWriter::finish`] that writes the index and `manifest.json`.
//!
//! Blobs go into the tar as they are pushed, one entry at a time (concurrent pushes wait for
//! their turn). A whole push states its size, so its header is written first and its content
//! streams after it; a chunked upload does not know its size or digest until it is
//! committed, and a tar header needs both before the content, so a chunked upload is kept in
//! an anonymous temporary file until its commit and copied into the tar then.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use futures::stream::StreamExt;
use oci_store::{BlobBody, Error as StoreError, FileSpan, PushCheck, Result as StoreResult};
use oci_types::{Algorithm, Descriptor, Digest, Digester, MediaType, Platform, Repository, Tag};
use tokio::sync::mpsc;

use crate::format::{ArchiveFormat, DockerFormat, blob_path};
use crate::scan::READ_PIECE;
use crate::sink::{Output, TarSink};
use crate::stored::StoredManifest;
use crate::{Error, Result};

mod finish;
mod inflate;
mod interface;
mod upload;

pub use finish::FinishReport;
pub use inflate::LayerSource;
use upload::ArchiveUpload;

/// Choices for an archive being written.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriteOptions {
    /// The platform a docker-archive takes from a tagged index (`docker load` takes images
    /// only); `None` for this machine's.
    pub platform: Option<Platform>,
    /// Where the gzip layers pushed into a classic docker-archive are stored too: they are
    /// then written uncompressed, their size read from their gzip trailer there (see
    /// [`LayerSource`]).
    pub layer_source: Option<LayerSource>,
    /// The names `manifest.json` (`RepoTags`) shows for images tagged in a repository, by
    /// repository, when that is not what the repository reads as: a registry with a port
    /// (`localhost:5000/app`), which a repository cannot hold, would otherwise be dropped, and
    /// `docker load` would replace Docker Hub's `app` instead.
    pub names: BTreeMap<Repository, String>,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl WriteOptions {
    /// This machine's platform for indexes.
    pub fn new() -> Self {
        Self {
            platform: None,
            layer_source: None,
            names: BTreeMap::new(),
        }
    }

    /// Sets [`platform`](Self::platform).
    pub fn with_platform(mut self, platform: Platform) -> Self {
        self.platform = Some(platform);
        self
    }

    /// Sets [`layer_source`](Self::layer_source).
    pub fn with_layer_source(mut self, source: LayerSource) -> Self {
        self.layer_source = Some(source);
        self
    }

    /// Adds to [`names`](Self::names): images tagged in `repo` are shown as `name:TAG`.
    pub fn with_name(mut self, repo: Repository, name: impl Into<String>) -> Self {
        self.names.insert(repo, name.into());
        self
    }
}

/// An archive being written: push blobs and manifests into it (through `copy`, a build, any
/// writer of stores), then call [`finish`](Self::finish).
///
/// A file archive is written to a temporary file beside its path and renamed over the path
/// by `finish` only: an existing archive is replaced whole or not at all, and an archive
/// never finished leaves nothing behind. A blob whose content does not match its descriptor
/// is taken back out of the tar; where that cannot be done (a `.tar.gz`, a stream) the
/// archive is given up and every later call fails.
#[derive(Clone)]
pub struct ArchiveWriter {
    shared: Arc<Shared>,
}

struct Shared {
    /// How the archive is named in messages (`docker-archive:app.tar`).
    display: String,
    format: ArchiveFormat,
    platform: Platform,
    layer_source: Option<LayerSource>,
    /// [`WriteOptions::names`].
    names: BTreeMap<Repository, String>,
    /// Taken by whoever writes an entry, so that entries do not interleave.
    turn: tokio::sync::Mutex<()>,
    state: Mutex<State>,
}

/// A file archive's temporary file and the path it becomes.
struct Destination {
    temporary: tempfile::TempPath,
    path: PathBuf,
}

#[derive(Default)]
struct State {
    /// The tar; `None` while an entry is written on a blocking thread, and once finished.
    sink: Option<TarSink>,
    destination: Option<Destination>,
    /// Why the archive was given up, if it was.
    broken: Option<String>,
    finished: bool,
    /// Blobs written, with the entry each is in.
    blobs: HashMap<Digest, (Descriptor, String)>,
    /// Copies of the small blobs written (configs), for writers that read them back (an
    /// index is made from the configs of the images in it), within [`KEPT_BYTES`].
    kept: HashMap<Digest, Bytes>,
    kept_bytes: usize,
    manifests: HashMap<Digest, StoredManifest>,
    tags: BTreeMap<Repository, BTreeMap<Tag, Digest>>,
    /// Chunked uploads closed to be resumed, by id.
    uploads: HashMap<String, upload::Spool>,
}

/// Blobs up to this size are kept in memory as they are written, to be read back.
const KEPT_BLOB: u64 = 1 << 20;
/// The most the kept copies take in all.
const KEPT_BYTES: usize = 64 << 20;

/// A piece of an entry's content on its way to the blocking writer.
enum Piece {
    Data(Bytes),
    /// The content is complete and checked: pad the entry.
    End,
}

impl ArchiveWriter {
    /// Starts writing an archive at `path` (`format` [`ArchiveFormat::Oci`] with `gzip` for a
    /// `.tar.gz`). Nothing appears at `path` until [`finish`](Self::finish).
    pub fn create(
        path: impl AsRef<Path>,
        format: ArchiveFormat,
        options: WriteOptions,
    ) -> Result<Self> {
        let path = path.as_ref().to_owned();
        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => PathBuf::from("."),
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // The archive is an ordinary file, as `docker save -o` and skopeo make it: 0666 less
        // the umask, applied by the kernel as it is created (not a temporary file's 0600, nor
        // a fixed mode that would ignore the user's umask).
        let temporary = {
            use std::os::unix::fs::PermissionsExt;
            tempfile::Builder::new()
                .prefix(&format!(".{name}."))
                .suffix(".hoist-partial")
                .permissions(std::fs::Permissions::from_mode(0o666))
                .tempfile_in(&dir)
                .map_err(|e| Error::io("cannot create a temporary file in", &dir, e))?
        };
        let (file, temporary) = temporary.into_parts();
        let output = match format {
            // The content is mostly compressed layers already: the fastest level costs least
            // and loses almost nothing.
            ArchiveFormat::Oci { gzip: true } => Output::Gzip(Box::new(
                flate2::write::GzEncoder::new(file, flate2::Compression::fast()),
            )),
            _ => Output::File(file),
        };
        let transport = match format {
            ArchiveFormat::Oci { .. } => "oci-archive",
            ArchiveFormat::Docker(_) => "docker-archive",
        };
        let writer = Self::new(
            format!("{transport}:{}", path.display()),
            format,
            options,
            output,
        );
        writer.state().destination = Some(Destination { temporary, path });
        Ok(writer)
    }

    /// Starts writing an archive into `stream` (a daemon's load request, a pipe). Nothing is
    /// taken back from a stream: a blob that fails its check gives up the whole archive.
    pub fn to_stream(
        stream: Box<dyn Write + Send>,
        format: ArchiveFormat,
        options: WriteOptions,
        name: impl Into<String>,
    ) -> Self {
        Self::new(name.into(), format, options, Output::Stream(stream))
    }

    fn new(display: String, format: ArchiveFormat, options: WriteOptions, output: Output) -> Self {
        let state = State {
            sink: Some(TarSink::new(output)),
            ..State::default()
        };
        Self {
            shared: Arc::new(Shared {
                display,
                format,
                platform: options.platform.unwrap_or_else(Platform::host),
                layer_source: options.layer_source,
                names: options.names,
                turn: tokio::sync::Mutex::new(()),
                state: Mutex::new(state),
            }),
        }
    }

    /// The archive's format.
    pub fn format(&self) -> ArchiveFormat {
        self.shared.format
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The tar, taken out of the state for one entry; an error if the archive is broken or
    /// finished.
    fn take_sink(&self) -> StoreResult<TarSink> {
        let mut state = self.state();
        if let Some(reason) = &state.broken {
            return Err(self.failure(format!("the archive was given up: {reason}")));
        }
        if state.finished {
            return Err(self.failure("the archive is already finished".to_owned()));
        }
        state
            .sink
            .take()
            .ok_or_else(|| self.failure("the archive is being written by another call".to_owned()))
    }

    fn failure(&self, message: String) -> StoreError {
        StoreError::Backend {
            backend: self.shared.display.clone(),
            message,
            source: None,
        }
    }

    /// The name a blob gets in the tar.
    fn entry_name(&self, descriptor: &Descriptor) -> String {
        match self.shared.format {
            ArchiveFormat::Docker(DockerFormat::Classic) => {
                let extension = if is_config(&descriptor.media_type) {
                    "json"
                } else {
                    "tar"
                };
                format!("{}.{extension}", descriptor.digest.encoded())
            }
            _ => blob_path(&descriptor.digest),
        }
    }

    /// Writes one entry of `size` bytes whose content `feed` sends (and checks) in pieces;
    /// takes the entry back if `feed` fails or the writing does.
    async fn write_entry<F>(&self, name: String, size: u64, feed: F) -> StoreResult<()>
    where
        F: AsyncFnOnce(&mpsc::Sender<Piece>) -> StoreResult<()>,
    {
        let _turn = self.shared.turn.lock().await;
        let mut sink = self.take_sink()?;
        let (sender, mut receiver) = mpsc::channel::<Piece>(4);
        let entry = name.clone();
        let writing = tokio::task::spawn_blocking(move || {
            let mark = sink.mark();
            let written = (|| {
                sink.begin_file(&entry, size)?;
                while let Some(piece) = receiver.blocking_recv() {
                    match piece {
                        Piece::Data(bytes) => sink.data(&bytes)?,
                        Piece::End => {
                            sink.end_file()?;
                            return Ok(true);
                        }
                    }
                }
                Ok::<_, std::io::Error>(false)
            })();
            (sink, mark, written)
        });
        let fed = feed(&sender).await;
        if fed.is_ok() {
            // A writer that already stopped shows its own error below.
            let _ = sender.send(Piece::End).await;
        }
        drop(sender);
        let (mut sink, mark, written) = writing
            .await
            .map_err(|e| self.failure(format!("the archive's writer stopped: {e}")))?;
        let error = match (fed, written) {
            (Ok(()), Ok(true)) => {
                self.state().sink = Some(sink);
                return Ok(());
            }
            (Err(e), _) => e,
            (Ok(()), Err(e)) => StoreError::io(
                format!("cannot write {name} into {}", self.shared.display),
                e,
            ),
            (Ok(()), Ok(false)) => self.failure(format!("the entry {name} was not completed")),
        };
        match sink.rollback(mark) {
            Ok(true) => self.state().sink = Some(sink),
            Ok(false) => self.give_up(format!("writing {name} failed: {error}")),
            Err(e) => self.give_up(format!("cannot take back {name}: {e}")),
        }
        Err(error)
    }

    fn give_up(&self, reason: String) {
        tracing::warn!(archive = %self.shared.display, %reason, "archive given up");
        let mut state = self.state();
        state.broken.get_or_insert(reason);
        state.sink = None;
    }

    /// Writes a blob from a stream checked against `descriptor`, unless it is there already.
    async fn write_blob(&self, descriptor: &Descriptor, body: BlobBody) -> StoreResult<Descriptor> {
        if let Some((stored, _)) = self.state().blobs.get(&descriptor.digest) {
            return Ok(stored.clone());
        }
        if let Some(source) = self.inflating(descriptor) {
            return self.write_inflated_layer(descriptor, body, source).await;
        }
        self.write_blob_entry(descriptor, body, self.entry_name(descriptor))
            .await
    }

    /// Writes a blob from a stream checked against `descriptor` as the entry `name`.
    async fn write_blob_entry(
        &self,
        descriptor: &Descriptor,
        body: BlobBody,
        name: String,
    ) -> StoreResult<Descriptor> {
        let mut check = PushCheck::for_body(descriptor, &body);
        let mut body = body;
        let mut copy = (descriptor.size <= KEPT_BLOB).then(Vec::new);
        self.write_entry(
            name.clone(),
            descriptor.size,
            async |sender: &mpsc::Sender<Piece>| {
                while let Some(piece) = body.next().await {
                    let piece = piece?;
                    check.update(&piece)?;
                    if let Some(copy) = &mut copy {
                        copy.extend_from_slice(&piece);
                    }
                    if sender.send(Piece::Data(piece)).await.is_err() {
                        // The writer failed; its error is reported.
                        return Ok(());
                    }
                }
                check.finish()
            },
        )
        .await?;
        let stored = Descriptor::new(
            descriptor.media_type.clone(),
            descriptor.digest.clone(),
            descriptor.size,
        );
        let mut state = self.state();
        if let Some(copy) = copy.filter(|copy| state.kept_bytes + copy.len() <= KEPT_BYTES) {
            state.kept_bytes += copy.len();
            state
                .kept
                .insert(descriptor.digest.clone(), Bytes::from(copy));
        }
        state
            .blobs
            .insert(descriptor.digest.clone(), (stored.clone(), name));
        Ok(stored)
    }

    /// Writes a blob already checked, from a file of exactly `descriptor.size` bytes.
    async fn write_blob_from_file(
        &self,
        descriptor: &Descriptor,
        file: File,
    ) -> StoreResult<Descriptor> {
        let name = self.entry_name(descriptor);
        let size = descriptor.size;
        let mut body = FileSpan::new(Arc::new(file), 0, size, "an upload's temporary file")
            .into_body(READ_PIECE);
        self.write_entry(name.clone(), size, async |to_tar: &mpsc::Sender<Piece>| {
            let mut seen = 0u64;
            while let Some(piece) = body.next().await {
                let piece = piece?;
                seen += piece.len() as u64;
                if to_tar.send(Piece::Data(piece)).await.is_err() {
                    return Ok(());
                }
            }
            if seen == size {
                Ok(())
            } else {
                Err(StoreError::io(
                    "reading an upload back",
                    std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
                ))
            }
        })
        .await?;
        self.state()
            .blobs
            .insert(descriptor.digest.clone(), (descriptor.clone(), name));
        Ok(descriptor.clone())
    }

    /// Writes a small file (a manifest, `index.json`) whole.
    async fn write_small(&self, name: String, bytes: Bytes) -> StoreResult<()> {
        let size = bytes.len() as u64;
        self.write_entry(name, size, async move |sender: &mpsc::Sender<Piece>| {
            let _ = sender.send(Piece::Data(bytes)).await;
            Ok(())
        })
        .await
    }
}

/// Whether a blob of this media type is an image config (a `.json` file of the classic
/// docker-archive format).
fn is_config(media_type: &MediaType) -> bool {
    let name = media_type.as_str();
    name == oci_types::media_type::OCI_CONFIG
        || name == oci_types::media_type::DOCKER_CONFIG
        || name.ends_with("+json")
}

impl fmt::Display for ArchiveWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shared.display)
    }
}

impl fmt::Debug for ArchiveWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArchiveWriter")
            .field("archive", &self.shared.display)
            .field("format", &self.shared.format)
            .finish_non_exhaustive()
    }
}

impl ArchiveWriter {
    fn stored_manifest(&self, repo: &Repository, digest: &Digest) -> StoreResult<StoredManifest> {
        self.state()
            .manifests
            .get(digest)
            .cloned()
            .ok_or_else(|| StoreError::ManifestUnknown {
                repo: repo.clone(),
                reference: digest.to_string(),
            })
    }

    fn tagged(&self, repo: &Repository, tag: &Tag) -> StoreResult<Digest> {
        self.state()
            .tags
            .get(repo)
            .and_then(|tags| tags.get(tag))
            .cloned()
            .ok_or_else(|| StoreError::ManifestUnknown {
                repo: repo.clone(),
                reference: tag.to_string(),
            })
    }

    /// A new SHA-256 digester, for uploads.
    fn digester() -> Digester {
        Digester::new(Algorithm::Sha256)
    }
}
