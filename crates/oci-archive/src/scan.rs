//! An archive file opened for reading: decompressed once into a temporary file when it is
//! gzip or zstd, then its tar entries indexed by name in one pass, so that blobs are served
//! from their offsets in the file without unpacking anything.
//!
//! The entries are read by `oci_store::layer::read_entries`, the hardened tar reader hoist
//! reads layers with (limits on entries, names and PAX records; a PAX size that disagrees
//! with its header refused), and names are cleaned the same way: an entry cannot name
//! anything outside the archive, and a lookup of `../x` is a lookup of `x`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use oci_store::layer::{EntryKind, LayerLimits, clean, read_entries, sniff_compression};
use oci_store::{BlobBody, FileSpan};
use oci_types::Compression;
use oci_types::{Algorithm, Digester};

use crate::{Error, Result};

/// How much an archive being read may hold, against hostile and broken files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ArchiveLimits {
    /// Entries in the archive's tar (default 1,000,000).
    pub max_entries: u64,
    /// Bytes of one JSON file read whole: `manifest.json`, `index.json`, `repositories`, an
    /// image config, a manifest (default 8 MiB).
    pub max_json: u64,
    /// Bytes a compressed archive may expand to (default 1 TiB).
    pub max_expanded: u64,
    /// Bytes of manifests an archive's index reaches (or that its images are given), all held
    /// in memory while it is read (default 256 MiB).
    pub max_manifest_bytes: u64,
    /// How many times its compressed size a compressed archive may expand to, once past its
    /// first 64 MiB (default 100): an archive of compressed layers barely compresses again,
    /// and a decompression bomb is stopped early instead of filling the disk.
    pub max_ratio: u64,
}

impl Default for ArchiveLimits {
    fn default() -> Self {
        Self {
            max_entries: 1_000_000,
            max_json: 8 << 20,
            max_expanded: 1 << 40,
            max_manifest_bytes: 256 << 20,
            max_ratio: 100,
        }
    }
}

impl ArchiveLimits {
    /// Sets [`max_entries`](Self::max_entries).
    pub fn with_max_entries(mut self, max: u64) -> Self {
        self.max_entries = max;
        self
    }

    /// Sets [`max_json`](Self::max_json).
    pub fn with_max_json(mut self, max: u64) -> Self {
        self.max_json = max;
        self
    }

    /// Sets [`max_expanded`](Self::max_expanded).
    pub fn with_max_expanded(mut self, max: u64) -> Self {
        self.max_expanded = max;
        self
    }

    /// Sets [`max_manifest_bytes`](Self::max_manifest_bytes).
    pub fn with_max_manifest_bytes(mut self, max: u64) -> Self {
        self.max_manifest_bytes = max;
        self
    }

    /// Sets [`max_ratio`](Self::max_ratio).
    pub fn with_max_ratio(mut self, max: u64) -> Self {
        self.max_ratio = max;
        self
    }
}

/// Expansion below this is never judged by [`ArchiveLimits::max_ratio`].
const RATIO_GRACE: u64 = 64 << 20;
/// Pieces a blob is read in.
pub(crate) const READ_PIECE: usize = 1 << 20;

/// An entry of the tar, by cleaned name.
#[derive(Debug, Clone)]
enum Node {
    File {
        offset: u64,
        size: u64,
    },
    /// A symbolic link's target, already resolved against the link's directory and cleaned.
    Symlink(String),
    /// A hard link's target, cleaned.
    HardLink(String),
}

/// Where a regular file's content is in the tar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Extent {
    pub(crate) offset: u64,
    pub(crate) size: u64,
}

/// A tar file indexed by entry name.
#[derive(Debug, Clone)]
pub(crate) struct TarFile {
    /// The archive as the user named it, for messages.
    path: PathBuf,
    /// The tar itself: the archive, or the temporary file it was decompressed into.
    file: Arc<File>,
    entries: Arc<HashMap<String, Node>>,
    /// Whether the archive was compressed (and which way).
    compression: Compression,
}

