//! Request bodies of uploads as blob bodies, with the server's limits on them: the blob size
//! limit, and a minimum rate, so that a body that stalls or trickles is cut off while a slow
//! but moving upload of any size goes on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use oci_store::{BlobBody, Error};
use tokio::time::Instant;

/// Which limit cut a body off, so that the answer can say so (413, 408) rather than report
/// the store's error for a broken body.
#[derive(Debug, Default)]
pub(crate) struct BodyWatch {
    overflowed: AtomicBool,
    too_slow: AtomicBool,
}

impl BodyWatch {
    /// The body passed the blob size limit.
    pub(crate) fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Relaxed)
    }

    /// The body arrived slower than the minimum rate.
    pub(crate) fn too_slow(&self) -> bool {
        self.too_slow.load(Ordering::Relaxed)
    }
}

/// The least a body must bring in each window.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MinRate {
    pub(crate) bytes_per_second: u64,
    pub(crate) window: Duration,
}

impl MinRate {
    /// The bytes each window must bring.
    pub(crate) fn per_window(self) -> u64 {
        let per_window = u128::from(self.bytes_per_second) * self.window.as_millis() / 1000;
        u64::try_from(per_window).unwrap_or(u64::MAX)
    }
}

/// A request body as a blob body, cut off with an error once it passes `room` bytes (what is
/// left of the blob size limit) or falls below `rate`.
pub(crate) fn body_stream(
    body: Incoming,
    room: Option<u64>,
    rate: Option<MinRate>,
) -> (BlobBody, Arc<BodyWatch>) {
    let watch = Arc::new(BodyWatch::default());
    let sizes = Arc::clone(&watch);
    let mut seen = 0u64;
    let data = body.into_data_stream().map(move |chunk| {
        let chunk =
            chunk.map_err(|e| Error::io("reading the request body", std::io::Error::other(e)))?;
        seen += chunk.len() as u64;
        match room {
            Some(room) if seen > room => {
                sizes.overflowed.store(true, Ordering::Relaxed);
                Err(Error::io(
                    "reading the request body",
                    std::io::Error::other("the blob is larger than the limit"),
                ))
            }
            _ => Ok(chunk),
        }
    });
    let body = match rate {
        Some(rate) if rate.bytes_per_second > 0 && !rate.window.is_zero() => {
            at_least(data, rate, Arc::clone(&watch)).boxed()
        }
        _ => data.boxed(),
    };
    (body.into(), watch)
}

/// A request body read whole (a manifest, a token form): at most `limit` bytes, at `rate`; on
/// failure, the error and the watch that tells which limit, if any, cut it off.
pub(crate) async fn read_whole(
    body: Incoming,
    limit: u64,
    rate: MinRate,
) -> Result<Bytes, (Error, Arc<BodyWatch>)> {
    let (mut body, watch) = body_stream(body, Some(limit), Some(rate));
    let mut whole = bytes::BytesMut::new();
    while let Some(piece) = body.next().await {
        match piece {
            Ok(piece) => whole.extend_from_slice(&piece),
            Err(error) => return Err((error, watch)),
        }
    }
    Ok(whole.freeze())
}

