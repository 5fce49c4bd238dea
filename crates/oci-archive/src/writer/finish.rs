//! Finishing an archive: the OCI layout's `oci-layout` and `index.json`, Docker's
//! `manifest.json`, the end of the tar, and the rename that makes a file archive appear.

use std::collections::BTreeMap;
use std::path::PathBuf;

use bytes::Bytes;
use oci_store::Error as StoreError;
use oci_types::{Descriptor, Digest, Manifest, PlatformMatcher, Repository, Tag};

use super::{ArchiveWriter, State};
use crate::format::{
    ArchiveFormat, CONTAINERD_IMAGE_NAME, DOCKER_MANIFEST_FILE, DockerFormat, DockerImage,
    INDEX_FILE, IndexFile, OCI_LAYOUT_CONTENT, OCI_LAYOUT_FILE, REF_NAME, docker_name,
};
use crate::stored::StoredManifest;
use crate::{Error, Result};

/// What [`ArchiveWriter::finish`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FinishReport {
    /// The archive's path (`None` for a stream).
    pub path: Option<PathBuf>,
    /// The images `manifest.json` lists (docker-archives), with the names each is loaded as.
    pub images: Vec<(Digest, Vec<String>)>,
    /// Choices made that the caller should tell its user about (the platform taken from an
    /// index for a docker-archive).
    pub notes: Vec<String>,
}

impl ArchiveWriter {
    /// Writes the index files and the end of the tar, syncs it and, for a file archive,
    /// renames it to its path. An archive that was given up, or one with nothing tagged or
    /// pushed, is an error, and nothing appears at the path.
    pub async fn finish(&self) -> Result<FinishReport> {
        let _turn = self.shared.turn.lock().await;
        let mut sink = self.take_sink()?;
        let (files, images, notes) = {
            let mut state = self.state();
            state.finished = true;
            match self.index_files(&state) {
                Ok(planned) => planned,
                Err(e) => {
                    state.broken = Some(e.to_string());
                    return Err(e);
                }
            }
        };
        let destination = self.state().destination.take();
        let display = self.shared.display.clone();
        let path = tokio::task::spawn_blocking(move || -> Result<Option<PathBuf>> {
            let io = |e| Error::Store(StoreError::io(format!("cannot finish {display}"), e));
            for (name, content) in &files {
                sink.file(name, content).map_err(io)?;
            }
            sink.finish().map_err(io)?;
            let Some(Destination { temporary, path }) = destination else {
                return Ok(None);
            };
            temporary
                .persist(&path)
                .map_err(|e| Error::io("cannot rename the finished archive to", &path, e.error))?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                // The rename is durable once the directory is.
                if let Ok(dir) = std::fs::File::open(dir) {
                    let _ = dir.sync_all();
                }
            }
            Ok(Some(path))
        })
        .await
        .map_err(|e| {
            Error::Store(StoreError::io(
                "finishing an archive",
                std::io::Error::other(e),
            ))
        })??;
        for note in &notes {
            tracing::info!(archive = %self.shared.display, "{note}");
        }
        Ok(FinishReport {
            path,
            images,
            notes,
        })
    }

    /// The files that end the archive, with the images of `manifest.json` and the notes.
    #[allow(clippy::type_complexity)]
    fn index_files(
        &self,
        state: &State,
    ) -> Result<(
        Vec<(String, Bytes)>,
        Vec<(Digest, Vec<String>)>,
        Vec<String>,
    )> {
        let invalid = |reason: String| Error::Store(self.failure(reason));
        if state.manifests.is_empty() {
            return Err(invalid("nothing was written into the archive".to_owned()));
        }
        let tagged: Vec<(&Repository, &Tag, &Digest)> = state
            .tags
            .iter()
            .flat_map(|(repo, tags)| tags.iter().map(move |(tag, digest)| (repo, tag, digest)))
            .collect();
        let mut files = Vec::new();
        let mut notes = Vec::new();
        let mut images: Vec<(Digest, Vec<String>)> = Vec::new();
        let docker = match self.shared.format {
            ArchiveFormat::Docker(format) => Some(format),
            ArchiveFormat::Oci { .. } => None,
        };
        if docker != Some(DockerFormat::Classic) {
            let mut entries = Vec::new();
            for (repo, tag, digest) in &tagged {
                let mut descriptor = state.manifests[*digest].descriptor.clone();
                descriptor
                    .annotations
                    .insert(REF_NAME.to_owned(), tag.to_string());
                if docker.is_some() {
                    descriptor
                        .annotations
                        .insert(CONTAINERD_IMAGE_NAME.to_owned(), full_name(repo, tag));
                }
                entries.push(descriptor);
            }
            for root in untagged_roots(state) {
                entries.push(root.descriptor.clone());
            }
            let index = IndexFile {
                schema_version: 2,
                media_type: Some(oci_types::media_type::OCI_INDEX.to_owned()),
                manifests: entries,
            };
            files.push((
                OCI_LAYOUT_FILE.to_owned(),
                Bytes::from_static(OCI_LAYOUT_CONTENT),
            ));
            files.push((INDEX_FILE.to_owned(), Bytes::from(to_json(&index))));
        }
        if docker.is_some() {
            for (repo, tag, digest) in &tagged {
                let image = self.docker_image_of(state, digest, &mut notes)?;
                let name = match self.shared.names.get(repo) {
                    Some(name) => format!("{name}:{tag}"),
                    None => docker_name(repo, tag),
                };
                match images.iter_mut().find(|(d, _)| *d == image) {
                    Some((_, names)) => names.push(name),
                    None => images.push((image, vec![name])),
                }
            }
            if tagged.is_empty() {
                for root in untagged_roots(state) {
                    let image = self.docker_image_of(state, &root.descriptor.digest, &mut notes)?;
                    if !images.iter().any(|(d, _)| *d == image) {
                        images.push((image, Vec::new()));
                    }
                }
            }
            let mut listed = Vec::new();
            for (digest, names) in &images {
                listed.push(self.docker_entry(state, digest, names)?);
            }
            files.push((
                DOCKER_MANIFEST_FILE.to_owned(),
                Bytes::from(to_json(&listed)),
            ));
        }
        Ok((files, images, notes))
    }

    /// The image a docker-archive takes for a manifest: itself, or for an index the child
    /// for the writer's platform.
    fn docker_image_of(
        &self,
        state: &State,
        digest: &Digest,
        notes: &mut Vec<String>,
    ) -> Result<Digest> {
        let invalid = |reason: String| Error::Store(self.failure(reason));
        let stored = &state.manifests[digest];
        let manifest =
            Manifest::parse(&stored.bytes, &stored.descriptor.media_type).map_err(|e| {
                invalid(format!(
                    "manifest {digest} cannot go into a docker-archive: {e}"
                ))
            })?;
        let Manifest::Index(index) = manifest else {
            return Ok(digest.clone());
        };
        let children: Vec<&Descriptor> = index
            .manifests
            .iter()
            .filter(|child| child.platform.is_some() && state.manifests.contains_key(&child.digest))
            .collect();
        let matcher = PlatformMatcher::new(&self.shared.platform);
        let best = matcher.best(children.iter().filter_map(|c| c.platform.as_ref()));
        let Some(chosen) = best.map(|i| children[i]) else {
            let offered: Vec<String> = children
                .iter()
                .filter_map(|c| c.platform.as_ref().map(ToString::to_string))
                .collect();
            return Err(invalid(format!(
                "index {digest} has no image for {} among those written ({}); a docker-archive holds images, not indexes: choose a platform",
                self.shared.platform,
                if offered.is_empty() {
                    "none".to_owned()
                } else {
                    offered.join(", ")
                }
            )));
        };
        notes.push(format!(
            "{digest} is an index; the docker-archive holds its {} image {} (docker load takes images only)",
            chosen.platform.as_ref().map(ToString::to_string).unwrap_or_default(),
            chosen.digest
        ));
        Ok(chosen.digest.clone())
    }

    /// The `manifest.json` entry of an image.
    fn docker_entry(
        &self,
        state: &State,
        digest: &Digest,
        names: &[String],
    ) -> Result<DockerImage> {
        let invalid = |reason: String| Error::Store(self.failure(reason));
        let stored = &state.manifests[digest];
        let Ok(Manifest::Image(manifest)) =
            Manifest::parse(&stored.bytes, &stored.descriptor.media_type)
        else {
            return Err(invalid(format!("{digest} is not an image manifest")));
        };
        let entry_of = |descriptor: &Descriptor| {
            state
                .blobs
                .get(&descriptor.digest)
                .map(|(_, name)| name.clone())
                .ok_or_else(|| {
                    invalid(format!(
                        "image {digest} needs blob {}, which is not in the archive",
                        descriptor.digest
                    ))
                })
        };
        Ok(DockerImage {
            config: entry_of(&manifest.config)?,
            repo_tags: (!names.is_empty()).then(|| names.to_vec()),
            layers: manifest
                .layers
                .iter()
                .map(entry_of)
                .collect::<Result<_>>()?,
            layer_sources: BTreeMap::new(),
        })
    }
}

