//! `hoist serve --storage s3://... --redirect-blobs` on moto: blob GETs answered with a
//! redirect to a presigned URL of the bucket, followed by hoist's client and by skopeo.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use oci_layout::LayoutStore;
use oci_types::Digest;

use crate::bucket_interop::{Moto, moto_server};
use crate::bucket_replicas::Replica;
use crate::http::Client;
use crate::server_interop::{layout_image, layout_tag_digest, oci_ref, skopeo};
use crate::support::{hoist_binary, peer, run};

fn layer_of(manifest: &[u8]) -> (Digest, u64) {
    let value: serde_json::Value = serde_json::from_slice(manifest).unwrap();
    let layer = &value["layers"][0];
    (
        Digest::parse(layer["digest"].as_str().unwrap()).unwrap(),
        layer["size"].as_u64().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn moto_blob_gets_are_redirected_to_presigned_urls_that_clients_follow() {
    let Some(program) = moto_server() else { return };
    let Some(skopeo_bin) = peer("skopeo") else {
        return;
    };
    let moto = Moto::start(&program);
    moto.bucket("registry");
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    let store = LayoutStore::open(&source).await.unwrap();
    let image = layout_image(&store, "amd64", Some("v1")).await;
    let (layer, layer_size) = layer_of(&image.manifest_bytes);

    let serve = Replica::start(&moto, "s3://registry/hoist", &["--redirect-blobs"], false);
    let addr = serve.addr.to_string();
    run(
        &hoist_binary(),
        [
            "copy",
            &oci_ref(&source, "v1"),
            &format!("{addr}/team/app:v1"),
        ],
    );

    // The answer is a redirect to the bucket, with the digest, and no body.
    let client = Client::new(&format!("http://{addr}"));
    let blob_path = format!("/v2/team/app/blobs/{layer}");
    let redirect = client.get(&blob_path).send().await;
    assert_eq!(redirect.status, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        redirect.header("docker-content-digest"),
        Some(layer.as_str())
    );
    let location = redirect.header("location").unwrap().to_owned();
    let rest = location
        .strip_prefix(&moto.endpoint)
        .unwrap_or_else(|| panic!("{location} is not a URL of moto ({})", moto.endpoint));
    assert!(
        rest.contains("X-Amz-Signature="),
        "{location} is not signed"
    );

    // The URL works without any credentials, and gives the blob's bytes.
    let fetched = Client::new(&moto.endpoint).get(rest).send().await;
    assert_eq!(fetched.status, StatusCode::OK, "{}", fetched.text());
    assert_eq!(Digest::sha256(&fetched.body), layer);

    // HEADs, ranged reads and blobs the repository does not hold are answered as usual.
    let head = client.head(&blob_path).send().await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(
        head.header("content-length"),
        Some(layer_size.to_string().as_str())
    );
    let ranged = client
        .request(Method::GET, &blob_path)
        .header("range", "bytes=0-9")
        .send()
        .await;
    assert_eq!(ranged.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(ranged.body, fetched.body.slice(0..10));
    let elsewhere = client
        .get(&format!("/v2/other/app/blobs/{layer}"))
        .send()
        .await;
    assert_eq!(elsewhere.status, StatusCode::NOT_FOUND);
    assert_eq!(elsewhere.error_codes(), ["BLOB_UNKNOWN"]);

    // hoist's client and skopeo follow the redirect and get the image whole.
    let (by_hoist, by_skopeo) = (tmp.path().join("hoist"), tmp.path().join("skopeo"));
    run(
        &hoist_binary(),
        [
            "copy",
            &format!("{addr}/team/app:v1"),
            &oci_ref(&by_hoist, "v1"),
        ],
    );
    assert_eq!(layout_tag_digest(&by_hoist, "v1"), image.manifest.digest);
    skopeo(
        &skopeo_bin,
        &[
            "copy",
            "-q",
            "--src-tls-verify=false",
            &format!("docker://{addr}/team/app:v1"),
            &oci_ref(&by_skopeo, "v1"),
        ],
    );
    assert_eq!(layout_tag_digest(&by_skopeo, "v1"), image.manifest.digest);
    for dir in [&by_hoist, &by_skopeo] {
        let path = dir.join("blobs/sha256").join(layer.encoded());
        assert_eq!(
            std::fs::read(&path).unwrap(),
            fetched.body,
            "{}",
            dir.display()
        );
    }
}

/// Runs `hoist ARGS` that must refuse to start; its stderr. A server that starts after all is
/// killed after 20 s and fails the test rather than hanging it.
fn refused_start(args: &[&str]) -> String {
    let mut child = Command::new(hoist_binary())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("hoist {args:?} started instead of refusing to");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "hoist {args:?}: {stderr}");
    stderr
}

#[test]
fn redirects_need_storage_that_signs_urls() {
    let memory_bucket = refused_start(&[
        "serve",
        "--storage",
        "memory://",
        "--redirect-blobs",
        "--addr",
        "127.0.0.1:0",
    ]);
    assert!(
        memory_bucket.contains("needs storage that signs URLs"),
        "{memory_bucket}"
    );
    let no_storage = refused_start(&[
        "serve",
        "--memory",
        "--redirect-blobs",
        "--addr",
        "127.0.0.1:0",
    ]);
    assert!(no_storage.contains("needs --storage"), "{no_storage}");
}
