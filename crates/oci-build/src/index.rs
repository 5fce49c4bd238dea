//! Multi-platform indexes (OCI image indexes, Docker manifest lists) made from images that
//! are already in a store, and changes to them.

use std::collections::BTreeMap;

use bytes::Bytes;
use oci_store::{OciInterfaceExt, PushManifestParams};
use oci_types::{
    Descriptor, ImageIndex, Manifest, ManifestRef, MediaType, Platform, Tag, media_type,
};

use crate::build::Config;
use crate::copy::Endpoint;
use crate::error::{Error, Result};
use crate::platform::{MAX_CONFIG_SIZE, read_manifest};

/// How an index is written.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct IndexOptions {
    /// A Docker manifest list instead of an OCI image index.
    pub docker: bool,
    /// Annotations of the index (OCI only: a manifest list has none).
    pub annotations: BTreeMap<String, String>,
    /// Also tag each platform's image on its own: for every tag `T`, `T-ARCH`, or
    /// `T-ARCH-VARIANT` when the platform has a variant (`v1-amd64`, `v1-arm-v7`), with the
    /// OS in front when it is not Linux (`v1-windows-amd64`), as apko publishes them.
    pub platform_tags: bool,
}

/// An index entry for the image manifest `image` of `target`: its descriptor with the
/// platform its config gives.
pub async fn index_entry(target: Endpoint<'_>, image: &ManifestRef) -> Result<Descriptor> {
    let raw = read_manifest(target.store, target.repo, image).await?;
    let Manifest::Image(manifest) = raw.parse(target.repo)? else {
        return Err(Error::invalid(format!(
            "{}@{} is not an image manifest ({}): an index lists images",
            target.repo, raw.descriptor.digest, raw.descriptor.media_type
        )));
    };
    let context = || {
        format!(
            "reading config {} of {}",
            manifest.config.digest, target.repo
        )
    };
    let config = target
        .store
        .get_blob_bytes(target.repo, &manifest.config.digest, MAX_CONFIG_SIZE)
        .await
        .map_err(|e| Error::store(context(), e))?;
    let what = format!("{}@{}", target.repo, raw.descriptor.digest);
    let platform = Config::parse(&config, &what)?.platform().ok_or_else(|| {
        Error::invalid(format!("the config of {what} names no os and architecture"))
    })?;
    let mut entry = Descriptor::new(
        raw.descriptor.media_type.clone(),
        raw.descriptor.digest.clone(),
        raw.descriptor.size,
    );
    entry.platform = Some(platform);
    Ok(entry)
}

/// Makes an index of the images `entries` (from [`index_entry`]) in `target` and points
/// `tags` at it. Two images for the same platform are refused.
pub async fn create_index(
    target: Endpoint<'_>,
    entries: Vec<Descriptor>,
    tags: &[Tag],
    options: &IndexOptions,
) -> Result<Descriptor> {
    let mut index = ImageIndex::new(Vec::new());
    if options.docker {
        index.media_type = MediaType::from_static(media_type::DOCKER_MANIFEST_LIST);
    } else {
        index.annotations = options.annotations.clone();
    }
    for entry in entries {
        add_entry(&mut index, entry, false)?;
    }
    push_index(target, &index, tags, options.platform_tags).await
}

/// Adds the images `entries` to the index `index` of `target` (an image for a platform the
/// index already has replaces that platform's entry) and points `tags` at the new index.
pub async fn append_to_index(
    target: Endpoint<'_>,
    index: &ManifestRef,
    entries: Vec<Descriptor>,
    tags: &[Tag],
    options: &IndexOptions,
) -> Result<Descriptor> {
    let mut existing = read_index(target, index).await?;
    // A Docker manifest list has no annotations.
    if existing.media_type.essence() != media_type::DOCKER_MANIFEST_LIST {
        existing.annotations.extend(options.annotations.clone());
    }
    for entry in entries {
        add_entry(&mut existing, entry, true)?;
    }
    push_index(target, &existing, tags, options.platform_tags).await
}

