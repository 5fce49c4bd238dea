//! Two replicas of `hoist serve --storage s3://...` on one moto bucket, behind a round-robin
//! TCP proxy started here: every new connection lands on the next replica (or on the other,
//! when one is down), so a client that opens a connection per request alternates between
//! them. The conformance suite through the registry client and the pair, an upload started
//! on one replica and finished on the other, concurrent tag pushes on both, a replica killed
//! part way through an upload, and skopeo through the pair.
//!
//! Locally these skip when moto is not installed; on CI (`CI=true`) that is a failure.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use oci_layout::LayoutStore;
use oci_registry::{RegistryClient, RetryPolicy};
use oci_store::conformance::{Fixture, seeded_bytes};
use oci_types::Digest;
use serde_json::{Value, json};

use crate::bucket_interop::{Moto, moto_server, shared_moto};
use crate::http::{Client, Response};
use crate::server_interop::{layout_image, layout_index, layout_tag_digest, oci_ref, skopeo};
use crate::support::{free_addr, hoist_binary, peer};

/// One `hoist serve --storage URL` on moto, killed on drop (and, when `watched`, also when
/// this test process ends, for replicas kept in a static).
pub(crate) struct Replica {
    child: Child,
    pub(crate) addr: SocketAddr,
    log: tempfile::NamedTempFile,
}

