//! HTTP-level tests of `oci-server`, written from the distribution-spec rather than from the
//! server's code: every endpoint, the headers the spec asks for, and the error codes of bad
//! input, through a raw HTTP/1.1 client (`crate::http`).
//!
//! Each workflow is one `async fn` taking the base URL of a fresh server; `on_every_backend!`
//! runs each of them against the memory store, per-repository layouts and a single layout.
//! Workflows that need a second server over the same store (deletes disabled, read-only) take
//! both URLs: content is written through the first and the second is checked.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use oci_layout::LayoutStore;
use oci_server::{Listening, RegistryServer, ServerOptions};
use oci_store::{MemoryStore, OciInterface};
use oci_types::{Algorithm, Digest};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::http::{Client, Response};

// ---- media types ----

const OCTET: &str = "application/octet-stream";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const EMPTY_JSON: &str = "application/vnd.oci.empty.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// The largest manifest the spec asks registries to accept at least (the server's default
/// limit, 4 MiB).
const MANIFEST_LIMIT: usize = 4 * 1024 * 1024;

// ---- backends and servers ----

#[derive(Debug, Clone, Copy)]
enum Backend {
    Memory,
    LayoutPerRepository,
    LayoutSingle,
}

async fn store(backend: Backend) -> (Arc<dyn OciInterface>, Option<TempDir>) {
    match backend {
        Backend::Memory => (Arc::new(MemoryStore::new()), None),
        Backend::LayoutPerRepository => {
            let dir = tempfile::tempdir().unwrap();
            let store = LayoutStore::open_per_repository(dir.path().join("root"))
                .await
                .unwrap();
            (Arc::new(store), Some(dir))
        }
        Backend::LayoutSingle => {
            let dir = tempfile::tempdir().unwrap();
            let store = LayoutStore::open(dir.path().join("layout")).await.unwrap();
            (Arc::new(store), Some(dir))
        }
    }
}

/// A server of `store` on a free loopback port, with a short shutdown grace.
pub(crate) async fn serve(store: Arc<dyn OciInterface>, options: ServerOptions) -> Listening {
    RegistryServer::new(store)
        .with_options(options.with_shutdown_grace(Duration::from_secs(1)))
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// Runs `workflow` against a fresh server of `backend` with the default options.
async fn run<F, Fut>(backend: Backend, workflow: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()>,
{
    let (store, _dir) = store(backend).await;
    let server = serve(store, ServerOptions::default()).await;
    workflow(server.url()).await;
    server.shutdown().await;
}

/// Runs `workflow` against two servers of one fresh store of `backend`: one with the default
/// options, one with `options`.
async fn run_pair<F, Fut>(backend: Backend, options: ServerOptions, workflow: F)
where
    F: FnOnce(String, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let (store, _dir) = store(backend).await;
    let writable = serve(Arc::clone(&store), ServerOptions::default()).await;
    let restricted = serve(store, options).await;
    workflow(writable.url(), restricted.url()).await;
    restricted.shutdown().await;
    writable.shutdown().await;
}

/// One `#[tokio::test]` per workflow, against a fresh server of `$backend`.
macro_rules! workflow_tests {
    ($backend:expr; $($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            super::run($backend, super::$name).await;
        }
    )*};
}

/// One `#[tokio::test]` per workflow of two servers, the second with its options.
macro_rules! paired_tests {
    ($backend:expr; $($name:ident: $options:expr),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            super::run_pair($backend, $options, super::$name).await;
        }
    )*};
}

/// A module of tests per backend, each running every workflow.
macro_rules! on_every_backend {
    ($($module:ident => $backend:ident),* $(,)?) => {$(
        mod $module {
            use super::{Backend, ServerOptions};

            workflow_tests!(Backend::$backend;
                api_version_check,
                pull_blobs,
                pull_blob_ranges,
                pull_manifests,
                push_streamed,
                push_monolithic,
                push_single_post,
                push_empty_blob,
                push_sha512,
                push_chunked_in_order,
                push_chunked_out_of_order,
                push_cancelled,
                push_mount,
                push_manifests,
                push_index_and_referrer_subjects,
                discover_tags,
                discover_catalog,
                discover_referrers,
                manage_delete_tag,
                manage_delete_manifest,
                manage_delete_blob,
                error_unknown_endpoints,
                error_method_not_allowed_has_allow,
                error_malformed_digests,
                error_invalid_names,
                error_unknown_repository,
                error_overlapping_content_range,
                error_digest_mismatch,
                error_manifest_not_json,
                error_manifest_too_large,
                error_manifest_blob_unknown,
                error_truncated_upload,
                error_truncated_requests,
            );

            paired_tests!(Backend::$backend;
                manage_deletes_disabled: ServerOptions::default().with_deletes(false),
                manage_read_only: ServerOptions::default().with_read_only(true),
                push_min_chunk_size: ServerOptions::default().with_min_chunk_size(Some(1000)),
            );
        }
    )*};
}

on_every_backend!(
    memory => Memory,
    layout_per_repository => LayoutPerRepository,
    layout_single => LayoutSingle,
);

// ---- content ----

/// A blob and its digest.
#[derive(Debug, Clone)]
pub(crate) struct Blob {
    pub(crate) data: Bytes,
    pub(crate) digest: String,
}

impl Blob {
    fn new(data: impl Into<Bytes>) -> Self {
        let data = data.into();
        let digest = Digest::sha256(&data).to_string();
        Self { data, digest }
    }

    fn sha512(data: impl Into<Bytes>) -> Self {
        let data = data.into();
        let digest = Digest::of(Algorithm::Sha512, &data).to_string();
        Self { data, digest }
    }

    /// `len` pseudo-random bytes, the same for the same `seed`.
    pub(crate) fn random(len: usize, seed: u64) -> Self {
        Self::new(pseudo_random(len, seed))
    }

    fn size(&self) -> usize {
        self.data.len()
    }

    fn descriptor(&self, media_type: &str) -> Value {
        json!({"mediaType": media_type, "digest": self.digest, "size": self.size()})
    }
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[3]
        })
        .collect()
}

/// A manifest as the exact bytes pushed: pretty JSON with a trailing newline, so that a store
/// that re-serialised it would be caught.
#[derive(Debug, Clone)]
struct Manifest {
    bytes: Bytes,
    digest: String,
    media_type: &'static str,
}

impl Manifest {
    fn of(value: &Value, media_type: &'static str) -> Self {
        let mut bytes = serde_json::to_vec_pretty(value).unwrap();
        bytes.push(b'\n');
        let digest = Digest::sha256(&bytes).to_string();
        Self {
            bytes: bytes.into(),
            digest,
            media_type,
        }
    }

    fn descriptor(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.bytes.len()})
    }
}

/// An OCI image manifest of `config` (with `config_type`) and `layers`, plus the fields of
/// `extra`.
fn image_manifest(config: &Blob, config_type: &str, layers: &[&Blob], extra: Value) -> Manifest {
    let mut value = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": config.descriptor(config_type),
        "layers": layers.iter().map(|l| l.descriptor(LAYER)).collect::<Vec<_>>(),
    });
    merge(&mut value, extra);
    Manifest::of(&value, MANIFEST)
}

fn index_manifest(children: &[&Manifest], extra: Value) -> Manifest {
    let mut value = json!({
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": children.iter().map(|m| m.descriptor()).collect::<Vec<_>>(),
    });
    merge(&mut value, extra);
    Manifest::of(&value, INDEX)
}

fn merge(value: &mut Value, extra: Value) {
    if let (Value::Object(value), Value::Object(extra)) = (value, extra) {
        value.extend(extra);
    }
}

/// The OCI empty descriptor's content, `{}`.
fn empty_config() -> Blob {
    Blob::new(&b"{}"[..])
}

fn config_blob(seed: u64) -> Blob {
    Blob::new(format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"seed":{seed}}}"#
    ))
}

/// An image pushed by [`push_image`].
#[derive(Debug)]
struct Image {
    config: Blob,
    layer: Blob,
    manifest: Manifest,
}

// ---- assertions ----

#[track_caller]
fn expect(response: &Response, status: u16, what: &str) {
    assert_eq!(
        response.status.as_u16(),
        status,
        "{what}: expected {status}, got {} {:?} {}",
        response.status,
        response.headers,
        response.text()
    );
}

/// The status and a spec error body with `code` among its codes.
#[track_caller]
fn expect_error(response: &Response, status: u16, code: &str, what: &str) {
    expect(response, status, what);
    let codes = response.error_codes();
    assert!(
        codes.iter().any(|c| c == code),
        "{what}: expected error code {code}, got {codes:?}"
    );
}

/// A 404 with one of `codes` (where the spec leaves the choice open, e.g. a missing blob of a
/// missing repository may be `BLOB_UNKNOWN` or `NAME_UNKNOWN`).
#[track_caller]
fn expect_error_among(response: &Response, status: u16, codes: &[&str], what: &str) {
    expect(response, status, what);
    let got = response.error_codes();
    assert!(
        got.iter().any(|c| codes.contains(&c.as_str())),
        "{what}: expected one of {codes:?}, got {got:?}"
    );
}

#[track_caller]
fn header<'r>(response: &'r Response, name: &str, what: &str) -> &'r str {
    response.header(name).unwrap_or_else(|| {
        panic!(
            "{what}: no {name} header in {} {:?}",
            response.status, response.headers
        )
    })
}

#[track_caller]
fn location_of(response: &Response, what: &str) -> String {
    header(response, "Location", what).to_owned()
}

/// `url` with `query` appended, whether or not it already has a query (a `Location` may carry
/// parameters the registry needs).
fn with_query(url: &str, query: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{query}")
}

/// The path (and query) of a `Location`, relative or absolute.
fn path_of(url: &str) -> String {
    match url.strip_prefix("http://") {
        Some(rest) => rest[rest.find('/').unwrap_or(rest.len())..].to_owned(),
        None => url.to_owned(),
    }
}

/// The spec's upload-session headers: a `Location` under the repository's uploads, the
/// `Docker-Upload-UUID` it names, and `Range: 0-<last byte>` for `size` bytes received (an
/// empty upload is `0-0` or no `Range`, as the Docker registry does).
#[track_caller]
fn expect_upload_session(response: &Response, repo: &str, size: usize, what: &str) -> String {
    let location = expect_session_location(response, repo, what);
    match (size, response.header("Range")) {
        (0, None | Some("0-0")) => {}
        (0, Some(other)) => panic!("{what}: empty upload reported as Range {other}"),
        (n, range) => assert_eq!(range, Some(format!("0-{}", n - 1).as_str()), "{what}"),
    }
    location
}

/// The `Location` of an upload session and the `Docker-Upload-UUID` it names.
#[track_caller]
fn expect_session_location(response: &Response, repo: &str, what: &str) -> String {
    let location = location_of(response, what);
    assert!(
        path_of(&location).starts_with(&format!("/v2/{repo}/blobs/uploads/")),
        "{what}: Location {location} is not an upload of {repo}"
    );
    let uuid = header(response, "Docker-Upload-UUID", what);
    assert!(
        location.contains(uuid),
        "{what}: Location {location} does not name the upload {uuid}"
    );
    location
}

/// A `201 Created` for a blob: `Location` of the blob and its `Docker-Content-Digest`.
#[track_caller]
fn expect_blob_created(response: &Response, repo: &str, digest: &str, what: &str) {
    expect(response, 201, what);
    assert_eq!(
        path_of(&location_of(response, what)),
        format!("/v2/{repo}/blobs/{digest}"),
        "{what}"
    );
    assert_eq!(
        response.header("Docker-Content-Digest"),
        Some(digest),
        "{what}"
    );
}

// ---- requests used by many workflows ----

fn blob_path(repo: &str, digest: &str) -> String {
    format!("/v2/{repo}/blobs/{digest}")
}

fn manifest_path(repo: &str, reference: &str) -> String {
    format!("/v2/{repo}/manifests/{reference}")
}

fn uploads_path(repo: &str) -> String {
    format!("/v2/{repo}/blobs/uploads/")
}

/// POST to start an upload (chunked style: `Content-Length: 0`); checks the 202 and returns
/// the `Location`.
async fn start_upload(c: &Client, repo: &str) -> String {
    let r = c
        .post(&uploads_path(repo))
        .header("Content-Length", "0")
        .send()
        .await;
    expect(&r, 202, "POST to start an upload");
    expect_upload_session(&r, repo, 0, "POST to start an upload")
}

/// Pushes a blob by POST then PUT with the body.
pub(crate) async fn push_blob(c: &Client, repo: &str, blob: &Blob) {
    let location = start_upload(c, repo).await;
    let r = c
        .put(&with_query(&location, &format!("digest={}", blob.digest)))
        .header("Content-Type", OCTET)
        .body(blob.data.clone())
        .send()
        .await;
    expect_blob_created(&r, repo, &blob.digest, "PUT of a blob");
}

async fn put_manifest(c: &Client, repo: &str, reference: &str, manifest: &Manifest) -> Response {
    c.put(&manifest_path(repo, reference))
        .header("Content-Type", manifest.media_type)
        .body(manifest.bytes.clone())
        .send()
        .await
}

