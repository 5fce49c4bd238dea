//! `extract_layers`: each layer's uncompressed tar as a file named by its `diff_id`
//! (timecraft's ExtractLayers), and `write_uncompressed`: one layer's tar into any writer.
//!
//! A layer file appears only once it is whole and both of its digests matched: it is written
//! as a temporary file in `DIR/.tmp/`, synced, and renamed to `DIR/<algorithm>/<hex>` only
//! after the [`LayerReader`] reached the end of the layer (the store's read checked the blob's
//! digest, the reader the `diff_id`). A file already there is therefore trusted and not
//! fetched again, which makes an interrupted run resumable.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use oci_store::layer::{DEFAULT_LAYER_LIMIT, LayerReader};
use oci_store::{BlobBody, BlobReader, OciInterface};
use oci_types::{Digest, Repository};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::unpack::LayerRef;

/// The directory of `DIR` that holds the files being written.
const TEMPORARY_DIR: &str = ".tmp";
/// Bytes read from a layer and written to its file at a time.
const BUFFER: usize = 1 << 20;

/// How to extract layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExtractOptions {
    /// How many layers are fetched and written at once (default 4; 0 counts as 1).
    pub jobs: usize,
    /// The most uncompressed bytes of one layer (default 64 GiB).
    pub max_layer_bytes: u64,
    /// The most uncompressed bytes written by one [`extract_layers`] in all (default
    /// 256 GiB, as an unpack's image limit): a manifest may list many layers.
    pub max_total_bytes: u64,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        Self {
            jobs: 4,
            max_layer_bytes: DEFAULT_LAYER_LIMIT,
            max_total_bytes: 256 << 30,
        }
    }
}

impl ExtractOptions {
    /// Sets how many layers are fetched and written at once.
    #[must_use]
    pub fn with_jobs(mut self, jobs: usize) -> Self {
        self.jobs = jobs;
        self
    }

    /// Sets the most uncompressed bytes of one layer.
    #[must_use]
    pub fn with_max_layer_bytes(mut self, max: u64) -> Self {
        self.max_layer_bytes = max;
        self
    }

    /// Sets the most uncompressed bytes of all layers one extraction writes.
    #[must_use]
    pub fn with_max_total_bytes(mut self, max: u64) -> Self {
        self.max_total_bytes = max;
        self
    }
}

/// How much one extraction's layers may write, each and all together; shared by its writers.
#[derive(Debug)]
struct Budget {
    max_layer: u64,
    written: AtomicU64,
    max: u64,
}

impl Budget {
    /// Counts `bytes` more; an error once the total is past the limit.
    fn spend(&self, bytes: u64) -> Result<(), CopyFailure> {
        let before = self.written.fetch_add(bytes, Ordering::Relaxed);
        if before.saturating_add(bytes) > self.max {
            return Err(CopyFailure::OverBudget(self.max));
        }
        Ok(())
    }
}

/// One layer's file, as [`extract_layers`] left it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExtractedLayer {
    /// The layer's `diff_id`, which names the file.
    pub diff_id: Digest,
    /// The file: `DIR/<algorithm>/<hex>` ([`layer_file`]).
    pub path: PathBuf,
    /// Whether the file was already there (or was written for an earlier layer of the list
    /// with the same `diff_id`), so that this layer was not fetched.
    pub skipped: bool,
    /// The size of the file: the layer's uncompressed size.
    pub size: u64,
}

/// What an extraction did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExtractReport {
    /// Every layer given, in the same order (lowest first).
    pub layers: Vec<ExtractedLayer>,
    /// Bytes written by this run (the uncompressed sizes of the layers extracted).
    pub bytes: u64,
}

impl ExtractReport {
    /// How many layers were fetched and written.
    pub fn extracted(&self) -> usize {
        self.layers.iter().filter(|l| !l.skipped).count()
    }

    /// How many layers were not fetched because their file was there.
    pub fn skipped(&self) -> usize {
        self.layers.iter().filter(|l| l.skipped).count()
    }
}

