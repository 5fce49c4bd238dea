//! Reading manifests and choosing the image for a platform out of an index.

use bytes::Bytes;
use oci_store::{OciInterface, OciInterfaceExt as _};
use oci_types::{
    Descriptor, Digest, ImageIndex, ImageManifest, Manifest, ManifestRef, MediaType, Platform,
    PlatformMatcher, Repository,
};

use crate::error::{Error, Result};

/// How deep indexes may nest below the manifest asked for: real images use one level, rarely
/// two; anything deeper is a cycle or a hostile source.
pub(crate) const MAX_DEPTH: usize = 8;

/// A manifest's exact bytes with its descriptor (media type, digest, size).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RawManifest {
    /// The descriptor it was served with.
    pub descriptor: Descriptor,
    /// Its exact bytes.
    pub bytes: Bytes,
}

impl RawManifest {
    /// Parses the bytes as an image manifest or index.
    pub fn parse(&self, repo: &Repository) -> Result<Manifest> {
        Manifest::parse(&self.bytes, &self.descriptor.media_type).map_err(|source| {
            Error::Malformed {
                what: "manifest",
                repo: repo.clone(),
                digest: self.descriptor.digest.clone(),
                source: Box::new(source),
            }
        })
    }
}

/// Reads a manifest, verified, by tag or digest.
pub async fn read_manifest(
    store: &dyn OciInterface,
    repo: &Repository,
    reference: &ManifestRef,
) -> Result<RawManifest> {
    let context = || format!("reading manifest {repo}{reference} from {store}");
    let reader = store
        .get_manifest_ref(repo, reference)
        .await
        .map_err(|e| Error::store(context(), e))?;
    let descriptor = reader.descriptor().clone();
    let bytes = reader
        .bytes(oci_types::MAX_MANIFEST_SIZE as u64)
        .await
        .map_err(|e| Error::store(context(), e))?;
    Ok(RawManifest { descriptor, bytes })
}

/// The child of `index` that runs best on `wanted`, by the rules of [`PlatformMatcher`]
/// (exact match first, then compatible variants and architectures); `None` when none runs.
pub fn select_child<'a>(index: &'a ImageIndex, wanted: &Platform) -> Option<&'a Descriptor> {
    let matcher = PlatformMatcher::new(wanted);
    let candidates: Vec<(&Descriptor, &Platform)> = index
        .manifests
        .iter()
        .filter_map(|child| child.platform.as_ref().map(|p| (child, p)))
        .collect();
    matcher
        .best(candidates.iter().map(|(_, platform)| *platform))
        .map(|best| candidates[best].0)
}

/// [`select_child`], or [`Error::NoMatchingPlatform`] naming the platforms the index
/// `index_digest` of `repo` offers.
pub fn require_child<'a>(
    index: &'a ImageIndex,
    wanted: &Platform,
    repo: &Repository,
    index_digest: &Digest,
) -> Result<&'a Descriptor> {
    select_child(index, wanted).ok_or_else(|| Error::NoMatchingPlatform {
        wanted: wanted.to_string(),
        repo: repo.clone(),
        digest: index_digest.clone(),
        available: index
            .manifests
            .iter()
            .filter_map(|c| c.platform.as_ref().map(ToString::to_string))
            .collect(),
    })
}

/// An image resolved for one platform: what it takes to run or unpack it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Image {
    /// The index it was chosen from, when the reference named one.
    pub index: Option<Descriptor>,
    /// The image manifest's descriptor.
    pub manifest_descriptor: Descriptor,
    /// The image manifest.
    pub manifest: ImageManifest,
    /// The config's exact bytes (verified against `manifest.config`).
    pub config: Bytes,
}

impl Image {
    /// The config descriptor.
    pub fn config_descriptor(&self) -> &Descriptor {
        &self.manifest.config
    }

    /// The layers, lowest first.
    pub fn layers(&self) -> &[Descriptor] {
        &self.manifest.layers
    }
}

/// The largest config hoist reads into memory: real ones are a few KiB, big ones with long
/// histories a few hundred.
pub const MAX_CONFIG_SIZE: u64 = 16 * 1024 * 1024;

/// Resolves `reference` to the image for `platform` (the host's when `None`): an image
/// manifest is taken as it is, an index is searched with [`select_child`]. Returns the
/// manifest, its config and its layer descriptors.
pub async fn fetch_image(
    store: &dyn OciInterface,
    repo: &Repository,
    reference: &ManifestRef,
    platform: Option<&Platform>,
) -> Result<Image> {
    let wanted = platform.cloned().unwrap_or_else(Platform::host);
    let mut raw = read_manifest(store, repo, reference).await?;
    let mut index = None;
    for _ in 0..MAX_DEPTH {
        match raw.parse(repo)? {
            Manifest::Image(manifest) => {
                let config = store
                    .get_blob(repo, &manifest.config.digest)
                    .await
                    .map_err(|e| {
                        Error::store(
                            format!("reading config {} of {repo}", manifest.config.digest),
                            e,
                        )
                    })?
                    .bytes(MAX_CONFIG_SIZE)
                    .await
                    .map_err(|e| {
                        Error::store(
                            format!("reading config {} of {repo}", manifest.config.digest),
                            e,
                        )
                    })?;
                return Ok(Image {
                    index,
                    manifest_descriptor: raw.descriptor,
                    manifest,
                    config,
                });
            }
            Manifest::Index(list) => {
                let child = require_child(&list, &wanted, repo, &raw.descriptor.digest)?;
                let child_digest = child.digest.clone();
                index.get_or_insert(raw.descriptor);
                raw = read_manifest(store, repo, &ManifestRef::Digest(child_digest)).await?;
            }
            _ => {
                return Err(Error::UnsupportedManifest {
                    repo: repo.clone(),
                    digest: raw.descriptor.digest,
                    media_type: raw.descriptor.media_type.to_string(),
                    action: "select a platform from",
                });
            }
        }
    }
    Err(Error::TooDeep {
        repo: repo.clone(),
        digest: raw.descriptor.digest,
        limit: MAX_DEPTH,
    })
}

/// True for the media types [`Manifest::parse`] reads (OCI and Docker v2 manifests and indexes).
pub(crate) fn is_v2(media_type: &MediaType) -> bool {
    media_type.is_manifest() || media_type.is_index()
}
