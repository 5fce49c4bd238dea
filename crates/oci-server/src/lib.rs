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
    Auth, AuthConfig, DEFAULT_REFRESH_LIFETIME, Htpasswd, MAX_TOKEN_REQUEST_SIZE, TOKEN_SERVICE,
};
pub use error::{Error, Result};
pub use policy::{AccessPolicy, Action, Actions, MAX_POLICY_FILE_SIZE, PolicyFormat};
pub use serve::{Listening, RegistryServer, ServerOptions};
