//! The server options of `oci-server` and `hoist serve`, proven over the wire: basic auth from
//! an htpasswd file, bearer tokens from the built-in token endpoint (scopes, expiry), TLS with a
//! certificate of a CA made here (HTTP/1.1 and HTTP/2 by ALPN), read-only and no-delete modes,
//! the blob size and concurrent upload limits, graceful shutdown (in-process and on SIGTERM),
//! and the access log. Real clients (skopeo, curl) where a real client matters; peer-needing
//! tests skip, saying so, when the peer is missing (fail on CI, see `support`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use oci_layout::LayoutStore;
use oci_server::{Auth, Htpasswd, Listening, MAX_TOKEN_LIFETIME, RegistryServer, ServerOptions};
use oci_store::{MemoryStore, OciInterface, OciInterfaceExt, PushManifestParams};
use oci_types::{Digest, ImageManifest, MediaType, Repository, Tag, media_type};

use crate::server_interop::{
    exchange, layout_image, layout_tag_digest, oci_ref, push_blob, push_small_image, request, send,
    skopeo, skopeo_fails, start, with_query,
};
use crate::support::{ServeProcess, certificates, peer, run};

const USER: &str = "alice";
const PASSWORD: &str = "wonderland";
const OCTET: (&str, &str) = ("content-type", media_type::OCTET_STREAM);

/// An htpasswd file in `dir` with [`USER`] and a bcrypt hash of [`PASSWORD`] (cost 4: fast).
fn htpasswd_file(dir: &Path) -> PathBuf {
    let path = dir.join("htpasswd");
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    assert!(hash.starts_with("$2b$"), "{hash}");
    std::fs::write(&path, format!("{USER}:{hash}\n")).unwrap();
    path
}

fn users() -> Htpasswd {
    Htpasswd::parse(&format!("{USER}:{}\n", bcrypt::hash(PASSWORD, 4).unwrap())).unwrap()
}

/// `Basic base64(user:password)`.
pub(crate) fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

async fn serve(server: RegistryServer) -> Listening {
    server.bind("127.0.0.1:0".parse().unwrap()).await.unwrap()
}

fn memory() -> Arc<dyn OciInterface> {
    Arc::new(MemoryStore::new())
}

/// A single layout in `dir` with a linux/amd64 image tagged `v1`; returns its manifest digest.
async fn source_layout(dir: &Path) -> Digest {
    let store = LayoutStore::open(dir).await.unwrap();
    layout_image(&store, "amd64", Some("v1"))
        .await
        .manifest
        .digest
}

