//! The one error type of `oci-artifact`.

use std::path::PathBuf;

/// What can go wrong with artifacts.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A store failed, or content did not match its digest; the store's error says which.
    #[error("{context}: {source}")]
    Store {
        /// What was being done.
        context: String,
        /// The store's error.
        #[source]
        source: oci_store::Error,
    },
    /// A file to push, or the directory to pull into, cannot be used.
    #[error("{}: {message}", path.display())]
    File {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        message: String,
        /// The operating system's error, when there was one.
        #[source]
        source: Option<std::io::Error>,
    },
    /// A layer's title is not a file name that may be written inside the target directory.
    #[error("layer {digest} is titled {title:?}, which {reason}")]
    UnsafeTitle {
        /// The layer.
        digest: oci_types::Digest,
        /// Its `org.opencontainers.image.title`.
        title: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The manifest is not one an artifact can be read from (an index, or not JSON).
    #[error("{0}")]
    Manifest(String),
}

impl Error {
    pub(crate) fn store(context: impl Into<String>, source: oci_store::Error) -> Self {
        Self::Store {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn file(
        path: impl Into<PathBuf>,
        message: impl Into<String>,
        source: Option<std::io::Error>,
    ) -> Self {
        Self::File {
            path: path.into(),
            message: message.into(),
            source,
        }
    }
}

/// The result of this crate's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
