//! HTTP: the pooled hyper client over rustls, which registries get plain HTTP, and one request
//! sent with authentication, retries and redirects.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use oci_store::{BlobBody, Error as StoreError, FileSpan};
use rand::Rng;

use crate::proxy::{ProxyConnector, ProxyError, ProxyRules, redacted};
use crate::send_file;

/// The body of a request.
pub(crate) type RequestBody = UnsyncBoxBody<Bytes, StoreError>;

/// The pooled client, and the proxy rules its connector follows.
pub(crate) struct HttpClient {
    client: Client<HttpsConnector<ProxyConnector>, RequestBody>,
    /// The connector under TLS, for requests sent beside the pool (a file's span).
    plain: ProxyConnector,
    proxies: Arc<ProxyRules>,
}

impl HttpClient {
    /// Sends a request, with the proxy's credentials when it is forwarded to a proxy (a
    /// tunnel carries them in its `CONNECT` instead).
    pub(crate) fn request(&self, mut request: Request<RequestBody>) -> send_file::Answer {
        self.add_proxy_authorization(&mut request);
        let answer = self.client.request(request);
        Box::pin(async move { answer.await.map_err(send_file::SendError::from) })
    }

    /// Sends `request` (a plain-HTTP one) with `span` as its body, by `sendfile(2)` on a
    /// connection of its own ([`send_file`]).
    pub(crate) fn send_file(
        &self,
        mut request: Request<RequestBody>,
        span: FileSpan,
        progress: Arc<BodyProgress>,
    ) -> send_file::Answer {
        self.add_proxy_authorization(&mut request);
        Box::pin(send_file::send(self.plain.clone(), request, span, progress))
    }

    fn add_proxy_authorization(&self, request: &mut Request<RequestBody>) {
        if request.uri().scheme_str() == Some("http")
            && let Some(proxy) = self.proxies.route(request.uri())
            && let Some(authorization) = proxy.basic_auth()
        {
            request
                .headers_mut()
                .insert(header::PROXY_AUTHORIZATION, authorization.clone());
        }
    }

    /// The proxy a request to `uri` goes through, with its password hidden.
    pub(crate) fn proxy_for(&self, uri: &Uri) -> Option<String> {
        self.proxies
            .route(uri)
            .map(|proxy| redacted(&proxy.uri().to_string()))
    }
}

/// When a failed request is tried again.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// How many times a request is sent at most.
    pub attempts: u32,
    /// The delay before the first retry; it doubles each time, with jitter.
    pub base_delay: Duration,
    /// The longest delay, including one a server asks for with `Retry-After`.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Never retry.
    pub fn none() -> Self {
        Self {
            attempts: 1,
            ..Self::default()
        }
    }

    /// Sets the number of attempts.
    pub fn with_attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// Sets the first delay.
    pub fn with_base_delay(mut self, delay: Duration) -> Self {
        self.base_delay = delay;
        self
    }

    /// The delay before retry number `retry` (1-based): exponential with full jitter in its
    /// upper half, or what the server asked for, capped.
    pub(crate) fn delay(&self, retry: u32, asked: Option<Duration>) -> Duration {
        if let Some(asked) = asked {
            return asked.min(self.max_delay);
        }
        let exponential = self
            .base_delay
            .saturating_mul(1 << retry.saturating_sub(1).min(16));
        let capped = exponential.min(self.max_delay);
        let jitter = rand::rng().random_range(0.5..=1.0);
        // A `max_delay` near `Duration::MAX` (a field anyone can set) is past what a product
        // of floats gives back: such a delay is waited whole.
        Duration::try_from_secs_f64(capped.as_secs_f64() * jitter).unwrap_or(capped)
    }
}

/// Whether `host` (with its port) is on this machine, where registries speak plain HTTP by
/// default: `localhost`, `127.0.0.0/8`, `[::1]`.
pub(crate) fn is_loopback(host: &str) -> bool {
    let without_port = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(h, port)| {
            if port.chars().all(|c| c.is_ascii_digit()) {
                h
            } else {
                host
            }
        })
    };
    without_port == "localhost"
        || without_port == "::1"
        || without_port
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A request body that can be sent again (for retries and auth round trips) or only once.
pub(crate) enum Body {
    Empty,
    Bytes(Bytes),
    /// Sent once: a request with this body is not retried.
    Stream(Option<BlobBody>),
    /// A span of a file, sent by `sendfile(2)` over plain HTTP ([`send_file`]); like a
    /// stream, not sent twice: a registry may keep what reached it of a broken upload.
    File(FileSpan),
}

