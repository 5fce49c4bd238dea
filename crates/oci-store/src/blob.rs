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

use crate::file_span::{FileSpan, ProgressObserver};
use crate::{Error, Result};

/// A blob's content as it streams: pieces of [`Bytes`], or an error that ends the stream.
///
/// A body that comes from a full read ([`BlobReader::into_stream`]) knows the digest its own
/// stream checks ([`verified_as`](Self::verified_as)): a store that pushes it as that digest
/// need not hash it a second time (see [`PushCheck::for_body`]), which halves the hashing of
/// a copy between two stores.
pub struct BlobBody {
    stream: BoxStream<'static, Result<Bytes>>,
    /// Set only by [`BlobReader::verified`]: the stream ends in an error unless its content
    /// is this many bytes that hash to this digest.
    verified_as: Option<(Digest, u64)>,
    /// The same content as a span of an open file, for a consumer that sends it unread.
    file: Option<FileSpan>,
}

impl BlobBody {
    /// A body from any stream of pieces; it claims no verification.
    pub fn new(stream: impl Stream<Item = Result<Bytes>> + Send + 'static) -> Self {
        Self {
            stream: stream.boxed(),
            verified_as: None,
            file: None,
        }
    }

    /// Says that the stream's content is also `span` of a file (see [`FileSpan`]), if there
    /// is one. A store sets this on the body of a read it gives out for a push; a body that
    /// verifies its own content gets no span, since whoever takes it would skip that check.
    pub fn with_file(mut self, span: impl Into<Option<FileSpan>>) -> Self {
        if self.verified_as.is_none() {
            self.file = span.into();
        }
        self
    }

    /// The content as a span of an open file, if the body has one: a consumer that sends it
    /// (and calls [`FileSpan::sent`] as it goes) drops the body without polling it.
    pub fn file_span(&self) -> Option<&FileSpan> {
        self.file.as_ref()
    }

    /// The digest and size this body's own stream verifies: when it is `Some`, the stream
    /// ends with `DIGEST_INVALID` or `SIZE_INVALID` instead of ending cleanly if the content
    /// does not match them, and withholds its last piece then.
    pub fn verified_as(&self) -> Option<(&Digest, u64)> {
        self.verified_as
            .as_ref()
            .map(|(digest, size)| (digest, *size))
    }

    /// A body passing on, unchanged, the pieces of another body's stream (through a channel,
    /// say) and so claiming what that body verifies: `verified_as` is that body's
    /// [`verified_as`](Self::verified_as). A stream cut short still fails its reader's count.
    pub(crate) fn passing_on(
        stream: impl Stream<Item = Result<Bytes>> + Send + 'static,
        verified_as: Option<(Digest, u64)>,
    ) -> Self {
        Self {
            stream: stream.boxed(),
            verified_as,
            file: None,
        }
    }

    /// Whether this body's own stream verifies exactly `descriptor`'s digest and size (a
    /// reader or writer of it may then only count).
    fn verifies(&self, descriptor: &Descriptor) -> bool {
        self.verified_as() == Some((&descriptor.digest, descriptor.size))
    }

    /// Calls `observe` with the size of every piece as it passes (progress, counting), or of
    /// every part of the [`FileSpan`] as it is sent, keeping what the body verifies and its
    /// span.
    pub fn on_progress(self, observe: impl Fn(u64) + Send + Sync + 'static) -> Self {
        let observe: ProgressObserver = std::sync::Arc::new(observe);
        let in_stream = std::sync::Arc::clone(&observe);
        Self {
            stream: self
                .stream
                .inspect(move |item| {
                    if let Ok(chunk) = item {
                        in_stream(chunk.len() as u64);
                    }
                })
                .boxed(),
            verified_as: self.verified_as,
            file: self.file.map(|span| span.observed_by(observe)),
        }
    }
}

impl Stream for BlobBody {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.stream.poll_next_unpin(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.stream.size_hint()
    }
}

impl From<BoxStream<'static, Result<Bytes>>> for BlobBody {
    fn from(stream: BoxStream<'static, Result<Bytes>>) -> Self {
        Self {
            stream,
            verified_as: None,
            file: None,
        }
    }
}

