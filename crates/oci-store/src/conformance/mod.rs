//! The conformance suite: one set of checks that every [`OciInterface`] implementation passes.
//!
//! Each check is a public `async fn(&Fixture)` that panics with a message naming what went wrong.
//! [`conformance_tests!`](crate::conformance_tests) turns every check into a named
//! `#[tokio::test]` for a store; [`all_cases`] lists them for harnesses that run them by hand
//! (to show that a faulty store fails, for example).
//!
//! Every check uses repositories of its own, named `conformance/<check>-<unique>`, so checks
//! can share one store and run in parallel. A check skips only what the fixture's
//! [`Capabilities`] exclude, and prints that it did.
//!
//! ```no_run
//! use oci_store::conformance::Fixture;
//! use oci_store::MemoryStore;
//!
//! mod memory {
//!     use super::*;
//!     oci_store::conformance_tests!(|| async { Fixture::new(MemoryStore::new()) });
//! }
//! ```
//!
//! This module is not covered by semver: checks are added as stores learn new behaviour.
#![allow(clippy::print_stderr, clippy::unwrap_used, clippy::expect_used)]

mod blobs;
mod doubles;
mod listing;
mod manifests;
mod referrers;
mod uploads;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{BoxStream, TryStreamExt};
use oci_types::{
    Descriptor, Digest, ImageIndex, ImageManifest, MediaType, Repository, Tag, media_type,
};
use rand::{RngCore, SeedableRng};

use crate::{BlobReader, ErrorCode, OciInterface, PushManifestParams, Result, body_from_bytes};

pub use blobs::*;
pub use doubles::{Fault, Faulty};
pub use listing::*;
pub use manifests::*;
pub use referrers::*;
pub use uploads::*;

/// What a store can honestly do; checks of what it cannot are skipped, not failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Deletes of blobs, manifests and tags.
    pub deletes: bool,
    /// Deletes of tags alone (the CNCF registry 2.8 cannot: it answers 400 DIGEST_INVALID).
    pub tag_deletes: bool,
    /// Referrers listing.
    pub referrers: bool,
    /// Resuming chunked uploads by id.
    pub chunked_resume: bool,
    /// Mounting blobs across repositories.
    pub cross_repo_mount: bool,
    /// Listing repositories.
    pub repository_listing: bool,
    /// SHA-512 content.
    pub sha512: bool,
}

impl Default for Capabilities {
    fn default() -> Self {
        Self {
            deletes: true,
            tag_deletes: true,
            referrers: true,
            chunked_resume: true,
            cross_repo_mount: true,
            repository_listing: true,
            sha512: true,
        }
    }
}

impl Capabilities {
    /// Everything.
    pub fn all() -> Self {
        Self::default()
    }

    /// Without deletes.
    pub fn without_deletes(mut self) -> Self {
        self.deletes = false;
        self
    }

    /// Without deletes of tags alone.
    pub fn without_tag_deletes(mut self) -> Self {
        self.tag_deletes = false;
        self
    }

    /// Without referrers.
    pub fn without_referrers(mut self) -> Self {
        self.referrers = false;
        self
    }

    /// Without resumable uploads.
    pub fn without_chunked_resume(mut self) -> Self {
        self.chunked_resume = false;
        self
    }

    /// Without cross-repository mounts.
    pub fn without_cross_repo_mount(mut self) -> Self {
        self.cross_repo_mount = false;
        self
    }

    /// Without repository listing.
    pub fn without_repository_listing(mut self) -> Self {
        self.repository_listing = false;
        self
    }

    /// Without SHA-512.
    pub fn without_sha512(mut self) -> Self {
        self.sha512 = false;
        self
    }
}

/// Damages the stored content of a blob behind the store's back; returns whether it found it.
pub type Corrupter = Arc<dyn Fn(Repository, Digest) -> BoxFuture<'static, bool> + Send + Sync>;

/// A store under test, with what it can do and the test hooks it offers.
#[derive(Clone)]
pub struct Fixture {
    /// The store.
    pub store: Arc<dyn OciInterface>,
    /// What it can do.
    pub caps: Capabilities,
    corrupter: Option<Corrupter>,
    /// Whatever must live as long as the fixture (a temporary directory, a server).
    _guard: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

impl Fixture {
    /// A fixture for a store that can do everything and offers no hooks.
    pub fn new(store: impl OciInterface) -> Self {
        Self::from_arc(Arc::new(store))
    }