/// The file of the layer with `diff_id` in `dir`: `dir/<algorithm>/<hex>` (`dir/sha256/…`).
pub fn layer_file(dir: &Path, diff_id: &Digest) -> PathBuf {
    dir.join(diff_id.algorithm().as_str())
        .join(diff_id.encoded())
}

/// Writes the uncompressed tar of each of `layers` of `repo` in `store` to its own file in
/// `dir` (made if missing), named by its `diff_id` ([`layer_file`]), `options.jobs` at a time.
///
/// Each file appears whole or not at all: it is written in `dir/.tmp/`, synced, and renamed
/// into place only once the blob's digest, its size and the `diff_id` all matched; the
/// directory is synced after the rename. A layer whose file is already there is not fetched
/// again (it counts as skipped). The first failure stops the layers still being written
/// (their temporary files are removed) and starts no more; files completed before it stay.
/// `dir/.tmp/` is left in place, empty, for the next run (a process killed while writing
/// leaves its temporary files there, never a partial layer file).
pub async fn extract_layers(
    store: &dyn OciInterface,
    repo: &Repository,
    layers: &[LayerRef],
    dir: &Path,
    options: &ExtractOptions,
) -> Result<ExtractReport> {
    let temporary = dir.join(TEMPORARY_DIR);
    std::fs::create_dir_all(&temporary)
        .map_err(|e| Error::target(&temporary, "cannot make the directory", e))?;
    let algorithms: HashSet<_> = layers.iter().map(|l| l.diff_id.algorithm()).collect();
    for algorithm in algorithms {
        let path = dir.join(algorithm.as_str());
        std::fs::create_dir_all(&path)
            .map_err(|e| Error::target(&path, "cannot make the directory", e))?;
    }
    sync_dir(dir)?;

    // The layers whose file is missing, each `diff_id` once.
    let mut present = HashMap::new();
    let mut wanted = Vec::new();
    let mut seen = HashSet::new();
    for layer in layers {
        if !seen.insert(&layer.diff_id) {
            continue;
        }
        let path = layer_file(dir, &layer.diff_id);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => {
                present.insert(&layer.diff_id, meta.len());
            }
            Ok(_) => {
                return Err(Error::Target {
                    path,
                    message: "is in the way of a layer file: not a regular file".to_owned(),
                    source: None,
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => wanted.push(layer),
            Err(e) => return Err(Error::target(path, "cannot read", e)),
        }
    }

    let budget = Arc::new(Budget {
        max_layer: options.max_layer_bytes,
        written: AtomicU64::new(0),
        max: options.max_total_bytes,
    });
    let cancel = CancellationToken::new();
    // Stops the blocking writers too if this future is dropped before they are done.
    let _cancel_on_drop = cancel.clone().drop_guard();
    let jobs = options.jobs.max(1);
    let mut queue = wanted.into_iter();
    let mut running = FuturesUnordered::new();
    let mut written = HashMap::new();
    let mut failure = None;
    loop {
        while failure.is_none() && running.len() < jobs {
            let Some(layer) = queue.next() else { break };
            let target = layer_file(dir, &layer.diff_id);
            running.push(extract_one(
                store,
                repo,
                layer,
                target,
                temporary.clone(),
                Arc::clone(&budget),
                cancel.clone(),
            ));
        }
        // Once a layer failed, the others still running are waited for: they stop at their
        // next piece and remove their temporary files before this returns.
        let Some((layer, result)) = running.next().await else {
            break;
        };
        match result {
            Ok(bytes) => {
                tracing::info!(layer = %layer.descriptor.digest, diff_id = %layer.diff_id,
                    bytes, "extracted layer");
                written.insert(&layer.diff_id, bytes);
            }
            Err(error) => {
                if failure.is_none() {
                    cancel.cancel();
                    failure = Some(error);
                }
            }
        }
    }
    if let Some(failure) = failure {
        return Err(failure);
    }

    let mut report = ExtractReport {
        layers: Vec::with_capacity(layers.len()),
        bytes: written.values().sum(),
    };
    for layer in layers {
        let path = layer_file(dir, &layer.diff_id);
        // Written now: the first layer with this diff_id counts as extracted, any other
        // as skipped.
        let (skipped, size) = match written.remove(&layer.diff_id) {
            Some(size) => (false, size),
            None => {
                let size = match present.get(&layer.diff_id) {
                    Some(size) => *size,
                    None => std::fs::metadata(&path)
                        .map_err(|e| Error::target(&path, "cannot read", e))?
                        .len(),
                };
                tracing::info!(diff_id = %layer.diff_id, "layer already extracted");
                (true, size)
            }
        };
        report.layers.push(ExtractedLayer {
            diff_id: layer.diff_id.clone(),
            path,
            skipped,
            size,
        });
    }
    Ok(report)
}

/// Fetches `layer` and writes its tar to `target` through a temporary file in `temporary`.
async fn extract_one<'a>(
    store: &dyn OciInterface,
    repo: &Repository,
    layer: &'a LayerRef,
    target: PathBuf,
    temporary: PathBuf,
    budget: Arc<Budget>,
    cancel: CancellationToken,
) -> (&'a LayerRef, Result<u64>) {
    let result = async {
        let digest = &layer.descriptor.digest;
        let context = format!("extracting layer {digest} of {repo}");
        let blob = cancel
            .run_until_cancelled(store.get_blob(repo, digest))
            .await
            .ok_or_else(cancelled)?
            .map_err(|e| Error::store(&context, e))?;
        // Checked against the layer's own descriptor too: a size the manifest gives that the
        // store's blob does not have fails here. The store's read already hashes the blob's
        // digest, so this only counts unless the store's stream does not verify it.
        let (_, body) = blob.into_parts();
        let verified = BlobReader::verified(layer.descriptor.clone(), body).into_stream();
        // The verified stream, made to end with an error as soon as another layer failed, so
        // that a writer waiting on a stalled stream stops too. It is read back as a ranged
        // reader of the whole blob, which only counts: its bytes were hashed above.
        let body = BlobBody::new(until_cancelled(verified, cancel.clone()));
        let blob = BlobReader::ranged(layer.descriptor.clone(), 0..layer.descriptor.size, body);
        let reader =
            LayerReader::new(blob, Some(layer.diff_id.clone())).with_limit(budget.max_layer);
        let writer_cancel = cancel.clone();
        tokio::task::spawn_blocking(move || {
            write_layer_file(
                reader,
                &temporary,
                &target,
                &context,
                &budget,
                &writer_cancel,
            )
        })
        .await
        .map_err(|e| Error::Invalid {
            message: format!("the thread writing layer {digest} failed: {e}"),
        })?
    }
    .await;
    (layer, result)
}

/// The failure of a layer stopped because another one failed (never the one reported).
fn cancelled() -> Error {
    Error::Invalid {
        message: "stopped: another layer failed".to_owned(),
    }
}

/// `body`, ending with an error once `cancel` is cancelled.
fn until_cancelled(
    body: BlobBody,
    cancel: CancellationToken,
) -> impl futures::Stream<Item = oci_store::Result<Bytes>> + Send + 'static {
    futures::stream::unfold(Some((body, cancel)), |state| async move {
        let (mut body, cancel) = state?;
        match cancel.run_until_cancelled(body.next()).await {
            Some(Some(item)) => Some((item, Some((body, cancel)))),
            Some(None) => None,
            None => Some((
                Err(oci_store::Error::io(
                    "reading a layer",
                    io::Error::other("stopped: another layer failed"),
                )),
                None,
            )),
        }
    })
}

