//! Building an image: a base (or nothing), new layers, config edits, a manifest.

use std::collections::BTreeMap;
use std::time::SystemTime;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use oci_store::{OciInterfaceExt, PushManifestParams};
use oci_types::{Descriptor, ImageManifest, ManifestRef, MediaType, Platform, Tag, media_type};

use super::compress::Compression;
use super::config::{Config, ConfigEdit, rfc3339};
use super::layer::{BuildProgress, BuiltLayer, NewLayer, push_layer_from_layers};
use super::tarball::{LayerSource, Mtime, TarOptions, write_tar};
use crate::copy::Endpoint;
use crate::error::{Error, Result};
use crate::platform::{Image, fetch_image};

/// The image-spec's annotation naming the base image.
pub const BASE_NAME_ANNOTATION: &str = "org.opencontainers.image.base.name";
/// The image-spec's annotation giving the base image's manifest digest.
pub const BASE_DIGEST_ANNOTATION: &str = "org.opencontainers.image.base.digest";

/// A base image: where it is and what to call it in the new image's annotations.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Base<'a> {
    /// The store and repository holding it.
    pub source: Endpoint<'a>,
    /// The manifest or index.
    pub reference: &'a ManifestRef,
    /// Whether this is a build on the image or a change of it.
    pub role: BaseRole<'a>,
}

impl<'a> Base<'a> {
    /// The image `reference` names at `source`, as the new image's base (`role`).
    pub fn new(source: Endpoint<'a>, reference: &'a ManifestRef, role: BaseRole<'a>) -> Self {
        Self {
            source,
            reference,
            role,
        }
    }
}

/// What the new image is to its base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BaseRole<'a> {
    /// A new image on top of the base: `org.opencontainers.image.base.digest` is set, and
    /// `org.opencontainers.image.base.name` to `name` when there is one (a registry reference,
    /// fully qualified; a local path would make builds differ by where they ran).
    Build {
        /// The base's name.
        name: Option<&'a str>,
    },
    /// A change of the image itself (crane's `append` and `mutate`): its manifest
    /// annotations are kept, and its `created` stays unless a time is given or layers are
    /// added.
    Mutate,
}

/// How to build or change an image.
#[derive(Clone)]
#[non_exhaustive]
pub struct BuildOptions {
    /// The platform: the base is chosen for it out of an index, and the config says it.
    /// Default: the base's, or `linux` on this machine's architecture without a base.
    pub platform: Option<Platform>,
    /// The time of the build, seconds since the epoch: the config's `created`, the new history
    /// entries' times and the bound on file times. `SOURCE_DATE_EPOCH` in the CLI; the
    /// current time when `None`.
    pub created: Option<u64>,
    /// Whether file modification times are clamped to `created` (the default when `created`
    /// is given, as reproducible builds expect).
    pub clamp_mtimes: bool,
    /// Changes to the runtime configuration.
    pub config: ConfigEdit,
    /// Annotations of the new manifest.
    pub annotations: BTreeMap<String, String>,
    /// Docker media types (schema 2 manifest, Docker config and layers) instead of OCI ones;
    /// `None`: as the base (OCI without a base, or when zstd layers are added).
    pub docker: Option<bool>,
    /// How new layers are compressed.
    pub compression: Compression,
    /// How new layers' tars are written from files.
    pub tar: TarOptions,
    /// What the history entries of new layers say made them.
    pub created_by: String,
    /// Blobs of the base copied into the target at once.
    pub jobs: usize,
    /// Where progress events go.
    pub progress: Option<BuildProgress>,
}

impl std::fmt::Debug for BuildOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildOptions")
            .field("platform", &self.platform)
            .field("created", &self.created)
            .field("clamp_mtimes", &self.clamp_mtimes)
            .field("config", &self.config)
            .field("annotations", &self.annotations)
            .field("docker", &self.docker)
            .field("compression", &self.compression)
            .field("tar", &self.tar)
            .field("created_by", &self.created_by)
            .field("jobs", &self.jobs)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            platform: None,
            created: None,
            clamp_mtimes: true,
            config: ConfigEdit::default(),
            annotations: BTreeMap::new(),
            docker: None,
            compression: Compression::default(),
            tar: TarOptions::default(),
            created_by: "hoist build".to_owned(),
            jobs: 4,
            progress: None,
        }
    }
}

/// What a build made.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Built {
    /// The new manifest.
    pub manifest: Descriptor,
    /// The platform the image is for.
    pub platform: Platform,
    /// The new layers.
    pub layers: Vec<BuiltLayer>,
}

