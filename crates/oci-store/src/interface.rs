//! The `OciInterface` trait: the one contract between hoist's stores and everything that uses
//! them.

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use oci_types::{Descriptor, Digest, ManifestRef, MediaType, Repository, Tag};

use crate::{BlobBody, BlobReader, BlobWriter, Error, Result};

/// Parameters of [`OciInterface::push_manifest`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PushManifestParams {
    /// Tags to point at the manifest; none pushes it by digest only.
    pub tags: Vec<Tag>,
    /// The digest the caller expects the bytes to have (a push by digest); a mismatch is
    /// `DIGEST_INVALID` and nothing is stored. Its algorithm is also the one used to name the
    /// manifest; without it, SHA-256.
    pub digest: Option<Digest>,
}

impl PushManifestParams {
    /// No tags, no expected digest.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a tag.
    pub fn with_tag(mut self, tag: Tag) -> Self {
        self.tags.push(tag);
        self
    }

    /// Sets several tags.
    pub fn with_tags(mut self, tags: impl IntoIterator<Item = Tag>) -> Self {
        self.tags.extend(tags);
        self
    }

    /// Sets the expected digest.
    pub fn with_digest(mut self, digest: Digest) -> Self {
        self.digest = Some(digest);
        self
    }
}

/// Paging of [`OciInterface::repositories`] and [`OciInterface::tags`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListParams {
    /// List only names sorting strictly after this one (the `last` of the distribution-spec).
    pub start_after: Option<String>,
    /// List at most this many names.
    pub limit: Option<usize>,
}

impl ListParams {
    /// Everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// Names after `name`.
    pub fn with_start_after(mut self, name: impl Into<String>) -> Self {
        self.start_after = Some(name.into());
        self
    }

    /// At most `limit` names.
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }
}

/// Filtering of [`OciInterface::referrers`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReferrersParams {
    /// Keep only referrers of exactly this artifact type.
    pub artifact_type: Option<MediaType>,
}

impl ReferrersParams {
    /// No filter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only referrers of `artifact_type`.
    pub fn with_artifact_type(mut self, artifact_type: MediaType) -> Self {
        self.artifact_type = Some(artifact_type);
        self
    }
}