/// Removes the entries for `platforms` from the index `index` of `target` and points `tags`
/// at the new index. A platform the index does not have is an error naming what it has.
pub async fn remove_from_index(
    target: Endpoint<'_>,
    index: &ManifestRef,
    platforms: &[Platform],
    tags: &[Tag],
) -> Result<Descriptor> {
    let mut existing = read_index(target, index).await?;
    for platform in platforms {
        let wanted = platform.normalized();
        let before = existing.manifests.len();
        existing
            .manifests
            .retain(|m| m.platform.as_ref().map(Platform::normalized) != Some(wanted.clone()));
        if existing.manifests.len() == before {
            let has: Vec<String> = existing
                .manifests
                .iter()
                .filter_map(|m| m.platform.as_ref().map(ToString::to_string))
                .collect();
            return Err(Error::invalid(format!(
                "index {}{index} has no image for {platform} (it has: {})",
                target.repo,
                has.join(", ")
            )));
        }
    }
    push_index(target, &existing, tags, false).await
}

async fn read_index(target: Endpoint<'_>, reference: &ManifestRef) -> Result<ImageIndex> {
    let raw = read_manifest(target.store, target.repo, reference).await?;
    match raw.parse(target.repo)? {
        Manifest::Index(index) => Ok(index),
        _ => Err(Error::invalid(format!(
            "{}{reference} is not an index ({})",
            target.repo, raw.descriptor.media_type
        ))),
    }
}

fn add_entry(index: &mut ImageIndex, entry: Descriptor, replace: bool) -> Result<()> {
    let platform = entry.platform.as_ref().map(Platform::normalized);
    let same = index
        .manifests
        .iter()
        .position(|m| m.platform.as_ref().map(Platform::normalized) == platform);
    match (same, replace) {
        (Some(at), true) => index.manifests[at] = entry,
        (Some(at), false) => {
            return Err(Error::invalid(format!(
                "two images for platform {}: {} and {}",
                platform.map(|p| p.to_string()).unwrap_or_default(),
                index.manifests[at].digest,
                entry.digest
            )));
        }
        (None, _) => index.manifests.push(entry),
    }
    Ok(())
}

async fn push_index(
    target: Endpoint<'_>,
    index: &ImageIndex,
    tags: &[Tag],
    platform_tags: bool,
) -> Result<Descriptor> {
    let bytes = Bytes::from(index.to_json());
    let media_type = index.media_type.clone();
    let descriptor = Descriptor::of_bytes(media_type.clone(), &bytes);
    // Every tag is worked out before anything moves, and the index is stored (by digest)
    // before any tag points at it or its children: a failure moves no tag.
    let mut children = Vec::new();
    if platform_tags {
        for child in &index.manifests {
            let Some(platform) = &child.platform else {
                continue;
            };
            let child_tags = tags
                .iter()
                .map(|tag| platform_tag(tag, platform))
                .collect::<Result<Vec<_>>>()?;
            let bytes = read_manifest(
                target.store,
                target.repo,
                &ManifestRef::Digest(child.digest.clone()),
            )
            .await?
            .bytes;
            children.push((child, bytes, child_tags));
        }
    }
    let store_index = |tags: Vec<Tag>| {
        let bytes = bytes.clone();
        let media_type = media_type.clone();
        let digest = descriptor.digest.clone();
        async move {
            target
                .store
                .push_manifest(
                    target.repo,
                    bytes,
                    &media_type,
                    &PushManifestParams::new()
                        .with_tags(tags)
                        .with_digest(digest.clone()),
                )
                .await
                .map_err(|e| Error::store(format!("storing index {digest} in {}", target.repo), e))
        }
    };
    if !children.is_empty() {
        store_index(Vec::new()).await?;
    }
    for (child, bytes, child_tags) in children {
        target
            .store
            .push_manifest(
                target.repo,
                bytes,
                &child.media_type,
                &PushManifestParams::new()
                    .with_tags(child_tags)
                    .with_digest(child.digest.clone()),
            )
            .await
            .map_err(|e| Error::store(format!("tagging {} in {}", child.digest, target.repo), e))?;
    }
    store_index(tags.to_vec()).await?;
    Ok(descriptor)
}

/// The tag of one platform's image: `TAG-ARCH[-VARIANT]`, with `OS-` before the
/// architecture when the OS is not Linux.
pub fn platform_tag(tag: &Tag, platform: &Platform) -> Result<Tag> {
    let mut text = format!("{tag}-");
    if platform.os != "linux" {
        text.push_str(&platform.os);
        text.push('-');
    }
    text.push_str(&platform.architecture);
    if let Some(variant) = &platform.variant {
        text.push('-');
        text.push_str(variant);
    }
    Tag::parse(&text).map_err(|e| Error::invalid(format!("platform tag {text:?}: {e}")))
}
