//! `Cached`: a read-through cache, a local store in front of a remote one.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use oci_types::{Descriptor, Digest, MAX_MANIFEST_SIZE, MediaType, Repository, Tag};

use crate::{
    BlobBody, BlobReader, BlobWriter, ErrorCode, ListParams, OciInterface, PushManifestParams,
    ReferrersParams, Result, body_from_bytes,
};

/// A read-through cache: content addressed by digest is served from `local` once fetched from
/// `remote`; everything else goes to `remote`.
///
/// - Blobs and manifests are fetched from the remote on a miss, verified by the local store's
///   own push checks, then served locally. Concurrent misses for one digest make one fetch.
/// - A manifest whose blobs are not cached yet cannot be stored in a local store that checks
///   references; it is then served straight from the remote (verified) and cached on a later
///   read.
/// - A range read of a whole blob (from byte 0 to its end: how a server that serves blobs
///   unverified reads them) fills the cache as a full read does; other ranges of a blob not
///   cached are read from the remote.
/// - A manifest whose blobs (or children) are not cached yet is served from the remote's bytes
///   and kept aside, in memory and bounded, until the last of them is cached: then it is
///   cached too. A pull through the cache thus leaves everything it pulled in the local store,
///   ready to serve while the remote is away, without making the manifest's answer wait for
///   its layers.
/// - Tags are asked of the remote every time, or once per [`with_tag_ttl`](Self::with_tag_ttl);
///   the answer is recorded locally, and when the remote is unavailable
///   ([`Error::is_unavailable`](crate::Error::is_unavailable)) the last recorded answer serves.
/// - Writes, listings and referrers go to the remote; deletes go to the remote and then drop the
///   local copy.
pub struct Cached<R, L> {
    remote: R,
    local: L,
    in_flight: Mutex<HashMap<Digest, Arc<tokio::sync::Mutex<()>>>>,
    /// How long a tag's answer from the remote is trusted without asking again.
    tag_ttl: Duration,
    /// When each tag was last asked of the remote, for `tag_ttl`.
    tags_asked: Mutex<HashMap<(Repository, Tag), Instant>>,
    /// Manifests waiting for their content, oldest first.
    pending: Mutex<std::collections::VecDeque<Pending>>,
}

/// At most this many tags' times are kept; then the memory starts over (a forgotten tag is
/// asked of the remote once more).
const TAGS_REMEMBERED: usize = 65_536;

/// At most this many manifests wait for their content to be cached; the oldest is dropped
/// beyond (it is cached on a later read instead).
const PENDING_MANIFESTS: usize = 1024;

/// A manifest fetched from the remote whose content is not all cached yet.
struct Pending {
    repo: Repository,
    digest: Digest,
    media_type: MediaType,
    bytes: Bytes,
    tags: Vec<Tag>,
}

impl<R: OciInterface, L: OciInterface> Cached<R, L> {
    /// Puts `local` in front of `remote`.
    pub fn new(remote: R, local: L) -> Self {
        Self {
            remote,
            local,
            in_flight: Mutex::new(HashMap::new()),
            tag_ttl: Duration::ZERO,
            tags_asked: Mutex::new(HashMap::new()),
            pending: Mutex::new(std::collections::VecDeque::new()),
        }
    }

    /// Trusts the remote's answer for a tag for `ttl`: within it, a tag read locally is served
    /// without asking the remote (zero, the default: every read asks).
    pub fn with_tag_ttl(mut self, ttl: Duration) -> Self {
        self.tag_ttl = ttl;
        self
    }

    /// Whether `tag` was asked of the remote less than the TTL ago.
    fn tag_fresh(&self, repo: &Repository, tag: &Tag) -> bool {
        if self.tag_ttl.is_zero() {
            return false;
        }
        let asked = self
            .tags_asked
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        asked
            .get(&(repo.clone(), tag.clone()))
            .is_some_and(|at| at.elapsed() < self.tag_ttl)
    }

    fn tag_asked(&self, repo: &Repository, tag: &Tag) {
        if self.tag_ttl.is_zero() {
            return;
        }
        let mut asked = self
            .tags_asked
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if asked.len() >= TAGS_REMEMBERED {
            asked.clear();
        }
        asked.insert((repo.clone(), tag.clone()), Instant::now());
    }

