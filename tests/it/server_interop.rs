//! `hoist serve` with real peers (Debian packages; see `tests/peers/install.sh`):
//! - skopeo as a client: a single-arch image and a multi-arch index built with [`LayoutStore`]
//!   go into `hoist serve --root DIR` and come back out with the digests we made; `inspect`,
//!   `list-tags` and `delete` work;
//! - the CNCF distribution registry side by side: the same raw requests (push, pull, discovery,
//!   content management, errors) against both, with status codes and the spec's headers
//!   compared, except for a table of the cases where that registry departs from the spec (or
//!   takes another of the options the spec allows), each stating the rule hoist follows.
//!
//! Also home of the small HTTP/1.1 client and image builders `server_auth` uses.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use oci_layout::{LayoutOptions, LayoutStore};
use oci_store::{OciInterface, OciInterfaceExt, PushManifestParams};
use oci_types::{
    Descriptor, Digest, ImageIndex, ImageManifest, MediaType, Platform, Repository, Tag, media_type,
};
use serde_json::{Value, json};

use crate::support::{ServeProcess, free_addr, peer, run, workspace_root};

// ---- a minimal HTTP/1.1 client ----

/// An HTTP response, read whole.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    /// Why the body could not be read whole (a peer that breaks HTTP framing), if so.
    pub(crate) body_error: Option<String>,
}

impl Reply {
    /// A header's value, if present and text.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `code` of the first error of a spec error body.
    pub(crate) fn code(&self) -> Option<String> {
        let body: Value = serde_json::from_slice(&self.body).ok()?;
        body["errors"][0]["code"].as_str().map(str::to_owned)
    }

    /// The body as JSON (panics when it is not).
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// The `Location` as a request target (path and query), absolute or not.
    pub(crate) fn location(&self) -> Option<String> {
        self.header("location").map(request_target)
    }
}

/// `http://host:port/path?q` → `/path?q`; a relative reference stays as it is.
fn request_target(location: &str) -> String {
    match location
        .strip_prefix("http://")
        .or_else(|| location.strip_prefix("https://"))
    {
        Some(rest) => rest
            .find('/')
            .map_or("/".to_owned(), |at| rest[at..].to_owned()),
        None => location.to_owned(),
    }
}

/// `target` with `param` added to its query.
pub(crate) fn with_query(target: &str, param: &str) -> String {
    let separator = if target.contains('?') { '&' } else { '?' };
    format!("{target}{separator}{param}")
}

/// A request to `addr` with a `Host` header.
pub(crate) fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> http::request::Builder {
    let mut builder = Request::builder()
        .method(method)
        .uri(target)
        .header("host", addr.to_string());
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder
}

/// Sends `request` on a new connection to `addr` and reads the whole response.
pub(crate) async fn exchange<B>(addr: SocketAddr, request: Request<B>) -> Reply
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let line = format!("{} {}", request.method(), request.uri());
    let response = start(addr, request).await;
    let (parts, body) = response.into_parts();
    let (body, body_error) = match body.collect().await {
        Ok(body) => (body.to_bytes(), None),
        Err(e) => (
            Bytes::new(),
            Some(format!(
                "{line} to {addr}: the body of a {} answer: {e:?}",
                parts.status
            )),
        ),
    };
    Reply {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
        body_error,
    }
}

/// Sends `request` on a new connection to `addr` and returns once the response head arrived;
/// the body is read by the caller, when it likes.
pub(crate) async fn start<B>(
    addr: SocketAddr,
    request: Request<B>,
) -> http::Response<hyper::body::Incoming>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let line = format!("{} {}", request.method(), request.uri());
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("{line}: cannot connect to {addr}: {e}"));
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap_or_else(|e| panic!("{line}: handshake with {addr}: {e}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender
        .send_request(request)
        .await
        .unwrap_or_else(|e| panic!("{line} to {addr}: {e}"))
}

/// One request with a whole body.
pub(crate) async fn send(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    let request = request(addr, method, target, headers)
        .body(Full::new(body.into()))
        .unwrap();
    exchange(addr, request).await
}

/// Pushes `content` as a blob of `repo` by POST then PUT (the monolithic upload every
/// registry takes); panics unless it is stored.
pub(crate) async fn push_blob(
    addr: SocketAddr,
    auth: &[(&str, &str)],
    repo: &str,
    content: &[u8],
) -> Digest {
    let digest = Digest::sha256(content);
    let started = send(
        addr,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/"),
        auth,
        "",
    )
    .await;
    assert_eq!(started.status, 202, "POST upload: {started:?}");
    let target = with_query(&started.location().unwrap(), &format!("digest={digest}"));
    let mut headers = auth.to_vec();
    headers.push(("content-type", media_type::OCTET_STREAM));
    let put = send(
        addr,
        "PUT",
        &target,
        &headers,
        Bytes::copy_from_slice(content),
    )
    .await;
    assert_eq!(put.status, 201, "PUT upload: {put:?}");
    digest
}

/// Pushes an image manifest (one config, one layer, both pushed first) tagged `tag`; returns
/// its bytes and digest.
pub(crate) async fn push_small_image(
    addr: SocketAddr,
    auth: &[(&str, &str)],
    repo: &str,
    tag: &str,
) -> (Bytes, Digest) {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = format!("a layer of {repo}:{tag}").into_bytes();
    let config_digest = push_blob(addr, auth, repo, config).await;
    let layer_digest = push_blob(addr, auth, repo, &layer).await;
    let manifest = Bytes::from(
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_MANIFEST,
            "config": {"mediaType": media_type::OCI_CONFIG, "digest": config_digest.to_string(), "size": config.len()},
            "layers": [{"mediaType": media_type::OCI_LAYER_GZIP, "digest": layer_digest.to_string(), "size": layer.len()}],
        }))
        .unwrap(),
    );
    let mut headers = auth.to_vec();
    headers.push(("content-type", media_type::OCI_MANIFEST));
    let put = send(
        addr,
        "PUT",
        &format!("/v2/{repo}/manifests/{tag}"),
        &headers,
        manifest.clone(),
    )
    .await;
    assert_eq!(put.status, 201, "PUT manifest: {put:?}");
    let digest = Digest::sha256(&manifest);
    assert_eq!(put.header("docker-content-digest"), Some(digest.as_str()));
    (manifest, digest)
}

