//! Forward proxies: which requests go through one (the rules of Go's `http.ProxyFromEnvironment`,
//! which docker, containerd, skopeo and crane follow, so one environment means the same to
//! all of them), and the connector that reaches a registry through it.
//!
//! HTTPS registries are reached through a `CONNECT` tunnel, so the proxy sees only the host
//! and port, never a request or a credential. Plain-HTTP registries are reached by forwarding
//! (requests in absolute form sent to the proxy), as Go and curl do: proxies commonly allow
//! `CONNECT` only to port 443 (tinyproxy and squid by default), and a plain-HTTP request hides
//! nothing from the proxy that a tunnel would.

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderValue, Uri};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::proxy::matcher::{Intercept, Matcher};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a proxy may take to answer a `CONNECT`.
const TUNNEL_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest answer head a proxy may send to a `CONNECT`.
const TUNNEL_HEAD_LIMIT: usize = 16 * 1024;

/// Which requests go through which proxy.
pub(crate) struct ProxyRules {
    /// The proxy URLs (parsed by hyper-util, credentials included) and the `NO_PROXY` entries
    /// without a port: domains, IP addresses, CIDR ranges, `*`.
    matcher: Matcher,
    /// The `NO_PROXY` entries with a port (`example.com:5000`, `10.0.0.1:5000`,
    /// `[::1]:5000`), which hyper-util does not take: (host in lower case, port).
    with_port: Vec<(String, u16)>,
    /// Whether any proxy is set at all (for the logs).
    any: bool,
}

impl std::fmt::Debug for ProxyRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The matcher's Debug leaves out credentials.
        f.debug_struct("ProxyRules")
            .field("matcher", &self.matcher)
            .field("with_port", &self.with_port)
            .finish()
    }
}

impl ProxyRules {
    /// The rules of the environment, as Go reads it: `HTTPS_PROXY` for https:// registries,
    /// `HTTP_PROXY` for http:// ones (ignored when `REQUEST_METHOD` says this is a CGI
    /// program, where a client's `Proxy:` header would arrive as `HTTP_PROXY`), `NO_PROXY`;
    /// each name in upper case first, then lower case, the first that is not empty.
    /// `explicit`, if any, is the proxy for both schemes instead of the environment's, with
    /// the environment's `NO_PROXY` still in force.
    pub(crate) fn from_env(
        explicit: Option<&str>,
        var: impl Fn(&str) -> Option<String>,
    ) -> crate::Result<Self> {
        let first = |names: [&'static str; 2]| {
            names.into_iter().find_map(|name| {
                var(name)
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| (name, v))
            })
        };
        let (http, https) = match explicit {
            Some(url) => (
                Some(("the proxy URL", url.to_owned())),
                Some(("the proxy URL", url.to_owned())),
            ),
            None => {
                let cgi = var("REQUEST_METHOD").is_some_and(|v| !v.is_empty());
                (
                    first(["HTTP_PROXY", "http_proxy"]).filter(|_| !cgi),
                    first(["HTTPS_PROXY", "https_proxy"]),
                )
            }
        };
        let no_proxy = first(["NO_PROXY", "no_proxy"]).map(|(_, v)| v);
        Self::new(http, https, no_proxy.as_deref().unwrap_or_default())
    }

    /// Rules from proxy URLs (each with where it came from, for errors) and a `NO_PROXY` list.
    fn new(
        http: Option<(&str, String)>,
        https: Option<(&str, String)>,
        no_proxy: &str,
    ) -> crate::Result<Self> {
        let mut builder = Matcher::builder();
        let any = http.is_some() || https.is_some();
        if let Some((source, url)) = http {
            check_proxy_url(source, &url)?;
            builder = builder.http(url);
        }
        if let Some((source, url)) = https {
            check_proxy_url(source, &url)?;
            builder = builder.https(url);
        }
        let mut without_port = Vec::new();
        let mut with_port = Vec::new();
        for entry in no_proxy
            .split(',')
            .map(|e| e.trim().to_ascii_lowercase())
            .filter(|e| !e.is_empty())
        {
            // Go's `*.example.com` is `.example.com`, which hyper-util takes.
            let entry = match entry.strip_prefix("*.") {
                Some(rest) => format!(".{rest}"),
                None => entry,
            };
            match split_port(&entry) {
                Some((host, port)) => with_port.push((host, port)),
                None => {
                    let unbracketed = entry
                        .strip_prefix('[')
                        .and_then(|e| e.strip_suffix(']'))
                        .filter(|e| e.parse::<IpAddr>().is_ok());
                    without_port.push(unbracketed.map_or(entry.clone(), str::to_owned));
                }
            }
        }
        Ok(Self {
            matcher: builder.no(without_port.join(",")).build(),
            with_port,
            any,
        })
    }

    /// The proxy for a request to `uri`, if it goes through one.
    pub(crate) fn route(&self, uri: &Uri) -> Option<Intercept> {
        if !self.any {
            return None;
        }
        let host = uri.host()?;
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let ip = bare.parse::<IpAddr>().ok();
        // As Go does: a proxy cannot reach this machine's loopback, which is its own.
        if bare.eq_ignore_ascii_case("localhost")
            || ip.is_some_and(|ip| ip.to_canonical().is_loopback())
        {
            return None;
        }
        let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
            Some("http") => 80,
            _ => 443,
        });
        let bare = bare.to_ascii_lowercase();
        let excluded = self.with_port.iter().any(|(entry, entry_port)| {
            *entry_port == port
                && match (ip, entry.parse::<IpAddr>()) {
                    (Some(ip), Ok(entry)) => ip == entry,
                    (None, Err(_)) => domain_matches(entry, &bare),
                    _ => false,
                }
        });
        if excluded {
            return None;
        }
        self.matcher.intercept(uri)
    }
}