impl fmt::Debug for BlobBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobBody")
            .field("verified_as", &self.verified_as)
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

/// A body made of bytes already in memory (manifests, small blobs, tests).
pub fn body_from_bytes(bytes: impl Into<Bytes>) -> BlobBody {
    let bytes = bytes.into();
    BlobBody::new(futures::stream::once(async move { Ok(bytes) }))
}

/// What a read of a blob or manifest returns: its descriptor and its content as a stream.
///
/// # Verification
/// A full read from any store yields exactly `descriptor().size` bytes that hash to
/// `descriptor().digest`, or its last item is an error (`DIGEST_INVALID` or `SIZE_INVALID`).
/// Consumers must treat content as trusted only once the stream has ended without error.
/// (A read taken out for a push, [`BlobReader::into_stream_for_push`], leaves the digest to
/// the store it is pushed into.)
/// A range read ([`BlobReader::range`] is `Some`) can only be checked for its length: its
/// descriptor still describes the whole blob.
pub struct BlobReader {
    descriptor: Descriptor,
    range: Option<Range<u64>>,
    /// The content as the store gives it: checked when it is taken out
    /// ([`BlobReader::checked`]).
    inner: BlobBody,
}

impl BlobReader {
    /// A full read of `descriptor`'s content from `body`, verified as it streams.
    ///
    /// A `body` that already verifies the same digest (a wrapper passing on another store's
    /// read) is counted but not hashed again.
    pub fn verified(descriptor: Descriptor, body: BlobBody) -> Self {
        Self {
            descriptor,
            range: None,
            inner: body,
        }
    }

    /// A read of bytes `range` of the blob `descriptor`, checked for its length only.
    pub fn ranged(descriptor: Descriptor, range: Range<u64>, body: BlobBody) -> Self {
        Self {
            descriptor,
            range: Some(range),
            inner: body,
        }
    }

