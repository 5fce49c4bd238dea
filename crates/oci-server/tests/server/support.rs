//! Starting a server and talking to it: one HTTP/1.1 connection per request (hyper's client
//! connection, no pool), so that each test sees exactly what the server answers to one
//! request, and a few fixtures (blobs, an image) pushed over the wire.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use oci_server::{Listening, RegistryServer, ServerOptions};
use oci_store::{MemoryStore, OciInterface};
use oci_types::Digest;
use serde_json::{Value, json};
use tokio::net::TcpStream;

/// How long any one exchange may take before the test fails instead of hanging.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub(crate) const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub(crate) const EMPTY_JSON: &str = "application/vnd.oci.empty.v1+json";

/// `server` listening on a free loopback port.
pub(crate) async fn serve(server: RegistryServer) -> Listening {
    server.bind("127.0.0.1:0".parse().unwrap()).await.unwrap()
}

/// A server of a fresh memory store with `options`, and a client of it.
pub(crate) async fn start(options: ServerOptions) -> (Listening, Client) {
    let store: Arc<dyn OciInterface> = Arc::new(MemoryStore::new());
    let listening = serve(RegistryServer::new(store).with_options(options)).await;
    let client = Client::new(&listening);
    (listening, client)
}

/// A server with the default options.
pub(crate) async fn start_default() -> (Listening, Client) {
    start(ServerOptions::default()).await
}

/// `sha256:…` of `bytes`.
pub(crate) fn digest(bytes: &[u8]) -> String {
    Digest::sha256(bytes).to_string()
}

/// A client of one server, optionally sending an `Authorization` header with every request.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    addr: SocketAddr,
    authorization: Option<String>,
}

impl Client {
    pub(crate) fn new(listening: &Listening) -> Self {
        Self {
            addr: listening.local_addr(),
            authorization: None,
        }
    }

    /// The same client, authenticating with `value` (`Basic …`, `Bearer …`).
    pub(crate) fn authorized(&self, value: &str) -> Self {
        Self {
            addr: self.addr,
            authorization: Some(value.to_owned()),
        }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn request(&self, method: Method, path: &str) -> Call<'_> {
        let mut headers = HeaderMap::new();
        if let Some(authorization) = &self.authorization {
            headers.insert(http::header::AUTHORIZATION, authorization.parse().unwrap());
        }
        Call {
            client: self,
            method,
            path: path.to_owned(),
            headers,
            body: Bytes::new(),
        }
    }

    pub(crate) fn get(&self, path: &str) -> Call<'_> {
        self.request(Method::GET, path)
    }

    pub(crate) fn head(&self, path: &str) -> Call<'_> {
        self.request(Method::HEAD, path)
    }

    pub(crate) fn post(&self, path: &str) -> Call<'_> {
        self.request(Method::POST, path)
    }

    pub(crate) fn put(&self, path: &str) -> Call<'_> {
        self.request(Method::PUT, path)
    }

    pub(crate) fn patch(&self, path: &str) -> Call<'_> {
        self.request(Method::PATCH, path)
    }

    pub(crate) fn delete(&self, path: &str) -> Call<'_> {
        self.request(Method::DELETE, path)
    }

    /// Pushes `bytes` to `repo` in one `POST ?digest=`; returns its digest.
    pub(crate) async fn push_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = digest(bytes);
        let reply = self
            .post(&format!("/v2/{repo}/blobs/uploads/?digest={digest}"))
            .body(bytes.to_vec())
            .send()
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
        digest
    }

    /// Pushes `manifest` (of media type `media_type`) to `repo` under `reference`.
    pub(crate) async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        manifest: &[u8],
    ) -> Reply {
        let reply = self
            .put(&format!("/v2/{repo}/manifests/{reference}"))
            .header("Content-Type", media_type)
            .body(manifest.to_vec())
            .send()
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
        reply
    }

    /// Pushes a small image (one config, one layer holding `layer`) to `repo`, tagged `tag`.
    pub(crate) async fn push_image(&self, repo: &str, tag: &str, layer: &[u8]) -> Image {
        let config = br#"{"architecture":"amd64","os":"linux"}"#;
        let manifest = image_manifest(
            &self.push_blob(repo, config).await,
            config.len(),
            &self.push_blob(repo, layer).await,
            layer.len(),
        );
        let reply = self.push_manifest(repo, tag, MANIFEST, &manifest).await;
        let digest = digest(&manifest);
        assert_eq!(reply.header("Docker-Content-Digest"), Some(digest.as_str()));
        Image { manifest, digest }
    }
}

/// The bytes of an image manifest of one config and one layer.
pub(crate) fn image_manifest(config: &str, config_size: usize, layer: &str, size: usize) -> Bytes {
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "digest": config, "size": config_size},
        "layers": [{"mediaType": LAYER, "digest": layer, "size": size}],
    });
    serde_json::to_vec(&manifest).unwrap().into()
}

/// A manifest pushed by [`Client::push_image`].
#[derive(Debug, Clone)]
pub(crate) struct Image {
    pub(crate) manifest: Bytes,
    pub(crate) digest: String,
}

/// A request being built.
#[derive(Debug)]
pub(crate) struct Call<'a> {
    client: &'a Client,
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Call<'_> {
    pub(crate) fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
        self
    }

    /// The body, sent with its `Content-Length`.
    pub(crate) fn body(mut self, bytes: impl Into<Bytes>) -> Self {
        self.body = bytes.into();
        self
    }

    /// Sends the request on a new connection and reads the whole answer.
    pub(crate) async fn send(self) -> Reply {
        let what = format!("{} {}", self.method, self.path);
        match tokio::time::timeout(TIMEOUT, self.exchange()).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(error)) => panic!("{what}: {error}"),
            Err(_) => panic!("{what}: no answer in {TIMEOUT:?}"),
        }
    }

    async fn exchange(self) -> Result<Reply, Box<dyn std::error::Error + Send + Sync>> {
        let stream = TcpStream::connect(self.client.addr).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let driver = tokio::spawn(connection);
        let mut request = Request::builder()
            .method(self.method)
            .uri(&self.path)
            .header(http::header::HOST, self.client.addr.to_string())
            .body(Full::new(self.body))?;
        request.headers_mut().extend(self.headers);
        let response = sender.send_request(request).await?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        driver.abort();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// A whole answer.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Reply {
    /// The value of header `name`, if present and text.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The codes of the spec's error body, checking its shape on the way: an object whose
    /// `errors` is an array of objects, each with a string `code` and a string `message`.
    pub(crate) fn error_codes(&self) -> Vec<String> {
        assert_eq!(
            self.header("Content-Type"),
            Some("application/json"),
            "an error body is JSON"
        );
        let body = self.json();
        let errors = body["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("no `errors` array: {body}"));
        assert!(!errors.is_empty(), "an empty `errors` array: {body}");
        errors
            .iter()
            .map(|error| {
                assert!(error["message"].is_string(), "no message: {error}");
                error["code"]
                    .as_str()
                    .unwrap_or_else(|| panic!("no code: {error}"))
                    .to_owned()
            })
            .collect()
    }

    /// Asserts the status and that the error body holds exactly `code`.
    #[track_caller]
    pub(crate) fn assert_error(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(self.error_codes(), [code]);
    }
}
