//! `Cached`: a read-through cache, a local store in front of a remote one.

mod fill;
mod single_flight;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use oci_types::{Descriptor, Digest, MediaType, Repository, Tag};

use self::fill::{Shared, WholeRead};
use crate::{
    BlobBody, BlobReader, BlobWriter, ErrorCode, ListParams, OciInterface, PushManifestParams,
    ReferrersParams, Result,
};

/// A read-through cache: content addressed by digest is served from `local` once fetched from
/// `remote`; everything else goes to `remote`.
///
/// - A blob that is not cached is streamed from the remote to its reader and into the local
///   store at once, verified on the way (the local store's push checks it too): the reader's
///   first bytes come as soon as the remote's do, however large the blob. The fill runs on a
///   task of its own and goes on when the reader leaves, so a retried download finds the blob
///   cached. Concurrent misses for one digest make one fetch, unless the fill takes longer
///   than a moment: a later reader then reads the remote itself rather than wait with nothing
///   to send. At most 64 fills run at once; beyond, blobs are read from the remote uncached.
///   A reader that holds its fill back (for 30 s in all, and more than half of the fill's
///   time) is let go: the fill goes on, and the reader reads the rest from the cache.
///   (It spawns tokio tasks: use it within a tokio runtime.)
/// - A range read of a whole blob (from byte 0 to its end: how a server that serves blobs
///   unverified reads them) fills the cache as a full read does; other ranges of a blob not
///   cached are read from the remote.
/// - A manifest whose blobs (or children) are not cached yet is served from the remote's bytes
///   (verified) and kept aside, in memory and bounded, until the last of them is cached: then
///   it is cached too. A pull through the cache thus leaves everything it pulled in the local
///   store, ready to serve while the remote is away, without making the manifest's answer wait
///   for its layers.
/// - Tags are asked of the remote every time, or once per [`with_tag_ttl`](Self::with_tag_ttl);
///   the answer is recorded locally, and when the remote is unavailable
///   ([`Error::is_unavailable`](crate::Error::is_unavailable)) the last recorded answer serves.
/// - Writes, listings and referrers go to the remote; deletes go to the remote and then drop the
///   local copy (after any fill of it has ended).
pub struct Cached<R, L> {
    shared: Arc<Shared<R, L>>,
    /// How long a tag's answer from the remote is trusted without asking again.
    tag_ttl: Duration,
    /// When each tag was last asked of the remote, for `tag_ttl`.
    tags_asked: Mutex<HashMap<(Repository, Tag), Instant>>,
}

/// At most this many tags' times are kept; then the memory starts over (a forgotten tag is
/// asked of the remote once more).
const TAGS_REMEMBERED: usize = 65_536;

