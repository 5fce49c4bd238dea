//! Who may do what: read-only mode, disabled deletes, basic auth against an htpasswd with an
//! access policy, and bearer tokens from the built-in token endpoint.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use http::StatusCode;
use oci_server::{
    AccessPolicy, Auth, Htpasswd, MAX_CONCURRENT_TOKEN_FORMS, PolicyFormat, RegistryServer,
    ServerOptions,
};
use oci_store::{MemoryStore, OciInterface};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Client, MANIFEST, TIMEOUT, digest, serve};

const PASSWORD: &str = "wonderland";

/// alice pushes to team/*, bob only pulls team/app, anonymous requests pull public/*.
const POLICY: &str = r#"
[repositories."team/*"]
policies = [{ users = ["alice"], actions = ["pull", "push", "delete"] }]

[repositories."team/app"]
policies = [
  { users = ["alice"], actions = ["pull", "push", "delete"] },
  { users = ["bob"], actions = ["pull"] },
]

[repositories."public/*"]
anonymous = ["pull"]
policies = [{ users = ["alice"], actions = ["pull", "push"] }]
"#;

fn users() -> Htpasswd {
    // The lowest bcrypt cost: the tests check who is let in, not how slowly.
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    Htpasswd::parse(&format!("alice:{hash}\nbob:{hash}\n")).unwrap()
}

fn policy() -> AccessPolicy {
    AccessPolicy::parse(POLICY, PolicyFormat::Toml).unwrap()
}