/// `inner`, ended with an error when a window of `rate.window` brings less than the rate asks.
fn at_least<S>(
    inner: S,
    rate: MinRate,
    watch: Arc<BodyWatch>,
) -> impl Stream<Item = Result<Bytes, Error>> + Send + 'static
where
    S: Stream<Item = Result<Bytes, Error>> + Send + Unpin + 'static,
{
    struct Progress<S> {
        inner: S,
        window_start: Instant,
        bytes: u64,
        ended: bool,
    }
    let needed = rate.per_window();
    let too_slow = move |watch: &BodyWatch| {
        watch.too_slow.store(true, Ordering::Relaxed);
        Error::io(
            "reading the request body",
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "the body arrived slower than {} bytes/s over {:?}",
                    rate.bytes_per_second, rate.window
                ),
            ),
        )
    };
    let start = Progress {
        inner,
        window_start: Instant::now(),
        bytes: 0,
        ended: false,
    };
    futures::stream::unfold(start, move |mut progress| {
        let watch = Arc::clone(&watch);
        async move {
            if progress.ended {
                return None;
            }
            loop {
                let deadline = progress.window_start + rate.window;
                match tokio::time::timeout_at(deadline, progress.inner.next()).await {
                    Ok(Some(Ok(chunk))) => {
                        progress.bytes += chunk.len() as u64;
                        let now = Instant::now();
                        if now >= deadline {
                            if progress.bytes < needed {
                                progress.ended = true;
                                return Some((Err(too_slow(&watch)), progress));
                            }
                            progress.window_start = now;
                            progress.bytes = 0;
                        }
                        return Some((Ok(chunk), progress));
                    }
                    Ok(Some(Err(error))) => {
                        progress.ended = true;
                        return Some((Err(error), progress));
                    }
                    Ok(None) => return None,
                    // The window ended while waiting: enough came in it, or the body is cut off.
                    Err(_) if progress.bytes >= needed => {
                        progress.window_start = deadline;
                        progress.bytes = 0;
                    }
                    Err(_) => {
                        progress.ended = true;
                        return Some((Err(too_slow(&watch)), progress));
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(bytes_per_second: u64) -> MinRate {
        MinRate {
            bytes_per_second,
            window: Duration::from_secs(10),
        }
    }

    /// Pieces of `size` bytes, one every `every`, `count` of them, then the end.
    fn trickle(
        size: usize,
        every: Duration,
        count: usize,
    ) -> impl Stream<Item = Result<Bytes, Error>> + Send + Unpin + 'static {
        futures::stream::unfold(0, move |sent| async move {
            if sent == count {
                return None;
            }
            tokio::time::sleep(every).await;
            Some((Ok(Bytes::from(vec![7u8; size])), sent + 1))
        })
        .boxed()
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_body_that_keeps_the_rate_is_read_whole() {
        // 1,000 bytes/s asked; 2,000 bytes every second for 100 s (time is simulated).
        let watch = Arc::new(BodyWatch::default());
        let body = at_least(
            trickle(2000, Duration::from_secs(1), 100),
            rate(1000),
            Arc::clone(&watch),
        );
        let pieces: Vec<_> = body.collect().await;
        assert_eq!(pieces.len(), 100);
        assert!(pieces.iter().all(Result::is_ok));
        assert!(!watch.too_slow());
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stalls_is_cut_off_at_the_end_of_its_window() {
        let watch = Arc::new(BodyWatch::default());
        // Three pieces, then nothing for an hour.
        let stalled = trickle(5000, Duration::from_secs(1), 3)
            .chain(trickle(1, Duration::from_secs(3600), 1))
            .boxed();
        let started = Instant::now();
        let pieces: Vec<_> = at_least(stalled, rate(1000), Arc::clone(&watch))
            .collect()
            .await;
        assert_eq!(pieces.len(), 4);
        let error = format!("{:?}", pieces[3].as_ref().unwrap_err());
        assert!(error.contains("slower than 1000 bytes/s"), "{error}");
        assert!(watch.too_slow());
        // 15,000 bytes cover the first window; the second one brings nothing.
        assert_eq!(started.elapsed(), Duration::from_secs(20));
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_below_the_rate_is_cut_off() {
        let watch = Arc::new(BodyWatch::default());
        // 100 bytes/s against 1,000 asked: the first window's 1,000 bytes fall short.
        let pieces: Vec<_> = at_least(
            trickle(100, Duration::from_secs(1), 1000),
            rate(1000),
            Arc::clone(&watch),
        )
        .collect()
        .await;
        assert!(pieces.last().unwrap().is_err());
        assert!(pieces.len() <= 11, "{} pieces", pieces.len());
        assert!(watch.too_slow());
    }
}
