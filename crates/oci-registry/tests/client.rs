//! `oci-registry`'s public API against small registries served in process: a reference to a
//! plain-HTTP loopback registry, the bearer-token flow with a clock the test moves, basic
//! credentials from a docker `config.json` written by [`DockerConfig`], and blob redirects that
//! keep credentials on the registry's own host; bodies that lie in files, sent to a plain-HTTP
//! registry unread.
//!
//! The fixture answers from a closure and records every request (method, target and
//! `Authorization`), so each test states the exact exchange it expects. The cross-crate suites
//! (real registries, hoist's server, the CLI) are in the workspace's `tests/it`.
// The fixture's helpers are test code too: a failure there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use oci_registry::{Clock, Credentials, DockerConfig, RegistryClient, credentials_from_files};
use oci_store::FileSpan;
use oci_store::{OciInterface, OciInterfaceExt};
use oci_types::{Digest, Reference, Repository, Tag, docker_hub};

const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// One request as the fixture saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    method: String,
    /// Path and query.
    target: String,
    authorization: Option<String>,
}

impl Seen {
    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }
}

/// What the fixture answers.
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Bytes,
}

impl Answer {
    fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }
}

type Handler = dyn Fn(SocketAddr, &Seen) -> Answer + Send + Sync;

/// An HTTP/1.1 server on a loopback port answering with `handler` (given the server's own
/// address, for the URLs it hands out).
struct Fixture {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Seen>>>,
    /// The body of every request with one, after its method and target.
    bodies: Arc<Mutex<Vec<(String, Bytes)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Fixture {
    async fn start(handler: impl Fn(SocketAddr, &Seen) -> Answer + Send + Sync + 'static) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let bodies: Arc<Mutex<Vec<(String, Bytes)>>> = Arc::default();
        let handler: Arc<Handler> = Arc::new(handler);
        let task = tokio::spawn({
            let log = Arc::clone(&log);
            let bodies = Arc::clone(&bodies);
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let log = Arc::clone(&log);
                    let bodies = Arc::clone(&bodies);
                    let handler = Arc::clone(&handler);
                    let service = service_fn(move |request: Request<Incoming>| {
                        // As it came: absolute form from a client that takes this for a proxy.
                        let uri = request.uri().to_string();
                        let proxy_authorization = request
                            .headers()
                            .get(http::header::PROXY_AUTHORIZATION)
                            .map(|v| v.to_str().unwrap().to_owned());
                        let seen = Seen {
                            method: request.method().to_string(),
                            target: request
                                .uri()
                                .path_and_query()
                                .map(ToString::to_string)
                                .unwrap_or_default(),
                            authorization: request
                                .headers()
                                .get(http::header::AUTHORIZATION)
                                .map(|v| v.to_str().unwrap().to_owned()),
                        };
                        log.lock().unwrap().push(seen.clone());
                        let (bodies, handler) = (Arc::clone(&bodies), Arc::clone(&handler));
                        async move {
                            let body = request.into_body().collect().await.unwrap().to_bytes();
                            if !body.is_empty() {
                                let mut request = format!("{} {uri}", seen.method);
                                if let Some(credentials) = proxy_authorization {
                                    request.push_str(&format!(
                                        " (Proxy-Authorization: {credentials})"
                                    ));
                                }
                                bodies.lock().unwrap().push((request, body));
                            }
                            let answer = handler(addr, &seen);
                            let mut response = Response::builder().status(answer.status);
                            for (name, value) in answer.headers {
                                response = response.header(name, value);
                            }
                            let response = response.body(Full::new(answer.body)).unwrap();
                            Ok::<_, Infallible>(response)
                        }
                    });
                    tokio::spawn(async move {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            }
        });
        Self {
            addr,
            log,
            bodies,
            task,
        }
    }

    /// `127.0.0.1:PORT`.
    fn host(&self) -> String {
        self.addr.to_string()
    }

    fn log(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }

    fn clear_log(&self) {
        self.log.lock().unwrap().clear();
    }

    fn bodies(&self) -> Vec<(String, Bytes)> {
        self.bodies.lock().unwrap().clone()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A client of `registry` that reads the time from a clock the test moves.
async fn clocked_client(registry: &Fixture) -> (RegistryClient, Arc<Mutex<Instant>>) {
    let now = Arc::new(Mutex::new(Instant::now()));
    let client = RegistryClient::builder(&registry.host())
        .with_credential_files(Vec::new())
        .with_clock(Clock::new({
            let now = Arc::clone(&now);
            move || *now.lock().unwrap()
        }))
        .build()
        .await
        .unwrap();
    (client, now)
}

fn manifest() -> Bytes {
    Bytes::from_static(
        br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#,
    )
}

/// The answer to a manifest request for a tag the fixture holds.
fn manifest_answer() -> Answer {
    let body = manifest();
    Answer::new(200)
        .header("content-type", MANIFEST_TYPE)
        .header("docker-content-digest", Digest::sha256(&body).to_string())
        .body(body)
}

fn basic_header(username: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
    )
}

fn step(method: &str, target: &str, authorization: Option<&str>) -> Seen {
    Seen {
        method: method.to_owned(),
        target: target.to_owned(),
        authorization: authorization.map(str::to_owned),
    }
}

#[tokio::test]
async fn a_reference_to_a_loopback_registry_is_reached_over_plain_http() {
    let registry = Fixture::start(|_, seen| match seen.path() {
        "/v2/team/app/manifests/v1" => manifest_answer(),
        _ => Answer::new(404),
    })
    .await;
    let reference: Reference = format!("{}/team/app:v1", registry.host()).parse().unwrap();
    assert_eq!(reference.registry(), registry.host());
    let client = RegistryClient::builder(reference.registry())
        .with_credential_files(Vec::new())
        .build()
        .await
        .unwrap();
    assert_eq!(client.registry(), registry.host());
    let tag = reference.tag().unwrap();
    let descriptor = client
        .resolve_tag(reference.repository(), tag)
        .await
        .unwrap();
    assert_eq!(descriptor.digest, Digest::sha256(&manifest()));
    assert_eq!(descriptor.media_type.as_str(), MANIFEST_TYPE);
    assert_eq!(
        registry.log(),
        [step("HEAD", "/v2/team/app/manifests/v1", None)],
        "one anonymous HEAD over plain HTTP (the fixture speaks nothing else)"
    );
    let missing = client
        .resolve_tag(reference.repository(), &Tag::parse("v2").unwrap())
        .await
        .unwrap_err();
    assert_eq!(
        missing.code(),
        Some(oci_store::ErrorCode::ManifestUnknown),
        "{missing}"
    );
}

#[tokio::test]
async fn docker_hub_names_are_one_registry() {
    for name in docker_hub::ALIASES {
        let client = RegistryClient::builder(name)
            .with_credential_files(Vec::new())
            .build()
            .await
            .unwrap();
        assert_eq!(client.registry(), docker_hub::NAME, "{name}");
    }
    let reference: Reference = "index.docker.io/ubuntu".parse().unwrap();
    assert_eq!(reference.registry(), docker_hub::NAME);
    assert_eq!(reference.repository().as_str(), "library/ubuntu");
}

/// The registry answers 401 with a Bearer challenge without a token it issued; its token
/// endpoint hands out `tok-1`, `tok-2`, … living 60 s. The client reads the time from a clock
/// the test moves: the token is reused while the clock says it is good, and fetched again once
/// the clock passes its renewal point (5 s before expiry), without any real wait.
#[tokio::test]
async fn bearer_tokens_are_fetched_reused_and_renewed_by_the_clock() {
    let issued = Arc::new(Mutex::new(0_u32));
    let registry = Fixture::start({
        let issued = Arc::clone(&issued);
        move |addr, seen| {
            if seen.path() == "/token" {
                let mut issued = issued.lock().unwrap();
                *issued += 1;
                return Answer::new(200)
                    .header("content-type", "application/json")
                    .body(format!(r#"{{"token":"tok-{issued}","expires_in":60}}"#));
            }
            let valid = (1..=*issued.lock().unwrap()).map(|n| format!("Bearer tok-{n}"));
            if valid
                .into_iter()
                .any(|v| seen.authorization.as_deref() == Some(v.as_str()))
            {
                return manifest_answer();
            }
            Answer::new(401).header(
                "www-authenticate",
                format!(
                    r#"Bearer realm="http://{addr}/token",service="fixture",scope="repository:team/app:pull""#
                ),
            )
        }
    })
    .await;
    let (client, now) = clocked_client(&registry).await;
    let repo: Repository = "team/app".parse().unwrap();
    let tag = Tag::parse("v1").unwrap();
    let head = "/v2/team/app/manifests/v1";
    let token_request = "/token?service=fixture&scope=repository%3Ateam%2Fapp%3Apull";

    client.resolve_tag(&repo, &tag).await.unwrap();
    assert_eq!(
        registry.log(),
        [
            step("HEAD", head, None),
            step("GET", token_request, None),
            step("HEAD", head, Some("Bearer tok-1")),
        ],
        "challenged, a token fetched, the request sent again with it"
    );

    registry.clear_log();
    *now.lock().unwrap() += Duration::from_secs(54);
    client.resolve_tag(&repo, &tag).await.unwrap();
    assert_eq!(
        registry.log(),
        [step("HEAD", head, Some("Bearer tok-1"))],
        "the token is reused while the clock holds it good"
    );

    registry.clear_log();
    *now.lock().unwrap() += Duration::from_secs(2);
    client.resolve_tag(&repo, &tag).await.unwrap();
    assert_eq!(
        registry.log(),
        [
            step("HEAD", head, None),
            step("GET", token_request, None),
            step("HEAD", head, Some("Bearer tok-2")),
        ],
        "past its renewal point on the clock, the token is fetched again"
    );
}

/// A limit of requests in flight past what a semaphore counts is "unlimited", not a panic.
#[tokio::test]
async fn a_request_limit_past_what_a_semaphore_counts_is_no_limit() {
    let registry = Fixture::start(|_, _| manifest_answer()).await;
    let client = RegistryClient::builder(&registry.host())
        .with_credential_files(Vec::new())
        .with_max_concurrent_requests(usize::MAX)
        .build()
        .await
        .unwrap();
    let repo: Repository = "team/app".parse().unwrap();
    client
        .resolve_tag(&repo, &Tag::parse("v1").unwrap())
        .await
        .unwrap();
}

/// A ranged read takes the registry's `Content-Range` only where it is the range asked: an
/// answer for other bytes (a range has no digest to catch them), or one for a blob that ends
/// before the range starts, is an error, neither passed on nor a panic.
#[tokio::test]
async fn a_ranged_answer_for_other_bytes_is_refused() {
    let content_range = Arc::new(Mutex::new(String::new()));
    let registry = Fixture::start({
        let content_range = Arc::clone(&content_range);
        move |_, _| {
            Answer::new(206)
                .header("content-range", content_range.lock().unwrap().clone())
                .body("abcde")
        }
    })
    .await;
    let client = RegistryClient::builder(&registry.host())
        .with_credential_files(Vec::new())
        .build()
        .await
        .unwrap();
    let repo: Repository = "team/app".parse().unwrap();
    let digest = Digest::sha256(b"a blob of 100 bytes, say");
    let read = |start: u64, end: Option<u64>| {
        let (client, repo, digest) = (client.clone(), repo.clone(), digest.clone());
        async move {
            let reader = client.get_blob_range(&repo, &digest, start, end).await?;
            reader.bytes(1 << 20).await
        }
    };
    *content_range.lock().unwrap() = "bytes 10-14/100".to_owned();
    assert_eq!(read(10, Some(15)).await.unwrap(), "abcde");
    *content_range.lock().unwrap() = "bytes 0-4/100".to_owned();
    let other = read(10, Some(15)).await.unwrap_err();
    assert!(other.to_string().contains("from byte 0"), "{other}");
    *content_range.lock().unwrap() = "bytes 10-14/5".to_owned();
    let short = read(10, None).await.unwrap_err();
    assert_eq!(
        short.code(),
        Some(oci_store::ErrorCode::RangeInvalid),
        "{short}"
    );
}

/// A registry whose listing never ends (each page names one tag after the last and links to
/// another page) gets an error after 10,000 pages, not a listing that runs for ever.
#[tokio::test]
async fn an_endless_listing_stops_with_an_error() {
    let registry = Fixture::start(|_, seen| {
        let page: u64 = seen
            .target
            .split("page=")
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        Answer::new(200)
            .header("content-type", "application/json")
            .header(
                "link",
                format!("</v2/team/app/tags/list?page={}>; rel=\"next\"", page + 1),
            )
            .body(format!(r#"{{"name":"team/app","tags":["t{page:08}"]}}"#))
    })
    .await;
    let client = RegistryClient::builder(&registry.host())
        .with_credential_files(Vec::new())
        .build()
        .await
        .unwrap();
    let repo: Repository = "team/app".parse().unwrap();
    let listed: Vec<oci_store::Result<Tag>> =
        futures::StreamExt::collect(client.tags(&repo, &Default::default())).await;
    let (tags, errors): (Vec<_>, Vec<_>) = listed.into_iter().partition(Result::is_ok);
    assert_eq!(tags.len(), 10_000);
    assert_eq!(errors.len(), 1);
    let error = errors.into_iter().next().unwrap().unwrap_err();
    assert!(error.to_string().contains("past 10000 pages"), "{error}");
}

/// A listing's `last` may come from outside (a mirror's client): it goes to the registry as
/// one encoded value of the query, not as more parameters.
#[tokio::test]
async fn a_listings_last_is_one_value_of_the_query() {
    let registry = Fixture::start(|_, _| {
        Answer::new(200)
            .header("content-type", "application/json")
            .body(r#"{"name":"team/app","tags":[]}"#.to_owned())
    })
    .await;
    let client = RegistryClient::builder(&registry.host())
        .with_credential_files(Vec::new())
        .build()
        .await
        .unwrap();
    let repo: Repository = "team/app".parse().unwrap();
    let mut params = oci_store::ListParams::new();
    params.start_after = Some("a&n=99999&x=y z".to_owned());
    let listed: Vec<oci_store::Result<Tag>> =
        futures::StreamExt::collect(client.tags(&repo, &params)).await;
    assert!(listed.is_empty(), "{listed:?}");
    let targets: Vec<String> = registry.log().into_iter().map(|s| s.target).collect();
    assert_eq!(
        targets,
        ["/v2/team/app/tags/list?n=1000&last=a%26n%3D99999%26x%3Dy+z"]
    );
}

/// A token endpoint is outside input: one that says its tokens last `u64::MAX` seconds (past
/// what the clock's type can hold) gets its token used, not a panic, and the token is fetched
/// again after a day, the longest the client keeps one.
#[tokio::test]
async fn a_token_lifetime_past_the_clocks_range_is_kept_for_a_day() {
    let issued = Arc::new(Mutex::new(0_u32));
    let registry = Fixture::start({
        let issued = Arc::clone(&issued);
        move |addr, seen| {
            if seen.path() == "/token" {
                let mut issued = issued.lock().unwrap();
                *issued += 1;
                return Answer::new(200)
                    .header("content-type", "application/json")
                    .body(format!(
                        r#"{{"token":"tok-{issued}","expires_in":18446744073709551615}}"#
                    ));
            }
            let current = format!("Bearer tok-{}", *issued.lock().unwrap());
            if seen.authorization.as_deref() == Some(current.as_str()) {
                return manifest_answer();
            }
            Answer::new(401).header(
                "www-authenticate",
                format!(r#"Bearer realm="http://{addr}/token",service="fixture""#),
            )
        }
    })
    .await;
    let (client, now) = clocked_client(&registry).await;
    let repo: Repository = "team/app".parse().unwrap();
    let tag = Tag::parse("v1").unwrap();
    client.resolve_tag(&repo, &tag).await.unwrap();
    *now.lock().unwrap() += Duration::from_secs(23 * 3600);
    client.resolve_tag(&repo, &tag).await.unwrap();
    assert_eq!(*issued.lock().unwrap(), 1, "kept for 23 hours");
    *now.lock().unwrap() += Duration::from_secs(3600);
    client.resolve_tag(&repo, &tag).await.unwrap();
    assert_eq!(*issued.lock().unwrap(), 2, "fetched again after a day");
}

/// `hoist login`'s way of storing credentials ([`DockerConfig::store_basic`], then `save`) is
/// what the client's lookup finds: the client answers a Basic challenge with them. A helper
/// named for the registry in `credHelpers` is asked first.
#[tokio::test]
async fn basic_credentials_come_from_a_docker_config_json() {
    let expected = basic_header("ci", "s3cret:with:colons");
    let registry = Fixture::start({
        let expected = expected.clone();
        move |_, seen| {
            if seen.authorization.as_deref() == Some(expected.as_str()) {
                manifest_answer()
            } else {
                Answer::new(401).header("www-authenticate", r#"Basic realm="fixture""#)
            }
        }
    })
    .await;
    let host = registry.host();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("docker").join("config.json");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, r#"{"psFormat":"table","auths":{}}"#).unwrap();

    let mut config = DockerConfig::load(&path).unwrap();
    assert_eq!(config.path(), path);
    config
        .store_basic(&host, "ci", "s3cret:with:colons")
        .unwrap();
    config.store_basic("docker.io", "hub", "pw").unwrap();
    config.save().unwrap();
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(written["psFormat"], "table", "unknown keys are kept");
    assert!(written["auths"][docker_hub::CONFIG_KEY].is_object());

    let files = vec![path.clone()];
    assert_eq!(
        credentials_from_files("index.docker.io", &files)
            .await
            .unwrap(),
        Credentials::Basic {
            username: "hub".to_owned(),
            password: "pw".to_owned()
        },
        "any of Docker Hub's names finds docker's key"
    );
    let client = RegistryClient::builder(&host)
        .with_credential_files(files.clone())
        .build()
        .await
        .unwrap();
    let repo: Repository = "team/app".parse().unwrap();
    let tag = Tag::parse("v1").unwrap();
    client.resolve_tag(&repo, &tag).await.unwrap();
    client.resolve_tag(&repo, &tag).await.unwrap();
    let head = "/v2/team/app/manifests/v1";
    assert_eq!(
        registry.log(),
        [
            step("HEAD", head, None),
            step("HEAD", head, Some(&expected)),
            step("HEAD", head, Some(&expected)),
        ],
        "after the Basic challenge, credentials go with every request"
    );

    // A credential helper named for the registry wins over its `auths` entry: here one that
    // is not installed, so the client cannot be built and says which program it ran.
    let mut with_helper: serde_json::Value = written;
    with_helper["credHelpers"] = serde_json::json!({ (host.as_str()): "hoist-fixture-absent" });
    std::fs::write(&path, with_helper.to_string()).unwrap();
    let config = DockerConfig::load(&path).unwrap();
    assert_eq!(
        config.credential_helper_for(&host).as_deref(),
        Some("hoist-fixture-absent")
    );
    assert_eq!(config.credential_helper_for("elsewhere.example"), None);
    let error = RegistryClient::builder(&host)
        .with_credential_files(files)
        .build()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("docker-credential-hoist-fixture-absent"),
        "{error}"
    );

    // Logging out removes the entry; the file keeps the rest.
    let mut config = DockerConfig::load(&path).unwrap();
    assert!(config.remove(&host));
    assert!(!config.remove(&host));
    config.save().unwrap();
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert!(written["auths"].get(&host).is_none(), "{written}");
    assert_eq!(written["psFormat"], "table");
}

/// The crate promises that redirects of blob downloads are followed without sending
/// credentials to another host: the registry redirects first within itself (credentials go
/// along), then to a storage host on another port (they do not).
#[tokio::test]
async fn blob_redirects_keep_credentials_on_the_registrys_host() {
    let content = Bytes::from_static(b"layer bytes behind two redirects");
    let digest = Digest::sha256(&content);
    let storage = Fixture::start({
        let content = content.clone();
        move |_, seen| match seen.path() {
            "/bucket/blob" => Answer::new(200)
                .header("content-type", "application/octet-stream")
                .body(content.clone()),
            _ => Answer::new(404),
        }
    })
    .await;
    let storage_host = storage.host();
    let expected = basic_header("ci", "pw");
    let blob_path = format!("/v2/team/app/blobs/{digest}");
    let registry = Fixture::start({
        let expected = expected.clone();
        let blob_path = blob_path.clone();
        move |_, seen| {
            if seen.authorization.as_deref() != Some(expected.as_str()) {
                return Answer::new(401).header("www-authenticate", r#"Basic realm="fixture""#);
            }
            if seen.path() == blob_path {
                Answer::new(307).header("location", "/internal/blob")
            } else if seen.path() == "/internal/blob" {
                Answer::new(307).header("location", format!("http://{storage_host}/bucket/blob"))
            } else {
                Answer::new(404)
            }
        }
    })
    .await;
    let client = RegistryClient::builder(&registry.host())
        .with_credentials(Credentials::Basic {
            username: "ci".to_owned(),
            password: "pw".to_owned(),
        })
        .build()
        .await
        .unwrap();
    let repo: Repository = "team/app".parse().unwrap();
    let fetched = client
        .get_blob_bytes(&repo, &digest, 1 << 20)
        .await
        .unwrap();
    assert_eq!(fetched, content);
    assert_eq!(
        registry.log(),
        [
            step("GET", &blob_path, None),
            step("GET", &blob_path, Some(&expected)),
            step("GET", "/internal/blob", Some(&expected)),
        ],
        "the registry's own host gets the credentials, redirect included"
    );
    assert_eq!(
        storage.log(),
        [step("GET", "/bucket/blob", None)],
        "another host gets none"
    );
}

/// Another host that a registry's redirect leads to gets no credentials even when it asks
/// for them: its 401 (a bearer challenge whose realm is its own, or a basic one) is the
/// answer, and neither its realm nor it sees the user's password.
#[tokio::test]
async fn another_host_asking_for_credentials_gets_none() {
    for challenge in ["bearer", "basic"] {
        let storage = Fixture::start(move |host, seen| match seen.path() {
            "/token" => Answer::new(200)
                .header("content-type", "application/json")
                .body(Bytes::from_static(br#"{"token":"stolen"}"#)),
            _ if challenge == "bearer" => Answer::new(401).header(
                "www-authenticate",
                format!(r#"Bearer realm="http://{host}/token",service="evil""#),
            ),
            _ => Answer::new(401).header("www-authenticate", r#"Basic realm="evil""#),
        })
        .await;
        let storage_host = storage.host();
        let expected = basic_header("ci", "pw");
        let registry = Fixture::start({
            let expected = expected.clone();
            move |_, seen| {
                if seen.authorization.as_deref() != Some(expected.as_str()) {
                    return Answer::new(401).header("www-authenticate", r#"Basic realm="fixture""#);
                }
                Answer::new(307).header("location", format!("http://{storage_host}/bucket/blob"))
            }
        })
        .await;
        let client = RegistryClient::builder(&registry.host())
            .with_credentials(Credentials::Basic {
                username: "ci".to_owned(),
                password: "pw".to_owned(),
            })
            .build()
            .await
            .unwrap();
        let repo: Repository = "team/app".parse().unwrap();
        let digest = Digest::sha256(b"x");
        client
            .get_blob_bytes(&repo, &digest, 1 << 20)
            .await
            .unwrap_err();
        assert_eq!(
            storage.log(),
            [step("GET", "/bucket/blob", None)],
            "{challenge}: the other host is asked once, without credentials"
        );
        assert_eq!(registry.log().len(), 2, "{challenge}: {:?}", registry.log());
    }
}

/// An upload id from outside (as `hoist serve --mirror` passes its clients' ids on) is
/// resumed only when it is an upload URL of this repository on the registry's own host:
/// another host, plain HTTP from an HTTPS registry's id, another repository, or dot
/// segments (plain or percent-encoded) that a server could resolve to another path are
/// `BLOB_UPLOAD_UNKNOWN`, with no request sent.
#[tokio::test]
async fn an_upload_id_from_outside_must_be_an_upload_of_the_repository_on_this_host() {
    let registry = Fixture::start(|_, seen| match seen.path() {
        "/v2/team/app/blobs/uploads/u1" => Answer::new(204).header("range", "0-9"),
        _ => Answer::new(404),
    })
    .await;
    let host = registry.host();
    let client = RegistryClient::builder(&host).build().await.unwrap();
    let repo: Repository = "team/app".parse().unwrap();
    let id = |url: String| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(url);
    let refused = [
        "http://elsewhere.example/v2/team/app/blobs/uploads/u1".to_owned(),
        format!("http://{host}/v2/team/other/blobs/uploads/u1"),
        format!("http://{host}/v2/team/app/blobs/uploads/../../other/manifests/latest"),
        format!("http://{host}/v2/team/app/blobs/uploads/%2E%2e/%2e./other/blobs/uploads/u1"),
        format!("http://{host}/v2/team/app/blobs/uploads/./u1"),
    ];
    for url in refused {
        let error = client
            .push_blob_chunked_resume(&repo, &id(url.clone()), None, None)
            .await
            .err()
            .unwrap_or_else(|| panic!("{url} resumed"));
        assert!(
            matches!(error, oci_store::Error::BlobUploadUnknown { .. }),
            "{url}: {error}"
        );
    }
    assert_eq!(registry.log(), [], "no request for a refused id");
    let url = format!("http://{host}/v2/team/app/blobs/uploads/u1");
    let writer = client
        .push_blob_chunked_resume(&repo, &id(url), None, None)
        .await
        .unwrap();
    assert_eq!(writer.size(), 10);
}

/// A registry that opens an upload on POST and takes it whole on PUT.
async fn uploading_registry() -> Fixture {
    Fixture::start(|_, seen| match (seen.method.as_str(), seen.path()) {
        ("POST", "/v2/team/app/blobs/uploads/") => {
            Answer::new(202).header("location", "/v2/team/app/blobs/uploads/u1")
        }
        ("PUT", "/v2/team/app/blobs/uploads/u1") => Answer::new(201),
        _ => Answer::new(404),
    })
    .await
}

/// A file holding `content`, and a span of all of it.
fn file_of(content: &[u8]) -> (tempfile::NamedTempFile, FileSpan) {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut file, content).unwrap();
    let open = Arc::new(file.reopen().unwrap());
    let span = FileSpan::new(open, 0, content.len() as u64, "the test's file");
    (file, span)
}

/// Bytes that differ from one offset to the next, so that a shifted or repeated part shows.
fn counting_bytes(len: usize) -> Bytes {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i >> 16) as u8)
        .collect()
}

/// A read for a push whose stream gives `streamed` and whose file's span is `span`: which of
/// the two reaches the registry shows which way it went.
fn read_for_push(content: &Bytes, streamed: Bytes, span: FileSpan) -> oci_store::BlobBody {
    let descriptor =
        oci_types::Descriptor::octet_stream(&Digest::sha256(content), content.len() as u64);
    oci_store::BlobReader::verified(
        descriptor,
        oci_store::body_from_bytes(streamed).with_file(span),
    )
    .into_stream_for_push()
}

/// A body that lies in a file goes to a plain-HTTP registry by `sendfile`, unread: the
/// registry gets the file's bytes although the body's stream gives others, and the body's
/// progress is told of every byte.
#[tokio::test]
async fn a_body_in_a_file_goes_to_a_plain_http_registry_unread() {
    let registry = uploading_registry().await;
    let client = RegistryClient::builder(&registry.host())
        .build()
        .await
        .unwrap();
    let repo: Repository = "team/app".parse().unwrap();
    // Over the size sent in one POST, and over one `sendfile` step.
    let content = counting_bytes((5 << 20) + 123);
    let (_file, span) = file_of(&content);
    let told = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let body = read_for_push(&content, Bytes::from(vec![b'x'; content.len()]), span).on_progress({
        let told = Arc::clone(&told);
        move |bytes| {
            told.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let descriptor =
        oci_types::Descriptor::octet_stream(&Digest::sha256(&content), content.len() as u64);
    client.push_blob(&repo, &descriptor, body).await.unwrap();
    let bodies = registry.bodies();
    assert_eq!(bodies.len(), 1, "one PUT with a body");
    assert!(
        bodies[0]
            .0
            .starts_with("PUT /v2/team/app/blobs/uploads/u1?digest=sha256:"),
        "{}",
        bodies[0].0
    );
    assert!(bodies[0].1 == content, "the registry got the file's bytes");
    assert_eq!(
        told.load(std::sync::atomic::Ordering::Relaxed),
        content.len() as u64
    );
}

/// Through a proxy that forwards plain HTTP, the file's PUT goes to the proxy in absolute
/// form, with the proxy's credentials, as hyper sends every other request there.
#[tokio::test]
async fn a_body_in_a_file_goes_through_a_forwarding_proxy() {
    let proxy = uploading_registry().await;
    // Not loopback, which is never proxied; never resolved, since the proxy is asked.
    let client = RegistryClient::builder("registry.invalid:5000")
        .with_plain_http(true)
        .with_proxy(format!("http://ci:pw@{}", proxy.host()))
        .build()
        .await
        .unwrap();
    let repo: Repository = "team/app".parse().unwrap();
    let content = counting_bytes(2 << 20);
    let (_file, span) = file_of(&content);
    let body = read_for_push(&content, Bytes::from(vec![b'x'; content.len()]), span);
    let descriptor =
        oci_types::Descriptor::octet_stream(&Digest::sha256(&content), content.len() as u64);
    client.push_blob(&repo, &descriptor, body).await.unwrap();
    let bodies = proxy.bodies();
    assert_eq!(bodies.len(), 1, "one PUT with a body");
    let (request, received) = &bodies[0];
    assert!(
        request.starts_with(
            "PUT http://registry.invalid:5000/v2/team/app/blobs/uploads/u1?digest=sha256:"
        ),
        "{request}"
    );
    assert!(
        request.ends_with(&format!(
            "(Proxy-Authorization: {})",
            basic_header("ci", "pw")
        )),
        "{request}"
    );
    assert!(received == &content, "the proxy got the file's bytes");
}

/// A file cut short since it was opened is not sent from: the body streams, and its reader
/// (here, one that has every byte) decides.
#[tokio::test]
async fn a_file_cut_short_is_streamed_instead() {
    let registry = uploading_registry().await;
    let client = RegistryClient::builder(&registry.host())
        .build()
        .await
        .unwrap();
    let repo: Repository = "team/app".parse().unwrap();
    let content = counting_bytes(3 << 20);
    let (file, span) = file_of(&content);
    file.as_file().set_len(1 << 20).unwrap();
    let body = read_for_push(&content, content.clone(), span);
    let descriptor =
        oci_types::Descriptor::octet_stream(&Digest::sha256(&content), content.len() as u64);
    client.push_blob(&repo, &descriptor, body).await.unwrap();
    let bodies = registry.bodies();
    assert_eq!(bodies.len(), 1);
    assert!(
        bodies[0].1 == content,
        "the registry got the stream's bytes"
    );
}

/// A registry that refuses the upload as soon as it sees the head (413), and closes without
/// reading the body: the client reports the registry's answer, not the broken pipe, and sends
/// blobs this big in chunks from then on.
#[tokio::test]
async fn a_refusal_before_the_body_is_read_is_the_answer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let puts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let server = tokio::spawn({
        let puts = Arc::clone(&puts);
        async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let puts = Arc::clone(&puts);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    loop {
                        // One request head at a time; the POSTs have no body.
                        while !head.ends_with(b"\r\n\r\n") {
                            let mut byte = [0u8];
                            if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                                return;
                            }
                            head.push(byte[0]);
                        }
                        if head.starts_with(b"PUT ") {
                            puts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let refusal = "HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
                            stream.write_all(refusal.as_bytes()).await.unwrap();
                            // Closed with the body unread: the client's sending breaks.
                            return;
                        }
                        let accepted = "HTTP/1.1 202 Accepted\r\nlocation: /v2/team/app/blobs/uploads/u1\r\ncontent-length: 0\r\n\r\n";
                        stream.write_all(accepted.as_bytes()).await.unwrap();
                        head.clear();
                    }
                });
            }
        }
    });
    let client = RegistryClient::builder(&addr.to_string())
        .build()
        .await
        .unwrap();
    let repo: Repository = "team/app".parse().unwrap();
    // Far more than the socket's buffers take: the sending cannot finish before the close.
    let content = counting_bytes(64 << 20);
    let (_file, span) = file_of(&content);
    let body = read_for_push(&content, content.clone(), span);
    let descriptor =
        oci_types::Descriptor::octet_stream(&Digest::sha256(&content), content.len() as u64);
    let error = client
        .push_blob(&repo, &descriptor, body)
        .await
        .unwrap_err();
    assert_eq!(error.http_status(), 413, "{error}");
    assert_eq!(puts.load(std::sync::atomic::Ordering::Relaxed), 1);
    server.abort();
}
