//! Where a blob body's bytes lie in a file, for consumers that can move them without reading
//! them.

use std::fmt;
use std::fs::File;
use std::sync::Arc;

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
