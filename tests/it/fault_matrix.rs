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
use oci_store::conformance::seeded_bytes;
use oci_store::conformance::Faulty;
use oci_store::{
    ErrorCode, ListParams, MemoryStore, OciInterface, OciInterfaceExt, PushManifestParams,
};
use oci_types::{Descriptor, Digest, ImageManifest, MediaType, Repository, Tag, media_type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::fault_proxy::{Fault, Proxy, Rule};
use crate::http::Client;

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
            .push_manifest(repo, bytes.clone(), &manifest_type, &PushManifestParams::new())
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
async fn assert_nothing_tagged(case: &str, store: &dyn OciInterface, repo: &Repository, image: &Image) {
    let unknown = |error: &oci_store::Error, code: ErrorCode| {
        matches!(error.code(), Some(c) if c == code || c == ErrorCode::NameUnknown)
    };
    match store.resolve_tag(repo, &image.tag).await {
        Err(error) if unknown(&error, ErrorCode::ManifestUnknown) => {}
        Err(error) => panic!("{case}: resolving the tag after a failed copy: {}", chain(&error)),
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
    assert!(listed.is_empty(), "{case}: tags after a failed copy: {listed:?}");
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
            // Not what the case expects; still, a copy that says Ok must have landed whole.
            assert_complete(case, view, repo, image).await;
            eprintln!("MISMATCH {case}: expected the copy to fail, and it completed");
        }
        (Err(error), Expect::Complete) => {
            assert_nothing_tagged(case, view, repo, image).await;
            eprintln!("MISMATCH {case}: expected the copy to get through, it failed: {}", chain(error));
        }
    }
}

// ---- the registry matrices ----

/// How a case's client talks to the proxy.
#[derive(Debug, Clone, Copy)]
enum ClientKind {
    /// Defaults, but short retry delays (3 attempts) and a stall timeout of 2 s.
    Plain,
    /// Blobs over 64 KiB in chunks of 64 KiB (PATCH by PATCH).
    Chunked,
    /// A stall timeout of this long.
    Stall(Duration),
}

/// The retry budget of the matrix clients: 3 attempts, short delays.
const ATTEMPTS: u32 = 3;

async fn matrix_client(proxy: &Proxy, kind: ClientKind) -> RegistryClient {
    let mut builder = RegistryClient::builder(&proxy.host())
        .with_credential_files(Vec::new())
        .with_retry(
            RetryPolicy::default()
                .with_attempts(ATTEMPTS)
                .with_base_delay(Duration::from_millis(5)),
        )
        .with_stall_timeout(Duration::from_secs(2));
    match kind {
        ClientKind::Plain => {}
        ClientKind::Chunked => {
            builder = builder
                .with_monolithic_limit(64 * 1024)
                .with_chunk_size(64 * 1024);
        }
        ClientKind::Stall(timeout) => builder = builder.with_stall_timeout(timeout),
    }
    builder.build().await.unwrap()
}

/// hoist's server over a new memory store, and a proxy in front of it.
async fn registry() -> (Listening, MemoryStore, Proxy) {
    let memory = MemoryStore::new();
    let listening = RegistryServer::new(Arc::new(memory.clone()))
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let proxy = Proxy::start(listening.local_addr()).await;
    (listening, memory, proxy)
}

/// One run of a registry matrix.
#[derive(Debug)]
struct Case {
    name: String,
    client: ClientKind,
    faults: Vec<Rule>,
    expect: Expect,
}

impl Case {
    fn new(name: impl Into<String>, faults: Vec<Rule>, expect: Expect) -> Self {
        Self {
            name: name.into(),
            client: ClientKind::Plain,
            faults,
            expect,
        }
    }

    fn client(mut self, client: ClientKind) -> Self {
        self.client = client;
        self
    }
}

fn fails(needles: &[&str]) -> Expect {
    Expect::Fails(needles.iter().map(|n| (*n).to_owned()).collect())
}

fn answer(status: u16) -> Fault {
    Fault::Answer(status, vec![])
}

fn repo(name: &str) -> Repository {
    format!("matrix/{name}").parse().unwrap()
}

