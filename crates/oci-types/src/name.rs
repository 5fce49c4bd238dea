//! Repository names and tags, validated against the distribution-spec grammar.

use std::fmt;
use std::str::FromStr;

use crate::{Error, Result};

/// The longest repository name accepted. The distribution-spec leaves the limit to registries;
/// docker and most clients cap the name at 255 characters.
pub const MAX_REPOSITORY_LEN: usize = 255;

/// The longest tag the distribution-spec allows.
pub const MAX_TAG_LEN: usize = 128;

/// A repository name inside a registry, such as `library/ubuntu`.
///
/// Path components match `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, joined by `/`, at most
/// [`MAX_REPOSITORY_LEN`] characters in all. No component can be `.` or `..`, and the name
/// neither starts nor ends with `/`, so a `Repository` is safe to join to a directory.
///
/// ```
/// use oci_types::Repository;
/// let repo: Repository = "library/ubuntu".parse()?;
/// assert_eq!(repo.as_str(), "library/ubuntu");
/// assert!("Library/Ubuntu".parse::<Repository>().is_err());
/// assert!("a/../b".parse::<Repository>().is_err());
/// # Ok::<(), oci_types::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Repository(String);

impl Repository {
    /// Parses and validates a repository name.
    pub fn parse(input: &str) -> Result<Self> {
        let invalid = |reason: String| Error::Repository {
            input: input.to_owned(),
            reason,
        };
        if input.is_empty() {
            return Err(invalid("empty name".to_owned()));
        }
        if input.len() > MAX_REPOSITORY_LEN {
            return Err(invalid(format!(
                "{} characters, longer than the limit of {MAX_REPOSITORY_LEN}",
                input.len()
            )));
        }
        for (index, component) in input.split('/').enumerate() {
            check_path_component(component).map_err(|reason| {
                invalid(format!(
                    "path component {} {component:?}: {reason}",
                    index + 1
                ))
            })?;
        }
        Ok(Self(input.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path components, in order.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

/// Checks one component against `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn check_path_component(component: &str) -> std::result::Result<(), String> {
    if component.is_empty() {
        return Err("empty (a name cannot start or end with '/', or contain '//')".to_owned());
    }
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bytes[0]) {
        return Err("must start with a lowercase letter or digit".to_owned());
    }
    if !alnum(bytes[bytes.len() - 1]) {
        return Err("must end with a lowercase letter or digit".to_owned());
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if alnum(b) {
            i += 1;
            continue;
        }
        // A separator run: '.', '_', '__' or one or more '-'.
        let start = i;
        match b {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if bytes.get(i) == Some(&b'_') {
                    i += 1;
                }
            }
            b'-' => {
                while bytes.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => {
                // Every byte before `i` is ASCII, so `i` starts a character: name it whole
                // rather than its first byte (`'é'`, not `'Ã'`).
                let bad = component[i..].chars().next().unwrap_or(char::from(b));
                return Err(format!(
                    "character {bad:?} is not allowed (only a-z, 0-9, '.', '_', '-')"
                ));
            }
        }
        if !bytes.get(i).is_some_and(|&next| alnum(next)) {
            return Err(format!(
                "separator {:?} must be followed by a lowercase letter or digit",
                &component[start..i.min(component.len())]
            ));
        }
    }
    Ok(())
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Repository({})", self.0)
    }
}

impl FromStr for Repository {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl AsRef<str> for Repository {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
///
/// ```
/// use oci_types::Tag;
/// assert_eq!("v1.2.3".parse::<Tag>()?.as_str(), "v1.2.3");
/// assert!(".hidden".parse::<Tag>().is_err());
/// # Ok::<(), oci_types::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    /// Parses and validates a tag.
    pub fn parse(input: &str) -> Result<Self> {
        let invalid = |reason: String| Error::Tag {
            input: input.to_owned(),
            reason,
        };
        let Some(first) = input.chars().next() else {
            return Err(invalid("empty tag".to_owned()));
        };
        if !(first.is_ascii_alphanumeric() || first == '_') {
            return Err(invalid(format!(
                "must start with a letter, digit or '_', not {first:?}"
            )));
        }
        if let Some(bad) = input
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
        {
            return Err(invalid(format!(
                "character {bad:?} is not allowed (only letters, digits, '_', '.', '-')"
            )));
        }
        if input.len() > MAX_TAG_LEN {
            return Err(invalid(format!(
                "{} characters, longer than the limit of {MAX_TAG_LEN}",
                input.len()
            )));
        }
        Ok(Self(input.to_owned()))
    }

    /// The tag `latest`, what a reference without tag or digest means.
    pub fn latest() -> Self {
        Self("latest".to_owned())
    }

    /// The tag as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tag({})", self.0)
    }
}

impl FromStr for Tag {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl AsRef<str> for Tag {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl serde::Serialize for Tag {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Tag {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for Repository {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Repository {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The tag under which the referrers tag-schema fallback keeps the referrers of `digest`:
/// `<algorithm truncated to 32>-<hex truncated to 64>`, every character not allowed in a tag
/// replaced by `-` (distribution-spec, "Referrers Tag Schema").
///
/// ```
/// use oci_types::{referrers_tag, Digest};
/// let d = Digest::sha256(b"");
/// assert_eq!(
///     referrers_tag(&d).as_str(),
///     "sha256-e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
/// );
/// ```
pub fn referrers_tag(digest: &crate::Digest) -> Tag {
    referrers_tag_of(digest.algorithm().as_str(), digest.encoded())
}

/// The referrers tag of a digest given as its two raw parts; exposed for algorithms that hoist
/// does not hash but whose tags it must still compute.
pub fn referrers_tag_of(algorithm: &str, encoded: &str) -> Tag {
    let clean = |s: &str, max: usize| -> String {
        s.chars()
            .take(max)
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    };
    let mut tag = clean(algorithm, 32);
    tag.push('-');
    tag.push_str(&clean(encoded, 64));
    // The first character may be '.' or '-' only with a hostile algorithm name; keep it a valid tag.
    if tag.starts_with(['.', '-']) {
        tag.replace_range(0..1, "_");
    }
    Tag(tag)
}
