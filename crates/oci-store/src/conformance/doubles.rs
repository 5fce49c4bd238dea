//! Test doubles: a [`MemoryStore`] wrapper that counts calls, can be switched off, and can be
//! made faulty, to prove wrappers and the suite itself.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::{self, BoxStream, StreamExt};
use oci_types::{Descriptor, Digest, MediaType, Repository, Tag};

use crate::{
    BlobBody, BlobReader, BlobWriter, Error, ListParams, MemoryStore, OciInterface,
    PushManifestParams, ReferrersParams, Result,
};

/// A fault a [`Faulty`] store has on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// None: a faithful store.
    None,
    /// Stores pushed blobs without checking digest or size.
    SkipsDigestChecks,
    /// Forgets the tags of every manifest push.
    LosesTags,
}

/// A [`MemoryStore`] behind a wrapper that counts calls by method, answers every call with an
/// unavailable error while [`set_offline`](Self::set_offline) is on, and misbehaves as its
/// [`Fault`] says.
#[derive(Clone)]
pub struct Faulty {
    inner: MemoryStore,
    fault: Fault,
    offline: Arc<AtomicBool>,
    calls: Arc<Mutex<BTreeMap<&'static str, u64>>>,
    /// Full blob reads stop after this many bytes until released (`u64::MAX`: never).
    hold_after: Arc<AtomicU64>,
    /// Full blob reads come in pieces of at most this many bytes (0: as the store gives them).
    piece_size: Arc<AtomicU64>,
    released: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Faulty {
    /// A faithful store that counts calls.
    pub fn new(inner: MemoryStore) -> Self {
        Self::with_fault(inner, Fault::None)
    }

    /// A store with `fault`.
    pub fn with_fault(inner: MemoryStore, fault: Fault) -> Self {
        Self {
            inner,
            fault,
            offline: Arc::default(),
            calls: Arc::default(),
            hold_after: Arc::new(AtomicU64::new(u64::MAX)),
            piece_size: Arc::default(),
            released: Arc::new(tokio::sync::watch::Sender::new(false)),
        }
    }

    /// Full blob reads begun from now on send `bytes` bytes, then wait for
    /// [`release_blob_reads`](Self::release_blob_reads) before sending the rest: a remote
    /// that is slow to send a large blob.
    pub fn hold_blob_reads_after(&self, bytes: u64) {
        self.released.send_replace(false);
        self.hold_after.store(bytes, Ordering::SeqCst);
    }

    /// Full blob reads begun from now on come in pieces of at most `bytes` bytes (a network
    /// read's pieces, rather than the whole blob at once).
    pub fn split_blob_reads(&self, bytes: u64) {
        self.piece_size.store(bytes, Ordering::SeqCst);
    }

    /// Lets every held blob read go on, and reads begun later go through.
    pub fn release_blob_reads(&self) {
        self.hold_after.store(u64::MAX, Ordering::SeqCst);
        self.released.send_replace(true);
    }

    /// The wrapped store.
    pub fn inner(&self) -> &MemoryStore {
        &self.inner
    }

    /// While on, every call fails as an unreachable store would.
    pub fn set_offline(&self, offline: bool) {
        self.offline.store(offline, Ordering::SeqCst);
    }

    /// How many times `method` was called.
    pub fn calls(&self, method: &str) -> u64 {
        let calls = self.calls.lock().unwrap_or_else(PoisonError::into_inner);
        calls.get(method).copied().unwrap_or(0)
    }

    fn enter(&self, method: &'static str) -> Result<()> {
        *self
            .calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(method)
            .or_default() += 1;
        if self.offline.load(Ordering::SeqCst) {
            return Err(Error::io(
                format!("{method} on {self}"),
                std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
            ));
        }
        Ok(())
    }

    fn failing_stream<T: Send + 'static>(
        &self,
        method: &'static str,
    ) -> Option<BoxStream<'static, Result<T>>> {
        self.enter(method)
            .err()
            .map(|e| stream::once(async move { Err(e) }).boxed())
    }
}

/// `body`, whose pieces past its first `at` bytes wait until `released` says so.
fn held_after(
    body: BlobBody,
    at: u64,
    released: tokio::sync::watch::Receiver<bool>,
) -> impl futures::Stream<Item = Result<Bytes>> {
    let start = (body, 0u64, None::<Bytes>, released);
    stream::unfold(
        start,
        move |(mut body, sent, rest, mut released)| async move {
            let item = match rest {
                Some(rest) => Ok(rest),
                None => body.next().await?,
            };
            let mut piece = match item {
                Ok(piece) => piece,
                Err(error) => return Some((Err(error), (body, sent, None, released))),
            };
            let mut rest = None;
            if sent >= at {
                // A closed sender (the store dropped) releases too.
                let _ = released.wait_for(|released| *released).await;
            } else if sent + piece.len() as u64 > at {
                rest = Some(piece.split_off(usize::try_from(at - sent).unwrap_or(usize::MAX)));
            }
            let sent = sent + piece.len() as u64;
            Some((Ok(piece), (body, sent, rest, released)))
        },
    )
}

impl fmt::Debug for Faulty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Faulty")
            .field("fault", &self.fault)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for Faulty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "faulty({:?}) memory", self.fault)
    }
}

