//! Any bucket of object storage as an [`OciInterface`](oci_store::OciInterface): S3 and
//! S3-compatible stores, Google Cloud Storage, Azure Blob Storage, a local directory or
//! memory, through [`object_store`]. This is the backend of `hoist serve --storage`, for
//! registries that run as several stateless replicas over one bucket.
//!
//! It is not a cache and keeps nothing of its own between requests: every replica sees the
//! same bucket, and any of them can continue an upload that another started.
//!
//! How it stays correct with several writers and no locks:
//! - content is stored once under its digest (`blobs/ALG/XX/HEX`), written create-only after
//!   its size and digest were checked, so two replicas pushing one blob are both right;
//! - every mutable name (a tag, a repository's link to a blob or manifest) is an object of its
//!   own, replaced whole: no update is a read-modify-write of a shared object, so two replicas
//!   tagging one repository at once lose nothing;
//! - a chunked upload keeps its parts, its tail and its running SHA-256 in the bucket (see
//!   `upload.rs`), and a writer takes it over by creating the next generation of its state.
//!
//! Listings come from the store's listing and are sorted here (a local directory lists in
//! no particular order), then paged as the trait says.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use object_store::memory::InMemory;
//! use oci_bucket::BucketStore;
//! use oci_store::{OciInterface, OciInterfaceExt};
//! use oci_types::{MediaType, Repository, media_type};
//!
//! let store = BucketStore::with_multipart(Arc::new(InMemory::new())).with_prefix("registry");
//! let repo: Repository = "library/hello".parse()?;
//! let layer = store
//!     .push_blob_bytes(&repo, MediaType::from_static(media_type::OCI_LAYER_TAR), "hi".into())
//!     .await?;
//! assert_eq!(store.get_blob_bytes(&repo, &layer.digest, 1024).await?, "hi");
//! # Ok::<(), oci_store::Error>(())
//! # }).unwrap();
//! ```
//!
//! See `ARCHITECTURE.md` for where this crate sits.
#![warn(missing_docs)]

mod error;
mod gc;
mod hash;
mod inner;
mod keys;
mod list;
mod manifests;
mod open;
mod store;
mod upload;

pub use error::{Error, Result};
pub use gc::GcReport;
/// Re-exported from `oci-store`: every store's collection takes the same options.
pub use oci_store::GcOptions;
pub use open::{open_url, open_url_with};
pub use store::{BucketStore, DEFAULT_PART_SIZE};
