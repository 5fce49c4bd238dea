//! The conformance suite through the registry client: client → `oci-server` → memory, → a
//! per-repository layout, and a proxy chain client → server → client → server → memory in
//! which the inner store is asked no more than needed.

use std::sync::Arc;

use bytes::Bytes;
use oci_layout::LayoutStore;
use oci_registry::{RegistryClient, RetryPolicy};
use oci_server::{Listening, RegistryServer};
use oci_store::conformance::{Faulty, Fixture};
use oci_store::{MemoryStore, OciInterface, OciInterfaceExt};
use oci_types::{MediaType, Repository, media_type};

async fn serve(store: Arc<dyn OciInterface>) -> Listening {
    RegistryServer::new(store)
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

async fn client_of(listening: &Listening) -> RegistryClient {
    RegistryClient::builder(&listening.local_addr().to_string())
        .with_credential_files(Vec::new())
        .with_retry(RetryPolicy::default().with_attempts(2))
        .build()
        .await
        .unwrap()
}

async fn over_memory() -> Fixture {
    let memory = MemoryStore::new();
    let corrupter = memory.conformance_corrupter();
    let listening = serve(Arc::new(memory)).await;
    let client = client_of(&listening).await;
    Fixture::new(client)
        .with_corrupter(corrupter)
        .with_guard(listening)
}

async fn over_layout() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let layout = LayoutStore::open_per_repository(dir.path()).await.unwrap();
    let listening = serve(Arc::new(layout)).await;
    let client = client_of(&listening).await;
    Fixture::new(client).with_guard((listening, dir))
}

async fn through_a_proxy() -> Fixture {
    let memory = MemoryStore::new();
    let corrupter = memory.conformance_corrupter();
    let inner = serve(Arc::new(memory)).await;
    let outer = serve(Arc::new(client_of(&inner).await)).await;
    let client = client_of(&outer).await;
    Fixture::new(client)
        .with_corrupter(corrupter)
        .with_guard((inner, outer))
}

mod client_server_memory {
    oci_store::conformance_tests!(super::over_memory);
}

mod client_server_layout {
    oci_store::conformance_tests!(super::over_layout);
}

mod client_server_client_server_memory {
    oci_store::conformance_tests!(super::through_a_proxy);
}

/// Through the proxy chain, each operation costs the inner store only the calls it needs. A
/// small blob pushed in one `POST ?digest=` reaches the inner store as one push.
#[tokio::test]
async fn a_proxy_asks_the_inner_store_no_more_than_needed() {
    let counted = Faulty::new(MemoryStore::new());
    let inner = serve(Arc::new(counted.clone())).await;
    let outer = serve(Arc::new(client_of(&inner).await)).await;
    let client = client_of(&outer).await;
    let repo: Repository = "proxy/counted".parse().unwrap();

    let config = client
        .push_blob_bytes(
            &repo,
            MediaType::from_static(media_type::OCI_CONFIG),
            Bytes::from_static(b"{}"),
        )
        .await
        .unwrap();
    // A small blob goes as one `POST ?digest=` with its body, through both hops: one push.
    assert_eq!(counted.calls("push_blob"), 1, "one whole-blob push");
    assert_eq!(counted.calls("push_blob_chunked"), 0, "no upload session");
    assert_eq!(counted.calls("push_blob_chunked_resume"), 0);

    assert_eq!(
        client
            .get_blob_bytes(&repo, &config.digest, 1 << 20)
            .await
            .unwrap(),
        "{}"
    );
    // Servers serve blobs as stored (a read of every byte as a range); the client verifies.
    let reads = || counted.calls("get_blob") + counted.calls("get_blob_range");
    assert_eq!(reads(), 1, "one read");
    let resolves = counted.calls("resolve_blob");
    client.resolve_blob(&repo, &config.digest).await.unwrap();
    assert_eq!(
        counted.calls("resolve_blob"),
        resolves + 1,
        "a HEAD is one resolve"
    );
    assert_eq!(reads(), 1, "a HEAD reads no content");

    let manifest = oci_types::ImageManifest::new(config, vec![]).to_json();
    let params = oci_store::PushManifestParams::new()
        .with_tags(["a".parse().unwrap(), "b".parse().unwrap()]);
    client
        .push_manifest(
            &repo,
            manifest.into(),
            &MediaType::from_static(media_type::OCI_MANIFEST),
            &params,
        )
        .await
        .unwrap();
    assert_eq!(
        counted.calls("push_manifest"),
        1,
        "a manifest and its two tags in one push"
    );
    let tags: Vec<oci_types::Tag> =
        futures::TryStreamExt::try_collect(client.tags(&repo, &Default::default()))
            .await
            .unwrap();
    assert_eq!(tags.len(), 2);
    assert_eq!(counted.calls("tags"), 1, "one page");
}
