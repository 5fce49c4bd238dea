//! Filling the cache: what [`Cached`](super::Cached) shares with the fills that outlive the
//! requests that started them.
//!
//! A blob that is not cached is streamed from the remote to its reader and into the local
//! store at once, on a task of its own: the reader gets its first bytes as soon as the remote
//! sends them (a server in front of the cache answers at once, rather than going silent for as
//! long as the whole blob takes, which its clients' and its own idle timeouts would cut), and
//! the fill goes on when the reader leaves, so that a retry finds the blob cached.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::{BoxStream, Stream, StreamExt};
use oci_types::{Descriptor, Digest, MAX_MANIFEST_SIZE, MediaType, Repository, Tag};
use tokio::sync::{Semaphore, mpsc};

use super::single_flight::InFlight;
use crate::{
    BlobBody, BlobReader, Error, ErrorCode, OciInterface, PushManifestParams, Result,
    body_from_bytes,
};

/// How long a read of a blob waits for another request's fill of it before reading the remote
/// itself: long enough for a small blob, so that a crowd asking for it makes one fetch; short
/// enough that a reader of a large blob does not sit silent while another fills it.
pub(super) const FILL_WAIT: Duration = Duration::from_secs(2);

/// At most this many blob fills run at once. A fill outlives its reader, so without a bound
/// clients that ask and leave could start any number; beyond it, blobs are read from the
/// remote and not cached.
pub(super) const FILLS_AT_ONCE: usize = 64;

/// Pieces buffered between the remote's body and each of its two readers (the reader of the
/// cache and the local store's push).
const PIECES_BUFFERED: usize = 8;

/// How long either reader of a fill may hold it back in all before it is let go, unless it
/// held it back for less than half of the fill's time: a client that reads slowly (on
/// purpose or not) must not make the fill crawl for everyone, holding its digest's turn and
/// one of the fills; a reader let go reads the rest from the cache once the fill is done. A
/// local store that is let go caches nothing this time.
pub(super) const LAG_ALLOWED: Duration = Duration::from_secs(30);

/// At most this many manifests, of at most this many bytes in all, wait for their content to
/// be cached; the oldest are dropped beyond (they are cached on a later read instead).
pub(super) const PENDING_MANIFESTS: usize = 1024;
pub(super) const PENDING_BYTES: usize = 64 << 20;

/// How a blob is read: whole and verified, or as a range of all of it (how a server that
/// serves blobs unverified reads them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WholeRead {
    Verified,
    AsRange,
}

/// A manifest fetched from the remote whose content is not all cached yet.
struct Pending {
    repo: Repository,
    digest: Digest,
    media_type: MediaType,
    bytes: Bytes,
    tags: Vec<Tag>,
}

/// The remote, the local store and the state of fills.
pub(super) struct Shared<R, L> {
    pub(super) remote: R,
    pub(super) local: L,
    pub(super) in_flight: Arc<InFlight>,
    fills: Arc<Semaphore>,
    /// Manifests waiting for their content, oldest first.
    pending: Mutex<VecDeque<Pending>>,
}

impl<R: OciInterface + 'static, L: OciInterface + 'static> Shared<R, L> {
    pub(super) fn new(remote: R, local: L) -> Self {
        Self {
            remote,
            local,
            in_flight: Arc::default(),
            fills: Arc::new(Semaphore::new(FILLS_AT_ONCE)),
            pending: Mutex::new(VecDeque::new()),
        }
    }

    async fn read_local(
        &self,
        repo: &Repository,
        digest: &Digest,
        read: WholeRead,
    ) -> Result<BlobReader> {
        match read {
            WholeRead::Verified => self.local.get_blob(repo, digest).await,
            WholeRead::AsRange => self.local.get_blob_range(repo, digest, 0, None).await,
        }
    }

