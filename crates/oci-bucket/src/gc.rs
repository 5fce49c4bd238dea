//! Online garbage collection: content that nothing reachable needs, removed while replicas
//! keep serving and pushing.
//!
//! **Mark.** Every manifest linked into any repository is a root (tagged or not, as in a
//! registry: a manifest stays readable by digest until deleted), and so is everything it
//! references, index children recursively. Referrers do not keep their subject alive (as
//! `oci-layout`'s collection): a subject is kept when it is itself linked. A root that cannot
//! be read and verified (listed but missing, a 404 right after a write on a store that is
//! not read-after-write consistent, a digest that does not match, JSON that does not parse)
//! stops the collection before anything is removed: its blobs could not be told from garbage.
//!
//! **Candidates.** Content not reached, whose object and every link to it are older than the
//! grace period (object `last_modified`; a push rewrites a blob's link, so a fresh push
//! refreshes it).
//!
//! **Handshake.** A push that finds content already there (another repository's, or its own
//! older push) does not write it and so cannot refresh it. To make that race safe without a
//! lock, the collection writes a marker `gc/collecting/ALG/HEX` per candidate, *then* lists
//! all links again: a candidate with a link it did not see before, or reached from a manifest
//! it did not see before, is kept. Writers do the mirror image: they write their link, *then*
//! list the markers (`Inner::being_collected`), and take their link back and answer
//! `TOO_MANY_REQUESTS` when one names what they need; *then* they check that what they need
//! is still there, since a sweep removes its marker once it has removed the content: a
//! writer that found the content before the sweep and looks for markers after it sees none.
//! On a store whose listings are consistent with writes (S3, GCS, Azure, moto, local files)
//! one of the two always sees the other, so a push that succeeded never loses its content.
//! The sweep removes a candidate's links, then its content, then its marker, and stops if it
//! runs longer than half a marker's lifetime, so a writer never ignores a marker that still
//! matters.
//!
//! **Uploads.** An upload none of whose objects changed within the grace period is removed:
//! its state, tail and parts, and its multipart upload (from the id in its state) aborted.
//! object_store has no call that lists a bucket's multipart uploads (S3's
//! `ListMultipartUploads`), so a multipart upload with no state object (a whole-blob push
//! whose process died mid-way) cannot be found from here: a bucket lifecycle rule
//! (`AbortIncompleteMultipartUpload`) is the way to reclaim those.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::stream::{self, StreamExt, TryStreamExt};
use object_store::ObjectMeta;
use object_store::path::Path;
use oci_store::GcOptions;
use oci_types::Digest;

use crate::error::{Error, Result};
use crate::inner::Inner;
use crate::keys::{RepoObject, last_segment};
use crate::store::BucketStore;

/// How long a collection's marker is honoured by writers.
pub(crate) const MARKER_LIFETIME_SECS: i64 = 600;
/// The longest a sweep may run after its markers were written.
const SWEEP_LIMIT: Duration = Duration::from_secs(MARKER_LIFETIME_SECS as u64 / 2);
/// The largest manifest read while marking (the server accepts at most 4 MiB).
const MANIFEST_LIMIT: usize = oci_types::MAX_MANIFEST_SIZE;
/// Reads in flight while marking.
const READS_IN_FLIGHT: usize = 16;

pub(crate) fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// What [`BucketStore::gc`] removed (or, in a dry run, would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GcReport {
    /// Content removed, with its size.
    pub removed_blobs: Vec<(Digest, u64)>,
    /// Repository links to that content removed with it.
    pub removed_links: usize,
    /// Abandoned uploads removed, by id.
    pub removed_uploads: Vec<String>,
    /// Multipart uploads of those aborted.
    pub aborted_multipart: usize,
    /// Candidates kept because a push linked or referenced them while this ran.
    pub rescued: usize,
    /// Unreferenced content kept because it, or a link to it, is younger than the grace.
    pub kept_young: usize,
    /// Bytes freed (content only).
    pub freed_bytes: u64,
    /// Whether nothing was actually removed.
    pub dry_run: bool,
}

