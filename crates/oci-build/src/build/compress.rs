//! Compression of layer bytes, deterministic: the same input and the same options give the same
//! compressed bytes whatever the number of threads and however the input was split into writes,
//! so that digests of built layers can be pinned (reproducible builds, as with apko and ko).
//!
//! gzip is pigz-style: fixed-size blocks of input, each deflated on its own (so they can be
//! deflated in parallel) with the end of the previous block as a preset dictionary, joined by
//! sync flushes into one deflate stream; a block that deflating would make larger is stored.
//! The block boundaries depend only on the input length, never on the writes or the threads.

use std::fmt;
use std::io::{self, Write};
use std::num::NonZeroUsize;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::{self, JoinHandle};

use flate2::{Compress, FlushCompress, Status};
use oci_types::{MediaType, media_type};

/// The default gzip level: 1, "best speed", as crane and ko (docker and pigz use 6).
///
/// Measured on one core with a 500 MiB tar of /usr: level 1 deflates 176 MB/s to 47.5% of the
/// size, level 2 100 MB/s to 40.2%, level 6 55 MB/s to 37.6% (gzip -6: 24 MB/s, 37.3%).
/// `umoci insert` (pgzip) used 9 CPU-seconds for that tree in all: only level 1 (3 CPU-seconds)
/// leaves room to build layers twice as fast on two cores. Level 2 is the choice for smaller
/// layers at half the speed.
pub const DEFAULT_GZIP_LEVEL: u32 = 1;
/// The default gzip block size: 128 KiB, as pigz.
pub const DEFAULT_GZIP_BLOCK_SIZE: usize = 128 * 1024;
/// The default zstd level, zstd's own default.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;
/// Annotation key recording on a layer descriptor what made its compressed bytes
/// (the value is [`Compression::describe`]).
pub const COMPRESSION_ANNOTATION: &str = "dev.hoist.layer.compression";

/// gzip header: deflate, no flags, mtime 0, XFL 0, OS 255 (unknown), nothing that varies.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff];
/// How much of the previous block's input primes the next block (deflate's whole window).
const DICTIONARY: usize = 32 * 1024;
/// Bound on the memory of the gzip workers (buffers and compressors), whatever the threads.
const MAX_IN_FLIGHT_BYTES: usize = 32 << 20;

fn parallelism() -> usize {
    thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

/// How a layer's bytes are compressed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compression {
    /// A plain tar, written through unchanged.
    None,
    /// gzip, pigz-style (parallel, deterministic).
    Gzip(GzipOptions),
    /// zstd, in its multithreaded mode (deterministic for any number of workers).
    Zstd(ZstdOptions),
}

/// Options of gzip compression.
///
/// Only `level` and `block_size` change the output; `threads` changes only the speed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GzipOptions {
    /// The deflate level, 0 (stored) to 9 (best).
    pub level: u32,
    /// The input bytes per independently deflated block (at least 1).
    pub block_size: usize,
    /// Threads deflating blocks; 0 or 1 deflates on the writing thread. Fewer are started when
    /// their buffers would take more than 32 MiB (about 30 with the default block size).
    pub threads: usize,
}

impl Default for GzipOptions {
    fn default() -> Self {
        Self {
            level: DEFAULT_GZIP_LEVEL,
            block_size: DEFAULT_GZIP_BLOCK_SIZE,
            threads: parallelism(),
        }
    }
}

impl GzipOptions {
    /// Sets the deflate level (0 to 9).
    #[must_use]
    pub fn with_level(mut self, level: u32) -> Self {
        self.level = level;
        self
    }

    /// Sets the block size in input bytes.
    #[must_use]
    pub fn with_block_size(mut self, block_size: usize) -> Self {
        self.block_size = block_size;
        self
    }

    /// Sets the number of threads deflating blocks.
    #[must_use]
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }
}

/// Options of zstd compression.
///
/// Only `level` changes the output; `workers` changes only the speed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ZstdOptions {
    /// The zstd level.
    pub level: i32,
    /// zstd worker threads (0 counts as 1).
    pub workers: u32,
}

impl Default for ZstdOptions {
    fn default() -> Self {
        Self {
            level: DEFAULT_ZSTD_LEVEL,
            workers: u32::try_from(parallelism()).unwrap_or(u32::MAX),
        }
    }
}

