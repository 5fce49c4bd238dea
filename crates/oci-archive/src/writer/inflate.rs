//! Layers written uncompressed into a classic docker-archive, read from where they came from.
//!
//! Why: `docker load` decompresses every gzip layer it is given, one layer at a time, on one
//! core, before it can register it; a layer that arrives uncompressed costs the daemon only its
//! untar. A tar entry's header states its size before its content, and the uncompressed size
//! of a layer is known only once it has been decompressed, so a layer is read twice from its
//! source: once to count its uncompressed bytes (as stored, not hashed: the second read is
//! verified), then again, verified, to be written. That is only worth it where reading twice
//! is cheap (an image layout, an archive on disk); a pushed body is not kept to be read again.
//! Pushes of other layers wait for their turn to write while one is written, so the counting
//! of one layer overlaps the writing of another.

use std::fmt;
use std::io::Read;
use std::sync::Arc;

use oci_store::layer::LayerReader;
use oci_store::{Error as StoreError, OciInterface, Result as StoreResult};
use oci_types::{Compression, Descriptor, Repository};
use tokio::sync::mpsc;

use super::{ArchiveWriter, Piece};
use crate::format::{ArchiveFormat, DockerFormat};

/// The pieces an uncompressed layer is written in.
const PIECE: usize = 1 << 20;

/// A store and repository holding the layers pushed into an archive, to be read again from
/// there ([`WriteOptions::layer_source`](super::WriteOptions::layer_source)).
#[derive(Clone)]
pub struct LayerSource {
    store: Arc<dyn OciInterface>,
    repo: Repository,
}

impl LayerSource {
    /// Layers of `repo` in `store`.
    pub fn new(store: Arc<dyn OciInterface>, repo: Repository) -> Self {
        Self { store, repo }
    }
}

impl fmt::Debug for LayerSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LayerSource")
            .field("store", &self.store.to_string())
            .field("repo", &self.repo)
            .finish()
    }
}

impl PartialEq for LayerSource {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.store, &other.store) && self.repo == other.repo
    }
}

impl Eq for LayerSource {}

impl ArchiveWriter {
    /// The source to read `descriptor` from, uncompressed, if it is a compressed layer of a
    /// classic docker-archive that has one.
    pub(super) fn inflating(&self, descriptor: &Descriptor) -> Option<LayerSource> {
        let compressed = matches!(
            descriptor.media_type.layer_compression(),
            Some(Compression::Gzip | Compression::Zstd)
        );
        let classic = self.shared.format == ArchiveFormat::Docker(DockerFormat::Classic);
        (compressed && classic)
            .then(|| self.shared.layer_source.clone())
            .flatten()
    }

    /// Writes the layer `descriptor` uncompressed, read twice from `source`.
    pub(super) async fn write_inflated_layer(
        &self,
        descriptor: &Descriptor,
        source: LayerSource,
    ) -> StoreResult<Descriptor> {
        let size = uncompressed_size(&source, descriptor).await?;
        let blob = source
            .store
            .get_blob(&source.repo, &descriptor.digest)
            .await?;
        let mut reader = LayerReader::new(blob, None).unhashed();
        let name = self.entry_name(descriptor);
        let layer = descriptor.clone();
        self.write_entry(name.clone(), size, async |to_tar: &mpsc::Sender<Piece>| {
            let to_tar = to_tar.clone();
            tokio::task::spawn_blocking(move || -> StoreResult<()> {
                // Buffers come back once the tar has them written: no fresh memory per piece.
                let pool = oci_store::BufferPool::new(PIECE, 8);
                let mut sent = 0u64;
                loop {
                    let mut piece = pool.take();
                    let filled = (&mut reader)
                        .take(PIECE as u64)
                        .read_to_end(&mut piece)
                        .map_err(|e| reader.io_error(e))?;
                    if filled == 0 {
                        break;
                    }
                    sent += filled as u64;
                    if sent > size {
                        break;
                    }
                    if to_tar
                        .blocking_send(Piece::Data(pool.hand_out(piece)))
                        .is_err()
                    {
                        // The writer failed; its error is reported.
                        return Ok(());
                    }
                }
                if sent == size {
                    Ok(())
                } else {
                    Err(changed(&layer, size, sent))
                }
            })
            .await
            .map_err(|e| StoreError::io("inflating a layer", std::io::Error::other(e)))?
        })
        .await?;
        let stored = Descriptor::new(
            descriptor.media_type.clone(),
            descriptor.digest.clone(),
            descriptor.size,
        );
        self.state()
            .blobs
            .insert(descriptor.digest.clone(), (stored.clone(), name));
        Ok(stored)
    }
}

/// The uncompressed size of the layer `descriptor`, read as stored.
async fn uncompressed_size(source: &LayerSource, descriptor: &Descriptor) -> StoreResult<u64> {
    let blob = source
        .store
        .get_blob_range(&source.repo, &descriptor.digest, 0, None)
        .await?;
    let mut reader = LayerReader::new(blob, None).unhashed();
    tokio::task::spawn_blocking(move || {
        std::io::copy(&mut reader, &mut std::io::sink()).map_err(|e| reader.io_error(e))
    })
    .await
    .map_err(|e| StoreError::io("counting a layer", std::io::Error::other(e)))?
}

/// The failure of a layer whose two reads disagree.
fn changed(layer: &Descriptor, counted: u64, sent: u64) -> StoreError {
    StoreError::io(
        format!("reading layer {} again", layer.digest),
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "it held {counted} uncompressed bytes when counted and {} when written",
                if sent > counted {
                    format!("more than {counted}")
                } else {
                    sent.to_string()
                }
            ),
        ),
    )
}
