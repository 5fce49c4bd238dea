//! Reading blob files: small ones whole, larger ones as a stream read a few pieces ahead on
//! tokio's blocking pool; and the rule for where the store's other short file work runs.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::StreamExt;
use oci_store::{BlobBody, BlobReader, Error, FileSpan, Result, body_from_bytes};
use oci_types::Descriptor;
use tokio::io::AsyncReadExt;

use crate::layout::{Layout, join_error};

/// Opens a stored blob as a verified stream of `descriptor`'s content.
pub(crate) async fn read_blob(
    layout: &Layout,
    descriptor: &Descriptor,
    inline_io: bool,
    read_buffer: usize,
) -> Result<BlobReader> {
    let path = layout.blob_path(&descriptor.digest);
    let io = |what: &str, e| {
        Error::io(
            format!(
                "cannot {what} blob {} at {}",
                descriptor.digest,
                path.display()
            ),
            e,
        )
    };
    if inline_io && descriptor.size <= INLINE_READ_MAX {
        // One more byte than stated, at most: the check then names a file that is too long
        // without reading all of it.
        let mut bytes = Vec::new();
        std::fs::File::open(&path)
            .map_err(|e| io("open", e))?
            .take(descriptor.size + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| io("read", e))?;
        return Ok(BlobReader::verified(
            descriptor.clone(),
            body_from_bytes(bytes),
        ));
    }
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| io("open", e))?;
    Ok(BlobReader::verified(
        descriptor.clone(),
        file_body(file, path, None, read_buffer),
    ))
}

/// Opens the blob file at `path` for a read that is not verified (a range, as a server
/// serves), never through a symlink: a symlink in a blob's place (a hostile layout, or a root
/// others can write to) must not serve a host file such as `/etc/shadow`. Verified reads
/// follow symlinks, as layouts that share blobs that way (Bazel's rules_oci) need: a file
/// that is not the blob fails its digest.
pub(crate) async fn open_unverified(path: &Path) -> std::io::Result<tokio::fs::File> {
    tokio::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .await
}

/// The largest blob a store with [`LayoutOptions::inline_io`] reads on the calling task.
const INLINE_READ_MAX: u64 = 4 << 20;

/// How many bytes a blob read may have ready ahead of its consumer (in two buffers at least,
/// four at most). 512 KiB keeps a hashing consumer busy; more only held memory while a slower
/// consumer (a push over the network) caught up.
const READ_AHEAD_BYTES: usize = 512 << 10;

/// A file (or its first `limit` bytes) as a blob body whose errors name the file.
///
/// A task reads into fresh buffers, a few ahead of the consumer, so that hashing (the verifying
/// reader) overlaps with reading and no buffer is copied on the way. Each piece is read on a
/// blocking thread of its own, given back as soon as the piece is read: a consumer that reads
/// slowly (a client downloading at a crawl) holds no thread while it waits, so a few hundred
/// slow downloads cannot take tokio's blocking pool from everyone else.
///
/// The reading starts when the body is first polled. A whole file's body also carries it as
/// a [`FileSpan`]: a push to a plain-HTTP registry sends it with `sendfile(2)` and drops the
/// body unpolled, so nothing is read into memory at all.
pub(crate) fn file_body(
    file: tokio::fs::File,
    path: PathBuf,
    limit: Option<u64>,
    read_buffer: usize,
) -> BlobBody {
    let read_ahead = (READ_AHEAD_BYTES / read_buffer).clamp(2, 4);
    let file = match file.try_into_std() {
        Ok(file) => file,
        // An operation still in flight on the file (none is, after open and seek): read it
        // through tokio instead.
        Err(file) => {
            let reader: Box<dyn tokio::io::AsyncRead + Send + Unpin> = match limit {
                Some(limit) => Box::new(file.take(limit)),
                None => Box::new(file),
            };
            return tokio_util::io::ReaderStream::with_capacity(reader, read_buffer)
                .map(move |chunk| {
                    chunk.map_err(|e| Error::io(format!("cannot read {}", path.display()), e))
                })
                .boxed()
                .into();
        }
    };
    // Pieces no larger than the content: a new buffer is zeroed before the first read into
    // it, and a server's 1 MiB for a manifest of a few KiB would cost more than the read.
    // (`fstat` of an open file reads no disk.)
    let content = limit.or_else(|| file.metadata().ok().map(|m| m.len()));
    let piece_size = content.map_or(read_buffer, |bytes| {
        usize::try_from(bytes)
            .unwrap_or(usize::MAX)
            .min(read_buffer)
            .max(1)
    });
    let file = Arc::new(file);
    let span = match (limit, content) {
        (None, Some(len)) => Some(FileSpan::new(
            Arc::clone(&file),
            0,
            len,
            path.display().to_string(),
        )),
        _ => None,
    };
    let pieces = futures::stream::once(async move {
        read_ahead_of_consumer(file, path, limit, piece_size, read_ahead)
    })
    .flatten()
    .boxed();
    BlobBody::from(pieces).with_file(span)
}

/// Starts the task that reads `file` into pieces of `piece_size`, `read_ahead` of them ahead of
/// the stream it returns.
fn read_ahead_of_consumer(
    file: Arc<std::fs::File>,
    path: PathBuf,
    limit: Option<u64>,
    piece_size: usize,
    read_ahead: usize,
) -> impl futures::Stream<Item = Result<Bytes>> + Send + 'static {
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes>>(read_ahead);
    tokio::spawn(async move {
        use std::io::Read;
        let mut reader: Box<dyn Read + Send> = match limit {
            Some(limit) => Box::new(file.take(limit)),
            None => Box::new(file),
        };
        let pool = oci_store::BufferPool::new(piece_size, read_ahead + 2);
        loop {
            let pool = pool.clone();
            let piece = tokio::task::spawn_blocking(move || {
                let read = pool.read_piece(&mut reader);
                (reader, read)
            })
            .await;
            let item = match piece {
                Ok((back, read)) => {
                    reader = back;
                    match read {
                        Ok(None) => return,
                        Ok(Some(piece)) => Ok(piece),
                        Err(e) => Err(Error::io(format!("cannot read {}", path.display()), e)),
                    }
                }
                Err(e) => {
                    let _ = sender.send(Err(join_error(e))).await;
                    return;
                }
            };
            let failed = item.is_err();
            // A dropped receiver (the consumer went away) ends the reading.
            if sender.send(item).await.is_err() || failed {
                return;
            }
        }
    });
    futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    })
}

/// Runs blocking file work off the async threads, or here when `inline`
/// ([`LayoutOptions::inline_io`]).
pub(crate) async fn blocking<T: Send + 'static, E>(
    inline: bool,
    work: impl FnOnce() -> std::result::Result<T, E> + Send + 'static,
) -> std::result::Result<T, E>
where
    E: From<oci_store::Error> + Send + 'static,
{
    if inline {
        return work();
    }
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| E::from(join_error(e)))?
}
