//! Writing new files to the disk: with `O_DIRECT` where the system allows it, from buffers
//! that gather the network's small pieces, on a thread of their own.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;

/// How many bytes a write to disk gathers at least (fewer, larger writes), and what a blob
/// smaller than [`LARGE_BLOB`] gathers. A blob write holds three such buffers, four writes run
/// at once in a pull: 128 KiB keeps a pull of many small layers within oras's memory.
pub(crate) const WRITE_BUFFER: usize = 128 << 10;
/// What a blob of [`LARGE_BLOB`] bytes or more gathers: the disk takes larger direct writes
/// faster and for less CPU (a pull of large layers, `cargo xtask bench client`), which is
/// worth a MiB more per large blob being written, not per small one.
pub(crate) const LARGE_WRITE_BUFFER: usize = 512 << 10;
/// The size from which a blob is written in [`LARGE_WRITE_BUFFER`] pieces.
pub(crate) const LARGE_BLOB: u64 = 8 << 20;

/// How many bytes the gathering buffers of a blob of `size` bytes hold.
pub(crate) fn gathering_size(size: u64) -> usize {
    if size >= LARGE_BLOB {
        LARGE_WRITE_BUFFER
    } else {
        WRITE_BUFFER
    }
}
/// After this many new bytes of a file written through the page cache, the disk is asked to
/// start writing them out.
const WRITEBACK_STEP: u64 = 16 << 20;

/// A piece of a new file's content on its way to the thread that writes it.
pub(crate) enum Piece {
    /// Small pieces gathered into an aligned buffer: written from the buffer itself, which
    /// then goes back to be filled again.
    Gathered(AlignedBuffer),
    /// A piece large enough to be written as it came.
    Whole(Bytes),
}

impl Piece {
    fn content(&self) -> &[u8] {
        match self {
            Self::Gathered(buffer) => buffer.content(),
            Self::Whole(bytes) => bytes,
        }
    }

    /// Hands a gathering buffer back to be filled again, emptied.
    fn give_back(self, give_back: &mut impl FnMut(AlignedBuffer)) {
        if let Self::Gathered(mut buffer) = self {
            buffer.clear();
            give_back(buffer);
        }
    }
}

/// Writes every piece `next` gives into the new file `path`, then syncs its data (blocking);
/// each gathering buffer, once written, goes to `give_back`. Pieces that come whole are
/// written directly `gather` bytes at a time, the size the gathered ones have.
///
/// On Linux the file is written with `O_DIRECT` where its filesystem takes it, through a
/// [`DirectFile`]. Elsewhere, or where the filesystem refuses `O_DIRECT` (ramfs, tmpfs before
/// Linux 6.6), the writes go through the page cache, with [`write_through`] keeping the disk
/// busy meanwhile.
pub(crate) fn write_new_file(
    path: &Path,
    gather: usize,
    mut next: impl FnMut() -> Option<Piece>,
    mut give_back: impl FnMut(AlignedBuffer),
    abandoned: &AtomicBool,
) -> std::io::Result<()> {
    let mut file = DirectFile::create(path)?.staging(gather);
    if !file.is_direct() {
        return match file.buffered.take() {
            Some(mut buffered) => write_through(&mut buffered, next, give_back, abandoned),
            None => Err(std::io::Error::other("no handle to write with")),
        };
    }
    while let Some(piece) = next() {
        match &piece {
            Piece::Gathered(buffer) => file.write_buffer(buffer)?,
            Piece::Whole(bytes) => file.write(bytes)?,
        }
        piece.give_back(&mut give_back);
    }
    file.finish()?;
    if abandoned.load(Ordering::Relaxed) {
        return Ok(());
    }
    file.sync()
}

/// The alignment `O_DIRECT` asks of buffers, offsets and lengths (a page: enough for any
/// logical block size in use).
pub(crate) const DIRECT_ALIGN: usize = 4096;