/// Runs `case` with its faults on `faulty` (the proxy the copy's faulty side goes through),
/// checks the outcome, then copies again without faults and checks that it completes.
async fn run_copy_case(
    case: &Case,
    faulty: &Proxy,
    src: Endpoint<'_>,
    dst: Endpoint<'_>,
    view: &dyn OciInterface,
    image: &Image,
) {
    let name = &case.name;
    faulty.clear_faults();
    faulty.clear_log();
    let faults: usize = case.faults.len();
    for rule in &case.faults {
        faulty.add(rule.clone());
    }
    let pending = faulty.pending_faults();
    let reference = ManifestRef::Tag(image.tag.clone());
    let tags = std::slice::from_ref(&image.tag);
    let options = CopyOptions::default();
    let started = Instant::now();
    let outcome = oci_build::copy(src, &reference, dst, tags, &options).await;
    let took = started.elapsed();
    // A case proves something only if its fault was met.
    let met = pending - faulty.pending_faults();
    assert!(
        faults == 0 || met > 0,
        "{name}: the fault was never met (requests: {:?})",
        faulty
            .log()
            .iter()
            .map(|s| format!("{} {} {}", s.method, s.path(), s.status))
            .collect::<Vec<_>>()
    );
    if matches!(case.expect, Expect::Complete) {
        assert_eq!(
            faulty.pending_faults(),
            0,
            "{name}: the faults were not all met"
        );
    }
    assert!(
        took < Duration::from_secs(20),
        "{name}: the copy took {took:?}"
    );
    check_outcome(name, &outcome, &case.expect, view, dst.repo, image).await;

    // Again, without faults: it completes, whatever the first run left behind.
    faulty.clear_faults();
    let again = oci_build::copy(src, &reference, dst, tags, &options).await;
    check_outcome(
        &format!("{name}, run again without faults"),
        &again,
        &Expect::Complete,
        view,
        dst.repo,
        image,
    )
    .await;
}

/// Offsets spread over a body of `size` bytes: its start, its first byte, inside it, its last
/// byte.
fn offsets(size: u64) -> Vec<usize> {
    let size = size as usize;
    let mut offsets = vec![0, 1, size / 3, size - 1];
    if size > 100_000 {
        // Past the proxy's first buffer and the client's first read.
        offsets.insert(2, 65_537);
    }
    offsets.dedup();
    offsets
}

/// The download side: the copy reads through a proxy from hoist's server over memory into a
/// memory store. Faults on every request kind (the index by tag, a child manifest by digest,
/// a config and each layer by digest) at offsets over the whole response, head included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_from_a_registry_ends_complete_or_failed_cleanly_whatever_the_faults() {
    let (_source, memory, proxy) = registry().await;
    let src_repo = repo("source");
    let image = image(&memory, &src_repo, REGISTRY_LAYERS).await;
    let (shared, config, amd64) = (image.blob(2), image.blob(0), image.blob(3));
    let child = image.manifest(0);
    let blob_path = |d: &Descriptor| format!("/blobs/{}", d.digest);
    let child_path = format!("/manifests/{}", child.digest);
    let once = |path: &str, fault: Fault| vec![Rule::new(Some("GET"), path, 1, fault)];
    let always = |path: &str, fault: Fault| vec![Rule::new(Some("GET"), path, 100, fault)];

    let mut cases = Vec::new();
    // Cut (a clean end, fewer bytes than Content-Length) and reset at every offset of the
    // big layer: the client resumes with `Range`.
    for at in offsets(shared.size) {
        cases.push(Case::new(
            format!("layer GET truncated after {at} bytes"),
            once(&blob_path(shared), Fault::CutAfter(at)),
            Expect::Complete,
        ));
        cases.push(Case::new(
            format!("layer GET reset after {at} bytes"),
            once(&blob_path(shared), Fault::ResetAfter(at)),
            Expect::Complete,
        ));
    }
    // Inside the response head, before any byte of the body.
    for at in [0, 9, 40] {
        cases.push(Case::new(
            format!("layer GET reset {at} bytes into the response head"),
            once(&blob_path(shared), Fault::ResetInHead(at)),
            Expect::Complete,
        ));
    }
    for at in offsets(config.size) {
        cases.push(Case::new(
            format!("config GET reset after {at} bytes"),
            once(&blob_path(config), Fault::ResetAfter(at)),
            Expect::Complete,
        ));
    }
    cases.push(Case::new(
        "second layer GET truncated in the middle",
        once(&blob_path(amd64), Fault::CutAfter(amd64.size as usize / 2)),
        Expect::Complete,
    ));
    // Manifests: the index by tag, a child by digest.
    for (what, path, size) in [
        ("index", "/manifests/v1".to_owned(), image.root.size),
        ("child manifest", child_path.clone(), child.size),
    ] {
        for at in [0, size as usize / 2, size as usize - 1] {
            cases.push(Case::new(
                format!("{what} GET reset after {at} bytes"),
                once(&path, Fault::ResetAfter(at)),
                Expect::Complete,
            ));
        }
        cases.push(Case::new(
            format!("{what} GET reset in the response head"),
            once(&path, Fault::ResetInHead(20)),
            Expect::Complete,
        ));
        cases.push(Case::new(
            format!("{what} GET truncated in the middle"),
            once(&path, Fault::CutAfter(size as usize / 2)),
            Expect::Complete,
        ));
        // 5xx: a burst within the retry budget, and one longer than it.
        cases.push(Case::new(
            format!("{what} GET answered 503 {} times", ATTEMPTS - 1),
            vec![Rule::new(Some("GET"), &path, ATTEMPTS as usize - 1, answer(503))],
            Expect::Complete,
        ));
        cases.push(Case::new(
            format!("{what} GET answered 503 every time"),
            always(&path, answer(503)),
            fails(&["manifest", "503"]),
        ));
    }
    cases.push(Case::new(
        format!("layer GET answered 502 {} times", ATTEMPTS - 1),
        vec![Rule::new(
            Some("GET"),
            &blob_path(shared),
            ATTEMPTS as usize - 1,
            answer(502),
        )],
        Expect::Complete,
    ));
    cases.push(Case::new(
        "layer GET answered 503 every time",
        always(&blob_path(shared), answer(503)),
        fails(&[shared.digest.as_str(), "503"]),
    ));
    // Broken every time: the resumptions and the copy's second attempt run out.
    cases.push(Case::new(
        "layer GET reset after 1000 bytes every time",
        always(&blob_path(shared), Fault::ResetAfter(1000)),
        fails(&[shared.digest.as_str()]),
    ));
    cases.push(Case::new(
        "layer GET truncated after 1000 bytes every time",
        always(&blob_path(shared), Fault::CutAfter(1000)),
        fails(&[shared.digest.as_str()]),
    ));
    // Slow bodies: a pause shorter than the stall timeout is waited out; a stall longer than
    // it, every time, fails saying so.
    cases.push(
        Case::new(
            "layer GET pausing 100 ms in the middle",
            once(
                &blob_path(shared),
                Fault::DelayAfter(shared.size as usize / 2, Duration::from_millis(100)),
            ),
            Expect::Complete,
        )
        .client(ClientKind::Stall(Duration::from_secs(2))),
    );
    cases.push(
        Case::new(
            "layer GET stalling every time",
            always(&blob_path(shared), Fault::StallAfter(1000)),
            fails(&[shared.digest.as_str(), "no data for"]),
        )
        .client(ClientKind::Stall(Duration::from_millis(100))),
    );

    for (n, case) in cases.iter().enumerate() {
        let client = matrix_client(&proxy, case.client).await;
        let target = MemoryStore::new();
        let dst_repo = repo(&format!("target-{n}"));
        run_copy_case(
            case,
            &proxy,
            Endpoint::new(&client, &src_repo),
            Endpoint::new(&target, &dst_repo),
            &target,
            &image,
        )
        .await;
    }
}

