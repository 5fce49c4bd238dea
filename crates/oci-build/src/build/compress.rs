//! Compression of layer bytes, deterministic: the same input and the same options give the same
//! compressed bytes whatever the number of threads and however the input was split into writes,
//! so that digests of built layers can be pinned (reproducible builds, as with apko and ko).
//! gzip is written by this module's own parallel encoder (`gzip.rs`), zstd by the zstd crate's
//! multithreaded one.

use std::fmt;
use std::io::{self, Write};
use std::num::NonZeroUsize;
use std::thread;

use oci_types::{MediaType, media_type};

use gzip::Gzip;

/// The default gzip level: 1, "best speed", as crane and ko (docker and pigz use 6).
///
/// Why: on typical trees (such as /usr) level 1 deflates several times faster than level 6 for
/// output only about a quarter larger, and building layers faster than umoci's pgzip on few
/// cores leaves no room for a slower level. Level 2 is the choice for smaller layers at about
/// half the speed (`cargo xtask bench build` measures the builds).
pub const DEFAULT_GZIP_LEVEL: u32 = 1;
/// The default gzip block size: 128 KiB, as pigz.
pub const DEFAULT_GZIP_BLOCK_SIZE: usize = 128 * 1024;
/// The default zstd level, zstd's own default.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;
/// Annotation key recording on a layer descriptor what made its compressed bytes
/// (the value is [`Compression::describe`]).
pub const COMPRESSION_ANNOTATION: &str = "dev.hoist.layer.compression";

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
    /// The deflate level, 0 (stored) to 9 (best). Input judged incompressible is stored at any
    /// level, without running the compressor (see [`Compression::describe`]).
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
    /// e.g. `gzip;level=1;block-size=131072;dictionary=32768;stored-if-larger;`
    /// `skip-incompressible=collisions<=1.050/8192;zlib-rs` or
    /// `zstd;level=3;checksum;multithreaded;libzstd=1.5.7`.
    ///
    /// `skip-incompressible=collisions<=R/S`: segments of S bytes whose byte collision ratio is
    /// at most R are stored without deflating, and deflated runs after them are not primed
    /// (see `deflate_block` in the source); `skip-incompressible=all` (level 0): everything is
    /// stored.
    pub fn describe(&self) -> Option<String> {
        match self {
            Self::None => None,
            // flate2's backend is chosen at build time (zlib-rs by the workspace); it has no
            // version to ask at run time, so a change of its output is caught by the pinned
            // digest of the tests instead.
            Self::Gzip(o) => Some(gzip::describe(o)),
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

mod gzip;
#[cfg(test)]
mod tests;