/// The names under `repositories/`, as the collection needs them.
#[derive(Default)]
struct Links {
    /// Manifest digests linked somewhere.
    manifests: BTreeSet<Digest>,
    /// Blob links by digest: location and time.
    blobs: HashMap<Digest, Vec<(Path, i64)>>,
}

impl Inner {
    async fn links(&self) -> Result<Links> {
        let mut links = Links::default();
        for meta in self.list_meta(&self.keys.repositories_root()).await? {
            match self.keys.repo_object(&meta.location).map(|(_, o)| o) {
                Some(RepoObject::ManifestLink(digest)) => {
                    links.manifests.insert(digest);
                }
                Some(RepoObject::BlobLink(digest)) => {
                    let when = meta.last_modified.timestamp();
                    links
                        .blobs
                        .entry(digest)
                        .or_default()
                        .push((meta.location, when));
                }
                _ => {}
            }
        }
        Ok(links)
    }

    /// Reads a root manifest whole, verified: any doubt is an error that stops the collection.
    async fn read_manifest(&self, digest: &Digest) -> Result<Bytes> {
        let path = self.keys.content(digest);
        let ambiguous = |reason: String| Error::Ambiguous {
            path: path.to_string(),
            store: self.name.clone(),
            reason,
        };
        let bytes = self
            .get_small(&path)
            .await?
            .ok_or_else(|| ambiguous("a linked manifest's content is missing".to_owned()))?;
        if bytes.len() > MANIFEST_LIMIT {
            return Err(ambiguous(format!("a manifest of {} bytes", bytes.len())));
        }
        let actual = Digest::of(digest.algorithm(), &bytes);
        if &actual != digest {
            return Err(ambiguous(format!("its content has digest {actual}")));
        }
        Ok(bytes)
    }

    /// Adds `roots` and everything they reference to `reached`.
    async fn mark(&self, roots: Vec<Digest>, reached: &mut HashSet<Digest>) -> Result<()> {
        let mut pending: Vec<Digest> = roots.into_iter().filter(|d| !reached.contains(d)).collect();
        while !pending.is_empty() {
            for digest in &pending {
                reached.insert(digest.clone());
            }
            let read: Vec<(Digest, Bytes)> = stream::iter(pending.drain(..))
                .map(|digest| async move {
                    let bytes = self.read_manifest(&digest).await?;
                    Ok::<_, Error>((digest, bytes))
                })
                .buffer_unordered(READS_IN_FLIGHT)
                .try_collect()
                .await?;
            for (digest, bytes) in read {
                let refs = references(&bytes).map_err(|reason| Error::Ambiguous {
                    path: self.keys.content(&digest).to_string(),
                    store: self.name.clone(),
                    reason,
                })?;
                for (child, is_manifest) in refs {
                    if reached.contains(&child) {
                        continue;
                    }
                    if is_manifest {
                        // An index child: read in the next round (and it must be there,
                        // since the index was pushed only once its children were).
                        pending.push(child);
                    } else {
                        reached.insert(child);
                    }
                }
            }
            pending.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
            pending.dedup();
        }
        Ok(())
    }
}

/// The digests a manifest references, each with whether it is a manifest itself: an image's
/// config and layers, an index's children, an artifact manifest's blobs, a schema 1
/// manifest's layers. Read as plain JSON so that every manifest kind the server accepted is
/// understood the same way.
fn references(bytes: &[u8]) -> std::result::Result<Vec<(Digest, bool)>, String> {
    let json: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("a manifest that is not JSON: {e}"))?;
    let mut found = Vec::new();
    let mut take =
        |value: &serde_json::Value, is_manifest: bool| -> std::result::Result<(), String> {
            if let Some(text) = value.as_str() {
                let digest = text.parse().map_err(|e| format!("digest {text:?}: {e}"))?;
                found.push((digest, is_manifest));
            }
            Ok(())
        };
    take(&json["config"]["digest"], false)?;
    let blobs = oci_store::BLOB_REFERENCE_LISTS.map(|(list, field)| (list, field, false));
    for (list, field, is_manifest) in blobs.into_iter().chain([("manifests", "digest", true)]) {
        for item in json[list].as_array().map_or(&[][..], Vec::as_slice) {
            take(&item[field], is_manifest)?;
        }
    }
    Ok(found)
}

