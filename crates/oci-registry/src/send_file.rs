//! A request whose body is a span of a file, sent over plain HTTP with `sendfile(2)`: the bytes
//! go from the page cache to the socket without being read into memory and written back. A
//! push from a layout then costs the client almost no CPU, which a registry on the same
//! machine (one that hashes what it takes) has for itself.
//!
//! hyper cannot send a body it is not given as bytes, so the request goes on a connection of
//! its own: its head written here, its body by `sendfile`, and the answer read by hyper, on
//! the same connection, as the answer to a request whose bytes are discarded (see
//! [`AnswerOnly`]), so that what comes back is a `Response<Incoming>` like any other.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use oci_store::FileSpan;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tower_service::Service;

use crate::proxy::ProxyConnector;
use crate::transport::{BodyProgress, HTTP1_MAX_BUFFER, RequestBody};

/// Why a request with a file's span failed.
pub(crate) type SendError = Box<dyn std::error::Error + Send + Sync>;

/// Whether this system can send a file to a socket unread.
pub(crate) const SUPPORTED: bool = cfg!(target_os = "linux");

/// The most bytes one `sendfile` call is asked for: progress is told at least this often.
const STEP: u64 = 4 << 20;

/// Sends `request` (its head: its own body is empty and ignored) with `span` as its body, on a
/// new connection from `connector` (direct, or to the proxy that forwards plain HTTP), and
/// reads the answer. `progress` and the span's observers are told of every part sent.
pub(crate) async fn send(
    mut connector: ProxyConnector,
    request: Request<RequestBody>,
    span: FileSpan,
    progress: Arc<BodyProgress>,
) -> Result<Response<Incoming>, SendError> {
    let (request, _empty) = request.into_parts();
    futures::future::poll_fn(|cx| connector.poll_ready(cx)).await?;
    let connection = connector.call(request.uri.clone()).await?;
    let forwarded = connection.is_forwarded();
    let mut tcp = connection.into_tcp();
    tcp.write_all(&head(&request, forwarded, span.len()))
        .await?;
    progress.mark(0);
    match send_span(tcp, &span, &progress).await {
        (Some(tcp), Ok(())) => read_answer(tcp, &request).await,
        (None, Ok(())) => Err(io::Error::other("the connection was lost after the body").into()),
        // The file ended early: the registry waits for the rest, and will never answer.
        (_, Err(error)) if error.kind() == io::ErrorKind::UnexpectedEof => Err(error.into()),
        // A registry may answer before it has the whole body (a refusal, a 413) and close:
        // that answer says more than the broken pipe, when it can still be read.
        (Some(tcp), Err(error)) => match read_answer(tcp, &request).await {
            Ok(response) if !response.status().is_success() => Ok(response),
            _ => Err(error.into()),
        },
        (None, Err(error)) => Err(error.into()),
    }
}

