//! Uncompressed layer bytes handed from a decompressing thread to the applier, in pieces of
//! [`PIECE`] bytes whose buffers go round: the applier gives each one back to a [`PiecePool`]
//! when it has read it, and the next piece is filled in it.
//!
//! Why not a new buffer per piece: with glibc's allocator, a freed buffer of a MiB raises the
//! size from which allocations are mapped on their own, so the buffers after it come out of
//! per-thread arenas, one per decompressing thread, which keep what was freed; an unpack of an
//! 8-layer image held 39 MiB where 20 did the work. A pool allocates each buffer once.

use std::io::{self, Read};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;

/// Bytes of uncompressed layer in a piece.
pub(crate) const PIECE: usize = 1 << 20;
/// Pieces queued per layer, between its decompressing thread and the applier.
pub(crate) const PIECES_QUEUED: usize = 4;
/// Buffers the pool keeps for reuse: for each of the two layers in flight (the one applied and
/// the one inflating ahead of it), its queue and the piece being filled, and the piece the
/// applier reads. Any more are freed.
const KEPT: usize = 2 * (PIECES_QUEUED + 1) + 1;

/// What a decompressing thread sends: a piece (its length is what was filled) or the failure
/// that ends the layer.
pub(crate) type PieceResult = io::Result<Vec<u8>>;

/// The buffers of one unpack, shared by every layer's thread.
#[derive(Debug, Clone, Default)]
pub(crate) struct PiecePool {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    free: Mutex<Vec<Vec<u8>>>,
    /// Buffers allocated so far.
    made: AtomicUsize,
}

impl PiecePool {
    /// A buffer of [`PIECE`] bytes: a given-back one if there is one.
    fn take(&self) -> Vec<u8> {
        let reused = self
            .shared
            .free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        match reused {
            Some(mut buffer) => {
                // A layer's last piece came back shorter; its tail is zeroed once more.
                buffer.resize(PIECE, 0);
                buffer
            }
            None => {
                self.shared.made.fetch_add(1, Ordering::Relaxed);
                vec![0; PIECE]
            }
        }
    }

    /// Keeps `buffer` for the next [`take`](Self::take), unless enough are kept.
    fn give(&self, buffer: Vec<u8>) {
        let mut free = self
            .shared
            .free
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if free.len() < KEPT && buffer.capacity() >= PIECE {
            free.push(buffer);
        }
    }

    /// How many buffers have been allocated.
    #[cfg(test)]
    fn made(&self) -> usize {
        self.shared.made.load(Ordering::Relaxed)
    }
}

