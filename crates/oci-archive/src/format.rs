//! What the archive formats hold, as files: the OCI image layout's `oci-layout` and
//! `index.json`, and Docker's `manifest.json`; and how image names map onto repositories.

use std::collections::BTreeMap;

use oci_types::{Descriptor, Digest, Reference, Repository, Tag};
use serde::{Deserialize, Serialize};

/// The OCI image layout's marker file.
pub(crate) const OCI_LAYOUT_FILE: &str = "oci-layout";
/// The OCI image layout's index.
pub(crate) const INDEX_FILE: &str = "index.json";
/// Docker's list of images in an archive.
pub(crate) const DOCKER_MANIFEST_FILE: &str = "manifest.json";
/// The content of `oci-layout`.
pub(crate) const OCI_LAYOUT_CONTENT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
/// The annotation naming an index entry's tag (image-spec).
pub(crate) const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation naming an index entry's whole image name (containerd, Docker 25+).
pub(crate) const CONTAINERD_IMAGE_NAME: &str = "io.containerd.image.name";

/// The repository an oci-archive's tags are in, as in an OCI layout read by `oci-layout`.
pub const DEFAULT_REPOSITORY: &str = "default";

/// The format of an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ArchiveFormat {
    /// A tar of an OCI image layout (`oci-archive:`), `gzip` for a `.tar.gz` of one.
    Oci {
        /// Whether the tar is gzip-compressed.
        gzip: bool,
    },
    /// What `docker save` writes (`docker-archive:`).
    Docker(DockerFormat),
}

/// The two formats of a docker-archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum DockerFormat {
    /// Docker 25+: an OCI image layout with `manifest.json` beside it, read by old and new
    /// Docker, podman, skopeo and crane.
    #[default]
    Hybrid,
    /// Before Docker 25: `manifest.json`, configs as `HEX.json` and layers as `HEX.tar`, no
    /// OCI layout.
    Classic,
}

/// The OCI layout's `index.json`, as far as it is read here.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct IndexFile {
    pub(crate) schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) media_type: Option<String>,
    pub(crate) manifests: Vec<Descriptor>,
}

/// One image of Docker's `manifest.json`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct DockerImage {
    /// The path of the image config in the archive.
    #[serde(rename = "Config")]
    pub(crate) config: String,
    /// The names the image is loaded as (`name:tag`); `null` for an untagged image.
    #[serde(rename = "RepoTags", default)]
    pub(crate) repo_tags: Option<Vec<String>>,
    /// The paths of the layers in the archive, base first.
    #[serde(rename = "Layers")]
    pub(crate) layers: Vec<String>,
    /// Descriptors of layers that are not in the archive (foreign layers), by diff_id.
    #[serde(
        rename = "LayerSources",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub(crate) layer_sources: BTreeMap<String, Descriptor>,
}

/// The repository and tag an image name such as `example/app:v1` or
/// `ghcr.io/org/app:1.0` stands for in an archive.
///
/// Names are read as Docker reads them (`busybox:latest` is `docker.io/library/busybox`).
/// The repository is the name without `docker.io/`; for another registry, the registry
/// and the path (`ghcr.io/org/app`), or only the path when the registry has a port (a
/// repository cannot hold a `:`). A name without a tag is `latest`.
pub fn archive_name(name: &str) -> Result<(Repository, Tag), oci_types::Error> {
    let reference = Reference::parse(name)?;
    let tag = reference.tag().cloned().unwrap_or_else(Tag::latest);
    Ok((archive_repository(&reference), tag))
}

/// The repository of [`archive_name`], from a parsed reference.
pub fn archive_repository(reference: &Reference) -> Repository {
    let path = reference.repository();
    if reference.registry() == oci_types::DOCKER_HUB {
        return path.clone();
    }
    Repository::parse(&format!("{}/{path}", reference.registry())).unwrap_or_else(|_| path.clone())
}

/// The name an image is written under in `manifest.json` (`RepoTags`): what Docker shows.
pub(crate) fn docker_name(repo: &Repository, tag: &Tag) -> String {
    let repo = repo.as_str();
    let familiar = repo
        .strip_prefix("library/")
        .filter(|rest| !rest.contains('/'));
    format!("{}:{tag}", familiar.unwrap_or(repo))
}

/// The path of a blob in an OCI layout.
pub(crate) fn blob_path(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm().as_str(), digest.encoded())
}

/// The digest a path of the form `blobs/ALG/HEX` names, if it is one.
pub(crate) fn digest_of_blob_path(path: &str) -> Option<Digest> {
    let rest = path.strip_prefix("blobs/")?;
    let (algorithm, encoded) = rest.split_once('/')?;
    Digest::parse(&format!("{algorithm}:{encoded}")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_onto_repositories_as_docker_reads_them() {
        let cases = [
            ("busybox:latest", "library/busybox", "latest"),
            ("busybox", "library/busybox", "latest"),
            ("docker.io/library/busybox:1", "library/busybox", "1"),
            ("example/app:v1", "example/app", "v1"),
            ("ghcr.io/org/app:1.0", "ghcr.io/org/app", "1.0"),
            ("localhost:5000/app:v2", "app", "v2"),
        ];
        for (name, repo, tag) in cases {
            let (r, t) = archive_name(name).unwrap();
            assert_eq!((r.as_str(), t.as_str()), (repo, tag), "{name}");
        }
    }

    #[test]
    fn docker_names_are_familiar() {
        let name =
            |r: &str, t: &str| docker_name(&Repository::parse(r).unwrap(), &Tag::parse(t).unwrap());
        assert_eq!(name("library/busybox", "1"), "busybox:1");
        assert_eq!(name("example/app", "v1"), "example/app:v1");
        assert_eq!(name("ghcr.io/org/app", "1.0"), "ghcr.io/org/app:1.0");
    }

    #[test]
    fn blob_paths_round_trip() {
        let digest = Digest::sha256(b"x");
        assert_eq!(digest_of_blob_path(&blob_path(&digest)), Some(digest));
        assert_eq!(digest_of_blob_path("blobs/sha256/short"), None);
        assert_eq!(digest_of_blob_path("manifest.json"), None);
    }
}
