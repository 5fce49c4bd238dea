//! The contract that joins every part of hoist: the [`OciInterface`] trait, its [`Error`] type
//! with the distribution-spec codes, the streaming [`BlobReader`] and [`BlobWriter`], the
//! reference [`MemoryStore`], the wrappers [`ReadOnly`] and [`Cached`], and (with the
//! `conformance` feature) the one conformance suite that every implementation passes.
//!
//! This crate does no networking and touches no files: backends (an image layout directory, a
//! registry client) live in their own crates and implement [`OciInterface`]; the server and the
//! image tools use stores only through `dyn OciInterface`. See `ARCHITECTURE.md`.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use oci_store::{MemoryStore, OciInterface, OciInterfaceExt, PushManifestParams, ReadOnly};
//! use oci_types::{media_type, Descriptor, ImageManifest, MediaType, Repository};
//!
//! let store: Arc<dyn OciInterface> = Arc::new(MemoryStore::new());
//! let repo: Repository = "team/app".parse()?;
//! let config = store
//!     .push_blob_bytes(&repo, MediaType::from_static(media_type::OCI_CONFIG), Bytes::from("{}"))
//!     .await?;
//! let manifest = ImageManifest::new(config, vec![]).to_json();
//! let pushed = store
//!     .push_manifest(
//!         &repo,
//!         manifest.into(),
//!         &MediaType::from_static(media_type::OCI_MANIFEST),
//!         &PushManifestParams::new().with_tag("v1".parse()?),
//!     )
//!     .await?;
//! assert_eq!(store.resolve_tag(&repo, &"v1".parse()?).await?.digest, pushed.digest);
//!
//! // The same store, refusing writes.
//! let read_only = ReadOnly::new(store);
//! assert!(read_only.delete_tag(&repo, &"v1".parse()?).await.is_err());
//! # Ok::<(), oci_store::Error>(())
//! # }).unwrap();
//! ```
//!
//! # Features
//! - `conformance`: exposes the `conformance` module, the suite of checks and the
//!   `conformance_tests!` macro that turns them into one named test each. Not semver-stable.
#![warn(missing_docs)]

mod blob;
mod cache;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod error;
mod file_span;
mod gc;
mod inspect;
mod interface;
#[cfg(feature = "layers")]
pub mod layer;
mod locate;
mod memory;
mod read_only;

mod pool;
pub use blob::{BlobBody, BlobReader, BlobWriter, PushCheck, body_from_bytes, check_range};
pub use cache::Cached;
pub use error::{Error, ErrorCode, Result};
pub use file_span::FileSpan;
pub use gc::GcOptions;
pub use inspect::{BLOB_REFERENCE_LISTS, InspectedManifest, inspect_manifest};
pub use interface::{
    ListParams, OciInterface, OciInterfaceExt, PushManifestParams, ReferrersParams,
};
pub use locate::BlobLocator;
pub use memory::MemoryStore;
pub use pool::BufferPool;
pub use read_only::ReadOnly;
