//! [`ServerOptions`] taking effect (size limits, chunk sizes, concurrency, time limits), blob
//! redirects through a [`BlobLocator`], and the running server's handle.
//!
//! The time limits are set to a few hundred milliseconds, and each test bounds its own wait by
//! [`TIMEOUT`]: with the defaults (tens of seconds) the connection would still be open then,
//! and the test fails.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use http::StatusCode;
use oci_server::{RegistryServer, ServerOptions};
use oci_store::{BlobLocator, MemoryStore, OciInterface};
use oci_types::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Client, MANIFEST, TIMEOUT, digest, image_manifest, serve, start};

const SHORT: Duration = Duration::from_millis(200);

/// Writes `bytes` on a new connection and keeps it open, sending nothing more; returns what
/// the server answers until it closes the connection, and how long that took.
async fn stall_after(client: &Client, bytes: &[u8]) -> (String, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(client.addr()).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the connection was still open after {TIMEOUT:?}"
    );
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    )
}

/// The head of a request of `method` to `path` announcing a body of `length` bytes.
fn head_of(method: &str, path: &str, length: usize) -> String {
    format!("{method} {path} HTTP/1.1\r\nHost: registry\r\nContent-Length: {length}\r\n\r\n")
}

#[tokio::test]
async fn the_header_read_timeout_cuts_off_a_silent_connection_a_half_sent_head_and_an_idle_keep_alive()
 {
    let (_server, client) = start(ServerOptions::default().with_header_read_timeout(SHORT)).await;
    let (_, silent) = stall_after(&client, b"").await;
    assert!(silent >= SHORT / 2, "closed after {silent:?}");
    let (_, half) = stall_after(&client, b"GET /v2/ HTTP/1.1\r\nHost: regis").await;
    assert!(half >= SHORT / 2, "closed after {half:?}");
    // A kept-alive connection waiting for its next request is closed the same way.
    let (answer, idle) = stall_after(&client, b"GET /v2/ HTTP/1.1\r\nHost: r\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(idle >= SHORT / 2, "closed after {idle:?}");
}

#[tokio::test]
async fn the_idle_timeout_closes_a_silent_connection_and_one_whose_body_stalls() {
    // No header timeout and no minimum rate: only the idle timeout can end these connections.
    let options = ServerOptions::default()
        .with_header_read_timeout(Duration::ZERO)
        .with_min_body_rate(0, SHORT)
        .with_idle_timeout(SHORT);
    let (_server, client) = start(options).await;
    let (_, silent) = stall_after(&client, b"").await;
    assert!(silent >= SHORT / 2, "closed after {silent:?}");
    let request = head_of("PUT", "/v2/r/manifests/v1", 100) + "{\"schemaVersion\"";
    let (_, stalled) = stall_after(&client, request.as_bytes()).await;
    assert!(stalled >= SHORT / 2, "closed after {stalled:?}");
}

#[tokio::test]
async fn an_upload_below_the_minimum_rate_is_cut_off_with_408() {
    let options = ServerOptions::default().with_min_body_rate(1024, SHORT);
    let (_server, client) = start(options).await;
    let path = format!("/v2/r/blobs/uploads/?digest={}", digest(b"never whole"));
    let request = head_of("POST", &path, 100) + "ten bytes.";
    let (answer, _) = stall_after(&client, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("BLOB_UPLOAD_INVALID"), "{answer}");
}

/// A manifest is held whole while it is read: its body takes an upload slot (one more
/// push beyond the slots gets 429) and must arrive at the minimum rate (408 below it), so
/// that slow bodies on many streams cannot hold unbounded memory.
#[tokio::test]
async fn a_manifest_body_takes_an_upload_slot_and_must_arrive_at_the_minimum_rate() {
    let window = Duration::from_millis(800);
    let options = ServerOptions::default()
        .with_max_concurrent_uploads(1)
        .with_min_body_rate(1024, window);
    let (_server, client) = start(options).await;
    let image = client.push_image("r", "v1", b"layer").await;

    let mut slow = TcpStream::connect(client.addr()).await.unwrap();
    let request = head_of("PUT", "/v2/r/manifests/slow", 1000) + "{\"schemaVersion\"";
    slow.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(window / 4).await;
    client
        .put("/v2/r/manifests/v2")
        .header("Content-Type", MANIFEST)
        .body(image.manifest.clone())
        .send()
        .await
        .assert_error(StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS");

    let mut answer = Vec::new();
    let read = tokio::time::timeout(TIMEOUT, slow.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the slow manifest was not cut off");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    client
        .push_manifest("r", "v2", MANIFEST, &image.manifest)
        .await;
}

/// A blob taken slower than the minimum body rate is cut off (its connection closed), so
/// that slow readers cannot hold the download slots for ever; one read at the rate comes
/// whole.
#[tokio::test]
async fn a_download_read_slower_than_the_minimum_rate_is_cut_off() {
    let window = Duration::from_millis(300);
    let options = ServerOptions::default().with_min_body_rate(1 << 20, window);
    let (_server, client) = start(options).await;
    let blob = vec![7u8; 64 << 20];
    let digest = client.push_blob("r", &blob).await;
    let path = format!("/v2/r/blobs/{digest}");
    let whole = client.get(&path).send().await;
    assert_eq!(whole.body.len(), blob.len(), "read at once, it comes whole");

    let mut stream = TcpStream::connect(client.addr()).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: registry\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    // Nothing read for a few windows: the sockets' buffers fill, and nothing more moves.
    tokio::time::sleep(window * 5).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the connection was still open after {TIMEOUT:?}"
    );
    assert!(answer.starts_with(b"HTTP/1.1 200"));
    assert!(
        answer.len() < blob.len(),
        "the whole blob came ({} bytes): not cut off",
        answer.len()
    );
}

#[tokio::test]
async fn blobs_above_the_size_limit_are_refused_with_413() {
    let options = ServerOptions::default().with_max_blob_size(Some(16));
    let (_server, client) = start(options).await;
    let big = b"seventeen bytes!!".to_vec();
    client
        .post(&format!("/v2/r/blobs/uploads/?digest={}", digest(&big)))
        .body(big.clone())
        .send()
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID");
    let head = client
        .head(&format!("/v2/r/blobs/{}", digest(&big)))
        .send()
        .await;
    assert_eq!(head.status, StatusCode::NOT_FOUND);

    // The limit counts the whole upload, not each chunk.
    let started = client.post("/v2/r/blobs/uploads/").send().await;
    let location = started.header("Location").unwrap().to_owned();
    let first = client
        .patch(&location)
        .body(big[..10].to_vec())
        .send()
        .await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    client
        .patch(&location)
        .body(big[10..].to_vec())
        .send()
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID");

    // At the limit is fine.
    client.push_blob("r", &big[..16]).await;
}

#[tokio::test]
async fn manifests_above_the_size_limit_are_refused_with_413() {
    let options = ServerOptions::default().with_max_manifest_size(128);
    let (_server, client) = start(options).await;
    let (config, layer) = (
        client.push_blob("r", b"{}").await,
        client.push_blob("r", b"l").await,
    );
    let manifest = image_manifest(&config, 2, &layer, 1);
    assert!(manifest.len() > 128);
    client
        .put("/v2/r/manifests/v1")
        .header("Content-Type", MANIFEST)
        .body(manifest)
        .send()
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID");
    let get = client.get("/v2/r/manifests/v1").send().await;
    assert_eq!(get.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_minimum_chunk_size_is_announced_and_enforced_on_all_chunks_but_the_last() {
    let options = ServerOptions::default().with_min_chunk_size(Some(8));
    let (_server, client) = start(options).await;
    let started = client.post("/v2/r/blobs/uploads/").send().await;
    assert_eq!(started.header("OCI-Chunk-Min-Length"), Some("8"));
    let location = started.header("Location").unwrap().to_owned();

    client
        .patch(&location)
        .body(b"tiny".to_vec())
        .send()
        .await
        .assert_error(StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID");
    let chunk = client
        .patch(&location)
        .body(b"eight by".to_vec())
        .send()
        .await;
    assert_eq!(chunk.status, StatusCode::ACCEPTED, "{}", chunk.text());
    let digest = digest(b"eight bytes");
    let closed = client
        .put(&format!("{location}?digest={digest}"))
        .body(b"tes".to_vec())
        .send()
        .await;
    assert_eq!(closed.status, StatusCode::CREATED, "{}", closed.text());

    // Without the option, no header.
    let (_plain, plain) = start(ServerOptions::default()).await;
    let started = plain.post("/v2/r/blobs/uploads/").send().await;
    assert_eq!(started.header("OCI-Chunk-Min-Length"), None);
}

#[tokio::test]
async fn uploads_beyond_the_concurrency_limit_get_429_with_retry_after() {
    let options = ServerOptions::default().with_max_concurrent_uploads(1);
    let (_server, client) = start(options).await;
    // An upload whose body never finishes holds the one slot.
    let path = format!("/v2/r/blobs/uploads/?digest={}", digest(b"held"));
    let mut holder = TcpStream::connect(client.addr()).await.unwrap();
    let request = head_of("POST", &path, 100) + "held";
    holder.write_all(request.as_bytes()).await.unwrap();

    // The holder's request reaches its handler some time after its bytes were written: ask
    // until the answer is 429, for at most TIMEOUT.
    let deadline = Instant::now() + TIMEOUT;
    let refused = loop {
        let reply = client
            .post(&format!("/v2/r/blobs/uploads/?digest={}", digest(b"x")))
            .body(b"x".to_vec())
            .send()
            .await;
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            break reply;
        }
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
        assert!(Instant::now() < deadline, "never refused");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(refused.error_codes(), ["TOOMANYREQUESTS"]);
    assert_eq!(refused.header("Retry-After"), Some("1"));

    // Once the holder is gone, its slot is free again.
    drop(holder);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let reply = client
            .post(&format!("/v2/r/blobs/uploads/?digest={}", digest(b"y")))
            .body(b"y".to_vec())
            .send()
            .await;
        if reply.status == StatusCode::CREATED {
            break;
        }
        assert!(Instant::now() < deadline, "the slot was never freed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed_at_once() {
    let options = ServerOptions::default().with_max_connections(1);
    let (_server, client) = start(options).await;
    let held = TcpStream::connect(client.addr()).await.unwrap();
    // Accepted in order: once the server holds the first, the second is closed unanswered,
    // long before any time limit could end it.
    let (answer, elapsed) = stall_after(&client, b"GET /v2/ HTTP/1.1\r\nHost: r\r\n\r\n").await;
    assert_eq!(answer, "", "answered beyond the limit");
    assert!(elapsed < Duration::from_secs(5), "closed after {elapsed:?}");

    drop(held);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let mut stream = TcpStream::connect(client.addr()).await.unwrap();
        stream
            .write_all(b"GET /v2/ HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut answer)).await;
        if answer.starts_with(b"HTTP/1.1 200") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the connection slot was never freed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let (server, client) = start(ServerOptions::default().with_shutdown_grace(SHORT)).await;
    assert_eq!(server.url(), format!("http://{}", server.local_addr()));
    assert_eq!(client.get("/v2/").send().await.status, StatusCode::OK);
    tokio::time::timeout(TIMEOUT, server.shutdown())
        .await
        .expect("shutdown did not return");
    assert!(
        TcpStream::connect(client.addr()).await.is_err(),
        "still accepting connections after shutdown"
    );
}

/// Time limits of `Duration::MAX` ("never", in effect) are taken as `oci_server::MAX_TIME_LIMIT`
/// (the limits are added to clock readings, and hyper's header timer overflowed with them on
/// every connection), and counts of `usize::MAX` as the most a semaphore counts (tokio's
/// semaphore panicked, taking the accept loop with it).
#[tokio::test]
async fn limits_past_what_clocks_and_semaphores_hold_serve_as_the_maximum() {
    let options = ServerOptions::default()
        .with_header_read_timeout(Duration::MAX)
        .with_idle_timeout(Duration::MAX)
        .with_tls_handshake_timeout(Duration::MAX)
        .with_min_body_rate(1, Duration::MAX)
        .with_shutdown_grace(Duration::MAX)
        .with_max_connections(usize::MAX)
        .with_max_concurrent_uploads(usize::MAX)
        .with_max_concurrent_downloads(usize::MAX);
    let (server, client) = start(options).await;
    assert_eq!(client.get("/v2/").send().await.status, StatusCode::OK);
    client
        .push_blob("r", b"a body read under the minimum rate")
        .await;
    tokio::time::timeout(TIMEOUT, server.shutdown())
        .await
        .expect("shutdown did not return");
}

/// Gives a CDN URL for every blob but one.
#[derive(Debug)]
struct Cdn {
    unlocated: Digest,
}

#[async_trait]
impl BlobLocator for Cdn {
    async fn blob_url(
        &self,
        digest: &Digest,
        valid_for: Duration,
    ) -> oci_store::Result<Option<String>> {
        Ok((digest != &self.unlocated).then(|| {
            format!(
                "https://cdn.example/{digest}?expires={}",
                valid_for.as_secs()
            )
        }))
    }
}

#[tokio::test]
async fn blob_redirects_send_whole_blob_gets_to_the_locators_url() {
    let store: Arc<dyn OciInterface> = Arc::new(MemoryStore::new());
    let locator = Cdn {
        unlocated: Digest::sha256(b"served here"),
    };
    let server =
        RegistryServer::new(store).with_blob_redirects(Arc::new(locator), Duration::from_secs(300));
    let listening = serve(server).await;
    let client = Client::new(&listening);
    let redirected = client.push_blob("r", b"served elsewhere").await;
    let streamed = client.push_blob("r", b"served here").await;

    let get = client
        .get(&format!("/v2/r/blobs/{redirected}"))
        .send()
        .await;
    assert_eq!(get.status, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        get.header("Location"),
        Some(format!("https://cdn.example/{redirected}?expires=300").as_str())
    );
    assert_eq!(
        get.header("Docker-Content-Digest"),
        Some(redirected.as_str())
    );

    // HEADs and ranged GETs are answered here.
    let head = client
        .head(&format!("/v2/r/blobs/{redirected}"))
        .send()
        .await;
    assert_eq!(head.status, StatusCode::OK);
    let part = client
        .get(&format!("/v2/r/blobs/{redirected}"))
        .header("Range", "bytes=0-5")
        .send()
        .await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.body.as_ref(), b"served");

    // A blob the locator has no URL for is streamed.
    let get = client.get(&format!("/v2/r/blobs/{streamed}")).send().await;
    assert_eq!(get.status, StatusCode::OK);
    assert_eq!(get.body.as_ref(), b"served here");

    // No URL is given out for a blob the repository does not hold.
    client.push_blob("other", b"something else").await;
    client
        .get(&format!("/v2/other/blobs/{redirected}"))
        .send()
        .await
        .assert_error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN");
}
