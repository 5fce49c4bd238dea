//! Applying layers to a root filesystem, entry by entry, as the image-spec's changeset rules
//! say (and as umoci does them):
//! - an entry replaces whatever was at its path, except that a directory onto a directory
//!   keeps the contents and takes the new metadata;
//! - `.wh.NAME` deletes `NAME` and `.wh..wh..opq` empties its directory, wherever they stand
//!   in the layer, of what the *lower* layers put there: entries of the same layer are kept;
//! - hard links point at paths in the image (of this layer or lower ones), symlinks keep
//!   their target as written;
//! - permissions, owners (as root), extended attributes and times are set on what was
//!   created; directories get their mode and time once all layers are in, deepest first, so
//!   that adding their contents neither changes their time nor is refused by their mode.
//!
//! Without root (or when asked to be rootless), owners are left as they come and device
//! nodes become empty files, each said once in a warning.

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use oci_store::layer::{EntryKind, ImageMetadata, LayerLimits, PathSet, TarEntry, split_name};
use oci_types::Digest;
use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid, XattrFlags};

use crate::error::{Error, Result};
use crate::root::{Root, list};

/// What becomes of owners and devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Privileges {
    /// Owners are set and device nodes made.
    pub(crate) as_root: bool,
}

/// A directory's metadata, set after all layers.
#[derive(Debug, Clone)]
struct DirMeta {
    mode: u32,
    mtime: u64,
    /// Its POSIX ACLs (`system.posix_acl_access`, `system.posix_acl_default`), set last with
    /// its mode: an access ACL sets the permission bits as a mode does, and a restrictive one
    /// set at once would keep the unpack (rootless) from making what the directory holds,
    /// and the cleanup of a failed unpack from removing it.
    acls: Vec<(String, Vec<u8>)>,
}

/// Whether an extended attribute is a POSIX ACL, which directories get last.
fn is_acl(key: &str) -> bool {
    key.starts_with("system.posix_acl_")
}

