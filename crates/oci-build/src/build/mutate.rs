//! Changes of an image that rework its layers: flatten, rebase, recompress. (Appending layers
//! and editing the config are builds on the image itself: [`build_image`](super::build_image)
//! with a [`Base`](super::Base) whose role is [`BaseRole::Mutate`](super::BaseRole::Mutate).)

use std::collections::BTreeMap;

use oci_types::{Descriptor, Digest, ManifestRef, Platform, Tag};
use serde_json::Value;

use super::compress::Compression;
use super::config::{Config, rfc3339};
use super::image::{
    BASE_DIGEST_ANNOTATION, BASE_NAME_ANNOTATION, Built, copy_blobs, copy_image_blobs, push_image,
    retype_layer,
};
use super::layer::{BuildProgress, BuiltLayer, NewLayer, push_layer_from_layers};
use crate::copy::Endpoint;
use crate::error::{Error, Result};
use crate::platform::{Image, fetch_image};
use oci_store::layer::{DEFAULT_LAYER_LIMIT, LayerLimits, merge_layers};

/// What a mutation of layers needs besides the image.
#[derive(Clone)]
#[non_exhaustive]
pub struct MutateOptions {
    /// The platform chosen out of an index (default: this machine's).
    pub platform: Option<Platform>,
    /// How new layers are compressed (flatten; recompress's target).
    pub compression: Compression,
    /// The time of new history entries and of the config's `created`, seconds since the
    /// epoch (`SOURCE_DATE_EPOCH`); `None` keeps `created` and uses the current time for
    /// new history entries.
    pub created: Option<u64>,
    /// Docker media types instead of OCI ones (default: as the source image).
    pub docker: Option<bool>,
    /// Blobs copied at once.
    pub jobs: usize,
    /// Where progress events go.
    pub progress: Option<BuildProgress>,
    /// What the layers read (flatten's, recompress's) may hold: entries, names, depth.
    pub limits: LayerLimits,
    /// Uncompressed bytes of one layer read (default 64 GiB).
    pub max_layer_bytes: u64,
}

impl std::fmt::Debug for MutateOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MutateOptions")
            .field("platform", &self.platform)
            .field("compression", &self.compression)
            .field("created", &self.created)
            .field("docker", &self.docker)
            .field("jobs", &self.jobs)
            .field("progress", &self.progress.is_some())
            .field("limits", &self.limits)
            .field("max_layer_bytes", &self.max_layer_bytes)
            .finish()
    }
}

impl Default for MutateOptions {
    fn default() -> Self {
        Self {
            platform: None,
            compression: Compression::default(),
            created: None,
            docker: None,
            jobs: 4,
            progress: None,
            limits: LayerLimits::default(),
            max_layer_bytes: DEFAULT_LAYER_LIMIT,
        }
    }
}

/// The image `reference` of `source` with all its layers merged into one (whiteouts applied,
/// so it unpacks to the same tree), in `target` under `tags`. Its history becomes one entry.
pub async fn flatten_image(
    source: Endpoint<'_>,
    reference: &ManifestRef,
    target: Endpoint<'_>,
    tags: &[Tag],
    options: &MutateOptions,
) -> Result<Built> {
    let image = fetch_image(
        source.store,
        source.repo,
        reference,
        options.platform.as_ref(),
    )
    .await?;
    let (mut config, docker) = open(&image, source, reference, options)?;
    let sources = layer_sources(&image, &config)?;
    let new = NewLayer {
        target,
        compression: &options.compression,
        docker,
        progress: options.progress.as_ref(),
        index: 0,
        count: 1,
    };
    let context = format!("flattening {}{reference}", source.repo);
    let limits = options.limits;
    let read = (source, sources, options.max_layer_bytes);
    let layer = push_layer_from_layers(new, read, move |out, opener| {
        let count = opener.count();
        merge_layers(out, count, &mut |index| opener.open(index), &limits)
            .map_err(|e| Error::store(context, e))
    })
    .await?;
    config.set_diff_ids(std::slice::from_ref(&layer.diff_id));
    let created = created(options)?;
    config.set_history(Vec::new());
    config.push_history(&created, "hoist flatten", false);
    if options.created.is_some() {
        config.set_created(&created);
    }
    finish(
        image,
        target,
        config,
        vec![layer.descriptor.clone()],
        docker,
        tags,
        vec![layer],
    )
    .await
}

