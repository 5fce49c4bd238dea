//! The base endpoint, blob uploads (monolithic and chunked) and blob reads.

use std::time::Duration;

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{TIMEOUT, digest, start_default};

#[tokio::test]
async fn the_base_endpoint_answers_200_as_a_registry_2_0() {
    let (_server, client) = start_default().await;
    for path in ["/v2/", "/v2"] {
        let reply = client.get(path).send().await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(
            reply.header("Docker-Distribution-API-Version"),
            Some("registry/2.0"),
            "{path}"
        );
    }
    // Docker clients look for the header on every answer, errors included.
    let missing = client.get("/v2/a/manifests/nothing").send().await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        missing.header("Docker-Distribution-API-Version"),
        Some("registry/2.0")
    );
}

#[tokio::test]
async fn a_monolithic_upload_is_stored_and_read_back() {
    let (_server, client) = start_default().await;
    let content = b"a layer's bytes, uploaded whole".to_vec();
    let digest = digest(&content);

    let started = client.post("/v2/team/app/blobs/uploads/").send().await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.text());
    let location = started.header("Location").unwrap().to_owned();
    assert!(
        location.starts_with("/v2/team/app/blobs/uploads/"),
        "{location}"
    );
    assert!(started.header("Docker-Upload-UUID").is_some());

    let put = client
        .put(&format!("{location}?digest={digest}"))
        .body(content.clone())
        .send()
        .await;
    assert_eq!(put.status, StatusCode::CREATED, "{}", put.text());
    assert_eq!(
        put.header("Location"),
        Some(format!("/v2/team/app/blobs/{digest}").as_str())
    );
    assert_eq!(put.header("Docker-Content-Digest"), Some(digest.as_str()));

    let head = client
        .head(&format!("/v2/team/app/blobs/{digest}"))
        .send()
        .await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("Docker-Content-Digest"), Some(digest.as_str()));
    assert_eq!(
        head.header("Content-Length"),
        Some(content.len().to_string().as_str())
    );
    assert!(head.body.is_empty());

    let get = client
        .get(&format!("/v2/team/app/blobs/{digest}"))
        .send()
        .await;
    assert_eq!(get.status, StatusCode::OK);
    assert_eq!(get.header("Docker-Content-Digest"), Some(digest.as_str()));
    assert_eq!(get.body, content);

    // The upload was consumed by its closing PUT.
    let status = client.get(&location).send().await;
    status.assert_error(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn a_single_post_with_a_digest_uploads_the_blob() {
    let (_server, client) = start_default().await;
    let digest = client.push_blob("r", b"posted in one request").await;
    let get = client.get(&format!("/v2/r/blobs/{digest}")).send().await;
    assert_eq!(get.status, StatusCode::OK);
    assert_eq!(get.body.as_ref(), b"posted in one request");
}

#[tokio::test]
async fn content_that_does_not_match_its_digest_is_refused_and_not_stored() {
    let (_server, client) = start_default().await;
    let content = b"the bytes sent".to_vec();
    let claimed = digest(b"some other bytes");
    let actual = digest(&content);

    let started = client.post("/v2/r/blobs/uploads/").send().await;
    let location = started.header("Location").unwrap().to_owned();
    let put = client
        .put(&format!("{location}?digest={claimed}"))
        .body(content.clone())
        .send()
        .await;
    put.assert_error(StatusCode::BAD_REQUEST, "DIGEST_INVALID");

    // The one-request form refuses it the same way.
    let post = client
        .post(&format!("/v2/r/blobs/uploads/?digest={claimed}"))
        .body(content)
        .send()
        .await;
    post.assert_error(StatusCode::BAD_REQUEST, "DIGEST_INVALID");

    for digest in [&claimed, &actual] {
        let head = client.head(&format!("/v2/r/blobs/{digest}")).send().await;
        assert_eq!(head.status, StatusCode::NOT_FOUND, "{digest} was stored");
    }
}

/// A client whose PATCH broke asks where the upload stands before resuming: the answer must
/// count every byte the broken PATCH still writes, so it waits for that PATCH to end.
#[tokio::test]
async fn the_status_of_an_upload_waits_for_the_patch_in_progress() {
    let (_server, client) = start_default().await;
    let started = client.post("/v2/r/blobs/uploads/").send().await;
    let location = started.header("Location").unwrap().to_owned();

    let mut patch = TcpStream::connect(client.addr()).await.unwrap();
    let head = format!(
        "PATCH {location} HTTP/1.1\r\nHost: registry\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: 1000\r\nContent-Range: 0-999\r\nExpect: 100-continue\r\n\r\n"
    );
    patch.write_all(head.as_bytes()).await.unwrap();
    // The server says `100 Continue` when the handler starts reading the body: the PATCH is
    // in progress from here.
    let mut interim = Vec::new();
    while !interim.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(TIMEOUT, patch.read(&mut byte)).await;
        assert_eq!(read.expect("no 100 Continue").unwrap(), 1, "closed early");
        interim.push(byte[0]);
    }
    assert!(interim.starts_with(b"HTTP/1.1 100"), "{interim:?}");
    patch.write_all(&[7u8; 600]).await.unwrap();

    let mut status = Box::pin(client.get(&location).send());
    let early = tokio::time::timeout(Duration::from_millis(300), &mut status).await;
    assert!(
        early.is_err(),
        "the status was answered while a PATCH was writing: {:?}",
        early.map(|reply| reply.header("Range").map(str::to_owned))
    );
    // The PATCH's body ends 400 bytes short: what arrived is kept, and only then is the
    // status answered.
    patch.shutdown().await.unwrap();
    let status = tokio::time::timeout(TIMEOUT, status)
        .await
        .expect("the status was never answered");
    assert_eq!(status.status, StatusCode::NO_CONTENT);
    assert_eq!(status.header("Range"), Some("0-599"));
}

