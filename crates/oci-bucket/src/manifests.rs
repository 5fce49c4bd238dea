//! Manifest reads through a cache of manifests read lately, kept by digest in the process, and
//! blob URLs signed for redirects.
//!
//! A manifest GET costs two or three round trips to the bucket (the tag, the repository's link,
//! the content); the content is the same for ever under its digest, so once it was read and
//! verified it is served from memory. The link is still read on every request: it is what
//! says that the repository holds the manifest (a deleted manifest is gone at once, from every
//! replica). Bounded in bytes, the oldest entries leaving first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use object_store::signer::Method;
use oci_store::{BlobLocator, BlobReader, Result, body_from_bytes};
use oci_types::{Descriptor, Digest, MAX_MANIFEST_SIZE, Repository};

use crate::store::BucketStore;

/// The most bytes of manifests kept.
const CACHE_BYTES: usize = 32 << 20;
/// The largest manifest kept: bigger ones (rare: a 4 MiB index) are read each time.
const LARGEST_KEPT: usize = 1 << 20;

#[derive(Default)]
pub(crate) struct ManifestCache {
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    by_digest: HashMap<Digest, Bytes>,
    /// Insertion order, for eviction.
    order: VecDeque<Digest>,
    bytes: usize,
}

impl ManifestCache {
    /// The content of `digest`, if kept.
    pub(crate) fn get(&self, digest: &Digest) -> Option<Bytes> {
        self.lock().by_digest.get(digest).cloned()
    }

    /// Keeps `content`, which the caller has checked is `digest`'s.
    pub(crate) fn insert(&self, digest: &Digest, content: Bytes) {
        if content.len() > LARGEST_KEPT {
            return;
        }
        let mut entries = self.lock();
        if entries.by_digest.contains_key(digest) {
            return;
        }
        while entries.bytes + content.len() > CACHE_BYTES {
            let Some(oldest) = entries.order.pop_front() else {
                break;
            };
            if let Some(gone) = entries.by_digest.remove(&oldest) {
                entries.bytes -= gone.len();
            }
        }
        entries.bytes += content.len();
        entries.order.push_back(digest.clone());
        entries.by_digest.insert(digest.clone(), content);
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        // Nothing panics while holding the lock, and the entries are consistent between calls.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl BucketStore {
    /// A manifest's content, from the process's cache or read whole and verified into it.
    pub(crate) async fn read_manifest(
        &self,
        repo: &Repository,
        descriptor: Descriptor,
    ) -> Result<BlobReader> {
        let content = match self.inner.manifests.get(&descriptor.digest) {
            Some(content) => content,
            None => {
                let digest = descriptor.digest.clone();
                let reader = self.read_content(repo, descriptor.clone()).await?;
                // A verified read: the stream ends in an error unless every byte matched.
                let content = reader.bytes(MAX_MANIFEST_SIZE as u64).await?;
                self.inner.manifests.insert(&digest, content.clone());
                content
            }
        };
        Ok(BlobReader::verified(descriptor, body_from_bytes(content)))
    }
}

#[async_trait]
impl BlobLocator for BucketStore {
    /// A URL signed by the bucket's own client for a GET of the content, when the store was
    /// given a signer ([`BucketStore::with_signer`]).
    async fn blob_url(&self, digest: &Digest, valid_for: Duration) -> Result<Option<String>> {
        let Some(signer) = &self.inner.signer else {
            return Ok(None);
        };
        let path = self.inner.keys.content(digest);
        let url = signer
            .signed_url(Method::GET, &path, valid_for)
            .await
            .map_err(|e| self.inner.err("signing a URL of", &path, e))?;
        Ok(Some(url.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: usize) -> Digest {
        Digest::sha256(n.to_string().as_bytes())
    }

    #[test]
    fn the_oldest_leave_first_and_the_bytes_stay_bounded() {
        let cache = ManifestCache::default();
        let piece = Bytes::from(vec![0u8; LARGEST_KEPT]);
        let fits = CACHE_BYTES / LARGEST_KEPT;
        for n in 0..fits + 3 {
            cache.insert(&digest(n), piece.clone());
        }
        assert!(cache.get(&digest(0)).is_none());
        assert!(cache.get(&digest(2)).is_none());
        assert!(cache.get(&digest(3)).is_some());
        assert!(cache.get(&digest(fits + 2)).is_some());
        assert!(cache.lock().bytes <= CACHE_BYTES);
        cache.insert(&digest(999), Bytes::from(vec![0u8; LARGEST_KEPT + 1]));
        assert!(cache.get(&digest(999)).is_none());
    }
}
