//! A client of the Docker Engine API, and of podman's Docker-compatible service: images loaded
//! into a daemon and saved out of it.
//!
//! [`DockerClient`] speaks HTTP/1.1 to the daemon at `DOCKER_HOST` (a unix socket, or plain
//! HTTP over TCP), negotiates the API version (1.41 to 1.45) and offers what moving images
//! needs: [`DockerClient::load`] (`docker load`) streams a tar archive into the daemon as it is
//! produced and reads the daemon's answer, [`DockerClient::save`] (`docker save`) streams one
//! out; [`DockerClient::image_id`], [`DockerClient::tag`] and [`DockerClient::platform`] answer
//! the questions around them.
//!
//! It moves bytes and reads the daemon's answers; it knows nothing of archive formats
//! (`oci-archive` writes and reads the tars, and the `hoist` command line joins the two), and
//! it does not run containers, pull or build.
//! Every answer read is bounded: 1 MiB for JSON answers and for each line of a load's
//! message stream, 4 MiB for an image's inspection, 10,000 images named by one load.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use bytes::Bytes;
//! use futures::StreamExt;
//! use oci_docker::DockerClient;
//!
//! let client = DockerClient::from_env()?;
//! let version = client.version().await?;
//! println!("{} speaks API {}", client.host(), version.negotiated_api_version);
//!
//! // Load an archive (here read whole; any stream of pieces will do).
//! let archive = Bytes::from(std::fs::read("app.tar")?);
//! let report = client.load(futures::stream::iter([Ok(archive)])).await?;
//! println!("loaded {:?}", report.names);
//!
//! // Save it back, piece by piece.
//! let mut tar = client.save(&["app:1".to_owned()]).await?;
//! let mut size = 0;
//! while let Some(piece) = tar.next().await {
//!     size += piece?.len();
//! }
//! println!("{size} bytes");
//! # Ok(()) }
//! ```
//!
//! There are no cargo features. See `ARCHITECTURE.md` for where this crate stands in hoist.
#![warn(missing_docs)]

mod client;
mod error;
mod host;
mod load;
mod platform;
mod transport;
mod version;

pub use client::DockerClient;
pub use error::{Error, Result};
pub use load::LoadReport;
pub use version::{Component, DaemonVersion};
