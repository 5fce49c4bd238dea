//! A manifest held in memory by an archive's store (read or being written), with what its
//! referrers listing needs, found once when it is stored.

use std::collections::BTreeMap;

use bytes::Bytes;
use oci_store::ReferrersParams;
use oci_types::{Descriptor, Digest, MediaType};

/// A manifest's descriptor (no annotations, no platform), exact bytes, and referrer facts.
#[derive(Debug, Clone)]
pub(crate) struct StoredManifest {
    pub(crate) descriptor: Descriptor,
    pub(crate) bytes: Bytes,
    pub(crate) subject: Option<Digest>,
    pub(crate) artifact_type: Option<MediaType>,
    pub(crate) annotations: BTreeMap<String, String>,
}

/// The descriptors of the manifests whose subject is `digest` (of the artifact type asked,
/// if one is), each with its artifact type and annotations, ordered by digest.
pub(crate) fn referrers<'a>(
    manifests: impl Iterator<Item = &'a StoredManifest>,
    digest: &Digest,
    params: &ReferrersParams,
) -> Vec<Descriptor> {
    let wanted = params.artifact_type.as_ref();
    let mut found: Vec<Descriptor> = manifests
        .filter(|m| m.subject.as_ref() == Some(digest))
        .filter(|m| wanted.is_none_or(|wanted| m.artifact_type.as_ref() == Some(wanted)))
        .map(|m| {
            let mut descriptor = m.descriptor.clone();
            descriptor.artifact_type = m.artifact_type.clone();
            descriptor.annotations = m.annotations.clone();
            descriptor
        })
        .collect();
    found.sort_by(|a, b| a.digest.as_str().cmp(b.digest.as_str()));
    found
}