impl<R: OciInterface + 'static, L: OciInterface + 'static> Cached<R, L> {
    /// Puts `local` in front of `remote`.
    pub fn new(remote: R, local: L) -> Self {
        Self {
            shared: Arc::new(Shared::new(remote, local)),
            tag_ttl: Duration::ZERO,
            tags_asked: Mutex::new(HashMap::new()),
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
        &self.shared.remote
    }

    /// The local store.
    pub fn local(&self) -> &L {
        &self.shared.local
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
            .field("remote", &self.shared.remote)
            .field("local", &self.shared.local)
            .finish_non_exhaustive()
    }
}

impl<R: fmt::Display, L: fmt::Display> fmt::Display for Cached<R, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} cached in {}", self.shared.remote, self.shared.local)
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl<R: OciInterface + 'static, L: OciInterface + 'static> OciInterface for Cached<R, L> {
    async fn get_blob(&self, repo: &Repository, digest: &Digest) -> Result<BlobReader> {
        match self.shared.local.get_blob(repo, digest).await {
            Ok(reader) => Ok(reader),
            Err(_) => {
                self.shared
                    .fill_blob(repo, digest, WholeRead::Verified)
                    .await
            }
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
        if self.shared.local.resolve_blob(repo, digest).await.is_ok() {
            return self
                .shared
                .local
                .get_blob_range(repo, digest, start, end)
                .await;
        }
        if start == 0 && end.is_none() {
            return self
                .shared
                .fill_blob(repo, digest, WholeRead::AsRange)
                .await;
        }
        self.shared
            .remote
            .get_blob_range(repo, digest, start, end)
            .await
    }

    async fn get_manifest(&self, repo: &Repository, digest: &Digest) -> Result<BlobReader> {
        match self.shared.local.get_manifest(repo, digest).await {
            Ok(reader) => Ok(reader),
            Err(_) => self.shared.fill_manifest(repo, digest, Vec::new()).await,
        }
    }

    async fn get_tag(&self, repo: &Repository, tag: &Tag) -> Result<BlobReader> {
        if self.tag_fresh(repo, tag)
            && let Ok(reader) = self.shared.local.get_tag(repo, tag).await
        {
            return Ok(reader);
        }
        match self.shared.remote.resolve_tag(repo, tag).await {
            Ok(descriptor) => {
                let reader = self
                    .shared
                    .fill_manifest(repo, &descriptor.digest, vec![tag.clone()])
                    .await?;
                self.tag_asked(repo, tag);
                Ok(reader)
            }
            Err(error) if error.is_unavailable() => {
                tracing::warn!(%repo, %tag, %error, "remote unavailable: serving the last known tag");
                self.shared
                    .local
                    .get_tag(repo, tag)
                    .await
                    .map_err(|_| error)
            }
            Err(error) => {
                if error.code() == Some(ErrorCode::ManifestUnknown) {
                    self.forget("tag", self.shared.local.delete_tag(repo, tag).await);
                }
                Err(error)
            }
        }
    }

    async fn resolve_blob(&self, repo: &Repository, digest: &Digest) -> Result<Descriptor> {
        match self.shared.local.resolve_blob(repo, digest).await {
            Ok(descriptor) => Ok(descriptor),
            Err(_) => self.shared.remote.resolve_blob(repo, digest).await,
        }
    }

    async fn resolve_manifest(&self, repo: &Repository, digest: &Digest) -> Result<Descriptor> {
        match self.shared.local.resolve_manifest(repo, digest).await {
            Ok(descriptor) => Ok(descriptor),
            Err(_) => self.shared.remote.resolve_manifest(repo, digest).await,
        }
    }

    async fn resolve_tag(&self, repo: &Repository, tag: &Tag) -> Result<Descriptor> {
        if self.tag_fresh(repo, tag)
            && let Ok(descriptor) = self.shared.local.resolve_tag(repo, tag).await
        {
            return Ok(descriptor);
        }
        match self.shared.remote.resolve_tag(repo, tag).await {
            Err(error) if error.is_unavailable() => self
                .shared
                .local
                .resolve_tag(repo, tag)
                .await
                .map_err(|_| error),
            other => other,
        }
    }

    async fn push_blob(
        &self,
        repo: &Repository,
        descriptor: &Descriptor,
        body: BlobBody,
    ) -> Result<Descriptor> {
        self.shared.remote.push_blob(repo, descriptor, body).await
    }

    async fn push_blob_chunked(
        &self,
        repo: &Repository,
        chunk_size: Option<usize>,
    ) -> Result<Box<dyn BlobWriter>> {
        self.shared.remote.push_blob_chunked(repo, chunk_size).await
    }

    async fn push_blob_chunked_resume(
        &self,
        repo: &Repository,
        id: &str,
        offset: Option<u64>,
        chunk_size: Option<usize>,
    ) -> Result<Box<dyn BlobWriter>> {
        self.shared
            .remote
            .push_blob_chunked_resume(repo, id, offset, chunk_size)
            .await
    }

    async fn mount_blob(
        &self,
        from: &Repository,
        to: &Repository,
        digest: &Digest,
    ) -> Result<Descriptor> {
        self.shared.remote.mount_blob(from, to, digest).await
    }

    async fn push_manifest(
        &self,
        repo: &Repository,
        contents: Bytes,
        media_type: &MediaType,
        params: &PushManifestParams,
    ) -> Result<Descriptor> {
        self.shared
            .remote
            .push_manifest(repo, contents, media_type, params)
            .await
    }

    async fn delete_blob(&self, repo: &Repository, digest: &Digest) -> Result<()> {
        self.shared.remote.delete_blob(repo, digest).await?;
        // A fill under way would cache the blob again after the local copy is dropped.
        let _turn = self.shared.in_flight.turn(digest).await;
        self.forget("blob", self.shared.local.delete_blob(repo, digest).await);
        Ok(())
    }

    async fn delete_manifest(&self, repo: &Repository, digest: &Digest) -> Result<()> {
        self.shared.remote.delete_manifest(repo, digest).await?;
        let _turn = self.shared.in_flight.turn(digest).await;
        self.forget(
            "manifest",
            self.shared.local.delete_manifest(repo, digest).await,
        );
        Ok(())
    }

    async fn delete_tag(&self, repo: &Repository, tag: &Tag) -> Result<()> {
        self.shared.remote.delete_tag(repo, tag).await?;
        self.forget("tag", self.shared.local.delete_tag(repo, tag).await);
        Ok(())
    }

    fn repositories(&self, params: &ListParams) -> BoxStream<'static, Result<Repository>> {
        self.shared.remote.repositories(params)
    }

    fn tags(&self, repo: &Repository, params: &ListParams) -> BoxStream<'static, Result<Tag>> {
        self.shared.remote.tags(repo, params)
    }

    fn referrers(
        &self,
        repo: &Repository,
        digest: &Digest,
        params: &ReferrersParams,
    ) -> BoxStream<'static, Result<Descriptor>> {
        self.shared.remote.referrers(repo, digest, params)
    }
}
