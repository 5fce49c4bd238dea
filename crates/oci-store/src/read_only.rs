//! `ReadOnly`: a store that serves reads and refuses every write and delete with `DENIED`.

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use oci_types::{Descriptor, Digest, MediaType, Repository, Tag};

use crate::{
    BlobBody, BlobReader, BlobWriter, Error, ListParams, OciInterface, PushManifestParams,
    ReferrersParams, Result,
};

/// Wraps a store so that reads and listings pass through and every write or delete is refused
/// with `DENIED`, before the inner store is touched.
#[derive(Debug, Clone)]
pub struct ReadOnly<S> {
    inner: S,
}

impl<S: OciInterface> ReadOnly<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn denied(&self, operation: &str, target: &dyn fmt::Display) -> Error {
        Error::Denied {
            message: format!("{operation} {target} refused: {self} is read-only"),
        }
    }
}

impl<S: OciInterface> fmt::Display for ReadOnly<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "read-only {}", self.inner)
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl<S: OciInterface> OciInterface for ReadOnly<S> {
    async fn get_blob(&self, repo: &Repository, digest: &Digest) -> Result<BlobReader> {
        self.inner.get_blob(repo, digest).await
    }

    async fn get_blob_range(
        &self,
        repo: &Repository,
        digest: &Digest,
        start: u64,
        end: Option<u64>,
    ) -> Result<BlobReader> {
        self.inner.get_blob_range(repo, digest, start, end).await
    }

    async fn get_manifest(&self, repo: &Repository, digest: &Digest) -> Result<BlobReader> {
        self.inner.get_manifest(repo, digest).await
    }

    async fn get_tag(&self, repo: &Repository, tag: &Tag) -> Result<BlobReader> {
        self.inner.get_tag(repo, tag).await
    }

    async fn resolve_blob(&self, repo: &Repository, digest: &Digest) -> Result<Descriptor> {
        self.inner.resolve_blob(repo, digest).await
    }

    async fn resolve_manifest(&self, repo: &Repository, digest: &Digest) -> Result<Descriptor> {
        self.inner.resolve_manifest(repo, digest).await
    }

    async fn resolve_tag(&self, repo: &Repository, tag: &Tag) -> Result<Descriptor> {
        self.inner.resolve_tag(repo, tag).await
    }

    async fn push_blob(
        &self,
        repo: &Repository,
        descriptor: &Descriptor,
        _body: BlobBody,
    ) -> Result<Descriptor> {
        Err(self.denied(
            "push of blob",
            &format_args!("{} to {repo}", descriptor.digest),
        ))
    }

    async fn push_blob_chunked(
        &self,
        repo: &Repository,
        _chunk_size: Option<usize>,
    ) -> Result<Box<dyn BlobWriter>> {
        Err(self.denied("upload", &format_args!("to {repo}")))
    }

    async fn push_blob_chunked_resume(
        &self,
        repo: &Repository,
        id: &str,
        _offset: Option<u64>,
        _chunk_size: Option<usize>,
    ) -> Result<Box<dyn BlobWriter>> {
        Err(self.denied("upload", &format_args!("{id} to {repo}")))
    }

    async fn mount_blob(
        &self,
        from: &Repository,
        to: &Repository,
        digest: &Digest,
    ) -> Result<Descriptor> {
        Err(self.denied("mount of", &format_args!("{digest} from {from} to {to}")))
    }

    async fn push_manifest(
        &self,
        repo: &Repository,
        _contents: Bytes,
        _media_type: &MediaType,
        _params: &PushManifestParams,
    ) -> Result<Descriptor> {
        Err(self.denied("push of manifest", &format_args!("to {repo}")))
    }

    async fn delete_blob(&self, repo: &Repository, digest: &Digest) -> Result<()> {
        Err(self.denied("delete of blob", &format_args!("{digest} in {repo}")))
    }

    async fn delete_manifest(&self, repo: &Repository, digest: &Digest) -> Result<()> {
        Err(self.denied("delete of manifest", &format_args!("{digest} in {repo}")))
    }

    async fn delete_tag(&self, repo: &Repository, tag: &Tag) -> Result<()> {
        Err(self.denied("delete of tag", &format_args!("{tag} in {repo}")))
    }

    fn repositories(&self, params: &ListParams) -> BoxStream<'static, Result<Repository>> {
        self.inner.repositories(params)
    }

    fn tags(&self, repo: &Repository, params: &ListParams) -> BoxStream<'static, Result<Tag>> {
        self.inner.tags(repo, params)
    }

    fn referrers(
        &self,
        repo: &Repository,
        digest: &Digest,
        params: &ReferrersParams,
    ) -> BoxStream<'static, Result<Descriptor>> {
        self.inner.referrers(repo, digest, params)
    }
}
