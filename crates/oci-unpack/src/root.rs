//! A directory that paths are resolved inside by the kernel.
//!
//! Every path of an image is resolved with `openat2(RESOLVE_IN_ROOT)` from the root's file
//! descriptor: `..`, absolute symlinks and symlinks through `..` all stay inside the root,
//! as if it were `/` (what a container will see), and a path is never checked as a string
//! first and used later (that races). Only the final component of an entry is then created,
//! changed or removed, with `*at` calls on its resolved parent and without following it.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};

/// How often a resolution that the kernel answered with `EAGAIN` (a rename raced it) is
/// tried again before giving up.
const RESOLVE_ATTEMPTS: usize = 8;

/// The root directory of an unpacked image.
#[derive(Debug)]
pub(crate) struct Root {
    fd: OwnedFd,
    path: PathBuf,
    /// The last parent directory resolved, by its image path: entries of a directory come
    /// together, so this saves most resolutions. Forgotten whenever anything is removed or
    /// replaced.
    cached: Option<(Vec<u8>, OwnedFd)>,
    /// Directories made as missing parents, with no entry of their own: inodes and work
    /// that the image's entry limit counts too.
    pub(crate) implied_dirs: u64,
}

impl Root {
    /// Opens (creating it and its parents if needed) the directory `path`.
    pub(crate) fn open(path: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(path)?;
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self {
            fd,
            path: path.to_path_buf(),
            cached: None,
            implied_dirs: 0,
        })
    }

    /// The root's path on the host, for messages.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Forgets resolutions made so far (after a removal or replacement).
    pub(crate) fn forget(&mut self) {
        self.cached = None;
    }

    /// Resolves `path` (a clean image path; empty for the root) inside the root with `flags`.
    pub(crate) fn resolve(&self, path: &[u8], flags: OFlags) -> io::Result<OwnedFd> {
        let path: &[u8] = if path.is_empty() { b"." } else { path };
        let mut attempts = 0;
        loop {
            match rustix::fs::openat2(
                &self.fd,
                OsStr::from_bytes(path),
                flags | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            ) {
                Err(rustix::io::Errno::AGAIN) if attempts < RESOLVE_ATTEMPTS => attempts += 1,
                result => return result.map_err(io::Error::from),
            }
        }
    }

    /// The directory `parent` resolved inside the root, its missing components made
    /// (mode 0755, as tar and umoci make them) when `create` is set.
    pub(crate) fn parent(&mut self, parent: &[u8], create: bool) -> io::Result<BorrowedFd<'_>> {
        let hit = self
            .cached
            .as_ref()
            .is_some_and(|(cached, _)| cached.as_slice() == parent);
        if !hit {
            let fd = match self.resolve(parent, OFlags::PATH | OFlags::DIRECTORY) {
                Ok(fd) => fd,
                Err(e) if create && e.kind() == io::ErrorKind::NotFound => {
                    self.make_parents(parent)?
                }
                Err(e) => return Err(e),
            };
            self.cached = Some((parent.to_vec(), fd));
        }
        match &self.cached {
            Some((_, fd)) => Ok(fd.as_fd()),
            None => Err(io::Error::other("no parent directory")),
        }
    }

    /// Makes every missing directory of `path` (which does not resolve), each in its
    /// resolved parent.
    ///
    /// The longest prefix that resolves is found by bisection, and the directories below it
    /// are made and opened one inside the other: resolving every prefix from the root cost
    /// as many lookups as the square of the depth, for each entry of a layer of deep paths.
    fn make_parents(&mut self, path: &[u8]) -> io::Result<OwnedFd> {
        let components: Vec<&[u8]> = path.split(|b| *b == b'/').collect();
        // `prefix(d)`: the first `d` components.
        let ends: Vec<usize> = path
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'/')
            .map(|(at, _)| at)
            .chain([path.len()])
            .collect();
        let prefix = |depth: usize| &path[..ends[depth - 1]];
        // `found` resolves (0 is the root), `missing` does not.
        let (mut found, mut missing) = (0, components.len());
        let mut at = self.fd.try_clone()?;
        while missing - found > 1 {
            let middle = found + (missing - found) / 2;
            match self.resolve(prefix(middle), OFlags::PATH | OFlags::DIRECTORY) {
                Ok(fd) => (found, at) = (middle, fd),
                Err(e) if e.kind() == io::ErrorKind::NotFound => missing = middle,
                Err(e) => return Err(e),
            }
        }
        for depth in found + 1..=components.len() {
            let name = OsStr::from_bytes(components[depth - 1]);
            at = match rustix::fs::mkdirat(&at, name, Mode::from_raw_mode(0o755)) {
                Ok(()) => {
                    self.implied_dirs += 1;
                    // Made just now, inside a directory of the root: opened as what it is,
                    // a directory, never through a symlink.
                    rustix::fs::openat(
                        &at,
                        name,
                        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )?
                }
                // Something is there after all: resolved inside the root, as any path.
                Err(rustix::io::Errno::EXIST) => {
                    self.resolve(prefix(depth), OFlags::PATH | OFlags::DIRECTORY)?
                }
                Err(e) => return Err(e.into()),
            };
        }
        Ok(at)
    }

    /// Removes everything in the root, never following a symlink.
    pub(crate) fn remove_contents(&self) -> io::Result<()> {
        let dir = rustix::fs::openat(
            &self.fd,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        for name in list(dir.as_fd())? {
            Self::remove(dir.as_fd(), OsStr::from_bytes(&name))?;
        }
        Ok(())
    }

    /// Removes `name` of the directory `dir`, whatever it is; a directory with everything
    /// in it. Symlinks are removed, never followed.
    ///
    /// A directory is emptied depth first without recursion: a tree can be deeper than a
    /// thread's stack allows, since symlinks let each layer build on the depth of the one
    /// before. The directories of the first [`KEEP_OPEN`] levels stay open while their
    /// contents go; deeper ones are closed while below them (a tree may be deeper than the
    /// process may open files) and found again through `..`, checked to be the same
    /// directory (device and inode), so that a tree moved meanwhile stops the removal rather
    /// than removing elsewhere.
    ///
    /// `name` must be one entry of `dir`: `.`, `..`, an empty name or one with a `/` is
    /// refused, since it would remove `dir` itself, what is above it, or something below.
    pub(crate) fn remove(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
        let bytes = name.as_bytes();
        if matches!(bytes, b"" | b"." | b"..") || bytes.contains(&b'/') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name:?} is not the name of an entry of its directory: not removed"),
            ));
        }
        let stat = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(rustix::io::Errno::NOENT) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if !is_directory(&stat) {
            rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
            return Ok(());
        }
        let top = open_directory(dir, name)?;
        let mut levels = vec![Level::new(name.as_bytes().to_vec(), top)?];
        loop {
            let deep = levels.len() > KEEP_OPEN;
            let Some(level) = levels.last_mut() else {
                break;
            };
            let Some(current) = level.fd.as_ref() else {
                return Err(io::Error::other("a directory being removed is not open"));
            };
            if let Some(child) = level.left.pop() {
                let child = OsStr::from_bytes(&child);
                match rustix::fs::statat(current, child, AtFlags::SYMLINK_NOFOLLOW) {
                    Err(rustix::io::Errno::NOENT) => {}
                    Err(e) => return Err(e.into()),
                    Ok(stat) if is_directory(&stat) => {
                        let below = open_directory(current.as_fd(), child)?;
                        if deep {
                            // Found again through `..` once what is below it is gone.
                            level.fd = None;
                        }
                        levels.push(Level::new(child.as_bytes().to_vec(), below)?);
                    }
                    Ok(_) => rustix::fs::unlinkat(current, child, AtFlags::empty())?,
                }
                continue;
            }
            let Some(done) = levels.pop() else {
                break;
            };
            let emptied = OsStr::from_bytes(&done.name);
            let Some(parent) = levels.last_mut() else {
                rustix::fs::unlinkat(dir, emptied, AtFlags::REMOVEDIR)?;
                break;
            };
            let parent_fd = match parent.fd.take() {
                Some(fd) => fd,
                None => {
                    let Some(from) = done.fd.as_ref() else {
                        return Err(io::Error::other("a directory being removed is not open"));
                    };
                    parent_again(from.as_fd(), &parent.stat)?
                }
            };
            rustix::fs::unlinkat(&parent_fd, emptied, AtFlags::REMOVEDIR)?;
            parent.fd = Some(parent_fd);
        }
        Ok(())
    }
}

