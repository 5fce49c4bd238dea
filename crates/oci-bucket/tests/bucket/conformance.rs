//! The shared conformance suite over object_store's in-memory store (multipart uploads) and
//! its local-filesystem store (parts as objects), with parts small enough that uploads span
//! several.

use std::sync::Arc;

use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use oci_bucket::BucketStore;
use oci_store::conformance::{Corrupter, Fixture};

/// Parts of 64 KiB: the suite's uploads (up to 200 KB) and its 64 MiB blob take many.
pub(crate) const PART: usize = 64 * 1024;

/// Damages the content object of a blob (flips its first byte, or adds one to an empty one).
pub(crate) fn corrupter(store: Arc<dyn ObjectStore>, prefix: &'static str) -> Corrupter {
    Arc::new(move |_repo, digest| {
        let store = Arc::clone(&store);
        Box::pin(async move {
            let hex = digest.encoded();
            let path = Path::from(format!(
                "{prefix}/blobs/{}/{}/{hex}",
                digest.algorithm(),
                &hex[..2]
            ));
            let Ok(found) = store.get(&path).await else {
                return false;
            };
            let mut bytes = found.bytes().await.unwrap().to_vec();
            match bytes.first_mut() {
                Some(first) => *first ^= 0xff,
                None => bytes.push(0),
            }
            store.put(&path, PutPayload::from(bytes)).await.unwrap();
            true
        })
    })
}

async fn memory() -> Fixture {
    let bucket = Arc::new(InMemory::new());
    let store = BucketStore::with_multipart(Arc::clone(&bucket))
        .with_prefix("registry")
        .with_part_size(PART);
    Fixture::new(store).with_corrupter(corrupter(bucket, "registry"))
}

async fn local() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let bucket: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    let store = BucketStore::new(Arc::clone(&bucket))
        .with_prefix("registry")
        .with_part_size(PART);
    Fixture::new(store)
        .with_corrupter(corrupter(bucket, "registry"))
        .with_guard(dir)
}

mod in_memory {
    oci_store::conformance_tests!(super::memory);
}

mod local_filesystem {
    oci_store::conformance_tests!(super::local);
}
