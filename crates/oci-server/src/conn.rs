//! One connection: TLS, HTTP/1 or HTTP/2, and the time limits that keep a hostile or vanished
//! client from holding it (and its memory, file descriptor and task) for ever.
//!
//! hyper limits how long a request's head may take (HTTP/1's header read timeout, which also
//! ends idle keep-alive connections); everything else is one rule on the socket itself: a
//! connection on which no byte moved either way for the idle timeout is closed. That covers a
//! body that stalls, a download nobody reads, an idle HTTP/2 connection, and a handshake that
//! never ends, without timing any request that is moving, however slowly.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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

use crate::handler::{State, handle};

/// Concurrent requests on one HTTP/2 connection.
const MAX_STREAMS: u32 = 128;

/// When a byte last moved on a connection.
#[derive(Debug)]
pub(crate) struct Activity {
    epoch: Instant,
    /// Milliseconds from `epoch` to the last byte read or written.
    last: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            last: AtomicU64::new(0),
        })
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
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
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
    let service = service_fn(move |request: hyper::Request<Incoming>| {
        let state = Arc::clone(&handler_state);
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
}
