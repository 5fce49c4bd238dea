//! Chunked uploads into an archive: kept in an anonymous temporary file until they are
//! committed, since the tar header that comes before a blob needs its size and its name (the
//! digest), which a chunked upload knows only at the end.

use std::fs::File;
use std::io::Write;

use async_trait::async_trait;
use bytes::Bytes;
use oci_store::{BlobWriter, Error as StoreError, Result as StoreResult};
use oci_types::{Descriptor, Digest, Digester, MediaType, media_type};

use super::ArchiveWriter;

/// The piece size an upload asks for unless told otherwise.
const DEFAULT_CHUNK: usize = 8 << 20;

/// An upload's content so far.
pub(super) struct Spool {
    file: File,
    digester: Digester,
    size: u64,
}

/// A chunked upload into an [`ArchiveWriter`].
pub(super) struct ArchiveUpload {
    writer: ArchiveWriter,
    id: String,
    /// `None` only while a piece is being written on a blocking thread.
    spool: Option<Spool>,
    size: u64,
    chunk_size: usize,
}

impl std::fmt::Debug for ArchiveUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveUpload")
            .field("archive", &self.writer.to_string())
            .field("id", &self.id)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl ArchiveUpload {
    pub(super) fn start(writer: ArchiveWriter, chunk_size: Option<usize>) -> StoreResult<Self> {
        let file = tempfile::tempfile()
            .map_err(|e| StoreError::io("cannot create a temporary file for an upload", e))?;
        let id = format!("{:032x}", rand_id());
        Ok(Self {
            writer,
            id,
            spool: Some(Spool {
                file,
                digester: ArchiveWriter::digester(),
                size: 0,
            }),
            size: 0,
            chunk_size: chunk_size.unwrap_or(DEFAULT_CHUNK).max(1),
        })
    }

    pub(super) fn resume(
        writer: ArchiveWriter,
        id: String,
        spool: Spool,
        offset: Option<u64>,
        chunk_size: Option<usize>,
    ) -> StoreResult<Self> {
        if let Some(offset) = offset.filter(|offset| *offset != spool.size) {
            let size = spool.size;
            writer.state().uploads.insert(id.clone(), spool);
            return Err(StoreError::RangeInvalid {
                target: id,
                reason: format!("the upload holds {size} bytes, not {offset}"),
            });
        }
        Ok(Self {
            writer,
            id,
            size: spool.size,
            spool: Some(spool),
            chunk_size: chunk_size.unwrap_or(DEFAULT_CHUNK).max(1),
        })
    }

    fn spool(&mut self) -> StoreResult<Spool> {
        self.spool.take().ok_or_else(|| {
            StoreError::io(
                "upload",
                std::io::Error::other("an earlier write of this upload failed"),
            )
        })
    }
}

/// An upload id: unique enough within one process's archive.
fn rand_id() -> u128 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let count = NEXT.fetch_add(1, Ordering::Relaxed);
    (u128::from(std::process::id()) << 64) | u128::from(count)
}

#[async_trait]
impl BlobWriter for ArchiveUpload {
    async fn write(&mut self, chunk: Bytes) -> StoreResult<()> {
        let mut spool = self.spool()?;
        let (spool, written) = tokio::task::spawn_blocking(move || {
            let written = spool.file.write_all(&chunk);
            if written.is_ok() {
                spool.digester.update(&chunk);
                spool.size += chunk.len() as u64;
            }
            (spool, written)
        })
        .await
        .map_err(|e| StoreError::io("upload", std::io::Error::other(e)))?;
        written.map_err(|e| StoreError::io("cannot write an upload to its temporary file", e))?;
        self.size = spool.size;
        self.spool = Some(spool);
        Ok(())
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    fn id(&self) -> &str {
        &self.id
    }

    async fn close(mut self: Box<Self>) -> StoreResult<()> {
        let spool = self.spool()?;
        self.writer.state().uploads.insert(self.id.clone(), spool);
        Ok(())
    }

    async fn commit(mut self: Box<Self>, digest: &Digest) -> StoreResult<Descriptor> {
        let spool = self.spool()?;
        let actual = spool.digester.finish();
        if actual != *digest {
            return Err(StoreError::DigestInvalid {
                what: "upload".to_owned(),
                expected: digest.clone(),
                actual,
            });
        }
        if let Some((stored, _)) = self.writer.state().blobs.get(digest) {
            return Ok(stored.clone());
        }
        let descriptor = Descriptor::new(
            MediaType::from_static(media_type::OCTET_STREAM),
            digest.clone(),
            spool.size,
        );
        self.writer
            .write_blob_from_file(&descriptor, spool.file)
            .await
    }

    async fn cancel(self: Box<Self>) -> StoreResult<()> {
        Ok(())
    }
}