impl Replica {
    pub(crate) fn start(moto: &Moto, url: &str, extra: &[&str], watched: bool) -> Self {
        let addr = free_addr();
        let log = tempfile::NamedTempFile::new().unwrap();
        let hoist = hoist_binary();
        let mut command = if watched {
            let mut shell = Command::new("bash");
            shell
                .args([
                    "-c",
                    r#""$@" & child=$!
                       while kill -0 "$WATCHED" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 1; done
                       kill "$child" 2>/dev/null"#,
                    "watch-hoist",
                ])
                .arg(&hoist)
                .env("WATCHED", std::process::id().to_string());
            shell
        } else {
            Command::new(&hoist)
        };
        let child = command
            .args(["serve", "--storage", url, "--addr", &addr.to_string()])
            .args(extra)
            .envs(moto.env())
            .env_remove("AWS_CA_BUNDLE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        let mut replica = Self { child, addr, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !(replica.stderr().contains("hoist: serving")
            && std::net::TcpStream::connect(addr).is_ok())
        {
            if let Some(status) = replica.child.try_wait().unwrap() {
                panic!("hoist serve exited ({status}):\n{}", replica.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "hoist serve did not start:\n{}",
                replica.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        replica
    }

    pub(crate) fn stderr(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// SIGKILL: nothing of the process gets to run, as when a machine is lost.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A round-robin TCP forwarder on loopback: each accepted connection goes to the next
/// backend, or to the one after when that refuses. It runs on a thread of its own (a test's
/// runtime ends with the test) and stops when dropped.
pub(crate) struct Proxy {
    pub(crate) addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    pub(crate) fn start(backends: Vec<SocketAddr>) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let next = Arc::new(AtomicUsize::new(0));
                let backends = Arc::new(backends);
                let accept = async {
                    loop {
                        let Ok((client, _)) = listener.accept().await else {
                            continue;
                        };
                        let first = next.fetch_add(1, Ordering::Relaxed);
                        let backends = Arc::clone(&backends);
                        tokio::spawn(async move {
                            forward(client, &backends, first).await;
                        });
                    }
                };
                tokio::select! {
                    () = accept => {}
                    _ = stopped => {}
                }
            });
        });
        Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn forward(mut client: tokio::net::TcpStream, backends: &[SocketAddr], first: usize) {
    for i in 0..backends.len() {
        let backend = backends[(first + i) % backends.len()];
        let connect = tokio::net::TcpStream::connect(backend);
        if let Ok(Ok(mut server)) = tokio::time::timeout(Duration::from_secs(2), connect).await {
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            return;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Two replicas on one bucket prefix and the proxy in front of them.
pub(crate) struct Pair {
    pub(crate) replicas: [Replica; 2],
    pub(crate) proxy: Proxy,
}

impl Pair {
    pub(crate) fn start(moto: &Moto, url: &str, extra: &[&str], watched: bool) -> Self {
        let replicas = [
            Replica::start(moto, url, extra, watched),
            Replica::start(moto, url, extra, watched),
        ];
        let proxy = Proxy::start(replicas.iter().map(|r| r.addr).collect());
        Self { replicas, proxy }
    }
}

static PREFIX: AtomicU64 = AtomicU64::new(0);

/// A fresh prefix of the shared moto's `replicas` bucket.
fn fresh_url(moto: &Moto) -> String {
    static BUCKET: OnceLock<()> = OnceLock::new();
    BUCKET.get_or_init(|| moto.bucket("replicas"));
    let n = PREFIX.fetch_add(1, Ordering::Relaxed);
    format!("s3://replicas/run-{}-{n}", std::process::id())
}

/// One pair for the conformance checks (starting one per check would double the time); each
/// check uses repositories of its own.
fn shared_pair() -> Option<&'static Pair> {
    static PAIR: OnceLock<Option<Pair>> = OnceLock::new();
    PAIR.get_or_init(|| {
        let moto = shared_moto()?;
        Some(Pair::start(moto, &fresh_url(moto), &[], true))
    })
    .as_ref()
}

async fn through_the_pair() -> Option<Fixture> {
    let pair = shared_pair()?;
    let client = RegistryClient::builder(&pair.proxy.addr.to_string())
        .with_credential_files(Vec::new())
        .with_retry(RetryPolicy::default().with_attempts(2))
        .build()
        .await
        .unwrap();
    Some(Fixture::new(client))
}

/// The conformance suite through the registry client, the proxy and both replicas.
mod conformance_through_two_replicas {
    oci_store::conformance_tests!(optional super::through_the_pair);
}

// ---- raw HTTP helpers (one connection per request, so the proxy alternates) ----

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn expect(response: &Response, status: u16, what: &str) {
    assert_eq!(
        response.status.as_u16(),
        status,
        "{what}: {}",
        response.text()
    );
}

/// The path and query of a `Location`, absolute or not.
fn path_of(location: &str) -> String {
    match location.strip_prefix("http://") {
        Some(rest) => rest[rest.find('/').unwrap_or(rest.len())..].to_owned(),
        None => location.to_owned(),
    }
}

fn location(response: &Response) -> String {
    path_of(response.headers["location"].to_str().unwrap())
}

fn with_digest(location: &str, digest: &Digest) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}

async fn push_blob(c: &Client, repo: &str, data: &Bytes) -> Digest {
    let digest = Digest::sha256(data);
    let started = c.post(&format!("/v2/{repo}/blobs/uploads/")).send().await;
    expect(&started, 202, "POST upload");
    let done = c
        .put(&with_digest(&location(&started), &digest))
        .header("content-type", "application/octet-stream")
        .body(data.clone())
        .send()
        .await;
    expect(&done, 201, "PUT blob");
    digest
}

fn image(config: &Bytes, layer: &Bytes, note: &str) -> Bytes {
    let descriptor = |media_type: &str, data: &Bytes| {
        let digest = Digest::sha256(data).to_string();
        json!({"mediaType": media_type, "digest": digest, "size": data.len()})
    };
    Bytes::from(
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": descriptor("application/vnd.oci.image.config.v1+json", config),
            "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", layer)],
            "annotations": {"note": note},
        }))
        .unwrap(),
    )
}

async fn put_manifest(c: &Client, repo: &str, reference: &str, manifest: &Bytes) {
    let response = c
        .put(&format!("/v2/{repo}/manifests/{reference}"))
        .header("content-type", MANIFEST)
        .body(manifest.clone())
        .send()
        .await;
    expect(&response, 201, &format!("PUT manifest {reference}"));
}

async fn expect_blob(c: &Client, repo: &str, data: &Bytes, what: &str) {
    let digest = Digest::sha256(data);
    let response = c.get(&format!("/v2/{repo}/blobs/{digest}")).send().await;
    expect(&response, 200, what);
    assert!(response.body == *data, "{what}: the content differs");
}

