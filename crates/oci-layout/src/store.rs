//! `LayoutStore`: an image layout directory (or a root of one layout per repository) as an
//! `OciInterface`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::io::{Read, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use oci_store::{
    BlobBody, BlobReader, BlobWriter, Error, ListParams, OciInterface, PushManifestParams,
    ReferrersParams, Result, body_from_bytes, check_range, inspect_manifest,
};
use oci_types::{Descriptor, Digest, MAX_MANIFEST_SIZE, Manifest, MediaType, Repository, Tag};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::index::Entry;
use crate::layout::{Layout, join_error};
use crate::upload::LayoutWriter;

/// The repository that bare-tag entries belong to when the store is opened without naming one.
pub const DEFAULT_REPOSITORY: &str = "default";

/// Names a repository may not have in per-repository mode: its directory would collide with a
/// file of its parent's layout.
const RESERVED_COMPONENTS: [&str; 3] = ["blobs", "index.json", "oci-layout"];

/// How to open a [`LayoutStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LayoutOptions {
    /// The repository that entries named by a bare tag (or by nothing) belong to, and whose
    /// tags hoist writes as bare tags: what skopeo, umoci and oras read and write.
    pub default_repository: Repository,
    /// How many bytes one read of a blob file takes ([`DEFAULT_READ_BUFFER`] unless set): a
    /// read holds a few such buffers, so larger ones cost memory per concurrent read and gain
    /// speed (a server streaming large blobs to many clients, as `hoist serve` sets it).
    pub read_buffer: usize,
    /// Whether the store's short file work runs on the calling task instead of tokio's blocking
    /// pool: reading metadata and small files (the `oci-layout` file, `index.json`, manifests,
    /// configs), updating `index.json` and deleting; `false` by default. For a program that
    /// makes one short request on a current-thread runtime, as `hoist digest` does, handing
    /// each step to another thread and back costs more than the step; anything that runs
    /// requests side by side (a server, a copy) must leave it off, since the step then holds up
    /// every other task. Blobs over 4 MiB are read on the pool either way, and blob content is
    /// always written there.
    pub inline_io: bool,
}

/// [`LayoutOptions::read_buffer`] within what a read can use: at least 4 KiB (a zero would
/// divide by zero), at most 64 MiB (a few such buffers are held per read).
fn usable_read_buffer(bytes: usize) -> usize {
    bytes.clamp(4 << 10, 64 << 20)
}

/// The default of [`LayoutOptions::read_buffer`]: four parallel reads (a push of four blobs at
/// once) stay within oras's memory; smaller pieces cost more in hand-offs to the blocking
/// threads than they save.
pub const DEFAULT_READ_BUFFER: usize = 128 << 10;

impl Default for LayoutOptions {
    fn default() -> Self {
        Self {
            // A constant known to be a valid name.
            default_repository: Repository::parse(DEFAULT_REPOSITORY)
                .unwrap_or_else(|_| unreachable!("DEFAULT_REPOSITORY is a valid name")),
            read_buffer: DEFAULT_READ_BUFFER,
            inline_io: false,
        }
    }
}

impl LayoutOptions {
    /// Sets the default repository.
    pub fn with_default_repository(mut self, repository: Repository) -> Self {
        self.default_repository = repository;
        self
    }

    /// Sets the size of blob reads (used within 4 KiB..64 MiB).
    pub fn with_read_buffer(mut self, bytes: usize) -> Self {
        self.read_buffer = bytes;
        self
    }

    /// Sets [`inline_io`](Self::inline_io).
    pub fn with_inline_io(mut self, inline: bool) -> Self {
        self.inline_io = inline;
        self
    }
}

/// An OCI image layout as an [`OciInterface`].
///
/// In **single-layout** mode ([`open`](Self::open)) one directory holds every repository: an
/// `index.json` entry belongs to a repository through its `org.opencontainers.image.ref.name`
/// annotation (`repo:tag`, `repo@digest`, or a bare tag of the default repository). Blobs are
/// shared by all repositories; a manifest belongs to a repository when it is reachable from
/// that repository's entries.
///
/// In **per-repository** mode ([`open_per_repository`](Self::open_per_repository)) each
/// repository `REPO` is a layout of its own at `ROOT/REPO/`, whose tags are bare tags: each of
/// them is what skopeo writes for `oci:ROOT/REPO:TAG`.
///
/// Writes are crash-safe and safe between processes: see the crate documentation.
#[derive(Clone)]
pub struct LayoutStore {
    inner: Arc<Inner>,
}