    /// A read of the blob from the local store, or else streamed from the remote while it
    /// fills the local store (one fill per digest at a time).
    pub(super) async fn fill_blob(
        self: &Arc<Self>,
        repo: &Repository,
        digest: &Digest,
        read: WholeRead,
    ) -> Result<BlobReader> {
        let Some(turn) = self.in_flight.turn_within(digest, FILL_WAIT).await else {
            tracing::debug!(%repo, %digest, "another fill is under way: read from the remote");
            return self.remote.get_blob(repo, digest).await;
        };
        if self.local.resolve_blob(repo, digest).await.is_ok() {
            return self.read_local(repo, digest, read).await;
        }
        let Ok(permit) = Arc::clone(&self.fills).try_acquire_owned() else {
            tracing::warn!(%repo, %digest, "{FILLS_AT_ONCE} fills under way: read from the remote, not cached");
            return self.remote.get_blob(repo, digest).await;
        };
        let (descriptor, remote_body) = self.remote.get_blob(repo, digest).await?.into_parts();
        let verified_as = remote_body
            .verified_as()
            .map(|(digest, size)| (digest.clone(), size));
        let (to_reader, for_reader) = mpsc::channel(PIECES_BUFFERED);
        let body = BlobBody::passing_on(
            self.follow(repo, &descriptor, read, received(for_reader)),
            verified_as.clone(),
        );
        let shared = Arc::clone(self);
        let (repo, filled) = (repo.clone(), descriptor.clone());
        tokio::spawn(async move {
            shared
                .fill(&repo, &filled, remote_body, verified_as, to_reader)
                .await;
            // The blob is cached (or failed to be) before the next request's turn.
            drop(turn);
            drop(permit);
        });
        Ok(match read {
            WholeRead::Verified => BlobReader::verified(descriptor, body),
            WholeRead::AsRange => {
                let all = 0..descriptor.size;
                BlobReader::ranged(descriptor, all, body)
            }
        })
    }

    /// The reader's side of a fill: the pieces the fill sends it, then, if the fill let it go
    /// before the end (it held the fill back, see [`LAG_ALLOWED`]), the rest from the local
    /// store once the fill is done.
    fn follow(
        self: &Arc<Self>,
        repo: &Repository,
        descriptor: &Descriptor,
        read: WholeRead,
        pieces: impl Stream<Item = Result<Bytes>> + Send + 'static,
    ) -> impl Stream<Item = Result<Bytes>> + Send + 'static {
        enum Stage {
            Fill(BoxStream<'static, Result<Bytes>>, u64),
            Cache(BlobBody),
            Done,
        }
        let shared = Arc::clone(self);
        let (repo, digest, size) = (repo.clone(), descriptor.digest.clone(), descriptor.size);
        futures::stream::unfold(Stage::Fill(pieces.boxed(), 0), move |stage| {
            let (shared, repo, digest) = (Arc::clone(&shared), repo.clone(), digest.clone());
            async move {
                match stage {
                    Stage::Fill(mut pieces, seen) => match pieces.next().await {
                        Some(Ok(piece)) => {
                            let seen = seen + piece.len() as u64;
                            Some((Ok(piece), Stage::Fill(pieces, seen)))
                        }
                        Some(Err(error)) => Some((Err(error), Stage::Done)),
                        None if seen >= size => None,
                        None => match shared.rest_from_cache(&repo, &digest, read, seen).await {
                            Ok(mut rest) => {
                                let item = rest.next().await?;
                                Some((item, Stage::Cache(rest)))
                            }
                            Err(error) => Some((Err(error), Stage::Done)),
                        },
                    },
                    Stage::Cache(mut rest) => {
                        let item = rest.next().await?;
                        Some((item, Stage::Cache(rest)))
                    }
                    Stage::Done => None,
                }
            }
        })
    }

    /// The blob from byte `from` on, from the local store once the fill under way is done.
    async fn rest_from_cache(
        &self,
        repo: &Repository,
        digest: &Digest,
        read: WholeRead,
        from: u64,
    ) -> Result<BlobBody> {
        // The fill holds the digest's turn until it is done.
        drop(self.in_flight.turn(digest).await);
        tracing::debug!(%repo, %digest, from, "a reader let go by its fill reads on from the cache");
        Ok(match read {
            // A full read is verified whole: read whole again, the first bytes left out.
            WholeRead::Verified => {
                let whole = self.local.get_blob(repo, digest).await?.into_stream();
                BlobBody::new(skip_bytes(whole, from))
            }
            WholeRead::AsRange => self
                .local
                .get_blob_range(repo, digest, from, None)
                .await?
                .into_stream(),
        })
    }

