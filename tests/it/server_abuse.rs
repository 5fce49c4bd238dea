//! `hoist serve` attacked as a hostile network would: half-sent requests, stalled bodies, slow
//! downloads beside fast ones, floods of random repository names, an error answered before a
//! body was read. Every test is on loopback, bounded in count and in time (the raw client of
//! `http.rs` gives up after 20 s, and every wait here has its own deadline).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client as PooledClient;
use hyper_util::rt::{TokioExecutor, TokioIo};
use oci_layout::LayoutStore;
use oci_server::ServerOptions;
use oci_store::MemoryStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::http::Client;
use crate::server_http::{Blob, push_blob, serve};
use crate::support::ServeProcess;

/// Reads from `stream` until the server closes it (end of stream or reset), or panics at
/// `deadline`.
async fn closed_by_server(stream: &mut TcpStream, deadline: Instant) {
    let mut buffer = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline.into(), stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => return,
            Ok(Ok(_)) => {}
            Err(_) => panic!("the server left a connection open past the deadline"),
        }
    }
}

/// 1,000 connections send a request line and one header and stop. With a 1 s header timeout
/// the server closes every one of them, and serves a normal client during the attack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_are_closed_by_the_header_timeout() {
    let server = ServeProcess::start(&["--memory", "--header-timeout", "1"]);
    let addr = server.addr();
    let mut attackers = Vec::new();
    for _ in 0..1000 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /v2/ HTTP/1.1\r\nHost: attacker\r\n")
            .await
            .unwrap();
        attackers.push(stream);
    }
    let client = Client::new(&format!("http://{addr}"));
    assert_eq!(client.get("/v2/").send().await.status, StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(20);
    for stream in &mut attackers {
        closed_by_server(stream, deadline).await;
    }
    // Still serving once they are gone.
    assert_eq!(client.get("/v2/").send().await.status, StatusCode::OK);
}

/// An upload body that stops after 4 KiB of its 1 MiB is cut off once a window of the minimum
/// rate passes, with 408, and the connection closed.
#[tokio::test]
async fn a_stalled_upload_body_is_cut_off() {
    let server = serve(
        Arc::new(MemoryStore::new()),
        ServerOptions::default().with_min_body_rate(1024, Duration::from_secs(1)),
    )
    .await;
    let client = Client::new(&server.url());
    let started = client.post("/v2/abuse/stall/blobs/uploads/").send().await;
    assert_eq!(started.status, StatusCode::ACCEPTED);
    let location = started.header("location").unwrap().to_owned();
    let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
    let head = format!(
        "PATCH {location} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: 1048576\r\n\r\n",
        client.authority()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&[0u8; 4096]).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut answer))
        .await
        .expect("the stalled body was not cut off within 15 s");
    let answer = String::from_utf8_lossy(&answer);
    assert!(read.is_ok(), "{read:?}");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("slower than 1024 bytes/s"), "{answer}");
    server.shutdown().await;
}

/// Forty downloads whose clients never read hold no thread of the server: with a blocking pool
/// of eight threads (tokio's default is 512; this is the same attack scaled down), fast
/// downloads of the same blob are still served whole.
#[test]
fn slow_downloads_do_not_starve_fast_ones() {
    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let server = server_runtime.block_on(async move {
        let store = LayoutStore::open_per_repository(root).await.unwrap();
        serve(Arc::new(store), ServerOptions::default()).await
    });
    let url = server.url();
    let addr = server.local_addr();
    let client_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    client_runtime.block_on(async move {
        let client = Client::new(&url);
        // Larger than what the sockets' buffers take in, so every slow download stalls.
        let blob = Blob::random(32 << 20, 1);
        push_blob(&client, "abuse/slow", &blob).await;
        let digest = &blob.digest;
        let path = format!("/v2/abuse/slow/blobs/{digest}");
        let mut slow = Vec::new();
        for _ in 0..40 {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let request = format!(
                "GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n",
                client.authority()
            );
            stream.write_all(request.as_bytes()).await.unwrap();
            slow.push(stream);
        }
        // Let them fill their buffers and stall.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let fast = (0..4).map(|_| client.get(&path).send());
        for answer in futures::future::join_all(fast).await {
            assert_eq!(answer.status, StatusCode::OK);
            assert_eq!(answer.body, blob.data);
        }
        drop(slow);
    });
    server_runtime.block_on(server.shutdown());
}

