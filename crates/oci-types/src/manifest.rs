//! Image manifests and indexes (OCI and Docker schema 2), parsed and validated.

use std::collections::BTreeMap;

use crate::{Descriptor, Error, MediaType, Result, media_type};

/// The largest manifest hoist reads or stores: the distribution-spec asks registries to accept at
/// least 4 MiB and lets them refuse larger ones.
pub const MAX_MANIFEST_SIZE: usize = 4 * 1024 * 1024;

/// A parsed manifest: an image manifest or an index.
// Both variants are a few hundred bytes and a manifest is parsed once per push or pull, so
// boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Manifest {
    /// An OCI image manifest or a Docker schema 2 manifest.
    Image(ImageManifest),
    /// An OCI image index or a Docker manifest list.
    Index(ImageIndex),
}

/// An OCI image manifest or a Docker schema 2 manifest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ImageManifest {
    /// Always 2.
    pub schema_version: u32,
    /// The media type the manifest was read as (or states); serialised without parameters.
    #[serde(serialize_with = "essence")]
    pub media_type: MediaType,
    /// The artifact type, for artifacts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<MediaType>,
    /// The configuration blob.
    pub config: Descriptor,
    /// The layers, base first.
    pub layers: Vec<Descriptor>,
    /// The manifest this one refers to (signatures, SBOMs, attestations).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Annotations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An OCI image index or a Docker manifest list.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ImageIndex {
    /// Always 2.
    pub schema_version: u32,
    /// The media type the index was read as (or states); serialised without parameters.
    #[serde(serialize_with = "essence")]
    pub media_type: MediaType,
    /// The artifact type, for artifacts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<MediaType>,
    /// The child manifests, often one per platform.
    pub manifests: Vec<Descriptor>,
    /// The manifest this one refers to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Annotations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl ImageManifest {
    /// An OCI image manifest with the given config and layers.
    pub fn new(config: Descriptor, layers: Vec<Descriptor>) -> Self {
        Self {
            schema_version: 2,
            media_type: MediaType::from_static(media_type::OCI_MANIFEST),
            artifact_type: None,
            config,
            layers,
            subject: None,
            annotations: BTreeMap::new(),
        }
    }

    /// The canonical JSON of this manifest (what hoist pushes when it builds one).
    pub fn to_json(&self) -> Vec<u8> {
        to_json(self)
    }
}

impl ImageIndex {
    /// An OCI image index of the given children.
    pub fn new(manifests: Vec<Descriptor>) -> Self {
        Self {
            schema_version: 2,
            media_type: MediaType::from_static(media_type::OCI_INDEX),
            artifact_type: None,
            manifests,
            subject: None,
            annotations: BTreeMap::new(),
        }
    }

    /// The canonical JSON of this index.
    pub fn to_json(&self) -> Vec<u8> {
        to_json(self)
    }
}

/// Writes the `mediaType` field as the essence of the media type. A manifest parsed as the
/// `Content-Type` it was served with keeps that header's parameters (`; charset=utf-8`) in its
/// media type, but the field is compared to the essence when parsed (and other implementations
/// expect the bare type there): written whole, the manifest's own JSON would be refused.
fn essence<S: serde::Serializer>(
    media_type: &MediaType,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    serializer.serialize_str(media_type.essence())
}

fn to_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Serialising these plain structs (strings, numbers, maps with string keys) cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