    /// Passes the remote's body to the reader and into the local store; when the reader
    /// leaves, on into the local store alone. The remote's body verifies itself, so the
    /// reader and the push get its error instead of its last piece when the content is not
    /// what its digest says, and nothing is cached. `verified_as` is what the remote's body
    /// verifies ([`BlobBody::verified_as`]).
    async fn fill(
        &self,
        repo: &Repository,
        descriptor: &Descriptor,
        mut remote_body: BlobBody,
        verified_as: Option<(Digest, u64)>,
        to_reader: mpsc::Sender<Result<Bytes>>,
    ) {
        let (to_local, for_local) = mpsc::channel(PIECES_BUFFERED);
        let digest = &descriptor.digest;
        let feed = async move {
            let started = Instant::now();
            let (mut to_local, mut to_reader) = (
                Some(Lagging::new(to_local, "the local store")),
                Some(Lagging::new(to_reader, "the reader")),
            );
            while let Some(item) = remote_body.next().await {
                let failed = item.is_err();
                let (for_local, for_reader) = match item {
                    Ok(piece) => (Ok(piece.clone()), Ok(piece)),
                    Err(error) => (
                        Err(Error::io(
                            format!("filling the cache with blob {digest} from the remote"),
                            std::io::Error::other(error.to_string()),
                        )),
                        Err(error),
                    ),
                };
                if let Some(sender) = &mut to_local
                    && !sender.send(for_local, started, digest).await
                {
                    to_local = None;
                }
                if let Some(sender) = &mut to_reader
                    && !sender.send(for_reader, started, digest).await
                {
                    to_reader = None;
                }
                if failed || (to_local.is_none() && to_reader.is_none()) {
                    break;
                }
            }
        };
        let local_body = BlobBody::passing_on(received(for_local), verified_as);
        let ((), pushed) = tokio::join!(feed, self.local.push_blob(repo, descriptor, local_body));
        match pushed {
            Ok(_) => {
                tracing::debug!(%repo, %digest, "cached blob");
                self.settle_pending(repo).await;
            }
            Err(error) => tracing::warn!(%repo, %digest, %error, "could not cache blob"),
        }
    }

    /// Fetches a manifest from the remote, records it (and `tags`) locally where the local
    /// store accepts it, and serves the fetched bytes. Requests for one manifest wait for one
    /// another, for [`FILL_WAIT`] at most.
    pub(super) async fn fill_manifest(
        &self,
        repo: &Repository,
        digest: &Digest,
        tags: Vec<Tag>,
    ) -> Result<BlobReader> {
        // A fetch under way that takes longer than a moment (an upstream that is slow to
        // answer) is not waited for: this request fetches the manifest itself rather than
        // stay silent meanwhile. What both fetch is kept aside once (`keep_pending`).
        let _turn = self.in_flight.turn_within(digest, FILL_WAIT).await;
        if tags.is_empty()
            && let Ok(reader) = self.local.get_manifest(repo, digest).await
        {
            return Ok(reader);
        }
        let reader = self.remote.get_manifest(repo, digest).await?;
        let descriptor = reader.descriptor().clone();
        let bytes = reader.bytes(MAX_MANIFEST_SIZE as u64).await?;
        // Cached now if its content is, else kept aside until it is: one path for both.
        self.keep_pending(Pending {
            repo: repo.clone(),
            digest: digest.clone(),
            media_type: descriptor.media_type.clone(),
            bytes: bytes.clone(),
            tags,
        });
        self.settle_pending(repo).await;
        Ok(BlobReader::verified(descriptor, body_from_bytes(bytes)))
    }