/// A `201 Created` for a manifest: `Location` of the manifest by digest and its
/// `Docker-Content-Digest`.
#[track_caller]
fn expect_manifest_created(response: &Response, repo: &str, digest: &str, what: &str) {
    expect(response, 201, what);
    assert_eq!(
        response.header("Docker-Content-Digest"),
        Some(digest),
        "{what}"
    );
    let location = path_of(&location_of(response, what));
    assert!(
        location.starts_with(&format!("/v2/{repo}/manifests/")),
        "{what}: Location {location}"
    );
}

/// Pushes a config, a layer and an image manifest referencing them, by `reference`.
async fn push_image(c: &Client, repo: &str, reference: &str, seed: u64) -> Image {
    let config = config_blob(seed);
    let layer = Blob::random(3000, seed);
    push_blob(c, repo, &config).await;
    push_blob(c, repo, &layer).await;
    let manifest = image_manifest(&config, CONFIG, &[&layer], json!({}));
    let r = put_manifest(c, repo, reference, &manifest).await;
    expect_manifest_created(&r, repo, &manifest.digest, "PUT of an image manifest");
    Image {
        config,
        layer,
        manifest,
    }
}

/// GETs a blob and checks it is exactly `blob`.
async fn expect_blob(c: &Client, repo: &str, blob: &Blob, what: &str) {
    let r = c.get(&blob_path(repo, &blob.digest)).send().await;
    expect(&r, 200, what);
    assert_eq!(r.body, blob.data, "{what}: body");
    assert_eq!(
        r.header("Docker-Content-Digest"),
        Some(blob.digest.as_str()),
        "{what}"
    );
    assert_eq!(
        r.header("Content-Length"),
        Some(blob.size().to_string().as_str()),
        "{what}"
    );
}

/// HEAD and GET of a blob both 404 (GET with `BLOB_UNKNOWN`, or `NAME_UNKNOWN` when the
/// repository does not exist either).
async fn expect_no_blob(c: &Client, repo: &str, digest: &str, what: &str) {
    let path = blob_path(repo, digest);
    let r = c.head(&path).send().await;
    expect(&r, 404, &format!("{what} (HEAD)"));
    assert!(r.body.is_empty(), "{what}: HEAD with a body");
    let r = c.get(&path).send().await;
    expect_error_among(
        &r,
        404,
        &["BLOB_UNKNOWN", "NAME_UNKNOWN"],
        &format!("{what} (GET)"),
    );
}

/// GETs a manifest by `reference` and checks it is exactly `manifest`.
async fn expect_manifest(c: &Client, repo: &str, reference: &str, manifest: &Manifest, what: &str) {
    let r = c
        .get(&manifest_path(repo, reference))
        .header("Accept", &format!("{MANIFEST}, {INDEX}, {DOCKER_MANIFEST}"))
        .send()
        .await;
    expect(&r, 200, what);
    assert_eq!(r.body, manifest.bytes, "{what}: the exact bytes pushed");
    assert_eq!(
        r.header("Content-Type"),
        Some(manifest.media_type),
        "{what}"
    );
    assert_eq!(
        r.header("Docker-Content-Digest"),
        Some(manifest.digest.as_str()),
        "{what}"
    );
    assert_eq!(
        r.header("Content-Length"),
        Some(manifest.bytes.len().to_string().as_str()),
        "{what}"
    );
}

/// HEAD and GET of a manifest both 404 (GET with `MANIFEST_UNKNOWN`, or `NAME_UNKNOWN` when the
/// repository is gone).
async fn expect_no_manifest(c: &Client, repo: &str, reference: &str, what: &str) {
    let path = manifest_path(repo, reference);
    let r = c.head(&path).send().await;
    expect(&r, 404, &format!("{what} (HEAD)"));
    let r = c.get(&path).send().await;
    expect_error_among(
        &r,
        404,
        &["MANIFEST_UNKNOWN", "NAME_UNKNOWN"],
        &format!("{what} (GET)"),
    );
}

/// The tags of `repo` (all of them, one request), or `None` if the repository is unknown (404
/// `NAME_UNKNOWN`).
async fn tags_of(c: &Client, repo: &str) -> Option<Vec<String>> {
    let r = c.get(&format!("/v2/{repo}/tags/list")).send().await;
    if r.status == 404 {
        expect_error(&r, 404, "NAME_UNKNOWN", "tags of a repository without tags");
        return None;
    }
    expect(&r, 200, "tags list");
    Some(strings(&r.json()["tags"]))
}

fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::Null => Vec::new(),
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect(),
        other => panic!("not a list of strings: {other}"),
    }
}

/// The status of an upload (GET on its location): 204 with the session headers; returns the
/// number of bytes it reports.
async fn upload_size(c: &Client, repo: &str, location: &str) -> usize {
    let r = c.get(location).send().await;
    expect(&r, 204, "GET of an upload's status");
    expect_session_location(&r, repo, "GET of an upload's status");
    match r.header("Range") {
        None | Some("0-0") => 0,
        Some(range) => {
            let end: usize = range
                .strip_prefix("0-")
                .and_then(|end| end.parse().ok())
                .unwrap_or_else(|| panic!("upload status Range {range:?} is not 0-<end>"));
            end + 1
        }
    }
}

/// PATCHes one chunk with its `Content-Range` (inclusive) and `Content-Length`.
async fn patch_chunk(c: &Client, location: &str, data: &[u8], start: usize) -> Response {
    c.patch(location)
        .header("Content-Type", OCTET)
        .header(
            "Content-Range",
            &format!("{start}-{}", start + data.len() - 1),
        )
        .body(Bytes::copy_from_slice(data))
        .send()
        .await
}

/// Follows `Link: <…>; rel="next"` from `first` to the end; returns the items of `key` of
/// every page, page by page.
async fn pages(c: &Client, first: &str, key: &str) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut next = Some(first.to_owned());
    while let Some(url) = next.take() {
        assert!(pages.len() < 50, "Link never ends");
        let r = c.get(&url).send().await;
        expect(&r, 200, &format!("GET {url}"));
        pages.push(strings(&r.json()[key]));
        if let Some(link) = r.header("Link") {
            next = Some(link_target(link));
        }
    }
    pages
}

/// The URL of a `Link: <url>; rel="next"`.
#[track_caller]
fn link_target(link: &str) -> String {
    let (target, params) = link
        .split_once(';')
        .unwrap_or_else(|| panic!("Link {link:?} has no parameters"));
    assert!(
        params.replace(' ', "").contains("rel=\"next\""),
        "Link {link:?} is not rel=\"next\""
    );
    target
        .trim()
        .strip_prefix('<')
        .and_then(|t| t.strip_suffix('>'))
        .unwrap_or_else(|| panic!("Link {link:?} is not <url>"))
        .to_owned()
}

// ============================ the client itself ============================

/// A streamed body leaves the client as chunked transfer coding, one chunk per piece, without
/// a length: what the "streamed" upload tests rely on.
#[tokio::test]
async fn the_client_streams_chunked_bodies() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut seen = Vec::new();
        let mut buffer = [0u8; 4096];
        while !seen.ends_with(b"\r\n0\r\n\r\n") {
            let n = stream.read(&mut buffer).await.unwrap();
            assert!(
                n > 0,
                "the request ended early: {:?}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&buffer[..n]);
        }
        stream
            .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
            .await
            .unwrap();
        String::from_utf8(seen).unwrap()
    });
    let c = Client::new(&base);
    let r = c
        .patch("/v2/x/blobs/uploads/abc")
        .chunks(vec![
            Bytes::from_static(b"first"),
            Bytes::from_static(b"second"),
            Bytes::from_static(b"third"),
        ])
        .send()
        .await;
    expect(&r, 204, "the test server");
    let request = server.await.unwrap();
    let lower = request.to_ascii_lowercase();
    assert!(
        lower.starts_with("patch /v2/x/blobs/uploads/abc http/1.1\r\n"),
        "{request}"
    );
    assert!(
        lower.contains("transfer-encoding: chunked\r\n"),
        "{request}"
    );
    assert!(!lower.contains("content-length"), "{request}");
    assert!(
        request.ends_with("\r\n\r\n5\r\nfirst\r\n6\r\nsecond\r\n5\r\nthird\r\n0\r\n\r\n"),
        "{request}"
    );
}

// ============================ pull ============================

async fn api_version_check(base: String) {
    let c = Client::new(&base);
    let r = c.get("/v2/").send().await;
    expect(&r, 200, "GET /v2/");
    assert_eq!(
        r.header("Docker-Distribution-API-Version"),
        Some("registry/2.0")
    );
}

async fn pull_blobs(base: String) {
    let c = Client::new(&base);
    let repo = "pull/blob-data";
    let blob = Blob::random(2000, 1);
    push_blob(&c, repo, &blob).await;
    let path = blob_path(repo, &blob.digest);

    let r = c.head(&path).send().await;
    expect(&r, 200, "HEAD of a blob");
    assert_eq!(r.header("Content-Length"), Some("2000"));
    assert_eq!(
        r.header("Docker-Content-Digest"),
        Some(blob.digest.as_str())
    );
    assert_eq!(r.header("Accept-Ranges"), Some("bytes"));
    assert!(r.body.is_empty());

    expect_blob(&c, repo, &blob, "GET of a blob").await;
    let r = c.get(&path).send().await;
    assert_eq!(r.header("Accept-Ranges"), Some("bytes"));

    let missing = Blob::random(100, 2);
    expect_no_blob(&c, repo, &missing.digest, "a blob never pushed").await;
    expect_no_blob(
        &c,
        "pull/nowhere",
        &missing.digest,
        "a blob of a repository never pushed",
    )
    .await;
}

async fn pull_blob_ranges(base: String) {
    let c = Client::new(&base);
    let repo = "pull/ranges";
    let blob = Blob::random(2000, 3);
    push_blob(&c, repo, &blob).await;
    let path = blob_path(repo, &blob.digest);

    for (range, start, end) in [
        ("bytes=500-1499", 500, 1500),
        ("bytes=500-", 500, 2000),
        ("bytes=-500", 1500, 2000),
        ("bytes=1500-5000", 1500, 2000),
        ("bytes=0-0", 0, 1),
        ("bytes=1999-1999", 1999, 2000),
    ] {
        let r = c.get(&path).header("Range", range).send().await;
        expect(&r, 206, range);
        assert_eq!(&r.body[..], &blob.data[start..end], "{range}: body");
        assert_eq!(
            r.header("Content-Length"),
            Some((end - start).to_string().as_str()),
            "{range}"
        );
        assert_eq!(
            r.header("Content-Range"),
            Some(format!("bytes {start}-{}/2000", end - 1).as_str()),
            "{range}"
        );
        assert_eq!(
            r.header("Docker-Content-Digest"),
            Some(blob.digest.as_str()),
            "{range}: the digest of the whole blob"
        );
    }

    for range in ["bytes=2000-5000", "bytes=500-0", "bytes=5000-10000"] {
        let r = c.get(&path).header("Range", range).send().await;
        expect(&r, 416, range);
        assert_eq!(r.header("Content-Range"), Some("bytes */2000"), "{range}");
    }

    // A range on a missing blob is still a 404.
    let missing = Blob::random(10, 4);
    let r = c
        .get(&blob_path(repo, &missing.digest))
        .header("Range", "bytes=0-5")
        .send()
        .await;
    expect_error(&r, 404, "BLOB_UNKNOWN", "a range of a missing blob");
}

async fn pull_manifests(base: String) {
    let c = Client::new(&base);
    let repo = "pull/manifests";
    let image = push_image(&c, repo, "v1", 5).await;
    let m = &image.manifest;

    for reference in ["v1", m.digest.as_str()] {
        let r = c.head(&manifest_path(repo, reference)).send().await;
        expect(&r, 200, &format!("HEAD of a manifest by {reference}"));
        assert!(r.body.is_empty());
        assert_eq!(r.header("Content-Type"), Some(MANIFEST), "{reference}");
        assert_eq!(
            r.header("Content-Length"),
            Some(m.bytes.len().to_string().as_str()),
            "{reference}"
        );
        assert_eq!(
            r.header("Docker-Content-Digest"),
            Some(m.digest.as_str()),
            "{reference}"
        );
        expect_manifest(&c, repo, reference, m, &format!("GET by {reference}")).await;
    }
    // Its blobs are there too.
    expect_blob(&c, repo, &image.config, "the config").await;
    expect_blob(&c, repo, &image.layer, "the layer").await;

    // Content-Type is the pushed media type, whatever it is: a Docker manifest.
    let docker_config = Blob::new(&br#"{"architecture":"arm64","os":"linux"}"#[..]);
    let docker_layer = Blob::random(500, 6);
    push_blob(&c, repo, &docker_config).await;
    push_blob(&c, repo, &docker_layer).await;
    let docker = Manifest::of(
        &json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": docker_config.descriptor(DOCKER_CONFIG),
            "layers": [docker_layer.descriptor(DOCKER_LAYER)],
        }),
        DOCKER_MANIFEST,
    );
    let r = put_manifest(&c, repo, "docker", &docker).await;
    expect_manifest_created(&r, repo, &docker.digest, "PUT of a Docker manifest");
    expect_manifest(&c, repo, "docker", &docker, "GET of a Docker manifest").await;
    let r = c.head(&manifest_path(repo, &docker.digest)).send().await;
    assert_eq!(r.header("Content-Type"), Some(DOCKER_MANIFEST));

    // Missing ones.
    expect_no_manifest(&c, repo, "v2", "a tag never pushed").await;
    let r = c.get(&manifest_path(repo, "v2")).send().await;
    expect_error(&r, 404, "MANIFEST_UNKNOWN", "a tag never pushed");
    let missing = Blob::random(10, 7).digest;
    expect_no_manifest(&c, repo, &missing, "a digest never pushed").await;
    let r = c.get(&manifest_path(repo, &missing)).send().await;
    expect_error(&r, 404, "MANIFEST_UNKNOWN", "a digest never pushed");
    expect_no_manifest(&c, "pull/nowhere", "v1", "a repository never pushed").await;
    // A manifest belongs to the repository it was pushed to.
    expect_no_manifest(
        &c,
        "pull/other",
        &m.digest,
        "a manifest of another repository",
    )
    .await;
}