    /// A fixture for a store already shared.
    pub fn from_arc(store: Arc<dyn OciInterface>) -> Self {
        Self {
            store,
            caps: Capabilities::default(),
            corrupter: None,
            _guard: None,
        }
    }

    /// Declares what the store can do.
    pub fn with_caps(mut self, caps: Capabilities) -> Self {
        self.caps = caps;
        self
    }

    /// Gives the suite a way to damage stored blobs, for the check that reads detect it.
    pub fn with_corrupter(mut self, corrupter: Corrupter) -> Self {
        self.corrupter = Some(corrupter);
        self
    }

    /// Keeps `guard` alive as long as the fixture: the temporary directory of a store, a
    /// server it talks to.
    pub fn with_guard(mut self, guard: impl std::any::Any + Send + Sync) -> Self {
        self._guard = Some(Arc::new(guard));
        self
    }

    /// A repository no other check uses.
    pub fn repo(&self, check: &str) -> Repository {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!("conformance/{}-{nanos:x}{unique}", check.replace('_', "-"));
        Repository::parse(&name).expect("check names make valid repository names")
    }

    fn skip(&self, check: &str, missing: &str) {
        eprintln!(
            "conformance: {check} skipped on {}: no {missing}",
            self.store
        );
    }
}

impl fmt::Debug for Fixture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fixture")
            .field("store", &self.store.to_string())
            .field("caps", &self.caps)
            .field("corrupter", &self.corrupter.is_some())
            .finish()
    }
}

/// One check, by name.
#[derive(Clone, Copy)]
pub struct Case {
    /// The check's function name.
    pub name: &'static str,
    /// Runs it.
    pub run: for<'a> fn(&'a Fixture) -> BoxFuture<'a, ()>,
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// Every check of the suite.
pub fn all_cases() -> Vec<Case> {
    crate::__conformance_cases!(table)
}

/// Generates one `#[tokio::test]` per conformance check, each building a fresh fixture with
/// `$factory` (a closure returning a future of [`Fixture`]). Call it inside a module named
/// after the store.
///
/// `conformance_tests!(optional $factory)` takes a factory whose future gives an
/// `Option<Fixture>`: `None` (a peer the store needs is missing, which the factory reports)
/// ends each check at once.
#[macro_export]
macro_rules! conformance_tests {
    (optional $factory:expr) => {
        $crate::__conformance_cases!(optional $factory);
    };
    ($factory:expr) => {
        $crate::__conformance_cases!(tests $factory);
    };
}

/// The list of checks, in one place for both the test macro and [`all_cases`].
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($($mode:tt)*) => {
        $crate::__conformance_expand! {[$($mode)*]
            blob_push_then_get, blob_resolve, blob_unknown, blob_unknown_repository,
            blob_wrong_digest_leaves_nothing, blob_wrong_size_leaves_nothing,
            blob_failed_body_leaves_nothing, blob_empty, blob_pushed_twice, blob_sha512,
            blob_range_in_bounds, blob_range_to_end, blob_range_beyond_end, blob_range_invalid,
            blob_large_streamed, blob_concurrent_pushes, blob_corruption_detected,
            name_invalid_refused, blob_mount, blob_mount_unknown,
            upload_in_several_chunks, upload_commit_wrong_digest, upload_resume_at_offset,
            upload_resume_at_wrong_offset, upload_resume_where_it_is, upload_unknown_id,
            upload_cancelled, upload_cancel_twice, upload_empty, upload_sha512,
            upload_other_repository,
            manifest_push_by_digest, manifest_push_with_tag, manifest_several_tags,
            manifest_exact_bytes, manifest_docker_v2, manifest_docker_list, manifest_index,
            manifest_missing_config, manifest_missing_layer, manifest_index_missing_child,
            manifest_dangling_subject, manifest_unknown_kind_references,
            manifest_invalid_json, manifest_media_type_mismatch,
            manifest_oversize, manifest_expected_digest_mismatch, manifest_unknown,
            manifest_sha512, manifest_pushed_twice, manifest_artifact,
            tag_overwrite, tag_unknown, tags_sorted, tags_paged, tags_unknown_repository,
            tags_concurrent_pushes, tag_delete, manifest_delete_removes_tags, blob_delete,
            delete_unknown, repositories_paged,
            referrers_of_manifest, referrers_filtered, referrers_of_index,
            referrers_unknown_subject, referrers_artifact_type_from_config,
            referrers_after_delete,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_expand {
    ([tests $factory:expr] $($case:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fixture: $crate::conformance::Fixture = ($factory)().await;
                $crate::conformance::$case(&fixture).await;
            }
        )*
    };
    ([optional $factory:expr] $($case:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fixture: ::std::option::Option<$crate::conformance::Fixture> =
                    ($factory)().await;
                if let ::std::option::Option::Some(fixture) = fixture {
                    $crate::conformance::$case(&fixture).await;
                }
            }
        )*
    };
    ([table] $($case:ident),* $(,)?) => {
        vec![$(
            $crate::conformance::Case {
                name: stringify!($case),
                run: |fixture| ::std::boxed::Box::pin($crate::conformance::$case(fixture)),
            },
        )*]
    };
}

