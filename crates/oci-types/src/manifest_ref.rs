//! A manifest of a repository, named by tag or by digest.

use std::fmt;

use crate::{Digest, Reference, Tag};

/// A manifest by tag or by digest, as a reference names it within its repository.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ManifestRef {
    /// The manifest a tag points at.
    Tag(Tag),
    /// A manifest by its digest.
    Digest(Digest),
}

impl ManifestRef {
    /// The manifest a reference names: its digest when it has one (a digest pins the content,
    /// so it wins over a tag), else its tag, else `latest`.
    pub fn of(reference: &Reference) -> Self {
        match (reference.digest(), reference.tag()) {
            (Some(digest), _) => Self::Digest(digest.clone()),
            (None, Some(tag)) => Self::Tag(tag.clone()),
            (None, None) => Self::Tag(Tag::latest()),
        }
    }

    /// The tag, when it names one.
    pub fn tag(&self) -> Option<&Tag> {
        match self {
            Self::Tag(tag) => Some(tag),
            Self::Digest(_) => None,
        }
    }

    /// The digest, when it names one.
    pub fn digest(&self) -> Option<&Digest> {
        match self {
            Self::Digest(digest) => Some(digest),
            Self::Tag(_) => None,
        }
    }
}

/// `:TAG` or `@DIGEST`, as it follows a repository's name.
impl fmt::Display for ManifestRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tag(tag) => write!(f, ":{tag}"),
            Self::Digest(digest) => write!(f, "@{digest}"),
        }
    }
}

impl From<Tag> for ManifestRef {
    fn from(tag: Tag) -> Self {
        Self::Tag(tag)
    }
}

impl From<Digest> for ManifestRef {
    fn from(digest: Digest) -> Self {
        Self::Digest(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_wins_over_a_tag_and_nothing_is_latest() {
        let digest = Digest::sha256(b"x");
        let pinned: Reference = format!("example.com/app:v1@{digest}").parse().unwrap();
        assert_eq!(
            ManifestRef::of(&pinned),
            ManifestRef::Digest(digest.clone())
        );
        let tagged: Reference = "example.com/app:v1".parse().unwrap();
        assert_eq!(ManifestRef::of(&tagged).to_string(), ":v1");
        let bare: Reference = "example.com/app".parse().unwrap();
        assert_eq!(
            ManifestRef::of(&bare).tag().map(Tag::as_str),
            Some("latest")
        );
        assert_eq!(
            ManifestRef::from(digest.clone()).to_string(),
            format!("@{digest}")
        );
    }
}
