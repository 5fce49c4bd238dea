//! Compression of layer bytes, deterministic: the same input and the same options give the same
//! compressed bytes whatever the number of threads and however the input was split into writes,
//! so that digests of built layers can be pinned (reproducible builds, as with apko and ko).
//!
//! gzip is pigz-style: fixed-size blocks of input, each deflated on its own (so they can be
//! deflated in parallel) with the end of the previous block as a preset dictionary, joined by
//! sync flushes into one deflate stream. The block boundaries depend only on the input length,
//! never on the writes or the threads.

use std::fmt;
use std::io::{self, Write};
use std::num::NonZeroUsize;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::{self, JoinHandle};

use flate2::{Compress, FlushCompress, Status};
use oci_types::{MediaType, media_type};

/// The default gzip level: 1, zlib's "best speed", as crane and ko use (see [`GzipOptions`]).
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
/// Bound on the block buffers in flight between the writer and the gzip workers.
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
    /// Threads deflating blocks; 0 or 1 deflates on the writing thread.
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
    /// e.g. `gzip;level=1;block-size=131072;dictionary=32768;zlib-rs` or
    /// `zstd;level=3;checksum;multithreaded;libzstd=1.5.7`.
    pub fn describe(&self) -> Option<String> {
        match self {
            Self::None => None,
            // flate2's backend is chosen at build time (zlib-rs by the workspace); it has no
            // version to ask at run time, so a change of its output is caught by the pinned
            // digest of the tests instead.
            Self::Gzip(o) => Some(format!(
                "gzip;level={};block-size={};dictionary={DICTIONARY};zlib-rs",
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
        match &self.0 {
            Inner::Plain(_) => f.write_str("Encoder(None)"),
            Inner::Zstd(_) => f.write_str("Encoder(Zstd)"),
            Inner::Gzip(g) => f
                .debug_struct("Encoder(Gzip)")
                .field("level", &g.level)
                .field("block_size", &g.block_size)
                .field("threads", &g.threads)
                .field("bytes_in", &g.len)
                .finish_non_exhaustive(),
        }
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
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "gzip level {} / block size {}: the level must be 0 to 9, the block size at least 1",
                    o.level, o.block_size
                ),
            ));
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
        if let Some(pool) = &mut self.pool {
            pool.drain(&mut self.sink)?;
        }
        let mut trailer = [0; 8];
        trailer[..4].copy_from_slice(&self.crc.clone().finalize().to_le_bytes());
        // ISIZE is the length modulo 2^32: the truncation is the format.
        trailer[4..].copy_from_slice(&(self.len as u32).to_le_bytes());
        self.sink.write_all(&trailer)?;
        let Self { sink, pool, .. } = *self;
        drop(pool);
        Ok(sink)
    }
}