struct Inner {
    mode: Mode,
    /// [`LayoutOptions::read_buffer`].
    read_buffer: usize,
    /// [`LayoutOptions::inline_io`].
    inline_io: bool,
    /// Parsed facts of manifests, by digest (content-addressed, so never stale).
    parsed: Mutex<HashMap<Digest, Arc<ManifestFacts>>>,
}

enum Mode {
    Single {
        layout: Arc<Layout>,
        default: Repository,
    },
    PerRepository {
        root: PathBuf,
        layouts: Mutex<HashMap<Repository, Arc<Layout>>>,
    },
}

/// What a store needs to know of a stored manifest to walk indexes and list referrers.
#[derive(Debug, Default)]
pub(crate) struct ManifestFacts {
    pub(crate) children: Vec<Descriptor>,
    pub(crate) subject: Option<Digest>,
    pub(crate) artifact_type: Option<MediaType>,
    pub(crate) annotations: BTreeMap<String, String>,
}

/// How many parsed manifests a store keeps (a few KiB each).
const PARSED_CAPACITY: usize = 16_384;

/// A repository resolved to the layout that holds it and the default repository of that layout.
struct Scope {
    layout: Arc<Layout>,
    default: Repository,
}

impl LayoutStore {
    /// Opens the layout in `dir` with the default options. A missing or empty directory is a
    /// layout that will be created by the first write; a directory with files but no
    /// `oci-layout` file, or with an invalid `oci-layout` or `index.json`, is refused.
    pub async fn open(dir: impl Into<PathBuf>) -> crate::Result<Self> {
        Self::open_with(dir, LayoutOptions::default()).await
    }

    /// Opens the layout in `dir`.
    pub async fn open_with(dir: impl Into<PathBuf>, options: LayoutOptions) -> crate::Result<Self> {
        let layout = Arc::new(Layout::new(dir.into()));
        let check = Arc::clone(&layout);
        blocking(options.inline_io, move || check.validate()).await?;
        let mode = Mode::Single {
            layout,
            default: options.default_repository.clone(),
        };
        Ok(Self::new(mode, &options))
    }

    /// Opens a root under which each repository is a layout of its own (`ROOT/REPO/`).
    pub async fn open_per_repository(root: impl Into<PathBuf>) -> crate::Result<Self> {
        Self::open_per_repository_with(root, LayoutOptions::default()).await
    }

