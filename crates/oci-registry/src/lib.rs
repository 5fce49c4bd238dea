//! An OCI distribution-spec registry client as an [`OciInterface`](oci_store::OciInterface), on
//! hyper and rustls.
//!
//! [`RegistryClient`] speaks to one registry: HTTP/1.1 and HTTP/2 by ALPN, system and webpki
//! roots plus any CA you give it, plain HTTP for `localhost`, `127.0.0.0/8` and `[::1]` (or when
//! told). It authenticates the way registries expect (anonymous, basic, or bearer tokens through
//! the challenge flow, cached per scope until they expire, with OAuth2 identity tokens), taking
//! credentials from docker's `config.json` (including `credHelpers` and `credsStore` programs)
//! and the containers `auth.json`. Bodies stream both ways: downloads are verified as they
//! stream, uploads counted and their digest left to the registry, which checks it when it
//! commits the upload (a mismatch is `DIGEST_INVALID`, nothing stored); idempotent requests
//! are retried with backoff on connection errors, 408, 429 (honouring `Retry-After`) and 5xx; a
//! broken blob download resumes with `Range`; redirects of blob downloads are followed without
//! sending credentials to another host (nor answering its challenge), or over plain HTTP to an
//! HTTPS registry's own; listings follow `Link`; referrers fall back to the tag schema on
//! registries without the API.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use oci_registry::RegistryClient;
//! use oci_store::OciInterface;
//!
//! let client = RegistryClient::builder("ghcr.io").build().await?;
//! let repo = "org/app".parse()?;
//! let manifest = client.resolve_tag(&repo, &"1.2".parse()?).await?;
//! println!("{}", manifest.digest);
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod auth;
mod builder;
mod client;
mod clock;
mod docker_config;
mod download;
mod error;
mod interface;
mod listing;
mod proxy;
mod referrers;
mod response;
mod send_file;
mod transport;
mod trust;
mod upload;

pub use auth::Credentials;
pub use builder::RegistryClientBuilder;
pub use client::RegistryClient;
pub use clock::Clock;
pub use docker_config::{DockerConfig, credential_files, credentials_from_files};
pub use error::{Error, Result};
pub use transport::RetryPolicy;

/// Entry points of the fuzz targets (`fuzz/`) into this crate's parsers of what registries
/// send; with the `fuzzing` feature only, and not an API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    /// Reads a `WWW-Authenticate` header as the client does; whether it is a challenge.
    pub fn www_authenticate(header: &str) -> bool {
        crate::auth::parse_challenge(header).is_some()
    }

    /// Reads a token endpoint's answer as the client does. Where it gives a token: how long
    /// the client keeps it, and whether it is good right after it came.
    pub fn token_response(body: &[u8]) -> Option<(std::time::Duration, bool)> {
        let answer: crate::auth::TokenResponse = serde_json::from_slice(body).ok()?;
        let now = std::time::Instant::now();
        let (token, _) = answer.into_cached(now)?;
        Some((token.expires.duration_since(now), token.fresh(now)))
    }
}
