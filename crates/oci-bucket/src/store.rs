//! `BucketStore`: the [`OciInterface`] over an object store.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::multipart::MultipartStore;
use object_store::signer::Signer;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use oci_store::{
    BlobBody, BlobReader, BlobWriter, Error, ListParams, OciInterface, PushCheck,
    PushManifestParams, ReferrersParams, Result, check_range, inspect_manifest,
};
use oci_types::{Descriptor, Digest, MediaType, Repository, Tag};
use serde::{Deserialize, Serialize};

use crate::inner::{Inner, Settings};
use crate::list::listing;
use crate::upload;

/// The part size of uploads unless told otherwise: above S3's minimum of 5 MiB, small enough
/// that a few in flight cost little memory.
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;

/// Parts in flight at once while a large blob is pushed whole.
const PARTS_IN_FLIGHT: usize = 2;

/// A repository's link to a blob.
#[derive(Serialize, Deserialize)]
struct BlobLink {
    size: u64,
}

/// A repository's record of a manifest: what its descriptor and the referrers API need, so
/// that neither reads the manifest itself.
#[derive(Serialize, Deserialize)]
pub(crate) struct ManifestLink {
    pub(crate) media_type: MediaType,
    pub(crate) size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) subject: Option<Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) artifact_type: Option<MediaType>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) annotations: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct TagLink {
    pub(crate) digest: Digest,
}

/// Any [`ObjectStore`] as an [`OciInterface`]: see the crate docs.
#[derive(Clone)]
pub struct BucketStore {
    pub(crate) inner: Arc<Inner>,
}

