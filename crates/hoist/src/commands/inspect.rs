//! `hoist inspect`: what an image or index is, for people (text) and scripts (`--json`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{Context, Result};
use oci_build::MAX_CONFIG_SIZE;
use oci_store::OciInterfaceExt;
use oci_types::{Descriptor, ImageIndex, ImageManifest, Manifest};
use serde_json::{Value, json};

use crate::cli::InspectArgs;
use crate::commands::Ctx;
use crate::commands::manifest::read_for_platform;
use crate::output::{count, human_size, print_bytes, print_json};

pub(crate) async fn run(ctx: &Ctx, args: InspectArgs) -> Result<()> {
    let location = &args.target.reference;
    let place = ctx.opener.open(location).await?;
    let chosen = read_for_platform(&place, location, args.target.platform.as_ref()).await?;
    let descriptor = chosen.manifest.descriptor.clone();
    let body = if descriptor.media_type.is_index() || descriptor.media_type.is_manifest() {
        match chosen
            .manifest
            .parse(&place.repo)
            .with_context(|| format!("cannot read the manifest of {location}"))?
        {
            Manifest::Index(index) => Body::Index(index),
            Manifest::Image(manifest) => {
                let config = if manifest.config.media_type.is_config() {
                    let bytes = place
                        .store
                        .get_blob_bytes(&place.repo, &manifest.config.digest, MAX_CONFIG_SIZE)
                        .await
                        .with_context(|| format!("cannot read the config of {location}"))?;
                    Some(
                        ImageConfig::parse(&bytes)
                            .with_context(|| format!("cannot read the config of {location}"))?,
                    )
                } else {
                    None
                };
                Body::Image { manifest, config }
            }
            _ => Body::Other,
        }
    } else {
        Body::Other
    };
    let inspected = Inspected {
        reference: location.to_string(),
        descriptor,
        index: chosen.index.map(|index| index.descriptor),
        body,
    };
    if args.json {
        print_json(&inspected.to_json())
    } else {
        print_bytes(inspected.to_text().as_bytes())
    }
}

/// What `hoist inspect` shows.
#[derive(Debug)]
pub(crate) struct Inspected {
    /// The reference as hoist read it.
    reference: String,
    /// The manifest's descriptor.
    descriptor: Descriptor,
    /// The index the manifest was chosen from, with `--platform`.
    index: Option<Descriptor>,
    body: Body,
}

// One value per command, never in a collection: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Body {
    Index(ImageIndex),
    Image {
        manifest: ImageManifest,
        /// `None` for artifacts, whose config is not an image config.
        config: Option<ImageConfig>,
    },
    /// A manifest hoist does not read (Docker schema 1, unknown artifact kinds).
    Other,
}

/// The parts of an image config that `inspect` shows.
#[derive(Debug, Default, PartialEq, Eq)]
struct ImageConfig {
    platform: Option<String>,
    created: Option<String>,
    labels: BTreeMap<String, String>,
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
}

impl ImageConfig {
    /// Reads an OCI or Docker image config; fields that are missing or of another shape are
    /// left out rather than refused (configs in the wild vary).
    fn parse(bytes: &[u8]) -> Result<Self> {
        let value: Value = serde_json::from_slice(bytes).context("the config is not JSON")?;
        let text = |v: &Value| v.as_str().map(str::to_owned);
        let platform = match (
            value.get("os").and_then(Value::as_str),
            value.get("architecture").and_then(Value::as_str),
        ) {
            (Some(os), Some(architecture)) => {
                let mut platform = format!("{os}/{architecture}");
                if let Some(variant) = value
                    .get("variant")
                    .and_then(Value::as_str)
                    .filter(|v| !v.is_empty())
                {
                    platform.push('/');
                    platform.push_str(variant);
                }
                Some(platform)
            }
            _ => None,
        };
        let runtime = value.get("config");
        let strings = |key: &str| -> Option<Vec<String>> {
            runtime?
                .get(key)?
                .as_array()?
                .iter()
                .map(text)
                .collect::<Option<Vec<_>>>()
        };
        let labels = runtime
            .and_then(|c| c.get("Labels"))
            .and_then(Value::as_object)
            .map(|labels| {
                labels
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), text(v)?)))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            platform,
            created: value.get("created").and_then(text),
            labels,
            entrypoint: strings("Entrypoint"),
            cmd: strings("Cmd"),
        })
    }
}