/// Refuses a proxy URL hoist cannot use: only `http://` proxies (or a bare `host:port`) are
/// spoken to; TLS to the proxy itself and SOCKS are not implemented.
fn check_proxy_url(source: &str, url: &str) -> crate::Result<()> {
    let refuse = |reason: String| crate::Error::Config {
        what: format!("{source} {}", redacted(url)),
        reason,
    };
    let parsed: Uri = url.parse().map_err(|e| refuse(format!("not a URL: {e}")))?;
    match parsed.scheme_str() {
        None | Some("http") => {}
        Some(other) => {
            return Err(refuse(format!(
                "{other}:// proxies are not supported (only http://)"
            )));
        }
    }
    if parsed.host().is_none_or(str::is_empty) {
        return Err(refuse("no host".to_owned()));
    }
    Ok(())
}

/// A proxy URL with its password hidden, for messages and logs.
pub(crate) fn redacted(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let shown = match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{user}:***@{host}")
        }
        None => authority.to_owned(),
    };
    if scheme.is_empty() {
        format!("{shown}{path}")
    } else {
        format!("{scheme}://{shown}{path}")
    }
}

/// A `NO_PROXY` entry with a port, as Go takes it: `host:port`, `[v6]:port`; an IP address or
/// CIDR range alone (`::1`, `fd00::/8`) has none.
fn split_port(entry: &str) -> Option<(String, u16)> {
    if entry.parse::<IpAddr>().is_ok() || entry.contains('/') {
        return None;
    }
    let (host, port) = entry.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (!host.is_empty()).then(|| (host.to_owned(), port))
}

/// Whether a domain entry of `NO_PROXY` with a port covers `host` (both in lower case), as
/// hyper-util decides for the entries without one: `example.com` and `.example.com` cover the
/// domain and its subdomains.
fn domain_matches(entry: &str, host: &str) -> bool {
    if entry == "*" {
        return true;
    }
    let entry = entry.strip_prefix('.').unwrap_or(entry);
    host == entry || host.strip_suffix(entry).is_some_and(|h| h.ends_with('.'))
}

/// Why a connection through a proxy failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    /// The proxy itself could not be reached.
    #[error("cannot reach the proxy {proxy}")]
    Connect {
        proxy: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The proxy refused the tunnel, with this status line.
    #[error("the proxy {proxy} answered {status} {reason} to CONNECT {target}")]
    Refused {
        proxy: String,
        target: String,
        status: u16,
        reason: String,
    },
    /// The tunnel's handshake broke off or made no sense.
    #[error("CONNECT {target} through the proxy {proxy}: {message}")]
    Handshake {
        proxy: String,
        target: String,
        message: String,
        source: Option<io::Error>,
    },
}

impl ProxyError {
    /// Whether trying again may help: not when the proxy refused for a reason of its own
    /// (authentication, a port it does not allow), only when it could not reach the registry
    /// (5xx) or could not be reached.
    pub(crate) fn transient(&self) -> bool {
        match self {
            Self::Refused { status, .. } => *status >= 500,
            Self::Connect { .. } | Self::Handshake { .. } => true,
        }
    }
}

/// The connector under TLS: a plain TCP connection to the registry, a tunnel to it through
/// its proxy, or (plain HTTP through a proxy) a connection to the proxy marked as such, so
/// that hyper sends requests in absolute form.
#[derive(Clone)]
pub(crate) struct ProxyConnector {
    pub(crate) tcp: HttpConnector,
    pub(crate) rules: std::sync::Arc<ProxyRules>,
}