// ---- images in OCI layouts, for skopeo ----

/// The repository of a single layout whose tags are bare: what skopeo reads and writes.
pub(crate) fn layout_repo() -> Repository {
    LayoutOptions::default().default_repository
}

/// A gzip-compressed layer tar holding `etc/arch` with `arch`.
fn gzip_layer(arch: &str) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_size(arch.len() as u64);
    header.set_mtime(1_700_000_000);
    tar.append_data(&mut header, "etc/arch", arch.as_bytes())
        .unwrap();
    let uncompressed = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&uncompressed).unwrap();
    gz.finish().unwrap()
}

/// An image pushed into a layout.
#[derive(Debug, Clone)]
pub(crate) struct LayoutImage {
    pub(crate) manifest: Descriptor,
    pub(crate) manifest_bytes: Bytes,
}

/// Pushes a one-layer linux/`arch` image into the default repository of the single layout
/// `store`, tagged `tag` if given.
pub(crate) async fn layout_image(
    store: &LayoutStore,
    arch: &str,
    tag: Option<&str>,
) -> LayoutImage {
    let repo = layout_repo();
    let layer = gzip_layer(arch);
    let diff_id = {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&layer[..]), &mut out)
            .unwrap();
        Digest::sha256(&out)
    };
    let layer = store
        .push_blob_bytes(
            &repo,
            MediaType::from_static(media_type::OCI_LAYER_GZIP),
            Bytes::from(layer),
        )
        .await
        .unwrap();
    let config = json!({
        "architecture": arch,
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
    });
    let config = store
        .push_blob_bytes(
            &repo,
            MediaType::from_static(media_type::OCI_CONFIG),
            Bytes::from(serde_json::to_vec(&config).unwrap()),
        )
        .await
        .unwrap();
    let manifest_bytes = Bytes::from(ImageManifest::new(config, vec![layer]).to_json());
    let params = match tag {
        Some(tag) => PushManifestParams::new().with_tag(Tag::parse(tag).unwrap()),
        None => PushManifestParams::new(),
    };
    let manifest = store
        .push_manifest(
            &repo,
            manifest_bytes.clone(),
            &MediaType::from_static(media_type::OCI_MANIFEST),
            &params,
        )
        .await
        .unwrap();
    LayoutImage {
        manifest,
        manifest_bytes,
    }
}

/// Pushes an index of `children` (linux/`arch` each) tagged `tag`.
pub(crate) async fn layout_index(
    store: &LayoutStore,
    children: &[(&LayoutImage, &str)],
    tag: &str,
) -> LayoutImage {
    let manifests = children
        .iter()
        .map(|(image, arch)| {
            image
                .manifest
                .clone()
                .with_platform(format!("linux/{arch}").parse::<Platform>().unwrap())
        })
        .collect();
    let manifest_bytes = Bytes::from(ImageIndex::new(manifests).to_json());
    let manifest = store
        .push_manifest(
            &layout_repo(),
            manifest_bytes.clone(),
            &MediaType::from_static(media_type::OCI_INDEX),
            &PushManifestParams::new().with_tag(Tag::parse(tag).unwrap()),
        )
        .await
        .unwrap();
    LayoutImage {
        manifest,
        manifest_bytes,
    }
}

/// The digest `index.json` of the layout `dir` names `tag` with.
pub(crate) fn layout_tag_digest(dir: &Path, tag: &str) -> Digest {
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let entries: Vec<&Value> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .collect();
    assert_eq!(entries.len(), 1, "{}: entries for {tag}", dir.display());
    Digest::parse(entries[0]["digest"].as_str().unwrap()).unwrap()
}

/// `oci:DIR:TAG`.
pub(crate) fn oci_ref(dir: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", dir.display())
}

/// skopeo with `--insecure-policy` (no policy file needed; no signatures involved).
pub(crate) fn skopeo(bin: &Path, args: &[&str]) -> std::process::Output {
    run(bin, ["--insecure-policy"].iter().chain(args))
}