impl BucketStore {
    /// Collects garbage once, online: see the module docs of `gc` in the source for the
    /// protocol. Fails closed: a manifest that cannot be read stops it before any removal.
    pub async fn gc(&self, options: &GcOptions) -> Result<GcReport> {
        let inner = &self.inner;
        let cutoff = now_secs() - i64::try_from(options.grace.as_secs()).unwrap_or(i64::MAX);
        let mut report = GcReport {
            dry_run: options.dry_run,
            ..GcReport::default()
        };

        let before = inner.links().await?;
        let mut reached = HashSet::new();
        inner
            .mark(before.manifests.iter().cloned().collect(), &mut reached)
            .await?;

        let mut candidates: BTreeMap<Digest, ObjectMeta> = BTreeMap::new();
        for meta in inner.list_meta(&inner.keys.blobs_root()).await? {
            let Some(digest) = inner.keys.content_digest(&meta.location) else {
                continue;
            };
            if reached.contains(&digest) {
                continue;
            }
            let links = before.blobs.get(&digest).map_or(&[][..], Vec::as_slice);
            let young = meta.last_modified.timestamp() >= cutoff
                || links.iter().any(|(_, when)| *when >= cutoff);
            if young {
                report.kept_young += 1;
            } else {
                candidates.insert(digest, meta);
            }
        }

        let uploads = self.stale_uploads(cutoff).await?;
        if options.dry_run {
            for (digest, meta) in &candidates {
                report.removed_blobs.push((digest.clone(), meta.size));
                report.removed_links += before.blobs.get(digest).map_or(0, Vec::len);
                report.freed_bytes += meta.size;
            }
            report.removed_uploads = uploads.into_keys().collect();
            return Ok(report);
        }

        // The handshake: markers first, then every link listed again.
        let started = Instant::now();
        let ours: Vec<Digest> = candidates.keys().cloned().collect();
        for digest in candidates.keys() {
            inner.put_json(&inner.keys.collecting(digest), &()).await?;
        }
        let swept = self
            .sweep(&before, candidates, &mut reached, started, &mut report)
            .await;
        if let Err(error) = swept {
            for digest in &ours {
                if let Err(e) = inner.remove(&inner.keys.collecting(digest)).await {
                    tracing::warn!(error = %e, "removing a collection marker failed");
                }
            }
            return Err(error);
        }
        for (id, state) in uploads {
            self.remove_upload(&id, state.as_ref(), &mut report).await?;
        }
        self.clear_stale_markers().await;
        tracing::info!(
            store = %inner.name,
            blobs = report.removed_blobs.len(),
            uploads = report.removed_uploads.len(),
            bytes = report.freed_bytes,
            "garbage collected"
        );
        Ok(report)
    }

    async fn sweep(
        &self,
        before: &Links,
        mut candidates: BTreeMap<Digest, ObjectMeta>,
        reached: &mut HashSet<Digest>,
        started: Instant,
        report: &mut GcReport,
    ) -> Result<()> {
        let inner = &self.inner;
        let after = inner.links().await?;
        let new_roots: Vec<Digest> = after
            .manifests
            .difference(&before.manifests)
            .cloned()
            .collect();
        inner.mark(new_roots, reached).await?;
        let rescued: Vec<Digest> = candidates
            .keys()
            .filter(|digest| {
                let old = before.blobs.get(*digest).map_or(&[][..], Vec::as_slice);
                let now = after.blobs.get(*digest).map_or(&[][..], Vec::as_slice);
                reached.contains(*digest) || now.iter().any(|link| !old.contains(link))
            })
            .cloned()
            .collect();
        for digest in rescued {
            candidates.remove(&digest);
            report.rescued += 1;
            inner.remove(&inner.keys.collecting(&digest)).await?;
        }
        for (digest, meta) in candidates {
            if started.elapsed() > SWEEP_LIMIT {
                return Err(Error::Ambiguous {
                    path: inner.keys.collecting_root().to_string(),
                    store: inner.name.clone(),
                    reason: format!("the sweep ran past {SWEEP_LIMIT:?}; run it again"),
                });
            }
            for (link, _) in after.blobs.get(&digest).map_or(&[][..], Vec::as_slice) {
                inner.remove(link).await?;
                report.removed_links += 1;
            }
            inner.remove(&meta.location).await?;
            inner.remove(&inner.keys.collecting(&digest)).await?;
            tracing::debug!(%digest, size = meta.size, "blob collected");
            report.freed_bytes += meta.size;
            report.removed_blobs.push((digest, meta.size));
        }
        Ok(())
    }

