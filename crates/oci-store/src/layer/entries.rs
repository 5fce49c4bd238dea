//! A layer's tar read entry by entry, as the image-spec means it: names cleaned and taken
//! inside the image's root, whiteouts told apart from files, PAX and GNU extensions applied,
//! and limits against hostile archives.
//!
//! The `tar` crate is used in raw mode, so that every extension header is seen here before it
//! is read: a PAX record or a long name is refused past its limit instead of being read into
//! memory whole, and a PAX `size` that disagrees with the header's (CVE-2026-33055, where
//! readers disagreed on where the next entry starts) is an error naming the entry.

use std::io::{self, Read};

use oci_types::Digest;

use crate::{Error, Result};

/// The name that makes its directory opaque: the lower layers' contents of it are hidden.
pub const OPAQUE_WHITEOUT: &[u8] = b".wh..wh..opq";
/// The prefix of a whiteout: `.wh.NAME` deletes `NAME` of the lower layers.
pub const WHITEOUT_PREFIX: &[u8] = b".wh.";

/// How much a layer's tar may hold, against decompression bombs and hostile archives. Each
/// limit reached is an error naming it; the total size of an image is limited by the reader
/// ([`LayerReader::with_limit`](super::LayerReader::with_limit)) and the consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LayerLimits {
    /// Entries in one layer (default 1,000,000: a large distribution has ~100,000 files).
    pub max_entries: u64,
    /// Bytes of a path or link target (default 4096, Linux's `PATH_MAX`).
    pub max_path: usize,
    /// Bytes of one entry's PAX records (default 1 MiB: long names and xattrs need far less).
    pub max_pax: u64,
    /// Components of a path (default 128: the deepest trees of real images, `node_modules`
    /// among them, go a few dozen deep). Each level of a path is a directory to make and
    /// remember: 2,000 levels of one-byte names fit in `max_path`, and a few thousand such
    /// entries took gigabytes of memory and inodes in unpack and export.
    pub max_depth: usize,
    /// Bytes of the paths, link targets and extended attributes of all entries of one layer
    /// (default 256 MiB: a large distribution's ~100,000 files name about 10 MiB). A consumer
    /// that remembers entries (unpack, export) holds this much per layer at most; without
    /// it, a million entries of 4 KiB names, a few MiB compressed, were 4 GiB of memory.
    pub max_metadata: u64,
    /// The same, over all the layers of an image, for the consumers that remember entries
    /// across layers ([`merge_layers`](super::merge_layers), unpack's applier), which
    /// count it themselves ([`TarEntry::metadata_len`]); default 1 GiB.
    pub max_image_metadata: u64,
}

impl Default for LayerLimits {
    fn default() -> Self {
        Self {
            max_entries: 1_000_000,
            max_path: 4096,
            max_pax: 1 << 20,
            max_depth: 128,
            max_metadata: 256 << 20,
            max_image_metadata: 1 << 30,
        }
    }
}

impl LayerLimits {
    /// Sets the most entries one layer may have.
    #[must_use]
    pub fn with_max_entries(mut self, max: u64) -> Self {
        self.max_entries = max;
        self
    }

    /// Sets the longest path or link target.
    #[must_use]
    pub fn with_max_path(mut self, max: usize) -> Self {
        self.max_path = max;
        self
    }

    /// Sets the most components of a path.
    #[must_use]
    pub fn with_max_depth(mut self, max: usize) -> Self {
        self.max_depth = max;
        self
    }

    /// Sets the most bytes of paths, link targets and extended attributes of one layer.
    #[must_use]
    pub fn with_max_metadata(mut self, max: u64) -> Self {
        self.max_metadata = max;
        self
    }

    /// Sets the most bytes of paths, link targets and extended attributes of an image.
    #[must_use]
    pub fn with_max_image_metadata(mut self, max: u64) -> Self {
        self.max_image_metadata = max;
        self
    }

    /// Sets the most bytes of one entry's PAX records.
    #[must_use]
    pub fn with_max_pax(mut self, max: u64) -> Self {
        self.max_pax = max;
        self
    }
}

