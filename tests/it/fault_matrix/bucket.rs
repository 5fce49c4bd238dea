//! The object-storage backend over a bucket that fails on purpose.

use super::*;

/// A fault of a [`FlakyBucket`]: its `nth` call of `op` fails, and with `persistent` every one
/// after it too.
#[derive(Debug, Clone, Copy)]
struct BucketFault {
    op: &'static str,
    nth: usize,
    persistent: bool,
}

/// An in-memory bucket whose operations fail on purpose ([`BucketFault`]); it counts its calls
/// by operation (`put`, `get`, `head`, `copy`, `delete`, `list`, the streaming multipart
/// writer's `writer_create`, `writer_part`, `writer_complete`, and the multipart API's
/// `create_multipart`, `put_part`, `complete_multipart`, `abort_multipart`).
#[derive(Debug, Default)]
struct FlakyBucket {
    inner: InMemory,
    /// Shared with the streaming writers it hands out.
    state: Arc<Mutex<FlakyState>>,
}

#[derive(Debug, Default)]
struct FlakyState {
    calls: BTreeMap<&'static str, usize>,
    fault: Option<BucketFault>,
}

/// What the failures say, to find them in a copy's error.
const ON_PURPOSE: &str = "failed on purpose";

/// Counts a call of `op`; fails it if the fault says so.
fn enter(state: &Mutex<FlakyState>, op: &'static str) -> object_store::Result<()> {
    let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
    let count = {
        let count = state.calls.entry(op).or_default();
        *count += 1;
        *count
    };
    match state.fault {
        Some(fault)
            if fault.op == op
                && (count == fault.nth || (fault.persistent && count > fault.nth)) =>
        {
            Err(object_store::Error::Generic {
                store: "FlakyBucket",
                source: format!("{op} #{count} {ON_PURPOSE}").into(),
            })
        }
        _ => Ok(()),
    }
}

impl FlakyBucket {
    fn state(&self) -> std::sync::MutexGuard<'_, FlakyState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn enter(&self, op: &'static str) -> object_store::Result<()> {
        enter(&self.state, op)
    }

    /// Sets the fault (none: a faithful bucket) and counts from zero again.
    fn arm(&self, fault: Option<BucketFault>) {
        let mut state = self.state();
        state.calls.clear();
        state.fault = fault;
    }

    fn calls(&self) -> BTreeMap<&'static str, usize> {
        self.state().calls.clone()
    }
}

