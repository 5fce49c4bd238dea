//! gzip layers written uncompressed into a classic docker-archive, for a daemon's load.
//!
//! Why: `docker load` decompresses every gzip layer it is given, one layer at a time, before
//! it registers it (through `unpigz` where installed); a layer that arrives uncompressed costs
//! the daemon only its untar and its `diff_id` check. That is how `docker save` and skopeo
//! write docker-archives.
//!
//! A tar entry's header states its size before its content, and a layer's uncompressed size
//! is known for certain only once it is decompressed. A gzip member ends with the size of its
//! content modulo 2^32 (ISIZE, RFC 1952), so the entry's size is read there first: the last
//! four bytes of the blob, a range read of the store the layer comes from
//! ([`LayerSource`]). The content is then the push's own body, decompressed once on the way
//! (its compressed bytes checked against the digest as every push is; the `diff_id` is the
//! daemon's to check, as Docker does). A size that turns out wrong (a blob of several gzip
//! members, whose last trailer counts only the last; a layer of 4 GiB or more; a trailer
//! that lies) still completes its entry, cut or padded to the size announced, and nothing
//! names that entry: the layer follows in a second entry as it is stored, compressed, read
//! again from the source, and the daemon decompresses that one itself. A trailer that cannot
//! be the size (smaller than the compressed blob, as a plain tar labelled gzip gives) sends
//! the layer as stored from the start.

use std::fmt;
use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use oci_store::layer::{LayerReader, carries_store_error};
use oci_store::{
    BlobBody, BlobReader, BufferPool, Error as StoreError, OciInterface, Result as StoreResult,
};
use oci_types::{Compression, Descriptor, Repository};
use tokio::sync::mpsc;

use super::{ArchiveWriter, Piece};
use crate::format::{ArchiveFormat, DockerFormat};

/// The pieces an uncompressed layer is written in: each is copied into the tar's own buffers
/// at once, so larger ones would only cost memory.
const PIECE: usize = 256 << 10;
/// Pieces in flight: the tar's queue (4), one being written, one being filled.
const PIECES_KEPT: usize = 6;
/// Zeros that pad an entry whose content ended short of its announced size.
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

/// A store and repository holding the layers pushed into an archive, where their gzip
/// trailers are read ([`WriteOptions::layer_source`](super::WriteOptions::layer_source)), and
/// a layer is read again if its trailer was wrong.
#[derive(Clone)]
pub struct LayerSource {
    store: Arc<dyn OciInterface>,
    repo: Repository,
}

impl LayerSource {
    /// Layers of `repo` in `store`: a store whose range reads are cheap (a layout, an
    /// archive on disk).
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

/// How the decompressed content of a layer fit the size its trailer announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fit {
    Exact,
    /// It ended after this many bytes, or could not be decompressed past them.
    Short(u64),
    /// It went on past the size.
    Long,
    /// The tar's writer stopped; its own error is reported.
    WriterGone,
}

impl ArchiveWriter {
    /// The source of `descriptor`'s trailer, if it is a gzip layer of a classic docker-archive
    /// that has one.
    pub(super) fn inflating(&self, descriptor: &Descriptor) -> Option<LayerSource> {
        let gzip = descriptor.media_type.layer_compression() == Some(Compression::Gzip);
        let classic = self.shared.format == ArchiveFormat::Docker(DockerFormat::Classic);
        (gzip && classic)
            .then(|| self.shared.layer_source.clone())
            .flatten()
    }

    /// Writes the gzip layer `descriptor` uncompressed from `body`, or as stored where its
    /// trailer does not give its size (see the module's documentation).
    pub(super) async fn write_inflated_layer(
        &self,
        descriptor: &Descriptor,
        body: BlobBody,
        source: LayerSource,
    ) -> StoreResult<Descriptor> {
        let name = self.entry_name(descriptor);
        let Some(size) = announced_size(&source, descriptor).await else {
            return self.write_blob_entry(descriptor, body, name).await;
        };
        let reader =
            LayerReader::new(BlobReader::verified(descriptor.clone(), body), None).unhashed();
        let mut fit = Fit::WriterGone;
        self.write_entry(name.clone(), size, async |to_tar: &mpsc::Sender<Piece>| {
            let to_tar = to_tar.clone();
            fit = tokio::task::spawn_blocking(move || inflate_into(reader, size, &to_tar))
                .await
                .map_err(|e| StoreError::io("inflating a layer", std::io::Error::other(e)))??;
            Ok(())
        })
        .await?;
        if fit == Fit::Exact {
            // Described as pushed: `manifest.json` names entries, and the config's diff_ids
            // describe what is in them.
            let stored = Descriptor::new(
                descriptor.media_type.clone(),
                descriptor.digest.clone(),
                descriptor.size,
            );
            self.state()
                .blobs
                .insert(descriptor.digest.clone(), (stored.clone(), name));
            return Ok(stored);
        }
        tracing::debug!(layer = %descriptor.digest, announced = size, ?fit,
            "the layer's gzip trailer did not give its size; sending it as stored");
        let again = source
            .store
            .get_blob(&source.repo, &descriptor.digest)
            .await?;
        let name = format!("{}.gz", descriptor.digest.encoded());
        self.write_blob_entry(descriptor, again.into_stream(), name)
            .await
    }
}