/// A file being written at its end, with `O_DIRECT` where the system allows it (blocking): the
/// one implementation of direct writes, used by blob pushes ([`write_new_file`]) and by chunked
/// uploads (`LayoutWriter`).
///
/// Why: a buffered write copies every byte into fresh page-cache pages, and on virtual machines,
/// whose fresh memory pages are slow to touch, that copy is most of a pull's CPU. With
/// `O_DIRECT` the content goes from an aligned buffer of ours to the disk without that copy
/// (`cargo xtask bench layout` measures both against `dd`).
///
/// How: content is gathered into an aligned staging buffer of [`WRITE_BUFFER`] bytes, written
/// directly each time it fills (or comes gathered already: [`DirectFile::write_buffer`]); the bytes that do not fill an aligned block at the end go
/// through an ordinary handle appending to the same file, by [`DirectFile::finish`]. Where the
/// filesystem refuses `O_DIRECT` at open (`EINVAL`: ramfs, tmpfs before Linux 6.6), or the disk
/// refuses a direct write, or the file's end is not aligned, everything (from then on) goes
/// through that ordinary handle. Invariant: the direct handle, while there is one, is
/// positioned at the end of the file, because nothing was written through the other one yet.
pub(crate) struct DirectFile {
    path: PathBuf,
    /// The bytes not written yet (fewer than a full buffer).
    staging: AlignedBuffer,
    /// The `O_DIRECT` handle, while direct writes are possible.
    direct: Option<File>,
    /// An ordinary handle appending to the same file, opened when first needed.
    buffered: Option<File>,
    /// How many direct writes were made, for the tests of their size.
    #[cfg(test)]
    direct_writes: usize,
}