    /// [`open_per_repository`](Self::open_per_repository) with `options` (its default
    /// repository is not used: every repository has its own layout).
    pub async fn open_per_repository_with(
        root: impl Into<PathBuf>,
        options: LayoutOptions,
    ) -> crate::Result<Self> {
        let root = root.into();
        let check = root.clone();
        blocking(options.inline_io, move || match std::fs::metadata(&check) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(crate::Error::InvalidLayout {
                path: check,
                reason: "not a directory".to_owned(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(crate::Error::io("cannot read", check, e)),
        })
        .await?;
        Ok(Self::new(
            Mode::PerRepository {
                root,
                layouts: Mutex::new(HashMap::new()),
            },
            &options,
        ))
    }

    /// A store of `mode` reading as `options` say.
    fn new(mode: Mode, options: &LayoutOptions) -> Self {
        Self {
            inner: Arc::new(Inner {
                mode,
                read_buffer: usable_read_buffer(options.read_buffer),
                inline_io: options.inline_io,
                parsed: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The layouts this store spans: its one layout, or every repository's.
    pub(crate) async fn layouts(&self) -> crate::Result<Vec<(Repository, Arc<Layout>)>> {
        match &self.inner.mode {
            Mode::Single { layout, default } => Ok(vec![(default.clone(), Arc::clone(layout))]),
            Mode::PerRepository { root, .. } => {
                let root = root.clone();
                let names =
                    blocking(self.inner.inline_io, move || walk_repositories(&root)).await?;
                names
                    .into_iter()
                    .map(|name| Ok((name.clone(), self.scope(&name)?.layout)))
                    .collect::<Result<_>>()
                    .map_err(crate::Error::Store)
            }
        }
    }

    /// The layout of `repo` for reading (and deleting): a repository that does not exist is
    /// not remembered, so requests for random names leave no state behind (a server answers
    /// them with `NAME_UNKNOWN` from a layout that is dropped with the request).
    fn scope(&self, repo: &Repository) -> Result<Scope> {
        self.scope_with(repo, false)
    }

    /// The layout of `repo` for writing, remembered from now on: one [`Layout`] per repository
    /// keeps the running hashes of its uploads.
    fn scope_to_write(&self, repo: &Repository) -> Result<Scope> {
        self.scope_with(repo, true)
    }

    fn scope_with(&self, repo: &Repository, writing: bool) -> Result<Scope> {
        match &self.inner.mode {
            Mode::Single { layout, default } => Ok(Scope {
                layout: Arc::clone(layout),
                default: default.clone(),
            }),
            Mode::PerRepository { root, layouts } => {
                if let Some(reserved) = repo.components().find(|c| RESERVED_COMPONENTS.contains(c))
                {
                    return Err(Error::InvalidInput {
                        code: oci_store::ErrorCode::NameInvalid,
                        source: oci_types::Error::Repository {
                            input: repo.to_string(),
                            reason: format!("{reserved:?} would collide with a layout's own files"),
                        },
                    });
                }
                let mut layouts = layouts.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(layout) = layouts.get(repo) {
                    return Ok(Scope {
                        layout: Arc::clone(layout),
                        default: repo.clone(),
                    });
                }
                let dir = repo.components().fold(root.clone(), |p, c| p.join(c));
                // One `stat` (while the lock is held, so that two first writes of a repository
                // share one layout): a directory that exists is a repository or becomes one.
                let remember = writing || dir.is_dir();
                let layout = Arc::new(Layout::new(dir));
                if remember {
                    layouts.insert(repo.clone(), Arc::clone(&layout));
                }
                Ok(Scope {
                    layout,
                    default: repo.clone(),
                })
            }
        }
    }

    /// The readable entries of `repo`; `NAME_UNKNOWN` when it has none.
    async fn entries(&self, scope: &Scope, repo: &Repository) -> Result<Vec<Entry>> {
        let layout = Arc::clone(&scope.layout);
        let index = blocking(self.inner.inline_io, move || layout.read_index()).await?;
        let entries: Vec<Entry> = index
            .entries(&scope.default)
            .into_iter()
            .filter(|e| &e.repository == repo)
            .collect();
        if entries.is_empty() {
            return Err(Error::NameUnknown { repo: repo.clone() });
        }
        Ok(entries)
    }

    /// The manifests reachable from `repo`'s entries, through indexes, by digest.
    async fn reachable(
        &self,
        scope: &Scope,
        repo: &Repository,
    ) -> Result<BTreeMap<Digest, Descriptor>> {
        let mut found = BTreeMap::new();
        let mut queue: VecDeque<Descriptor> = self
            .entries(scope, repo)
            .await?
            .into_iter()
            .map(|e| e.descriptor)
            .collect();
        while let Some(descriptor) = queue.pop_front() {
            if found.contains_key(&descriptor.digest) {
                continue;
            }
            if descriptor.media_type.is_index() {
                match self.facts(&scope.layout, &descriptor).await {
                    Ok(facts) => queue.extend(facts.children.iter().cloned()),
                    Err(error) => {
                        tracing::warn!(%error, digest = %descriptor.digest, "cannot read an index of the layout")
                    }
                }
            }
            found.insert(descriptor.digest.clone(), descriptor);
        }
        Ok(found)
    }

    /// Reads and parses a stored manifest (once per digest).
    async fn facts(&self, layout: &Layout, descriptor: &Descriptor) -> Result<Arc<ManifestFacts>> {
        if let Some(facts) = self
            .inner
            .parsed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&descriptor.digest)
        {
            return Ok(Arc::clone(facts));
        }
        let bytes = read_blob(layout, descriptor, &self.inner)
            .await?
            .bytes(MAX_MANIFEST_SIZE as u64)
            .await?;
        let facts = Arc::new(match Manifest::parse(&bytes, &descriptor.media_type) {
            Ok(manifest) => ManifestFacts {
                children: match &manifest {
                    Manifest::Index(index) => index.manifests.clone(),
                    _ => Vec::new(),
                },
                subject: manifest.subject().map(|s| s.digest.clone()),
                artifact_type: manifest.effective_artifact_type().cloned(),
                annotations: manifest.annotations().clone(),
            },
            Err(_) => ManifestFacts::default(),
        });
        let mut parsed = self
            .inner
            .parsed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if parsed.len() >= PARSED_CAPACITY {
            // Bounded: any entry will do (it is parsed again when next needed), and the
            // map's order is random, so no pattern of requests keeps one entry in.
            if let Some(evicted) = parsed.keys().next().cloned() {
                parsed.remove(&evicted);
            }
        }
        parsed.insert(descriptor.digest.clone(), Arc::clone(&facts));
        Ok(facts)
    }

    async fn manifest_descriptor(
        &self,
        repo: &Repository,
        digest: &Digest,
    ) -> Result<(Scope, Descriptor)> {
        let scope = self.scope(repo)?;
        let descriptor = self
            .reachable(&scope, repo)
            .await?
            .remove(digest)
            .ok_or_else(|| Error::ManifestUnknown {
                repo: repo.clone(),
                reference: digest.to_string(),
            })?;
        Ok((scope, descriptor))
    }

    async fn tag_descriptor(&self, repo: &Repository, tag: &Tag) -> Result<(Scope, Descriptor)> {
        let scope = self.scope(repo)?;
        let descriptor = self
            .entries(&scope, repo)
            .await?
            .into_iter()
            .rev()
            .find(|e| e.tag.as_ref() == Some(tag))
            .map(|e| e.descriptor)
            .ok_or_else(|| Error::ManifestUnknown {
                repo: repo.clone(),
                reference: tag.to_string(),
            })?;
        Ok((scope, descriptor))
    }

    async fn blob_size(&self, scope: &Scope, repo: &Repository, digest: &Digest) -> Result<u64> {
        let path = scope.layout.blob_path(digest);
        let metadata = if self.inner.inline_io {
            std::fs::metadata(&path)
        } else {
            tokio::fs::metadata(&path).await
        };
        match metadata {
            Ok(m) if m.is_file() => Ok(m.len()),
            _ => Err(Error::BlobUnknown {
                repo: repo.clone(),
                digest: digest.clone(),
            }),
        }
    }
}

/// Opens a stored blob as a verified stream of `descriptor`'s content.
async fn read_blob(layout: &Layout, descriptor: &Descriptor, inner: &Inner) -> Result<BlobReader> {
    let path = layout.blob_path(&descriptor.digest);
    let io = |what: &str, e| {
        Error::io(
            format!(
                "cannot {what} blob {} at {}",
                descriptor.digest,
                path.display()
            ),
            e,
        )
    };
    if inner.inline_io && descriptor.size <= INLINE_READ_MAX {
        // One more byte than stated, at most: the check then names a file that is too long
        // without reading all of it.
        let mut bytes = Vec::new();
        std::fs::File::open(&path)
            .map_err(|e| io("open", e))?
            .take(descriptor.size + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| io("read", e))?;
        return Ok(BlobReader::verified(
            descriptor.clone(),
            body_from_bytes(bytes),
        ));
    }
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| io("open", e))?;
    Ok(BlobReader::verified(
        descriptor.clone(),
        file_body(file, path, None, inner.read_buffer),
    ))
}

/// The largest blob a store with [`LayoutOptions::inline_io`] reads on the calling task.
const INLINE_READ_MAX: u64 = 4 << 20;

/// How many bytes a blob read may have ready ahead of its consumer (in two buffers at least,
/// four at most). 512 KiB keeps a hashing consumer busy; more only held memory while a slower
/// consumer (a push over the network) caught up.
const READ_AHEAD_BYTES: usize = 512 << 10;

/// A file (or its first `limit` bytes) as a blob body whose errors name the file.
///
/// A task reads into fresh buffers, a few ahead of the consumer, so that hashing (the verifying
/// reader) overlaps with reading and no buffer is copied on the way. Each piece is read on a
/// blocking thread of its own, given back as soon as the piece is read: a consumer that reads
/// slowly (a client downloading at a crawl) holds no thread while it waits, so a few hundred
/// slow downloads cannot take tokio's blocking pool from everyone else.
fn file_body(
    file: tokio::fs::File,
    path: PathBuf,
    limit: Option<u64>,
    read_buffer: usize,
) -> BlobBody {
    let read_ahead = (READ_AHEAD_BYTES / read_buffer).clamp(2, 4);
    let file = match file.try_into_std() {
        Ok(file) => file,
        // An operation still in flight on the file (none is, after open and seek): read it
        // through tokio instead.
        Err(file) => {
            let reader: Box<dyn tokio::io::AsyncRead + Send + Unpin> = match limit {
                Some(limit) => Box::new(file.take(limit)),
                None => Box::new(file),
            };
            return tokio_util::io::ReaderStream::with_capacity(reader, read_buffer)
                .map(move |chunk| {
                    chunk.map_err(|e| Error::io(format!("cannot read {}", path.display()), e))
                })
                .boxed()
                .into();
        }
    };
    // Pieces no larger than the content: a new buffer is zeroed before the first read into
    // it, and a server's 1 MiB for a manifest of a few KiB would cost more than the read.
    // (`fstat` of an open file reads no disk.)
    let content = limit.or_else(|| file.metadata().ok().map(|m| m.len()));
    let piece_size = content.map_or(read_buffer, |bytes| {
        usize::try_from(bytes)
            .unwrap_or(usize::MAX)
            .min(read_buffer)
            .max(1)
    });
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes>>(read_ahead);
    tokio::spawn(async move {
        use std::io::Read;
        let mut reader: Box<dyn Read + Send> = match limit {
            Some(limit) => Box::new(file.take(limit)),
            None => Box::new(file),
        };
        let pool = oci_store::BufferPool::new(piece_size, read_ahead + 2);
        loop {
            let pool = pool.clone();
            let piece = tokio::task::spawn_blocking(move || {
                let read = pool.read_piece(&mut reader);
                (reader, read)
            })
            .await;
            let item = match piece {
                Ok((back, read)) => {
                    reader = back;
                    match read {
                        Ok(None) => return,
                        Ok(Some(piece)) => Ok(piece),
                        Err(e) => Err(Error::io(format!("cannot read {}", path.display()), e)),
                    }
                }
                Err(e) => {
                    let _ = sender.send(Err(join_error(e))).await;
                    return;
                }
            };
            let failed = item.is_err();
            // A dropped receiver (the consumer went away) ends the reading.
            if sender.send(item).await.is_err() || failed {
                return;
            }
        }
    });
    futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    })
    .boxed()
    .into()
}

/// Runs blocking file work off the async threads, or here when `inline`
/// ([`LayoutOptions::inline_io`]).
async fn blocking<T: Send + 'static, E>(
    inline: bool,
    work: impl FnOnce() -> std::result::Result<T, E> + Send + 'static,
) -> std::result::Result<T, E>
where
    E: From<oci_store::Error> + Send + 'static,
{
    if inline {
        return work();
    }
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| E::from(join_error(e)))?
}

