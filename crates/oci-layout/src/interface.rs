//! `OciInterface` for [`LayoutStore`]: each method on the layout (or the repository's layout)
//! its scope resolves to.

use std::collections::{BTreeMap, BTreeSet};
use std::io::SeekFrom;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use oci_store::{
    BlobBody, BlobReader, BlobWriter, Error, ListParams, OciInterface, PushManifestParams,
    ReferrersParams, Result, body_from_bytes, check_range, inspect_manifest,
};
use oci_types::{Descriptor, Digest, MediaType, Repository, Tag};
use tokio::io::AsyncSeekExt;

use crate::read::{blocking, file_body};
use crate::store::{LayoutStore, Mode, walk_repositories};
use crate::upload::LayoutWriter;

#[async_trait]
impl OciInterface for LayoutStore {
    async fn get_blob(&self, repo: &Repository, digest: &Digest) -> Result<BlobReader> {
        let scope = self.scope(repo)?;
        let size = self.blob_size(&scope, repo, digest).await?;
        self.read_blob(&scope.layout, &Descriptor::octet_stream(digest, size))
            .await
    }

    async fn get_blob_range(
        &self,
        repo: &Repository,
        digest: &Digest,
        start: u64,
        end: Option<u64>,
    ) -> Result<BlobReader> {
        let scope = self.scope(repo)?;
        let size = self.blob_size(&scope, repo, digest).await?;
        let range = check_range(digest, size, start, end)?;
        let path = scope.layout.blob_path(digest);
        let io = |e| {
            Error::io(
                format!("cannot read blob {digest} at {}", path.display()),
                e,
            )
        };
        let mut file = crate::read::open_unverified(&path).await.map_err(io)?;
        file.seek(SeekFrom::Start(range.start)).await.map_err(io)?;
        let body = file_body(
            file,
            path.clone(),
            Some(range.end - range.start),
            self.inner.read_buffer,
        );
        Ok(BlobReader::ranged(
            Descriptor::octet_stream(digest, size),
            range,
            body,
        ))
    }

    async fn get_manifest(&self, repo: &Repository, digest: &Digest) -> Result<BlobReader> {
        let (scope, descriptor) = self.manifest_descriptor(repo, digest).await?;
        self.read_blob(&scope.layout, &descriptor).await
    }

    async fn get_tag(&self, repo: &Repository, tag: &Tag) -> Result<BlobReader> {
        let (scope, descriptor) = self.tag_descriptor(repo, tag).await?;
        self.read_blob(&scope.layout, &descriptor).await
    }

    async fn resolve_blob(&self, repo: &Repository, digest: &Digest) -> Result<Descriptor> {
        let scope = self.scope(repo)?;
        Ok(Descriptor::octet_stream(
            digest,
            self.blob_size(&scope, repo, digest).await?,
        ))
    }

    async fn resolve_manifest(&self, repo: &Repository, digest: &Digest) -> Result<Descriptor> {
        Ok(self.manifest_descriptor(repo, digest).await?.1)
    }

    async fn resolve_tag(&self, repo: &Repository, tag: &Tag) -> Result<Descriptor> {
        Ok(self.tag_descriptor(repo, tag).await?.1)
    }

    async fn push_blob(
        &self,
        repo: &Repository,
        descriptor: &Descriptor,
        body: BlobBody,
    ) -> Result<Descriptor> {
        let scope = self.scope_to_write(repo)?;
        scope.layout.write_blob(descriptor, body).await?;
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
        let scope = self.scope_to_write(repo)?;
        Ok(Box::new(
            LayoutWriter::start(scope.layout, repo, chunk_size).await?,
        ))
    }

    async fn push_blob_chunked_resume(
        &self,
        repo: &Repository,
        id: &str,
        offset: Option<u64>,
        chunk_size: Option<usize>,
    ) -> Result<Box<dyn BlobWriter>> {
        let scope = self.scope(repo)?;
        Ok(Box::new(
            LayoutWriter::resume(scope.layout, repo, id, offset, chunk_size).await?,
        ))
    }