/// The width of the keys in the text output.
const KEY_WIDTH: usize = 15;

/// The sum of the layers' sizes; the sizes are the manifest's word, so a sum past `u64` stays
/// at its largest value.
fn total_size(layers: &[Descriptor]) -> u64 {
    layers
        .iter()
        .fold(0u64, |sum, layer| sum.saturating_add(layer.size))
}

fn line(out: &mut String, key: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "{:<KEY_WIDTH$}{value}", format!("{key}:"));
}

fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_default()
}

impl Inspected {
    /// The text for people; stable in its keys and order, so tests and eyes can rely on it.
    pub(crate) fn to_text(&self) -> String {
        let mut out = String::new();
        line(&mut out, "reference", &self.reference);
        line(&mut out, "digest", &self.descriptor.digest);
        line(&mut out, "media type", &self.descriptor.media_type);
        if let Some(index) = &self.index {
            line(&mut out, "index", &index.digest);
        }
        match &self.body {
            Body::Index(index) => {
                if let Some(artifact_type) = &index.artifact_type {
                    line(&mut out, "artifact type", artifact_type);
                }
                let platforms: Vec<String> = index
                    .manifests
                    .iter()
                    .map(|child| {
                        child
                            .platform
                            .as_ref()
                            .map_or_else(|| "-".to_owned(), ToString::to_string)
                    })
                    .collect();
                let width = platforms.iter().map(String::len).max().unwrap_or(0);
                line(
                    &mut out,
                    "manifests",
                    count(index.manifests.len(), "manifest", "manifests"),
                );
                for (child, platform) in index.manifests.iter().zip(&platforms) {
                    let _ = write!(out, "  {platform:<width$}  {}", child.digest);
                    if let Some(kind) = child.annotations.get("vnd.docker.reference.type") {
                        let _ = write!(out, "  ({kind})");
                    }
                    out.push('\n');
                }
            }
            Body::Image { manifest, config } => {
                if let Some(artifact_type) = &manifest.artifact_type {
                    line(&mut out, "artifact type", artifact_type);
                }
                if let Some(config) = config {
                    if let Some(platform) = &config.platform {
                        line(&mut out, "platform", platform);
                    }
                    if let Some(created) = &config.created {
                        line(&mut out, "created", created);
                    }
                }
                line(
                    &mut out,
                    "config",
                    format!(
                        "{} ({})",
                        manifest.config.digest,
                        human_size(manifest.config.size)
                    ),
                );
                line(
                    &mut out,
                    "layers",
                    count(manifest.layers.len(), "layer", "layers"),
                );
                for layer in &manifest.layers {
                    let _ = writeln!(
                        out,
                        "  {}  {:>9}  {}",
                        layer.digest,
                        human_size(layer.size),
                        layer.media_type
                    );
                }
                let total = total_size(&manifest.layers);
                line(
                    &mut out,
                    "total",
                    format!("{} ({total} bytes)", human_size(total)),
                );
                if let Some(config) = config {
                    if !config.labels.is_empty() {
                        line(
                            &mut out,
                            "labels",
                            count(config.labels.len(), "label", "labels"),
                        );
                        for (key, value) in &config.labels {
                            let _ = writeln!(out, "  {key}={value}");
                        }
                    }
                    if let Some(entrypoint) = &config.entrypoint {
                        line(&mut out, "entrypoint", json_list(entrypoint));
                    }
                    if let Some(cmd) = &config.cmd {
                        line(&mut out, "cmd", json_list(cmd));
                    }
                }
            }
            Body::Other => {}
        }
        out
    }

