//! Blob bodies: streams of [`Bytes`], the verifying reader every backend hands out, and the
//! writer of chunked uploads.

use std::fmt;
use std::ops::Range;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::{BoxStream, Stream, StreamExt};
use oci_types::{Descriptor, Digest, Digester};

use crate::{Error, Result};

/// A blob's content as it streams: pieces of [`Bytes`], or an error that ends the stream.
pub type BlobBody = BoxStream<'static, Result<Bytes>>;

/// A body made of bytes already in memory (manifests, small blobs, tests).
pub fn body_from_bytes(bytes: impl Into<Bytes>) -> BlobBody {
    let bytes = bytes.into();
    futures::stream::once(async move { Ok(bytes) }).boxed()
}

/// What a read of a blob or manifest returns: its descriptor and its content as a stream.
///
/// # Verification
/// A full read from any store yields exactly `descriptor().size` bytes that hash to
/// `descriptor().digest`, or its last item is an error (`DIGEST_INVALID` or `SIZE_INVALID`).
/// Consumers must treat content as trusted only once the stream has ended without error.
/// A range read ([`BlobReader::range`] is `Some`) can only be checked for its length: its
/// descriptor still describes the whole blob.
pub struct BlobReader {
    descriptor: Descriptor,
    range: Option<Range<u64>>,
    body: BlobBody,
}

impl BlobReader {
    /// A full read of `descriptor`'s content from `body`, verified as it streams.
    pub fn verified(descriptor: Descriptor, body: BlobBody) -> Self {
        let checked = Checked {
            inner: body,
            digester: Some(descriptor.digest.digester()),
            expected_digest: descriptor.digest.clone(),
            expected_len: descriptor.size,
            seen: 0,
            done: false,
        };
        Self {
            descriptor,
            range: None,
            body: checked.boxed(),
        }
    }

    /// A read of bytes `range` of the blob `descriptor`, checked for its length only.
    pub fn ranged(descriptor: Descriptor, range: Range<u64>, body: BlobBody) -> Self {
        let checked = Checked {
            inner: body,
            digester: None,
            expected_digest: descriptor.digest.clone(),
            expected_len: range.end.saturating_sub(range.start),
            seen: 0,
            done: false,
        };
        Self {
            descriptor,
            range: Some(range),
            body: checked.boxed(),
        }
    }

    /// The descriptor of the whole blob or manifest.
    pub fn descriptor(&self) -> &Descriptor {
        &self.descriptor
    }

    /// The byte range served, for range reads.
    pub fn range(&self) -> Option<&Range<u64>> {
        self.range.as_ref()
    }

    /// The content as a stream.
    pub fn into_stream(self) -> BlobBody {
        self.body
    }

    /// The descriptor and the content stream.
    pub fn into_parts(self) -> (Descriptor, BlobBody) {
        (self.descriptor, self.body)
    }

    /// The content as an [`tokio::io::AsyncRead`]; errors become `std::io::Error`s that wrap
    /// the store's [`Error`].
    pub fn into_async_read(self) -> impl tokio::io::AsyncRead + Send + Unpin + 'static {
        tokio_util::io::StreamReader::new(self.body.map(|item| item.map_err(std::io::Error::from)))
    }

    /// Collects the whole content, refusing more than `max_len` bytes so that a hostile or
    /// mistaken descriptor cannot make this allocate without bound.
    pub async fn bytes(self, max_len: u64) -> Result<Bytes> {
        let expected = self
            .range
            .as_ref()
            .map_or(self.descriptor.size, |r| r.end - r.start);
        if expected > max_len {
            return Err(Error::SizeInvalid {
                what: "content over the read limit:".to_owned(),
                digest: self.descriptor.digest,
                expected: max_len,
                actual: expected,
            });
        }
        // `expected <= max_len` and the checking stream ends the read at `expected` bytes.
        let mut buffer = BytesMut::with_capacity(usize::try_from(expected).unwrap_or(0));
        let mut body = self.body;
        while let Some(chunk) = body.next().await {
            buffer.extend_from_slice(&chunk?);
        }
        Ok(buffer.freeze())
    }
}

impl fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobReader")
            .field("descriptor", &self.descriptor)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

/// The checking stream behind [`BlobReader`]: counts bytes, hashes them when it has a digester,
/// and ends with an error when the count or the digest is wrong.
struct Checked {
    inner: BlobBody,
    digester: Option<Digester>,
    expected_digest: Digest,
    expected_len: u64,
    seen: u64,
    done: bool,
}

