//! [`BufferPool`]: buffers reused across the pieces of a stream.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

/// Buffers handed out as [`Bytes`] and taken back when the last handle to one is dropped:
/// reused memory is neither allocated nor faulted in again. On VMs whose fresh memory pages
/// are slow to touch, a stream of new buffers (one blob read, one archive sent to a daemon)
/// costs system time that reused ones do not.
#[derive(Clone)]
pub struct BufferPool {
    idle: Arc<Mutex<Vec<Vec<u8>>>>,
    /// The capacity of each buffer.
    size: usize,
    /// How many idle buffers it keeps at most (no more than can be in flight at once).
    keep: usize,
}

impl BufferPool {
    /// A pool of buffers of `size` bytes' capacity, keeping at most `keep` idle ones (no
    /// more than can be in flight at once).
    pub fn new(size: usize, keep: usize) -> Self {
        Self {
            idle: Arc::default(),
            size,
            keep,
        }
    }

    /// An empty buffer of `size` bytes' capacity.
    pub fn take(&self) -> Vec<u8> {
        let reused = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut buffer = reused.unwrap_or_else(|| Vec::with_capacity(self.size));
        buffer.clear();
        buffer
    }

    /// `buffer` as `Bytes` that come back to this pool once dropped.
    pub fn hand_out(&self, buffer: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled {
            buffer,
            pool: self.clone(),
        })
    }
}

/// A buffer out of a [`BufferPool`].
struct Pooled {
    buffer: Vec<u8>,
    pool: BufferPool,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let mut idle = self
            .pool
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.pool.keep {
            idle.push(std::mem::take(&mut self.buffer));
        }
    }
}

impl fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferPool")
            .field("size", &self.size)
            .field("keep", &self.keep)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_piece_gives_its_buffer_back() {
        let pool = BufferPool::new(16, 2);
        let mut buffer = pool.take();
        buffer.extend_from_slice(b"content");
        let address = buffer.as_ptr();
        let piece = pool.hand_out(buffer);
        assert_eq!(&piece[..], b"content");
        drop(piece);
        let again = pool.take();
        assert!(again.is_empty());
        assert_eq!(again.as_ptr(), address, "the same memory, reused");
    }
}
