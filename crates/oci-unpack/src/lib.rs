//! `oci-unpack`: an image's layers back into files, safe against hostile layers.
//!
//! - [`unpack`]: the root filesystem in a directory (`umoci unpack`), layers applied in order
//!   with whiteouts and opaque directories, hard links, symlinks, modes, times, extended
//!   attributes; owners and device nodes when running as root. Every path is resolved inside
//!   the directory by the kernel (`openat2` with `RESOLVE_IN_ROOT`), so `..`, absolute names
//!   and symlinks, however they point, never reach outside it.
//! - [`export`]: the same tree as one tar stream (`crane export`).
//! - [`extract_layers`]: each layer's uncompressed tar as a file named by its `diff_id`
//!   (`DIR/sha256/<hex>`), several at a time, each renamed into place only once its digest and
//!   `diff_id` matched, so that a run picks up where an interrupted one stopped;
//!   [`write_uncompressed`]: one layer's tar into any writer.
//!
//! It works on any [`OciInterface`](oci_store::OciInterface) and needs an image's layers
//! with their `diff_id`s ([`image_layers`] reads them off a manifest and config); choosing the
//! image for a platform out of an index is the caller's (`oci_build::fetch_image`).
//! Layers are read through [`oci_store::layer`]: digests and `diff_id`s checked, limits on
//! sizes, entries, names and PAX records.
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use bytes::Bytes;
//! use oci_store::{MemoryStore, OciInterfaceExt};
//! use oci_types::{Descriptor, Digest, ImageManifest, MediaType, Repository, media_type};
//! use oci_unpack::{LayerRef, UnpackOptions, unpack};
//!
//! // A one-file layer, uncompressed.
//! let mut tar = tar::Builder::new(Vec::new());
//! let mut header = tar::Header::new_ustar();
//! header.set_path("hello.txt")?;
//! header.set_size(3);
//! header.set_mode(0o644);
//! header.set_cksum();
//! tar.append(&header, &b"hi\n"[..])?;
//! let tar = Bytes::from(tar.into_inner()?);
//!
//! let store = MemoryStore::new();
//! let repo = Repository::parse("demo")?;
//! let descriptor = store
//!     .push_blob_bytes(&repo, MediaType::from_static(media_type::OCI_LAYER_TAR), tar.clone())
//!     .await?;
//! let diff_id = descriptor.digest.clone(); // uncompressed: the same digest
//! let dir = tempfile::tempdir()?;
//! let target = dir.path().join("rootfs");
//! unpack(&store, &repo, &[LayerRef::new(descriptor, diff_id)], &target, &UnpackOptions::default())
//!     .await?;
//! assert_eq!(std::fs::read(target.join("hello.txt"))?, b"hi\n");
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod apply;
mod error;
mod export;
mod extract;
mod pieces;
mod root;
mod unpack;

pub use error::{Error, Result};
pub use export::{ExportOptions, export};
pub use extract::{
    ExtractOptions, ExtractReport, ExtractedLayer, extract_layers, layer_file, write_uncompressed,
};
pub use oci_store::layer::LayerLimits;
pub use unpack::{
    LayerRef, UnpackEvent, UnpackOptions, UnpackProgress, UnpackReport, image_layers, unpack,
};