/// The uncompressed size the last gzip member of `descriptor` states, if it can be the
/// layer's: at least half the compressed size, less 1 KiB of a header's optional fields, and
/// at most what deflate can expand it to (1032 times). Deflate stores what it cannot shrink
/// (5 bytes more per 64 KiB), but a fast encoder may code random bytes into about 5 % more,
/// and a trailer that passes this check yet is wrong only costs the wasted entry; one that
/// fails it, such as the zeros at the end of a plain tar labelled gzip, or a 20-byte layer
/// claiming 4 GiB (whose entry would be padded with zeros to that size, for a daemon to store),
/// sends the layer as stored. `None` when it cannot be read or cannot be the size.
async fn announced_size(source: &LayerSource, descriptor: &Descriptor) -> Option<u64> {
    let compressed = descriptor.size;
    let trailer = async {
        let read = source
            .store
            .get_blob_range(
                &source.repo,
                &descriptor.digest,
                compressed.checked_sub(4)?,
                Some(compressed),
            )
            .await
            .ok()?;
        let bytes = read.bytes(4).await.ok()?;
        <[u8; 4]>::try_from(bytes.as_ref()).ok()
    };
    let size = u64::from(u32::from_le_bytes(trailer.await?));
    let possible = compressed.saturating_sub(1024) / 2..=compressed.saturating_mul(1032);
    possible.contains(&size).then_some(size)
}

/// Sends exactly `size` bytes of `reader`'s content to the tar (padded with zeros, or cut),
/// and says how the content fit. A failure of the store's read (the compressed bytes do not
/// match their digest) is an error; content that cannot be decompressed is a misfit, sent
/// again as stored for the daemon to judge.
fn inflate_into(
    mut reader: LayerReader,
    size: u64,
    to_tar: &mpsc::Sender<Piece>,
) -> StoreResult<Fit> {
    // Buffers come back once the tar has them written: no fresh memory per piece.
    let pool = BufferPool::new(PIECE, PIECES_KEPT);
    let mut sent = 0u64;
    let mut ended_short = false;
    while sent < size {
        let mut piece = pool.take();
        let want = (size - sent).min(PIECE as u64);
        let filled = match (&mut reader).take(want).read_to_end(&mut piece) {
            Ok(filled) => filled,
            Err(e) if carries_store_error(&e) => return Err(reader.io_error(e)),
            Err(e) => {
                tracing::debug!(layer = %reader.layer().digest, error = %e,
                    "cannot decompress the layer");
                piece.clear();
                0
            }
        };
        if filled > 0 {
            sent += filled as u64;
            if to_tar
                .blocking_send(Piece::Data(pool.hand_out(piece)))
                .is_err()
            {
                return Ok(Fit::WriterGone);
            }
        }
        if filled < want as usize {
            ended_short = true;
            break;
        }
    }
    if ended_short {
        let mut missing = size - sent;
        while missing > 0 {
            let zeros = missing.min(ZEROS.len() as u64) as usize;
            if to_tar
                .blocking_send(Piece::Data(Bytes::from_static(&ZEROS[..zeros])))
                .is_err()
            {
                return Ok(Fit::WriterGone);
            }
            missing -= zeros as u64;
        }
        return Ok(Fit::Short(sent));
    }
    // The content must end here; reading to the end also ends the store's read, which checks
    // the digest of the compressed bytes.
    let mut probe = [0u8; 1];
    match reader.read(&mut probe) {
        Ok(0) => Ok(Fit::Exact),
        Ok(_) => Ok(Fit::Long),
        Err(e) if carries_store_error(&e) => Err(reader.io_error(e)),
        // Past the size, or a damaged end: not the size either way.
        Err(_) => Ok(Fit::Long),
    }
}
