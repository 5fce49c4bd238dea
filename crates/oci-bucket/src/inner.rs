//! The shared state of a store and its small-object helpers: JSON links, create-only puts,
//! listings, and the move of verified content into place.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{StreamExt, TryStreamExt};
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{
    ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart,
};
use oci_types::{Digest, Repository};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::keys::Keys;
use crate::manifests::ManifestCache;

/// How a store was set up: what its builders change.
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) store: Arc<dyn ObjectStore>,
    /// The same store's resumable multipart API, where it has one (S3, GCS, Azure, memory);
    /// without it, an upload's parts are objects of their own, joined at commit.
    pub(crate) multipart: Option<Arc<dyn MultipartStore>>,
    pub(crate) prefix: String,
    pub(crate) part_size: usize,
    pub(crate) name: String,
    /// Signs URLs of the store's objects, for redirects (S3, GCS, Azure).
    pub(crate) signer: Option<Arc<dyn Signer>>,
    /// The largest object the store copies server-side (S3: 5 GiB); larger content is moved
    /// into place by streaming it through this process.
    pub(crate) copy_limit: Option<u64>,
}

pub(crate) struct Inner {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) multipart: Option<Arc<dyn MultipartStore>>,
    pub(crate) keys: Keys,
    pub(crate) part_size: usize,
    pub(crate) name: String,
    pub(crate) signer: Option<Arc<dyn Signer>>,
    pub(crate) copy_limit: Option<u64>,
    /// Manifests read lately, by digest: content never changes under its digest, so a read
    /// that found the repository's link serves the bytes from here.
    pub(crate) manifests: ManifestCache,
}

/// The answer to a push whose content a collection is removing right now.
pub(crate) fn collecting_refusal() -> oci_store::Error {
    oci_store::Error::TooManyRequests {
        retry_after: Some(std::time::Duration::from_secs(5)),
    }
}

/// Whether a write lost a race to an identical one: content-addressed and create-only, so the
/// object there is what this write would have put.
pub(crate) fn is_already_there(error: &object_store::Error) -> bool {
    matches!(
        error,
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }
    )
}

impl Inner {
    pub(crate) fn new(settings: Settings) -> Self {
        Self {
            store: settings.store,
            multipart: settings.multipart,
            keys: Keys::new(&settings.prefix),
            part_size: settings.part_size.max(1),
            name: settings.name,
            signer: settings.signer,
            copy_limit: settings.copy_limit,
            manifests: ManifestCache::default(),
        }
    }

    /// The settings this was made from, for a builder to change.
    pub(crate) fn settings(&self) -> Settings {
        Settings {
            store: Arc::clone(&self.store),
            multipart: self.multipart.clone(),
            prefix: self.keys.prefix().to_owned(),
            part_size: self.part_size,
            name: self.name.clone(),
            signer: self.signer.clone(),
            copy_limit: self.copy_limit,
        }
    }

    pub(crate) fn err(
        &self,
        action: &'static str,
        path: &Path,
        source: object_store::Error,
    ) -> Error {
        Error::Object {
            action,
            path: path.to_string(),
            store: self.name.clone(),
            source,
        }
    }

    pub(crate) fn corrupt(&self, path: &Path, reason: impl ToString) -> Error {
        Error::Corrupt {
            path: path.to_string(),
            store: self.name.clone(),
            reason: reason.to_string(),
        }
    }

    /// A small object read whole; `None` when it does not exist. Small means at most a
    /// manifest's or an upload tail's size (a part): an object that says it is larger, or
    /// turns out to be, is reported corrupt before it is held, whatever the storage says.
    pub(crate) async fn get_small(&self, path: &Path) -> Result<Option<Bytes>> {
        let limit = self.part_size.max(oci_types::MAX_MANIFEST_SIZE) as u64;
        self.get_bounded(path, limit).await
    }

