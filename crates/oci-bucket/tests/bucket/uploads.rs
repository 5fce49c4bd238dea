//! Uploads continued through another `BucketStore` over the same bucket (as another replica
//! would), and two writers racing on one upload.

use std::sync::Arc;

use bytes::Bytes;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use oci_bucket::BucketStore;
use oci_store::conformance::seeded_bytes;
use oci_store::{ErrorCode, OciInterface, OciInterfaceExt};
use oci_types::{Digest, Repository};

use crate::conformance::PART;

fn replicas(dir: &tempfile::TempDir) -> Vec<(BucketStore, BucketStore)> {
    let memory = Arc::new(InMemory::new());
    let local: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let mem = |b: &Arc<InMemory>| BucketStore::with_multipart(Arc::clone(b)).with_part_size(PART);
    let loc = |b: &Arc<dyn ObjectStore>| BucketStore::new(Arc::clone(b)).with_part_size(PART);
    vec![(mem(&memory), mem(&memory)), (loc(&local), loc(&local))]
}

#[tokio::test]
async fn an_upload_started_on_one_replica_is_finished_on_another() {
    let dir = tempfile::tempdir().unwrap();
    for (first, second) in replicas(&dir) {
        let repo: Repository = "team/app".parse().unwrap();
        let content = seeded_bytes(1, 5 * PART / 2 + 17);
        let mut writer = first.push_blob_chunked(&repo, None).await.unwrap();
        // A part and a half: one part sent, a tail kept in the bucket.
        writer.write(content.slice(..3 * PART / 2)).await.unwrap();
        assert_eq!(
            writer.written_digest(),
            Some(Digest::sha256(&content[..3 * PART / 2])),
            "{first}"
        );
        let id = writer.id().to_owned();
        writer.close().await.unwrap();

        let mut resumed = second
            .push_blob_chunked_resume(&repo, &id, Some(3 * PART as u64 / 2), None)
            .await
            .unwrap();
        resumed.write(content.slice(3 * PART / 2..)).await.unwrap();
        let digest = Digest::sha256(&content);
        // The running hash came with the upload from the other replica.
        assert_eq!(resumed.written_digest().as_ref(), Some(&digest), "{second}");
        resumed.commit(&digest).await.unwrap();
        let read = first
            .get_blob_bytes(&repo, &digest, u64::MAX)
            .await
            .unwrap();
        assert_eq!(read, content, "{first}");
    }
}

#[tokio::test]
async fn of_two_writers_resuming_one_upload_the_second_to_write_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (first, second) in replicas(&dir) {
        let repo: Repository = "team/app".parse().unwrap();
        let mut writer = first.push_blob_chunked(&repo, None).await.unwrap();
        writer.write(Bytes::from_static(b"start ")).await.unwrap();
        let id = writer.id().to_owned();
        writer.close().await.unwrap();

        let mut a = first
            .push_blob_chunked_resume(&repo, &id, Some(6), None)
            .await
            .unwrap();
        let mut b = second
            .push_blob_chunked_resume(&repo, &id, Some(6), None)
            .await
            .unwrap();
        a.write(Bytes::from_static(b"from a")).await.unwrap();
        let refused = b.write(Bytes::from_static(b"from b")).await.unwrap_err();
        assert_eq!(refused.code(), Some(ErrorCode::RangeInvalid), "{refused}");
        a.close().await.unwrap();

        let resumed = second
            .push_blob_chunked_resume(&repo, &id, None, None)
            .await
            .unwrap();
        assert_eq!(resumed.size(), 12);
        let digest = Digest::sha256(b"start from a");
        resumed.commit(&digest).await.unwrap();
        assert_eq!(
            second.get_blob_bytes(&repo, &digest, 100).await.unwrap(),
            "start from a"
        );
    }
}

/// The part objects of an upload (on a store without multipart uploads), found on disk.
fn part_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path
                .file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with("part-"))
            {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

#[tokio::test]
async fn parts_changed_in_the_bucket_after_they_were_written_are_not_published() {
    let repo: Repository = "team/app".parse().unwrap();
    let content = seeded_bytes(3, 5 * PART / 2 + 17);
    let digest = Digest::sha256(&content);
    type Damage = fn(&mut Vec<u8>);
    let damages: [(&str, Damage); 2] = [
        ("a flipped byte", |bytes| bytes[7] ^= 0xff),
        ("a byte more", |bytes| bytes.push(0)),
    ];
    for (what, damage) in damages {
        let dir = tempfile::tempdir().unwrap();
        let bucket: Arc<dyn ObjectStore> =
            Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        let store = BucketStore::new(bucket).with_part_size(PART);
        let mut writer = store.push_blob_chunked(&repo, None).await.unwrap();
        writer.write(content.clone()).await.unwrap();
        let id = writer.id().to_owned();
        writer.close().await.unwrap();

        let parts = part_files(dir.path());
        assert_eq!(parts.len(), 2, "{parts:?}");
        let mut bytes = std::fs::read(&parts[0]).unwrap();
        damage(&mut bytes);
        std::fs::write(&parts[0], bytes).unwrap();

        let resumed = store
            .push_blob_chunked_resume(&repo, &id, None, None)
            .await
            .unwrap();
        let error = resumed.commit(&digest).await.unwrap_err();
        assert!(error.to_string().contains("corrupt"), "{what}: {error}");
        assert!(
            store.resolve_blob(&repo, &digest).await.is_err(),
            "{what}: nothing published"
        );
        assert!(
            store
                .get_blob_bytes(&repo, &digest, u64::MAX)
                .await
                .is_err(),
            "{what}"
        );
    }
}
