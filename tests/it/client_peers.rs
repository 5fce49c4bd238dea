//! The registry client against real registries and real credential files:
//! - the CNCF distribution registry (`docker-registry` 2.8), anonymous on loopback: the whole
//!   conformance suite through the client (`cncf_registry::*`), with what the registry cannot
//!   do excluded by capability ([`cncf_capabilities`]); `_catalog` paging; a tag listing
//!   longer than the client's page; corrupt content pushed unhashed refused by the registry;
//! - the same registry with htpasswd basic auth over TLS with a CA of the test's own, given to
//!   the client: the suite again, and refusals without the CA or with wrong credentials;
//! - the token flow against `hoist serve --token-auth --htpasswd` (and hoist's server in
//!   process, for short token lifetimes): scopes asked per repository, tokens reused while
//!   good, a fresh one after a 401, OAuth2 identity tokens;
//! - credentials from a docker `config.json` (`auths`, `credHelpers` with a helper program of
//!   the test's) and a containers `auth.json`, used for real against a registry requiring them.
//!
//! Token requests are counted with the proxy of [`crate::client_faults`], placed between the
//! client and the server (the server's challenge names the host the client asked, so the
//! token endpoint is reached through the proxy too).

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use oci_registry::{Clock, Credentials, RegistryClient, RetryPolicy};
use oci_server::{Auth, Htpasswd, Listening, RegistryServer};
use oci_store::conformance::{Capabilities, Corrupter, Fixture, all_cases, seeded_bytes};
use oci_store::{
    BlobBody, BlobReader, BlobWriter, ErrorCode, ListParams, MemoryStore, OciInterface,
    OciInterfaceExt, PushManifestParams, ReferrersParams,
};
use oci_types::{Descriptor, Digest, ImageManifest, MediaType, Repository, Tag, media_type};

use crate::fault_proxy::{Proxy, Seen};
use crate::support::{ServeProcess, certificates, free_addr, peer, run, workspace_root};

const USER: &str = "hoister";
const PASSWORD: &str = "correct horse battery staple";

fn peers_dir() -> PathBuf {
    workspace_root().join("tests/peers")
}

/// An htpasswd line for [`USER`] (bcrypt, the cheapest cost: the CNCF registry checks it on
/// every request).
fn htpasswd_line() -> String {
    format!("{USER}:{}\n", bcrypt::hash(PASSWORD, 4).unwrap())
}

fn basic() -> Credentials {
    Credentials::Basic {
        username: USER.to_owned(),
        password: PASSWORD.to_owned(),
    }
}

/// Every source of an error, joined: the transport's reasons are in the chain.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Where the CNCF registry's filesystem storage keeps a blob's bytes.
fn cncf_blob_path(data: &Path, digest: &oci_types::Digest) -> PathBuf {
    let hex = digest.encoded();
    data.join("docker/registry/v2/blobs")
        .join(digest.algorithm().to_string())
        .join(&hex[..2])
        .join(hex)
        .join("data")
}

/// Damages a blob in the CNCF registry's storage (flips its first byte).
fn cncf_corrupter(data: PathBuf) -> Corrupter {
    Arc::new(move |_repo, digest| {
        let path = cncf_blob_path(&data, &digest);
        Box::pin(async move {
            let Ok(mut bytes) = std::fs::read(&path) else {
                return false;
            };
            match bytes.first_mut() {
                Some(first) => *first ^= 0xff,
                None => bytes.push(0),
            }
            std::fs::write(&path, bytes).is_ok()
        })
    })
}

// ---- the CNCF registry, anonymous, shared by the tests of this binary ----

/// The CNCF registry started by `tests/peers/start-registry.sh` once per test binary, in a
/// directory of its own on a free port. A static is never dropped, so a reaper process started
/// with it waits for the test binary to exit, then stops the registry with `stop-registry.sh`
/// (`REGISTRY_WIPE=1`) and removes the directory.
#[derive(Debug)]
pub(crate) struct SharedCncf {
    dir: PathBuf,
    pub(crate) addr: SocketAddr,
    _reaper: Child,
}

impl SharedCncf {
    fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("hoist-cncf-")
            .tempdir()
            .unwrap()
            .keep();
        let addr = free_addr();
        // The reaper first, so that a registry that starts but does not answer is stopped too.
        let reaper = Command::new("setsid")
            .args([
                "bash",
                "-c",
                "tail --pid=\"$HOIST_TEST_PID\" -f /dev/null; \
                 REGISTRY_WIPE=1 bash \"$STOP\" >/dev/null 2>&1; rm -rf \"$REGISTRY_DIR\"",
            ])
            .env("HOIST_TEST_PID", std::process::id().to_string())
            .env("STOP", peers_dir().join("stop-registry.sh"))
            .env("REGISTRY_DIR", &dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let output = Command::new("bash")
            .arg(peers_dir().join("start-registry.sh"))
            .env("REGISTRY_DIR", &dir)
            .env("REGISTRY_ADDR", addr.to_string())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "start-registry.sh failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        Self {
            dir,
            addr,
            _reaper: reaper,
        }
    }
}

/// The shared registry, started on first use; `None` (after saying why) when the peer is not
/// installed.
pub(crate) fn shared_cncf() -> Option<&'static SharedCncf> {
    static REGISTRY: OnceLock<Option<SharedCncf>> = OnceLock::new();
    REGISTRY
        .get_or_init(|| {
            peer("docker-registry")?;
            peer("curl")?;
            Some(SharedCncf::start())
        })
        .as_ref()
}

/// What the CNCF registry 2.8 cannot do, as the conformance suite found it (each checked by
/// hand with curl against the registry, not just inferred from the client):
/// - SHA-512 manifests: a manifest PUT under a `sha512:` digest is refused with 400
///   `DIGEST_INVALID` ("provided digest did not match uploaded content": the registry only
///   computes SHA-256 of manifests). SHA-512 blobs and uploads do work (`blob_sha512` and
///   `upload_sha512` pass with the capability on), but the flag covers both.
/// - Repository listing: `_catalog` lists a repository only once it has a blob linked
///   (`_layers` in its storage), so repositories holding only manifests, like those of
///   `repositories_paged`, are never listed. Listing and `Link` paging of repositories with
///   blobs work: [`cncf_catalog_lists_and_pages_repositories_with_blobs`].
/// - Deleting a tag alone (`DELETE /v2/<name>/manifests/<tag>`) is refused with 400
///   `DIGEST_INVALID`.
fn cncf_capabilities() -> Capabilities {
    Capabilities::all()
        .without_sha512()
        .without_repository_listing()
        .without_tag_deletes()
}

