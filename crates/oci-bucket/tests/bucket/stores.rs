//! Two stores on one bucket (as two replicas are), what a store keeps in its process, and content
//! moved into place without a server-side copy.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use oci_bucket::BucketStore;
use oci_store::conformance::seeded_bytes;
use oci_store::{ErrorCode, ListParams, OciInterface, OciInterfaceExt, PushManifestParams};
use oci_types::{Digest, MediaType, Repository, media_type};

fn repo() -> Repository {
    "team/app".parse().unwrap()
}

async fn push_manifest(store: &BucketStore, tag: &str) -> Digest {
    let config = store
        .push_blob_bytes(
            &repo(),
            MediaType::from_static(media_type::OCI_CONFIG),
            Bytes::from_static(b"{}"),
        )
        .await
        .unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": {"mediaType": media_type::OCI_CONFIG, "digest": config.digest.to_string(), "size": 2},
        "layers": [],
        "annotations": {"pushed.as": tag},
    });
    store
        .push_manifest(
            &repo(),
            Bytes::from(serde_json::to_vec(&manifest).unwrap()),
            &MediaType::from_static(media_type::OCI_MANIFEST),
            &PushManifestParams::new().with_tag(tag.parse().unwrap()),
        )
        .await
        .unwrap()
        .digest
}

#[tokio::test]
async fn a_manifest_deleted_through_one_store_is_gone_for_another_that_read_it() {
    let memory = Arc::new(InMemory::new());
    let first = BucketStore::with_multipart(Arc::clone(&memory));
    let second = BucketStore::with_multipart(Arc::clone(&memory));
    let digest = push_manifest(&first, "v1").await;
    // Read through the second store twice (the second read is served from its process).
    for _ in 0..2 {
        let bytes = second
            .get_manifest(&repo(), &digest)
            .await
            .unwrap()
            .bytes(1 << 20)
            .await
            .unwrap();
        assert_eq!(Digest::sha256(&bytes), digest);
    }
    first.delete_manifest(&repo(), &digest).await.unwrap();
    let error = second.get_manifest(&repo(), &digest).await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::ManifestUnknown), "{error}");
    let error = second
        .get_tag(&repo(), &"v1".parse().unwrap())
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::ManifestUnknown), "{error}");
}

#[tokio::test]
async fn a_repository_written_again_after_its_bucket_was_emptied_is_in_the_catalog() {
    let memory = Arc::new(InMemory::new());
    let store = BucketStore::with_multipart(Arc::clone(&memory));
    push_manifest(&store, "v1").await;
    // Everything removed behind the store's back, as when a bucket is emptied and reused.
    let everything: Vec<Path> = memory
        .list(None)
        .map(|meta| meta.unwrap().location)
        .collect()
        .await;
    assert!(!everything.is_empty());
    for path in everything {
        memory.delete(&path).await.unwrap();
    }
    let params = ListParams::default();
    let catalog = |store: &BucketStore| {
        store
            .repositories(&params)
            .map(Result::unwrap)
            .collect::<Vec<_>>()
    };
    assert!(catalog(&store).await.is_empty());
    push_manifest(&store, "v2").await;
    assert_eq!(catalog(&store).await, [repo()]);
    let tags: Vec<_> = store
        .tags(&repo(), &params)
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(tags.iter().map(|t| t.as_str()).collect::<Vec<_>>(), ["v2"]);
}

/// An in-memory bucket that can refuse server-side copies (as S3 does above 5 GiB; it counts
/// the copies asked of it), and can write an object behind a reader's back right after the
/// reader read it (as another replica may).
#[derive(Debug, Default)]
struct Bucket {
    inner: InMemory,
    refuse_copies: bool,
    copies: AtomicUsize,
    /// After the next read of an object whose name ends with `.0`, `.1` is written there.
    write_after_read: Mutex<Option<(String, Bytes)>>,
}

