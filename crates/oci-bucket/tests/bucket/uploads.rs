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

/// An in-memory bucket that counts the bytes written into it and read out of it, and can
/// fail the next read of an upload's tail or segment (a storage error that passes).
#[derive(Debug, Default)]
struct Counted {
    inner: object_store::memory::InMemory,
    written: std::sync::atomic::AtomicUsize,
    read: std::sync::atomic::AtomicUsize,
    fail_next_tail_read: std::sync::atomic::AtomicBool,
    fail_next_part_put: std::sync::atomic::AtomicBool,
}

impl std::fmt::Display for Counted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Counted({})", self.inner)
    }
}

mod counted {
    use std::sync::atomic::Ordering;

    use async_trait::async_trait;
    use futures::StreamExt;
    use futures::stream::BoxStream;
    use object_store::path::Path;
    use object_store::{
        CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload,
        ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult,
    };

    use super::Counted;

    #[async_trait]
    impl ObjectStore for Counted {
        async fn put_opts(
            &self,
            location: &Path,
            payload: PutPayload,
            opts: PutOptions,
        ) -> object_store::Result<PutResult> {
            if location.as_ref().contains("/part-")
                && self.fail_next_part_put.swap(false, Ordering::SeqCst)
            {
                return Err(object_store::Error::Generic {
                    store: "Counted",
                    source: "the storage failed this once".into(),
                });
            }
            self.written
                .fetch_add(payload.content_length(), Ordering::SeqCst);
            self.inner.put_opts(location, payload, opts).await
        }

        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }

        async fn get_opts(
            &self,
            location: &Path,
            options: GetOptions,
        ) -> object_store::Result<GetResult> {
            if location.as_ref().contains("/tail-")
                && self.fail_next_tail_read.swap(false, Ordering::SeqCst)
            {
                return Err(object_store::Error::Generic {
                    store: "Counted",
                    source: "the storage failed this once".into(),
                });
            }
            let found = self.inner.get_opts(location, options).await?;
            if !matches!(found.payload, GetResultPayload::Stream(_)) {
                return Ok(found);
            }
            let (meta, range, attributes, extensions) = (
                found.meta.clone(),
                found.range.clone(),
                found.attributes.clone(),
                found.extensions.clone(),
            );
            let bytes = found.bytes().await?;
            self.read.fetch_add(bytes.len(), Ordering::SeqCst);
            Ok(GetResult {
                range,
                meta,
                attributes,
                extensions,
                payload: GetResultPayload::Stream(
                    futures::stream::once(async move { Ok(bytes) }).boxed(),
                ),
            })
        }

        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<Path>>,
        ) -> BoxStream<'static, object_store::Result<Path>> {
            self.inner.delete_stream(locations)
        }

        fn list(
            &self,
            prefix: Option<&Path>,
        ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.inner.list(prefix)
        }

        async fn list_with_delimiter(
            &self,
            prefix: Option<&Path>,
        ) -> object_store::Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }

        async fn copy_opts(
            &self,
            from: &Path,
            to: &Path,
            options: CopyOptions,
        ) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }
}

/// A client sending one byte per request to an upload with most of a part after its last
/// part: each request writes its byte and the upload's state, and every 32nd joins the
/// pieces into one tail, rather than each writing the whole tail again. The content comes
/// out whole however the chunks fell.
#[tokio::test]
async fn small_chunks_cost_their_own_bytes_not_a_rewrite_of_the_tail() {
    let bucket = Arc::new(Counted::default());
    let store = BucketStore::new(Arc::clone(&bucket) as Arc<dyn ObjectStore>).with_part_size(PART);
    let repo: Repository = "team/app".parse().unwrap();
    let content = seeded_bytes(4, 2 * PART + 300);
    let mut writer = store.push_blob_chunked(&repo, None).await.unwrap();
    let id = writer.id().to_owned();
    // A part and nearly another: one part, a tail of PART - 100 bytes.
    let mut sent = 2 * PART - 100;
    writer.write(content.slice(..sent)).await.unwrap();
    writer.close().await.unwrap();
    let read_before = bucket.read.load(std::sync::atomic::Ordering::SeqCst);
    let written_before = bucket.written.load(std::sync::atomic::Ordering::SeqCst);
    let requests = 99;
    for _ in 0..requests {
        let mut resumed = store
            .push_blob_chunked_resume(&repo, &id, Some(sent as u64), None)
            .await
            .unwrap();
        resumed.write(content.slice(sent..sent + 1)).await.unwrap();
        sent += 1;
        resumed.close().await.unwrap();
    }
    let written = bucket.written.load(std::sync::atomic::Ordering::SeqCst) - written_before;
    let read = bucket.read.load(std::sync::atomic::Ordering::SeqCst) - read_before;
    // Rewriting the tail each time was 99 parts written and read; now three joins of it,
    // and each request's byte and state.
    assert!(
        written < 4 * PART + requests * 2048,
        "{written} bytes written"
    );
    assert!(read < 4 * PART + requests * 2048, "{read} bytes read");

    // The rest in chunks of all sizes, across the part boundary, then the whole of it.
    for len in [1, 7, 150, PART / 2, PART] {
        let end = (sent + len).min(content.len());
        let mut resumed = store
            .push_blob_chunked_resume(&repo, &id, Some(sent as u64), None)
            .await
            .unwrap();
        resumed.write(content.slice(sent..end)).await.unwrap();
        sent = end;
        resumed.close().await.unwrap();
    }
    assert_eq!(sent, content.len());
    let resumed = store
        .push_blob_chunked_resume(&repo, &id, Some(sent as u64), None)
        .await
        .unwrap();
    let digest = Digest::sha256(&content);
    assert_eq!(resumed.written_digest().as_ref(), Some(&digest));
    resumed.commit(&digest).await.unwrap();
    let back = store
        .get_blob_bytes(&repo, &digest, u64::MAX)
        .await
        .unwrap();
    assert_eq!(back, content);
}

