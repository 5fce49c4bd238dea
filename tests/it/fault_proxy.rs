//! A fault-injecting HTTP/1.1 proxy ([`Proxy`]) to put between a registry client and a server,
//! and another host to redirect to ([`OtherHost`]): shared by `client_faults` (the client
//! against a misbehaving network), `client_peers` (token counting) and `fault_matrix` (the
//! copy engine and the server through faults at every point of a transfer).
//!
//! The proxy is HTTP/1.1 with `Connection: close`: one request per connection, which it reads
//! the head of, logs, and then answers itself or forwards, copying the rest of both directions
//! byte for byte (with the scripted damage).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use oci_types::Digest;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

// ---- the proxy ----

/// What the proxy does to a request a [`Rule`] matches.
///
/// The response faults that name a byte offset apply to successful (2xx) responses only, and
/// count bytes of the body as sent (for a chunked body, its framing included); an offset at or
/// past the end of a shorter body leaves it whole.
#[derive(Debug, Clone)]
pub(crate) enum Fault {
    /// Answers itself with this status and these headers (and an empty body).
    Answer(u16, Vec<(String, String)>),
    /// Answers `307 Temporary Redirect` to this base URL followed by the request's path.
    RedirectTo(String),
    /// Forwards, then closes the connection (a clean end, FIN) after this many bytes of the
    /// response body: a body shorter than its `Content-Length`.
    CutAfter(usize),
    /// Forwards, then resets the connection (RST) after this many bytes of the response body.
    ResetAfter(usize),
    /// Forwards, then resets the connection after this many bytes of the response head (its
    /// status line and headers), whatever the status: the request was processed upstream, the
    /// answer is lost.
    ResetInHead(usize),
    /// Forwards this many bytes of the response body, then sends nothing more while keeping the
    /// connection open (for a minute at most).
    StallAfter(usize),
    /// Forwards the request, then sends nothing back while keeping the connection open (for a
    /// minute at most): a registry that took the request and went silent.
    StallHead,
    /// Forwards the request, and the answer only after this long: a registry that takes its
    /// time (committing a large upload, say).
    DelayHead(Duration),
    /// Forwards the request head and this many bytes of its body, then reads nothing more
    /// from the client, keeping the connection open (for a minute at most): the client's
    /// upload stops moving once the connection's buffers are full.
    StallRequestAfter(usize),
    /// Forwards this many bytes of the response body, pauses this long, then sends the rest: a
    /// slow body that does arrive.
    DelayAfter(usize, Duration),
    /// Forwards the response body this many bytes at a time, pausing this long after each: a
    /// slow upstream whose body keeps moving.
    Throttle(usize, Duration),
    /// Forwards the request head and this many bytes of the request body, then resets both
    /// connections: the upstream sees the body break off, the client a reset before any answer.
    ResetRequestAfter(usize),
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

    /// Drops the faults not used up yet: what follows is forwarded faithfully.
    pub(crate) fn clear_faults(&self) {
        self.state.lock().unwrap().rules.clear();
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
    let (corrupt_request, cut_request, stall_request) = match fault {
        Some(Fault::CorruptRequest(at)) => (Some(at), None, None),
        Some(Fault::ResetRequestAfter(at)) => (None, Some(at), None),
        Some(Fault::StallRequestAfter(at)) => (None, None, Some(at)),
        _ => (None, None, None),
    };
    // Set by the forwarding of the request when it cut the request off: the answer side then
    // resets the client's connection instead of forwarding whatever the upstream says.
    let request_cut = Arc::new(tokio::sync::Notify::new());
    let cut_signal = Arc::clone(&request_cut);
    let rendered = head.render();
    // Client to upstream: the head, then the body as it comes (one byte damaged, or the body
    // cut off, if asked).
    let up = tokio::spawn(async move {
        let mut position = 0usize;
        if upstream_write.write_all(&rendered).await.is_err() {
            return;
        }
        let mut buffer = vec![0u8; 64 * 1024];
        let mut chunk = early_body;
        loop {
            if let Some(at) = corrupt_request
                && (position..position + chunk.len()).contains(&at)
            {
                chunk[at - position] ^= 0xff;
            }
            if let Some(limit) = stall_request
                && position + chunk.len() >= limit
            {
                let _ = upstream_write.write_all(&chunk[..limit - position]).await;
                // Silent but open, reading nothing: only the client's stall timeout ends this.
                tokio::time::sleep(Duration::from_secs(60)).await;
                return;
            }
            if let Some(limit) = cut_request
                && position + chunk.len() >= limit
            {
                let _ = upstream_write.write_all(&chunk[..limit - position]).await;
                let _ = upstream_write.flush().await;
                reset(upstream_write);
                cut_signal.notify_one();
                return;
            }
            position += chunk.len();
            if upstream_write.write_all(&chunk).await.is_err() {
                break;
            }
            match client_read.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => chunk = buffer[..n].to_vec(),
            }
        }
        // Dropping the write half closes it: the upstream sees the end of the body.
    });
    // Upstream to client, until the end of the response or a cut of the request.
    let end = tokio::select! {
        end = forward_response(&mut upstream_read, &mut client_write, fault, &record_status) => end,
        () = request_cut.notified() => End::Reset,
    };
    up.abort();
    match end {
        // Both halves of the client's connection are gone once the forwarding task ends: the
        // connection closes then, reset because of the zero linger.
        End::Reset => reset(client_write),
        // Dropping both halves closes the client's connection: for a cut, mid-body.
        End::Close => {}
    }
}