/// A store of OCI content: a registry, a layout directory, memory, or a wrapper around one.
///
/// Modelled on the Go `ociregistry.Interface` (cue-labs/oci): read, write, delete and list.
/// Arguments are validated types from `oci-types`; results carry `oci-store`'s [`Error`](crate::Error)
/// with a distribution-spec code.
///
/// # Contract
/// - **Reads verify.** A full read ([`get_blob`](Self::get_blob), [`get_manifest`](Self::get_manifest),
///   [`get_tag`](Self::get_tag)) yields exactly the descriptor's size and digest or ends in an
///   error; see [`BlobReader`]. Range reads are checked for length only.
/// - **Writes are atomic and verified.** [`push_blob`](Self::push_blob) and
///   [`BlobWriter::commit`] check size and digest before the content becomes visible; a failed
///   push leaves nothing behind. Manifests are stored as the exact bytes given.
/// - **Manifests are complete.** A manifest whose config, layers or index children are missing
///   from the repository is refused with `MANIFEST_BLOB_UNKNOWN`; a `subject` may dangle.
/// - **Deletes.** Deleting a manifest also removes the tags that point at it; deleting what is
///   not there is `BLOB_UNKNOWN` or `MANIFEST_UNKNOWN`.
/// - **Ranges** are `[start, end)`; `end` of `None`, or past the blob's end, means "to the
///   end"; an empty range (`start >= end`) or a start at or past the end is `RANGE_INVALID`.
/// - **Unknown repositories** give `NAME_UNKNOWN` where a store tracks repositories, or the
///   code of the missing object; callers should accept either.
/// - **Unsupported** operations return `UNSUPPORTED` explicitly: every method is required, so
///   no store or wrapper can forget one silently.
/// - **Listings** are `'static` streams in lexical order, so they can be spawned and paged.
///
/// # Wrapping
/// A wrapper implements every method and forwards what it does not change; wrappers carry
/// `#[deny(clippy::missing_trait_methods)]` so that a method added here breaks their build
/// until they forward it.
#[async_trait]
pub trait OciInterface: fmt::Debug + fmt::Display + Send + Sync + 'static {
    /// The content of a blob.
    async fn get_blob(&self, repo: &Repository, digest: &Digest) -> Result<BlobReader>;

    /// Bytes `[start, end)` of a blob (see the contract for the bounds). The reader's descriptor
    /// describes the whole blob.
    async fn get_blob_range(
        &self,
        repo: &Repository,
        digest: &Digest,
        start: u64,
        end: Option<u64>,
    ) -> Result<BlobReader>;

    /// The content of a manifest by digest; its descriptor carries the stored media type.
    async fn get_manifest(&self, repo: &Repository, digest: &Digest) -> Result<BlobReader>;

    /// The content of the manifest a tag points at.
    async fn get_tag(&self, repo: &Repository, tag: &Tag) -> Result<BlobReader>;

    /// A blob's descriptor (media type, digest, size), without its content.
    async fn resolve_blob(&self, repo: &Repository, digest: &Digest) -> Result<Descriptor>;

    /// A manifest's descriptor, without its content.
    async fn resolve_manifest(&self, repo: &Repository, digest: &Digest) -> Result<Descriptor>;

    /// The descriptor of the manifest a tag points at.
    async fn resolve_tag(&self, repo: &Repository, tag: &Tag) -> Result<Descriptor>;

    /// Stores a blob whose digest and size are `descriptor`'s (other fields are ignored), and
    /// returns its stored descriptor.
    ///
    /// The content is checked against the digest and size before it becomes visible, and a
    /// mismatch is `DIGEST_INVALID` or `SIZE_INVALID` with nothing stored: callers may push a
    /// body nobody hashed ([`BlobReader::into_stream_for_push`](crate::BlobReader::into_stream_for_push)).
    /// A store that passes the content on to another that checks it (the registry client: the
    /// registry checks when it commits an upload) may leave the check to that one.
    async fn push_blob(
        &self,
        repo: &Repository,
        descriptor: &Descriptor,
        body: BlobBody,
    ) -> Result<Descriptor>;

    /// Starts a chunked upload; `chunk_size` is a hint that the store may raise.
    async fn push_blob_chunked(
        &self,
        repo: &Repository,
        chunk_size: Option<usize>,
    ) -> Result<Box<dyn BlobWriter>>;

    /// Continues the upload `id` (from [`BlobWriter::id`]). `offset` is the size the caller
    /// believes was written (a different one is `RANGE_INVALID`), or `None` for wherever the
    /// upload is. An unknown id is `BLOB_UPLOAD_UNKNOWN`.
    async fn push_blob_chunked_resume(
        &self,
        repo: &Repository,
        id: &str,
        offset: Option<u64>,
        chunk_size: Option<usize>,
    ) -> Result<Box<dyn BlobWriter>>;

    /// Makes a blob of repository `from` available in `to` without uploading it again.
    async fn mount_blob(
        &self,
        from: &Repository,
        to: &Repository,
        digest: &Digest,
    ) -> Result<Descriptor>;

    /// Stores a manifest's exact bytes under their digest and points `params.tags` at it.
    async fn push_manifest(
        &self,
        repo: &Repository,
        contents: Bytes,
        media_type: &MediaType,
        params: &PushManifestParams,
    ) -> Result<Descriptor>;

    /// Removes a blob from a repository.
    async fn delete_blob(&self, repo: &Repository, digest: &Digest) -> Result<()>;

    /// Removes a manifest and every tag that points at it.
    async fn delete_manifest(&self, repo: &Repository, digest: &Digest) -> Result<()>;

    /// Removes a tag; the manifest stays.
    async fn delete_tag(&self, repo: &Repository, tag: &Tag) -> Result<()>;

    /// The repositories, in lexical order.
    fn repositories(&self, params: &ListParams) -> BoxStream<'static, Result<Repository>>;

    /// The tags of a repository, in lexical order.
    fn tags(&self, repo: &Repository, params: &ListParams) -> BoxStream<'static, Result<Tag>>;

    /// Descriptors of the manifests in `repo` whose `subject` is `digest`, each with its
    /// artifact type and annotations, ordered by digest.
    fn referrers(
        &self,
        repo: &Repository,
        digest: &Digest,
        params: &ReferrersParams,
    ) -> BoxStream<'static, Result<Descriptor>>;
}