impl ZstdOptions {
    /// Sets the zstd level.
    #[must_use]
    pub fn with_level(mut self, level: i32) -> Self {
        self.level = level;
        self
    }

    /// Sets the number of zstd worker threads.
    #[must_use]
    pub fn with_workers(mut self, workers: u32) -> Self {
        self.workers = workers;
        self
    }
}

impl Default for Compression {
    fn default() -> Self {
        Self::gzip()
    }
}

impl Compression {
    /// gzip with the default options.
    pub fn gzip() -> Self {
        Self::Gzip(GzipOptions::default())
    }

    /// zstd with the default options.
    pub fn zstd() -> Self {
        Self::Zstd(ZstdOptions::default())
    }

    /// The kind, as oci-types names it.
    pub fn kind(&self) -> media_type::Compression {
        match self {
            Self::None => media_type::Compression::None,
            Self::Gzip(_) => media_type::Compression::Gzip,
            Self::Zstd(_) => media_type::Compression::Zstd,
        }
    }

    /// The layer media type, OCI's or (with `docker`) Docker's.
    pub fn layer_media_type(&self, docker: bool) -> MediaType {
        MediaType::from_static(match (self, docker) {
            (Self::None, false) => media_type::OCI_LAYER_TAR,
            (Self::Gzip(_), false) => media_type::OCI_LAYER_GZIP,
            (Self::Zstd(_), false) => media_type::OCI_LAYER_ZSTD,
            (Self::None, true) => media_type::DOCKER_LAYER_TAR,
            (Self::Gzip(_), true) => media_type::DOCKER_LAYER_GZIP,
            (Self::Zstd(_), true) => media_type::DOCKER_LAYER_ZSTD,
        })
    }

    /// What makes the bytes, for [`COMPRESSION_ANNOTATION`]; `None` for no compression.
    ///
    /// It names everything that changes the output and nothing that does not (not the threads),
    /// e.g. `gzip;level=1;block-size=131072;dictionary=32768;stored-if-larger;zlib-rs` or
    /// `zstd;level=3;checksum;multithreaded;libzstd=1.5.7`.
    pub fn describe(&self) -> Option<String> {
        match self {
            Self::None => None,
            // flate2's backend is chosen at build time (zlib-rs by the workspace); it has no
            // version to ask at run time, so a change of its output is caught by the pinned
            // digest of the tests instead.
            Self::Gzip(o) => Some(format!(
                "gzip;level={};block-size={};dictionary={DICTIONARY};stored-if-larger;zlib-rs",
                o.level, o.block_size
            )),
            Self::Zstd(o) => Some(format!(
                "zstd;level={};checksum;multithreaded;libzstd={}",
                o.level,
                zstd::zstd_safe::version_string()
            )),
        }
    }

    /// An encoder writing the compressed stream into `sink`.
    ///
    /// Fails on options out of range (a gzip level above 9, a block size of 0, a zstd level
    /// zstd refuses) and when the sink refuses the gzip header.
    pub fn encoder(&self, sink: Box<dyn Write + Send>) -> io::Result<Encoder> {
        Ok(Encoder(match self {
            Self::None => Inner::Plain(sink),
            Self::Gzip(o) => Inner::Gzip(Box::new(Gzip::new(o, sink)?)),
            Self::Zstd(o) => {
                let mut z = zstd::stream::write::Encoder::new(sink, o.level)?;
                // zstd's multithreaded mode cuts the input into jobs by size (set by the level),
                // not by worker count, so its output is the same for any number of workers >= 1;
                // 0 would be the single-threaded mode, whose output differs. Hence at least one.
                z.multithread(o.workers.max(1))?;
                // The checksum (4 bytes per frame) lets a decompressor catch corruption on its
                // own, as the zstd CLI and klauspost/compress (docker, containerd) do by default.
                z.include_checksum(true)?;
                // Streaming: the size is unknown up front, and the frame says nothing about it.
                z.include_contentsize(false)?;
                Inner::Zstd(z)
            }
        }))
    }
}