/// A write that cannot read the stored tail (a storage error that passes) fails, and the
/// server's close after it leaves the upload as it was: resumed again, it completes.
#[tokio::test]
async fn a_failed_read_of_the_tail_leaves_the_upload_resumable() {
    let bucket = Arc::new(Counted::default());
    let store = BucketStore::new(Arc::clone(&bucket) as Arc<dyn ObjectStore>).with_part_size(PART);
    let repo: Repository = "team/app".parse().unwrap();
    let content = seeded_bytes(5, 2 * PART);
    let mut writer = store.push_blob_chunked(&repo, None).await.unwrap();
    let id = writer.id().to_owned();
    writer.write(content.slice(..PART / 2)).await.unwrap();
    writer.close().await.unwrap();

    // Another half part makes a part of the tail: the tail's read fails this once.
    bucket
        .fail_next_tail_read
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let mut failing = store
        .push_blob_chunked_resume(&repo, &id, Some(PART as u64 / 2), None)
        .await
        .unwrap();
    assert!(failing.write(content.slice(PART / 2..PART)).await.is_err());
    // As the server does after a body that failed.
    failing.close().await.unwrap();

    let mut resumed = store
        .push_blob_chunked_resume(&repo, &id, None, None)
        .await
        .unwrap();
    let at = resumed.size() as usize;
    resumed.write(content.slice(at..)).await.unwrap();
    let digest = Digest::sha256(&content);
    resumed.commit(&digest).await.unwrap();
    let back = store
        .get_blob_bytes(&repo, &digest, u64::MAX)
        .await
        .unwrap();
    assert_eq!(back, content);
}

/// A part that fails to upload (a storage error that passes), then the server's close: the
/// upload keeps every byte, and a later resume completes it.
#[tokio::test]
async fn a_failed_part_upload_leaves_the_upload_resumable() {
    let bucket = Arc::new(Counted::default());
    let store = BucketStore::new(Arc::clone(&bucket) as Arc<dyn ObjectStore>).with_part_size(PART);
    let repo: Repository = "team/app".parse().unwrap();
    let content = seeded_bytes(6, 3 * PART);
    let mut writer = store.push_blob_chunked(&repo, None).await.unwrap();
    let id = writer.id().to_owned();
    writer.write(content.slice(..PART / 2)).await.unwrap();
    writer.close().await.unwrap();

    bucket
        .fail_next_part_put
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let mut failing = store
        .push_blob_chunked_resume(&repo, &id, Some(PART as u64 / 2), None)
        .await
        .unwrap();
    assert!(
        failing
            .write(content.slice(PART / 2..2 * PART))
            .await
            .is_err()
    );
    failing.close().await.unwrap();

    let mut resumed = store
        .push_blob_chunked_resume(&repo, &id, None, None)
        .await
        .unwrap();
    assert_eq!(
        resumed.size(),
        2 * PART as u64,
        "every byte written was kept"
    );
    resumed.write(content.slice(2 * PART..)).await.unwrap();
    let digest = Digest::sha256(&content);
    resumed.commit(&digest).await.unwrap();
    let back = store
        .get_blob_bytes(&repo, &digest, u64::MAX)
        .await
        .unwrap();
    assert_eq!(back, content);
}

/// A writer that stalled after reading the tail into a part, closing after another writer
/// moved the upload on: it writes a generation the other had removed, and must not remove the
/// tail that the newest state still names.
#[tokio::test]
async fn a_stalled_writer_closing_late_removes_nothing_the_newest_state_needs() {
    let dir = tempfile::tempdir().unwrap();
    for (first, second) in replicas(&dir) {
        let repo: Repository = "team/app".parse().unwrap();
        let content = seeded_bytes(7, 2 * PART);
        let mut writer = first.push_blob_chunked(&repo, None).await.unwrap();
        let id = writer.id().to_owned();
        writer.write(content.slice(..PART / 2)).await.unwrap();
        writer.close().await.unwrap();

        // A reads the tail into a part, then stalls before its close.
        let mut stalled = first
            .push_blob_chunked_resume(&repo, &id, Some(PART as u64 / 2), None)
            .await
            .unwrap();
        stalled.write(Bytes::from(vec![0u8; PART])).await.unwrap();
        // The client gives up on A and sends the chunk again through B, which takes the
        // upload over and closes.
        let mut retried = second
            .push_blob_chunked_resume(&repo, &id, Some(PART as u64 / 2), None)
            .await
            .unwrap();
        retried
            .write(content.slice(PART / 2..PART / 2 + 10))
            .await
            .unwrap();
        retried.close().await.unwrap();
        // A wakes and closes late.
        stalled.close().await.unwrap();

        let mut resumed = second
            .push_blob_chunked_resume(&repo, &id, None, None)
            .await
            .unwrap();
        assert_eq!(resumed.size(), PART as u64 / 2 + 10, "{second}");
        resumed.write(content.slice(PART / 2 + 10..)).await.unwrap();
        let digest = Digest::sha256(&content);
        resumed.commit(&digest).await.unwrap();
        let back = first
            .get_blob_bytes(&repo, &digest, u64::MAX)
            .await
            .unwrap();
        assert_eq!(back, content, "{first}");
    }
}
