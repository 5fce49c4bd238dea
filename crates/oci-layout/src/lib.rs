//! An OCI image layout directory as an [`OciInterface`](oci_store::OciInterface).
//!
//! An image layout (`oci-layout`, `index.json`, `blobs/ALG/HEX`) is how images live on disk
//! between tools: skopeo, umoci, buildah, oras and crane read and write it. [`LayoutStore`]
//! opens theirs as they are and writes layouts they accept, either one layout for many
//! repositories or one layout per repository under a root.
//!
//! # Safe under crashes and concurrent processes
//! - Every blob is written to a unique temporary file under `.hoist/tmp/`, hashed while it is
//!   written, fsynced, checked against its digest and size, and only then renamed into
//!   `blobs/`. The blob directories are fsynced before every change of `index.json`, so the
//!   renames are durable before anything names them (one sync per index change, not one per
//!   blob). A crash leaves at most a temporary file that no tool reads as a blob (and that
//!   [`LayoutStore::gc`] removes), or loses a blob that nothing names yet.
//! - `index.json` is rewritten through a temporary file, fsync, rename and directory fsync,
//!   under an exclusive advisory lock (`.hoist/lock`), and read again under that lock before
//!   every change: processes writing one layout never lose each other's updates.
//! - Chunked uploads live in `.hoist/uploads/ID/`, with ids of 32 hex characters that cannot
//!   name any other path.
//! - An `index.json` entry hoist cannot read is skipped with a warning and kept as it is.
//!
//! ```
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! use oci_layout::LayoutStore;
//! use oci_store::{OciInterface, OciInterfaceExt};
//! use oci_types::{media_type, MediaType};
//!
//! let dir = std::env::temp_dir().join(format!("oci-layout-doc-{}", std::process::id()));
//! let store = LayoutStore::open(&dir).await?;
//! let repo = oci_layout::LayoutOptions::default().default_repository;
//! let blob = store
//!     .push_blob_bytes(&repo, MediaType::from_static(media_type::OCI_LAYER_TAR), "hello".into())
//!     .await?;
//! assert!(dir.join("blobs/sha256").join(blob.digest.encoded()).is_file());
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
#![warn(missing_docs)]

mod direct;
mod error;
mod find;
mod index;
mod interface;
mod layout;
mod maintenance;
mod options;
mod read;
mod store;
mod upload;

pub use error::{Error, Result};
pub use find::{FoundLayout, find_layout};
pub use maintenance::{FsckReport, GcReport};
/// Re-exported from `oci-store`: every store's collection takes the same options.
pub use oci_store::GcOptions;
pub use options::{DEFAULT_READ_BUFFER, DEFAULT_REPOSITORY, LayoutOptions};
pub use store::LayoutStore;