impl fmt::Display for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bucket({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Bucket {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
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
        let found = self.inner.get_opts(location, options).await;
        let write = {
            let mut armed = self.write_after_read.lock().unwrap();
            match armed.as_ref() {
                Some((suffix, _)) if location.as_ref().ends_with(suffix.as_str()) => armed.take(),
                _ => None,
            }
        };
        if let Some((_, bytes)) = write {
            self.inner.put(location, bytes.into()).await?;
        }
        found
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.copies.fetch_add(1, Ordering::SeqCst);
        if self.refuse_copies {
            return Err(object_store::Error::Generic {
                store: "Bucket",
                source: format!("refusing to copy {from}: larger than a copy may be").into(),
            });
        }
        self.inner.copy_opts(from, to, options).await
    }
}

#[tokio::test]
async fn a_tag_moved_while_its_old_manifest_is_deleted_stays() {
    let bucket = Arc::new(Bucket::default());
    let store = BucketStore::new(Arc::clone(&bucket) as Arc<dyn ObjectStore>);
    let old = push_manifest(&store, "v1").await;
    let new = push_manifest(&store, "v2").await;
    assert_ne!(old, new);
    // Another replica moves v1 to the new manifest right after the deletion read v1.
    let moved = serde_json::to_vec(&serde_json::json!({ "digest": new.to_string() })).unwrap();
    *bucket.write_after_read.lock().unwrap() = Some(("/_tags/v1".to_owned(), moved.into()));
    store.delete_manifest(&repo(), &old).await.unwrap();
    assert!(
        bucket.write_after_read.lock().unwrap().is_none(),
        "v1 was never read"
    );
    let v1 = store
        .resolve_tag(&repo(), &"v1".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(v1.digest, new);

    // A tag removed with its manifest is gone from reads and listings, and can come back.
    store.delete_manifest(&repo(), &new).await.unwrap();
    for tag in ["v1", "v2"] {
        let error = store
            .resolve_tag(&repo(), &tag.parse().unwrap())
            .await
            .unwrap_err();
        assert_eq!(error.code(), Some(ErrorCode::ManifestUnknown), "{error}");
    }
    let listed = |store: &BucketStore| {
        store
            .tags(&repo(), &ListParams::default())
            .map(|t| t.unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert!(listed(&store).await.is_empty());
    let again = push_manifest(&store, "v2").await;
    assert_eq!(listed(&store).await, ["v2"]);
    let v2 = store
        .resolve_tag(&repo(), &"v2".parse().unwrap())
        .await
        .unwrap();
    assert_eq!(v2.digest, again);
}

#[tokio::test]
async fn content_above_the_copy_limit_is_streamed_into_place() {
    let bucket = Arc::new(Bucket {
        refuse_copies: true,
        ..Bucket::default()
    });
    let store = BucketStore::new(Arc::clone(&bucket) as Arc<dyn ObjectStore>)
        .with_part_size(4096)
        .with_copy_limit(1000);
    let kind = MediaType::from_static(media_type::OCI_LAYER_TAR);
    // Pushed whole: larger than a part, so streamed into a multipart upload, then moved.
    let whole = seeded_bytes(1, 20_000);
    let pushed = store
        .push_blob_bytes(&repo(), kind.clone(), whole.clone())
        .await
        .unwrap();
    assert_eq!(
        store
            .get_blob_bytes(&repo(), &pushed.digest, 1 << 20)
            .await
            .unwrap(),
        whole
    );
    // Pushed in chunks: parts joined at commit, then moved.
    let chunked = seeded_bytes(2, 10_000);
    let digest = Digest::sha256(&chunked);
    let mut writer = store.push_blob_chunked(&repo(), None).await.unwrap();
    for piece in chunked.chunks(3000) {
        writer.write(Bytes::copy_from_slice(piece)).await.unwrap();
    }
    writer.commit(&digest).await.unwrap();
    assert_eq!(
        store
            .get_blob_bytes(&repo(), &digest, 1 << 20)
            .await
            .unwrap(),
        chunked
    );
    assert_eq!(
        bucket.copies.load(Ordering::SeqCst),
        0,
        "a copy was asked for"
    );
    // Nothing of either upload is left behind.
    let left: Vec<String> = bucket
        .list(None)
        .map(|meta| meta.unwrap().location.to_string())
        .filter(|path| std::future::ready(path.contains("upload")))
        .collect()
        .await;
    assert!(left.is_empty(), "{left:?}");

    // Below the limit, the store's copy is used (and here fails, as it is told to).
    let small = BucketStore::new(Arc::clone(&bucket) as Arc<dyn ObjectStore>)
        .with_part_size(4096)
        .with_copy_limit(1 << 20);
    let error = small
        .push_blob_bytes(&repo(), kind, seeded_bytes(3, 20_000))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("copying into"), "{error}");
    assert_eq!(bucket.copies.load(Ordering::SeqCst), 1);
}

/// What the store reads whole from the bucket (links, manifests, upload state) is read
/// through a bound: a tag link of 9 MiB (a broken or hostile bucket) is reported as corrupt,
/// naming it, not held.
#[tokio::test]
async fn an_object_read_whole_is_read_through_a_bound() {
    let memory = Arc::new(InMemory::new());
    let store = BucketStore::with_multipart(Arc::clone(&memory));
    push_manifest(&store, "v1").await;
    let link = Path::from("repositories/team/app/_tags/v1");
    memory
        .put(&link, PutPayload::from(vec![b' '; 9 << 20]))
        .await
        .unwrap();
    let error = store
        .resolve_tag(&repo(), &"v1".parse().unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("_tags/v1") && error.contains("more than the 8388608"),
        "{error}"
    );
}