/// Builds an image in `target` from an optional `base` and new `layers` (lowest first), and
/// points `tags` at it (none: by digest only).
///
/// Blobs go into the target as they are made; the manifest goes last, so a failure leaves
/// no tag on anything incomplete. The base's layers are reused as they are (copied into the
/// target when it does not have them), never recompressed.
pub async fn build_image(
    base: Option<Base<'_>>,
    layers: Vec<LayerSource>,
    target: Endpoint<'_>,
    tags: &[Tag],
    options: &BuildOptions,
) -> Result<Built> {
    let created = options.created.unwrap_or_else(now);
    let created_text = rfc3339(created)?;
    let mut tar = options.tar.clone();
    if options.created.is_some() && options.clamp_mtimes {
        // No file time later than the build; an earlier bound or fixed time asked for stays.
        tar.mtime = match tar.mtime {
            Mtime::Clamp(bound) => Mtime::Clamp(bound.min(created)),
            Mtime::Set(time) => Mtime::Set(time.min(created)),
            _ => Mtime::Clamp(created),
        };
    }
    let zstd = matches!(options.compression, Compression::Zstd(_));
    if options.docker == Some(true) && zstd {
        return Err(Error::invalid(
            "zstd layers need OCI media types: Docker's schema 2 has no zstd layer type that Docker before 23 reads (drop --docker or use gzip)",
        ));
    }
    // Without a choice, the new image keeps its base's kind (OCI unless the base is Docker's
    // and no zstd layer is added).
    let mut docker = options.docker.unwrap_or(false);

    let mut annotations = options.annotations.clone();
    let mut keep_created = false;
    let (mut config, mut descriptors) = match base {
        Some(base) => {
            let image = fetch_image(
                base.source.store,
                base.source.repo,
                base.reference,
                options.platform.as_ref(),
            )
            .await?;
            if options.docker.is_none() {
                docker = image.manifest_descriptor.media_type.is_docker()
                    && (layers.is_empty() || !zstd);
            }
            copy_image_blobs(base.source, target, &image, options.jobs).await?;
            if let BaseRole::Build { name } = base.role {
                if let Some(name) = name {
                    annotations.insert(BASE_NAME_ANNOTATION.to_owned(), name.to_owned());
                }
                annotations.insert(
                    BASE_DIGEST_ANNOTATION.to_owned(),
                    image.manifest_descriptor.digest.to_string(),
                );
            } else {
                keep_created = options.created.is_none() && layers.is_empty();
                let mut kept = image.manifest.annotations.clone();
                kept.extend(annotations);
                annotations = kept;
            }
            let what = format!("{}{}", base.source.repo, base.reference);
            let config = Config::parse(&image.config, &what)?;
            let layers = image
                .manifest
                .layers
                .iter()
                .map(|layer| retype_layer(layer.clone(), docker))
                .collect::<Vec<_>>();
            (config, layers)
        }
        None => {
            let platform = options
                .platform
                .clone()
                .unwrap_or_else(|| Platform::new("linux", Platform::host().architecture));
            (Config::empty(&platform), Vec::new())
        }
    };
    if let Some(platform) = &options.platform {
        // A base that is one image (not an index) is not chosen by platform: refuse to
        // relabel it as another platform than the one its binaries are for.
        if let Some(found) = config.platform()
            && base.is_some()
            && !oci_types::PlatformMatcher::new(platform).matches(&found)
        {
            return Err(Error::invalid(format!(
                "the base image is for {found}, not {platform}"
            )));
        }
        if base.is_none() {
            config.set_platform(platform);
        }
    }
    let platform = config
        .platform()
        .ok_or_else(|| Error::invalid("the base image's config names no os and architecture"))?;

    let mut diff_ids = config.diff_ids()?;
    if diff_ids.len() != descriptors.len() {
        return Err(Error::invalid(format!(
            "the base image has {} layers but its config lists {} diff_ids",
            descriptors.len(),
            diff_ids.len()
        )));
    }
    let mut built = Vec::new();
    let count = layers.len();
    let progress = options.progress.as_ref();
    for (index, source) in layers.into_iter().enumerate() {
        let new = NewLayer {
            target,
            compression: &options.compression,
            docker,
            progress,
            index,
            count,
        };
        let tar = tar.clone();
        let nothing_read = (target, Vec::new(), 0);
        let layer = push_layer_from_layers(new, nothing_read, move |out, _| {
            write_tar(&source, &tar, out)
        })
        .await?;
        diff_ids.push(layer.diff_id.clone());
        descriptors.push(layer.descriptor.clone());
        config.push_history(&created_text, &options.created_by, false);
        built.push(layer);
    }
    config.set_diff_ids(&diff_ids);
    config.apply(&options.config)?;
    if !keep_created {
        config.set_created(&created_text);
    }

    let manifest = push_image(target, &config, descriptors, annotations, docker, tags).await?;
    Ok(Built {
        manifest,
        platform,
        layers: built,
    })
}