// ============================ push ============================

async fn push_streamed(base: String) {
    let c = Client::new(&base);
    let repo = "push/streamed";
    let blob = Blob::random(10_000, 10);

    let r = c
        .post(&uploads_path(repo))
        .header("Content-Length", "0")
        .send()
        .await;
    expect(&r, 202, "POST");
    let location = expect_upload_session(&r, repo, 0, "POST");
    // The default server has no minimum chunk size, so it announces none (the header means a
    // minimum, and a preference sent as one would push clients into needlessly large chunks).
    assert_eq!(
        r.header("OCI-Chunk-Min-Length"),
        None,
        "no minimum announced by default"
    );

    // A streamed PATCH: no Content-Range, no Content-Length, the body in several chunks.
    let chunks: Vec<Bytes> = blob.data.chunks(2500).map(Bytes::copy_from_slice).collect();
    let r = c
        .patch(&location)
        .header("Content-Type", OCTET)
        .chunks(chunks)
        .send()
        .await;
    expect(&r, 202, "streamed PATCH");
    let location = expect_upload_session(&r, repo, 10_000, "streamed PATCH");

    let r = c
        .put(&with_query(&location, &format!("digest={}", blob.digest)))
        .header("Content-Length", "0")
        .send()
        .await;
    expect_blob_created(&r, repo, &blob.digest, "closing PUT");
    let r2 = c.get(&location_of(&r, "closing PUT")).send().await;
    expect(&r2, 200, "GET of the Location of the new blob");
    assert_eq!(r2.body, blob.data);
    expect_blob(&c, repo, &blob, "the streamed blob").await;

    // Two streamed PATCHes in a row append.
    let blob = Blob::random(7000, 11);
    let mut location = start_upload(&c, repo).await;
    for (i, part) in blob.data.chunks(3500).enumerate() {
        let chunks = part.chunks(1000).map(Bytes::copy_from_slice).collect();
        let r = c.patch(&location).chunks(chunks).send().await;
        expect(&r, 202, "streamed PATCH");
        location = expect_upload_session(&r, repo, 3500 * (i + 1), "streamed PATCH");
    }
    let r = c
        .put(&with_query(&location, &format!("digest={}", blob.digest)))
        .send()
        .await;
    expect_blob_created(&r, repo, &blob.digest, "closing PUT");
    expect_blob(&c, repo, &blob, "a blob of two streamed PATCHes").await;
}

async fn push_monolithic(base: String) {
    let c = Client::new(&base);
    let repo = "push/monolithic";
    let blob = Blob::random(5000, 12);
    let location = start_upload(&c, repo).await;
    let r = c
        .put(&with_query(&location, &format!("digest={}", blob.digest)))
        .header("Content-Type", OCTET)
        .body(blob.data.clone())
        .send()
        .await;
    expect_blob_created(&r, repo, &blob.digest, "POST then PUT");
    expect_blob(&c, repo, &blob, "a monolithic blob").await;
    // The session is over.
    let r = c.get(&location).send().await;
    expect_error(&r, 404, "BLOB_UPLOAD_UNKNOWN", "GET of a closed upload");
    let r = c
        .put(&with_query(&location, &format!("digest={}", blob.digest)))
        .body(blob.data.clone())
        .send()
        .await;
    expect_error(&r, 404, "BLOB_UPLOAD_UNKNOWN", "PUT to a closed upload");

    // The PUT's body may also be streamed.
    let blob = Blob::random(5000, 13);
    let location = start_upload(&c, repo).await;
    let chunks = blob.data.chunks(1024).map(Bytes::copy_from_slice).collect();
    let r = c
        .put(&with_query(&location, &format!("digest={}", blob.digest)))
        .header("Content-Type", OCTET)
        .chunks(chunks)
        .send()
        .await;
    expect_blob_created(&r, repo, &blob.digest, "POST then a streamed PUT");
    expect_blob(&c, repo, &blob, "a monolithic streamed blob").await;

    // Query values percent-encoded, as Go's url.Values encodes them (`:` as `%3A`).
    let blob = Blob::random(100, 19);
    let location = start_upload(&c, repo).await;
    let r = c
        .put(&with_query(
            &location,
            &format!("digest={}", blob.digest.replace(':', "%3A")),
        ))
        .body(blob.data.clone())
        .send()
        .await;
    expect_blob_created(&r, repo, &blob.digest, "PUT with a percent-encoded digest");

    // Pushing a blob again is fine.
    push_blob(&c, repo, &blob).await;
    expect_blob(&c, repo, &blob, "a blob pushed twice").await;
}

async fn push_single_post(base: String) {
    let c = Client::new(&base);
    let repo = "push/single";
    for (blob, streamed) in [
        (Blob::random(4000, 14), false),
        (Blob::random(4000, 15), true),
    ] {
        let post = c
            .post(&with_query(
                &uploads_path(repo),
                &format!("digest={}", blob.digest),
            ))
            .header("Content-Type", OCTET);
        let post = if streamed {
            post.chunks(blob.data.chunks(1000).map(Bytes::copy_from_slice).collect())
        } else {
            post.body(blob.data.clone())
        };
        let r = post.send().await;
        if r.status == 202 {
            // The spec lets a registry without single-POST uploads answer with a session.
            let location = expect_upload_session(&r, repo, 0, "single POST answered 202");
            let r = c
                .put(&with_query(&location, &format!("digest={}", blob.digest)))
                .body(blob.data.clone())
                .send()
                .await;
            expect_blob_created(&r, repo, &blob.digest, "PUT after a 202 single POST");
        } else {
            expect_blob_created(&r, repo, &blob.digest, "single POST");
        }
        expect_blob(&c, repo, &blob, "a single-POST blob").await;
    }
}

async fn push_empty_blob(base: String) {
    let c = Client::new(&base);
    let repo = "push/empty";
    let empty = Blob::new(Bytes::new());
    let r = c
        .post(&with_query(
            &uploads_path(repo),
            &format!("digest={}", empty.digest),
        ))
        .header("Content-Length", "0")
        .send()
        .await;
    expect_blob_created(&r, repo, &empty.digest, "single POST of the empty blob");
    expect_blob(&c, repo, &empty, "the empty blob").await;
    let r = c.head(&blob_path(repo, &empty.digest)).send().await;
    expect(&r, 200, "HEAD of the empty blob");
    assert_eq!(r.header("Content-Length"), Some("0"));

    // POST then PUT of nothing, in another repository.
    let repo = "push/empty2";
    let location = start_upload(&c, repo).await;
    let r = c
        .put(&with_query(&location, &format!("digest={}", empty.digest)))
        .header("Content-Length", "0")
        .send()
        .await;
    expect_blob_created(&r, repo, &empty.digest, "PUT of nothing");
    expect_blob(&c, repo, &empty, "the empty blob").await;

    // The empty JSON blob, `{}`.
    push_blob(&c, repo, &empty_config()).await;
    expect_blob(&c, repo, &empty_config(), "the empty JSON blob").await;
}

async fn push_sha512(base: String) {
    let c = Client::new(&base);
    let repo = "push/sha512";
    let blob = Blob::sha512(pseudo_random(3000, 16));
    push_blob(&c, repo, &blob).await;
    expect_blob(&c, repo, &blob, "a sha512 blob").await;

    // Chunked, with the closing PUT naming the sha512 digest.
    let blob = Blob::sha512(pseudo_random(3000, 17));
    let location = start_upload(&c, repo).await;
    let r = patch_chunk(&c, &location, &blob.data[..2000], 0).await;
    expect(&r, 202, "sha512 chunk");
    let location = expect_upload_session(&r, repo, 2000, "sha512 chunk");
    let r = c
        .put(&with_query(&location, &format!("digest={}", blob.digest)))
        .header("Content-Range", "2000-2999")
        .body(blob.data.slice(2000..))
        .send()
        .await;
    expect_blob_created(&r, repo, &blob.digest, "sha512 closing PUT");
    expect_blob(&c, repo, &blob, "a chunked sha512 blob").await;

    // A manifest pushed by its sha512 digest answers with that digest.
    let config = config_blob(18);
    push_blob(&c, repo, &config).await;
    let m = image_manifest(&config, CONFIG, &[], json!({}));
    let digest = Digest::of(Algorithm::Sha512, &m.bytes).to_string();
    let r = put_manifest(&c, repo, &digest, &m).await;
    expect(&r, 201, "PUT of a manifest by its sha512 digest");
    assert_eq!(
        r.header("Docker-Content-Digest"),
        Some(digest.as_str()),
        "Docker-Content-Digest must be the digest the client gave"
    );
    let r = c.get(&manifest_path(repo, &digest)).send().await;
    expect(&r, 200, "GET of a manifest by its sha512 digest");
    assert_eq!(r.body, m.bytes);
}

async fn push_chunked_in_order(base: String) {
    let c = Client::new(&base);
    let repo = "push/chunked";
    let blob = Blob::random(3500, 20);
    let mut location = start_upload(&c, repo).await;
    for start in [0, 1000, 2000] {
        let r = patch_chunk(&c, &location, &blob.data[start..start + 1000], start).await;
        expect(&r, 202, &format!("chunk at {start}"));
        location = expect_upload_session(&r, repo, start + 1000, &format!("chunk at {start}"));
    }
    // The closing PUT carries the last chunk.
    let r = c
        .put(&with_query(&location, &format!("digest={}", blob.digest)))
        .header("Content-Type", OCTET)
        .header("Content-Range", "3000-3499")
        .body(blob.data.slice(3000..))
        .send()
        .await;
    expect_blob_created(&r, repo, &blob.digest, "closing PUT with the last chunk");
    expect_blob(&c, repo, &blob, "a chunked blob").await;

    // Every chunk by PATCH, then a PUT without a body.
    let blob = Blob::random(2500, 21);
    let mut location = start_upload(&c, repo).await;
    for (start, end) in [(0, 1000), (1000, 2000), (2000, 2500)] {
        let r = patch_chunk(&c, &location, &blob.data[start..end], start).await;
        expect(&r, 202, &format!("chunk at {start}"));
        location = expect_upload_session(&r, repo, end, &format!("chunk at {start}"));
    }
    let r = c
        .put(&with_query(&location, &format!("digest={}", blob.digest)))
        .header("Content-Length", "0")
        .send()
        .await;
    expect_blob_created(&r, repo, &blob.digest, "closing PUT without a body");
    expect_blob(&c, repo, &blob, "a chunked blob").await;

    // Two sessions at once do not mix.
    let blobs = [Blob::random(2000, 28), Blob::random(2000, 29)];
    let mut locations = [start_upload(&c, repo).await, start_upload(&c, repo).await];
    assert_ne!(locations[0], locations[1], "two sessions, two locations");
    for start in [0, 1000] {
        for (blob, location) in blobs.iter().zip(locations.iter_mut()) {
            let r = patch_chunk(&c, location, &blob.data[start..start + 1000], start).await;
            expect(&r, 202, "a chunk of one of two sessions");
            *location = expect_upload_session(&r, repo, start + 1000, "interleaved chunk");
        }
    }
    for (blob, location) in blobs.iter().zip(locations.iter()) {
        let r = c
            .put(&with_query(location, &format!("digest={}", blob.digest)))
            .send()
            .await;
        expect_blob_created(&r, repo, &blob.digest, "closing one of two sessions");
        expect_blob(&c, repo, blob, "a blob of two interleaved sessions").await;
    }
}

