//! `unpack`: an image's root filesystem in a directory.
//!
//! The layers stream through a pipeline: the async side fetches layer after layer, a
//! blocking thread per layer decompresses it (checking its digest and `diff_id`) into a small
//! queue, and one blocking thread applies the layers' entries in order. The next layer is
//! fetched and decompressing while the current one is applied, at most a few MiB ahead.

use std::io;
use std::path::Path;

use oci_store::OciInterface;
use oci_store::layer::{
    DEFAULT_LAYER_LIMIT, LayerLimits, LayerReader, into_store_error, read_entries,
};
use oci_types::{Descriptor, Digest, ImageManifest, Repository};
use tokio::sync::mpsc;

use crate::apply::{Applier, Privileges};
use crate::error::{Error, Result};
use crate::pieces::{PIECES_QUEUED, PieceReader, PieceResult, decompress, piece_pool};
use crate::root::Root;

/// A layer of an image: its blob and the `diff_id` its config gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LayerRef {
    /// The layer blob.
    pub descriptor: Descriptor,
    /// The digest of its uncompressed tar.
    pub diff_id: Digest,
}

impl LayerRef {
    /// The layer blob `descriptor`, whose uncompressed tar has the digest `diff_id`.
    pub fn new(descriptor: Descriptor, diff_id: Digest) -> Self {
        Self {
            descriptor,
            diff_id,
        }
    }
}

/// The layers of an image, each with its `diff_id` from the config (`rootfs.diff_ids`).
pub fn image_layers(manifest: &ImageManifest, config: &[u8]) -> Result<Vec<LayerRef>> {
    let invalid = |message: String| Error::Invalid { message };
    let json: serde_json::Value = serde_json::from_slice(config)
        .map_err(|e| invalid(format!("the image config is not JSON: {e}")))?;
    let ids = json
        .get("rootfs")
        .and_then(|r| r.get("diff_ids"))
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| invalid("the image config has no rootfs.diff_ids".to_owned()))?;
    if ids.len() != manifest.layers.len() {
        return Err(invalid(format!(
            "the image has {} layers but its config lists {} diff_ids",
            manifest.layers.len(),
            ids.len()
        )));
    }
    manifest
        .layers
        .iter()
        .zip(ids)
        .map(|(layer, id)| {
            let diff_id = id
                .as_str()
                .and_then(|s| Digest::parse(s).ok())
                .ok_or_else(|| invalid(format!("the image config has a bad diff_id {id}")))?;
            Ok(LayerRef {
                descriptor: layer.clone(),
                diff_id,
            })
        })
        .collect()
}

/// What an unpack reports as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnpackEvent {
    /// Applying layer `index` (of `count`) began.
    LayerStarted {
        /// Which layer, from 0 (the lowest).
        index: usize,
        /// How many layers there are.
        count: usize,
    },
    /// Uncompressed bytes of a layer were applied (an increment, not a total).
    LayerProgress {
        /// Which layer.
        index: usize,
        /// Bytes since the last event.
        bytes: u64,
    },
    /// A layer is applied.
    LayerDone {
        /// Which layer.
        index: usize,
        /// Its blob's digest.
        digest: Digest,
    },
}

/// Where unpack events go (called from the applying thread).
pub type UnpackProgress = std::sync::Arc<dyn Fn(&UnpackEvent) + Send + Sync>;

/// How to unpack.
#[derive(Clone)]
#[non_exhaustive]
pub struct UnpackOptions {
    /// Leave owners as they come and make device nodes empty files; `None`: when not root.
    pub rootless: Option<bool>,
    /// Limits on each layer's tar.
    pub limits: LayerLimits,
    /// The most uncompressed bytes of one layer (default 64 GiB).
    pub max_layer_bytes: u64,
    /// The most bytes of file content of the whole image (default 256 GiB).
    pub max_image_bytes: u64,
    /// The most entries of the whole image, whiteouts included (default 4,000,000: four
    /// layers at [`LayerLimits::max_entries`]; a large distribution has ~100,000). Each is an
    /// inode, or work, that `max_image_bytes` does not count.
    pub max_image_entries: u64,
    /// Where progress events go.
    pub progress: Option<UnpackProgress>,
}

