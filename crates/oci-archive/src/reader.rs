//! An archive opened for reading, as a read-only [`OciInterface`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use oci_store::{
    BlobBody, BlobReader, BlobWriter, Error as StoreError, ListParams, OciInterface,
    PushManifestParams, ReferrersParams, Result as StoreResult, body_from_bytes, check_range,
};
use oci_types::{
    Compression, Descriptor, Digest, MAX_MANIFEST_SIZE, Manifest, MediaType, Repository, Tag,
    media_type,
};

use crate::format::{
    DEFAULT_REPOSITORY, DOCKER_MANIFEST_FILE, INDEX_FILE, IndexFile, OCI_LAYOUT_FILE, REF_NAME,
    archive_name, digest_of_blob_path,
};
use crate::scan::{ArchiveLimits, Extent, TarFile};
use crate::stored::{StoredManifest, referrers};
use crate::{Error, Result};

mod docker;

/// What an archive is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadAs {
    /// An OCI image layout (`oci-archive:`): `oci-layout` and `index.json`; tags are the
    /// `org.opencontainers.image.ref.name` annotations, in repository [`DEFAULT_REPOSITORY`].
    Oci,
    /// A docker-archive: `manifest.json`; tags are its `RepoTags`, each in the repository
    /// [`archive_name`] gives, and every image is also tagged by its position (`0`, `1`, …)
    /// in repository [`DEFAULT_REPOSITORY`] (what skopeo's `FILE:@N` selects).
    Docker,
}

/// One image of an archive, in the order the archive lists them (what `FILE:@N` selects).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ArchiveImage {
    /// The manifest (for a docker-archive of the classic format, an OCI image manifest
    /// made from `manifest.json`: such an archive holds no manifest, so there is no digest to
    /// keep, and OCI media types are what layouts and their tools read).
    pub descriptor: Descriptor,
    /// The names it is tagged with (`RepoTags`, or the tags of an oci-archive).
    pub names: Vec<String>,
}

/// An archive read in place: its tar is indexed once (a compressed archive is decompressed
/// into a temporary file first), manifests and configs are read into memory, and blobs are
/// served from their offsets, verified as they stream like every store's reads.
///
/// Every write answers `UNSUPPORTED`. Blobs and manifests are served in any repository;
/// tags only in theirs.
#[derive(Clone)]
pub struct ArchiveReader {
    inner: Arc<Catalog>,
}

struct Catalog {
    tar: TarFile,
    read_as: ReadAs,
    blobs: HashMap<Digest, (Extent, MediaType)>,
    manifests: HashMap<Digest, StoredManifest>,
    /// Bytes of `manifests`, all held in memory: at most [`ArchiveLimits::max_manifest_bytes`].
    manifest_bytes: u64,
    tags: BTreeMap<Repository, BTreeMap<Tag, Descriptor>>,
    images: Vec<ArchiveImage>,
}

impl ArchiveReader {
    /// Opens and indexes the archive at `path` (on a blocking thread).
    pub async fn open(
        path: impl AsRef<Path>,
        read_as: ReadAs,
        limits: ArchiveLimits,
    ) -> Result<Self> {
        let path = path.as_ref().to_owned();
        tokio::task::spawn_blocking(move || Self::open_blocking(&path, read_as, &limits))
            .await
            .map_err(|e| {
                Error::Store(StoreError::io(
                    "opening an archive",
                    std::io::Error::other(e),
                ))
            })?
    }

    /// Opens and indexes an archive already open as `file`, from its start (on a blocking
    /// thread): one received from a Docker daemon into a temporary file, say. `name` names it
    /// in messages.
    pub async fn from_file(
        file: std::fs::File,
        name: impl Into<std::path::PathBuf>,
        read_as: ReadAs,
        limits: ArchiveLimits,
    ) -> Result<Self> {
        let name = name.into();
        tokio::task::spawn_blocking(move || {
            let tar = TarFile::from_file(file, &name, &limits)?;
            Self::from_tar(tar, read_as, &limits)
        })
        .await
        .map_err(|e| {
            Error::Store(StoreError::io(
                "opening an archive",
                std::io::Error::other(e),
            ))
        })?
    }

    /// [`open`](Self::open), on the calling thread.
    pub fn open_blocking(path: &Path, read_as: ReadAs, limits: &ArchiveLimits) -> Result<Self> {
        Self::from_tar(TarFile::open(path, limits)?, read_as, limits)
    }