/// The image `reference` of `source`, which is built on `old_base`, moved onto `new_base`:
/// the old base's layers (which must be the image's first layers, in order) are replaced by
/// the new base's, the image's own layers kept as they are; history likewise.
pub async fn rebase_image(
    source: Endpoint<'_>,
    reference: &ManifestRef,
    old_base: (Endpoint<'_>, &ManifestRef),
    new_base: (Endpoint<'_>, &ManifestRef, Option<&str>),
    target: Endpoint<'_>,
    tags: &[Tag],
    options: &MutateOptions,
) -> Result<Built> {
    let platform = options.platform.as_ref();
    let image = fetch_image(source.store, source.repo, reference, platform).await?;
    let old = fetch_image(old_base.0.store, old_base.0.repo, old_base.1, platform).await?;
    let new = fetch_image(new_base.0.store, new_base.0.repo, new_base.1, platform).await?;
    let (mut config, docker) = open(&image, source, reference, options)?;
    let old_config = Config::parse(&old.config, "the old base")?;
    let new_config = Config::parse(&new.config, "the new base")?;

    let old_layers = &old.manifest.layers;
    let starts_with_old = image.manifest.layers.len() >= old_layers.len()
        && image
            .manifest
            .layers
            .iter()
            .zip(old_layers)
            .all(|(mine, base)| mine.digest == base.digest);
    if !starts_with_old {
        return Err(Error::invalid(format!(
            "{}{reference} is not built on {}{}: its first {} layers are not the old base's ({})",
            source.repo,
            old_base.0.repo,
            old_base.1,
            old_layers.len(),
            old_layers
                .iter()
                .map(|l| l.digest.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if let (Some(mine), Some(theirs)) = (config.platform(), new_config.platform())
        && mine.normalized() != theirs.normalized()
    {
        return Err(Error::invalid(format!(
            "the new base is for {theirs}, the image for {mine}"
        )));
    }

    copy_image_blobs(source, target, &image, options.jobs).await?;
    copy_image_blobs(new_base.0, target, &new, options.jobs).await?;

    let own = &image.manifest.layers[old_layers.len()..];
    let layers: Vec<Descriptor> = new
        .manifest
        .layers
        .iter()
        .chain(own)
        .map(|l| retype_layer(l.clone(), docker))
        .collect();
    // The image's layers and diff_ids agree (checked), and start with the old base's.
    layer_sources(&image, &config)?;
    let own_diff_ids = config.diff_ids()?.split_off(old_layers.len());
    let mut diff_ids = new_config.diff_ids()?;
    diff_ids.extend(own_diff_ids);
    config.set_diff_ids(&diff_ids);

    let old_history = old_config.history().len();
    let own_history: Vec<Value> = config.history().into_iter().skip(old_history).collect();
    let mut history = new_config.history();
    history.extend(own_history);
    config.set_history(history);
    if options.created.is_some() {
        config.set_created(&created(options)?);
    }

    let mut annotations = image.manifest.annotations.clone();
    if let Some(name) = new_base.2 {
        annotations.insert(BASE_NAME_ANNOTATION.to_owned(), name.to_owned());
    } else {
        annotations.remove(BASE_NAME_ANNOTATION);
    }
    annotations.insert(
        BASE_DIGEST_ANNOTATION.to_owned(),
        new.manifest_descriptor.digest.to_string(),
    );
    let manifest = push_image(target, &config, layers, annotations, docker, tags).await?;
    Ok(Built {
        manifest,
        platform: image_platform(&config)?,
        layers: Vec::new(),
    })
}

/// The image `reference` of `source` with every layer not already compressed as
/// `options.compression` says decompressed and compressed again; `diff_ids` (and so the
/// config) stay the same, which is checked for each layer.
pub async fn recompress_image(
    source: Endpoint<'_>,
    reference: &ManifestRef,
    target: Endpoint<'_>,
    tags: &[Tag],
    options: &MutateOptions,
) -> Result<Built> {
    let image = fetch_image(
        source.store,
        source.repo,
        reference,
        options.platform.as_ref(),
    )
    .await?;
    let (config, docker) = open(&image, source, reference, options)?;
    let sources = layer_sources(&image, &config)?;
    copy_blobs(source, target, &[&image.manifest.config], 1).await?;
    let wanted = options.compression.kind();
    let mut layers = Vec::new();
    let mut built = Vec::new();
    let progress = options.progress.as_ref();
    let count = sources.len();
    for (index, (layer, diff_id)) in sources.iter().enumerate() {
        if layer.media_type.layer_compression() == Some(wanted) {
            copy_blobs(source, target, &[layer], 1).await?;
            layers.push(retype_layer(layer.clone(), docker));
            continue;
        }
        let new_layer = NewLayer {
            target,
            compression: &options.compression,
            docker,
            progress,
            index,
            count,
        };
        let new = push_layer_from_layers(
            new_layer,
            (
                source,
                vec![(layer.clone(), diff_id.clone())],
                options.max_layer_bytes,
            ),
            move |out, opener| {
                let mut reader = opener
                    .open(0)
                    .map_err(|e| Error::store(format!("recompressing layer {index}"), e))?;
                std::io::copy(&mut reader, out).map_err(|e| {
                    let store = reader.io_error(e);
                    Error::store(format!("recompressing layer {index}"), store)
                })?;
                reader
                    .finish()
                    .map_err(|e| Error::store(format!("recompressing layer {index}"), e))?;
                Ok(())
            },
        )
        .await?;
        if new.diff_id != *diff_id {
            return Err(Error::invalid(format!(
                "layer {index} ({}) recompressed to diff_id {}, not {diff_id}",
                layer.digest, new.diff_id
            )));
        }
        layers.push(new.descriptor.clone());
        built.push(new);
    }
    let manifest = push_image(
        target,
        &config,
        layers,
        image.manifest.annotations.clone(),
        docker,
        tags,
    )
    .await?;
    Ok(Built {
        manifest,
        platform: image_platform(&config)?,
        layers: built,
    })
}

fn open(
    image: &Image,
    source: Endpoint<'_>,
    reference: &ManifestRef,
    options: &MutateOptions,
) -> Result<(Config, bool)> {
    let config = Config::parse(&image.config, &format!("{}{reference}", source.repo))?;
    let docker = options
        .docker
        .unwrap_or_else(|| image.manifest_descriptor.media_type.is_docker());
    if docker && matches!(options.compression, Compression::Zstd(_)) {
        return Err(Error::invalid(
            "zstd layers need OCI media types (drop --docker or use gzip)",
        ));
    }
    Ok((config, docker))
}

/// Each layer with the `diff_id` the config gives it.
fn layer_sources(image: &Image, config: &Config) -> Result<Vec<(Descriptor, Digest)>> {
    let diff_ids = config.diff_ids()?;
    if diff_ids.len() != image.manifest.layers.len() {
        return Err(Error::invalid(format!(
            "image {} has {} layers but its config lists {} diff_ids",
            image.manifest_descriptor.digest,
            image.manifest.layers.len(),
            diff_ids.len()
        )));
    }
    Ok(image
        .manifest
        .layers
        .iter()
        .cloned()
        .zip(diff_ids)
        .collect())
}

async fn finish(
    image: Image,
    target: Endpoint<'_>,
    config: Config,
    layers: Vec<Descriptor>,
    docker: bool,
    tags: &[Tag],
    built: Vec<BuiltLayer>,
) -> Result<Built> {
    let annotations: BTreeMap<String, String> = image.manifest.annotations.clone();
    let manifest = push_image(target, &config, layers, annotations, docker, tags).await?;
    Ok(Built {
        manifest,
        platform: image_platform(&config)?,
        layers: built,
    })
}

fn image_platform(config: &Config) -> Result<Platform> {
    config
        .platform()
        .ok_or_else(|| Error::invalid("the image's config names no os and architecture"))
}

fn created(options: &MutateOptions) -> Result<String> {
    let seconds = options.created.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    });
    rfc3339(seconds)
}