/// skopeo expected to fail; returns its stderr.
pub(crate) fn skopeo_fails(bin: &Path, args: &[&str]) -> String {
    let output = std::process::Command::new(bin)
        .arg("--insecure-policy")
        .args(args)
        .output()
        .unwrap();
    assert!(
        !output.status.success(),
        "skopeo {args:?} succeeded, expected a failure:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

// ---- skopeo against hoist serve ----

#[tokio::test(flavor = "multi_thread")]
async fn skopeo_pushes_pulls_inspects_lists_and_deletes_through_hoist_serve() {
    let Some(skopeo_bin) = peer("skopeo") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (source, root, single_out, multi_out) = (
        tmp.path().join("source"),
        tmp.path().join("root"),
        tmp.path().join("single-out"),
        tmp.path().join("multi-out"),
    );
    let store = LayoutStore::open(&source).await.unwrap();
    let single = layout_image(&store, "s390x", Some("v1")).await;
    let amd64 = layout_image(&store, "amd64", None).await;
    let arm64 = layout_image(&store, "arm64", None).await;
    let index = layout_index(&store, &[(&amd64, "amd64"), (&arm64, "arm64")], "multi").await;

    let serve = ServeProcess::start(&["--root".as_ref(), root.as_os_str()]);
    let registry = |tag: &str| format!("docker://{}/team/app:{tag}", serve.addr());
    let http = "--dest-tls-verify=false";

    skopeo(
        &skopeo_bin,
        &["copy", "-q", http, &oci_ref(&source, "v1"), &registry("v1")],
    );
    skopeo(
        &skopeo_bin,
        &[
            "copy",
            "-q",
            "--all",
            http,
            &oci_ref(&source, "multi"),
            &registry("multi"),
        ],
    );

    // What hoist stored is a layout of its own per repository, holding our digests.
    let served = LayoutStore::open(root.join("team/app")).await.unwrap();
    let repo = layout_repo();
    for (tag, ours) in [("v1", &single), ("multi", &index)] {
        let stored = served
            .resolve_tag(&repo, &Tag::parse(tag).unwrap())
            .await
            .unwrap();
        assert_eq!(stored.digest, ours.manifest.digest, "{tag} as stored");
    }

    // Back out into new layouts: the same digests.
    let from = "--src-tls-verify=false";
    skopeo(
        &skopeo_bin,
        &[
            "copy",
            "-q",
            from,
            &registry("v1"),
            &oci_ref(&single_out, "v1"),
        ],
    );
    assert_eq!(
        layout_tag_digest(&single_out, "v1"),
        single.manifest.digest,
        "the image pulled back from hoist serve has another manifest digest"
    );
    skopeo(
        &skopeo_bin,
        &[
            "copy",
            "-q",
            "--all",
            from,
            &registry("multi"),
            &oci_ref(&multi_out, "multi"),
        ],
    );
    assert_eq!(
        layout_tag_digest(&multi_out, "multi"),
        index.manifest.digest,
        "the index pulled back from hoist serve has another digest"
    );
    let pulled = LayoutStore::open(&multi_out).await.unwrap();
    for child in [&amd64, &arm64] {
        pulled
            .resolve_manifest(&repo, &child.manifest.digest)
            .await
            .unwrap_or_else(|e| panic!("child {} not copied back: {e}", child.manifest.digest));
    }

    // inspect: the digest, and --raw the exact bytes.
    let inspect = "--tls-verify=false";
    let out = skopeo(&skopeo_bin, &["inspect", inspect, &registry("v1")]);
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["Digest"], single.manifest.digest.as_str());
    assert_eq!(info["Architecture"], "s390x");
    let raw = skopeo(
        &skopeo_bin,
        &["inspect", "--raw", inspect, &registry("multi")],
    );
    assert!(
        raw.stdout == index.manifest_bytes,
        "skopeo inspect --raw: not the index we pushed"
    );

    // list-tags.
    let out = skopeo(
        &skopeo_bin,
        &[
            "list-tags",
            inspect,
            &format!("docker://{}/team/app", serve.addr()),
        ],
    );
    let tags: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut tags: Vec<&str> = tags["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    tags.sort_unstable();
    assert_eq!(tags, ["multi", "v1"]);

    // delete, then inspect fails; the index is untouched.
    skopeo(&skopeo_bin, &["delete", inspect, &registry("v1")]);
    let refused = skopeo_fails(&skopeo_bin, &["inspect", inspect, &registry("v1")]);
    assert!(
        refused.contains("manifest unknown") || refused.contains("not found"),
        "skopeo inspect after delete: {refused}"
    );
    skopeo(
        &skopeo_bin,
        &["inspect", "--raw", inspect, &registry("multi")],
    );
}

// ---- side by side with the CNCF distribution registry ----

/// The CNCF registry started by `tests/peers/start-registry.sh` in a directory of its own on a
/// free port; stopped (by its pidfile) on drop.
struct CncfRegistry {
    dir: tempfile::TempDir,
    addr: SocketAddr,
}

impl CncfRegistry {
    fn start() -> Self {
        // The guard exists first, so that a registry started but not answering is stopped too.
        let registry = Self {
            dir: tempfile::tempdir().unwrap(),
            addr: free_addr(),
        };
        let output = std::process::Command::new("bash")
            .arg(peers_dir().join("start-registry.sh"))
            .env("REGISTRY_DIR", registry.dir.path())
            .env("REGISTRY_ADDR", registry.addr.to_string())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "start-registry.sh failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        registry
    }
}

impl Drop for CncfRegistry {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(peers_dir().join("stop-registry.sh"))
            .env("REGISTRY_DIR", self.dir.path())
            .output();
    }
}

fn peers_dir() -> PathBuf {
    workspace_root().join("tests/peers")
}

/// What is compared of one response: the status, the spec's error code, and the headers the
/// spec speaks of, normalised where the spec allows several spellings.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    status: u16,
    /// The body ended before its `Content-Length` (or broke off otherwise).
    body_broken: bool,
    code: Option<String>,
    headers: BTreeMap<&'static str, String>,
    body: Option<String>,
}

/// How a body is compared.
#[derive(Clone, Copy)]
enum Body {
    /// Not compared.
    Ignored,
    /// Byte for byte (by digest).
    Exact,
    /// This field of the JSON body.
    Field(&'static str),
}

impl Seen {
    fn of(reply: &Reply, body: Body) -> Self {
        let ok = (200..300).contains(&reply.status);
        let mut headers = BTreeMap::new();
        let mut keep = |name: &'static str, value: Option<String>| {
            if let Some(value) = value {
                headers.insert(name, value);
            }
        };
        keep(
            "Docker-Content-Digest",
            reply.header("docker-content-digest").map(str::to_owned),
        );
        // Error bodies differ in their messages, so only successes compare lengths.
        if ok {
            // A JSON body compared by its content may be spelled otherwise (a final newline).
            if !matches!(body, Body::Field(_)) {
                keep(
                    "Content-Length",
                    reply.header("content-length").map(str::to_owned),
                );
            }
            // The media type, without parameters (`; charset=utf-8`).
            keep(
                "Content-Type",
                reply
                    .header("content-type")
                    .map(|t| t.split(';').next().unwrap_or_default().trim().to_owned()),
            );
        }
        // Absolute or relative, and the upload ids differ: only its presence.
        keep(
            "Location",
            reply.header("location").map(|_| "present".to_owned()),
        );
        keep("Range", reply.header("range").map(str::to_owned));
        keep(
            "Content-Range",
            reply.header("content-range").map(str::to_owned),
        );
        keep("Link", reply.header("link").map(normalise_link));
        keep(
            "OCI-Subject",
            reply.header("oci-subject").map(str::to_owned),
        );
        keep(
            "OCI-Filters-Applied",
            reply.header("oci-filters-applied").map(str::to_owned),
        );
        let body = match body {
            _ if !ok => None,
            Body::Ignored => None,
            Body::Exact => Some(Digest::sha256(&reply.body).to_string()),
            Body::Field(field) => Some(reply.json()[field].to_string()),
        };
        Self {
            status: reply.status,
            body_broken: reply.body_error.is_some(),
            code: reply.code(),
            headers,
            body,
        }
    }
}