impl Manifest {
    /// Parses `bytes` as a manifest of `media_type` (the `Content-Type` it was served or pushed
    /// with), checking what the image-spec requires:
    /// - at most [`MAX_MANIFEST_SIZE`] bytes of JSON, `schemaVersion` 2;
    /// - a `mediaType` field, where present, equal to `media_type`;
    /// - every descriptor well formed (strict digests, media types, sizes), the subject's too;
    ///   an error names the field it is in (`config`, `layers[1]`, `manifests[0]`, `subject`).
    ///
    /// Unknown fields are ignored. Docker schema 1 and artifact types other than the four
    /// manifest kinds are refused here: callers that store any JSON check
    /// [`MediaType::is_manifest`] and [`MediaType::is_index`] first.
    ///
    /// ```
    /// use oci_types::{Manifest, MediaType, media_type};
    /// let json = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
    /// let m = Manifest::parse(json, &MediaType::from_static(media_type::OCI_INDEX))?;
    /// assert!(matches!(m, Manifest::Index(ref i) if i.manifests.is_empty()));
    /// # Ok::<(), oci_types::Error>(())
    /// ```
    pub fn parse(bytes: &[u8], media_type: &MediaType) -> Result<Self> {
        let invalid = |reason: String| Error::Manifest { reason };
        if bytes.len() > MAX_MANIFEST_SIZE {
            return Err(invalid(format!(
                "{} bytes, larger than the limit of {MAX_MANIFEST_SIZE}",
                bytes.len()
            )));
        }
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| invalid(format!("not valid JSON: {e}")))?;
        let object = value
            .as_object()
            .ok_or_else(|| invalid("not a JSON object".to_owned()))?;
        match object
            .get("schemaVersion")
            .and_then(serde_json::Value::as_u64)
        {
            Some(2) => {}
            Some(other) => return Err(invalid(format!("schemaVersion is {other}, expected 2"))),
            None => {
                return Err(invalid(
                    "schemaVersion is missing or not a number".to_owned(),
                ));
            }
        }
        if let Some(stated) = object.get("mediaType") {
            let stated = stated
                .as_str()
                .ok_or_else(|| invalid("mediaType is not a string".to_owned()))?;
            if stated != media_type.essence() {
                return Err(invalid(format!(
                    "mediaType field {stated:?} differs from the media type {:?} it was given as",
                    media_type.as_str()
                )));
            }
        }
        if media_type.is_manifest() {
            let raw: RawManifest = serde_json::from_value(value)
                .map_err(|e| invalid(format!("not an image manifest: {e}")))?;
            Ok(Self::Image(ImageManifest {
                schema_version: 2,
                media_type: media_type.clone(),
                artifact_type: optional_field(
                    "artifactType",
                    raw.artifact_type.filter(|v| v != ""),
                )?,
                config: descriptor("config".to_owned(), raw.config)?,
                layers: descriptors("layers", raw.layers)?,
                subject: raw
                    .subject
                    .map(|s| descriptor("subject".to_owned(), s))
                    .transpose()?,
                annotations: optional_field("annotations", raw.annotations)?.unwrap_or_default(),
            }))
        } else if media_type.is_index() {
            let raw: RawIndex = serde_json::from_value(value)
                .map_err(|e| invalid(format!("not an image index: {e}")))?;
            Ok(Self::Index(ImageIndex {
                schema_version: 2,
                media_type: media_type.clone(),
                artifact_type: optional_field(
                    "artifactType",
                    raw.artifact_type.filter(|v| v != ""),
                )?,
                manifests: descriptors("manifests", raw.manifests)?,
                subject: raw
                    .subject
                    .map(|s| descriptor("subject".to_owned(), s))
                    .transpose()?,
                annotations: optional_field("annotations", raw.annotations)?.unwrap_or_default(),
            }))
        } else {
            Err(invalid(format!(
                "media type {:?} is not an image manifest or index",
                media_type.as_str()
            )))
        }
    }

    /// The media type.
    pub fn media_type(&self) -> &MediaType {
        match self {
            Self::Image(m) => &m.media_type,
            Self::Index(i) => &i.media_type,
        }
    }

    /// The subject, for referrers.
    pub fn subject(&self) -> Option<&Descriptor> {
        match self {
            Self::Image(m) => m.subject.as_ref(),
            Self::Index(i) => i.subject.as_ref(),
        }
    }

    /// The artifact type a referrers list reports: the manifest's own `artifactType`, else, for
    /// an image manifest, its config's media type; an index without one has none.
    pub fn effective_artifact_type(&self) -> Option<&MediaType> {
        match self {
            Self::Image(m) => m.artifact_type.as_ref().or(Some(&m.config.media_type)),
            Self::Index(i) => i.artifact_type.as_ref(),
        }
    }

    /// The annotations.
    pub fn annotations(&self) -> &BTreeMap<String, String> {
        match self {
            Self::Image(m) => &m.annotations,
            Self::Index(i) => &i.annotations,
        }
    }

    /// What the manifest needs to be complete: config and layers, or an index's children.
    /// The subject is not among them: it may dangle.
    pub fn references(&self) -> Vec<&Descriptor> {
        match self {
            Self::Image(m) => std::iter::once(&m.config).chain(&m.layers).collect(),
            Self::Index(i) => i.manifests.iter().collect(),
        }
    }
}