/// Forwards every method of [`OciInterface`] through a smart pointer.
macro_rules! forward_impl {
    ($pointer:ident) => {
        #[deny(clippy::missing_trait_methods)]
        #[async_trait]
        impl<T: OciInterface + ?Sized> OciInterface for $pointer<T> {
            async fn get_blob(&self, repo: &Repository, digest: &Digest) -> Result<BlobReader> {
                (**self).get_blob(repo, digest).await
            }
            async fn get_blob_range(
                &self,
                repo: &Repository,
                digest: &Digest,
                start: u64,
                end: Option<u64>,
            ) -> Result<BlobReader> {
                (**self).get_blob_range(repo, digest, start, end).await
            }
            async fn get_manifest(&self, repo: &Repository, digest: &Digest) -> Result<BlobReader> {
                (**self).get_manifest(repo, digest).await
            }
            async fn get_tag(&self, repo: &Repository, tag: &Tag) -> Result<BlobReader> {
                (**self).get_tag(repo, tag).await
            }
            async fn resolve_blob(&self, repo: &Repository, digest: &Digest) -> Result<Descriptor> {
                (**self).resolve_blob(repo, digest).await
            }
            async fn resolve_manifest(
                &self,
                repo: &Repository,
                digest: &Digest,
            ) -> Result<Descriptor> {
                (**self).resolve_manifest(repo, digest).await
            }
            async fn resolve_tag(&self, repo: &Repository, tag: &Tag) -> Result<Descriptor> {
                (**self).resolve_tag(repo, tag).await
            }
            async fn push_blob(
                &self,
                repo: &Repository,
                descriptor: &Descriptor,
                body: BlobBody,
            ) -> Result<Descriptor> {
                (**self).push_blob(repo, descriptor, body).await
            }
            async fn push_blob_chunked(
                &self,
                repo: &Repository,
                chunk_size: Option<usize>,
            ) -> Result<Box<dyn BlobWriter>> {
                (**self).push_blob_chunked(repo, chunk_size).await
            }
            async fn push_blob_chunked_resume(
                &self,
                repo: &Repository,
                id: &str,
                offset: Option<u64>,
                chunk_size: Option<usize>,
            ) -> Result<Box<dyn BlobWriter>> {
                (**self)
                    .push_blob_chunked_resume(repo, id, offset, chunk_size)
                    .await
            }
            async fn mount_blob(
                &self,
                from: &Repository,
                to: &Repository,
                digest: &Digest,
            ) -> Result<Descriptor> {
                (**self).mount_blob(from, to, digest).await
            }
            async fn push_manifest(
                &self,
                repo: &Repository,
                contents: Bytes,
                media_type: &MediaType,
                params: &PushManifestParams,
            ) -> Result<Descriptor> {
                (**self)
                    .push_manifest(repo, contents, media_type, params)
                    .await
            }
            async fn delete_blob(&self, repo: &Repository, digest: &Digest) -> Result<()> {
                (**self).delete_blob(repo, digest).await
            }
            async fn delete_manifest(&self, repo: &Repository, digest: &Digest) -> Result<()> {
                (**self).delete_manifest(repo, digest).await
            }
            async fn delete_tag(&self, repo: &Repository, tag: &Tag) -> Result<()> {
                (**self).delete_tag(repo, tag).await
            }
            fn repositories(&self, params: &ListParams) -> BoxStream<'static, Result<Repository>> {
                (**self).repositories(params)
            }
            fn tags(
                &self,
                repo: &Repository,
                params: &ListParams,
            ) -> BoxStream<'static, Result<Tag>> {
                (**self).tags(repo, params)
            }
            fn referrers(
                &self,
                repo: &Repository,
                digest: &Digest,
                params: &ReferrersParams,
            ) -> BoxStream<'static, Result<Descriptor>> {
                (**self).referrers(repo, digest, params)
            }
        }
    };
}