/// `<url>; rel="next"` with the URL's path and its query parameters in order, so that
/// `?last=b&n=2` and `?n=2&last=b` read the same.
fn normalise_link(link: &str) -> String {
    let (url, rest) = link
        .trim()
        .strip_prefix('<')
        .and_then(|l| l.split_once('>'))
        .unwrap_or((link, ""));
    let target = request_target(url);
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    // `last=a%2Fb` and `last=a/b` are the same value.
    let mut params: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.replace("%2F", "/").replace("%2f", "/"))
        .collect();
    params.sort_unstable();
    format!("<{path}?{}>{}", params.join("&"), rest.replace(' ', ""))
}

/// The cases a run went through, in order.
struct Run {
    addr: SocketAddr,
    seen: Vec<(&'static str, Seen)>,
}

impl Run {
    async fn call(
        &mut self,
        case: &'static str,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
        compare: Body,
    ) -> Reply {
        let reply = send(self.addr, method, target, headers, body).await;
        self.seen.push((case, Seen::of(&reply, compare)));
        reply
    }
}

const OCTET: (&str, &str) = ("content-type", media_type::OCTET_STREAM);
const REPO: &str = "interop/app";

/// `n` bytes of a pattern that starts with `seed`.
fn content(seed: u8, n: usize) -> Vec<u8> {
    (0..n).map(|i| seed.wrapping_add((i * 7) as u8)).collect()
}

/// The same requests against a registry at `addr`; every comparable response recorded.
#[allow(clippy::too_many_lines)]
async fn scenario(addr: SocketAddr) -> Vec<(&'static str, Seen)> {
    let mut r = Run {
        addr,
        seen: Vec::new(),
    };
    let uploads = format!("/v2/{REPO}/blobs/uploads/");
    let blobs = |d: &Digest| format!("/v2/{REPO}/blobs/{d}");
    let manifests = |reference: &str| format!("/v2/{REPO}/manifests/{reference}");

    r.call("base: GET /v2/", "GET", "/v2/", &[], "", Body::Ignored)
        .await;

    // ---- push: chunked ----
    let chunked = content(1, 100);
    let chunked_digest = Digest::sha256(&chunked);
    let post = r
        .call(
            "push chunked: POST",
            "POST",
            &uploads,
            &[],
            "",
            Body::Ignored,
        )
        .await;
    // Compared as present above; its form is a case of its own.
    let form = match post.header("location") {
        Some(l) if l.starts_with("http://") || l.starts_with("https://") => "absolute",
        Some(_) => "relative",
        None => "missing",
    };
    r.seen.push((
        "push chunked: the form of the upload Location",
        Seen {
            status: post.status,
            body_broken: false,
            code: None,
            headers: BTreeMap::from([("Location", form.to_owned())]),
            body: None,
        },
    ));
    let location = post.location().unwrap();
    let patch = r
        .call(
            "push chunked: PATCH 0-49",
            "PATCH",
            &location,
            &[OCTET, ("content-range", "0-49")],
            chunked[..50].to_vec(),
            Body::Ignored,
        )
        .await;
    let location = patch.location().unwrap();
    let status = r
        .call(
            "push chunked: GET upload status",
            "GET",
            &location,
            &[],
            "",
            Body::Ignored,
        )
        .await;
    let location = status.location().unwrap_or(location);
    let patch = r
        .call(
            "push chunked: PATCH 50-99",
            "PATCH",
            &location,
            &[OCTET, ("content-range", "50-99")],
            chunked[50..].to_vec(),
            Body::Ignored,
        )
        .await;
    let location = patch.location().unwrap();
    r.call(
        "push chunked: closing PUT ?digest=",
        "PUT",
        &with_query(&location, &format!("digest={chunked_digest}")),
        &[],
        "",
        Body::Ignored,
    )
    .await;

    // ---- push: monolithic POST then PUT ----
    let mono = content(2, 60);
    let mono_digest = Digest::sha256(&mono);
    let post = r
        .call(
            "push monolithic: POST",
            "POST",
            &uploads,
            &[],
            "",
            Body::Ignored,
        )
        .await;
    r.call(
        "push monolithic: PUT ?digest= with the blob",
        "PUT",
        &with_query(&post.location().unwrap(), &format!("digest={mono_digest}")),
        &[OCTET],
        mono.clone(),
        Body::Ignored,
    )
    .await;

    // ---- push: single POST ?digest= (optional; a 202 means: continue with PUT) ----
    let single = content(3, 40);
    let single_digest = Digest::sha256(&single);
    let post = r
        .call(
            "push single POST ?digest=",
            "POST",
            &with_query(&uploads, &format!("digest={single_digest}")),
            &[OCTET],
            single.clone(),
            Body::Ignored,
        )
        .await;
    if post.status == 202 {
        let put = send(
            addr,
            "PUT",
            &with_query(
                &post.location().unwrap(),
                &format!("digest={single_digest}"),
            ),
            &[OCTET],
            single.clone(),
        )
        .await;
        assert_eq!(
            put.status, 201,
            "the PUT after a 202 to a single POST: {put:?}"
        );
    }

    // ---- push: streamed PATCH without Content-Range, then PUT ----
    let streamed = content(4, 30);
    let streamed_digest = Digest::sha256(&streamed);
    let post = r
        .call(
            "push streamed: POST",
            "POST",
            &uploads,
            &[],
            "",
            Body::Ignored,
        )
        .await;
    let patch = r
        .call(
            "push streamed: PATCH without Content-Range",
            "PATCH",
            &post.location().unwrap(),
            &[OCTET],
            streamed.clone(),
            Body::Ignored,
        )
        .await;
    r.call(
        "push streamed: closing PUT ?digest=",
        "PUT",
        &with_query(
            &patch.location().unwrap(),
            &format!("digest={streamed_digest}"),
        ),
        &[],
        "",
        Body::Ignored,
    )
    .await;

    // ---- push: errors ----
    let post = r
        .call(
            "push errors: POST",
            "POST",
            &uploads,
            &[],
            "",
            Body::Ignored,
        )
        .await;
    let location = post.location().unwrap();
    let patch = r
        .call(
            "push errors: PATCH 0-9",
            "PATCH",
            &location,
            &[OCTET, ("content-range", "0-9")],
            content(5, 10),
            Body::Ignored,
        )
        .await;
    let location = patch.location().unwrap();
    let out_of_order = r
        .call(
            "push errors: out-of-order PATCH 20-29",
            "PATCH",
            &location,
            &[OCTET, ("content-range", "20-29")],
            content(6, 10),
            Body::Ignored,
        )
        .await;
    let location = out_of_order.location().unwrap_or(location);
    r.call(
        "push errors: closing PUT with a digest the content does not have",
        "PUT",
        &with_query(&location, &format!("digest={}", Digest::sha256(b"other"))),
        &[],
        "",
        Body::Ignored,
    )
    .await;
    let post = r
        .call(
            "push errors: POST to cancel",
            "POST",
            &uploads,
            &[],
            "",
            Body::Ignored,
        )
        .await;
    let location = post.location().unwrap();
    r.call(
        "push errors: DELETE upload (cancel)",
        "DELETE",
        &location,
        &[],
        "",
        Body::Ignored,
    )
    .await;
    r.call(
        "push errors: GET status of the cancelled upload",
        "GET",
        &location,
        &[],
        "",
        Body::Ignored,
    )
    .await;
    let post = r
        .call(
            "push errors: POST for a bad digest",
            "POST",
            &uploads,
            &[],
            "",
            Body::Ignored,
        )
        .await;
    r.call(
        "push errors: closing PUT ?digest=sha256:nothex",
        "PUT",
        &with_query(&post.location().unwrap(), "digest=sha256:nothex"),
        &[OCTET],
        content(7, 10),
        Body::Ignored,
    )
    .await;
    r.call(
        "push errors: POST to an invalid name",
        "POST",
        "/v2/Interop/App/blobs/uploads/",
        &[],
        "",
        Body::Ignored,
    )
    .await;

    // ---- push: sha512 ----
    let sha512 = content(8, 50);
    let sha512_digest = Digest::of(oci_types::Algorithm::Sha512, &sha512);
    let post = r
        .call(
            "push sha512: POST",
            "POST",
            &uploads,
            &[],
            "",
            Body::Ignored,
        )
        .await;
    r.call(
        "push sha512: PUT ?digest=sha512:…",
        "PUT",
        &with_query(
            &post.location().unwrap(),
            &format!("digest={sha512_digest}"),
        ),
        &[OCTET],
        sha512.clone(),
        Body::Ignored,
    )
    .await;
    r.call(
        "push sha512: HEAD the blob",
        "HEAD",
        &blobs(&sha512_digest),
        &[],
        "",
        Body::Ignored,
    )
    .await;

    // ---- push: cross-repository mount ----
    r.call(
        "mount: POST ?mount=&from=",
        "POST",
        &format!("/v2/interop/other/blobs/uploads/?mount={chunked_digest}&from={REPO}"),
        &[],
        "",
        Body::Ignored,
    )
    .await;
    r.call(
        "mount: HEAD the mounted blob",
        "HEAD",
        &format!("/v2/interop/other/blobs/{chunked_digest}"),
        &[],
        "",
        Body::Ignored,
    )
    .await;
    r.call(
        "mount: a missing blob starts an upload",
        "POST",
        &format!(
            "/v2/interop/other/blobs/uploads/?mount={}&from={REPO}",
            Digest::sha256(b"missing")
        ),
        &[],
        "",
        Body::Ignored,
    )
    .await;

    // ---- manifests ----
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_digest = push_blob(addr, &[], REPO, config).await;
    let empty_digest = push_blob(addr, &[], REPO, b"{}").await;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": {"mediaType": media_type::OCI_CONFIG, "digest": config_digest.to_string(), "size": config.len()},
        "layers": [{"mediaType": media_type::OCI_LAYER_GZIP, "digest": chunked_digest.to_string(), "size": chunked.len()}],
    }))
    .unwrap();
    let manifest_digest = Digest::sha256(&manifest);
    let oci_manifest = ("content-type", media_type::OCI_MANIFEST);
    r.call(
        "manifest: PUT by tag v1",
        "PUT",
        &manifests("v1"),
        &[oci_manifest],
        manifest.clone(),
        Body::Ignored,
    )
    .await;
    r.call(
        "manifest: PUT by digest",
        "PUT",
        &manifests(manifest_digest.as_str()),
        &[oci_manifest],
        manifest.clone(),
        Body::Ignored,
    )
    .await;
    for tag in ["v2", "v3", "v4"] {
        let put = send(
            addr,
            "PUT",
            &manifests(tag),
            &[oci_manifest],
            manifest.clone(),
        )
        .await;
        assert_eq!(put.status, 201, "PUT manifest {tag}: {put:?}");
    }
    let referrer = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom",
        "config": {"mediaType": media_type::OCI_EMPTY, "digest": empty_digest.to_string(), "size": 2},
        "layers": [{"mediaType": media_type::OCI_EMPTY, "digest": empty_digest.to_string(), "size": 2}],
        "subject": {"mediaType": media_type::OCI_MANIFEST, "digest": manifest_digest.to_string(), "size": manifest.len()},
    }))
    .unwrap();
    let referrer_digest = Digest::sha256(&referrer);
    r.call(
        "manifest: PUT one with a subject",
        "PUT",
        &manifests(referrer_digest.as_str()),
        &[oci_manifest],
        referrer.clone(),
        Body::Ignored,
    )
    .await;
    let dangling = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": {"mediaType": media_type::OCI_CONFIG, "digest": config_digest.to_string(), "size": config.len()},
        "layers": [{"mediaType": media_type::OCI_LAYER_GZIP, "digest": Digest::sha256(b"never pushed").to_string(), "size": 12}],
    }))
    .unwrap();
    r.call(
        "manifest errors: PUT referencing a blob never pushed",
        "PUT",
        &manifests("dangling"),
        &[oci_manifest],
        dangling,
        Body::Ignored,
    )
    .await;
    r.call(
        "manifest errors: PUT of invalid JSON",
        "PUT",
        &manifests("broken"),
        &[oci_manifest],
        "{not json",
        Body::Ignored,
    )
    .await;
    r.call(
        "manifest errors: PUT by a digest the body does not have",
        "PUT",
        &manifests(Digest::sha256(b"other").as_str()),
        &[oci_manifest],
        manifest.clone(),
        Body::Ignored,
    )
    .await;

    // ---- pull ----
    r.call(
        "pull: HEAD blob",
        "HEAD",
        &blobs(&chunked_digest),
        &[],
        "",
        Body::Ignored,
    )
    .await;
    r.call(
        "pull: GET blob",
        "GET",
        &blobs(&chunked_digest),
        &[],
        "",
        Body::Exact,
    )
    .await;
    for (case, range) in [
        ("pull: GET blob Range bytes=10-19", "bytes=10-19"),
        ("pull: GET blob Range bytes=90-", "bytes=90-"),
        ("pull: GET blob Range bytes=-5", "bytes=-5"),
        ("pull: GET blob Range bytes=95-200", "bytes=95-200"),
        ("pull: GET blob Range bytes=200-300", "bytes=200-300"),
    ] {
        r.call(
            case,
            "GET",
            &blobs(&chunked_digest),
            &[("range", range)],
            "",
            Body::Exact,
        )
        .await;
    }
    for (case, digest) in [
        ("pull: the monolithic blob", &mono_digest),
        ("pull: the single-POST blob", &single_digest),
        ("pull: the streamed blob", &streamed_digest),
    ] {
        r.call(case, "GET", &blobs(digest), &[], "", Body::Exact)
            .await;
    }
    let accept = ("accept", media_type::OCI_MANIFEST);
    r.call(
        "pull: HEAD manifest by tag",
        "HEAD",
        &manifests("v1"),
        &[accept],
        "",
        Body::Ignored,
    )
    .await;
    r.call(
        "pull: GET manifest by tag",
        "GET",
        &manifests("v1"),
        &[accept],
        "",
        Body::Exact,
    )
    .await;
    r.call(
        "pull: GET manifest by digest",
        "GET",
        &manifests(manifest_digest.as_str()),
        &[accept],
        "",
        Body::Exact,
    )
    .await;

    // ---- pull: errors ----
    let unknown = Digest::sha256(b"unknown");
    r.call(
        "pull errors: HEAD unknown blob",
        "HEAD",
        &blobs(&unknown),
        &[],
        "",
        Body::Ignored,
    )
    .await;
    r.call(
        "pull errors: GET unknown blob",
        "GET",
        &blobs(&unknown),
        &[],
        "",
        Body::Ignored,
    )
    .await;
    r.call(
        "pull errors: GET unknown manifest by tag",
        "GET",
        &manifests("nope"),
        &[accept],
        "",
        Body::Ignored,
    )
    .await;
    r.call(
        "pull errors: HEAD unknown manifest by tag",
        "HEAD",
        &manifests("nope"),
        &[accept],
        "",
        Body::Ignored,
    )
    .await;
    r.call(
        "pull errors: GET unknown manifest by digest",
        "GET",
        &manifests(unknown.as_str()),
        &[accept],
        "",
        Body::Ignored,
    )
    .await;
    let bad_digest = format!("sha256:{}", "a".repeat(63));
    r.call(
        "pull errors: GET blob by a digest of 63 hex digits",
        "GET",
        &format!("/v2/{REPO}/blobs/{bad_digest}"),
        &[],
        "",
        Body::Ignored,
    )
    .await;
    r.call(
        "pull errors: GET manifest by a digest of 63 hex digits",
        "GET",
        &manifests(&bad_digest),
        &[accept],
        "",
        Body::Ignored,
    )
    .await;
    r.call(
        "pull errors: GET manifest of an invalid name",
        "GET",
        "/v2/Interop/App/manifests/v1",
        &[accept],
        "",
        Body::Ignored,
    )
    .await;
    r.call(
        "pull errors: GET manifest of an unknown repository",
        "GET",
        "/v2/interop/nothere/manifests/v1",
        &[accept],
        "",
        Body::Ignored,
    )
    .await;

    // ---- discovery ----
    let tags = format!("/v2/{REPO}/tags/list");
    let field = Body::Field("tags");
    r.call("tags: all", "GET", &tags, &[], "", field).await;
    r.call(
        "tags: n=2",
        "GET",
        &with_query(&tags, "n=2"),
        &[],
        "",
        field,
    )
    .await;
    r.call(
        "tags: n=2&last=v2",
        "GET",
        &with_query(&tags, "n=2&last=v2"),
        &[],
        "",
        field,
    )
    .await;
    r.call(
        "tags: unknown repository",
        "GET",
        "/v2/interop/nothere/tags/list",
        &[],
        "",
        field,
    )
    .await;
    let repositories = Body::Field("repositories");
    r.call("catalog: all", "GET", "/v2/_catalog", &[], "", repositories)
        .await;
    r.call(
        "catalog: n=1",
        "GET",
        "/v2/_catalog?n=1",
        &[],
        "",
        repositories,
    )
    .await;
    r.call(
        "referrers: of the manifest",
        "GET",
        &format!("/v2/{REPO}/referrers/{manifest_digest}"),
        &[],
        "",
        Body::Field("manifests"),
    )
    .await;

    // ---- content management ----
    r.call(
        "delete: manifest by tag v4",
        "DELETE",
        &manifests("v4"),
        &[],
        "",
        Body::Ignored,
    )
    .await;
    r.call(
        "delete: manifest by digest (the referrer)",
        "DELETE",
        &manifests(referrer_digest.as_str()),
        &[],
        "",
        Body::Ignored,
    )
    .await;
    r.call(
        "delete: GET the deleted manifest",
        "GET",
        &manifests(referrer_digest.as_str()),
        &[accept],
        "",
        Body::Ignored,
    )
    .await;
    r.call(
        "delete: blob",
        "DELETE",
        &blobs(&mono_digest),
        &[],
        "",
        Body::Ignored,
    )
    .await;
    r.call(
        "delete: HEAD the deleted blob",
        "HEAD",
        &blobs(&mono_digest),
        &[],
        "",
        Body::Ignored,
    )
    .await;
    r.call(
        "delete: unknown blob",
        "DELETE",
        &blobs(&unknown),
        &[],
        "",
        Body::Ignored,
    )
    .await;
    r.call(
        "delete: unknown manifest",
        "DELETE",
        &manifests(unknown.as_str()),
        &[],
        "",
        Body::Ignored,
    )
    .await;
    r.seen
}