impl Body {
    /// The body to send now; a stream's pieces mark `progress` as the connection takes them.
    pub(crate) fn take(&mut self, progress: &Arc<BodyProgress>) -> Option<RequestBody> {
        Some(match self {
            Self::Empty => Empty::new().map_err(|never| match never {}).boxed_unsync(),
            Self::Bytes(bytes) => Full::new(bytes.clone())
                .map_err(|never| match never {})
                .boxed_unsync(),
            Self::Stream(stream) => {
                progress.streamed.store(true, Ordering::Relaxed);
                let progress = Arc::clone(progress);
                let pieces = stream.take()?.map(move |piece| {
                    progress.mark(piece.as_ref().map_or(0, Bytes::len));
                    piece.map(Frame::data)
                });
                StreamBody::new(pieces).boxed_unsync()
            }
            // Sent beside the request, which has an empty body of its own.
            Self::File(_) => {
                progress.streamed.store(true, Ordering::Relaxed);
                Empty::new().map_err(|never| match never {}).boxed_unsync()
            }
        })
    }

    pub(crate) fn replayable(&self) -> bool {
        !matches!(self, Self::Stream(_) | Self::File(_))
    }

    /// The file's span this body is, if it is one.
    pub(crate) fn file_span(&self) -> Option<&FileSpan> {
        match self {
            Self::File(span) => Some(span),
            _ => None,
        }
    }
}

/// When the connection last took a piece of a streamed request body, and how much it took:
/// an upload that moves, however slowly, is waited for; one that stopped is not.
#[derive(Debug)]
pub(crate) struct BodyProgress {
    started: Instant,
    /// Milliseconds from `started` to the last piece taken.
    last: AtomicU64,
    /// Bytes taken so far.
    sent: AtomicU64,
    /// Whether the body is streamed (an upload) rather than held whole (or empty).
    streamed: AtomicBool,
}

/// How many stall timeouts a request without a streamed body may wait for its answer: a
/// registry that caches another (a pull-through mirror) may fetch a whole blob from upstream
/// before it answers.
const ANSWER_STALLS: u32 = 5;

/// How much longer than the stall timeout a registry may take to answer an upload, per byte
/// of it: once the body is sent, a registry commits it (it may hash it, or copy it within its
/// object storage: minutes for a layer of many GiB), and says nothing meanwhile.
const COMMIT_BYTES_PER_SECOND: u64 = 10 << 20;

impl BodyProgress {
    pub(crate) fn new() -> Self {
        Self {
            started: Instant::now(),
            last: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            streamed: AtomicBool::new(false),
        }
    }

    pub(crate) fn mark(&self, bytes: usize) {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(now, Ordering::Relaxed);
        self.sent.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// How long since the body last moved (or since the request was built).
    pub(crate) fn quiet_for(&self) -> Duration {
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    /// How long the request may stay quiet: with a streamed body, `stall` and a second more
    /// for every [`COMMIT_BYTES_PER_SECOND`] of it sent; without, [`ANSWER_STALLS`] stalls.
    pub(crate) fn patience(&self, stall: Duration) -> Duration {
        if !self.streamed.load(Ordering::Relaxed) {
            return stall.saturating_mul(ANSWER_STALLS);
        }
        let sent = self.sent.load(Ordering::Relaxed);
        stall.saturating_add(Duration::from_millis(
            sent.saturating_mul(1000) / COMMIT_BYTES_PER_SECOND,
        ))
    }
}

/// Waits for the answer to a request, for as long as its streamed body (if any) keeps moving:
/// `None` when the request stays quiet for longer than its patience (`stall`, more after a
/// large body: [`BodyProgress::patience`]), with no answer and no piece of the body taken (a
/// registry, a token endpoint or a proxy that accepted the connection and went silent).
pub(crate) async fn answer_within<F: std::future::Future>(
    answer: F,
    progress: &BodyProgress,
    stall: Duration,
) -> Option<F::Output> {
    let mut answer = std::pin::pin!(answer);
    loop {
        let wait = progress
            .patience(stall)
            .saturating_sub(progress.quiet_for());
        if wait.is_zero() {
            return None;
        }
        if let Ok(answered) = tokio::time::timeout(wait, answer.as_mut()).await {
            return Some(answered);
        }
    }
}

/// One request, as built by the client: enough to send it again.
pub(crate) struct Call {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Body,
}

impl Call {
    pub(crate) fn new(method: Method, uri: Uri) -> Self {
        Self {
            method,
            uri,
            headers: HeaderMap::new(),
            body: Body::Empty,
        }
    }

    pub(crate) fn header(mut self, name: header::HeaderName, value: &str) -> Self {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.headers.insert(name, value);
        }
        self
    }

    pub(crate) fn body(mut self, body: Body) -> Self {
        self.body = body;
        self
    }

    /// Whether sending it twice is harmless (and its body can be sent twice).
    pub(crate) fn retryable(&self) -> bool {
        // Every request hoist sends with a replayable body is safe to repeat: GET, HEAD, PUT
        // and DELETE are idempotent, a PATCH carries its Content-Range (a repeat the registry
        // already has is refused, not appended), and a repeated POST at worst opens an upload
        // that is never used.
        self.body.replayable()
    }

    /// The request to send now, with `authorization` if any; a streamed body marks `progress`.
    pub(crate) fn build(
        &mut self,
        authorization: Option<&HeaderValue>,
        progress: &Arc<BodyProgress>,
    ) -> Option<Request<RequestBody>> {
        let body = self.body.take(progress)?;
        let mut request = Request::builder()
            .method(self.method.clone())
            .uri(self.uri.clone())
            .body(body)
            .ok()?;
        *request.headers_mut() = self.headers.clone();
        if let Some(value) = authorization {
            request
                .headers_mut()
                .insert(header::AUTHORIZATION, value.clone());
        }
        Some(request)
    }
}

/// Whether a status is worth another try.
pub(crate) fn transient(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
}

/// The `Retry-After` of a response, in seconds (the HTTP-date form is not used by registries).
pub(crate) fn retry_after(response: &Response<Incoming>) -> Option<Duration> {
    let seconds: u64 = response
        .headers()
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds))
}