    async fn mount_blob(
        &self,
        from: &Repository,
        to: &Repository,
        digest: &Digest,
    ) -> Result<Descriptor> {
        let source = self.scope(from)?;
        let size = self.blob_size(&source, from, digest).await?;
        let target = self.scope_to_write(to)?;
        if Arc::ptr_eq(&source.layout, &target.layout)
            || self.blob_size(&target, to, digest).await.is_ok()
        {
            return Ok(Descriptor::octet_stream(digest, size));
        }
        // Another layout: copy the blob through the verified write path (a hard link would share
        // one inode between layouts, so damage to one would silently be damage to both).
        let reader = self
            .read_blob(&source.layout, &Descriptor::octet_stream(digest, size))
            .await?;
        target
            .layout
            .write_blob(
                &Descriptor::octet_stream(digest, size),
                reader.into_stream_for_push(),
            )
            .await?;
        Ok(Descriptor::octet_stream(digest, size))
    }

    async fn push_manifest(
        &self,
        repo: &Repository,
        contents: Bytes,
        media_type: &MediaType,
        params: &PushManifestParams,
    ) -> Result<Descriptor> {
        let scope = self.scope_to_write(repo)?;
        let inspected = inspect_manifest(repo, &contents, media_type, params)?;
        for required in &inspected.required {
            if self
                .blob_size(&scope, repo, &required.digest)
                .await
                .is_err()
            {
                return Err(Error::ManifestBlobUnknown {
                    repo: repo.clone(),
                    digest: required.digest.clone(),
                });
            }
        }
        scope
            .layout
            .write_blob(&inspected.descriptor, body_from_bytes(contents))
            .await?;
        let descriptor = inspected.descriptor;
        let (layout, default, repo_owned, tags, entry) = (
            Arc::clone(&scope.layout),
            scope.default.clone(),
            repo.clone(),
            params.tags.clone(),
            descriptor.clone(),
        );
        blocking(self.inner.inline_io, move || {
            layout.update_index(|index| {
                if tags.is_empty() {
                    let listed = index
                        .entries(&default)
                        .iter()
                        .any(|e| e.repository == repo_owned && e.descriptor.digest == entry.digest);
                    if !listed {
                        index.add(&entry, &repo_owned, None, &default);
                    }
                    return Ok((!listed, ()));
                }
                for tag in &tags {
                    index.untag(&default, |e| {
                        e.repository == repo_owned && e.tag.as_ref() == Some(tag)
                    });
                    index.add(&entry, &repo_owned, Some(tag), &default);
                }
                // The manifest is listed under its tags now: an untagged entry of it is redundant.
                index.remove(&default, |e| {
                    e.repository == repo_owned
                        && e.tag.is_none()
                        && e.descriptor.digest == entry.digest
                });
                Ok((true, ()))
            })
        })
        .await?;
        Ok(descriptor)
    }

