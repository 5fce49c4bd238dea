//! Where everything lives in the bucket, under the store's prefix.
//!
//! ```text
//! blobs/ALG/XX/HEX                           content, blobs and manifests alike, written once
//! repositories/REPO/_blobs/ALG/HEX           a blob linked into REPO: {"size": N}
//! repositories/REPO/_manifests/ALG/HEX       a manifest in REPO: media type, size, subject...
//! repositories/REPO/_tags/TAG                a tag: {"digest": "sha256:..."}
//! repositories/REPO/_referrers/ALG/HEX/ALG/HEX  empty: a manifest of REPO whose subject is HEX
//! catalog/REPO/_repository                   empty: REPO exists
//! uploads/ID/state-GEN, tail-GEN, part-GEN-N, data   a chunked upload (see `upload`)
//! ```
//!
//! Every mutable name is an object of its own, so that no update is a read-modify-write of a
//! shared object: two replicas tagging one repository at once write two objects and lose
//! nothing. Names are safe as path segments: digests are hex, and repository components and
//! tags start with a letter, a digit or `_` (repository components) per the grammar, so
//! none is `.`, `..` or one of the `_`-words above.

use object_store::path::Path;
use oci_types::{Digest, Repository, Tag};

/// The object names of one store, under its prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        let prefix = prefix.trim_matches('/');
        Self {
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
        }
    }

    /// The prefix as given to [`Keys::new`], normalised.
    pub(crate) fn prefix(&self) -> &str {
        self.prefix.trim_end_matches('/')
    }

    fn path(&self, rest: &str) -> Path {
        Path::from(format!("{}{rest}", self.prefix))
    }

    /// The prefix itself, for the start-up probe.
    pub(crate) fn root(&self) -> Option<Path> {
        (!self.prefix.is_empty()).then(|| self.path(""))
    }

    pub(crate) fn content(&self, digest: &Digest) -> Path {
        let hex = digest.encoded();
        let fan = hex.get(..2).unwrap_or(hex);
        self.path(&format!("blobs/{}/{fan}/{hex}", digest.algorithm()))
    }

    fn repo(&self, repo: &Repository, rest: &str) -> Path {
        self.path(&format!("repositories/{repo}/{rest}"))
    }

    pub(crate) fn blob_link(&self, repo: &Repository, digest: &Digest) -> Path {
        self.repo(
            repo,
            &format!("_blobs/{}/{}", digest.algorithm(), digest.encoded()),
        )
    }

    pub(crate) fn manifest_link(&self, repo: &Repository, digest: &Digest) -> Path {
        self.repo(
            repo,
            &format!("_manifests/{}/{}", digest.algorithm(), digest.encoded()),
        )
    }

    pub(crate) fn tags(&self, repo: &Repository) -> Path {
        self.repo(repo, "_tags")
    }

    pub(crate) fn tag(&self, repo: &Repository, tag: &Tag) -> Path {
        self.repo(repo, &format!("_tags/{tag}"))
    }

    pub(crate) fn referrers(&self, repo: &Repository, subject: &Digest) -> Path {
        self.repo(
            repo,
            &format!("_referrers/{}/{}", subject.algorithm(), subject.encoded()),
        )
    }

    pub(crate) fn referrer(&self, repo: &Repository, subject: &Digest, digest: &Digest) -> Path {
        self.repo(
            repo,
            &format!(
                "_referrers/{}/{}/{}/{}",
                subject.algorithm(),
                subject.encoded(),
                digest.algorithm(),
                digest.encoded()
            ),
        )
    }

    pub(crate) fn catalog(&self) -> Path {
        self.path("catalog")
    }

    pub(crate) fn catalog_entry(&self, repo: &Repository) -> Path {
        self.path(&format!("catalog/{repo}/_repository"))
    }

    /// Where listing the catalog starts for names after `name`: every repository that sorts
    /// after `name` has an entry that sorts after this key (its name is longer with `name` as
    /// a prefix, or differs at a greater character), so nothing is skipped.
    pub(crate) fn catalog_offset(&self, name: &str) -> Path {
        self.path(&format!("catalog/{name}"))
    }

    /// The repository of a catalog entry's location.
    pub(crate) fn repository_of(&self, location: &Path) -> Option<String> {
        let rest = location.as_ref().strip_prefix(&self.prefix)?;
        rest.strip_prefix("catalog/")?
            .strip_suffix("/_repository")
            .map(str::to_owned)
    }

    pub(crate) fn upload(&self, id: &str) -> Path {
        self.path(&format!("uploads/{id}"))
    }

    pub(crate) fn upload_file(&self, id: &str, name: &str) -> Path {
        self.path(&format!("uploads/{id}/{name}"))
    }
}

/// The last segment of a location.
pub(crate) fn last_segment(location: &Path) -> &str {
    location.as_ref().rsplit('/').next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::Keys;

    #[test]
    fn keys_sit_under_the_prefix() {
        let keys = Keys::new("/team/registry/");
        let repo = "library/ubuntu".parse().unwrap();
        let digest = oci_types::Digest::sha256(b"x");
        let content = keys.content(&digest);
        assert!(content.as_ref().starts_with("team/registry/blobs/sha256/"));
        let entry = keys.catalog_entry(&repo);
        assert_eq!(
            keys.repository_of(&entry).as_deref(),
            Some("library/ubuntu")
        );
        assert_eq!(Keys::new("").catalog().as_ref(), "catalog");
    }

    #[test]
    fn the_catalog_offset_skips_nothing_after_the_name() {
        let keys = Keys::new("p");
        let names = ["a", "a-b", "a/b", "a0", "b"];
        for (i, after) in names.iter().enumerate() {
            let offset = keys.catalog_offset(after);
            for name in &names[i + 1..] {
                let entry = keys.catalog_entry(&name.parse().unwrap());
                assert!(entry > offset, "{name} after {after}");
            }
        }
    }
}