/// The repositories under a per-repository root: directories holding an `oci-layout` file,
/// named by their path below the root (blocking).
fn walk_repositories(root: &Path) -> crate::Result<BTreeSet<Repository>> {
    let mut found = BTreeSet::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(crate::Error::io("cannot read directory", dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| crate::Error::io("cannot read directory", &dir, e))?;
            let path = entry.path();
            let name = entry.file_name();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if name == "oci-layout" && dir != root {
                let relative = dir.strip_prefix(root).unwrap_or(&dir);
                let name = relative
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                match Repository::parse(&name) {
                    Ok(repo) => {
                        found.insert(repo);
                    }
                    Err(error) => {
                        tracing::warn!(%error, dir = %dir.display(), "skipping a layout whose path is not a repository name")
                    }
                }
            } else if is_dir
                && !RESERVED_COMPONENTS.contains(&name.to_string_lossy().as_ref())
                && !name.to_string_lossy().starts_with('.')
            {
                pending.push(path);
            }
        }
    }
    Ok(found)
}

impl fmt::Debug for LayoutStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_string())
    }
}

impl fmt::Display for LayoutStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner.mode {
            Mode::Single { layout, .. } => write!(f, "layout:{}", layout.dir().display()),
            Mode::PerRepository { root, .. } => write!(f, "layouts:{}", root.display()),
        }
    }
}