fn basic(user: &str, password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

/// Two servers of one store: `open` without auth or limits (to set content up), and `guarded`,
/// built by `guard` from a server of the same store. The `Listening`s come back too, in that
/// order: a server stops when its `Listening` is dropped, so the test keeps them.
async fn two_servers(
    guard: impl FnOnce(RegistryServer) -> RegistryServer,
) -> (Client, Client, Vec<oci_server::Listening>) {
    let store: Arc<dyn OciInterface> = Arc::new(MemoryStore::new());
    let open = serve(RegistryServer::new(Arc::clone(&store))).await;
    let guarded = serve(guard(RegistryServer::new(store))).await;
    let clients = (Client::new(&open), Client::new(&guarded));
    (clients.0, clients.1, vec![open, guarded])
}

#[tokio::test]
async fn a_read_only_server_serves_reads_and_refuses_every_write() {
    let (open, read_only, _servers) =
        two_servers(|server| server.with_options(ServerOptions::default().with_read_only(true)))
            .await;
    let image = open.push_image("r", "v1", b"layer").await;

    let get = read_only.get("/v2/r/manifests/v1").send().await;
    assert_eq!(get.status, StatusCode::OK);
    assert_eq!(get.body, image.manifest);

    let put = read_only
        .put("/v2/r/manifests/v2")
        .header("Content-Type", MANIFEST)
        .body(image.manifest.clone())
        .send()
        .await;
    put.assert_error(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED");
    // The `Allow` header lists what is left: reads only.
    assert_eq!(put.header("Allow"), Some("GET, HEAD"));
    let posted = read_only
        .post(&format!("/v2/r/blobs/uploads/?digest={}", digest(b"x")))
        .body(b"x".to_vec())
        .send()
        .await;
    posted.assert_error(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED");
    let deleted = read_only.delete("/v2/r/manifests/v1").send().await;
    deleted.assert_error(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED");

    // Nothing changed.
    let tags = open.get("/v2/r/tags/list").send().await.json();
    assert_eq!(tags["tags"], serde_json::json!(["v1"]));
    let head = open
        .head(&format!("/v2/r/blobs/{}", digest(b"x")))
        .send()
        .await;
    assert_eq!(head.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn with_deletes_off_pushes_work_and_deletes_are_refused() {
    let (_open, no_deletes, _servers) =
        two_servers(|server| server.with_options(ServerOptions::default().with_deletes(false)))
            .await;
    let image = no_deletes.push_image("r", "v1", b"layer").await;
    for path in [
        "/v2/r/manifests/v1".to_owned(),
        format!("/v2/r/manifests/{}", image.digest),
        format!("/v2/r/blobs/{}", digest(b"layer")),
    ] {
        let deleted = no_deletes.delete(&path).send().await;
        deleted.assert_error(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED");
        assert_eq!(no_deletes.get(&path).send().await.status, StatusCode::OK);
    }
    // Cancelling an upload is not a delete of content: still allowed.
    let started = no_deletes.post("/v2/r/blobs/uploads/").send().await;
    let location = started.header("Location").unwrap().to_owned();
    assert_eq!(
        no_deletes.delete(&location).send().await.status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn basic_auth_lets_each_user_do_what_the_policy_allows() {
    let (open, guarded, _servers) =
        two_servers(|server| server.with_auth(Auth::basic(Some(users())).with_policy(policy())))
            .await;
    let image = open.push_image("team/app", "v1", b"layer").await;
    open.push_image("public/base", "v1", b"layer").await;
    let (alice, bob) = (
        guarded.authorized(&basic("alice", PASSWORD)),
        guarded.authorized(&basic("bob", PASSWORD)),
    );

    // Anonymous: asked for credentials, except where the policy lets anyone pull (and so
    // at the base endpoint, which anonymous clients check before pulling).
    let anonymous = guarded.get("/v2/team/app/manifests/v1").send().await;
    anonymous.assert_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    assert_eq!(
        anonymous.header("WWW-Authenticate"),
        Some("Basic realm=\"hoist\"")
    );
    let public = guarded.get("/v2/public/base/manifests/v1").send().await;
    assert_eq!(public.status, StatusCode::OK);
    assert_eq!(guarded.get("/v2/").send().await.status, StatusCode::OK);
    guarded
        .post("/v2/public/base/blobs/uploads/")
        .send()
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");

    // A wrong password is no user at all.
    let wrong = guarded.authorized(&basic("alice", "guess"));
    wrong
        .get("/v2/team/app/manifests/v1")
        .send()
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");

    assert_eq!(alice.get("/v2/").send().await.status, StatusCode::OK);
    // bob pulls team/app, but may not push to it, nor pull anything else of team/*.
    let pulled = bob.get("/v2/team/app/manifests/v1").send().await;
    assert_eq!(pulled.status, StatusCode::OK);
    assert_eq!(pulled.body, image.manifest);
    bob.post("/v2/team/app/blobs/uploads/")
        .send()
        .await
        .assert_error(StatusCode::FORBIDDEN, "DENIED");
    bob.get("/v2/team/other/tags/list")
        .send()
        .await
        .assert_error(StatusCode::FORBIDDEN, "DENIED");
    // An upload is part of a push: its status is not for one who may only pull (it would
    // tell how far another's push is, and hold the upload's lock).
    let started = open.post("/v2/team/app/blobs/uploads/").send().await;
    assert_eq!(started.status, StatusCode::ACCEPTED);
    let upload = started.header("Location").unwrap().to_owned();
    bob.get(&upload)
        .send()
        .await
        .assert_error(StatusCode::FORBIDDEN, "DENIED");
    assert_eq!(
        alice.get(&upload).send().await.status,
        StatusCode::NO_CONTENT
    );

    // alice pushes to team/other and deletes there; she may not delete in public/*.
    let pushed = alice.push_image("team/other", "v1", b"alice's layer").await;
    let tags = open.get("/v2/team/other/tags/list").send().await.json();
    assert_eq!(tags["tags"], serde_json::json!(["v1"]));
    let deleted = alice
        .delete(&format!("/v2/team/other/manifests/{}", pushed.digest))
        .send()
        .await;
    assert_eq!(deleted.status, StatusCode::ACCEPTED);
    alice
        .delete("/v2/public/base/manifests/v1")
        .send()
        .await
        .assert_error(StatusCode::FORBIDDEN, "DENIED");

    // The catalog lists only what the user may pull.
    let catalog = bob.get("/v2/_catalog").send().await.json();
    assert_eq!(
        catalog["repositories"],
        serde_json::json!(["public/base", "team/app"])
    );
}

#[tokio::test]
async fn basic_auth_without_a_policy_lets_users_do_everything_and_anonymous_nothing() {
    let (_open, guarded, _servers) =
        two_servers(|server| server.with_auth(Auth::basic(Some(users())))).await;
    let base = guarded.get("/v2/").send().await;
    base.assert_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    assert_eq!(
        base.header("WWW-Authenticate"),
        Some("Basic realm=\"hoist\"")
    );
    let bob = guarded.authorized(&basic("bob", PASSWORD));
    assert_eq!(bob.get("/v2/").send().await.status, StatusCode::OK);
    bob.push_image("anything/at/all", "v1", b"layer").await;
}

/// The parts of a `WWW-Authenticate: Bearer k="v",…` challenge.
fn challenge(value: &str) -> Vec<(String, String)> {
    value
        .strip_prefix("Bearer ")
        .unwrap_or_else(|| panic!("not a bearer challenge: {value}"))
        .split(',')
        .map(|part| {
            let (key, quoted) = part.split_once('=').unwrap();
            (key.to_owned(), quoted.trim_matches('"').to_owned())
        })
        .collect()
}

fn parameter<'a>(parts: &'a [(String, String)], key: &str) -> Option<&'a str> {
    parts
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn token_auth_issues_tokens_narrowed_to_the_policy() {
    let (_open, guarded, servers) = two_servers(|server| {
        server.with_auth(Auth::token(Some(users()), Duration::from_secs(60)).with_policy(policy()))
    })
    .await;

    // Without a token: a challenge naming the realm, the service and the scope needed.
    let refused = guarded.get("/v2/team/app/tags/list").send().await;
    refused.assert_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    let parts = challenge(refused.header("WWW-Authenticate").unwrap());
    let realm = format!("{}/token", servers[1].url());
    assert_eq!(parameter(&parts, "realm"), Some(realm.as_str()));
    assert_eq!(
        parameter(&parts, "service"),
        Some(oci_server::TOKEN_SERVICE)
    );
    assert_eq!(parameter(&parts, "scope"), Some("repository:team/app:pull"));

    let token_for = |user: &'static str, scope: &'static str| {
        let guarded = guarded.clone();
        async move {
            let reply = guarded
                .authorized(&basic(user, PASSWORD))
                .get(&format!(
                    "/token?service={}&scope={scope}",
                    oci_server::TOKEN_SERVICE
                ))
                .send()
                .await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
            let answer: Value = reply.json();
            (
                answer["token"].as_str().unwrap().to_owned(),
                answer["scope"].as_str().unwrap().to_owned(),
            )
        }
    };

    // alice asks for everything on team/app: she gets it, and pushes with the token.
    let (token, scope) = token_for("alice", "repository:team/app:pull,push").await;
    assert_eq!(scope, "repository:team/app:pull,push");
    let alice = guarded.authorized(&format!("Bearer {token}"));
    let image = alice.push_image("team/app", "v1", b"layer").await;

    // bob asks for the same: the token is narrowed to pull, and a push with it is refused
    // with `insufficient_scope`.
    let (token, scope) = token_for("bob", "repository:team/app:pull,push").await;
    assert_eq!(scope, "repository:team/app:pull");
    let bob = guarded.authorized(&format!("Bearer {token}"));
    let pulled = bob.get("/v2/team/app/manifests/v1").send().await;
    assert_eq!(pulled.status, StatusCode::OK);
    assert_eq!(pulled.body, image.manifest);
    let push = bob.post("/v2/team/app/blobs/uploads/").send().await;
    push.assert_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    let parts = challenge(push.header("WWW-Authenticate").unwrap());
    assert_eq!(parameter(&parts, "error"), Some("insufficient_scope"));
    assert_eq!(parameter(&parts, "scope"), Some("repository:team/app:push"));

    // A made-up token is no token; wrong credentials get no token.
    let forged = guarded.authorized("Bearer 0123456789abcdef");
    assert_eq!(
        forged.get("/v2/team/app/tags/list").send().await.status,
        StatusCode::UNAUTHORIZED
    );
    let denied = guarded
        .authorized(&basic("alice", "guess"))
        .get("/token?service=hoist&scope=repository:team/app:pull")
        .send()
        .await;
    assert_eq!(denied.status, StatusCode::UNAUTHORIZED);
}

/// Tokens carry their grant, signed: anonymous clients asking for more tokens than a server
/// could keep (17,000 here; a map of issued tokens held 16,384) push no one's token out. A
/// token signed by another server (another key) is no token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_number_of_tokens_asked_for_pushes_another_out() {
    let (open, guarded, _servers) = two_servers(|server| {
        server.with_auth(Auth::token(Some(users()), Duration::from_secs(60)).with_policy(policy()))
    })
    .await;
    open.push_image("public/base", "v1", b"layer").await;
    let token = |client: Client| async move {
        let reply = client
            .get("/token?service=hoist&scope=repository:public/base:pull")
            .send()
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        reply.json()["token"].as_str().unwrap().to_owned()
    };
    let kept = token(guarded.clone()).await;
    let flood: Vec<_> = (0..8)
        .map(|_| {
            let guarded = guarded.clone();
            tokio::spawn(async move {
                for _ in 0..17_000 / 8 {
                    token(guarded.clone()).await;
                }
            })
        })
        .collect();
    for task in flood {
        task.await.unwrap();
    }
    let pull = guarded
        .authorized(&format!("Bearer {kept}"))
        .get("/v2/public/base/manifests/v1")
        .send()
        .await;
    assert_eq!(pull.status, StatusCode::OK, "the first token still pulls");

    let (_, elsewhere, _other) = two_servers(|server| {
        server.with_auth(Auth::token(Some(users()), Duration::from_secs(60)).with_policy(policy()))
    })
    .await;
    let foreign = token(elsewhere).await;
    let refused = guarded
        .authorized(&format!("Bearer {foreign}"))
        .get("/v2/public/base/manifests/v1")
        .send()
        .await;
    assert_eq!(
        refused.status,
        StatusCode::UNAUTHORIZED,
        "another server's token"
    );
}

/// bcrypt is slow on purpose: wrong passwords arriving together must not take the threads
/// that serve every connection. Four checks of a cost-12 hash (a few hundred milliseconds
/// each) are under way while an anonymous request is answered at once; before, the checks ran
/// on the server's two worker threads and the anonymous request waited for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_checks_leave_the_server_to_everyone_else() {
    let hash = bcrypt::hash(PASSWORD, 12).unwrap();
    let users = Htpasswd::parse(&format!("alice:{hash}\n")).unwrap();
    let listening = serve(
        RegistryServer::new(Arc::new(MemoryStore::new())).with_auth(Auth::basic(Some(users))),
    )
    .await;
    let client = Client::new(&listening);
    let wrong = client.authorized(&basic("alice", "not the password"));
    let checks: Vec<_> = (0..4)
        .map(|_| {
            let wrong = wrong.clone();
            tokio::spawn(async move { wrong.get("/v2/").send().await.status })
        })
        .collect();
    // Let the four requests reach the server and their checks start.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        client.get("/v2/").send().await.status,
        StatusCode::UNAUTHORIZED
    );
    assert!(
        checks.iter().all(|check| !check.is_finished()),
        "the anonymous request was answered only after a password check"
    );
    for check in checks {
        assert_eq!(check.await.unwrap(), StatusCode::UNAUTHORIZED);
    }
}

/// A `POST /token` body is held whole while it is read: at most
/// `MAX_CONCURRENT_TOKEN_FORMS` are read at once (one more gets 429), and each must arrive at
/// the server's minimum rate for bodies (408 below it), so that token requests sent slowly
/// on many connections hold bounded memory, anonymous as they may be.
#[tokio::test]
async fn token_request_bodies_are_read_a_bounded_number_at_a_time_and_at_the_minimum_rate() {
    let window = Duration::from_millis(1500);
    let options = ServerOptions::default().with_min_body_rate(1024, window);
    let store: Arc<dyn OciInterface> = Arc::new(MemoryStore::new());
    let server = RegistryServer::new(store)
        .with_options(options)
        .with_auth(Auth::token(None, Duration::from_secs(60)));
    let listening = serve(server).await;
    let client = Client::new(&listening);
    let slow_head = "POST /token HTTP/1.1\r\nHost: registry\r\n\
        Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n\
        grant_type=";
    let mut slow = Vec::new();
    for _ in 0..MAX_CONCURRENT_TOKEN_FORMS {
        let mut stream = TcpStream::connect(client.addr()).await.unwrap();
        stream.write_all(slow_head.as_bytes()).await.unwrap();
        slow.push(stream);
    }
    // Every slow body has been taken up before the next request is sent.
    tokio::time::sleep(window / 3).await;
    let form = "grant_type=password&service=hoist&client_id=test&username=a&password=b";
    let refused = client
        .post("/token")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form.as_bytes().to_vec())
        .send()
        .await;
    refused.assert_error(StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS");

    for mut stream in slow {
        let mut answer = Vec::new();
        let read = tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "a slow token request was not cut off");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
    let answered = client
        .post("/token")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form.as_bytes().to_vec())
        .send()
        .await;
    assert_ne!(answered.status, StatusCode::TOO_MANY_REQUESTS);
    assert_ne!(answered.status, StatusCode::REQUEST_TIMEOUT);
}