impl DirectFile {
    /// Creates `path`, which must not exist.
    pub(crate) fn create(path: &Path) -> std::io::Result<Self> {
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::fs::OpenOptionsExt;
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_DIRECT)
                .open(path)
            {
                Ok(file) => Ok(Self::new(path, Some(file), None)),
                // The filesystem does not do direct I/O (ramfs; tmpfs before Linux 6.6); the
                // file was created all the same.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Self::create_buffered(path),
                Err(e) => Err(e),
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            OpenOptions::new().write(true).create_new(true).open(path)?;
            Self::create_buffered(path)
        }
    }

    /// [`DirectFile::create`] where direct I/O is not available: `path` (made or emptied)
    /// written through the page cache.
    fn create_buffered(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(Self::new(path, None, Some(file)))
    }

    /// Opens the existing file `path` to write after its end; gives its length too.
    ///
    /// A file whose length is not a multiple of [`DIRECT_ALIGN`] (an upload closed with an
    /// unaligned tail) cannot take direct writes at its end: it is written through the page
    /// cache from then on.
    pub(crate) fn append_to(path: &Path) -> std::io::Result<(Self, u64)> {
        let buffered = OpenOptions::new().append(true).open(path)?;
        let len = buffered.metadata()?.len();
        let direct = if len % DIRECT_ALIGN as u64 == 0 {
            Self::open_direct_at(path, len)?
        } else {
            None
        };
        Ok((Self::new(path, direct, Some(buffered)), len))
    }

    /// An `O_DIRECT` handle on `path` positioned at `offset`, or `None` where the filesystem
    /// refuses direct I/O.
    #[cfg(target_os = "linux")]
    fn open_direct_at(path: &Path, offset: u64) -> std::io::Result<Option<File>> {
        use std::io::{Seek, SeekFrom};
        use std::os::unix::fs::OpenOptionsExt;
        match OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
        {
            Ok(mut file) => {
                file.seek(SeekFrom::Start(offset))?;
                Ok(Some(file))
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(None),
            Err(e) => Err(e),
        }
    }

    #[cfg(not(target_os = "linux"))]
    #[allow(clippy::unnecessary_wraps)]
    fn open_direct_at(_path: &Path, _offset: u64) -> std::io::Result<Option<File>> {
        Ok(None)
    }

    fn new(path: &Path, direct: Option<File>, buffered: Option<File>) -> Self {
        Self {
            path: path.to_path_buf(),
            staging: AlignedBuffer::default(),
            direct,
            buffered,
            #[cfg(test)]
            direct_writes: 0,
        }
    }

    /// Stages `capacity` bytes (rounded up to whole blocks) before each direct write, rather
    /// than [`WRITE_BUFFER`]: a direct write waits for the disk, so a large file written in
    /// small ones waits as many times (a blob pushed from a local file comes in whole 1 MiB
    /// pieces, which are staged; `cargo xtask bench layout` measures it).
    pub(crate) fn staging(mut self, capacity: usize) -> Self {
        if self.staging.is_empty() {
            self.staging = AlignedBuffer::with_capacity(capacity);
        }
        self
    }

    /// Whether writes still go to the disk directly.
    pub(crate) fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// Adds `bytes` to the staging buffer if they fit without filling it, so without any I/O
    /// (cheap enough for an async thread); says whether it did.
    pub(crate) fn try_stage(&mut self, bytes: &[u8]) -> bool {
        let fits = self.staging.len() + bytes.len() < self.staging.capacity();
        if fits {
            self.staging.fill(bytes);
        }
        fits
    }

    /// Appends `bytes`: staged, and written a full staging buffer at a time.
    pub(crate) fn write(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            if self.direct.is_none()
                && self.staging.is_empty()
                && bytes.len() >= self.staging.capacity()
            {
                // Through the page cache, a large piece needs no gathering (nor a copy).
                return self.write_buffered(bytes);
            }
            let took = self.staging.fill(bytes);
            bytes = &bytes[took..];
            if self.staging.is_full() {
                self.write_staged(self.staging.capacity())?;
            }
        }
        Ok(())
    }

    /// Appends a gathering buffer's content. With nothing staged, it is written from where it
    /// is: a full buffer directly, without a copy. One that is not full is taken to be the
    /// file's last piece: its aligned part goes directly and its tail through the page cache,
    /// which ends direct writing (anything appended after it is still written, through the
    /// page cache).
    pub(crate) fn write_buffer(&mut self, buffer: &AlignedBuffer) -> std::io::Result<()> {
        if !self.staging.is_empty() || self.direct.is_none() {
            return self.write(buffer.content());
        }
        let content = buffer.content();
        let aligned = content.len() / DIRECT_ALIGN * DIRECT_ALIGN;
        self.write_blocks(&content[..aligned])?;
        self.write_buffered(&content[aligned..])
    }

    /// Writes the first `len` staged bytes (a multiple of [`DIRECT_ALIGN`]) and moves the rest
    /// to the front.
    fn write_staged(&mut self, len: usize) -> std::io::Result<()> {
        let mut staging = std::mem::take(&mut self.staging);
        let result = self.write_blocks(&staging.content()[..len]);
        staging.consume(len);
        self.staging = staging;
        result
    }

    /// Writes what is staged: the aligned blocks directly, the tail through the page cache.
    /// Nothing can be written directly after a tail: this ends the file's direct writing.
    pub(crate) fn finish(&mut self) -> std::io::Result<()> {
        let aligned = self.staging.len() / DIRECT_ALIGN * DIRECT_ALIGN;
        self.write_staged(aligned)?;
        let mut staging = std::mem::take(&mut self.staging);
        let result = self.write_buffered(staging.content());
        staging.clear();
        self.staging = staging;
        result
    }

    /// Writes whole aligned blocks (directly, unless that was refused).
    fn write_blocks(&mut self, mut blocks: &[u8]) -> std::io::Result<()> {
        while let (Some(direct), false) = (&mut self.direct, blocks.is_empty()) {
            match direct.write(blocks) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) if n % DIRECT_ALIGN == 0 => {
                    blocks = &blocks[n..];
                    #[cfg(test)]
                    {
                        self.direct_writes += 1;
                    }
                }
                // A short, unaligned write (out of space, say): the rest cannot go direct.
                Ok(n) => {
                    blocks = &blocks[n..];
                    self.direct = None;
                }
                #[cfg(target_os = "linux")]
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    tracing::debug!(path = %self.path.display(), "direct write refused; writing through the page cache");
                    self.direct = None;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.write_buffered(blocks)
    }

    /// Appends through the page cache, which ends direct writing (the direct handle's position
    /// would no longer be the end of the file).
    fn write_buffered(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.direct = None;
        if self.buffered.is_none() {
            self.buffered = Some(OpenOptions::new().append(true).open(&self.path)?);
        }
        match &mut self.buffered {
            Some(file) => file.write_all(bytes),
            None => Ok(()),
        }
    }

    /// Makes what was written durable (what is staged is not: [`DirectFile::finish`] first).
    /// Either handle will do: a sync is of the file, whichever handle wrote.
    pub(crate) fn sync(&self) -> std::io::Result<()> {
        match (&self.direct, &self.buffered) {
            (Some(file), _) | (None, Some(file)) => file.sync_data(),
            (None, None) => File::open(&self.path)?.sync_data(),
        }
    }
}

