//! The error type of `oci-layout`'s own operations (opening, `gc`, `fsck`, `find_layout`).
//! `OciInterface` methods return `oci_store::Error` like every store.

use std::path::PathBuf;

/// What went wrong opening or maintaining a layout.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file of the layout is missing, unreadable as JSON, or breaks the image-layout spec.
    #[error("{path}: {reason}")]
    InvalidLayout {
        /// The file or directory at fault.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A path or reference given by the user that cannot be read.
    #[error("invalid layout path {input:?}: {reason}")]
    InvalidPath {
        /// What was given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An I/O failure on a file of the layout.
    #[error("{context} {}", path.display())]
    Io {
        /// What was being done.
        context: &'static str,
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// A failure of a store operation.
    #[error(transparent)]
    Store(#[from] oci_store::Error),
}

impl Error {
    pub(crate) fn io(
        context: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            context,
            path: path.into(),
            source,
        }
    }
}

impl From<Error> for oci_store::Error {
    fn from(error: Error) -> Self {
        match error {
            Error::Store(inner) => inner,
            Error::Io {
                context,
                path,
                source,
            } => oci_store::Error::io(format!("{context} {}", path.display()), source),
            other => oci_store::Error::Backend {
                backend: "oci-layout".to_owned(),
                message: other.to_string(),
                source: Some(Box::new(other)),
            },
        }
    }
}

/// The result type of `oci-layout`'s own operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
