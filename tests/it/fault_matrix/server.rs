//! The server under clients whose connections break.

use super::*;

/// Sends `head` (without its blank line) and the first `sent` bytes of `body` to `addr` on a
/// new connection, then resets it (RST) or, when `reset` is false, ends the sending side (a
/// body shorter than its `Content-Length`) and returns whatever answer comes.
async fn broken_request(
    addr: std::net::SocketAddr,
    head: &str,
    body: &[u8],
    sent: usize,
    reset: bool,
) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{head}\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..sent]).await.unwrap();
    stream.flush().await.unwrap();
    if reset {
        stream.set_zero_linger().unwrap();
        drop(stream);
        return String::new();
    }
    stream.shutdown().await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer));
    let _ = read.await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// The blob is not visible in `memory`: not resolvable, not readable.
async fn assert_invisible(case: &str, memory: &MemoryStore, repo: &Repository, digest: &Digest) {
    let error = memory
        .resolve_blob(repo, digest)
        .await
        .expect_err("an uncommitted blob is not visible");
    assert!(
        matches!(
            error.code(),
            Some(ErrorCode::BlobUnknown | ErrorCode::NameUnknown)
        ),
        "{case}: {error}"
    );
    assert!(memory.get_blob(repo, digest).await.is_err(), "{case}");
}