async fn push_chunked_out_of_order(base: String) {
    let c = Client::new(&base);
    let repo = "push/out-of-order";
    let blob = Blob::random(3500, 22);
    let location = start_upload(&c, repo).await;

    // A first chunk that does not start at 0.
    let r = patch_chunk(&c, &location, &blob.data[1000..2000], 1000).await;
    expect(&r, 416, "a first chunk at 1000");
    assert_eq!(upload_size(&c, repo, &location).await, 0);

    let r = patch_chunk(&c, &location, &blob.data[..1000], 0).await;
    expect(&r, 202, "the first chunk");
    let location = expect_upload_session(&r, repo, 1000, "the first chunk");

    // A gap.
    let r = patch_chunk(&c, &location, &blob.data[2000..3000], 2000).await;
    expect(&r, 416, "a chunk leaving a gap");

    // The client asks where the upload is and resumes from there.
    let r = c.get(&location).send().await;
    expect(&r, 204, "GET of the upload status after a 416");
    let location = expect_upload_session(&r, repo, 1000, "upload status");
    assert!(r.body.is_empty());

    let r = patch_chunk(&c, &location, &blob.data[1000..2000], 1000).await;
    expect(&r, 202, "the next chunk");
    let location = expect_upload_session(&r, repo, 2000, "the next chunk");

    // The same chunk again.
    let r = patch_chunk(&c, &location, &blob.data[1000..2000], 1000).await;
    expect(&r, 416, "a repeated chunk");
    assert_eq!(upload_size(&c, repo, &location).await, 2000);

    // A closing PUT whose chunk is out of order.
    let r = c
        .put(&with_query(&location, &format!("digest={}", blob.digest)))
        .header("Content-Range", "2500-3499")
        .body(blob.data.slice(2500..))
        .send()
        .await;
    expect(&r, 416, "a closing PUT with a chunk out of order");
    assert_eq!(upload_size(&c, repo, &location).await, 2000);
    expect_no_blob(&c, repo, &blob.digest, "a blob whose upload is not closed").await;

    let r = c
        .put(&with_query(&location, &format!("digest={}", blob.digest)))
        .header("Content-Range", "2000-3499")
        .body(blob.data.slice(2000..))
        .send()
        .await;
    expect_blob_created(&r, repo, &blob.digest, "the closing PUT in order");
    expect_blob(&c, repo, &blob, "a blob resumed after 416s").await;
}

async fn push_cancelled(base: String) {
    let c = Client::new(&base);
    let repo = "push/cancelled";
    let blob = Blob::random(2000, 23);
    let location = start_upload(&c, repo).await;
    let r = patch_chunk(&c, &location, &blob.data[..1000], 0).await;
    expect(&r, 202, "a chunk");
    let location = expect_upload_session(&r, repo, 1000, "a chunk");

    let r = c.delete(&location).send().await;
    expect(&r, 204, "DELETE of an upload");

    let r = c.get(&location).send().await;
    expect_error(&r, 404, "BLOB_UPLOAD_UNKNOWN", "GET of a cancelled upload");
    let r = patch_chunk(&c, &location, &blob.data[1000..], 1000).await;
    expect_error(
        &r,
        404,
        "BLOB_UPLOAD_UNKNOWN",
        "PATCH of a cancelled upload",
    );
    let r = c
        .put(&with_query(&location, &format!("digest={}", blob.digest)))
        .body(blob.data.slice(1000..))
        .send()
        .await;
    expect_error(&r, 404, "BLOB_UPLOAD_UNKNOWN", "PUT of a cancelled upload");
    let r = c.delete(&location).send().await;
    expect_error(
        &r,
        404,
        "BLOB_UPLOAD_UNKNOWN",
        "DELETE of a cancelled upload",
    );
    expect_no_blob(&c, repo, &blob.digest, "the blob of a cancelled upload").await;

    // An upload belongs to its repository.
    let location = start_upload(&c, repo).await;
    let id = header(
        &c.get(&location).send().await,
        "Docker-Upload-UUID",
        "upload status",
    )
    .to_owned();
    let elsewhere = format!("{}{id}", uploads_path("push/elsewhere"));
    let r = c.get(&elsewhere).send().await;
    expect_error(
        &r,
        404,
        "BLOB_UPLOAD_UNKNOWN",
        "GET of an upload under another repository",
    );
    let r = c
        .put(&with_query(&elsewhere, &format!("digest={}", blob.digest)))
        .body(blob.data.clone())
        .send()
        .await;
    expect_error(
        &r,
        404,
        "BLOB_UPLOAD_UNKNOWN",
        "PUT of an upload under another repository",
    );
    expect_no_blob(
        &c,
        "push/elsewhere",
        &blob.digest,
        "a blob pushed through another repository's upload",
    )
    .await;
    assert_eq!(upload_size(&c, repo, &location).await, 0);

    // Uploads never started.
    for id in ["0123456789abcdef0123456789abcdef", "nope", "..", "%2e%2e"] {
        let path = format!("{}{id}", uploads_path(repo));
        let r = c.get(&path).send().await;
        expect_error(
            &r,
            404,
            "BLOB_UPLOAD_UNKNOWN",
            &format!("GET of upload {id}"),
        );
        let r = c.delete(&path).send().await;
        expect_error(
            &r,
            404,
            "BLOB_UPLOAD_UNKNOWN",
            &format!("DELETE of upload {id}"),
        );
    }
}

async fn push_mount(base: String) {
    let c = Client::new(&base);
    let blob = Blob::random(3000, 24);
    push_blob(&c, "mount/source", &blob).await;

    // With `from`: 201, Location of the blob in the target, Docker-Content-Digest.
    let r = c
        .post(&with_query(
            &uploads_path("mount/target"),
            &format!("mount={}&from=mount/source", blob.digest),
        ))
        .header("Content-Length", "0")
        .send()
        .await;
    expect_blob_created(&r, "mount/target", &blob.digest, "mount with from");
    expect_blob(&c, "mount/target", &blob, "a mounted blob").await;
    let r = c
        .head(&blob_path("mount/target", &blob.digest))
        .send()
        .await;
    expect(&r, 200, "HEAD of a mounted blob");
    // The source keeps it.
    expect_blob(&c, "mount/source", &blob, "the source of a mount").await;

    // Percent-encoded query values (`:` as `%3A`, `/` as `%2F`).
    let r = c
        .post(&with_query(
            &uploads_path("mount/encoded"),
            &format!(
                "mount={}&from=mount%2Fsource",
                blob.digest.replace(':', "%3A")
            ),
        ))
        .header("Content-Length", "0")
        .send()
        .await;
    expect_blob_created(&r, "mount/encoded", &blob.digest, "percent-encoded mount");

    // Without `from`: an upload session the client can use.
    let r = c
        .post(&with_query(
            &uploads_path("mount/anonymous"),
            &format!("mount={}", blob.digest),
        ))
        .header("Content-Length", "0")
        .send()
        .await;
    expect(&r, 202, "mount without from");
    let location = expect_upload_session(&r, "mount/anonymous", 0, "mount without from");
    let r = c
        .put(&with_query(&location, &format!("digest={}", blob.digest)))
        .body(blob.data.clone())
        .send()
        .await;
    expect_blob_created(
        &r,
        "mount/anonymous",
        &blob.digest,
        "PUT after a mount without from",
    );
    expect_blob(&c, "mount/anonymous", &blob, "the blob uploaded instead").await;

    // A blob the source does not have, and a source that does not exist: upload sessions.
    for (from, seed) in [("mount/source", 25), ("mount/nowhere", 26)] {
        let missing = Blob::random(1000, seed);
        let r = c
            .post(&with_query(
                &uploads_path("mount/target"),
                &format!("mount={}&from={from}", missing.digest),
            ))
            .header("Content-Length", "0")
            .send()
            .await;
        expect(&r, 202, &format!("mount of a missing blob from {from}"));
        let location = expect_upload_session(&r, "mount/target", 0, "mount of a missing blob");
        expect_no_blob(&c, "mount/target", &missing.digest, "a blob not mounted").await;
        let r = c
            .put(&with_query(
                &location,
                &format!("digest={}", missing.digest),
            ))
            .body(missing.data.clone())
            .send()
            .await;
        expect_blob_created(
            &r,
            "mount/target",
            &missing.digest,
            "PUT after a failed mount",
        );
    }
}

async fn push_manifests(base: String) {
    let c = Client::new(&base);
    let repo = "push/manifests";
    let image = push_image(&c, repo, "v1", 30).await;
    // The tag and the Location work.
    expect_manifest(&c, repo, "v1", &image.manifest, "by tag").await;

    // By digest: no tag appears.
    let by_digest = image_manifest(
        &image.config,
        CONFIG,
        &[],
        json!({"annotations": {"a": "b"}}),
    );
    let r = put_manifest(&c, repo, &by_digest.digest, &by_digest).await;
    expect_manifest_created(&r, repo, &by_digest.digest, "PUT by digest");
    assert_eq!(
        path_of(&location_of(&r, "PUT by digest")),
        manifest_path(repo, &by_digest.digest)
    );
    expect_manifest(&c, repo, &by_digest.digest, &by_digest, "by digest").await;
    assert_eq!(tags_of(&c, repo).await, Some(vec!["v1".to_owned()]));

    // Several tags at once: one OCI-Tag per tag.
    let tags: Vec<String> = (0..10).map(|i| format!("multi-{i}")).collect();
    let multi = image_manifest(&image.config, CONFIG, &[&image.layer], json!({"x": 1}));
    let query: Vec<String> = tags.iter().map(|t| format!("tag={t}")).collect();
    let r = c
        .put(&format!(
            "{}?{}",
            manifest_path(repo, &multi.digest),
            query.join("&")
        ))
        .header("Content-Type", MANIFEST)
        .body(multi.bytes.clone())
        .send()
        .await;
    expect_manifest_created(&r, repo, &multi.digest, "PUT with ?tag=");
    let mut answered: Vec<&str> = r.headers_all("OCI-Tag");
    answered.sort_unstable();
    let mut expected: Vec<&str> = tags.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(answered, expected, "one OCI-Tag per ?tag=");
    for tag in &tags {
        expect_manifest(&c, repo, tag, &multi, "by one of several tags").await;
    }
    let listed = tags_of(&c, repo).await.unwrap();
    for tag in &tags {
        assert!(listed.contains(tag), "{tag} not listed in {listed:?}");
    }

    // No layers at all.
    let no_layers = image_manifest(&empty_config(), EMPTY_JSON, &[], json!({}));
    push_blob(&c, repo, &empty_config()).await;
    let r = put_manifest(&c, repo, "no-layers", &no_layers).await;
    expect_manifest_created(&r, repo, &no_layers.digest, "a manifest with no layers");
    expect_manifest(&c, repo, "no-layers", &no_layers, "no layers").await;

    // Unknown fields are kept, byte for byte.
    let custom = image_manifest(
        &image.config,
        CONFIG,
        &[&image.layer],
        json!({"io.example.custom": {"nested": [1, 2, {"k": "v"}]}, "annotations": {"org.example": "é"}}),
    );
    let r = put_manifest(&c, repo, "custom", &custom).await;
    expect_manifest_created(&r, repo, &custom.digest, "a manifest with custom fields");
    expect_manifest(&c, repo, "custom", &custom, "custom fields").await;

    // An index of two manifests.
    let index = index_manifest(
        &[&image.manifest, &by_digest],
        json!({"annotations": {"org.opencontainers.image.ref.name": "whatever"}}),
    );
    let r = put_manifest(&c, repo, "index", &index).await;
    expect_manifest_created(&r, repo, &index.digest, "an index");
    expect_manifest(&c, repo, "index", &index, "an index").await;
    let r = c.head(&manifest_path(repo, &index.digest)).send().await;
    assert_eq!(r.header("Content-Type"), Some(INDEX));

    // Moving a tag.
    let r = put_manifest(&c, repo, "v1", &by_digest).await;
    expect_manifest_created(&r, repo, &by_digest.digest, "moving a tag");
    expect_manifest(&c, repo, "v1", &by_digest, "a moved tag").await;
    expect_manifest(
        &c,
        repo,
        &image.manifest.digest,
        &image.manifest,
        "the manifest a tag moved away from",
    )
    .await;
}

async fn push_index_and_referrer_subjects(base: String) {
    let c = Client::new(&base);
    let repo = "push/subjects";
    let image = push_image(&c, repo, "v1", 31).await;
    push_blob(&c, repo, &empty_config()).await;

    // A manifest with a subject: OCI-Subject.
    let referrer = image_manifest(
        &empty_config(),
        EMPTY_JSON,
        &[],
        json!({"artifactType": "application/vnd.example.sig", "subject": image.manifest.descriptor()}),
    );
    let r = put_manifest(&c, repo, &referrer.digest, &referrer).await;
    expect_manifest_created(&r, repo, &referrer.digest, "a manifest with a subject");
    assert_eq!(
        r.header("OCI-Subject"),
        Some(image.manifest.digest.as_str()),
        "OCI-Subject"
    );

    // A subject that points at nothing MUST be accepted.
    let ghost = Blob::random(100, 32);
    let dangling = image_manifest(
        &empty_config(),
        EMPTY_JSON,
        &[],
        json!({"artifactType": "application/vnd.example.sig", "subject": {"mediaType": MANIFEST, "digest": ghost.digest, "size": 100}}),
    );
    let r = put_manifest(&c, repo, &dangling.digest, &dangling).await;
    expect_manifest_created(
        &r,
        repo,
        &dangling.digest,
        "a subject that points at nothing",
    );
    assert_eq!(r.header("OCI-Subject"), Some(ghost.digest.as_str()));

    // An index with a subject.
    let index = index_manifest(
        &[&image.manifest],
        json!({"subject": image.manifest.descriptor()}),
    );
    let r = put_manifest(&c, repo, "index", &index).await;
    expect_manifest_created(&r, repo, &index.digest, "an index with a subject");
    assert_eq!(
        r.header("OCI-Subject"),
        Some(image.manifest.digest.as_str())
    );

    // Without a subject, no OCI-Subject.
    let plain = image_manifest(&empty_config(), EMPTY_JSON, &[], json!({"x": "plain"}));
    let r = put_manifest(&c, repo, "plain", &plain).await;
    expect_manifest_created(&r, repo, &plain.digest, "no subject");
    assert_eq!(r.header("OCI-Subject"), None);
}

