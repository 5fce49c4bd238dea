//! Tags removed with their manifest, and listings of tags, repositories and referrers from the
//! bucket's listing, sorted here (a local directory lists in no particular order) and paged as
//! the trait says.

use futures::stream::{self, BoxStream, StreamExt};
use oci_store::{Error, ListParams, ReferrersParams, Result};
use oci_types::{Descriptor, Digest, Repository, Tag};

use crate::keys::last_segment;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};

use crate::store::{BucketStore, ManifestLink, TagLink};

impl BucketStore {
    /// Removes the tags of `repo` that point at `digest`, each only if it still does when it
    /// is removed: another replica may move a tag to another manifest between this read and
    /// the removal, and that tag must stay. The removal is a conditional overwrite (the tag's
    /// ETag must not have changed) with an empty object, a tombstone that readers and
    /// listings take for no tag; a store without conditional overwrites (local files) deletes
    /// the tag instead, with that narrow race.
    pub(crate) async fn untag(&self, repo: &Repository, digest: &Digest) -> Result<()> {
        let tags = self.inner.list(&self.inner.keys.tags(repo), None).await?;
        for path in tags {
            let found = match self.inner.store.get(&path).await {
                Ok(found) => found,
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(self.inner.err("reading", &path, e).into()),
            };
            let version = UpdateVersion {
                e_tag: found.meta.e_tag.clone(),
                version: found.meta.version.clone(),
            };
            let bytes = found
                .bytes()
                .await
                .map_err(|e| self.inner.err("reading", &path, e))?;
            if tag_link(&bytes).is_none_or(|l| &l.digest != digest) {
                continue;
            }
            let tombstone = PutOptions::from(PutMode::Update(version));
            match self
                .inner
                .store
                .put_opts(&path, PutPayload::default(), tombstone)
                .await
            {
                Ok(_) => {}
                // Moved to another manifest (or removed) since it was read: not ours to remove.
                Err(
                    object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. },
                ) => {}
                Err(
                    object_store::Error::NotImplemented { .. }
                    | object_store::Error::NotSupported { .. },
                ) => self.inner.remove(&path).await?,
                Err(e) => return Err(self.inner.err("removing", &path, e).into()),
            }
        }
        Ok(())
    }

    pub(crate) async fn list_tags(&self, repo: Repository, params: ListParams) -> Result<Vec<Tag>> {
        if !self.inner.repository_exists(&repo).await? {
            return Err(Error::NameUnknown { repo });
        }
        let prefix = self.inner.keys.tags(&repo);
        let offset = params
            .start_after
            .as_deref()
            .and_then(|after| after.parse::<Tag>().ok());
        let offset = offset.map(|t| self.inner.keys.tag(&repo, &t));
        // Tombstones (empty objects: tags removed with their manifest) are no tags.
        let mut tags: Vec<Tag> = self
            .inner
            .list_meta_after(&prefix, offset.as_ref())
            .await?
            .iter()
            .filter(|meta| meta.size > 0)
            .filter_map(|meta| last_segment(&meta.location).parse().ok())
            .collect();
        tags.sort_by(|a: &Tag, b| a.as_str().cmp(b.as_str()));
        Ok(params.apply(tags))
    }

    pub(crate) async fn list_repositories(&self, params: ListParams) -> Result<Vec<Repository>> {
        let prefix = self.inner.keys.catalog();
        let offset = params
            .start_after
            .as_deref()
            .map(|name| self.inner.keys.catalog_offset(name));
        let mut names: Vec<Repository> = self
            .inner
            .list(&prefix, offset.as_ref())
            .await?
            .iter()
            .filter_map(|path| self.inner.keys.repository_of(path)?.parse().ok())
            .collect();
        names.sort_by(|a: &Repository, b| a.as_str().cmp(b.as_str()));
        Ok(params.apply(names))
    }

    pub(crate) async fn list_referrers(
        &self,
        repo: Repository,
        subject: Digest,
        params: ReferrersParams,
    ) -> Result<Vec<Descriptor>> {
        let markers = self
            .inner
            .list(&self.inner.keys.referrers(&repo, &subject), None)
            .await?;
        let mut found = Vec::new();
        for path in markers {
            // The marker is `.../ALG/HEX`: the referrer's digest.
            let mut segments = path.as_ref().rsplit('/');
            let (Some(hex), Some(alg)) = (segments.next(), segments.next()) else {
                continue;
            };
            let Ok(digest) = format!("{alg}:{hex}").parse::<Digest>() else {
                continue;
            };
            let link: Option<ManifestLink> = self
                .inner
                .get_json(&self.inner.keys.manifest_link(&repo, &digest))
                .await?;
            // A marker whose manifest is gone (deleted while this listed) is no referrer.
            let Some(link) = link else { continue };
            if params
                .artifact_type
                .as_ref()
                .is_some_and(|wanted| link.artifact_type.as_ref() != Some(wanted))
            {
                continue;
            }
            let mut descriptor = Descriptor::new(link.media_type, digest, link.size);
            descriptor.artifact_type = link.artifact_type;
            descriptor.annotations = link.annotations;
            found.push(descriptor);
        }
        found.sort_by_key(|d| d.digest.to_string());
        Ok(found)
    }
}

/// A listing computed by `list` as one `'static` stream.
pub(crate) fn listing<T: Send + 'static>(
    store: &BucketStore,
    list: impl FnOnce(BucketStore) -> futures::future::BoxFuture<'static, Result<Vec<T>>>,
) -> BoxStream<'static, Result<T>> {
    let future = list(store.clone());
    stream::once(future)
        .map(|result| match result {
            Ok(items) => stream::iter(items.into_iter().map(Ok)).boxed(),
            Err(error) => stream::once(async move { Err(error) }).boxed(),
        })
        .flatten()
        .boxed()
}

/// A tag's link, `None` for a tombstone (an empty object: a tag removed by `untag`) or for
/// bytes that are not one.
fn tag_link(bytes: &[u8]) -> Option<TagLink> {
    serde_json::from_slice(bytes).ok()
}