impl TarFile {
    /// Opens and indexes `path` (blocking).
    pub(crate) fn open(path: &Path, limits: &ArchiveLimits) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io("cannot open archive", path, e))?;
        Self::from_file(file, path, limits)
    }

    /// Indexes an archive already open (blocking); `path` names it in messages.
    pub(crate) fn from_file(mut file: File, path: &Path, limits: &ArchiveLimits) -> Result<Self> {
        let mut prefix = [0u8; 8];
        let read = read_prefix(&mut file, &mut prefix)
            .map_err(|e| Error::io("cannot read archive", path, e))?;
        file.seek(SeekFrom::Start(0))
            .map_err(|e| Error::io("cannot read archive", path, e))?;
        let compression = sniff_compression(&prefix[..read]);
        let file = match compression {
            Compression::None => file,
            compressed => spool(path, file, compressed, limits)?,
        };
        let entries = index(path, &file, limits)?;
        Ok(Self {
            path: path.to_owned(),
            file: Arc::new(file),
            entries: Arc::new(entries),
            compression,
        })
    }

    /// The archive's path, for messages.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// How the archive was compressed.
    pub(crate) fn compression(&self) -> Compression {
        self.compression
    }

    /// Whether an entry of that name is in the archive.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(&clean_name(name))
    }

    /// The names of the regular files under `dir` (cleaned, without a trailing `/`).
    pub(crate) fn files_under<'a>(&'a self, dir: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.entries.iter().filter_map(move |(name, node)| {
            let rest = name.strip_prefix(dir)?.strip_prefix('/')?;
            (matches!(node, Node::File { .. }) && !rest.contains('/')).then_some(name.as_str())
        })
    }

    /// Where the regular file `name` is, following one symbolic or hard link inside the
    /// archive.
    pub(crate) fn find(&self, name: &str) -> Result<Extent> {
        let wanted = clean_name(name);
        let invalid = |reason: &str| Error::invalid(&self.path, Some(name), reason);
        let node = self
            .entries
            .get(&wanted)
            .ok_or_else(|| invalid("no such entry in the archive"))?;
        let node = match node {
            Node::File { .. } => node,
            Node::Symlink(target) | Node::HardLink(target) => {
                self.entries.get(target).ok_or_else(|| {
                    invalid(&format!(
                        "a link to {target:?}, which is not in the archive"
                    ))
                })?
            }
        };
        match node {
            Node::File { offset, size } => Ok(Extent {
                offset: *offset,
                size: *size,
            }),
            _ => Err(invalid("a link to a link (links are followed once)")),
        }
    }

    /// The whole content of the regular file `name`, at most `max` bytes of it.
    pub(crate) fn read_small(&self, name: &str, max: u64) -> Result<Vec<u8>> {
        let extent = self.find(name)?;
        if extent.size > max {
            return Err(Error::invalid(
                &self.path,
                Some(name),
                format!("{} bytes, over the limit of {max}", extent.size),
            ));
        }
        let mut content = vec![0u8; usize::try_from(extent.size).unwrap_or(usize::MAX)];
        self.file
            .read_exact_at(&mut content, extent.offset)
            .map_err(|e| Error::io("cannot read archive", &self.path, e))?;
        Ok(content)
    }

    /// The SHA-256 digest of an extent's bytes and their first bytes (to sniff compression),
    /// read once (blocking).
    pub(crate) fn hash(&self, extent: Extent) -> Result<(oci_types::Digest, Vec<u8>)> {
        let mut digester = Digester::new(Algorithm::Sha256);
        let mut buffer = vec![0u8; READ_PIECE];
        let mut prefix = Vec::new();
        let mut at = 0u64;
        while at < extent.size {
            let want =
                usize::try_from((extent.size - at).min(READ_PIECE as u64)).unwrap_or(READ_PIECE);
            let piece = &mut buffer[..want];
            self.file
                .read_exact_at(piece, extent.offset + at)
                .map_err(|e| Error::io("cannot read archive", &self.path, e))?;
            if prefix.is_empty() {
                prefix = piece[..want.min(8)].to_vec();
            }
            digester.update(piece);
            at += want as u64;
        }
        Ok((digester.finish(), prefix))
    }

    /// The first bytes of an extent (to sniff compression).
    pub(crate) fn read_prefix(&self, extent: Extent) -> Result<Vec<u8>> {
        let mut prefix = vec![0u8; usize::try_from(extent.size.min(8)).unwrap_or(8)];
        self.file
            .read_exact_at(&mut prefix, extent.offset)
            .map_err(|e| Error::io("cannot read archive", &self.path, e))?;
        Ok(prefix)
    }

    /// An extent's bytes as a blob body, read a piece ahead on a blocking thread once it is
    /// first polled; the body also says where they lie in the archive (a [`FileSpan`]), so that
    /// a push to a plain-HTTP registry sends them from the file unread.
    pub(crate) fn body(&self, extent: Extent) -> BlobBody {
        FileSpan::new(
            Arc::clone(&self.file),
            extent.offset,
            extent.size,
            format!("archive {}", self.path.display()),
        )
        .into_body(READ_PIECE)
    }
}

