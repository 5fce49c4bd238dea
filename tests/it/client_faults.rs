//! The registry client against a network that misbehaves: a small fault-injecting HTTP proxy
//! between the client and hoist's server (over memory) drops a blob download mid-way, answers
//! 429 with `Retry-After`, answers bursts of 503, redirects blob downloads to another host,
//! and damages bytes in either direction. Retries and resumption work, credentials never reach
//! the other host, and nothing corrupt is stored or returned.
//!
//! The proxy ([`Proxy`]) is HTTP/1.1 with `Connection: close`: one request per connection,
//! which it reads the head of, logs, and then answers itself or forwards, copying the rest of
//! both directions byte for byte (with the scripted damage). The token tests of
//! `client_peers` count token requests with it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use oci_registry::{Credentials, RegistryClient, RetryPolicy};
use oci_server::{Auth, Htpasswd, Listening, RegistryServer};
use oci_store::conformance::seeded_bytes;
use oci_store::{
    BlobReader, ErrorCode, MemoryStore, OciInterface, OciInterfaceExt, PushManifestParams,
};
use oci_types::{Descriptor, Digest, ImageManifest, MediaType, Repository, media_type};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

// ---- the proxy ----

/// What the proxy does to a request a [`Rule`] matches.
#[derive(Debug, Clone)]
pub(crate) enum Fault {
    /// Answers itself with this status and these headers (and an empty body).
    Answer(u16, Vec<(String, String)>),
    /// Answers `307 Temporary Redirect` to this base URL followed by the request's path.
    RedirectTo(String),
    /// Forwards, then closes the connection after this many bytes of the response body.
    CutAfter(usize),
    /// Forwards this many bytes of the response body, then sends nothing more while keeping the
    /// connection open (for a minute at most).
    StallAfter(usize),
    /// Forwards, flipping the bits of byte N of the response body.
    CorruptResponse(usize),
    /// Forwards, flipping the bits of byte N of the request body.
    CorruptRequest(usize),
}

/// Which requests a fault applies to, and how many times.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    method: Option<&'static str>,
    path_contains: String,
    /// Only requests that carry an `Authorization` header (that is, once the client has
    /// authenticated, as a real registry would only redirect then).
    authenticated: bool,
    times: usize,
    fault: Fault,
}

impl Rule {
    /// `fault` for the next `times` requests with `method` (any when `None`) whose path
    /// contains `path_contains`.
    pub(crate) fn new(
        method: Option<&'static str>,
        path_contains: &str,
        times: usize,
        fault: Fault,
    ) -> Self {
        Self {
            method,
            path_contains: path_contains.to_owned(),
            authenticated: false,
            times,
            fault,
        }
    }

    /// Applies only to requests with an `Authorization` header.
    pub(crate) fn authenticated(mut self) -> Self {
        self.authenticated = true;
        self
    }

    fn matches(&self, head: &RequestHead) -> bool {
        self.times > 0
            && self.method.is_none_or(|m| m == head.method)
            && head.path().contains(&self.path_contains)
            && (!self.authenticated || head.header("authorization").is_some())
    }
}

/// One request as the proxy (or the other host) saw it.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) method: String,
    /// The request target (path and query).
    pub(crate) target: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) at: Instant,
    /// What was done: `forwarded`, or the fault applied.
    pub(crate) action: String,
    /// The status answered (0 when the upstream answered nothing).
    pub(crate) status: u16,
}

impl Seen {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// The values of query parameter `name`, decoded.
    pub(crate) fn query(&self, name: &str) -> Vec<String> {
        let query = self.target.split_once('?').map_or("", |(_, q)| q);
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| percent_decode(v))
            .collect()
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%' && i + 2 < bytes.len())
            .then(|| std::str::from_utf8(&bytes[i + 1..i + 3]).ok())
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (escaped, bytes[i]) {
            (Some(byte), _) => {
                out.push(byte);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, byte) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Debug, Clone)]
struct RequestHead {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

impl RequestHead {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    fn content_length(&self) -> Option<u64> {
        self.header("content-length")?.trim().parse().ok()
    }

