//! The error type of `oci-registry`'s set-up (certificates, credential files). Requests return
//! `oci_store::Error`, like every store.

use std::path::PathBuf;

/// What went wrong building a client or reading credentials.
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
    /// A configuration value or file that cannot be used.
    #[error("{what}: {reason}")]
    Config {
        /// What was refused, naming the file or value.
        what: String,
        /// Why.
        reason: String,
    },
}

/// The result type of `oci-registry`'s set-up.
pub type Result<T, E = Error> = std::result::Result<T, E>;