/// Builds the pooled HTTPS-capable client, reaching registries through `proxies`.
pub(crate) fn http_client(tls: rustls::ClientConfig, proxies: ProxyRules) -> HttpClient {
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(Some(Duration::from_secs(30)));
    let proxies = Arc::new(proxies);
    let plain = ProxyConnector {
        tcp,
        rules: Arc::clone(&proxies),
    };
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(plain.clone());
    let client = Client::builder(TokioExecutor::new())
        // hyper grows a connection's read buffer up to ~400 KiB while the body is consumed
        // as fast as it arrives, and a piece handed on keeps its buffer alive while the next
        // is read: four downloads at once then held more memory than skopeo's whole process.
        .http1_max_buf_size(HTTP1_MAX_BUFFER)
        .build(connector);
    HttpClient {
        client,
        plain,
        proxies,
    }
}

/// A failure of a request that sending it again will not mend.
#[derive(Debug)]
pub(crate) enum Permanent<'a> {
    /// The registry's certificate (or the handshake around it) was refused.
    Tls(&'a rustls::Error),
    /// A proxy refused the tunnel for a reason of its own.
    Proxy(&'a ProxyError),
}

/// Looks through a failed request's chain of causes for one that makes retrying pointless: a
/// TLS failure (a certificate is not trusted, or not the registry's, until someone changes
/// something: a retry only makes the user wait for the same answer), or a proxy's refusal.
pub(crate) fn permanent_failure<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<Permanent<'a>> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(Permanent::Tls(tls));
        }
        if let Some(proxy) = error.downcast_ref::<ProxyError>()
            && !proxy.transient()
        {
            return Some(Permanent::Proxy(proxy));
        }
        // An io::Error's `source` skips the error it wraps (it is the wrapped error's own
        // source): look at the wrapped one itself, which is where rustls's error sits.
        next = match error.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => error.source(),
        };
    }
    None
}

/// The largest read buffer of an HTTP/1 connection (also the limit of a response head, which a
/// registry keeps to a few KiB): small enough that a pull of many layers four at a time stays
/// within oras's memory, at the cost of more, smaller reads.
pub(crate) const HTTP1_MAX_BUFFER: usize = 64 << 10;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_recognised() {
        for host in [
            "localhost",
            "localhost:5000",
            "127.0.0.1",
            "127.0.0.1:5000",
            "127.1.2.3:80",
            "[::1]",
            "[::1]:5000",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "docker.io",
            "ghcr.io:443",
            "10.0.0.1:5000",
            "[::2]:5000",
            "localhost.example.com",
            "128.0.0.1",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn certificate_failures_inside_io_errors_are_permanent() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        // As hyper-rustls reports it: tokio-rustls's io::Error wrapped in another one, boxed
        // by the connector.
        let inner = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
        let outer: Box<dyn std::error::Error + Send + Sync> =
            Box::new(std::io::Error::other(inner));
        assert!(matches!(
            permanent_failure(outer.as_ref()),
            Some(Permanent::Tls(rustls::Error::InvalidCertificate(_)))
        ));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(permanent_failure(&refused).is_none());
    }

    #[test]
    fn delays_grow_and_honour_retry_after() {
        let policy = RetryPolicy::default();
        let first = policy.delay(1, None);
        assert!(
            first >= Duration::from_millis(100) && first <= Duration::from_millis(200),
            "{first:?}"
        );
        let fourth = policy.delay(4, None);
        assert!(
            fourth >= Duration::from_millis(800) && fourth <= Duration::from_millis(1600),
            "{fourth:?}"
        );
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(
            policy.delay(1, Some(Duration::from_secs(3600))),
            policy.max_delay
        );
        assert!(policy.delay(40, None) <= policy.max_delay);
        let unbounded = RetryPolicy {
            max_delay: Duration::MAX,
            base_delay: Duration::MAX,
            ..RetryPolicy::default()
        };
        assert!(unbounded.delay(3, None) > Duration::from_secs(1 << 60));
    }
}