/// Writes the compressed form of what it is given into a sink; see [`Compression::encoder`].
///
/// `flush` pushes out what is already compressed and flushes the sink, without changing the
/// output (it never forces a block boundary). [`finish`](Self::finish) must be called to end the
/// stream; a dropped encoder stops its threads and leaves the stream incomplete.
pub struct Encoder(Inner);

enum Inner {
    Plain(Box<dyn Write + Send>),
    Gzip(Box<Gzip>),
    Zstd(zstd::stream::write::Encoder<'static, Box<dyn Write + Send>>),
}

impl fmt::Debug for Encoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, bytes_in) = match &self.0 {
            Inner::Plain(_) => ("none", None),
            Inner::Gzip(g) => ("gzip", Some(g.len)),
            Inner::Zstd(_) => ("zstd", None),
        };
        f.debug_struct("Encoder")
            .field("kind", &kind)
            .field("bytes_in", &bytes_in)
            .finish_non_exhaustive()
    }
}

impl Encoder {
    /// Ends the stream (last block and trailer, or zstd frame end), flushes the sink, and gives
    /// it back.
    pub fn finish(self) -> io::Result<Box<dyn Write + Send>> {
        let mut sink = match self.0 {
            Inner::Plain(sink) => sink,
            Inner::Gzip(g) => g.finish()?,
            Inner::Zstd(z) => z.finish()?,
        };
        sink.flush()?;
        Ok(sink)
    }
}

impl Write for Encoder {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.0 {
            Inner::Plain(sink) => sink.write(buf),
            Inner::Gzip(g) => g.write(buf),
            Inner::Zstd(z) => z.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.0 {
            Inner::Plain(sink) => sink.flush(),
            Inner::Gzip(g) => g.flush(),
            // zstd's own flush ends a block, which would make the output depend on when flush
            // is called: only the sink is flushed.
            Inner::Zstd(z) => z.get_mut().flush(),
        }
    }
}

/// The gzip encoder: the block being filled, the running CRC, and (with threads) a pool.
struct Gzip {
    sink: Box<dyn Write + Send>,
    level: u32,
    block_size: usize,
    threads: usize,
    /// The dictionary (`dict_len` bytes, the end of the previous block) then the block's input.
    buf: Vec<u8>,
    dict_len: usize,
    crc: crc32fast::Hasher,
    len: u64,
    /// Output of blocks deflated on this thread (threads <= 1, or a single block).
    out: Vec<u8>,
    /// Started at the first full block, so small layers never start threads.
    pool: Option<Pool>,
    /// After an error the stream is broken: everything fails from then on.
    failed: bool,
}

impl Gzip {
    fn new(o: &GzipOptions, mut sink: Box<dyn Write + Send>) -> io::Result<Self> {
        if o.level > 9 || o.block_size == 0 {
            let message = format!(
                "gzip level {} (0 to 9), block size {}",
                o.level, o.block_size
            );
            return Err(io::Error::new(io::ErrorKind::InvalidInput, message));
        }
        sink.write_all(&GZIP_HEADER)?;
        Ok(Self {
            sink,
            level: o.level,
            block_size: o.block_size,
            threads: o.threads,
            buf: Vec::new(),
            dict_len: 0,
            crc: crc32fast::Hasher::new(),
            len: 0,
            out: Vec::new(),
            pool: None,
            failed: false,
        })
    }