/// The push side: the copy reads from one registry (through a faithful proxy) and pushes
/// through a faulty proxy to another hoist server over memory. Request bodies of POST, PUT
/// and PATCH uploads and manifest PUTs cut at offsets over the body, answers lost after the
/// server acted, and 5xx bursts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_to_a_registry_ends_complete_or_failed_cleanly_whatever_the_faults() {
    let (_source, memory, source_proxy) = registry().await;
    let src_repo = repo("source");
    let image = image(&memory, &src_repo, REGISTRY_LAYERS).await;
    let source = matrix_client(&source_proxy, ClientKind::Plain).await;
    let (shared, config) = (image.blob(2), image.blob(0));
    let root = &image.root;
    let child = image.manifest(1);
    let uploads = "/blobs/uploads/";
    let once = |method: &'static str, path: &str, fault: Fault| {
        vec![Rule::new(Some(method), path, 1, fault)]
    };
    let always = |method: &'static str, path: &str, fault: Fault| {
        vec![Rule::new(Some(method), path, 100, fault)]
    };
    let mut cases = Vec::new();
    // The big layer goes as POST, then PUT with the body: the PUT's body cut at every offset
    // (the client cannot send a streamed body twice; the copy's second attempt does).
    for at in offsets(shared.size) {
        cases.push(Case::new(
            format!("blob PUT reset after {at} bytes of the body"),
            once("PUT", uploads, Fault::ResetRequestAfter(at)),
            Expect::Complete,
        ));
    }
    cases.push(Case::new(
        "blob PUT answer reset in its head (the server committed)",
        once("PUT", uploads, Fault::ResetInHead(12)),
        Expect::Complete,
    ));
    cases.push(Case::new(
        "blob PUT reset in the middle every time",
        always("PUT", uploads, Fault::ResetRequestAfter(shared.size as usize / 2)),
        fails(&[shared.digest.as_str()]),
    ));
    // The small blobs go in one POST with the body.
    for at in offsets(config.size) {
        cases.push(Case::new(
            format!("single POST reset after {at} bytes of the body"),
            once("POST", uploads, Fault::ResetRequestAfter(at)),
            Expect::Complete,
        ));
    }
    cases.push(Case::new(
        "POST answer reset in its head",
        once("POST", uploads, Fault::ResetInHead(12)),
        Expect::Complete,
    ));
    cases.push(Case::new(
        format!("POST answered 503 {} times", ATTEMPTS - 1),
        vec![Rule::new(Some("POST"), uploads, ATTEMPTS as usize - 1, answer(503))],
        Expect::Complete,
    ));
    cases.push(Case::new(
        "POST answered 503 every time",
        always("POST", uploads, answer(503)),
        fails(&["blob", "503"]),
    ));
    // Chunked: a PATCH cut mid-chunk, its answer lost, a burst of 503.
    for at in [0, 30_000, 65_535] {
        cases.push(
            Case::new(
                format!("PATCH reset after {at} bytes of the chunk"),
                once("PATCH", uploads, Fault::ResetRequestAfter(at)),
                Expect::Complete,
            )
            .client(ClientKind::Chunked),
        );
    }
    cases.push(
        Case::new(
            "PATCH answer reset in its head",
            once("PATCH", uploads, Fault::ResetInHead(12)),
            Expect::Complete,
        )
        .client(ClientKind::Chunked),
    );
    cases.push(
        Case::new(
            format!("PATCH answered 503 {} times", ATTEMPTS - 1),
            vec![Rule::new(Some("PATCH"), uploads, ATTEMPTS as usize - 1, answer(503))],
            Expect::Complete,
        )
        .client(ClientKind::Chunked),
    );
    cases.push(
        Case::new(
            "PATCH reset every time",
            always("PATCH", uploads, Fault::ResetRequestAfter(30_000)),
            fails(&["blob"]),
        )
        .client(ClientKind::Chunked),
    );
    // Manifests: the tagged index and a child, cut mid-body, answers lost, 503s.
    for (what, path, size) in [
        // The tag goes with the push by digest (`?tag=v1`).
        ("index", format!("/manifests/{}", root.digest), root.size),
        ("child manifest", format!("/manifests/{}", child.digest), child.size),
    ] {
        for at in [0, size as usize / 2, size as usize - 1] {
            cases.push(Case::new(
                format!("{what} PUT reset after {at} bytes of the body"),
                once("PUT", &path, Fault::ResetRequestAfter(at)),
                Expect::Complete,
            ));
        }
        cases.push(Case::new(
            format!("{what} PUT answer reset in its head (the server stored it)"),
            once("PUT", &path, Fault::ResetInHead(12)),
            Expect::Complete,
        ));
        cases.push(Case::new(
            format!("{what} PUT answered 503 {} times", ATTEMPTS - 1),
            vec![Rule::new(Some("PUT"), &path, ATTEMPTS as usize - 1, answer(503))],
            Expect::Complete,
        ));
        cases.push(Case::new(
            format!("{what} PUT answered 503 every time"),
            always("PUT", &path, answer(503)),
            fails(&["manifest", "503"]),
        ));
        cases.push(Case::new(
            format!("{what} PUT reset in the middle every time"),
            always("PUT", &path, Fault::ResetRequestAfter(size as usize / 2)),
            fails(&["manifest"]),
        ));
    }

    for (n, case) in cases.iter().enumerate() {
        let (_target, target_memory, target_proxy) = registry().await;
        let client = matrix_client(&target_proxy, case.client).await;
        let dst_repo = repo(&format!("target-{n}"));
        run_copy_case(
            case,
            &target_proxy,
            Endpoint::new(&source, &src_repo),
            Endpoint::new(&client, &dst_repo),
            &target_memory,
            &image,
        )
        .await;
    }
}

