//! Authorization of `oci-server` by an access policy, over the wire: for users with different
//! policies and for anonymous requests, every endpoint answers as the policy says, through
//! basic auth (401 for anonymous, 403 for a user refused) and through token auth (tokens
//! narrowed to what the policy allows, 401 `insufficient_scope` beyond); a cross-repository
//! mount without pull on its source is an ordinary upload; the catalog lists only what the user
//! may pull; `hoist serve --token-auth` without users is refused at start-up.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::StreamBody;
use hyper::body::Frame;
use oci_server::{AccessPolicy, Auth, Htpasswd, Listening, PolicyFormat, RegistryServer};
use oci_store::{MemoryStore, OciInterface};
use oci_types::{Digest, media_type};

use crate::server_interop::{Reply, exchange, push_blob, push_small_image, request, send};
use crate::support::hoist_binary;

const PASSWORD: &str = "wonderland";

/// alice pushes to team/*, bob pulls team/app only, dave (group admins) does everything to
/// team/* and public/*, anonymous requests pull public/*; secret/* is nobody's.
const POLICY: &str = r#"
[groups]
admins = ["dave"]

[repositories."team/*"]
policies = [
  { users = ["alice"], actions = ["pull", "push"] },
  { groups = ["admins"], actions = ["pull", "push", "delete"] },
]

[repositories."team/app"]
policies = [
  { users = ["alice"], actions = ["pull", "push"] },
  { users = ["bob"], actions = ["pull"] },
  { groups = ["admins"], actions = ["pull", "push", "delete"] },
]

[repositories."public/*"]
anonymous = ["pull"]
policies = [{ groups = ["admins"], actions = ["pull", "push", "delete"] }]
"#;

const REPOSITORIES: [&str; 4] = ["team/app", "team/other", "public/base", "secret/x"];

fn users() -> Htpasswd {
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    Htpasswd::parse(&format!("alice:{hash}\nbob:{hash}\ndave:{hash}\n")).unwrap()
}

fn policy() -> AccessPolicy {
    AccessPolicy::parse(POLICY, PolicyFormat::Toml).unwrap()
}

/// `Basic base64(user:password)` with the password every user of the policy has.
fn basic(user: &str) -> String {
    crate::server_auth::basic(user, PASSWORD)
}

/// What the store holds in each repository before the checks: `v1` (one config, one layer).
struct Seeded {
    manifest: Bytes,
    manifest_digest: Digest,
    layer: Digest,
}

async fn serve(server: RegistryServer) -> Listening {
    server.bind("127.0.0.1:0".parse().unwrap()).await.unwrap()
}

/// A store with `v1` in every repository of [`REPOSITORIES`], pushed through a server without
/// auth over the same store, which is returned too: the tests set things up through it.
async fn seeded() -> (Arc<dyn OciInterface>, Vec<Seeded>, Listening) {
    let store: Arc<dyn OciInterface> = Arc::new(MemoryStore::new());
    let open = serve(RegistryServer::new(Arc::clone(&store))).await;
    let mut seeded = Vec::new();
    for repo in REPOSITORIES {
        let (manifest, manifest_digest) =
            push_small_image(open.local_addr(), &[], repo, "v1").await;
        let layer = Digest::sha256(format!("a layer of {repo}:v1").as_bytes());
        seeded.push(Seeded {
            manifest,
            manifest_digest,
            layer,
        });
    }
    (store, seeded, open)
}

/// Who makes the requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Alice,
    Bob,
    Dave,
    Anonymous,
}

impl Who {
    const ALL: [Self; 4] = [Self::Alice, Self::Bob, Self::Dave, Self::Anonymous];

    fn name(self) -> Option<&'static str> {
        match self {
            Self::Alice => Some("alice"),
            Self::Bob => Some("bob"),
            Self::Dave => Some("dave"),
            Self::Anonymous => None,
        }
    }

    /// What the policy lets them do to `repo`, as (pull, push, delete).
    fn may(self, repo: &str) -> (bool, bool, bool) {
        let team = repo.starts_with("team/");
        let public = repo.starts_with("public/");
        match self {
            Self::Alice => (team || public, team, false),
            Self::Bob => (repo == "team/app" || public, false, false),
            Self::Dave => (team || public, team || public, team || public),
            Self::Anonymous => (public, false, false),
        }
    }
}