#[tokio::test]
async fn a_chunked_upload_reports_its_range_and_location_after_each_chunk() {
    let (_server, client) = start_default().await;
    let (first, second) = (b"0123456789".to_vec(), b"abcdefgh".to_vec());
    let whole = [first.as_slice(), second.as_slice()].concat();
    let digest = digest(&whole);

    let started = client.post("/v2/r/blobs/uploads/").send().await;
    assert_eq!(started.status, StatusCode::ACCEPTED);
    let location = started.header("Location").unwrap().to_owned();
    // Nothing uploaded yet is reported as `0-0`, as the Docker registry does.
    assert_eq!(started.header("Range"), Some("0-0"));

    let patched = client
        .patch(&location)
        .header("Content-Type", "application/octet-stream")
        .header("Content-Range", "0-9")
        .body(first)
        .send()
        .await;
    assert_eq!(patched.status, StatusCode::ACCEPTED, "{}", patched.text());
    assert_eq!(patched.header("Range"), Some("0-9"));
    assert_eq!(patched.header("Location"), Some(location.as_str()));

    let status = client.get(&location).send().await;
    assert_eq!(status.status, StatusCode::NO_CONTENT);
    assert_eq!(status.header("Range"), Some("0-9"));
    assert_eq!(status.header("Location"), Some(location.as_str()));

    // A chunk that does not start where the upload is would leave a hole: refused, and the
    // upload keeps what it had.
    let out_of_order = client
        .patch(&location)
        .header("Content-Range", "12-19")
        .body(second.clone())
        .send()
        .await;
    assert_eq!(
        out_of_order.status,
        StatusCode::RANGE_NOT_SATISFIABLE,
        "{}",
        out_of_order.text()
    );
    // So is a range whose length is not the body's.
    let mismatched = client
        .patch(&location)
        .header("Content-Range", "10-12")
        .body(second.clone())
        .send()
        .await;
    mismatched.assert_error(StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID");
    let status = client.get(&location).send().await;
    assert_eq!(status.header("Range"), Some("0-9"));

    let patched = client
        .patch(&location)
        .header("Content-Range", "10-17")
        .body(second)
        .send()
        .await;
    assert_eq!(patched.status, StatusCode::ACCEPTED, "{}", patched.text());
    assert_eq!(patched.header("Range"), Some("0-17"));

    let closed = client
        .put(&format!("{location}?digest={digest}"))
        .send()
        .await;
    assert_eq!(closed.status, StatusCode::CREATED, "{}", closed.text());
    assert_eq!(
        closed.header("Docker-Content-Digest"),
        Some(digest.as_str())
    );

    let get = client.get(&format!("/v2/r/blobs/{digest}")).send().await;
    assert_eq!(get.body, whole);
}

#[tokio::test]
async fn a_cancelled_upload_is_gone() {
    let (_server, client) = start_default().await;
    let started = client.post("/v2/r/blobs/uploads/").send().await;
    let location = started.header("Location").unwrap().to_owned();
    let cancelled = client.delete(&location).send().await;
    assert_eq!(cancelled.status, StatusCode::NO_CONTENT);
    let status = client.get(&location).send().await;
    status.assert_error(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn a_ranged_get_answers_206_with_the_part_asked() {
    let (_server, client) = start_default().await;
    let digest = client.push_blob("r", b"0123456789").await;
    let path = format!("/v2/r/blobs/{digest}");

    let part = client.get(&path).header("Range", "bytes=2-5").send().await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.header("Content-Range"), Some("bytes 2-5/10"));
    assert_eq!(part.body.as_ref(), b"2345");

    let beyond = client.get(&path).header("Range", "bytes=10-").send().await;
    beyond.assert_error(StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID");
    assert_eq!(beyond.header("Content-Range"), Some("bytes */10"));
}

#[tokio::test]
async fn a_mount_from_another_repository_shares_the_blob() {
    let (_server, client) = start_default().await;
    let digest = client.push_blob("source", b"shared layer").await;
    let mounted = client
        .post(&format!(
            "/v2/target/blobs/uploads/?mount={digest}&from=source"
        ))
        .send()
        .await;
    assert_eq!(mounted.status, StatusCode::CREATED, "{}", mounted.text());
    assert_eq!(
        mounted.header("Docker-Content-Digest"),
        Some(digest.as_str())
    );
    let get = client
        .get(&format!("/v2/target/blobs/{digest}"))
        .send()
        .await;
    assert_eq!(get.body.as_ref(), b"shared layer");

    // A blob the source does not have cannot be mounted: an upload starts instead.
    let absent = crate::support::digest(b"never pushed");
    let fallback = client
        .post(&format!(
            "/v2/target/blobs/uploads/?mount={absent}&from=source"
        ))
        .send()
        .await;
    assert_eq!(fallback.status, StatusCode::ACCEPTED);
    assert!(fallback.header("Location").is_some());
}

#[tokio::test]
async fn a_deleted_blob_is_gone() {
    let (_server, client) = start_default().await;
    let digest = client.push_blob("r", b"to be deleted").await;
    let path = format!("/v2/r/blobs/{digest}");
    assert_eq!(
        client.delete(&path).send().await.status,
        StatusCode::ACCEPTED
    );
    client
        .get(&path)
        .send()
        .await
        .assert_error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN");
}
