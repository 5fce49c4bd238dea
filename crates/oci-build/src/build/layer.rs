//! Pushing a layer into a store while it is made.
//!
//! A layer's tar is written on a blocking thread (files, tar and compression are synchronous
//! work), hashed uncompressed for its `diff_id`, compressed, and handed in pieces to the async
//! side, which hashes the compressed bytes and writes them into a chunked upload. The blob's
//! digest is known only at the end, which is why the upload is chunked: `push_blob` needs the
//! digest before the first byte, and knowing it would mean making the layer twice or keeping it
//! whole in memory or a temporary file. A chunked upload holds at most a few pieces here.

use std::io::{self, Write};

use bytes::{Bytes, BytesMut};
use oci_store::layer::{LayerOpener, layer_opener};
use oci_store::{BlobWriter, OciInterface};
use oci_types::{Algorithm, Descriptor, Digest, Digester, Repository};
use tokio::sync::mpsc;

use super::compress::Compression;
use super::tarball::{LayerSource, TarOptions, write_tar};
use crate::copy::Endpoint;
use crate::error::{Error, Result};

/// Size of the pieces handed from the blocking thread to the upload.
const PIECE: usize = 1 << 20;
/// Pieces in flight between the two: enough to keep both sides busy, little memory.
const PIECES_QUEUED: usize = 4;

/// What a build or mutation reports as it makes layers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildEvent {
    /// Making new layer `index` (of `count`) began.
    LayerStarted {
        /// Which new layer, from 0.
        index: usize,
        /// How many new layers there are.
        count: usize,
    },
    /// Compressed bytes of a new layer went into the target (an increment, not a total).
    LayerProgress {
        /// Which new layer.
        index: usize,
        /// Bytes since the last event.
        bytes: u64,
    },
    /// A new layer is stored.
    LayerDone {
        /// Which new layer.
        index: usize,
        /// Its blob.
        descriptor: Box<Descriptor>,
    },
}

/// Where build events go.
pub type BuildProgress = std::sync::Arc<dyn Fn(&BuildEvent) + Send + Sync>;

/// Tells `progress`, if there is one, about `event`.
fn emit(progress: Option<&BuildProgress>, event: BuildEvent) {
    if let Some(progress) = progress {
        progress(&event);
    }
}

/// A layer made and stored: its blob's descriptor and the digest of its uncompressed tar.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BuiltLayer {
    /// The layer blob (media type, digest, size, and the compression annotation).
    pub descriptor: Descriptor,
    /// The digest of the uncompressed tar, for the config's `rootfs.diff_ids`.
    pub diff_id: Digest,
}

/// Makes the layer of `source` and stores it in `repo` of `store`.
pub async fn push_layer(
    store: &dyn OciInterface,
    repo: &Repository,
    source: LayerSource,
    tar: &TarOptions,
    compression: &Compression,
    docker: bool,
) -> Result<BuiltLayer> {
    let tar = tar.clone();
    push_layer_with(store, repo, compression, docker, move |out| {
        write_tar(&source, &tar, out)
    })
    .await
}

/// Stores the layer whose uncompressed tar `produce` writes (on a blocking thread),
/// compressed as `compression` says. Used for layers from files and for layers made out of
/// other layers (flatten, recompress).
pub async fn push_layer_with<F>(
    store: &dyn OciInterface,
    repo: &Repository,
    compression: &Compression,
    docker: bool,
    produce: F,
) -> Result<BuiltLayer>
where
    F: FnOnce(&mut dyn Write) -> Result<()> + Send + 'static,
{
    let new = NewLayer {
        target: Endpoint::new(store, repo),
        compression,
        docker,
        progress: None,
        index: 0,
        count: 1,
    };
    push_layer_from_layers(
        new,
        (Endpoint::new(store, repo), Vec::new(), 0),
        move |out, _| produce(out),
    )
    .await
}

/// Where a layer being made goes, and how.
#[derive(Clone, Copy)]
pub(crate) struct NewLayer<'a> {
    /// The store and repository.
    pub(crate) target: Endpoint<'a>,
    /// Its compression.
    pub(crate) compression: &'a Compression,
    /// Docker media types.
    pub(crate) docker: bool,
    /// Where its progress goes: started, compressed bytes stored, done.
    pub(crate) progress: Option<&'a BuildProgress>,
    /// Which new layer this is, for the progress events.
    pub(crate) index: usize,
    /// How many new layers there are.
    pub(crate) count: usize,
}

/// The layers a new layer is made of: where they are, which (lowest first, each with the
/// `diff_id` its config gives), and the most uncompressed bytes one of them may have.
pub(crate) type LayersRead<'a> = (Endpoint<'a>, Vec<(Descriptor, Digest)>, u64);

