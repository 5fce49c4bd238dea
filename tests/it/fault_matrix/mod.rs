//! Faults at every point of a transfer, for the copy engine, the server and the object-storage
//! backend: connection resets and truncated bodies at byte offsets spread over each request
//! kind, bursts of 5xx shorter and longer than the client's retry budget, bodies slower and
//! much slower than the client's stall timeout, and a bucket whose Nth write, read, copy or
//! multipart step fails.
//!
//! The property every run checks: the copy either returns `Ok` and the target holds the whole
//! image, tagged, every blob and manifest read back and verified against its digest; or it
//! returns an error whose message names what failed, and the target has no tag for the image
//! and nothing half-written (whatever blob or manifest is visible is complete and verifies).
//! Then the same copy without faults completes and tags.
//!
//! The matrices are generated in loops, each case named in every assertion message; the
//! fault proxy is `fault_proxy`'s.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{
    GetOptions, GetResult, ListResult, MultipartId, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};
use oci_build::{CopyOptions, CopyReport, Endpoint, ManifestRef};
use oci_registry::{RegistryClient, RetryPolicy};
use oci_server::{Listening, RegistryServer};
use oci_store::conformance::Faulty;
use oci_store::conformance::seeded_bytes;
use oci_store::{
    ErrorCode, ListParams, MemoryStore, OciInterface, OciInterfaceExt, PushManifestParams,
};
use oci_types::{Descriptor, Digest, ImageManifest, MediaType, Repository, Tag, media_type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::fault_proxy::{Fault, Proxy, Rule};
use crate::http::Client;

mod bucket;
mod registry;
mod server;

// ---- the image ----

/// An index of two platforms in a repository: blobs and manifests with their content, as a
/// copy's target must end up holding them.
#[derive(Debug, Clone)]
struct Image {
    tag: Tag,
    root: Descriptor,
    /// The two platform manifests, then the index (the root).
    manifests: Vec<(Descriptor, Bytes)>,
    /// The two configs, then the layers: shared, amd64's, arm64's.
    blobs: Vec<(Descriptor, Bytes)>,
}

impl Image {
    fn blob(&self, index: usize) -> &Descriptor {
        &self.blobs[index].0
    }

    fn manifest(&self, index: usize) -> &Descriptor {
        &self.manifests[index].0
    }
}

/// Layer sizes for the registry matrices. The shared layer is over the client's single-POST
/// limit (1 MiB), so that it goes up as POST then a streamed PUT; the others go up in one POST
/// with the body.
const REGISTRY_LAYERS: [usize; 3] = [(1 << 20) + 300 * 1024, 200 * 1024, 120 * 1024];

/// Pushes an image into `store` under `repo:v1`: a config and two layers (one shared) for each
/// of linux/amd64 and linux/arm64, and an index of the two.
async fn image(store: &dyn OciInterface, repo: &Repository, layer_sizes: [usize; 3]) -> Image {
    let layer_type = MediaType::from_static(media_type::OCI_LAYER_TAR);
    let config_type = MediaType::from_static(media_type::OCI_CONFIG);
    let manifest_type = MediaType::from_static(media_type::OCI_MANIFEST);
    let mut blobs = Vec::new();
    for arch in ["amd64", "arm64"] {
        let config = Bytes::from(format!(
            r#"{{"architecture":"{arch}","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}}}}"#
        ));
        blobs.push(config);
    }
    for (seed, size) in layer_sizes.into_iter().enumerate() {
        blobs.push(seeded_bytes(100 + seed as u64, size));
    }
    let mut pushed = Vec::new();
    for (i, content) in blobs.into_iter().enumerate() {
        let kind = if i < 2 { &config_type } else { &layer_type };
        let descriptor = store
            .push_blob_bytes(repo, kind.clone(), content.clone())
            .await
            .unwrap();
        pushed.push((descriptor, content));
    }
    let mut manifests = Vec::new();
    for (config, own_layer) in [(0, 3), (1, 4)] {
        let layers = vec![pushed[2].0.clone(), pushed[own_layer].0.clone()];
        let bytes = Bytes::from(ImageManifest::new(pushed[config].0.clone(), layers).to_json());
        let descriptor = store
            .push_manifest(
                repo,
                bytes.clone(),
                &manifest_type,
                &PushManifestParams::new(),
            )
            .await
            .unwrap();
        manifests.push((descriptor, bytes));
    }
    let entry = |(descriptor, _): &(Descriptor, Bytes), arch: &str| {
        serde_json::json!({
            "mediaType": media_type::OCI_MANIFEST,
            "digest": descriptor.digest.to_string(),
            "size": descriptor.size,
            "platform": {"architecture": arch, "os": "linux"},
        })
    };
    let index = Bytes::from(
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_INDEX,
            "manifests": [entry(&manifests[0], "amd64"), entry(&manifests[1], "arm64")],
        }))
        .unwrap(),
    );
    let tag = Tag::parse("v1").unwrap();
    let root = store
        .push_manifest(
            repo,
            index.clone(),
            &MediaType::from_static(media_type::OCI_INDEX),
            &PushManifestParams::new().with_tag(tag.clone()),
        )
        .await
        .unwrap();
    manifests.push((root.clone(), index));
    Image {
        tag,
        root,
        manifests,
        blobs: pushed,
    }
}

/// A repository of the matrices: `matrix/<name>`.
fn repo(name: &str) -> Repository {
    format!("matrix/{name}").parse().unwrap()
}

