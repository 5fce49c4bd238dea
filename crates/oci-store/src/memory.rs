//! `MemoryStore`: the reference implementation of [`OciInterface`], complete and in memory.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::{self, BoxStream, StreamExt};
use oci_types::{Descriptor, Digest, MediaType, Repository, Tag};
use rand::Rng;

use crate::{
    BlobBody, BlobReader, BlobWriter, Error, ListParams, OciInterface, PushCheck,
    PushManifestParams, ReferrersParams, Result, body_from_bytes, check_range, inspect_manifest,
};

/// The chunk size a [`MemoryStore`] upload reports when the caller gives no hint.
const DEFAULT_CHUNK_SIZE: usize = 64 * 1024;

/// A complete [`OciInterface`] in memory: the reference every other store is measured against,
/// and the store of tests and caches.
///
/// Blob content is kept once, however many repositories link it. Cloning the store gives
/// another handle to the same content.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use oci_store::{MemoryStore, OciInterface, OciInterfaceExt};
/// use oci_types::{MediaType, Repository, media_type};
///
/// let store = MemoryStore::new();
/// let repo: Repository = "library/hello".parse()?;
/// let layer = store
///     .push_blob_bytes(&repo, MediaType::from_static(media_type::OCI_LAYER_TAR), "hi".into())
///     .await?;
/// assert_eq!(store.get_blob_bytes(&repo, &layer.digest, 1024).await?, "hi");
/// # Ok::<(), oci_store::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    /// Content by digest, shared by every repository that links it.
    content: HashMap<Digest, Bytes>,
    repos: BTreeMap<Repository, RepoState>,
    uploads: HashMap<String, Upload>,
}

#[derive(Default)]
struct RepoState {
    blobs: BTreeSet<Digest>,
    manifests: BTreeMap<Digest, StoredManifest>,
    tags: BTreeMap<Tag, Digest>,
}

struct StoredManifest {
    bytes: Bytes,
    media_type: MediaType,
    subject: Option<Digest>,
    artifact_type: Option<MediaType>,
    annotations: BTreeMap<String, String>,
}

impl StoredManifest {
    fn descriptor(&self, digest: &Digest) -> Descriptor {
        Descriptor::new(
            self.media_type.clone(),
            digest.clone(),
            self.bytes.len() as u64,
        )
    }
}

struct Upload {
    repo: Repository,
    data: BytesMut,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // No code path panics while holding the lock, and every change is applied whole, so a
        // poisoned lock still guards a consistent state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A conformance [`Corrupter`](crate::conformance::Corrupter) that damages this store's
    /// blobs. Not part of the API.
    #[cfg(any(test, feature = "conformance"))]
    #[doc(hidden)]
    pub fn conformance_corrupter(&self) -> crate::conformance::Corrupter {
        let store = self.clone();
        Arc::new(move |_repo, digest| {
            let store = store.clone();
            Box::pin(async move { store.corrupt_blob_for_tests(&digest) })
        })
    }

    /// Stores `content` under `digest` in `repo` without checking that it matches, so that test
    /// doubles can model a faulty store. Not part of the API.
    #[cfg(any(test, feature = "conformance"))]
    #[doc(hidden)]
    pub fn insert_unchecked_for_tests(&self, repo: &Repository, digest: Digest, content: Bytes) {
        let mut state = self.state();
        state.content.insert(digest.clone(), content);
        state
            .repos
            .entry(repo.clone())
            .or_default()
            .blobs
            .insert(digest);
    }

    /// Replaces the stored bytes of a blob without any check, so that tests can prove that
    /// reads detect corruption. Not part of the API.
    #[cfg(any(test, feature = "conformance"))]
    #[doc(hidden)]
    pub fn corrupt_blob_for_tests(&self, digest: &Digest) -> bool {
        let mut state = self.state();
        match state.content.get_mut(digest) {
            Some(content) => {
                let mut bytes = content.to_vec();
                match bytes.first_mut() {
                    Some(first) => *first ^= 0xff,
                    None => bytes.push(0),
                }
                *content = bytes.into();
                true
            }
            None => false,
        }
    }
}

impl State {
    fn repo(&self, repo: &Repository) -> Result<&RepoState> {
        self.repos
            .get(repo)
            .ok_or_else(|| Error::NameUnknown { repo: repo.clone() })
    }