/// Checks of the suite that fail against the CNCF registry 2.8 for lack of a capability flag:
/// none since the client learnt the registry's ways (unsorted tags without paging, upload URLs
/// that move with every answer, referrers kept by the client in the tag schema).
const CNCF_KNOWN_FAILURES: &[&str] = &[];

/// A fixture of the shared CNCF registry: a client of its own per test (each test has its own
/// runtime, and a client's connections belong to the runtime that made them).
///
/// Without `docker-registry` installed (and peers not required), `None` after [`skip`] said
/// so: the case then ends at once, run against nothing else.
///
/// [`skip`]: crate::support::skip
async fn cncf_fixture() -> Option<Fixture> {
    let Some(registry) = tokio::task::spawn_blocking(shared_cncf).await.unwrap() else {
        crate::support::skip("docker-registry not installed (run tests/peers/install.sh)");
        return None;
    };
    let client = RegistryClient::builder(&registry.addr.to_string())
        .with_credential_files(Vec::new())
        .with_retry(RetryPolicy::default().with_attempts(2))
        .build()
        .await
        .unwrap();
    let fixture = Fixture::new(Deadline::new(client, CASE_DEADLINE))
        .with_caps(cncf_capabilities())
        .with_corrupter(cncf_corrupter(registry.dir.join("data")));
    Some(fixture)
}

/// Long enough for any case against a real registry here (they take a few seconds at most).
const CASE_DEADLINE: Duration = Duration::from_secs(30);

/// A store that answers every call with an error after a deadline: a check that would never
/// end against a misbehaving store (one that ignores `start_after`, say) fails instead of
/// hanging the test run. `conformance_tests!` makes the tests, so this is the place to bound
/// them.
#[derive(Debug)]
struct Deadline {
    inner: RegistryClient,
    until: Instant,
}

impl Deadline {
    fn new(inner: RegistryClient, after: Duration) -> Self {
        Self {
            inner,
            until: Instant::now() + after,
        }
    }

    fn check(&self) -> oci_store::Result<()> {
        if Instant::now() < self.until {
            return Ok(());
        }
        Err(oci_store::Error::io(
            format!("{}: still running after {CASE_DEADLINE:?}", self.inner),
            std::io::Error::from(std::io::ErrorKind::TimedOut),
        ))
    }

    fn listing<T: Send + 'static>(
        &self,
        listing: BoxStream<'static, oci_store::Result<T>>,
    ) -> BoxStream<'static, oci_store::Result<T>> {
        match self.check() {
            Ok(()) => listing,
            Err(error) => futures::stream::once(async move { Err(error) }).boxed(),
        }
    }
}

impl std::fmt::Display for Deadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

/// What `#[async_trait]` makes of an `async fn` of the trait (this package does not depend on
/// `async-trait`, so the impl below is written in that form by hand).
type Call<'a, T> = Pin<Box<dyn Future<Output = oci_store::Result<T>> + Send + 'a>>;

#[deny(clippy::missing_trait_methods)]
impl OciInterface for Deadline {
    fn get_blob<'s, 'r, 'd, 'a>(
        &'s self,
        repo: &'r Repository,
        digest: &'d Digest,
    ) -> Call<'a, BlobReader>
    where
        's: 'a,
        'r: 'a,
        'd: 'a,
        Self: 'a,
    {
        Box::pin(async move {
            self.check()?;
            self.inner.get_blob(repo, digest).await
        })
    }

    fn get_blob_range<'s, 'r, 'd, 'a>(
        &'s self,
        repo: &'r Repository,
        digest: &'d Digest,
        start: u64,
        end: Option<u64>,
    ) -> Call<'a, BlobReader>
    where
        's: 'a,
        'r: 'a,
        'd: 'a,
        Self: 'a,
    {
        Box::pin(async move {
            self.check()?;
            self.inner.get_blob_range(repo, digest, start, end).await
        })
    }

    fn get_manifest<'s, 'r, 'd, 'a>(
        &'s self,
        repo: &'r Repository,
        digest: &'d Digest,
    ) -> Call<'a, BlobReader>
    where
        's: 'a,
        'r: 'a,
        'd: 'a,
        Self: 'a,
    {
        Box::pin(async move {
            self.check()?;
            self.inner.get_manifest(repo, digest).await
        })
    }

    fn get_tag<'s, 'r, 't, 'a>(&'s self, repo: &'r Repository, tag: &'t Tag) -> Call<'a, BlobReader>
    where
        's: 'a,
        'r: 'a,
        't: 'a,
        Self: 'a,
    {
        Box::pin(async move {
            self.check()?;
            self.inner.get_tag(repo, tag).await
        })
    }

    fn resolve_blob<'s, 'r, 'd, 'a>(
        &'s self,
        repo: &'r Repository,
        digest: &'d Digest,
    ) -> Call<'a, Descriptor>
    where
        's: 'a,
        'r: 'a,
        'd: 'a,
        Self: 'a,
    {
        Box::pin(async move {
            self.check()?;
            self.inner.resolve_blob(repo, digest).await
        })
    }

    fn resolve_manifest<'s, 'r, 'd, 'a>(
        &'s self,
        repo: &'r Repository,
        digest: &'d Digest,
    ) -> Call<'a, Descriptor>
    where
        's: 'a,
        'r: 'a,
        'd: 'a,
        Self: 'a,
    {
        Box::pin(async move {
            self.check()?;
            self.inner.resolve_manifest(repo, digest).await
        })
    }

    fn resolve_tag<'s, 'r, 't, 'a>(
        &'s self,
        repo: &'r Repository,
        tag: &'t Tag,
    ) -> Call<'a, Descriptor>
    where
        's: 'a,
        'r: 'a,
        't: 'a,
        Self: 'a,
    {
        Box::pin(async move {
            self.check()?;
            self.inner.resolve_tag(repo, tag).await
        })
    }

    fn push_blob<'s, 'r, 'd, 'a>(
        &'s self,
        repo: &'r Repository,
        descriptor: &'d Descriptor,
        body: BlobBody,
    ) -> Call<'a, Descriptor>
    where
        's: 'a,
        'r: 'a,
        'd: 'a,
        Self: 'a,
    {
        Box::pin(async move {
            self.check()?;
            self.inner.push_blob(repo, descriptor, body).await
        })
    }

    fn push_blob_chunked<'s, 'r, 'a>(
        &'s self,
        repo: &'r Repository,
        chunk_size: Option<usize>,
    ) -> Call<'a, Box<dyn BlobWriter>>
    where
        's: 'a,
        'r: 'a,
        Self: 'a,
    {
        Box::pin(async move {
            self.check()?;
            self.inner.push_blob_chunked(repo, chunk_size).await
        })
    }

