//! Deterministic layer tars from files.
//!
//! The same tree gives the same bytes on any machine, whoever runs the build and whenever:
//! - **Order**: a pre-order walk, siblings in byte order of their names, so a directory comes
//!   right before its contents and every parent directory is an entry of its own (for an
//!   entry list, parents that are not listed are made: mode 0755, the build's owner and time).
//! - **Names**: relative, `/`-separated, without `./`; directories end with `/`. A name that
//!   does not fit ustar's 100 + 155 bytes, a link target over 100 bytes, a size of 8 GiB or
//!   more and ids over 2097151 go into a PAX record (`path`, `linkpath`, `size`, `uid`, `gid`),
//!   as do extended attributes (`SCHILY.xattr.NAME`, in byte order of the name).
//! - **Metadata**: the mode's permission bits (set-id and sticky included) as on disk; owners
//!   as on disk or the ones given (`0:0` unless told), never user or group names; modification
//!   times in whole seconds, as on disk, clamped to an upper bound or all set to one time
//!   (`SOURCE_DATE_EPOCH`); never access or change times, and device numbers only for devices.
//! - **Hard links**: a file with several links is stored at its first path in this order, the
//!   later paths as hard links to it.
//!
//! Sockets cannot be stored in a tar and are refused, naming the path; so is a file that
//! changes size while it is read. `security.selinux` labels are the building host's, not the
//! image's, and are left out.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci_store::layer::{EntryKind, EntryMeta, append_entry};

use crate::error::{Error, Result};

/// Extended attributes that describe the building host rather than the image.
const HOST_XATTRS: &[&str] = &["security.selinux"];

/// How modification times are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Mtime {
    /// As on disk (whole seconds).
    #[default]
    AsOnDisk,
    /// As on disk, but none later than this (seconds since the epoch): what reproducible
    /// builds do with `SOURCE_DATE_EPOCH`, so files touched by a checkout do not change the
    /// digest.
    Clamp(u64),
    /// Every entry gets this time.
    Set(u64),
}

impl Mtime {
    fn apply(self, on_disk: i64) -> u64 {
        let on_disk = u64::try_from(on_disk).unwrap_or(0);
        match self {
            Self::AsOnDisk => on_disk,
            Self::Clamp(limit) => on_disk.min(limit),
            Self::Set(time) => time,
        }
    }

    /// The time of entries that have no file behind them (made parents, whiteouts).
    fn made(self) -> u64 {
        match self {
            Self::AsOnDisk => 0,
            Self::Clamp(time) | Self::Set(time) => time,
        }
    }
}

/// How a layer's tar is written from files.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TarOptions {
    /// Owner of every entry as `(uid, gid)`, or `None` to keep the owners on disk.
    pub owner: Option<(u32, u32)>,
    /// Modification times.
    pub mtime: Mtime,
    /// Whether extended attributes are stored (other than the host's SELinux labels).
    pub xattrs: bool,
}

impl Default for TarOptions {
    /// Owners `0:0`, times as on disk, extended attributes kept.
    fn default() -> Self {
        Self {
            owner: Some((0, 0)),
            mtime: Mtime::AsOnDisk,
            xattrs: true,
        }
    }
}

impl TarOptions {
    /// Sets the owner of every entry (`None`: as on disk).
    #[must_use]
    pub fn with_owner(mut self, owner: Option<(u32, u32)>) -> Self {
        self.owner = owner;
        self
    }

    /// Sets how modification times are written.
    #[must_use]
    pub fn with_mtime(mut self, mtime: Mtime) -> Self {
        self.mtime = mtime;
        self
    }

    /// Keeps or drops extended attributes.
    #[must_use]
    pub fn with_xattrs(mut self, xattrs: bool) -> Self {
        self.xattrs = xattrs;
        self
    }
}

/// One entry of a layer given as a list: a path in the image and what goes there.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LayerEntry {
    /// The path in the image (`usr/bin/app` or `/usr/bin/app`; `..` is refused).
    pub path: String,
    /// What goes there.
    pub source: EntrySource,
}

