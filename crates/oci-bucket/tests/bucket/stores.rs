//! Two stores on one bucket (as two replicas are), what a store keeps in its process, and content
//! moved into place without a server-side copy.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

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
    assert_eq!(
        tags.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
        ["v2"]
    );
}

/// An in-memory bucket whose server-side copies always fail, as S3's do above 5 GiB; counts
/// the copies asked of it.
#[derive(Debug, Default)]
struct NoCopies {
    inner: InMemory,
    copies: AtomicUsize,
}

impl fmt::Display for NoCopies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NoCopies({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for NoCopies {
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
        self.inner.get_opts(location, options).await
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
        _to: &Path,
        _options: CopyOptions,
    ) -> object_store::Result<()> {
        self.copies.fetch_add(1, Ordering::SeqCst);
        Err(object_store::Error::Generic {
            store: "NoCopies",
            source: format!("refusing to copy {from}: larger than a copy may be").into(),
        })
    }
}

#[tokio::test]
async fn content_above_the_copy_limit_is_streamed_into_place() {
    let bucket = Arc::new(NoCopies::default());
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
        writer
            .write(Bytes::copy_from_slice(piece))
            .await
            .unwrap();
    }
    writer.commit(&digest).await.unwrap();
    assert_eq!(
        store.get_blob_bytes(&repo(), &digest, 1 << 20).await.unwrap(),
        chunked
    );
    assert_eq!(bucket.copies.load(Ordering::SeqCst), 0, "a copy was asked for");
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