    fn check(&self) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other("gzip encoder failed earlier"));
        }
        Ok(())
    }

    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.check()?;
        let mut rest = data;
        while !rest.is_empty() {
            let room = self.block_size - (self.buf.len() - self.dict_len);
            let (now, later) = rest.split_at(room.min(rest.len()));
            self.buf.extend_from_slice(now);
            self.crc.update(now);
            self.len += now.len() as u64;
            rest = later;
            // A full block goes at once, ended by a sync flush; the last block (possibly empty)
            // is only known at `finish`.
            if now.len() == room {
                let emitted = self.emit(false);
                self.failed = emitted.is_err();
                emitted?;
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.check()?;
        let flushed = match &mut self.pool {
            Some(pool) => pool.drain(&mut self.sink),
            None => Ok(()),
        }
        .and_then(|()| self.sink.flush());
        self.failed = flushed.is_err();
        flushed
    }

    /// Deflates the block in `buf`, on a worker or here, and starts the next block's buffer
    /// with the last `DICTIONARY` bytes of this block's input.
    fn emit(&mut self, last: bool) -> io::Result<()> {
        let next_dict = (self.buf.len() - self.dict_len).min(DICTIONARY);
        let tail = self.buf.len() - next_dict;
        if self.threads > 1 && (self.pool.is_some() || !last) {
            let pool = match &mut self.pool {
                Some(pool) => pool,
                None => self
                    .pool
                    .insert(Pool::start(self.threads, self.level, self.block_size)?),
            };
            let mut next = pool.spare.pop().unwrap_or_default();
            next.clear();
            next.extend_from_slice(&self.buf[tail..]);
            let data = std::mem::replace(&mut self.buf, next);
            let job = Job {
                data,
                dict_len: self.dict_len,
                last,
            };
            pool.submit(job, &mut self.sink)?;
        } else {
            let (dict, input) = self.buf.split_at(self.dict_len);
            deflate_block(self.level, dict, input, last, &mut self.out)?;
            self.sink.write_all(&self.out)?;
            self.buf.copy_within(tail.., 0);
            self.buf.truncate(next_dict);
        }
        self.dict_len = next_dict;
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> io::Result<Box<dyn Write + Send>> {
        self.check()?;
        self.emit(true)?;
        let Self {
            mut sink,
            pool,
            crc,
            len,
            ..
        } = *self;
        if let Some(mut pool) = pool {
            pool.drain(&mut sink)?;
        }
        sink.write_all(&crc.finalize().to_le_bytes())?;
        // ISIZE is the length modulo 2^32: the truncation is the format.
        sink.write_all(&(len as u32).to_le_bytes())?;
        Ok(sink)
    }
}

/// Deflates one block, into `out`; stored (level 0) if deflating does not make it smaller.
///
/// zlib-rs's level 1 (zlib-ng's `deflate_quick`) codes with the fixed Huffman codes only and
/// never stores, so it makes incompressible input (compressed files, random bytes) 5.5% larger;
/// storing such blocks keeps them within 0.01%, as zlib does at any level.
fn deflate_block(
    level: u32,
    dict: &[u8],
    input: &[u8],
    last: bool,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    deflate_at(level, dict, input, last, out)?;
    if level > 0 && out.len() > input.len() {
        let mut stored = Vec::new();
        deflate_at(0, &[], input, last, &mut stored)?;
        if stored.len() < out.len() {
            *out = stored;
        }
    }
    Ok(())
}

/// Deflates one block on its own: a new compressor, the preset dictionary, then the whole
/// block in one call with a buffer of a size that depends only on the block's length.
///
/// Everything here is for the bytes to depend on the block and nothing else. A compressor is
/// not reused: zlib-rs's `reset` clears the hash heads but not the chains (as zlib-ng), so a
/// reused one can follow a stale link and find other matches (a test caught it); a new one
/// starts zeroed. zlib's stored blocks are cut to the room left in the output, and a flush that
/// runs out of room and is finished by a second call can add an empty stored block, so the
/// room must not depend on history either. If it was not enough, the block is deflated again
/// with twice the room, which is just as deterministic.
fn deflate_at(
    level: u32,
    dict: &[u8],
    input: &[u8],
    last: bool,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    // Level 1 codes at most 9 bits a byte (+12.5%); 64 more for the flush and final blocks.
    let mut room = input.len() + input.len() / 8 + 64;
    loop {
        let mut compress = Compress::new(flate2::Compression::new(level), false);
        // zlib-rs (like zlib) accepts a dictionary on a raw deflate stream, as pigz uses it.
        if !dict.is_empty() {
            compress.set_dictionary(dict).map_err(io::Error::other)?;
        }
        out.clear();
        out.resize(room, 0);
        let status = compress.compress(input, out, flush)?;
        let produced = usize::try_from(compress.total_out()).map_err(io::Error::other)?;
        let consumed = compress.total_in() == input.len() as u64;
        // A sync flush is complete only when the output has room left (zlib's manual says more
        // than 6 bytes, to be sure no flush marker is pending).
        let complete = if last {
            status == Status::StreamEnd
        } else {
            room - produced > 6
        };
        if consumed && complete {
            out.truncate(produced);
            return Ok(());
        }
        room *= 2;
    }
}

struct Job {
    /// The dictionary (`dict_len` bytes) then the block's input.
    data: Vec<u8>,
    dict_len: usize,
    last: bool,
}

struct Done {
    /// The job's buffer, back for reuse.
    data: Vec<u8>,
    out: io::Result<Vec<u8>>,
}

/// Threads deflating blocks, given the blocks in turn: block `n` goes to worker `n % workers`,
/// so reading the workers' results in turn gives the blocks in order, with no reordering.
/// (Blocks are the same size, so turns balance as well as a shared queue would.)
struct Pool {
    jobs: Vec<Sender<Job>>,
    done: Vec<Receiver<Done>>,
    threads: Vec<JoinHandle<()>>,
    submitted: u64,
    written: u64,
    /// Buffers of written blocks, for the next ones.
    spare: Vec<Vec<u8>>,
}

impl Pool {
    fn start(threads: usize, level: u32, block_size: usize) -> io::Result<Self> {
        // Two blocks per worker (one deflating, one waiting) keep it busy while the writer
        // waits for the oldest; each has its input (with dictionary) and its output, and the
        // worker has a compressor (about 370 KiB).
        let per_worker = block_size
            .saturating_mul(4)
            .saturating_add(2 * DICTIONARY + (512 << 10));
        let workers = threads.min(MAX_IN_FLIGHT_BYTES / per_worker).max(1);
        tracing::debug!(workers, level, block_size, "starting gzip workers");
        let mut pool = Self {
            jobs: Vec::with_capacity(workers),
            done: Vec::with_capacity(workers),
            threads: Vec::with_capacity(workers),
            submitted: 0,
            written: 0,
            spare: Vec::new(),
        };
        for i in 0..workers {
            let (job_tx, job_rx) = mpsc::channel();
            let (done_tx, done_rx) = mpsc::channel();
            let thread = thread::Builder::new()
                .name(format!("hoist-gzip-{i}"))
                .spawn(move || work(&job_rx, &done_tx, level))?;
            pool.jobs.push(job_tx);
            pool.done.push(done_rx);
            pool.threads.push(thread);
        }
        Ok(pool)
    }

    fn turn(&self, seq: u64) -> usize {
        (seq % self.jobs.len() as u64) as usize
    }

    fn submit(&mut self, job: Job, sink: &mut dyn Write) -> io::Result<()> {
        while self.submitted - self.written >= 2 * self.jobs.len() as u64 {
            self.collect(sink)?;
        }
        let worker = self.turn(self.submitted);
        self.jobs[worker].send(job).map_err(|_| stopped())?;
        self.submitted += 1;
        Ok(())
    }

    /// Waits for the oldest block and writes it.
    fn collect(&mut self, sink: &mut dyn Write) -> io::Result<()> {
        let worker = self.turn(self.written);
        let done = self.done[worker].recv().map_err(|_| stopped())?;
        self.spare.push(done.data);
        sink.write_all(&done.out?)?;
        self.written += 1;
        Ok(())
    }

    fn drain(&mut self, sink: &mut dyn Write) -> io::Result<()> {
        while self.written < self.submitted {
            self.collect(sink)?;
        }
        Ok(())
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Closing the job channels ends each worker after its current block at most.
        self.jobs.clear();
        for thread in self.threads.drain(..) {
            // A panic was already seen (or is moot) as the closed channel of its worker.
            let _ = thread.join();
        }
    }
}

fn stopped() -> io::Error {
    io::Error::other("a gzip compression worker stopped")
}

/// A worker: deflates jobs until its channel closes or the encoder is gone. If it panics, its
/// end of the `done` channel drops with it, and the writer gets an error, not a hang.
fn work(jobs: &Receiver<Job>, done: &Sender<Done>, level: u32) {
    for job in jobs {
        let (dict, input) = job.data.split_at(job.dict_len);
        let mut out = Vec::new();
        let out = deflate_block(level, dict, input, job.last, &mut out).map(|()| out);
        let sent = done.send(Done {
            data: job.data,
            out,
        });
        if sent.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests;