/// The JSON shape of an image manifest. Read with hoist's own types rather than `oci-spec`'s:
/// `oci-spec` 0.10 spells the platform fields `osVersion`/`osFeatures` instead of the spec's
/// `os.version`/`os.features`, and would silently drop Windows build numbers.
///
/// The fields stay raw JSON here and are read one by one, so that an error names the field it
/// is in (`layers[1]: invalid digest ...`) rather than only a line and column.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    #[serde(default)]
    artifact_type: Option<serde_json::Value>,
    config: serde_json::Value,
    layers: Vec<serde_json::Value>,
    #[serde(default)]
    subject: Option<serde_json::Value>,
    #[serde(default)]
    annotations: Option<serde_json::Value>,
}

/// The JSON shape of an image index.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawIndex {
    #[serde(default)]
    artifact_type: Option<serde_json::Value>,
    manifests: Vec<serde_json::Value>,
    #[serde(default)]
    subject: Option<serde_json::Value>,
    #[serde(default)]
    annotations: Option<serde_json::Value>,
}

/// Reads one optional field, naming it in the error. `null` reads as absent.
fn optional_field<T: serde::de::DeserializeOwned>(
    name: &str,
    value: Option<serde_json::Value>,
) -> Result<Option<T>> {
    value
        .map(|v| {
            serde_json::from_value(v).map_err(|e| Error::Manifest {
                reason: format!("{name}: {e}"),
            })
        })
        .transpose()
}

/// Reads and validates one descriptor, naming the field it is in.
fn descriptor(name: String, value: serde_json::Value) -> Result<Descriptor> {
    let in_field = |reason: String| Error::Manifest {
        reason: format!("{name}: {reason}"),
    };
    // Serde's derived structs also read JSON arrays (fields by position); no other
    // implementation does, so such a manifest must not get into a store.
    if !value.is_object() {
        return Err(in_field(format!(
            "{} is not a JSON object",
            json_kind(&value)
        )));
    }
    if value
        .get("platform")
        .is_some_and(|p| !p.is_object() && !p.is_null())
    {
        return Err(in_field("platform is not a JSON object".to_owned()));
    }
    let descriptor: Descriptor =
        serde_json::from_value(value).map_err(|e| in_field(e.to_string()))?;
    descriptor.validate().map_err(|e| match e {
        Error::Manifest { reason } => in_field(reason),
        other => in_field(other.to_string()),
    })?;
    Ok(descriptor)
}

/// What kind of JSON value `value` is, for messages.
fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Reads and validates a list of descriptors, naming each by its index (`layers[1]`).
fn descriptors(name: &str, values: Vec<serde_json::Value>) -> Result<Vec<Descriptor>> {
    values
        .into_iter()
        .enumerate()
        .map(|(i, value)| descriptor(format!("{name}[{i}]"), value))
        .collect()
}

#[cfg(feature = "oci-spec")]
impl TryFrom<&oci_spec::image::ImageManifest> for ImageManifest {
    type Error = Error;

    /// Converts `oci-spec`'s manifest, checking every descriptor (platform `os.version` is lost
    /// by `oci-spec` itself).
    fn try_from(raw: &oci_spec::image::ImageManifest) -> Result<Self> {
        let media_type = match raw.media_type() {
            Some(mt) => MediaType::parse(mt.as_ref())?,
            None => MediaType::from_static(media_type::OCI_MANIFEST),
        };
        let convert = |d: &oci_spec::image::Descriptor| Descriptor::try_from(d);
        Ok(Self {
            schema_version: 2,
            media_type,
            artifact_type: raw
                .artifact_type()
                .as_ref()
                .map(|mt| MediaType::parse(mt.as_ref()))
                .transpose()?,
            config: convert(raw.config())?,
            layers: raw.layers().iter().map(convert).collect::<Result<_>>()?,
            subject: raw.subject().as_ref().map(convert).transpose()?,
            annotations: raw
                .annotations()
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        })
    }
}
