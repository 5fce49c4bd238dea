//! Garbage collection over an in-memory bucket: what is kept, what goes, the dry run, an
//! unreadable manifest stopping it, abandoned uploads, and the handshake with pushes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use oci_bucket::{BucketStore, GcOptions};
use oci_store::conformance::seeded_bytes;
use oci_store::{ErrorCode, OciInterface, OciInterfaceExt, PushManifestParams};
use oci_types::{Digest, MediaType, Repository, media_type};

fn store() -> (Arc<InMemory>, BucketStore) {
    let memory = Arc::new(InMemory::new());
    let store = BucketStore::with_multipart(Arc::clone(&memory)).with_prefix("reg");
    (memory, store)
}

fn layer_type() -> MediaType {
    MediaType::from_static(media_type::OCI_LAYER_TAR)
}

/// Pushes config + layer + manifest (tagged when `tag` is given); returns the manifest's
/// digest and the blobs'.
async fn push_image(
    store: &BucketStore,
    repo: &Repository,
    tag: Option<&str>,
    seed: u64,
) -> (Digest, Vec<Digest>) {
    let config = Bytes::from(format!("{{\"seed\":{seed}}}"));
    let layer = seeded_bytes(seed, 2000);
    let mut blobs = Vec::new();
    for (data, kind) in [
        (&config, media_type::OCI_CONFIG),
        (&layer, media_type::OCI_LAYER_TAR),
    ] {
        let pushed = store
            .push_blob_bytes(repo, MediaType::from_static(kind), data.clone())
            .await
            .unwrap();
        blobs.push(pushed.digest);
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": {"mediaType": media_type::OCI_CONFIG, "digest": blobs[0].to_string(), "size": config.len()},
        "layers": [{"mediaType": media_type::OCI_LAYER_TAR, "digest": blobs[1].to_string(), "size": layer.len()}],
    });
    let bytes = Bytes::from(serde_json::to_vec(&manifest).unwrap());
    let mut params = PushManifestParams::new();
    if let Some(tag) = tag {
        params = params.with_tag(tag.parse().unwrap());
    }
    let pushed = store
        .push_manifest(
            repo,
            bytes,
            &MediaType::from_static(media_type::OCI_MANIFEST),
            &params,
        )
        .await
        .unwrap();
    (pushed.digest, blobs)
}

/// Past the grace of 0 s: object times have whole seconds.
async fn age() {
    tokio::time::sleep(Duration::from_millis(1100)).await;
}

fn now() -> GcOptions {
    GcOptions::default().with_grace(Duration::ZERO)
}

#[tokio::test]
async fn gc_keeps_what_manifests_reach_and_removes_the_rest() {
    let (_, store) = store();
    let repo: Repository = "team/app".parse().unwrap();
    let (tagged, tagged_blobs) = push_image(&store, &repo, Some("v1"), 1).await;
    let (untagged, untagged_blobs) = push_image(&store, &repo, None, 2).await;
    let (deleted, deleted_blobs) = push_image(&store, &repo, None, 3).await;
    store.delete_manifest(&repo, &deleted).await.unwrap();
    let stray = store
        .push_blob_bytes(&repo, layer_type(), seeded_bytes(9, 500))
        .await
        .unwrap()
        .digest;

    // Within the grace period nothing goes.
    let report = store.gc(&GcOptions::default()).await.unwrap();
    assert!(report.removed_blobs.is_empty(), "{report:?}");
    assert!(report.kept_young >= 4, "{report:?}");

    age().await;
    let dry = store.gc(&now().with_dry_run(true)).await.unwrap();
    let mut would: Vec<Digest> = dry.removed_blobs.iter().map(|(d, _)| d.clone()).collect();
    would.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
    let mut expected = vec![deleted.clone(), stray.clone()];
    expected.extend(deleted_blobs.iter().cloned());
    expected.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
    assert_eq!(would, expected, "the dry run's list");
    assert!(dry.dry_run);
    store.resolve_blob(&repo, &stray).await.unwrap();

    let report = store.gc(&now()).await.unwrap();
    assert_eq!(report.removed_blobs.len(), expected.len(), "{report:?}");
    for digest in [&stray, &deleted_blobs[1]] {
        let gone = store.resolve_blob(&repo, digest).await.unwrap_err();
        assert_eq!(gone.code(), Some(ErrorCode::BlobUnknown), "{digest}");
    }
    for manifest in [&tagged, &untagged] {
        store.get_manifest(&repo, manifest).await.unwrap();
    }
    for blob in tagged_blobs.iter().chain(&untagged_blobs) {
        store.get_blob_bytes(&repo, blob, u64::MAX).await.unwrap();
    }
    let again = store.gc(&now()).await.unwrap();
    assert!(again.removed_blobs.is_empty(), "{again:?}");
}

