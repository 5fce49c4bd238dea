//! A docker-archive's `manifest.json`: each image's config and layers, made into an image
//! manifest (or found in the OCI layout Docker 25+ writes beside it).

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use oci_types::{
    Compression, Descriptor, Digest, ImageManifest, MAX_MANIFEST_SIZE, Manifest, MediaType, Tag,
    media_type,
};

use super::{ArchiveImage, ArchiveReader, Catalog};
use crate::Result;
use crate::format::{DOCKER_MANIFEST_FILE, DockerImage, archive_name, digest_of_blob_path};
use crate::scan::ArchiveLimits;
use crate::stored::StoredManifest;

/// The most layers one image of a docker-archive may list: as many as an image manifest of
/// [`MAX_MANIFEST_SIZE`] holds (a layer's descriptor takes 120 bytes at least).
const MAX_LAYER_REFERENCES: usize = MAX_MANIFEST_SIZE / 120;

/// What reading a docker-archive's `manifest.json` found so far, so that a config or a layer
/// named by many images (or many times by one) is read, parsed and hashed once: an archive
/// naming one large layer a million times must not take a million hashes.
#[derive(Default)]
struct DockerSeen {
    /// Configs by where their content is in the archive (however many names lead there):
    /// digest, size and the `diff_ids` they state.
    configs: HashMap<u64, (Digest, u64, Vec<String>)>,
    /// Layers by where their content is in the archive: digest and first bytes.
    layers: HashMap<u64, (Digest, Vec<u8>)>,
    /// Image manifests by their config's digest.
    by_config: HashMap<Digest, Descriptor>,
}

impl Catalog {
    /// Reads `manifest.json`: each image's config, its layers, and a manifest for it (the
    /// archive's own one when its OCI layout has it, as Docker 25+ writes).
    pub(super) fn read_docker(&mut self, limits: &ArchiveLimits) -> Result<()> {
        let images: Vec<DockerImage> = self.read_json(DOCKER_MANIFEST_FILE, limits.max_json)?;
        let by_position = ArchiveReader::default_repository();
        // Docker 25+: the OCI layout beside manifest.json holds the images' real manifests,
        // found by their config.
        let mut seen = DockerSeen::default();
        for stored in self.manifests.values() {
            if let Ok(Manifest::Image(manifest)) =
                Manifest::parse(&stored.bytes, &stored.descriptor.media_type)
            {
                seen.by_config
                    .entry(manifest.config.digest)
                    .or_insert_with(|| stored.descriptor.clone());
            }
        }
        for (position, image) in images.iter().enumerate() {
            let descriptor = self.docker_image(image, limits, &mut seen)?;
            let position_tag = Tag::parse(&position.to_string())
                .map_err(|e| self.invalid(DOCKER_MANIFEST_FILE, e.to_string()))?;
            self.tags
                .entry(by_position.clone())
                .or_default()
                .insert(position_tag, descriptor.clone());
            let mut names = Vec::new();
            for name in image.repo_tags.iter().flatten() {
                let (repo, tag) = archive_name(name).map_err(|e| {
                    self.invalid(
                        DOCKER_MANIFEST_FILE,
                        format!("RepoTags holds {name:?}, not an image name: {e}"),
                    )
                })?;
                names.push(name.clone());
                self.tags
                    .entry(repo)
                    .or_default()
                    .insert(tag, descriptor.clone());
            }
            self.images.push(ArchiveImage { descriptor, names });
        }
        Ok(())
    }

