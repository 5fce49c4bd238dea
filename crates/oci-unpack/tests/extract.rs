//! `extract_layers` and `write_uncompressed` against a `MemoryStore`, and against a wrapper of
//! it that counts reads, lies about content, stalls or fails on purpose.

// Helpers shared by tests are not `#[test]` functions, which clippy's allow-in-tests covers;
// a failed expectation in a test helper should panic just the same.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use oci_store::{
    BlobBody, BlobReader, BlobWriter, ErrorCode, ListParams, MemoryStore, OciInterface,
    OciInterfaceExt, PushManifestParams, ReferrersParams, body_from_bytes,
};
use oci_types::{Descriptor, Digest, MediaType, Repository, Tag, media_type};
use oci_unpack::{Error, ExtractOptions, LayerRef, extract_layers, layer_file, write_uncompressed};

/// A layer tar of a few files, different for each `seed`, about 300 KiB.
fn layer_tar(seed: u8) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for n in 0..3u8 {
        let content: Vec<u8> = (0..100_000u32)
            .map(|i| (i as u8).wrapping_mul(seed).wrapping_add(n))
            .collect();
        let mut header = tar::Header::new_ustar();
        header.set_path(format!("layer{seed}/file{n}")).unwrap();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append(&header, &content[..]).unwrap();
    }
    tar.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

#[derive(Debug, Clone, Copy)]
enum Compression {
    Gzip,
    Zstd,
    Plain,
}

/// A layer as a test made it: its tar and blob.
struct TestLayer {
    tar: Vec<u8>,
    layer: LayerRef,
}

/// Pushes `seed`'s layer tar, compressed as asked, into `store`.
async fn push_layer(store: &MemoryStore, repo: &Repository, seed: u8, c: Compression) -> TestLayer {
    let tar = layer_tar(seed);
    let (media_type, blob) = match c {
        Compression::Gzip => (media_type::OCI_LAYER_GZIP, gzip(&tar)),
        Compression::Zstd => (
            media_type::OCI_LAYER_ZSTD,
            zstd::encode_all(&tar[..], 3).unwrap(),
        ),
        Compression::Plain => (media_type::OCI_LAYER_TAR, tar.clone()),
    };
    let descriptor = store
        .push_blob_bytes(repo, MediaType::from_static(media_type), Bytes::from(blob))
        .await
        .unwrap();
    TestLayer {
        layer: LayerRef::new(descriptor, Digest::sha256(&tar)),
        tar,
    }
}

fn repo() -> Repository {
    Repository::parse("test/layers").unwrap()
}

/// The names in `dir`, sorted; none if it does not exist.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

/// Asserts that `dir` holds no layer file and no temporary file.
fn assert_nothing_left(dir: &Path) {
    assert_eq!(names(&dir.join("sha256")), Vec::<String>::new());
    assert_eq!(names(&dir.join(".tmp")), Vec::<String>::new());
}

fn code(error: &Error) -> Option<ErrorCode> {
    error.store_error().and_then(oci_store::Error::code)
}

/// What [`Watched`] does to reads of a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Misbehaviour {
    /// Serves the content with one byte changed, through a reader that does not verify.
    Corrupt,
    /// Serves half of the content, then waits until released (see [`Watched::release`]).
    Stall,
    /// Fails, once `n` reads of other blobs are stalled.
    FailAfterStalls(usize),
}

/// A `MemoryStore` that counts `get_blob` calls by digest and misbehaves as told.
#[derive(Debug)]
struct Watched {
    inner: MemoryStore,
    misbehaviours: HashMap<Digest, Misbehaviour>,
    calls: Mutex<HashMap<Digest, usize>>,
    stalled: tokio::sync::watch::Sender<usize>,
    /// Set when stalled reads may end (with an error).
    released: tokio::sync::watch::Sender<bool>,
    /// Where temporary files are made, and how many there were when a read failed on purpose.
    temporary: Option<std::path::PathBuf>,
    temporary_when_failing: AtomicUsize,
}