/// Deflates one block on its own: a new compressor, the preset dictionary, then the whole
/// block in one call with a buffer of a size that depends only on the block's length.
///
/// Everything here is for the bytes to depend on the block and nothing else. A compressor is
/// not reused: zlib-rs's `reset` clears the hash heads but not the chains (as zlib-ng), so a
/// reused one can follow a stale link and find other matches (a test caught it); a new one
/// starts zeroed. zlib's stored blocks (level 0) are cut to the room left in the output, and a
/// flush that runs out of room and is finished by a second call can add an empty stored block,
/// so the room must not depend on history either. If it was not enough, the block is deflated
/// again with twice the room, which is just as deterministic.
fn deflate_block(
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
    // Stored blocks cost 5 bytes per 64 KiB at worst; 64 more for the flush and final blocks.
    let mut room = input.len() + input.len() / 16 + 64;
    loop {
        let mut compress = Compress::new(flate2::Compression::new(level), false);
        // zlib-rs (like zlib) accepts a dictionary on a raw deflate stream, as pigz uses it.
        if !dict.is_empty() {
            compress.set_dictionary(dict).map_err(io::Error::other)?;
        }
        out.clear();
        out.resize(room, 0);
        let (in0, out0) = (compress.total_in(), compress.total_out());
        let status = compress.compress(input, out, flush)?;
        let produced = usize::try_from(compress.total_out() - out0).map_err(io::Error::other)?;
        let consumed = compress.total_in() - in0 == input.len() as u64;
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
        // waits for the oldest; and never more than MAX_IN_FLIGHT_BYTES of buffers.
        let per_worker = 2 * block_size.saturating_add(DICTIONARY);
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
        if done
            .send(Done {
                data: job.data,
                out,
            })
            .is_err()
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::process::{Command, Stdio};
    use std::sync::mpsc::RecvTimeoutError;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use sha2::{Digest, Sha256};

    use super::*;

    /// A sink the test can read back after `finish` took it.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A sink that fails once it has taken `left` bytes.
    struct FailAfter {
        left: usize,
    }

    impl Write for FailAfter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.left == 0 {
                return Err(io::Error::other("disk full"));
            }
            let n = buf.len().min(self.left);
            self.left -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn compress(c: &Compression, data: &[u8], piece: usize) -> Vec<u8> {
        let sink = Shared::default();
        let mut encoder = c.encoder(Box::new(sink.clone())).unwrap();
        for chunk in data.chunks(piece.max(1)) {
            encoder.write_all(chunk).unwrap();
        }
        encoder.finish().unwrap();
        sink.0.lock().unwrap().clone()
    }

    fn gzip(block_size: usize, threads: usize) -> Compression {
        Compression::Gzip(
            GzipOptions::default()
                .with_block_size(block_size)
                .with_threads(threads),
        )
    }

    /// Deterministic pseudo-random bytes (xorshift64*).
    fn random(len: usize, mut seed: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                seed ^= seed >> 12;
                seed ^= seed << 25;
                seed ^= seed >> 27;
                (seed.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
            })
            .collect()
    }

    /// Text-like bytes that compress well but not trivially.
    fn text(len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 64);
        let mut i = 0u64;
        while out.len() < len {
            out.extend_from_slice(
                format!(
                    "usr/lib/file-{i}.so mode=0644 size={}\n",
                    i * 7919 % 100_003
                )
                .as_bytes(),
            );
            i += 1;
        }
        out.truncate(len);
        out
    }

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(data)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    /// Decompresses with the `gzip` program, or says it is absent.
    fn gunzip_binary(data: &[u8]) -> Option<Vec<u8>> {
        let Ok(mut child) = Command::new("gzip")
            .arg("-dc")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
        else {
            println!("gzip not on PATH: skipping the check with the gzip binary");
            return None;
        };
        let mut stdin = child.stdin.take().unwrap();
        let data = data.to_vec();
        let feeder = thread::spawn(move || stdin.write_all(&data));
        let output = child.wait_with_output().unwrap();
        feeder.join().unwrap().unwrap();
        assert!(output.status.success(), "gzip -dc failed");
        Some(output.stdout)
    }

    #[test]
    fn gzip_round_trips() {
        for block_size in [1000, DEFAULT_GZIP_BLOCK_SIZE] {
            let bs = block_size;
            for len in [0, 1, bs, bs + 1, 5 * bs + 123] {
                for data in [text(len), random(len, len as u64 + 1)] {
                    for threads in [1, 3] {
                        let gz = compress(&gzip(bs, threads), &data, 7919);
                        assert_eq!(
                            gunzip(&gz),
                            data,
                            "block {bs}, len {len}, threads {threads}"
                        );
                        if let Some(plain) = gunzip_binary(&gz) {
                            assert_eq!(plain, data, "gzip -dc: block {bs}, len {len}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn gzip_bytes_do_not_depend_on_threads_or_writes() {
        let data = [text(700_000), random(300_000, 7)].concat();
        let reference = compress(&gzip(DEFAULT_GZIP_BLOCK_SIZE, 1), &data, data.len());
        for threads in [1, 2, 3, 8] {
            for piece in [data.len(), 7919, 65536, 131_073] {
                let gz = compress(&gzip(DEFAULT_GZIP_BLOCK_SIZE, threads), &data, piece);
                assert!(gz == reference, "threads {threads}, pieces of {piece}");
            }
        }
        // One byte at a time, across block boundaries and their dictionaries.
        let small = text(5000);
        let reference = compress(&gzip(1000, 1), &small, small.len());
        for threads in [1, 2, 8] {
            assert!(
                compress(&gzip(1000, threads), &small, 1) == reference,
                "threads {threads}"
            );
        }
        // Every level, stored blocks (0) included.
        for level in 0..=9 {
            let options = GzipOptions::default()
                .with_level(level)
                .with_block_size(50_000);
            let one = compress(
                &Compression::Gzip(options.clone().with_threads(1)),
                &data,
                7919,
            );
            let many = compress(
                &Compression::Gzip(options.with_threads(3)),
                &data,
                data.len(),
            );
            assert!(one == many, "level {level}");
            assert_eq!(gunzip(&one), data, "level {level}");
        }
    }

    #[test]
    fn gzip_header_and_trailer() {
        let data = text(300_000);
        let gz = compress(&Compression::gzip(), &data, 4096);
        assert_eq!(gz[..10], [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
        let trailer = &gz[gz.len() - 8..];
        assert_eq!(trailer[..4], crc32fast::hash(&data).to_le_bytes());
        assert_eq!(trailer[4..], (data.len() as u32).to_le_bytes());
        // Empty input: header, an empty final block, CRC 0, ISIZE 0.
        let empty = compress(&Compression::gzip(), &[], 1);
        assert_eq!(empty[10..], [3, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn gzip_default_output_is_pinned() {
        // Changes when the bytes of a default gzip layer change (the options' defaults, the
        // block scheme, or flate2's backend): layer digests pinned elsewhere would move too.
        let gz = compress(&Compression::gzip(), &text(300_000), 10_000);
        let digest: String = Sha256::digest(&gz)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(digest, "PIN");
    }

    #[test]
    fn zstd_round_trips_and_ignores_workers() {
        // Larger than one zstd job at level 3 (8 MiB), so workers have something to share.
        let data = [text(9 << 20), random(1 << 20, 3)].concat();
        let one = compress(
            &Compression::Zstd(ZstdOptions::default().with_workers(1)),
            &data,
            7919,
        );
        let two = compress(
            &Compression::Zstd(ZstdOptions::default().with_workers(2)),
            &data,
            1 << 20,
        );
        assert!(one == two);
        let mut plain = Vec::new();
        zstd::stream::read::Decoder::new(&one[..])
            .unwrap()
            .read_to_end(&mut plain)
            .unwrap();
        assert!(plain == data);
    }

    #[test]
    fn none_passes_through() {
        let data = random(10_000, 5);
        assert_eq!(compress(&Compression::None, &data, 333), data);
        assert_eq!(Compression::None.describe(), None);
    }

    #[test]
    fn media_types_and_descriptions() {
        assert_eq!(
            Compression::default().layer_media_type(false).as_str(),
            media_type::OCI_LAYER_GZIP
        );
        assert_eq!(
            Compression::zstd().layer_media_type(true).as_str(),
            media_type::DOCKER_LAYER_ZSTD
        );
        assert_eq!(Compression::None.kind(), media_type::Compression::None);
        let base = GzipOptions::default();
        let describe = |o: GzipOptions| Compression::Gzip(o).describe().unwrap();
        assert_eq!(
            describe(base.clone().with_threads(1)),
            describe(base.clone().with_threads(8))
        );
        assert_ne!(describe(base.clone().with_level(9)), describe(base.clone()));
        assert_ne!(
            describe(base.clone().with_block_size(4096)),
            describe(base.clone())
        );
        let zstd = |o: ZstdOptions| Compression::Zstd(o).describe().unwrap();
        let z = ZstdOptions::default();
        assert_eq!(
            zstd(z.clone().with_workers(1)),
            zstd(z.clone().with_workers(4))
        );
        assert_ne!(zstd(z.clone().with_level(19)), zstd(z.clone()));
        assert!(zstd(z).contains(zstd::zstd_safe::version_string()));
    }

    #[test]
    fn bad_options_are_refused() {
        for o in [base_gzip().with_level(10), base_gzip().with_block_size(0)] {
            let err = Compression::Gzip(o)
                .encoder(Box::new(io::sink()))
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        }
    }

    fn base_gzip() -> GzipOptions {
        GzipOptions::default()
    }

    /// Runs `f` on a thread and fails the test if it does not end within a minute.
    fn without_hang(f: impl FnOnce() + Send + 'static) {
        let (tx, rx) = mpsc::channel();
        let handle = thread::spawn(move || {
            f();
            let _ = tx.send(());
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => handle.join().unwrap(),
            Err(RecvTimeoutError::Timeout) => panic!("hung"),
        }
    }

    #[test]
    fn sink_errors_come_back_without_hanging() {
        let data = random(3 << 20, 11);
        for threads in [1, 2, 4] {
            for fail_after in [0, 20, 500_000] {
                let data = data.clone();
                without_hang(move || {
                    let sink = Box::new(FailAfter { left: fail_after });
                    let Ok(mut encoder) = gzip(DEFAULT_GZIP_BLOCK_SIZE, threads).encoder(sink)
                    else {
                        assert_eq!(fail_after, 0, "only the header can fail here");
                        return;
                    };
                    let written = data.chunks(100_000).try_for_each(|c| encoder.write_all(c));
                    if written.is_ok() {
                        assert!(
                            encoder.finish().is_err(),
                            "threads {threads}, fail after {fail_after}"
                        );
                    } else {
                        // Broken for good: more writes fail too, and so does finish.
                        assert!(encoder.write_all(b"more").is_err());
                        assert!(encoder.finish().is_err());
                    }
                });
            }
            // Dropping an unfinished encoder ends its threads.
            let data = data.clone();
            without_hang(move || {
                let mut encoder = gzip(1000, threads).encoder(Box::new(io::sink())).unwrap();
                encoder.write_all(&data[..100_000]).unwrap();
                drop(encoder);
            });
        }
    }
}