impl LayerEntry {
    /// `source` at `path` in the image.
    pub fn new(path: impl Into<String>, source: EntrySource) -> Self {
        Self {
            path: path.into(),
            source,
        }
    }
}

/// What a [`LayerEntry`] puts at its path.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EntrySource {
    /// The file, directory (the entry alone, not its contents), symlink or device at this path
    /// on disk.
    Disk(PathBuf),
    /// A whiteout: the path is deleted from the layers below.
    Whiteout,
}

/// Where a layer's content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LayerSource {
    /// A directory's tree (the directory itself is the image's root and is not an entry).
    Directory(PathBuf),
    /// Entries at chosen paths.
    Entries(Vec<LayerEntry>),
    /// A tar file as it is, or a gzip or zstd compressed one (decompressed, by its first
    /// bytes): its entries are checked but not rewritten.
    Tar(PathBuf),
}

/// A tar entry about to be written.
struct Entry {
    path: Vec<u8>,
    kind: Kind,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    xattrs: Vec<(String, Vec<u8>)>,
}

enum Kind {
    File(u64),
    Directory,
    Symlink(Vec<u8>),
    HardLink(Vec<u8>),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
    /// The path is deleted from the layers below.
    Whiteout,
}

/// Writes the layer tar of `source` into `out`.
pub(crate) fn write_tar(source: &LayerSource, options: &TarOptions, out: impl Write) -> Result<()> {
    match source {
        LayerSource::Tar(path) => copy_checked_tar(path, out),
        LayerSource::Directory(root) => {
            let mut writer = TarWriter::new(out, options);
            writer.directory_tree(root)?;
            writer.finish(root)
        }
        LayerSource::Entries(entries) => {
            let mut writer = TarWriter::new(out, options);
            writer.entries(entries)?;
            writer.finish(Path::new("layer entries"))
        }
    }
}

struct TarWriter<'o, W: Write> {
    builder: tar::Builder<W>,
    options: &'o TarOptions,
    /// First image path of each file with several links, by (device, inode).
    links: HashMap<(u64, u64), Vec<u8>>,
}

impl<'o, W: Write> TarWriter<'o, W> {
    fn new(out: W, options: &'o TarOptions) -> Self {
        Self {
            builder: tar::Builder::new(out),
            options,
            links: HashMap::new(),
        }
    }

    fn finish(self, what: &Path) -> Result<()> {
        self.builder
            .into_inner()
            .and_then(|mut out| out.flush())
            .map_err(|e| Error::input(what, "cannot write the layer", e))
    }

    /// A pre-order walk of `root`, siblings sorted by name; only one directory's names are
    /// held at a time per level, so memory follows the tree's depth, not its size.
    fn directory_tree(&mut self, root: &Path) -> Result<()> {
        // The layer's own directory may be reached through a symlink; nothing below it is.
        let meta = fs::metadata(root)
            .map_err(|e| Error::input(root, "cannot read the layer directory", e))?;
        if !meta.is_dir() {
            return Err(Error::input_message(root, "is not a directory"));
        }
        // Each level: its disk path, its image path, and the names still to visit (reversed).
        let mut stack = vec![(root.to_path_buf(), Vec::new(), sorted_names(root)?)];
        while let Some((dir, prefix, names)) = stack.last_mut() {
            let Some(name) = names.pop() else {
                stack.pop();
                continue;
            };
            let disk = dir.join(&name);
            let mut image = prefix.clone();
            if !image.is_empty() {
                image.push(b'/');
            }
            image.extend_from_slice(name.as_bytes());
            let meta = fs::symlink_metadata(&disk)
                .map_err(|e| Error::input(&disk, "cannot read the file's metadata", e))?;
            self.disk_entry(&disk, image.clone(), &meta)?;
            if meta.is_dir() {
                let names = sorted_names(&disk)?;
                stack.push((disk, image, names));
            }
        }
        Ok(())
    }