impl std::fmt::Debug for UnpackOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnpackOptions")
            .field("rootless", &self.rootless)
            .field("limits", &self.limits)
            .field("max_layer_bytes", &self.max_layer_bytes)
            .field("max_image_bytes", &self.max_image_bytes)
            .field("max_image_entries", &self.max_image_entries)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl Default for UnpackOptions {
    fn default() -> Self {
        Self {
            rootless: None,
            limits: LayerLimits::default(),
            max_layer_bytes: DEFAULT_LAYER_LIMIT,
            max_image_bytes: 256 << 30,
            max_image_entries: 4_000_000,
            progress: None,
        }
    }
}

impl UnpackOptions {
    /// Forces rootless (or privileged) unpacking.
    #[must_use]
    pub fn with_rootless(mut self, rootless: bool) -> Self {
        self.rootless = Some(rootless);
        self
    }

    /// Sets the limits on each layer's tar.
    #[must_use]
    pub fn with_limits(mut self, limits: LayerLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the most uncompressed bytes of one layer.
    #[must_use]
    pub fn with_max_layer_bytes(mut self, max: u64) -> Self {
        self.max_layer_bytes = max;
        self
    }

    /// Sends progress events to `progress`.
    #[must_use]
    pub fn with_progress(mut self, progress: UnpackProgress) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Sets the most bytes of file content of the image.
    #[must_use]
    pub fn with_max_image_bytes(mut self, max: u64) -> Self {
        self.max_image_bytes = max;
        self
    }

    /// Sets the most entries of the image.
    #[must_use]
    pub fn with_max_image_entries(mut self, max: u64) -> Self {
        self.max_image_entries = max;
        self
    }
}

/// What an unpack did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnpackReport {
    /// Layers applied.
    pub layers: usize,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Whether owners and devices were left out.
    pub rootless: bool,
}

/// Unpacks `layers` (lowest first) of `repo` in `store` into `dir`, which must be empty or
/// not exist. Nothing is created, changed or followed outside `dir`.
///
/// An unpack that fails leaves `dir` as it found it: what it unpacked is removed, and `dir`
/// too if the unpack made it. (A half-unpacked tree looks like a whole one to whatever runs
/// it next, and a retry would find the directory not empty.)
pub async fn unpack(
    store: &dyn OciInterface,
    repo: &Repository,
    layers: &[LayerRef],
    dir: &Path,
    options: &UnpackOptions,
) -> Result<UnpackReport> {
    if let Ok(mut entries) = std::fs::read_dir(dir)
        && entries.next().is_some()
    {
        return Err(Error::Target {
            path: dir.to_path_buf(),
            message: "is not empty: unpack into a new or empty directory".to_owned(),
            source: None,
        });
    }
    let existed = std::fs::symlink_metadata(dir).is_ok();
    let root = Root::open(dir).map_err(|e| Error::target(dir, "cannot make the directory", e))?;
    let unpacked = unpack_into(store, repo, layers, root, options).await;
    if unpacked.is_err() {
        let dir = dir.to_path_buf();
        let removed = tokio::task::spawn_blocking(move || -> io::Result<()> {
            Root::open(&dir)?.remove_contents()?;
            if !existed {
                std::fs::remove_dir(&dir)?;
            }
            Ok(())
        })
        .await;
        match removed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "what the failed unpack wrote could not all be removed")
            }
            Err(e) => tracing::warn!(error = %e, "the removal after a failed unpack failed"),
        }
    }
    unpacked
}