/// Downloads beyond `max_concurrent_downloads` wait for a slot instead of each holding read
/// buffers: with two slots held by clients that do not read, a third download finishes only
/// once one of them goes away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_beyond_the_limit_wait_their_turn() {
    let dir = tempfile::tempdir().unwrap();
    let store = LayoutStore::open_per_repository(dir.path()).await.unwrap();
    let server = serve(
        Arc::new(store),
        ServerOptions::default().with_max_concurrent_downloads(2),
    )
    .await;
    let client = Client::new(&server.url());
    let blob = Blob::random(16 << 20, 2);
    push_blob(&client, "abuse/turns", &blob).await;
    let digest = &blob.digest;
    let path = format!("/v2/abuse/turns/blobs/{digest}");
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n",
            client.authority()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        // The answer has started: this download holds its slot.
        let mut first = [0u8; 12];
        stream.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"HTTP/1.1 200");
        stalled.push(stream);
    }
    // Both slots are held: a HEAD, which takes none, is answered all the same.
    let head = client.head(&path).send().await;
    assert_eq!(head.status, StatusCode::OK);
    let third = tokio::spawn({
        let client = Client::new(&server.url());
        let path = path.clone();
        async move { client.get(&path).send().await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!third.is_finished(), "the third download did not wait");
    drop(stalled.pop());
    let answer = third.await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, blob.data);
    drop(stalled);
    server.shutdown().await;
}

/// The resident memory of a process, from `/proc`.
fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Sends `count` reads of manifests of random repository names over one kept-alive
/// connection; each must be 404.
async fn random_name_reads(addr: std::net::SocketAddr, count: usize, seed: u64) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut state = seed;
    for _ in 0..count {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let request = Request::get(format!("/v2/flood/n{state:016x}/manifests/latest"))
            .header("host", addr.to_string())
            .body(Empty::<Bytes>::new())
            .unwrap();
        sender.ready().await.unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        response.into_body().collect().await.unwrap();
    }
}

/// 100,000 reads of random repository names leave no state behind: the server's resident
/// memory grows by less than 12 MiB (each name used to stay, as an entry of a map).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_of_random_names_leave_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let server = ServeProcess::start(&[std::ffi::OsStr::new("--root"), root.as_os_str()]);
    let addr = server.addr();
    const CONNECTIONS: u64 = 8;
    // Warm up: the allocator's arenas and the runtime's threads reach their working size.
    let warm = (0..CONNECTIONS).map(|c| random_name_reads(addr, 1000, c));
    futures::future::join_all(warm).await;
    let before = resident_kib(server.id());
    let flood = (0..CONNECTIONS).map(|c| random_name_reads(addr, 12_500, 1000 + c));
    futures::future::join_all(flood).await;
    let after = resident_kib(server.id());
    assert!(
        after < before + 12 * 1024,
        "resident memory grew from {before} KiB to {after} KiB"
    );
}

/// A chunk sent out of order is refused (416) before its body is read; the answer says
/// `Connection: close`, so a pooled client opens a new connection for its next request
/// instead of sending it on one the server is closing.
#[tokio::test]
async fn an_early_error_closes_the_connection_cleanly() {
    let server = serve(Arc::new(MemoryStore::new()), ServerOptions::default()).await;
    let raw = Client::new(&server.url());
    let pooled = PooledClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let base = server.url();
    for round in 0..20 {
        let started = raw.post("/v2/abuse/order/blobs/uploads/").send().await;
        let location = started.header("location").unwrap().to_owned();
        let url = if location.starts_with("http") {
            location
        } else {
            format!("{base}{location}")
        };
        let body = Bytes::from(vec![1u8; 64 << 10]);
        let patch = Request::builder()
            .method(Method::PATCH)
            .uri(&url)
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("100-{}", 100 + body.len() - 1))
            .header("content-length", body.len())
            .body(Full::new(body))
            .unwrap();
        let answer = pooled
            .request(patch)
            .await
            .unwrap_or_else(|e| panic!("round {round}: the PATCH failed: {e:?}"));
        assert_eq!(answer.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(
            answer.headers().get("connection").map(|v| v.as_bytes()),
            Some(&b"close"[..]),
            "round {round}"
        );
        let next = Request::get(format!("{base}/v2/"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let answer = pooled
            .request(next)
            .await
            .unwrap_or_else(|e| panic!("round {round}: the next request failed: {e:?}"));
        assert_eq!(answer.status(), StatusCode::OK, "round {round}");
    }
    server.shutdown().await;
}
