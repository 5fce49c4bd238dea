//! The registry client against a network that misbehaves: a small fault-injecting HTTP proxy
//! between the client and hoist's server (over memory) drops a blob download mid-way, answers
//! 429 with `Retry-After`, answers bursts of 503, redirects blob downloads to another host,
//! and damages bytes in either direction. Retries and resumption work, credentials never reach
//! the other host, and nothing corrupt is stored or returned.
//!
//! The proxy and the other host live in `fault_proxy`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use oci_registry::{Credentials, RegistryClient, RetryPolicy};
use oci_server::{Auth, Htpasswd, Listening, RegistryServer};
use oci_store::conformance::seeded_bytes;
use oci_store::{
    BlobReader, ErrorCode, MemoryStore, OciInterface, OciInterfaceExt, PushManifestParams,
};
use oci_types::{Descriptor, Digest, ImageManifest, MediaType, Repository, media_type};

use crate::fault_proxy::{Fault, OtherHost, Proxy, Rule, Seen};

// ---- set-up ----

const USER: &str = "faulty";
const PASSWORD: &str = "s3cret-over-a-bad-network";

/// hoist's server over memory, optionally with basic auth; the memory store is kept to look
/// behind the server's back.
async fn server(basic_auth: bool) -> (Listening, MemoryStore) {
    let memory = MemoryStore::new();
    let mut server = RegistryServer::new(Arc::new(memory.clone()));
    if basic_auth {
        let hash = bcrypt::hash(PASSWORD, 4).unwrap();
        let users = Htpasswd::parse(&format!("{USER}:{hash}\n")).unwrap();
        server = server.with_auth(Auth::Basic(users));
    }
    let listening = server.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    (listening, memory)
}

/// A client of the proxy: no credential files; retries with short delays so that the tests
/// stay quick (a `Retry-After` still decides its own delay).
async fn client(proxy: &Proxy, credentials: Option<Credentials>) -> RegistryClient {
    let mut builder = RegistryClient::builder(&proxy.host())
        .with_credential_files(Vec::new())
        .with_retry(
            RetryPolicy::default()
                .with_attempts(5)
                .with_base_delay(Duration::from_millis(50)),
        );
    if let Some(credentials) = credentials {
        builder = builder.with_credentials(credentials);
    }
    builder.build().await.unwrap()
}

/// A client of the proxy that takes `stall` of silence for a broken connection.
async fn stalling_client(proxy: &Proxy, stall: Duration) -> RegistryClient {
    RegistryClient::builder(&proxy.host())
        .with_credential_files(Vec::new())
        .with_stall_timeout(stall)
        .build()
        .await
        .unwrap()
}

/// A client of the proxy that sends every blob over 10,000 bytes in chunks of 30,000.
async fn chunked_client(proxy: &Proxy) -> RegistryClient {
    RegistryClient::builder(&proxy.host())
        .with_credential_files(Vec::new())
        .with_monolithic_limit(10_000)
        .with_chunk_size(30_000)
        .build()
        .await
        .unwrap()
}

fn repo(name: &str) -> Repository {
    format!("faults/{name}").parse().unwrap()
}

fn octet() -> MediaType {
    MediaType::from_static(media_type::OCTET_STREAM)
}

/// Pushes `content` straight into the memory store (not through the proxy).
async fn stored(memory: &MemoryStore, repo: &Repository, content: &Bytes) -> Descriptor {
    memory
        .push_blob_bytes(repo, octet(), content.clone())
        .await
        .unwrap()
}

/// The server's store has no such blob (nor, if nothing else was pushed there, the
/// repository).
async fn assert_nothing_stored(memory: &MemoryStore, repo: &Repository, digest: &Digest) {
    let error = memory
        .resolve_blob(repo, digest)
        .await
        .expect_err("nothing stored");
    assert!(
        matches!(
            error.code(),
            Some(ErrorCode::BlobUnknown | ErrorCode::NameUnknown)
        ),
        "{error}"
    );
}

fn blob_gets(log: &[Seen], digest: &Digest) -> Vec<Seen> {
    log.iter()
        .filter(|s| s.method == "GET" && s.path().ends_with(&format!("/blobs/{digest}")))
        .cloned()
        .collect()
}

// ---- the tests ----