/// The upload's offset as the server reports it (`GET` on the upload: `Range: 0-<last>`, an
/// empty upload being `0-0`, told apart by asking for the size a PATCH would continue from).
/// Waits, within a deadline, for the server to be done with the broken request: until then
/// the upload may still be in the hands of its handler.
async fn upload_offset(client: &Client, location: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = client.get(location).send().await;
        if status.status.as_u16() == 204 {
            let range = status.header("range").unwrap_or("0-0").to_owned();
            let last: u64 = range.split('-').nth(1).unwrap().parse().unwrap();
            // `0-0` is both "empty" and "one byte"; the uploads here are never one byte.
            return if last == 0 { 0 } else { last + 1 };
        }
        assert!(
            Instant::now() < deadline,
            "the upload status stayed {}: {}",
            status.status,
            status.text()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Starts an upload; returns its location (a path).
async fn start_upload(client: &Client, repo: &Repository) -> String {
    let started = client
        .post(&format!("/v2/{repo}/blobs/uploads/"))
        .send()
        .await;
    assert_eq!(started.status.as_u16(), 202, "{}", started.text());
    let location = started.header("location").unwrap().to_owned();
    match location.strip_prefix("http://") {
        Some(rest) => rest[rest.find('/').unwrap()..].to_owned(),
        None => location,
    }
}

fn with_query(location: &str, query: &str) -> String {
    let separator = if location.contains('?') { '&' } else { '?' };
    format!("{location}{separator}{query}")
}

/// Uploads whose connection breaks mid-body, reset or ended early: a monolithic PUT and a
/// PATCH chunk at offsets over the body. Nothing is visible before a complete commit; the
/// upload is then restarted (the PUT: what arrived went to the store, not the upload) or
/// resumed from the offset the server reports (the PATCH keeps what arrived), and the commit
/// makes the blob visible, verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_broken_mid_body_is_invisible_until_a_complete_commit() {
    let memory = MemoryStore::new();
    let listening = RegistryServer::new(Arc::new(memory.clone()))
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listening.local_addr();
    let client = Client::new(&format!("http://{addr}"));
    let content = seeded_bytes(300, 300 * 1024);
    let digest = Digest::sha256(&content);
    for (n, sent) in [0, 1, 65_537, content.len() / 2, content.len() - 1]
        .into_iter()
        .enumerate()
    {
        for reset in [true, false] {
            let how = if reset { "reset" } else { "ended" };
            let repo = repo(&format!("server-{n}-{how}"));

            // A monolithic PUT.
            let case = format!("PUT {how} after {sent} bytes");
            let location = start_upload(&client, &repo).await;
            let target = with_query(&location, &format!("digest={digest}"));
            let answer = broken_request(
                addr,
                &format!("PUT {target} HTTP/1.1\r\nContent-Type: application/octet-stream"),
                &content,
                sent,
                reset,
            )
            .await;
            assert!(
                !answer.starts_with("HTTP/1.1 2"),
                "{case}: a body cut short was accepted: {answer}"
            );
            assert_eq!(upload_offset(&client, &location).await, 0, "{case}");
            assert_invisible(&case, &memory, &repo, &digest).await;
            let done = client
                .put(&target)
                .header("content-type", "application/octet-stream")
                .body(content.clone())
                .send()
                .await;
            assert_eq!(done.status.as_u16(), 201, "{case}: {}", done.text());
            read_back(
                &case,
                &memory,
                &repo,
                &Descriptor::new(octet(), digest.clone(), content.len() as u64),
                false,
            )
            .await;

            // A PATCH chunk (the whole blob as one chunk), then resumed where the server is.
            let case = format!("PATCH {how} after {sent} bytes");
            let repo = super::repo(&format!("server-{n}-{how}-chunked"));
            let location = start_upload(&client, &repo).await;
            let answer = broken_request(
                addr,
                &format!(
                    "PATCH {location} HTTP/1.1\r\nContent-Type: application/octet-stream\r\n\
                     Content-Range: 0-{}",
                    content.len() - 1
                ),
                &content,
                sent,
                reset,
            )
            .await;
            assert!(
                !answer.starts_with("HTTP/1.1 2"),
                "{case}: a chunk cut short was accepted: {answer}"
            );
            let offset = upload_offset(&client, &location).await;
            assert!(
                offset <= sent as u64,
                "{case}: the server has {offset} bytes of {sent} sent"
            );
            assert_invisible(&case, &memory, &repo, &digest).await;
            let patch_from = |offset: u64| {
                client
                    .patch(&location)
                    .header("content-type", "application/octet-stream")
                    .header("content-range", &format!("{offset}-{}", content.len() - 1))
                    .body(content.slice(offset as usize..))
                    .send()
            };
            let mut patched = patch_from(offset).await;
            let mut offset = offset;
            // The broken request's bytes may still have been going in when the offset was
            // asked: a refusal asks again, a while later.
            for _ in 0..50 {
                if patched.status.as_u16() != 416 {
                    break;
                }
                assert!(sent >= 1, "{case}: refused at {offset} with nothing sent");
                if offset == 0 {
                    // `0-0` is also one byte: refused at 0, the server may have the first.
                    patched = patch_from(1).await;
                    if patched.status.as_u16() != 416 {
                        break;
                    }
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                offset = upload_offset(&client, &location).await;
                assert!(
                    offset <= sent as u64,
                    "{case}: the server has {offset} bytes of {sent} sent"
                );
                patched = patch_from(offset).await;
            }
            assert_eq!(patched.status.as_u16(), 202, "{case}: {}", patched.text());
            // All the bytes are there, not committed: still nothing to see.
            assert_invisible(&case, &memory, &repo, &digest).await;
            let done = client
                .put(&with_query(&location, &format!("digest={digest}")))
                .send()
                .await;
            assert_eq!(done.status.as_u16(), 201, "{case}: {}", done.text());
            read_back(
                &case,
                &memory,
                &repo,
                &Descriptor::new(octet(), digest.clone(), content.len() as u64),
                false,
            )
            .await;
        }
    }
}

fn octet() -> MediaType {
    MediaType::from_static(media_type::OCTET_STREAM)
}

/// A manifest PUT whose body breaks off (reset, or ended early) at offsets over the body
/// leaves no tag and no manifest, even a while later; the complete PUT then tags it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_put_broken_mid_body_leaves_no_tag() {
    let memory = MemoryStore::new();
    let listening = RegistryServer::new(Arc::new(memory.clone()))
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listening.local_addr();
    let client = Client::new(&format!("http://{addr}"));
    let source = image(&memory, &repo("server-manifest-source"), [3000, 2000, 1000]).await;
    let repo = repo("server-manifest");
    let (manifest, bytes) = source.manifests[0].clone();
    for (descriptor, content) in &source.blobs {
        memory
            .push_blob_bytes(&repo, descriptor.media_type.clone(), content.clone())
            .await
            .unwrap();
    }
    let tag = Tag::parse("v1").unwrap();
    for sent in [0, 1, bytes.len() / 2, bytes.len() - 1] {
        for reset in [true, false] {
            let case = format!(
                "manifest PUT {} after {sent} bytes",
                if reset { "reset" } else { "ended" }
            );
            let answer = broken_request(
                addr,
                &format!(
                    "PUT /v2/{repo}/manifests/{tag} HTTP/1.1\r\nContent-Type: {}",
                    media_type::OCI_MANIFEST
                ),
                &bytes,
                sent,
                reset,
            )
            .await;
            assert!(
                !answer.starts_with("HTTP/1.1 2"),
                "{case}: a manifest cut short was accepted: {answer}"
            );
            // The server may still be reading the broken request: look a few times over a
            // short while, never finding the tag.
            for _ in 0..10 {
                let error = memory.resolve_tag(&repo, &tag).await.expect_err(&case);
                assert_eq!(
                    error.code(),
                    Some(ErrorCode::ManifestUnknown),
                    "{case}: {error}"
                );
                let error = memory
                    .resolve_manifest(&repo, &manifest.digest)
                    .await
                    .expect_err(&case);
                assert_eq!(
                    error.code(),
                    Some(ErrorCode::ManifestUnknown),
                    "{case}: {error}"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    let put = client
        .put(&format!("/v2/{repo}/manifests/{tag}"))
        .header("content-type", media_type::OCI_MANIFEST)
        .body(bytes)
        .send()
        .await;
    assert_eq!(put.status.as_u16(), 201, "{}", put.text());
    assert_eq!(
        memory.resolve_tag(&repo, &tag).await.unwrap().digest,
        manifest.digest
    );
}
