//! The one error type of `oci-archive`'s own operations (opening, finishing). `OciInterface`
//! methods return `oci_store::Error` like every store.

use std::path::PathBuf;

/// What went wrong opening, reading or writing an archive.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The archive, or an entry of it, is not what its format requires, or breaks a limit.
    #[error("{}{}: {reason}", archive.display(), entry.as_deref().map(|e| format!(", entry {e:?}")).unwrap_or_default())]
    Invalid {
        /// The archive.
        archive: PathBuf,
        /// The entry at fault, when one is.
        entry: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// An I/O failure on the archive or a temporary file.
    #[error("{context} {}", path.display())]
    Io {
        /// What was being done.
        context: &'static str,
        /// The file.
        path: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// A failure of a store operation (reading what is written into an archive).
    #[error(transparent)]
    Store(#[from] oci_store::Error),
}

impl Error {
    pub(crate) fn invalid(
        archive: impl Into<PathBuf>,
        entry: Option<&str>,
        reason: impl Into<String>,
    ) -> Self {
        Self::Invalid {
            archive: archive.into(),
            entry: entry.map(str::to_owned),
            reason: reason.into(),
        }
    }

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
            invalid @ Error::Invalid { .. } => oci_store::Error::Backend {
                backend: "archive".to_owned(),
                message: invalid.to_string(),
                source: None,
            },
        }
    }
}

/// The result type of `oci-archive`'s own operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