/// [`unpack`]'s work, into `root`.
async fn unpack_into(
    store: &dyn OciInterface,
    repo: &Repository,
    layers: &[LayerRef],
    root: Root,
    options: &UnpackOptions,
) -> Result<UnpackReport> {
    let is_root = rustix::process::geteuid().is_root();
    let rootless = options.rootless.unwrap_or(!is_root);
    let privileges = Privileges {
        as_root: is_root && !rootless,
    };
    if rootless {
        tracing::info!(
            "unpacking rootless: owners are left out and device nodes become empty files"
        );
    }
    let (layer_sender, mut layer_receiver) =
        mpsc::channel::<(Digest, mpsc::Receiver<PieceResult>)>(1);
    let pool = piece_pool();
    let limits = options.limits;
    let (max_image, max_entries) = (options.max_image_bytes, options.max_image_entries);
    let progress = options.progress.clone();
    let count = layers.len();
    let applier = tokio::task::spawn_blocking(move || -> Result<(u64, usize)> {
        let mut applier = Applier::new(root, privileges, max_image, max_entries, &limits);
        let mut applied = 0;
        let emit = |event: UnpackEvent| {
            if let Some(progress) = &progress {
                progress(&event);
            }
        };
        while let Some((layer, pieces)) = layer_receiver.blocking_recv() {
            applier.begin_layer();
            let index = applied;
            emit(UnpackEvent::LayerStarted { index, count });
            let mut reader = PieceReader::new(pieces);
            if progress.is_some() {
                let progress = progress.clone();
                reader.on_piece = Some(Box::new(move |bytes| {
                    if let Some(progress) = &progress {
                        progress(&UnpackEvent::LayerProgress { index, bytes });
                    }
                }));
            }
            let mut failure = None;
            let read = read_entries(&layer, &mut reader, &limits, |entry| {
                applier.apply(&layer, entry).map_err(|e| {
                    failure = Some(e);
                    oci_store::Error::io("applying", io::Error::other("stopped"))
                })
            });
            if let Some(failure) = failure {
                return Err(failure);
            }
            read.map_err(|e| Error::store(format!("reading layer {layer}"), e))?;
            // The rest of the stream (past the tar's end) carries the digest checks.
            io::copy(&mut reader, &mut io::sink()).map_err(|e| {
                let store = into_store_error(e, || format!("reading layer {layer}"));
                Error::store(format!("reading layer {layer}"), store)
            })?;
            emit(UnpackEvent::LayerDone {
                index,
                digest: layer.clone(),
            });
            applied += 1;
        }
        let written = applier.written;
        applier.finish()?;
        Ok((written, applied))
    });

    let mut fetch_failure = None;
    for layer in layers {
        // One layer is inflated ahead of the one being applied, no further: the channel's one
        // slot frees when the applier takes a layer, and only then is the next one opened and
        // its inflating started (each holds a read of its blob and up to PIECES_QUEUED pieces).
        let (piece_sender, pieces) = mpsc::channel(PIECES_QUEUED);
        if layer_sender
            .send((layer.descriptor.digest.clone(), pieces))
            .await
            .is_err()
        {
            // The applier stopped: its error says why.
            break;
        }
        let blob = match store.get_blob(repo, &layer.descriptor.digest).await {
            Ok(blob) => blob,
            Err(e) => {
                let failure = Error::store(
                    format!("reading layer {} of {repo}", layer.descriptor.digest),
                    e,
                );
                // The applier waits for this layer's pieces: it stops on this, and the failure
                // itself is what the unpack answers.
                let _ = piece_sender
                    .send(Err(io::Error::other(failure.to_string())))
                    .await;
                fetch_failure = Some(failure);
                break;
            }
        };
        let reader =
            LayerReader::new(blob, Some(layer.diff_id.clone())).with_limit(options.max_layer_bytes);
        let thread_pool = pool.clone();
        tokio::task::spawn_blocking(move || decompress(reader, &thread_pool, &piece_sender));
    }
    drop(layer_sender);
    let applied = applier.await.map_err(|e| Error::Invalid {
        message: format!("the unpacking thread failed: {e}"),
    })?;
    if let Some(failure) = fetch_failure {
        return Err(failure);
    }
    let (bytes, count) = applied?;
    Ok(UnpackReport {
        layers: count,
        bytes,
        rootless,
    })
}
