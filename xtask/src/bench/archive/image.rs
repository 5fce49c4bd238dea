//! The archive scenario's image and archives, and the checks that an archive or a layout holds
//! the image whole.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::{NAME, TAG};
use crate::bench::data::{blob_path, layout_image, read_json};
use crate::bench::machine::file_len;
use crate::bench::measure::timed;

/// The image of the scenario, in its layout, and the archives of it made in the set-up.
#[derive(Debug)]
pub(super) struct Image {
    pub(super) layout: PathBuf,
    pub(super) manifest: String,
    pub(super) config: String,
    /// The layer blobs (digest, size), lowest first.
    pub(super) layers: Vec<(String, u64)>,
    /// skopeo's and hoist's archives of it.
    pub(super) skopeo_archive: PathBuf,
    pub(super) hoist_archive: PathBuf,
}

impl Image {
    pub(super) fn oci(&self) -> String {
        format!("oci:{}:{TAG}", self.layout.display())
    }

    pub(super) fn layer_paths(&self) -> Vec<PathBuf> {
        self.layers
            .iter()
            .map(|(digest, _)| blob_path(&self.layout, digest))
            .collect()
    }

    pub(super) fn layer_bytes(&self) -> u64 {
        self.layers.iter().map(|(_, size)| size).sum()
    }
}

pub(super) fn docker_archive(file: &Path) -> String {
    format!("docker-archive:{}:{NAME}", file.display())
}

/// The config digest of the manifest `manifest` in `layout`.
pub(super) fn config_digest(layout: &Path, manifest: &str) -> Result<String> {
    let body = read_json(&blob_path(layout, manifest))?;
    body["config"]["digest"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("the manifest {manifest} has no config digest"))
}

/// The repository tags and the number of layers of the first image in the `manifest.json` of
/// a docker-archive.
fn parse_archive_manifest(text: &str) -> Result<(Vec<String>, usize)> {
    let value: Value = serde_json::from_str(text).context("manifest.json is not JSON")?;
    let first = value
        .as_array()
        .and_then(|images| images.first())
        .context("manifest.json lists no image")?;
    let tags = first["RepoTags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    let layers = first["Layers"]
        .as_array()
        .context("manifest.json has no Layers")?
        .len();
    Ok((tags, layers))
}

/// Whether `tag` (as `manifest.json` or Docker writes it) names [`NAME`].
fn names_image(tag: &str) -> bool {
    tag == NAME || tag.strip_prefix("docker.io/") == Some(NAME)
}

/// Fails unless `file` is a docker-archive of `image` as [`NAME`] (by its `manifest.json`);
/// returns its size.
pub(super) fn check_archive(file: &Path, image: &Image) -> Result<u64> {
    let size = file_len(file)?;
    if size < image.layer_bytes() / 2 {
        bail!("{} has only {size} bytes", file.display());
    }
    let mut tar = Command::new("tar");
    tar.args(["--occurrence=1", "-xOf"])
        .arg(file)
        .arg("manifest.json");
    let (_, output) = timed(&mut tar)?;
    let (tags, layers) = parse_archive_manifest(&String::from_utf8_lossy(&output.stdout))
        .with_context(|| format!("in {}", file.display()))?;
    if !tags.iter().any(|t| names_image(t)) || layers != image.layers.len() {
        bail!(
            "{} holds {tags:?} with {layers} layers, expected {NAME} with {}",
            file.display(),
            image.layers.len()
        );
    }
    Ok(size)
}

/// Fails unless the layout `dir` has an image tagged [`TAG`] of as many layers as `image`,
/// each blob present with its size.
pub(super) fn check_layout(dir: &Path, image: &Image) -> Result<()> {
    let read = layout_image(dir, TAG)?;
    if read.layers.len() != image.layers.len() {
        bail!(
            "{} has {} layers, expected {}",
            dir.display(),
            read.layers.len(),
            image.layers.len()
        );
    }
    for (digest, size) in &read.layers {
        let path = blob_path(dir, digest);
        let actual = file_len(&path)?;
        if actual != *size {
            bail!("{} has {actual} bytes, expected {size}", path.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_outputs_are_parsed() {
        let classic = r#"[{"Config":"ab.json","RepoTags":["bench/img:v1"],"Layers":["1/layer.tar","2/layer.tar"]}]"#;
        assert_eq!(
            parse_archive_manifest(classic).unwrap(),
            (vec!["bench/img:v1".to_owned()], 2)
        );
        let untagged = r#"[{"Config":"blobs/sha256/ab","RepoTags":null,"Layers":[]}]"#;
        assert_eq!(parse_archive_manifest(untagged).unwrap(), (vec![], 0));
        assert!(parse_archive_manifest("[]").is_err());
        assert!(parse_archive_manifest("{").is_err());
        assert!(parse_archive_manifest(r#"[{"RepoTags":[]}]"#).is_err());
        assert!(names_image("bench/img:v1"));
        assert!(names_image("docker.io/bench/img:v1"));
        assert!(!names_image("bench/img:v2"));
        assert!(!names_image("quay.io/bench/img:v1"));
    }
}
