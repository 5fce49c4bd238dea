//! The copy engine from and to a registry, through the fault proxy.

use super::*;

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
            vec![Rule::new(
                Some("GET"),
                &path,
                ATTEMPTS as usize - 1,
                answer(503),
            )],
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
        always(
            "PUT",
            uploads,
            Fault::ResetRequestAfter(shared.size as usize / 2),
        ),
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
        vec![Rule::new(
            Some("POST"),
            uploads,
            ATTEMPTS as usize - 1,
            answer(503),
        )],
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
            vec![Rule::new(
                Some("PATCH"),
                uploads,
                ATTEMPTS as usize - 1,
                answer(503),
            )],
            Expect::Complete,
        )
        .client(ClientKind::Chunked),
    );
    // Every PATCH cut after 30 000 bytes: the server keeps what arrived, so each resumption
    // gets further and the 64 KiB chunks go up in three tries each.
    cases.push(
        Case::new(
            "PATCH reset after 30000 bytes every time",
            always("PATCH", uploads, Fault::ResetRequestAfter(30_000)),
            Expect::Complete,
        )
        .client(ClientKind::Chunked),
    );
    // Every PATCH cut before any byte of it: no try gets further, the copy gives up.
    cases.push(
        Case::new(
            "PATCH reset before its body every time",
            always("PATCH", uploads, Fault::ResetRequestAfter(0)),
            fails(&["blob"]),
        )
        .client(ClientKind::Chunked),
    );
    // Manifests: the tagged index and a child, cut mid-body, answers lost, 503s.
    for (what, path, size) in [
        // The tagged index is pushed by its one tag.
        ("index", "/manifests/v1".to_owned(), root.size),
        (
            "child manifest",
            format!("/manifests/{}", child.digest),
            child.size,
        ),
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
            vec![Rule::new(
                Some("PUT"),
                &path,
                ATTEMPTS as usize - 1,
                answer(503),
            )],
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

/// The push side from a layout: the big layer lies in a file, so the client sends it to the
/// plain-HTTP server by `sendfile` (the precondition is checked), and the faults meet that
/// sending: the PUT's body cut at every offset, its answer lost, a refusal (413) before the
/// body is read, a corrupted byte, and a server that stops reading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_from_a_layout_sends_files_and_ends_complete_or_failed_cleanly_whatever_the_faults()
{
    let dir = tempfile::tempdir().unwrap();
    let layout = oci_layout::LayoutStore::open(dir.path()).await.unwrap();
    let src_repo = repo("source");
    let image = image(&layout, &src_repo, REGISTRY_LAYERS).await;
    let shared = image.blob(2);
    let read = layout.get_blob(&src_repo, &shared.digest).await.unwrap();
    assert!(
        read.into_stream_for_push().file_span().is_some(),
        "the layout's read of the big layer carries its file"
    );
    let uploads = "/blobs/uploads/";
    let once = |fault: Fault| vec![Rule::new(Some("PUT"), uploads, 1, fault)];
    let always = |fault: Fault| vec![Rule::new(Some("PUT"), uploads, 100, fault)];
    let mut cases = Vec::new();
    for at in offsets(shared.size) {
        cases.push(Case::new(
            format!("file PUT reset after {at} bytes of the body"),
            once(Fault::ResetRequestAfter(at)),
            Expect::Complete,
        ));
    }
    cases.push(Case::new(
        "file PUT answer reset in its head (the server committed)",
        once(Fault::ResetInHead(12)),
        Expect::Complete,
    ));
    // The client sends the layer in chunks on the copy's second attempt.
    cases.push(Case::new(
        "file PUT refused with 413 before its body",
        once(answer(413)),
        Expect::Complete,
    ));
    cases.push(Case::new(
        "file PUT reset in the middle every time",
        always(Fault::ResetRequestAfter(shared.size as usize / 2)),
        fails(&[shared.digest.as_str()]),
    ));
    // The server checks what it gets: a byte changed on the way is refused, not stored.
    cases.push(Case::new(
        "file PUT with a byte of its body corrupted",
        once(Fault::CorruptRequest(65_537)),
        fails(&[shared.digest.as_str(), "DIGEST_INVALID"]),
    ));
    cases.push(
        Case::new(
            "file PUT no longer read after 65537 bytes, every time",
            always(Fault::StallRequestAfter(65_537)),
            fails(&[shared.digest.as_str(), "no answer"]),
        )
        .client(ClientKind::Stall(Duration::from_millis(300))),
    );
    for (n, case) in cases.iter().enumerate() {
        let (_target, target_memory, target_proxy) = registry().await;
        let client = matrix_client(&target_proxy, case.client).await;
        let dst_repo = repo(&format!("target-{n}"));
        run_copy_case(
            case,
            &target_proxy,
            Endpoint::new(&layout, &src_repo),
            Endpoint::new(&client, &dst_repo),
            &target_memory,
            &image,
        )
        .await;
    }
}