/// A download cut off after 300 KiB of 1 MiB resumes with `Range` from the byte reached, and
/// what comes out is the blob, verified; a download cut off more often than the client
/// resumes ends in an error, never in short or wrong content.
#[tokio::test]
async fn a_download_cut_off_midway_resumes_with_range() {
    let (listening, memory) = server(false).await;
    let proxy = Proxy::start(listening.local_addr()).await;
    let repo = repo("resume");
    let content = seeded_bytes(1, 1 << 20);
    let blob = stored(&memory, &repo, &content).await;
    let client = client(&proxy, None).await;

    let cut = 300 * 1024;
    proxy.add(Rule::new(
        Some("GET"),
        &format!("/blobs/{}", blob.digest),
        1,
        Fault::CutAfter(cut),
    ));
    let got = client
        .get_blob_bytes(&repo, &blob.digest, 2 << 20)
        .await
        .unwrap();
    assert!(got == content, "the resumed download is the blob");
    let gets = blob_gets(&proxy.log(), &blob.digest);
    assert_eq!(gets.len(), 2, "one cut download, one resumption: {gets:#?}");
    assert_eq!(gets[0].header("range"), None, "the first read is whole");
    assert_eq!(
        gets[1].header("range"),
        Some(format!("bytes={cut}-{}", content.len() - 1).as_str()),
        "the resumption asks for the rest, from the byte reached"
    );
    assert_eq!(gets[1].status, 206);

    // Cut every time: the client gives up after its resumptions, with an error.
    proxy.clear_log();
    proxy.add(Rule::new(
        Some("GET"),
        &format!("/blobs/{}", blob.digest),
        100,
        Fault::CutAfter(1000),
    ));
    let error = client
        .get_blob_bytes(&repo, &blob.digest, 2 << 20)
        .await
        .expect_err("a download that always breaks off fails");
    let gets = blob_gets(&proxy.log(), &blob.digest).len();
    assert!(
        (2..=10).contains(&gets),
        "a bounded number of resumptions ({gets}), then {error}"
    );
}

/// A download that stalls (the connection stays open, no byte comes) counts as broken once the
/// client's stall timeout passes, and resumes with `Range` like a dropped one.
#[tokio::test]
async fn a_stalled_download_resumes_after_the_stall_timeout() {
    let (listening, memory) = server(false).await;
    let proxy = Proxy::start(listening.local_addr()).await;
    let repo = repo("stall");
    let content = seeded_bytes(3, 1 << 20);
    let blob = stored(&memory, &repo, &content).await;
    let client = stalling_client(&proxy, Duration::from_millis(500)).await;
    let stall_at = 200 * 1024;
    proxy.add(Rule::new(
        Some("GET"),
        &format!("/blobs/{}", blob.digest),
        1,
        Fault::StallAfter(stall_at),
    ));
    let got = client
        .get_blob_bytes(&repo, &blob.digest, 2 << 20)
        .await
        .unwrap();
    assert!(got == content, "the resumed download is the blob");
    let gets = blob_gets(&proxy.log(), &blob.digest);
    assert_eq!(
        gets.len(),
        2,
        "one stalled download, one resumption: {gets:#?}"
    );
    assert_eq!(
        gets[1].header("range"),
        Some(format!("bytes={stall_at}-{}", content.len() - 1).as_str()),
        "the resumption asks for the rest, from the byte reached"
    );
}