// ============================ content discovery ============================

async fn discover_tags(base: String) {
    let c = Client::new(&base);
    let repo = "discover/tags";
    let mut tags: Vec<String> = [
        "v2", "v10", "v1", "latest", "a", "_x", "Z9", "B", "1.0", "a-b", "a.b",
    ]
    .iter()
    .map(|t| (*t).to_owned())
    .collect();
    let image = push_image(&c, repo, &tags[0], 40).await;
    for tag in &tags[1..] {
        let r = put_manifest(&c, repo, tag, &image.manifest).await;
        expect_manifest_created(&r, repo, &image.manifest.digest, "tagging");
    }
    tags.sort(); // byte order: "ASCIIbetical"
    let list = format!("/v2/{repo}/tags/list");

    let r = c.get(&list).send().await;
    expect(&r, 200, "tags list");
    assert!(
        r.header("Content-Type")
            .is_some_and(|t| t.starts_with("application/json")),
        "Content-Type {:?}",
        r.header("Content-Type")
    );
    let body = r.json();
    assert_eq!(body["name"], repo);
    assert_eq!(strings(&body["tags"]), tags, "sorted");
    assert_eq!(r.header("Link"), None, "a whole list has no Link");

    // n=0: an empty list and no Link.
    let r = c.get(&format!("{list}?n=0")).send().await;
    expect(&r, 200, "n=0");
    assert_eq!(strings(&r.json()["tags"]), Vec::<String>::new(), "n=0");
    assert_eq!(r.header("Link"), None, "n=0 has no Link");

    // n cuts, and Link leads page by page to the end.
    for n in [1, 3, 4, tags.len() - 1] {
        let r = c.get(&format!("{list}?n={n}")).send().await;
        expect(&r, 200, &format!("n={n}"));
        assert_eq!(strings(&r.json()["tags"]), tags[..n], "n={n}");
        assert!(r.header("Link").is_some(), "n={n} cut the list: Link");
        let pages = pages(&c, &format!("{list}?n={n}"), "tags").await;
        assert_eq!(
            pages.len(),
            tags.len().div_ceil(n),
            "n={n}: pages {pages:?}"
        );
        for page in &pages[..pages.len() - 1] {
            assert_eq!(page.len(), n, "n={n}: every page but the last is full");
        }
        assert_eq!(pages.concat(), tags, "n={n}: the pages make the list");
    }
    // n as large as the list or larger: everything, no Link.
    for n in [tags.len(), tags.len() + 1, 1000] {
        let r = c.get(&format!("{list}?n={n}")).send().await;
        expect(&r, 200, &format!("n={n}"));
        assert_eq!(strings(&r.json()["tags"]), tags, "n={n}");
        assert_eq!(r.header("Link"), None, "n={n}");
    }

    // last: strictly after, whether or not it is a tag.
    let after = |last: &str| -> Vec<String> {
        tags.iter().filter(|t| t.as_str() > last).cloned().collect()
    };
    for last in ["a", "Z9", "m", "0", "v2", "zzz"] {
        let r = c.get(&format!("{list}?last={last}")).send().await;
        expect(&r, 200, &format!("last={last}"));
        assert_eq!(strings(&r.json()["tags"]), after(last), "last={last}");
        assert_eq!(r.header("Link"), None, "last={last} without n");
    }
    let r = c.get(&format!("{list}?n=2&last=a")).send().await;
    expect(&r, 200, "n=2&last=a");
    assert_eq!(strings(&r.json()["tags"]), after("a")[..2]);
    let pages = pages(&c, &format!("{list}?n=2&last=a"), "tags").await;
    assert_eq!(pages.concat(), after("a"));
}

async fn discover_catalog(base: String) {
    let c = Client::new(&base);
    let mut repos: Vec<String> = ["c", "b/one", "a", "a-b", "a/b", "a/b/c", "z.z/y_y"]
        .iter()
        .map(|r| (*r).to_owned())
        .collect();
    for (i, repo) in repos.iter().enumerate() {
        push_image(&c, repo, "v1", 50 + i as u64).await;
    }
    repos.sort();

    let r = c.get("/v2/_catalog").send().await;
    expect(&r, 200, "catalog");
    assert_eq!(strings(&r.json()["repositories"]), repos);
    assert_eq!(r.header("Link"), None);

    let r = c.get("/v2/_catalog?n=0").send().await;
    expect(&r, 200, "catalog n=0");
    assert_eq!(strings(&r.json()["repositories"]), Vec::<String>::new());
    assert_eq!(r.header("Link"), None);

    for n in [1, 2, 3] {
        let pages = pages(&c, &format!("/v2/_catalog?n={n}"), "repositories").await;
        assert_eq!(pages.len(), repos.len().div_ceil(n), "n={n}: {pages:?}");
        assert_eq!(pages.concat(), repos, "n={n}");
    }
    let r = c.get("/v2/_catalog?last=a/b").send().await;
    expect(&r, 200, "catalog last=a/b");
    let after: Vec<String> = repos
        .iter()
        .filter(|r| r.as_str() > "a/b")
        .cloned()
        .collect();
    assert_eq!(strings(&r.json()["repositories"]), after);
}

async fn discover_referrers(base: String) {
    let c = Client::new(&base);
    let repo = "discover/referrers";
    let subject = push_image(&c, repo, "v1", 60).await;
    push_blob(&c, repo, &empty_config()).await;
    let referrers = |digest: &str| format!("/v2/{repo}/referrers/{digest}");

    // Nothing refers to an unknown digest: 200 and an empty index, never 404.
    let unknown = Blob::random(10, 61);
    for digest in [&unknown.digest, &subject.manifest.digest] {
        let r = c.get(&referrers(digest)).send().await;
        expect(&r, 200, "referrers of a digest nothing refers to");
        assert_eq!(r.header("Content-Type"), Some(INDEX));
        let body = r.json();
        assert_eq!(body["schemaVersion"], 2);
        assert_eq!(body["mediaType"], INDEX);
        assert_eq!(body["manifests"], json!([]));
        assert_eq!(r.header("OCI-Filters-Applied"), None);
    }

    // Three referrers: by artifactType, by config media type, an index without either.
    let sbom_layer = Blob::random(300, 62);
    push_blob(&c, repo, &sbom_layer).await;
    let sbom = image_manifest(
        &empty_config(),
        EMPTY_JSON,
        &[&sbom_layer],
        json!({
            "artifactType": "application/vnd.example.sbom",
            "subject": subject.manifest.descriptor(),
            "annotations": {"org.example.kind": "sbom", "org.opencontainers.image.created": "2026-01-01T00:00:00Z"},
        }),
    );
    let sig_config = Blob::new(&br#"{"sig":true}"#[..]);
    push_blob(&c, repo, &sig_config).await;
    let sig = image_manifest(
        &sig_config,
        "application/vnd.example.sig.config+json",
        &[],
        json!({"subject": subject.manifest.descriptor(), "annotations": {"k": "v"}}),
    );
    let list = index_manifest(
        &[&subject.manifest],
        json!({"subject": subject.manifest.descriptor()}),
    );
    // And one that refers to something else.
    let other = image_manifest(
        &empty_config(),
        EMPTY_JSON,
        &[],
        json!({"artifactType": "application/vnd.example.sbom", "subject": {"mediaType": MANIFEST, "digest": unknown.digest, "size": 10}}),
    );
    for m in [&sbom, &sig, &list, &other] {
        let r = put_manifest(&c, repo, &m.digest, m).await;
        expect_manifest_created(&r, repo, &m.digest, "a referrer");
        let r = c.get(&manifest_path(repo, &m.digest)).send().await;
        expect(&r, 200, "GET of a referrer");
    }

    let r = c.get(&referrers(&subject.manifest.digest)).send().await;
    expect(&r, 200, "referrers");
    assert_eq!(r.header("Content-Type"), Some(INDEX));
    assert_eq!(r.header("OCI-Filters-Applied"), None, "no filter asked");
    let body = r.json();
    assert_eq!(body["mediaType"], INDEX);
    let found = body["manifests"].as_array().unwrap().clone();
    let by_digest = |digest: &str| -> Value {
        found
            .iter()
            .find(|d| d["digest"] == digest)
            .cloned()
            .unwrap_or_else(|| panic!("{digest} not among the referrers {found:?}"))
    };
    assert_eq!(found.len(), 3, "exactly the three referrers: {found:?}");
    let d = by_digest(&sbom.digest);
    assert_eq!(d["mediaType"], MANIFEST);
    assert_eq!(d["size"], sbom.bytes.len());
    assert_eq!(d["artifactType"], "application/vnd.example.sbom");
    assert_eq!(
        d["annotations"],
        json!({"org.example.kind": "sbom", "org.opencontainers.image.created": "2026-01-01T00:00:00Z"})
    );
    let d = by_digest(&sig.digest);
    assert_eq!(
        d["artifactType"], "application/vnd.example.sig.config+json",
        "artifactType falls back to the config's media type"
    );
    assert_eq!(d["annotations"], json!({"k": "v"}));
    let d = by_digest(&list.digest);
    assert_eq!(d["mediaType"], INDEX);
    assert_eq!(d["size"], list.bytes.len());
    assert!(
        d.get("artifactType").is_none_or(Value::is_null),
        "an index without artifactType has none: {d}"
    );

    // Filtered.
    let r = c
        .get(&format!(
            "{}?artifactType=application/vnd.example.sbom",
            referrers(&subject.manifest.digest)
        ))
        .send()
        .await;
    expect(&r, 200, "referrers filtered");
    assert_eq!(r.header("OCI-Filters-Applied"), Some("artifactType"));
    let found = r.json()["manifests"].as_array().unwrap().clone();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["digest"], sbom.digest.as_str());
    // A media type with a `+`, percent-encoded as a client encodes a query value.
    let r = c
        .get(&format!(
            "{}?artifactType=application%2Fvnd.example.sig.config%2Bjson",
            referrers(&subject.manifest.digest)
        ))
        .send()
        .await;
    expect(&r, 200, "referrers filtered by a config media type");
    assert_eq!(r.header("OCI-Filters-Applied"), Some("artifactType"));
    let found = r.json()["manifests"].as_array().unwrap().clone();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["digest"], sig.digest.as_str());
    let r = c
        .get(&format!(
            "{}?artifactType=application/vnd.example.none",
            referrers(&subject.manifest.digest)
        ))
        .send()
        .await;
    expect(&r, 200, "referrers filtered to nothing");
    assert_eq!(r.header("OCI-Filters-Applied"), Some("artifactType"));
    assert_eq!(r.json()["manifests"], json!([]));

    // The referrer of a subject that is not there is listed.
    let r = c.get(&referrers(&unknown.digest)).send().await;
    expect(&r, 200, "referrers of a missing subject");
    let found = r.json()["manifests"].as_array().unwrap().clone();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["digest"], other.digest.as_str());

    // Referrers are per repository.
    push_image(&c, "discover/elsewhere", "v1", 60).await;
    let r = c
        .get(&format!(
            "/v2/discover/elsewhere/referrers/{}",
            subject.manifest.digest
        ))
        .send()
        .await;
    expect(&r, 200, "referrers in another repository");
    assert_eq!(r.json()["manifests"], json!([]));

    // A deleted referrer is no longer listed.
    let r = c.delete(&manifest_path(repo, &sig.digest)).send().await;
    expect(&r, 202, "DELETE of a referrer");
    let r = c.get(&referrers(&subject.manifest.digest)).send().await;
    let found = r.json()["manifests"].as_array().unwrap().clone();
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found.iter().all(|d| d["digest"] != sig.digest.as_str()));

    // A bad digest.
    for bad in ["sha256:abc", "nope", "sha256:Z"] {
        let r = c.get(&referrers(bad)).send().await;
        expect_error(&r, 400, "DIGEST_INVALID", &format!("referrers of {bad}"));
    }
}

// ============================ content management ============================

