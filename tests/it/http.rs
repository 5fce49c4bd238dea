//! A small raw HTTP/1.1 client for the server tests, on hyper's connection-level client API: one
//! TCP connection per request, the request sent exactly as written (no redirects, no path
//! normalisation, no retries), the response returned whole (status, headers, body).
//!
//! A request body is empty, one buffer (sent with its `Content-Length`), or a list of chunks
//! streamed one frame at a time with `Transfer-Encoding: chunked` and no length, so a "streamed"
//! upload really reaches the server piece by piece. [`Client::raw`] writes bytes straight to the
//! socket, for requests hyper would refuse to send (a body shorter than its `Content-Length`).

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long any one exchange may take before the test fails instead of hanging.
const TIMEOUT: Duration = Duration::from_secs(20);

/// The pause before each chunk of a streamed body.
const CHUNK_PAUSE: Duration = Duration::from_millis(1);

/// A response, read to its end.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Response {
    /// The value of header `name` (the first, if it repeats), if present and ASCII.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every value of header `name`, in order.
    pub(crate) fn headers_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    }

    /// The body as JSON; panics (showing the body) if it is not.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} body is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The `code`s of a distribution-spec error body `{"errors":[{"code":…}]}`; panics if the
    /// body is not of that shape.
    pub(crate) fn error_codes(&self) -> Vec<String> {
        let value = self.json();
        let errors = value["errors"].as_array().unwrap_or_else(|| {
            panic!("{} body has no \"errors\" array: {value}", self.status);
        });
        errors
            .iter()
            .map(|e| {
                e["code"]
                    .as_str()
                    .unwrap_or_else(|| panic!("error without a string code: {value}"))
                    .to_owned()
            })
            .collect()
    }

    /// The body as text, for messages.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A request body.
#[derive(Debug, Clone, Default)]
pub(crate) enum Body {
    /// No body (and no `Content-Length` unless set by hand).
    #[default]
    Empty,
    /// One buffer, sent with its `Content-Length`.
    Full(Bytes),
    /// Chunks sent one by one, chunked transfer encoding, no length.
    Chunks(Vec<Bytes>),
}

/// A client of one server.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    /// `127.0.0.1:PORT`.
    authority: String,
}

impl Client {
    /// A client of the server at `base` (`http://HOST:PORT`, as `Listening::url` gives).
    pub(crate) fn new(base: &str) -> Self {
        let authority = base
            .strip_prefix("http://")
            .unwrap_or_else(|| panic!("not a plain http base URL: {base}"))
            .trim_end_matches('/')
            .to_owned();
        Self { authority }
    }

    /// A request of `method` to `target`: a path with its query (`/v2/…`), or an absolute URL
    /// of this server (as a `Location` may be).
    pub(crate) fn request(&self, method: Method, target: &str) -> Call<'_> {
        let target = match target.strip_prefix("http://") {
            Some(rest) => {
                let at = rest.find('/').unwrap_or(rest.len());
                assert_eq!(
                    &rest[..at],
                    self.authority,
                    "a URL of another server: {target}"
                );
                rest[at..].to_owned()
            }
            None => target.to_owned(),
        };
        Call {
            client: self,
            method,
            target,
            headers: Vec::new(),
            body: Body::Empty,
        }
    }

    pub(crate) fn get(&self, target: &str) -> Call<'_> {
        self.request(Method::GET, target)
    }

    pub(crate) fn head(&self, target: &str) -> Call<'_> {
        self.request(Method::HEAD, target)
    }

    pub(crate) fn post(&self, target: &str) -> Call<'_> {
        self.request(Method::POST, target)
    }

    pub(crate) fn put(&self, target: &str) -> Call<'_> {
        self.request(Method::PUT, target)
    }

    pub(crate) fn patch(&self, target: &str) -> Call<'_> {
        self.request(Method::PATCH, target)
    }

    pub(crate) fn delete(&self, target: &str) -> Call<'_> {
        self.request(Method::DELETE, target)
    }

    /// Writes `bytes` to a new connection as they are, closes the sending half, and returns
    /// whatever the server answers until it closes the connection (possibly nothing).
    pub(crate) async fn raw(&self, bytes: &[u8]) -> Vec<u8> {
        let exchange = async {
            let mut stream = TcpStream::connect(&self.authority).await?;
            stream.write_all(bytes).await?;
            stream.flush().await?;
            stream.shutdown().await?;
            let mut answer = Vec::new();
            // A reset after a partial answer is as good as its end here.
            let _ = stream.read_to_end(&mut answer).await;
            Ok::<_, std::io::Error>(answer)
        };
        tokio::time::timeout(TIMEOUT, exchange)
            .await
            .expect("raw exchange timed out")
            .expect("raw exchange failed")
    }

    /// The `Host` header value.
    pub(crate) fn authority(&self) -> &str {
        &self.authority
    }
}

/// A request being built.
#[derive(Debug)]
pub(crate) struct Call<'a> {
    client: &'a Client,
    method: Method,
    target: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Body,
}

impl Call<'_> {
    /// Adds a header (repeatable).
    pub(crate) fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((
            HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            HeaderValue::from_str(value).expect("header value"),
        ));
        self
    }

    /// Sends `bytes` as the body, with its `Content-Length`.
    pub(crate) fn body(mut self, bytes: impl Into<Bytes>) -> Self {
        self.body = Body::Full(bytes.into());
        self
    }

    /// Streams `chunks` as the body, one frame each, chunked, without a length.
    pub(crate) fn chunks(mut self, chunks: Vec<Bytes>) -> Self {
        self.body = Body::Chunks(chunks);
        self
    }

    /// Sends the request and reads the whole response, or says why that failed (a
    /// connection cut before the body's end, say).
    pub(crate) async fn try_send(self) -> Result<Response, String> {
        match tokio::time::timeout(TIMEOUT, self.exchange()).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer in {TIMEOUT:?}")),
        }
    }

    /// Sends the request and reads the whole response; panics on a transport failure.
    pub(crate) async fn send(self) -> Response {
        let what = format!("{} {}", self.method, self.target);
        match tokio::time::timeout(TIMEOUT, self.exchange()).await {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => panic!("{what}: {error}"),
            Err(_) => panic!("{what}: no answer in {TIMEOUT:?}"),
        }
    }

    async fn exchange(self) -> Result<Response, Box<dyn std::error::Error + Send + Sync>> {
        let stream = TcpStream::connect(&self.client.authority).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let driver = tokio::spawn(connection);
        let body: UnsyncBoxBody<Bytes, Infallible> = match self.body {
            Body::Empty => Empty::new().boxed_unsync(),
            Body::Full(bytes) => Full::new(bytes).boxed_unsync(),
            // A pause before each chunk, so that each leaves as a frame of its own and the
            // server sees the body arrive piece by piece.
            Body::Chunks(chunks) => {
                StreamBody::new(futures::stream::iter(chunks).then(|chunk| async move {
                    tokio::time::sleep(CHUNK_PAUSE).await;
                    Ok::<_, Infallible>(Frame::data(chunk))
                }))
                .boxed_unsync()
            }
        };
        let mut request = Request::builder()
            .method(self.method)
            .uri(self.target.as_str())
            .header(header::HOST, self.client.authority.as_str())
            .body(body)?;
        for (name, value) in self.headers {
            request.headers_mut().append(name, value);
        }
        let response = sender.send_request(request).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        drop(sender);
        driver.abort();
        Ok(Response {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}