impl Checked {
    fn finish(&mut self) -> Option<Result<Bytes>> {
        self.done = true;
        if self.seen != self.expected_len {
            return Some(Err(self.size_error()));
        }
        let digester = self.digester.take()?;
        let actual = digester.finish();
        (actual != self.expected_digest).then(|| {
            Err(Error::DigestInvalid {
                what: "stored blob".to_owned(),
                expected: self.expected_digest.clone(),
                actual,
            })
        })
    }

    fn size_error(&self) -> Error {
        Error::SizeInvalid {
            what: if self.digester.is_some() {
                "stored blob".to_owned()
            } else {
                "range of blob".to_owned()
            },
            digest: self.expected_digest.clone(),
            expected: self.expected_len,
            actual: self.seen,
        }
    }
}

impl Stream for Checked {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.inner.poll_next_unpin(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                self.seen += chunk.len() as u64;
                if self.seen > self.expected_len {
                    self.done = true;
                    return Poll::Ready(Some(Err(self.size_error())));
                }
                if let Some(digester) = &mut self.digester {
                    digester.update(&chunk);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(error))) => {
                self.done = true;
                Poll::Ready(Some(Err(error)))
            }
            Poll::Ready(None) => Poll::Ready(self.finish()),
        }
    }
}

/// Checks a range against the contract of
/// [`OciInterface::get_blob_range`](crate::OciInterface::get_blob_range) and clamps its end, for
/// every store to share.
pub fn check_range(
    digest: &Digest,
    size: u64,
    start: u64,
    end: Option<u64>,
) -> Result<std::ops::Range<u64>> {
    let end = end.unwrap_or(size).min(size);
    if start >= size || start >= end {
        return Err(Error::RangeInvalid {
            target: digest.to_string(),
            reason: format!(
                "range starting at {start} and ending at {end} selects no byte of a {size}-byte blob"
            ),
        });
    }
    Ok(start..end)
}

/// Hashes and counts a body that is being written, so that a store can check a push against
/// its descriptor before the content becomes visible.
#[derive(Debug)]
pub struct PushCheck {
    digester: Digester,
    expected: Descriptor,
    seen: u64,
}

impl PushCheck {
    /// Starts checking content pushed as `expected`.
    pub fn new(expected: &Descriptor) -> Self {
        Self {
            digester: expected.digest.digester(),
            expected: expected.clone(),
            seen: 0,
        }
    }

    /// Feeds a piece; fails as soon as the content is longer than stated.
    pub fn update(&mut self, chunk: &[u8]) -> Result<()> {
        self.seen += chunk.len() as u64;
        if self.seen > self.expected.size {
            return Err(Error::SizeInvalid {
                what: "pushed blob".to_owned(),
                digest: self.expected.digest.clone(),
                expected: self.expected.size,
                actual: self.seen,
            });
        }
        self.digester.update(chunk);
        Ok(())
    }

    /// Checks length and digest once the body has ended.
    pub fn finish(self) -> Result<()> {
        if self.seen != self.expected.size {
            return Err(Error::SizeInvalid {
                what: "pushed blob".to_owned(),
                digest: self.expected.digest,
                expected: self.expected.size,
                actual: self.seen,
            });
        }
        let actual = self.digester.finish();
        if actual != self.expected.digest {
            return Err(Error::DigestInvalid {
                what: "pushed blob".to_owned(),
                expected: self.expected.digest,
                actual,
            });
        }
        Ok(())
    }
}

/// A chunked, resumable blob upload in progress.
///
/// Write the content in order, then [`commit`](Self::commit) with its digest, or
/// [`cancel`](Self::cancel). [`close`](Self::close) keeps the upload so that
/// [`OciInterface::push_blob_chunked_resume`](crate::OciInterface::push_blob_chunked_resume)
/// can continue it later by [`id`](Self::id), from this process or another.
#[async_trait]
pub trait BlobWriter: Send + fmt::Debug {
    /// Appends a piece of content.
    async fn write(&mut self, chunk: Bytes) -> Result<()>;

    /// The number of bytes of the blob written so far, across resumptions.
    fn size(&self) -> u64;

    /// How many bytes the store takes in one piece at most (at least any minimum it imposes).
    fn chunk_size(&self) -> usize;

    /// The opaque id that resumes this upload.
    fn id(&self) -> &str;

    /// Stores what was written and releases the writer; the upload stays resumable.
    async fn close(self: Box<Self>) -> Result<()>;

    /// Verifies the whole content against `digest` and stores the blob; on a mismatch the
    /// upload is discarded and nothing becomes visible.
    async fn commit(self: Box<Self>, digest: &Digest) -> Result<Descriptor>;

    /// Discards the upload. Cancelling an upload that is already gone succeeds.
    async fn cancel(self: Box<Self>) -> Result<()>;
}