use std::sync::Arc;
forward_impl!(Arc);
forward_impl!(Box);

/// Conveniences over [`OciInterface`] for every store; never implemented by hand.
pub trait OciInterfaceExt: OciInterface {
    /// Pushes a blob held in memory, computing its SHA-256 descriptor.
    fn push_blob_bytes(
        &self,
        repo: &Repository,
        media_type: MediaType,
        content: Bytes,
    ) -> impl Future<Output = Result<Descriptor>> + Send {
        async move {
            let descriptor = Descriptor::of_bytes(media_type.clone(), &content);
            let mut stored = self
                .push_blob(repo, &descriptor, crate::body_from_bytes(content))
                .await?;
            stored.media_type = media_type;
            Ok(stored)
        }
    }

    /// Reads the manifest a tag or digest names ([`OciInterface::get_tag`] or
    /// [`OciInterface::get_manifest`]).
    fn get_manifest_ref(
        &self,
        repo: &Repository,
        reference: &ManifestRef,
    ) -> impl Future<Output = Result<BlobReader>> + Send {
        async move {
            match reference {
                ManifestRef::Tag(tag) => self.get_tag(repo, tag).await,
                ManifestRef::Digest(digest) => self.get_manifest(repo, digest).await,
                other => Err(unknown_manifest_ref(repo, other)),
            }
        }
    }

    /// The descriptor of the manifest a tag or digest names ([`OciInterface::resolve_tag`] or
    /// [`OciInterface::resolve_manifest`]).
    fn resolve_manifest_ref(
        &self,
        repo: &Repository,
        reference: &ManifestRef,
    ) -> impl Future<Output = Result<Descriptor>> + Send {
        async move {
            match reference {
                ManifestRef::Tag(tag) => self.resolve_tag(repo, tag).await,
                ManifestRef::Digest(digest) => self.resolve_manifest(repo, digest).await,
                other => Err(unknown_manifest_ref(repo, other)),
            }
        }
    }

    /// Reads a whole blob into memory, verified, refusing more than `max_len` bytes.
    fn get_blob_bytes(
        &self,
        repo: &Repository,
        digest: &Digest,
        max_len: u64,
    ) -> impl Future<Output = Result<Bytes>> + Send {
        async move { self.get_blob(repo, digest).await?.bytes(max_len).await }
    }
}

impl<T: OciInterface + ?Sized> OciInterfaceExt for T {}

/// A kind of [`ManifestRef`] newer than this crate's conveniences.
fn unknown_manifest_ref(repo: &Repository, reference: &ManifestRef) -> Error {
    Error::ManifestUnknown {
        repo: repo.clone(),
        reference: reference.to_string(),
    }
}

impl ListParams {
    /// Applies the paging to names already in lexical order: skips up to `start_after`, keeps
    /// at most `limit`. Backends that list from memory or a directory share this.
    pub fn apply<T: AsRef<str>>(&self, sorted: impl IntoIterator<Item = T>) -> Vec<T> {
        let after = self.start_after.as_deref();
        sorted
            .into_iter()
            .filter(|name| after.is_none_or(|after| name.as_ref() > after))
            .take(self.limit.unwrap_or(usize::MAX))
            .collect()
    }
}