    fn blob(&self, repo: &Repository, digest: &Digest) -> Result<Bytes> {
        let state = self.repo(repo)?;
        state
            .blobs
            .contains(digest)
            .then(|| self.content.get(digest).cloned())
            .flatten()
            .ok_or_else(|| Error::BlobUnknown {
                repo: repo.clone(),
                digest: digest.clone(),
            })
    }

    fn manifest(&self, repo: &Repository, digest: &Digest) -> Result<&StoredManifest> {
        self.repo(repo)?
            .manifests
            .get(digest)
            .ok_or_else(|| Error::ManifestUnknown {
                repo: repo.clone(),
                reference: digest.to_string(),
            })
    }

    fn tagged(&self, repo: &Repository, tag: &Tag) -> Result<(Digest, &StoredManifest)> {
        let digest = self
            .repo(repo)?
            .tags
            .get(tag)
            .ok_or_else(|| Error::ManifestUnknown {
                repo: repo.clone(),
                reference: tag.to_string(),
            })?;
        Ok((digest.clone(), self.manifest(repo, digest)?))
    }

    fn store_blob(&mut self, repo: &Repository, digest: Digest, content: Bytes) {
        self.content.entry(digest.clone()).or_insert(content);
        self.repos
            .entry(repo.clone())
            .or_default()
            .blobs
            .insert(digest);
    }

    /// Drops content that no repository links any more.
    fn collect(&mut self, digest: &Digest) {
        if !self.repos.values().any(|r| r.blobs.contains(digest)) {
            self.content.remove(digest);
        }
    }
}

async fn collect_checked(descriptor: &Descriptor, mut body: BlobBody) -> Result<Bytes> {
    let mut check = PushCheck::for_body(descriptor, &body);
    let mut buffer = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        check.update(&chunk)?;
        buffer.extend_from_slice(&chunk);
    }
    check.finish()?;
    Ok(buffer.freeze())
}

#[async_trait]
impl OciInterface for MemoryStore {
    async fn get_blob(&self, repo: &Repository, digest: &Digest) -> Result<BlobReader> {
        let content = self.state().blob(repo, digest)?;
        // The descriptor states the digest asked for; the verifying reader proves the content
        // still matches it (the corruption test depends on this).
        let descriptor = Descriptor::octet_stream(digest, content.len() as u64);
        Ok(BlobReader::verified(descriptor, body_from_bytes(content)))
    }

    async fn get_blob_range(
        &self,
        repo: &Repository,
        digest: &Digest,
        start: u64,
        end: Option<u64>,
    ) -> Result<BlobReader> {
        let content = self.state().blob(repo, digest)?;
        let range = check_range(digest, content.len() as u64, start, end)?;
        let descriptor = Descriptor::octet_stream(digest, content.len() as u64);
        // Both bounds are within `content`, checked above.
        let piece = content.slice(range.start as usize..range.end as usize);
        Ok(BlobReader::ranged(
            descriptor,
            range,
            body_from_bytes(piece),
        ))
    }

    async fn get_manifest(&self, repo: &Repository, digest: &Digest) -> Result<BlobReader> {
        let state = self.state();
        let manifest = state.manifest(repo, digest)?;
        Ok(BlobReader::verified(
            manifest.descriptor(digest),
            body_from_bytes(manifest.bytes.clone()),
        ))
    }

    async fn get_tag(&self, repo: &Repository, tag: &Tag) -> Result<BlobReader> {
        let state = self.state();
        let (digest, manifest) = state.tagged(repo, tag)?;
        Ok(BlobReader::verified(
            manifest.descriptor(&digest),
            body_from_bytes(manifest.bytes.clone()),
        ))
    }

    async fn resolve_blob(&self, repo: &Repository, digest: &Digest) -> Result<Descriptor> {
        let content = self.state().blob(repo, digest)?;
        Ok(Descriptor::octet_stream(digest, content.len() as u64))
    }

    async fn resolve_manifest(&self, repo: &Repository, digest: &Digest) -> Result<Descriptor> {
        Ok(self.state().manifest(repo, digest)?.descriptor(digest))
    }

    async fn resolve_tag(&self, repo: &Repository, tag: &Tag) -> Result<Descriptor> {
        let state = self.state();
        let (digest, manifest) = state.tagged(repo, tag)?;
        Ok(manifest.descriptor(&digest))
    }

