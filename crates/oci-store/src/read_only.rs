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

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use futures::TryStreamExt;
    use oci_types::{Descriptor, ImageManifest, MediaType, Repository, Tag, media_type};

    use super::ReadOnly;
    use crate::{
        ErrorCode, ListParams, MemoryStore, OciInterface, OciInterfaceExt, PushManifestParams,
        ReferrersParams, body_from_bytes,
    };

    fn repo() -> Repository {
        "team/app".parse().unwrap()
    }

    async fn seeded() -> (MemoryStore, Descriptor, Descriptor) {
        let inner = MemoryStore::new();
        let config = inner
            .push_blob_bytes(
                &repo(),
                MediaType::from_static(media_type::OCI_CONFIG),
                Bytes::from("{}"),
            )
            .await
            .unwrap();
        let manifest = ImageManifest::new(config.clone(), vec![]).to_json();
        let pushed = inner
            .push_manifest(
                &repo(),
                manifest.into(),
                &MediaType::from_static(media_type::OCI_MANIFEST),
                &PushManifestParams::new().with_tag("v1".parse().unwrap()),
            )
            .await
            .unwrap();
        (inner, config, pushed)
    }

    #[tokio::test]
    async fn reads_and_listings_pass_through() {
        let (inner, config, manifest) = seeded().await;
        let store = ReadOnly::new(inner);
        let tag: Tag = "v1".parse().unwrap();
        assert_eq!(
            store
                .get_blob_bytes(&repo(), &config.digest, 10)
                .await
                .unwrap(),
            "{}"
        );
        assert_eq!(
            store.resolve_tag(&repo(), &tag).await.unwrap().digest,
            manifest.digest
        );
        store
            .get_tag(&repo(), &tag)
            .await
            .unwrap()
            .bytes(1 << 20)
            .await
            .unwrap();
        store.get_manifest(&repo(), &manifest.digest).await.unwrap();
        store
            .resolve_manifest(&repo(), &manifest.digest)
            .await
            .unwrap();
        store.resolve_blob(&repo(), &config.digest).await.unwrap();
        store
            .get_blob_range(&repo(), &config.digest, 1, None)
            .await
            .unwrap();
        let tags: Vec<Tag> = store
            .tags(&repo(), &ListParams::new())
            .try_collect()
            .await
            .unwrap();
        assert_eq!(tags, [tag]);
        let repos: Vec<Repository> = store
            .repositories(&ListParams::new())
            .try_collect()
            .await
            .unwrap();
        assert_eq!(repos, [repo()]);
        let referrers: Vec<Descriptor> = store
            .referrers(&repo(), &manifest.digest, &ReferrersParams::new())
            .try_collect()
            .await
            .unwrap();
        assert!(referrers.is_empty());
    }

    #[tokio::test]
    async fn every_write_and_delete_is_denied_and_changes_nothing() {
        let (inner, config, manifest) = seeded().await;
        let store = ReadOnly::new(inner.clone());
        let other: Repository = "team/other".parse().unwrap();
        let tag: Tag = "v1".parse().unwrap();
        let content = Bytes::from_static(b"new blob");
        let descriptor =
            Descriptor::of_bytes(MediaType::from_static(media_type::OCI_LAYER_TAR), &content);
        let denied = |code: Option<ErrorCode>, what: &str| {
            assert_eq!(code, Some(ErrorCode::Denied), "{what} must be DENIED");
        };
        denied(
            store
                .push_blob(&repo(), &descriptor, body_from_bytes(content))
                .await
                .err()
                .and_then(|e| e.code()),
            "push_blob",
        );
        denied(
            store
                .push_blob_chunked(&repo(), None)
                .await
                .err()
                .and_then(|e| e.code()),
            "push_blob_chunked",
        );
        denied(
            store
                .push_blob_chunked_resume(&repo(), "abc", None, None)
                .await
                .err()
                .and_then(|e| e.code()),
            "resume",
        );
        denied(
            store
                .mount_blob(&repo(), &other, &config.digest)
                .await
                .err()
                .and_then(|e| e.code()),
            "mount_blob",
        );
        denied(
            store
                .push_manifest(
                    &repo(),
                    Bytes::from("{}"),
                    &MediaType::from_static(media_type::OCI_MANIFEST),
                    &PushManifestParams::new(),
                )
                .await
                .err()
                .and_then(|e| e.code()),
            "push_manifest",
        );
        denied(
            store
                .delete_blob(&repo(), &config.digest)
                .await
                .err()
                .and_then(|e| e.code()),
            "delete_blob",
        );
        denied(
            store
                .delete_manifest(&repo(), &manifest.digest)
                .await
                .err()
                .and_then(|e| e.code()),
            "delete_manifest",
        );
        denied(
            store
                .delete_tag(&repo(), &tag)
                .await
                .err()
                .and_then(|e| e.code()),
            "delete_tag",
        );

        // Nothing reached the inner store.
        assert!(
            inner
                .resolve_blob(&repo(), &descriptor.digest)
                .await
                .is_err()
        );
        assert!(inner.resolve_blob(&other, &config.digest).await.is_err());
        inner.resolve_blob(&repo(), &config.digest).await.unwrap();
        assert_eq!(
            inner.resolve_tag(&repo(), &tag).await.unwrap().digest,
            manifest.digest
        );
        let error = store.delete_tag(&repo(), &tag).await.unwrap_err();
        assert!(
            error.to_string().contains("read-only"),
            "the message says why: {error}"
        );
    }
}