impl Watched {
    fn new(inner: MemoryStore) -> Self {
        Self {
            inner,
            misbehaviours: HashMap::new(),
            calls: Mutex::new(HashMap::new()),
            stalled: tokio::sync::watch::Sender::new(0),
            released: tokio::sync::watch::Sender::new(false),
            temporary: None,
            temporary_when_failing: AtomicUsize::new(0),
        }
    }

    fn with(mut self, digest: &Digest, misbehaviour: Misbehaviour) -> Self {
        self.misbehaviours.insert(digest.clone(), misbehaviour);
        self
    }

    /// Ends the stalled reads, with an error, once dropped: a test that fails does not leave
    /// writers blocked for ever (which would keep its runtime from shutting down).
    fn release(&self) -> Release {
        Release(self.released.clone())
    }

    fn calls(&self, digest: &Digest) -> usize {
        self.calls.lock().unwrap().get(digest).copied().unwrap_or(0)
    }

    fn total_calls(&self) -> usize {
        self.calls.lock().unwrap().values().sum()
    }
}

/// Releases the stalled reads of a [`Watched`] when dropped.
struct Release(tokio::sync::watch::Sender<bool>);

impl Drop for Release {
    fn drop(&mut self) {
        self.0.send_replace(true);
    }
}

impl fmt::Display for Watched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "watched {}", self.inner)
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl OciInterface for Watched {
    async fn get_blob(&self, repo: &Repository, digest: &Digest) -> oci_store::Result<BlobReader> {
        *self
            .calls
            .lock()
            .unwrap()
            .entry(digest.clone())
            .or_default() += 1;
        let Some(misbehaviour) = self.misbehaviours.get(digest).copied() else {
            return self.inner.get_blob(repo, digest).await;
        };
        let descriptor = self.inner.resolve_blob(repo, digest).await?;
        let content = self.inner.get_blob_bytes(repo, digest, u64::MAX).await?;
        match misbehaviour {
            Misbehaviour::Corrupt => {
                let mut changed = content.to_vec();
                // Byte 4 of a gzip member is part of its time stamp: the uncompressed content
                // stays the same, only the blob's digest changes.
                changed[4] ^= 0xff;
                let size = descriptor.size;
                Ok(BlobReader::ranged(
                    descriptor,
                    0..size,
                    body_from_bytes(changed),
                ))
            }
            Misbehaviour::Stall => {
                let half = content.slice(..content.len() / 2);
                let stalled = self.stalled.clone();
                let mut released = self.released.subscribe();
                let stall = futures::stream::once(async move {
                    stalled.send_modify(|n| *n += 1);
                    let _ = released.wait_for(|released| *released).await;
                    Err(oci_store::Error::io(
                        "reading a blob",
                        std::io::Error::other("released by the test"),
                    ))
                });
                let body = BlobBody::new(futures::stream::iter([Ok(half)]).chain(stall));
                Ok(BlobReader::verified(descriptor, body))
            }
            Misbehaviour::FailAfterStalls(n) => {
                let mut stalled = self.stalled.subscribe();
                stalled.wait_for(|stalled| *stalled >= n).await.unwrap();
                if let Some(temporary) = &self.temporary {
                    self.temporary_when_failing
                        .store(names(temporary).len(), Ordering::SeqCst);
                }
                Err(oci_store::Error::io(
                    "reading a blob",
                    std::io::Error::other("the disk is on fire"),
                ))
            }
        }
    }
    async fn get_blob_range(
        &self,
        repo: &Repository,
        digest: &Digest,
        start: u64,
        end: Option<u64>,
    ) -> oci_store::Result<BlobReader> {
        self.inner.get_blob_range(repo, digest, start, end).await
    }
    async fn get_manifest(
        &self,
        repo: &Repository,
        digest: &Digest,
    ) -> oci_store::Result<BlobReader> {
        self.inner.get_manifest(repo, digest).await
    }
    async fn get_tag(&self, repo: &Repository, tag: &Tag) -> oci_store::Result<BlobReader> {
        self.inner.get_tag(repo, tag).await
    }
    async fn resolve_blob(
        &self,
        repo: &Repository,
        digest: &Digest,
    ) -> oci_store::Result<Descriptor> {
        self.inner.resolve_blob(repo, digest).await
    }
    async fn resolve_manifest(
        &self,
        repo: &Repository,
        digest: &Digest,
    ) -> oci_store::Result<Descriptor> {
        self.inner.resolve_manifest(repo, digest).await
    }
    async fn resolve_tag(&self, repo: &Repository, tag: &Tag) -> oci_store::Result<Descriptor> {
        self.inner.resolve_tag(repo, tag).await
    }
    async fn push_blob(
        &self,
        repo: &Repository,
        descriptor: &Descriptor,
        body: BlobBody,
    ) -> oci_store::Result<Descriptor> {
        self.inner.push_blob(repo, descriptor, body).await
    }
    async fn push_blob_chunked(
        &self,
        repo: &Repository,
        chunk_size: Option<usize>,
    ) -> oci_store::Result<Box<dyn BlobWriter>> {
        self.inner.push_blob_chunked(repo, chunk_size).await
    }
    async fn push_blob_chunked_resume(
        &self,
        repo: &Repository,
        id: &str,
        offset: Option<u64>,
        chunk_size: Option<usize>,
    ) -> oci_store::Result<Box<dyn BlobWriter>> {
        self.inner
            .push_blob_chunked_resume(repo, id, offset, chunk_size)
            .await
    }
    async fn mount_blob(
        &self,
        from: &Repository,
        to: &Repository,
        digest: &Digest,
    ) -> oci_store::Result<Descriptor> {
        self.inner.mount_blob(from, to, digest).await
    }
    async fn push_manifest(
        &self,
        repo: &Repository,
        contents: Bytes,
        media_type: &MediaType,
        params: &PushManifestParams,
    ) -> oci_store::Result<Descriptor> {
        self.inner
            .push_manifest(repo, contents, media_type, params)
            .await
    }
    async fn delete_blob(&self, repo: &Repository, digest: &Digest) -> oci_store::Result<()> {
        self.inner.delete_blob(repo, digest).await
    }
    async fn delete_manifest(&self, repo: &Repository, digest: &Digest) -> oci_store::Result<()> {
        self.inner.delete_manifest(repo, digest).await
    }
    async fn delete_tag(&self, repo: &Repository, tag: &Tag) -> oci_store::Result<()> {
        self.inner.delete_tag(repo, tag).await
    }
    fn repositories(
        &self,
        params: &ListParams,
    ) -> BoxStream<'static, oci_store::Result<Repository>> {
        self.inner.repositories(params)
    }
    fn tags(
        &self,
        repo: &Repository,
        params: &ListParams,
    ) -> BoxStream<'static, oci_store::Result<Tag>> {
        self.inner.tags(repo, params)
    }
    fn referrers(
        &self,
        repo: &Repository,
        digest: &Digest,
        params: &ReferrersParams,
    ) -> BoxStream<'static, oci_store::Result<Descriptor>> {
        self.inner.referrers(repo, digest, params)
    }
}