    fn from_tar(tar: TarFile, read_as: ReadAs, limits: &ArchiveLimits) -> Result<Self> {
        let path = tar.path().to_owned();
        let path = path.as_path();
        let mut catalog = Catalog {
            tar,
            read_as,
            blobs: HashMap::new(),
            manifests: HashMap::new(),
            manifest_bytes: 0,
            tags: BTreeMap::new(),
            images: Vec::new(),
        };
        let has_layout = catalog.tar.contains(OCI_LAYOUT_FILE) && catalog.tar.contains(INDEX_FILE);
        if has_layout {
            catalog.read_layout(limits)?;
        }
        match read_as {
            ReadAs::Oci if !has_layout => {
                return Err(Error::invalid(
                    path,
                    None,
                    "not an OCI image layout: oci-layout or index.json is missing",
                ));
            }
            ReadAs::Oci => {}
            ReadAs::Docker if !catalog.tar.contains(DOCKER_MANIFEST_FILE) => {
                return Err(Error::invalid(
                    path,
                    None,
                    "not a docker-archive: manifest.json is missing (archives of Docker before 1.10 are not read)",
                ));
            }
            ReadAs::Docker => catalog.read_docker(limits)?,
        }
        tracing::debug!(
            archive = %path.display(),
            blobs = catalog.blobs.len(),
            manifests = catalog.manifests.len(),
            images = catalog.images.len(),
            "archive indexed"
        );
        Ok(Self {
            inner: Arc::new(catalog),
        })
    }

    /// The images of the archive, in its order.
    pub fn images(&self) -> &[ArchiveImage] {
        &self.inner.images
    }

    /// How the archive itself was compressed.
    pub fn compression(&self) -> Compression {
        self.inner.tar.compression()
    }

    /// The repository an oci-archive's tags are in.
    pub fn default_repository() -> Repository {
        Repository::parse(DEFAULT_REPOSITORY)
            .unwrap_or_else(|_| unreachable!("DEFAULT_REPOSITORY is a valid name"))
    }
}

impl Catalog {
    fn invalid(&self, entry: &str, reason: impl Into<String>) -> Error {
        Error::invalid(self.tar.path(), Some(entry), reason)
    }