/// Waits (at most 10 s) until connections to `addr` are refused.
async fn wait_refused(addr: SocketAddr) {
    for _ in 0..500 {
        match tokio::net::TcpStream::connect(addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    panic!("{addr} still accepts connections 10 s after shutdown began");
}

// ---- basic auth ----

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_from_an_htpasswd_file() {
    let listening = serve(RegistryServer::new(memory()).with_auth(Auth::Basic(users()))).await;
    let addr = listening.local_addr();

    let refused = send(addr, "GET", "/v2/", &[], "").await;
    assert_eq!(refused.status, 401, "{refused:?}");
    let challenge = refused.header("www-authenticate").unwrap();
    assert!(
        challenge.starts_with("Basic realm=\""),
        "WWW-Authenticate: {challenge}"
    );
    assert_eq!(refused.code().as_deref(), Some("UNAUTHORIZED"));

    let wrong = basic(USER, "not the password");
    let wrong = send(addr, "GET", "/v2/", &[("authorization", &wrong)], "").await;
    assert_eq!(wrong.status, 401, "wrong password: {wrong:?}");
    assert_eq!(wrong.code().as_deref(), Some("UNAUTHORIZED"));
    let nobody = basic("bob", PASSWORD);
    let nobody = send(addr, "GET", "/v2/", &[("authorization", &nobody)], "").await;
    assert_eq!(nobody.status, 401, "unknown user: {nobody:?}");

    let right = basic(USER, PASSWORD);
    let auth = [("authorization", right.as_str())];
    assert_eq!(send(addr, "GET", "/v2/", &auth, "").await.status, 200);

    // Every endpoint is behind it, and a push then a pull work with the credentials.
    let unauthenticated = send(addr, "GET", "/v2/team/app/tags/list", &[], "").await;
    assert_eq!(unauthenticated.status, 401);
    let (manifest, digest) = push_small_image(addr, &auth, "team/app", "v1").await;
    let accept = ("accept", media_type::OCI_MANIFEST);
    let pulled = send(
        addr,
        "GET",
        "/v2/team/app/manifests/v1",
        &[auth[0], accept],
        "",
    )
    .await;
    assert_eq!(pulled.status, 200);
    assert_eq!(pulled.body, manifest);
    assert_eq!(
        pulled.header("docker-content-digest"),
        Some(digest.as_str())
    );
    let anonymous = send(addr, "GET", "/v2/team/app/manifests/v1", &[accept], "").await;
    assert_eq!(anonymous.status, 401);
    listening.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn skopeo_pushes_to_hoist_serve_with_basic_auth() {
    let Some(skopeo_bin) = peer("skopeo") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let htpasswd = htpasswd_file(tmp.path());
    let source = tmp.path().join("source");
    let ours = source_layout(&source).await;
    let serve = ServeProcess::start(&["--memory", "--htpasswd", htpasswd.to_str().unwrap()]);
    let image = format!("docker://{}/basic/app:v1", serve.addr());
    let creds = format!("{USER}:{PASSWORD}");

    skopeo(
        &skopeo_bin,
        &[
            "copy",
            "-q",
            "--dest-creds",
            &creds,
            "--dest-tls-verify=false",
            &oci_ref(&source, "v1"),
            &image,
        ],
    );
    let out = skopeo(
        &skopeo_bin,
        &["inspect", "--creds", &creds, "--tls-verify=false", &image],
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["Digest"], ours.as_str());

    let wrong = format!("{USER}:nope");
    let refused = skopeo_fails(
        &skopeo_bin,
        &["inspect", "--creds", &wrong, "--tls-verify=false", &image],
    );
    assert!(
        refused.to_lowercase().contains("unauthorized") || refused.contains("401"),
        "skopeo with a wrong password: {refused}"
    );
    skopeo_fails(
        &skopeo_bin,
        &["inspect", "--no-creds", "--tls-verify=false", &image],
    );
}

// ---- token auth ----

/// Fetches a token for `scope` from the realm of `addr`.
async fn token(addr: SocketAddr, scope: &str, credentials: Option<&str>) -> String {
    let target = format!("/token?service=hoist&scope={scope}");
    let headers: Vec<(&str, &str)> = credentials
        .map(|c| vec![("authorization", c)])
        .unwrap_or_default();
    let reply = send(addr, "GET", &target, &headers, "").await;
    assert_eq!(reply.status, 200, "token for {scope}: {reply:?}");
    let body = reply.json();
    let token = body["token"].as_str().unwrap().to_owned();
    assert_eq!(body["access_token"], token.as_str());
    assert!(body["expires_in"].as_u64().is_some(), "{body}");
    token
}

#[tokio::test(flavor = "multi_thread")]
async fn token_auth_issues_tokens_for_the_scopes_asked_and_no_more() {
    let listening = serve(RegistryServer::new(memory()).with_auth(Auth::Token {
        users: Some(users()),
        lifetime: Duration::from_secs(300),
    }))
    .await;
    let addr = listening.local_addr();
    let realm = format!("Bearer realm=\"http://{addr}/token\",service=\"hoist\"");

    // The challenges name the realm, the service and the scope the request needs.
    let refused = send(addr, "GET", "/v2/team/app/manifests/v1", &[], "").await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.code().as_deref(), Some("UNAUTHORIZED"));
    assert_eq!(
        refused.header("www-authenticate"),
        Some(format!("{realm},scope=\"repository:team/app:pull\"").as_str())
    );
    let base = send(addr, "GET", "/v2/", &[], "").await;
    assert_eq!(base.status, 401);
    assert_eq!(base.header("www-authenticate"), Some(realm.as_str()));

    // The realm wants the users' credentials.
    let push_scope = "repository:team/app:pull,push";
    let target = format!("/token?service=hoist&scope={push_scope}");
    let anonymous = send(addr, "GET", &target, &[], "").await;
    assert_eq!(
        anonymous.status, 401,
        "token without credentials: {anonymous:?}"
    );
    let wrong = basic(USER, "nope");
    let wrong = send(addr, "GET", &target, &[("authorization", &wrong)], "").await;
    assert_eq!(wrong.status, 401, "token with a wrong password: {wrong:?}");
    let credentials = basic(USER, PASSWORD);
    let push_token = format!(
        "Bearer {}",
        token(addr, push_scope, Some(&credentials)).await
    );
    let (manifest, _) =
        push_small_image(addr, &[("authorization", &push_token)], "team/app", "v1").await;
    push_small_image(addr, &[("authorization", &push_token)], "team/app", "v2").await;

    // A pull token reads that repository...
    let pull_token = format!(
        "Bearer {}",
        token(addr, "repository:team/app:pull", Some(&credentials)).await
    );
    let auth = ("authorization", pull_token.as_str());
    let accept = ("accept", media_type::OCI_MANIFEST);
    let pulled = send(
        addr,
        "GET",
        "/v2/team/app/manifests/v1",
        &[auth, accept],
        "",
    )
    .await;
    assert_eq!(pulled.status, 200, "{pulled:?}");
    assert_eq!(pulled.body, manifest);
    let tags = send(addr, "GET", "/v2/team/app/tags/list", &[auth], "").await;
    assert_eq!(tags.status, 200);
    assert_eq!(tags.json()["tags"], serde_json::json!(["v1", "v2"]));
    assert_eq!(send(addr, "GET", "/v2/", &[auth], "").await.status, 200);

    // ...and nothing else: another repository, a push, a delete, the catalog.
    let insufficient = |reply: &crate::server_interop::Reply, scope: &str| {
        assert_eq!(reply.status, 401, "{reply:?}");
        assert_eq!(
            reply.header("www-authenticate"),
            Some(format!("{realm},scope=\"{scope}\",error=\"insufficient_scope\"").as_str()),
        );
    };
    let other = send(addr, "GET", "/v2/team/other/manifests/v1", &[auth], "").await;
    insufficient(&other, "repository:team/other:pull");
    let push = send(addr, "POST", "/v2/team/app/blobs/uploads/", &[auth], "").await;
    insufficient(&push, "repository:team/app:push");
    let put = send(
        addr,
        "PUT",
        "/v2/team/app/manifests/v3",
        &[auth, ("content-type", media_type::OCI_MANIFEST)],
        manifest.clone(),
    )
    .await;
    insufficient(&put, "repository:team/app:push");
    let delete = send(addr, "DELETE", "/v2/team/app/manifests/v1", &[auth], "").await;
    insufficient(&delete, "repository:team/app:delete");
    let catalog = send(addr, "GET", "/v2/_catalog", &[auth], "").await;
    insufficient(&catalog, "registry:catalog:*");
    let catalog_token = format!(
        "Bearer {}",
        token(addr, "registry:catalog:*", Some(&credentials)).await
    );
    let catalog = send(
        addr,
        "GET",
        "/v2/_catalog",
        &[("authorization", &catalog_token)],
        "",
    )
    .await;
    assert_eq!(catalog.status, 200);
    assert_eq!(
        catalog.json()["repositories"],
        serde_json::json!(["team/app"])
    );

    // A token the server never issued is no token, and basic credentials are not a token.
    let forged = send(
        addr,
        "GET",
        "/v2/team/app/manifests/v1",
        &[("authorization", &format!("Bearer {}", "0".repeat(64)))],
        "",
    )
    .await;
    assert_eq!(forged.status, 401);
    assert_eq!(
        forged.header("www-authenticate"),
        Some(format!("{realm},scope=\"repository:team/app:pull\"").as_str())
    );
    let basic_only = send(
        addr,
        "GET",
        "/v2/team/app/manifests/v1",
        &[("authorization", &credentials)],
        "",
    )
    .await;
    assert_eq!(basic_only.status, 401);
    listening.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_token_is_refused() {
    // Without users the realm gives anyone a token (the flow without accounts). The server
    // reads the time from a clock the test moves, instead of the test sleeping.
    let now = Arc::new(std::sync::Mutex::new(std::time::Instant::now()));
    let clock = Arc::clone(&now);
    let listening = serve(RegistryServer::new(memory()).with_auth(
        Auth::token(None, Duration::from_secs(1)).with_clock(move || *clock.lock().unwrap()),
    ))
    .await;
    let addr = listening.local_addr();
    let bearer = format!(
        "Bearer {}",
        token(addr, "repository:team/app:pull", None).await
    );
    let auth = [("authorization", bearer.as_str())];
    assert_eq!(send(addr, "GET", "/v2/", &auth, "").await.status, 200);
    // The token lives 1 s; 2 s later it is gone.
    *now.lock().unwrap() += Duration::from_secs(2);
    let expired = send(addr, "GET", "/v2/team/app/tags/list", &auth, "").await;
    assert_eq!(expired.status, 401, "an expired token: {expired:?}");
    assert!(
        expired
            .header("www-authenticate")
            .is_some_and(|c| c.starts_with("Bearer realm=")),
        "{expired:?}"
    );
    listening.shutdown().await;
}

/// Lifetimes past what the clock's type can add (`Duration::MAX`) are kept at
/// [`MAX_TOKEN_LIFETIME`]: tokens and refresh tokens are issued and work, and no request panics.
#[tokio::test(flavor = "multi_thread")]
async fn token_lifetimes_past_the_clocks_range_are_kept_at_the_maximum() {
    let listening =
        serve(RegistryServer::new(memory()).with_auth(
            Auth::token(Some(users()), Duration::MAX).with_refresh_lifetime(Duration::MAX),
        ))
        .await;
    let addr = listening.local_addr();
    let credentials = basic(USER, PASSWORD);
    let reply = send(
        addr,
        "GET",
        "/token?service=hoist&scope=repository:team/app:pull",
        &[("authorization", credentials.as_str())],
        "",
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.json()["expires_in"].as_u64(),
        Some(MAX_TOKEN_LIFETIME.as_secs())
    );
    let bearer = format!("Bearer {}", reply.json()["token"].as_str().unwrap());
    let auth = [("authorization", bearer.as_str())];
    assert_eq!(send(addr, "GET", "/v2/", &auth, "").await.status, 200);
    // A password grant issues a refresh token, which then gets a token of its own.
    let form = format!(
        "grant_type=password&service=hoist&client_id=test&username={USER}&password={PASSWORD}\
         &scope=repository:team/app:pull"
    );
    let form_type = [("content-type", "application/x-www-form-urlencoded")];
    let granted = send(addr, "POST", "/token", &form_type, form).await;
    assert_eq!(granted.status, 200, "{granted:?}");
    let refresh = granted.json()["refresh_token"].as_str().unwrap().to_owned();
    let renewed = send(
        addr,
        "POST",
        "/token",
        &form_type,
        format!("grant_type=refresh_token&service=hoist&client_id=test&refresh_token={refresh}"),
    )
    .await;
    assert_eq!(renewed.status, 200, "{renewed:?}");
    listening.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn skopeo_pushes_and_pulls_through_the_token_flow() {
    let Some(skopeo_bin) = peer("skopeo") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let htpasswd = htpasswd_file(tmp.path());
    let (source, out) = (tmp.path().join("source"), tmp.path().join("out"));
    let ours = source_layout(&source).await;
    let serve = ServeProcess::start(&[
        "--memory",
        "--token-auth",
        "--htpasswd",
        htpasswd.to_str().unwrap(),
    ]);
    let image = format!("docker://{}/token/app:v1", serve.addr());
    let creds = format!("{USER}:{PASSWORD}");

    skopeo(
        &skopeo_bin,
        &[
            "copy",
            "-q",
            "--dest-creds",
            &creds,
            "--dest-tls-verify=false",
            &oci_ref(&source, "v1"),
            &image,
        ],
    );
    skopeo(
        &skopeo_bin,
        &[
            "copy",
            "-q",
            "--src-creds",
            &creds,
            "--src-tls-verify=false",
            &image,
            &oci_ref(&out, "v1"),
        ],
    );
    assert_eq!(layout_tag_digest(&out, "v1"), ours);
    let wrong = format!("{USER}:nope");
    skopeo_fails(
        &skopeo_bin,
        &["inspect", "--creds", &wrong, "--tls-verify=false", &image],
    );
}

// ---- TLS ----

#[tokio::test(flavor = "multi_thread")]
async fn tls_with_a_certificate_of_our_own_ca_over_http1_and_http2() {
    let (Some(openssl), Some(curl), Some(skopeo_bin)) =
        (peer("openssl"), peer("curl"), peer("skopeo"))
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (ca, certificate, key) = certificates(&openssl, tmp.path());
    let serve = ServeProcess::start(&[
        "--memory",
        "--tls-cert",
        certificate.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let url = format!("https://{}/v2/", serve.addr());
    let ca_arg = ca.to_str().unwrap();

    for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let out = run(
            &curl,
            [
                "-sS",
                "--cacert",
                ca_arg,
                flag,
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{http_version}",
                &url,
            ],
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("200 {version}"),
            "curl {flag} {url}"
        );
    }
    // Without our CA the certificate is not trusted: it is verified, not merely present.
    let untrusted = std::process::Command::new(&curl)
        .args(["-sS", "-o", "/dev/null", &url])
        .output()
        .unwrap();
    assert!(
        !untrusted.status.success(),
        "curl trusted a certificate of an unknown CA"
    );

    // skopeo over TLS, verifying with the CA in a certificate directory.
    let certs = tmp.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    std::fs::copy(&ca, certs.join("ca.crt")).unwrap();
    let certs = certs.to_str().unwrap();
    let source = tmp.path().join("source");
    let ours = source_layout(&source).await;
    let image = format!("docker://{}/tls/app:v1", serve.addr());
    skopeo(
        &skopeo_bin,
        &[
            "copy",
            "-q",
            "--dest-cert-dir",
            certs,
            "--dest-tls-verify=true",
            &oci_ref(&source, "v1"),
            &image,
        ],
    );
    for verify in [
        ["--cert-dir", certs, "--tls-verify=true"].as_slice(),
        ["--tls-verify=false"].as_slice(),
    ] {
        let args: Vec<&str> = ["inspect"]
            .into_iter()
            .chain(verify.iter().copied())
            .chain([image.as_str()])
            .collect();
        let out = skopeo(&skopeo_bin, &args);
        let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(info["Digest"], ours.as_str(), "skopeo {args:?}");
    }
    let refused = skopeo_fails(&skopeo_bin, &["inspect", "--tls-verify=true", &image]);
    assert!(
        refused.contains("certificate"),
        "skopeo without the CA: {refused}"
    );
}

// ---- read-only and no-delete ----

/// A 405 must say what is allowed (RFC 9110 §15.5.6), and that is not what was refused.
fn assert_allow_lacks(refused: &crate::server_interop::Reply, method: &str) {
    let allow = refused
        .header("allow")
        .unwrap_or_else(|| panic!("405 without Allow: {refused:?}"));
    assert!(
        !allow.split(',').any(|m| m.trim() == method),
        "405 to {method}, yet Allow: {allow}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn read_only_refuses_every_write_and_serves_reads() {
    let root = tempfile::tempdir().unwrap();
    let repo = Repository::parse("team/app").unwrap();
    let (manifest, blob) = {
        let store = LayoutStore::open_per_repository(root.path()).await.unwrap();
        let config = store
            .push_blob_bytes(
                &repo,
                MediaType::from_static(media_type::OCI_CONFIG),
                Bytes::from_static(br#"{"architecture":"amd64","os":"linux"}"#),
            )
            .await
            .unwrap();
        let layer = store
            .push_blob_bytes(
                &repo,
                MediaType::from_static(media_type::OCI_LAYER_GZIP),
                Bytes::from_static(b"a layer"),
            )
            .await
            .unwrap();
        let bytes = Bytes::from(ImageManifest::new(config, vec![layer.clone()]).to_json());
        store
            .push_manifest(
                &repo,
                bytes.clone(),
                &MediaType::from_static(media_type::OCI_MANIFEST),
                &PushManifestParams::new().with_tag(Tag::parse("v1").unwrap()),
            )
            .await
            .unwrap();
        (bytes, layer.digest)
    };
    let digest = Digest::sha256(&manifest);
    let serve = ServeProcess::start(&["--root", root.path().to_str().unwrap(), "--read-only"]);
    let addr = serve.addr();
    let accept = ("accept", media_type::OCI_MANIFEST);

    let reads = || async {
        let pulled = send(addr, "GET", "/v2/team/app/manifests/v1", &[accept], "").await;
        assert_eq!(pulled.status, 200);
        assert_eq!(pulled.body, manifest);
        let head = send(addr, "HEAD", &format!("/v2/team/app/blobs/{blob}"), &[], "").await;
        assert_eq!(head.status, 200);
        let tags = send(addr, "GET", "/v2/team/app/tags/list", &[], "").await;
        assert_eq!(tags.json()["tags"], serde_json::json!(["v1"]));
        let catalog = send(addr, "GET", "/v2/_catalog", &[], "").await;
        assert_eq!(
            catalog.json()["repositories"],
            serde_json::json!(["team/app"])
        );
    };
    reads().await;

    let manifest_type = ("content-type", media_type::OCI_MANIFEST);
    type Write<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, Bytes);
    let writes: [Write<'_>; 8] = [
        (
            "POST",
            "/v2/team/app/blobs/uploads/".into(),
            vec![],
            Bytes::new(),
        ),
        (
            "POST",
            format!(
                "/v2/team/app/blobs/uploads/?digest={}",
                Digest::sha256(b"x")
            ),
            vec![OCTET],
            Bytes::from_static(b"x"),
        ),
        (
            "PATCH",
            format!("/v2/team/app/blobs/uploads/{}", "0".repeat(32)),
            vec![OCTET],
            Bytes::from_static(b"x"),
        ),
        (
            "PUT",
            "/v2/team/app/manifests/v2".into(),
            vec![manifest_type],
            manifest.clone(),
        ),
        (
            "POST",
            format!("/v2/team/other/blobs/uploads/?mount={blob}&from=team/app"),
            vec![],
            Bytes::new(),
        ),
        (
            "DELETE",
            "/v2/team/app/manifests/v1".into(),
            vec![],
            Bytes::new(),
        ),
        (
            "DELETE",
            format!("/v2/team/app/manifests/{digest}"),
            vec![],
            Bytes::new(),
        ),
        (
            "DELETE",
            format!("/v2/team/app/blobs/{blob}"),
            vec![],
            Bytes::new(),
        ),
    ];
    for (method, target, headers, body) in writes {
        let refused = send(addr, method, &target, &headers, body).await;
        assert_eq!(
            refused.status, 405,
            "{method} {target} on --read-only: {refused:?}"
        );
        assert!(refused.code().is_some(), "{method} {target}: no error body");
        assert_allow_lacks(&refused, method);
    }
    reads().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn no_delete_refuses_deletes_and_nothing_else() {
    let serve = ServeProcess::start(&["--memory", "--no-delete"]);
    let addr = serve.addr();
    let (manifest, digest) = push_small_image(addr, &[], "team/app", "v1").await;
    let blob = push_blob(addr, &[], "team/app", b"one more blob").await;
    for target in [
        "/v2/team/app/manifests/v1".to_owned(),
        format!("/v2/team/app/manifests/{digest}"),
        format!("/v2/team/app/blobs/{blob}"),
    ] {
        let refused = send(addr, "DELETE", &target, &[], "").await;
        assert_eq!(
            refused.status, 405,
            "DELETE {target} on --no-delete: {refused:?}"
        );
        assert!(refused.code().is_some(), "DELETE {target}: no error body");
        assert_allow_lacks(&refused, "DELETE");
    }
    let accept = ("accept", media_type::OCI_MANIFEST);
    let pulled = send(addr, "GET", "/v2/team/app/manifests/v1", &[accept], "").await;
    assert_eq!((pulled.status, &pulled.body), (200, &manifest));
    let head = send(addr, "HEAD", &format!("/v2/team/app/blobs/{blob}"), &[], "").await;
    assert_eq!(head.status, 200);
    // Cancelling an upload deletes no content: still allowed.
    let started = send(addr, "POST", "/v2/team/app/blobs/uploads/", &[], "").await;
    let cancelled = send(addr, "DELETE", &started.location().unwrap(), &[], "").await;
    assert_eq!(
        cancelled.status, 204,
        "cancel an upload on --no-delete: {cancelled:?}"
    );
}

// ---- limits ----

#[tokio::test(flavor = "multi_thread")]
async fn a_blob_larger_than_the_limit_gets_413_and_nothing_is_stored() {
    let listening = serve(
        RegistryServer::new(memory())
            .with_options(ServerOptions::default().with_max_blob_size(Some(1000))),
    )
    .await;
    let addr = listening.local_addr();
    let big = vec![7u8; 2000];
    let digest = Digest::sha256(&big);
    let blob = format!("/v2/team/app/blobs/{digest}");
    let uploads = "/v2/team/app/blobs/uploads/";
    let mut failures = Vec::new();
    let mut expect_413 = |what: &str, reply: &crate::server_interop::Reply| {
        if reply.status != 413 {
            failures.push(format!("{what}: expected 413, got {reply:?}"));
        }
    };

    // Single POST with a Content-Length over the limit.
    let single = send(
        addr,
        "POST",
        &with_query(uploads, &format!("digest={digest}")),
        &[OCTET],
        big.clone(),
    )
    .await;
    expect_413("POST ?digest= with 2000 bytes (Content-Length)", &single);

    // Single POST streamed (chunked transfer encoding, no Content-Length).
    let frames = futures::stream::iter(
        big.chunks(500)
            .map(|c| Ok::<_, Infallible>(Frame::data(Bytes::copy_from_slice(c))))
            .collect::<Vec<_>>(),
    );
    let streamed = exchange(
        addr,
        request(
            addr,
            "POST",
            &with_query(uploads, &format!("digest={digest}")),
            &[OCTET],
        )
        .body(StreamBody::new(frames))
        .unwrap(),
    )
    .await;
    expect_413(
        "POST ?digest= with 2000 bytes (chunked encoding)",
        &streamed,
    );

    // POST then a closing PUT carrying the whole blob.
    let started = send(addr, "POST", uploads, &[], "").await;
    assert_eq!(started.status, 202);
    let put = send(
        addr,
        "PUT",
        &with_query(&started.location().unwrap(), &format!("digest={digest}")),
        &[OCTET],
        big.clone(),
    )
    .await;
    expect_413("POST, then PUT ?digest= with 2000 bytes", &put);

    // A PATCH over the limit.
    let started = send(addr, "POST", uploads, &[], "").await;
    let patch = send(
        addr,
        "PATCH",
        &started.location().unwrap(),
        &[OCTET],
        big.clone(),
    )
    .await;
    expect_413("PATCH of 2000 bytes", &patch);

    let head = send(addr, "HEAD", &blob, &[], "").await;
    assert_eq!(head.status, 404, "a refused blob was stored: {head:?}");

    // At the limit is fine.
    let fits = vec![8u8; 1000];
    let fits_digest = Digest::sha256(&fits);
    let stored = send(
        addr,
        "POST",
        &with_query(uploads, &format!("digest={fits_digest}")),
        &[OCTET],
        fits,
    )
    .await;
    assert_eq!(
        stored.status, 201,
        "a 1000-byte blob under a 1000-byte limit: {stored:?}"
    );
    listening.shutdown().await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn uploads_beyond_the_concurrency_limit_get_429_with_retry_after() {
    let listening = serve(
        RegistryServer::new(memory())
            .with_options(ServerOptions::default().with_max_concurrent_uploads(1)),
    )
    .await;
    let addr = listening.local_addr();
    let uploads = "/v2/team/app/blobs/uploads/";
    let first = send(addr, "POST", uploads, &[], "")
        .await
        .location()
        .unwrap();
    let second = send(addr, "POST", uploads, &[], "")
        .await
        .location()
        .unwrap();

    // One slow streaming PATCH: its body arrives in pieces, sent by the test. Once the server
    // holds it, a PATCH of the other upload gets 429; until then such a probe passes (202).
    // Should a probe take the one slot first, the slow PATCH is the one refused: start again.
    let mut attempts = 0;
    let (mut pieces, slow, refused) = loop {
        attempts += 1;
        assert!(attempts <= 5, "the slow PATCH never got the upload slot");
        let (mut pieces, body) = futures::channel::mpsc::channel::<Bytes>(1);
        let slow = request(addr, "PATCH", &first, &[OCTET])
            .body(StreamBody::new(
                body.map(|b| Ok::<_, Infallible>(Frame::data(b))),
            ))
            .unwrap();
        let slow = tokio::spawn(async move { exchange(addr, slow).await });
        let _ = pieces.send(Bytes::from(vec![1u8; 100])).await;
        let mut refused = None;
        for _ in 0..250 {
            if slow.is_finished() {
                break;
            }
            let reply = send(addr, "PATCH", &second, &[OCTET], vec![2u8; 10]).await;
            if reply.status == 429 {
                refused = Some(reply);
                break;
            }
            assert_eq!(reply.status, 202, "{reply:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Some(refused) = refused {
            break (pieces, slow, refused);
        }
        assert!(
            slow.is_finished(),
            "no 429 in 5 s while an upload streams under a limit of 1"
        );
        let lost = slow.await.unwrap();
        assert_eq!(lost.status, 429, "the slow PATCH ended early: {lost:?}");
    };
    assert_eq!(refused.code().as_deref(), Some("TOOMANYREQUESTS"));
    assert!(
        refused
            .header("retry-after")
            .is_some_and(|s| s.parse::<u64>().is_ok()),
        "429 without a Retry-After in seconds: {refused:?}"
    );
    let single = send(
        addr,
        "POST",
        &with_query(uploads, &format!("digest={}", Digest::sha256(b"x"))),
        &[OCTET],
        "x",
    )
    .await;
    assert_eq!(
        single.status, 429,
        "single POST while an upload streams: {single:?}"
    );
    assert!(single.header("retry-after").is_some());

    // The slow one completes, and frees its slot.
    pieces.send(Bytes::from(vec![1u8; 100])).await.unwrap();
    drop(pieces);
    let slow = slow.await.unwrap();
    assert_eq!(slow.status, 202, "the slow PATCH: {slow:?}");
    assert_eq!(slow.header("range"), Some("0-199"));
    let after = send(addr, "PATCH", &second, &[OCTET], vec![2u8; 10]).await;
    assert_eq!(
        after.status, 202,
        "a PATCH after the slow one ended: {after:?}"
    );
    listening.shutdown().await;
}

// ---- graceful shutdown ----

/// 32 MiB: more than the loopback socket buffers hold, so a download of it that the client
/// does not read stays in flight.
const BIG: usize = 32 << 20;

fn big_blob() -> Bytes {
    Bytes::from(
        (0..BIG)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3])
            .collect::<Vec<u8>>(),
    )
}

/// Reads the rest of a download and checks it is the whole blob.
async fn finish_download(response: http::Response<hyper::body::Incoming>, digest: &Digest) {
    let body = response
        .into_body()
        .collect()
        .await
        .expect("the download in flight was cut off by the shutdown")
        .to_bytes();
    assert_eq!(body.len(), BIG, "the download in flight ended early");
    assert_eq!(&Digest::sha256(&body), digest);
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_lets_a_download_in_flight_finish_and_refuses_new_connections() {
    let store = Arc::new(MemoryStore::new());
    let repo = Repository::parse("team/app").unwrap();
    let blob = big_blob();
    let descriptor = store
        .push_blob_bytes(
            &repo,
            MediaType::from_static(media_type::OCTET_STREAM),
            blob,
        )
        .await
        .unwrap();
    let listening = serve(RegistryServer::new(store)).await;
    let addr = listening.local_addr();
    let target = format!("/v2/team/app/blobs/{}", descriptor.digest);
    let download = start(
        addr,
        request(addr, "GET", &target, &[])
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap(),
    )
    .await;
    assert_eq!(download.status(), 200);

    let shutdown = tokio::spawn(listening.shutdown());
    wait_refused(addr).await;
    assert!(
        !shutdown.is_finished(),
        "shutdown returned while a download was in flight"
    );
    finish_download(download, &descriptor.digest).await;
    tokio::time::timeout(Duration::from_secs(10), shutdown)
        .await
        .expect("shutdown did not return after the last request ended")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_a_download_in_flight_finish_and_exits_0() {
    let Some(kill) = peer("kill") else { return };
    let mut serve = ServeProcess::start(&["--memory"]);
    let addr = serve.addr();
    let blob = big_blob();
    let digest = Digest::sha256(&blob);
    let pushed = send(
        addr,
        "POST",
        &format!("/v2/team/app/blobs/uploads/?digest={digest}"),
        &[OCTET],
        blob,
    )
    .await;
    assert_eq!(pushed.status, 201, "{pushed:?}");
    let download = start(
        addr,
        request(addr, "GET", &format!("/v2/team/app/blobs/{digest}"), &[])
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap(),
    )
    .await;
    assert_eq!(download.status(), 200);

    run(&kill, ["-TERM", &serve.id().to_string()]);
    wait_refused(addr).await;
    finish_download(download, &digest).await;
    let status = serve.wait_exit(Duration::from_secs(10));
    assert!(
        status.success(),
        "hoist serve exited with {status} after SIGTERM:\n{}",
        serve.stderr()
    );
}

// ---- the access log ----

/// `line` without ANSI escape sequences (`ESC [ … letter`).
fn strip_escapes(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn hoist_serve_logs_one_line_per_request_to_stderr() {
    let serve = ServeProcess::start(&["--memory"]);
    let addr = serve.addr();
    let unknown = Digest::sha256(b"unknown");
    let requests = [
        ("GET", "/v2/logged/tags/list".to_owned(), 404),
        ("HEAD", format!("/v2/logged/blobs/{unknown}"), 404),
        ("POST", "/v2/logged/blobs/uploads/".to_owned(), 202),
        ("PUT", "/v2/logged/manifests/v1".to_owned(), 400),
    ];
    for (method, path, status) in &requests {
        let body = if *method == "PUT" {
            "not a manifest"
        } else {
            ""
        };
        let reply = send(addr, method, path, &[OCTET], body).await;
        assert_eq!(reply.status, *status, "{method} {path}: {reply:?}");
    }
    let log = serve.stderr();
    for (method, path, status) in &requests {
        let status = status.to_string();
        // Words of the line after its timestamp, `key=value` read as `value`.
        let matching: Vec<Vec<String>> = log
            .lines()
            .map(|l| {
                strip_escapes(l)
                    .split_whitespace()
                    .skip(1)
                    .map(|w| {
                        w.rsplit('=')
                            .next()
                            .unwrap_or(w)
                            .trim_matches('"')
                            .to_owned()
                    })
                    .collect::<Vec<_>>()
            })
            .filter(|words| words.contains(path) && words.iter().any(|w| w == method))
            .collect();
        assert_eq!(
            matching.len(),
            1,
            "{method} {path}: expected one access log line, stderr is:\n{log}"
        );
        assert!(
            matching[0].contains(&status),
            "{method} {path}: the log line lacks the status {status}: {:?}",
            matching[0]
        );
    }
    // Written to a file (or a pipe, a journal), the log should be plain text.
    let escaped: Vec<&str> = log.lines().filter(|l| l.contains('\u{1b}')).collect();
    assert!(
        escaped.is_empty(),
        "stderr is a file, yet {} log lines carry terminal escape codes, e.g. {:?}",
        escaped.len(),
        escaped.first()
    );
}