    fn push_blob_chunked_resume<'s, 'r, 'i, 'a>(
        &'s self,
        repo: &'r Repository,
        id: &'i str,
        offset: Option<u64>,
        chunk_size: Option<usize>,
    ) -> Call<'a, Box<dyn BlobWriter>>
    where
        's: 'a,
        'r: 'a,
        'i: 'a,
        Self: 'a,
    {
        Box::pin(async move {
            self.check()?;
            self.inner
                .push_blob_chunked_resume(repo, id, offset, chunk_size)
                .await
        })
    }

    fn mount_blob<'s, 'f, 't, 'd, 'a>(
        &'s self,
        from: &'f Repository,
        to: &'t Repository,
        digest: &'d Digest,
    ) -> Call<'a, Descriptor>
    where
        's: 'a,
        'f: 'a,
        't: 'a,
        'd: 'a,
        Self: 'a,
    {
        Box::pin(async move {
            self.check()?;
            self.inner.mount_blob(from, to, digest).await
        })
    }

    fn push_manifest<'s, 'r, 'm, 'p, 'a>(
        &'s self,
        repo: &'r Repository,
        contents: Bytes,
        media_type: &'m MediaType,
        params: &'p PushManifestParams,
    ) -> Call<'a, Descriptor>
    where
        's: 'a,
        'r: 'a,
        'm: 'a,
        'p: 'a,
        Self: 'a,
    {
        Box::pin(async move {
            self.check()?;
            self.inner
                .push_manifest(repo, contents, media_type, params)
                .await
        })
    }

    fn delete_blob<'s, 'r, 'd, 'a>(
        &'s self,
        repo: &'r Repository,
        digest: &'d Digest,
    ) -> Call<'a, ()>
    where
        's: 'a,
        'r: 'a,
        'd: 'a,
        Self: 'a,
    {
        Box::pin(async move {
            self.check()?;
            self.inner.delete_blob(repo, digest).await
        })
    }

    fn delete_manifest<'s, 'r, 'd, 'a>(
        &'s self,
        repo: &'r Repository,
        digest: &'d Digest,
    ) -> Call<'a, ()>
    where
        's: 'a,
        'r: 'a,
        'd: 'a,
        Self: 'a,
    {
        Box::pin(async move {
            self.check()?;
            self.inner.delete_manifest(repo, digest).await
        })
    }

    fn delete_tag<'s, 'r, 't, 'a>(&'s self, repo: &'r Repository, tag: &'t Tag) -> Call<'a, ()>
    where
        's: 'a,
        'r: 'a,
        't: 'a,
        Self: 'a,
    {
        Box::pin(async move {
            self.check()?;
            self.inner.delete_tag(repo, tag).await
        })
    }

    fn repositories(
        &self,
        params: &ListParams,
    ) -> BoxStream<'static, oci_store::Result<Repository>> {
        self.listing(self.inner.repositories(params))
    }

    fn tags(
        &self,
        repo: &Repository,
        params: &ListParams,
    ) -> BoxStream<'static, oci_store::Result<Tag>> {
        self.listing(self.inner.tags(repo, params))
    }

    fn referrers(
        &self,
        repo: &Repository,
        digest: &Digest,
        params: &ReferrersParams,
    ) -> BoxStream<'static, oci_store::Result<Descriptor>> {
        self.listing(self.inner.referrers(repo, digest, params))
    }
}

mod cncf_registry {
    oci_store::conformance_tests!(optional super::cncf_fixture);
}

/// A client of the shared CNCF registry, if installed.
async fn cncf_client() -> Option<RegistryClient> {
    let registry = tokio::task::spawn_blocking(shared_cncf).await.unwrap()?;
    Some(
        RegistryClient::builder(&registry.addr.to_string())
            .with_credential_files(Vec::new())
            .build()
            .await
            .unwrap(),
    )
}

/// A manifest with one tag is pushed by that tag, in one PUT, on a registry without `?tag=`
/// (the CNCF registry 2.8 answers no `OCI-Tag`); several tags go with a push by digest and
/// are then pushed one by one. Seen through a proxy that logs every request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cncf_a_manifest_with_one_tag_is_put_once() {
    let Some(registry) = tokio::task::spawn_blocking(shared_cncf).await.unwrap() else {
        return;
    };
    let proxy = Proxy::start(registry.addr).await;
    let client = RegistryClient::builder(&proxy.host())
        .with_credential_files(Vec::new())
        .build()
        .await
        .unwrap();
    let repo: Repository = format!("tags-{}", std::process::id()).parse().unwrap();
    let (pushed, _) = push_image(&client, &repo, 40).await;
    let manifest_puts = |log: Vec<Seen>| -> Vec<String> {
        log.into_iter()
            .filter(|s| s.method == "PUT" && s.target.contains("/manifests/"))
            .map(|s| s.target)
            .collect()
    };
    assert_eq!(
        manifest_puts(proxy.log()),
        [format!("/v2/{repo}/manifests/v1")]
    );
    assert_eq!(
        client.resolve_tag(&repo, &tag("v1")).await.unwrap().digest,
        pushed.digest
    );

    proxy.clear_log();
    let bytes = client
        .get_manifest(&repo, &pushed.digest)
        .await
        .unwrap()
        .bytes(1 << 20)
        .await
        .unwrap();
    client
        .push_manifest(
            &repo,
            bytes,
            &MediaType::from_static(media_type::OCI_MANIFEST),
            &PushManifestParams::new()
                .with_tag(tag("a"))
                .with_tag(tag("b")),
        )
        .await
        .unwrap();
    assert_eq!(
        manifest_puts(proxy.log()),
        [
            format!("/v2/{repo}/manifests/{}?tag=a&tag=b", pushed.digest),
            format!("/v2/{repo}/manifests/a"),
            format!("/v2/{repo}/manifests/b"),
        ]
    );
    for name in ["a", "b"] {
        assert_eq!(
            client.resolve_tag(&repo, &tag(name)).await.unwrap().digest,
            pushed.digest
        );
    }
}

/// `_catalog` through the client: repositories that hold blobs are listed in order, from
/// `start_after`, and paged through the registry's `Link` headers (the suite's
/// `repositories_paged` cannot show it: its repositories hold manifests only, which this
/// registry does not list).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cncf_catalog_lists_and_pages_repositories_with_blobs() {
    let Some(client) = cncf_client().await else {
        return;
    };
    let base = format!(
        "catalog-{:x}",
        Instant::now().elapsed().as_nanos() ^ u128::from(std::process::id())
    );
    let names: Vec<Repository> = ["a", "b/c", "b", "d/e/f", "c"]
        .iter()
        .map(|suffix| format!("{base}/{suffix}").parse().unwrap())
        .collect();
    for (seed, repo) in (20..).zip(&names) {
        push_image(&client, repo, seed).await;
    }
    let mut expected: Vec<String> = names.iter().map(ToString::to_string).collect();
    expected.sort();
    let mine = |all: Vec<Repository>| -> Vec<String> {
        all.iter()
            .map(ToString::to_string)
            .filter(|n| n.starts_with(&format!("{base}/")))
            .collect()
    };
    let all: Vec<Repository> = client
        .repositories(&ListParams::new().with_start_after(base.clone()))
        .try_collect()
        .await
        .unwrap();
    assert!(all.windows(2).all(|w| w[0] < w[1]), "in order, no repeats");
    assert_eq!(mine(all), expected);
    let mut seen = Vec::new();
    let mut after = base.clone();
    loop {
        let page: Vec<Repository> = client
            .repositories(
                &ListParams::new()
                    .with_start_after(after.clone())
                    .with_limit(2),
            )
            .try_collect()
            .await
            .unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = last.to_string();
        let page = mine(page);
        if page.is_empty() {
            break;
        }
        seen.extend(page);
    }
    assert_eq!(seen, expected, "paged by 2");
}

