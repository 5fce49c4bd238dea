//! Object storage that refuses: moto with its IAM checks on (`INITIAL_NO_AUTH_ACTION_COUNT=0`
//! makes moto's server authenticate every request), where keys it never issued are refused,
//! so `hoist serve --storage` must stop at start-up and say why; and moto stopped and
//! restarted under a running `hoist serve --storage`, which must answer a clear 5xx within
//! its retry bound while the store is away and work again once it is back.
//!
//! Locally these skip when moto is not installed; on CI (`CI=true`) that is a failure.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use oci_types::Digest;
use serde_json::{Value, json};

use crate::bucket_interop::{Moto, moto_server, serve_until_exit};
use crate::bucket_replicas::Replica;
use crate::http::{Client, Response};
use crate::support::peer;

#[test]
fn moto_hoist_serve_refuses_to_start_when_the_credentials_are_refused() {
    let Some(program) = moto_server() else { return };
    let mut command = Command::new(&program);
    command.env("INITIAL_NO_AUTH_ACTION_COUNT", "0");
    let moto = Moto::spawn(command, &program);
    let output = serve_until_exit(&moto, "s3://registry/x");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "hoist serve started with refused credentials"
    );
    assert!(stderr.contains("the credentials were refused"), "{stderr}");
}

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A `moto_server` on a given loopback port (a restart of one that was stopped), killed on
/// drop.
struct MotoOnPort(Child);

impl MotoOnPort {
    fn start(program: &Path, port: u16) -> Self {
        let child = Command::new(program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env_remove("AWS_CA_BUNDLE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let moto = Self(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen again within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        moto
    }
}

impl Drop for MotoOnPort {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn expect(response: &Response, status: u16, what: &str) {
    assert_eq!(
        response.status.as_u16(),
        status,
        "{what}: {}",
        response.text()
    );
}

fn location(response: &Response) -> String {
    let location = response.headers["location"].to_str().unwrap();
    match location.strip_prefix("http://") {
        Some(rest) => rest[rest.find('/').unwrap_or(rest.len())..].to_owned(),
        None => location.to_owned(),
    }
}

async fn push_blob(c: &Client, data: &Bytes) -> Digest {
    let digest = Digest::sha256(data);
    let started = c.post("/v2/team/app/blobs/uploads/").send().await;
    expect(&started, 202, "POST upload");
    let target = location(&started);
    let sep = if target.contains('?') { '&' } else { '?' };
    let done = c
        .put(&format!("{target}{sep}digest={digest}"))
        .header("content-type", "application/octet-stream")
        .body(data.clone())
        .send()
        .await;
    expect(&done, 201, "PUT blob");
    digest
}

/// A manifest of one config and one layer, both pushed first.
async fn push_image(c: &Client, tag: &str) -> Bytes {
    let config = Bytes::from(format!("{{\"note\":\"{tag}\"}}"));
    let layer = Bytes::from(format!("the layer of {tag}").repeat(100));
    let descriptor = |media_type: &str, data: &Bytes| json!({"mediaType": media_type, "digest": Digest::sha256(data).to_string(), "size": data.len()});
    push_blob(c, &config).await;
    push_blob(c, &layer).await;
    let manifest = Bytes::from(
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": descriptor("application/vnd.oci.image.config.v1+json", &config),
            "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", &layer)],
        }))
        .unwrap(),
    );
    let response = c
        .put(&format!("/v2/team/app/manifests/{tag}"))
        .header("content-type", MANIFEST)
        .body(manifest.clone())
        .send()
        .await;
    expect(&response, 201, &format!("PUT manifest {tag}"));
    layer
}

/// A 5xx that says only that the server failed, within the retry bound of the store.
fn expect_clear_failure(response: &Response, started: Instant, what: &str, port: u16) {
    let took = started.elapsed();
    assert!(
        response.status.is_server_error(),
        "{what} while the store is down: {} {}",
        response.status,
        response.text()
    );
    assert!(
        took < Duration::from_secs(20),
        "{what} took {took:?} to fail (the retry bound is ~12 s a store request)"
    );
    let text = response.text();
    for detail in [
        "127.0.0.1",
        &port.to_string(),
        "s3://",
        "registry/hoist",
        "error sending",
    ] {
        assert!(
            !text.contains(detail),
            "{what}: the 5xx body leaks {detail:?}: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn moto_restarted_under_hoist_serve_fails_clearly_then_serves_again() {
    let Some(program) = moto_server() else { return };
    let curl = peer("curl").expect("curl, installed with the peers");
    let moto = Moto::start(&program);
    moto.bucket("registry");
    let port: u16 = moto.endpoint.rsplit(':').next().unwrap().parse().unwrap();
    let serve = Replica::start(&moto, "s3://registry/hoist", &[], false);
    let c = Client::new(&format!("http://{}", serve.addr));
    let layer = push_image(&c, "v1").await;
    let layer_digest = Digest::sha256(&layer);
    // Blobs of the next image go in; then the store goes away before its manifest does.
    let config2 = Bytes::from_static(b"{\"note\":\"v2\"}");
    push_blob(&c, &config2).await;

    drop(moto);
    let started = Instant::now();
    let get = c
        .get(&format!("/v2/team/app/blobs/{layer_digest}"))
        .send()
        .await;
    expect_clear_failure(&get, started, "GET blob", port);
    let started = Instant::now();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": Digest::sha256(&config2).to_string(), "size": config2.len()},
        "layers": [],
    }))
    .unwrap();
    let put = c
        .put("/v2/team/app/manifests/v2")
        .header("content-type", MANIFEST)
        .body(manifest)
        .send()
        .await;
    expect_clear_failure(&put, started, "PUT manifest", port);
    let log = serve.stderr();
    assert!(
        log.contains("request failed") && log.contains("s3://registry/hoist"),
        "the server's log does not name the storage failure:\n{log}"
    );

    // moto again on the same port: it keeps its state in memory, so the bucket is new and
    // empty; the running server must use it without a restart.
    let _moto = MotoOnPort::start(&program, port);
    let bucket = format!("http://127.0.0.1:{port}/registry");
    crate::support::run(&curl, ["-sf", "-X", "PUT", bucket.as_str()]);
    let layer3 = push_image(&c, "v3").await;
    let get = c
        .get(&format!("/v2/team/app/blobs/{}", Digest::sha256(&layer3)))
        .send()
        .await;
    expect(&get, 200, "GET blob after the restart");
    assert!(get.body == layer3, "the blob read back differs");
    let failed = c
        .get("/v2/team/app/manifests/v2")
        .header("accept", MANIFEST)
        .send()
        .await;
    expect(&failed, 404, "the tag whose push failed");
    let tags = c.get("/v2/team/app/tags/list").send().await;
    expect(&tags, 200, "GET tags");
    let listed: Value = tags.json();
    assert_eq!(listed["tags"], json!(["v3"]), "tags after the restart");
    let catalog = c.get("/v2/_catalog").send().await;
    expect(&catalog, 200, "GET catalog");
    // Not `["team/app"]`: a server records a repository's catalog entry once per process,
    // so one that moto lost with its memory is not written again by this server; nothing
    // else may be listed.
    let listed = catalog.json()["repositories"].clone();
    assert!(
        listed == json!([]) || listed == json!(["team/app"]),
        "catalog after the restart: {listed}"
    );
}
