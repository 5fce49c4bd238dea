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

/// The lists of a manifest of any kind whose entries name blobs, each with the field that
/// holds the digest (an image's and an artifact's layers and blobs, a schema 1 manifest's
/// `fsLayers`); besides these, `config.digest` names a blob and `manifests[].digest` a
/// manifest. What reads manifests as plain JSON (a push of an unknown kind, a bucket's
/// collection of garbage) takes its references from here.
pub const BLOB_REFERENCE_LISTS: [(&str, &str); 3] = [
    ("layers", "digest"),
    ("blobs", "digest"),
    ("fsLayers", "blobSum"),
];

/// Checks a manifest push the way every store must: at most [`MAX_MANIFEST_SIZE`] bytes, the
/// expected digest if one is given, and, for the image and index media types, a valid manifest
/// of that kind. Other media types (artifacts of unknown kinds, Docker schema 1) must be JSON
/// whose usual reference fields (`config`, `layers`, `blobs`, `fsLayers`) hold digests, and
/// whose `manifests` entries are descriptors of manifests that exist, as an index's; they are
/// otherwise stored as they are.
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
    let json = serde_json::from_slice::<serde_json::Value>(contents)
        .map_err(|e| invalid(format!("not valid JSON: {e}")))?;
    // What reads a manifest of another kind (a collection of garbage, a copy) takes the
    // digests in its usual fields for references: they must be digests, and `manifests`
    // entries are children that must be there, as an index's are. Otherwise one push could
    // stop every later collection, which fails closed on a reference it cannot follow.
    let digest_at = |value: &serde_json::Value, what: &str| match value {
        serde_json::Value::Null => Ok(()),
        serde_json::Value::String(text) => text
            .parse::<Digest>()
            .map(drop)
            .map_err(|e| invalid(format!("{what}: {e}"))),
        other => Err(invalid(format!("{what} is not a digest: {other}"))),
    };
    digest_at(&json["config"]["digest"], "config.digest")?;
    for (list, field) in BLOB_REFERENCE_LISTS {
        for item in json[list].as_array().map_or(&[][..], Vec::as_slice) {
            digest_at(&item[field], &format!("{list}[].{field}"))?;
        }
    }
    let children = json["manifests"].as_array().map_or(&[][..], Vec::as_slice);
    let required = children
        .iter()
        .map(|child| {
            serde_json::from_value::<Descriptor>(child.clone())
                .map_err(|e| invalid(format!("manifests[] holds {child}, not a descriptor: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(InspectedManifest {
        digest,
        descriptor,
        is_index: !required.is_empty(),
        required,
        subject: None,
        artifact_type: None,
        annotations: BTreeMap::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A manifest of an unknown kind is stored as it is, its `manifests` entries required as
    /// an index's children, and refused when a reference field holds no digest.
    #[test]
    fn a_manifest_of_an_unknown_kind_has_its_references_checked() {
        let repo = Repository::parse("r").unwrap();
        let kind = MediaType::from_static("application/vnd.example.thing+json");
        let child = Descriptor::of_bytes(
            MediaType::from_static(oci_types::media_type::OCI_MANIFEST),
            b"{}",
        );
        let text = format!(
            r#"{{"manifests":[{}],"layers":[{{"digest":"{}"}}],"other":"x"}}"#,
            serde_json::to_string(&child).unwrap(),
            Digest::sha256(b"layer")
        );
        let params = PushManifestParams::new();
        let inspected = inspect_manifest(&repo, text.as_bytes(), &kind, &params).unwrap();
        assert!(inspected.is_index);
        assert_eq!(inspected.required, [child]);
        let plain = inspect_manifest(&repo, br#"{"anything":[1,2]}"#, &kind, &params).unwrap();
        assert!(!plain.is_index && plain.required.is_empty());
        for bad in [
            r#"{"config":{"digest":"sha256:abc"}}"#,
            r#"{"layers":[{"digest":7}]}"#,
            r#"{"fsLayers":[{"blobSum":"x"}]}"#,
            r#"{"manifests":[{"digest":"x"}]}"#,
        ] {
            let error = inspect_manifest(&repo, bad.as_bytes(), &kind, &params).unwrap_err();
            assert!(
                matches!(error, Error::ManifestInvalid { .. }),
                "{bad}: {error}"
            );
        }
    }
}