// ---- the server under clients whose connections break ----

/// Sends `head` (without its blank line) and the first `sent` bytes of `body` to `addr` on a
/// new connection, then resets it (RST) or, when `reset` is false, ends the sending side (a
/// body shorter than its `Content-Length`) and returns whatever answer comes.
async fn broken_request(
    addr: std::net::SocketAddr,
    head: &str,
    body: &[u8],
    sent: usize,
    reset: bool,
) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{head}\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..sent]).await.unwrap();
    stream.flush().await.unwrap();
    if reset {
        stream.set_zero_linger().unwrap();
        drop(stream);
        return String::new();
    }
    stream.shutdown().await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer));
    let _ = read.await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// The blob is not visible in `memory`: not resolvable, not readable.
async fn assert_invisible(case: &str, memory: &MemoryStore, repo: &Repository, digest: &Digest) {
    let error = memory
        .resolve_blob(repo, digest)
        .await
        .expect_err("an uncommitted blob is not visible");
    assert!(
        matches!(
            error.code(),
            Some(ErrorCode::BlobUnknown | ErrorCode::NameUnknown)
        ),
        "{case}: {error}"
    );
    assert!(memory.get_blob(repo, digest).await.is_err(), "{case}");
}

/// The upload's offset as the server reports it (`GET` on the upload: `Range: 0-<last>`, an
/// empty upload being `0-0`, told apart by asking for the size a PATCH would continue from).
/// Waits, within a deadline, for the server to be done with the broken request: until then
/// the upload may still be in the hands of its handler.
async fn upload_offset(client: &Client, location: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = client.get(location).send().await;
        if status.status.as_u16() == 204 {
            let range = status.header("range").unwrap_or("0-0").to_owned();
            let last: u64 = range.split('-').nth(1).unwrap().parse().unwrap();
            // `0-0` is both "empty" and "one byte"; the uploads here are never one byte.
            return if last == 0 { 0 } else { last + 1 };
        }
        assert!(
            Instant::now() < deadline,
            "the upload status stayed {}: {}",
            status.status,
            status.text()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Starts an upload; returns its location (a path).
async fn start_upload(client: &Client, repo: &Repository) -> String {
    let started = client.post(&format!("/v2/{repo}/blobs/uploads/")).send().await;
    assert_eq!(started.status.as_u16(), 202, "{}", started.text());
    let location = started.header("location").unwrap().to_owned();
    match location.strip_prefix("http://") {
        Some(rest) => rest[rest.find('/').unwrap()..].to_owned(),
        None => location,
    }
}

fn with_query(location: &str, query: &str) -> String {
    let separator = if location.contains('?') { '&' } else { '?' };
    format!("{location}{separator}{query}")
}

/// Uploads whose connection breaks mid-body, reset or ended early: a monolithic PUT and a
/// PATCH chunk at offsets over the body. Nothing is visible before a complete commit; the
/// upload is then restarted (the PUT: what arrived went to the store, not the upload) or
/// resumed from the offset the server reports (the PATCH keeps what arrived), and the commit
/// makes the blob visible, verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_broken_mid_body_is_invisible_until_a_complete_commit() {
    let memory = MemoryStore::new();
    let listening = RegistryServer::new(Arc::new(memory.clone()))
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listening.local_addr();
    let client = Client::new(&format!("http://{addr}"));
    let content = seeded_bytes(300, 300 * 1024);
    let digest = Digest::sha256(&content);
    for (n, sent) in [0, 1, 65_537, content.len() / 2, content.len() - 1]
        .into_iter()
        .enumerate()
    {
        for reset in [true, false] {
            let how = if reset { "reset" } else { "ended" };
            let repo = repo(&format!("server-{n}-{how}"));

            // A monolithic PUT.
            let case = format!("PUT {how} after {sent} bytes");
            let location = start_upload(&client, &repo).await;
            let target = with_query(&location, &format!("digest={digest}"));
            let answer = broken_request(
                addr,
                &format!("PUT {target} HTTP/1.1\r\nContent-Type: application/octet-stream"),
                &content,
                sent,
                reset,
            )
            .await;
            assert!(
                !answer.starts_with("HTTP/1.1 2"),
                "{case}: a body cut short was accepted: {answer}"
            );
            assert_eq!(upload_offset(&client, &location).await, 0, "{case}");
            assert_invisible(&case, &memory, &repo, &digest).await;
            let done = client
                .put(&target)
                .header("content-type", "application/octet-stream")
                .body(content.clone())
                .send()
                .await;
            assert_eq!(done.status.as_u16(), 201, "{case}: {}", done.text());
            read_back(&case, &memory, &repo, &Descriptor::new(octet(), digest.clone(), content.len() as u64), false).await;

            // A PATCH chunk (the whole blob as one chunk), then resumed where the server is.
            let case = format!("PATCH {how} after {sent} bytes");
            let repo = self::repo(&format!("server-{n}-{how}-chunked"));
            let location = start_upload(&client, &repo).await;
            let answer = broken_request(
                addr,
                &format!(
                    "PATCH {location} HTTP/1.1\r\nContent-Type: application/octet-stream\r\n\
                     Content-Range: 0-{}",
                    content.len() - 1
                ),
                &content,
                sent,
                reset,
            )
            .await;
            assert!(
                !answer.starts_with("HTTP/1.1 2"),
                "{case}: a chunk cut short was accepted: {answer}"
            );
            let offset = upload_offset(&client, &location).await;
            assert!(offset <= sent as u64, "{case}: the server has {offset} bytes of {sent} sent");
            assert_invisible(&case, &memory, &repo, &digest).await;
            let patch_from = |offset: u64| {
                client
                    .patch(&location)
                    .header("content-type", "application/octet-stream")
                    .header("content-range", &format!("{offset}-{}", content.len() - 1))
                    .body(content.slice(offset as usize..))
                    .send()
            };
            let mut patched = patch_from(offset).await;
            if offset == 0 && patched.status.as_u16() == 416 {
                // `0-0` is also one byte: the server refused 0, so it has the first byte.
                assert!(sent >= 1, "{case}: refused at 0 with nothing sent");
                patched = patch_from(1).await;
            }
            assert_eq!(patched.status.as_u16(), 202, "{case}: {}", patched.text());
            // All the bytes are there, not committed: still nothing to see.
            assert_invisible(&case, &memory, &repo, &digest).await;
            let done = client
                .put(&with_query(&location, &format!("digest={digest}")))
                .send()
                .await;
            assert_eq!(done.status.as_u16(), 201, "{case}: {}", done.text());
            read_back(&case, &memory, &repo, &Descriptor::new(octet(), digest.clone(), content.len() as u64), false).await;
        }
    }
}

fn octet() -> MediaType {
    MediaType::from_static(media_type::OCTET_STREAM)
}

/// A manifest PUT whose body breaks off (reset, or ended early) at offsets over the body
/// leaves no tag and no manifest, even a while later; the complete PUT then tags it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_put_broken_mid_body_leaves_no_tag() {
    let memory = MemoryStore::new();
    let listening = RegistryServer::new(Arc::new(memory.clone()))
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listening.local_addr();
    let client = Client::new(&format!("http://{addr}"));
    let source = image(&memory, &repo("server-manifest-source"), [3000, 2000, 1000]).await;
    let repo = repo("server-manifest");
    let (manifest, bytes) = source.manifests[0].clone();
    for (descriptor, content) in &source.blobs {
        memory
            .push_blob_bytes(&repo, descriptor.media_type.clone(), content.clone())
            .await
            .unwrap();
    }
    let tag = Tag::parse("v1").unwrap();
    for sent in [0, 1, bytes.len() / 2, bytes.len() - 1] {
        for reset in [true, false] {
            let case = format!(
                "manifest PUT {} after {sent} bytes",
                if reset { "reset" } else { "ended" }
            );
            let answer = broken_request(
                addr,
                &format!(
                    "PUT /v2/{repo}/manifests/{tag} HTTP/1.1\r\nContent-Type: {}",
                    media_type::OCI_MANIFEST
                ),
                &bytes,
                sent,
                reset,
            )
            .await;
            assert!(
                !answer.starts_with("HTTP/1.1 2"),
                "{case}: a manifest cut short was accepted: {answer}"
            );
            // The server may still be reading the broken request: look a few times over a
            // short while, never finding the tag.
            for _ in 0..10 {
                let error = memory.resolve_tag(&repo, &tag).await.expect_err(&case);
                assert_eq!(error.code(), Some(ErrorCode::ManifestUnknown), "{case}: {error}");
                let error = memory
                    .resolve_manifest(&repo, &manifest.digest)
                    .await
                    .expect_err(&case);
                assert_eq!(error.code(), Some(ErrorCode::ManifestUnknown), "{case}: {error}");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    let put = client
        .put(&format!("/v2/{repo}/manifests/{tag}"))
        .header("content-type", media_type::OCI_MANIFEST)
        .body(bytes)
        .send()
        .await;
    assert_eq!(put.status.as_u16(), 201, "{}", put.text());
    assert_eq!(memory.resolve_tag(&repo, &tag).await.unwrap().digest, manifest.digest);
}

// ---- the object-storage backend ----

/// A fault of a [`FlakyBucket`]: its `nth` call of `op` fails, and with `persistent` every one
/// after it too.
#[derive(Debug, Clone, Copy)]
struct BucketFault {
    op: &'static str,
    nth: usize,
    persistent: bool,
}

/// An in-memory bucket whose operations fail on purpose ([`BucketFault`]); it counts its calls
/// by operation (`put`, `get`, `head`, `copy`, `delete`, `list`, the streaming multipart
/// writer's `writer_create`, `writer_part`, `writer_complete`, and the multipart API's
/// `create_multipart`, `put_part`, `complete_multipart`, `abort_multipart`).
#[derive(Debug, Default)]
struct FlakyBucket {
    inner: InMemory,
    /// Shared with the streaming writers it hands out.
    state: Arc<Mutex<FlakyState>>,
}

#[derive(Debug, Default)]
struct FlakyState {
    calls: BTreeMap<&'static str, usize>,
    fault: Option<BucketFault>,
}

/// What the failures say, to find them in a copy's error.
const ON_PURPOSE: &str = "failed on purpose";

/// Counts a call of `op`; fails it if the fault says so.
fn enter(state: &Mutex<FlakyState>, op: &'static str) -> object_store::Result<()> {
    let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
    let count = {
            let count = state.calls.entry(op).or_default();
            *count += 1;
            *count
        };
        match state.fault {
            Some(fault)
                if fault.op == op
                    && (count == fault.nth || (fault.persistent && count > fault.nth)) =>
            {
                Err(object_store::Error::Generic {
                    store: "FlakyBucket",
                    source: format!("{op} #{count} {ON_PURPOSE}").into(),
                })
            }
            _ => Ok(()),
        }
}

impl FlakyBucket {
    fn state(&self) -> std::sync::MutexGuard<'_, FlakyState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn enter(&self, op: &'static str) -> object_store::Result<()> {
        enter(&self.state, op)
    }

    /// Sets the fault (none: a faithful bucket) and counts from zero again.
    fn arm(&self, fault: Option<BucketFault>) {
        let mut state = self.state();
        state.calls.clear();
        state.fault = fault;
    }

    fn calls(&self) -> BTreeMap<&'static str, usize> {
        self.state().calls.clone()
    }
}

impl fmt::Display for FlakyBucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FlakyBucket({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FlakyBucket {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.enter("put")?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.enter("writer_create")?;
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(FlakyWriter {
            inner,
            state: Arc::clone(&self.state),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.enter(if options.head { "head" } else { "get" })?;
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        match self.enter("delete") {
            Ok(()) => self.inner.delete_stream(locations),
            Err(error) => futures::stream::once(async move { Err(error) }).boxed(),
        }
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        match self.enter("list") {
            Ok(()) => self.inner.list(prefix),
            Err(error) => futures::stream::once(async move { Err(error) }).boxed(),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.enter("list")?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.enter("copy")?;
        self.inner.copy_opts(from, to, options).await
    }
}

#[async_trait]
impl MultipartStore for FlakyBucket {
    async fn create_multipart(&self, path: &Path) -> object_store::Result<MultipartId> {
        self.enter("create_multipart")?;
        self.inner.create_multipart(path).await
    }

    async fn put_part(
        &self,
        path: &Path,
        id: &MultipartId,
        part_idx: usize,
        data: PutPayload,
    ) -> object_store::Result<PartId> {
        self.enter("put_part")?;
        self.inner.put_part(path, id, part_idx, data).await
    }

    async fn complete_multipart(
        &self,
        path: &Path,
        id: &MultipartId,
        parts: Vec<PartId>,
    ) -> object_store::Result<PutResult> {
        self.enter("complete_multipart")?;
        self.inner.complete_multipart(path, id, parts).await
    }

    async fn abort_multipart(&self, path: &Path, id: &MultipartId) -> object_store::Result<()> {
        self.enter("abort_multipart")?;
        self.inner.abort_multipart(path, id).await
    }
}

/// The streaming multipart writer of a [`FlakyBucket`], failing as its fault says.
#[derive(Debug)]
struct FlakyWriter {
    inner: Box<dyn MultipartUpload>,
    state: Arc<Mutex<FlakyState>>,
}

#[async_trait]
impl MultipartUpload for FlakyWriter {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        match enter(&self.state, "writer_part") {
            Ok(()) => self.inner.put_part(data),
            Err(error) => Box::pin(async move { Err(error) }),
        }
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        enter(&self.state, "writer_complete")?;
        self.inner.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        enter(&self.state, "writer_abort")?;
        self.inner.abort().await
    }
}

/// Layer sizes for the bucket matrix: small, so that every failure point of a run can be a
/// case, but over the part size, so that uploads go in several parts.
const BUCKET_LAYERS: [usize; 3] = [20_000, 9_000, 5_000];

/// The part size of the bucket stores here: a 20 kB layer goes up in five parts.
const PART_SIZE: usize = 4096;

/// A bucket store over a new [`FlakyBucket`]: with the bucket's multipart API, or keeping an
/// upload's parts as objects of their own.
fn bucket_store(multipart: bool) -> (Arc<FlakyBucket>, oci_bucket::BucketStore) {
    let bucket = Arc::new(FlakyBucket::default());
    let store = if multipart {
        oci_bucket::BucketStore::with_multipart(Arc::clone(&bucket))
    } else {
        oci_bucket::BucketStore::new(Arc::clone(&bucket) as Arc<dyn ObjectStore>)
    };
    (bucket, store.with_part_size(PART_SIZE))
}

/// How many of the image's blobs `store` has (complete: [`assert_nothing_tagged`] or
/// [`assert_complete`] checked them).
async fn blobs_present(store: &dyn OciInterface, repo: &Repository, image: &Image) -> usize {
    let mut present = 0;
    for (descriptor, _) in &image.blobs {
        if store.resolve_blob(repo, &descriptor.digest).await.is_ok() {
            present += 1;
        }
    }
    present
}

/// `oci_build::copy` from memory into a bucket store whose bucket fails at each of its
/// operations in turn: the Nth call of each kind (put, get, head, copy, delete, list, each
/// step of a multipart upload) that a faithful run makes, once, then from the Nth on. Each run
/// ends complete or failed with the bucket's error and no tag; the run again without faults
/// completes, reading from the source only the blobs the target still lacks.
#[tokio::test]
async fn a_copy_into_a_bucket_ends_complete_or_failed_cleanly_at_every_failure_point() {
    let source = Faulty::new(MemoryStore::new());
    let src_repo = repo("source");
    let image = image(&source, &src_repo, BUCKET_LAYERS).await;
    let dst_repo = repo("target");
    let reference = ManifestRef::Tag(image.tag.clone());
    let tags = std::slice::from_ref(&image.tag);
    // One blob at a time, so that the Nth call of an operation is the same one in every run.
    let options = CopyOptions::default().with_jobs(1);
    let copy = |store: &oci_bucket::BucketStore| {
        let store = store.clone();
        let (reference, options, src_repo, dst_repo) =
            (reference.clone(), options.clone(), src_repo.clone(), dst_repo.clone());
        let source = source.clone();
        async move {
            oci_build::copy(
                Endpoint::new(&source, &src_repo),
                &reference,
                Endpoint::new(&store, &dst_repo),
                tags,
                &options,
            )
            .await
        }
    };
    let mut failed = 0;
    let mut runs = 0;
    for multipart in [true, false] {
        let backend = if multipart {
            "multipart uploads"
        } else {
            "parts as objects"
        };
        // A faithful run, to learn the failure points.
        let (bucket, store) = bucket_store(multipart);
        let clean = copy(&store).await;
        // Counted before the check, whose reads are not part of the copy.
        let points = bucket.calls();
        check_outcome(backend, &clean, &Expect::Complete, &store, &dst_repo, &image).await;
        assert!(
            points.get("writer_part").is_some_and(|&n| n >= 5),
            "{backend}: the uploads did not go in parts: {points:?}"
        );
        for (&op, &count) in &points {
            for nth in 1..=count {
                for persistent in [false, true] {
                    let case = format!(
                        "{backend}: {op} #{nth} of {count} fails{}",
                        if persistent { ", and every one after" } else { "" }
                    );
                    let (bucket, store) = bucket_store(multipart);
                    bucket.arm(Some(BucketFault {
                        op,
                        nth,
                        persistent,
                    }));
                    let outcome = copy(&store).await;
                    let calls = bucket.calls();
                    bucket.arm(None);
                    assert!(
                        calls.get(op).is_some_and(|&n| n >= nth),
                        "{case}: the failure point was never reached: {calls:?}"
                    );
                    runs += 1;
                    match &outcome {
                        Ok(_) => {
                            check_outcome(&case, &outcome, &Expect::Complete, &store, &dst_repo, &image)
                                .await;
                        }
                        Err(_) => {
                            failed += 1;
                            let expect = Expect::Fails(vec![ON_PURPOSE.to_owned()]);
                            check_outcome(&case, &outcome, &expect, &store, &dst_repo, &image).await;
                        }
                    }
                    // Again, without faults: it completes, and reads from the source only
                    // what the target lacks.
                    let missing = image.blobs.len() - blobs_present(&store, &dst_repo, &image).await;
                    let reads = source.calls("get_blob");
                    let again = copy(&store).await;
                    check_outcome(
                        &format!("{case}, run again without faults"),
                        &again,
                        &Expect::Complete,
                        &store,
                        &dst_repo,
                        &image,
                    )
                    .await;
                    assert_eq!(
                        source.calls("get_blob") - reads,
                        missing as u64,
                        "{case}: the run again read more than the missing blobs"
                    );
                }
            }
        }
    }
    // The matrix proves something only if faults made copies fail, as well as pass.
    assert!(
        failed > 0 && failed < runs,
        "{failed} of {runs} runs failed"
    );
}