    fn entries(&mut self, entries: &[LayerEntry]) -> Result<()> {
        // Keyed by path components, so the map's order is the walk's order: a directory
        // right before its contents, siblings by name.
        let mut sorted: BTreeMap<Vec<Vec<u8>>, &EntrySource> = BTreeMap::new();
        for entry in entries {
            let components = image_components(&entry.path)?;
            if sorted.insert(components, &entry.source).is_some() {
                return Err(Error::input_message(
                    Path::new(&entry.path),
                    "is listed twice in the layer",
                ));
            }
        }
        let mut made: BTreeSet<Vec<Vec<u8>>> = BTreeSet::new();
        for components in sorted.keys() {
            for depth in 1..components.len() {
                let parent = &components[..depth];
                if !sorted.contains_key(parent) && !made.contains(parent) {
                    made.insert(parent.to_vec());
                }
            }
        }
        let mut all: BTreeMap<Vec<Vec<u8>>, Option<&EntrySource>> =
            sorted.into_iter().map(|(k, v)| (k, Some(v))).collect();
        all.extend(made.into_iter().map(|k| (k, None)));
        for (components, source) in all {
            let image = components.join(&b'/');
            match source {
                None => self.made_directory(image)?,
                Some(EntrySource::Whiteout) => self.whiteout(&components)?,
                Some(EntrySource::Disk(disk)) => {
                    let meta = fs::symlink_metadata(disk)
                        .map_err(|e| Error::input(disk, "cannot read the file's metadata", e))?;
                    self.disk_entry(disk, image, &meta)?;
                }
            }
        }
        Ok(())
    }

    fn owner(&self, meta: Option<&Metadata>) -> (u64, u64) {
        match (self.options.owner, meta) {
            (Some((uid, gid)), _) => (u64::from(uid), u64::from(gid)),
            (None, Some(meta)) => (u64::from(meta.uid()), u64::from(meta.gid())),
            (None, None) => (0, 0),
        }
    }

    fn made_directory(&mut self, path: Vec<u8>) -> Result<()> {
        let (uid, gid) = self.owner(None);
        let entry = Entry {
            path,
            kind: Kind::Directory,
            mode: 0o755,
            uid,
            gid,
            mtime: self.options.mtime.made(),
            xattrs: Vec::new(),
        };
        self.append(&entry, io::empty(), Path::new("layer entries"))
    }

    fn whiteout(&mut self, components: &[Vec<u8>]) -> Result<()> {
        let (uid, gid) = self.owner(None);
        // `append_entry` names it `.wh.NAME` in its directory.
        let entry = Entry {
            path: components.join(&b'/'),
            kind: Kind::Whiteout,
            mode: 0o644,
            uid,
            gid,
            mtime: self.options.mtime.made(),
            xattrs: Vec::new(),
        };
        self.append(&entry, io::empty(), Path::new("layer entries"))
    }