/// Fills as much of `prefix` as the file has.
fn read_prefix(file: &mut File, prefix: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < prefix.len() {
        match file.read(&mut prefix[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// A name as the index keys it: cleaned the way layer entries are, as UTF-8.
pub(crate) fn clean_name(name: &str) -> String {
    String::from_utf8_lossy(&clean(name.as_bytes())).into_owned()
}

/// Decompresses a compressed archive into an anonymous temporary file, stopping at the
/// limits; the temporary file disappears with the last handle to it.
fn spool(
    path: &Path,
    file: File,
    compression: Compression,
    limits: &ArchiveLimits,
) -> Result<File> {
    let consumed = Arc::new(AtomicU64::new(0));
    let counted = Counting {
        inner: BufReader::new(file),
        count: Arc::clone(&consumed),
    };
    let mut decoder: Box<dyn Read> = match compression {
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::new(counted)
                .map_err(|e| Error::io("cannot read archive", path, e))?,
        ),
        _ => Box::new(flate2::read::MultiGzDecoder::new(counted)),
    };
    let mut spooled = tempfile::tempfile()
        .map_err(|e| Error::io("cannot create a temporary file for", path, e))?;
    let mut buffer = vec![0u8; READ_PIECE];
    let mut expanded = 0u64;
    loop {
        let n = match decoder.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Error::invalid(
                    path,
                    None,
                    format!("cannot decompress the archive ({compression:?}): {e}"),
                ));
            }
        };
        expanded += n as u64;
        if expanded > limits.max_expanded {
            return Err(Error::invalid(
                path,
                None,
                format!("it expands past the limit of {} bytes", limits.max_expanded),
            ));
        }
        let compressed = consumed.load(Ordering::Relaxed).max(1);
        if expanded > RATIO_GRACE && expanded / compressed > limits.max_ratio {
            return Err(Error::invalid(
                path,
                None,
                format!(
                    "it expands more than {} times its compressed size (a decompression bomb?)",
                    limits.max_ratio
                ),
            ));
        }
        io::Write::write_all(&mut spooled, &buffer[..n])
            .map_err(|e| Error::io("cannot write the decompressed copy of", path, e))?;
    }
    spooled
        .seek(SeekFrom::Start(0))
        .map_err(|e| Error::io("cannot read the decompressed copy of", path, e))?;
    Ok(spooled)
}

/// Counts the bytes read through it.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Reads every entry of the tar once, recording where each regular file's content starts.
fn index(path: &Path, file: &File, limits: &ArchiveLimits) -> Result<HashMap<String, Node>> {
    // The tar reader reads headers exactly, so the count of bytes read when an entry is
    // handed over is where its content starts.
    let position = Arc::new(AtomicU64::new(0));
    let reader = Counting {
        inner: BufReader::with_capacity(512, file),
        count: Arc::clone(&position),
    };
    // Names in `blobs/sha256/` are 77 bytes; a PAX record of an archive names files only.
    let layer_limits = LayerLimits::default()
        .with_max_entries(limits.max_entries)
        .with_max_pax(64 << 10);
    let mut entries = HashMap::new();
    // `read_entries` names a layer in its errors; an archive is not one, so its errors are
    // rewritten to name the archive.
    let placeholder = oci_types::Digest::parse(
        "sha256:0000000000000000000000000000000000000000000000000000000000000000",
    )
    .map_err(|e| Error::invalid(path, None, e.to_string()))?;
    read_entries(&placeholder, reader, &layer_limits, |entry| {
        let name = String::from_utf8_lossy(&entry.path).into_owned();
        let node = match entry.kind {
            EntryKind::File => Node::File {
                offset: position.load(Ordering::Relaxed),
                size: entry.size,
            },
            EntryKind::Symlink => {
                let target = entry.link.unwrap_or_default();
                let joined = if target.starts_with(b"/") {
                    target
                } else {
                    let (parent, _) = oci_store::layer::split_name(&entry.path);
                    [parent, b"/", &target].concat()
                };
                Node::Symlink(String::from_utf8_lossy(&clean(&joined)).into_owned())
            }
            EntryKind::HardLink => Node::HardLink(
                String::from_utf8_lossy(&entry.link.unwrap_or_default()).into_owned(),
            ),
            // Directories, devices and whiteout-like names are not content an archive serves.
            _ => return Ok(()),
        };
        // A later entry of the same name replaces an earlier one, as extraction would.
        entries.insert(name, node);
        Ok(())
    })
    .map_err(|e| match e {
        oci_store::Error::LayerInvalid { entry, reason, .. } => Error::Invalid {
            archive: path.to_owned(),
            entry,
            reason,
        },
        other => Error::invalid(path, None, other.to_string()),
    })?;
    Ok(entries)
}
