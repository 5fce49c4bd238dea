//! Where images are, as people type it, and the store that holds them.
//!
//! [`Location::parse`] reads a registry reference (`ubuntu`, `ghcr.io/org/app:1.2`,
//! `localhost:5000/x@sha256:…`, with an optional `docker://` prefix for skopeo habits) or the
//! local transport `oci:DIR[:TAG]` (an OCI image layout directory, its default repository
//! written with bare tags as skopeo and umoci do), and the archive transports. Turning a
//! location into a store is [`crate::open`]'s job.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Result;
use oci_build::ManifestRef;
use oci_types::{Digest, Reference, Repository, Tag};

use crate::transports::ArchiveLocation;

/// The prefix of the OCI image layout transport.
const OCI_PREFIX: &str = "oci:";

/// skopeo's other transports, refused by name rather than misread as registry references.
const UNSUPPORTED_TRANSPORTS: [&str; 3] = ["containers-storage", "dir", "ostree"];

/// A location as typed, parsed but not opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    /// A repository in a registry, with a tag, a digest, both or (for catalogs) neither.
    Registry(Reference),
    /// The default repository of an OCI image layout directory.
    Layout {
        /// The layout directory (created by the first write).
        dir: PathBuf,
        /// The tag, if one was given.
        tag: Option<Tag>,
        /// The digest, if one was given.
        digest: Option<Digest>,
    },
    /// A whole registry, for listing its repositories.
    RegistryHost(String),
    /// An image archive file (`oci-archive:`, `docker-archive:`).
    Archive(ArchiveLocation),
}

/// An input that names no location, with what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LocationError {
    input: String,
    reason: String,
}

impl fmt::Display for LocationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.input, self.reason)
    }
}

impl std::error::Error for LocationError {}

fn bad(input: &str, reason: impl Into<String>) -> LocationError {
    LocationError {
        input: input.to_owned(),
        reason: reason.into(),
    }
}

impl Location {
    /// Reads a registry reference or `oci:DIR[:TAG]` / `oci:DIR@DIGEST`.
    pub(crate) fn parse(input: &str) -> Result<Self, LocationError> {
        if let Some(rest) = input.strip_prefix(OCI_PREFIX) {
            return parse_layout_path(input, rest);
        }
        if let Some(archive) = ArchiveLocation::parse(input) {
            return archive
                .map(Self::Archive)
                .map_err(|reason| bad(input, reason));
        }
        if let Some((transport, _)) = input.split_once(':')
            && UNSUPPORTED_TRANSPORTS.contains(&transport)
        {
            return Err(bad(
                input,
                format!(
                    "the {transport}: transport is not supported (hoist reads registry references, oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:NAME:TAG] and docker-daemon:NAME:TAG)"
                ),
            ));
        }
        let reference = input.strip_prefix("docker://").unwrap_or(input);
        Reference::parse(reference)
            .map(Self::Registry)
            .map_err(|e| bad(input, reason_of(&e)))
    }

    /// Reads `DIR[:TAG]` (or `DIR@DIGEST`), with or without the `oci:` prefix: what `hoist push`
    /// takes.
    pub(crate) fn parse_layout(input: &str) -> Result<Self, LocationError> {
        let rest = input.strip_prefix(OCI_PREFIX).unwrap_or(input);
        parse_layout_path(input, rest)
    }

    /// Reads the directory `hoist pull` writes to: a plain path is a directory, whole (any `:`
    /// in it is part of the name); `oci:DIR[:TAG]` names a tag too.
    pub(crate) fn parse_pull_dir(input: &str) -> Result<Self, LocationError> {
        if input.starts_with(OCI_PREFIX) {
            return Self::parse(input);
        }
        if input.is_empty() {
            return Err(bad(input, "empty directory name"));
        }
        Ok(Self::Layout {
            dir: PathBuf::from(input),
            tag: None,
            digest: None,
        })
    }

    /// Reads a registry host (`localhost:5000`, `ghcr.io`) or `oci:DIR`: what `hoist catalog`
    /// lists.
    pub(crate) fn parse_registry(input: &str) -> Result<Self, LocationError> {
        if input.starts_with(OCI_PREFIX) {
            return Self::parse(input);
        }
        let host = registry_host(input);
        let probe = Repository::parse("probe").map_err(|e| bad(input, e.to_string()))?;
        Reference::new(host, probe, None, None).map_err(|e| bad(input, reason_of(&e)))?;
        Ok(Self::RegistryHost(host.to_owned()))
    }

    /// The registry's name, for registry locations.
    pub(crate) fn registry(&self) -> Option<&str> {
        match self {
            Self::Registry(reference) => Some(reference.registry()),
            Self::RegistryHost(host) => Some(host),
            Self::Layout { .. } | Self::Archive(_) => None,
        }
    }

    /// The tag given, if any.
    pub(crate) fn tag(&self) -> Option<&Tag> {
        match self {
            Self::Registry(reference) => reference.tag(),
            Self::Layout { tag, .. } => tag.as_ref(),
            Self::Archive(archive) => archive.tag(),
            Self::RegistryHost(_) => None,
        }
    }