/// Three layers, gzip, zstd and plain, in a new store.
async fn three_layers() -> (MemoryStore, Vec<TestLayer>) {
    let store = MemoryStore::new();
    let repo = repo();
    let mut layers = Vec::new();
    for (seed, c) in [
        (1, Compression::Gzip),
        (2, Compression::Zstd),
        (3, Compression::Plain),
    ] {
        layers.push(push_layer(&store, &repo, seed, c).await);
    }
    (store, layers)
}

fn refs(layers: &[TestLayer]) -> Vec<LayerRef> {
    layers.iter().map(|l| l.layer.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_layer_becomes_a_file_named_by_its_diff_id() {
    let (store, layers) = three_layers().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("layers");
    let options = ExtractOptions::default().with_jobs(2);
    let report = extract_layers(&store, &repo(), &refs(&layers), &out, &options)
        .await
        .unwrap();

    assert_eq!(report.extracted(), 3);
    assert_eq!(report.skipped(), 0);
    let total: usize = layers.iter().map(|l| l.tar.len()).sum();
    assert_eq!(report.bytes, total as u64);
    for (layer, extracted) in layers.iter().zip(&report.layers) {
        let hex = layer.layer.diff_id.encoded();
        assert_eq!(extracted.path, out.join("sha256").join(hex));
        assert_eq!(extracted.path, layer_file(&out, &layer.layer.diff_id));
        assert_eq!(extracted.diff_id, layer.layer.diff_id);
        assert_eq!(extracted.size, layer.tar.len() as u64);
        let content = std::fs::read(&extracted.path).unwrap();
        assert!(content == layer.tar, "{} differs", extracted.path.display());
        assert_eq!(Digest::sha256(&content).encoded(), hex);
    }
    assert_eq!(names(&out.join("sha256")).len(), 3);
    assert_eq!(names(&out.join(".tmp")), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_that_does_not_match_its_digest_leaves_nothing() {
    let (store, layers) = three_layers().await;
    let gzip_layer = &layers[0].layer;
    // The store hands out altered bytes without checking them: the uncompressed content is
    // right, only the blob's digest is wrong.
    let lying =
        Watched::new(store.clone()).with(&gzip_layer.descriptor.digest, Misbehaviour::Corrupt);
    let dir = tempfile::tempdir().unwrap();
    let options = ExtractOptions::default().with_jobs(1);
    let error = extract_layers(
        &lying,
        &repo(),
        std::slice::from_ref(gzip_layer),
        dir.path(),
        &options,
    )
    .await
    .unwrap_err();
    assert_eq!(code(&error), Some(ErrorCode::DigestInvalid), "{error}");
    assert_nothing_left(dir.path());

    // A descriptor whose size is not the blob's, from a faithful store.
    let mut wrong_size = layers[2].layer.clone();
    wrong_size.descriptor.size -= 1;
    let error = extract_layers(&store, &repo(), &[wrong_size], dir.path(), &options)
        .await
        .unwrap_err();
    assert_eq!(code(&error), Some(ErrorCode::SizeInvalid), "{error}");
    assert_nothing_left(dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_diff_id_leaves_nothing() {
    let (store, layers) = three_layers().await;
    let dir = tempfile::tempdir().unwrap();
    for layer in &layers {
        let mut wrong = layer.layer.clone();
        wrong.diff_id = Digest::sha256(b"another tar");
        let error = extract_layers(
            &store,
            &repo(),
            &[wrong],
            dir.path(),
            &ExtractOptions::default(),
        )
        .await
        .unwrap_err();
        assert_eq!(code(&error), Some(ErrorCode::DigestInvalid), "{error}");
        assert!(
            error
                .to_string()
                .contains(layer.layer.descriptor.digest.as_str()),
            "{error}"
        );
        assert_nothing_left(dir.path());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_over_the_limit_leaves_nothing() {
    let (store, layers) = three_layers().await;
    let dir = tempfile::tempdir().unwrap();
    let options = ExtractOptions::default().with_max_layer_bytes(100_000);
    let error = extract_layers(&store, &repo(), &refs(&layers[..1]), dir.path(), &options)
        .await
        .unwrap_err();
    assert!(error.source_chain_contains("limit"), "{error}");
    assert_nothing_left(dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layers_over_the_total_limit_stop_each_within_it() {
    let (store, layers) = three_layers().await;
    let dir = tempfile::tempdir().unwrap();
    // Room for two layers of the three, whichever come first.
    let two = layers[..2].iter().map(|l| l.tar.len() as u64).sum::<u64>();
    let options = ExtractOptions::default()
        .with_jobs(1)
        .with_max_total_bytes(two + 1);
    let error = extract_layers(&store, &repo(), &refs(&layers), dir.path(), &options)
        .await
        .unwrap_err();
    assert!(error.source_chain_contains("in all (the limit)"), "{error}");
    // The first two are whole; the third left nothing.
    for (n, layer) in layers.iter().enumerate() {
        let file = layer_file(dir.path(), &layer.layer.diff_id);
        assert_eq!(file.exists(), n < 2, "layer {n}");
    }
    let temporary: Vec<_> = std::fs::read_dir(dir.path().join(".tmp"))
        .unwrap()
        .collect();
    assert!(temporary.is_empty(), "{temporary:?}");
}

/// Whether an error or one of its causes mentions `text`.
trait ChainContains {
    fn source_chain_contains(&self, text: &str) -> bool;
}

impl ChainContains for Error {
    fn source_chain_contains(&self, text: &str) -> bool {
        let mut cause: Option<&dyn std::error::Error> = Some(self);
        while let Some(error) = cause {
            if error.to_string().contains(text) {
                return true;
            }
            cause = error.source();
        }
        false
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_fetches_only_the_missing_layers() {
    let (store, layers) = three_layers().await;
    let store = Watched::new(store);
    let dir = tempfile::tempdir().unwrap();
    let options = ExtractOptions::default();
    let layers_refs = refs(&layers);

    let first = extract_layers(&store, &repo(), &layers_refs, dir.path(), &options)
        .await
        .unwrap();
    assert_eq!((first.extracted(), first.skipped()), (3, 0));
    assert_eq!(store.total_calls(), 3);

    let second = extract_layers(&store, &repo(), &layers_refs, dir.path(), &options)
        .await
        .unwrap();
    assert_eq!((second.extracted(), second.skipped()), (0, 3));
    assert_eq!(second.bytes, 0);
    assert_eq!(store.total_calls(), 3, "nothing fetched again");
    let paths: Vec<_> = first.layers.iter().map(|l| &l.path).collect();
    assert_eq!(
        paths,
        second.layers.iter().map(|l| &l.path).collect::<Vec<_>>()
    );
    assert_eq!(
        first.layers.iter().map(|l| l.size).collect::<Vec<_>>(),
        second.layers.iter().map(|l| l.size).collect::<Vec<_>>()
    );

    // As after a run killed before its second layer was renamed into place.
    std::fs::remove_file(&first.layers[1].path).unwrap();
    let third = extract_layers(&store, &repo(), &layers_refs, dir.path(), &options)
        .await
        .unwrap();
    assert_eq!((third.extracted(), third.skipped()), (1, 2));
    assert!(!third.layers[1].skipped);
    assert_eq!(third.bytes, layers[1].tar.len() as u64);
    assert_eq!(store.total_calls(), 4);
    assert_eq!(store.calls(&layers[1].layer.descriptor.digest), 2);
    assert!(std::fs::read(&third.layers[1].path).unwrap() == layers[1].tar);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diff_id_listed_twice_is_fetched_once() {
    let (store, layers) = three_layers().await;
    let store = Watched::new(store);
    let dir = tempfile::tempdir().unwrap();
    let twice = vec![
        layers[0].layer.clone(),
        layers[1].layer.clone(),
        layers[0].layer.clone(),
    ];
    let report = extract_layers(
        &store,
        &repo(),
        &twice,
        dir.path(),
        &ExtractOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(store.calls(&layers[0].layer.descriptor.digest), 1);
    assert_eq!(
        report.layers.iter().map(|l| l.skipped).collect::<Vec<_>>(),
        [false, false, true]
    );
    assert_eq!(report.layers[0].path, report.layers[2].path);
    assert_eq!(report.layers[2].size, layers[0].tar.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_stops_the_layers_still_being_written() {
    let store = MemoryStore::new();
    let repo = repo();
    let stalled_a = push_layer(&store, &repo, 1, Compression::Plain).await;
    let stalled_b = push_layer(&store, &repo, 2, Compression::Gzip).await;
    let failing = push_layer(&store, &repo, 3, Compression::Zstd).await;
    let queued = push_layer(&store, &repo, 4, Compression::Gzip).await;
    let dir = tempfile::tempdir().unwrap();
    let mut watched = Watched::new(store)
        .with(&stalled_a.layer.descriptor.digest, Misbehaviour::Stall)
        .with(&stalled_b.layer.descriptor.digest, Misbehaviour::Stall)
        .with(
            &failing.layer.descriptor.digest,
            Misbehaviour::FailAfterStalls(2),
        );
    watched.temporary = Some(dir.path().join(".tmp"));
    let _release = watched.release();

    // Three at a time: the two stalled layers are half written when the third fails; the
    // fourth is never started.
    let layers = refs(&[stalled_a, stalled_b, failing, queued]);
    let options = ExtractOptions::default().with_jobs(3);
    // Not a timing: a bound that turns a hang (a stalled layer never stopped) into a failure.
    let error = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        extract_layers(&watched, &repo, &layers, dir.path(), &options),
    )
    .await
    .expect("the stalled layers were not stopped")
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains(layers[2].descriptor.digest.as_str()),
        "{error}"
    );
    assert!(
        error.source_chain_contains("the disk is on fire"),
        "{error}"
    );
    assert_eq!(
        watched.temporary_when_failing.load(Ordering::SeqCst),
        2,
        "the stalled layers were being written when the other failed"
    );
    assert_nothing_left(dir.path());
    assert_eq!(watched.calls(&layers[3].descriptor.digest), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_uncompressed_writes_the_tar_and_checks_what_it_can() {
    let (store, layers) = three_layers().await;
    let repo = repo();
    let options = ExtractOptions::default();
    for layer in &layers {
        let digest = &layer.layer.descriptor.digest;
        let (out, diff_id, size) =
            write_uncompressed(&store, &repo, digest, None, Vec::new(), &options)
                .await
                .unwrap();
        assert!(out == layer.tar);
        assert_eq!(diff_id, layer.layer.diff_id);
        assert_eq!(size, layer.tar.len() as u64);
        let (_, diff_id, _) = write_uncompressed(
            &store,
            &repo,
            digest,
            Some(&layer.layer.diff_id),
            Vec::new(),
            &options,
        )
        .await
        .unwrap();
        assert_eq!(diff_id, layer.layer.diff_id);
        let error = write_uncompressed(
            &store,
            &repo,
            digest,
            Some(&Digest::sha256(b"other")),
            Vec::new(),
            &options,
        )
        .await
        .unwrap_err();
        assert_eq!(code(&error), Some(ErrorCode::DigestInvalid), "{error}");
    }

    let error = write_uncompressed(
        &store,
        &repo,
        &Digest::sha256(b"not there"),
        None,
        Vec::new(),
        &options,
    )
    .await
    .unwrap_err();
    assert_eq!(code(&error), Some(ErrorCode::BlobUnknown), "{error}");

    /// A writer that refuses everything.
    #[derive(Debug)]
    struct Full;
    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::from(std::io::ErrorKind::StorageFull))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let error = write_uncompressed(
        &store,
        &repo,
        &layers[0].layer.descriptor.digest,
        None,
        Full,
        &options,
    )
    .await
    .unwrap_err();
    assert!(matches!(error, Error::Output { .. }), "{error:?}");
}

#[test]
fn layer_files_are_named_by_algorithm_and_hex() {
    let digest = Digest::sha256(b"tar");
    assert_eq!(
        layer_file(Path::new("/x"), &digest),
        Path::new("/x/sha256").join(digest.encoded())
    );
}