// ---- helpers shared by the checks ----

/// Deterministic pseudo-random bytes: the same `seed` and `len` give the same content.
pub fn seeded_bytes(seed: u64, len: usize) -> Bytes {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut data = vec![0; len];
    rng.fill_bytes(&mut data);
    data.into()
}

fn layer_type() -> MediaType {
    MediaType::from_static(media_type::OCI_LAYER_GZIP)
}

fn config_type() -> MediaType {
    MediaType::from_static(media_type::OCI_CONFIG)
}

/// Pushes `content` as a blob and checks the returned descriptor.
async fn push(f: &Fixture, repo: &Repository, content: impl Into<Bytes>) -> Descriptor {
    let content = content.into();
    let descriptor = Descriptor::of_bytes(layer_type(), &content);
    let stored = f
        .store
        .push_blob(repo, &descriptor, body_from_bytes(content))
        .await
        .unwrap_or_else(|e| panic!("push of blob {} to {repo} failed: {e}", descriptor.digest));
    assert_eq!(
        stored.digest, descriptor.digest,
        "push_blob returned another digest"
    );
    assert_eq!(
        stored.size, descriptor.size,
        "push_blob returned another size"
    );
    descriptor
}

/// Reads a whole body, returning the content or the first error.
async fn read(reader: BlobReader) -> Result<Vec<u8>> {
    let chunks: Vec<Bytes> = reader.into_stream().try_collect().await?;
    Ok(chunks.concat())
}

/// Reads a blob whole, panicking on any error.
async fn get(f: &Fixture, repo: &Repository, digest: &Digest) -> Vec<u8> {
    let reader = f
        .store
        .get_blob(repo, digest)
        .await
        .unwrap_or_else(|e| panic!("get_blob {digest} in {repo}: {e}"));
    assert_eq!(
        &reader.descriptor().digest,
        digest,
        "get_blob descriptor digest"
    );
    let size = reader.descriptor().size;
    let content = read(reader)
        .await
        .unwrap_or_else(|e| panic!("reading blob {digest} in {repo}: {e}"));
    assert_eq!(content.len() as u64, size, "get_blob descriptor size");
    content
}

/// Asserts that `result` failed with one of `codes`.
#[track_caller]
fn assert_code<T: fmt::Debug>(result: Result<T>, codes: &[ErrorCode], what: &str) {
    match result {
        Ok(value) => panic!("{what}: expected an error {codes:?}, got Ok({value:?})"),
        Err(error) => assert!(
            error.code().is_some_and(|c| codes.contains(&c)),
            "{what}: expected one of {codes:?}, got {:?}: {error}",
            error.code()
        ),
    }
}

/// Awaits a read that should fail with one of `codes`, whether the failure comes from the call
/// or from the body stream.
async fn assert_read_fails(result: Result<BlobReader>, codes: &[ErrorCode], what: &str) {
    let outcome = match result {
        Ok(reader) => read(reader).await.map(|content| content.len()),
        Err(error) => Err(error),
    };
    assert_code(outcome, codes, what);
}

