//! The spec's error answers: `{"errors":[{"code":…,"message":…}]}` with the status each code
//! calls for.

use http::StatusCode;

use crate::support::{digest, start_default};

#[tokio::test]
async fn an_unknown_manifest_is_404_manifest_unknown() {
    let (_server, client) = start_default().await;
    client.push_image("r", "v1", b"layer").await;
    client
        .get("/v2/r/manifests/latest")
        .send()
        .await
        .assert_error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
    client
        .get(&format!("/v2/r/manifests/{}", digest(b"no such manifest")))
        .send()
        .await
        .assert_error(StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN");
}

#[tokio::test]
async fn an_unknown_blob_is_404_blob_unknown() {
    let (_server, client) = start_default().await;
    client.push_blob("r", b"another blob").await;
    let path = format!("/v2/r/blobs/{}", digest(b"no such blob"));
    client
        .get(&path)
        .send()
        .await
        .assert_error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN");
    // A HEAD has the status only.
    let head = client.head(&path).send().await;
    assert_eq!(head.status, StatusCode::NOT_FOUND);
    assert!(head.body.is_empty());

    // A blob of another repository is unknown in this one.
    let elsewhere = client.push_blob("other", b"elsewhere").await;
    assert_eq!(
        client
            .get(&format!("/v2/other/blobs/{elsewhere}"))
            .send()
            .await
            .status,
        StatusCode::OK
    );
    client
        .get(&format!("/v2/r/blobs/{elsewhere}"))
        .send()
        .await
        .assert_error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN");
}

#[tokio::test]
async fn a_repository_that_does_not_exist_is_404_name_unknown() {
    let (_server, client) = start_default().await;
    client
        .get("/v2/nowhere/manifests/latest")
        .send()
        .await
        .assert_error(StatusCode::NOT_FOUND, "NAME_UNKNOWN");
    client
        .get(&format!("/v2/nowhere/blobs/{}", digest(b"x")))
        .send()
        .await
        .assert_error(StatusCode::NOT_FOUND, "NAME_UNKNOWN");
    client
        .get("/v2/nowhere/tags/list")
        .send()
        .await
        .assert_error(StatusCode::NOT_FOUND, "NAME_UNKNOWN");
}

#[tokio::test]
async fn malformed_names_and_digests_are_the_clients_error() {
    let (_server, client) = start_default().await;
    client
        .get("/v2/r/blobs/sha256:not-hex")
        .send()
        .await
        .assert_error(StatusCode::BAD_REQUEST, "DIGEST_INVALID");
    client
        .get(&format!("/v2/Upper/blobs/{}", digest(b"x")))
        .send()
        .await
        .assert_error(StatusCode::BAD_REQUEST, "NAME_INVALID");
    // The closing PUT of an upload must say what it closes.
    let started = client.post("/v2/r/blobs/uploads/").send().await;
    let location = started.header("Location").unwrap().to_owned();
    client
        .put(&location)
        .body(b"content".to_vec())
        .send()
        .await
        .assert_error(StatusCode::BAD_REQUEST, "DIGEST_INVALID");
}

#[tokio::test]
async fn a_path_that_is_no_endpoint_or_a_method_an_endpoint_lacks_is_refused() {
    let (_server, client) = start_default().await;
    client
        .get("/v3/whatever")
        .send()
        .await
        .assert_error(StatusCode::NOT_FOUND, "NAME_UNKNOWN");
    let posted = client.post("/v2/r/manifests/v1").send().await;
    posted.assert_error(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED");
    assert_eq!(posted.header("Allow"), Some("GET, HEAD, PUT, DELETE"));
    // Without token auth there is no token endpoint.
    assert_eq!(
        client.get("/token").send().await.status,
        StatusCode::NOT_FOUND
    );
}
