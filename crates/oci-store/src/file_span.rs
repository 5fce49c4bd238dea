//! Where a blob body's bytes lie in a file, for consumers that can move them without reading
//! them.

use std::fmt;
use std::fs::File;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};

use crate::{BlobBody, BufferPool, Error, Result};

/// Called with the number of bytes of a body that were sent, as they are.
pub(crate) type ProgressObserver = Arc<dyn Fn(u64) + Send + Sync>;

/// A blob's content as `len` bytes of an open file from `offset`.
///
/// A body that carries one ([`BlobBody::file_span`](crate::BlobBody::file_span)) holds the
/// same bytes twice over: as its stream, and as this span of a file. A consumer that can move
/// file bytes to where they go without reading them (`sendfile(2)` to a plain-HTTP socket)
/// may take the span and drop the stream, which then reads nothing. Only a read that nobody
/// hashes carries a span ([`BlobReader::into_stream_for_push`](crate::BlobReader)): whoever
/// takes it sends bytes unchecked, so the store they go into must verify them.
#[derive(Clone)]
pub struct FileSpan {
    file: Arc<File>,
    offset: u64,
    len: u64,
    /// What the file is, for messages: its path, usually.
    name: Arc<str>,
    /// The body's observers ([`BlobBody::on_progress`](crate::BlobBody::on_progress)).
    progress: Vec<ProgressObserver>,
}

impl FileSpan {
    /// `len` bytes of `file` from `offset`; `name` says what the file is in messages.
    pub fn new(file: Arc<File>, offset: u64, len: u64, name: impl Into<Arc<str>>) -> Self {
        Self {
            file,
            offset,
            len,
            name: name.into(),
            progress: Vec::new(),
        }
    }

    /// The open file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Where the content starts in the file.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// How many bytes the content is.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the content is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// What the file is (its path, usually), for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the file, as it is now, holds the whole span: a file cut short since it was
    /// opened is better read as a stream, whose reader names what is missing.
    pub fn is_held(&self) -> bool {
        self.file
            .metadata()
            .is_ok_and(|meta| meta.len() >= self.offset.saturating_add(self.len))
    }

    /// Tells the body's observers that `bytes` more of the span were sent: whoever takes the
    /// span calls this as the bytes go, as the stream would have told them piece by piece.
    pub fn sent(&self, bytes: u64) {
        for observe in &self.progress {
            observe(bytes);
        }
    }

    /// The span as a body that carries it: whoever can send it unread takes the span, and
    /// anyone else reads the stream, which reads the file from when it is first polled, on a
    /// blocking thread, a piece of `piece_size` bytes ahead, into buffers that come back to a
    /// pool when the consumer drops them. For content whose digest is already known (a file
    /// hashed before it is pushed, an archive's indexed blob): nothing here checks it.
    pub fn into_body(self, piece_size: usize) -> BlobBody {
        let span = self.clone();
        let pieces =
            futures::stream::once(async move { span.read_ahead(piece_size.max(1)) }).flatten();
        BlobBody::new(pieces).with_file(self)
    }

    /// Starts the blocking thread that reads the span for [`into_body`](Self::into_body).
    fn read_ahead(self, piece_size: usize) -> impl Stream<Item = Result<Bytes>> + Send + 'static {
        let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes>>(2);
        tokio::task::spawn_blocking(move || {
            let pool = BufferPool::new(piece_size, 4);
            let mut at = 0u64;
            while at < self.len {
                let want =
                    usize::try_from((self.len - at).min(piece_size as u64)).unwrap_or(piece_size);
                let mut piece = pool.take_sized(want);
                let item = std::os::unix::fs::FileExt::read_exact_at(
                    self.file.as_ref(),
                    &mut piece,
                    self.offset.saturating_add(at),
                )
                .map(|()| pool.hand_out(piece))
                .map_err(|e| Error::io(format!("cannot read {}", self.name), e));
                let failed = item.is_err();
                // A dropped receiver (the consumer went away) ends the reading.
                if sender.blocking_send(item).is_err() || failed {
                    return;
                }
                at += want as u64;
            }
        });
        futures::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|item| (item, receiver))
        })
    }

    pub(crate) fn observed_by(mut self, observer: ProgressObserver) -> Self {
        self.progress.push(observer);
        self
    }
}

impl fmt::Debug for FileSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileSpan")
            .field("name", &self.name)
            .field("offset", &self.offset)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use futures::TryStreamExt;

    use super::*;

    #[tokio::test]
    async fn a_span_as_a_body_streams_its_bytes_and_carries_itself() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        let content: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        std::io::Write::write_all(&mut file, &content).unwrap();
        let open = Arc::new(file.reopen().unwrap());
        let span = FileSpan::new(Arc::clone(&open), 100, 5_000, "the test's file");
        let body = span.into_body(1024);
        assert_eq!(body.file_span().map(FileSpan::len), Some(5_000));
        let pieces: Vec<Bytes> = body.try_collect().await.unwrap();
        assert!(pieces.iter().all(|piece| piece.len() <= 1024));
        assert_eq!(pieces.concat(), &content[100..5_100]);
        // Past the end of the file: the read fails, naming the file.
        let past = FileSpan::new(open, 9_000, 2_000, "the test's file").into_body(1024);
        let error = past.try_collect::<Vec<Bytes>>().await.unwrap_err();
        assert!(error.to_string().contains("the test's file"), "{error}");
    }
}
