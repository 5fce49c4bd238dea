//! The one error type of `oci-unpack`.

use std::path::PathBuf;

use oci_types::Digest;

/// What can go wrong while taking an image's layers apart.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A store failed, or a layer's content is invalid (digest, `diff_id`, a malformed or
    /// hostile entry, a limit); the store's error says which, with the layer and entry.
    #[error("{context}")]
    Store {
        /// What was being done.
        context: String,
        /// The store's error.
        #[source]
        source: oci_store::Error,
    },
    /// An entry of a layer could not be applied to the directory.
    #[error("layer {layer}, entry {entry:?}: {message}")]
    Apply {
        /// The layer.
        layer: Digest,
        /// The entry's path in the image.
        entry: String,
        /// What failed.
        message: String,
        /// The operating system's error, when there was one.
        #[source]
        source: Option<std::io::Error>,
    },
    /// The target directory or an output file cannot be used.
    #[error("{}: {message}", path.display())]
    Target {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        message: String,
        /// The operating system's error.
        #[source]
        source: Option<std::io::Error>,
    },
    /// The writer given for the output failed.
    #[error("cannot write the output")]
    Output {
        /// The writer's error.
        #[source]
        source: std::io::Error,
    },
    /// The image cannot be unpacked as it is (a config without `diff_ids` for every layer,
    /// a limit on the whole image reached).
    #[error("{message}")]
    Invalid {
        /// What is wrong.
        message: String,
    },
}

impl Error {
    pub(crate) fn store(context: impl Into<String>, source: oci_store::Error) -> Self {
        Self::Store {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn target(path: impl Into<PathBuf>, message: &str, source: std::io::Error) -> Self {
        Self::Target {
            path: path.into(),
            message: message.to_owned(),
            source: Some(source),
        }
    }

    /// The store's error behind this one, if any (for its distribution-spec code).
    pub fn store_error(&self) -> Option<&oci_store::Error> {
        match self {
            Self::Store { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