    /// Uploads none of whose objects changed since `cutoff`, each with its latest state
    /// object (if it has one).
    async fn stale_uploads(&self, cutoff: i64) -> Result<BTreeMap<String, Option<Path>>> {
        let inner = &self.inner;
        let mut newest: BTreeMap<String, (i64, Option<Path>)> = BTreeMap::new();
        for meta in inner.list_meta(&inner.keys.uploads_root()).await? {
            let Some(id) = inner.keys.upload_of(&meta.location) else {
                continue;
            };
            let entry = newest.entry(id.to_owned()).or_insert((i64::MIN, None));
            entry.0 = entry.0.max(meta.last_modified.timestamp());
            if last_segment(&meta.location).starts_with("state-")
                && entry.1.as_ref().is_none_or(|s| *s < meta.location)
            {
                entry.1 = Some(meta.location);
            }
        }
        Ok(newest
            .into_iter()
            .filter(|(_, (when, _))| *when < cutoff)
            .map(|(id, (_, state))| (id, state))
            .collect())
    }

    async fn remove_upload(
        &self,
        id: &str,
        state: Option<&Path>,
        report: &mut GcReport,
    ) -> Result<()> {
        let inner = &self.inner;
        let multipart_id = match state {
            Some(path) => inner
                .get_json::<serde_json::Value>(path)
                .await?
                .and_then(|s| s["multipart"].as_str().map(str::to_owned)),
            None => None,
        };
        if let (Some(multipart), Some(upload_id)) = (&inner.multipart, multipart_id) {
            let data = inner.keys.upload_file(id, "data");
            match multipart.abort_multipart(&data, &upload_id).await {
                Ok(()) => report.aborted_multipart += 1,
                // Completed or aborted already.
                Err(error) => tracing::debug!(upload = id, %error, "aborting a multipart upload"),
            }
        }
        for meta in inner.list_meta(&inner.keys.upload(id)).await? {
            inner.remove(&meta.location).await?;
        }
        report.removed_uploads.push(id.to_owned());
        Ok(())
    }

    /// Removes the markers a collection that died left, older than their lifetime.
    async fn clear_stale_markers(&self) {
        let inner = &self.inner;
        let root = inner.keys.collecting_root();
        let markers = match inner.list_meta(&root).await {
            Ok(markers) => markers,
            Err(error) => {
                tracing::warn!(%error, "listing collection markers failed");
                return;
            }
        };
        let now = now_secs();
        for meta in markers {
            if now - meta.last_modified.timestamp() < MARKER_LIFETIME_SECS {
                continue;
            }
            if let Err(error) = inner.remove(&meta.location).await {
                tracing::warn!(%error, "removing a collection marker failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::references;

    #[test]
    fn references_of_every_manifest_kind() {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let image = serde_json::json!({
            "config": {"digest": d('a')},
            "layers": [{"digest": d('b')}],
            "subject": {"digest": d('c')},
        });
        let found = references(&serde_json::to_vec(&image).unwrap()).unwrap();
        assert_eq!(found.len(), 2, "the subject is not followed");
        let index = serde_json::json!({"manifests": [{"digest": d('d')}]});
        let found = references(&serde_json::to_vec(&index).unwrap()).unwrap();
        assert!(found[0].1, "an index child is a manifest");
        assert!(references(b"not json").is_err());
    }
}
