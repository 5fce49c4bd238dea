//! The data of OCI images and registries, parsed and validated: digests, repository names, tags,
//! references, media types, descriptors, manifests and indexes, and platforms with their matching
//! rules.
//!
//! This crate is pure data and parsing: it does no I/O, starts no runtime and knows nothing of
//! HTTP or files. Every textual type is built by parsing and keeps its invariant afterwards, so a
//! [`Digest`] or a [`Repository`] in hand is always safe to put into a path or a URL. The store,
//! backends, server and CLI of hoist all build on these types (see `ARCHITECTURE.md`).
//!
//! ```
//! use oci_types::{Digest, Platform, PlatformMatcher, Reference};
//!
//! let reference: Reference = "ghcr.io/org/app:1.2".parse()?;
//! assert_eq!(reference.registry(), "ghcr.io");
//! assert_eq!(reference.tag().map(|t| t.as_str()), Some("1.2"));
//!
//! let digest = Digest::sha256(b"hello");
//! assert!(digest.verify(b"hello"));
//!
//! let want = PlatformMatcher::new(&"linux/arm/v7".parse::<Platform>()?);
//! assert!(want.matches(&"linux/arm/v6".parse()?));
//! # Ok::<(), oci_types::Error>(())
//! ```
//!
//! Manifests and indexes are parsed into hoist's own validated types, so every digest in a parsed
//! [`Manifest`] has been checked. With the `oci-spec` feature, `oci-spec`'s types convert into
//! them (`TryFrom`) for programs that already use that crate; without it, nothing of `oci-spec`
//! is in this crate's API. hoist does not parse through `oci-spec`'s types because `oci-spec`
//! 0.10 reads the platform fields `os.version` and `os.features` under other names and drops
//! them.
#![warn(missing_docs)]

mod descriptor;
mod digest;
pub mod docker_hub;
mod error;
mod manifest;
mod manifest_ref;
pub mod media_type;
mod name;
mod platform;
mod reference;
mod text;

pub use descriptor::{Descriptor, MAX_DESCRIPTOR_SIZE};
pub use digest::{Algorithm, Digest, Digester};
pub use error::{Error, Result};
pub use manifest::{ImageIndex, ImageManifest, MAX_MANIFEST_SIZE, Manifest};
pub use manifest_ref::ManifestRef;
pub use media_type::{Compression, MediaType};
pub use name::{MAX_REPOSITORY_LEN, MAX_TAG_LEN, Repository, Tag, referrers_tag, referrers_tag_of};
pub use platform::{Platform, PlatformMatcher};
pub use reference::{DOCKER_HUB, Reference};
pub use text::printable;
