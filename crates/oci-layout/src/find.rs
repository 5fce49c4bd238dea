//! `find_layout`: what a user's path such as `./images/app:v1` names.

use std::path::{Path, PathBuf};

use oci_types::{Digest, Repository, Tag};

use crate::{Error, Result};

/// A user's layout path, split into the layout directory and the reference inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FoundLayout {
    /// The layout directory (which may not exist yet: the first write creates it).
    pub dir: PathBuf,
    /// The repository below the layout directory, when the path goes deeper than the layout
    /// (`./layout/team/app:v1` in a layout at `./layout`).
    pub repository: Option<Repository>,
    /// The tag, after the last `:` of the last path component.
    pub tag: Option<Tag>,
    /// The digest, after an `@`.
    pub digest: Option<Digest>,
}

/// Splits a user path such as `./images/app:v1` or `./images/app@sha256:…` into the layout
/// directory and the reference, preferring the deepest directory that holds an `oci-layout`
/// file: a path that is itself a layout directory is taken whole, even with a `:` in it.
///
/// ```
/// let found = oci_layout::find_layout("./no/such/dir:v1.2")?;
/// assert_eq!(found.dir, std::path::PathBuf::from("./no/such/dir"));
/// assert_eq!(found.tag.map(|t| t.to_string()).as_deref(), Some("v1.2"));
/// # Ok::<(), oci_layout::Error>(())
/// ```
pub fn find_layout(input: &str) -> Result<FoundLayout> {
    let invalid = |reason: String| Error::InvalidPath {
        input: input.to_owned(),
        reason,
    };
    if input.is_empty() {
        return Err(invalid("empty path".to_owned()));
    }
    if is_layout(Path::new(input)) {
        return Ok(FoundLayout {
            dir: PathBuf::from(input),
            repository: None,
            tag: None,
            digest: None,
        });
    }
    let name_start = input.rfind('/').map_or(0, |i| i + 1);
    let (rest, digest) = match input[name_start..].find('@') {
        Some(at) => {
            let at = name_start + at;
            let digest = Digest::parse(&input[at + 1..]).map_err(|e| invalid(e.to_string()))?;
            (&input[..at], Some(digest))
        }
        None => (input, None),
    };
    let (base, tag) = match rest[name_start..].rfind(':') {
        Some(colon) => {
            let colon = name_start + colon;
            let tag = Tag::parse(&rest[colon + 1..]).map_err(|e| invalid(e.to_string()))?;
            (&rest[..colon], Some(tag))
        }
        None => (rest, None),
    };
    if base.is_empty() {
        return Err(invalid("no directory before the tag or digest".to_owned()));
    }
    let base = PathBuf::from(base);
    let deepest = base
        .ancestors()
        .find(|dir| !dir.as_os_str().is_empty() && is_layout(dir));
    let (dir, repository) = match deepest {
        Some(dir) if dir != base => {
            let below = base
                .strip_prefix(dir)
                .map_err(|_| invalid("cannot relate the path to its layout".to_owned()))?;
            let name = below
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            let repository = Repository::parse(&name).map_err(|e| invalid(e.to_string()))?;
            (dir.to_path_buf(), Some(repository))
        }
        _ => (base, None),
    };
    Ok(FoundLayout {
        dir,
        repository,
        tag,
        digest,
    })
}

fn is_layout(dir: &Path) -> bool {
    dir.join("oci-layout").is_file()
}