use super::Destination;

/// Manifests nothing else points at and no tag names, by digest.
fn untagged_roots(state: &State) -> Vec<&StoredManifest> {
    let mut children = std::collections::HashSet::new();
    for stored in state.manifests.values() {
        if let Ok(Manifest::Index(index)) =
            Manifest::parse(&stored.bytes, &stored.descriptor.media_type)
        {
            children.extend(index.manifests.into_iter().map(|c| c.digest));
        }
    }
    let tagged: std::collections::HashSet<&Digest> =
        state.tags.values().flat_map(|t| t.values()).collect();
    let mut roots: Vec<&StoredManifest> = state
        .manifests
        .iter()
        .filter(|(digest, _)| !children.contains(*digest) && !tagged.contains(digest))
        .map(|(_, stored)| stored)
        .collect();
    roots.sort_by(|a, b| {
        a.descriptor
            .digest
            .as_str()
            .cmp(b.descriptor.digest.as_str())
    });
    roots
}

/// The whole name containerd records (`docker.io/library/busybox:latest`).
fn full_name(repo: &Repository, tag: &Tag) -> String {
    let repo = repo.as_str();
    let first = repo.split('/').next().unwrap_or(repo);
    if repo.contains('/') && (first.contains('.') || first == "localhost") {
        format!("{repo}:{tag}")
    } else {
        format!("{}/{repo}:{tag}", oci_types::DOCKER_HUB)
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Plain structs of strings and descriptors: serialising them cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}
