//! Media types of the OCI image-spec and of Docker's image formats, and what each one is.

use std::fmt;
use std::str::FromStr;

use crate::{Error, Result};

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image configuration.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI layer, uncompressed tar.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI layer, gzip-compressed tar.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI layer, zstd-compressed tar.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// OCI non-distributable layer, uncompressed (deprecated by the image-spec, still read).
pub const OCI_LAYER_NONDIST_TAR: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
/// OCI non-distributable layer, gzip (deprecated by the image-spec, still read).
pub const OCI_LAYER_NONDIST_GZIP: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
/// OCI non-distributable layer, zstd (deprecated by the image-spec, still read).
pub const OCI_LAYER_NONDIST_ZSTD: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";
/// The empty descriptor's media type: the `{}` config of artifacts.
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// The `oci-layout` file of an image layout.
pub const OCI_LAYOUT_HEADER: &str = "application/vnd.oci.layout.header.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list (the multi-platform index of Docker schema 2).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image configuration.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker layer, gzip-compressed tar.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// An uncompressed Docker layer (what `docker save` archives and BuildKit's uncompressed exports use).
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// A zstd Docker layer (containerd's name for it; Docker 23+ pulls it).
pub const DOCKER_LAYER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";
/// Docker foreign layer (non-distributable, gzip).
pub const DOCKER_LAYER_FOREIGN_GZIP: &str =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
/// Docker schema 1 manifest, unsigned.
pub const DOCKER_SCHEMA1_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// Docker schema 1 manifest, signed (JWS).
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
/// Generic bytes, what registries call a blob of unknown type.
pub const OCTET_STREAM: &str = "application/octet-stream";

/// The compression of a layer, read off its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

/// A media type such as `application/vnd.oci.image.manifest.v1+json`.
///
/// Parsing checks the `type/subtype` shape of RFC 6838 (restricted names, optional
/// `; parameters`, no surrounding whitespace, no control characters); it does not restrict the
/// type to known ones, since registries and layouts carry artifacts of any type.
///
/// ```
/// use oci_types::{MediaType, media_type};
/// let mt = MediaType::parse(media_type::DOCKER_MANIFEST_LIST)?;
/// assert!(mt.is_index());
/// assert!(!mt.is_manifest());
/// # Ok::<(), oci_types::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MediaType(String);

impl MediaType {
    /// Parses and checks the shape of a media type.
    pub fn parse(input: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::MediaType {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        if input.starts_with(char::is_whitespace) || input.ends_with(char::is_whitespace) {
            return Err(invalid("leading or trailing whitespace"));
        }
        // Parameters are not parsed, but a media type travels in HTTP headers and JSON: no
        // control characters (CR, LF, NUL...) anywhere.
        if let Some(bad) = input.chars().find(|c| c.is_control()) {
            return Err(invalid(&format!("control character {bad:?}")));
        }
        let essence = input.split(';').next().unwrap_or_default().trim_end();
        let (kind, subtype) = essence
            .split_once('/')
            .ok_or_else(|| invalid("missing '/' between type and subtype"))?;
        for (what, part) in [("type", kind), ("subtype", subtype)] {
            if part.is_empty() || part.len() > 127 {
                return Err(invalid(&format!("{what} must be 1 to 127 characters")));
            }
            if !part.as_bytes()[0].is_ascii_alphanumeric() {
                return Err(invalid(&format!(
                    "{what} must start with a letter or digit"
                )));
            }
            if let Some(bad) = part.chars().find(|c| {
                !(c.is_ascii_alphanumeric()
                    || matches!(c, '!' | '#' | '$' | '&' | '-' | '^' | '_' | '.' | '+'))
            }) {
                return Err(invalid(&format!(
                    "character {bad:?} is not allowed in the {what}"
                )));
            }
        }
        Ok(Self(input.to_owned()))
    }

    /// A media type from a constant of this module, known to be well formed.
    pub fn from_static(known: &'static str) -> Self {
        Self(known.to_owned())
    }

    /// The whole media type, parameters included.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The media type without parameters, trimmed (`type/subtype`).
    pub fn essence(&self) -> &str {
        self.0.split(';').next().unwrap_or_default().trim()
    }

    /// An OCI image index or a Docker manifest list.
    pub fn is_index(&self) -> bool {
        matches!(self.essence(), OCI_INDEX | DOCKER_MANIFEST_LIST)
    }

    /// An OCI image manifest or a Docker schema 2 manifest.
    pub fn is_manifest(&self) -> bool {
        matches!(self.essence(), OCI_MANIFEST | DOCKER_MANIFEST)
    }

    /// A Docker schema 1 manifest (signed or not), read only to be converted.
    pub fn is_schema1(&self) -> bool {
        matches!(
            self.essence(),
            DOCKER_SCHEMA1_MANIFEST | DOCKER_SCHEMA1_SIGNED
        )
    }

    /// Any of the manifest kinds a registry stores under `/manifests/`.
    pub fn is_any_manifest(&self) -> bool {
        self.is_index() || self.is_manifest() || self.is_schema1()
    }

    /// A Docker format (schema 1 or 2), as opposed to OCI.
    pub fn is_docker(&self) -> bool {
        self.essence().starts_with("application/vnd.docker.")
    }

    /// An image configuration (OCI or Docker).
    pub fn is_config(&self) -> bool {
        matches!(self.essence(), OCI_CONFIG | DOCKER_CONFIG)
    }

    /// A filesystem layer of either format.
    pub fn is_layer(&self) -> bool {
        self.layer_compression().is_some()
    }

    /// A layer that registries may refuse to store (non-distributable or Docker foreign).
    pub fn is_non_distributable(&self) -> bool {
        let essence = self.essence();
        essence.starts_with("application/vnd.oci.image.layer.nondistributable.")
            || essence == DOCKER_LAYER_FOREIGN_GZIP
    }

    /// The compression of a layer, or `None` when this is not a layer media type.
    pub fn layer_compression(&self) -> Option<Compression> {
        match self.essence() {
            OCI_LAYER_TAR | OCI_LAYER_NONDIST_TAR | DOCKER_LAYER_TAR => Some(Compression::None),
            OCI_LAYER_GZIP
            | OCI_LAYER_NONDIST_GZIP
            | DOCKER_LAYER_GZIP
            | DOCKER_LAYER_FOREIGN_GZIP => Some(Compression::Gzip),
            OCI_LAYER_ZSTD | OCI_LAYER_NONDIST_ZSTD | DOCKER_LAYER_ZSTD => Some(Compression::Zstd),
            _ => None,
        }
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MediaType({})", self.0)
    }
}

impl FromStr for MediaType {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl AsRef<str> for MediaType {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<&str> for MediaType {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl serde::Serialize for MediaType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for MediaType {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}
