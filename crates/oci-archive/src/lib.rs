//! Images as tar files, as stores: an oci-archive (a tar of an OCI image layout, or a
//! `.tar.gz` of one) and a docker-archive (what `docker save` writes and `docker load`
//! reads, in the classic format and in the Docker 25+ one, an OCI layout with Docker's
//! `manifest.json` beside it).
//!
//! - [`ArchiveReader`] reads an archive in place: its tar is indexed once and blobs are
//!   served from their offsets (a compressed archive is decompressed once into a temporary
//!   file first), verified as they stream. It is a read-only [`OciInterface`](oci_store::OciInterface).
//! - [`ArchiveWriter`] writes one: an [`OciInterface`](oci_store::OciInterface) that takes
//!   pushes (from `copy`, a build, anything that writes stores), then [`ArchiveWriter::finish`]
//!   writes the index and `manifest.json` and makes the archive appear at its path, whole.
//!   It can also write into any stream (a Docker daemon's `POST /images/load`).
//!
//! Reading is bounded ([`ArchiveLimits`]): JSON files, entries, and how far a compressed
//! archive may expand; entry names stay inside the archive, and links inside it are followed
//! once.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use oci_archive::{ArchiveFormat, ArchiveLimits, ArchiveReader, ArchiveWriter, DockerFormat, ReadAs, WriteOptions, archive_name};
//! use oci_store::OciInterface;
//!
//! // Read what `docker save` wrote, as a store.
//! let saved = ArchiveReader::open("app.tar", ReadAs::Docker, ArchiveLimits::default()).await?;
//! let (repo, tag) = archive_name("example/app:v1")?;
//! let manifest = saved.resolve_tag(&repo, &tag).await?;
//! println!("{} images, example/app:v1 is {}", saved.images().len(), manifest.digest);
//!
//! // Write one: push into it (here by hand; `oci_build::copy` does it for a whole image),
//! // then finish.
//! let archive = ArchiveWriter::create("out.tar", ArchiveFormat::Docker(DockerFormat::Hybrid), WriteOptions::new())?;
//! # let _ = &archive;
//! let report = archive.finish().await?;
//! println!("wrote {:?}", report.path);
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod error;
mod format;
mod reader;
mod scan;
mod sink;
mod stored;
mod writer;

pub use error::{Error, Result};
pub use format::{
    ArchiveFormat, DEFAULT_REPOSITORY, DockerFormat, archive_name, archive_repository,
};
pub use reader::{ArchiveImage, ArchiveReader, ReadAs};
pub use scan::ArchiveLimits;
pub use writer::{ArchiveWriter, FinishReport, LayerSource, WriteOptions};
