//! Opening layers from a blocking thread: work on tars (merging, flattening, recompressing)
//! runs on a blocking thread and may read a layer several times; the store lives on the
//! async side. A [`LayerOpener`] asks, a [`LayerServer`] answers where the store is.

use std::io;

use oci_types::{Descriptor, Digest, Repository};
use tokio::sync::{mpsc, oneshot};

use super::LayerReader;
use crate::{Error, OciInterface, Result};

type OpenRequest = (usize, oneshot::Sender<Result<LayerReader>>);

/// Opens the layers of one image, by index, from a blocking thread.
#[derive(Debug)]
pub struct LayerOpener {
    requests: mpsc::Sender<OpenRequest>,
    count: usize,
}

/// Serves a [`LayerOpener`]'s requests on the async side.
#[derive(Debug)]
pub struct LayerServer<'a> {
    store: &'a dyn OciInterface,
    repo: &'a Repository,
    layers: Vec<(Descriptor, Digest)>,
    requests: mpsc::Receiver<OpenRequest>,
    limit: u64,
}

/// An opener of `layers` (each with the `diff_id` its reader checks) of `repo` in `store`,
/// and the server that answers it. `limit` bounds each layer's uncompressed size.
pub fn layer_opener<'a>(
    store: &'a dyn OciInterface,
    repo: &'a Repository,
    layers: Vec<(Descriptor, Digest)>,
    limit: u64,
) -> (LayerOpener, LayerServer<'a>) {
    let (requests, receiver) = mpsc::channel(1);
    let opener = LayerOpener {
        requests,
        count: layers.len(),
    };
    let server = LayerServer {
        store,
        repo,
        layers,
        requests: receiver,
        limit,
    };
    (opener, server)
}

impl LayerOpener {
    /// How many layers there are.
    pub fn count(&self) -> usize {
        self.count
    }

    /// A reader of layer `index` (lowest first). Blocks: call it from a blocking thread.
    pub fn open(&mut self, index: usize) -> Result<LayerReader> {
        let stopped = || {
            Error::io(
                format!("opening layer {index}"),
                io::Error::new(io::ErrorKind::BrokenPipe, "the layer server stopped"),
            )
        };
        let (reply, answer) = oneshot::channel();
        self.requests
            .blocking_send((index, reply))
            .map_err(|_| stopped())?;
        answer.blocking_recv().map_err(|_| stopped())?
    }
}

impl LayerServer<'_> {
    /// Answers the next request; `false` once every opener is gone.
    pub async fn serve_one(&mut self) -> bool {
        let Some((index, reply)) = self.requests.recv().await else {
            return false;
        };
        let opened = self.open(index).await;
        // The opener may have given up waiting; then nobody wants the reader.
        let _ = reply.send(opened);
        true
    }

    /// Answers requests until every opener is gone.
    pub async fn serve(mut self) {
        while self.serve_one().await {}
    }

    async fn open(&self, index: usize) -> Result<LayerReader> {
        let (layer, diff_id) = self.layers.get(index).ok_or_else(|| {
            Error::io(
                format!("opening layer {index}"),
                io::Error::new(io::ErrorKind::NotFound, "the image has no such layer"),
            )
        })?;
        let blob = self.store.get_blob(self.repo, &layer.digest).await?;
        Ok(LayerReader::new(blob, Some(diff_id.clone())).with_limit(self.limit))
    }
}