impl tower_service::Service<Uri> for ProxyConnector {
    type Response = ProxyStream;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = Pin<Box<dyn Future<Output = Result<ProxyStream, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let mut tcp = self.tcp.clone();
        let route = self.rules.route(&dst);
        Box::pin(async move {
            let Some(proxy) = route else {
                let io = tcp.call(dst).await?;
                return Ok(ProxyStream {
                    io,
                    forwarded: false,
                });
            };
            let shown = redacted(&proxy.uri().to_string());
            tracing::debug!(proxy = %shown, destination = %dst, "connecting through a proxy");
            let mut io =
                tcp.call(proxy.uri().clone())
                    .await
                    .map_err(|source| ProxyError::Connect {
                        proxy: shown.clone(),
                        source: source.into(),
                    })?;
            if dst.scheme_str() == Some("http") {
                return Ok(ProxyStream {
                    io,
                    forwarded: true,
                });
            }
            let target = format!(
                "{}:{}",
                dst.host().unwrap_or_default(),
                dst.port_u16().unwrap_or(443)
            );
            match tokio::time::timeout(
                TUNNEL_TIMEOUT,
                tunnel(io.inner_mut(), &target, proxy.basic_auth(), &shown),
            )
            .await
            {
                Ok(result) => result?,
                Err(_) => {
                    return Err(ProxyError::Handshake {
                        proxy: shown,
                        target,
                        message: format!("no answer within {TUNNEL_TIMEOUT:?}"),
                        source: None,
                    }
                    .into());
                }
            }
            Ok(ProxyStream {
                io,
                forwarded: false,
            })
        })
    }
}

/// Opens a `CONNECT` tunnel to `target` over `stream`, a connection to the proxy. Written
/// here rather than taken from hyper-util's `Tunnel`, whose error type is not exported and
/// keeps no status but 407: a proxy's 403 or 502 is worth naming.
async fn tunnel(
    stream: &mut TcpStream,
    target: &str,
    authorization: Option<&HeaderValue>,
    proxy: &str,
) -> Result<(), ProxyError> {
    let broken = |message: &str, source: Option<io::Error>| ProxyError::Handshake {
        proxy: proxy.to_owned(),
        target: target.to_owned(),
        message: message.to_owned(),
        source,
    };
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n").into_bytes();
    if let Some(value) = authorization {
        request.extend_from_slice(b"Proxy-Authorization: ");
        request.extend_from_slice(value.as_bytes());
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    stream
        .write_all(&request)
        .await
        .map_err(|e| broken("sending the request", Some(e)))?;
    // The answer is read a byte at a time so that nothing after its head is taken from the
    // stream (TLS starts right after it); it is a few dozen bytes, once per connection.
    let mut head = Vec::with_capacity(128);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= TUNNEL_HEAD_LIMIT {
            return Err(broken("an answer head larger than 16 KiB", None));
        }
        let byte = stream
            .read_u8()
            .await
            .map_err(|e| broken("reading the answer", Some(e)))?;
        head.push(byte);
    }
    let head = String::from_utf8_lossy(&head);
    let line = head.lines().next().unwrap_or_default();
    let mut parts = line.splitn(3, ' ');
    let (version, status) = (
        parts.next(),
        parts.next().and_then(|s| s.parse::<u16>().ok()),
    );
    let (Some(version), Some(status)) = (version, status) else {
        return Err(broken(&format!("not an HTTP answer: {line:?}"), None));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(broken(&format!("not an HTTP/1 answer: {line:?}"), None));
    }
    if !(200..300).contains(&status) {
        return Err(ProxyError::Refused {
            proxy: proxy.to_owned(),
            target: target.to_owned(),
            status,
            reason: parts.next().unwrap_or_default().trim().to_owned(),
        });
    }
    Ok(())
}

/// A connection made by [`ProxyConnector`].
#[derive(Debug)]
pub(crate) struct ProxyStream {
    io: TokioIo<TcpStream>,
    /// To a proxy that forwards plain-HTTP requests.
    forwarded: bool,
}

impl ProxyStream {
    /// Whether this is a connection to a proxy that forwards plain-HTTP requests (which are
    /// then sent in absolute form).
    pub(crate) fn is_forwarded(&self) -> bool {
        self.forwarded
    }

    /// The TCP connection.
    pub(crate) fn into_tcp(self) -> TcpStream {
        self.io.into_inner()
    }
}

impl Connection for ProxyStream {
    fn connected(&self) -> Connected {
        self.io.connected().proxy(self.forwarded)
    }
}

