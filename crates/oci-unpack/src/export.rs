//! `export`: an image's root filesystem as one tar stream (crane export), its layers merged
//! with the whiteouts applied, without writing them to disk first.

use std::io::Write;

use oci_store::OciInterface;
use oci_store::layer::{DEFAULT_LAYER_LIMIT, LayerLimits, layer_opener, merge_layers};
use oci_types::Repository;

use crate::error::{Error, Result};
use crate::unpack::LayerRef;

/// Writes the merged tar of `layers` (lowest first) of `repo` in `store` into `out`, and
/// gives `out` back. A hard link whose target a later layer removed becomes a regular file.
/// The same image gives the same bytes.
pub async fn export<W: Write + Send + 'static>(
    store: &dyn OciInterface,
    repo: &Repository,
    layers: &[LayerRef],
    out: W,
    limits: &LayerLimits,
) -> Result<W> {
    let sources = layers
        .iter()
        .map(|l| (l.descriptor.clone(), l.diff_id.clone()))
        .collect();
    let (mut opener, server) = layer_opener(store, repo, sources, DEFAULT_LAYER_LIMIT);
    let limits = *limits;
    let merging = tokio::task::spawn_blocking(move || {
        let mut out = out;
        let count = opener.count();
        let result = merge_layers(&mut out, count, &mut |index| opener.open(index), &limits);
        drop(opener);
        result.map(|()| out)
    });
    let (merged, ()) = futures::join!(merging, server.serve());
    merged
        .map_err(|e| Error::Invalid {
            message: format!("the exporting thread failed: {e}"),
        })?
        .map_err(|e| Error::store(format!("exporting {repo}"), e))
}