    async fn delete_blob(&self, repo: &Repository, digest: &Digest) -> Result<()> {
        let scope = self.scope(repo)?;
        let path = scope.layout.blob_path(digest);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::BlobUnknown {
                repo: repo.clone(),
                digest: digest.clone(),
            }),
            Err(e) => Err(Error::io(format!("cannot remove {}", path.display()), e)),
        }
    }

    async fn delete_manifest(&self, repo: &Repository, digest: &Digest) -> Result<()> {
        let (scope, _) = self.manifest_descriptor(repo, digest).await?;
        let (layout, default, repo_owned, target) = (
            Arc::clone(&scope.layout),
            scope.default.clone(),
            repo.clone(),
            digest.clone(),
        );
        let removed = blocking(self.inner.inline_io, move || {
            layout.update_index(|index| {
                let removed = index
                    .remove(&default, |e| {
                        e.repository == repo_owned && e.descriptor.digest == target
                    })
                    .len();
                Ok((removed > 0, removed))
            })
        })
        .await?;
        if removed == 0 {
            return Err(Error::Denied {
                message: format!(
                    "manifest {digest} in {repo} is a child of an index; delete the index instead"
                ),
            });
        }
        Ok(())
    }

    async fn delete_tag(&self, repo: &Repository, tag: &Tag) -> Result<()> {
        let (scope, _) = self.tag_descriptor(repo, tag).await?;
        let (layout, default, repo_owned, tag_owned) = (
            Arc::clone(&scope.layout),
            scope.default.clone(),
            repo.clone(),
            tag.clone(),
        );
        blocking(self.inner.inline_io, move || {
            layout.update_index(|index| {
                let removed = index.untag(&default, |e| {
                    e.repository == repo_owned && e.tag.as_ref() == Some(&tag_owned)
                });
                Ok((removed > 0, ()))
            })
        })
        .await
    }

    fn repositories(&self, params: &ListParams) -> BoxStream<'static, Result<Repository>> {
        let store = self.clone();
        let params = params.clone();
        stream::once(async move {
            let names: BTreeSet<Repository> = match &store.inner.mode {
                Mode::Single { layout, default } => {
                    let layout = Arc::clone(layout);
                    let index =
                        blocking(store.inner.inline_io, move || layout.read_index()).await?;
                    index
                        .entries(default)
                        .into_iter()
                        .map(|e| e.repository)
                        .collect()
                }
                Mode::PerRepository { root, .. } => {
                    let root = root.clone();
                    blocking(store.inner.inline_io, move || walk_repositories(&root)).await?
                }
            };
            Ok::<_, Error>(stream::iter(params.apply(names).into_iter().map(Ok)))
        })
        .map(|page| match page {
            Ok(names) => names.boxed(),
            Err(error) => stream::once(async move { Err(error) }).boxed(),
        })
        .flatten()
        .boxed()
    }

    fn tags(&self, repo: &Repository, params: &ListParams) -> BoxStream<'static, Result<Tag>> {
        let (store, repo, params) = (self.clone(), repo.clone(), params.clone());
        stream::once(async move {
            let scope = store.scope(&repo)?;
            let tags: BTreeSet<Tag> = store
                .entries(&scope, &repo)
                .await?
                .into_iter()
                .filter_map(|e| e.tag)
                .collect();
            Ok::<_, Error>(params.apply(tags))
        })
        .map(|page| match page {
            Ok(tags) => stream::iter(tags.into_iter().map(Ok)).boxed(),
            Err(error) => stream::once(async move { Err(error) }).boxed(),
        })
        .flatten()
        .boxed()
    }

    fn referrers(
        &self,
        repo: &Repository,
        digest: &Digest,
        params: &ReferrersParams,
    ) -> BoxStream<'static, Result<Descriptor>> {
        let (store, repo, digest, params) =
            (self.clone(), repo.clone(), digest.clone(), params.clone());
        stream::once(async move {
            let scope = store.scope(&repo)?;
            let reachable = match store.reachable(&scope, &repo).await {
                Ok(reachable) => reachable,
                Err(error) if error.code() == Some(oci_store::ErrorCode::NameUnknown) => {
                    BTreeMap::new()
                }
                Err(error) => return Err(error),
            };
            let mut found = Vec::new();
            for descriptor in reachable.into_values() {
                let facts = store.facts(&scope.layout, &descriptor).await?;
                if facts.subject.as_ref() != Some(&digest) {
                    continue;
                }
                if params
                    .artifact_type
                    .as_ref()
                    .is_some_and(|wanted| facts.artifact_type.as_ref() != Some(wanted))
                {
                    continue;
                }
                let mut listed = Descriptor::new(
                    descriptor.media_type.clone(),
                    descriptor.digest.clone(),
                    descriptor.size,
                );
                listed.artifact_type = facts.artifact_type.clone();
                listed.annotations = facts.annotations.clone();
                found.push(listed);
            }
            Ok::<_, Error>(found)
        })
        .map(|page| match page {
            Ok(found) => stream::iter(found.into_iter().map(Ok)).boxed(),
            Err(error) => stream::once(async move { Err(error) }).boxed(),
        })
        .flatten()
        .boxed()
    }
}
