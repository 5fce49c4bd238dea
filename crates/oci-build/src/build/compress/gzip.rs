//! The gzip encoder, pigz-style: fixed-size blocks of input, each deflated on its own (so they can be
//! deflated in parallel) with the end of the previous block as a preset dictionary, joined by
//! sync flushes into one deflate stream. The block boundaries depend only on the input length,
//! never on the writes or the threads.
//!
//! Incompressible input (compressed files, random bytes) is not given to the compressor at all:
//! each block is judged in 8 KiB segments by its byte histogram, and the runs of segments judged
//! incompressible are written as stored deflate blocks, the others deflated (and stored after
//! all if deflating made them larger). See `deflate_block` for the rule.

use std::io::{self, Write};
use std::ops::Range;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::{self, JoinHandle};

use flate2::{Compress, FlushCompress, Status};

use super::GzipOptions;

/// gzip header: deflate, no flags, mtime 0, XFL 0, OS 255 (unknown), nothing that varies.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff];
/// How much of the previous block's input primes the next block (deflate's whole window).
const DICTIONARY: usize = 32 * 1024;
/// Bound on the memory of the gzip workers (buffers and compressors), whatever the threads.
const MAX_IN_FLIGHT_BYTES: usize = 32 << 20;
/// Blocks are judged in segments of this many bytes from their start (the last one of a block
/// may be shorter): small enough that the text half of a block half text and half compressed
/// data is deflated, large enough that the histogram of random bytes is flat (the collision
/// ratio of 8 KiB of random bytes is 1 ± 0.003) and that runs are few.
pub(super) const SEGMENT: usize = 8 * 1024;
/// A segment shorter than this (only the end of a last block) is too short to judge: deflated.
const MIN_JUDGED: usize = 1024;
/// The largest stored deflate block (LEN has 16 bits).
pub(super) const MAX_STORED: usize = 0xffff;

/// [`Compression::describe`](super::Compression::describe) of gzip with `o`.
pub(super) fn describe(o: &GzipOptions) -> String {
    let skip = match max_collisions_milli(o.level) {
        Some(m) => format!("collisions<={}.{:03}/{SEGMENT}", m / 1000, m % 1000),
        None => "all".to_owned(),
    };
    format!(
        "gzip;level={};block-size={};dictionary={DICTIONARY};stored-if-larger;\
         skip-incompressible={skip};zlib-rs",
        o.level, o.block_size
    )
}

/// The gzip encoder: the block being filled, the running CRC, and (with threads) a pool.
pub(super) struct Gzip {
    sink: Box<dyn Write + Send>,
    level: u32,
    block_size: usize,
    threads: usize,
    /// The dictionary (`dict_len` bytes, the end of the previous block) then the block's input.
    buf: Vec<u8>,
    dict_len: usize,
    crc: crc32fast::Hasher,
    pub(super) len: u64,
    /// Output of blocks deflated on this thread (threads <= 1, or a single block).
    out: Vec<u8>,
    /// Started at the first full block, so small layers never start threads.
    pool: Option<Pool>,
    /// After an error the stream is broken: everything fails from then on.
    failed: bool,
}

