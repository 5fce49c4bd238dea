//! One connection: TLS, HTTP/1 or HTTP/2, and the time limits that keep a hostile or vanished
//! client from holding it (and its memory, file descriptor and task) for ever.
//!
//! hyper limits how long a request's head may take (HTTP/1's header read timeout, which also
//! ends idle keep-alive connections); everything else is two rules on the socket itself: a
//! connection on which no byte moved either way for the idle timeout is closed, which covers a
//! body that stalls, a download nobody reads, an idle HTTP/2 connection, and a handshake that
//! never ends; and a connection whose client takes a blob slower than the minimum body rate
//! (on average over a window, with the socket full) is closed, so that slow readers cannot
//! hold the download slots for ever; a body the server itself has slowly (a mirror's slow
//! upstream) is not cut. No request that moves at the rate is timed, however long it takes.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::body::MinRate;
use crate::handler::{State, handle};

/// Concurrent requests on one HTTP/2 connection.
const MAX_STREAMS: u32 = 128;

/// When a byte last moved on a connection, how many it wrote, and how many blob bodies it is
/// sending. Requests find it in their extensions.
#[derive(Debug)]
pub(crate) struct Activity {
    epoch: Instant,
    /// Milliseconds from `epoch` to the last byte read or written.
    last: AtomicU64,
    /// Bytes written to the socket.
    written: AtomicU64,
    /// Blob bodies being sent.
    downloads: AtomicUsize,
    /// The last write found the socket full: the client is not taking what is sent (rather
    /// than the server having nothing to send, as when a mirror's upstream is slow).
    blocked: AtomicBool,
}

/// A blob body being sent on a connection, counted until it drops.
#[derive(Debug)]
pub(crate) struct Download(Arc<Activity>);

impl Drop for Download {
    fn drop(&mut self) {
        self.0.downloads.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Activity {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            last: AtomicU64::new(0),
            written: AtomicU64::new(0),
            downloads: AtomicUsize::new(0),
            blocked: AtomicBool::new(false),
        })
    }

    /// Counts a blob body being sent on this connection until the guard drops.
    pub(crate) fn download(self: &Arc<Self>) -> Download {
        self.downloads.fetch_add(1, Ordering::Relaxed);
        Download(Arc::clone(self))
    }

    /// Records the outcome of a write.
    fn wrote(&self, polled: &Poll<io::Result<usize>>) {
        match polled {
            Poll::Ready(Ok(n)) if *n > 0 => {
                self.written.fetch_add(*n as u64, Ordering::Relaxed);
                self.blocked.store(false, Ordering::Relaxed);
                self.touch();
            }
            Poll::Pending => self.blocked.store(true, Ordering::Relaxed),
            _ => {}
        }
    }

    /// Whether a blob body is being sent and the socket is full.
    fn held_up(&self) -> bool {
        self.downloads.load(Ordering::Relaxed) > 0 && self.blocked.load(Ordering::Relaxed)
    }

    /// Returns once a window of `rate` passes that starts and ends with a blob body being
    /// sent into a full socket and brings fewer bytes than the rate asks: the client takes
    /// the blob too slowly. Never with the rate off.
    pub(crate) async fn too_slow(&self, rate: MinRate) {
        let needed = rate.per_window();
        if needed == 0 || rate.window.is_zero() {
            return std::future::pending().await;
        }
        loop {
            let held_up = self.held_up();
            let before = self.written.load(Ordering::Relaxed);
            tokio::time::sleep(rate.window).await;
            let sent = self.written.load(Ordering::Relaxed).saturating_sub(before);
            if held_up && self.held_up() && sent < needed {
                return;
            }
        }
    }

    fn touch(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(now, Ordering::Relaxed);
    }

    fn quiet_for(&self) -> Duration {
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }

    /// Returns once nothing has moved for `limit`.
    pub(crate) async fn idle(&self, limit: Duration) {
        loop {
            let quiet = self.quiet_for();
            if quiet >= limit {
                return;
            }
            tokio::time::sleep(limit - quiet).await;
        }
    }
}