#[async_trait]
impl OciInterface for LayoutStore {
    async fn get_blob(&self, repo: &Repository, digest: &Digest) -> Result<BlobReader> {
        let scope = self.scope(repo)?;
        let size = self.blob_size(&scope, repo, digest).await?;
        read_blob(
            &scope.layout,
            &Descriptor::octet_stream(digest, size),
            &self.inner,
        )
        .await
    }

    async fn get_blob_range(
        &self,
        repo: &Repository,
        digest: &Digest,
        start: u64,
        end: Option<u64>,
    ) -> Result<BlobReader> {
        let scope = self.scope(repo)?;
        let size = self.blob_size(&scope, repo, digest).await?;
        let range = check_range(digest, size, start, end)?;
        let path = scope.layout.blob_path(digest);
        let io = |e| {
            Error::io(
                format!("cannot read blob {digest} at {}", path.display()),
                e,
            )
        };
        let mut file = tokio::fs::File::open(&path).await.map_err(io)?;
        file.seek(SeekFrom::Start(range.start)).await.map_err(io)?;
        let body = file_body(
            file,
            path.clone(),
            Some(range.end - range.start),
            self.inner.read_buffer,
        );
        Ok(BlobReader::ranged(
            Descriptor::octet_stream(digest, size),
            range,
            body,
        ))
    }