/// The request's head, with a `Content-Length` of `len`: in absolute form to a proxy.
fn head(request: &http::request::Parts, forwarded: bool, len: u64) -> Vec<u8> {
    let uri = &request.uri;
    let target = if forwarded {
        uri.to_string()
    } else {
        uri.path_and_query()
            .map_or_else(|| "/".to_owned(), ToString::to_string)
    };
    let mut head = format!("{} {target} HTTP/1.1\r\n", request.method).into_bytes();
    if !request.headers.contains_key(header::HOST)
        && let Some(authority) = uri.authority()
    {
        head.extend_from_slice(format!("host: {authority}\r\n").as_bytes());
    }
    for (name, value) in &request.headers {
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        // Header values cannot hold CR or LF (`HeaderValue` refuses them): no injection.
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(format!("content-length: {len}\r\n\r\n").as_bytes());
    head
}

/// Sends the span's bytes to `tcp`, [`STEP`] at most at a time, on a blocking thread: a part
/// of the file that is not in the page cache is read from the disk inside `sendfile`, which
/// would otherwise hold one of the runtime's few workers, and every task queued on it, for as
/// long as the disk takes. Gives the connection back.
#[cfg(target_os = "linux")]
async fn send_span(
    tcp: TcpStream,
    span: &FileSpan,
    progress: &Arc<BodyProgress>,
) -> (Option<TcpStream>, io::Result<()>) {
    let socket = match tcp.into_std() {
        Ok(socket) => socket,
        Err(error) => return (None, Err(error)),
    };
    // Set when this future is dropped (the request given up): the thread stops at its next
    // step or wait.
    let given_up = GivenUp::default();
    let sending = tokio::task::spawn_blocking({
        let (span, progress, given_up) = (span.clone(), Arc::clone(progress), given_up.flag());
        move || {
            let sent = send_blocking(&socket, &span, &progress, &given_up);
            (socket, sent)
        }
    });
    match sending.await {
        Ok((socket, sent)) => match TcpStream::from_std(socket) {
            Ok(tcp) => (Some(tcp), sent),
            Err(error) => (None, sent.and(Err(error))),
        },
        Err(join) => (None, Err(io::Error::other(join))),
    }
}

/// The loop of [`send_span`], on the blocking thread; the socket stays non-blocking, so that a
/// full send buffer is waited for in `poll`, which wakes now and then to see whether the
/// request was given up.
#[cfg(target_os = "linux")]
fn send_blocking(
    socket: &std::net::TcpStream,
    span: &FileSpan,
    progress: &BodyProgress,
    given_up: &AtomicBool,
) -> io::Result<()> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    use rustix::io::Errno;
    let look_again = Timespec {
        tv_sec: 0,
        tv_nsec: 200_000_000,
    };
    let mut offset = span.offset();
    let end = span.offset().saturating_add(span.len());
    while offset < end {
        if given_up.load(Ordering::Relaxed) {
            return Err(io::Error::from(io::ErrorKind::Interrupted));
        }
        let count = usize::try_from((end - offset).min(STEP)).unwrap_or(usize::MAX);
        match rustix::fs::sendfile(socket, span.file(), Some(&mut offset), count) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "{} ended after {} of the {} bytes being sent",
                        span.name(),
                        offset - span.offset(),
                        span.len()
                    ),
                ));
            }
            Ok(sent) => {
                progress.mark(sent);
                span.sent(sent as u64);
            }
            Err(Errno::AGAIN) => {
                let mut writable = [PollFd::new(socket, PollFlags::OUT)];
                match poll(&mut writable, Some(&look_again)) {
                    Ok(_) | Err(Errno::INTR) => {}
                    Err(error) => return Err(error.into()),
                }
            }
            Err(Errno::INTR) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
async fn send_span(
    tcp: TcpStream,
    _: &FileSpan,
    _: &Arc<BodyProgress>,
) -> (Option<TcpStream>, io::Result<()>) {
    (Some(tcp), Err(io::Error::from(io::ErrorKind::Unsupported)))
}

/// A flag set when it is dropped.
#[derive(Default)]
struct GivenUp(Arc<AtomicBool>);

impl GivenUp {
    fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.0)
    }
}

impl Drop for GivenUp {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The answer on `tcp` to the request sent on it, read by hyper.
async fn read_answer(
    tcp: TcpStream,
    request: &http::request::Parts,
) -> Result<Response<Incoming>, SendError> {
    let io = AnswerOnly {
        io: TokioIo::new(tcp),
        asked: false,
        reader: None,
    };
    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(HTTP1_MAX_BUFFER)
        .handshake::<_, Empty<Bytes>>(io)
        .await?;
    // Not the request sent: one like it (hyper reads the answer to a PUT as such), whose
    // bytes `AnswerOnly` discards.
    let mut stand_in = Request::new(Empty::new());
    *stand_in.method_mut() = request.method.clone();
    *stand_in.uri_mut() = request.uri.clone();
    let answer = sender.send_request(stand_in);
    // Drives the connection until the answer's body is read or dropped.
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "connection of a file upload ended");
        }
    });
    Ok(answer.await?)
}

/// A connection on which a request was already sent, as hyper sees it: what hyper writes (its
/// own copy of the request) is discarded, and nothing is read before it has written it, since
/// hyper takes bytes that arrive before it sent a request for an unasked-for answer.
struct AnswerOnly {
    io: TokioIo<TcpStream>,
    /// Whether hyper has written its request.
    asked: bool,
    /// A read waiting for that.
    reader: Option<Waker>,
}

impl AnswerOnly {
    fn discard(&mut self, len: usize) -> Poll<io::Result<usize>> {
        self.asked = true;
        if let Some(reader) = self.reader.take() {
            reader.wake();
        }
        Poll::Ready(Ok(len))
    }
}

impl hyper::rt::Read for AnswerOnly {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.asked {
            self.reader = Some(cx.waker().clone());
            return Poll::Pending;
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for AnswerOnly {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.discard(buf.len())
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.discard(bufs.iter().map(|buf| buf.len()).sum())
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The future of [`send`], boxed so that the client's two ways of sending are one type.
pub(crate) type Answer =
    Pin<Box<dyn Future<Output = Result<Response<Incoming>, SendError>> + Send>>;