/// What an entry of a layer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EntryKind {
    /// A regular file, with `size` bytes of data.
    File,
    /// A directory.
    Directory,
    /// A symbolic link; its target is [`TarEntry::link`] as written.
    Symlink,
    /// A hard link to [`TarEntry::link`], a path in the image.
    HardLink,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A named pipe.
    Fifo,
    /// A whiteout: [`TarEntry::path`] is deleted from the lower layers.
    Whiteout,
    /// An opaque whiteout: the lower layers' contents of the directory [`TarEntry::path`]
    /// are hidden (the directory itself stays).
    Opaque,
}

/// One entry of a layer.
pub struct TarEntry<'a> {
    /// The path in the image: relative, `/`-separated, without `.`, empty or trailing
    /// components; `..` and a leading `/` are taken inside the root, as umoci and the Go
    /// implementations clean them (`/../etc` is `etc`). Empty for the root itself.
    pub path: Vec<u8>,
    /// The name as the archive gives it, for messages.
    pub raw_name: String,
    /// What the entry is.
    pub kind: EntryKind,
    /// A symlink's target as written, or a hard link's target cleaned like `path`.
    pub link: Option<Vec<u8>>,
    /// Permission bits (with set-id and sticky).
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: u64,
    /// Bytes of data (files only).
    pub size: u64,
    /// Device numbers (devices only).
    pub device: (u32, u32),
    /// Extended attributes (`SCHILY.xattr.*`), in the order given.
    pub xattrs: Vec<(String, Vec<u8>)>,
    /// The file's data: exactly `size` bytes.
    pub data: &'a mut dyn Read,
}

impl TarEntry<'_> {
    /// The bytes of its path, link target and extended attributes: what a consumer that
    /// remembers it holds, counted against [`LayerLimits::max_metadata`] and
    /// [`LayerLimits::max_image_metadata`].
    pub fn metadata_len(&self) -> u64 {
        let xattrs: usize = self
            .xattrs
            .iter()
            .map(|(name, value)| name.len() + value.len())
            .sum();
        (self.path.len() + self.link.as_ref().map_or(0, Vec::len) + xattrs) as u64
    }
}