    async fn get_manifest(&self, repo: &Repository, digest: &Digest) -> Result<BlobReader> {
        let (scope, descriptor) = self.manifest_descriptor(repo, digest).await?;
        read_blob(&scope.layout, &descriptor, &self.inner).await
    }

    async fn get_tag(&self, repo: &Repository, tag: &Tag) -> Result<BlobReader> {
        let (scope, descriptor) = self.tag_descriptor(repo, tag).await?;
        read_blob(&scope.layout, &descriptor, &self.inner).await
    }

    async fn resolve_blob(&self, repo: &Repository, digest: &Digest) -> Result<Descriptor> {
        let scope = self.scope(repo)?;
        Ok(Descriptor::octet_stream(
            digest,
            self.blob_size(&scope, repo, digest).await?,
        ))
    }

    async fn resolve_manifest(&self, repo: &Repository, digest: &Digest) -> Result<Descriptor> {
        Ok(self.manifest_descriptor(repo, digest).await?.1)
    }

    async fn resolve_tag(&self, repo: &Repository, tag: &Tag) -> Result<Descriptor> {
        Ok(self.tag_descriptor(repo, tag).await?.1)
    }

    async fn push_blob(
        &self,
        repo: &Repository,
        descriptor: &Descriptor,
        body: BlobBody,
    ) -> Result<Descriptor> {
        let scope = self.scope_to_write(repo)?;
        scope.layout.write_blob(descriptor, body).await?;
        Ok(Descriptor::octet_stream(
            &descriptor.digest,
            descriptor.size,
        ))
    }

    async fn push_blob_chunked(
        &self,
        repo: &Repository,
        chunk_size: Option<usize>,
    ) -> Result<Box<dyn BlobWriter>> {
        let scope = self.scope_to_write(repo)?;
        Ok(Box::new(
            LayoutWriter::start(scope.layout, repo, chunk_size).await?,
        ))
    }

    async fn push_blob_chunked_resume(
        &self,
        repo: &Repository,
        id: &str,
        offset: Option<u64>,
        chunk_size: Option<usize>,
    ) -> Result<Box<dyn BlobWriter>> {
        let scope = self.scope(repo)?;
        Ok(Box::new(
            LayoutWriter::resume(scope.layout, repo, id, offset, chunk_size).await?,
        ))
    }

