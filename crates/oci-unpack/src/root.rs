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

    /// Makes every missing directory of `path`, each in its resolved parent.
    fn make_parents(&mut self, path: &[u8]) -> io::Result<OwnedFd> {
        let components: Vec<&[u8]> = path.split(|b| *b == b'/').collect();
        let mut at = self.fd.try_clone()?;
        for depth in 1..=components.len() {
            let prefix = components[..depth].join(&b'/');
            match self.resolve(&prefix, OFlags::PATH | OFlags::DIRECTORY) {
                Ok(fd) => at = fd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    let name = OsStr::from_bytes(components[depth - 1]);
                    match rustix::fs::mkdirat(&at, name, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    at = self.resolve(&prefix, OFlags::PATH | OFlags::DIRECTORY)?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(at)
    }

    /// Removes `name` of the directory `dir`, whatever it is; a directory with everything
    /// in it. Symlinks are removed, never followed.
    ///
    /// A directory is emptied depth first with one directory open at a time and no
    /// recursion, going back up through `..`: a tree can be deeper than a thread's stack or
    /// the process's open files allow, since symlinks let each layer build on the depth of
    /// the one before.
    pub(crate) fn remove(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
        let stat = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(rustix::io::Errno::NOENT) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if !is_directory(&stat) {
            rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
            return Ok(());
        }
        let mut current = open_directory(dir, name)?;
        // Each level being emptied: its name in its parent, and the names left in it.
        let mut levels = vec![(name.as_bytes().to_vec(), list(current.as_fd())?)];
        while let Some((_, left)) = levels.last_mut() {
            if let Some(child) = left.pop() {
                let child = OsStr::from_bytes(&child);
                match rustix::fs::statat(&current, child, AtFlags::SYMLINK_NOFOLLOW) {
                    Err(rustix::io::Errno::NOENT) => {}
                    Err(e) => return Err(e.into()),
                    Ok(stat) if is_directory(&stat) => {
                        let below = open_directory(current.as_fd(), child)?;
                        let names = list(below.as_fd())?;
                        current = below;
                        levels.push((child.as_bytes().to_vec(), names));
                    }
                    Ok(_) => rustix::fs::unlinkat(&current, child, AtFlags::empty())?,
                }
                continue;
            }
            let Some((emptied, _)) = levels.pop() else {
                break;
            };
            let emptied = OsStr::from_bytes(&emptied);
            if levels.is_empty() {
                rustix::fs::unlinkat(dir, emptied, AtFlags::REMOVEDIR)?;
            } else {
                current = open_directory(current.as_fd(), OsStr::new(".."))?;
                rustix::fs::unlinkat(&current, emptied, AtFlags::REMOVEDIR)?;
            }
        }
        Ok(())
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