    fn disk_entry(&mut self, disk: &Path, path: Vec<u8>, meta: &Metadata) -> Result<()> {
        let file_type = meta.file_type();
        let (uid, gid) = self.owner(Some(meta));
        let mut entry = Entry {
            path,
            kind: Kind::Directory,
            mode: meta.mode() & 0o7777,
            uid,
            gid,
            mtime: self.options.mtime.apply(meta.mtime()),
            xattrs: if self.options.xattrs {
                read_xattrs(disk)?
            } else {
                Vec::new()
            },
        };
        if file_type.is_dir() {
            return self.append(&entry, io::empty(), disk);
        }
        if file_type.is_symlink() {
            let target = fs::read_link(disk)
                .map_err(|e| Error::input(disk, "cannot read the symlink", e))?;
            entry.kind = Kind::Symlink(target.into_os_string().into_vec());
            return self.append(&entry, io::empty(), disk);
        }
        if file_type.is_socket() {
            return Err(Error::input_message(
                disk,
                "is a socket, which a layer cannot hold",
            ));
        }
        if file_type.is_fifo() {
            entry.kind = Kind::Fifo;
            return self.append(&entry, io::empty(), disk);
        }
        if file_type.is_char_device() || file_type.is_block_device() {
            let (major, minor) = split_device(meta.rdev());
            entry.kind = if file_type.is_char_device() {
                Kind::Char(major, minor)
            } else {
                Kind::Block(major, minor)
            };
            return self.append(&entry, io::empty(), disk);
        }
        // A regular file: a later path of a file with several links is a hard link to the first.
        if meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&key) {
                entry.kind = Kind::HardLink(first.clone());
                entry.xattrs.clear();
                return self.append(&entry, io::empty(), disk);
            }
            self.links.insert(key, entry.path.clone());
        }
        let file = File::open(disk)
            .map_err(|e| Error::input(disk, "cannot open the file to read it", e))?;
        let opened = file
            .metadata()
            .map_err(|e| Error::input(disk, "cannot read the file's metadata", e))?;
        if (opened.dev(), opened.ino()) != (meta.dev(), meta.ino()) {
            return Err(Error::input_message(
                disk,
                "was replaced while the layer was written",
            ));
        }
        entry.kind = Kind::File(meta.len());
        let mut exact = ExactSize {
            inner: file,
            left: meta.len(),
            path: disk,
        };
        self.append(&entry, &mut exact, disk)?;
        exact.check_end()
    }

    fn append(&mut self, entry: &Entry, data: impl Read, disk: &Path) -> Result<()> {
        let (kind, link, size, device) = match &entry.kind {
            Kind::File(size) => (EntryKind::File, None, *size, (0, 0)),
            Kind::Directory => (EntryKind::Directory, None, 0, (0, 0)),
            Kind::Symlink(target) => (EntryKind::Symlink, Some(target.as_slice()), 0, (0, 0)),
            Kind::HardLink(target) => (EntryKind::HardLink, Some(target.as_slice()), 0, (0, 0)),
            Kind::Char(major, minor) => (EntryKind::CharDevice, None, 0, (*major, *minor)),
            Kind::Block(major, minor) => (EntryKind::BlockDevice, None, 0, (*major, *minor)),
            Kind::Fifo => (EntryKind::Fifo, None, 0, (0, 0)),
            Kind::Whiteout => (EntryKind::Whiteout, None, 0, (0, 0)),
        };
        let meta = EntryMeta {
            path: &entry.path,
            kind,
            link,
            mode: entry.mode,
            uid: entry.uid,
            gid: entry.gid,
            mtime: entry.mtime,
            size,
            device,
            xattrs: &entry.xattrs,
        };
        append_entry(&mut self.builder, &meta, data).map_err(|e| {
            // The builder reads the file too: say which side failed.
            let message = if e.kind() == io::ErrorKind::UnexpectedEof {
                "shrank while the layer was written"
            } else if e.get_ref().is_some_and(|inner| inner.is::<ReadFailure>()) {
                "cannot read the file"
            } else {
                "cannot write the layer"
            };
            Error::input(disk, message, e)
        })
    }
}

/// A file's content of exactly the size its metadata gave, or an error naming the file.
struct ExactSize<'p> {
    inner: File,
    left: u64,
    path: &'p Path,
}

impl ExactSize<'_> {
    fn check_end(&mut self) -> Result<()> {
        let mut probe = [0u8; 1];
        match self.inner.read(&mut probe) {
            Ok(0) => Ok(()),
            Ok(_) => Err(Error::input_message(
                self.path,
                "grew while the layer was written",
            )),
            Err(e) => Err(Error::input(self.path, "cannot read the file", e)),
        }
    }
}

impl Read for ExactSize<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self
            .inner
            .read(&mut buf[..want])
            .map_err(|e| io::Error::new(e.kind(), ReadFailure(e)))?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{} shrank while the layer was written ({} bytes missing)",
                    self.path.display(),
                    self.left
                ),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// A failure reading a file's content, told apart from a failure writing the layer.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ReadFailure(io::Error);

fn sorted_names(dir: &Path) -> Result<Vec<OsString>> {
    let mut names = Vec::new();
    for item in fs::read_dir(dir).map_err(|e| Error::input(dir, "cannot list the directory", e))? {
        let item = item.map_err(|e| Error::input(dir, "cannot list the directory", e))?;
        names.push(item.file_name());
    }
    // Reversed, so that popping from the end visits names in byte order.
    names.sort_unstable_by(|a, b| b.as_bytes().cmp(a.as_bytes()));
    Ok(names)
}