/// Pushes `config` and a manifest of `layers` into `target`, tagged with `tags`.
pub(crate) async fn push_image(
    target: Endpoint<'_>,
    config: &Config,
    layers: Vec<Descriptor>,
    annotations: BTreeMap<String, String>,
    docker: bool,
    tags: &[Tag],
) -> Result<Descriptor> {
    let (manifest_type, config_type) = if docker {
        (media_type::DOCKER_MANIFEST, media_type::DOCKER_CONFIG)
    } else {
        (media_type::OCI_MANIFEST, media_type::OCI_CONFIG)
    };
    let config_descriptor = target
        .store
        .push_blob_bytes(
            target.repo,
            MediaType::from_static(config_type),
            Bytes::from(config.to_bytes()),
        )
        .await
        .map_err(|e| Error::store(format!("storing the config in {}", target.repo), e))?;
    let mut manifest = ImageManifest::new(config_descriptor, layers);
    manifest.media_type = MediaType::from_static(manifest_type);
    manifest.annotations = annotations;
    if docker {
        // Docker's schema 2 has no annotations.
        manifest.annotations.clear();
        for layer in &mut manifest.layers {
            layer.annotations.clear();
        }
    }
    let bytes = Bytes::from(manifest.to_json());
    let media_type = MediaType::from_static(manifest_type);
    let descriptor = Descriptor::of_bytes(media_type.clone(), &bytes);
    target
        .store
        .push_manifest(
            target.repo,
            bytes,
            &media_type,
            &PushManifestParams::new()
                .with_tags(tags.iter().cloned())
                .with_digest(descriptor.digest.clone()),
        )
        .await
        .map_err(|e| {
            Error::store(
                format!("storing manifest {} in {}", descriptor.digest, target.repo),
                e,
            )
        })?;
    Ok(descriptor)
}

/// A base layer's descriptor with the media type of the family the new image uses (the
/// bytes are the same; only the name of their format differs between OCI and Docker).
pub(crate) fn retype_layer(mut layer: Descriptor, docker: bool) -> Descriptor {
    use oci_types::media_type::Compression as Kind;
    if layer.media_type.is_non_distributable() {
        return layer;
    }
    let name = match (layer.media_type.layer_compression(), docker) {
        (Some(Kind::None), false) => media_type::OCI_LAYER_TAR,
        (Some(Kind::Gzip), false) => media_type::OCI_LAYER_GZIP,
        (Some(Kind::Zstd), false) => media_type::OCI_LAYER_ZSTD,
        (Some(Kind::None), true) => media_type::DOCKER_LAYER_TAR,
        (Some(Kind::Gzip), true) => media_type::DOCKER_LAYER_GZIP,
        (Some(Kind::Zstd), true) => media_type::DOCKER_LAYER_ZSTD,
        _ => return layer,
    };
    layer.media_type = MediaType::from_static(name);
    layer
}

/// Makes the config and layers of `image` (in `source`) present in `target`.
pub(crate) async fn copy_image_blobs(
    source: Endpoint<'_>,
    target: Endpoint<'_>,
    image: &Image,
    jobs: usize,
) -> Result<()> {
    let blobs: Vec<&Descriptor> = std::iter::once(&image.manifest.config)
        .chain(image.manifest.layers.iter())
        .collect();
    copy_blobs(source, target, &blobs, jobs).await
}

/// Makes `blobs` of `source` present in `target`: nothing for those already there, the
/// others streamed across, `jobs` at a time.
pub(crate) async fn copy_blobs(
    source: Endpoint<'_>,
    target: Endpoint<'_>,
    blobs: &[&Descriptor],
    jobs: usize,
) -> Result<()> {
    futures::stream::iter(blobs.iter().copied())
        .map(|blob| async move {
            match target.store.resolve_blob(target.repo, &blob.digest).await {
                Ok(_) => return Ok(()),
                Err(e) if e.code() == Some(oci_store::ErrorCode::BlobUnknown) => {}
                Err(e) if e.code() == Some(oci_store::ErrorCode::NameUnknown) => {}
                Err(e) => {
                    return Err(Error::store(
                        format!("looking for {} in {}", blob.digest, target.repo),
                        e,
                    ));
                }
            }
            let context = || {
                format!(
                    "copying base blob {} from {} to {}",
                    blob.digest, source.repo, target.repo
                )
            };
            let reader = source
                .store
                .get_blob(source.repo, &blob.digest)
                .await
                .map_err(|e| Error::store(context(), e))?;
            let descriptor = reader.descriptor().clone();
            target
                .store
                .push_blob(target.repo, &descriptor, reader.into_stream_for_push())
                .await
                .map_err(|e| Error::store(context(), e))?;
            Ok(())
        })
        .buffer_unordered(jobs.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