/// A copy pushes its source's read without hashing it (`into_stream_for_push`) and the client
/// only counts what it uploads: the digest is the registry's to check when it commits the
/// upload. The CNCF registry must refuse corrupt content so sent with `DIGEST_INVALID` and
/// store nothing, in each way the client uploads (POST then streamed PUT, after the registry
/// ignored a single POST's body, and chunks); the right content then goes in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cncf_registry_refuses_a_corrupt_blob_pushed_unhashed() {
    let Some(registry) = tokio::task::spawn_blocking(shared_cncf).await.unwrap() else {
        return;
    };
    let builder =
        || RegistryClient::builder(&registry.addr.to_string()).with_credential_files(Vec::new());
    let whole = builder().build().await.unwrap();
    let chunked = builder()
        .with_monolithic_limit(10_000)
        .with_chunk_size(30_000)
        .build()
        .await
        .unwrap();
    let repo: Repository = format!("unhashed/x{}", std::process::id()).parse().unwrap();
    for (seed, client, size) in [
        (4711, &whole, 100_000),
        (4712, &whole, 2 << 20),
        (4713, &chunked, 100_000),
    ] {
        let content = seeded_bytes(seed, size);
        let descriptor = Descriptor::new(octet(), Digest::sha256(&content), size as u64);
        let mut damaged = content.to_vec();
        damaged[size / 3] ^= 1;
        let body = BlobReader::verified(descriptor.clone(), oci_store::body_from_bytes(damaged))
            .into_stream_for_push();
        assert_eq!(body.verified_as(), None, "not hashed on the way");
        let error = client
            .push_blob(&repo, &descriptor, body)
            .await
            .expect_err("corrupt content is refused");
        assert_eq!(
            error.code(),
            Some(ErrorCode::DigestInvalid),
            "{size}: {error}"
        );
        let absent = client.resolve_blob(&repo, &descriptor.digest).await;
        assert!(absent.is_err(), "{size}: nothing stored");

        let body = BlobReader::verified(descriptor.clone(), oci_store::body_from_bytes(content))
            .into_stream_for_push();
        client.push_blob(&repo, &descriptor, body).await.unwrap();
        client
            .resolve_blob(&repo, &descriptor.digest)
            .await
            .unwrap();
    }
}

/// A repository with 1000 tags (the client's page size): the CNCF registry 2.8 answers every
/// tags request with all of them, whatever `n` and `last` say, and without `Link`; the
/// listing must still end, with each tag once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cncf_tags_listing_of_1000_tags_ends() {
    let Some(client) = cncf_client().await else {
        return;
    };
    let repo: Repository = format!("many-tags/x{}", std::process::id())
        .parse()
        .unwrap();
    let (manifest, _) = push_image(&client, &repo, 30).await;
    let bytes = client
        .get_manifest(&repo, &manifest.digest)
        .await
        .unwrap()
        .bytes(1 << 20)
        .await
        .unwrap();
    let names: Vec<String> = (0..1000).map(|i| format!("t{i:04}")).collect();
    let pushes = names.chunks(100).map(|chunk| {
        let params = PushManifestParams::new().with_tags(chunk.iter().map(|n| tag(n)));
        let (client, repo, bytes) = (client.clone(), repo.clone(), bytes.clone());
        let media_type = manifest.media_type.clone();
        async move {
            client
                .push_manifest(&repo, bytes, &media_type, &params)
                .await
                .unwrap();
        }
    });
    futures::future::join_all(pushes).await;
    let mut expected = names;
    expected.push("v1".to_owned());
    expected.sort();
    let listed: Vec<Tag> = client
        .tags(&repo, &ListParams::new())
        .take(3 * expected.len())
        .try_collect()
        .await
        .unwrap();
    let listed: Vec<String> = listed.iter().map(ToString::to_string).collect();
    assert_eq!(
        listed.len(),
        expected.len(),
        "{} tags listed for {} (first ones: {:?})",
        listed.len(),
        expected.len(),
        &listed[..5]
    );
    assert_eq!(listed, expected);
}

// ---- the CNCF registry with htpasswd over TLS ----

/// `docker-registry serve CONFIG` with htpasswd auth and TLS, started by the test, killed on
/// drop.
#[derive(Debug)]
struct TlsCncf {
    child: Child,
    addr: SocketAddr,
    ca: PathBuf,
    dir: tempfile::TempDir,
}

impl TlsCncf {
    fn start(openssl: &Path) -> Self {
        Self::start_with(openssl, false)
    }