    async fn push_blob(
        &self,
        repo: &Repository,
        descriptor: &Descriptor,
        body: BlobBody,
    ) -> Result<Descriptor> {
        let content = collect_checked(descriptor, body).await?;
        let size = content.len();
        self.state()
            .store_blob(repo, descriptor.digest.clone(), content);
        Ok(Descriptor::octet_stream(&descriptor.digest, size as u64))
    }

    async fn push_blob_chunked(
        &self,
        repo: &Repository,
        chunk_size: Option<usize>,
    ) -> Result<Box<dyn BlobWriter>> {
        let id = format!("{:032x}", rand::rng().random::<u128>());
        self.state().uploads.insert(
            id.clone(),
            Upload {
                repo: repo.clone(),
                data: BytesMut::new(),
            },
        );
        Ok(Box::new(MemoryWriter {
            store: self.clone(),
            repo: repo.clone(),
            id,
            size: 0,
            chunk_size: chunk_size.unwrap_or(DEFAULT_CHUNK_SIZE).max(1),
        }))
    }

    async fn push_blob_chunked_resume(
        &self,
        repo: &Repository,
        id: &str,
        offset: Option<u64>,
        chunk_size: Option<usize>,
    ) -> Result<Box<dyn BlobWriter>> {
        let state = self.state();
        let upload = state
            .uploads
            .get(id)
            .filter(|u| &u.repo == repo)
            .ok_or_else(|| Error::BlobUploadUnknown {
                repo: repo.clone(),
                id: id.to_owned(),
            })?;
        let size = upload.data.len() as u64;
        if let Some(offset) = offset.filter(|&o| o != size) {
            return Err(Error::RangeInvalid {
                target: format!("upload {id}"),
                reason: format!("resume at offset {offset}, but {size} bytes were written"),
            });
        }
        Ok(Box::new(MemoryWriter {
            store: self.clone(),
            repo: repo.clone(),
            id: id.to_owned(),
            size,
            chunk_size: chunk_size.unwrap_or(DEFAULT_CHUNK_SIZE).max(1),
        }))
    }

    async fn mount_blob(
        &self,
        from: &Repository,
        to: &Repository,
        digest: &Digest,
    ) -> Result<Descriptor> {
        let mut state = self.state();
        let content = state.blob(from, digest)?;
        let size = content.len();
        state.store_blob(to, digest.clone(), content);
        Ok(Descriptor::octet_stream(digest, size as u64))
    }

    async fn push_manifest(
        &self,
        repo: &Repository,
        contents: Bytes,
        media_type: &MediaType,
        params: &PushManifestParams,
    ) -> Result<Descriptor> {
        let facts = inspect_manifest(repo, &contents, media_type, params)?;
        let mut state = self.state();
        let existing = state.repos.get(repo);
        for reference in &facts.required {
            let present = existing.is_some_and(|r| {
                if facts.is_index {
                    r.manifests.contains_key(&reference.digest)
                } else {
                    r.blobs.contains(&reference.digest)
                }
            });
            if !present {
                return Err(Error::ManifestBlobUnknown {
                    repo: repo.clone(),
                    digest: reference.digest.clone(),
                });
            }
        }
        let (digest, descriptor) = (facts.digest, facts.descriptor);
        let repo_state = state.repos.entry(repo.clone()).or_default();
        repo_state.manifests.insert(
            digest.clone(),
            StoredManifest {
                bytes: contents,
                media_type: media_type.clone(),
                subject: facts.subject,
                artifact_type: facts.artifact_type,
                annotations: facts.annotations,
            },
        );
        for tag in &params.tags {
            repo_state.tags.insert(tag.clone(), digest.clone());
        }
        Ok(descriptor)
    }

    async fn delete_blob(&self, repo: &Repository, digest: &Digest) -> Result<()> {
        let mut state = self.state();
        state.blob(repo, digest)?;
        if let Some(repo_state) = state.repos.get_mut(repo) {
            repo_state.blobs.remove(digest);
        }
        state.collect(digest);
        Ok(())
    }

    async fn delete_manifest(&self, repo: &Repository, digest: &Digest) -> Result<()> {
        let mut state = self.state();
        state.manifest(repo, digest)?;
        if let Some(repo_state) = state.repos.get_mut(repo) {
            repo_state.manifests.remove(digest);
            repo_state.tags.retain(|_, target| target != digest);
        }
        Ok(())
    }