    async fn mount_blob(
        &self,
        from: &Repository,
        to: &Repository,
        digest: &Digest,
    ) -> Result<Descriptor> {
        let source = self.scope(from)?;
        let size = self.blob_size(&source, from, digest).await?;
        let target = self.scope_to_write(to)?;
        if Arc::ptr_eq(&source.layout, &target.layout)
            || self.blob_size(&target, to, digest).await.is_ok()
        {
            return Ok(Descriptor::octet_stream(digest, size));
        }
        // Another layout: copy the blob through the verified write path (a hard link would share
        // one inode between layouts, so damage to one would silently be damage to both).
        let reader = read_blob(
            &source.layout,
            &Descriptor::octet_stream(digest, size),
            &self.inner,
        )
        .await?;
        target
            .layout
            .write_blob(
                &Descriptor::octet_stream(digest, size),
                reader.into_stream_for_push(),
            )
            .await?;
        Ok(Descriptor::octet_stream(digest, size))
    }

    async fn push_manifest(
        &self,
        repo: &Repository,
        contents: Bytes,
        media_type: &MediaType,
        params: &PushManifestParams,
    ) -> Result<Descriptor> {
        let scope = self.scope_to_write(repo)?;
        let inspected = inspect_manifest(repo, &contents, media_type, params)?;
        for required in &inspected.required {
            if self
                .blob_size(&scope, repo, &required.digest)
                .await
                .is_err()
            {
                return Err(Error::ManifestBlobUnknown {
                    repo: repo.clone(),
                    digest: required.digest.clone(),
                });
            }
        }
        scope
            .layout
            .write_blob(&inspected.descriptor, body_from_bytes(contents))
            .await?;
        let descriptor = inspected.descriptor;
        let (layout, default, repo_owned, tags, entry) = (
            Arc::clone(&scope.layout),
            scope.default.clone(),
            repo.clone(),
            params.tags.clone(),
            descriptor.clone(),
        );
        blocking(self.inner.inline_io, move || {
            layout.update_index(|index| {
                if tags.is_empty() {
                    let listed = index
                        .entries(&default)
                        .iter()
                        .any(|e| e.repository == repo_owned && e.descriptor.digest == entry.digest);
                    if !listed {
                        index.add(&entry, &repo_owned, None, &default);
                    }
                    return Ok((!listed, ()));
                }
                for tag in &tags {
                    index.untag(&default, |e| {
                        e.repository == repo_owned && e.tag.as_ref() == Some(tag)
                    });
                    index.add(&entry, &repo_owned, Some(tag), &default);
                }
                // The manifest is listed under its tags now: an untagged entry of it is redundant.
                index.remove(&default, |e| {
                    e.repository == repo_owned
                        && e.tag.is_none()
                        && e.descriptor.digest == entry.digest
                });
                Ok((true, ()))
            })
        })
        .await?;
        Ok(descriptor)
    }