/// Reads `reader` to its end in pieces into `pieces`; a failure is the last item. Stops early,
/// quietly, when the receiving side is gone (the applier failed and says why).
pub(crate) fn decompress(
    mut reader: impl Read,
    pool: &PiecePool,
    pieces: &mpsc::Sender<PieceResult>,
) {
    loop {
        let mut piece = pool.take();
        let mut filled = 0;
        let result = loop {
            match reader.read(&mut piece[filled..]) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    filled += n;
                    if filled == PIECE {
                        break Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        piece.truncate(filled);
        let done = filled < PIECE;
        if filled > 0 {
            if pieces.blocking_send(Ok(piece)).is_err() {
                return;
            }
        } else {
            pool.give(piece);
        }
        if let Err(e) = result {
            let _ = pieces.blocking_send(Err(e));
            return;
        }
        if done {
            return;
        }
    }
}

/// The pieces of one layer as a `Read`; each piece's buffer goes back to the pool once read.
pub(crate) struct PieceReader {
    pieces: mpsc::Receiver<PieceResult>,
    pool: PiecePool,
    current: Vec<u8>,
    /// How much of `current` has been read.
    at: usize,
    /// Told the size of each piece taken.
    pub(crate) on_piece: Option<Box<dyn Fn(u64) + Send>>,
}

impl PieceReader {
    pub(crate) fn new(pieces: mpsc::Receiver<PieceResult>, pool: PiecePool) -> Self {
        Self {
            pieces,
            pool,
            current: Vec::new(),
            at: 0,
            on_piece: None,
        }
    }
}

impl Read for PieceReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.current.len() {
            match self.pieces.blocking_recv() {
                Some(piece) => {
                    let read = std::mem::replace(&mut self.current, piece?);
                    self.at = 0;
                    self.pool.give(read);
                    if let Some(on_piece) = &self.on_piece {
                        on_piece(self.current.len() as u64);
                    }
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl Drop for PieceReader {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.current));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `size` bytes of a repeating pattern that no two pieces share in place.
    fn pattern(size: usize) -> Vec<u8> {
        (0..size).map(|i| (i % 251) as u8).collect()
    }

    /// The bytes of `layers` through their own threads and one reader after another, as an
    /// unpack passes them, with one pool.
    fn pass_through(layers: &[Vec<u8>]) -> (Vec<Vec<u8>>, PiecePool) {
        let pool = PiecePool::default();
        let mut threads = Vec::new();
        let mut readers = Vec::new();
        for layer in layers {
            let (sender, receiver) = mpsc::channel(PIECES_QUEUED);
            let (layer, thread_pool) = (layer.clone(), pool.clone());
            threads.push(std::thread::spawn(move || {
                decompress(io::Cursor::new(layer), &thread_pool, &sender);
            }));
            readers.push(PieceReader::new(receiver, pool.clone()));
        }
        let read = readers
            .into_iter()
            .map(|mut reader| {
                let mut out = Vec::new();
                reader.read_to_end(&mut out).unwrap();
                out
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        (read, pool)
    }

    #[test]
    fn pieces_give_back_the_bytes_in_order() {
        let layers = [
            pattern(3 * PIECE + 17),
            Vec::new(),
            pattern(PIECE),
            pattern(5),
        ];
        let (read, _) = pass_through(&layers);
        assert_eq!(read, layers);
    }

    #[test]
    fn buffers_are_reused_whatever_the_size() {
        // Layers read one after another: one's buffers serve the next.
        let layers: Vec<Vec<u8>> = (0..3).map(|_| pattern(24 * PIECE + 1)).collect();
        let (read, pool) = pass_through(&layers[..1]);
        assert_eq!(read[0], layers[0]);
        // The queue, the piece filled and the piece read (a new one per piece would be 25).
        assert!(pool.made() <= PIECES_QUEUED + 3, "{} buffers", pool.made());

        let pool = PiecePool::default();
        for layer in &layers {
            let (sender, receiver) = mpsc::channel(PIECES_QUEUED);
            let thread_pool = pool.clone();
            let bytes = layer.clone();
            let thread = std::thread::spawn(move || {
                decompress(io::Cursor::new(bytes), &thread_pool, &sender);
            });
            let mut out = Vec::new();
            PieceReader::new(receiver, pool.clone())
                .read_to_end(&mut out)
                .unwrap();
            thread.join().unwrap();
            assert_eq!(&out, layer);
        }
        assert!(pool.made() <= PIECES_QUEUED + 3, "{} buffers", pool.made());
    }

    #[test]
    fn a_failure_ends_the_layer_after_its_bytes() {
        struct Failing(usize);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("the blob broke"));
                }
                let n = buf.len().min(self.0);
                buf[..n].fill(7);
                self.0 -= n;
                Ok(n)
            }
        }
        let pool = PiecePool::default();
        let (sender, receiver) = mpsc::channel(PIECES_QUEUED);
        let thread_pool = pool.clone();
        let thread = std::thread::spawn(move || {
            decompress(Failing(PIECE + 3), &thread_pool, &sender);
        });
        let mut reader = PieceReader::new(receiver, pool);
        let mut out = Vec::new();
        let error = reader.read_to_end(&mut out).unwrap_err();
        assert_eq!(error.to_string(), "the blob broke");
        assert_eq!(out.len(), PIECE + 3);
        thread.join().unwrap();
    }
}