impl fmt::Display for FlakyBucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FlakyBucket({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FlakyBucket {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.enter("put")?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.enter("writer_create")?;
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(FlakyWriter {
            inner,
            state: Arc::clone(&self.state),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.enter(if options.head { "head" } else { "get" })?;
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        match self.enter("delete") {
            Ok(()) => self.inner.delete_stream(locations),
            Err(error) => futures::stream::once(async move { Err(error) }).boxed(),
        }
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        match self.enter("list") {
            Ok(()) => self.inner.list(prefix),
            Err(error) => futures::stream::once(async move { Err(error) }).boxed(),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.enter("list")?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.enter("copy")?;
        self.inner.copy_opts(from, to, options).await
    }
}

#[async_trait]
impl MultipartStore for FlakyBucket {
    async fn create_multipart(&self, path: &Path) -> object_store::Result<MultipartId> {
        self.enter("create_multipart")?;
        self.inner.create_multipart(path).await
    }

    async fn put_part(
        &self,
        path: &Path,
        id: &MultipartId,
        part_idx: usize,
        data: PutPayload,
    ) -> object_store::Result<PartId> {
        self.enter("put_part")?;
        self.inner.put_part(path, id, part_idx, data).await
    }

    async fn complete_multipart(
        &self,
        path: &Path,
        id: &MultipartId,
        parts: Vec<PartId>,
    ) -> object_store::Result<PutResult> {
        self.enter("complete_multipart")?;
        self.inner.complete_multipart(path, id, parts).await
    }

    async fn abort_multipart(&self, path: &Path, id: &MultipartId) -> object_store::Result<()> {
        self.enter("abort_multipart")?;
        self.inner.abort_multipart(path, id).await
    }
}

/// The streaming multipart writer of a [`FlakyBucket`], failing as its fault says.
#[derive(Debug)]
struct FlakyWriter {
    inner: Box<dyn MultipartUpload>,
    state: Arc<Mutex<FlakyState>>,
}

#[async_trait]
impl MultipartUpload for FlakyWriter {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        match enter(&self.state, "writer_part") {
            Ok(()) => self.inner.put_part(data),
            Err(error) => Box::pin(async move { Err(error) }),
        }
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        enter(&self.state, "writer_complete")?;
        self.inner.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        enter(&self.state, "writer_abort")?;
        self.inner.abort().await
    }
}

/// Layer sizes for the bucket matrix: small, so that every failure point of a run can be a
/// case, but over the part size, so that uploads go in several parts.
const BUCKET_LAYERS: [usize; 3] = [20_000, 9_000, 5_000];

/// The part size of the bucket stores here: a 20 kB layer goes up in five parts.
const PART_SIZE: usize = 4096;

/// A bucket store over a new [`FlakyBucket`]: with the bucket's multipart API, or keeping an
/// upload's parts as objects of their own.
fn bucket_store(multipart: bool) -> (Arc<FlakyBucket>, oci_bucket::BucketStore) {
    let bucket = Arc::new(FlakyBucket::default());
    let store = if multipart {
        oci_bucket::BucketStore::with_multipart(Arc::clone(&bucket))
    } else {
        oci_bucket::BucketStore::new(Arc::clone(&bucket) as Arc<dyn ObjectStore>)
    };
    (bucket, store.with_part_size(PART_SIZE))
}

/// How many of the image's blobs `store` has (complete: [`assert_nothing_tagged`] or
/// [`assert_complete`] checked them).
async fn blobs_present(store: &dyn OciInterface, repo: &Repository, image: &Image) -> usize {
    let mut present = 0;
    for (descriptor, _) in &image.blobs {
        if store.resolve_blob(repo, &descriptor.digest).await.is_ok() {
            present += 1;
        }
    }
    present
}

/// `oci_build::copy` from memory into a bucket store whose bucket fails at each of its
/// operations in turn: the Nth call of each kind (put, get, head, copy, delete, list, each
/// step of a multipart upload) that a faithful run makes, once, then from the Nth on. Each run
/// ends complete or failed with the bucket's error and no tag; the run again without faults
/// completes, reading from the source only the blobs the target still lacks.
#[tokio::test]
async fn a_copy_into_a_bucket_ends_complete_or_failed_cleanly_at_every_failure_point() {
    let source = Faulty::new(MemoryStore::new());
    let src_repo = repo("source");
    let image = image(&source, &src_repo, BUCKET_LAYERS).await;
    let dst_repo = repo("target");
    let reference = ManifestRef::Tag(image.tag.clone());
    let tags = std::slice::from_ref(&image.tag);
    // One blob at a time, so that the Nth call of an operation is the same one in every run.
    let options = CopyOptions::default().with_jobs(1);
    let copy = |store: &oci_bucket::BucketStore| {
        let store = store.clone();
        let (reference, options, src_repo, dst_repo) = (
            reference.clone(),
            options.clone(),
            src_repo.clone(),
            dst_repo.clone(),
        );
        let source = source.clone();
        async move {
            oci_build::copy(
                Endpoint::new(&source, &src_repo),
                &reference,
                Endpoint::new(&store, &dst_repo),
                tags,
                &options,
            )
            .await
        }
    };
    let mut failed = 0;
    let mut runs = 0;
    for multipart in [true, false] {
        let backend = if multipart {
            "multipart uploads"
        } else {
            "parts as objects"
        };
        // A faithful run, to learn the failure points.
        let (bucket, store) = bucket_store(multipart);
        let clean = copy(&store).await;
        // Counted before the check, whose reads are not part of the copy.
        let points = bucket.calls();
        check_outcome(
            backend,
            &clean,
            &Expect::Complete,
            &store,
            &dst_repo,
            &image,
        )
        .await;
        assert!(
            points.get("writer_part").is_some_and(|&n| n >= 5),
            "{backend}: the uploads did not go in parts: {points:?}"
        );
        for (&op, &count) in &points {
            for nth in 1..=count {
                for persistent in [false, true] {
                    let case = format!(
                        "{backend}: {op} #{nth} of {count} fails{}",
                        if persistent {
                            ", and every one after"
                        } else {
                            ""
                        }
                    );
                    let (bucket, store) = bucket_store(multipart);
                    bucket.arm(Some(BucketFault {
                        op,
                        nth,
                        persistent,
                    }));
                    let outcome = copy(&store).await;
                    let calls = bucket.calls();
                    bucket.arm(None);
                    assert!(
                        calls.get(op).is_some_and(|&n| n >= nth),
                        "{case}: the failure point was never reached: {calls:?}"
                    );
                    runs += 1;
                    match &outcome {
                        Ok(_) => {
                            check_outcome(
                                &case,
                                &outcome,
                                &Expect::Complete,
                                &store,
                                &dst_repo,
                                &image,
                            )
                            .await;
                        }
                        Err(_) => {
                            failed += 1;
                            let expect = Expect::Fails(vec![ON_PURPOSE.to_owned()]);
                            check_outcome(&case, &outcome, &expect, &store, &dst_repo, &image)
                                .await;
                        }
                    }
                    // Again, without faults: it completes, and reads from the source only
                    // what the target lacks.
                    let missing =
                        image.blobs.len() - blobs_present(&store, &dst_repo, &image).await;
                    let reads = source.calls("get_blob");
                    let again = copy(&store).await;
                    check_outcome(
                        &format!("{case}, run again without faults"),
                        &again,
                        &Expect::Complete,
                        &store,
                        &dst_repo,
                        &image,
                    )
                    .await;
                    assert_eq!(
                        source.calls("get_blob") - reads,
                        missing as u64,
                        "{case}: the run again read more than the missing blobs"
                    );
                }
            }
        }
    }
    // The matrix proves something only if faults made copies fail, as well as pass.
    assert!(
        failed > 0 && failed < runs,
        "{failed} of {runs} runs failed"
    );
}