    /// The digest given, if any.
    pub(crate) fn digest(&self) -> Option<&Digest> {
        match self {
            Self::Registry(reference) => reference.digest(),
            Self::Layout { digest, .. } => digest.as_ref(),
            Self::Archive(archive) => archive.digest(),
            Self::RegistryHost(_) => None,
        }
    }

    /// The manifest to read: by digest when one was given, else by tag, else `latest`.
    pub(crate) fn manifest_ref(&self) -> ManifestRef {
        if let Self::Archive(archive) = self {
            return archive.manifest_ref();
        }
        match (self.digest(), self.tag()) {
            (Some(digest), _) => ManifestRef::Digest(digest.clone()),
            (None, Some(tag)) => ManifestRef::Tag(tag.clone()),
            (None, None) => ManifestRef::Tag(Tag::latest()),
        }
    }

    /// The tags a write points at what it wrote: the tag given; none when only a digest was
    /// given (the write is by digest); `latest` when neither was.
    pub(crate) fn write_tags(&self) -> Vec<Tag> {
        if let Self::Archive(archive) = self {
            return archive.write_tags();
        }
        match (self.tag(), self.digest()) {
            (Some(tag), _) => vec![tag.clone()],
            (None, Some(_)) => Vec::new(),
            (None, None) => vec![Tag::latest()],
        }
    }

    /// The repository this location is in, without tag or digest, for messages.
    pub(crate) fn repository_name(&self) -> String {
        match self {
            Self::Registry(reference) => {
                format!("{}/{}", reference.registry(), reference.repository())
            }
            Self::Layout { dir, .. } => format!("{OCI_PREFIX}{}", dir.display()),
            Self::Archive(archive) => archive.to_string(),
            Self::RegistryHost(host) => host.clone(),
        }
    }

    /// The same location with another tag (and no digest), for `hoist pull`'s default.
    pub(crate) fn with_tag(self, tag: Option<Tag>) -> Self {
        match self {
            Self::Layout { dir, .. } => Self::Layout {
                dir,
                tag,
                digest: None,
            },
            Self::Registry(reference) => match tag {
                Some(tag) => Self::Registry(reference.with_tag(tag)),
                None => Self::Registry(reference),
            },
            other => other,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Registry(reference) => write!(f, "{reference}"),
            Self::RegistryHost(host) => f.write_str(host),
            Self::Archive(archive) => write!(f, "{archive}"),
            Self::Layout { dir, tag, digest } => {
                write!(f, "{OCI_PREFIX}{}", dir.display())?;
                if let Some(tag) = tag {
                    write!(f, ":{tag}")?;
                }
                if let Some(digest) = digest {
                    write!(f, "@{digest}")?;
                }
                Ok(())
            }
        }
    }
}

/// The reason of an `oci-types` parse error, without repeating the input.
fn reason_of(error: &oci_types::Error) -> String {
    match error {
        oci_types::Error::Reference { part, reason, .. } => format!("{part} {reason}"),
        other => other.to_string(),
    }
}

/// `host[:port]` out of what people paste: a URL, with or without a path.
pub(crate) fn registry_host(input: &str) -> &str {
    let without_scheme = input
        .strip_prefix("https://")
        .or_else(|| input.strip_prefix("http://"))
        .unwrap_or(input);
    without_scheme.split('/').next().unwrap_or(without_scheme)
}