#[tokio::test]
async fn gc_stops_before_removing_anything_when_a_linked_manifest_is_unreadable() {
    let (memory, store) = store();
    let repo: Repository = "team/app".parse().unwrap();
    let (manifest, _) = push_image(&store, &repo, Some("v1"), 1).await;
    let stray = store
        .push_blob_bytes(&repo, layer_type(), seeded_bytes(9, 500))
        .await
        .unwrap()
        .digest;
    // The manifest's content vanishes behind the store's back (a 404 after a write).
    let hex = manifest.encoded();
    let content = Path::from(format!("reg/blobs/sha256/{}/{hex}", &hex[..2]));
    memory.delete(&content).await.unwrap();
    age().await;
    let error = store.gc(&now()).await.unwrap_err();
    assert!(error.to_string().contains("stopped"), "{error}");
    store.resolve_blob(&repo, &stray).await.unwrap();
}

#[tokio::test]
async fn gc_removes_abandoned_uploads_and_aborts_their_multipart_uploads() {
    let (memory, store) = store();
    let store = store.with_part_size(5 * 1024 * 1024);
    let repo: Repository = "team/app".parse().unwrap();
    let mut writer = store.push_blob_chunked(&repo, None).await.unwrap();
    writer
        .write(seeded_bytes(1, 6 * 1024 * 1024))
        .await
        .unwrap();
    let id = writer.id().to_owned();
    writer.close().await.unwrap();
    let report = store.gc(&GcOptions::default()).await.unwrap();
    assert!(report.removed_uploads.is_empty(), "a fresh upload stays");
    age().await;
    let report = store.gc(&now()).await.unwrap();
    assert_eq!(report.removed_uploads, std::slice::from_ref(&id));
    assert_eq!(report.aborted_multipart, 1);
    let left = memory
        .list(Some(&Path::from(format!("reg/uploads/{id}"))))
        .next()
        .await;
    assert!(left.is_none(), "upload objects left: {left:?}");
    let resumed = store
        .push_blob_chunked_resume(&repo, &id, None, None)
        .await
        .unwrap_err();
    assert_eq!(resumed.code(), Some(ErrorCode::BlobUploadUnknown));
}

#[tokio::test]
async fn a_push_that_meets_a_collection_marker_is_refused_and_leaves_no_link() {
    let (memory, store) = store();
    let repo: Repository = "team/app".parse().unwrap();
    let data = seeded_bytes(5, 300);
    let digest = Digest::sha256(&data);
    let marker = Path::from(format!("reg/gc/collecting/sha256/{}", digest.encoded()));
    memory.put(&marker, "null".into()).await.unwrap();
    let error = store
        .push_blob_bytes(&repo, layer_type(), data.clone())
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::TooManyRequests), "{error}");
    let link = store.resolve_blob(&repo, &digest).await.unwrap_err();
    assert_eq!(link.code(), Some(ErrorCode::BlobUnknown));
    memory.delete(&marker).await.unwrap();
    store
        .push_blob_bytes(&repo, layer_type(), data)
        .await
        .unwrap();
}