async fn tags_of(c: &Client, repo: &str) -> Vec<String> {
    let response = c.get(&format!("/v2/{repo}/tags/list?n=1000")).send().await;
    expect(&response, 200, "GET tags");
    let listed: Value = response.json();
    let mut tags: Vec<String> = listed["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    tags.sort();
    tags
}

/// The size an upload has reached, from `Range: 0-N` of its status.
async fn upload_size(c: &Client, location: &str) -> usize {
    let status = c.get(location).send().await;
    expect(&status, 204, "GET upload status");
    let range = status.headers["range"].to_str().unwrap();
    let end: usize = range.rsplit('-').next().unwrap().parse().unwrap();
    end + 1
}

async fn patch(c: &Client, location: &str, data: Bytes, start: usize) -> String {
    let end = start + data.len() - 1;
    let response = c
        .patch(location)
        .header("content-type", "application/octet-stream")
        .header("content-range", &format!("{start}-{end}"))
        .body(data)
        .send()
        .await;
    expect(&response, 202, &format!("PATCH {start}-{end}"));
    location_of_upload(&response)
}

fn location_of_upload(response: &Response) -> String {
    location(response)
}

fn moto_alone() -> Option<&'static Moto> {
    moto_server()?;
    shared_moto()
}

// ---- the workflows ----

/// Push an image, pull it and list tags through the proxy, then an upload that alternates
/// between the replicas chunk after chunk (6 MiB chunks with 8 MiB parts: tails handed over
/// and a part completed by the replica that did not start it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_two_replicas_push_pull_and_hand_an_upload_over() {
    let Some(moto) = moto_alone() else { return };
    let pair = Pair::start(moto, &fresh_url(moto), &[], false);
    let proxied = Client::new(&pair.proxy.url());
    let [a, b] = [0, 1].map(|i| Client::new(&format!("http://{}", pair.replicas[i].addr)));
    let repo = "team/app";
    let config = Bytes::from_static(b"{\"architecture\":\"amd64\",\"os\":\"linux\"}");
    let layer = seeded_bytes(1, 300_000);
    push_blob(&proxied, repo, &config).await;
    push_blob(&proxied, repo, &layer).await;
    let manifest = image(&config, &layer, "one");
    put_manifest(&proxied, repo, "v1", &manifest).await;
    for (client, who) in [(&a, "replica a"), (&b, "replica b"), (&proxied, "proxy")] {
        let got = client.get(&format!("/v2/{repo}/manifests/v1")).send().await;
        expect(&got, 200, who);
        assert!(got.body == manifest, "{who}: the manifest differs");
        expect_blob(client, repo, &layer, who).await;
        assert_eq!(tags_of(client, repo).await, ["v1"], "{who}");
    }

    let content = seeded_bytes(2, 19 * 1024 * 1024 + 3);
    let mib = 1024 * 1024;
    let started = a.post(&format!("/v2/{repo}/blobs/uploads/")).send().await;
    expect(&started, 202, "POST on a");
    let mut at = location(&started);
    let pieces = [(0, 6 * mib), (6 * mib, 12 * mib), (12 * mib, 18 * mib)];
    for (i, (start, end)) in pieces.into_iter().enumerate() {
        let client = if i % 2 == 0 { &b } else { &a };
        at = patch(client, &at, content.slice(start..end), start).await;
    }
    assert_eq!(upload_size(&a, &at).await, 18 * mib, "status on a");
    assert_eq!(upload_size(&b, &at).await, 18 * mib, "status on b");
    let digest = Digest::sha256(&content);
    let done = b
        .put(&with_digest(&at, &digest))
        .header("content-type", "application/octet-stream")
        .body(content.slice(18 * mib..))
        .send()
        .await;
    expect(&done, 201, "closing PUT on b");
    for (client, who) in [(&a, "replica a"), (&b, "replica b")] {
        expect_blob(client, repo, &content, who).await;
    }
}

/// 20 tags pushed through each replica at once, each tag a manifest of its own: all 40 are
/// listed afterwards, by either replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_two_replicas_tagging_at_once_lose_no_tag() {
    let Some(moto) = moto_alone() else { return };
    let pair = Pair::start(moto, &fresh_url(moto), &[], false);
    let replicas = [0, 1].map(|i| Client::new(&format!("http://{}", pair.replicas[i].addr)));
    let repo = "team/tags";
    let config = Bytes::from_static(b"{}");
    let layer = seeded_bytes(3, 1000);
    push_blob(&replicas[0], repo, &config).await;
    push_blob(&replicas[0], repo, &layer).await;
    let mut pushes = Vec::new();
    for (r, client) in replicas.iter().enumerate() {
        for i in 0..20 {
            let (client, config, layer) = (client.clone(), config.clone(), layer.clone());
            pushes.push(tokio::spawn(async move {
                let tag = format!("r{r}-{i:02}");
                put_manifest(&client, repo, &tag, &image(&config, &layer, &tag)).await;
            }));
        }
    }
    for push in pushes {
        push.await.unwrap();
    }
    let mut expected: Vec<String> = (0..2)
        .flat_map(|r| (0..20).map(move |i| format!("r{r}-{i:02}")))
        .collect();
    expected.sort();
    for client in &replicas {
        assert_eq!(tags_of(client, repo).await, expected);
    }
}

