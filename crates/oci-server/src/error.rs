//! The error type of `oci-server`'s set-up (binding, TLS and auth files). Errors of requests are
//! answered on the wire, never returned.

use std::net::SocketAddr;
use std::path::PathBuf;

/// What went wrong setting a server up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read.
    #[error("{context} {}", path.display())]
    Io {
        /// What was being done.
        context: &'static str,
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// A configuration file or value that cannot be used.
    #[error("{what}: {reason}")]
    Config {
        /// What was refused (naming the file).
        what: String,
        /// Why.
        reason: String,
    },
    /// The address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The failure.
        source: std::io::Error,
    },
}

/// The result type of `oci-server`'s set-up.
pub type Result<T, E = Error> = std::result::Result<T, E>;