impl BucketStore {
    /// A store over `store` whose chunked uploads keep their parts as objects of their own,
    /// joined at commit: for stores without a resumable multipart API (local files).
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self::from_settings(Settings {
            name: store.to_string(),
            store,
            multipart: None,
            prefix: String::new(),
            part_size: DEFAULT_PART_SIZE,
            signer: None,
            copy_limit: None,
        })
    }

    /// A store over `store` whose chunked uploads are multipart uploads of the store itself
    /// (S3, GCS, Azure, memory), resumable from any process by their id.
    pub fn with_multipart<S: ObjectStore + MultipartStore>(store: Arc<S>) -> Self {
        let multipart: Arc<dyn MultipartStore> = Arc::<S>::clone(&store);
        Self::from_settings(Settings {
            name: store.to_string(),
            store,
            multipart: Some(multipart),
            prefix: String::new(),
            part_size: DEFAULT_PART_SIZE,
            signer: None,
            copy_limit: None,
        })
    }

    fn from_settings(settings: Settings) -> Self {
        Self {
            inner: Arc::new(Inner::new(settings)),
        }
    }

    fn changed(&self, change: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = self.inner.settings();
        change(&mut settings);
        Self::from_settings(settings)
    }

    /// Keeps everything under `prefix` in the bucket.
    pub fn with_prefix(self, prefix: &str) -> Self {
        self.changed(|s| s.prefix = prefix.to_owned())
    }

    /// Sets the size of upload parts (default [`DEFAULT_PART_SIZE`]; S3 needs at least 5 MiB
    /// for every part but the last). This is also about the most an upload holds in memory.
    pub fn with_part_size(self, part_size: usize) -> Self {
        self.changed(|s| s.part_size = part_size)
    }

    /// Names the store in messages and logs (`s3://bucket/prefix`).
    pub fn with_name(self, name: impl Into<String>) -> Self {
        self.changed(|s| s.name = name.into())
    }

    /// Signs URLs of blob content with `signer` (the same bucket's client: `AmazonS3`,
    /// `GoogleCloudStorage`, `MicrosoftAzure`), so that this store is a [`BlobLocator`](oci_store::BlobLocator) that a
    /// server can redirect blob downloads to.
    pub fn with_signer(self, signer: Arc<dyn Signer>) -> Self {
        self.changed(|s| s.signer = Some(signer))
    }

    /// Content larger than `bytes` is moved into place by streaming it through this process
    /// instead of by a server-side copy: S3 copies at most 5 GiB in one request (set by
    /// [`open_url`](crate::open_url) for `s3://`).
    pub fn with_copy_limit(self, bytes: u64) -> Self {
        self.changed(|s| s.copy_limit = Some(bytes))
    }

    /// Whether this store signs URLs of its content ([`with_signer`](Self::with_signer)), so
    /// that [`BlobLocator::blob_url`](oci_store::BlobLocator::blob_url) gives some.
    pub fn signs_urls(&self) -> bool {
        self.inner.signer.is_some()
    }

    /// The object store underneath.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner.store
    }

    async fn blob_size(&self, repo: &Repository, digest: &Digest) -> Result<u64> {
        let link: Option<BlobLink> = self
            .inner
            .get_json(&self.inner.keys.blob_link(repo, digest))
            .await?;
        link.map(|l| l.size).ok_or_else(|| Error::BlobUnknown {
            repo: repo.clone(),
            digest: digest.clone(),
        })
    }

    async fn manifest_link(
        &self,
        repo: &Repository,
        digest: &Digest,
        reference: &str,
    ) -> Result<ManifestLink> {
        let link: Option<ManifestLink> = self
            .inner
            .get_json(&self.inner.keys.manifest_link(repo, digest))
            .await?;
        link.ok_or_else(|| Error::ManifestUnknown {
            repo: repo.clone(),
            reference: reference.to_owned(),
        })
    }

    async fn tagged(&self, repo: &Repository, tag: &Tag) -> Result<(Digest, ManifestLink)> {
        let path = self.inner.keys.tag(repo, tag);
        let unknown = || Error::ManifestUnknown {
            repo: repo.clone(),
            reference: tag.to_string(),
        };
        let bytes = self.inner.get_small(&path).await?.ok_or_else(unknown)?;
        if bytes.is_empty() {
            // A tombstone: a tag removed with its manifest.
            return Err(unknown());
        }
        let link: TagLink =
            serde_json::from_slice(&bytes).map_err(|e| self.inner.corrupt(&path, e))?;
        let digest = link.digest;
        let manifest = self.manifest_link(repo, &digest, tag.as_str()).await?;
        Ok((digest, manifest))
    }

    /// The content of `digest` as a stream, `size` bytes long, verified as it streams.
    pub(crate) async fn read_content(
        &self,
        repo: &Repository,
        descriptor: Descriptor,
    ) -> Result<BlobReader> {
        let path = self.inner.keys.content(&descriptor.digest);
        let found = match self.inner.store.get(&path).await {
            Ok(found) => found,
            // A link without its content: gone behind our back (a collection of another
            // store); the blob is not there.
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::BlobUnknown {
                    repo: repo.clone(),
                    digest: descriptor.digest,
                });
            }
            Err(e) => return Err(self.inner.err("reading", &path, e).into()),
        };
        let body = self.stream_body(found, path);
        Ok(BlobReader::verified(descriptor, body))
    }

    fn stream_body(
        &self,
        found: object_store::GetResult,
        path: object_store::path::Path,
    ) -> BlobBody {
        let inner = Arc::clone(&self.inner);
        BlobBody::new(
            found
                .into_stream()
                .map_err(move |e| Error::from(inner.err("reading", &path, e))),
        )
    }

    /// The first of `wanted` (names and what they name) that is missing, if any.
    async fn first_missing(
        &self,
        wanted: &[(object_store::path::Path, Digest)],
    ) -> Result<Option<Digest>> {
        let inner = Arc::clone(&self.inner);
        let present: Vec<(bool, Digest)> = stream::iter(wanted.to_vec())
            .map(move |(path, digest)| {
                let inner = Arc::clone(&inner);
                async move { Ok::<_, Error>((inner.exists(&path).await?, digest)) }
            })
            .buffered(8)
            .try_collect()
            .await?;
        Ok(present
            .into_iter()
            .find(|(there, _)| !there)
            .map(|(_, missing)| missing))
    }

    async fn link_blob(&self, repo: &Repository, digest: &Digest, size: u64) -> Result<()> {
        self.inner.link_blob(repo, digest, size).await
    }

    /// Pushes a body at least a part long: streamed into a multipart upload at a private
    /// name, hashed on the way, made visible under its digest only once it matched.
    async fn push_large(&self, descriptor: &Descriptor, mut body: BlobBody) -> Result<()> {
        let target = self.inner.keys.content(&descriptor.digest);
        let mut check = PushCheck::for_body(descriptor, &body);
        if self.inner.exists(&target).await? {
            // The content is there already (another repository, another replica): the body
            // is still read and checked, since the push is a claim to have it.
            while let Some(chunk) = body.next().await {
                check.update(&chunk?)?;
            }
            return check.finish();
        }
        let staging = self.inner.keys.upload_file(&upload::new_id(), "data");
        let upload = self
            .inner
            .store
            .put_multipart(&staging)
            .await
            .map_err(|e| self.inner.err("starting an upload of", &staging, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, self.inner.part_size);
        let streamed: Result<()> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                check.update(&chunk)?;
                writer
                    .wait_for_capacity(PARTS_IN_FLIGHT)
                    .await
                    .map_err(|e| self.inner.err("uploading", &staging, e))?;
                writer.put(chunk);
            }
            Ok(())
        }
        .await;
        if let Err(error) = streamed.and_then(|()| check.finish()) {
            if let Err(abort) = writer.abort().await {
                tracing::warn!(%staging, error = %abort, "aborting a refused upload failed");
            }
            return Err(error);
        }
        writer
            .finish()
            .await
            .map_err(|e| self.inner.err("completing", &staging, e))?;
        self.inner
            .publish(&staging, &target, descriptor.size)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl OciInterface for BucketStore {
    async fn get_blob(&self, repo: &Repository, digest: &Digest) -> Result<BlobReader> {
        let size = self.blob_size(repo, digest).await?;
        self.read_content(repo, Descriptor::octet_stream(digest, size))
            .await
    }

    async fn get_blob_range(
        &self,
        repo: &Repository,
        digest: &Digest,
        start: u64,
        end: Option<u64>,
    ) -> Result<BlobReader> {
        let size = self.blob_size(repo, digest).await?;
        let range = check_range(digest, size, start, end)?;
        let path = self.inner.keys.content(digest);
        let options = GetOptions::default().with_range(Some(GetRange::Bounded(range.clone())));
        let found = match self.inner.store.get_opts(&path, options).await {
            Ok(found) => found,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::BlobUnknown {
                    repo: repo.clone(),
                    digest: digest.clone(),
                });
            }
            Err(e) => return Err(self.inner.err("reading", &path, e).into()),
        };
        let body = self.stream_body(found, path);
        Ok(BlobReader::ranged(
            Descriptor::octet_stream(digest, size),
            range,
            body,
        ))
    }

    async fn get_manifest(&self, repo: &Repository, digest: &Digest) -> Result<BlobReader> {
        let link = self.manifest_link(repo, digest, digest.as_ref()).await?;
        self.read_manifest(
            repo,
            Descriptor::new(link.media_type, digest.clone(), link.size),
        )
        .await
    }

    async fn get_tag(&self, repo: &Repository, tag: &Tag) -> Result<BlobReader> {
        let (digest, link) = self.tagged(repo, tag).await?;
        self.read_manifest(repo, Descriptor::new(link.media_type, digest, link.size))
            .await
    }

    async fn resolve_blob(&self, repo: &Repository, digest: &Digest) -> Result<Descriptor> {
        Ok(Descriptor::octet_stream(
            digest,
            self.blob_size(repo, digest).await?,
        ))
    }

    async fn resolve_manifest(&self, repo: &Repository, digest: &Digest) -> Result<Descriptor> {
        let link = self.manifest_link(repo, digest, digest.as_ref()).await?;
        Ok(Descriptor::new(link.media_type, digest.clone(), link.size))
    }

    async fn resolve_tag(&self, repo: &Repository, tag: &Tag) -> Result<Descriptor> {
        let (digest, link) = self.tagged(repo, tag).await?;
        Ok(Descriptor::new(link.media_type, digest, link.size))
    }

    async fn push_blob(
        &self,
        repo: &Repository,
        descriptor: &Descriptor,
        mut body: BlobBody,
    ) -> Result<Descriptor> {
        if descriptor.size >= self.inner.part_size as u64 {
            self.push_large(descriptor, body).await?;
        } else {
            // Smaller than a part: checked in memory (the check refuses more than the stated
            // size, so this holds less than a part), then written once, create-only.
            let mut check = PushCheck::for_body(descriptor, &body);
            let mut content = BytesMut::new();
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                check.update(&chunk)?;
                content.extend_from_slice(&chunk);
            }
            check.finish()?;
            let target = self.inner.keys.content(&descriptor.digest);
            self.inner
                .create(&target, PutPayload::from(content.freeze()))
                .await?;
        }
        self.link_blob(repo, &descriptor.digest, descriptor.size)
            .await?;
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
        Ok(Box::new(
            upload::BucketWriter::start(self.clone(), repo, chunk_size).await?,
        ))
    }

    async fn push_blob_chunked_resume(
        &self,
        repo: &Repository,
        id: &str,
        offset: Option<u64>,
        chunk_size: Option<usize>,
    ) -> Result<Box<dyn BlobWriter>> {
        Ok(Box::new(
            upload::BucketWriter::resume(self.clone(), repo, id, offset, chunk_size).await?,
        ))
    }

    async fn mount_blob(
        &self,
        from: &Repository,
        to: &Repository,
        digest: &Digest,
    ) -> Result<Descriptor> {
        let size = self.blob_size(from, digest).await?;
        self.link_blob(to, digest, size).await?;
        Ok(Descriptor::octet_stream(digest, size))
    }

    async fn push_manifest(
        &self,
        repo: &Repository,
        contents: Bytes,
        media_type: &MediaType,
        params: &PushManifestParams,
    ) -> Result<Descriptor> {
        let facts = inspect_manifest(repo, &contents, media_type, params)?;
        let keys = &self.inner.keys;
        let wanted: Vec<(object_store::path::Path, Digest)> = facts
            .required
            .iter()
            .map(|reference| {
                let path = if facts.is_index {
                    keys.manifest_link(repo, &reference.digest)
                } else {
                    keys.blob_link(repo, &reference.digest)
                };
                (path, reference.digest.clone())
            })
            .collect();
        if let Some(missing) = self.first_missing(&wanted).await? {
            return Err(Error::ManifestBlobUnknown {
                repo: repo.clone(),
                digest: missing,
            });
        }
        let digest = facts.digest.clone();
        // Content first, then the link that makes it part of the repository, then the
        // referrers marker and tags that point at the link: a reader never finds a name
        // whose target is missing.
        self.inner
            .create(&keys.content(&digest), PutPayload::from(contents))
            .await?;
        self.inner.ensure_repository(repo).await?;
        let link = ManifestLink {
            media_type: media_type.clone(),
            size: facts.descriptor.size,
            subject: facts.subject.clone(),
            artifact_type: facts.artifact_type.clone(),
            annotations: facts.annotations.clone(),
        };
        let link_path = keys.manifest_link(repo, &digest);
        self.inner.put_json(&link_path, &link).await?;
        // The handshake with a running collection (see `gc`): the link is written, now
        // nothing it needs may be on its way out, or the push is taken back.
        let needed = facts.required.iter().map(|r| &r.digest);
        if self
            .inner
            .being_collected(needed.chain([&digest]))
            .await?
            .is_some()
        {
            self.inner.remove(&link_path).await?;
            return Err(crate::inner::collecting_refusal());
        }
        // No marker now, and what the manifest needs is still there: either a collection
        // that took it has finished (its marker gone after its sweep, which this sees as a
        // missing name: the push is taken back), or none will take it, since a collection
        // that writes its marker from now on lists this link.
        if let Some(missing) = self.first_missing(&wanted).await? {
            self.inner.remove(&link_path).await?;
            return Err(Error::ManifestBlobUnknown {
                repo: repo.clone(),
                digest: missing,
            });
        }
        if let Some(subject) = &facts.subject {
            self.inner
                .put_json(&keys.referrer(repo, subject, &digest), &())
                .await?;
        }
        for tag in &params.tags {
            self.inner
                .put_json(
                    &keys.tag(repo, tag),
                    &TagLink {
                        digest: digest.clone(),
                    },
                )
                .await?;
        }
        Ok(facts.descriptor)
    }

    async fn delete_blob(&self, repo: &Repository, digest: &Digest) -> Result<()> {
        self.blob_size(repo, digest).await?;
        // The content stays until a collection finds nothing that links it.
        self.inner
            .remove(&self.inner.keys.blob_link(repo, digest))
            .await?;
        Ok(())
    }

    async fn delete_manifest(&self, repo: &Repository, digest: &Digest) -> Result<()> {
        let link = self.manifest_link(repo, digest, digest.as_ref()).await?;
        self.untag(repo, digest).await?;
        self.inner
            .remove(&self.inner.keys.manifest_link(repo, digest))
            .await?;
        if let Some(subject) = &link.subject {
            self.inner
                .remove(&self.inner.keys.referrer(repo, subject, digest))
                .await?;
        }
        Ok(())
    }

    async fn delete_tag(&self, repo: &Repository, tag: &Tag) -> Result<()> {
        self.tagged(repo, tag).await?;
        self.inner.remove(&self.inner.keys.tag(repo, tag)).await?;
        Ok(())
    }

    fn repositories(&self, params: &ListParams) -> BoxStream<'static, Result<Repository>> {
        let params = params.clone();
        listing(self, move |store| {
            Box::pin(async move { store.list_repositories(params).await })
        })
    }

    fn tags(&self, repo: &Repository, params: &ListParams) -> BoxStream<'static, Result<Tag>> {
        let (repo, params) = (repo.clone(), params.clone());
        listing(self, move |store| {
            Box::pin(async move { store.list_tags(repo, params).await })
        })
    }

    fn referrers(
        &self,
        repo: &Repository,
        digest: &Digest,
        params: &ReferrersParams,
    ) -> BoxStream<'static, Result<Descriptor>> {
        let (repo, digest, params) = (repo.clone(), digest.clone(), params.clone());
        listing(self, move |store| {
            Box::pin(async move { store.list_referrers(repo, digest, params).await })
        })
    }
}

impl fmt::Debug for BucketStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BucketStore")
            .field("store", &self.inner.name)
            .field("multipart", &self.inner.multipart.is_some())
            .field("part_size", &self.inner.part_size)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for BucketStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.name)
    }
}