// ---- what a run must end in ----

/// An error and its sources, outermost first: what a user is shown.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Reads a blob or manifest back from `store` and checks it against its descriptor (size and
/// digest, computed here, not trusted from the store).
async fn read_back(
    case: &str,
    store: &dyn OciInterface,
    repo: &Repository,
    descriptor: &Descriptor,
    manifest: bool,
) {
    let reader = if manifest {
        store.get_manifest(repo, &descriptor.digest).await
    } else {
        store.get_blob(repo, &descriptor.digest).await
    };
    let bytes = reader
        .unwrap_or_else(|e| panic!("{case}: reading {} back: {}", descriptor.digest, chain(&e)))
        .bytes(8 << 20)
        .await
        .unwrap_or_else(|e| panic!("{case}: reading {} back: {}", descriptor.digest, chain(&e)));
    assert_eq!(
        bytes.len() as u64,
        descriptor.size,
        "{case}: {} read back has the wrong size",
        descriptor.digest
    );
    assert_eq!(
        Digest::sha256(&bytes),
        descriptor.digest,
        "{case}: {} read back does not verify",
        descriptor.digest
    );
}

/// The whole image is in `repo` of `store`, tagged, every part verified.
async fn assert_complete(case: &str, store: &dyn OciInterface, repo: &Repository, image: &Image) {
    let tagged = store
        .resolve_tag(repo, &image.tag)
        .await
        .unwrap_or_else(|e| panic!("{case}: the tag after a complete copy: {}", chain(&e)));
    assert_eq!(tagged.digest, image.root.digest, "{case}: the tag's target");
    for (descriptor, _) in &image.blobs {
        read_back(case, store, repo, descriptor, false).await;
    }
    for (descriptor, _) in &image.manifests {
        read_back(case, store, repo, descriptor, true).await;
    }
}

/// `repo` of `store` has no tag for the image, and of its blobs and manifests only complete,
/// verified ones.
async fn assert_nothing_tagged(
    case: &str,
    store: &dyn OciInterface,
    repo: &Repository,
    image: &Image,
) {
    let unknown = |error: &oci_store::Error, code: ErrorCode| matches!(error.code(), Some(c) if c == code || c == ErrorCode::NameUnknown);
    match store.resolve_tag(repo, &image.tag).await {
        Err(error) if unknown(&error, ErrorCode::ManifestUnknown) => {}
        Err(error) => panic!(
            "{case}: resolving the tag after a failed copy: {}",
            chain(&error)
        ),
        Ok(found) => panic!(
            "{case}: a failed copy left the tag {} pointing at {}",
            image.tag, found.digest
        ),
    }
    let listed: Vec<Tag> = store
        .tags(repo, &ListParams::default())
        .filter_map(|tag| async move { tag.ok() })
        .collect()
        .await;
    assert!(
        listed.is_empty(),
        "{case}: tags after a failed copy: {listed:?}"
    );
    for (descriptor, _) in &image.blobs {
        match store.resolve_blob(repo, &descriptor.digest).await {
            Ok(found) => {
                assert_eq!(found.size, descriptor.size, "{case}: {}", descriptor.digest);
                read_back(case, store, repo, descriptor, false).await;
            }
            Err(error) if unknown(&error, ErrorCode::BlobUnknown) => {}
            Err(error) => panic!("{case}: resolving {}: {}", descriptor.digest, chain(&error)),
        }
    }
    for (descriptor, _) in &image.manifests {
        match store.resolve_manifest(repo, &descriptor.digest).await {
            Ok(_) => read_back(case, store, repo, descriptor, true).await,
            Err(error) if unknown(&error, ErrorCode::ManifestUnknown) => {}
            Err(error) => panic!("{case}: resolving {}: {}", descriptor.digest, chain(&error)),
        }
    }
}

/// What a case must end in.
#[derive(Debug, Clone)]
enum Expect {
    /// The copy gets through the fault (a retry, a resumption, the copy's second attempt).
    Complete,
    /// The copy fails, with a message holding each of these.
    Fails(Vec<String>),
}

/// Checks a copy's outcome against what the case expects, then the target: complete, or
/// nothing tagged and nothing half-written.
async fn check_outcome(
    case: &str,
    outcome: &oci_build::Result<CopyReport>,
    expect: &Expect,
    view: &dyn OciInterface,
    repo: &Repository,
    image: &Image,
) {
    match (outcome, expect) {
        (Ok(report), Expect::Complete) => {
            assert_eq!(
                report.root.as_ref().map(|r| &r.digest),
                Some(&image.root.digest),
                "{case}"
            );
            assert_complete(case, view, repo, image).await;
        }
        (Err(error), Expect::Fails(needles)) => {
            let message = chain(error);
            for needle in needles {
                assert!(
                    message.contains(needle.as_str()),
                    "{case}: the error does not name {needle:?}: {message}"
                );
            }
            assert_nothing_tagged(case, view, repo, image).await;
        }
        (Ok(_), Expect::Fails(_)) => {
            // A copy that says Ok must have landed whole, whatever the case expected.
            assert_complete(case, view, repo, image).await;
            panic!("{case}: expected the copy to fail, and it completed");
        }
        (Err(error), Expect::Complete) => {
            assert_nothing_tagged(case, view, repo, image).await;
            panic!(
                "{case}: expected the copy to get through, it failed: {}",
                chain(error)
            );
        }
    }
}