    /// The remote store.
    pub fn remote(&self) -> &R {
        &self.remote
    }

    /// The local store.
    pub fn local(&self) -> &L {
        &self.local
    }

    /// Runs `fill` for `digest` with at most one fill per digest at a time; others wait for it
    /// and then find the content cached.
    async fn single_flight<T>(
        &self,
        digest: &Digest,
        fill: impl Future<Output = Result<T>> + Send,
    ) -> Result<T> {
        let gate = {
            let mut in_flight = self
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            Arc::clone(in_flight.entry(digest.clone()).or_default())
        };
        let result = {
            let _turn = gate.lock().await;
            fill.await
        };
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if in_flight.get(digest).is_some_and(|g| Arc::ptr_eq(g, &gate))
            && Arc::strong_count(&gate) <= 2
        {
            in_flight.remove(digest);
        }
        result
    }

    async fn fill_blob(&self, repo: &Repository, digest: &Digest) -> Result<BlobReader> {
        self.single_flight(digest, async {
            if let Ok(reader) = self.local.get_blob(repo, digest).await {
                return Ok(reader);
            }
            let (descriptor, body) = self.remote.get_blob(repo, digest).await?.into_parts();
            self.local.push_blob(repo, &descriptor, body).await?;
            tracing::debug!(%repo, %digest, "cached blob");
            self.settle_pending(repo).await;
            self.local.get_blob(repo, digest).await
        })
        .await
    }

    /// Fetches a manifest from the remote, records it (and `tags`) locally where the local
    /// store accepts it, and serves the fetched bytes.
    async fn fill_manifest(
        &self,
        repo: &Repository,
        digest: &Digest,
        tags: Vec<Tag>,
    ) -> Result<BlobReader> {
        self.single_flight(digest, async {
            if tags.is_empty()
                && let Ok(reader) = self.local.get_manifest(repo, digest).await
            {
                return Ok(reader);
            }
            let reader = self.remote.get_manifest(repo, digest).await?;
            let descriptor = reader.descriptor().clone();
            let bytes = reader.bytes(MAX_MANIFEST_SIZE as u64).await?;
            // Cached now if its content is, else kept aside until it is: one path for both.
            self.keep_pending(Pending {
                repo: repo.clone(),
                digest: digest.clone(),
                media_type: descriptor.media_type.clone(),
                bytes: bytes.clone(),
                tags,
            });
            self.settle_pending(repo).await;
            Ok(BlobReader::verified(descriptor, body_from_bytes(bytes)))
        })
        .await
    }

    /// Keeps `manifest` aside; one already waiting gains its tags.
    fn keep_pending(&self, manifest: Pending) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(waiting) = pending
            .iter_mut()
            .find(|p| p.repo == manifest.repo && p.digest == manifest.digest)
        {
            for tag in manifest.tags {
                if !waiting.tags.contains(&tag) {
                    waiting.tags.push(tag);
                }
            }
            return;
        }
        if pending.len() >= PENDING_MANIFESTS {
            pending.pop_front();
        }
        pending.push_back(manifest);
    }

    /// Caches the manifests of `repo` kept aside whose content is now all cached (an index
    /// once its last child is), until none more can be.
    async fn settle_pending(&self, repo: &Repository) {
        loop {
            let waiting: Vec<Pending> = {
                let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
                let (ours, others): (Vec<_>, Vec<_>) =
                    pending.drain(..).partition(|p| &p.repo == repo);
                pending.extend(others);
                ours
            };
            if waiting.is_empty() {
                return;
            }
            let mut progress = false;
            for manifest in waiting {
                let params = PushManifestParams::new()
                    .with_digest(manifest.digest.clone())
                    .with_tags(manifest.tags.clone());
                match self
                    .local
                    .push_manifest(repo, manifest.bytes.clone(), &manifest.media_type, &params)
                    .await
                {
                    Ok(_) => {
                        tracing::debug!(%repo, digest = %manifest.digest, "cached manifest");
                        progress = true;
                    }
                    Err(error) if error.code() == Some(ErrorCode::ManifestBlobUnknown) => {
                        self.keep_pending(manifest);
                    }
                    Err(error) => {
                        tracing::warn!(%repo, digest = %manifest.digest, %error, "could not cache manifest");
                    }
                }
            }
            if !progress {
                return;
            }
        }
    }

    /// Drops a local copy after a remote delete; a copy that is not there is fine.
    fn forget(&self, what: &str, result: Result<()>) {
        if let Err(error) = result
            && !matches!(
                error.code(),
                Some(ErrorCode::BlobUnknown | ErrorCode::ManifestUnknown | ErrorCode::NameUnknown)
            )
        {
            tracing::warn!(%error, "could not drop cached {what}");
        }
    }
}

