//! `LayoutStore`: an image layout directory (or a root of one layout per repository) as an
//! `OciInterface`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use oci_store::{BlobReader, Error, Result};
use oci_types::{Descriptor, Digest, MAX_MANIFEST_SIZE, Manifest, MediaType, Repository, Tag};

use crate::index::Entry;
use crate::layout::Layout;
use crate::options::{LayoutOptions, usable_read_buffer};
use crate::read::{self, blocking};

/// Names a repository may not have in per-repository mode: its directory would collide with a
/// file of its parent's layout.
const RESERVED_COMPONENTS: [&str; 3] = ["blobs", "index.json", "oci-layout"];

/// An OCI image layout as an [`OciInterface`](oci_store::OciInterface).
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
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) mode: Mode,
    /// [`LayoutOptions::read_buffer`].
    pub(crate) read_buffer: usize,
    /// [`LayoutOptions::inline_io`].
    pub(crate) inline_io: bool,
    /// Parsed facts of manifests, by digest (content-addressed, so never stale).
    pub(crate) parsed: Mutex<ParsedCache>,
}

pub(crate) enum Mode {
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

/// How many parsed manifests a store keeps (a few KiB each)...
const PARSED_CAPACITY: usize = 16_384;
/// ...and how many bytes of manifests at most: anyone who may push can push manifests of
/// 4 MiB, and the count alone would then let the cache hold 64 GiB.
const PARSED_BYTES: usize = 64 << 20;

/// Parsed facts of manifests, by digest (content-addressed, so never stale), bounded in count
/// and in the bytes of the manifests they came from.
#[derive(Default)]
pub(crate) struct ParsedCache {
    entries: HashMap<Digest, (Arc<ManifestFacts>, usize)>,
    bytes: usize,
}

impl ParsedCache {
    fn get(&self, digest: &Digest) -> Option<Arc<ManifestFacts>> {
        self.entries.get(digest).map(|(facts, _)| Arc::clone(facts))
    }

    /// Keeps `facts` of a manifest of `size` bytes, making room. A manifest over 1 MiB (rare:
    /// an index of thousands of children) is not kept; it is parsed again when next needed.
    fn insert(&mut self, digest: Digest, facts: Arc<ManifestFacts>, size: usize) {
        if size > PARSED_BYTES / 64 || self.entries.contains_key(&digest) {
            return;
        }
        while self.entries.len() >= PARSED_CAPACITY || self.bytes + size > PARSED_BYTES {
            // Any entry will do (it is parsed again when next needed), and the map's order is
            // random, so no pattern of requests keeps one entry in.
            let Some(evicted) = self.entries.keys().next().cloned() else {
                break;
            };
            if let Some((_, evicted_size)) = self.entries.remove(&evicted) {
                self.bytes -= evicted_size;
            }
        }
        self.bytes += size;
        self.entries.insert(digest, (facts, size));
    }
}

/// A repository resolved to the layout that holds it and the default repository of that layout.
pub(crate) struct Scope {
    pub(crate) layout: Arc<Layout>,
    pub(crate) default: Repository,
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
                parsed: Mutex::new(ParsedCache::default()),
            }),
        }
    }

    /// Opens a stored blob as a verified stream of `descriptor`'s content, read as this store's
    /// options say.
    pub(crate) async fn read_blob(
        &self,
        layout: &Layout,
        descriptor: &Descriptor,
    ) -> Result<BlobReader> {
        read::read_blob(
            layout,
            descriptor,
            self.inner.inline_io,
            self.inner.read_buffer,
        )
        .await
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
    pub(crate) fn scope(&self, repo: &Repository) -> Result<Scope> {
        self.scope_with(repo, false)
    }

    /// The layout of `repo` for writing, remembered from now on: one [`Layout`] per repository
    /// keeps the running hashes of its uploads.
    pub(crate) fn scope_to_write(&self, repo: &Repository) -> Result<Scope> {
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
    pub(crate) async fn entries(&self, scope: &Scope, repo: &Repository) -> Result<Vec<Entry>> {
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
    pub(crate) async fn reachable(
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
    pub(crate) async fn facts(
        &self,
        layout: &Layout,
        descriptor: &Descriptor,
    ) -> Result<Arc<ManifestFacts>> {
        if let Some(facts) = self
            .inner
            .parsed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&descriptor.digest)
        {
            return Ok(facts);
        }
        let bytes = self
            .read_blob(layout, descriptor)
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
        self.inner
            .parsed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(descriptor.digest.clone(), Arc::clone(&facts), bytes.len());
        Ok(facts)
    }

    pub(crate) async fn manifest_descriptor(
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

    pub(crate) async fn tag_descriptor(
        &self,
        repo: &Repository,
        tag: &Tag,
    ) -> Result<(Scope, Descriptor)> {
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

    pub(crate) async fn blob_size(
        &self,
        scope: &Scope,
        repo: &Repository,
        digest: &Digest,
    ) -> Result<u64> {
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

/// The repositories under a per-repository root: directories holding an `oci-layout` file,
/// named by their path below the root (blocking).
pub(crate) fn walk_repositories(root: &Path) -> crate::Result<BTreeSet<Repository>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsed_manifests_are_bounded_in_count_and_bytes() {
        let mut cache = ParsedCache::default();
        let facts = Arc::new(ManifestFacts::default());
        let digest = |n: usize| Digest::sha256(n.to_string().as_bytes());
        // Manifests of 4 MiB (the most a push takes) are not kept at all.
        cache.insert(digest(0), Arc::clone(&facts), 4 << 20);
        assert!(cache.get(&digest(0)).is_none());
        // Of 1 MiB each, 64 at most; then the oldest room is made for the new.
        for n in 1..=100 {
            cache.insert(digest(n), Arc::clone(&facts), 1 << 20);
            assert!(cache.bytes <= PARSED_BYTES);
        }
        assert_eq!(cache.entries.len(), 64);
        assert!(cache.get(&digest(100)).is_some());
        let sum: usize = cache.entries.values().map(|(_, size)| size).sum();
        assert_eq!(cache.bytes, sum);
        // Small ones up to the count.
        let mut cache = ParsedCache::default();
        for n in 1000..1000 + PARSED_CAPACITY + 10 {
            cache.insert(digest(n), Arc::clone(&facts), 100);
        }
        assert_eq!(cache.entries.len(), PARSED_CAPACITY);
        assert_eq!(cache.bytes, PARSED_CAPACITY * 100);
    }
}