    /// The head to send upstream: the same, with `Connection: close`.
    fn render(&self) -> Vec<u8> {
        let mut text = format!("{} {} HTTP/1.1\r\n", self.method, self.target);
        for (name, value) in &self.headers {
            if !name.eq_ignore_ascii_case("connection") {
                text.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        text.push_str("Connection: close\r\n\r\n");
        text.into_bytes()
    }
}

/// Reads up to the end of an HTTP head; returns the head's text (without the blank line) and
/// the bytes read past it.
async fn read_head<R: AsyncRead + Unpin>(stream: &mut R) -> Option<(String, Vec<u8>)> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buffer.split_off(end + 4);
            buffer.truncate(end);
            return Some((String::from_utf8_lossy(&buffer).into_owned(), rest));
        }
        if buffer.len() > 64 * 1024 {
            return None;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

fn parse_request_head(text: &str) -> Option<RequestHead> {
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let target = first.next()?.to_owned();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Some(RequestHead {
        method,
        target,
        headers,
    })
}

fn status_of(response_head: &str) -> u16 {
    response_head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn reason(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Whatever")
}

#[derive(Debug)]
struct ProxyState {
    upstream: SocketAddr,
    rules: Vec<Rule>,
    log: Vec<Seen>,
}

/// A fault-injecting HTTP/1.1 proxy on 127.0.0.1, stopped on drop.
#[derive(Debug)]
pub(crate) struct Proxy {
    addr: SocketAddr,
    state: Arc<Mutex<ProxyState>>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// A proxy in front of `upstream`, with no faults yet.
    pub(crate) async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(ProxyState {
            upstream,
            rules: Vec::new(),
            log: Vec::new(),
        }));
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let _ = client.set_nodelay(true);
                tokio::spawn(proxy_connection(client, Arc::clone(&shared)));
            }
        });
        Self { addr, state, task }
    }

    /// Its address, as the client's registry name (`127.0.0.1:PORT`).
    pub(crate) fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Adds a fault.
    pub(crate) fn add(&self, rule: Rule) {
        self.state.lock().unwrap().rules.push(rule);
    }

    /// Sends what follows to another server.
    pub(crate) fn set_upstream(&self, upstream: SocketAddr) {
        self.state.lock().unwrap().upstream = upstream;
    }

    /// Every request seen so far.
    pub(crate) fn log(&self) -> Vec<Seen> {
        self.state.lock().unwrap().log.clone()
    }

    /// Forgets the requests seen so far.
    pub(crate) fn clear_log(&self) {
        self.state.lock().unwrap().log.clear();
    }

    /// The faults not used up yet.
    pub(crate) fn pending_faults(&self) -> usize {
        self.state
            .lock()
            .unwrap()
            .rules
            .iter()
            .map(|r| r.times)
            .sum()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn proxy_connection(mut client: TcpStream, state: Arc<Mutex<ProxyState>>) {
    let Some((text, early_body)) = read_head(&mut client).await else {
        return;
    };
    let Some(head) = parse_request_head(&text) else {
        return;
    };
    let (upstream, fault, index) = {
        let mut state = state.lock().unwrap();
        let fault = state.rules.iter_mut().find(|r| r.matches(&head)).map(|r| {
            r.times -= 1;
            r.fault.clone()
        });
        let action = fault
            .as_ref()
            .map_or_else(|| "forwarded".to_owned(), |f| format!("{f:?}"));
        state.log.push(Seen {
            method: head.method.clone(),
            target: head.target.clone(),
            headers: head.headers.clone(),
            at: Instant::now(),
            action,
            status: 0,
        });
        (state.upstream, fault, state.log.len() - 1)
    };
    let record_status = |status: u16| {
        if let Some(seen) = state.lock().unwrap().log.get_mut(index) {
            seen.status = status;
        }
    };
    let answer = match &fault {
        Some(Fault::Answer(status, headers)) => Some((*status, headers.clone())),
        Some(Fault::RedirectTo(base)) => Some((
            307,
            vec![("Location".to_owned(), format!("{base}{}", head.target))],
        )),
        _ => None,
    };
    if let Some((status, headers)) = answer {
        // Reads the request body (if any) first, so that the client sees an answer, not a reset.
        let mut left = head
            .content_length()
            .unwrap_or(0)
            .saturating_sub(early_body.len() as u64);
        let mut sink = [0u8; 8192];
        while left > 0 {
            match client.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n as u64),
            }
        }
        let mut text = format!("HTTP/1.1 {status} {}\r\n", reason(status));
        for (name, value) in headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        text.push_str("Content-Length: 0\r\nConnection: close\r\n\r\n");
        record_status(status);
        let _ = client.write_all(text.as_bytes()).await;
        let _ = client.shutdown().await;
        return;
    }
    let Ok(upstream) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = upstream.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let corrupt_request = match fault {
        Some(Fault::CorruptRequest(at)) => Some(at),
        _ => None,
    };
    let rendered = head.render();
    // Client to upstream: the head, then the body as it comes (one byte damaged if asked).
    let up = tokio::spawn(async move {
        let mut position = 0usize;
        let mut forward = |mut chunk: Vec<u8>| {
            if let Some(at) = corrupt_request
                && (position..position + chunk.len()).contains(&at)
            {
                chunk[at - position] ^= 0xff;
            }
            position += chunk.len();
            chunk
        };
        if upstream_write.write_all(&rendered).await.is_err() {
            return;
        }
        let first = forward(early_body);
        if upstream_write.write_all(&first).await.is_err() {
            return;
        }
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            match client_read.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let chunk = forward(buffer[..n].to_vec());
                    if upstream_write.write_all(&chunk).await.is_err() {
                        break;
                    }
                }
            }
        }
        // Dropping the write half closes it: the upstream sees the end of the body.
    });
    // Upstream to client: the head as it is, then the body with the scripted damage.
    if let Some((response_head, early)) = read_head(&mut upstream_read).await {
        let status = status_of(&response_head);
        record_status(status);
        let ok = (200..300).contains(&status);
        let (cut, corrupt, stall) = match fault {
            Some(Fault::CutAfter(n)) if ok => (Some(n), None, false),
            Some(Fault::StallAfter(n)) if ok => (Some(n), None, true),
            Some(Fault::CorruptResponse(n)) if ok => (None, Some(n), false),
            _ => (None, None, false),
        };
        let mut head_bytes = response_head.into_bytes();
        head_bytes.extend_from_slice(b"\r\n\r\n");
        if client_write.write_all(&head_bytes).await.is_ok() {
            let mut position = 0usize;
            let mut pending = early;
            let mut buffer = vec![0u8; 64 * 1024];
            loop {
                if !pending.is_empty() {
                    let mut chunk = std::mem::take(&mut pending);
                    if let Some(at) = corrupt
                        && (position..position + chunk.len()).contains(&at)
                    {
                        chunk[at - position] ^= 0xff;
                    }
                    if let Some(limit) = cut
                        && position + chunk.len() >= limit
                    {
                        let _ = client_write.write_all(&chunk[..limit - position]).await;
                        let _ = client_write.flush().await;
                        if stall {
                            // Silent but open: only the client's stall timeout ends this.
                            tokio::time::sleep(Duration::from_secs(60)).await;
                        }
                        break;
                    }
                    position += chunk.len();
                    if client_write.write_all(&chunk).await.is_err() {
                        break;
                    }
                }
                match upstream_read.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => pending = buffer[..n].to_vec(),
                }
            }
        }
    }
    up.abort();
    // Dropping both halves closes the client's connection: for a cut, mid-body.
}

// ---- another host, for redirects ----