/// How requests authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Basic,
    Token,
}

/// The `Authorization` header of `who` for requests to `repo` under `scheme` (a token asked
/// for pull, push and delete on `repo`, narrowed by the server), if any.
async fn credentials(addr: SocketAddr, scheme: Scheme, who: Who, repo: &str) -> Option<String> {
    match scheme {
        Scheme::Basic => who.name().map(basic),
        Scheme::Token => {
            let token = token(
                addr,
                who,
                &format!("repository:{repo}:pull,push,delete"),
                &expected_scope(who, repo),
            )
            .await;
            Some(format!("Bearer {token}"))
        }
    }
}

/// The scope a token asked for everything on `repo` is narrowed to.
fn expected_scope(who: Who, repo: &str) -> String {
    let (pull, push, delete) = who.may(repo);
    let actions: Vec<&str> = [(pull, "pull"), (push, "push"), (delete, "delete")]
        .into_iter()
        .filter(|(allowed, _)| *allowed)
        .map(|(_, name)| name)
        .collect();
    if actions.is_empty() {
        String::new()
    } else {
        format!("repository:{repo}:{}", actions.join(","))
    }
}

/// A token for `scope`, checking that the server granted `granted` of it.
async fn token(addr: SocketAddr, who: Who, scope: &str, granted: &str) -> String {
    let header = who.name().map(basic);
    let headers: Vec<(&str, &str)> = header
        .iter()
        .map(|h| ("authorization", h.as_str()))
        .collect();
    let target = format!("/token?service=hoist&scope={}", scope.replace(' ', "%20"));
    let reply = send(addr, "GET", &target, &headers, "").await;
    assert_eq!(reply.status, 200, "token of {who:?} for {scope}: {reply:?}");
    let body = reply.json();
    assert_eq!(
        body["scope"], granted,
        "the scope granted to {who:?} asking {scope}"
    );
    body["token"].as_str().unwrap().to_owned()
}

/// Checks that `reply` is `success` when `allowed`, and otherwise the refusal `scheme` gives
/// `who`.
fn check(reply: &Reply, allowed: bool, success: u16, scheme: Scheme, who: Who, what: &str) {
    let context = format!("{what} by {who:?} under {scheme:?}: {reply:?}");
    if allowed {
        assert_eq!(reply.status, success, "{context}");
        return;
    }
    match (scheme, who) {
        (Scheme::Basic, Who::Anonymous) => {
            assert_eq!(reply.status, 401, "{context}");
            assert_eq!(
                reply.header("www-authenticate"),
                Some("Basic realm=\"hoist\""),
                "{context}"
            );
            // A HEAD answer has no body to carry the code.
            if !reply.body.is_empty() {
                assert_eq!(reply.code().as_deref(), Some("UNAUTHORIZED"), "{context}");
            }
        }
        (Scheme::Basic, _) => {
            assert_eq!(reply.status, 403, "{context}");
            if !reply.body.is_empty() {
                assert_eq!(reply.code().as_deref(), Some("DENIED"), "{context}");
            }
        }
        (Scheme::Token, _) => {
            assert_eq!(reply.status, 401, "{context}");
            let challenge = reply.header("www-authenticate").unwrap_or_default();
            assert!(
                challenge.starts_with("Bearer realm=") && challenge.contains("insufficient_scope"),
                "{context}"
            );
        }
    }
}

/// A request with `auth` and `extra` headers.
async fn call(
    addr: SocketAddr,
    auth: Option<&str>,
    method: &str,
    target: &str,
    extra: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    let mut headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
    headers.extend_from_slice(extra);
    send(addr, method, target, &headers, body).await
}