/// [`WRITE_BUFFER`] bytes (or another multiple of [`DIRECT_ALIGN`]: [`Self::with_capacity`])
/// at an address aligned for `O_DIRECT`, filled from the front: what small pieces are gathered
/// into, and what the disk is written from without another copy. Its memory is taken when it
/// is first filled.
pub(crate) struct AlignedBuffer {
    /// `capacity + DIRECT_ALIGN` bytes once taken; the content is
    /// `bytes[start..start + filled]`, `start` being where the aligned part begins (moving the
    /// `Vec` does not move its heap buffer).
    bytes: Vec<u8>,
    start: usize,
    filled: usize,
    capacity: usize,
}

impl Default for AlignedBuffer {
    fn default() -> Self {
        Self::with_capacity(WRITE_BUFFER)
    }
}

impl AlignedBuffer {
    /// A buffer of `capacity` bytes, rounded up to a multiple of [`DIRECT_ALIGN`] (one at
    /// least), so that a full buffer is a whole number of blocks.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            bytes: Vec::new(),
            start: 0,
            filled: 0,
            capacity: capacity.max(1).div_ceil(DIRECT_ALIGN) * DIRECT_ALIGN,
        }
    }

    /// Copies as much of `bytes` as fits; says how much that was.
    pub(crate) fn fill(&mut self, bytes: &[u8]) -> usize {
        if self.bytes.is_empty() {
            self.bytes = vec![0u8; self.capacity + DIRECT_ALIGN];
            self.start = self
                .bytes
                .as_ptr()
                .align_offset(DIRECT_ALIGN)
                .min(DIRECT_ALIGN);
        }
        let take = (self.capacity - self.filled).min(bytes.len());
        let at = self.start + self.filled;
        self.bytes[at..at + take].copy_from_slice(&bytes[..take]);
        self.filled += take;
        take
    }

    pub(crate) fn is_full(&self) -> bool {
        self.filled == self.capacity
    }

    /// How many bytes it holds when full: a whole number of blocks.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.filled == 0
    }

    pub(crate) fn len(&self) -> usize {
        self.filled
    }

    pub(crate) fn content(&self) -> &[u8] {
        self.bytes
            .get(self.start..self.start + self.filled)
            .unwrap_or_default()
    }

    /// Drops the first `len` bytes of the content, moving the rest to the front.
    fn consume(&mut self, len: usize) {
        let len = len.min(self.filled);
        self.bytes
            .copy_within(self.start + len..self.start + self.filled, self.start);
        self.filled -= len;
    }

    pub(crate) fn clear(&mut self) {
        self.filled = 0;
    }
}

/// Writes every piece `next` gives to `file`, then syncs its data (blocking); each gathering
/// buffer, once written, goes to `give_back`.
///
/// The kernel would otherwise keep a whole blob in the page cache and write it only when the
/// final sync asks, so that the disk sat idle while the content arrived and the sync then
/// waited for all of it. A second thread syncs the file each time [`WRITEBACK_STEP`] more
/// bytes were written, which keeps the disk busy while the writing goes on, and leaves the
/// final sync only the tail.
fn write_through(
    file: &mut File,
    mut next: impl FnMut() -> Option<Piece>,
    mut give_back: impl FnMut(AlignedBuffer),
    abandoned: &AtomicBool,
) -> std::io::Result<()> {
    let early = file.try_clone()?;
    std::thread::scope(|scope| {
        // Capacity one: a request made while a sync runs waits for it; further ones are
        // dropped, since the sync after the waiting one covers their bytes too.
        let (request, requests) = std::sync::mpsc::sync_channel::<()>(1);
        let syncer = scope.spawn(move || -> std::io::Result<()> {
            let mut first_error = None;
            while requests.recv().is_ok() {
                // The handles share one open file, and the kernel reports a writeback error
                // to it once: an error here must reach the caller, not only the next sync.
                if let Err(e) = early.sync_data() {
                    first_error.get_or_insert(e);
                }
            }
            first_error.map_or(Ok(()), Err)
        });
        let mut written = 0u64;
        let mut requested = 0u64;
        while let Some(piece) = next() {
            file.write_all(piece.content())?;
            written += piece.content().len() as u64;
            piece.give_back(&mut give_back);
            if written - requested >= WRITEBACK_STEP {
                let _ = request.try_send(());
                requested = written;
            }
        }
        drop(request);
        syncer
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the syncing thread panicked")))
    })?;
    if abandoned.load(Ordering::Relaxed) {
        return Ok(());
    }
    file.sync_data()
}