/// The components of a path in the image; `.` and empty components are dropped, `..` is
/// refused (it would name something outside the image's root).
fn image_components(path: &str) -> Result<Vec<Vec<u8>>> {
    let mut components = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(Error::input_message(
                    Path::new(path),
                    "has a `..` component, which would leave the image's root",
                ));
            }
            _ => components.push(part.as_bytes().to_vec()),
        }
    }
    if components.is_empty() {
        return Err(Error::input_message(
            Path::new(path),
            "names the image's root, not an entry in it",
        ));
    }
    Ok(components)
}

fn read_xattrs(path: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let names = match xattr::list(path) {
        Ok(names) => names,
        // Filesystems without extended attributes (some tmpfs, network mounts) have none.
        Err(e) if e.kind() == io::ErrorKind::Unsupported || e.raw_os_error() == Some(95) => {
            return Ok(Vec::new());
        }
        Err(e) => return Err(Error::input(path, "cannot list extended attributes", e)),
    };
    let mut xattrs = Vec::new();
    for name in names {
        let Some(key) = name.to_str() else {
            return Err(Error::input_message(
                path,
                "has an extended attribute whose name is not UTF-8",
            ));
        };
        if HOST_XATTRS.contains(&key) {
            continue;
        }
        if let Some(value) = xattr::get(path, &name)
            .map_err(|e| Error::input(path, "cannot read an extended attribute", e))?
        {
            xattrs.push((key.to_owned(), value));
        }
    }
    xattrs.sort();
    Ok(xattrs)
}

/// Linux's encoding of device numbers (glibc's `gnu_dev_major`/`gnu_dev_minor`).
fn split_device(rdev: u64) -> (u32, u32) {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (
        u32::try_from(major).unwrap_or(u32::MAX),
        u32::try_from(minor).unwrap_or(u32::MAX),
    )
}

/// Copies a tar file (decompressed when its first bytes say gzip or zstd) into `out`,
/// checking every entry as it passes: a tar cut short is an error naming the file.
fn copy_checked_tar(path: &Path, out: impl Write) -> Result<()> {
    let file = File::open(path).map_err(|e| Error::input(path, "cannot open the tar", e))?;
    let mut buffered = io::BufReader::with_capacity(256 << 10, file);
    let first = io::BufRead::fill_buf(&mut buffered)
        .map_err(|e| Error::input(path, "cannot read the tar", e))?;
    let plain: Box<dyn Read> = match oci_store::layer::sniff_compression(first) {
        oci_types::media_type::Compression::Gzip => {
            Box::new(flate2::bufread::MultiGzDecoder::new(buffered))
        }
        oci_types::media_type::Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(buffered)
                .map_err(|e| Error::input(path, "cannot read the zstd stream", e))?,
        ),
        _ => Box::new(buffered),
    };
    let tee = Tee {
        inner: plain,
        out,
        copied: 0,
    };
    let mut archive = tar::Archive::new(tee);
    let bad = |e: io::Error| Error::input(path, "is not a readable tar", e);
    for item in archive.entries().map_err(bad)? {
        let mut item = item.map_err(bad)?;
        let expected = item.header().entry_size().map_err(bad)?;
        let name = String::from_utf8_lossy(&item.path_bytes()).into_owned();
        let copied = io::copy(&mut item, &mut io::sink()).map_err(bad)?;
        if copied < expected {
            return Err(Error::input_message(
                path,
                &format!("ends inside entry {name:?} ({copied} of its {expected} bytes)"),
            ));
        }
    }
    // Whatever follows the end-of-archive blocks is part of the layer as given.
    let mut tee = archive.into_inner();
    io::copy(&mut tee, &mut io::sink()).map_err(bad)?;
    if tee.copied % 512 != 0 {
        return Err(Error::input_message(
            path,
            &format!("ends inside a tar block ({} bytes)", tee.copied),
        ));
    }
    tee.out
        .flush()
        .map_err(|e| Error::input(path, "cannot write the layer", e))
}

/// Everything read through it is also written to `out`.
struct Tee<R, W> {
    inner: R,
    out: W,
    copied: u64,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.write_all(&buf[..n])?;
        self.copied += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
