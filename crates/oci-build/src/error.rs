//! The one error type of `oci-build`.

use std::path::{Path, PathBuf};

use oci_types::{Digest, Repository};

/// What can go wrong while moving or selecting images.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A store refused or failed an operation; `context` says which and on what.
    #[error("{context}")]
    Store {
        /// What was being done, naming the repository and digest or tag.
        context: String,
        /// The store's error, with its distribution-spec code.
        #[source]
        source: oci_store::Error,
    },
    /// A manifest or config that cannot be read as what its media type says.
    #[error("{what} {digest} in {repo} is malformed")]
    Malformed {
        /// "manifest", "config", "schema 1 manifest"...
        what: &'static str,
        /// Where it was read from.
        repo: Repository,
        /// Its digest.
        digest: Digest,
        /// The parse failure.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// No child of an index runs on the wanted platform.
    #[error(
        "no image for platform {wanted} in index {digest} of {repo} (it has: {})",
        available_list(available)
    )]
    NoMatchingPlatform {
        /// The platform asked for (as `os/arch[/variant]`).
        wanted: String,
        /// The index's repository.
        repo: Repository,
        /// The index's digest.
        digest: Digest,
        /// The platforms the index offers.
        available: Vec<String>,
    },
    /// A manifest of a kind that cannot be copied or selected from (an unknown artifact).
    #[error("{repo}@{digest} has media type {media_type}, which hoist cannot {action}")]
    UnsupportedManifest {
        /// Its repository.
        repo: Repository,
        /// Its digest.
        digest: Digest,
        /// The media type it was served with.
        media_type: String,
        /// What was attempted ("copy", "select a platform from").
        action: &'static str,
    },
    /// A file, directory or tar given as layer content that cannot be used.
    #[error("{}: {message}", path.display())]
    Input {
        /// The path on disk (or in the image, for a bad entry path).
        path: PathBuf,
        /// What is wrong with it.
        message: String,
        /// The I/O failure, when there was one.
        #[source]
        source: Option<std::io::Error>,
    },
    /// A build or mutation that cannot be done as asked (a bad option, an image that does not
    /// fit the operation).
    #[error("{message}")]
    Invalid {
        /// What is wrong, naming the image or option.
        message: String,
    },
    /// Index nesting deeper than any real image (a cycle, or a hostile source).
    #[error("manifests nested deeper than {limit} levels below {repo}@{digest}")]
    TooDeep {
        /// The repository.
        repo: Repository,
        /// The manifest at the limit.
        digest: Digest,
        /// The limit.
        limit: usize,
    },
}

fn available_list(platforms: &[String]) -> String {
    if platforms.is_empty() {
        return "no platforms".to_owned();
    }
    platforms.join(", ")
}

impl Error {
    /// Wraps a store error with what was being done.
    pub(crate) fn store(context: impl Into<String>, source: oci_store::Error) -> Self {
        Self::Store {
            context: context.into(),
            source,
        }
    }

    /// Layer content at `path` that cannot be used because of an I/O failure.
    pub(crate) fn input(path: &Path, message: &str, source: std::io::Error) -> Self {
        Self::Input {
            path: path.to_path_buf(),
            message: message.to_owned(),
            source: Some(source),
        }
    }

    /// Layer content at `path` that cannot be used.
    pub(crate) fn input_message(path: &Path, message: &str) -> Self {
        Self::Input {
            path: path.to_path_buf(),
            message: message.to_owned(),
            source: None,
        }
    }

    /// A build or mutation that cannot be done as asked.
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid {
            message: message.into(),
        }
    }

    /// The distribution-spec code behind this error, if a store gave one.
    pub fn store_error(&self) -> Option<&oci_store::Error> {
        match self {
            Self::Store { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