async fn manage_delete_tag(base: String) {
    let c = Client::new(&base);
    let repo = "manage/tags";
    let image = push_image(&c, repo, "t1", 70).await;
    let r = put_manifest(&c, repo, "t2", &image.manifest).await;
    expect(&r, 201, "a second tag");

    let r = c.delete(&manifest_path(repo, "t1")).send().await;
    expect(&r, 202, "DELETE of a tag");
    expect_no_manifest(&c, repo, "t1", "a deleted tag").await;
    let r = c.get(&manifest_path(repo, "t1")).send().await;
    expect_error(&r, 404, "MANIFEST_UNKNOWN", "a deleted tag");
    assert_eq!(tags_of(&c, repo).await, Some(vec!["t2".to_owned()]));
    expect_manifest(&c, repo, "t2", &image.manifest, "the other tag").await;
    expect_manifest(
        &c,
        repo,
        &image.manifest.digest,
        &image.manifest,
        "the manifest of a deleted tag, by digest",
    )
    .await;

    let r = c.delete(&manifest_path(repo, "t1")).send().await;
    expect_error(&r, 404, "MANIFEST_UNKNOWN", "DELETE of a deleted tag");
    let r = c.delete(&manifest_path(repo, "t2")).send().await;
    expect(&r, 202, "DELETE of the last tag");
    let tags = tags_of(&c, repo).await.unwrap_or_default();
    assert!(tags.is_empty(), "{tags:?}");
    // Still readable by digest.
    expect_manifest(
        &c,
        repo,
        &image.manifest.digest,
        &image.manifest,
        "an untagged manifest",
    )
    .await;
}

async fn manage_delete_manifest(base: String) {
    let c = Client::new(&base);
    let repo = "manage/manifests";
    let image = push_image(&c, repo, "t1", 71).await;
    let r = put_manifest(&c, repo, "t2", &image.manifest).await;
    expect(&r, 201, "a second tag");
    let keep = push_image(&c, repo, "keep", 72).await;

    let r = c
        .delete(&manifest_path(repo, &image.manifest.digest))
        .send()
        .await;
    expect(&r, 202, "DELETE of a manifest by digest");
    expect_no_manifest(&c, repo, &image.manifest.digest, "a deleted manifest").await;
    let r = c
        .get(&manifest_path(repo, &image.manifest.digest))
        .send()
        .await;
    expect_error(&r, 404, "MANIFEST_UNKNOWN", "a deleted manifest");
    for tag in ["t1", "t2"] {
        expect_no_manifest(&c, repo, tag, "a tag of a deleted manifest").await;
    }
    assert_eq!(
        tags_of(&c, repo).await,
        Some(vec!["keep".to_owned()]),
        "the tag list reflects the deletion"
    );
    expect_manifest(&c, repo, "keep", &keep.manifest, "another manifest").await;

    let r = c
        .delete(&manifest_path(repo, &image.manifest.digest))
        .send()
        .await;
    expect_error(&r, 404, "MANIFEST_UNKNOWN", "DELETE of a deleted manifest");
    let never = Blob::random(10, 73);
    let r = c.delete(&manifest_path(repo, &never.digest)).send().await;
    expect_error(
        &r,
        404,
        "MANIFEST_UNKNOWN",
        "DELETE of a manifest never pushed",
    );

    // It can be pushed again.
    let r = put_manifest(&c, repo, "t1", &image.manifest).await;
    expect(&r, 201, "pushing a deleted manifest again");
    expect_manifest(&c, repo, "t1", &image.manifest, "a manifest pushed again").await;
}

async fn manage_delete_blob(base: String) {
    let c = Client::new(&base);
    let repo = "manage/blob-data";
    let blob = Blob::random(1000, 74);
    push_blob(&c, repo, &blob).await;
    let r = c.delete(&blob_path(repo, &blob.digest)).send().await;
    expect(&r, 202, "DELETE of a blob");
    expect_no_blob(&c, repo, &blob.digest, "a deleted blob").await;
    let r = c.get(&blob_path(repo, &blob.digest)).send().await;
    expect_error(&r, 404, "BLOB_UNKNOWN", "a deleted blob");
    let r = c.delete(&blob_path(repo, &blob.digest)).send().await;
    expect_error(&r, 404, "BLOB_UNKNOWN", "DELETE of a deleted blob");

    // It can be pushed again.
    push_blob(&c, repo, &blob).await;
    expect_blob(&c, repo, &blob, "a blob pushed again").await;
}

async fn manage_deletes_disabled(base: String, restricted: String) {
    let writable = Client::new(&base);
    let c = Client::new(&restricted);
    let repo = "manage/no-deletes";
    let image = push_image(&writable, repo, "v1", 75).await;

    for (path, what) in [
        (manifest_path(repo, "v1"), "DELETE of a tag"),
        (
            manifest_path(repo, &image.manifest.digest),
            "DELETE of a manifest",
        ),
        (blob_path(repo, &image.layer.digest), "DELETE of a blob"),
    ] {
        let r = c.delete(&path).send().await;
        expect(&r, 405, &format!("{what} with deletes disabled"));
    }
    expect_manifest(&c, repo, "v1", &image.manifest, "a tag not deleted").await;
    expect_blob(&c, repo, &image.layer, "a blob not deleted").await;
    // Pushing still works.
    let blob = Blob::random(100, 76);
    push_blob(&c, repo, &blob).await;
    expect_blob(&c, repo, &blob, "a blob pushed where deletes are disabled").await;
}

/// A server with a minimum chunk size announces it on POST and refuses smaller chunks by PATCH,
/// but a closing PUT may carry a last chunk of any size.
async fn push_min_chunk_size(_base: String, restricted: String) {
    let c = Client::new(&restricted);
    let repo = "push/min-chunk";
    let blob = Blob::random(2200, 90);
    let r = c
        .post(&uploads_path(repo))
        .header("Content-Length", "0")
        .send()
        .await;
    expect(&r, 202, "POST");
    assert_eq!(header(&r, "OCI-Chunk-Min-Length", "POST"), "1000");
    let location = expect_upload_session(&r, repo, 0, "POST");
    let r = patch_chunk(&c, &location, &blob.data[..500], 0).await;
    expect_error(&r, 416, "BLOB_UPLOAD_INVALID", "a chunk under the minimum");
    let r = patch_chunk(&c, &location, &blob.data[..1000], 0).await;
    expect(&r, 202, "a chunk of the minimum");
    let location = expect_upload_session(&r, repo, 1000, "a chunk of the minimum");
    let r = patch_chunk(&c, &location, &blob.data[1000..2000], 1000).await;
    expect(&r, 202, "a second chunk");
    let location = expect_upload_session(&r, repo, 2000, "a second chunk");
    let r = c
        .put(&with_query(&location, &format!("digest={}", blob.digest)))
        .header("Content-Type", OCTET)
        .header("Content-Range", "2000-2199")
        .body(blob.data.slice(2000..))
        .send()
        .await;
    expect_blob_created(
        &r,
        repo,
        &blob.digest,
        "a closing PUT with a short last chunk",
    );
    expect_blob(&c, repo, &blob, "a blob pushed in minimum-size chunks").await;
}

async fn manage_read_only(base: String, restricted: String) {
    let writable = Client::new(&base);
    let c = Client::new(&restricted);
    let repo = "manage/read-only";
    let image = push_image(&writable, repo, "v1", 77).await;
    let blob = Blob::random(2000, 78);
    let upload = start_upload(&writable, repo).await;
    let r = patch_chunk(&writable, &upload, &blob.data[..1000], 0).await;
    expect(&r, 202, "a chunk");
    let upload = location_of(&r, "a chunk");

    // Reads work.
    expect_manifest(&c, repo, "v1", &image.manifest, "read-only GET").await;
    expect_blob(&c, repo, &image.layer, "read-only GET").await;
    assert_eq!(tags_of(&c, repo).await, Some(vec!["v1".to_owned()]));
    let r = c.get("/v2/_catalog").send().await;
    expect(&r, 200, "read-only catalog");
    let r = c
        .get(&format!("/v2/{repo}/referrers/{}", image.manifest.digest))
        .send()
        .await;
    expect(&r, 200, "read-only referrers");

    // Every write is refused.
    let writes = [
        c.post(&uploads_path(repo)).header("Content-Length", "0"),
        c.post(&with_query(
            &uploads_path(repo),
            &format!("digest={}", blob.digest),
        ))
        .body(blob.data.clone()),
        c.post(&with_query(
            &uploads_path("manage/other"),
            &format!("mount={}&from={repo}", image.layer.digest),
        )),
        c.patch(&upload)
            .header("Content-Range", "1000-1999")
            .body(blob.data.slice(1000..)),
        c.put(&with_query(&upload, &format!("digest={}", blob.digest)))
            .header("Content-Range", "1000-1999")
            .body(blob.data.slice(1000..)),
        c.delete(&upload),
        c.put(&manifest_path(repo, "v2"))
            .header("Content-Type", MANIFEST)
            .body(image.manifest.bytes.clone()),
        c.delete(&manifest_path(repo, "v1")),
        c.delete(&manifest_path(repo, &image.manifest.digest)),
        c.delete(&blob_path(repo, &image.layer.digest)),
    ];
    for call in writes {
        let what = format!("{call:?}");
        let r = call.send().await;
        expect(&r, 405, &format!("read-only: {what}"));
    }
    // Nothing changed.
    assert_eq!(tags_of(&c, repo).await, Some(vec!["v1".to_owned()]));
    expect_no_blob(&c, repo, &blob.digest, "a blob refused").await;
    expect_no_blob(&c, "manage/other", &blob.digest, "a mount refused").await;
    expect_blob(&c, repo, &image.layer, "a blob not deleted").await;
    assert_eq!(upload_size(&writable, repo, &upload).await, 1000);
}

// ============================ errors ============================

async fn error_unknown_endpoints(base: String) {
    let c = Client::new(&base);
    push_image(&c, "errors/endpoints", "v1", 80).await;
    for path in [
        "/",
        "/v1/",
        "/v3/",
        "/v2x",
        "/v2/errors/endpoints/unknown/thing",
        "/v2/errors/endpoints/manifests/",
        "/v2/errors/endpoints/tags",
        "/v2/errors/endpoints/blobs/uploads/a/b",
    ] {
        let r = c.get(path).send().await;
        expect(&r, 404, &format!("GET {path}"));
    }
    // Known endpoints, methods they do not have.
    for (method, path) in wrong_methods() {
        let r = c.request(method.clone(), &path).send().await;
        expect(&r, 405, &format!("{method} {path}"));
    }
}

/// Methods that endpoints do not have.
fn wrong_methods() -> Vec<(http::Method, String)> {
    let d = Blob::random(10, 81).digest;
    vec![
        (http::Method::POST, manifest_path("errors/endpoints", "v1")),
        (http::Method::PATCH, blob_path("errors/endpoints", &d)),
        (http::Method::PUT, blob_path("errors/endpoints", &d)),
        (
            http::Method::PUT,
            "/v2/errors/endpoints/tags/list".to_owned(),
        ),
        (http::Method::DELETE, "/v2/_catalog".to_owned()),
        (http::Method::PUT, uploads_path("errors/endpoints")),
    ]
}

/// RFC 9110 §15.5.6: "The origin server MUST generate an Allow header field in a 405
/// response containing a list of the target resource's currently supported methods."
async fn error_method_not_allowed_has_allow(base: String) {
    let c = Client::new(&base);
    for (method, path) in wrong_methods() {
        let r = c.request(method.clone(), &path).send().await;
        let what = format!("{method} {path}");
        expect(&r, 405, &what);
        assert!(r.header("Allow").is_some(), "{what}: 405 without Allow");
    }
}

/// Digests that do not parse: too short, upper case, no algorithm, an unknown algorithm, bad
/// characters, a sha512 of sha256 length.
fn malformed_digests() -> Vec<String> {
    let hex = "a".repeat(64);
    vec![
        "sha256:abc".to_owned(),
        format!("sha256:{}", "A".repeat(64)),
        format!("sha256:{}", "a".repeat(65)),
        format!("sha256{hex}"),
        format!(":{hex}"),
        format!("sha256:{}z", "a".repeat(63)),
        format!("sha512:{hex}"),
        "sha256:".to_owned(),
    ]
}

async fn error_malformed_digests(base: String) {
    let c = Client::new(&base);
    let repo = "errors/digests";
    let image = push_image(&c, repo, "v1", 82).await;
    for bad in malformed_digests() {
        let what = |w: &str| format!("{w} {bad}");
        let r = c.get(&blob_path(repo, &bad)).send().await;
        expect_error(&r, 400, "DIGEST_INVALID", &what("GET of blob"));
        let r = c.head(&blob_path(repo, &bad)).send().await;
        expect(&r, 400, &what("HEAD of blob"));
        let r = c.delete(&blob_path(repo, &bad)).send().await;
        expect_error(&r, 400, "DIGEST_INVALID", &what("DELETE of blob"));
        let r = c.get(&format!("/v2/{repo}/referrers/{bad}")).send().await;
        expect_error(&r, 400, "DIGEST_INVALID", &what("referrers of"));
        let r = c
            .post(&with_query(&uploads_path(repo), &format!("digest={bad}")))
            .body(image.layer.data.clone())
            .send()
            .await;
        expect_error(&r, 400, "DIGEST_INVALID", &what("single POST with"));
        let r = c
            .post(&with_query(
                &uploads_path("errors/digests2"),
                &format!("mount={bad}&from={repo}"),
            ))
            .send()
            .await;
        expect_error(&r, 400, "DIGEST_INVALID", &what("mount of"));
        // Without a colon a reference is a tag (and may be a valid one): only the blob
        // endpoints read it as a digest.
        if bad.contains(':') {
            let r = c.get(&manifest_path(repo, &bad)).send().await;
            expect_error(&r, 400, "DIGEST_INVALID", &what("GET of manifest"));
            let r = c.head(&manifest_path(repo, &bad)).send().await;
            expect(&r, 400, &what("HEAD of manifest"));
            let r = put_manifest(&c, repo, &bad, &image.manifest).await;
            expect_error(&r, 400, "DIGEST_INVALID", &what("PUT of manifest"));
            let r = c.delete(&manifest_path(repo, &bad)).send().await;
            expect_error(&r, 400, "DIGEST_INVALID", &what("DELETE of manifest"));
        }
        // A closing PUT naming a bad digest.
        let location = start_upload(&c, repo).await;
        let r = c
            .put(&with_query(&location, &format!("digest={bad}")))
            .body(image.layer.data.clone())
            .send()
            .await;
        expect_error(&r, 400, "DIGEST_INVALID", &what("closing PUT with"));
    }
    // The closing PUT needs a digest at all.
    let location = start_upload(&c, repo).await;
    let r = c.put(&location).body(image.layer.data.clone()).send().await;
    expect_error(&r, 400, "DIGEST_INVALID", "closing PUT without ?digest=");
    expect_manifest(&c, repo, "v1", &image.manifest, "nothing changed").await;
    assert_eq!(tags_of(&c, repo).await, Some(vec!["v1".to_owned()]));
}

