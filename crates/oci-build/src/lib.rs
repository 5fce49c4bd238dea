//! `oci-build`: moving and making OCI images through any [`OciInterface`](oci_store::OciInterface).
//!
//! Everything here works through `&dyn OciInterface`, so the same code copies between
//! registries, layouts, memory and any wrapper, and knows none of them by name.
//!
//! - [`copy`]: an image, an index or a whole multi-platform tree from one store to another,
//!   with platform selection, parallel blob transfers, cross-repository mounts, referrers and
//!   schema 1 conversion; progress as [`CopyEvent`]s.
//! - [`fetch_image`] and [`select_child`]: the image for a platform, out of an index, with the
//!   matching rules of [`PlatformMatcher`](oci_types::PlatformMatcher).
//! - [`build_image`]: a reproducible image from files ([`LayerSource`]: a directory, entries,
//!   a tar) on an optional [`Base`], compressed as [`Compression`] says, with config edits
//!   ([`ConfigEdit`]); [`create_index`], [`append_to_index`] and [`remove_from_index`] for
//!   multi-platform indexes; [`flatten_image`], [`rebase_image`] and [`recompress_image`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use bytes::Bytes;
//! use oci_build::{CopyOptions, Endpoint, ManifestRef, copy};
//! use oci_store::{MemoryStore, OciInterface, OciInterfaceExt, PushManifestParams};
//! use oci_types::{ImageManifest, MediaType, Repository, Tag, media_type};
//!
//! let (src, dst) = (MemoryStore::new(), MemoryStore::new());
//! let repo = Repository::parse("demo")?;
//! let config = src
//!     .push_blob_bytes(&repo, MediaType::from_static(media_type::OCI_CONFIG), Bytes::from_static(b"{}"))
//!     .await?;
//! let manifest = ImageManifest::new(config, Vec::new()).to_json();
//! let tag = Tag::parse("v1")?;
//! src.push_manifest(&repo, manifest.into(), &MediaType::from_static(media_type::OCI_MANIFEST),
//!     &PushManifestParams::new().with_tag(tag.clone())).await?;
//!
//! let report = copy(Endpoint::new(&src, &repo), &ManifestRef::Tag(tag.clone()),
//!     Endpoint::new(&dst, &repo), &[tag.clone()], &CopyOptions::default()).await?;
//! assert_eq!(report.blobs_copied, 1);
//! assert_eq!(dst.resolve_tag(&repo, &tag).await?.digest, report.root.unwrap().digest);
//! # Ok(()) }
//! ```
//!
//! Building an image from scratch, reproducibly:
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use oci_build::{BuildOptions, Endpoint, EntrySource, LayerEntry, LayerSource, build_image};
//! use oci_store::MemoryStore;
//! use oci_types::{Repository, Tag};
//!
//! let store = MemoryStore::new();
//! let repo = Repository::parse("app")?;
//! let mut options = BuildOptions::default();
//! options.created = Some(1_700_000_000); // SOURCE_DATE_EPOCH
//! options.config.entrypoint = Some(vec!["/bin/app".to_owned()]);
//! let layer = LayerSource::Entries(vec![LayerEntry::new("etc/removed", EntrySource::Whiteout)]);
//! let first = build_image(None, vec![layer.clone()], Endpoint::new(&store, &repo),
//!     &[Tag::parse("v1")?], &options).await?;
//! let again = build_image(None, vec![layer], Endpoint::new(&store, &repo), &[], &options).await?;
//! assert_eq!(first.manifest.digest, again.manifest.digest);
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod build;
mod copy;
mod error;
mod index;
mod platform;
mod schema1;

pub use build::{
    BASE_DIGEST_ANNOTATION, BASE_NAME_ANNOTATION, Base, BaseRole, BuildEvent, BuildOptions,
    BuildProgress, Built, BuiltLayer, COMPRESSION_ANNOTATION, Compression, ConfigEdit,
    DEFAULT_GZIP_BLOCK_SIZE, DEFAULT_GZIP_LEVEL, DEFAULT_ZSTD_LEVEL, Encoder, EntrySource, EnvEdit,
    GzipOptions, LayerEntry, LayerSource, Mtime, MutateOptions, TarOptions, ZstdOptions,
    build_image, flatten_image, push_layer, push_layer_with, rebase_image, recompress_image,
};
pub use copy::{CopyEvent, CopyOptions, CopyReport, Endpoint, PlatformFilter, ProgressSink, copy};
pub use error::{Error, Result};
pub use index::{
    IndexOptions, append_to_index, create_index, index_entry, platform_tag, remove_from_index,
};
/// Re-exported from `oci-types`, where it lives, since copies and builds take it.
pub use oci_types::ManifestRef;
pub use platform::{
    Image, MAX_CONFIG_SIZE, RawManifest, fetch_image, read_manifest, require_child, select_child,
};
