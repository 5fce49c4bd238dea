//! Files as OCI artifacts, as oras pushes and pulls them: each file a layer titled with its
//! name (`org.opencontainers.image.title`), the empty config descriptor of image-spec 1.1, an
//! artifact type, annotations, and a subject for attaching an artifact to another manifest
//! (signatures, SBOMs). Pulling writes each titled layer to its file name inside one
//! directory, verified before it appears, and refuses names that would leave the directory.
//!
//! It also finds the layers of any manifest by title, media type or digest and opens them as
//! streams ([`find_layers`], [`open_layer`]).
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use oci_artifact::{ArtifactFile, ArtifactOptions, pull_artifact, push_artifact};
//! use oci_store::MemoryStore;
//! use oci_types::ManifestRef;
//!
//! let work = tempfile::tempdir()?;
//! std::fs::write(work.path().join("notes.txt"), "hello")?;
//! let store = MemoryStore::new();
//! let repo = "team/notes".parse()?;
//! let options = ArtifactOptions::new().with_tag("v1".parse()?);
//! push_artifact(&store, &repo, &[ArtifactFile::new(work.path().join("notes.txt"))], &options).await?;
//!
//! let out = work.path().join("out");
//! let pulled = pull_artifact(&store, &repo, &ManifestRef::Tag("v1".parse()?), &out).await?;
//! assert_eq!(pulled.len(), 1);
//! assert_eq!(std::fs::read_to_string(out.join("notes.txt"))?, "hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! See `ARCHITECTURE.md` for where this crate sits.
#![warn(missing_docs)]

mod error;
mod find;
mod pull;
mod push;

pub use error::{Error, Result};
pub use find::{LayerQuery, TITLE, fetch_manifest, find_layers, open_layer};
pub use pull::{PulledFile, pull_artifact};
pub use push::{
    ArtifactFile, ArtifactOptions, DEFAULT_ARTIFACT_TYPE, DEFAULT_FILE_TYPE, push_artifact,
};