    /// Keeps `manifest` aside; one already waiting gains its tags.
    fn keep_pending(&self, manifest: Pending) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(waiting) = pending
            .iter_mut()
            .find(|p| p.repo == manifest.repo && p.digest == manifest.digest)
        {
            for tag in manifest.tags {
                if !waiting.tags.contains(&tag) {
                    waiting.tags.push(tag);
                }
            }
            return;
        }
        pending.push_back(manifest);
        let mut bytes: usize = pending.iter().map(|p| p.bytes.len()).sum();
        while pending.len() > PENDING_MANIFESTS || bytes > PENDING_BYTES {
            let Some(dropped) = pending.pop_front() else {
                break;
            };
            bytes -= dropped.bytes.len();
        }
    }

    /// How many manifests wait, and their bytes.
    #[cfg(test)]
    pub(super) fn pending(&self) -> (usize, usize) {
        let pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        (pending.len(), pending.iter().map(|p| p.bytes.len()).sum())
    }

    /// Caches the manifests of `repo` kept aside whose content is now all cached (an index
    /// once its last child is), until none more can be.
    async fn settle_pending(&self, repo: &Repository) {
        loop {
            let waiting: Vec<Pending> = {
                let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
                let (ours, others): (Vec<_>, Vec<_>) =
                    pending.drain(..).partition(|p| &p.repo == repo);
                pending.extend(others);
                ours
            };
            if waiting.is_empty() {
                return;
            }
            let mut progress = false;
            for manifest in waiting {
                let params = PushManifestParams::new()
                    .with_digest(manifest.digest.clone())
                    .with_tags(manifest.tags.clone());
                match self
                    .local
                    .push_manifest(repo, manifest.bytes.clone(), &manifest.media_type, &params)
                    .await
                {
                    Ok(_) => {
                        tracing::debug!(%repo, digest = %manifest.digest, "cached manifest");
                        progress = true;
                    }
                    Err(error) if error.code() == Some(ErrorCode::ManifestBlobUnknown) => {
                        self.keep_pending(manifest);
                    }
                    Err(error) => {
                        tracing::warn!(%repo, digest = %manifest.digest, %error, "could not cache manifest");
                    }
                }
            }
            if !progress {
                return;
            }
        }
    }
}

/// One reader of a fill: what it is sent, and how long it has held the fill back.
struct Lagging {
    sender: mpsc::Sender<Result<Bytes>>,
    what: &'static str,
    waited: Duration,
}

impl Lagging {
    fn new(sender: mpsc::Sender<Result<Bytes>>, what: &'static str) -> Self {
        Self {
            sender,
            what,
            waited: Duration::ZERO,
        }
    }

    /// Sends `item`, waiting for room no longer than [`LAG_ALLOWED`] allows; `false` once
    /// this reader is gone or let go.
    async fn send(&mut self, item: Result<Bytes>, started: Instant, digest: &Digest) -> bool {
        let allowed = LAG_ALLOWED.max(started.elapsed() / 2);
        let patience = allowed.saturating_sub(self.waited);
        let before = Instant::now();
        let sent = self.sender.send_timeout(item, patience).await;
        self.waited += before.elapsed();
        match sent {
            Ok(()) => true,
            Err(mpsc::error::SendTimeoutError::Closed(_)) => {
                tracing::debug!(%digest, "{} left: the fill goes on", self.what);
                false
            }
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                tracing::info!(%digest, waited = ?self.waited, "{} held the fill back: let go", self.what);
                false
            }
        }
    }
}

/// `body` without its first `count` bytes.
fn skip_bytes(body: BlobBody, mut count: u64) -> impl Stream<Item = Result<Bytes>> {
    body.filter_map(move |item| {
        let kept = match item {
            Ok(mut piece) => {
                let len = piece.len() as u64;
                if count >= len {
                    count -= len;
                    None
                } else {
                    // `count < len`, a `usize`.
                    let rest = piece.split_off(usize::try_from(count).unwrap_or(0));
                    count = 0;
                    Some(Ok(rest))
                }
            }
            Err(error) => Some(Err(error)),
        };
        std::future::ready(kept)
    })
}

/// What a channel's receiver gets, as a stream.
fn received(mut receiver: mpsc::Receiver<Result<Bytes>>) -> impl Stream<Item = Result<Bytes>> {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}
