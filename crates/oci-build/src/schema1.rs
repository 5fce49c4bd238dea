//! Docker schema 1 manifests, converted to schema 2 on the way through a copy, as skopeo and
//! gardener's ociclient do for legacy registries.
//!
//! Schema 1 lists layers newest first with a JSON "v1Compatibility" string per layer and no
//! config blob. Schema 2 needs a config with the layers' uncompressed digests (`diff_ids`), so
//! each layer is read once and decompressed while it is hashed.

use std::collections::HashMap;
use std::io::Write;

use bytes::Bytes;
use futures::StreamExt;
use oci_store::OciInterface;
use oci_types::{Descriptor, Digest, Digester, ImageManifest, MediaType, Repository, media_type};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::platform::RawManifest;

/// A schema 1 manifest turned into schema 2.
#[derive(Debug)]
pub(crate) struct Converted {
    /// The Docker schema 2 manifest.
    pub(crate) manifest: RawManifest,
    /// Its new config blob.
    pub(crate) config: Bytes,
    /// The config's descriptor.
    pub(crate) config_descriptor: Descriptor,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Schema1 {
    schema_version: u32,
    fs_layers: Vec<FsLayer>,
    history: Vec<History>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct FsLayer {
    blob_sum: String,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct History {
    v1_compatibility: String,
}

/// Keys of a v1Compatibility object that describe the v1 layer chain, not the image.
const V1_ONLY_KEYS: [&str; 6] = ["id", "parent", "parent_id", "layer_id", "Size", "throwaway"];

/// Converts `manifest` (schema 1, signed or not) read from `repo` of `store`.
pub(crate) async fn convert(
    store: &dyn OciInterface,
    repo: &Repository,
    manifest: &RawManifest,
) -> Result<Converted> {
    let malformed = |reason: String| Error::Malformed {
        what: "schema 1 manifest",
        repo: repo.clone(),
        digest: manifest.descriptor.digest.clone(),
        source: reason.into(),
    };
    let parsed: Schema1 =
        serde_json::from_slice(&manifest.bytes).map_err(|e| malformed(e.to_string()))?;
    if parsed.schema_version != 1 {
        return Err(malformed(format!(
            "schemaVersion is {}, not 1",
            parsed.schema_version
        )));
    }
    if parsed.fs_layers.len() != parsed.history.len() || parsed.fs_layers.is_empty() {
        return Err(malformed(format!(
            "{} fsLayers but {} history entries",
            parsed.fs_layers.len(),
            parsed.history.len()
        )));
    }
    // The newest entry (first) carries the image's configuration.
    let mut config = match serde_json::from_str::<Value>(&parsed.history[0].v1_compatibility) {
        Ok(Value::Object(map)) => map,
        _ => {
            return Err(malformed(
                "history[0].v1Compatibility is not a JSON object".into(),
            ));
        }
    };
    for key in V1_ONLY_KEYS {
        config.remove(key);
    }

    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    let mut history = Vec::new();
    // Each layer is read once, however many times the manifest names it (a hostile one may
    // name one large layer thousands of times).
    let mut facts: HashMap<Digest, (u64, Digest)> = HashMap::new();
    // Oldest first, as schema 2 lists them.
    for (position, (layer, entry)) in parsed
        .fs_layers
        .iter()
        .zip(&parsed.history)
        .enumerate()
        .rev()
    {
        let v1: Map<String, Value> = match serde_json::from_str(&entry.v1_compatibility) {
            Ok(Value::Object(map)) => map,
            _ => {
                return Err(malformed(format!(
                    "history[{position}].v1Compatibility is not a JSON object"
                )));
            }
        };
        let throwaway = v1
            .get("throwaway")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        history.push(history_entry(&v1, throwaway));
        if throwaway {
            continue;
        }
        let digest = Digest::parse(&layer.blob_sum)
            .map_err(|e| malformed(format!("fsLayers[{position}].blobSum: {e}")))?;
        let (size, diff_id) = match facts.get(&digest) {
            Some(known) => known.clone(),
            None => {
                let found = layer_facts(store, repo, &digest).await?;
                facts.insert(digest.clone(), found.clone());
                found
            }
        };
        layers.push(Descriptor::new(
            MediaType::from_static(media_type::DOCKER_LAYER_GZIP),
            digest,
            size,
        ));
        diff_ids.push(Value::String(diff_id.to_string()));
    }
    config.insert(
        "rootfs".into(),
        serde_json::json!({ "type": "layers", "diff_ids": diff_ids }),
    );
    config.insert("history".into(), Value::Array(history));
    let config = Bytes::from(
        serde_json::to_vec(&Value::Object(config)).map_err(|e| malformed(e.to_string()))?,
    );
    let config_descriptor =
        Descriptor::of_bytes(MediaType::from_static(media_type::DOCKER_CONFIG), &config);
    let mut v2 = ImageManifest::new(config_descriptor.clone(), layers);
    v2.media_type = MediaType::from_static(media_type::DOCKER_MANIFEST);
    let bytes = Bytes::from(v2.to_json());
    Ok(Converted {
        manifest: RawManifest {
            descriptor: Descriptor::of_bytes(v2.media_type.clone(), &bytes),
            bytes,
        },
        config,
        config_descriptor,
    })
}

/// A schema 2 history entry from a v1Compatibility object.
fn history_entry(v1: &Map<String, Value>, empty_layer: bool) -> Value {
    let mut entry = Map::new();
    for key in ["created", "author", "comment"] {
        if let Some(value) = v1.get(key).filter(|v| !v.is_null()) {
            entry.insert(key.into(), value.clone());
        }
    }
    let command = v1
        .get("container_config")
        .and_then(|c| c.get("Cmd"))
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" ")
        });
    if let Some(command) = command {
        entry.insert("created_by".into(), Value::String(command));
    }
    if empty_layer {
        entry.insert("empty_layer".into(), Value::Bool(true));
    }
    Value::Object(entry)
}

/// A layer's compressed size and its uncompressed digest (the `diff_id`), from one verified
/// read. A layer that is not gzip is its own diff_id.
async fn layer_facts(
    store: &dyn OciInterface,
    repo: &Repository,
    digest: &Digest,
) -> Result<(u64, Digest)> {
    let context = || format!("reading schema 1 layer {digest} of {repo}");
    let reader = store
        .get_blob(repo, digest)
        .await
        .map_err(|e| Error::store(context(), e))?;
    let size = reader.descriptor().size;
    let mut body = reader.into_stream();
    let mut decoder: Option<flate2::write::GzDecoder<DigestWriter>> = None;
    let mut plain = Digester::new(digest.algorithm());
    let mut first = true;
    let corrupt = |e: std::io::Error| Error::Malformed {
        what: "gzip layer",
        repo: repo.clone(),
        digest: digest.clone(),
        source: Box::new(e),
    };
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| Error::store(context(), e))?;
        if first && !chunk.is_empty() {
            first = false;
            if chunk.starts_with(&[0x1f, 0x8b]) {
                decoder = Some(flate2::write::GzDecoder::new(DigestWriter(Digester::new(
                    oci_types::Algorithm::Sha256,
                ))));
            }
        }
        match &mut decoder {
            Some(decoder) => decoder.write_all(&chunk).map_err(corrupt)?,
            None => plain.update(&chunk),
        }
    }
    let diff_id = match decoder {
        Some(decoder) => decoder.finish().map_err(corrupt)?.0.finish(),
        None => plain.finish(),
    };
    Ok((size, diff_id))
}

/// Hashes what is written to it.
struct DigestWriter(Digester);

impl Write for DigestWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