/// The ACLs among a directory entry's extended attributes.
fn acls_of(entry: &TarEntry<'_>) -> Vec<(String, Vec<u8>)> {
    let acls = entry.xattrs.iter().filter(|(key, _)| is_acl(key));
    acls.map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

/// Applies layers to a root, in order.
#[derive(Debug)]
pub(crate) struct Applier {
    root: Root,
    privileges: Privileges,
    dirs: BTreeMap<Vec<u8>, DirMeta>,
    /// Paths the current layer made, and every parent of them.
    made: HashSet<Vec<u8>>,
    made_parents: HashSet<Vec<u8>>,
    /// Directories the current layer has emptied of lower layers' contents: all that is in
    /// them now is this layer's, so emptying them again (a repeated opaque whiteout) has
    /// nothing to do, and is not done (each time listed the whole tree the layer made there).
    emptied: PathSet,
    warned_devices: bool,
    warned_xattrs: bool,
    /// Bytes of file content written, against the image's limit.
    pub(crate) written: u64,
    max_written: u64,
    /// Entries applied, against the image's limit: each directory, link or empty file is an
    /// inode and disk space that the byte count does not see.
    entries: u64,
    max_entries: u64,
    /// Paths, link targets and extended attributes, some of which are remembered across
    /// layers (directories' metadata).
    metadata: ImageMetadata,
    /// Bytes of the parents in `made_parents`, against the layer's limit on names.
    implied_names: u64,
    max_layer_names: u64,
}

impl Applier {
    pub(crate) fn new(
        root: Root,
        privileges: Privileges,
        max_written: u64,
        max_entries: u64,
        limits: &LayerLimits,
    ) -> Self {
        Self {
            root,
            privileges,
            dirs: BTreeMap::new(),
            made: HashSet::new(),
            made_parents: HashSet::new(),
            emptied: PathSet::default(),
            warned_devices: false,
            warned_xattrs: false,
            written: 0,
            max_written,
            entries: 0,
            max_entries,
            metadata: ImageMetadata::new(limits),
            implied_names: 0,
            max_layer_names: limits.max_metadata,
        }
    }

    /// Starts a new layer: its whiteouts apply to what is there now.
    pub(crate) fn begin_layer(&mut self) {
        self.made.clear();
        self.made_parents.clear();
        self.implied_names = 0;
        self.emptied.clear();
    }

    /// Applies one entry of `layer`.
    pub(crate) fn apply(&mut self, layer: &Digest, entry: TarEntry<'_>) -> Result<()> {
        let path = entry.path.clone();
        let failed = |message: &str, source: io::Error| Error::Apply {
            layer: layer.clone(),
            entry: String::from_utf8_lossy(&path).into_owned(),
            message: message.to_owned(),
            source: Some(source),
        };
        self.metadata
            .count(layer, &entry)
            .map_err(|e| Error::store("reading the layers", e))?;
        self.entries += 1;
        // Directories made as missing parents are inodes and work too (a path of 120
        // components can imply 119 of them).
        let implied = self.root.implied_dirs;
        if self.entries.saturating_add(implied) > self.max_entries {
            let counting = match implied {
                0 => String::new(),
                n => format!(", counting {n} directories its paths imply"),
            };
            return Err(Error::Invalid {
                message: format!(
                    "the image has more than {} entries (the limit){counting}, at layer {layer}",
                    self.max_entries
                ),
            });
        }
        match entry.kind {
            EntryKind::Whiteout => {
                return self
                    .remove_lower(&entry.path)
                    .map_err(|e| failed("cannot apply the whiteout", e));
            }
            EntryKind::Opaque => {
                return self
                    .empty_lower(&entry.path)
                    .map_err(|e| failed("cannot apply the opaque whiteout", e));
            }
            _ => {}
        }
        if entry.path.is_empty() {
            // The root itself: only a directory's metadata can apply to it (a layer that
            // makes `.` a symlink, umoci's CVE-2021-29136, is refused here).
            if entry.kind != EntryKind::Directory {
                return Err(Error::Apply {
                    layer: layer.clone(),
                    entry: entry.raw_name,
                    message: "an entry for the root itself that is not a directory".to_owned(),
                    source: None,
                });
            }
            self.dirs.insert(
                Vec::new(),
                DirMeta {
                    mode: entry.mode,
                    mtime: entry.mtime,
                    acls: acls_of(&entry),
                },
            );
            let root = self
                .root
                .resolve(b"", OFlags::RDONLY | OFlags::DIRECTORY)
                .map_err(|e| failed("cannot open the root", e))?;
            return self
                .owner_and_xattrs(root.as_fd(), &entry, self.privileges)
                .map_err(|e| failed("cannot set the root's owner or attributes", e));
        }
        self.note_made(layer, &entry.path)?;
        if entry.kind != EntryKind::Directory {
            // Whatever was there goes, and with it the metadata of directories it held.
            self.forget_dirs(&entry.path);
        }
        let (parent, name) = split_name(&entry.path);
        let name = OsStr::from_bytes(name).to_owned();
        let privileges = self.privileges;
        match entry.kind {
            EntryKind::Directory => {
                let dir = self
                    .root
                    .parent(parent, true)
                    .map_err(|e| failed("cannot reach its directory", e))?;
                let existing = rustix::fs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW).ok();
                let is_dir = existing
                    .is_some_and(|s| FileType::from_raw_mode(s.st_mode) == FileType::Directory);
                if !is_dir {
                    if existing.is_some() {
                        Root::remove(dir, &name)
                            .map_err(|e| failed("cannot replace what is there", e))?;
                    }
                    // Owner-writable until the end, when its real mode is set.
                    rustix::fs::mkdirat(dir, &name, Mode::from_raw_mode(0o700 | entry.mode))
                        .map_err(|e| failed("cannot make the directory", e.into()))?;
                }
                let fd = rustix::fs::openat(
                    dir,
                    &name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| failed("cannot open the directory", e.into()))?;
                if !is_dir {
                    self.root.forget();
                }
                self.owner_and_xattrs(fd.as_fd(), &entry, privileges)
                    .map_err(|e| failed("cannot set its owner or attributes", e))?;
                self.dirs.insert(
                    entry.path.clone(),
                    DirMeta {
                        mode: entry.mode,
                        mtime: entry.mtime,
                        acls: acls_of(&entry),
                    },
                );
            }
            EntryKind::File => {
                self.written = self.written.saturating_add(entry.size);
                if self.written > self.max_written {
                    return Err(Error::Invalid {
                        message: format!(
                            "the image holds more than {} bytes of files (the limit), at layer {layer}",
                            self.max_written
                        ),
                    });
                }
                let fd = self
                    .create(parent, &name)
                    .map_err(|e| failed("cannot create the file", e))?;
                let mut file = std::fs::File::from(fd);
                let copied = io::copy(&mut entry.data.take(entry.size), &mut file)
                    .map_err(|e| failed("cannot write the file", e))?;
                if copied != entry.size {
                    return Err(failed(
                        "the layer ends inside the file",
                        io::Error::from(io::ErrorKind::UnexpectedEof),
                    ));
                }
                file.flush()
                    .map_err(|e| failed("cannot write the file", e))?;
                self.finish_file(file.as_fd(), &entry, privileges)
                    .map_err(|e| failed("cannot set its metadata", e))?;
            }
            EntryKind::Symlink => {
                let target = entry.link.clone().unwrap_or_default();
                let dir = self
                    .replace(parent, &name)
                    .map_err(|e| failed("cannot replace what is there", e))?;
                rustix::fs::symlinkat(OsStr::from_bytes(&target), dir, &name)
                    .map_err(|e| failed("cannot make the symlink", e.into()))?;
                if privileges.as_root {
                    rustix::fs::chownat(
                        dir,
                        &name,
                        Some(Uid::from_raw(id(entry.uid))),
                        Some(Gid::from_raw(id(entry.gid))),
                        AtFlags::SYMLINK_NOFOLLOW,
                    )
                    .map_err(|e| failed("cannot set its owner", e.into()))?;
                }
                rustix::fs::utimensat(dir, &name, &times(entry.mtime), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| failed("cannot set its time", e.into()))?;
            }
            EntryKind::HardLink => {
                let target = entry.link.clone().unwrap_or_default();
                if target == entry.path {
                    return Ok(());
                }
                let (target_parent, target_name) = split_name(&target);
                let source = self
                    .root
                    .resolve(target_parent, OFlags::PATH | OFlags::DIRECTORY)
                    .map_err(|e| {
                        failed(
                            &format!(
                                "cannot find its target {}",
                                String::from_utf8_lossy(&target)
                            ),
                            e,
                        )
                    })?;
                let dir = self
                    .replace(parent, &name)
                    .map_err(|e| failed("cannot replace what is there", e))?;
                rustix::fs::linkat(
                    &source,
                    OsStr::from_bytes(target_name),
                    dir,
                    &name,
                    AtFlags::empty(),
                )
                .map_err(|e| {
                    failed(
                        &format!("cannot link to {}", String::from_utf8_lossy(&target)),
                        e.into(),
                    )
                })?;
            }
            EntryKind::CharDevice | EntryKind::BlockDevice | EntryKind::Fifo => {
                let kind = match entry.kind {
                    EntryKind::CharDevice => FileType::CharacterDevice,
                    EntryKind::BlockDevice => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                if kind != FileType::Fifo && !privileges.as_root {
                    if !self.warned_devices {
                        tracing::warn!(%layer, entry = %entry.raw_name, "not root: device nodes become empty files");
                        self.warned_devices = true;
                    }
                    let fd = self
                        .create(parent, &name)
                        .map_err(|e| failed("cannot create the file", e))?;
                    self.finish_file(fd.as_fd(), &entry, privileges)
                        .map_err(|e| failed("cannot set its metadata", e))?;
                    return Ok(());
                }
                let dir = self
                    .replace(parent, &name)
                    .map_err(|e| failed("cannot replace what is there", e))?;
                let device = rustix::fs::makedev(entry.device.0, entry.device.1);
                rustix::fs::mknodat(dir, &name, kind, Mode::from_raw_mode(entry.mode), device)
                    .map_err(|e| failed("cannot make the node", e.into()))?;
                if privileges.as_root {
                    rustix::fs::chownat(
                        dir,
                        &name,
                        Some(Uid::from_raw(id(entry.uid))),
                        Some(Gid::from_raw(id(entry.gid))),
                        AtFlags::SYMLINK_NOFOLLOW,
                    )
                    .map_err(|e| failed("cannot set its owner", e.into()))?;
                }
                rustix::fs::chmodat(
                    dir,
                    &name,
                    Mode::from_raw_mode(entry.mode),
                    AtFlags::empty(),
                )
                .map_err(|e| failed("cannot set its mode", e.into()))?;
                rustix::fs::utimensat(dir, &name, &times(entry.mtime), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| failed("cannot set its time", e.into()))?;
            }
            // Whiteouts were applied above; kinds added later are not files to make.
            _ => {}
        }
        Ok(())
    }

    /// Sets the directories' modes and times, deepest first, once every layer is in.
    pub(crate) fn finish(mut self) -> Result<Root> {
        let mut dirs: Vec<(Vec<u8>, DirMeta)> =
            std::mem::take(&mut self.dirs).into_iter().collect();
        dirs.sort_by(|(a, _), (b, _)| {
            let depth =
                |p: &[u8]| p.iter().filter(|c| **c == b'/').count() + usize::from(!p.is_empty());
            depth(b).cmp(&depth(a)).then_with(|| b.cmp(a))
        });
        for (path, meta) in dirs {
            let opened = if path.is_empty() {
                self.root.resolve(b"", OFlags::RDONLY | OFlags::DIRECTORY)
            } else {
                let (parent, name) = split_name(&path);
                self.root
                    .resolve(parent, OFlags::PATH | OFlags::DIRECTORY)
                    .and_then(|dir| {
                        rustix::fs::openat(
                            &dir,
                            OsStr::from_bytes(name),
                            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                            Mode::empty(),
                        )
                        .map_err(io::Error::from)
                    })
            };
            // A later layer may have removed or replaced it.
            let Ok(fd) = opened else { continue };
            let result = rustix::fs::fchmod(&fd, Mode::from_raw_mode(meta.mode))
                .and_then(|()| rustix::fs::futimens(&fd, &times(meta.mtime)));
            result.map_err(|e| Error::Target {
                path: self.root.path().join(OsStr::from_bytes(&path)),
                message: "cannot set the directory's mode and time".to_owned(),
                source: Some(e.into()),
            })?;
            for (key, value) in &meta.acls {
                self.set_xattr(fd.as_fd(), &path, key, value);
            }
        }
        Ok(self.root)
    }

    /// Remembers that this layer made `path`, and so everything above it. The parents are
    /// counted against the layer's limit on names: remembered whole, each parent of each
    /// entry of a layer of deep, distinct paths was 100 times the layer's names in memory.
    fn note_made(&mut self, layer: &Digest, path: &[u8]) -> Result<()> {
        self.made.insert(path.to_vec());
        let mut rest = path;
        while let Some(slash) = rest.iter().rposition(|b| *b == b'/') {
            rest = &rest[..slash];
            if self.made_parents.contains(rest) {
                break;
            }
            self.implied_names = self.implied_names.saturating_add(rest.len() as u64);
            if self.implied_names > self.max_layer_names {
                return Err(Error::Apply {
                    layer: layer.clone(),
                    entry: String::from_utf8_lossy(path).into_owned(),
                    message: format!(
                        "the layer's paths imply more than {} bytes of directories' paths (the limit of a layer's names)",
                        self.max_layer_names
                    ),
                    source: None,
                });
            }
            self.made_parents.insert(rest.to_vec());
        }
        Ok(())
    }

    /// The parent directory of a new entry `name`, with whatever was at the entry's path
    /// removed.
    fn replace(&mut self, parent: &[u8], name: &OsStr) -> io::Result<BorrowedFd<'_>> {
        let removed = {
            let dir = self.root.parent(parent, true)?;
            let exists = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).is_ok();
            if exists {
                Root::remove(dir, name)?;
            }
            exists
        };
        if removed {
            self.root.forget();
        }
        self.root.parent(parent, true)
    }

    /// A new, empty, owner-writable regular file at `name` of `parent`, replacing what was
    /// there.
    fn create(&mut self, parent: &[u8], name: &OsStr) -> io::Result<OwnedFd> {
        let dir = self.replace(parent, name)?;
        Ok(rustix::fs::openat(
            dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?)
    }

    fn finish_file(
        &mut self,
        fd: BorrowedFd<'_>,
        entry: &TarEntry<'_>,
        privileges: Privileges,
    ) -> io::Result<()> {
        self.owner_and_xattrs(fd, entry, privileges)?;
        // After the owner: chown clears set-id bits.
        rustix::fs::fchmod(fd, Mode::from_raw_mode(entry.mode))?;
        rustix::fs::futimens(fd, &times(entry.mtime))?;
        Ok(())
    }

    fn owner_and_xattrs(
        &mut self,
        fd: BorrowedFd<'_>,
        entry: &TarEntry<'_>,
        privileges: Privileges,
    ) -> io::Result<()> {
        if privileges.as_root {
            rustix::fs::fchown(
                fd,
                Some(Uid::from_raw(id(entry.uid))),
                Some(Gid::from_raw(id(entry.gid))),
            )?;
        }
        // A directory's ACLs wait for its mode, at the end (`DirMeta::acls`).
        let directory = entry.kind == EntryKind::Directory;
        for (key, value) in &entry.xattrs {
            if !(directory && is_acl(key)) {
                self.set_xattr(fd, entry.raw_name.as_bytes(), key, value);
            }
        }
        Ok(())
    }

    /// Sets an extended attribute; one that cannot be set is left out, with a warning (once).
    fn set_xattr(&mut self, fd: BorrowedFd<'_>, entry: &[u8], key: &str, value: &[u8]) {
        if let Err(e) = rustix::fs::fsetxattr(fd, key, value, XattrFlags::empty()) {
            // Without privileges, `trusted.*` and `security.*` are refused; some
            // filesystems take none at all.
            if !self.warned_xattrs {
                tracing::warn!(entry = %String::from_utf8_lossy(entry), attribute = %key, error = %e,
                    "extended attributes that cannot be set here are left out");
                self.warned_xattrs = true;
            }
        }
    }

    /// Removes what lower layers put at `path`, keeping what this layer made there.
    fn remove_lower(&mut self, path: &[u8]) -> io::Result<()> {
        if path.is_empty() {
            return self.empty_lower(path);
        }
        if self.made.contains(path) || self.made_parents.contains(path) {
            // This layer made it (or something in it): only lower contents go.
            return self.empty_lower(path);
        }
        let (parent, name) = split_name(path);
        let dir = match self.root.parent(parent, false) {
            Ok(dir) => dir,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        Root::remove(dir, OsStr::from_bytes(name))?;
        self.root.forget();
        self.forget_dirs(path);
        Ok(())
    }

    /// Forgets the metadata of the directory `path` and of every directory below it: they
    /// are gone, and a directory made there later must not get it back.
    fn forget_dirs(&mut self, path: &[u8]) {
        self.dirs.remove(path);
        let mut prefix = path.to_vec();
        prefix.push(b'/');
        let below: Vec<Vec<u8>> = self
            .dirs
            .range(prefix.clone()..)
            .take_while(|(key, _)| key.starts_with(&prefix))
            .map(|(key, _)| key.clone())
            .collect();
        for key in below {
            self.dirs.remove(&key);
        }
    }

    /// Whether `path` or a directory above it was emptied of lower contents in this layer.
    fn within_emptied(&self, path: &[u8]) -> bool {
        // One pass over the path for all its parents: a layer of many deep opaque whiteouts
        // hashed each parent whole, hundreds of KiB per entry.
        !self.emptied.is_empty()
            && (self.emptied.contains(b"") || self.emptied.contains_or_within(path))
    }

    /// Removes the lower layers' contents of the directory `path` (if it is one).
    fn empty_lower(&mut self, path: &[u8]) -> io::Result<()> {
        if self.within_emptied(path) {
            return Ok(());
        }
        let dir = match self.root.resolve(path, OFlags::RDONLY | OFlags::DIRECTORY) {
            Ok(dir) => dir,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        for child in list(dir.as_fd())? {
            let mut child_path = path.to_vec();
            if !child_path.is_empty() {
                child_path.push(b'/');
            }
            child_path.extend_from_slice(&child);
            self.remove_lower(&child_path)?;
        }
        self.emptied.insert(path);
        Ok(())
    }
}

fn id(value: u64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

fn times(mtime: u64) -> Timestamps {
    let time = Timespec {
        tv_sec: i64::try_from(mtime).unwrap_or(i64::MAX),
        tv_nsec: 0,
    };
    Timestamps {
        last_access: time,
        last_modification: time,
    }
}