impl<R, L> fmt::Debug for Cached<R, L>
where
    R: fmt::Debug,
    L: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cached")
            .field("remote", &self.remote)
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl<R: fmt::Display, L: fmt::Display> fmt::Display for Cached<R, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} cached in {}", self.remote, self.local)
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl<R: OciInterface, L: OciInterface> OciInterface for Cached<R, L> {
    async fn get_blob(&self, repo: &Repository, digest: &Digest) -> Result<BlobReader> {
        match self.local.get_blob(repo, digest).await {
            Ok(reader) => Ok(reader),
            Err(_) => self.fill_blob(repo, digest).await,
        }
    }

    async fn get_blob_range(
        &self,
        repo: &Repository,
        digest: &Digest,
        start: u64,
        end: Option<u64>,
    ) -> Result<BlobReader> {
        // A range is usually a resumed download of a large blob: serve it from wherever the
        // blob is rather than fetching all of it to answer a part. A range of the whole blob
        // is a full read (a server serving blobs unverified reads them so): it fills.
        if self.local.resolve_blob(repo, digest).await.is_ok() {
            return self.local.get_blob_range(repo, digest, start, end).await;
        }
        if start == 0 && end.is_none() {
            drop(self.fill_blob(repo, digest).await?);
            return self.local.get_blob_range(repo, digest, start, end).await;
        }
        self.remote.get_blob_range(repo, digest, start, end).await
    }

    async fn get_manifest(&self, repo: &Repository, digest: &Digest) -> Result<BlobReader> {
        match self.local.get_manifest(repo, digest).await {
            Ok(reader) => Ok(reader),
            Err(_) => self.fill_manifest(repo, digest, Vec::new()).await,
        }
    }

    async fn get_tag(&self, repo: &Repository, tag: &Tag) -> Result<BlobReader> {
        if self.tag_fresh(repo, tag)
            && let Ok(reader) = self.local.get_tag(repo, tag).await
        {
            return Ok(reader);
        }
        match self.remote.resolve_tag(repo, tag).await {
            Ok(descriptor) => {
                let reader = self
                    .fill_manifest(repo, &descriptor.digest, vec![tag.clone()])
                    .await?;
                self.tag_asked(repo, tag);
                Ok(reader)
            }
            Err(error) if error.is_unavailable() => {
                tracing::warn!(%repo, %tag, %error, "remote unavailable: serving the last known tag");
                self.local.get_tag(repo, tag).await.map_err(|_| error)
            }
            Err(error) => {
                if error.code() == Some(ErrorCode::ManifestUnknown) {
                    self.forget("tag", self.local.delete_tag(repo, tag).await);
                }
                Err(error)
            }
        }
    }

    async fn resolve_blob(&self, repo: &Repository, digest: &Digest) -> Result<Descriptor> {
        match self.local.resolve_blob(repo, digest).await {
            Ok(descriptor) => Ok(descriptor),
            Err(_) => self.remote.resolve_blob(repo, digest).await,
        }
    }

    async fn resolve_manifest(&self, repo: &Repository, digest: &Digest) -> Result<Descriptor> {
        match self.local.resolve_manifest(repo, digest).await {
            Ok(descriptor) => Ok(descriptor),
            Err(_) => self.remote.resolve_manifest(repo, digest).await,
        }
    }

    async fn resolve_tag(&self, repo: &Repository, tag: &Tag) -> Result<Descriptor> {
        if self.tag_fresh(repo, tag)
            && let Ok(descriptor) = self.local.resolve_tag(repo, tag).await
        {
            return Ok(descriptor);
        }
        match self.remote.resolve_tag(repo, tag).await {
            Err(error) if error.is_unavailable() => {
                self.local.resolve_tag(repo, tag).await.map_err(|_| error)
            }
            other => other,
        }
    }

    async fn push_blob(
        &self,
        repo: &Repository,
        descriptor: &Descriptor,
        body: BlobBody,
    ) -> Result<Descriptor> {
        self.remote.push_blob(repo, descriptor, body).await
    }

    async fn push_blob_chunked(
        &self,
        repo: &Repository,
        chunk_size: Option<usize>,
    ) -> Result<Box<dyn BlobWriter>> {
        self.remote.push_blob_chunked(repo, chunk_size).await
    }

    async fn push_blob_chunked_resume(
        &self,
        repo: &Repository,
        id: &str,
        offset: Option<u64>,
        chunk_size: Option<usize>,
    ) -> Result<Box<dyn BlobWriter>> {
        self.remote
            .push_blob_chunked_resume(repo, id, offset, chunk_size)
            .await
    }

    async fn mount_blob(
        &self,
        from: &Repository,
        to: &Repository,
        digest: &Digest,
    ) -> Result<Descriptor> {
        self.remote.mount_blob(from, to, digest).await
    }

    async fn push_manifest(
        &self,
        repo: &Repository,
        contents: Bytes,
        media_type: &MediaType,
        params: &PushManifestParams,
    ) -> Result<Descriptor> {
        self.remote
            .push_manifest(repo, contents, media_type, params)
            .await
    }

    async fn delete_blob(&self, repo: &Repository, digest: &Digest) -> Result<()> {
        self.remote.delete_blob(repo, digest).await?;
        self.forget("blob", self.local.delete_blob(repo, digest).await);
        Ok(())
    }

    async fn delete_manifest(&self, repo: &Repository, digest: &Digest) -> Result<()> {
        self.remote.delete_manifest(repo, digest).await?;
        self.forget("manifest", self.local.delete_manifest(repo, digest).await);
        Ok(())
    }

    async fn delete_tag(&self, repo: &Repository, tag: &Tag) -> Result<()> {
        self.remote.delete_tag(repo, tag).await?;
        self.forget("tag", self.local.delete_tag(repo, tag).await);
        Ok(())
    }

    fn repositories(&self, params: &ListParams) -> BoxStream<'static, Result<Repository>> {
        self.remote.repositories(params)
    }

    fn tags(&self, repo: &Repository, params: &ListParams) -> BoxStream<'static, Result<Tag>> {
        self.remote.tags(repo, params)
    }

    fn referrers(
        &self,
        repo: &Repository,
        digest: &Digest,
        params: &ReferrersParams,
    ) -> BoxStream<'static, Result<Descriptor>> {
        self.remote.referrers(repo, digest, params)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use oci_types::{ImageManifest, MediaType, Repository, Tag, media_type};

    use super::Cached;
    use crate::conformance::{Faulty, Fixture, seeded_bytes};
    use crate::{ErrorCode, MemoryStore, OciInterface, OciInterfaceExt, PushManifestParams};

    mod cached_memory {
        use super::*;
        crate::conformance_tests!(|| async {
            let remote = MemoryStore::new();
            let corrupter = remote.conformance_corrupter();
            Fixture::new(Cached::new(remote, MemoryStore::new())).with_corrupter(corrupter)
        });
    }

    fn repo() -> Repository {
        "cache/test".parse().unwrap()
    }

    async fn push_image(store: &MemoryStore, tag: &str, seed: u64) -> oci_types::Descriptor {
        let layer = store
            .push_blob_bytes(
                &repo(),
                MediaType::from_static(media_type::OCI_LAYER_GZIP),
                seeded_bytes(seed, 1000),
            )
            .await
            .unwrap();
        let config = store
            .push_blob_bytes(
                &repo(),
                MediaType::from_static(media_type::OCI_CONFIG),
                Bytes::from("{}"),
            )
            .await
            .unwrap();
        store
            .push_manifest(
                &repo(),
                ImageManifest::new(config, vec![layer]).to_json().into(),
                &MediaType::from_static(media_type::OCI_MANIFEST),
                &PushManifestParams::new().with_tag(tag.parse().unwrap()),
            )
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_for_one_digest_make_one_fetch() {
        let origin = MemoryStore::new();
        let blob = origin
            .push_blob_bytes(
                &repo(),
                MediaType::from_static(media_type::OCI_LAYER_GZIP),
                seeded_bytes(1, 1 << 20),
            )
            .await
            .unwrap();
        let remote = Faulty::new(origin);
        let cache = Arc::new(Cached::new(remote.clone(), MemoryStore::new()));
        let readers: Vec<_> = (0..16)
            .map(|_| {
                let (cache, digest) = (Arc::clone(&cache), blob.digest.clone());
                tokio::spawn(async move { cache.get_blob_bytes(&repo(), &digest, 1 << 21).await })
            })
            .collect();
        for reader in readers {
            assert_eq!(reader.await.unwrap().unwrap().len(), 1 << 20);
        }
        assert_eq!(
            remote.calls("get_blob"),
            1,
            "sixteen concurrent misses, one fetch"
        );
        cache
            .get_blob_bytes(&repo(), &blob.digest, 1 << 21)
            .await
            .unwrap();
        assert_eq!(
            remote.calls("get_blob"),
            1,
            "a later read is served locally"
        );
    }

    #[tokio::test]
    async fn a_manifest_is_cached_once_its_blobs_are_and_its_tag_is_trusted_for_the_ttl() {
        let origin = MemoryStore::new();
        let manifest = push_image(&origin, "v1", 3).await;
        let remote = Faulty::new(origin);
        let cache = Cached::new(remote.clone(), MemoryStore::new())
            .with_tag_ttl(std::time::Duration::from_secs(3600));
        let tag: Tag = "v1".parse().unwrap();
        // As a pull goes: the manifest (served at once, its blobs not cached yet), then its
        // blobs, read whole as ranges (as a server reads them).
        let first = cache
            .get_tag(&repo(), &tag)
            .await
            .unwrap()
            .bytes(1 << 20)
            .await
            .unwrap();
        assert!(cache.local().resolve_tag(&repo(), &tag).await.is_err());
        let parsed = oci_types::Manifest::parse(&first, &manifest.media_type).unwrap();
        for reference in parsed.references() {
            let read = cache
                .get_blob_range(&repo(), &reference.digest, 0, None)
                .await
                .unwrap()
                .bytes(1 << 20)
                .await
                .unwrap();
            assert_eq!(read.len() as u64, reference.size);
        }
        // The last blob in, the manifest and its tag were cached.
        assert_eq!(
            cache
                .local()
                .resolve_tag(&repo(), &tag)
                .await
                .unwrap()
                .digest,
            manifest.digest
        );
        // Within the TTL the tag is not asked again.
        let asked = remote.calls("resolve_tag");
        cache.resolve_tag(&repo(), &tag).await.unwrap();
        cache.get_tag(&repo(), &tag).await.unwrap();
        assert_eq!(remote.calls("resolve_tag"), asked);
        // With the remote away, all of it serves.
        remote.set_offline(true);
        let offline = cache
            .get_tag(&repo(), &tag)
            .await
            .unwrap()
            .bytes(1 << 20)
            .await
            .unwrap();
        assert_eq!(offline, first);
    }

    #[tokio::test]
    async fn a_whole_blob_read_as_a_range_fills_the_cache() {
        let origin = MemoryStore::new();
        let blob = origin
            .push_blob_bytes(
                &repo(),
                MediaType::from_static(media_type::OCI_LAYER_GZIP),
                seeded_bytes(4, 5000),
            )
            .await
            .unwrap();
        let remote = Faulty::new(origin);
        let cache = Cached::new(remote.clone(), MemoryStore::new());
        let part = cache
            .get_blob_range(&repo(), &blob.digest, 10, Some(20))
            .await
            .unwrap()
            .bytes(1 << 20)
            .await
            .unwrap();
        assert_eq!(part.len(), 10);
        assert!(
            cache
                .local()
                .resolve_blob(&repo(), &blob.digest)
                .await
                .is_err(),
            "a part fills nothing"
        );
        cache
            .get_blob_range(&repo(), &blob.digest, 0, None)
            .await
            .unwrap()
            .bytes(1 << 20)
            .await
            .unwrap();
        assert!(
            cache
                .local()
                .resolve_blob(&repo(), &blob.digest)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn content_is_served_locally_once_fetched() {
        let origin = MemoryStore::new();
        let manifest = push_image(&origin, "v1", 2).await;
        let remote = Faulty::new(origin);
        let cache = Cached::new(remote.clone(), MemoryStore::new());
        // Manifests are cached once their blobs are: pull the blobs, then the manifest.
        let tag: Tag = "v1".parse().unwrap();
        let bytes = cache
            .get_tag(&repo(), &tag)
            .await
            .unwrap()
            .bytes(1 << 20)
            .await
            .unwrap();
        let parsed = oci_types::Manifest::parse(&bytes, &manifest.media_type).unwrap();
        for reference in parsed.references() {
            cache
                .get_blob_bytes(&repo(), &reference.digest, 1 << 20)
                .await
                .unwrap();
        }
        cache.get_tag(&repo(), &tag).await.unwrap();
        remote.set_offline(true);
        for reference in parsed.references() {
            cache
                .get_blob_bytes(&repo(), &reference.digest, 1 << 20)
                .await
                .unwrap();
        }
        let offline = cache
            .get_manifest(&repo(), &manifest.digest)
            .await
            .unwrap()
            .bytes(1 << 20)
            .await
            .unwrap();
        assert_eq!(offline, bytes);
    }

    #[tokio::test]
    async fn the_last_known_tag_serves_while_the_remote_is_unavailable() {
        let origin = MemoryStore::new();
        let first = push_image(&origin, "moving", 3).await;
        let remote = Faulty::new(origin.clone());
        let cache = Cached::new(remote.clone(), MemoryStore::new());
        let tag: Tag = "moving".parse().unwrap();
        let parsed_first = {
            let bytes = cache
                .get_tag(&repo(), &tag)
                .await
                .unwrap()
                .bytes(1 << 20)
                .await
                .unwrap();
            oci_types::Manifest::parse(&bytes, &first.media_type).unwrap()
        };
        for reference in parsed_first.references() {
            cache
                .get_blob_bytes(&repo(), &reference.digest, 1 << 20)
                .await
                .unwrap();
        }
        assert_eq!(
            cache
                .get_tag(&repo(), &tag)
                .await
                .unwrap()
                .descriptor()
                .digest,
            first.digest
        );

        // The tag moves on the remote; the cache follows it.
        let second = push_image(&origin, "moving", 4).await;
        assert_eq!(
            cache.resolve_tag(&repo(), &tag).await.unwrap().digest,
            second.digest
        );

        // The remote goes away: the last answer recorded locally serves.
        remote.set_offline(true);
        let served = cache.resolve_tag(&repo(), &tag).await.unwrap();
        assert_eq!(served.digest, first.digest, "the last recorded answer");
        cache.get_tag(&repo(), &tag).await.unwrap();

        // A tag never seen has no last answer: the remote's failure is reported.
        let unseen: Tag = "unseen".parse().unwrap();
        let error = cache.resolve_tag(&repo(), &unseen).await.unwrap_err();
        assert!(error.is_unavailable(), "{error}");
    }

    #[tokio::test]
    async fn content_is_verified_before_it_is_cached() {
        let origin = MemoryStore::new();
        let blob = origin
            .push_blob_bytes(
                &repo(),
                MediaType::from_static(media_type::OCI_LAYER_GZIP),
                seeded_bytes(5, 5000),
            )
            .await
            .unwrap();
        assert!(origin.corrupt_blob_for_tests(&blob.digest));
        let local = MemoryStore::new();
        let cache = Cached::new(origin, local.clone());
        let result = cache.get_blob_bytes(&repo(), &blob.digest, 1 << 20).await;
        assert_eq!(result.unwrap_err().code(), Some(ErrorCode::DigestInvalid));
        assert!(
            local.resolve_blob(&repo(), &blob.digest).await.is_err(),
            "nothing corrupt was cached"
        );
    }
}