/// The directory above `from`, if it is still the one `expected` describes (device and
/// inode): a tree moved while it is removed stops the removal.
fn parent_again(from: BorrowedFd<'_>, expected: &rustix::fs::Stat) -> io::Result<OwnedFd> {
    let up = open_directory(from, OsStr::new(".."))?;
    let found = rustix::fs::fstat(&up)?;
    if found.st_dev != expected.st_dev || found.st_ino != expected.st_ino {
        return Err(io::Error::other(
            "a directory being removed was moved: stopped, nothing removed elsewhere",
        ));
    }
    Ok(up)
}

/// How many levels of a tree being removed stay open at once.
const KEEP_OPEN: usize = 256;

/// A directory being emptied by [`Root::remove`].
struct Level {
    /// Its name in its parent.
    name: Vec<u8>,
    /// The names in it still to remove.
    left: Vec<Vec<u8>>,
    /// The open directory, unless it is closed while below it.
    fd: Option<OwnedFd>,
    /// What it is (device and inode), to know it again through `..`.
    stat: rustix::fs::Stat,
}

impl Level {
    fn new(name: Vec<u8>, fd: OwnedFd) -> io::Result<Self> {
        Ok(Self {
            name,
            left: list(fd.as_fd())?,
            stat: rustix::fs::fstat(&fd)?,
            fd: Some(fd),
        })
    }
}