/// Writes the whole of `reader` to a temporary file in `temporary`, then renames it to
/// `target` once the reader checked both digests, and syncs `target`'s directory. The
/// temporary file is removed on any failure (dropping it does).
fn write_layer_file(
    mut reader: LayerReader,
    temporary: &Path,
    target: &Path,
    context: &str,
    budget: &Budget,
    cancel: &CancellationToken,
) -> Result<u64> {
    let prefix = target
        .file_name()
        .map(|name| format!("{}.", name.to_string_lossy()))
        .unwrap_or_default();
    let mut file = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(0o666))
        .tempfile_in(temporary)
        .map_err(|e| Error::target(temporary, "cannot make a temporary file", e))?;
    let written =
        copy_layer(&mut reader, file.as_file_mut(), Some(budget), cancel).map_err(|failure| {
            failure.into_error(context, |e| {
                Error::target(file.path(), "cannot write the layer file", e)
            })
        })?;
    // The read that reached the end checked the diff_id; `finish` confirms that it did end.
    reader.finish().map_err(|e| Error::store(context, e))?;
    file.as_file()
        .sync_all()
        .map_err(|e| Error::target(file.path(), "cannot sync the layer file", e))?;
    file.persist(target)
        .map_err(|e| Error::target(target, "cannot rename the layer file into place", e.error))?;
    if let Some(parent) = target.parent() {
        sync_dir(parent)?;
    }
    Ok(written)
}

