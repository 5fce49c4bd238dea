//! Uncompressed layer bytes handed from a decompressing thread to the applier, in pieces of
//! [`PIECE`] bytes whose buffers go round: each piece is a buffer of the unpack's
//! [`BufferPool`], which gets it back when the applier has read the piece, and the next piece
//! is read into it.
//!
//! Why not a new buffer per piece: with glibc's allocator, a freed buffer of a MiB raises the
//! size from which allocations are mapped on their own, so the buffers after it come out of
//! per-thread arenas, one per decompressing thread, which keep what was freed; an unpack of an
//! 8-layer image held 39 MiB where 20 did the work.

use std::io::{self, Read};

use bytes::Bytes;
use oci_store::BufferPool;
use tokio::sync::mpsc;

/// Bytes of uncompressed layer in a piece.
pub(crate) const PIECE: usize = 512 << 10;
/// Pieces queued per layer, between its decompressing thread and the applier.
pub(crate) const PIECES_QUEUED: usize = 4;
/// Buffers the pool keeps for reuse: for each of the two layers in flight (the one applied and
/// the one inflating ahead of it), its queue and the piece being read into, and the piece the
/// applier reads. Any more are freed.
const KEPT: usize = 2 * (PIECES_QUEUED + 1) + 1;

/// What a decompressing thread sends: a piece, or the failure that ends the layer.
pub(crate) type PieceResult = io::Result<Bytes>;

/// The buffers of one unpack, shared by every layer's thread.
pub(crate) fn piece_pool() -> BufferPool {
    BufferPool::new(PIECE, KEPT)
}

/// Reads `reader` to its end in pieces into `pieces`; a failure is the last item, after what
/// was read before it. Stops early, quietly, when the receiving side is gone (the applier
/// failed and says why).
pub(crate) fn decompress(
    mut reader: impl Read,
    pool: &BufferPool,
    pieces: &mpsc::Sender<PieceResult>,
) {
    loop {
        let mut buffer = pool.take();
        // `read_to_end` keeps what it read before a failure, and retries interrupted reads.
        let result = (&mut reader).take(PIECE as u64).read_to_end(&mut buffer);
        let filled = buffer.len();
        if filled > 0 && pieces.blocking_send(Ok(pool.hand_out(buffer))).is_err() {
            return;
        }
        match result {
            Err(e) => {
                let _ = pieces.blocking_send(Err(e));
                return;
            }
            Ok(_) if filled < PIECE => return,
            Ok(_) => {}
        }
    }
}

/// The pieces of one layer as a `Read`; each piece's buffer goes back to its pool once read.
pub(crate) struct PieceReader {
    pieces: mpsc::Receiver<PieceResult>,
    current: Bytes,
    /// Told the size of each piece taken.
    pub(crate) on_piece: Option<Box<dyn Fn(u64) + Send>>,
}

impl PieceReader {
    pub(crate) fn new(pieces: mpsc::Receiver<PieceResult>) -> Self {
        Self {
            pieces,
            current: Bytes::new(),
            on_piece: None,
        }
    }
}

impl Read for PieceReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.pieces.blocking_recv() {
                Some(piece) => {
                    // The piece read to its end is dropped here, and its buffer goes back.
                    self.current = piece?;
                    if let Some(on_piece) = &self.on_piece {
                        on_piece(self.current.len() as u64);
                    }
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `size` bytes of a pattern that no two pieces share in place.
    fn pattern(size: usize) -> Vec<u8> {
        (0..size).map(|i| (i % 251) as u8).collect()
    }

    /// Reads `layer` as an unpack does, through a thread of its own into a [`PieceReader`],
    /// with `pool`; gives the bytes read and the addresses of the pieces' buffers.
    fn pass_through(layer: &[u8], pool: &BufferPool) -> io::Result<(Vec<u8>, Vec<usize>)> {
        let (sender, mut receiver) = mpsc::channel(PIECES_QUEUED);
        let (bytes, thread_pool) = (layer.to_vec(), pool.clone());
        let thread = std::thread::spawn(move || {
            decompress(io::Cursor::new(bytes), &thread_pool, &sender);
        });
        // The pieces as they come, their addresses noted before the reader takes them.
        let (forward, pieces) = mpsc::channel(1);
        let mut addresses = Vec::new();
        let relay = std::thread::spawn(move || {
            while let Some(piece) = receiver.blocking_recv() {
                let address = piece.as_ref().map_or(0, |p: &Bytes| p.as_ptr() as usize);
                if forward.blocking_send(piece).is_err() {
                    break;
                }
                addresses.push(address);
            }
            addresses
        });
        let mut out = Vec::new();
        let read = PieceReader::new(pieces).read_to_end(&mut out);
        thread.join().unwrap();
        let addresses = relay.join().unwrap();
        read.map(|_| (out, addresses))
    }

    #[test]
    fn pieces_give_back_the_bytes_in_order() {
        let pool = piece_pool();
        for layer in [
            pattern(3 * PIECE + 17),
            Vec::new(),
            pattern(PIECE),
            pattern(5),
        ] {
            let (read, _) = pass_through(&layer, &pool).unwrap();
            assert_eq!(read, layer);
        }
    }

    #[test]
    fn buffers_are_reused_whatever_the_size() {
        let pool = piece_pool();
        let mut buffers = std::collections::BTreeSet::new();
        for _ in 0..3 {
            let layer = pattern(24 * PIECE + 1);
            let (read, addresses) = pass_through(&layer, &pool).unwrap();
            assert_eq!(read, layer);
            assert_eq!(addresses.len(), 25);
            buffers.extend(addresses);
        }
        // 75 pieces in as many buffers as can be in flight at once: the queue, the piece being
        // read into, the one the relay holds and the one being read (a new buffer per piece
        // would be 75).
        assert!(
            buffers.len() <= PIECES_QUEUED + 4,
            "{} buffers",
            buffers.len()
        );
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
        let pool = piece_pool();
        let (sender, receiver) = mpsc::channel(PIECES_QUEUED);
        let thread_pool = pool.clone();
        let thread = std::thread::spawn(move || {
            decompress(Failing(PIECE + 3), &thread_pool, &sender);
        });
        let mut out = Vec::new();
        let error = PieceReader::new(receiver)
            .read_to_end(&mut out)
            .unwrap_err();
        assert_eq!(error.to_string(), "the blob broke");
        assert_eq!(out.len(), PIECE + 3);
        thread.join().unwrap();
    }
}
