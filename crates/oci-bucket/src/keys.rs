//! Where everything lives in the bucket, under the store's prefix.
//!
//! ```text
//! blobs/ALG/XX/HEX                           content, blobs and manifests alike, written once
//! repositories/REPO/_blobs/ALG/HEX           a blob linked into REPO: {"size": N}
//! repositories/REPO/_manifests/ALG/HEX       a manifest in REPO: media type, size, subject...
//! repositories/REPO/_tags/TAG                a tag: {"digest": "sha256:..."}; empty: removed
//! repositories/REPO/_referrers/ALG/HEX/ALG/HEX  empty: a manifest of REPO whose subject is HEX
//! catalog/REPO/_repository                   empty: REPO exists
//! uploads/ID/state-GEN, tail-GEN, part-GEN-N, data   a chunked upload (see `upload`)
//! gc/collecting/ALG/HEX                      a collection is about to remove HEX (see `gc`)
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

/// What an object under `repositories/` is, for the collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RepoObject {
    /// `_blobs/ALG/HEX`.
    BlobLink(Digest),
    /// `_manifests/ALG/HEX`.
    ManifestLink(Digest),
    /// A tag, a referrers marker.
    Other,
}

impl Keys {
    pub(crate) fn repositories_root(&self) -> Path {
        self.path("repositories")
    }

    pub(crate) fn blobs_root(&self) -> Path {
        self.path("blobs")
    }

    pub(crate) fn uploads_root(&self) -> Path {
        self.path("uploads")
    }

    pub(crate) fn collecting_root(&self) -> Path {
        self.path("gc/collecting")
    }

    /// The marker a collection writes before it removes `digest`'s content and links.
    pub(crate) fn collecting(&self, digest: &Digest) -> Path {
        self.path(&format!(
            "gc/collecting/{}/{}",
            digest.algorithm(),
            digest.encoded()
        ))
    }

    /// The digest a `gc/collecting/ALG/HEX` marker names.
    pub(crate) fn collected_digest(&self, location: &Path) -> Option<Digest> {
        let rest = location.as_ref().strip_prefix(&self.prefix)?;
        let (alg, hex) = rest.strip_prefix("gc/collecting/")?.split_once('/')?;
        format!("{alg}:{hex}").parse().ok()
    }

    /// The digest of a content object `blobs/ALG/XX/HEX`.
    pub(crate) fn content_digest(&self, location: &Path) -> Option<Digest> {
        let rest = location.as_ref().strip_prefix(&self.prefix)?;
        let mut parts = rest.strip_prefix("blobs/")?.split('/');
        let (Some(alg), Some(_fan), Some(hex), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        format!("{alg}:{hex}").parse().ok()
    }

    /// The repository and kind of an object under `repositories/`. Repository components
    /// never start with `_`, so the first `/_` ends the repository's name.
    pub(crate) fn repo_object(&self, location: &Path) -> Option<(String, RepoObject)> {
        let rest = location.as_ref().strip_prefix(&self.prefix)?;
        let rest = rest.strip_prefix("repositories/")?;
        let at = rest.find("/_")?;
        let (repo, kind) = (&rest[..at], &rest[at + 1..]);
        let digest_in = |tail: &str| {
            let (alg, hex) = tail.split_once('/')?;
            format!("{alg}:{hex}").parse::<Digest>().ok()
        };
        let object = if let Some(tail) = kind.strip_prefix("_blobs/") {
            digest_in(tail).map_or(RepoObject::Other, RepoObject::BlobLink)
        } else if let Some(tail) = kind.strip_prefix("_manifests/") {
            digest_in(tail).map_or(RepoObject::Other, RepoObject::ManifestLink)
        } else {
            RepoObject::Other
        };
        Some((repo.to_owned(), object))
    }

    /// The upload id of an object under `uploads/`.
    pub(crate) fn upload_of<'a>(&self, location: &'a Path) -> Option<&'a str> {
        let rest = location.as_ref().strip_prefix(&self.prefix)?;
        rest.strip_prefix("uploads/")?.split('/').next()
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
    fn locations_are_read_back() {
        use super::RepoObject;
        let keys = Keys::new("p/q");
        let repo = "library/ubuntu".parse().unwrap();
        let digest = oci_types::Digest::sha256(b"x");
        assert_eq!(
            keys.content_digest(&keys.content(&digest)),
            Some(digest.clone())
        );
        assert_eq!(
            keys.repo_object(&keys.blob_link(&repo, &digest)),
            Some((
                "library/ubuntu".to_owned(),
                RepoObject::BlobLink(digest.clone())
            ))
        );
        assert_eq!(
            keys.repo_object(&keys.manifest_link(&repo, &digest)),
            Some((
                "library/ubuntu".to_owned(),
                RepoObject::ManifestLink(digest.clone())
            ))
        );
        let tag = keys.tag(&repo, &"_manifests".parse().unwrap());
        assert_eq!(
            keys.repo_object(&tag).map(|(_, o)| o),
            Some(RepoObject::Other)
        );
        assert_eq!(
            keys.collected_digest(&keys.collecting(&digest)),
            Some(digest)
        );
        let file = keys.upload_file("abc", "state-1");
        assert_eq!(keys.upload_of(&file), Some("abc"));
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