    async fn delete_tag(&self, repo: &Repository, tag: &Tag) -> Result<()> {
        let mut state = self.state();
        state.tagged(repo, tag)?;
        if let Some(repo_state) = state.repos.get_mut(repo) {
            repo_state.tags.remove(tag);
        }
        Ok(())
    }

    fn repositories(&self, params: &ListParams) -> BoxStream<'static, Result<Repository>> {
        let names = params.apply(self.state().repos.keys().cloned().collect::<Vec<_>>());
        stream::iter(names.into_iter().map(Ok)).boxed()
    }

    fn tags(&self, repo: &Repository, params: &ListParams) -> BoxStream<'static, Result<Tag>> {
        let state = self.state();
        match state.repo(repo) {
            Ok(repo_state) => {
                let tags = params.apply(repo_state.tags.keys().cloned().collect::<Vec<_>>());
                stream::iter(tags.into_iter().map(Ok)).boxed()
            }
            Err(error) => stream::once(async move { Err(error) }).boxed(),
        }
    }

    fn referrers(
        &self,
        repo: &Repository,
        digest: &Digest,
        params: &ReferrersParams,
    ) -> BoxStream<'static, Result<Descriptor>> {
        let state = self.state();
        let found: Vec<Result<Descriptor>> = state
            .repos
            .get(repo)
            .into_iter()
            .flat_map(|r| r.manifests.iter())
            .filter(|(_, m)| m.subject.as_ref() == Some(digest))
            .filter(|(_, m)| {
                params
                    .artifact_type
                    .as_ref()
                    .is_none_or(|wanted| m.artifact_type.as_ref() == Some(wanted))
            })
            .map(|(d, m)| {
                let mut descriptor = m.descriptor(d);
                descriptor.artifact_type = m.artifact_type.clone();
                descriptor.annotations = m.annotations.clone();
                Ok(descriptor)
            })
            .collect();
        stream::iter(found).boxed()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("MemoryStore")
            .field("repositories", &state.repos.len())
            .field("blobs", &state.content.len())
            .field("uploads", &state.uploads.len())
            .finish()
    }
}

impl fmt::Display for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("memory")
    }
}

/// A chunked upload into a [`MemoryStore`]. The content lives in the store, not the writer, so
/// that a later [`OciInterface::push_blob_chunked_resume`] finds it.
struct MemoryWriter {
    store: MemoryStore,
    repo: Repository,
    id: String,
    size: u64,
    chunk_size: usize,
}

impl MemoryWriter {
    fn unknown(&self) -> Error {
        Error::BlobUploadUnknown {
            repo: self.repo.clone(),
            id: self.id.clone(),
        }
    }
}

impl fmt::Debug for MemoryWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryWriter")
            .field("repo", &self.repo)
            .field("id", &self.id)
            .field("size", &self.size)
            .finish()
    }
}