async fn error_invalid_names(base: String) {
    let c = Client::new(&base);
    let blob = Blob::random(100, 83);
    push_blob(&c, "errors/names", &blob).await;
    let m = image_manifest(&blob, CONFIG, &[], json!({}));
    for name in [
        "errors/../names",
        "../errors/names",
        "errors/names/..",
        "..",
        "errors/./names",
        "Errors/names",
        "errors/Names",
        "UPPER",
        "errors//names",
        "-errors",
        "errors-",
        "errors/names/",
        "errors/na%20mes",
    ] {
        let what = |w: &str| format!("{w} in {name:?}");
        let r = c.get(&format!("/v2/{name}/tags/list")).send().await;
        expect_error(&r, 400, "NAME_INVALID", &what("tags list"));
        let r = c.get(&manifest_path(name, "v1")).send().await;
        expect_error(&r, 400, "NAME_INVALID", &what("GET of manifest"));
        let r = c.head(&manifest_path(name, "v1")).send().await;
        expect(&r, 400, &what("HEAD of manifest"));
        let r = put_manifest(&c, name, "v1", &m).await;
        expect_error(&r, 400, "NAME_INVALID", &what("PUT of manifest"));
        let r = c.delete(&manifest_path(name, "v1")).send().await;
        expect_error(&r, 400, "NAME_INVALID", &what("DELETE of manifest"));
        let r = c.get(&blob_path(name, &blob.digest)).send().await;
        expect_error(&r, 400, "NAME_INVALID", &what("GET of blob"));
        let r = c.delete(&blob_path(name, &blob.digest)).send().await;
        expect_error(&r, 400, "NAME_INVALID", &what("DELETE of blob"));
        let r = c
            .post(&uploads_path(name))
            .header("Content-Length", "0")
            .send()
            .await;
        expect_error(&r, 400, "NAME_INVALID", &what("POST of upload"));
        let r = c
            .post(&with_query(
                &uploads_path(name),
                &format!("digest={}", blob.digest),
            ))
            .body(blob.data.clone())
            .send()
            .await;
        expect_error(&r, 400, "NAME_INVALID", &what("single POST"));
        let r = c
            .get(&format!("/v2/{name}/referrers/{}", blob.digest))
            .send()
            .await;
        expect_error(&r, 400, "NAME_INVALID", &what("referrers"));
        let r = c
            .post(&with_query(
                &uploads_path("errors/target"),
                &format!("mount={}&from={name}", blob.digest),
            ))
            .send()
            .await;
        expect_error(&r, 400, "NAME_INVALID", &what("mount from"));
    }
    // A name too long: 256 characters or more.
    let long = format!("errors/{}", "a".repeat(250));
    let r = c.get(&format!("/v2/{long}/tags/list")).send().await;
    expect_error(&r, 400, "NAME_INVALID", "a name of 257 characters");

    // Invalid tags are refused too (the spec has no code for them: just a 4xx).
    for tag in ["-v1", ".v1", "v1+x", &"t".repeat(129)] {
        let r = put_manifest(&c, "errors/names", tag, &m).await;
        assert!(
            r.status.is_client_error(),
            "PUT of tag {tag:?}: {}",
            r.status
        );
        // Read, it names nothing that can exist: 404 (the conformance suite asks this of
        // `.INVALID_MANIFEST_NAME`).
        let r = c.get(&manifest_path("errors/names", tag)).send().await;
        expect_error(&r, 404, "MANIFEST_UNKNOWN", &format!("GET of tag {tag:?}"));
        let r = c.head(&manifest_path("errors/names", tag)).send().await;
        expect(&r, 404, &format!("HEAD of tag {tag:?}"));
    }
    let r = c
        .put(&format!(
            "{}?tag=-bad",
            manifest_path("errors/names", &m.digest)
        ))
        .header("Content-Type", MANIFEST)
        .body(m.bytes.clone())
        .send()
        .await;
    assert!(r.status.is_client_error(), "?tag=-bad: {}", r.status);
    expect_no_manifest(
        &c,
        "errors/names",
        &m.digest,
        "a manifest refused for its tag",
    )
    .await;
    // Nothing was created by any of these.
    let r = c.get("/v2/_catalog").send().await;
    let repos = strings(&r.json()["repositories"]);
    assert!(
        repos.iter().all(|r| r.starts_with("errors/names")),
        "{repos:?}"
    );
}

async fn error_unknown_repository(base: String) {
    let c = Client::new(&base);
    push_image(&c, "errors/known", "v1", 84).await;
    let r = c.get("/v2/errors/unknown/tags/list").send().await;
    expect_error(&r, 404, "NAME_UNKNOWN", "tags of an unknown repository");
    let r = c.get("/v2/errors/unknown/tags/list?n=10").send().await;
    expect_error(&r, 404, "NAME_UNKNOWN", "tags of an unknown repository, n");
    expect_no_manifest(
        &c,
        "errors/unknown",
        "v1",
        "a manifest of an unknown repository",
    )
    .await;
    let r = c.get("/v2/errors/tags/list").send().await;
    expect_error(&r, 404, "NAME_UNKNOWN", "a prefix of a repository");
}

async fn error_overlapping_content_range(base: String) {
    let c = Client::new(&base);
    let repo = "errors/ranges";
    let blob = Blob::random(3000, 85);
    let location = start_upload(&c, repo).await;
    let r = patch_chunk(&c, &location, &blob.data[..1000], 0).await;
    expect(&r, 202, "first chunk");
    let location = expect_upload_session(&r, repo, 1000, "first chunk");

    // Overlapping the bytes already there.
    let r = patch_chunk(&c, &location, &blob.data[500..1500], 500).await;
    expect(&r, 416, "an overlapping Content-Range");
    assert_eq!(upload_size(&c, repo, &location).await, 1000);
    let r = patch_chunk(&c, &location, &blob.data[999..2000], 999).await;
    expect(&r, 416, "a Content-Range overlapping by one byte");
    assert_eq!(upload_size(&c, repo, &location).await, 1000);

    // A Content-Range that disagrees with the body's length.
    let r = c
        .patch(&location)
        .header("Content-Range", "1000-1999")
        .body(blob.data.slice(1000..1500))
        .send()
        .await;
    expect(&r, 416, "a Content-Range longer than the body");
    assert_eq!(upload_size(&c, repo, &location).await, 1000);

    // Content-Ranges that are not <start>-<end>.
    for range in ["1999-1000", "x-y", "1000-", "-1000"] {
        let r = c
            .patch(&location)
            .header("Content-Range", range)
            .body(blob.data.slice(1000..2000))
            .send()
            .await;
        assert!(
            r.status == 416 || r.status == 400,
            "Content-Range {range}: {}",
            r.status
        );
        assert_eq!(upload_size(&c, repo, &location).await, 1000, "{range}");
    }

    // The upload goes on.
    let r = patch_chunk(&c, &location, &blob.data[1000..2000], 1000).await;
    expect(&r, 202, "the right chunk");
    let location = expect_upload_session(&r, repo, 2000, "the right chunk");
    let r = c
        .put(&with_query(&location, &format!("digest={}", blob.digest)))
        .header("Content-Range", "2000-2999")
        .body(blob.data.slice(2000..))
        .send()
        .await;
    expect_blob_created(&r, repo, &blob.digest, "closing PUT");
    expect_blob(&c, repo, &blob, "a blob after refused chunks").await;
}

async fn error_digest_mismatch(base: String) {
    let c = Client::new(&base);
    let repo = "errors/mismatch";
    let blob = Blob::random(3000, 86);
    let claimed = Blob::random(3000, 87);

    // POST then PUT.
    let location = start_upload(&c, repo).await;
    let r = c
        .put(&with_query(
            &location,
            &format!("digest={}", claimed.digest),
        ))
        .header("Content-Type", OCTET)
        .body(blob.data.clone())
        .send()
        .await;
    expect_error(&r, 400, "DIGEST_INVALID", "PUT whose body does not match");
    // The refused upload is over, as after any failed commit.
    let r = c.get(&location).send().await;
    expect_error(&r, 404, "BLOB_UPLOAD_UNKNOWN", "status of a refused upload");
    expect_no_blob(
        &c,
        repo,
        &claimed.digest,
        "the claimed digest of a refused PUT",
    )
    .await;
    expect_no_blob(&c, repo, &blob.digest, "the content of a refused PUT").await;

    // Single POST.
    let r = c
        .post(&with_query(
            &uploads_path(repo),
            &format!("digest={}", claimed.digest),
        ))
        .body(blob.data.clone())
        .send()
        .await;
    expect_error(
        &r,
        400,
        "DIGEST_INVALID",
        "single POST whose body does not match",
    );
    let r = c
        .post(&with_query(
            &uploads_path(repo),
            &format!("digest={}", claimed.digest),
        ))
        .chunks(blob.data.chunks(1000).map(Bytes::copy_from_slice).collect())
        .send()
        .await;
    expect_error(
        &r,
        400,
        "DIGEST_INVALID",
        "streamed single POST whose body does not match",
    );

    // Chunked.
    let location = start_upload(&c, repo).await;
    let r = patch_chunk(&c, &location, &blob.data[..2000], 0).await;
    let location = expect_upload_session(&r, repo, 2000, "a chunk");
    let r = c
        .put(&with_query(
            &location,
            &format!("digest={}", claimed.digest),
        ))
        .header("Content-Range", "2000-2999")
        .body(blob.data.slice(2000..))
        .send()
        .await;
    expect_error(
        &r,
        400,
        "DIGEST_INVALID",
        "chunked upload that does not match",
    );

    // Streamed.
    let location = start_upload(&c, repo).await;
    let r = c
        .patch(&location)
        .chunks(blob.data.chunks(700).map(Bytes::copy_from_slice).collect())
        .send()
        .await;
    let location = expect_upload_session(&r, repo, 3000, "a streamed PATCH");
    let r = c
        .put(&with_query(
            &location,
            &format!("digest={}", claimed.digest),
        ))
        .send()
        .await;
    expect_error(
        &r,
        400,
        "DIGEST_INVALID",
        "streamed upload that does not match",
    );

    for digest in [&blob.digest, &claimed.digest] {
        expect_no_blob(&c, repo, digest, "a blob whose push failed").await;
    }

    // A manifest PUT by a digest its body does not have.
    let config = config_blob(88);
    push_blob(&c, repo, &config).await;
    let m = image_manifest(&config, CONFIG, &[], json!({}));
    let r = put_manifest(&c, repo, &claimed.digest, &m).await;
    expect_error(
        &r,
        400,
        "DIGEST_INVALID",
        "a manifest PUT by another digest",
    );
    expect_no_manifest(&c, repo, &claimed.digest, "the digest claimed").await;
    expect_no_manifest(&c, repo, &m.digest, "the manifest refused").await;
    let tags = tags_of(&c, repo).await.unwrap_or_default();
    assert!(tags.is_empty(), "{tags:?}");
}

async fn error_manifest_not_json(base: String) {
    let c = Client::new(&base);
    let repo = "errors/not-json";
    let config = config_blob(89);
    push_blob(&c, repo, &config).await;
    let good = image_manifest(&config, CONFIG, &[], json!({}));
    let r = put_manifest(&c, repo, "good", &good).await;
    expect(&r, 201, "a good manifest");

    let cases: Vec<(&str, Bytes)> = vec![
        (MANIFEST, Bytes::from_static(b"this is not JSON")),
        (MANIFEST, Bytes::from_static(b"{\"schemaVersion\": 2, ")),
        (MANIFEST, Bytes::new()),
        (MANIFEST, Bytes::from_static(b"[1, 2, 3]")),
        (MANIFEST, Bytes::from_static(b"{\"schemaVersion\": 2}")),
        (
            MANIFEST,
            Bytes::from_static(b"{\"schemaVersion\": 2, \"mediaType\": \"application/vnd.oci.image.manifest.v1+json\", \"config\": 5, \"layers\": []}"),
        ),
        (INDEX, Bytes::from_static(b"{\"schemaVersion\": 2, \"manifests\": \"no\"}")),
        (INDEX, Bytes::from_static(b"\xff\xfe not utf-8")),
    ];
    for (media_type, body) in cases {
        let what = format!("{media_type} {:?}", String::from_utf8_lossy(&body));
        let digest = Digest::sha256(&body).to_string();
        let r = c
            .put(&manifest_path(repo, "bad"))
            .header("Content-Type", media_type)
            .body(body.clone())
            .send()
            .await;
        expect_error(&r, 400, "MANIFEST_INVALID", &what);
        let r = c
            .put(&manifest_path(repo, &digest))
            .header("Content-Type", media_type)
            .body(body)
            .send()
            .await;
        expect_error(&r, 400, "MANIFEST_INVALID", &format!("{what} by digest"));
        expect_no_manifest(&c, repo, "bad", "a manifest refused").await;
        expect_no_manifest(&c, repo, &digest, "a manifest refused").await;
    }
    assert_eq!(tags_of(&c, repo).await, Some(vec!["good".to_owned()]));
}