    /// The content with its checks: the length always, the digest of a full read when `hash`
    /// (or when the store's body hashes it already).
    fn checked(self, hash: bool) -> BlobBody {
        let Self {
            descriptor,
            range,
            mut inner,
        } = self;
        let file = inner.file.take();
        if let Some(range) = range {
            let checked = Checked {
                inner,
                digester: None,
                verifies: false,
                expected_digest: descriptor.digest,
                expected_len: range.end.saturating_sub(range.start),
                seen: 0,
                done: false,
            };
            return BlobBody::new(checked);
        }
        let hashed_inside = inner.verifies(&descriptor);
        let digester = (hash && !hashed_inside).then(|| descriptor.digest.digester());
        let verified_as =
            (hash || hashed_inside).then(|| (descriptor.digest.clone(), descriptor.size));
        // Sent from the file, the content skips this reader's checks: only where there are
        // none but its length, which the span states.
        let file = file.filter(|span| verified_as.is_none() && span.len() == descriptor.size);
        let checked = Checked {
            inner,
            digester,
            verifies: true,
            expected_digest: descriptor.digest,
            expected_len: descriptor.size,
            seen: 0,
            done: false,
        };
        BlobBody {
            stream: checked.boxed(),
            verified_as,
            file,
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

    /// The content as a stream, verified as it streams (see [`BlobReader`]).
    pub fn into_stream(self) -> BlobBody {
        self.checked(true)
    }

    /// The content for a push into another store, which verifies it: counted here, but left
    /// to that store to hash, so that a copy hashes its content once, where it is written.
    /// Every store's push checks the digest before the content becomes visible (a registry's
    /// is the registry's own check, made when the upload is committed), so what a push stores
    /// is still verified; a range read is the same as [`into_stream`](Self::into_stream).
    ///
    /// A store's body that hashes the content itself (a wrapper passing on another store's
    /// verified read) still does. A body read from a file keeps its [`FileSpan`], so that a
    /// push can send the file unread.
    pub fn into_stream_for_push(self) -> BlobBody {
        self.checked(false)
    }

    /// The descriptor and the content stream.
    pub fn into_parts(self) -> (Descriptor, BlobBody) {
        let descriptor = self.descriptor.clone();
        (descriptor, self.into_stream())
    }

    /// The content as an [`tokio::io::AsyncRead`]; errors become `std::io::Error`s that wrap
    /// the store's [`Error`].
    pub fn into_async_read(self) -> impl tokio::io::AsyncRead + Send + Unpin + 'static {
        tokio_util::io::StreamReader::new(
            self.into_stream()
                .map(|item| item.map_err(std::io::Error::from)),
        )
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
        let mut body = self.into_stream();
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
    /// `None` for a range, or for a body whose own stream already checks the digest.
    digester: Option<Digester>,
    /// A full read (as opposed to a range): names the content in errors.
    verifies: bool,
    expected_digest: Digest,
    expected_len: u64,
    seen: u64,
    done: bool,
}

impl Checked {
    /// The end of the stream: its length, and its digest unless that was checked already.
    fn finish(&mut self) -> Option<Result<Bytes>> {
        self.done = true;
        if self.seen != self.expected_len {
            return Some(Err(self.size_error()));
        }
        self.digest_mismatch().map(Err)
    }

    /// Checks the digest of what was hashed (once: the digester is used up).
    fn digest_mismatch(&mut self) -> Option<Error> {
        let actual = self.digester.take()?.finish();
        (actual != self.expected_digest).then(|| Error::DigestInvalid {
            what: "stored blob".to_owned(),
            expected: self.expected_digest.clone(),
            actual,
        })
    }

    fn size_error(&self) -> Error {
        Error::SizeInvalid {
            what: if self.verifies {
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
                // The last piece is checked before it is handed out, so that a consumer that
                // stops at the expected length (an HTTP body with its Content-Length) never
                // receives all of a blob that does not match; a match lets the stream go on,
                // to its end or to a size error.
                if self.seen == self.expected_len
                    && let Some(error) = self.digest_mismatch()
                {
                    self.done = true;
                    return Poll::Ready(Some(Err(error)));
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
    /// `None` when the body's own stream verifies the digest ([`PushCheck::for_body`]), or when
    /// the content goes on to a writer that does ([`PushCheck::counting`]).
    digester: Option<Digester>,
    expected: Descriptor,
    seen: u64,
}

impl PushCheck {
    /// Starts checking content pushed as `expected`.
    pub fn new(expected: &Descriptor) -> Self {
        Self {
            digester: Some(expected.digest.digester()),
            expected: expected.clone(),
            seen: 0,
        }
    }

    /// Counts content pushed as `expected` without hashing it: for a writer that passes the
    /// content on to one that checks the digest itself (a registry, when it commits an
    /// upload), so that nothing is hashed twice.
    pub fn counting(expected: &Descriptor) -> Self {
        Self {
            digester: None,
            expected: expected.clone(),
            seen: 0,
        }
    }

    /// Starts checking `body`, pushed as `expected`: when the body's own stream verifies that
    /// digest ([`BlobBody::verified_as`]), only the length is counted here and the hashing is
    /// left to the stream.
    ///
    /// The caller must then read the body to its end and give up on any error it yields (as
    /// every push does): a mismatch shows as the stream's last item, not in
    /// [`finish`](Self::finish).
    pub fn for_body(expected: &Descriptor, body: &BlobBody) -> Self {
        let hashed_by_body = body.verifies(expected);
        Self {
            digester: (!hashed_by_body).then(|| expected.digest.digester()),
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
        if let Some(digester) = &mut self.digester {
            digester.update(chunk);
        }
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
        let Some(digester) = self.digester else {
            return Ok(());
        };
        let actual = digester.finish();
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

    /// The digest of everything written so far, when this writer keeps a running hash of it
    /// (`None` when it does not, the default): a producer that made the bytes itself commits
    /// with it instead of hashing them a second time, and [`commit`](Self::commit) still
    /// compares it with the store's own hash. Costs a copy of the hash state, not a pass over
    /// the content.
    fn written_digest(&self) -> Option<Digest> {
        None
    }

    /// Stores what was written and releases the writer; the upload stays resumable.
    async fn close(self: Box<Self>) -> Result<()>;

    /// Verifies the whole content against `digest` and stores the blob; on a mismatch the
    /// upload is discarded and nothing becomes visible.
    async fn commit(self: Box<Self>, digest: &Digest) -> Result<Descriptor>;

    /// Discards the upload. Cancelling an upload that is already gone succeeds.
    async fn cancel(self: Box<Self>) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorCode, MemoryStore, OciInterface};
    use oci_types::{Algorithm, MediaType, Repository};

    fn descriptor_of(content: &[u8]) -> Descriptor {
        let mut digester = Digester::new(Algorithm::Sha256);
        digester.update(content);
        Descriptor::new(
            MediaType::from_static("application/octet-stream"),
            digester.finish(),
            content.len() as u64,
        )
    }

    /// A full read of `descriptor` whose bytes are really `content`: a store that lies.
    fn read_claiming(descriptor: &Descriptor, content: &'static [u8]) -> BlobReader {
        BlobReader::verified(descriptor.clone(), body_from_bytes(content))
    }

    async fn drain(mut body: BlobBody, check: &mut PushCheck) -> Result<()> {
        while let Some(chunk) = body.next().await {
            check.update(&chunk?)?;
        }
        Ok(())
    }

    #[test]
    fn only_a_full_read_claims_its_digest() {
        let descriptor = descriptor_of(b"content");
        let full = read_claiming(&descriptor, b"content").into_stream();
        assert_eq!(
            full.verified_as(),
            Some((&descriptor.digest, descriptor.size))
        );
        let ranged =
            BlobReader::ranged(descriptor.clone(), 1..3, body_from_bytes("on")).into_stream();
        assert_eq!(ranged.verified_as(), None);
        assert_eq!(body_from_bytes("content").verified_as(), None);
    }

    #[test]
    fn observing_pieces_keeps_the_claim_and_rewrapping_drops_it() {
        let descriptor = descriptor_of(b"content");
        let observed = read_claiming(&descriptor, b"content")
            .into_stream()
            .on_progress(|_| {});
        assert_eq!(
            observed.verified_as(),
            Some((&descriptor.digest, descriptor.size))
        );
        let rewrapped = BlobBody::new(observed.map(|item| item));
        assert_eq!(rewrapped.verified_as(), None);
    }

    /// A file holding `content`, and a span of all of it.
    fn file_with(content: &[u8]) -> (tempfile::NamedTempFile, crate::FileSpan) {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, content).unwrap();
        let open = std::sync::Arc::new(file.reopen().unwrap());
        let span = crate::FileSpan::new(open, 0, content.len() as u64, "the test's file");
        (file, span)
    }

    #[test]
    fn only_a_full_unhashed_read_of_the_stated_size_keeps_its_file() {
        let descriptor = descriptor_of(b"content");
        let (_file, span) = file_with(b"content");
        let read = |span: crate::FileSpan| {
            BlobReader::verified(
                descriptor.clone(),
                body_from_bytes("content").with_file(span),
            )
        };
        let for_push = read(span.clone()).into_stream_for_push();
        assert_eq!(for_push.file_span().map(crate::FileSpan::len), Some(7));
        // A consumer that hashes must read the stream.
        assert!(read(span.clone()).into_stream().file_span().is_none());
        let ranged = BlobReader::ranged(
            descriptor.clone(),
            0..7,
            body_from_bytes("content").with_file(span.clone()),
        );
        assert!(ranged.into_stream_for_push().file_span().is_none());
        // A span that is not the content the descriptor states is not offered.
        let short = crate::FileSpan::new(
            std::sync::Arc::new(span.file().try_clone().unwrap()),
            0,
            6,
            "short",
        );
        assert!(read(short).into_stream_for_push().file_span().is_none());
        // A body that verifies itself keeps its check: no span to skip it by.
        let verifying = read_claiming(&descriptor, b"content").into_stream();
        assert!(verifying.with_file(span).file_span().is_none());
    }

    #[tokio::test]
    async fn progress_is_told_by_the_stream_or_by_the_span() {
        use std::sync::atomic::{AtomicU64, Ordering};
        let descriptor = descriptor_of(b"content");
        let (file, span) = file_with(b"content");
        let seen = std::sync::Arc::new(AtomicU64::new(0));
        let body = || {
            let seen = std::sync::Arc::clone(&seen);
            BlobReader::verified(
                descriptor.clone(),
                body_from_bytes("content").with_file(span.clone()),
            )
            .into_stream_for_push()
            .on_progress(move |bytes| {
                seen.fetch_add(bytes, Ordering::Relaxed);
            })
        };
        let mut streamed = body();
        while let Some(piece) = streamed.next().await {
            piece.unwrap();
        }
        assert_eq!(seen.swap(0, Ordering::Relaxed), 7);
        let sent = body();
        let span = sent.file_span().unwrap();
        assert!(span.is_held());
        span.sent(4);
        span.sent(3);
        assert_eq!(seen.load(Ordering::Relaxed), 7);
        // Cut short after it was opened, the file no longer holds the span.
        file.as_file().set_len(3).unwrap();
        assert!(!span.is_held());
    }

    #[tokio::test]
    async fn a_push_of_a_verified_read_counts_but_does_not_hash_again() {
        let descriptor = descriptor_of(b"content");
        let body = read_claiming(&descriptor, b"content").into_stream();
        let mut check = PushCheck::for_body(&descriptor, &body);
        assert!(
            check.digester.is_none(),
            "the body hashes; the push must not"
        );
        drain(body, &mut check).await.unwrap();
        check.finish().unwrap();
    }

    #[tokio::test]
    async fn a_push_of_an_unverified_body_or_of_another_digest_hashes() {
        let descriptor = descriptor_of(b"content");
        let check = PushCheck::for_body(&descriptor, &body_from_bytes("content"));
        assert!(check.digester.is_some());

        // The same digest with another size: hashed (and refused on its length).
        let longer = Descriptor::new(
            descriptor.media_type.clone(),
            descriptor.digest.clone(),
            descriptor.size + 1,
        );
        let body = read_claiming(&descriptor, b"content").into_stream();
        assert!(PushCheck::for_body(&longer, &body).digester.is_some());

        // A read verified as one digest, pushed as another: the push's own hash refuses it.
        let other = descriptor_of(b"CONTENT");
        let body = read_claiming(&descriptor, b"content").into_stream();
        let mut check = PushCheck::for_body(&other, &body);
        assert!(check.digester.is_some());
        drain(body, &mut check).await.unwrap();
        assert_eq!(
            check.finish().unwrap_err().code(),
            Some(ErrorCode::DigestInvalid)
        );
    }

    #[tokio::test]
    async fn corrupt_content_in_a_verified_read_fails_the_push_that_skipped_hashing() {
        let descriptor = descriptor_of(b"content");
        // Same length, other bytes: only the digest can tell.
        let body = read_claiming(&descriptor, b"CONTENT").into_stream();
        let mut check = PushCheck::for_body(&descriptor, &body);
        let error = drain(body, &mut check).await.unwrap_err();
        assert_eq!(error.code(), Some(ErrorCode::DigestInvalid));

        // Through a store: refused, and nothing stored.
        let store = MemoryStore::new();
        let repo: Repository = "a/b".parse().unwrap();
        let body = read_claiming(&descriptor, b"CONTENT").into_stream();
        let error = store.push_blob(&repo, &descriptor, body).await.unwrap_err();
        assert_eq!(error.code(), Some(ErrorCode::DigestInvalid));
        let lookup = store.resolve_blob(&repo, &descriptor.digest).await;
        // The repository never got anything: either code is the contract's.
        assert!(matches!(
            lookup.unwrap_err().code(),
            Some(ErrorCode::BlobUnknown | ErrorCode::NameUnknown)
        ));
    }

    #[tokio::test]
    async fn a_read_for_a_push_leaves_the_hashing_to_the_store_it_is_pushed_into() {
        let descriptor = descriptor_of(b"content");
        let body = read_claiming(&descriptor, b"content").into_stream_for_push();
        assert_eq!(body.verified_as(), None, "it claims no verification");
        let check = PushCheck::for_body(&descriptor, &body);
        assert!(check.digester.is_some(), "so the push hashes");

        // Corrupt content (same length) goes through the read, and the store refuses it.
        let stream: Vec<Result<Bytes>> = read_claiming(&descriptor, b"CONTENT")
            .into_stream_for_push()
            .collect()
            .await;
        assert!(stream.iter().all(std::result::Result::is_ok));
        let store = MemoryStore::new();
        let repo: Repository = "a/b".parse().unwrap();
        let body = read_claiming(&descriptor, b"CONTENT").into_stream_for_push();
        let error = store.push_blob(&repo, &descriptor, body).await.unwrap_err();
        assert_eq!(error.code(), Some(ErrorCode::DigestInvalid));
        assert!(store.resolve_blob(&repo, &descriptor.digest).await.is_err());

        // The length is still the read's to check.
        let short: Vec<Result<Bytes>> = read_claiming(&descriptor, b"conten")
            .into_stream_for_push()
            .collect()
            .await;
        let last = short.last().unwrap().as_ref().unwrap_err();
        assert_eq!(last.code(), Some(ErrorCode::SizeInvalid));

        // A body that hashes itself further in still does, and says so.
        let inner = read_claiming(&descriptor, b"content").into_stream();
        let body = BlobReader::verified(descriptor.clone(), inner).into_stream_for_push();
        assert_eq!(
            body.verified_as(),
            Some((&descriptor.digest, descriptor.size))
        );

        // Counting only: for a writer whose next hop checks the digest.
        let mut check = PushCheck::counting(&descriptor);
        check.update(b"CONTENT").unwrap();
        check.finish().unwrap();
        let mut check = PushCheck::counting(&descriptor);
        check.update(b"CONTENTS").unwrap_err();
    }

    #[tokio::test]
    async fn the_last_piece_of_a_mismatch_is_never_handed_out() {
        let descriptor = descriptor_of(b"content");
        let pieces = vec![
            Ok(Bytes::from_static(b"con")),
            Ok(Bytes::from_static(b"TENT")),
        ];
        let reader = BlobReader::verified(
            descriptor.clone(),
            BlobBody::new(futures::stream::iter(pieces)),
        );
        let items: Vec<Result<Bytes>> = reader.into_stream().collect().await;
        assert_eq!(items.len(), 2, "{items:?}");
        assert_eq!(items[0].as_ref().unwrap(), &Bytes::from_static(b"con"));
        assert_eq!(
            items[1].as_ref().unwrap_err().code(),
            Some(ErrorCode::DigestInvalid)
        );

        // Sound content: every piece, then the end; extra bytes after it are a size error.
        let pieces = vec![
            Ok(Bytes::from_static(b"con")),
            Ok(Bytes::from_static(b"tent")),
        ];
        let reader = BlobReader::verified(
            descriptor.clone(),
            BlobBody::new(futures::stream::iter(pieces)),
        );
        assert_eq!(
            reader.bytes(100).await.unwrap(),
            Bytes::from_static(b"content")
        );
        let pieces = vec![
            Ok(Bytes::from_static(b"content")),
            Ok(Bytes::from_static(b"!")),
        ];
        let reader = BlobReader::verified(descriptor, BlobBody::new(futures::stream::iter(pieces)));
        let error = reader.bytes(100).await.unwrap_err();
        assert_eq!(error.code(), Some(ErrorCode::SizeInvalid));
    }

    #[tokio::test]
    async fn a_wrapper_rereading_a_verified_read_counts_without_hashing_and_still_fails_on_corruption()
     {
        let descriptor = descriptor_of(b"content");
        let inner = read_claiming(&descriptor, b"CONTENT").into_stream();
        let outer = BlobReader::verified(descriptor.clone(), inner);
        let error = outer.bytes(100).await.unwrap_err();
        assert_eq!(error.code(), Some(ErrorCode::DigestInvalid));
        let inner = read_claiming(&descriptor, b"content").into_stream();
        let outer = BlobReader::verified(descriptor.clone(), inner);
        assert_eq!(
            outer.bytes(100).await.unwrap(),
            Bytes::from_static(b"content")
        );
    }
}