impl hyper::rt::Read for ProxyStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for ProxyStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn rules(vars: &[(&str, &str)], explicit: Option<&str>) -> ProxyRules {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        ProxyRules::from_env(explicit, |name| vars.get(name).cloned()).unwrap()
    }

    fn proxy_of(rules: &ProxyRules, url: &str) -> Option<String> {
        rules
            .route(&url.parse().unwrap())
            .map(|i| i.uri().to_string())
    }

    #[test]
    fn the_scheme_picks_the_variable() {
        let r = rules(
            &[
                ("HTTPS_PROXY", "http://secure:3128"),
                ("HTTP_PROXY", "plain:8080"),
            ],
            None,
        );
        assert_eq!(
            proxy_of(&r, "https://ghcr.io/v2/").as_deref(),
            Some("http://secure:3128/")
        );
        assert_eq!(
            proxy_of(&r, "http://registry.lan:5000/v2/").as_deref(),
            Some("http://plain:8080/")
        );
        let only_https = rules(&[("HTTPS_PROXY", "http://secure:3128")], None);
        assert_eq!(proxy_of(&only_https, "http://registry.lan/v2/"), None);
        // ALL_PROXY is curl's, not Go's.
        let all = rules(&[("ALL_PROXY", "http://all:1")], None);
        assert_eq!(proxy_of(&all, "https://ghcr.io/"), None);
    }

    #[test]
    fn upper_case_comes_first_and_empty_values_do_not_count() {
        let both = rules(
            &[
                ("HTTPS_PROXY", "http://upper:1"),
                ("https_proxy", "http://lower:1"),
            ],
            None,
        );
        assert_eq!(
            proxy_of(&both, "https://ghcr.io/").as_deref(),
            Some("http://upper:1/")
        );
        let empty_upper = rules(
            &[("HTTPS_PROXY", ""), ("https_proxy", "http://lower:1")],
            None,
        );
        assert_eq!(
            proxy_of(&empty_upper, "https://ghcr.io/").as_deref(),
            Some("http://lower:1/")
        );
        let lower_no = rules(
            &[("https_proxy", "http://p:1"), ("no_proxy", "ghcr.io")],
            None,
        );
        assert_eq!(proxy_of(&lower_no, "https://ghcr.io/"), None);
    }

    #[test]
    fn cgi_programs_ignore_http_proxy() {
        let r = rules(
            &[
                ("REQUEST_METHOD", "GET"),
                ("HTTP_PROXY", "http://injected:1"),
                ("HTTPS_PROXY", "http://secure:1"),
            ],
            None,
        );
        assert_eq!(proxy_of(&r, "http://registry.lan/"), None);
        assert!(proxy_of(&r, "https://ghcr.io/").is_some());
    }

    #[test]
    fn an_explicit_proxy_replaces_the_environment_but_keeps_no_proxy() {
        let r = rules(
            &[
                ("HTTPS_PROXY", "http://env:1"),
                ("NO_PROXY", "internal.lan"),
            ],
            Some("http://flag:2"),
        );
        assert_eq!(
            proxy_of(&r, "https://ghcr.io/").as_deref(),
            Some("http://flag:2/")
        );
        assert_eq!(
            proxy_of(&r, "http://registry.lan/").as_deref(),
            Some("http://flag:2/")
        );
        assert_eq!(proxy_of(&r, "https://reg.internal.lan/"), None);
    }

    #[test]
    fn loopback_is_never_proxied() {
        let r = rules(
            &[("HTTPS_PROXY", "http://p:1"), ("HTTP_PROXY", "http://p:1")],
            None,
        );
        for url in [
            "https://localhost:5000/",
            "http://LOCALHOST/",
            "https://127.0.0.1/",
            "http://127.9.9.9:80/",
            "https://[::1]:5000/",
            "https://[::ffff:127.0.0.1]/",
        ] {
            assert_eq!(proxy_of(&r, url), None, "{url}");
        }
        // Only the name `localhost` and loopback addresses, as Go: not names under it.
        for url in [
            "https://localhost.example.com/",
            "https://registry.localhost/",
        ] {
            assert!(proxy_of(&r, url).is_some(), "{url}");
        }
    }

    #[test]
    fn no_proxy_entries() {
        let r = rules(
            &[
                ("HTTPS_PROXY", "http://p:1"),
                ("HTTP_PROXY", "http://p:1"),
                (
                    "NO_PROXY",
                    " example.com, .sub.org ,*.star.net, 10.1.2.3, 192.168.0.0/16, fd00::/8, \
                     ports.io:5000, 10.9.9.9:8443, [2001:db8::1]:7000, exact.host, [2001:db8::9], \
                     *.wild.io:6000",
                ),
            ],
            None,
        );
        let direct = [
            "https://example.com/",
            "https://www.EXAMPLE.com/",
            "https://a.b.example.com:5000/",
            "https://x.sub.org/",
            "https://x.star.net/",
            "https://10.1.2.3:5000/",
            "https://192.168.44.5/",
            "https://[fd12::5]/",
            "https://ports.io:5000/",
            "https://r.ports.io:5000/",
            "https://10.9.9.9:8443/",
            "https://exact.host/",
            "https://[2001:db8::9]:5000/",
            "https://a.wild.io:6000/",
            "https://[2001:db8::1]:7000/",
        ];
        for url in direct {
            assert_eq!(proxy_of(&r, url), None, "{url}");
        }
        let proxied = [
            "https://notexample.com/",
            "https://example.com.evil.net/",
            "https://10.1.2.4/",
            "https://192.169.0.1/",
            "https://[fe80::1]/",
            "https://ports.io/",
            "https://ports.io:5001/",
            "https://10.9.9.9/",
            "https://[2001:db8::1]:7001/",
            "https://other.host/",
            "https://a.wild.io:6001/",
        ];
        for url in proxied {
            assert!(proxy_of(&r, url).is_some(), "{url}");
        }
    }

    #[test]
    fn domain_entries_with_a_port() {
        assert!(domain_matches("example.com", "example.com"));
        assert!(domain_matches("example.com", "a.example.com"));
        assert!(!domain_matches("example.com", "aexample.com"));
        assert!(domain_matches(".example.com", "a.example.com"));
        assert!(domain_matches(".example.com", "example.com"));
        assert!(!domain_matches(".example.com", "xexample.com"));
        assert!(domain_matches("*", "anything"));
    }

    #[test]
    fn star_bypasses_every_proxy() {
        let r = rules(&[("HTTPS_PROXY", "http://p:1"), ("no_proxy", "*")], None);
        assert_eq!(proxy_of(&r, "https://ghcr.io/"), None);
    }

    #[test]
    fn credentials_in_the_url_become_basic_proxy_authorization() {
        let r = rules(&[("HTTPS_PROXY", "http://us%40er:p%3Ass@proxy:3128")], None);
        let intercept = r.route(&"https://ghcr.io/".parse().unwrap()).unwrap();
        assert_eq!(intercept.uri().to_string(), "http://proxy:3128/");
        // base64("us@er:p:ss")
        assert_eq!(intercept.basic_auth().unwrap(), "Basic dXNAZXI6cDpzcw==");
    }

    #[test]
    fn unusable_proxy_urls_are_refused_by_name() {
        for (url, expected) in [
            ("socks5://p:1080", "socks5:// proxies are not supported"),
            ("https://p:443", "https:// proxies are not supported"),
        ] {
            let error =
                ProxyRules::from_env(None, |name| (name == "HTTPS_PROXY").then(|| url.to_owned()))
                    .unwrap_err()
                    .to_string();
            assert!(
                error.contains("HTTPS_PROXY") && error.contains(expected),
                "{error}"
            );
        }
        let error = ProxyRules::from_env(Some("https://user:secret@p:1"), |_| None)
            .unwrap_err()
            .to_string();
        assert!(!error.contains("secret"), "{error}");
    }

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(redacted("http://u:pw@p:1/"), "http://u:***@p:1/");
        assert_eq!(redacted("u:pw@p:1"), "u:***@p:1");
        assert_eq!(redacted("http://p:1/"), "http://p:1/");
    }

    #[tokio::test]
    async fn a_refused_tunnel_names_the_proxy_and_its_answer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buffer = vec![0; 1024];
            let n = socket.read(&mut buffer).await.unwrap();
            let request = String::from_utf8_lossy(&buffer[..n]).into_owned();
            socket
                .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"p\"\r\n\r\n")
                .await
                .unwrap();
            request
        });
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let auth = HeaderValue::from_static("Basic dTpw");
        let error = tunnel(
            &mut stream,
            "registry.example:5000",
            Some(&auth),
            "http://p/",
        )
        .await
        .unwrap_err();
        assert!(!error.transient());
        assert_eq!(
            error.to_string(),
            "the proxy http://p/ answered 407 Proxy Authentication Required to CONNECT registry.example:5000"
        );
        let request = server.await.unwrap();
        assert!(
            request.starts_with("CONNECT registry.example:5000 HTTP/1.1\r\n")
                && request.contains("\r\nProxy-Authorization: Basic dTpw\r\n"),
            "{request}"
        );
    }
}
