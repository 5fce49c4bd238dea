//! `export`: an image's root filesystem as one tar stream (crane export), its layers merged
//! with the whiteouts applied, without writing them to disk first.

use std::io::{BufWriter, Write};

use oci_store::OciInterface;
use oci_store::layer::{DEFAULT_LAYER_LIMIT, LayerLimits, layer_opener, merge_layers};
use oci_types::Repository;

use crate::error::{Error, Result};
use crate::unpack::LayerRef;

/// The bytes gathered before a write to `out`.
///
/// Why: a tar is written as many small pieces (a 512-byte header, then the content in the
/// pieces inflate gives, then padding); written as they come, a tree of small files costs
/// several system calls per file, and a terminal's or pipe's line-buffered stdout one per
/// newline in the content.
const OUTPUT_BUFFER: usize = 256 << 10;

/// What an [`export`] accepts of the layers it reads.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct ExportOptions {
    /// What the layers' tar streams may hold (entries, names, depth).
    pub limits: LayerLimits,
    /// Uncompressed bytes of one layer (default 64 GiB).
    pub max_layer_bytes: u64,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            limits: LayerLimits::default(),
            max_layer_bytes: DEFAULT_LAYER_LIMIT,
        }
    }
}

impl ExportOptions {
    /// Sets what the layers' tar streams may hold.
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
}

/// Writes the merged tar of `layers` (lowest first) of `repo` in `store` into `out`, and
/// gives `out` back, flushed. A hard link whose target a later layer removed becomes a
/// regular file. The same image gives the same bytes. `out` need not be buffered: the tar
/// reaches it in writes of 256 KiB.
pub async fn export<W: Write + Send + 'static>(
    store: &dyn OciInterface,
    repo: &Repository,
    layers: &[LayerRef],
    out: W,
    options: &ExportOptions,
) -> Result<W> {
    let sources = layers
        .iter()
        .map(|l| (l.descriptor.clone(), l.diff_id.clone()))
        .collect();
    let (mut opener, server) = layer_opener(store, repo, sources, options.max_layer_bytes);
    let limits = options.limits;
    let context = format!("exporting {repo}");
    let merging = tokio::task::spawn_blocking(move || {
        let mut out = BufWriter::with_capacity(OUTPUT_BUFFER, out);
        let count = opener.count();
        let result = merge_layers(&mut out, count, &mut |index| opener.open(index), &limits);
        drop(opener);
        result.map_err(|e| Error::store(context, e))?;
        // merge_layers flushed it: this only takes the writer out.
        out.into_inner().map_err(|e| Error::Output {
            source: e.into_error(),
        })
    });
    let (merged, ()) = futures::join!(merging, server.serve());
    merged.map_err(|e| Error::Invalid {
        message: format!("the exporting thread failed: {e}"),
    })?
}
