//! Content descriptors: what a manifest, an index or the registry API says about a blob.

use std::collections::BTreeMap;

use crate::{Digest, Error, MediaType, Platform, Result};

/// The largest size a descriptor may state. Go implementations read sizes as `int64`, so a
/// larger one could never be served by them; refusing it early keeps arithmetic on sizes safe.
pub const MAX_DESCRIPTOR_SIZE: u64 = i64::MAX as u64;

/// An OCI content descriptor (image-spec `descriptor.md`).
///
/// ```
/// use oci_types::{media_type, Descriptor, Digest, MediaType};
/// let config = b"{}";
/// let d = Descriptor::new(MediaType::from_static(media_type::OCI_EMPTY), Digest::sha256(config), 2);
/// let json = serde_json::to_string(&d).unwrap();
/// assert_eq!(
///     json,
///     r#"{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}"#
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Descriptor {
    /// The media type of the referenced content.
    pub media_type: MediaType,
    /// The digest of the referenced content.
    pub digest: Digest,
    /// The size of the referenced content in bytes.
    pub size: u64,
    /// Places the content may also be downloaded from (non-distributable layers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// Arbitrary metadata; absent and empty mean the same.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Embedded content, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// The platform the referenced image runs on (index entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// The artifact type of the referenced manifest (referrers lists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<MediaType>,
}

impl Descriptor {
    /// A descriptor with only the three required fields.
    pub fn new(media_type: MediaType, digest: Digest, size: u64) -> Self {
        Self {
            media_type,
            digest,
            size,
            urls: Vec::new(),
            annotations: BTreeMap::new(),
            data: None,
            platform: None,
            artifact_type: None,
        }
    }

    /// The descriptor of a blob whose type is not known (`application/octet-stream`): what
    /// stores answer for blobs, which they keep without a media type.
    pub fn octet_stream(digest: &Digest, size: u64) -> Self {
        Self::new(
            MediaType::from_static(crate::media_type::OCTET_STREAM),
            digest.clone(),
            size,
        )
    }

    /// The descriptor of `content`, hashed with SHA-256.
    pub fn of_bytes(media_type: MediaType, content: &[u8]) -> Self {
        Self::new(media_type, Digest::sha256(content), content.len() as u64)
    }

    /// Sets the platform.
    pub fn with_platform(mut self, platform: Platform) -> Self {
        self.platform = Some(platform);
        self
    }

    /// Sets the artifact type.
    pub fn with_artifact_type(mut self, artifact_type: MediaType) -> Self {
        self.artifact_type = Some(artifact_type);
        self
    }

    /// Adds an annotation.
    pub fn with_annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.annotations.insert(key.into(), value.into());
        self
    }

    /// Checks the rules the image-spec puts on a descriptor beyond its JSON shape.
    pub fn validate(&self) -> Result<()> {
        if self.size > MAX_DESCRIPTOR_SIZE {
            return Err(Error::Manifest {
                reason: format!(
                    "descriptor {} states size {}, larger than {MAX_DESCRIPTOR_SIZE}",
                    self.digest, self.size
                ),
            });
        }
        Ok(())
    }
}

#[cfg(feature = "oci-spec")]
impl TryFrom<&oci_spec::image::Descriptor> for Descriptor {
    type Error = Error;

    fn try_from(value: &oci_spec::image::Descriptor) -> Result<Self> {
        let descriptor = Self {
            media_type: MediaType::parse(value.media_type().as_ref())?,
            digest: Digest::try_from(value.digest())?,
            size: value.size(),
            urls: value.urls().clone().unwrap_or_default(),
            annotations: value
                .annotations()
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            data: value.data().clone(),
            platform: value
                .platform()
                .as_ref()
                .map(Platform::try_from)
                .transpose()?,
            artifact_type: value
                .artifact_type()
                .as_ref()
                .map(|mt| MediaType::parse(mt.as_ref()))
                .transpose()?,
        };
        descriptor.validate()?;
        Ok(descriptor)
    }
}