/// Stores a layer made out of the layers `read`: `produce` runs on a blocking thread and
/// reads them, each as often as it needs, through the [`LayerOpener`] it is given.
pub(crate) async fn push_layer_from_layers<F>(
    new: NewLayer<'_>,
    (source, sources, max_layer_bytes): LayersRead<'_>,
    produce: F,
) -> Result<BuiltLayer>
where
    F: FnOnce(&mut dyn Write, &mut LayerOpener) -> Result<()> + Send + 'static,
{
    let NewLayer {
        target: Endpoint { store, repo },
        compression,
        docker,
        progress,
        index,
        count,
    } = new;
    emit(progress, BuildEvent::LayerStarted { index, count });
    let context = || format!("storing a new layer in {repo} of {store}");
    let mut writer = store
        .push_blob_chunked(repo, None)
        .await
        .map_err(|e| Error::store(context(), e))?;
    let (sender, mut pieces) = mpsc::channel::<Bytes>(PIECES_QUEUED);
    let (mut opener, server) = layer_opener(source.store, source.repo, sources, max_layer_bytes);
    let encoding = compression.clone();
    let producer = tokio::task::spawn_blocking(move || -> Result<Digest> {
        let sink = PieceSender {
            sender,
            piece: BytesMut::with_capacity(PIECE),
        };
        let encoder = encoding
            .encoder(Box::new(sink))
            .map_err(|e| Error::input(std::path::Path::new("layer"), "cannot compress", e))?;
        let mut hashing = DiffIdWriter {
            inner: encoder,
            digester: Digester::new(Algorithm::Sha256),
        };
        produce(&mut hashing, &mut opener)?;
        drop(opener);
        let DiffIdWriter { inner, digester } = hashing;
        let mut sink = inner
            .finish()
            .map_err(|e| Error::input(std::path::Path::new("layer"), "cannot compress", e))?;
        sink.flush()
            .map_err(|e| Error::input(std::path::Path::new("layer"), "cannot hand on", e))?;
        Ok(digester.finish())
    });

    // A store that hashes what it is given (a layout, a bucket) tells the digest at the end; the
    // layer is hashed here only for one that does not (a registry, which verifies the digest).
    let mut blob_digest = writer
        .written_digest()
        .is_none_or(|empty| empty.algorithm() != Algorithm::Sha256)
        .then(|| Digester::new(Algorithm::Sha256));
    let mut size = 0u64;
    let mut upload_failure = None;
    // One long-lived serving future, polled by reference: a request it has taken is answered
    // even when a piece arrives meanwhile (a `serve_one` started anew in each round would be
    // dropped with the request half-answered, and the producer would see the server gone).
    let mut serving = Some(Box::pin(server.serve()));
    loop {
        tokio::select! {
            piece = pieces.recv() => {
                let Some(piece) = piece else { break };
                if let Some(digester) = &mut blob_digest {
                    digester.update(&piece);
                }
                size += piece.len() as u64;
                let bytes = piece.len() as u64;
                emit(progress, BuildEvent::LayerProgress { index, bytes });
                if let Err(e) = writer.write(piece).await {
                    upload_failure = Some(e);
                    break;
                }
            }
            () = async { if let Some(serve) = &mut serving { serve.await } }, if serving.is_some() => {
                serving = None;
            }
        }
    }
    // Dropping the receivers makes a producer still sending, or waiting for a layer to be
    // opened, stop with an error.
    drop(pieces);
    drop(serving);
    let produced = producer
        .await
        .map_err(|e| Error::invalid(format!("the layer's writer thread failed: {e}")));
    if let Some(e) = upload_failure {
        cancel(writer).await;
        return Err(Error::store(context(), e));
    }
    let diff_id = match produced {
        Ok(Ok(diff_id)) => diff_id,
        Ok(Err(e)) | Err(e) => {
            cancel(writer).await;
            return Err(e);
        }
    };
    let digest = match blob_digest
        .map(Digester::finish)
        .or_else(|| writer.written_digest())
    {
        Some(digest) => digest,
        None => {
            cancel(writer).await;
            return Err(Error::invalid(format!(
                "{}: the store kept no hash of the layer to commit it under",
                context()
            )));
        }
    };
    writer
        .commit(&digest)
        .await
        .map_err(|e| Error::store(context(), e))?;
    let mut descriptor = Descriptor::new(compression.layer_media_type(docker), digest, size);
    if let Some(made_by) = compression.describe() {
        descriptor
            .annotations
            .insert(super::compress::COMPRESSION_ANNOTATION.to_owned(), made_by);
    }
    tracing::debug!(layer = %descriptor.digest, size, %diff_id, "layer stored");
    emit(
        progress,
        BuildEvent::LayerDone {
            index,
            descriptor: Box::new(descriptor.clone()),
        },
    );
    Ok(BuiltLayer {
        descriptor,
        diff_id,
    })
}

async fn cancel(writer: Box<dyn BlobWriter>) {
    if let Err(e) = writer.cancel().await {
        tracing::debug!(error = %e, "could not cancel an unfinished layer upload");
    }
}

/// Hashes the uncompressed tar on its way into the compressor.
struct DiffIdWriter {
    inner: super::compress::Encoder,
    digester: Digester,
}

impl Write for DiffIdWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digester.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Gathers compressed bytes into pieces and sends them to the upload.
struct PieceSender {
    sender: mpsc::Sender<Bytes>,
    piece: BytesMut,
}

impl PieceSender {
    fn send(&mut self) -> io::Result<()> {
        if self.piece.is_empty() {
            return Ok(());
        }
        let piece = self.piece.split().freeze();
        self.piece.reserve(PIECE);
        self.sender
            .blocking_send(piece)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the layer upload stopped"))
    }
}

impl Write for PieceSender {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = PIECE - self.piece.len();
        let n = buf.len().min(room);
        self.piece.extend_from_slice(&buf[..n]);
        if self.piece.len() == PIECE {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}
