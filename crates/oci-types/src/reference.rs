//! Image references as people type them: `ubuntu`, `ghcr.io/org/app:1.2`, `localhost:5000/x@sha256:…`.

use std::fmt;
use std::str::FromStr;

use crate::docker_hub;
use crate::name::MAX_REPOSITORY_LEN;
use crate::{Digest, Error, Repository, Result, Tag};

/// The registry that names without a registry part belong to (the same as
/// [`docker_hub::NAME`]).
pub const DOCKER_HUB: &str = docker_hub::NAME;

/// A reference to an image in a registry: registry, repository, and a tag, a digest or both.
///
/// Parsed as docker and crane read what people type: a first path component is a registry only
/// if it contains `.` or `:`, is `localhost`, or is a bracketed IPv6 address; otherwise the image
/// is on Docker Hub, and a one-component name there is in `library/`. With neither tag nor
/// digest, the tag is `latest`.
///
/// ```
/// use oci_types::Reference;
/// let r: Reference = "ubuntu".parse()?;
/// assert_eq!(r.to_string(), "docker.io/library/ubuntu:latest");
/// let r: Reference = "[::1]:5000/team/app:v2".parse()?;
/// assert_eq!((r.registry(), r.repository().as_str()), ("[::1]:5000", "team/app"));
/// # Ok::<(), oci_types::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: Repository,
    tag: Option<Tag>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses a reference the way docker and crane do (see the type's documentation).
    pub fn parse(input: &str) -> Result<Self> {
        let invalid = |part: &'static str, reason: String| Error::Reference {
            input: input.to_owned(),
            part,
            reason,
        };
        if input.is_empty() {
            return Err(invalid("repository", "is empty".to_owned()));
        }
        let (name_and_tag, digest) = match input.split_once('@') {
            Some((before, digest)) => {
                let digest = Digest::parse(digest).map_err(|e| invalid("digest", reason_of(&e)))?;
                (before, Some(digest))
            }
            None => (input, None),
        };
        let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_and_tag[last_slash..].rfind(':') {
            Some(colon) => {
                let colon = last_slash + colon;
                let tag = Tag::parse(&name_and_tag[colon + 1..])
                    .map_err(|e| invalid("tag", reason_of(&e)))?;
                (&name_and_tag[..colon], Some(tag))
            }
            None => (name_and_tag, None),
        };
        let (registry, path) = match name.split_once('/') {
            Some((first, rest)) if looks_like_registry(first) => (first, rest.to_owned()),
            _ => (DOCKER_HUB, name.to_owned()),
        };
        check_registry(registry).map_err(|reason| invalid("registry", reason))?;
        // Only the legacy index host is rewritten, as docker's parser does: a reference to
        // `registry-1.docker.io` keeps its name (and gets no `library/`).
        let registry = if registry == docker_hub::INDEX_HOST {
            DOCKER_HUB
        } else {
            registry
        };
        let path = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        let repository =
            Repository::parse(&path).map_err(|e| invalid("repository", reason_of(&e)))?;
        let full_len = registry.len() + 1 + path.len();
        if full_len > MAX_REPOSITORY_LEN {
            return Err(invalid(
                "repository",
                format!(
                    "{registry}/{path} is {full_len} characters, longer than the limit of {MAX_REPOSITORY_LEN}"
                ),
            ));
        }
        let tag = match (&tag, &digest) {
            (None, None) => Some(Tag::latest()),
            _ => tag,
        };
        Ok(Self {
            registry: registry.to_owned(),
            repository,
            tag,
            digest,
        })
    }

    /// A reference from parts that are already valid.
    pub fn new(
        registry: impl Into<String>,
        repository: Repository,
        tag: Option<Tag>,
        digest: Option<Digest>,
    ) -> Result<Self> {
        let registry = registry.into();
        check_registry(&registry).map_err(|reason| Error::Reference {
            input: registry.clone(),
            part: "registry",
            reason,
        })?;
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The registry host, with its port if one was given (`docker.io`, `localhost:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository inside the registry.
    pub fn repository(&self) -> &Repository {
        &self.repository
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&Tag> {
        self.tag.as_ref()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The same image with another tag and no digest.
    pub fn with_tag(mut self, tag: Tag) -> Self {
        self.tag = Some(tag);
        self.digest = None;
        self
    }

    /// The same image pinned to a digest (the tag is kept for display).
    pub fn with_digest(mut self, digest: Digest) -> Self {
        self.digest = Some(digest);
        self
    }
}

/// The reason part of an `oci-types` error, for nesting it in a reference error.
fn reason_of(error: &Error) -> String {
    match error {
        Error::Digest { reason, .. }
        | Error::Repository { reason, .. }
        | Error::Tag { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

/// Docker's rule for telling a registry from the first path component of a repository.
fn looks_like_registry(component: &str) -> bool {
    component.contains(['.', ':'])
        || component == "localhost"
        || component.starts_with('[')
        || component.chars().any(|c| c.is_ascii_uppercase())
}

/// Checks `host[:port]`: DNS labels or a bracketed IPv6 address, and a port from 1 to 65535.
fn check_registry(registry: &str) -> std::result::Result<(), String> {
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        let (address, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{registry:?} opens '[' without closing it"))?;
        if address.is_empty()
            || !address
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
            || !address.contains(':')
        {
            return Err(format!("{address:?} is not an IPv6 address"));
        }
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| format!("unexpected {after:?} after the IPv6 address"))?,
            ),
        };
        (None, port)
    } else {
        match registry.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(registry), None),
        }
    };
    if let Some(host) = host {
        if host.is_empty() {
            return Err("host is empty".to_owned());
        }
        for label in host.split('.') {
            let valid = !label.is_empty()
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-');
            if !valid {
                return Err(format!(
                    "host {host:?} has an invalid label {label:?} (letters, digits and inner '-' only)"
                ));
            }
        }
    }
    if let Some(port) = port {
        match port.parse::<u16>() {
            Ok(p) if p > 0 && !port.starts_with('+') => {}
            _ => return Err(format!("port {port:?} is not a number from 1 to 65535")),
        }
    }
    Ok(())
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}