    fn docker_image(
        &mut self,
        image: &DockerImage,
        limits: &ArchiveLimits,
        seen: &mut DockerSeen,
    ) -> Result<Descriptor> {
        if image.layers.len() > MAX_LAYER_REFERENCES {
            return Err(self.invalid(
                DOCKER_MANIFEST_FILE,
                format!(
                    "an image lists {} layers, more than an image manifest can hold ({MAX_LAYER_REFERENCES})",
                    image.layers.len()
                ),
            ));
        }
        // Read and hashed once per content, not per name: `c.json`, `./c.json` and
        // `N/../c.json` are one config, which an archive could otherwise have read again for
        // each of hundreds of thousands of images.
        let config_extent = self.tar.find(&image.config)?;
        let (config_digest, config_size, diff_ids) = match seen.configs.get(&config_extent.offset) {
            Some(known) => known.clone(),
            None => {
                let config_bytes = self.tar.read_small(&image.config, limits.max_json)?;
                let config: serde_json::Value =
                    serde_json::from_slice(&config_bytes).map_err(|e| {
                        self.invalid(&image.config, format!("the image config is not JSON: {e}"))
                    })?;
                let diff_ids = config["rootfs"]["diff_ids"]
                    .as_array()
                    .map(|ids| {
                        let ids = ids.iter().map(|id| id.as_str().unwrap_or_default());
                        ids.map(str::to_owned).collect()
                    })
                    .unwrap_or_default();
                let known = (
                    Digest::sha256(&config_bytes),
                    config_bytes.len() as u64,
                    diff_ids,
                );
                seen.configs.insert(config_extent.offset, known.clone());
                known
            }
        };
        if let Some(descriptor) = seen.by_config.get(&config_digest) {
            return Ok(descriptor.clone());
        }

        self.blobs.insert(
            config_digest.clone(),
            (
                config_extent,
                MediaType::from_static(media_type::OCI_CONFIG),
            ),
        );
        let mut layers = Vec::with_capacity(image.layers.len());
        for path in &image.layers {
            let extent = self.tar.find(path)?;
            // A layer under `blobs/ALG/HEX` is named by its digest, checked as it is read;
            // any other is hashed here, once however many times it is named.
            let (digest, prefix) = match seen.layers.get(&extent.offset) {
                Some(known) => known.clone(),
                None => {
                    let found = match digest_of_blob_path(&crate::scan::clean_name(path)) {
                        Some(digest) => (digest, self.tar.read_prefix(extent)?),
                        None => self.tar.hash(extent)?,
                    };
                    seen.layers.insert(extent.offset, found.clone());
                    found
                }
            };
            let layer_type = match oci_store::layer::sniff_compression(&prefix) {
                Compression::Gzip => media_type::OCI_LAYER_GZIP,
                Compression::Zstd => media_type::OCI_LAYER_ZSTD,
                _ => media_type::OCI_LAYER_TAR,
            };
            // An uncompressed layer's digest is its diff_id: one the config does not state
            // makes an image no runtime can use (a compressed one is checked when unpacked).
            let index = layers.len();
            let stated = diff_ids.get(index).map(String::as_str);
            if layer_type == media_type::OCI_LAYER_TAR
                && stated.is_some_and(|id| id != digest.as_str())
            {
                return Err(self.invalid(
                    path,
                    format!(
                        "layer {index} is {digest}, but the config states its diff_id is {:?}",
                        stated.unwrap_or_default()
                    ),
                ));
            }
            let layer_type = MediaType::from_static(layer_type);
            self.blobs
                .insert(digest.clone(), (extent, layer_type.clone()));
            layers.push(Descriptor::new(layer_type, digest, extent.size));
        }
        if diff_ids.len() != layers.len() {
            return Err(self.invalid(
                &image.config,
                format!(
                    "the config states {} layers (rootfs.diff_ids), and manifest.json lists {}",
                    diff_ids.len(),
                    layers.len()
                ),
            ));
        }
        let config = Descriptor::new(
            MediaType::from_static(media_type::OCI_CONFIG),
            config_digest.clone(),
            config_size,
        );
        let manifest = ImageManifest::new(config, layers);
        let bytes = manifest.to_json();
        if bytes.len() > MAX_MANIFEST_SIZE {
            return Err(self.invalid(
                DOCKER_MANIFEST_FILE,
                format!(
                    "an image lists {} layers: its manifest would take {} bytes, over the limit of {MAX_MANIFEST_SIZE}",
                    image.layers.len(),
                    bytes.len()
                ),
            ));
        }
        let descriptor = Descriptor::new(
            MediaType::from_static(media_type::OCI_MANIFEST),
            Digest::sha256(&bytes),
            bytes.len() as u64,
        );
        self.hold_manifest(DOCKER_MANIFEST_FILE, bytes.len(), limits)?;
        self.manifests.insert(
            descriptor.digest.clone(),
            StoredManifest {
                descriptor: descriptor.clone(),
                bytes: Bytes::from(bytes),
                subject: None,
                artifact_type: None,
                annotations: BTreeMap::new(),
            },
        );
        seen.by_config.insert(config_digest, descriptor.clone());
        Ok(descriptor)
    }
}