fn is_directory(stat: &rustix::fs::Stat) -> bool {
    rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::Directory
}

/// Opens the directory `name` of `dir` for listing, not following a symlink.
fn open_directory(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// The names in the directory `dir` (without `.` and `..`).
pub(crate) fn list(dir: BorrowedFd<'_>) -> io::Result<Vec<Vec<u8>>> {
    let mut names = Vec::new();
    let mut entries = rustix::fs::Dir::read_from(dir)?;
    while let Some(entry) = entries.read() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only an entry of the directory is removed: never the directory itself, what is above
    /// it, or a path below it.
    #[test]
    fn remove_refuses_names_that_are_not_an_entry() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("top/sub")).unwrap();
        std::fs::write(dir.path().join("top/sub/f"), b"kept").unwrap();
        std::fs::write(dir.path().join("beside"), b"kept").unwrap();
        let top = rustix::fs::open(
            dir.path().join("top"),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        for name in ["", ".", "..", "sub/f", "/"] {
            let error = Root::remove(top.as_fd(), OsStr::new(name)).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{name:?}");
        }
        assert_eq!(
            std::fs::read(dir.path().join("top/sub/f")).unwrap(),
            b"kept"
        );
        assert_eq!(std::fs::read(dir.path().join("beside")).unwrap(), b"kept");
        Root::remove(top.as_fd(), OsStr::new("sub")).unwrap();
        assert!(!dir.path().join("top/sub").exists());
    }

    #[test]
    fn a_parent_found_again_must_be_the_same_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::create_dir_all(dir.path().join("elsewhere")).unwrap();
        let open = |path: &str| {
            rustix::fs::open(
                dir.path().join(path),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .unwrap()
        };
        let (a, b) = (open("a"), open("a/b"));
        let stat_a = rustix::fs::fstat(&a).unwrap();
        assert!(parent_again(b.as_fd(), &stat_a).is_ok());
        // Moved under another parent: `..` leads elsewhere now.
        std::fs::rename(dir.path().join("a/b"), dir.path().join("elsewhere/b")).unwrap();
        let error = parent_again(b.as_fd(), &stat_a).unwrap_err();
        assert!(error.to_string().contains("was moved"), "{error}");
    }

    #[test]
    fn a_tree_deeper_than_a_stack_and_the_open_files_allow_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let host = rustix::fs::open(
            dir.path(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        let mode = Mode::from_raw_mode(0o755);
        rustix::fs::mkdirat(&host, "top", mode).unwrap();
        let mut at = open_directory(host.as_fd(), OsStr::new("top")).unwrap();
        // Deeper than this machine's limit of open files (20,000 here), with a file and a
        // symlink (to the top: never followed) beside each directory.
        for _ in 0..25_000 {
            rustix::fs::mkdirat(&at, "d", mode).unwrap();
            rustix::fs::symlinkat("/top", &at, "up").unwrap();
            drop(rustix::fs::openat(&at, "f", OFlags::CREATE | OFlags::WRONLY, mode).unwrap());
            at = open_directory(at.as_fd(), OsStr::new("d")).unwrap();
        }
        drop(at);
        // On a thread with a small stack: a recursion per level would overflow it.
        let removed = std::thread::Builder::new()
            .stack_size(64 << 10)
            .spawn(move || Root::remove(host.as_fd(), OsStr::new("top")))
            .unwrap()
            .join()
            .unwrap();
        removed.unwrap();
        assert!(!dir.path().join("top").exists());
    }
}