#[cfg(test)]
pub(crate) mod tests {
    use std::fs;

    use super::*;

    /// `len` bytes that differ from block to block (so a block written twice or at the wrong
    /// offset shows).
    pub(crate) fn content(len: usize) -> Vec<u8> {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[3]
            })
            .collect()
    }

    /// Pieces of odd sizes around the alignment and the staging buffer, which add up to an
    /// unaligned length.
    pub(crate) const ODD_PIECES: &[usize] = &[
        1,
        4095,
        4097,
        (1 << 20) + 3,
        WRITE_BUFFER,
        WRITE_BUFFER - 1,
        333,
        3 * WRITE_BUFFER + 5,
    ];

    /// A scratch directory, and how a test's files in it are written.
    pub(crate) struct ScratchDir {
        pub(crate) dir: tempfile::TempDir,
        /// Whether the filesystem takes `O_DIRECT`.
        pub(crate) fs_direct: bool,
        /// Whether files are made as [`DirectFile::create`] makes them where the filesystem
        /// refuses `O_DIRECT` (even though this one takes it).
        pub(crate) refusal_simulated: bool,
    }

    impl ScratchDir {
        /// Whether a new file is written directly.
        pub(crate) fn direct(&self) -> bool {
            self.fs_direct && !self.refusal_simulated
        }

        fn create(&self, path: &Path) -> DirectFile {
            let file = if self.refusal_simulated {
                DirectFile::create_buffered(path)
            } else {
                DirectFile::create(path)
            };
            file.unwrap()
        }
    }

    /// Scratch directories on this machine, one per kind as far as it has them: one whose
    /// filesystem takes `O_DIRECT` (the temporary directory, or the test binary's under
    /// `target/`), one whose filesystem refuses it (`/dev/shm` before Linux 6.6, when tmpfs
    /// learnt `O_DIRECT`; or the directory `OCI_LAYOUT_NO_DIRECT_DIR` names, say a ramfs
    /// mounted in a private mount namespace:
    /// `unshare -m sh -c 'mount -t ramfs ramfs D && OCI_LAYOUT_NO_DIRECT_DIR=D cargo test'`),
    /// and, with `simulate`, a refusal simulated in the temporary directory.
    pub(crate) fn scratch_dirs(simulate: bool) -> Vec<ScratchDir> {
        let mut candidates = vec![std::env::temp_dir()];
        if let Some(dir) = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(Path::to_path_buf))
        {
            candidates.push(dir);
        }
        candidates.push(PathBuf::from("/dev/shm"));
        candidates.extend(std::env::var_os("OCI_LAYOUT_NO_DIRECT_DIR").map(PathBuf::from));
        let scratch = |parent: &Path| {
            tempfile::Builder::new()
                .prefix("oci-layout-direct-")
                .tempdir_in(parent)
        };
        let mut found: Vec<ScratchDir> = Vec::new();
        for candidate in candidates {
            let Ok(dir) = scratch(&candidate) else {
                continue;
            };
            let probe = dir.path().join("probe");
            let fs_direct = DirectFile::create(&probe).is_ok_and(|file| file.is_direct());
            fs::remove_file(&probe).unwrap();
            if found.iter().all(|other| other.fs_direct != fs_direct) {
                found.push(ScratchDir {
                    dir,
                    fs_direct,
                    refusal_simulated: false,
                });
            }
        }
        #[allow(clippy::print_stderr)] // A test saying what it could not test, as the suite does.
        for kind in [true, false] {
            if found.iter().all(|other| other.fs_direct != kind) {
                let what = if kind { "takes" } else { "refuses" };
                eprintln!("no filesystem here {what} O_DIRECT: that case is not tested");
            }
        }
        if simulate {
            found.push(ScratchDir {
                dir: scratch(&std::env::temp_dir()).unwrap(),
                fs_direct: found.first().is_some_and(|first| first.fs_direct),
                refusal_simulated: true,
            });
        }
        found
    }

    fn write_pieces(file: &mut DirectFile, data: &[u8], pieces: &[usize]) -> usize {
        let mut at = 0;
        for &len in pieces {
            file.write(&data[at..at + len]).unwrap();
            at += len;
        }
        at
    }

    /// Finishes and syncs `file`, whose content ends off a block boundary (so its tail goes
    /// through the page cache, which ends direct writing), and checks that `path` holds
    /// `expected`.
    fn finish_and_compare(
        mut file: DirectFile,
        path: &Path,
        expected: &[u8],
        scratch: &ScratchDir,
    ) {
        file.finish().unwrap();
        file.sync().unwrap();
        assert!(!file.is_direct(), "the tail ends direct writing");
        assert_eq!(
            fs::read(path).unwrap(),
            expected,
            "direct: {}",
            scratch.direct()
        );
    }

    #[test]
    fn odd_pieces_come_back_whole() {
        for scratch in scratch_dirs(true) {
            let path = scratch.dir.path().join("file");
            let total: usize = ODD_PIECES.iter().sum();
            let data = content(total);
            let mut file = scratch.create(&path);
            assert_eq!(file.is_direct(), scratch.direct());
            write_pieces(&mut file, &data, ODD_PIECES);
            // Only whole blocks were written so far, directly where the filesystem takes it.
            assert_eq!(file.is_direct(), scratch.direct());
            let written = fs::metadata(&path).unwrap().len() as usize;
            if scratch.direct() {
                assert_eq!(written % DIRECT_ALIGN, 0);
            }
            assert_eq!(written + file.staging.len(), total);
            finish_and_compare(file, &path, &data, &scratch);
        }
    }

    #[test]
    fn staged_bytes_are_written_with_the_next_full_buffer() {
        for scratch in scratch_dirs(true) {
            let path = scratch.dir.path().join("file");
            let data = content(2 * WRITE_BUFFER + 7);
            let mut file = scratch.create(&path);
            let mut at = 0;
            while at + 1000 < WRITE_BUFFER {
                assert!(file.try_stage(&data[at..at + 1000]));
                at += 1000;
            }
            assert!(
                !file.try_stage(&data[at..]),
                "a piece that fills the buffer is not staged"
            );
            assert_eq!(
                fs::metadata(&path).unwrap().len(),
                0,
                "staging writes nothing"
            );
            file.write(&data[at..]).unwrap();
            finish_and_compare(file, &path, &data, &scratch);
        }
    }

    #[test]
    fn appending_continues_directly_only_at_an_aligned_end() {
        for scratch in scratch_dirs(true) {
            let path = scratch.dir.path().join("file");
            let data = content(6 << 20);
            let mut file = scratch.create(&path);
            let mut at = write_pieces(&mut file, &data, &[1 << 20]);
            file.finish().unwrap();
            file.sync().unwrap();
            // Aligned: direct writing goes on where the filesystem takes it (whatever wrote
            // the file before).
            let (mut file, len) = DirectFile::append_to(&path).unwrap();
            assert_eq!(len, 1 << 20);
            assert_eq!(file.is_direct(), scratch.fs_direct);
            at += write_pieces(&mut file, &data[at..], &[4097, (1 << 20) + 3]);
            file.finish().unwrap();
            file.sync().unwrap();
            drop(file);
            // Unaligned: through the page cache from then on.
            let (mut file, len) = DirectFile::append_to(&path).unwrap();
            assert_eq!(len as usize, at);
            assert!(!file.is_direct());
            at += write_pieces(&mut file, &data[at..], &[1, 4095, WRITE_BUFFER, 1 << 20]);
            file.finish().unwrap();
            file.sync().unwrap();
            drop(file);
            assert_eq!(
                fs::read(&path).unwrap(),
                &data[..at],
                "direct: {}",
                scratch.direct()
            );
        }
    }

    fn gathered(bytes: &[u8]) -> Piece {
        let mut buffer = AlignedBuffer::default();
        assert_eq!(buffer.fill(bytes), bytes.len());
        Piece::Gathered(buffer)
    }

    /// Pieces as a blob write sends them: one passed whole, then full gathering buffers, and
    /// a last one not full.
    fn pieces_of_a_blob_write(data: &[u8]) -> Vec<Piece> {
        let whole = (1 << 20) + 3;
        let mut pieces = vec![Piece::Whole(Bytes::copy_from_slice(&data[..whole]))];
        pieces.extend(data[whole..].chunks(WRITE_BUFFER).map(gathered));
        pieces
    }

    /// The same with a large blob's gathering buffers.
    fn pieces_of_a_large_blob_write(data: &[u8]) -> Vec<Piece> {
        let whole = LARGE_WRITE_BUFFER + 3;
        let mut pieces = vec![Piece::Whole(Bytes::copy_from_slice(&data[..whole]))];
        pieces.extend(data[whole..].chunks(LARGE_WRITE_BUFFER).map(|bytes| {
            let mut buffer = AlignedBuffer::with_capacity(gathering_size(LARGE_BLOB));
            assert_eq!(buffer.fill(bytes), bytes.len());
            Piece::Gathered(buffer)
        }));
        pieces
    }

    #[test]
    fn whole_pieces_go_to_the_disk_in_writes_of_the_staging_size() {
        // A large blob read from a local file comes in whole 1 MiB pieces, which are staged:
        // each direct write waits for the disk, so they must be as large as gathered ones.
        let data = content((4 << 20) + 5);
        for scratch in scratch_dirs(false) {
            for (staging, writes) in [(WRITE_BUFFER, 32), (LARGE_WRITE_BUFFER, 8)] {
                let path = scratch.dir.path().join(format!("whole-{staging}"));
                let mut file = scratch.create(&path).staging(staging);
                for piece in data.chunks(1 << 20) {
                    file.write(piece).unwrap();
                }
                if scratch.direct() {
                    assert_eq!(file.direct_writes, writes, "staging {staging}");
                }
                finish_and_compare(file, &path, &data, &scratch);
            }
        }
    }

    #[test]
    fn buffers_hold_whole_blocks_and_large_blobs_gather_more() {
        assert_eq!(gathering_size(LARGE_BLOB - 1), WRITE_BUFFER);
        assert_eq!(gathering_size(LARGE_BLOB), LARGE_WRITE_BUFFER);
        let mut odd = AlignedBuffer::with_capacity(5000);
        assert_eq!(odd.fill(&[1u8; 9000]), 2 * DIRECT_ALIGN);
        assert!(odd.is_full());
        let mut none = AlignedBuffer::with_capacity(0);
        assert_eq!(none.fill(&[1u8; 5000]), DIRECT_ALIGN);
    }

    /// Each odd piece on its own: buffers that are not full in the middle of the file too.
    fn odd_pieces_alone(data: &[u8]) -> Vec<Piece> {
        let mut at = 0;
        ODD_PIECES
            .iter()
            .map(|&len| {
                at += len;
                let bytes = &data[at - len..at];
                if len > WRITE_BUFFER {
                    Piece::Whole(Bytes::copy_from_slice(bytes))
                } else {
                    gathered(bytes)
                }
            })
            .collect()
    }

    #[test]
    fn new_files_come_back_whole_and_give_every_buffer_back() {
        let total: usize = ODD_PIECES.iter().sum();
        let data = content(total);
        for scratch in scratch_dirs(false) {
            for (name, gather, pieces) in [
                ("blob-write", WRITE_BUFFER, pieces_of_a_blob_write(&data)),
                (
                    "large-blob-write",
                    LARGE_WRITE_BUFFER,
                    pieces_of_a_large_blob_write(&data),
                ),
                ("odd-pieces", WRITE_BUFFER, odd_pieces_alone(&data)),
                (
                    "odd-pieces-large",
                    LARGE_WRITE_BUFFER,
                    odd_pieces_alone(&data),
                ),
            ] {
                let path = scratch.dir.path().join(name);
                let sent = pieces
                    .iter()
                    .filter(|piece| matches!(piece, Piece::Gathered(_)))
                    .count();
                let mut given_back = Vec::new();
                let mut pieces = pieces.into_iter();
                write_new_file(
                    &path,
                    gather,
                    || pieces.next(),
                    |buffer| given_back.push(buffer),
                    &AtomicBool::new(false),
                )
                .unwrap();
                assert_eq!(
                    fs::read(&path).unwrap(),
                    data,
                    "{name}, direct: {}",
                    scratch.direct()
                );
                assert_eq!(given_back.len(), sent, "{name}");
                assert!(given_back.iter().all(AlignedBuffer::is_empty), "{name}");
            }
        }
    }
}