/// Why copying a layer stopped.
enum CopyFailure {
    /// Reading the layer failed (its blob, its digests, a limit).
    Read(oci_store::Error),
    /// Writing the output failed.
    Write(io::Error),
    /// Another layer failed.
    Cancelled,
    /// The layers written are over this many bytes in all.
    OverBudget(u64),
}

impl CopyFailure {
    fn into_error(self, context: &str, write: impl FnOnce(io::Error) -> Error) -> Error {
        match self {
            Self::Read(e) => Error::store(context, e),
            Self::Write(e) => write(e),
            Self::Cancelled => cancelled(),
            Self::OverBudget(max) => Error::Invalid {
                message: format!(
                    "the layers hold more than {max} bytes in all (the limit), at {context}"
                ),
            },
        }
    }
}

/// Copies `reader` to its end into `out` and flushes it, unless `cancel` is cancelled first;
/// returns the bytes copied.
fn copy_layer(
    reader: &mut LayerReader,
    out: &mut dyn Write,
    budget: Option<&Budget>,
    cancel: &CancellationToken,
) -> Result<u64, CopyFailure> {
    let mut buffer = vec![0; BUFFER];
    let mut written = 0u64;
    loop {
        if cancel.is_cancelled() {
            return Err(CopyFailure::Cancelled);
        }
        let read = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyFailure::Read(reader.io_error(e))),
        };
        if let Some(budget) = budget {
            budget.spend(read as u64)?;
        }
        out.write_all(&buffer[..read]).map_err(CopyFailure::Write)?;
        written += read as u64;
    }
    out.flush().map_err(CopyFailure::Write)?;
    Ok(written)
}

/// Syncs a directory, so that the names made or renamed in it last.
fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::target(dir, "cannot sync the directory", e))
}

/// Writes the uncompressed tar of the layer blob `layer` of `repo` in `store` into `out`,
/// flushes it and gives it back, with the digest of the tar (the layer's `diff_id`) and its
/// size.
///
/// The blob's digest is checked by the store's read; the tar is checked against `diff_id`
/// when one is given (from the image config). Either check fails only at the end, when the
/// tar has been written: write into a temporary file and keep it only on success, as
/// [`extract_layers`] does. `options.max_layer_bytes` limits the tar's size; a failure of
/// `out` is [`Error::Output`].
pub async fn write_uncompressed<W: Write + Send + 'static>(
    store: &dyn OciInterface,
    repo: &Repository,
    layer: &Digest,
    diff_id: Option<&Digest>,
    out: W,
    options: &ExtractOptions,
) -> Result<(W, Digest, u64)> {
    let context = format!("reading layer {layer} of {repo}");
    let blob = store
        .get_blob(repo, layer)
        .await
        .map_err(|e| Error::store(&context, e))?;
    let mut reader = LayerReader::new(blob, diff_id.cloned()).with_limit(options.max_layer_bytes);
    let cancel = CancellationToken::new();
    let _cancel_on_drop = cancel.clone().drop_guard();
    let writer_cancel = cancel.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = out;
        let written = copy_layer(&mut reader, &mut out, None, &writer_cancel)
            .map_err(|failure| failure.into_error(&context, |source| Error::Output { source }))?;
        let digest = reader.finish().map_err(|e| Error::store(&context, e))?;
        Ok((out, digest, written))
    })
    .await
    .map_err(|e| Error::Invalid {
        message: format!("the thread writing layer {layer} failed: {e}"),
    })?
}