/// Splits `DIR[:TAG]`, `DIR@DIGEST` or `DIR:TAG@DIGEST`. A `:` splits off a tag only in the
/// last path component and only when what follows is a valid tag; a path that exists as a
/// directory is taken whole, `:` and all.
fn parse_layout_path(input: &str, rest: &str) -> Result<Location, LocationError> {
    if rest.is_empty() {
        return Err(bad(input, "no directory after oci:"));
    }
    if Path::new(rest).is_dir() {
        return Ok(Location::Layout {
            dir: PathBuf::from(rest),
            tag: None,
            digest: None,
        });
    }
    let name_start = rest.rfind('/').map_or(0, |i| i + 1);
    let (before_digest, digest) = match rest[name_start..].find('@') {
        Some(at) => {
            let at = name_start + at;
            let digest = Digest::parse(&rest[at + 1..]).map_err(|e| bad(input, e.to_string()))?;
            (&rest[..at], Some(digest))
        }
        None => (rest, None),
    };
    let (dir, tag) = match before_digest[name_start..].rfind(':') {
        Some(colon) => {
            let colon = name_start + colon;
            let after = &before_digest[colon + 1..];
            if after.is_empty() {
                return Err(bad(input, "empty tag after ':'"));
            }
            match Tag::parse(after) {
                Ok(tag) => (&before_digest[..colon], Some(tag)),
                // Not a tag: the ':' is part of the directory's name.
                Err(_) if digest.is_none() => (before_digest, None),
                Err(e) => return Err(bad(input, e.to_string())),
            }
        }
        None => (before_digest, None),
    };
    if dir.is_empty() {
        return Err(bad(input, "no directory before the tag or digest"));
    }
    Ok(Location::Layout {
        dir: PathBuf::from(dir),
        tag,
        digest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(dir: &str, tag: Option<&str>, digest: Option<&str>) -> Location {
        Location::Layout {
            dir: PathBuf::from(dir),
            tag: tag.map(|t| Tag::parse(t).unwrap()),
            digest: digest.map(|d| Digest::parse(d).unwrap()),
        }
    }

    const DIGEST: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[track_caller]
    fn check(input: &str, expected: &str) {
        let location = Location::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(location.to_string(), expected, "{input}");
    }

    #[test]
    fn registry_references_as_people_type_them() {
        check("ubuntu", "docker.io/library/ubuntu:latest");
        check("docker://ubuntu:22.04", "docker.io/library/ubuntu:22.04");
        check("ghcr.io/org/app:1.2", "ghcr.io/org/app:1.2");
        check(
            &format!("localhost:5000/x@{DIGEST}"),
            &format!("localhost:5000/x@{DIGEST}"),
        );
        let location = Location::parse("localhost:5000/team/app:v1").unwrap();
        assert_eq!(location.registry(), Some("localhost:5000"));
        assert_eq!(location.repository_name(), "localhost:5000/team/app");
        assert_eq!(
            Location::parse("oci:./out:v1").unwrap().repository_name(),
            "oci:./out"
        );
        assert_eq!(location.manifest_ref().to_string(), ":v1");
    }

    #[test]
    fn oci_layouts_with_and_without_tags() {
        let cases = [
            ("oci:./out", layout("./out", None, None)),
            ("oci:./out:v1", layout("./out", Some("v1"), None)),
            ("oci:/tmp/a:b/c", layout("/tmp/a:b/c", None, None)),
            (
                "oci:dir:with:colons",
                layout("dir:with", Some("colons"), None),
            ),
            ("oci:dir:not.a/tag", layout("dir:not.a/tag", None, None)),
            ("oci:dir:-notatag", layout("dir:-notatag", None, None)),
            (
                &*format!("oci:out@{DIGEST}"),
                layout("out", None, Some(DIGEST)),
            ),
            (
                &*format!("oci:a:b/out:v2@{DIGEST}"),
                layout("a:b/out", Some("v2"), Some(DIGEST)),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(Location::parse(input).unwrap(), expected, "{input}");
        }
    }

    #[test]
    fn an_existing_directory_is_taken_whole() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("name:v1");
        std::fs::create_dir(&dir).unwrap();
        let input = format!("oci:{}", dir.display());
        assert_eq!(
            Location::parse(&input).unwrap(),
            Location::Layout {
                dir,
                tag: None,
                digest: None
            }
        );
    }

    #[test]
    fn layouts_without_tags_read_and_write_latest() {
        let location = Location::parse("oci:./out").unwrap();
        assert_eq!(location.manifest_ref(), ManifestRef::Tag(Tag::latest()));
        assert_eq!(location.write_tags(), vec![Tag::latest()]);
        let pinned = Location::parse(&format!("oci:./out@{DIGEST}")).unwrap();
        assert!(pinned.write_tags().is_empty());
        assert!(matches!(pinned.manifest_ref(), ManifestRef::Digest(_)));
    }

    #[test]
    fn push_and_pull_directories() {
        assert_eq!(
            Location::parse_layout("./out:v1").unwrap(),
            layout("./out", Some("v1"), None)
        );
        assert_eq!(
            Location::parse_layout("oci:./out").unwrap(),
            layout("./out", None, None)
        );
        assert_eq!(
            Location::parse_pull_dir("./odd:name").unwrap(),
            layout("./odd:name", None, None)
        );
        assert_eq!(
            Location::parse_pull_dir("oci:./out:v3").unwrap(),
            layout("./out", Some("v3"), None)
        );
    }

    #[test]
    fn registry_hosts() {
        for (input, host) in [
            ("localhost:5000", "localhost:5000"),
            ("https://ghcr.io/", "ghcr.io"),
            ("https://index.docker.io/v1/", "index.docker.io"),
        ] {
            assert_eq!(
                Location::parse_registry(input).unwrap(),
                Location::RegistryHost(host.to_owned())
            );
        }
        assert!(Location::parse_registry("bad host").is_err());
        assert!(matches!(
            Location::parse_registry("oci:./x").unwrap(),
            Location::Layout { .. }
        ));
    }

    #[test]
    fn bad_inputs_are_named_in_the_error() {
        for (input, reason) in [
            ("", "repository is empty"),
            ("oci:", "no directory after oci:"),
            ("oci::v1", "no directory before the tag"),
            ("oci:out:", "empty tag"),
            ("oci:out@sha256:abc", "invalid digest"),
            ("Registry/UPPER", "repository"),
            ("ubuntu:bad tag", "tag"),
            ("containers-storage:x", "not supported"),
            ("dir:x", "not supported"),
        ] {
            let error = Location::parse(input).unwrap_err().to_string();
            assert!(
                error.starts_with(&format!("{input:?}")) && error.contains(reason),
                "{input}: {error}"
            );
        }
    }
}