async fn error_manifest_too_large(base: String) {
    let c = Client::new(&base);
    let repo = "errors/large";
    let config = config_blob(90);
    push_blob(&c, repo, &config).await;
    let padded = |size: usize| -> Manifest {
        let base = image_manifest(&config, CONFIG, &[], json!({"annotations": {"pad": ""}}));
        let pad = size - base.bytes.len();
        let m = image_manifest(
            &config,
            CONFIG,
            &[],
            json!({"annotations": {"pad": "p".repeat(pad)}}),
        );
        assert_eq!(m.bytes.len(), size);
        m
    };

    // Exactly the limit is accepted.
    let largest = padded(MANIFEST_LIMIT);
    let r = put_manifest(&c, repo, "largest", &largest).await;
    expect_manifest_created(&r, repo, &largest.digest, "a manifest of 4 MiB");
    expect_manifest(&c, repo, "largest", &largest, "a manifest of 4 MiB").await;

    // One byte more is not: 413, with a length and streamed.
    let large = padded(MANIFEST_LIMIT + 1);
    let r = put_manifest(&c, repo, "large", &large).await;
    expect(&r, 413, "a manifest of 4 MiB + 1");
    let r = c
        .put(&manifest_path(repo, "large"))
        .header("Content-Type", MANIFEST)
        .chunks(
            large
                .bytes
                .chunks(64 * 1024)
                .map(Bytes::copy_from_slice)
                .collect(),
        )
        .send()
        .await;
    expect(&r, 413, "a streamed manifest of 4 MiB + 1");
    expect_no_manifest(&c, repo, "large", "a manifest too large").await;
    expect_no_manifest(&c, repo, &large.digest, "a manifest too large").await;
}

async fn error_manifest_blob_unknown(base: String) {
    let c = Client::new(&base);
    let repo = "errors/blob-unknown";
    let config = config_blob(91);
    let layer = Blob::random(500, 92);
    push_blob(&c, repo, &config).await;
    // The layer is missing.
    let m = image_manifest(&config, CONFIG, &[&layer], json!({}));
    let r = put_manifest(&c, repo, "v1", &m).await;
    expect_error(
        &r,
        404,
        "MANIFEST_BLOB_UNKNOWN",
        "a manifest with a missing layer",
    );
    let r = put_manifest(&c, repo, &m.digest, &m).await;
    expect_error(&r, 404, "MANIFEST_BLOB_UNKNOWN", "by digest");
    expect_no_manifest(&c, repo, "v1", "a manifest refused").await;
    expect_no_manifest(&c, repo, &m.digest, "a manifest refused").await;
    // The config is missing.
    push_blob(&c, repo, &layer).await;
    let other_config = config_blob(93);
    let m = image_manifest(&other_config, CONFIG, &[&layer], json!({}));
    let r = put_manifest(&c, repo, "v1", &m).await;
    expect_error(
        &r,
        404,
        "MANIFEST_BLOB_UNKNOWN",
        "a manifest with a missing config",
    );
    expect_no_manifest(&c, repo, "v1", "a manifest refused").await;
    // Once the blob is there, it is accepted.
    push_blob(&c, repo, &other_config).await;
    let r = put_manifest(&c, repo, "v1", &m).await;
    expect_manifest_created(&r, repo, &m.digest, "the manifest once its blobs are there");
}

/// Sends a request head with `Content-Length: declared` and only `body` after it, then closes
/// the connection: a body cut short.
async fn truncated(
    c: &Client,
    method: &str,
    target: &str,
    headers: &str,
    declared: usize,
    body: &[u8],
) -> String {
    let mut request = format!(
        "{method} {} HTTP/1.1\r\nHost: {}\r\n{headers}Content-Length: {declared}\r\n\r\n",
        path_of(target),
        c.authority()
    )
    .into_bytes();
    request.extend_from_slice(body);
    let answer = c.raw(&request).await;
    String::from_utf8_lossy(&answer).into_owned()
}

async fn error_truncated_upload(base: String) {
    let c = Client::new(&base);
    let repo = "errors/truncated";
    let blob = Blob::random(1000, 94);

    // A PATCH whose body stops at 600 of 1000 bytes.
    let location = start_upload(&c, repo).await;
    let answer = truncated(
        &c,
        "PATCH",
        &location,
        "Content-Type: application/octet-stream\r\nContent-Range: 0-999\r\n",
        1000,
        &blob.data[..600],
    )
    .await;
    let size = upload_size(&c, repo, &location).await;
    assert!(
        size <= 600,
        "the upload reports {size} bytes, more than arrived (answer: {answer:?})"
    );
    assert_eq!(
        size, 600,
        "the upload keeps what arrived, so the client can resume (answer: {answer:?})"
    );
    // Committing what is there under the whole blob's digest fails.
    let r = c
        .put(&with_query(&location, &format!("digest={}", blob.digest)))
        .header("Content-Length", "0")
        .send()
        .await;
    expect_error(&r, 400, "DIGEST_INVALID", "committing a truncated upload");
    expect_no_blob(&c, repo, &blob.digest, "the blob of a truncated upload").await;
    let prefix = Blob::new(blob.data.slice(..600));
    expect_no_blob(
        &c,
        repo,
        &prefix.digest,
        "what arrived of a truncated upload",
    )
    .await;

    // Resumed: the client asks where the upload is and sends the rest.
    let location = start_upload(&c, repo).await;
    let answer = truncated(
        &c,
        "PATCH",
        &location,
        "Content-Range: 0-999\r\n",
        1000,
        &blob.data[..600],
    )
    .await;
    let size = upload_size(&c, repo, &location).await;
    assert_eq!(size, 600, "answer: {answer:?}");
    let r = patch_chunk(&c, &location, &blob.data[size..], size).await;
    expect(&r, 202, "the rest of a truncated upload");
    let location = expect_upload_session(&r, repo, 1000, "the rest");
    let r = c
        .put(&with_query(&location, &format!("digest={}", blob.digest)))
        .send()
        .await;
    expect_blob_created(&r, repo, &blob.digest, "a resumed upload");
    expect_blob(&c, repo, &blob, "a resumed upload").await;
}

async fn error_truncated_requests(base: String) {
    let c = Client::new(&base);
    let repo = "errors/truncated2";
    let blob = Blob::random(1000, 95);

    // A single POST cut short.
    let target = with_query(&uploads_path(repo), &format!("digest={}", blob.digest));
    let answer = truncated(&c, "POST", &target, "", 1000, &blob.data[..600]).await;
    expect_no_blob(
        &c,
        repo,
        &blob.digest,
        &format!("a truncated single POST ({answer:?})"),
    )
    .await;

    // A closing PUT cut short.
    let location = start_upload(&c, repo).await;
    let target = with_query(&location, &format!("digest={}", blob.digest));
    let answer = truncated(&c, "PUT", &target, "", 1000, &blob.data[..600]).await;
    expect_no_blob(
        &c,
        repo,
        &blob.digest,
        &format!("a truncated closing PUT ({answer:?})"),
    )
    .await;
    let size = upload_size(&c, repo, &location).await;
    assert!(size <= 600, "{size} bytes reported, at most 600 arrived");

    // A manifest cut short.
    let config = config_blob(96);
    push_blob(&c, repo, &config).await;
    let m = image_manifest(&config, CONFIG, &[], json!({}));
    let half = m.bytes.len() / 2;
    let answer = truncated(
        &c,
        "PUT",
        &manifest_path(repo, "v1"),
        &format!("Content-Type: {MANIFEST}\r\n"),
        m.bytes.len(),
        &m.bytes[..half],
    )
    .await;
    expect_no_manifest(
        &c,
        repo,
        "v1",
        &format!("a truncated manifest ({answer:?})"),
    )
    .await;
    expect_no_manifest(&c, repo, &m.digest, "a truncated manifest").await;

    // The server is still fine.
    let r = put_manifest(&c, repo, "v1", &m).await;
    expect_manifest_created(&r, repo, &m.digest, "the whole manifest");
}

// ---- serving without hashing each read ----

/// With `verify_blob_reads` off, a full GET streams the stored bytes checked for length only:
/// the same answers for sound content (whole, empty, ranged), damaged content served as stored
/// (the CNCF registry's behaviour), and hoist's client still refusing it by its digest.
async fn unverified_reads(backend: Backend) {
    use oci_registry::RegistryClient;
    use oci_store::{ErrorCode, OciInterfaceExt};
    use oci_types::{MediaType, Repository};

    let memory = MemoryStore::new();
    let (store, dir) = match backend {
        Backend::Memory => (Arc::new(memory.clone()) as Arc<dyn OciInterface>, None),
        _ => store(backend).await,
    };
    let repo: Repository = "trust/served".parse().unwrap();
    let content = oci_store::conformance::seeded_bytes(31, 3 << 20);
    let octet = MediaType::from_static(OCTET);
    let blob = store
        .push_blob_bytes(&repo, octet.clone(), content.clone())
        .await
        .unwrap();
    let empty = store
        .push_blob_bytes(&repo, octet, Bytes::new())
        .await
        .unwrap();
    let server = serve(
        Arc::clone(&store),
        ServerOptions::default().with_verify_blob_reads(false),
    )
    .await;
    let http = Client::new(&server.url());
    let path = |digest: &Digest| format!("/v2/{repo}/blobs/{digest}");

    let whole = http.get(&path(&blob.digest)).send().await;
    assert_eq!(whole.status, 200);
    assert_eq!(whole.header("content-length"), Some("3145728"));
    assert_eq!(
        whole.header("docker-content-digest"),
        Some(blob.digest.as_str())
    );
    assert_eq!(whole.body, content);
    let nothing = http.get(&path(&empty.digest)).send().await;
    assert_eq!((nothing.status.as_u16(), nothing.body.len()), (200, 0));
    let part = http
        .get(&path(&blob.digest))
        .header("Range", "bytes=10-19")
        .send()
        .await;
    assert_eq!(part.status, 206);
    assert_eq!(part.body, content.slice(10..20));

    // Damage at rest: one byte flipped, the length kept.
    match &dir {
        None => assert!(memory.corrupt_blob_for_tests(&blob.digest)),
        Some(dir) => {
            let file = walk_files(dir.path())
                .into_iter()
                .find(|f| f.ends_with(blob.digest.encoded()))
                .expect("the blob's file");
            let mut bytes = std::fs::read(&file).unwrap();
            bytes[1000] ^= 1;
            std::fs::write(&file, bytes).unwrap();
        }
    }
    // A server that hashes as it serves: a blob the memory store holds in one piece is
    // refused before the answer starts; the layout's, read in pieces, is cut off before its
    // last piece. Either way it never arrives whole.
    let verifying = serve(
        Arc::clone(&store),
        ServerOptions::default().with_verify_blob_reads(true),
    )
    .await;
    let answer = Client::new(&verifying.url())
        .get(&path(&blob.digest))
        .try_send()
        .await;
    match (&dir, answer) {
        (None, Ok(refused)) => {
            assert_eq!(refused.status, 400);
            assert_eq!(refused.error_codes(), ["DIGEST_INVALID"]);
        }
        (Some(_), Err(cut)) => assert!(!cut.is_empty()),
        (_, answer) => panic!("a damaged blob must not arrive whole: {answer:?}"),
    }
    verifying.shutdown().await;

    let damaged = http.get(&path(&blob.digest)).send().await;
    assert_eq!(damaged.status, 200);
    assert_eq!(damaged.body.len(), content.len());
    assert_ne!(damaged.body, content, "served as stored");
    let client = RegistryClient::builder(http.authority())
        .with_credential_files(Vec::new())
        .build()
        .await
        .unwrap();
    let error = client
        .get_blob(&repo, &blob.digest)
        .await
        .unwrap()
        .bytes(u64::MAX)
        .await
        .expect_err("the client checks the digest");
    assert_eq!(error.code(), Some(ErrorCode::DigestInvalid), "{error}");
    server.shutdown().await;
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk_files(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test]
async fn unverified_reads_from_memory() {
    unverified_reads(Backend::Memory).await;
}

#[tokio::test]
async fn unverified_reads_from_a_layout() {
    unverified_reads(Backend::LayoutPerRepository).await;
}