#[async_trait]
impl BlobWriter for MemoryWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        let mut state = self.store.state();
        let upload = state
            .uploads
            .get_mut(&self.id)
            .filter(|u| u.repo == self.repo)
            .ok_or_else(|| self.unknown())?;
        let written = upload.data.len() as u64;
        if written != self.size {
            // Another writer resumed this upload and moved it on.
            return Err(Error::RangeInvalid {
                target: format!("upload {}", self.id),
                reason: format!("this writer is at {}, the upload at {written}", self.size),
            });
        }
        upload.data.extend_from_slice(&chunk);
        self.size += chunk.len() as u64;
        Ok(())
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    fn id(&self) -> &str {
        &self.id
    }

    async fn close(self: Box<Self>) -> Result<()> {
        Ok(())
    }

    async fn commit(self: Box<Self>, digest: &Digest) -> Result<Descriptor> {
        let mut state = self.store.state();
        if state
            .uploads
            .get(&self.id)
            .is_none_or(|u| u.repo != self.repo)
        {
            return Err(self.unknown());
        }
        let upload = state
            .uploads
            .remove(&self.id)
            .ok_or_else(|| self.unknown())?;
        let content = upload.data.freeze();
        let actual = Digest::of(digest.algorithm(), &content);
        if actual != *digest {
            return Err(Error::DigestInvalid {
                what: "uploaded blob".to_owned(),
                expected: digest.clone(),
                actual,
            });
        }
        let size = content.len();
        state.store_blob(&self.repo, digest.clone(), content);
        Ok(Descriptor::octet_stream(digest, size as u64))
    }

    async fn cancel(self: Box<Self>) -> Result<()> {
        let mut state = self.store.state();
        if state
            .uploads
            .get(&self.id)
            .is_some_and(|u| u.repo == self.repo)
        {
            state.uploads.remove(&self.id);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::OciInterface;
    use crate::conformance::Fixture;

    use super::MemoryStore;

    fn fixture() -> Fixture {
        let store = MemoryStore::new();
        let corrupter = store.conformance_corrupter();
        Fixture::new(store).with_corrupter(corrupter)
    }

    mod memory {
        crate::conformance_tests!(|| async { super::fixture() });
    }

    /// Every method called through `Arc<dyn OciInterface>` and `Box<dyn OciInterface>` reaches
    /// the store behind it, once and as itself: a method forwarded to another one, or not at
    /// all, fails the count.
    #[tokio::test]
    async fn pointers_forward_every_method_to_the_store_behind_them() {
        use bytes::Bytes;
        use futures::StreamExt as _;
        use oci_types::{Descriptor, Digest, MediaType, Repository, Tag, media_type};

        use crate::conformance::Faulty;
        use crate::{ListParams, PushManifestParams, ReferrersParams};

        async fn call_every_method(store: &dyn OciInterface) {
            let repo = Repository::parse("forward").unwrap();
            let other = Repository::parse("forward/other").unwrap();
            let tag = Tag::parse("v1").unwrap();
            let content = Bytes::from_static(b"content");
            let digest = Digest::sha256(&content);
            let blob = Descriptor::new(
                MediaType::from_static(media_type::OCI_LAYER_TAR),
                digest.clone(),
                content.len() as u64,
            );
            let body = crate::body_from_bytes(content);
            // Results do not matter here: each call only has to arrive.
            let _ = store.push_blob(&repo, &blob, body).await;
            let _ = store.get_blob(&repo, &digest).await;
            let _ = store.get_blob_range(&repo, &digest, 0, Some(1)).await;
            let _ = store.get_manifest(&repo, &digest).await;
            let _ = store.get_tag(&repo, &tag).await;
            let _ = store.resolve_blob(&repo, &digest).await;
            let _ = store.resolve_manifest(&repo, &digest).await;
            let _ = store.resolve_tag(&repo, &tag).await;
            let _ = store.push_blob_chunked(&repo, None).await;
            let _ = store
                .push_blob_chunked_resume(&repo, "00000000000000000000000000000000", None, None)
                .await;
            let _ = store.mount_blob(&repo, &other, &digest).await;
            let _ = store
                .push_manifest(
                    &repo,
                    Bytes::from_static(b"{}"),
                    &MediaType::from_static(media_type::OCI_MANIFEST),
                    &PushManifestParams::new(),
                )
                .await;
            let _ = store.delete_blob(&other, &digest).await;
            let _ = store.delete_manifest(&repo, &digest).await;
            let _ = store.delete_tag(&repo, &tag).await;
            let _ = store
                .repositories(&ListParams::new())
                .collect::<Vec<_>>()
                .await;
            let _ = store
                .tags(&repo, &ListParams::new())
                .collect::<Vec<_>>()
                .await;
            let _ = store
                .referrers(&repo, &digest, &ReferrersParams::new())
                .collect::<Vec<_>>()
                .await;
        }

        const METHODS: [&str; 18] = [
            "get_blob",
            "get_blob_range",
            "get_manifest",
            "get_tag",
            "resolve_blob",
            "resolve_manifest",
            "resolve_tag",
            "push_blob",
            "push_blob_chunked",
            "push_blob_chunked_resume",
            "mount_blob",
            "push_manifest",
            "delete_blob",
            "delete_manifest",
            "delete_tag",
            "repositories",
            "tags",
            "referrers",
        ];

        let arc = Arc::new(Faulty::new(MemoryStore::new()));
        let through_arc: Arc<dyn OciInterface> = Arc::<Faulty>::clone(&arc);
        call_every_method(&through_arc).await;
        let boxed: Box<dyn OciInterface> = Box::new(Arc::clone(&arc));
        let counts_before_box = METHODS.map(|m| arc.calls(m));
        call_every_method(&boxed).await;
        for (method, before) in METHODS.iter().zip(counts_before_box) {
            assert_eq!(before, 1, "{method} through Arc<dyn OciInterface>");
            assert_eq!(
                arc.calls(method),
                2,
                "{method} through Box<dyn OciInterface>"
            );
        }
    }
}
