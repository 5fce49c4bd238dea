//! What every store checks and learns when a manifest is pushed, shared so that backends agree.

use std::collections::BTreeMap;

use oci_types::{
    Algorithm, Descriptor, Digest, MAX_MANIFEST_SIZE, Manifest, MediaType, Repository,
};

use crate::{Error, PushManifestParams, Result};

/// A pushed manifest, checked: its digest, and what a store needs to index it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct InspectedManifest {
    /// The digest of the bytes (in the algorithm of the expected digest, else SHA-256).
    pub digest: Digest,
    /// The descriptor to store it under: media type, digest, size.
    pub descriptor: Descriptor,
    /// Content that must be in the repository for the manifest to be complete: config and
    /// layers, or an index's children. Layers that live elsewhere (non-distributable, with
    /// URLs) are left out; the subject is never in it.
    pub required: Vec<Descriptor>,
    /// Whether `required` lists manifests (an index) rather than blobs.
    pub is_index: bool,
    /// The subject, for referrers.
    pub subject: Option<Digest>,
    /// The artifact type a referrers list reports.
    pub artifact_type: Option<MediaType>,
    /// The manifest's annotations.
    pub annotations: BTreeMap<String, String>,
}

/// Checks a manifest push the way every store must: at most [`MAX_MANIFEST_SIZE`] bytes, the
/// expected digest if one is given, and, for the image and index media types, a valid manifest
/// of that kind. Other media types (artifacts of unknown kinds, Docker schema 1) must be JSON and
/// are otherwise stored as they are.
pub fn inspect_manifest(
    repo: &Repository,
    contents: &[u8],
    media_type: &MediaType,
    params: &PushManifestParams,
) -> Result<InspectedManifest> {
    if contents.len() > MAX_MANIFEST_SIZE {
        return Err(Error::ManifestTooLarge {
            repo: repo.clone(),
            size: contents.len() as u64,
            limit: MAX_MANIFEST_SIZE as u64,
        });
    }
    let algorithm = params
        .digest
        .as_ref()
        .map_or(Algorithm::Sha256, Digest::algorithm);
    let digest = Digest::of(algorithm, contents);
    if let Some(expected) = params.digest.as_ref().filter(|&e| *e != digest) {
        return Err(Error::DigestInvalid {
            what: "manifest".to_owned(),
            expected: expected.clone(),
            actual: digest,
        });
    }
    let descriptor = Descriptor::new(media_type.clone(), digest.clone(), contents.len() as u64);
    let invalid = |reason: String| Error::ManifestInvalid {
        repo: repo.clone(),
        reason,
    };
    if media_type.is_manifest() || media_type.is_index() {
        let manifest = Manifest::parse(contents, media_type).map_err(|e| invalid(e.to_string()))?;
        let required = manifest
            .references()
            .into_iter()
            .filter(|r| r.urls.is_empty() || !r.media_type.is_non_distributable())
            .cloned()
            .collect();
        return Ok(InspectedManifest {
            digest,
            descriptor,
            required,
            is_index: matches!(manifest, Manifest::Index(_)),
            subject: manifest.subject().map(|s| s.digest.clone()),
            artifact_type: manifest.effective_artifact_type().cloned(),
            annotations: manifest.annotations().clone(),
        });
    }
    serde_json::from_slice::<serde_json::Value>(contents)
        .map_err(|e| invalid(format!("not valid JSON: {e}")))?;
    Ok(InspectedManifest {
        digest,
        descriptor,
        required: Vec::new(),
        is_index: false,
        subject: None,
        artifact_type: None,
        annotations: BTreeMap::new(),
    })
}
