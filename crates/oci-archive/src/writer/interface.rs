//! `OciInterface` for [`ArchiveWriter`]: pushes go into the archive; reads answer only from what
//! the writer keeps (manifests, tags, small blobs); deletes other than of a tag are refused.

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use oci_store::{
    BlobBody, BlobReader, BlobWriter, Error as StoreError, ListParams, OciInterface,
    PushManifestParams, ReferrersParams, Result as StoreResult, body_from_bytes, inspect_manifest,
};
use oci_types::{Descriptor, Digest, MediaType, Repository, Tag};

use super::{ArchiveUpload, ArchiveWriter};
use crate::format::{ArchiveFormat, DockerFormat, blob_path};
use crate::stored::{StoredManifest, referrers};

#[async_trait]
impl OciInterface for ArchiveWriter {
    /// Only the small blobs kept in memory can be read back (configs, for indexes made into
    /// an archive); the rest are in a tar being written.
    async fn get_blob(&self, repo: &Repository, digest: &Digest) -> StoreResult<BlobReader> {
        let descriptor = self.resolve_blob(repo, digest).await?;
        let kept = self.state().kept.get(digest).cloned();
        match kept {
            Some(bytes) => Ok(BlobReader::verified(descriptor, body_from_bytes(bytes))),
            None => Err(StoreError::unsupported("get_blob of a large blob", self)),
        }
    }

    async fn get_blob_range(
        &self,
        _: &Repository,
        _: &Digest,
        _: u64,
        _: Option<u64>,
    ) -> StoreResult<BlobReader> {
        Err(StoreError::unsupported("get_blob_range", self))
    }

    async fn get_manifest(&self, repo: &Repository, digest: &Digest) -> StoreResult<BlobReader> {
        let manifest = self.stored_manifest(repo, digest)?;
        Ok(BlobReader::verified(
            manifest.descriptor,
            body_from_bytes(manifest.bytes),
        ))
    }

    async fn get_tag(&self, repo: &Repository, tag: &Tag) -> StoreResult<BlobReader> {
        let digest = self.tagged(repo, tag)?;
        self.get_manifest(repo, &digest).await
    }

    async fn resolve_blob(&self, repo: &Repository, digest: &Digest) -> StoreResult<Descriptor> {
        self.state()
            .blobs
            .get(digest)
            .map(|(d, _)| d.clone())
            .ok_or_else(|| StoreError::BlobUnknown {
                repo: repo.clone(),
                digest: digest.clone(),
            })
    }

    async fn resolve_manifest(
        &self,
        repo: &Repository,
        digest: &Digest,
    ) -> StoreResult<Descriptor> {
        Ok(self.stored_manifest(repo, digest)?.descriptor)
    }

    async fn resolve_tag(&self, repo: &Repository, tag: &Tag) -> StoreResult<Descriptor> {
        let digest = self.tagged(repo, tag)?;
        self.resolve_manifest(repo, &digest).await
    }

    async fn push_blob(
        &self,
        _: &Repository,
        descriptor: &Descriptor,
        body: BlobBody,
    ) -> StoreResult<Descriptor> {
        self.write_blob(descriptor, body).await
    }

    async fn push_blob_chunked(
        &self,
        _: &Repository,
        chunk_size: Option<usize>,
    ) -> StoreResult<Box<dyn BlobWriter>> {
        Ok(Box::new(ArchiveUpload::start(self.clone(), chunk_size)?))
    }

    async fn push_blob_chunked_resume(
        &self,
        repo: &Repository,
        id: &str,
        offset: Option<u64>,
        chunk_size: Option<usize>,
    ) -> StoreResult<Box<dyn BlobWriter>> {
        let spool =
            self.state()
                .uploads
                .remove(id)
                .ok_or_else(|| StoreError::BlobUploadUnknown {
                    repo: repo.clone(),
                    id: id.to_owned(),
                })?;
        Ok(Box::new(ArchiveUpload::resume(
            self.clone(),
            id.to_owned(),
            spool,
            offset,
            chunk_size,
        )?))
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
        repo: &Repository,
        contents: Bytes,
        media_type: &MediaType,
        params: &PushManifestParams,
    ) -> StoreResult<Descriptor> {
        let inspected = inspect_manifest(repo, &contents, media_type, params)?;
        {
            let state = self.state();
            for required in &inspected.required {
                let present = if inspected.is_index {
                    state.manifests.contains_key(&required.digest)
                } else {
                    state.blobs.contains_key(&required.digest)
                };
                if !present {
                    return Err(StoreError::ManifestBlobUnknown {
                        repo: repo.clone(),
                        digest: required.digest.clone(),
                    });
                }
            }
        }
        let digest = inspected.digest.clone();
        let written = self.state().manifests.contains_key(&digest);
        let classic = self.shared.format == ArchiveFormat::Docker(DockerFormat::Classic);
        if !written && !classic {
            self.write_small(blob_path(&digest), contents.clone())
                .await?;
        }
        let mut state = self.state();
        state
            .manifests
            .entry(digest.clone())
            .or_insert_with(|| StoredManifest {
                descriptor: inspected.descriptor.clone(),
                bytes: contents,
                subject: inspected.subject.clone(),
                artifact_type: inspected.artifact_type.clone(),
                annotations: inspected.annotations.clone(),
            });
        for tag in &params.tags {
            state
                .tags
                .entry(repo.clone())
                .or_default()
                .insert(tag.clone(), digest.clone());
        }
        Ok(inspected.descriptor)
    }

    async fn delete_blob(&self, _: &Repository, _: &Digest) -> StoreResult<()> {
        Err(StoreError::unsupported("delete_blob", self))
    }

    async fn delete_manifest(&self, _: &Repository, _: &Digest) -> StoreResult<()> {
        Err(StoreError::unsupported("delete_manifest", self))
    }

    async fn delete_tag(&self, repo: &Repository, tag: &Tag) -> StoreResult<()> {
        // Nothing of a tag is written before `finish`: it can still be taken back.
        let removed = self
            .state()
            .tags
            .get_mut(repo)
            .and_then(|tags| tags.remove(tag));
        removed
            .map(|_| ())
            .ok_or_else(|| StoreError::ManifestUnknown {
                repo: repo.clone(),
                reference: tag.to_string(),
            })
    }

    fn repositories(&self, params: &ListParams) -> BoxStream<'static, StoreResult<Repository>> {
        let names = params.apply(self.state().tags.keys().cloned().collect::<Vec<_>>());
        stream::iter(names.into_iter().map(Ok)).boxed()
    }

    fn tags(&self, repo: &Repository, params: &ListParams) -> BoxStream<'static, StoreResult<Tag>> {
        let tags = self
            .state()
            .tags
            .get(repo)
            .map(|t| t.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default();
        stream::iter(params.apply(tags).into_iter().map(Ok)).boxed()
    }

    fn referrers(
        &self,
        _: &Repository,
        digest: &Digest,
        params: &ReferrersParams,
    ) -> BoxStream<'static, StoreResult<Descriptor>> {
        let found = referrers(self.state().manifests.values(), digest, params);
        stream::iter(found.into_iter().map(Ok)).boxed()
    }
}