impl std::fmt::Debug for TarEntry<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TarEntry")
            .field("path", &String::from_utf8_lossy(&self.path))
            .field("kind", &self.kind)
            .field("link", &self.link.as_deref().map(String::from_utf8_lossy))
            .field("mode", &format_args!("{:o}", self.mode))
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// Calls `visit` with each entry of the layer `layer` whose uncompressed tar `reader` gives,
/// in order. An error of `visit` stops the reading and is returned as it is.
pub fn read_entries(
    layer: &Digest,
    reader: impl Read,
    limits: &LayerLimits,
    mut visit: impl FnMut(TarEntry<'_>) -> Result<()>,
) -> Result<()> {
    let bad = |entry: Option<&str>, reason: String| Error::LayerInvalid {
        layer: layer.clone(),
        entry: entry.map(str::to_owned),
        reason,
    };
    let tar_error = |e: io::Error| match super::into_store_error(e, String::new) {
        Error::Io { source, .. } => bad(None, format!("not a readable tar: {source}")),
        other => other,
    };
    let mut archive = tar::Archive::new(reader);
    let mut entries = archive.entries().map_err(tar_error)?.raw(true);
    let mut count = 0u64;
    let mut metadata = 0u64;
    let mut pax: Option<Vec<u8>> = None;
    let mut long_name: Option<Vec<u8>> = None;
    let mut long_link: Option<Vec<u8>> = None;
    for entry in &mut entries {
        let mut entry = entry.map_err(tar_error)?;
        let header = entry.header().clone();
        let header_name = String::from_utf8_lossy(&header.path_bytes()).into_owned();
        let kind = header.entry_type();
        let header_size = header.entry_size().map_err(tar_error)?;
        let extension_limit = |what: &str, limit: u64| {
            if header_size > limit {
                Err(bad(
                    Some(&header_name),
                    format!("{what} of {header_size} bytes is over the limit of {limit}"),
                ))
            } else {
                Ok(())
            }
        };
        match kind {
            tar::EntryType::XHeader => {
                extension_limit("PAX header", limits.max_pax)?;
                pax = Some(read_small(&mut entry, header_size).map_err(tar_error)?);
                continue;
            }
            tar::EntryType::XGlobalHeader => {
                // Global records apply to every later entry; none of them is needed to lay
                // out files, so they are read (bounded) and ignored.
                extension_limit("PAX global header", limits.max_pax)?;
                read_small(&mut entry, header_size).map_err(tar_error)?;
                continue;
            }
            tar::EntryType::GNULongName => {
                extension_limit("GNU long name", limits.max_path as u64 + 1)?;
                long_name = Some(trim_nul(
                    read_small(&mut entry, header_size).map_err(tar_error)?,
                ));
                continue;
            }
            tar::EntryType::GNULongLink => {
                extension_limit("GNU long link name", limits.max_path as u64 + 1)?;
                long_link = Some(trim_nul(
                    read_small(&mut entry, header_size).map_err(tar_error)?,
                ));
                continue;
            }
            _ => {}
        }
        count += 1;
        if count > limits.max_entries {
            return Err(bad(
                None,
                format!("more than {} entries (the limit)", limits.max_entries),
            ));
        }
        let records = pax.take();
        let mut name = long_name
            .take()
            .unwrap_or_else(|| header.path_bytes().into_owned());
        let mut link = long_link
            .take()
            .or_else(|| header.link_name_bytes().map(|l| l.into_owned()));
        let mut uid = header.uid().unwrap_or(0);
        let mut gid = header.gid().unwrap_or(0);
        let mut mtime = header.mtime().unwrap_or(0);
        let mut xattrs = Vec::new();
        if let Some(records) = &records {
            for record in tar::PaxExtensions::new(records) {
                let record = record
                    .map_err(|e| bad(Some(&header_name), format!("malformed PAX record: {e}")))?;
                let Ok(key) = record.key() else { continue };
                let value = record.value_bytes();
                let number = || {
                    std::str::from_utf8(value)
                        .ok()
                        .and_then(|v| v.split('.').next())
                        .and_then(|v| v.parse::<u64>().ok())
                };
                match key {
                    "path" => name = value.to_vec(),
                    "linkpath" => link = Some(value.to_vec()),
                    "uid" => uid = number().unwrap_or(uid),
                    "gid" => gid = number().unwrap_or(gid),
                    "mtime" => mtime = number().unwrap_or(mtime),
                    "size" => {
                        if number() != Some(header_size) {
                            return Err(bad(
                                Some(&header_name),
                                format!(
                                    "its PAX size {} disagrees with its header's size {header_size}",
                                    String::from_utf8_lossy(value)
                                ),
                            ));
                        }
                    }
                    key if key.starts_with("GNU.sparse.") => {
                        return Err(bad(
                            Some(&header_name),
                            "sparse files are not supported in layers".to_owned(),
                        ));
                    }
                    key => {
                        if let Some(attribute) = key.strip_prefix("SCHILY.xattr.") {
                            xattrs.push((attribute.to_owned(), value.to_vec()));
                        }
                    }
                }
            }
        }
        let raw_name = String::from_utf8_lossy(&name).into_owned();
        if name.len() > limits.max_path {
            return Err(bad(
                Some(&String::from_utf8_lossy(&name[..name.len().min(200)])),
                format!(
                    "a name of {} bytes is over the limit of {}",
                    name.len(),
                    limits.max_path
                ),
            ));
        }
        if link.as_ref().is_some_and(|l| l.len() > limits.max_path) {
            return Err(bad(
                Some(&raw_name),
                format!("a link target over the limit of {} bytes", limits.max_path),
            ));
        }
        let mut path = clean(&name);
        let depth = path.split(|b| *b == b'/').count();
        if depth > limits.max_depth {
            return Err(bad(
                Some(&String::from_utf8_lossy(&name[..name.len().min(200)])),
                format!(
                    "a path of {depth} components is over the limit of {}",
                    limits.max_depth
                ),
            ));
        }
        let kind = match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => EntryKind::File,
            // Old archives mark directories by a trailing slash on a regular entry.
            tar::EntryType::Directory => EntryKind::Directory,
            tar::EntryType::Symlink => EntryKind::Symlink,
            tar::EntryType::Link => EntryKind::HardLink,
            tar::EntryType::Char => EntryKind::CharDevice,
            tar::EntryType::Block => EntryKind::BlockDevice,
            tar::EntryType::Fifo => EntryKind::Fifo,
            tar::EntryType::GNUSparse => {
                return Err(bad(
                    Some(&raw_name),
                    "sparse files are not supported in layers".to_owned(),
                ));
            }
            other => {
                tracing::warn!(%layer, entry = %raw_name, kind = ?other, "skipping a tar entry of a kind layers do not use");
                continue;
            }
        };
        // A whiteout is told by its name, whatever its type (as containerd reads them).
        let kind = match split_name(&path) {
            (parent, b".wh..wh..opq") => {
                path = parent.to_vec();
                EntryKind::Opaque
            }
            // aufs' own bookkeeping (`.wh..wh.plnk`, `.wh..wh.aufs`): not content.
            (_, name) if name.starts_with(b".wh..wh.") => continue,
            // `.wh..` and `.wh...` would delete the directory they are in, or the one above
            // it: not a name in it.
            (_, b".wh." | b".wh.." | b".wh...") => {
                return Err(bad(
                    Some(&raw_name),
                    "a whiteout that names no entry of its directory (nothing, `.` or `..`)"
                        .to_owned(),
                ));
            }
            (parent, name) if name.starts_with(WHITEOUT_PREFIX) => {
                let mut deleted = parent.to_vec();
                if !deleted.is_empty() {
                    deleted.push(b'/');
                }
                deleted.extend_from_slice(&name[WHITEOUT_PREFIX.len()..]);
                path = deleted;
                EntryKind::Whiteout
            }
            // Old archives mark directories by a trailing slash on a regular entry.
            _ if kind == EntryKind::File && name.ends_with(b"/") => EntryKind::Directory,
            _ => kind,
        };
        if kind == EntryKind::HardLink {
            link = link.map(|target| clean(&target));
        }
        let device = match kind {
            EntryKind::CharDevice | EntryKind::BlockDevice => (
                header.device_major().ok().flatten().unwrap_or(0),
                header.device_minor().ok().flatten().unwrap_or(0),
            ),
            _ => (0, 0),
        };
        let size = if kind == EntryKind::File {
            header_size
        } else {
            0
        };
        let entry = TarEntry {
            path,
            raw_name,
            kind,
            link,
            mode: header.mode().unwrap_or(0o644) & 0o7777,
            uid,
            gid,
            mtime,
            size,
            device,
            xattrs,
            data: &mut entry,
        };
        metadata = metadata.saturating_add(entry.metadata_len());
        if metadata > limits.max_metadata {
            return Err(bad(
                Some(&entry.raw_name),
                format!(
                    "more than {} bytes of paths, link targets and extended attributes (the limit)",
                    limits.max_metadata
                ),
            ));
        }
        visit(entry)?;
    }
    if pax.is_some() || long_name.is_some() || long_link.is_some() {
        return Err(bad(
            None,
            "the tar ends with an extension header that describes no entry".to_owned(),
        ));
    }
    Ok(())
}

/// A path in the image from a name in a tar: `/`-separated components, `.` and empty ones
/// dropped, `..` removing the one before it but never going above the root.
pub fn clean(name: &[u8]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in name.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    parts.join(&b'/')
}

/// The parent and the last component of a clean path (`(b"", path)` at the top).
pub fn split_name(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|b| *b == b'/') {
        Some(slash) => (&path[..slash], &path[slash + 1..]),
        None => (&[], path),
    }
}

fn read_small(entry: &mut impl Read, size: u64) -> io::Result<Vec<u8>> {
    let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    entry.take(size).read_to_end(&mut data)?;
    Ok(data)
}

fn trim_nul(mut bytes: Vec<u8>) -> Vec<u8> {
    while bytes.last() == Some(&0) {
        bytes.pop();
    }
    bytes
}

#[cfg(test)]
mod tests;