fn server(store: Arc<dyn OciInterface>, scheme: Scheme) -> RegistryServer {
    let auth = match scheme {
        Scheme::Basic => Auth::basic(Some(users())),
        Scheme::Token => Auth::token(Some(users()), Duration::from_secs(300)),
    };
    RegistryServer::new(store).with_auth(auth.with_policy(policy()))
}

/// Every endpoint of every repository, for everyone.
async fn matrix(scheme: Scheme) {
    let (store, seeded, open) = seeded().await;
    let listening = serve(server(store, scheme)).await;
    let (addr, admin) = (listening.local_addr(), open.local_addr());
    let accept = [("accept", media_type::OCI_MANIFEST)];
    let octets = [("content-type", media_type::OCTET_STREAM)];
    let manifest_type = [("content-type", media_type::OCI_MANIFEST)];

    for (repo, seed) in REPOSITORIES.iter().zip(&seeded) {
        for who in Who::ALL {
            let (pull, push, delete) = who.may(repo);
            let header = credentials(addr, scheme, who, repo).await;
            let auth = header.as_deref();
            let says = |reply: &Reply, allowed: bool, success: u16, what: &str| {
                check(
                    reply,
                    allowed,
                    success,
                    scheme,
                    who,
                    &format!("{what} of {repo}"),
                );
            };
            let manifest = format!("/v2/{repo}/manifests/v1");
            let blob = format!("/v2/{repo}/blobs/{}", seed.layer);

            // Reads.
            for method in ["HEAD", "GET"] {
                let reply = call(addr, auth, method, &manifest, &accept, "").await;
                says(&reply, pull, 200, &format!("{method} manifest"));
                if pull && method == "GET" {
                    assert_eq!(reply.body, seed.manifest);
                }
                let reply = call(addr, auth, method, &blob, &[], "").await;
                says(&reply, pull, 200, &format!("{method} blob"));
            }
            let reply = call(addr, auth, "GET", &format!("/v2/{repo}/tags/list"), &[], "").await;
            says(&reply, pull, 200, "tags");
            if pull {
                let tags = reply.json()["tags"].clone();
                assert!(tags.as_array().unwrap().contains(&"v1".into()), "{tags}");
            }
            let referrers = format!("/v2/{repo}/referrers/{}", seed.manifest_digest);
            let reply = call(addr, auth, "GET", &referrers, &[], "").await;
            says(&reply, pull, 200, "referrers");

            // An upload: POST, PATCH, closing PUT. Where the subject may not push, the upload
            // is opened without auth, and the subject's PATCH and PUT on it are refused.
            let uploads = format!("/v2/{repo}/blobs/uploads/");
            let content = format!("a blob of {who:?} in {repo}").into_bytes();
            let digest = Digest::sha256(&content);
            let post = call(addr, auth, "POST", &uploads, &[], "").await;
            says(&post, push, 202, "POST upload");
            let location = if push {
                post.location().unwrap()
            } else {
                let opened = call(admin, None, "POST", &uploads, &[], "").await;
                assert_eq!(opened.status, 202, "{opened:?}");
                opened.location().unwrap()
            };
            let (first, rest) = content.split_at(4);
            let chunk = [octets[0], ("content-range", "0-3")];
            let patch = call(addr, auth, "PATCH", &location, &chunk, first.to_vec()).await;
            says(&patch, push, 202, "PATCH upload");
            let (target, last) = if push {
                (patch.location().unwrap(), rest)
            } else {
                (location, &content[..])
            };
            let separator = if target.contains('?') { '&' } else { '?' };
            let close = format!("{target}{separator}digest={digest}");
            let put = call(addr, auth, "PUT", &close, &octets, last.to_vec()).await;
            says(&put, push, 201, "PUT upload");

            // A manifest push, then a delete of its tag (tagged without auth where the subject
            // cannot push).
            let tagged = format!(
                "/v2/{repo}/manifests/by-{}",
                format!("{who:?}").to_lowercase()
            );
            let put = call(
                addr,
                auth,
                "PUT",
                &tagged,
                &manifest_type,
                seed.manifest.clone(),
            )
            .await;
            says(&put, push, 201, "PUT manifest");
            if !push {
                let put = call(
                    admin,
                    None,
                    "PUT",
                    &tagged,
                    &manifest_type,
                    seed.manifest.clone(),
                )
                .await;
                assert_eq!(put.status, 201, "{put:?}");
            }
            let reply = call(addr, auth, "DELETE", &tagged, &[], "").await;
            says(&reply, delete, 202, "DELETE tag");
        }
    }
    listening.shutdown().await;
    open.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_endpoint_answers_as_the_policy_says_under_basic_auth() {
    matrix(Scheme::Basic).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_endpoint_answers_as_the_policy_says_under_token_auth() {
    matrix(Scheme::Token).await;
}

/// Starts a mount of `digest` from `from` into `to`.
async fn mount(addr: SocketAddr, auth: &str, to: &str, from: &str, digest: &Digest) -> Reply {
    let target = format!("/v2/{to}/blobs/uploads/?mount={digest}&from={from}");
    send(addr, "POST", &target, &[("authorization", auth)], "").await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mount_without_pull_on_its_source_is_an_ordinary_upload() {
    for scheme in [Scheme::Basic, Scheme::Token] {
        let (store, seeded, open) = seeded().await;
        open.shutdown().await;
        let listening = serve(server(store, scheme)).await;
        let addr = listening.local_addr();
        let (app_layer, secret_layer) = (&seeded[0].layer, &seeded[3].layer);
        // alice pushes to team/other, pulls team/app, and has nothing on secret/x.
        let alice = match scheme {
            Scheme::Basic => basic("alice"),
            Scheme::Token => {
                let asked = "repository:team/other:pull,push repository:team/app:pull repository:secret/x:pull";
                let granted = "repository:team/other:pull,push repository:team/app:pull";
                format!("Bearer {}", token(addr, Who::Alice, asked, granted).await)
            }
        };

        let refused = mount(addr, &alice, "team/other", "secret/x", secret_layer).await;
        assert_eq!(refused.status, 202, "{scheme:?}: {refused:?}");
        let location = refused.location().unwrap();
        assert!(
            location.starts_with("/v2/team/other/blobs/uploads/"),
            "an upload session: {location}"
        );
        assert!(
            refused.header("docker-content-digest").is_none(),
            "{refused:?}"
        );
        let head = send(
            addr,
            "HEAD",
            &format!("/v2/team/other/blobs/{secret_layer}"),
            &[("authorization", &alice)],
            "",
        )
        .await;
        assert_eq!(head.status, 404, "nothing was mounted: {head:?}");
        // The session is a real upload: the blob can be sent through it.
        let content = b"a layer of secret/x:v1";
        let put = send(
            addr,
            "PUT",
            &format!("{location}?digest={secret_layer}"),
            &[
                ("authorization", &alice),
                ("content-type", media_type::OCTET_STREAM),
            ],
            Bytes::from_static(content),
        )
        .await;
        assert_eq!(put.status, 201, "{scheme:?}: {put:?}");

        let mounted = mount(addr, &alice, "team/other", "team/app", app_layer).await;
        assert_eq!(mounted.status, 201, "{scheme:?}: {mounted:?}");
        assert_eq!(
            mounted.header("docker-content-digest"),
            Some(app_layer.as_str())
        );
        listening.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_catalog_lists_only_what_the_user_may_pull() {
    for scheme in [Scheme::Basic, Scheme::Token] {
        let (store, _, open) = seeded().await;
        open.shutdown().await;
        let listening = serve(server(store, scheme)).await;
        let addr = listening.local_addr();
        for (who, expected) in [
            (Who::Alice, vec!["public/base", "team/app", "team/other"]),
            (Who::Bob, vec!["public/base", "team/app"]),
            (Who::Dave, vec!["public/base", "team/app", "team/other"]),
            (Who::Anonymous, vec!["public/base"]),
        ] {
            let header = match scheme {
                Scheme::Basic => who.name().map(basic),
                Scheme::Token => {
                    let scope = "registry:catalog:*";
                    Some(format!("Bearer {}", token(addr, who, scope, scope).await))
                }
            };
            let auth: Vec<(&str, &str)> = header
                .iter()
                .map(|h| ("authorization", h.as_str()))
                .collect();
            let catalog = send(addr, "GET", "/v2/_catalog", &auth, "").await;
            assert_eq!(catalog.status, 200, "{who:?} {scheme:?}: {catalog:?}");
            assert_eq!(
                catalog.json()["repositories"],
                serde_json::json!(expected),
                "{who:?} {scheme:?}"
            );
            // Pages are cut after filtering: full, and their links lead to the rest.
            let mut listed = Vec::new();
            let mut target = "/v2/_catalog?n=1".to_owned();
            loop {
                let page = send(addr, "GET", &target, &auth, "").await;
                assert_eq!(page.status, 200, "{page:?}");
                let names = page.json()["repositories"].clone();
                assert_eq!(names.as_array().unwrap().len(), 1, "{who:?}: {names}");
                listed.push(names[0].as_str().unwrap().to_owned());
                match page.header("link") {
                    Some(link) => {
                        target = link
                            .trim_start_matches('<')
                            .split_once('>')
                            .unwrap()
                            .0
                            .to_owned();
                    }
                    None => break,
                }
                assert!(listed.len() <= expected.len(), "{who:?}: {listed:?}");
            }
            assert_eq!(listed, expected, "{who:?} {scheme:?} paged");
        }
        listening.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn token_auth_without_accounts_for_anonymous_requests() {
    // Anonymous requests get tokens narrowed to what the policy gives them; with users and
    // nothing for anonymous requests, the token endpoint asks for credentials instead.
    let (store, _, open) = seeded().await;
    open.shutdown().await;
    let listening = serve(
        RegistryServer::new(store)
            .with_auth(Auth::token(Some(users()), Duration::from_secs(300)).with_policy(policy())),
    )
    .await;
    let addr = listening.local_addr();
    let token = token(
        addr,
        Who::Anonymous,
        "repository:public/base:pull,push repository:team/app:pull",
        "repository:public/base:pull",
    )
    .await;
    let bearer = format!("Bearer {token}");
    let auth = [("authorization", bearer.as_str())];
    assert_eq!(send(addr, "GET", "/v2/", &auth, "").await.status, 200);
    let pulled = send(addr, "GET", "/v2/public/base/tags/list", &auth, "").await;
    assert_eq!(pulled.status, 200, "{pulled:?}");
    let refused = send(addr, "GET", "/v2/team/app/tags/list", &auth, "").await;
    assert_eq!(refused.status, 401, "{refused:?}");
    listening.shutdown().await;

    let closed = AccessPolicy::parse(
        "[repositories.\"**\"]\nauthenticated = [\"pull\"]\n",
        PolicyFormat::Toml,
    )
    .unwrap();
    let listening = serve(
        RegistryServer::new(Arc::new(MemoryStore::new()))
            .with_auth(Auth::token(Some(users()), Duration::from_secs(300)).with_policy(closed)),
    )
    .await;
    let reply = send(
        listening.local_addr(),
        "GET",
        "/token?service=hoist&scope=repository:a:pull",
        &[],
        "",
    )
    .await;
    assert_eq!(reply.status, 401, "{reply:?}");
    listening.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_tokens_carry_their_user_and_token_requests_are_bounded() {
    let listening = serve(
        RegistryServer::new(Arc::new(MemoryStore::new()))
            .with_auth(Auth::token(Some(users()), Duration::from_secs(300)).with_policy(policy())),
    )
    .await;
    let addr = listening.local_addr();
    let form = ("content-type", "application/x-www-form-urlencoded");
    let login = send(
        addr,
        "POST",
        "/token",
        &[form],
        format!("grant_type=password&username=bob&password={PASSWORD}&service=hoist&scope=repository:team/app:pull,push"),
    )
    .await;
    assert_eq!(login.status, 200, "{login:?}");
    assert_eq!(login.json()["scope"], "repository:team/app:pull");
    let refresh = login.json()["refresh_token"].as_str().unwrap().to_owned();
    // A refresh token is bob's: it gets what bob may, no more.
    let refreshed = send(
        addr,
        "POST",
        "/token",
        &[form],
        format!("grant_type=refresh_token&refresh_token={refresh}&service=hoist&scope=repository:team/other:pull%20repository:team/app:pull"),
    )
    .await;
    assert_eq!(refreshed.status, 200, "{refreshed:?}");
    assert_eq!(refreshed.json()["scope"], "repository:team/app:pull");
    let wrong = send(
        addr,
        "POST",
        "/token",
        &[form],
        "grant_type=password&username=nobody&password=x&service=hoist",
    )
    .await;
    assert_eq!(wrong.status, 401, "{wrong:?}");

    // A large Content-Length is refused before its body is read...
    let big = vec![b'a'; 65 * 1024];
    let declared = send(addr, "POST", "/token", &[form], big.clone()).await;
    assert_eq!(declared.status, 413, "{declared:?}");
    // ...and a body without one is cut off at the limit.
    let chunks = futures::stream::iter(
        big.chunks(8 * 1024)
            .map(|c| Ok::<_, std::convert::Infallible>(Frame::data(Bytes::copy_from_slice(c))))
            .collect::<Vec<_>>(),
    );
    let streamed = request(addr, "POST", "/token", &[form])
        .body(StreamBody::new(chunks.boxed()))
        .unwrap();
    let streamed = exchange(addr, streamed).await;
    assert_eq!(streamed.status, 413, "{streamed:?}");
    listening.shutdown().await;
}

/// Runs `hoist serve` with `args`, which must exit (within 30 s) rather than serve; returns its
/// exit status and stderr.
fn serve_refused(args: &[&str]) -> (std::process::ExitStatus, String) {
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = std::process::Command::new(hoist_binary())
        .arg("serve")
        .args(args)
        .args(["--addr", "127.0.0.1:0"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, std::fs::read_to_string(log.path()).unwrap());
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "hoist serve {args:?} is serving instead of refusing to start:\n{}",
                std::fs::read_to_string(log.path()).unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hoist_serve_refuses_token_auth_without_users_and_reads_access_files() {
    let (status, stderr) = serve_refused(&["--memory", "--token-auth"]);
    assert!(!status.success());
    for part in ["--htpasswd", "--access", "--anonymous-push"] {
        assert!(stderr.contains(part), "{stderr}");
    }

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("access.toml");
    std::fs::write(&bad, "[repositories.\"team/*\"]\nanonymous = [\"pul\"]\n").unwrap();
    let (status, stderr) = serve_refused(&["--memory", "--access", bad.to_str().unwrap()]);
    assert!(!status.success());
    assert!(
        stderr.contains("access.toml") && stderr.contains("line 2") && stderr.contains("pul"),
        "{stderr}"
    );

    // With a policy that lets anonymous requests pull (and no users), token auth starts, and
    // its tokens are narrowed.
    let good = dir.path().join("access.yaml");
    std::fs::write(
        &good,
        "repositories:\n  \"public/*\":\n    anonymous: [pull]\n",
    )
    .unwrap();
    let serve = crate::support::ServeProcess::start(&[
        "--memory",
        "--token-auth",
        "--access",
        good.to_str().unwrap(),
    ]);
    token(
        serve.addr(),
        Who::Anonymous,
        "repository:public/a:pull,push",
        "repository:public/a:pull",
    )
    .await;
    drop(serve);

    // --anonymous-push says it on purpose: anyone pushes.
    let serve =
        crate::support::ServeProcess::start(&["--memory", "--token-auth", "--anonymous-push"]);
    let granted = "repository:any/thing:pull,push";
    let bearer = format!(
        "Bearer {}",
        token(serve.addr(), Who::Anonymous, granted, granted).await
    );
    push_blob(
        serve.addr(),
        &[("authorization", &bearer)],
        "any/thing",
        b"x",
    )
    .await;
}