impl Gzip {
    pub(super) fn new(o: &GzipOptions, mut sink: Box<dyn Write + Send>) -> io::Result<Self> {
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

    pub(super) fn write(&mut self, data: &[u8]) -> io::Result<usize> {
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

    pub(super) fn flush(&mut self) -> io::Result<()> {
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

    pub(super) fn finish(mut self: Box<Self>) -> io::Result<Box<dyn Write + Send>> {
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

/// The highest byte collision ratio (in thousandths) of a segment stored without deflating at
/// `level`; `None` at level 0, where everything is stored.
///
/// The collision ratio of a segment of n bytes, with c_b bytes of value b, is
/// 256 · Σ c_b (c_b − 1) / (n (n − 1)): the chance that two of its bytes taken at random are
/// equal, over that of uniform random bytes (an unbiased estimate, 1 for them, 256 for a run of
/// one byte; the Rényi entropy of order 2 is 8 − log2 of it, in bits a byte). Measured in
/// segments of 8 KiB, each deflated with the 32 KiB before it (on a tar of /usr/share, one of
/// the compressed files of /usr, the bench's mix of random and text): random bytes are at 1.00;
/// at level 1, which codes with the fixed Huffman codes only and so gains by matches alone,
/// segments up to 1.05 deflate by less than 0.2% (those of 1.05 to 1.1 by 1%); at levels 2 to 9
/// (dynamic Huffman codes) segments of 1.01 to 1.02 deflate by 1.5 to 2%, up to 1.01 by less
/// than 0.6%. Text and machine code are far above (7 to 12 for 8 KiB of a log or of
/// `/usr/bin/ls`), and so is a segment of compressed bytes holding one tar header (1.6), so
/// that small files are deflated with their headers. A part that compresses weighs much more
/// than its share: a segment one eighth text and seven eighths random bytes is at 1.14, so the
/// text of a mixed segment is stored only when it is a sliver (a sixteenth: 1.04).
///
/// What it cannot see are bytes spread evenly but repeated: the same compressed file twice
/// within the 32 KiB window would be stored, not matched (rare in a tar: the copies of a file
/// of more than 8 KiB must be next to each other).
///
/// The test is exact integer arithmetic on the histogram, the same on every machine.
pub(super) fn max_collisions_milli(level: u32) -> Option<u64> {
    match level {
        0 => None,
        1 => Some(1050),
        _ => Some(1010),
    }
}

/// Whether `segment` (of at most [`SEGMENT`] bytes) has a collision ratio of at most
/// `max_milli` thousandths: a histogram, far cheaper than deflating the segment.
pub(super) fn incompressible(segment: &[u8], max_milli: u64) -> bool {
    // Four histograms, so that repeated bytes do not wait on each other's counts.
    let mut counts = [[0u32; 256]; 4];
    let mut quads = segment.chunks_exact(4);
    for q in &mut quads {
        counts[0][usize::from(q[0])] += 1;
        counts[1][usize::from(q[1])] += 1;
        counts[2][usize::from(q[2])] += 1;
        counts[3][usize::from(q[3])] += 1;
    }
    for &b in quads.remainder() {
        counts[0][usize::from(b)] += 1;
    }
    let collisions: u64 = (0..256)
        .map(|b| {
            let c = u64::from(counts[0][b] + counts[1][b] + counts[2][b] + counts[3][b]);
            c * c.saturating_sub(1)
        })
        .sum();
    let n = segment.len() as u64;
    // Below 2^26 collisions and 2^13 bytes: no overflow.
    256 * 1000 * collisions <= max_milli * n * n.saturating_sub(1)
}

/// The size of `len` bytes as stored deflate blocks.
pub(super) fn stored_size(len: usize) -> usize {
    len + 5 * len.div_ceil(MAX_STORED).max(1)
}

/// Appends `data` to `out` as stored deflate blocks (at least one, the last final if `last`).
/// The stream must be at a byte boundary, as it is after a sync flush or a stored block.
fn write_stored(data: &[u8], last: bool, out: &mut Vec<u8>) {
    let count = data.len().div_ceil(MAX_STORED).max(1);
    out.reserve(stored_size(data.len()));
    for i in 0..count {
        let start = i * MAX_STORED;
        let chunk = &data[start..data.len().min(start + MAX_STORED)];
        // BFINAL in bit 0, BTYPE 00 (stored) in bits 1-2, the rest of the byte padding.
        out.push(u8::from(last && i + 1 == count));
        // Never more than MAX_STORED.
        let len = u16::try_from(chunk.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
}

/// Compresses one block into `out`: its segments judged incompressible stored, the others
/// deflated, run by run.
///
/// The block is cut into [`SEGMENT`]-byte segments from its start; each is judged by its byte
/// histogram ([`max_collisions_milli`]; one shorter than [`MIN_JUDGED`] is deflated), so that
/// compressed files and random bytes cost a histogram and a copy instead of a deflate (zlib-rs's
/// level 1 spends as long on them as on text, then they are stored anyway). Consecutive
/// segments of the same kind make a run:
/// * a run to store is written as stored blocks of at most 65535 bytes;
/// * a run to deflate is deflated by a new compressor ending with a sync flush (the end of the
///   stream: a finish), and stored instead if that made it larger. Its preset dictionary is the
///   block's (the end of the previous block's input) if it starts the block, none if it follows
///   a stored run: a dictionary of incompressible bytes finds no matches and costs time; none is
///   always valid, as it only forgoes matches.
///
/// Every run ends at a byte boundary (sync flush or stored block), so the next follows directly;
/// stored bytes are in the decoder's window like any others, so later dictionaries stay valid.
/// Zlib-rs's level 1 (zlib-ng's `deflate_quick`) codes with the fixed Huffman codes only and
/// never stores: deflating incompressible input makes it 5.5% larger, which the
/// stored-if-larger rule catches for runs the histogram let through.
fn deflate_block(
    level: u32,
    dict: &[u8],
    input: &[u8],
    last: bool,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    out.clear();
    // Room for the deflated runs (see `deflate_at`), so that `out` grows at most once.
    out.reserve(input.len() + input.len() / 8 + 1024);
    let Some(max_milli) = max_collisions_milli(level) else {
        write_stored(input, last, out);
        return Ok(());
    };
    // The current run: where it starts, and whether it is to be stored.
    let mut run: Option<(usize, bool)> = None;
    for start in (0..input.len()).step_by(SEGMENT) {
        let segment = &input[start..(start + SEGMENT).min(input.len())];
        let store = segment.len() >= MIN_JUDGED && incompressible(segment, max_milli);
        match run {
            Some((_, kind)) if kind == store => {}
            Some((from, kind)) => {
                emit_run(level, dict, input, from..start, kind, false, out)?;
                run = Some((start, store));
            }
            None => run = Some((start, store)),
        }
    }
    // The last run; for an empty block (only ever the last), an empty deflated one.
    let (from, store) = run.unwrap_or((0, false));
    emit_run(level, dict, input, from..input.len(), store, last, out)
}

/// Appends the run `range` of the block `input` to `out`, stored or deflated; see
/// [`deflate_block`].
fn emit_run(
    level: u32,
    dict: &[u8],
    input: &[u8],
    range: Range<usize>,
    store: bool,
    last: bool,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    let data = &input[range.clone()];
    if store {
        write_stored(data, last, out);
        return Ok(());
    }
    // A deflated run that does not start the block follows a stored one: no dictionary.
    let dict = if range.start == 0 { dict } else { &[] };
    let at = out.len();
    deflate_at(level, dict, data, last, out)?;
    if out.len() - at > stored_size(data.len()) {
        out.truncate(at);
        write_stored(data, last, out);
    }
    Ok(())
}

/// Deflates one run on its own, appending to `out`: a new compressor, the preset dictionary,
/// then the whole run in one call with a buffer of a size that depends only on its length.
///
/// Everything here is for the bytes to depend on the block and nothing else. A compressor is
/// not reused: zlib-rs's `reset` clears the hash heads but not the chains (as zlib-ng), so a
/// reused one can follow a stale link and find other matches (a test caught it); a new one
/// starts zeroed. zlib's stored blocks are cut to the room left in the output, and a flush that
/// runs out of room and is finished by a second call can add an empty stored block, so the
/// room must not depend on history either. If it was not enough, the run is deflated again
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
    #[cfg(test)]
    super::tests::DEFLATES.with(|n| n.set(n.get() + 1));
    // Level 1 codes at most 9 bits a byte (+12.5%); 64 more for the flush and final blocks.
    let mut room = input.len() + input.len() / 8 + 64;
    let at = out.len();
    loop {
        let mut compress = Compress::new(flate2::Compression::new(level), false);
        // zlib-rs (like zlib) accepts a dictionary on a raw deflate stream, as pigz uses it.
        if !dict.is_empty() {
            compress.set_dictionary(dict).map_err(io::Error::other)?;
        }
        out.truncate(at);
        out.resize(at + room, 0);
        let status = compress.compress(input, &mut out[at..], flush)?;
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
            out.truncate(at + produced);
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