    /// An object read whole if it has at most `limit` bytes (else it is reported corrupt);
    /// `None` when it does not exist.
    pub(crate) async fn get_bounded(&self, path: &Path, limit: u64) -> Result<Option<Bytes>> {
        let found = match self.store.get(path).await {
            Ok(found) => found,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.err("reading", path, e)),
        };
        if found.meta.size > limit {
            return Err(self.corrupt(
                path,
                format!(
                    "{} bytes, more than the {limit} it may have",
                    found.meta.size
                ),
            ));
        }
        let mut bytes = Vec::new();
        let mut pieces = found.into_stream();
        while let Some(piece) = pieces.next().await {
            let piece = piece.map_err(|e| self.err("reading", path, e))?;
            if (bytes.len() + piece.len()) as u64 > limit {
                return Err(self.corrupt(path, format!("more than the {limit} bytes it may have")));
            }
            bytes.extend_from_slice(&piece);
        }
        Ok(Some(Bytes::from(bytes)))
    }

    /// A JSON object of hoist's layout; `None` when it does not exist.
    pub(crate) async fn get_json<T: DeserializeOwned>(&self, path: &Path) -> Result<Option<T>> {
        match self.get_small(path).await? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| self.corrupt(path, e)),
            None => Ok(None),
        }
    }

    pub(crate) async fn exists(&self, path: &Path) -> Result<bool> {
        match self.store.head(path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.err("checking", path, e)),
        }
    }

    /// Replaces a small object whole (a link or a tag: one name, one object, so the last
    /// writer wins and nothing else is touched).
    pub(crate) async fn put_json(
        &self,
        path: &Path,
        value: &(impl Serialize + Sync),
    ) -> Result<()> {
        let bytes = serde_json::to_vec(value).map_err(|e| self.corrupt(path, e))?;
        self.store
            .put(path, PutPayload::from(bytes))
            .await
            .map(drop)
            .map_err(|e| self.err("writing", path, e))
    }

    /// Writes an object only if none is there; `Ok(false)` when one was.
    pub(crate) async fn create(&self, path: &Path, payload: PutPayload) -> Result<bool> {
        let options = PutOptions::from(PutMode::Create);
        match self.store.put_opts(path, payload, options).await {
            Ok(_) => Ok(true),
            Err(e) if is_already_there(&e) => Ok(false),
            Err(e) => Err(self.err("creating", path, e)),
        }
    }

    /// Deletes an object; one that is already gone is fine.
    pub(crate) async fn remove(&self, path: &Path) -> Result<()> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err("deleting", path, e)),
        }
    }

    /// Every location under `prefix` after `offset`, in no promised order (a local
    /// filesystem lists in directory order): callers sort.
    pub(crate) async fn list(&self, prefix: &Path, offset: Option<&Path>) -> Result<Vec<Path>> {
        let found = self.list_meta_after(prefix, offset).await?;
        Ok(found.into_iter().map(|meta| meta.location).collect())
    }

    /// Every object under `prefix` with its size and time, in no promised order.
    pub(crate) async fn list_meta(&self, prefix: &Path) -> Result<Vec<ObjectMeta>> {
        self.list_meta_after(prefix, None).await
    }

    /// [`list_meta`](Self::list_meta) of the objects after `offset`.
    pub(crate) async fn list_meta_after(
        &self,
        prefix: &Path,
        offset: Option<&Path>,
    ) -> Result<Vec<ObjectMeta>> {
        let stream = match offset {
            Some(offset) => self.store.list_with_offset(Some(prefix), offset),
            None => self.store.list(Some(prefix)),
        };
        stream
            .try_collect()
            .await
            .map_err(|e| self.err("listing", prefix, e))
    }

    /// Which of `digests` a running collection is removing: the second half of the
    /// handshake with `gc` (see there). A writer calls this *after* it wrote the name that
    /// needs the content; the collection writes its marker *before* it lists names again, so
    /// either it sees this writer's name, or this writer sees its marker. Markers older than
    /// [`crate::gc::MARKER_LIFETIME`] are a collection that died and are ignored.
    pub(crate) async fn being_collected(
        &self,
        digests: impl IntoIterator<Item = &Digest>,
    ) -> Result<Option<Digest>> {
        let root = self.keys.collecting_root();
        let markers = self.list_meta(&root).await?;
        if markers.is_empty() {
            return Ok(None);
        }
        let now = crate::gc::now_secs();
        let live: HashSet<Digest> = markers
            .iter()
            .filter(|m| now - m.last_modified.timestamp() < crate::gc::MARKER_LIFETIME_SECS)
            .filter_map(|m| self.keys.collected_digest(&m.location))
            .collect();
        Ok(digests.into_iter().find(|d| live.contains(*d)).cloned())
    }

    /// Links `digest` into `repo`, unless a collection is removing it: then the link is taken
    /// back and the push is refused as `TOO_MANY_REQUESTS`, to be tried again once the
    /// collection is over (it then finds the blob missing and uploads it).
    pub(crate) async fn link_blob(
        &self,
        repo: &Repository,
        digest: &Digest,
        size: u64,
    ) -> oci_store::Result<()> {
        self.ensure_repository(repo).await?;
        let path = self.keys.blob_link(repo, digest);
        self.put_json(&path, &serde_json::json!({ "size": size }))
            .await?;
        // No marker now; the content must still be there too: a collection that removed it
        // may have removed its marker since (then this push uploads it again).
        if self.being_collected([digest]).await?.is_some()
            || !self.exists(&self.keys.content(digest)).await?
        {
            self.remove(&path).await?;
            return Err(collecting_refusal());
        }
        Ok(())
    }

    /// Records that `repo` exists: a create-only put of its catalog entry, on every write
    /// that links something into it. Not remembered per process: an entry removed behind this
    /// process's back (a bucket emptied and reused) is written again by the next push.
    pub(crate) async fn ensure_repository(&self, repo: &Repository) -> Result<()> {
        self.create(&self.keys.catalog_entry(repo), PutPayload::default())
            .await
            .map(drop)
    }

    pub(crate) async fn repository_exists(&self, repo: &Repository) -> Result<bool> {
        self.exists(&self.keys.catalog_entry(repo)).await
    }

    /// Makes verified content at `from` visible at `to` (its content-addressed name) without
    /// ever replacing what is there, then removes `from`.
    ///
    /// A create-only copy where the store has one (memory, local files: a hard link; S3 when
    /// `aws_copy_if_not_exists` is configured). Elsewhere (S3 by default) a check then a plain
    /// server-side copy: the name is the digest of content verified before this point, so a
    /// replica that copies over another's copy writes the same bytes.
    ///
    /// Content larger than the store copies server-side ([`Settings::copy_limit`]) is streamed
    /// from `from` into a multipart upload at `to` instead, after the same check.
    pub(crate) async fn publish(&self, from: &Path, to: &Path, size: u64) -> Result<()> {
        if self.copy_limit.is_some_and(|limit| size > limit) {
            if !self.exists(to).await? {
                self.stream_copy(from, to).await?;
            }
            return self.remove(from).await;
        }
        match self.store.copy_if_not_exists(from, to).await {
            Ok(()) => {}
            Err(e) if is_already_there(&e) => {}
            Err(
                object_store::Error::NotImplemented { .. }
                | object_store::Error::NotSupported { .. },
            ) => {
                if !self.exists(to).await? {
                    self.store
                        .copy(from, to)
                        .await
                        .map_err(|e| self.err("copying into", to, e))?;
                }
            }
            Err(e) => return Err(self.err("copying into", to, e)),
        }
        self.remove(from).await
    }

    /// Copies `from` to `to` through this process, a part at a time: for objects larger than
    /// the store's server-side copy takes.
    async fn stream_copy(&self, from: &Path, to: &Path) -> Result<()> {
        let found = self
            .store
            .get(from)
            .await
            .map_err(|e| self.err("reading", from, e))?;
        let upload = self
            .store
            .put_multipart(to)
            .await
            .map_err(|e| self.err("starting an upload of", to, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, self.part_size);
        let mut stream = found.into_stream();
        let copied: Result<()> = async {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| self.err("reading", from, e))?;
                writer
                    .wait_for_capacity(2)
                    .await
                    .map_err(|e| self.err("uploading", to, e))?;
                writer.put(chunk);
            }
            Ok(())
        }
        .await;
        if let Err(error) = copied {
            if let Err(abort) = writer.abort().await {
                tracing::warn!(%to, error = %abort, "aborting a failed copy failed");
            }
            return Err(error);
        }
        writer
            .finish()
            .await
            .map(drop)
            .map_err(|e| self.err("completing", to, e))
    }
}