/// A replica killed (SIGKILL) while a chunk streams into it: the upload goes on through the
/// proxy on the other from what the first had recorded, and the blob is whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_a_replica_killed_mid_upload_and_the_other_finishes_it() {
    let Some(moto) = moto_alone() else { return };
    let mut pair = Pair::start(moto, &fresh_url(moto), &[], false);
    let a = Client::new(&format!("http://{}", pair.replicas[0].addr));
    let proxied = Client::new(&pair.proxy.url());
    let repo = "team/killed";
    let mib = 1024 * 1024;
    let content = seeded_bytes(4, 30 * mib);
    let started = a.post(&format!("/v2/{repo}/blobs/uploads/")).send().await;
    expect(&started, 202, "POST on a");
    // 10 MiB recorded on a: one 8 MiB part and a 2 MiB tail.
    let at = patch(&a, &location(&started), content.slice(..10 * mib), 0).await;
    // Then a chunk that streams slowly (16 KiB frames, a pause before each: over a second in all) while a dies.
    let streaming = {
        let (a, at) = (a.clone(), at.clone());
        let slow: Vec<Bytes> = content
            .slice(10 * mib..26 * mib)
            .chunks(16 * 1024)
            .map(Bytes::copy_from_slice)
            .collect();
        tokio::spawn(async move {
            a.patch(&at)
                .header("content-type", "application/octet-stream")
                .chunks(slow)
                .try_send()
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    pair.replicas[0].kill();
    let cut = streaming.await.unwrap();
    assert!(
        cut.as_ref().map_or(true, |r| !r.status.is_success()),
        "the chunk streaming into the killed replica succeeded: {cut:?}"
    );
    // Through the proxy (only b answers now): the upload is where a last recorded it.
    let size = upload_size(&proxied, &at).await;
    assert_eq!(size, 10 * mib, "the recorded size after the kill");
    let at = patch(&proxied, &at, content.slice(size..28 * mib), size).await;
    let digest = Digest::sha256(&content);
    let done = proxied
        .put(&with_digest(&at, &digest))
        .header("content-type", "application/octet-stream")
        .body(content.slice(28 * mib..))
        .send()
        .await;
    expect(&done, 201, "closing PUT through the proxy");
    expect_blob(&proxied, repo, &content, "after the kill").await;
}

/// skopeo pushes a single image and a two-platform index through the pair and pulls them
/// back: the digests are the source's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_skopeo_pushes_and_pulls_a_multi_arch_image_through_two_replicas() {
    let Some(moto) = moto_alone() else { return };
    let Some(skopeo_bin) = peer("skopeo") else {
        return;
    };
    let pair = Pair::start(moto, &fresh_url(moto), &[], false);
    let tmp = tempfile::tempdir().unwrap();
    let (source, out) = (tmp.path().join("source"), tmp.path().join("out"));
    let store = LayoutStore::open(&source).await.unwrap();
    let single = layout_image(&store, "s390x", Some("v1")).await;
    let amd64 = layout_image(&store, "amd64", None).await;
    let arm64 = layout_image(&store, "arm64", None).await;
    let index = layout_index(&store, &[(&amd64, "amd64"), (&arm64, "arm64")], "multi").await;
    let registry = |tag: &str| format!("docker://{}/team/app:{tag}", pair.proxy.addr);
    let cases = [
        ("v1", &single.manifest.digest),
        ("multi", &index.manifest.digest),
    ];
    for (tag, _) in cases {
        let (from, to) = (oci_ref(&source, tag), registry(tag));
        let args = ["copy", "-q", "--all", "--dest-tls-verify=false", &from, &to];
        skopeo(&skopeo_bin, &args);
    }
    for (tag, ours) in cases {
        let (from, to) = (registry(tag), oci_ref(&out, tag));
        let args = ["copy", "-q", "--all", "--src-tls-verify=false", &from, &to];
        skopeo(&skopeo_bin, &args);
        assert_eq!(
            &layout_tag_digest(&out, tag),
            ours,
            "{tag} through the pair"
        );
    }
}