    fn read_json<T: serde::de::DeserializeOwned>(&self, name: &str, max: u64) -> Result<T> {
        let bytes = self.tar.read_small(name, max)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| self.invalid(name, format!("not valid JSON of its kind: {e}")))
    }

    /// Reads the OCI layout: every blob under `blobs/`, and the manifests reachable from
    /// `index.json` into memory.
    fn read_layout(&mut self, limits: &ArchiveLimits) -> Result<()> {
        let layout: serde_json::Value = self.read_json(OCI_LAYOUT_FILE, limits.max_json)?;
        if layout
            .get("imageLayoutVersion")
            .and_then(|v| v.as_str())
            .is_none()
        {
            return Err(self.invalid(OCI_LAYOUT_FILE, "no imageLayoutVersion"));
        }
        let algorithms: Vec<String> = ["sha256", "sha512"]
            .iter()
            .map(|a| format!("blobs/{a}"))
            .collect();
        let mut found = Vec::new();
        for dir in &algorithms {
            for name in self.tar.files_under(dir) {
                if let Some(digest) = digest_of_blob_path(name) {
                    found.push((digest, self.tar.find(name)?));
                }
            }
        }
        for (digest, extent) in found {
            self.blobs.insert(
                digest,
                (extent, MediaType::from_static(media_type::OCTET_STREAM)),
            );
        }
        let index: IndexFile = self.read_json(INDEX_FILE, limits.max_json)?;
        let repo = ArchiveReader::default_repository();
        for (position, descriptor) in index.manifests.iter().enumerate() {
            self.load_manifest(descriptor, 0, limits)?;
            let mut names = Vec::new();
            if let Some(name) = descriptor.annotations.get(REF_NAME) {
                // A ref.name that is not a tag (a whole reference, as some tools write) is
                // read as one.
                let tag = Tag::parse(name)
                    .ok()
                    .or_else(|| archive_name(name).ok().map(|(_, t)| t));
                match tag {
                    Some(tag) => {
                        names.push(tag.to_string());
                        self.tags
                            .entry(repo.clone())
                            .or_default()
                            .insert(tag, descriptor.clone());
                    }
                    None => {
                        tracing::warn!(archive = %self.tar.path().display(), position, name, "index.json names a tag that is not one; ignored")
                    }
                }
            }
            if self.read_as == ReadAs::Oci {
                self.images.push(ArchiveImage {
                    descriptor: descriptor.clone(),
                    names,
                });
            }
        }
        Ok(())
    }

    /// Counts `size` more bytes of manifests held in memory; an error naming `entry` past
    /// [`ArchiveLimits::max_manifest_bytes`]: an index reaching tens of thousands of 4 MiB
    /// "manifests" would otherwise have them all in memory.
    fn hold_manifest(&mut self, entry: &str, size: usize, limits: &ArchiveLimits) -> Result<()> {
        self.manifest_bytes = self.manifest_bytes.saturating_add(size as u64);
        if self.manifest_bytes > limits.max_manifest_bytes {
            return Err(self.invalid(
                entry,
                format!(
                    "the archive's manifests take more than {} bytes (the limit), all held in memory",
                    limits.max_manifest_bytes
                ),
            ));
        }
        Ok(())
    }

    /// Reads a manifest blob named by `descriptor` into memory, checked, with its children.
    fn load_manifest(
        &mut self,
        descriptor: &Descriptor,
        depth: usize,
        limits: &ArchiveLimits,
    ) -> Result<()> {
        const MAX_DEPTH: usize = 8;
        if self.manifests.contains_key(&descriptor.digest) {
            return Ok(());
        }
        let entry = crate::format::blob_path(&descriptor.digest);
        if depth > MAX_DEPTH {
            return Err(self.invalid(&entry, "indexes nested too deep"));
        }
        let bytes = self.tar.read_small(&entry, MAX_MANIFEST_SIZE as u64)?;
        self.hold_manifest(&entry, bytes.len(), limits)?;
        if !descriptor.digest.verify(&bytes) || bytes.len() as u64 != descriptor.size {
            return Err(self.invalid(
                &entry,
                format!(
                    "its content is not {} of {} bytes",
                    descriptor.digest, descriptor.size
                ),
            ));
        }
        let parsed = match Manifest::parse(&bytes, &descriptor.media_type) {
            Ok(manifest) => Some(manifest),
            // An artifact of a kind not parsed here is served as it is.
            Err(_) if !descriptor.media_type.is_manifest() && !descriptor.media_type.is_index() => {
                None
            }
            Err(e) => return Err(self.invalid(&entry, e.to_string())),
        };
        let children = match &parsed {
            Some(Manifest::Index(index)) => index.manifests.clone(),
            _ => Vec::new(),
        };
        let mut stored = descriptor.clone();
        stored.annotations.clear();
        stored.platform = None;
        self.manifests.insert(
            descriptor.digest.clone(),
            StoredManifest {
                descriptor: stored,
                bytes: Bytes::from(bytes),
                subject: parsed
                    .as_ref()
                    .and_then(|m| m.subject())
                    .map(|s| s.digest.clone()),
                artifact_type: parsed
                    .as_ref()
                    .and_then(|m| m.effective_artifact_type())
                    .cloned(),
                annotations: parsed
                    .as_ref()
                    .map(|m| m.annotations().clone())
                    .unwrap_or_default(),
            },
        );
        for child in &children {
            // A child an archive leaves out (one platform of an index) is simply not there.
            if self.tar.contains(&crate::format::blob_path(&child.digest)) {
                self.load_manifest(child, depth + 1, limits)?;
            }
        }
        Ok(())
    }

    fn manifest(&self, repo: &Repository, digest: &Digest) -> StoreResult<&StoredManifest> {
        self.manifests
            .get(digest)
            .ok_or_else(|| StoreError::ManifestUnknown {
                repo: repo.clone(),
                reference: digest.to_string(),
            })
    }

    fn blob(&self, repo: &Repository, digest: &Digest) -> StoreResult<(Extent, Descriptor)> {
        if let Some((extent, media_type)) = self.blobs.get(digest) {
            return Ok((
                *extent,
                Descriptor::new(media_type.clone(), digest.clone(), extent.size),
            ));
        }
        Err(StoreError::BlobUnknown {
            repo: repo.clone(),
            digest: digest.clone(),
        })
    }

    fn tag(&self, repo: &Repository, tag: &Tag) -> StoreResult<&Descriptor> {
        self.tags
            .get(repo)
            .and_then(|tags| tags.get(tag))
            .ok_or_else(|| StoreError::ManifestUnknown {
                repo: repo.clone(),
                reference: tag.to_string(),
            })
    }
}

impl fmt::Display for ArchiveReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let transport = match self.inner.read_as {
            ReadAs::Oci => "oci-archive",
            ReadAs::Docker => "docker-archive",
        };
        write!(f, "{transport}:{}", self.inner.tar.path().display())
    }
}

