//! One request to the daemon: a connection of its own (a unix socket or TCP), HTTP/1.1 through
//! hyper's connection API, and the reading of answers with limits.
//!
//! A connection per request keeps this simple (no pool, no idle connections to a daemon that
//! may restart) and costs little: the daemon is local, and the requests that matter move whole
//! images.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::net::{TcpStream, UnixStream};

use crate::host::Endpoint;
use crate::load::quote;
use crate::{Error, Result};
use oci_types::printable;

/// The body of a request: nothing, or a stream that may fail.
pub(crate) type RequestBody = UnsyncBoxBody<Bytes, BoxError>;

/// The error of a request body, as hyper takes it.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest JSON answer read whole (`/version`, `/info`, errors).
pub(crate) const MAX_ANSWER: usize = 1 << 20;

/// How much of an error answer is read for its message.
const MAX_ERROR_ANSWER: usize = 64 << 10;

/// The `User-Agent` of every request.
const USER_AGENT: &str = concat!("hoist-oci-docker/", env!("CARGO_PKG_VERSION"));

/// An empty request body.
pub(crate) fn empty() -> RequestBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// Where requests go: the daemon's address and its canonical form, for errors.
#[derive(Debug)]
pub(crate) struct Transport {
    pub(crate) endpoint: Endpoint,
    pub(crate) host: String,
}

impl Transport {
    pub(crate) fn new(endpoint: Endpoint) -> Self {
        Self {
            host: endpoint.url(),
            endpoint,
        }
    }

    /// Sends `method path` (with its query) with `body` on a new connection and returns the
    /// answer's head; the answer's body streams from the connection, which lives until the
    /// body is read or dropped.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&'static str>,
        body: RequestBody,
    ) -> Result<Response<Incoming>> {
        let request_line = format!("{method} {path}");
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, self.endpoint.host_header())
            .header(header::USER_AGENT, USER_AGENT);
        if let Some(content_type) = content_type {
            builder = builder.header(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
        let request = builder.body(body).map_err(|e| Error::Protocol {
            request: request_line.clone(),
            reason: format!("cannot make the request: {e}"),
        })?;
        let mut sender = self.connect().await?;
        tracing::debug!(host = %self.host, request = %request_line, "request to the Docker daemon");
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| self.http(&request_line, e))?;
        tracing::debug!(request = %request_line, status = %response.status(), "the Docker daemon answered");
        Ok(response)
    }

    /// Opens a connection and starts driving it on the runtime.
    async fn connect(&self) -> Result<hyper::client::conn::http1::SendRequest<RequestBody>> {
        let connect_error = |source| Error::Connect {
            host: self.host.clone(),
            source,
        };
        let timed_out = || {
            connect_error(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no connection within {} s", CONNECT_TIMEOUT.as_secs()),
            ))
        };
        match &self.endpoint {
            Endpoint::Unix(path) => {
                let stream = tokio::time::timeout(CONNECT_TIMEOUT, UnixStream::connect(path))
                    .await
                    .map_err(|_| timed_out())?
                    .map_err(connect_error)?;
                self.handshake(stream).await
            }
            Endpoint::Tcp { authority } => {
                let stream =
                    tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(authority.as_str()))
                        .await
                        .map_err(|_| timed_out())?
                        .map_err(connect_error)?;
                // Requests are small and answers stream: no reason to wait for full segments.
                stream.set_nodelay(true).map_err(connect_error)?;
                self.handshake(stream).await
            }
        }
    }

    async fn handshake<T>(
        &self,
        stream: T,
    ) -> Result<hyper::client::conn::http1::SendRequest<RequestBody>>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.http("the HTTP handshake", e))?;
        let host = self.host.clone();
        tokio::spawn(async move {
            // Its failures reach the request or its answer's body too, where they are reported.
            if let Err(e) = connection.await {
                tracing::debug!(%host, error = %e, "connection to the Docker daemon ended");
            }
        });
        Ok(sender)
    }

    /// A transport failure of `request`.
    pub(crate) fn http(&self, request: &str, source: hyper::Error) -> Error {
        Error::Http {
            host: self.host.clone(),
            request: request.to_owned(),
            source: Box::new(source),
        }
    }
}

/// Reads a whole answer's body of at most `limit` bytes.
pub(crate) async fn read_limited(
    transport: &Transport,
    request: &str,
    response: Response<Incoming>,
    limit: usize,
) -> Result<Bytes> {
    let mut body = response.into_body();
    let mut collected = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| transport.http(request, e))?;
        if let Ok(data) = frame.into_data() {
            if collected.len() + data.len() > limit {
                return Err(Error::Protocol {
                    request: request.to_owned(),
                    reason: format!("the answer is larger than {} KiB", limit >> 10),
                });
            }
            collected.extend_from_slice(&data);
        }
    }
    Ok(collected.into())
}

/// Reads a successful JSON answer into `T`, or turns a failed one into [`Error::Daemon`].
pub(crate) async fn json<T: DeserializeOwned>(
    transport: &Transport,
    request: &str,
    response: Response<Incoming>,
    limit: usize,
) -> Result<T> {
    let status = response.status();
    if !status.is_success() {
        return Err(daemon_error(transport, request, response).await);
    }
    let body = read_limited(transport, request, response, limit).await?;
    serde_json::from_slice(&body).map_err(|e| Error::Protocol {
        request: request.to_owned(),
        reason: format!("{e} in {:?}", quote(&body)),
    })
}