    async fn delete_blob(&self, repo: &Repository, digest: &Digest) -> Result<()> {
        let scope = self.scope(repo)?;
        let path = scope.layout.blob_path(digest);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::BlobUnknown {
                repo: repo.clone(),
                digest: digest.clone(),
            }),
            Err(e) => Err(Error::io(format!("cannot remove {}", path.display()), e)),
        }
    }

    async fn delete_manifest(&self, repo: &Repository, digest: &Digest) -> Result<()> {
        let (scope, _) = self.manifest_descriptor(repo, digest).await?;
        let (layout, default, repo_owned, target) = (
            Arc::clone(&scope.layout),
            scope.default.clone(),
            repo.clone(),
            digest.clone(),
        );
        let removed = blocking(self.inner.inline_io, move || {
            layout.update_index(|index| {
                let removed = index
                    .remove(&default, |e| {
                        e.repository == repo_owned && e.descriptor.digest == target
                    })
                    .len();
                Ok((removed > 0, removed))
            })
        })
        .await?;
        if removed == 0 {
            return Err(Error::Denied {
                message: format!(
                    "manifest {digest} in {repo} is a child of an index; delete the index instead"
                ),
            });
        }
        Ok(())
    }

    async fn delete_tag(&self, repo: &Repository, tag: &Tag) -> Result<()> {
        let (scope, _) = self.tag_descriptor(repo, tag).await?;
        let (layout, default, repo_owned, tag_owned) = (
            Arc::clone(&scope.layout),
            scope.default.clone(),
            repo.clone(),
            tag.clone(),
        );
        blocking(self.inner.inline_io, move || {
            layout.update_index(|index| {
                let removed = index.untag(&default, |e| {
                    e.repository == repo_owned && e.tag.as_ref() == Some(&tag_owned)
                });
                Ok((removed > 0, ()))
            })
        })
        .await
    }

    fn repositories(&self, params: &ListParams) -> BoxStream<'static, Result<Repository>> {
        let store = self.clone();
        let params = params.clone();
        stream::once(async move {
            let names: BTreeSet<Repository> = match &store.inner.mode {
                Mode::Single { layout, default } => {
                    let layout = Arc::clone(layout);
                    let index =
                        blocking(store.inner.inline_io, move || layout.read_index()).await?;
                    index
                        .entries(default)
                        .into_iter()
                        .map(|e| e.repository)
                        .collect()
                }
                Mode::PerRepository { root, .. } => {
                    let root = root.clone();
                    blocking(store.inner.inline_io, move || walk_repositories(&root)).await?
                }
            };
            Ok::<_, Error>(stream::iter(params.apply(names).into_iter().map(Ok)))
        })
        .map(|page| match page {
            Ok(names) => names.boxed(),
            Err(error) => stream::once(async move { Err(error) }).boxed(),
        })
        .flatten()
        .boxed()
    }

    fn tags(&self, repo: &Repository, params: &ListParams) -> BoxStream<'static, Result<Tag>> {
        let (store, repo, params) = (self.clone(), repo.clone(), params.clone());
        stream::once(async move {
            let scope = store.scope(&repo)?;
            let tags: BTreeSet<Tag> = store
                .entries(&scope, &repo)
                .await?
                .into_iter()
                .filter_map(|e| e.tag)
                .collect();
            Ok::<_, Error>(params.apply(tags))
        })
        .map(|page| match page {
            Ok(tags) => stream::iter(tags.into_iter().map(Ok)).boxed(),
            Err(error) => stream::once(async move { Err(error) }).boxed(),
        })
        .flatten()
        .boxed()
    }

    fn referrers(
        &self,
        repo: &Repository,
        digest: &Digest,
        params: &ReferrersParams,
    ) -> BoxStream<'static, Result<Descriptor>> {
        let (store, repo, digest, params) =
            (self.clone(), repo.clone(), digest.clone(), params.clone());
        stream::once(async move {
            let scope = store.scope(&repo)?;
            let reachable = match store.reachable(&scope, &repo).await {
                Ok(reachable) => reachable,
                Err(error) if error.code() == Some(oci_store::ErrorCode::NameUnknown) => {
                    BTreeMap::new()
                }
                Err(error) => return Err(error),
            };
            let mut found = Vec::new();
            for descriptor in reachable.into_values() {
                let facts = store.facts(&scope.layout, &descriptor).await?;
                if facts.subject.as_ref() != Some(&digest) {
                    continue;
                }
                if params
                    .artifact_type
                    .as_ref()
                    .is_some_and(|wanted| facts.artifact_type.as_ref() != Some(wanted))
                {
                    continue;
                }
                let mut listed = Descriptor::new(
                    descriptor.media_type.clone(),
                    descriptor.digest.clone(),
                    descriptor.size,
                );
                listed.artifact_type = facts.artifact_type.clone();
                listed.annotations = facts.annotations.clone();
                found.push(listed);
            }
            Ok::<_, Error>(found)
        })
        .map(|page| match page {
            Ok(found) => stream::iter(found.into_iter().map(Ok)).boxed(),
            Err(error) => stream::once(async move { Err(error) }).boxed(),
        })
        .flatten()
        .boxed()
    }
}