impl fmt::Debug for ArchiveReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArchiveReader")
            .field("archive", &self.inner.tar.path())
            .field("read_as", &self.inner.read_as)
            .field("images", &self.inner.images.len())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl OciInterface for ArchiveReader {
    async fn get_blob(&self, repo: &Repository, digest: &Digest) -> StoreResult<BlobReader> {
        let (extent, descriptor) = self.inner.blob(repo, digest)?;
        Ok(BlobReader::verified(
            descriptor,
            self.inner.tar.body(extent),
        ))
    }

    async fn get_blob_range(
        &self,
        repo: &Repository,
        digest: &Digest,
        start: u64,
        end: Option<u64>,
    ) -> StoreResult<BlobReader> {
        let (extent, descriptor) = self.inner.blob(repo, digest)?;
        let range = check_range(digest, descriptor.size, start, end)?;
        let body = self.inner.tar.body(Extent {
            offset: extent.offset + range.start,
            size: range.end - range.start,
        });
        Ok(BlobReader::ranged(descriptor, range, body))
    }

    async fn get_manifest(&self, repo: &Repository, digest: &Digest) -> StoreResult<BlobReader> {
        let stored = self.inner.manifest(repo, digest)?;
        Ok(BlobReader::verified(
            stored.descriptor.clone(),
            body_from_bytes(stored.bytes.clone()),
        ))
    }

    async fn get_tag(&self, repo: &Repository, tag: &Tag) -> StoreResult<BlobReader> {
        let digest = self.inner.tag(repo, tag)?.digest.clone();
        self.get_manifest(repo, &digest).await
    }

    async fn resolve_blob(&self, repo: &Repository, digest: &Digest) -> StoreResult<Descriptor> {
        Ok(self.inner.blob(repo, digest)?.1)
    }

    async fn resolve_manifest(
        &self,
        repo: &Repository,
        digest: &Digest,
    ) -> StoreResult<Descriptor> {
        Ok(self.inner.manifest(repo, digest)?.descriptor.clone())
    }

    async fn resolve_tag(&self, repo: &Repository, tag: &Tag) -> StoreResult<Descriptor> {
        let digest = &self.inner.tag(repo, tag)?.digest;
        Ok(self.inner.manifest(repo, digest)?.descriptor.clone())
    }

    async fn push_blob(
        &self,
        _: &Repository,
        _: &Descriptor,
        _: BlobBody,
    ) -> StoreResult<Descriptor> {
        Err(StoreError::unsupported("push_blob", self))
    }

    async fn push_blob_chunked(
        &self,
        _: &Repository,
        _: Option<usize>,
    ) -> StoreResult<Box<dyn BlobWriter>> {
        Err(StoreError::unsupported("push_blob_chunked", self))
    }

    async fn push_blob_chunked_resume(
        &self,
        _: &Repository,
        _: &str,
        _: Option<u64>,
        _: Option<usize>,
    ) -> StoreResult<Box<dyn BlobWriter>> {
        Err(StoreError::unsupported("push_blob_chunked_resume", self))
    }

    async fn mount_blob(
        &self,
        _: &Repository,
        _: &Repository,
        _: &Digest,
    ) -> StoreResult<Descriptor> {
        Err(StoreError::unsupported("mount_blob", self))
    }

    async fn push_manifest(
        &self,
        _: &Repository,
        _: Bytes,
        _: &MediaType,
        _: &PushManifestParams,
    ) -> StoreResult<Descriptor> {
        Err(StoreError::unsupported("push_manifest", self))
    }

    async fn delete_blob(&self, _: &Repository, _: &Digest) -> StoreResult<()> {
        Err(StoreError::unsupported("delete_blob", self))
    }

    async fn delete_manifest(&self, _: &Repository, _: &Digest) -> StoreResult<()> {
        Err(StoreError::unsupported("delete_manifest", self))
    }

    async fn delete_tag(&self, _: &Repository, _: &Tag) -> StoreResult<()> {
        Err(StoreError::unsupported("delete_tag", self))
    }

    fn repositories(&self, params: &ListParams) -> BoxStream<'static, StoreResult<Repository>> {
        let names = params.apply(self.inner.tags.keys().cloned().collect::<Vec<_>>());
        stream::iter(names.into_iter().map(Ok)).boxed()
    }

    fn tags(&self, repo: &Repository, params: &ListParams) -> BoxStream<'static, StoreResult<Tag>> {
        let tags = self
            .inner
            .tags
            .get(repo)
            .map(|tags| tags.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default();
        stream::iter(params.apply(tags).into_iter().map(Ok)).boxed()
    }

    fn referrers(
        &self,
        _: &Repository,
        digest: &Digest,
        params: &ReferrersParams,
    ) -> BoxStream<'static, StoreResult<Descriptor>> {
        let found = referrers(self.inner.manifests.values(), digest, params);
        stream::iter(found.into_iter().map(Ok)).boxed()
    }
}