/// Collects a listing.
async fn collect<T>(stream: BoxStream<'static, Result<T>>) -> Result<Vec<T>> {
    stream.try_collect().await
}

fn tag(name: &str) -> Tag {
    Tag::parse(name).expect("checks use valid tags")
}

/// Pushes a config and `layers` layers, then an image manifest of them; returns the manifest's
/// bytes and descriptor.
async fn push_image(
    f: &Fixture,
    repo: &Repository,
    seed: u64,
    tags: &[&str],
) -> (Bytes, Descriptor) {
    let config_bytes = format!(r#"{{"architecture":"amd64","os":"linux","seed":{seed}}}"#);
    let mut config = push(f, repo, config_bytes).await;
    config.media_type = config_type();
    let mut layer = push(f, repo, seeded_bytes(seed, 1000)).await;
    layer.media_type = layer_type();
    let manifest = Bytes::from(ImageManifest::new(config, vec![layer]).to_json());
    let pushed = push_manifest(f, repo, manifest.clone(), media_type::OCI_MANIFEST, tags).await;
    (manifest, pushed)
}

async fn push_manifest(
    f: &Fixture,
    repo: &Repository,
    bytes: Bytes,
    kind: &'static str,
    tags: &[&str],
) -> Descriptor {
    let params = PushManifestParams::new().with_tags(tags.iter().map(|t| tag(t)));
    let descriptor = f
        .store
        .push_manifest(repo, bytes.clone(), &MediaType::from_static(kind), &params)
        .await
        .unwrap_or_else(|e| panic!("push of manifest to {repo} failed: {e}"));
    assert_eq!(descriptor.digest, Digest::sha256(&bytes), "manifest digest");
    assert_eq!(descriptor.size, bytes.len() as u64, "manifest size");
    descriptor
}

/// An index of the given manifests.
fn index_of(children: &[Descriptor]) -> Bytes {
    let children = children
        .iter()
        .map(|c| {
            let mut child = Descriptor::new(c.media_type.clone(), c.digest.clone(), c.size);
            child.platform = c.platform.clone();
            child
        })
        .collect();
    ImageIndex::new(children).to_json().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    /// Runs every check against `fixture`, each in its own task, and returns the names of those
    /// that failed.
    async fn failing_checks(make: impl Fn() -> Fixture) -> Vec<&'static str> {
        let mut failed = Vec::new();
        for case in all_cases() {
            let fixture = make();
            let outcome = tokio::spawn(async move { (case.run)(&fixture).await }).await;
            if outcome.is_err() {
                failed.push(case.name);
            }
        }
        failed
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_faithful_double_passes_every_check() {
        let failed = failing_checks(|| {
            let inner = MemoryStore::new();
            let corrupter = inner.conformance_corrupter();
            Fixture::new(Faulty::new(inner)).with_corrupter(corrupter)
        })
        .await;
        assert!(
            failed.is_empty(),
            "checks failed on a faithful store: {failed:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_that_skips_digest_checks_fails_the_suite() {
        let failed = failing_checks(|| {
            Fixture::new(Faulty::with_fault(
                MemoryStore::new(),
                Fault::SkipsDigestChecks,
            ))
        })
        .await;
        for expected in [
            "blob_wrong_digest_leaves_nothing",
            "blob_wrong_size_leaves_nothing",
            "blob_sha512",
        ] {
            assert!(
                failed.contains(&expected),
                "{expected} should fail; failed: {failed:?}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_that_loses_tags_fails_the_suite() {
        let failed = failing_checks(|| {
            Fixture::new(Faulty::with_fault(MemoryStore::new(), Fault::LosesTags))
        })
        .await;
        for expected in [
            "manifest_push_with_tag",
            "manifest_several_tags",
            "tag_overwrite",
            "tags_sorted",
            "tags_paged",
            "tags_concurrent_pushes",
            "tag_delete",
        ] {
            assert!(
                failed.contains(&expected),
                "{expected} should fail; failed: {failed:?}"
            );
        }
    }
}