/// A case where the CNCF registry (2.8) answers otherwise than hoist: both statuses, the spec
/// rule hoist follows, and a check that hoist's answer shows that rule.
struct Departure {
    case: &'static str,
    registry: u16,
    hoist: u16,
    rule: &'static str,
    shows: fn(&Seen) -> bool,
    /// The registry's answer depends on its storage (the order it lists tags in), so it may
    /// happen to agree with hoist's.
    may_agree: bool,
}

fn code_is(seen: &Seen, code: &str) -> bool {
    seen.code.as_deref() == Some(code)
}

fn body_is(seen: &Seen, json: &str) -> bool {
    seen.body.as_deref() == Some(json)
}

fn header_starts(seen: &Seen, name: &str, prefix: &str) -> bool {
    seen.headers
        .get(name)
        .is_some_and(|v| v.starts_with(prefix))
}

/// Where the CNCF registry departs from the spec, or takes another option the spec allows.
fn departures() -> Vec<Departure> {
    vec![
        Departure {
            case: "push chunked: the form of the upload Location",
            registry: 202,
            hoist: 202,
            rule: "Location MAY be absolute or relative (RFC 7231 §7.1.2), and clients resolve \
                   it: the registry answers http://HOST/v2/…?_state=…, hoist a path",
            shows: |s| s.headers.get("Location").is_some_and(|l| l == "relative"),
            may_agree: false,
        },
        Departure {
            case: "push single POST ?digest=",
            registry: 202,
            hoist: 201,
            rule: "end-4b: single POST is optional; 201 + Location when supported (hoist), \
                   202 + Location and the client PUTs when not (registry): both conform",
            shows: |s| {
                s.headers.contains_key("Location")
                    && s.headers.contains_key("Docker-Content-Digest")
            },
            may_agree: false,
        },
        Departure {
            case: "push errors: out-of-order PATCH 20-29",
            registry: 202,
            hoist: 416,
            rule: "end-5: chunks MUST arrive in order; an out-of-order chunk MUST get 416 \
                   (the registry ignores Content-Range and appends: Range 0-19)",
            shows: |s| s.code.is_some(),
            may_agree: false,
        },
        Departure {
            case: "push errors: POST to an invalid name",
            registry: 404,
            hoist: 400,
            rule: "<name> must match the spec's grammar; one that does not is NAME_INVALID \
                   (code-8) in a JSON error body (the registry's router answers a plain 404)",
            shows: |s| code_is(s, "NAME_INVALID"),
            may_agree: false,
        },
        Departure {
            case: "push sha512: PUT ?digest=sha512:…",
            registry: 201,
            hoist: 201,
            rule: "sha512 blobs (image-spec digests, end-4c): hoist keeps the digest the client \
                   named; the registry verifies sha512 but answers its sha256 \
                   Docker-Content-Digest (a 'canonical digest', which the spec allows)",
            shows: |s| header_starts(s, "Docker-Content-Digest", "sha512:"),
            may_agree: false,
        },
        Departure {
            case: "push sha512: HEAD the blob",
            registry: 200,
            hoist: 200,
            rule: "as above: HEAD by a sha512 digest answers that digest in \
                   Docker-Content-Digest (the registry answers the sha256 one)",
            shows: |s| header_starts(s, "Docker-Content-Digest", "sha512:"),
            may_agree: false,
        },
        Departure {
            case: "manifest: PUT one with a subject",
            registry: 201,
            hoist: 201,
            rule: "a registry that supports the referrers API MUST answer OCI-Subject to a \
                   push with a subject (the registry has no referrers API)",
            shows: |s| header_starts(s, "OCI-Subject", "sha256:"),
            may_agree: false,
        },
        Departure {
            case: "manifest errors: PUT referencing a blob never pushed",
            registry: 400,
            hoist: 404,
            rule: "a manifest whose blobs are unknown MAY be refused and then MUST carry \
                   MANIFEST_BLOB_UNKNOWN: both do; the status is not fixed by the spec \
                   (end-7 lists 404; hoist answers the code's 404, the registry 400)",
            shows: |s| code_is(s, "MANIFEST_BLOB_UNKNOWN"),
            may_agree: false,
        },
        Departure {
            case: "pull: GET blob Range bytes=200-300",
            registry: 416,
            hoist: 416,
            rule: "RFC 9110 §15.5.17: 416 with Content-Range: bytes */100, and the body must \
                   match its framing (the registry declares Content-Length: 100 and sends a \
                   shorter text body: the client sees a truncated response)",
            shows: |s| {
                !s.body_broken
                    && s.headers
                        .get("Content-Range")
                        .is_some_and(|r| r == "bytes */100")
            },
            may_agree: false,
        },
        Departure {
            case: "pull errors: GET manifest by a digest of 63 hex digits",
            registry: 500,
            hoist: 400,
            rule: "a malformed digest is the client's error: 400 DIGEST_INVALID (the \
                   conformance suite's 'invalid digest format on get'); the registry fails \
                   with 500 UNKNOWN",
            shows: |s| code_is(s, "DIGEST_INVALID"),
            may_agree: false,
        },
        Departure {
            case: "pull errors: GET manifest of an invalid name",
            registry: 404,
            hoist: 400,
            rule: "as for the POST: an invalid <name> is NAME_INVALID (code-8) in a JSON error \
                   body",
            shows: |s| code_is(s, "NAME_INVALID"),
            may_agree: false,
        },
        Departure {
            case: "pull errors: GET manifest of an unknown repository",
            registry: 404,
            hoist: 404,
            rule: "404 both; the code is NAME_UNKNOWN (code-9: repository name not known), the \
                   registry says MANIFEST_UNKNOWN",
            shows: |s| code_is(s, "NAME_UNKNOWN"),
            may_agree: false,
        },
        Departure {
            case: "tags: all",
            registry: 200,
            hoist: 200,
            rule: "end-8a: tags MUST be in lexical (ASCIIbetical, Go sort.Strings) order (the \
                   registry lists v1, v4, v2, v3: its storage order)",
            shows: |s| body_is(s, r#"["v1","v2","v3","v4"]"#),
            // Its order is that of its storage driver's directory listing.
            may_agree: true,
        },
        Departure {
            case: "tags: n=2",
            registry: 200,
            hoist: 200,
            rule: "end-8b: at most n tags, fewer only at the end or with a Link rel=\"next\" \
                   (the registry ignores n and sends all four, no Link)",
            shows: |s| body_is(s, r#"["v1","v2"]"#) && s.headers.contains_key("Link"),
            may_agree: false,
        },
        Departure {
            case: "tags: n=2&last=v2",
            registry: 200,
            hoist: 200,
            rule: "end-8b: last=<tag> gives only the tags after it (the registry ignores last)",
            shows: |s| body_is(s, r#"["v3","v4"]"#) && !s.headers.contains_key("Link"),
            may_agree: false,
        },
        Departure {
            case: "referrers: of the manifest",
            registry: 404,
            hoist: 200,
            rule: "end-12a: the referrers API answers 200 with an image index of the manifests \
                   whose subject is the digest (the registry has no referrers API; its 404 \
                   sends clients to the tag schema)",
            shows: |s| {
                s.body
                    .as_deref()
                    .is_some_and(|b| b.contains("application/vnd.example.sbom"))
                    && header_starts(s, "Content-Type", media_type::OCI_INDEX)
            },
            may_agree: false,
        },
        Departure {
            case: "delete: manifest by tag v4",
            registry: 400,
            hoist: 202,
            rule: "end-9: DELETE /manifests/<tag> deletes the tag: 202 (the registry refuses \
                   tag deletes with 400 DIGEST_INVALID, which the spec allows as 400/405 when \
                   the operation is disabled)",
            shows: |s| s.code.is_none(),
            may_agree: false,
        },
    ]
}

#[tokio::test(flavor = "multi_thread")]
#[allow(clippy::print_stdout)]
async fn hoist_serve_answers_like_the_cncf_registry_except_where_the_spec_says_otherwise() {
    if peer("docker-registry").is_none() || peer("curl").is_none() {
        return;
    }
    let cncf = CncfRegistry::start();
    let root = tempfile::tempdir().unwrap();
    let hoist = ServeProcess::start(&["--root".as_ref(), root.path().as_os_str()]);

    let theirs = scenario(cncf.addr).await;
    let ours = scenario(hoist.addr()).await;
    assert_eq!(theirs.len(), ours.len());

    let departures = departures();
    let mut failures = Vec::new();
    for ((case, registry), (same_case, hoist)) in theirs.iter().zip(&ours) {
        assert_eq!(case, same_case);
        match departures.iter().find(|d| d.case == *case) {
            Some(d)
                if (registry.status, hoist.status) != (d.registry, d.hoist)
                    || (registry == hoist && !d.may_agree)
                    || !(d.shows)(hoist) =>
            {
                failures.push(format!(
                    "{case}: the table says registry {} / hoist {} ({}), seen:\n  registry {registry:?}\n  hoist    {hoist:?}",
                    d.registry, d.hoist, d.rule
                ));
            }
            Some(_) => {}
            None if registry != hoist => failures.push(format!(
                "{case}: differs\n  registry {registry:?}\n  hoist    {hoist:?}"
            )),
            None => {}
        }
    }
    for d in &departures {
        assert!(
            theirs.iter().any(|(case, _)| *case == d.case),
            "the table names a case the scenario lacks: {}",
            d.case
        );
    }
    println!(
        "{} cases compared; the CNCF registry 2.8 and hoist agree on {}; where they differ:",
        theirs.len(),
        theirs.len() - departures.len()
    );
    println!(
        "{:<56} {:>8} {:>5}  spec rule hoist follows",
        "case", "registry", "hoist"
    );
    for d in &departures {
        println!(
            "{:<56} {:>8} {:>5}  {}",
            d.case, d.registry, d.hoist, d.rule
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