/// How the client's connection ends.
enum End {
    /// Closed as usual (FIN): after a whole response, or a body cut short on purpose.
    Close,
    /// Reset (RST).
    Reset,
}

/// Makes the connection of `half` end with a reset (RST) rather than a clean close: zero
/// linger, and no shutdown of the write half on drop (which would send a FIN first).
fn reset(half: tokio::net::tcp::OwnedWriteHalf) {
    let _ = half.as_ref().set_zero_linger();
    half.forget();
}

/// Forwards the upstream's response to the client with `fault`'s damage.
async fn forward_response(
    upstream: &mut tokio::net::tcp::OwnedReadHalf,
    client: &mut tokio::net::tcp::OwnedWriteHalf,
    fault: Option<Fault>,
    record_status: &(impl Fn(u16) + Sync),
) -> End {
    if let Some(Fault::StallHead) = fault {
        // Silent but open: only the client's stall timeout ends this.
        tokio::time::sleep(Duration::from_secs(60)).await;
        return End::Close;
    }
    if let Some(Fault::DelayHead(pause)) = fault {
        tokio::time::sleep(pause).await;
    }
    let Some((response_head, early)) = read_head(upstream).await else {
        return End::Close;
    };
    let status = status_of(&response_head);
    record_status(status);
    let mut head_bytes = response_head.into_bytes();
    head_bytes.extend_from_slice(b"\r\n\r\n");
    if let Some(Fault::ResetInHead(n)) = fault {
        let _ = client
            .write_all(&head_bytes[..n.min(head_bytes.len())])
            .await;
        let _ = client.flush().await;
        return End::Reset;
    }
    let ok = (200..300).contains(&status);
    // Where the body stops, and how; where it pauses, and for how long; which byte is damaged.
    let (stop, delay, corrupt) = match fault {
        Some(Fault::CutAfter(n)) if ok => (Some((n, Stop::Close)), None, None),
        Some(Fault::ResetAfter(n)) if ok => (Some((n, Stop::Reset)), None, None),
        Some(Fault::StallAfter(n)) if ok => (Some((n, Stop::Stall)), None, None),
        Some(Fault::DelayAfter(n, pause)) if ok => (None, Some((n, pause)), None),
        Some(Fault::CorruptResponse(n)) if ok => (None, None, Some(n)),
        _ => (None, None, None),
    };
    let mut delay = delay;
    let throttle = match fault {
        Some(Fault::Throttle(bytes, pause)) if ok => Some((bytes, pause)),
        _ => None,
    };
    if client.write_all(&head_bytes).await.is_err() {
        return End::Close;
    }
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
            if let Some((at, pause)) = delay
                && position + chunk.len() > at
            {
                let before = at - position;
                if client.write_all(&chunk[..before]).await.is_err() {
                    return End::Close;
                }
                let _ = client.flush().await;
                tokio::time::sleep(pause).await;
                position += before;
                chunk.drain(..before);
                delay = None;
            }
            if let Some((limit, how)) = &stop
                && position + chunk.len() >= *limit
            {
                let _ = client.write_all(&chunk[..limit - position]).await;
                let _ = client.flush().await;
                return match how {
                    Stop::Close => End::Close,
                    Stop::Reset => End::Reset,
                    Stop::Stall => {
                        // Silent but open: only the client's stall timeout ends this.
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        End::Close
                    }
                };
            }
            position += chunk.len();
            let pieces = throttle.map_or(chunk.len().max(1), |(bytes, _)| bytes.max(1));
            for piece in chunk.chunks(pieces) {
                if client.write_all(piece).await.is_err() {
                    return End::Close;
                }
                if let Some((_, pause)) = throttle {
                    let _ = client.flush().await;
                    tokio::time::sleep(pause).await;
                }
            }
        }
        match upstream.read(&mut buffer).await {
            Ok(0) | Err(_) => return End::Close,
            Ok(n) => pending = buffer[..n].to_vec(),
        }
    }
}

/// How a response body cut short ends.
enum Stop {
    Close,
    Reset,
    Stall,
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
