//! Any [`OciInterface`](oci_store::OciInterface) served as an OCI distribution-spec registry.
//!
//! `oci-server` knows stores only as `Arc<dyn OciInterface>`: the same server serves memory, an
//! image layout directory, a cache in front of another registry. It answers every endpoint of
//! the distribution-spec (end-1 to end-14, plus `_catalog`), streams blob bodies both ways,
//! answers errors in the spec's JSON with the status their code calls for, and offers basic auth
//! (htpasswd, bcrypt), bearer tokens through a built-in token endpoint, an access policy
//! ([`AccessPolicy`]: who may pull, push or delete which repositories), TLS through rustls,
//! read-only mode, limits, and graceful shutdown. Requests are logged through `tracing`
//! (target `oci_server::access`).
//!
//! ```
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use oci_server::{RegistryServer, ServerOptions};
//! use oci_store::MemoryStore;
//!
//! let server = RegistryServer::new(Arc::new(MemoryStore::new()))
//!     .with_options(ServerOptions::default().with_deletes(false));
//! let listening = server.bind("127.0.0.1:0".parse().unwrap()).await?;
//! println!("serving on {}", listening.url());
//! listening.shutdown().await;
//! # Ok::<(), oci_server::Error>(())
//! # }).unwrap();
//! ```
#![warn(missing_docs)]

mod auth;
mod body;
mod conn;
mod error;
mod handler;
mod policy;
mod route;
mod serve;
mod wire;

pub use auth::{
    Auth, AuthConfig, DEFAULT_REFRESH_LIFETIME, Htpasswd, MAX_BCRYPT_COST,
    MAX_CONCURRENT_TOKEN_FORMS, MAX_TOKEN_LIFETIME, MAX_TOKEN_REQUEST_SIZE, TOKEN_SERVICE,
};
pub use error::{Error, Result};
pub use handler::MAX_LISTING_PAGE;
pub use policy::{AccessPolicy, Action, Actions, MAX_POLICY_FILE_SIZE, PolicyFormat};
pub use serve::{Listening, MAX_TIME_LIMIT, RegistryServer, ServerOptions};

/// Entry points of the fuzz targets (`fuzz/`) into this crate's parsers of requests; with the
/// `fuzzing` feature only, and not an API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    /// Reads a request path as the router does; whether it is an endpoint.
    pub fn request_path(path: &str) -> bool {
        crate::route::parse(path).is_some()
    }

    /// Reads a `Range` header for a blob of `size` bytes and a `Content-Range` header of a
    /// chunk, as the handlers do; the range, if one was read, within the blob.
    pub fn ranges(range: &[u8], content_range: &[u8], size: u64) -> Option<(u64, u64)> {
        crate::handler::fuzzing_ranges(range, content_range, size)
    }
}