    /// The JSON for scripts: every key always present (null or empty when unknown).
    pub(crate) fn to_json(&self) -> Value {
        let descriptor = |d: &Descriptor| {
            json!({
                "digest": d.digest.to_string(),
                "mediaType": d.media_type.to_string(),
                "size": d.size,
            })
        };
        let mut value = json!({
            "reference": self.reference,
            "digest": self.descriptor.digest.to_string(),
            "mediaType": self.descriptor.media_type.to_string(),
            "size": self.descriptor.size,
            "index": self.index.as_ref().map(|i| i.digest.to_string()),
        });
        let extra = match &self.body {
            Body::Index(index) => json!({
                "kind": "index",
                "artifactType": index.artifact_type.as_ref().map(ToString::to_string),
                "manifests": index.manifests.iter().map(|child| {
                    let mut entry = descriptor(child);
                    entry["platform"] = json!(child.platform.as_ref().map(ToString::to_string));
                    entry["annotations"] = json!(child.annotations);
                    entry
                }).collect::<Vec<_>>(),
                "annotations": index.annotations,
            }),
            Body::Image { manifest, config } => {
                let empty = ImageConfig::default();
                let config_facts = config.as_ref().unwrap_or(&empty);
                json!({
                    "kind": "image",
                    "artifactType": manifest.artifact_type.as_ref().map(ToString::to_string),
                    "platform": config_facts.platform,
                    "created": config_facts.created,
                    "config": descriptor(&manifest.config),
                    "layers": manifest.layers.iter().map(descriptor).collect::<Vec<_>>(),
                    "totalSize": total_size(&manifest.layers),
                    "labels": config_facts.labels,
                    "entrypoint": config_facts.entrypoint,
                    "cmd": config_facts.cmd,
                    "annotations": manifest.annotations,
                })
            }
            Body::Other => json!({ "kind": "other" }),
        };
        if let (Some(value), Value::Object(extra)) = (value.as_object_mut(), extra) {
            value.extend(extra);
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use oci_types::{Digest, MediaType, Platform, media_type};

    use super::*;

    const CONFIG: &str = r#"{
        "architecture": "arm64", "variant": "v8", "os": "linux",
        "created": "2024-06-20T20:16:57Z",
        "config": {
            "Entrypoint": ["/docker-entrypoint.sh"],
            "Cmd": ["nginx", "-g", "daemon off;"],
            "Labels": {"org.opencontainers.image.version": "1.27", "maintainer": "someone"}
        },
        "rootfs": {"type": "layers", "diff_ids": []}
    }"#;

    fn digest(seed: &str) -> Digest {
        Digest::sha256(seed.as_bytes())
    }

    fn image() -> Inspected {
        let config = Descriptor::new(
            MediaType::from_static(media_type::OCI_CONFIG),
            digest("config"),
            1536,
        );
        let layers = vec![
            Descriptor::new(
                MediaType::from_static(media_type::OCI_LAYER_GZIP),
                digest("base"),
                3_623_807,
            ),
            Descriptor::new(
                MediaType::from_static(media_type::OCI_LAYER_GZIP),
                digest("app"),
                512,
            ),
        ];
        Inspected {
            reference: "localhost:5000/web:1.27".to_owned(),
            descriptor: Descriptor::new(
                MediaType::from_static(media_type::OCI_MANIFEST),
                digest("manifest"),
                900,
            ),
            index: Some(Descriptor::new(
                MediaType::from_static(media_type::OCI_INDEX),
                digest("index"),
                400,
            )),
            body: Body::Image {
                manifest: ImageManifest::new(config, layers),
                config: Some(ImageConfig::parse(CONFIG.as_bytes()).unwrap()),
            },
        }
    }

    #[test]
    fn config_facts() {
        let config = ImageConfig::parse(CONFIG.as_bytes()).unwrap();
        assert_eq!(config.platform.as_deref(), Some("linux/arm64/v8"));
        assert_eq!(config.created.as_deref(), Some("2024-06-20T20:16:57Z"));
        assert_eq!(config.labels.len(), 2);
        assert_eq!(config.cmd.unwrap(), ["nginx", "-g", "daemon off;"]);
        assert_eq!(
            ImageConfig::parse(b"{}").unwrap(),
            ImageConfig::default(),
            "a config without the optional parts"
        );
        assert!(ImageConfig::parse(b"not json").is_err());
    }

    #[test]
    fn image_text() {
        let expected = format!(
            "\
reference:     localhost:5000/web:1.27
digest:        {manifest}
media type:    application/vnd.oci.image.manifest.v1+json
index:         {index}
platform:      linux/arm64/v8
created:       2024-06-20T20:16:57Z
config:        {config} (1.5 KiB)
layers:        2 layers
  {base}    3.5 MiB  application/vnd.oci.image.layer.v1.tar+gzip
  {app}      512 B  application/vnd.oci.image.layer.v1.tar+gzip
total:         3.5 MiB (3624319 bytes)
labels:        2 labels
  maintainer=someone
  org.opencontainers.image.version=1.27
entrypoint:    [\"/docker-entrypoint.sh\"]
cmd:           [\"nginx\",\"-g\",\"daemon off;\"]
",
            manifest = digest("manifest"),
            index = digest("index"),
            config = digest("config"),
            base = digest("base"),
            app = digest("app"),
        );
        assert_eq!(image().to_text(), expected);
    }

    #[test]
    fn image_json() {
        let value = image().to_json();
        assert_eq!(value["kind"], "image");
        assert_eq!(value["digest"], digest("manifest").to_string());
        assert_eq!(value["index"], digest("index").to_string());
        assert_eq!(value["platform"], "linux/arm64/v8");
        assert_eq!(value["totalSize"], 3_624_319);
        assert_eq!(value["layers"][1]["size"], 512);
        assert_eq!(value["labels"]["maintainer"], "someone");
        assert_eq!(value["entrypoint"], json!(["/docker-entrypoint.sh"]));
        assert_eq!(value["config"]["mediaType"], media_type::OCI_CONFIG);
    }

    #[test]
    fn index_text_and_json() {
        let child = |seed: &str, platform: Option<Platform>| {
            let mut d = Descriptor::new(
                MediaType::from_static(media_type::OCI_MANIFEST),
                digest(seed),
                500,
            );
            d.platform = platform;
            d
        };
        let index = ImageIndex::new(vec![
            child("amd64", Some(Platform::new("linux", "amd64"))),
            child(
                "arm",
                Some(Platform::new("linux", "arm").with_variant("v7")),
            ),
            child("attestation", None)
                .with_annotation("vnd.docker.reference.type", "attestation-manifest"),
        ]);
        let inspected = Inspected {
            reference: "docker.io/library/web:1".to_owned(),
            descriptor: Descriptor::new(
                MediaType::from_static(media_type::OCI_INDEX),
                digest("index"),
                700,
            ),
            index: None,
            body: Body::Index(index),
        };
        let expected = format!(
            "\
reference:     docker.io/library/web:1
digest:        {index}
media type:    application/vnd.oci.image.index.v1+json
manifests:     3 manifests
  linux/amd64   {amd64}
  linux/arm/v7  {arm}
  -             {attestation}  (attestation-manifest)
",
            index = digest("index"),
            amd64 = digest("amd64"),
            arm = digest("arm"),
            attestation = digest("attestation"),
        );
        assert_eq!(inspected.to_text(), expected);
        let value = inspected.to_json();
        assert_eq!(value["kind"], "index");
        assert_eq!(value["index"], Value::Null);
        assert_eq!(value["manifests"][1]["platform"], "linux/arm/v7");
        assert_eq!(value["manifests"][2]["platform"], Value::Null);
    }
}