    /// With `mutual`, the registry requires a client certificate signed by the test CA
    /// (`http.tls.clientcas`) instead of basic auth.
    fn start_with(openssl: &Path, mutual: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (ca, certificate, key) = certificates(openssl, dir.path());
        let htpasswd = dir.path().join("htpasswd");
        std::fs::write(&htpasswd, htpasswd_line()).unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let addr = free_addr();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
                 delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\n\
                 {}\
                 http:\n  addr: {addr}\n  tls:\n    certificate: {}\n    key: {}\n{}",
                data.display(),
                if mutual {
                    String::new()
                } else {
                    format!("auth:\n  htpasswd:\n    realm: hoist-test\n    path: {}\n", htpasswd.display())
                },
                certificate.display(),
                key.display(),
                if mutual {
                    format!("    clientcas:\n      - {}\n", ca.display())
                } else {
                    String::new()
                },
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut registry = Self {
            child,
            addr,
            ca,
            dir,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = registry.child.try_wait().unwrap() {
                panic!("docker-registry exited ({status}):\n{}", registry.log());
            }
            if std::net::TcpStream::connect(addr).is_ok() {
                return registry;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "docker-registry did not listen on {addr} within 20 s:\n{}",
                registry.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    fn builder(&self) -> oci_registry::RegistryClientBuilder {
        RegistryClient::builder(&self.addr.to_string())
            .with_plain_http(false)
            .with_credential_files(Vec::new())
            .with_retry(RetryPolicy::none())
    }
}

impl Drop for TlsCncf {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `cases` concurrently (a few at a time) on `fixture`, each in a task of its own, and
/// fails naming every case that failed, with its message.
async fn run_cases(fixture: &Fixture, cases: Vec<oci_store::conformance::Case>) {
    let failures: Vec<String> = futures::stream::iter(cases)
        .map(|case| {
            let fixture = fixture.clone();
            async move {
                let mut task = tokio::spawn(async move { (case.run)(&fixture).await });
                let outcome = match tokio::time::timeout(CASE_DEADLINE, &mut task).await {
                    Ok(outcome) => outcome,
                    Err(_) => {
                        task.abort();
                        return Some(format!(
                            "{}: still running after {CASE_DEADLINE:?}",
                            case.name
                        ));
                    }
                };
                outcome.err().map(|error| {
                    let message = if error.is_panic() {
                        let payload = error.into_panic();
                        payload
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                            .unwrap_or_default()
                    } else {
                        error.to_string()
                    };
                    format!("{}: {message}", case.name)
                })
            }
        })
        .buffer_unordered(4)
        .filter_map(futures::future::ready)
        .collect()
        .await;
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The conformance suite through the client against the CNCF registry with htpasswd basic auth
/// over TLS, the client trusting the test's CA (every case but the known failures of the
/// anonymous run, which fail there already); without the CA the certificate is refused, with
/// wrong credentials or none the answer is `UNAUTHORIZED`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cncf_registry_with_basic_auth_over_tls() {
    let (Some(_), Some(openssl)) = (peer("docker-registry"), peer("openssl")) else {
        return;
    };
    let registry = tokio::task::spawn_blocking(move || TlsCncf::start(&openssl))
        .await
        .unwrap();
    let client = registry
        .builder()
        .with_ca_file(&registry.ca)
        .with_credentials(basic())
        .with_retry(RetryPolicy::default().with_attempts(2))
        .build()
        .await
        .unwrap();
    let fixture = Fixture::new(client.clone())
        .with_caps(cncf_capabilities())
        .with_corrupter(cncf_corrupter(registry.dir.path().join("data")));
    let cases = all_cases()
        .into_iter()
        .filter(|case| !CNCF_KNOWN_FAILURES.contains(&case.name))
        .collect();
    run_cases(&fixture, cases).await;

    // Without the CA: the certificate is refused (and nothing is sent in the clear).
    let repo: Repository = "tls/refused".parse().unwrap();
    let untrusting = registry
        .builder()
        .with_credentials(basic())
        .build()
        .await
        .unwrap();
    let error = untrusting
        .push_blob_bytes(&repo, octet(), Bytes::from_static(b"x"))
        .await
        .expect_err("a certificate of an unknown CA is refused");
    let text = chain(&error).to_ascii_lowercase();
    assert!(
        text.contains("certificate") || text.contains("issuer"),
        "the error says why: {text}"
    );
    // Plain HTTP to a TLS port does not work either.
    let plain = RegistryClient::builder(&registry.addr.to_string())
        .with_credential_files(Vec::new())
        .with_credentials(basic())
        .with_retry(RetryPolicy::none())
        .build()
        .await
        .unwrap();
    assert!(plain.resolve_tag(&repo, &tag("x")).await.is_err());

    // Wrong credentials, and none.
    for credentials in [
        Credentials::Basic {
            username: USER.to_owned(),
            password: "wrong".to_owned(),
        },
        Credentials::Anonymous,
    ] {
        let shown = format!("{credentials:?}");
        let refused = registry
            .builder()
            .with_ca_file(&registry.ca)
            .with_credentials(credentials)
            .build()
            .await
            .unwrap();
        let error = refused
            .push_blob_bytes(&repo, octet(), Bytes::from_static(b"x"))
            .await
            .expect_err("refused");
        assert_eq!(
            error.code(),
            Some(ErrorCode::Unauthorized),
            "{shown}: {error}"
        );
        let error = refused
            .resolve_tag(&repo, &tag("x"))
            .await
            .expect_err("refused");
        assert_eq!(
            error.code(),
            Some(ErrorCode::Unauthorized),
            "{shown}: {error}"
        );
    }
}

fn octet() -> MediaType {
    MediaType::from_static(media_type::OCTET_STREAM)
}

fn tag(name: &str) -> Tag {
    name.parse().unwrap()
}

// ---- the token flow ----

/// Pushes a small image (a config and a layer, a manifest tagged `v1`) and returns the manifest
/// and layer descriptors.
async fn push_image(
    store: &dyn OciInterface,
    repo: &Repository,
    seed: u64,
) -> (Descriptor, Descriptor) {
    let config = store
        .push_blob_bytes(
            repo,
            MediaType::from_static(media_type::OCI_CONFIG),
            Bytes::from(format!("{{\"seed\":{seed}}}")),
        )
        .await
        .unwrap();
    let layer = store
        .push_blob_bytes(
            repo,
            MediaType::from_static(media_type::OCI_LAYER_GZIP),
            seeded_bytes(seed, 50_000),
        )
        .await
        .unwrap();
    let manifest = ImageManifest::new(config, vec![layer.clone()]).to_json();
    let pushed = store
        .push_manifest(
            repo,
            manifest.into(),
            &MediaType::from_static(media_type::OCI_MANIFEST),
            &PushManifestParams::new().with_tag(tag("v1")),
        )
        .await
        .unwrap();
    (pushed, layer)
}

/// Pulls what [`push_image`] pushed, checking it.
async fn pull_image(store: &dyn OciInterface, repo: &Repository, seed: u64) {
    let manifest = store.resolve_tag(repo, &tag("v1")).await.unwrap();
    let bytes = store
        .get_manifest(repo, &manifest.digest)
        .await
        .unwrap()
        .bytes(1 << 20)
        .await
        .unwrap();
    let parsed: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let layer: oci_types::Digest = parsed["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        store.get_blob_bytes(repo, &layer, 1 << 20).await.unwrap() == seeded_bytes(seed, 50_000)
    );
}

fn token_requests(log: &[Seen]) -> Vec<Seen> {
    log.iter()
        .filter(|s| s.path() == "/token")
        .cloned()
        .collect()
}

/// The repositories a token request's scopes name.
fn scoped_repositories(request: &Seen) -> Vec<String> {
    let mut names: Vec<String> = request
        .query("scope")
        .iter()
        .flat_map(|s| s.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .filter_map(|scope| {
            let rest = scope.strip_prefix("repository:")?;
            Some(rest.rsplit_once(':')?.0.to_owned())
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

fn token_auth_args(htpasswd: &Path) -> Vec<String> {
    vec![
        "--memory".to_owned(),
        "--token-auth".to_owned(),
        "--htpasswd".to_owned(),
        htpasswd.display().to_string(),
    ]
}

/// Against `hoist serve --token-auth --htpasswd`: the client asks a token for each repository
/// (and set of actions) it uses, with its basic credentials, and reuses it for every request
/// that scope covers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_flow_scopes_per_repository_and_reuse() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(&htpasswd, htpasswd_line()).unwrap();
    let args = token_auth_args(&htpasswd);
    let serve = tokio::task::spawn_blocking(move || ServeProcess::start(&args))
        .await
        .unwrap();
    let proxy = Proxy::start(serve.addr()).await;
    let client = RegistryClient::builder(&proxy.host())
        .with_credentials(basic())
        .build()
        .await
        .unwrap();
    let (a, b): (Repository, Repository) =
        ("tokens/a".parse().unwrap(), "tokens/b".parse().unwrap());

    push_image(&client, &a, 1).await;
    for seed in 10..20 {
        client
            .push_blob_bytes(&a, octet(), seeded_bytes(seed, 1000))
            .await
            .unwrap();
    }
    let tokens = token_requests(&proxy.log());
    assert_eq!(
        tokens.len(),
        1,
        "one token for pushing to {a}, reused by 13 blob and manifest pushes: {tokens:#?}"
    );
    assert_eq!(scoped_repositories(&tokens[0]), [a.to_string()]);
    assert!(
        tokens[0].query("scope").iter().any(|s| s.contains("push")),
        "{tokens:#?}"
    );
    assert_eq!(tokens[0].query("service"), ["hoist"]);
    assert!(
        tokens[0]
            .header("authorization")
            .is_some_and(|h| h.starts_with("Basic ")),
        "the token is asked with the basic credentials"
    );

    // Another repository needs another token.
    push_image(&client, &b, 2).await;
    let tokens = token_requests(&proxy.log());
    assert_eq!(tokens.len(), 2, "{tokens:#?}");
    assert_eq!(scoped_repositories(&tokens[1]), [b.to_string()]);

    // Pulls: a pull token per repository, each reused.
    for _ in 0..5 {
        pull_image(&client, &a, 1).await;
    }
    for _ in 0..5 {
        pull_image(&client, &b, 2).await;
    }
    let log = proxy.log();
    let tokens = token_requests(&log);
    let to_registry = log.iter().filter(|s| s.path().starts_with("/v2/")).count();
    assert!(
        tokens.len() <= 4,
        "at most one more token per repository for pulling: {tokens:#?}"
    );
    for (request, repo) in tokens[2..].iter().zip([&a, &b]) {
        assert_eq!(scoped_repositories(request), [repo.to_string()]);
    }
    assert!(
        to_registry > 40,
        "{to_registry} registry requests for {} tokens",
        tokens.len()
    );
    // Every registry request after the first of each scope carried a bearer token.
    let unauthenticated = log
        .iter()
        .filter(|s| s.path().starts_with("/v2/") && s.header("authorization").is_none())
        .count();
    assert_eq!(
        unauthenticated,
        tokens.len(),
        "one challenge per token, no more: {:#?}",
        log.iter()
            .map(|s| (&s.method, &s.target, s.status))
            .collect::<Vec<_>>()
    );
}

/// An OAuth2 identity token: a refresh token from a password grant (POST to /token, as
/// `docker login` does for some registries) is all the client gets; it pushes and pulls with
/// it, asking its tokens with `grant_type=refresh_token` POSTs. An unknown refresh token is
/// `UNAUTHORIZED`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_flow_with_an_identity_token() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(&htpasswd, htpasswd_line()).unwrap();
    let args = token_auth_args(&htpasswd);
    let serve = tokio::task::spawn_blocking(move || ServeProcess::start(&args))
        .await
        .unwrap();
    let proxy = Proxy::start(serve.addr()).await;

    let form = format!(
        "grant_type=password&username={USER}&password={}&service=hoist&client_id=test",
        PASSWORD.replace(' ', "+")
    );
    let (status, body) = post_form(serve.addr(), "/token", &form).await;
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    let refresh = answer["refresh_token"].as_str().unwrap().to_owned();

    let client = RegistryClient::builder(&proxy.host())
        .with_credentials(Credentials::IdentityToken(refresh))
        .build()
        .await
        .unwrap();
    let repo: Repository = "identity/app".parse().unwrap();
    push_image(&client, &repo, 3).await;
    pull_image(&client, &repo, 3).await;
    let tokens = token_requests(&proxy.log());
    assert!(!tokens.is_empty());
    for request in &tokens {
        assert_eq!(
            request.method, "POST",
            "refresh grants are POSTed: {request:#?}"
        );
        assert_eq!(request.header("authorization"), None);
    }

    let stranger = RegistryClient::builder(&proxy.host())
        .with_credentials(Credentials::IdentityToken("not-a-refresh-token".to_owned()))
        .build()
        .await
        .unwrap();
    let error = stranger
        .resolve_tag(&repo, &tag("v1"))
        .await
        .expect_err("an unknown refresh token gets nothing");
    assert_eq!(error.code(), Some(ErrorCode::Unauthorized), "{error}");
}

/// POSTs a form; returns the status and the body.
async fn post_form(addr: SocketAddr, path: &str, form: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    // The server may answer chunked: keep the JSON object only.
    let body = match (body.find('{'), body.rfind('}')) {
        (Some(start), Some(end)) => body[start..=end].to_owned(),
        _ => body.to_owned(),
    };
    (status, body)
}

/// hoist's server over `memory` with token auth of this lifetime (anyone gets a token).
async fn token_server(memory: &MemoryStore, lifetime: Duration) -> Listening {
    RegistryServer::new(Arc::new(memory.clone()))
        .with_auth(Auth::Token {
            users: None,
            lifetime,
        })
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// Real time plus an offset the test moves: tokens age as they do between real requests,
/// and a wait longer than their lifetime is a step of the offset rather than a sleep. The
/// server and the client read the same one, so both see a token expire at the same moment.
#[derive(Clone, Default)]
struct ShiftedClock(Arc<Mutex<Duration>>);

impl ShiftedClock {
    fn now(&self) -> Instant {
        Instant::now() + *self.0.lock().unwrap()
    }

    fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }

    fn for_client(&self) -> Clock {
        let clock = self.clone();
        Clock::new(move || clock.now())
    }
}

/// [`token_server`] reading the time from `clock`.
async fn token_server_with_clock(
    memory: &MemoryStore,
    lifetime: Duration,
    clock: &ShiftedClock,
) -> Listening {
    let clock = clock.clone();
    RegistryServer::new(Arc::new(memory.clone()))
        .with_auth(Auth::token(None, lifetime).with_clock(move || clock.now()))
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// A token is reused while the client holds it good (it renews 5 s before expiry: a 7-second
/// token is held good for 2 s), then renewed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_flow_reuses_a_token_until_near_its_expiry() {
    let memory = MemoryStore::new();
    let clock = ShiftedClock::default();
    let listening = token_server_with_clock(&memory, Duration::from_secs(7), &clock).await;
    let proxy = Proxy::start(listening.local_addr()).await;
    let client = RegistryClient::builder(&proxy.host())
        .with_credential_files(Vec::new())
        .with_clock(clock.for_client())
        .build()
        .await
        .unwrap();
    let repo: Repository = "renew/app".parse().unwrap();
    let (_, layer) = push_image(&client, &repo, 4).await;
    proxy.clear_log();
    for _ in 0..20 {
        client.resolve_blob(&repo, &layer.digest).await.unwrap();
    }
    assert_eq!(
        token_requests(&proxy.log()).len(),
        1,
        "one pull token for 20 requests"
    );
    // The client renews a token min(5 s, half its lifetime) before it expires: 3.5 s here.
    clock.advance(Duration::from_millis(4000));
    client.resolve_blob(&repo, &layer.digest).await.unwrap();
    let tokens = token_requests(&proxy.log());
    assert_eq!(tokens.len(), 2, "a token renewed near its expiry");
}

/// A token the registry refuses though the client still holds it good (the registry restarted
/// and forgot it: another instance over the same storage behind the same address) is replaced
/// after the 401, and the request goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_flow_fetches_a_fresh_token_after_a_401() {
    let memory = MemoryStore::new();
    let first = token_server(&memory, Duration::from_secs(300)).await;
    let proxy = Proxy::start(first.local_addr()).await;
    let client = RegistryClient::builder(&proxy.host())
        .with_credential_files(Vec::new())
        .build()
        .await
        .unwrap();
    let repo: Repository = "restarted/app".parse().unwrap();
    let (_, layer) = push_image(&client, &repo, 4).await;
    client.resolve_blob(&repo, &layer.digest).await.unwrap();

    let second = token_server(&memory, Duration::from_secs(300)).await;
    proxy.set_upstream(second.local_addr());
    first.shutdown().await;
    proxy.clear_log();
    client.resolve_blob(&repo, &layer.digest).await.unwrap();
    let log = proxy.log();
    let steps: Vec<(String, String, u16, bool)> = log
        .iter()
        .map(|s| {
            (
                s.method.clone(),
                s.path().to_owned(),
                s.status,
                s.header("authorization").is_some(),
            )
        })
        .collect();
    assert_eq!(log.len(), 3, "{steps:?}");
    assert_eq!((log[0].method.as_str(), log[0].status), ("HEAD", 401));
    assert!(
        log[0].header("authorization").is_some(),
        "the old token was sent: {steps:?}"
    );
    assert_eq!((log[1].path(), log[1].status), ("/token", 200));
    assert_eq!((log[2].method.as_str(), log[2].status), ("HEAD", 200));
    assert_ne!(
        log[0].header("authorization"),
        log[2].header("authorization"),
        "with a fresh token"
    );
    // Pushes (a new scope) and pulls go through the new instance as well.
    push_image(&client, &repo, 5).await;
    pull_image(&client, &repo, 5).await;
}

/// Tokens that live 1 s (less than the client's renewal margin of 5 s): every request still
/// goes through, blob pushes with a streamed body included, and after a pause longer than the
/// lifetime as well (the clock moved past it: the server refuses the old tokens, the client
/// fetches new ones).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_flow_with_one_second_tokens() {
    let memory = MemoryStore::new();
    let clock = ShiftedClock::default();
    let listening = token_server_with_clock(&memory, Duration::from_secs(1), &clock).await;
    let proxy = Proxy::start(listening.local_addr()).await;
    let client = RegistryClient::builder(&proxy.host())
        .with_credential_files(Vec::new())
        .with_clock(clock.for_client())
        .build()
        .await
        .unwrap();
    let repo: Repository = "short/app".parse().unwrap();
    let pushed = client
        .push_blob_bytes(&repo, octet(), seeded_bytes(6, 10_000))
        .await;
    if let Err(error) = pushed {
        let steps: Vec<String> = proxy
            .log()
            .iter()
            .map(|s| {
                format!(
                    "{} {} -> {} ({})",
                    s.method,
                    s.path(),
                    s.status,
                    if s.header("authorization").is_some() {
                        "with a token"
                    } else {
                        "without a token"
                    }
                )
            })
            .collect();
        panic!(
            "a blob push with 1-second tokens fails: {error}\nrequests:\n{}",
            steps.join("\n")
        );
    }
    push_image(&client, &repo, 6).await;
    clock.advance(Duration::from_secs(2));
    proxy.clear_log();
    pull_image(&client, &repo, 6).await;
    push_image(&client, &repo, 7).await;
    let log = proxy.log();
    assert!(
        log.first()
            .is_some_and(|s| s.header("authorization").is_none()),
        "the client holds its tokens expired after the clock moved"
    );
    assert!(
        !token_requests(&log).is_empty(),
        "tokens are fetched again once the old ones expired"
    );
}

// ---- credentials from files ----

/// hoist's server over memory requiring basic auth.
async fn basic_server() -> Listening {
    let users = Htpasswd::parse(&htpasswd_line()).unwrap();
    RegistryServer::new(Arc::new(MemoryStore::new()))
        .with_auth(Auth::Basic(users))
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A client of `listening` with credentials from `file` only: pushes and pulls an image.
async fn push_and_pull_with(listening: &Listening, file: &Path, seed: u64) {
    let client = RegistryClient::builder(&listening.local_addr().to_string())
        .with_credential_files(vec![file.to_path_buf()])
        .build()
        .await
        .unwrap();
    let repo: Repository = format!("credentials/seed{seed}").parse().unwrap();
    push_image(&client, &repo, seed).await;
    pull_image(&client, &repo, seed).await;
}

/// Without credentials (or with wrong ones in a file), the same registry refuses with
/// `UNAUTHORIZED`.
async fn refused_with(listening: &Listening, files: Vec<PathBuf>) {
    let client = RegistryClient::builder(&listening.local_addr().to_string())
        .with_credential_files(files)
        .with_retry(RetryPolicy::none())
        .build()
        .await
        .unwrap();
    let repo: Repository = "credentials/refused".parse().unwrap();
    let error = client
        .push_blob_bytes(&repo, octet(), Bytes::from_static(b"x"))
        .await
        .expect_err("refused");
    assert_eq!(error.code(), Some(ErrorCode::Unauthorized), "{error}");
    let error = client
        .resolve_tag(&repo, &tag("v1"))
        .await
        .expect_err("refused");
    assert_eq!(error.code(), Some(ErrorCode::Unauthorized), "{error}");
}

/// A docker `config.json` with an `auths` entry (base64 `user:password`), and a containers
/// `auth.json` with one: each is enough to push and pull; with neither, or with a wrong
/// password in one, the registry refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_from_config_json_and_auth_json() {
    let listening = basic_server().await;
    let host = listening.local_addr().to_string();
    let dir = tempfile::tempdir().unwrap();
    let auth = base64(format!("{USER}:{PASSWORD}").as_bytes());

    let docker = dir.path().join("config.json");
    std::fs::write(
        &docker,
        format!(
            r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{}"}},"{host}":{{"auth":"{auth}"}}}},"HttpHeaders":{{"User-Agent":"Docker-Client/24"}}}}"#,
            base64(b"someone:else")
        ),
    )
    .unwrap();
    push_and_pull_with(&listening, &docker, 10).await;

    let containers = dir.path().join("auth.json");
    std::fs::write(
        &containers,
        format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#),
    )
    .unwrap();
    push_and_pull_with(&listening, &containers, 11).await;

    refused_with(&listening, Vec::new()).await;
    refused_with(&listening, vec![dir.path().join("missing.json")]).await;
    let wrong = dir.path().join("wrong.json");
    std::fs::write(
        &wrong,
        format!(
            r#"{{"auths":{{"{host}":{{"auth":"{}"}}}}}}"#,
            base64(format!("{USER}:wrong").as_bytes())
        ),
    )
    .unwrap();
    refused_with(&listening, vec![wrong]).await;
}

/// Set (to the helper's directory) in the child process of
/// [`credentials_from_a_credential_helper`], whose `PATH` begins with that directory.
const HELPER_DIR_ENV: &str = "HOIST_TEST_CREDENTIAL_HELPER_DIR";

/// A `config.json` whose `credHelpers` names a helper program (`docker-credential-hoisttest`,
/// a shell script of the test's that answers `get` with the credentials and records the
/// registry it was asked about): the client runs it and pushes and pulls with what it says.
///
/// The client finds helpers on `PATH`, as docker does, and `PATH` cannot be changed in this
/// process (setting environment variables is unsafe with threads running): the test runs
/// itself again as a child process with the helper's directory first on `PATH`.
#[test]
fn credentials_from_a_credential_helper() {
    if let Some(dir) = std::env::var_os(HELPER_DIR_ENV) {
        let dir = PathBuf::from(dir);
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(helper_child(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let helper = dir.path().join("docker-credential-hoisttest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n\
             [ \"$1\" = get ] || {{ echo \"unexpected: $*\" >&2; exit 1; }}\n\
             read -r server || true\n\
             printf '%s\\n' \"$server\" >>\"$(dirname \"$0\")/asked\"\n\
             printf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}\\n' \"$server\"\n"
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let path = std::env::join_paths(
        std::iter::once(dir.path().to_path_buf()).chain(std::env::split_paths(&path)),
    )
    .unwrap();
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "client_peers::credentials_from_a_credential_helper",
            "--exact",
            "--test-threads=1",
            "--nocapture",
        ])
        .env("PATH", path)
        .env(HELPER_DIR_ENV, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "the child test failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn helper_child(dir: &Path) {
    let listening = basic_server().await;
    let host = listening.local_addr().to_string();
    let config = dir.join("config.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"auths":{{"{host}":{{}}}},"credHelpers":{{"{host}":"hoisttest"}},"credsStore":"absent-store"}}"#
        ),
    )
    .unwrap();
    push_and_pull_with(&listening, &config, 12).await;
    let asked = std::fs::read_to_string(dir.join("asked")).unwrap();
    assert_eq!(
        asked.lines().collect::<Vec<_>>(),
        [host.as_str()],
        "the helper was asked once, about this registry"
    );
    // A helper that fails is an error at build time, not a silent anonymous client.
    let broken = dir.join("broken.json");
    std::fs::write(
        &broken,
        format!(r#"{{"credHelpers":{{"{host}":"absent-helper"}}}}"#),
    )
    .unwrap();
    let error = RegistryClient::builder(&host)
        .with_credential_files(vec![broken])
        .build()
        .await
        .expect_err("a helper that cannot run is an error");
    assert!(
        error
            .to_string()
            .contains("docker-credential-absent-helper"),
        "{error}"
    );
}

/// A client certificate signed by the test CA in `dir` (made by [`certificates`]); returns
/// (certificate, key).
fn client_certificate(openssl: &Path, dir: &Path) -> (PathBuf, PathBuf) {
    let path = |name: &str| dir.join(name);
    let text = |p: &Path| p.to_str().unwrap().to_owned();
    std::fs::write(
        path("client.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    run(
        openssl,
        [
            "req",
            "-subj",
            "/CN=hoist test client",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &text(&path("client.key")),
            "-out",
            &text(&path("client.csr")),
        ],
    );
    run(
        openssl,
        [
            "x509",
            "-req",
            "-in",
            &text(&path("client.csr")),
            "-CA",
            &text(&path("ca.crt")),
            "-CAkey",
            &text(&path("ca.key")),
            "-CAcreateserial",
            "-out",
            &text(&path("client.crt")),
            "-days",
            "2",
            "-extfile",
            &text(&path("client.ext")),
        ],
    );
    (path("client.crt"), path("client.key"))
}

/// A registry that requires a client certificate (mutual TLS): the client given its identity
/// pushes and reads back; without it, the handshake is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cncf_registry_requiring_a_client_certificate() {
    let (Some(_), Some(openssl)) = (peer("docker-registry"), peer("openssl")) else {
        return;
    };
    let registry = {
        let openssl = openssl.clone();
        tokio::task::spawn_blocking(move || TlsCncf::start_with(&openssl, true))
            .await
            .unwrap()
    };
    let (certificate, key) = client_certificate(&openssl, registry.dir.path());
    let repo: Repository = "mtls/app".parse().unwrap();
    let client = registry
        .builder()
        .with_ca_file(&registry.ca)
        .with_client_identity(&certificate, &key)
        .build()
        .await
        .unwrap();
    let pushed = client
        .push_blob_bytes(&repo, octet(), Bytes::from_static(b"mutual tls"))
        .await
        .unwrap();
    assert_eq!(
        client
            .get_blob_bytes(&repo, &pushed.digest, 1024)
            .await
            .unwrap(),
        "mutual tls"
    );
    let anonymous = registry
        .builder()
        .with_ca_file(&registry.ca)
        .with_retry(RetryPolicy::none())
        .build()
        .await
        .unwrap();
    assert!(
        anonymous.resolve_blob(&repo, &pushed.digest).await.is_err(),
        "without a client certificate the registry refuses the connection"
    );
}