/// The error a failed answer stands for: [`Error::Daemon`] with what the daemon said, or the
/// transport's error if its answer could not be read.
pub(crate) async fn daemon_error(
    transport: &Transport,
    request: &str,
    response: Response<Incoming>,
) -> Error {
    let status = response.status();
    match read_limited(transport, request, response, MAX_ERROR_ANSWER).await {
        Ok(body) => Error::Daemon {
            status: status.as_u16(),
            message: daemon_message(status, &body),
        },
        // A very long error answer: its start would say nothing more useful than the status.
        Err(Error::Protocol { .. }) => Error::Daemon {
            status: status.as_u16(),
            message: format!(
                "{status} (with an answer over {} KiB)",
                MAX_ERROR_ANSWER >> 10
            ),
        },
        Err(other) => other,
    }
}

/// What a failed answer says: the `message` of its JSON (Docker: `{"message":M}`; podman:
/// `{"cause":C,"message":M,"response":STATUS}`), else its text, else the status.
pub(crate) fn daemon_message(status: StatusCode, body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct ErrorAnswer {
        message: Option<String>,
        cause: Option<String>,
    }
    if let Ok(answer) = serde_json::from_slice::<ErrorAnswer>(body) {
        if let Some(message) = answer.message.filter(|m| !m.trim().is_empty()) {
            return printable(message.trim());
        }
        if let Some(cause) = answer.cause.filter(|c| !c.trim().is_empty()) {
            return printable(cause.trim());
        }
    }
    let text = body.trim_ascii();
    if text.is_empty() {
        status.to_string()
    } else {
        quote(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_answers() {
        let check = |status: u16, body: &str, expected: &str| {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(daemon_message(status, body.as_bytes()), expected, "{body}");
        };
        // Recorded with curl. Docker Engine 26.1, then 20.10: `GET /images/NAME/json` of a
        // missing image.
        check(
            404,
            "{\"message\":\"No such image: hoist-test/missing:1\"}\n",
            "No such image: hoist-test/missing:1",
        );
        check(
            404,
            "{\"message\":\"no such image: hoist-test/missing:1: No such image: hoist-test/missing:1\"}\n",
            "no such image: hoist-test/missing:1: No such image: hoist-test/missing:1",
        );
        // Docker Engine 26.1, then 20.10: a tag refused.
        check(
            400,
            "{\"message\":\"invalid reference format: repository name (library/Bad_Repo) must be lowercase\"}\n",
            "invalid reference format: repository name (library/Bad_Repo) must be lowercase",
        );
        check(
            500,
            "{\"message\":\"invalid reference format: repository name must be lowercase\"}\n",
            "invalid reference format: repository name must be lowercase",
        );
        // podman 4.3's Docker-compatible service: `GET /images/get` of a missing image, and a
        // load of an archive whose layer does not match its diff_id.
        check(
            500,
            "{\"cause\":\"image not known\",\"message\":\"docker.io/hoist-test/missing:1: image not known\",\"response\":500}\n",
            "docker.io/hoist-test/missing:1: image not known",
        );
        check(
            500,
            "{\"cause\":\"payload does not match any of the supported image formats:\\n * oci: initializing source oci:/var/tmp/api_load.tar4120509278:: open /var/tmp/api_load.tar4120509278/index.json: not a directory\\n * oci-archive: loading index: open /var/tmp/oci2185186320/index.json: no such file or directory\\n * docker-archive: writing blob: setting up to decompress blob: happened during read: Digest did not match, expected sha256:2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881, got sha256:e37ba8fa491b8a270480d25eac39012de5e0691cd0bdb60262716f578e6cbe1b\\n * dir: open /var/tmp/api_load.tar4120509278/manifest.json: not a directory\",\"message\":\"failed to load image: payload does not match any of the supported image formats:\\n * oci: initializing source oci:/var/tmp/api_load.tar4120509278:: open /var/tmp/api_load.tar4120509278/index.json: not a directory\\n * oci-archive: loading index: open /var/tmp/oci2185186320/index.json: no such file or directory\\n * docker-archive: writing blob: setting up to decompress blob: happened during read: Digest did not match, expected sha256:2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881, got sha256:e37ba8fa491b8a270480d25eac39012de5e0691cd0bdb60262716f578e6cbe1b\\n * dir: open /var/tmp/api_load.tar4120509278/manifest.json: not a directory\",\"response\":500}\n",
            "failed to load image: payload does not match any of the supported image formats:\n * oci: initializing source oci:/var/tmp/api_load.tar4120509278:: open /var/tmp/api_load.tar4120509278/index.json: not a directory\n * oci-archive: loading index: open /var/tmp/oci2185186320/index.json: no such file or directory\n * docker-archive: writing blob: setting up to decompress blob: happened during read: Digest did not match, expected sha256:2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881, got sha256:e37ba8fa491b8a270480d25eac39012de5e0691cd0bdb60262716f578e6cbe1b\n * dir: open /var/tmp/api_load.tar4120509278/manifest.json: not a directory",
        );
        // Made up: the cause when the message is empty, text, nothing.
        check(
            500,
            "{\"cause\":\"only a cause\",\"message\":\"\",\"response\":500}",
            "only a cause",
        );
        check(400, "page not found\n", "page not found");
        check(502, "", "502 Bad Gateway");
        check(500, "{\"other\":1}", "{\"other\":1}");
        let long = "x".repeat(5000);
        assert_eq!(
            daemon_message(StatusCode::INTERNAL_SERVER_ERROR, long.as_bytes()).len(),
            203
        );
    }
}