/// A socket that records its [`Activity`].
#[derive(Debug)]
pub(crate) struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> Watched<T> {
    pub(crate) fn new(inner: T, activity: Arc<Activity>) -> Self {
        activity.touch();
        Self { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.activity.wrote(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.activity.wrote(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves one accepted connection until it ends, is closed by a time limit, or shutdown has
/// waited long enough.
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<State>,
    tls: Option<TlsAcceptor>,
    watcher: Watcher,
) {
    let options = &state.options;
    let (idle_limit, handshake_limit) = (options.idle_timeout, options.tls_handshake_timeout);
    // The server reads a connection's first bytes to tell HTTP/1 from HTTP/2 before hyper's
    // header timer runs, so a connection that sends nothing at all is limited here (with the
    // same limit as a request's head), not left to the idle timeout.
    let first_bytes_limit = options.header_read_timeout;
    if !first_bytes_limit.is_zero() {
        // `peek`, not `readable`: readiness may be reported before any byte is there.
        match tokio::time::timeout(first_bytes_limit, stream.peek(&mut [0u8; 1])).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                tracing::debug!(%peer, %error, "connection failed before its first byte");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, ?first_bytes_limit, "closing a connection that sent nothing");
                return;
            }
        }
    }
    let activity = Activity::new();
    let stream = Watched::new(stream, Arc::clone(&activity));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Some(options.header_read_timeout).filter(|limit| !limit.is_zero()));
    // Streams of one HTTP/2 connection are requests in flight like connections are: bounded.
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS);
    let handler_state = Arc::clone(&state);
    let request_activity = Arc::clone(&activity);
    let service = service_fn(move |mut request: hyper::Request<Incoming>| {
        let state = Arc::clone(&handler_state);
        request
            .extensions_mut()
            .insert(Arc::clone(&request_activity));
        async move { Ok::<_, std::convert::Infallible>(handle(state, request).await) }
    });
    let served = async {
        match tls {
            Some(acceptor) => {
                let stream =
                    match tokio::time::timeout(handshake_limit, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(error)) => {
                            tracing::debug!(%peer, %error, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                let connection = builder.serve_connection(TokioIo::new(stream), service);
                if let Err(error) = watcher.watch(connection).await {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
            }
            None => {
                let connection = builder.serve_connection(TokioIo::new(stream), service);
                if let Err(error) = watcher.watch(connection).await {
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
            }
        }
    };
    tokio::select! {
        () = served => {}
        () = activity.idle(idle_limit), if !idle_limit.is_zero() => {
            tracing::debug!(%peer, ?idle_limit, "closing a connection on which nothing moved");
        }
        () = activity.too_slow(state.body_rate()) => {
            tracing::debug!(%peer, "closing a connection that takes a blob slower than the minimum rate");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn activity_is_what_moved_on_the_socket() {
        let (a, mut b) = tokio::io::duplex(64);
        let activity = Activity::new();
        let mut watched = Watched::new(a, Arc::clone(&activity));
        tokio::time::sleep(Duration::from_millis(30)).await;
        let before_read = activity.quiet_for();
        assert!(before_read >= Duration::from_millis(30));
        b.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        watched.read_exact(&mut buf).await.unwrap();
        assert!(activity.quiet_for() < before_read);
        tokio::time::sleep(Duration::from_millis(30)).await;
        let before_write = activity.quiet_for();
        watched.write_all(b"back").await.unwrap();
        assert!(activity.quiet_for() < before_write);
        // Idle is reported once the limit has passed since the last byte, not before.
        activity.idle(Duration::from_millis(50)).await;
        assert!(activity.quiet_for() >= Duration::from_millis(50));
    }

    /// Only a client that does not take what is sent is too slow: a blob body sent into a
    /// full socket with fewer bytes than the rate per window is; one the server has nothing
    /// of to send (its source is slow), or no blob body at all, is not.
    #[tokio::test]
    async fn too_slow_is_a_full_socket_under_a_blob_body_below_the_rate() {
        let rate = MinRate {
            bytes_per_second: 1 << 20,
            window: Duration::from_millis(50),
        };
        let within = |activity: Arc<Activity>| async move {
            let checked = activity.too_slow(rate);
            tokio::time::timeout(rate.window * 4, checked).await.is_ok()
        };
        // A full socket: the duplex takes 64 bytes, and nobody reads them.
        let (a, _b) = tokio::io::duplex(64);
        let activity = Activity::new();
        let mut watched = Watched::new(a, Arc::clone(&activity));
        let download = activity.download();
        let filling = tokio::spawn(async move {
            let _ = watched.write_all(&[0u8; 1024]).await;
        });
        assert!(
            within(Arc::clone(&activity)).await,
            "a reader that takes nothing"
        );
        drop(download);
        assert!(
            !within(Arc::clone(&activity)).await,
            "no blob body is being sent"
        );
        filling.abort();

        // A blob body with nothing to send: the socket is not full.
        let (a, _b) = tokio::io::duplex(64);
        let activity = Activity::new();
        let _watched = Watched::new(a, Arc::clone(&activity));
        let _download = activity.download();
        assert!(!within(Arc::clone(&activity)).await, "a slow source");

        let off = MinRate {
            bytes_per_second: 0,
            window: rate.window,
        };
        let never = tokio::time::timeout(rate.window * 4, activity.too_slow(off));
        assert!(never.await.is_err(), "the rule is off");
    }
}