#[deny(clippy::missing_trait_methods)]
#[async_trait]
impl OciInterface for Faulty {
    async fn get_blob(&self, repo: &Repository, digest: &Digest) -> Result<BlobReader> {
        self.enter("get_blob")?;
        let reader = self.inner.get_blob(repo, digest).await?;
        let hold_after = self.hold_after.load(Ordering::SeqCst);
        let piece_size = self.piece_size.load(Ordering::SeqCst);
        if hold_after == u64::MAX && piece_size == 0 {
            return Ok(reader);
        }
        let (descriptor, body) = reader.into_parts();
        let body = match usize::try_from(piece_size) {
            Ok(size) if size > 0 => BlobBody::new(body.flat_map(move |item| {
                let pieces: Vec<Result<Bytes>> = match item {
                    Ok(bytes) => (0..bytes.len())
                        .step_by(size)
                        .map(|at| Ok(bytes.slice(at..(at + size).min(bytes.len()))))
                        .collect(),
                    Err(error) => vec![Err(error)],
                };
                stream::iter(pieces)
            })),
            _ => body,
        };
        let held = held_after(body, hold_after, self.released.subscribe());
        Ok(BlobReader::verified(descriptor, BlobBody::new(held)))
    }

    async fn get_blob_range(
        &self,
        repo: &Repository,
        digest: &Digest,
        start: u64,
        end: Option<u64>,
    ) -> Result<BlobReader> {
        self.enter("get_blob_range")?;
        self.inner.get_blob_range(repo, digest, start, end).await
    }

    async fn get_manifest(&self, repo: &Repository, digest: &Digest) -> Result<BlobReader> {
        self.enter("get_manifest")?;
        self.inner.get_manifest(repo, digest).await
    }

    async fn get_tag(&self, repo: &Repository, tag: &Tag) -> Result<BlobReader> {
        self.enter("get_tag")?;
        self.inner.get_tag(repo, tag).await
    }

    async fn resolve_blob(&self, repo: &Repository, digest: &Digest) -> Result<Descriptor> {
        self.enter("resolve_blob")?;
        self.inner.resolve_blob(repo, digest).await
    }

    async fn resolve_manifest(&self, repo: &Repository, digest: &Digest) -> Result<Descriptor> {
        self.enter("resolve_manifest")?;
        self.inner.resolve_manifest(repo, digest).await
    }

    async fn resolve_tag(&self, repo: &Repository, tag: &Tag) -> Result<Descriptor> {
        self.enter("resolve_tag")?;
        self.inner.resolve_tag(repo, tag).await
    }

    async fn push_blob(
        &self,
        repo: &Repository,
        descriptor: &Descriptor,
        body: BlobBody,
    ) -> Result<Descriptor> {
        self.enter("push_blob")?;
        if self.fault != Fault::SkipsDigestChecks {
            return self.inner.push_blob(repo, descriptor, body).await;
        }
        let mut content = BytesMut::new();
        let mut body = body;
        while let Some(chunk) = body.next().await {
            content.extend_from_slice(&chunk?);
        }
        self.inner
            .insert_unchecked_for_tests(repo, descriptor.digest.clone(), content.freeze());
        Ok(descriptor.clone())
    }

    async fn push_blob_chunked(
        &self,
        repo: &Repository,
        chunk_size: Option<usize>,
    ) -> Result<Box<dyn BlobWriter>> {
        self.enter("push_blob_chunked")?;
        self.inner.push_blob_chunked(repo, chunk_size).await
    }

    async fn push_blob_chunked_resume(
        &self,
        repo: &Repository,
        id: &str,
        offset: Option<u64>,
        chunk_size: Option<usize>,
    ) -> Result<Box<dyn BlobWriter>> {
        self.enter("push_blob_chunked_resume")?;
        self.inner
            .push_blob_chunked_resume(repo, id, offset, chunk_size)
            .await
    }

    async fn mount_blob(
        &self,
        from: &Repository,
        to: &Repository,
        digest: &Digest,
    ) -> Result<Descriptor> {
        self.enter("mount_blob")?;
        self.inner.mount_blob(from, to, digest).await
    }

    async fn push_manifest(
        &self,
        repo: &Repository,
        contents: Bytes,
        media_type: &MediaType,
        params: &PushManifestParams,
    ) -> Result<Descriptor> {
        self.enter("push_manifest")?;
        let mut params = params.clone();
        if self.fault == Fault::LosesTags {
            params.tags.clear();
        }
        self.inner
            .push_manifest(repo, contents, media_type, &params)
            .await
    }

    async fn delete_blob(&self, repo: &Repository, digest: &Digest) -> Result<()> {
        self.enter("delete_blob")?;
        self.inner.delete_blob(repo, digest).await
    }

    async fn delete_manifest(&self, repo: &Repository, digest: &Digest) -> Result<()> {
        self.enter("delete_manifest")?;
        self.inner.delete_manifest(repo, digest).await
    }

    async fn delete_tag(&self, repo: &Repository, tag: &Tag) -> Result<()> {
        self.enter("delete_tag")?;
        self.inner.delete_tag(repo, tag).await
    }

    fn repositories(&self, params: &ListParams) -> BoxStream<'static, Result<Repository>> {
        self.failing_stream("repositories")
            .unwrap_or_else(|| self.inner.repositories(params))
    }

    fn tags(&self, repo: &Repository, params: &ListParams) -> BoxStream<'static, Result<Tag>> {
        self.failing_stream("tags")
            .unwrap_or_else(|| self.inner.tags(repo, params))
    }

    fn referrers(
        &self,
        repo: &Repository,
        digest: &Digest,
        params: &ReferrersParams,
    ) -> BoxStream<'static, Result<Descriptor>> {
        self.failing_stream("referrers")
            .unwrap_or_else(|| self.inner.referrers(repo, digest, params))
    }
}
