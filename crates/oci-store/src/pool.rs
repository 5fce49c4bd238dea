//! [`BufferPool`]: buffers reused across the pieces of a stream.

use std::fmt;
use std::io::{self, Read};
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
        self.take_sized(0)
    }

    /// The next piece of `reader`: `size` bytes, fewer only at its end, in a buffer of this
    /// pool; `None` at the end.
    ///
    /// Each read asks for everything the piece still lacks. Not `take(size).read_to_end`:
    /// the standard library's `read_to_end` starts with 8 KiB reads and doubles them, so a
    /// piece of 1 MiB took eight system calls, and one of 128 KiB five.
    pub fn read_piece(&self, reader: &mut impl Read) -> io::Result<Option<Bytes>> {
        let mut buffer = self.take_sized(self.size);
        let mut filled = 0;
        while filled < buffer.len() {
            match reader.read(&mut buffer[filled..]) {
                Ok(0) => break,
                Ok(read) => filled += read,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buffer.truncate(filled);
        if filled == 0 {
            self.keep_idle(buffer);
            return Ok(None);
        }
        Ok(Some(self.hand_out(buffer)))
    }

    /// A buffer of `len` bytes of any content, to be read into: a reused buffer is not
    /// written again up to the length it came back with, only what it lacks is zeroed. Unlike
    /// `take` and a `resize`, which zero the whole piece every time.
    pub fn take_sized(&self, len: usize) -> Vec<u8> {
        let reused = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut buffer = reused.unwrap_or_else(|| Vec::with_capacity(self.size));
        buffer.resize(len, 0);
        buffer
    }

    /// Keeps `buffer` for reuse, unless enough are kept already.
    fn keep_idle(&self, buffer: Vec<u8>) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.keep {
            idle.push(buffer);
        }
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
        self.pool.keep_idle(std::mem::take(&mut self.buffer));
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

    /// A reader that gives at most `step` bytes per read and counts its reads.
    struct Trickle<'a> {
        rest: &'a [u8],
        step: usize,
        reads: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.reads += 1;
            let n = buf.len().min(self.step).min(self.rest.len());
            buf[..n].copy_from_slice(&self.rest[..n]);
            self.rest = &self.rest[n..];
            Ok(n)
        }
    }

    #[test]
    fn pieces_are_whole_until_the_end_and_reuse_their_memory() {
        let content: Vec<u8> = (0..250u8).cycle().take(2500).collect();
        let pool = BufferPool::new(1000, 2);
        let mut reader = Trickle {
            rest: &content,
            step: 1000,
            reads: 0,
        };
        let first = pool.read_piece(&mut reader).unwrap().unwrap();
        assert_eq!(
            reader.reads, 1,
            "one read for a piece the reader can give at once"
        );
        assert_eq!(&first[..], &content[..1000]);
        let address = first.as_ptr();
        drop(first);
        let second = pool.read_piece(&mut reader).unwrap().unwrap();
        assert_eq!(second.as_ptr(), address, "the same memory, reused");
        let third = pool.read_piece(&mut reader).unwrap().unwrap();
        assert_eq!(&second[..], &content[1000..2000]);
        assert_eq!(&third[..], &content[2000..], "a short piece at the end");
        assert!(pool.read_piece(&mut reader).unwrap().is_none());
    }

    #[test]
    fn a_piece_gathers_short_reads() {
        let content = vec![7u8; 300];
        let pool = BufferPool::new(256, 2);
        // A buffer that comes back short is grown again by the next piece.
        let mut short = Trickle {
            rest: &content[..10],
            step: 64,
            reads: 0,
        };
        drop(pool.read_piece(&mut short).unwrap());
        let mut reader = Trickle {
            rest: &content,
            step: 64,
            reads: 0,
        };
        let piece = pool.read_piece(&mut reader).unwrap().unwrap();
        assert_eq!(&piece[..], &content[..256]);
        assert_eq!(reader.reads, 4);
    }

    #[test]
    fn a_read_error_is_returned() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
        }
        let pool = BufferPool::new(64, 1);
        let error = pool.read_piece(&mut Failing).unwrap_err();
        assert_eq!(error.to_string(), "disk on fire");
    }
}
