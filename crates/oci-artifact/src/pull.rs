//! Pulling an artifact's files (oras pull): every titled layer written to its title inside one
//! directory, verified before it appears there, and never outside it.

use std::collections::BTreeSet;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use futures::StreamExt;
use oci_store::OciInterface;
use oci_types::{Descriptor, Digest, ManifestRef, Repository};
use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;
use tokio::io::AsyncWriteExt;

use crate::find::{TITLE, fetch_manifest, open_layer};
use crate::{Error, Result};

/// The longest title taken, in bytes, and the most path components in one.
const MAX_TITLE_LEN: usize = 4096;
const MAX_COMPONENTS: usize = 64;

/// A file written by [`pull_artifact`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PulledFile {
    /// Where it was written.
    pub path: PathBuf,
    /// The layer's digest, which its bytes were checked against.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
}

/// Writes every layer of the artifact `reference` names that has a title into `dir` (created if
/// missing), under its title; returns what was written. Layers without a title are skipped.
///
/// A title must be a relative path that stays inside `dir`: no `..`, no absolute path, no empty
/// or `.` component, and no directory on the way that is a symbolic link (each is opened
/// without following links). Each file is written to a temporary name beside its place and
/// renamed into place only once its digest and size matched, so a damaged layer leaves
/// nothing behind; a file already there is replaced.
pub async fn pull_artifact(
    store: &dyn OciInterface,
    repo: &Repository,
    reference: &ManifestRef,
    dir: &Path,
) -> Result<Vec<PulledFile>> {
    let (_, manifest) = fetch_manifest(store, repo, reference).await?;
    let mut wanted = Vec::new();
    let mut seen = BTreeSet::new();
    for layer in &manifest.layers {
        let Some(title) = layer.annotations.get(TITLE) else {
            continue;
        };
        let components = check_title(layer, title)?;
        if !seen.insert(components.clone()) {
            return Err(Error::UnsafeTitle {
                digest: layer.digest.clone(),
                title: title.clone(),
                reason: "is the title of another layer too",
            });
        }
        wanted.push((layer.clone(), components));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, "cannot be created", Some(e)))?;
    let root = rustix::fs::open(
        dir,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::file(dir, "cannot be opened as a directory", Some(e.into())))?;
    let mut pulled = Vec::with_capacity(wanted.len());
    for (layer, components) in wanted {
        let path = components.iter().fold(dir.to_path_buf(), |p, c| p.join(c));
        write_layer(store, repo, &layer, &root, &components, &path).await?;
        pulled.push(PulledFile {
            path,
            digest: layer.digest,
            size: layer.size,
        });
    }
    Ok(pulled)
}

/// The components of a title that may be written inside the target directory.
fn check_title(layer: &Descriptor, title: &str) -> Result<Vec<String>> {
    let refuse = |reason| Error::UnsafeTitle {
        digest: layer.digest.clone(),
        title: title.to_owned(),
        reason,
    };
    if title.is_empty() {
        return Err(refuse("is empty"));
    }
    if title.len() > MAX_TITLE_LEN {
        return Err(refuse("is longer than a path may be"));
    }
    if title.contains('\0') {
        return Err(refuse("contains a NUL byte"));
    }
    if title.ends_with('/') {
        return Err(refuse(
            "names a directory (oras's packed directories are not supported)",
        ));
    }
    let mut components = Vec::new();
    for component in Path::new(title).components() {
        match component {
            Component::Normal(name) => components.push(name.to_string_lossy().into_owned()),
            Component::ParentDir => return Err(refuse("climbs out of the directory with `..`")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(refuse("is an absolute path"));
            }
            Component::CurDir => return Err(refuse("has a `.` component")),
        }
    }
    // `Path::components` drops inner `.` and repeated `/`: refuse them on the text itself.
    if title.split('/').any(|part| part.is_empty() || part == ".") {
        return Err(refuse("has an empty or `.` component"));
    }
    if components.len() > MAX_COMPONENTS {
        return Err(refuse("is nested too deeply"));
    }
    Ok(components)
}

/// Opens (creating where missing) the directories of `components` but the last under `root`,
/// never following a symbolic link.
fn parent_dir(root: &OwnedFd, components: &[String], path: &Path) -> Result<OwnedFd> {
    let mut current = rustix::io::dup(root)
        .map_err(|e| Error::file(path, "cannot open its directory", Some(e.into())))?;
    for name in &components[..components.len() - 1] {
        match rustix::fs::mkdirat(&current, name.as_str(), Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => {
                return Err(Error::file(
                    path,
                    format!("cannot create directory {name:?}"),
                    Some(e.into()),
                ));
            }
        }
        current = rustix::fs::openat(
            &current,
            name.as_str(),
            OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            let message = if e == Errno::LOOP || e == Errno::NOTDIR {
                format!("{name:?} on the way is not a directory (a symbolic link is not followed)")
            } else {
                format!("cannot open directory {name:?}")
            };
            Error::file(path, message, Some(e.into()))
        })?;
    }
    Ok(current)
}

async fn write_layer(
    store: &dyn OciInterface,
    repo: &Repository,
    layer: &Descriptor,
    root: &OwnedFd,
    components: &[String],
    path: &Path,
) -> Result<()> {
    let parent = parent_dir(root, components, path)?;
    let name = components[components.len() - 1].as_str();
    let temporary = format!(".{name}.hoist-{}", std::process::id());
    let fd = rustix::fs::openat(
        &parent,
        temporary.as_str(),
        OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )
    .map_err(|e| {
        Error::file(
            path,
            "cannot create a temporary file beside it",
            Some(e.into()),
        )
    })?;
    let written = async {
        let mut file = tokio::fs::File::from_std(std::fs::File::from(fd));
        let mut body = open_layer(store, repo, layer).await?.into_stream();
        while let Some(chunk) = body.next().await {
            // The stream is verified: its last item is an error unless every byte matched.
            let chunk = chunk.map_err(|e| {
                Error::store(format!("reading layer {} of {repo}", layer.digest), e)
            })?;
            file.write_all(&chunk)
                .await
                .map_err(|e| Error::file(path, "cannot be written", Some(e)))?;
        }
        file.sync_all()
            .await
            .map_err(|e| Error::file(path, "cannot be written", Some(e)))?;
        Ok::<(), Error>(())
    }
    .await;
    let placed = written.and_then(|()| {
        rustix::fs::renameat(&parent, temporary.as_str(), &parent, name)
            .map_err(|e| Error::file(path, "cannot be put in place", Some(e.into())))
    });
    if placed.is_err() {
        let _ = rustix::fs::unlinkat(&parent, temporary.as_str(), AtFlags::empty());
    }
    placed
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_types::MediaType;

    fn titled(title: &str) -> Result<Vec<String>> {
        let layer = Descriptor::new(MediaType::from_static("text/plain"), Digest::sha256(b""), 0);
        check_title(&layer, title)
    }

    #[test]
    fn titles_must_stay_inside_the_directory() {
        assert_eq!(titled("a.txt").unwrap(), ["a.txt"]);
        assert_eq!(titled("docs/a.txt").unwrap(), ["docs", "a.txt"]);
        for bad in [
            "",
            "../a",
            "a/../../b",
            "/etc/passwd",
            "a//b",
            "./a",
            "a/./b",
            "dir/",
            "a\0b",
        ] {
            assert!(titled(bad).is_err(), "{bad:?} was taken");
        }
        assert!(titled("a/".repeat(70).trim_end_matches('/')).is_err());
    }
}