/// A registry that takes a request and goes silent: the client gives up once five stall
/// timeouts pass with no answer (sending a request that can be repeated again first),
/// instead of waiting for ever.
#[tokio::test]
async fn a_registry_that_never_answers_is_unavailable_after_the_stall_timeout() {
    let (listening, memory) = server(false).await;
    let proxy = Proxy::start(listening.local_addr()).await;
    let repo = repo("silent");
    let blob = stored(&memory, &repo, &seeded_bytes(4, 1000)).await;
    let client = RegistryClient::builder(&proxy.host())
        .with_credential_files(Vec::new())
        .with_stall_timeout(Duration::from_millis(300))
        .with_retry(
            RetryPolicy::default()
                .with_attempts(2)
                .with_base_delay(Duration::from_millis(10)),
        )
        .build()
        .await
        .unwrap();
    proxy.add(Rule::new(Some("HEAD"), "/blobs/", 2, Fault::StallHead));
    let error = tokio::time::timeout(
        Duration::from_secs(30),
        client.resolve_blob(&repo, &blob.digest),
    )
    .await
    .expect("the client waited for ever")
    .unwrap_err();
    assert!(
        matches!(error, oci_store::Error::Unavailable { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("no answer"), "{error}");
    let heads = proxy.log().iter().filter(|s| s.method == "HEAD").count();
    assert_eq!(heads, 2, "sent again once, then given up");
    // Once the registry answers again, so does the client.
    assert_eq!(
        client.resolve_blob(&repo, &blob.digest).await.unwrap().size,
        1000
    );
}

/// An upload the registry stops reading: the client's body stops moving once the
/// connection's buffers are full, and the push fails after the stall timeout with nothing
/// stored. An upload that moves is waited for however long it takes: the same push, slowed
/// by a pause longer than the stall timeout in the answer's body only, goes through.
#[tokio::test]
async fn an_upload_the_registry_stops_reading_fails_after_the_stall_timeout() {
    let (listening, memory) = server(false).await;
    let proxy = Proxy::start(listening.local_addr()).await;
    let repo = repo("stalled-upload");
    let client = stalling_client(&proxy, Duration::from_millis(500)).await;
    let content = seeded_bytes(5, 64 << 20);
    let digest = Digest::sha256(&content);
    let descriptor = Descriptor::new(octet(), digest.clone(), content.len() as u64);
    proxy.add(Rule::new(
        Some("PUT"),
        "/blobs/uploads/",
        1,
        Fault::StallRequestAfter(64 << 10),
    ));
    // In pieces of 1 MiB, as a file is read: the patience for a committing registry grows
    // with what the connection took.
    let pieces: Vec<oci_store::Result<Bytes>> = (0..content.len())
        .step_by(1 << 20)
        .map(|at| Ok(content.slice(at..(at + (1 << 20)).min(content.len()))))
        .collect();
    let body: oci_store::BlobBody =
        futures::stream::StreamExt::boxed(futures::stream::iter(pieces)).into();
    let error = tokio::time::timeout(
        Duration::from_secs(60),
        client.push_blob(&repo, &descriptor, body),
    )
    .await
    .expect("the client waited for ever")
    .unwrap_err();
    assert!(
        matches!(error, oci_store::Error::Unavailable { .. }),
        "{error}"
    );
    assert_nothing_stored(&memory, &repo, &digest).await;
    client
        .push_blob(&repo, &descriptor, oci_store::body_from_bytes(content))
        .await
        .unwrap();
    memory.resolve_blob(&repo, &digest).await.unwrap();
}

/// A registry may take a while to answer an upload once the body is sent (it commits it:
/// hashes it, or copies it within its object storage): the client waits longer than the stall
/// timeout for that, a second more for every 10 MiB sent. Here 16 MiB buy 1.6 s, and the
/// answer comes after 1 s, three times the stall timeout.
#[tokio::test]
async fn a_large_upload_gives_the_registry_time_to_commit_it() {
    let (listening, memory) = server(false).await;
    let proxy = Proxy::start(listening.local_addr()).await;
    let repo = repo("slow-commit");
    let client = stalling_client(&proxy, Duration::from_millis(300)).await;
    let content = seeded_bytes(7, 16 << 20);
    let digest = Digest::sha256(&content);
    let descriptor = Descriptor::new(octet(), digest.clone(), content.len() as u64);
    proxy.add(Rule::new(
        Some("PUT"),
        "/blobs/uploads/",
        1,
        Fault::DelayHead(Duration::from_secs(1)),
    ));
    client
        .push_blob(&repo, &descriptor, oci_store::body_from_bytes(content))
        .await
        .unwrap();
    memory.resolve_blob(&repo, &digest).await.unwrap();
}

/// A manifest whose body stops mid-way is asked for again, like one whose connection broke.
#[tokio::test]
async fn a_manifest_body_that_stalls_is_asked_for_again() {
    let (listening, memory) = server(false).await;
    let proxy = Proxy::start(listening.local_addr()).await;
    let repo = repo("stalled-manifest");
    let layer = stored(&memory, &repo, &seeded_bytes(6, 2000)).await;
    let config = stored(&memory, &repo, &Bytes::from_static(b"{}")).await;
    let manifest = ImageManifest::new(config, vec![layer]);
    let bytes = Bytes::from(manifest.to_json());
    memory
        .push_manifest(
            &repo,
            bytes.clone(),
            &MediaType::from_static(media_type::OCI_MANIFEST),
            &PushManifestParams::new().with_tag("v1".parse().unwrap()),
        )
        .await
        .unwrap();
    let client = stalling_client(&proxy, Duration::from_millis(300)).await;
    proxy.add(Rule::new(
        Some("GET"),
        "/manifests/",
        1,
        Fault::StallAfter(10),
    ));
    let read = tokio::time::timeout(
        Duration::from_secs(30),
        client.get_tag(&repo, &"v1".parse().unwrap()),
    )
    .await
    .expect("the client waited for ever")
    .unwrap()
    .bytes(1 << 20)
    .await
    .unwrap();
    assert_eq!(read, bytes);
    let gets = proxy.log().iter().filter(|s| s.method == "GET").count();
    assert_eq!(gets, 2, "the stalled answer, then a whole one");
}

/// A ranged read cut off mid-way resumes too, within its range.
#[tokio::test]
async fn a_ranged_read_cut_off_midway_resumes_within_its_range() {
    let (listening, memory) = server(false).await;
    let proxy = Proxy::start(listening.local_addr()).await;
    let repo = repo("range-resume");
    let content = seeded_bytes(2, 512 * 1024);
    let blob = stored(&memory, &repo, &content).await;
    let client = client(&proxy, None).await;
    proxy.add(Rule::new(
        Some("GET"),
        &format!("/blobs/{}", blob.digest),
        1,
        Fault::CutAfter(50_000),
    ));
    let reader = client
        .get_blob_range(&repo, &blob.digest, 100_000, Some(400_000))
        .await
        .unwrap();
    let got = reader.bytes(1 << 20).await.unwrap();
    assert!(got == content.slice(100_000..400_000), "the range, whole");
    let gets = blob_gets(&proxy.log(), &blob.digest);
    assert_eq!(gets.len(), 2, "{gets:#?}");
    assert_eq!(gets[0].header("range"), Some("bytes=100000-399999"));
    assert_eq!(gets[1].header("range"), Some("bytes=150000-399999"));
}

/// `429 Too Many Requests` with `Retry-After: 1` is retried, after the second asked for.
#[tokio::test]
async fn too_many_requests_is_retried_after_the_delay_asked() {
    let (listening, memory) = server(false).await;
    let proxy = Proxy::start(listening.local_addr()).await;
    let repo = repo("slow-down");
    let content = seeded_bytes(3, 10_000);
    let blob = stored(&memory, &repo, &content).await;
    let client = client(&proxy, None).await;
    proxy.add(Rule::new(
        Some("GET"),
        "/blobs/",
        1,
        Fault::Answer(429, vec![("Retry-After".to_owned(), "1".to_owned())]),
    ));
    let got = client
        .get_blob_bytes(&repo, &blob.digest, 1 << 20)
        .await
        .unwrap();
    assert!(got == content);
    let gets = blob_gets(&proxy.log(), &blob.digest);
    assert_eq!(gets.len(), 2, "{gets:#?}");
    assert_eq!(gets[0].status, 429);
    let waited = gets[1].at.duration_since(gets[0].at);
    assert!(
        waited >= Duration::from_millis(950),
        "the retry waited for Retry-After (1 s), not {waited:?}"
    );

    // The same for a manifest pushed (a PUT with the body in hand can be sent again).
    let manifest = ImageManifest::new(
        Descriptor::new(
            MediaType::from_static(media_type::OCI_CONFIG),
            blob.digest.clone(),
            blob.size,
        ),
        vec![],
    )
    .to_json();
    proxy.clear_log();
    proxy.add(Rule::new(
        Some("PUT"),
        "/manifests/",
        1,
        Fault::Answer(429, vec![("Retry-After".to_owned(), "1".to_owned())]),
    ));
    let pushed = client
        .push_manifest(
            &repo,
            manifest.into(),
            &MediaType::from_static(media_type::OCI_MANIFEST),
            &PushManifestParams::new().with_tag("v1".parse().unwrap()),
        )
        .await
        .unwrap();
    let puts: Vec<Seen> = proxy
        .log()
        .into_iter()
        .filter(|s| s.method == "PUT")
        .collect();
    assert_eq!(puts.len(), 2, "{puts:#?}");
    assert!(puts[1].at.duration_since(puts[0].at) >= Duration::from_millis(950));
    assert_eq!(
        memory
            .resolve_tag(&repo, &"v1".parse().unwrap())
            .await
            .unwrap()
            .digest,
        pushed.digest
    );
}

/// A burst of 503s shorter than the client's attempts is retried through; a longer one ends
/// in an error naming the status, after exactly the attempts allowed.
#[tokio::test]
async fn a_burst_of_503_is_retried_through() {
    let (listening, memory) = server(false).await;
    let proxy = Proxy::start(listening.local_addr()).await;
    let repo = repo("unavailable");
    let content = seeded_bytes(4, 10_000);
    let blob = stored(&memory, &repo, &content).await;
    let client = client(&proxy, None).await;

    for (method, fault_path) in [("HEAD", "/blobs/"), ("GET", "/blobs/")] {
        proxy.clear_log();
        proxy.add(Rule::new(
            Some(method),
            fault_path,
            3,
            Fault::Answer(503, vec![]),
        ));
        if method == "HEAD" {
            assert_eq!(
                client.resolve_blob(&repo, &blob.digest).await.unwrap().size,
                blob.size
            );
        } else {
            assert!(
                client
                    .get_blob_bytes(&repo, &blob.digest, 1 << 20)
                    .await
                    .unwrap()
                    == content
            );
        }
        let statuses: Vec<u16> = proxy.log().iter().map(|s| s.status).collect();
        assert_eq!(statuses, [503, 503, 503, 200], "{method}");
    }

    // Tag listing and manifest reads too.
    let manifest = ImageManifest::new(
        Descriptor::new(
            MediaType::from_static(media_type::OCI_CONFIG),
            blob.digest.clone(),
            blob.size,
        ),
        vec![],
    )
    .to_json();
    let pushed = memory
        .push_manifest(
            &repo,
            manifest.into(),
            &MediaType::from_static(media_type::OCI_MANIFEST),
            &PushManifestParams::new().with_tag("v1".parse().unwrap()),
        )
        .await
        .unwrap();
    proxy.add(Rule::new(
        Some("GET"),
        "/tags/list",
        2,
        Fault::Answer(503, vec![]),
    ));
    proxy.add(Rule::new(
        None,
        "/manifests/",
        2,
        Fault::Answer(503, vec![]),
    ));
    let tags: Vec<oci_types::Tag> =
        futures::TryStreamExt::try_collect(client.tags(&repo, &Default::default()))
            .await
            .unwrap();
    assert_eq!(tags, ["v1".parse().unwrap()]);
    assert_eq!(
        client
            .resolve_tag(&repo, &"v1".parse().unwrap())
            .await
            .unwrap()
            .digest,
        pushed.digest
    );
    assert_eq!(proxy.pending_faults(), 0);

    // Longer than the attempts: an error with the status, after 5 attempts.
    proxy.clear_log();
    proxy.add(Rule::new(
        Some("HEAD"),
        "/blobs/",
        50,
        Fault::Answer(503, vec![]),
    ));
    let error = client
        .resolve_blob(&repo, &blob.digest)
        .await
        .expect_err("503 every time");
    assert!(
        error.to_string().contains("503"),
        "the error names the status: {error}"
    );
    assert_eq!(proxy.log().len(), 5, "exactly the attempts allowed");
}

/// The request that starts an upload (`POST /v2/<name>/blobs/uploads/`, no body) answered
/// 503 twice: 503 says the request was not processed, and the POST carries no body, so it can
/// be sent again; the push goes through.
#[tokio::test]
async fn an_upload_start_answered_503_is_retried() {
    let (listening, memory) = server(false).await;
    let proxy = Proxy::start(listening.local_addr()).await;
    let repo = repo("upload-start-unavailable");
    let client = client(&proxy, None).await;
    let content = seeded_bytes(5, 100_000);
    proxy.add(Rule::new(
        Some("POST"),
        "/blobs/uploads/",
        2,
        Fault::Answer(503, vec![]),
    ));
    let pushed = client
        .push_blob_bytes(&repo, octet(), content.clone())
        .await;
    let pushed = pushed.unwrap_or_else(|e| {
        panic!(
            "a blob push whose upload start got 503 twice fails instead of being retried: {e}; \
             requests: {:?}",
            steps(&proxy.log())
        )
    });
    assert!(
        memory
            .get_blob_bytes(&repo, &pushed.digest, 1 << 20)
            .await
            .unwrap()
            == content
    );
}

/// A chunk of a chunked upload (`PATCH` with `Content-Range`, the chunk in hand) answered 503
/// twice: sending it again is harmless (the registry checks the range), and the push goes
/// through.
#[tokio::test]
async fn an_upload_chunk_answered_503_is_retried() {
    let (listening, memory) = server(false).await;
    let proxy = Proxy::start(listening.local_addr()).await;
    let repo = repo("upload-chunk-unavailable");
    let client = RegistryClient::builder(&proxy.host())
        .with_credential_files(Vec::new())
        .with_retry(RetryPolicy::default().with_base_delay(Duration::from_millis(50)))
        .with_monolithic_limit(10_000)
        .with_chunk_size(30_000)
        .build()
        .await
        .unwrap();
    let content = seeded_bytes(15, 100_000);
    proxy.add(Rule::new(
        Some("PATCH"),
        "/blobs/uploads/",
        2,
        Fault::Answer(503, vec![]),
    ));
    let pushed = client
        .push_blob_bytes(&repo, octet(), content.clone())
        .await;
    let pushed = pushed.unwrap_or_else(|e| {
        panic!(
            "a chunked push whose first PATCH got 503 twice fails instead of being retried: {e}; \
             requests: {:?}",
            steps(&proxy.log())
        )
    });
    assert!(
        memory
            .get_blob_bytes(&repo, &pushed.digest, 1 << 20)
            .await
            .unwrap()
            == content
    );
}

/// The closing `PUT` of a monolithic push streams the caller's body, which cannot be sent
/// twice: answered 429 with `Retry-After`, the push fails with `TOOMANYREQUESTS` carrying the
/// delay (for the caller to retry), and nothing is stored.
#[tokio::test]
async fn a_streamed_upload_answered_429_fails_with_the_delay_and_stores_nothing() {
    let (listening, memory) = server(false).await;
    let proxy = Proxy::start(listening.local_addr()).await;
    let repo = repo("upload-put-slow-down");
    let client = client(&proxy, None).await;
    let content = seeded_bytes(16, 2 << 20);
    proxy.add(Rule::new(
        Some("PUT"),
        "/blobs/uploads/",
        1,
        Fault::Answer(429, vec![("Retry-After".to_owned(), "1".to_owned())]),
    ));
    let error = client
        .push_blob_bytes(&repo, octet(), content.clone())
        .await
        .expect_err("a streamed body is not sent twice");
    assert_eq!(error.code(), Some(ErrorCode::TooManyRequests), "{error}");
    assert!(
        matches!(
            error,
            oci_store::Error::TooManyRequests {
                retry_after: Some(delay)
            } if delay == Duration::from_secs(1)
        ),
        "the delay asked is kept: {error:?}"
    );
    assert_nothing_stored(&memory, &repo, &Digest::sha256(&content)).await;
    // Sent again by the caller, it goes through.
    client
        .push_blob_bytes(&repo, octet(), content.clone())
        .await
        .unwrap();
}

fn steps(log: &[Seen]) -> Vec<(String, String, u16)> {
    log.iter()
        .map(|s| (s.method.clone(), s.path().to_owned(), s.status))
        .collect()
}

/// A redirected blob download is followed; the other host gets no `Authorization` header (the
/// client has basic credentials, sent to the registry with every request), and the content is
/// verified. A resumption after a cut goes through the registry again, and to the other host
/// with `Range`, still without credentials.
#[tokio::test]
async fn a_redirect_to_another_host_is_followed_without_credentials() {
    let (listening, memory) = server(true).await;
    let proxy = Proxy::start(listening.local_addr()).await;
    let other = OtherHost::start().await;
    let repo = repo("redirected");
    let content = seeded_bytes(6, 256 * 1024);
    let blob = stored(&memory, &repo, &content).await;
    other.serve(&blob.digest, content.clone());
    let client = client(
        &proxy,
        Some(Credentials::Basic {
            username: USER.to_owned(),
            password: PASSWORD.to_owned(),
        }),
    )
    .await;
    proxy.add(
        Rule::new(
            Some("GET"),
            &format!("/blobs/{}", blob.digest),
            2,
            Fault::RedirectTo(other.url()),
        )
        .authenticated(),
    );
    let got = client
        .get_blob_bytes(&repo, &blob.digest, 1 << 20)
        .await
        .unwrap();
    assert!(got == content);
    let to_registry = blob_gets(&proxy.log(), &blob.digest);
    assert!(
        to_registry.iter().any(|s| s.status == 307
            && s.action.starts_with("RedirectTo")
            && s.header("authorization").is_some()),
        "the registry was asked with credentials and redirected: {to_registry:#?}"
    );
    let seen = other.log();
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(seen[0].method, "GET");
    for request in &seen {
        assert_eq!(
            request.header("authorization"),
            None,
            "credentials leaked to the other host: {request:#?}"
        );
    }

    // A download cut off mid-way: the resumption goes back to the registry (with credentials),
    // which redirects; the other host is asked for the rest with `Range`, without them.
    let other_content = seeded_bytes(7, 256 * 1024);
    let second = stored(&memory, &repo, &other_content).await;
    other.serve(&second.digest, other_content.clone());
    proxy.add(Rule::new(
        Some("GET"),
        &format!("/blobs/{}", second.digest),
        1,
        Fault::CutAfter(70_000),
    ));
    proxy.add(
        Rule::new(
            Some("GET"),
            &format!("/blobs/{}", second.digest),
            1,
            Fault::RedirectTo(other.url()),
        )
        .authenticated(),
    );
    let got = client
        .get_blob_bytes(&repo, &second.digest, 1 << 20)
        .await
        .unwrap();
    assert!(got == other_content);
    let seen: Vec<Seen> = other
        .log()
        .into_iter()
        .filter(|s| s.path().ends_with(second.digest.as_str()))
        .collect();
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(
        seen[0].header("range"),
        Some(format!("bytes=70000-{}", other_content.len() - 1).as_str())
    );
    assert_eq!(seen[0].header("authorization"), None);
}

/// The other host serves wrong content: the read fails with `DIGEST_INVALID`.
#[tokio::test]
async fn wrong_content_from_the_other_host_is_refused() {
    let (listening, memory) = server(false).await;
    let proxy = Proxy::start(listening.local_addr()).await;
    let other = OtherHost::start().await;
    let repo = repo("redirected-wrong");
    let content = seeded_bytes(8, 50_000);
    let blob = stored(&memory, &repo, &content).await;
    let mut wrong = content.to_vec();
    wrong[25_000] ^= 1;
    other.serve(&blob.digest, Bytes::from(wrong));
    let client = client(&proxy, None).await;
    proxy.add(Rule::new(
        Some("GET"),
        "/blobs/",
        1,
        Fault::RedirectTo(other.url()),
    ));
    let error = client
        .get_blob_bytes(&repo, &blob.digest, 1 << 20)
        .await
        .expect_err("wrong content is not returned");
    assert_eq!(error.code(), Some(ErrorCode::DigestInvalid), "{error}");
}

/// A byte damaged in transit on the way down: reading the blob (or a manifest) fails with
/// `DIGEST_INVALID` rather than return it.
#[tokio::test]
async fn a_byte_damaged_on_the_way_down_is_refused() {
    let (listening, memory) = server(false).await;
    let proxy = Proxy::start(listening.local_addr()).await;
    let repo = repo("damaged-down");
    let content = seeded_bytes(9, 200_000);
    let blob = stored(&memory, &repo, &content).await;
    let client = client(&proxy, None).await;
    proxy.add(Rule::new(
        Some("GET"),
        "/blobs/",
        1,
        Fault::CorruptResponse(123_456),
    ));
    let error = client
        .get_blob_bytes(&repo, &blob.digest, 1 << 20)
        .await
        .expect_err("damaged content is not returned");
    assert_eq!(error.code(), Some(ErrorCode::DigestInvalid), "{error}");

    // A manifest too.
    let manifest = ImageManifest::new(
        Descriptor::new(
            MediaType::from_static(media_type::OCI_CONFIG),
            blob.digest.clone(),
            blob.size,
        ),
        vec![],
    )
    .to_json();
    let pushed = memory
        .push_manifest(
            &repo,
            manifest.into(),
            &MediaType::from_static(media_type::OCI_MANIFEST),
            &PushManifestParams::new(),
        )
        .await
        .unwrap();
    proxy.add(Rule::new(
        Some("GET"),
        "/manifests/",
        1,
        Fault::CorruptResponse(20),
    ));
    let error = client
        .get_manifest(&repo, &pushed.digest)
        .await
        .unwrap()
        .bytes(1 << 20)
        .await
        .expect_err("a damaged manifest is not returned");
    assert_eq!(error.code(), Some(ErrorCode::DigestInvalid), "{error}");
}

/// A byte damaged in transit on the way up: the server refuses the upload and stores nothing;
/// the client reports `DIGEST_INVALID`. Monolithic and chunked alike.
#[tokio::test]
async fn a_byte_damaged_on_the_way_up_is_not_stored() {
    let (listening, memory) = server(false).await;
    let proxy = Proxy::start(listening.local_addr()).await;
    let repo = repo("damaged-up");
    let client = client(&proxy, None).await;
    let content = seeded_bytes(10, 2 << 20);
    let digest = Digest::sha256(&content);
    proxy.add(Rule::new(
        Some("PUT"),
        "/blobs/uploads/",
        1,
        Fault::CorruptRequest(5_000),
    ));
    let error = client
        .push_blob_bytes(&repo, octet(), content.clone())
        .await
        .expect_err("a damaged upload is refused");
    assert_eq!(error.code(), Some(ErrorCode::DigestInvalid), "{error}");
    assert_nothing_stored(&memory, &repo, &digest).await;

    // Chunked: a PATCH damaged.
    let chunked = chunked_client(&proxy).await;
    proxy.add(Rule::new(
        Some("PATCH"),
        "/blobs/uploads/",
        1,
        Fault::CorruptRequest(17),
    ));
    let error = chunked
        .push_blob_bytes(&repo, octet(), content.clone())
        .await
        .expect_err("a damaged chunked upload is refused");
    assert_eq!(error.code(), Some(ErrorCode::DigestInvalid), "{error}");
    assert_nothing_stored(&memory, &repo, &digest).await;
    let patches = proxy.log().iter().filter(|s| s.method == "PATCH").count();
    assert!(
        patches >= 3,
        "the upload went in chunks ({patches} PATCHes)"
    );
}

/// A push whose body does not match the size the caller stated: the client's own check aborts
/// the body before the server can commit it, and nothing is stored.
#[tokio::test]
async fn a_push_with_a_wrong_size_stores_nothing() {
    let (listening, memory) = server(false).await;
    let proxy = Proxy::start(listening.local_addr()).await;
    let repo = repo("wrong-size");
    let client = client(&proxy, None).await;
    let content = seeded_bytes(11, 100_000);
    let digest = Digest::sha256(&content);
    for stated in [content.len() as u64 + 1, content.len() as u64 - 1] {
        let descriptor = Descriptor::new(octet(), digest.clone(), stated);
        let error = client
            .push_blob(
                &repo,
                &descriptor,
                oci_store::body_from_bytes(content.clone()),
            )
            .await
            .expect_err("a body of the wrong size is refused");
        assert_eq!(
            error.code(),
            Some(ErrorCode::SizeInvalid),
            "stated {stated}: {error}"
        );
        assert_nothing_stored(&memory, &repo, &digest).await;
    }
    // And the right size goes through the same way.
    let descriptor = Descriptor::new(octet(), digest.clone(), content.len() as u64);
    client
        .push_blob(&repo, &descriptor, oci_store::body_from_bytes(content))
        .await
        .unwrap();
    memory.resolve_blob(&repo, &digest).await.unwrap();
}

/// A copy pushes another store's verified read (`into_stream`, hashed as it streams) or, as
/// the copy engine does, the read taken out for a push (`into_stream_for_push`: nobody in
/// hoist hashes it, the client only counts what it uploads). Either way corrupt content must
/// be refused, by the read's own check before the registry commits or by the registry's check
/// when it does, reported as `DIGEST_INVALID` with nothing stored, in each upload strategy.
async fn a_corrupt_read_stores_nothing(name: &str, seed: u64, for_push: bool) {
    let (listening, memory) = server(false).await;
    let proxy = Proxy::start(listening.local_addr()).await;
    let repo = repo(name);
    let streamed = client(&proxy, None).await;
    let chunked = chunked_client(&proxy).await;
    let take_out = |reader: BlobReader| {
        if for_push {
            reader.into_stream_for_push()
        } else {
            reader.into_stream()
        }
    };
    // One POST (small), POST + streamed PUT, and chunks.
    for (client, size) in [
        (&streamed, 100_000),
        (&streamed, 2 << 20),
        (&chunked, 100_000),
    ] {
        let content = seeded_bytes(seed, size);
        let descriptor = Descriptor::new(octet(), Digest::sha256(&content), size as u64);
        let mut damaged = content.to_vec();
        damaged[size / 3] ^= 1;
        let body = take_out(BlobReader::verified(
            descriptor.clone(),
            oci_store::body_from_bytes(damaged),
        ));
        assert_eq!(
            body.verified_as().is_some(),
            !for_push,
            "hashed on the way only when not taken out for a push"
        );
        let error = client
            .push_blob(&repo, &descriptor, body)
            .await
            .expect_err("corrupt content is refused");
        assert_eq!(
            error.code(),
            Some(ErrorCode::DigestInvalid),
            "{size}: {error}"
        );
        assert_nothing_stored(&memory, &repo, &descriptor.digest).await;

        let body = take_out(BlobReader::verified(
            descriptor.clone(),
            oci_store::body_from_bytes(content),
        ));
        client.push_blob(&repo, &descriptor, body).await.unwrap();
        memory
            .resolve_blob(&repo, &descriptor.digest)
            .await
            .unwrap();
        memory.delete_blob(&repo, &descriptor.digest).await.unwrap();
    }
}

#[tokio::test]
async fn a_corrupt_verified_read_pushed_without_a_second_hash_stores_nothing() {
    a_corrupt_read_stores_nothing("lying-read", 12, false).await;
}

#[tokio::test]
async fn a_corrupt_read_pushed_unhashed_is_refused_by_the_registry() {
    a_corrupt_read_stores_nothing("unhashed-read", 13, true).await;
}

// ---- upload strategies ----

/// A small blob goes in one request, `POST ?digest=` with the body, where the registry takes
/// it (hoist's server does); a registry that answers it with a new upload instead gets a PUT
/// (see `client_peers`, against the CNCF registry, which ignores such bodies).
#[tokio::test]
async fn a_small_blob_is_pushed_in_one_post() {
    let (listening, memory) = server(false).await;
    let proxy = Proxy::start(listening.local_addr()).await;
    let repo = repo("single-post");
    let client = client(&proxy, None).await;
    let content = seeded_bytes(11, 4000);
    let pushed = client
        .push_blob_bytes(&repo, octet(), content.clone())
        .await
        .unwrap();
    let uploads: Vec<_> = steps(&proxy.log())
        .into_iter()
        .filter(|(_, path, _)| path.contains("/blobs/uploads/"))
        .collect();
    assert_eq!(
        uploads,
        vec![("POST".to_owned(), format!("/v2/{repo}/blobs/uploads/"), 201)],
        "one POST with the body, answered 201"
    );
    assert_eq!(
        memory
            .get_blob_bytes(&repo, &pushed.digest, 1 << 20)
            .await
            .unwrap(),
        content
    );
}

/// A registry that refuses a whole-blob PUT with 413 (a proxy with a body limit, say): the
/// push fails, and the client sends blobs that big in chunks from then on; the copy engine
/// sends the blob again by itself, so a copy goes through.
#[tokio::test]
async fn a_put_refused_as_too_large_is_sent_again_in_chunks() {
    let (listening, memory) = server(false).await;
    let proxy = Proxy::start(listening.local_addr()).await;
    let repo = repo("put-too-large");
    let client = client(&proxy, None).await;
    let content = seeded_bytes(12, 3 << 20);
    proxy.add(Rule::new(
        Some("PUT"),
        "/blobs/uploads/",
        1,
        Fault::Answer(413, vec![]),
    ));
    let error = client
        .push_blob_bytes(&repo, octet(), content.clone())
        .await
        .expect_err("the PUT was refused");
    assert_eq!(error.http_status(), 413, "{error}");
    let digest = Digest::sha256(&content);
    assert_nothing_stored(&memory, &repo, &digest).await;

    proxy.clear_log();
    client
        .push_blob_bytes(&repo, octet(), content.clone())
        .await
        .unwrap();
    let log = steps(&proxy.log());
    assert!(
        log.iter().any(|(method, _, _)| method == "PATCH"),
        "chunks after the 413: {log:?}"
    );
    assert_eq!(
        memory
            .get_blob_bytes(&repo, &digest, 8 << 20)
            .await
            .unwrap(),
        content
    );
}

/// The copy engine over the same refusal: the first attempt gets 413, the second goes in
/// chunks, and the image lands whole.
#[tokio::test]
async fn a_copy_gets_past_a_put_refused_as_too_large() {
    let (listening, memory) = server(false).await;
    let proxy = Proxy::start(listening.local_addr()).await;
    let repo = repo("copy-put-too-large");
    let client = client(&proxy, None).await;
    let source = MemoryStore::new();
    let layer = stored(&source, &repo, &seeded_bytes(13, 3 << 20)).await;
    let config = source
        .push_blob_bytes(
            &repo,
            MediaType::from_static(media_type::OCI_CONFIG),
            Bytes::from_static(b"{}"),
        )
        .await
        .unwrap();
    let tag = oci_types::Tag::parse("v1").unwrap();
    let manifest = ImageManifest::new(config, vec![layer.clone()]).to_json();
    source
        .push_manifest(
            &repo,
            manifest.into(),
            &MediaType::from_static(media_type::OCI_MANIFEST),
            &PushManifestParams::new().with_tag(tag.clone()),
        )
        .await
        .unwrap();
    proxy.add(Rule::new(
        Some("PUT"),
        "/blobs/uploads/",
        1,
        Fault::Answer(413, vec![]),
    ));
    let report = oci_build::copy(
        oci_build::Endpoint::new(&source, &repo),
        &oci_build::ManifestRef::Tag(tag.clone()),
        oci_build::Endpoint::new(&client, &repo),
        std::slice::from_ref(&tag),
        &oci_build::CopyOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(report.blobs_copied, 2);
    assert_eq!(proxy.pending_faults(), 0, "the 413 was met");
    assert_eq!(
        memory.resolve_tag(&repo, &tag).await.unwrap().digest,
        report.root.unwrap().digest
    );
    assert!(memory.resolve_blob(&repo, &layer.digest).await.is_ok());
}