/// A plain HTTP server on another port of 127.0.0.1 (another origin: the client must treat it
/// as another host) that serves blobs by digest, honours `Range`, and records every request.
#[derive(Debug)]
pub(crate) struct OtherHost {
    addr: SocketAddr,
    blobs: Arc<Mutex<HashMap<String, Bytes>>>,
    log: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl OtherHost {
    pub(crate) async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let blobs: Arc<Mutex<HashMap<String, Bytes>>> = Arc::default();
        let log: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let (served, seen) = (Arc::clone(&blobs), Arc::clone(&log));
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (served, seen) = (Arc::clone(&served), Arc::clone(&seen));
                tokio::spawn(async move {
                    let Some((text, _)) = read_head(&mut stream).await else {
                        return;
                    };
                    let Some(head) = parse_request_head(&text) else {
                        return;
                    };
                    let digest = head.path().rsplit('/').next().unwrap_or_default();
                    let content = served.lock().unwrap().get(digest).cloned();
                    let (status, headers, body) = match content {
                        None => (404, String::new(), Bytes::new()),
                        Some(content) => match head.header("range").and_then(parse_range) {
                            Some((start, end)) => {
                                let end = end.unwrap_or(content.len() as u64 - 1);
                                (
                                    206,
                                    format!(
                                        "Content-Range: bytes {start}-{end}/{}\r\n",
                                        content.len()
                                    ),
                                    content.slice(start as usize..=end as usize),
                                )
                            }
                            None => (200, String::new(), content),
                        },
                    };
                    seen.lock().unwrap().push(Seen {
                        method: head.method.clone(),
                        target: head.target.clone(),
                        headers: head.headers.clone(),
                        at: Instant::now(),
                        action: "served".to_owned(),
                        status,
                    });
                    let response = format!(
                        "HTTP/1.1 {status} {}\r\nContent-Type: application/octet-stream\r\n\
                         Content-Length: {}\r\n{headers}Connection: close\r\n\r\n",
                        reason(status),
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    if head.method != "HEAD" {
                        let _ = stream.write_all(&body).await;
                    }
                    let _ = stream.shutdown().await;
                });
            }
        });
        Self {
            addr,
            blobs,
            log,
            task,
        }
    }

    /// Its base URL.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves `content` under its digest.
    pub(crate) fn serve(&self, digest: &Digest, content: Bytes) {
        self.blobs
            .lock()
            .unwrap()
            .insert(digest.to_string(), content);
    }

    pub(crate) fn log(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for OtherHost {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `bytes=a-b` or `bytes=a-`.
fn parse_range(value: &str) -> Option<(u64, Option<u64>)> {
    let (start, end) = value.trim().strip_prefix("bytes=")?.split_once('-')?;
    let start = start.trim().parse().ok()?;
    let end = match end.trim() {
        "" => None,
        end => Some(end.parse().ok()?),
    };
    Some((start, end))
}

// ---- set-up ----

const USER: &str = "faulty";
const PASSWORD: &str = "s3cret-over-a-bad-network";

/// hoist's server over memory, optionally with basic auth; the memory store is kept to look
/// behind the server's back.
async fn server(basic_auth: bool) -> (Listening, MemoryStore) {
    let memory = MemoryStore::new();
    let mut server = RegistryServer::new(Arc::new(memory.clone()));
    if basic_auth {
        let hash = bcrypt::hash(PASSWORD, 4).unwrap();
        let users = Htpasswd::parse(&format!("{USER}:{hash}\n")).unwrap();
        server = server.with_auth(Auth::Basic(users));
    }
    let listening = server.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    (listening, memory)
}

/// A client of the proxy: no credential files; retries with short delays so that the tests
/// stay quick (a `Retry-After` still decides its own delay).
async fn client(proxy: &Proxy, credentials: Option<Credentials>) -> RegistryClient {
    let mut builder = RegistryClient::builder(&proxy.host())
        .with_credential_files(Vec::new())
        .with_retry(
            RetryPolicy::default()
                .with_attempts(5)
                .with_base_delay(Duration::from_millis(50)),
        );
    if let Some(credentials) = credentials {
        builder = builder.with_credentials(credentials);
    }
    builder.build().await.unwrap()
}

/// A client of the proxy that sends every blob over 10,000 bytes in chunks of 30,000.
async fn chunked_client(proxy: &Proxy) -> RegistryClient {
    RegistryClient::builder(&proxy.host())
        .with_credential_files(Vec::new())
        .with_monolithic_limit(10_000)
        .with_chunk_size(30_000)
        .build()
        .await
        .unwrap()
}

fn repo(name: &str) -> Repository {
    format!("faults/{name}").parse().unwrap()
}

fn octet() -> MediaType {
    MediaType::from_static(media_type::OCTET_STREAM)
}

/// Pushes `content` straight into the memory store (not through the proxy).
async fn stored(memory: &MemoryStore, repo: &Repository, content: &Bytes) -> Descriptor {
    memory
        .push_blob_bytes(repo, octet(), content.clone())
        .await
        .unwrap()
}

/// The server's store has no such blob (nor, if nothing else was pushed there, the
/// repository).
async fn assert_nothing_stored(memory: &MemoryStore, repo: &Repository, digest: &Digest) {
    let error = memory
        .resolve_blob(repo, digest)
        .await
        .expect_err("nothing stored");
    assert!(
        matches!(
            error.code(),
            Some(ErrorCode::BlobUnknown | ErrorCode::NameUnknown)
        ),
        "{error}"
    );
}

fn blob_gets(log: &[Seen], digest: &Digest) -> Vec<Seen> {
    log.iter()
        .filter(|s| s.method == "GET" && s.path().ends_with(&format!("/blobs/{digest}")))
        .cloned()
        .collect()
}

// ---- the tests ----

/// A download cut off after 300 KiB of 1 MiB resumes with `Range` from the byte reached, and
/// what comes out is the blob, verified; a download cut off more often than the client
/// resumes ends in an error, never in short or wrong content.
#[tokio::test]
async fn a_download_cut_off_midway_resumes_with_range() {
    let (listening, memory) = server(false).await;
    let proxy = Proxy::start(listening.local_addr()).await;
    let repo = repo("resume");
    let content = seeded_bytes(1, 1 << 20);
    let blob = stored(&memory, &repo, &content).await;
    let client = client(&proxy, None).await;

    let cut = 300 * 1024;
    proxy.add(Rule::new(
        Some("GET"),
        &format!("/blobs/{}", blob.digest),
        1,
        Fault::CutAfter(cut),
    ));
    let got = client
        .get_blob_bytes(&repo, &blob.digest, 2 << 20)
        .await
        .unwrap();
    assert!(got == content, "the resumed download is the blob");
    let gets = blob_gets(&proxy.log(), &blob.digest);
    assert_eq!(gets.len(), 2, "one cut download, one resumption: {gets:#?}");
    assert_eq!(gets[0].header("range"), None, "the first read is whole");
    assert_eq!(
        gets[1].header("range"),
        Some(format!("bytes={cut}-{}", content.len() - 1).as_str()),
        "the resumption asks for the rest, from the byte reached"
    );
    assert_eq!(gets[1].status, 206);

    // Cut every time: the client gives up after its resumptions, with an error.
    proxy.clear_log();
    proxy.add(Rule::new(
        Some("GET"),
        &format!("/blobs/{}", blob.digest),
        100,
        Fault::CutAfter(1000),
    ));
    let error = client
        .get_blob_bytes(&repo, &blob.digest, 2 << 20)
        .await
        .expect_err("a download that always breaks off fails");
    let gets = blob_gets(&proxy.log(), &blob.digest).len();
    assert!(
        (2..=10).contains(&gets),
        "a bounded number of resumptions ({gets}), then {error}"
    );
}

/// A download that stalls (the connection stays open, no byte comes) counts as broken once the
/// client's stall timeout passes, and resumes with `Range` like a dropped one.
#[tokio::test]
async fn a_stalled_download_resumes_after_the_stall_timeout() {
    let (listening, memory) = server(false).await;
    let proxy = Proxy::start(listening.local_addr()).await;
    let repo = repo("stall");
    let content = seeded_bytes(3, 1 << 20);
    let blob = stored(&memory, &repo, &content).await;
    let client = RegistryClient::builder(&proxy.host())
        .with_credential_files(Vec::new())
        .with_stall_timeout(Duration::from_millis(500))
        .build()
        .await
        .unwrap();
    let stall_at = 200 * 1024;
    proxy.add(Rule::new(
        Some("GET"),
        &format!("/blobs/{}", blob.digest),
        1,
        Fault::StallAfter(stall_at),
    ));
    let got = client
        .get_blob_bytes(&repo, &blob.digest, 2 << 20)
        .await
        .unwrap();
    assert!(got == content, "the resumed download is the blob");
    let gets = blob_gets(&proxy.log(), &blob.digest);
    assert_eq!(
        gets.len(),
        2,
        "one stalled download, one resumption: {gets:#?}"
    );
    assert_eq!(
        gets[1].header("range"),
        Some(format!("bytes={stall_at}-{}", content.len() - 1).as_str()),
        "the resumption asks for the rest, from the byte reached"
    );
}

/// A ranged read cut off mid-way resumes too, within its range.
#[tokio::test]
async fn a_ranged_read_cut_off_midway_resumes_within_its_range() {
    let (listening, memory) = server(false).await;
    let proxy = Proxy::start(listening.local_addr()).await;
    let repo = repo("range-resume");
    let content = seeded_bytes(2, 512 * 1024);
    let blob = stored(&memory, &repo, &content).await;
    let client = client(&proxy, None).await;
    proxy.add(Rule::new(
        Some("GET"),
        &format!("/blobs/{}", blob.digest),
        1,
        Fault::CutAfter(50_000),
    ));
    let reader = client
        .get_blob_range(&repo, &blob.digest, 100_000, Some(400_000))
        .await
        .unwrap();
    let got = reader.bytes(1 << 20).await.unwrap();
    assert!(got == content.slice(100_000..400_000), "the range, whole");
    let gets = blob_gets(&proxy.log(), &blob.digest);
    assert_eq!(gets.len(), 2, "{gets:#?}");
    assert_eq!(gets[0].header("range"), Some("bytes=100000-399999"));
    assert_eq!(gets[1].header("range"), Some("bytes=150000-399999"));
}

/// `429 Too Many Requests` with `Retry-After: 1` is retried, after the second asked for.
#[tokio::test]
async fn too_many_requests_is_retried_after_the_delay_asked() {
    let (listening, memory) = server(false).await;
    let proxy = Proxy::start(listening.local_addr()).await;
    let repo = repo("slow-down");
    let content = seeded_bytes(3, 10_000);
    let blob = stored(&memory, &repo, &content).await;
    let client = client(&proxy, None).await;
    proxy.add(Rule::new(
        Some("GET"),
        "/blobs/",
        1,
        Fault::Answer(429, vec![("Retry-After".to_owned(), "1".to_owned())]),
    ));
    let got = client
        .get_blob_bytes(&repo, &blob.digest, 1 << 20)
        .await
        .unwrap();
    assert!(got == content);
    let gets = blob_gets(&proxy.log(), &blob.digest);
    assert_eq!(gets.len(), 2, "{gets:#?}");
    assert_eq!(gets[0].status, 429);
    let waited = gets[1].at.duration_since(gets[0].at);
    assert!(
        waited >= Duration::from_millis(950),
        "the retry waited for Retry-After (1 s), not {waited:?}"
    );

    // The same for a manifest pushed (a PUT with the body in hand can be sent again).
    let manifest = ImageManifest::new(
        Descriptor::new(
            MediaType::from_static(media_type::OCI_CONFIG),
            blob.digest.clone(),
            blob.size,
        ),
        vec![],
    )
    .to_json();
    proxy.clear_log();
    proxy.add(Rule::new(
        Some("PUT"),
        "/manifests/",
        1,
        Fault::Answer(429, vec![("Retry-After".to_owned(), "1".to_owned())]),
    ));
    let pushed = client
        .push_manifest(
            &repo,
            manifest.into(),
            &MediaType::from_static(media_type::OCI_MANIFEST),
            &PushManifestParams::new().with_tag("v1".parse().unwrap()),
        )
        .await
        .unwrap();
    let puts: Vec<Seen> = proxy
        .log()
        .into_iter()
        .filter(|s| s.method == "PUT")
        .collect();
    assert_eq!(puts.len(), 2, "{puts:#?}");
    assert!(puts[1].at.duration_since(puts[0].at) >= Duration::from_millis(950));
    assert_eq!(
        memory
            .resolve_tag(&repo, &"v1".parse().unwrap())
            .await
            .unwrap()
            .digest,
        pushed.digest
    );
}

/// A burst of 503s shorter than the client's attempts is retried through; a longer one ends
/// in an error naming the status, after exactly the attempts allowed.
#[tokio::test]
async fn a_burst_of_503_is_retried_through() {
    let (listening, memory) = server(false).await;
    let proxy = Proxy::start(listening.local_addr()).await;
    let repo = repo("unavailable");
    let content = seeded_bytes(4, 10_000);
    let blob = stored(&memory, &repo, &content).await;
    let client = client(&proxy, None).await;

    for (method, fault_path) in [("HEAD", "/blobs/"), ("GET", "/blobs/")] {
        proxy.clear_log();
        proxy.add(Rule::new(
            Some(method),
            fault_path,
            3,
            Fault::Answer(503, vec![]),
        ));
        if method == "HEAD" {
            assert_eq!(
                client.resolve_blob(&repo, &blob.digest).await.unwrap().size,
                blob.size
            );
        } else {
            assert!(
                client
                    .get_blob_bytes(&repo, &blob.digest, 1 << 20)
                    .await
                    .unwrap()
                    == content
            );
        }
        let statuses: Vec<u16> = proxy.log().iter().map(|s| s.status).collect();
        assert_eq!(statuses, [503, 503, 503, 200], "{method}");
    }

    // Tag listing and manifest reads too.
    let manifest = ImageManifest::new(
        Descriptor::new(
            MediaType::from_static(media_type::OCI_CONFIG),
            blob.digest.clone(),
            blob.size,
        ),
        vec![],
    )
    .to_json();
    let pushed = memory
        .push_manifest(
            &repo,
            manifest.into(),
            &MediaType::from_static(media_type::OCI_MANIFEST),
            &PushManifestParams::new().with_tag("v1".parse().unwrap()),
        )
        .await
        .unwrap();
    proxy.add(Rule::new(
        Some("GET"),
        "/tags/list",
        2,
        Fault::Answer(503, vec![]),
    ));
    proxy.add(Rule::new(
        None,
        "/manifests/",
        2,
        Fault::Answer(503, vec![]),
    ));
    let tags: Vec<oci_types::Tag> =
        futures::TryStreamExt::try_collect(client.tags(&repo, &Default::default()))
            .await
            .unwrap();
    assert_eq!(tags, ["v1".parse().unwrap()]);
    assert_eq!(
        client
            .resolve_tag(&repo, &"v1".parse().unwrap())
            .await
            .unwrap()
            .digest,
        pushed.digest
    );
    assert_eq!(proxy.pending_faults(), 0);

    // Longer than the attempts: an error with the status, after 5 attempts.
    proxy.clear_log();
    proxy.add(Rule::new(
        Some("HEAD"),
        "/blobs/",
        50,
        Fault::Answer(503, vec![]),
    ));
    let error = client
        .resolve_blob(&repo, &blob.digest)
        .await
        .expect_err("503 every time");
    assert!(
        error.to_string().contains("503"),
        "the error names the status: {error}"
    );
    assert_eq!(proxy.log().len(), 5, "exactly the attempts allowed");
}

/// The request that starts an upload (`POST /v2/<name>/blobs/uploads/`, no body) answered
/// 503 twice: 503 says the request was not processed, and the POST carries no body, so it can
/// be sent again; the push goes through.
#[tokio::test]
async fn an_upload_start_answered_503_is_retried() {
    let (listening, memory) = server(false).await;
    let proxy = Proxy::start(listening.local_addr()).await;
    let repo = repo("upload-start-unavailable");
    let client = client(&proxy, None).await;
    let content = seeded_bytes(5, 100_000);
    proxy.add(Rule::new(
        Some("POST"),
        "/blobs/uploads/",
        2,
        Fault::Answer(503, vec![]),
    ));
    let pushed = client
        .push_blob_bytes(&repo, octet(), content.clone())
        .await;
    let pushed = pushed.unwrap_or_else(|e| {
        panic!(
            "a blob push whose upload start got 503 twice fails instead of being retried: {e}; \
             requests: {:?}",
            steps(&proxy.log())
        )
    });
    assert!(
        memory
            .get_blob_bytes(&repo, &pushed.digest, 1 << 20)
            .await
            .unwrap()
            == content
    );
}

/// A chunk of a chunked upload (`PATCH` with `Content-Range`, the chunk in hand) answered 503
/// twice: sending it again is harmless (the registry checks the range), and the push goes
/// through.
#[tokio::test]
async fn an_upload_chunk_answered_503_is_retried() {
    let (listening, memory) = server(false).await;
    let proxy = Proxy::start(listening.local_addr()).await;
    let repo = repo("upload-chunk-unavailable");
    let client = RegistryClient::builder(&proxy.host())
        .with_credential_files(Vec::new())
        .with_retry(RetryPolicy::default().with_base_delay(Duration::from_millis(50)))
        .with_monolithic_limit(10_000)
        .with_chunk_size(30_000)
        .build()
        .await
        .unwrap();
    let content = seeded_bytes(15, 100_000);
    proxy.add(Rule::new(
        Some("PATCH"),
        "/blobs/uploads/",
        2,
        Fault::Answer(503, vec![]),
    ));
    let pushed = client
        .push_blob_bytes(&repo, octet(), content.clone())
        .await;
    let pushed = pushed.unwrap_or_else(|e| {
        panic!(
            "a chunked push whose first PATCH got 503 twice fails instead of being retried: {e}; \
             requests: {:?}",
            steps(&proxy.log())
        )
    });
    assert!(
        memory
            .get_blob_bytes(&repo, &pushed.digest, 1 << 20)
            .await
            .unwrap()
            == content
    );
}

/// The closing `PUT` of a monolithic push streams the caller's body, which cannot be sent
/// twice: answered 429 with `Retry-After`, the push fails with `TOOMANYREQUESTS` carrying the
/// delay (for the caller to retry), and nothing is stored.
#[tokio::test]
async fn a_streamed_upload_answered_429_fails_with_the_delay_and_stores_nothing() {
    let (listening, memory) = server(false).await;
    let proxy = Proxy::start(listening.local_addr()).await;
    let repo = repo("upload-put-slow-down");
    let client = client(&proxy, None).await;
    let content = seeded_bytes(16, 2 << 20);
    proxy.add(Rule::new(
        Some("PUT"),
        "/blobs/uploads/",
        1,
        Fault::Answer(429, vec![("Retry-After".to_owned(), "1".to_owned())]),
    ));
    let error = client
        .push_blob_bytes(&repo, octet(), content.clone())
        .await
        .expect_err("a streamed body is not sent twice");
    assert_eq!(error.code(), Some(ErrorCode::TooManyRequests), "{error}");
    assert!(
        matches!(
            error,
            oci_store::Error::TooManyRequests {
                retry_after: Some(delay)
            } if delay == Duration::from_secs(1)
        ),
        "the delay asked is kept: {error:?}"
    );
    assert_nothing_stored(&memory, &repo, &Digest::sha256(&content)).await;
    // Sent again by the caller, it goes through.
    client
        .push_blob_bytes(&repo, octet(), content.clone())
        .await
        .unwrap();
}

fn steps(log: &[Seen]) -> Vec<(String, String, u16)> {
    log.iter()
        .map(|s| (s.method.clone(), s.path().to_owned(), s.status))
        .collect()
}

/// A redirected blob download is followed; the other host gets no `Authorization` header (the
/// client has basic credentials, sent to the registry with every request), and the content is
/// verified. A resumption after a cut goes through the registry again, and to the other host
/// with `Range`, still without credentials.
#[tokio::test]
async fn a_redirect_to_another_host_is_followed_without_credentials() {
    let (listening, memory) = server(true).await;
    let proxy = Proxy::start(listening.local_addr()).await;
    let other = OtherHost::start().await;
    let repo = repo("redirected");
    let content = seeded_bytes(6, 256 * 1024);
    let blob = stored(&memory, &repo, &content).await;
    other.serve(&blob.digest, content.clone());
    let client = client(
        &proxy,
        Some(Credentials::Basic {
            username: USER.to_owned(),
            password: PASSWORD.to_owned(),
        }),
    )
    .await;
    proxy.add(
        Rule::new(
            Some("GET"),
            &format!("/blobs/{}", blob.digest),
            2,
            Fault::RedirectTo(other.url()),
        )
        .authenticated(),
    );
    let got = client
        .get_blob_bytes(&repo, &blob.digest, 1 << 20)
        .await
        .unwrap();
    assert!(got == content);
    let to_registry = blob_gets(&proxy.log(), &blob.digest);
    assert!(
        to_registry.iter().any(|s| s.status == 307
            && s.action.starts_with("RedirectTo")
            && s.header("authorization").is_some()),
        "the registry was asked with credentials and redirected: {to_registry:#?}"
    );
    let seen = other.log();
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(seen[0].method, "GET");
    for request in &seen {
        assert_eq!(
            request.header("authorization"),
            None,
            "credentials leaked to the other host: {request:#?}"
        );
    }

    // A download cut off mid-way: the resumption goes back to the registry (with credentials),
    // which redirects; the other host is asked for the rest with `Range`, without them.
    let other_content = seeded_bytes(7, 256 * 1024);
    let second = stored(&memory, &repo, &other_content).await;
    other.serve(&second.digest, other_content.clone());
    proxy.add(Rule::new(
        Some("GET"),
        &format!("/blobs/{}", second.digest),
        1,
        Fault::CutAfter(70_000),
    ));
    proxy.add(
        Rule::new(
            Some("GET"),
            &format!("/blobs/{}", second.digest),
            1,
            Fault::RedirectTo(other.url()),
        )
        .authenticated(),
    );
    let got = client
        .get_blob_bytes(&repo, &second.digest, 1 << 20)
        .await
        .unwrap();
    assert!(got == other_content);
    let seen: Vec<Seen> = other
        .log()
        .into_iter()
        .filter(|s| s.path().ends_with(second.digest.as_str()))
        .collect();
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(
        seen[0].header("range"),
        Some(format!("bytes=70000-{}", other_content.len() - 1).as_str())
    );
    assert_eq!(seen[0].header("authorization"), None);
}

/// The other host serves wrong content: the read fails with `DIGEST_INVALID`.
#[tokio::test]
async fn wrong_content_from_the_other_host_is_refused() {
    let (listening, memory) = server(false).await;
    let proxy = Proxy::start(listening.local_addr()).await;
    let other = OtherHost::start().await;
    let repo = repo("redirected-wrong");
    let content = seeded_bytes(8, 50_000);
    let blob = stored(&memory, &repo, &content).await;
    let mut wrong = content.to_vec();
    wrong[25_000] ^= 1;
    other.serve(&blob.digest, Bytes::from(wrong));
    let client = client(&proxy, None).await;
    proxy.add(Rule::new(
        Some("GET"),
        "/blobs/",
        1,
        Fault::RedirectTo(other.url()),
    ));
    let error = client
        .get_blob_bytes(&repo, &blob.digest, 1 << 20)
        .await
        .expect_err("wrong content is not returned");
    assert_eq!(error.code(), Some(ErrorCode::DigestInvalid), "{error}");
}

/// A byte damaged in transit on the way down: reading the blob (or a manifest) fails with
/// `DIGEST_INVALID` rather than return it.
#[tokio::test]
async fn a_byte_damaged_on_the_way_down_is_refused() {
    let (listening, memory) = server(false).await;
    let proxy = Proxy::start(listening.local_addr()).await;
    let repo = repo("damaged-down");
    let content = seeded_bytes(9, 200_000);
    let blob = stored(&memory, &repo, &content).await;
    let client = client(&proxy, None).await;
    proxy.add(Rule::new(
        Some("GET"),
        "/blobs/",
        1,
        Fault::CorruptResponse(123_456),
    ));
    let error = client
        .get_blob_bytes(&repo, &blob.digest, 1 << 20)
        .await
        .expect_err("damaged content is not returned");
    assert_eq!(error.code(), Some(ErrorCode::DigestInvalid), "{error}");

    // A manifest too.
    let manifest = ImageManifest::new(
        Descriptor::new(
            MediaType::from_static(media_type::OCI_CONFIG),
            blob.digest.clone(),
            blob.size,
        ),
        vec![],
    )
    .to_json();
    let pushed = memory
        .push_manifest(
            &repo,
            manifest.into(),
            &MediaType::from_static(media_type::OCI_MANIFEST),
            &PushManifestParams::new(),
        )
        .await
        .unwrap();
    proxy.add(Rule::new(
        Some("GET"),
        "/manifests/",
        1,
        Fault::CorruptResponse(20),
    ));
    let error = client
        .get_manifest(&repo, &pushed.digest)
        .await
        .unwrap()
        .bytes(1 << 20)
        .await
        .expect_err("a damaged manifest is not returned");
    assert_eq!(error.code(), Some(ErrorCode::DigestInvalid), "{error}");
}

/// A byte damaged in transit on the way up: the server refuses the upload and stores nothing;
/// the client reports `DIGEST_INVALID`. Monolithic and chunked alike.
#[tokio::test]
async fn a_byte_damaged_on_the_way_up_is_not_stored() {
    let (listening, memory) = server(false).await;
    let proxy = Proxy::start(listening.local_addr()).await;
    let repo = repo("damaged-up");
    let client = client(&proxy, None).await;
    let content = seeded_bytes(10, 2 << 20);
    let digest = Digest::sha256(&content);
    proxy.add(Rule::new(
        Some("PUT"),
        "/blobs/uploads/",
        1,
        Fault::CorruptRequest(5_000),
    ));
    let error = client
        .push_blob_bytes(&repo, octet(), content.clone())
        .await
        .expect_err("a damaged upload is refused");
    assert_eq!(error.code(), Some(ErrorCode::DigestInvalid), "{error}");
    assert_nothing_stored(&memory, &repo, &digest).await;

    // Chunked: a PATCH damaged.
    let chunked = chunked_client(&proxy).await;
    proxy.add(Rule::new(
        Some("PATCH"),
        "/blobs/uploads/",
        1,
        Fault::CorruptRequest(17),
    ));
    let error = chunked
        .push_blob_bytes(&repo, octet(), content.clone())
        .await
        .expect_err("a damaged chunked upload is refused");
    assert_eq!(error.code(), Some(ErrorCode::DigestInvalid), "{error}");
    assert_nothing_stored(&memory, &repo, &digest).await;
    let patches = proxy.log().iter().filter(|s| s.method == "PATCH").count();
    assert!(
        patches >= 3,
        "the upload went in chunks ({patches} PATCHes)"
    );
}

/// A push whose body does not match the size the caller stated: the client's own check aborts
/// the body before the server can commit it, and nothing is stored.
#[tokio::test]
async fn a_push_with_a_wrong_size_stores_nothing() {
    let (listening, memory) = server(false).await;
    let proxy = Proxy::start(listening.local_addr()).await;
    let repo = repo("wrong-size");
    let client = client(&proxy, None).await;
    let content = seeded_bytes(11, 100_000);
    let digest = Digest::sha256(&content);
    for stated in [content.len() as u64 + 1, content.len() as u64 - 1] {
        let descriptor = Descriptor::new(octet(), digest.clone(), stated);
        let error = client
            .push_blob(
                &repo,
                &descriptor,
                oci_store::body_from_bytes(content.clone()),
            )
            .await
            .expect_err("a body of the wrong size is refused");
        assert_eq!(
            error.code(),
            Some(ErrorCode::SizeInvalid),
            "stated {stated}: {error}"
        );
        assert_nothing_stored(&memory, &repo, &digest).await;
    }
    // And the right size goes through the same way.
    let descriptor = Descriptor::new(octet(), digest.clone(), content.len() as u64);
    client
        .push_blob(&repo, &descriptor, oci_store::body_from_bytes(content))
        .await
        .unwrap();
    memory.resolve_blob(&repo, &digest).await.unwrap();
}

/// A copy pushes another store's verified read, which the client then does not hash again
/// (the read's own check runs as it streams): corrupt content must still end the upload
/// before the registry commits it, reported as `DIGEST_INVALID`, in each upload strategy.
#[tokio::test]
async fn a_corrupt_verified_read_pushed_without_a_second_hash_stores_nothing() {
    let (listening, memory) = server(false).await;
    let proxy = Proxy::start(listening.local_addr()).await;
    let repo = repo("lying-read");
    let streamed = client(&proxy, None).await;
    let chunked = chunked_client(&proxy).await;
    // One POST (small), POST + streamed PUT, and chunks.
    for (client, size) in [
        (&streamed, 100_000),
        (&streamed, 2 << 20),
        (&chunked, 100_000),
    ] {
        let content = seeded_bytes(12, size);
        let descriptor = Descriptor::new(octet(), Digest::sha256(&content), size as u64);
        let mut damaged = content.to_vec();
        damaged[size / 2] ^= 1;
        let body = BlobReader::verified(descriptor.clone(), oci_store::body_from_bytes(damaged))
            .into_stream();
        let error = client
            .push_blob(&repo, &descriptor, body)
            .await
            .expect_err("corrupt content is refused");
        assert_eq!(
            error.code(),
            Some(ErrorCode::DigestInvalid),
            "{size}: {error}"
        );
        assert_nothing_stored(&memory, &repo, &descriptor.digest).await;

        let body = BlobReader::verified(descriptor.clone(), oci_store::body_from_bytes(content))
            .into_stream();
        client.push_blob(&repo, &descriptor, body).await.unwrap();
        memory
            .resolve_blob(&repo, &descriptor.digest)
            .await
            .unwrap();
        memory.delete_blob(&repo, &descriptor.digest).await.unwrap();
    }
}

// ---- upload strategies ----

/// A small blob goes in one request, `POST ?digest=` with the body, where the registry takes
/// it (hoist's server does); a registry that answers it with a new upload instead gets a PUT
/// (see `client_peers`, against the CNCF registry, which ignores such bodies).
#[tokio::test]
async fn a_small_blob_is_pushed_in_one_post() {
    let (listening, memory) = server(false).await;
    let proxy = Proxy::start(listening.local_addr()).await;
    let repo = repo("single-post");
    let client = client(&proxy, None).await;
    let content = seeded_bytes(11, 4000);
    let pushed = client
        .push_blob_bytes(&repo, octet(), content.clone())
        .await
        .unwrap();
    let uploads: Vec<_> = steps(&proxy.log())
        .into_iter()
        .filter(|(_, path, _)| path.contains("/blobs/uploads/"))
        .collect();
    assert_eq!(
        uploads,
        vec![("POST".to_owned(), format!("/v2/{repo}/blobs/uploads/"), 201)],
        "one POST with the body, answered 201"
    );
    assert_eq!(
        memory
            .get_blob_bytes(&repo, &pushed.digest, 1 << 20)
            .await
            .unwrap(),
        content
    );
}

/// A registry that refuses a whole-blob PUT with 413 (a proxy with a body limit, say): the
/// push fails, and the client sends blobs that big in chunks from then on; the copy engine
/// sends the blob again by itself, so a copy goes through.
#[tokio::test]
async fn a_put_refused_as_too_large_is_sent_again_in_chunks() {
    let (listening, memory) = server(false).await;
    let proxy = Proxy::start(listening.local_addr()).await;
    let repo = repo("put-too-large");
    let client = client(&proxy, None).await;
    let content = seeded_bytes(12, 3 << 20);
    proxy.add(Rule::new(
        Some("PUT"),
        "/blobs/uploads/",
        1,
        Fault::Answer(413, vec![]),
    ));
    let error = client
        .push_blob_bytes(&repo, octet(), content.clone())
        .await
        .expect_err("the PUT was refused");
    assert_eq!(error.http_status(), 413, "{error}");
    let digest = Digest::sha256(&content);
    assert_nothing_stored(&memory, &repo, &digest).await;

    proxy.clear_log();
    client
        .push_blob_bytes(&repo, octet(), content.clone())
        .await
        .unwrap();
    let log = steps(&proxy.log());
    assert!(
        log.iter().any(|(method, _, _)| method == "PATCH"),
        "chunks after the 413: {log:?}"
    );
    assert_eq!(
        memory
            .get_blob_bytes(&repo, &digest, 8 << 20)
            .await
            .unwrap(),
        content
    );
}

/// The copy engine over the same refusal: the first attempt gets 413, the second goes in
/// chunks, and the image lands whole.
#[tokio::test]
async fn a_copy_gets_past_a_put_refused_as_too_large() {
    let (listening, memory) = server(false).await;
    let proxy = Proxy::start(listening.local_addr()).await;
    let repo = repo("copy-put-too-large");
    let client = client(&proxy, None).await;
    let source = MemoryStore::new();
    let layer = stored(&source, &repo, &seeded_bytes(13, 3 << 20)).await;
    let config = source
        .push_blob_bytes(
            &repo,
            MediaType::from_static(media_type::OCI_CONFIG),
            Bytes::from_static(b"{}"),
        )
        .await
        .unwrap();
    let tag = oci_types::Tag::parse("v1").unwrap();
    let manifest = ImageManifest::new(config, vec![layer.clone()]).to_json();
    source
        .push_manifest(
            &repo,
            manifest.into(),
            &MediaType::from_static(media_type::OCI_MANIFEST),
            &PushManifestParams::new().with_tag(tag.clone()),
        )
        .await
        .unwrap();
    proxy.add(Rule::new(
        Some("PUT"),
        "/blobs/uploads/",
        1,
        Fault::Answer(413, vec![]),
    ));
    let report = oci_build::copy(
        oci_build::Endpoint::new(&source, &repo),
        &oci_build::ManifestRef::Tag(tag.clone()),
        oci_build::Endpoint::new(&client, &repo),
        std::slice::from_ref(&tag),
        &oci_build::CopyOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(report.blobs_copied, 2);
    assert_eq!(proxy.pending_faults(), 0, "the 413 was met");
    assert_eq!(
        memory.resolve_tag(&repo, &tag).await.unwrap().digest,
        report.root.unwrap().digest
    );
    assert!(memory.resolve_blob(&repo, &layer.digest).await.is_ok());
}
