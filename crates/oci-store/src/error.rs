//! The error type shared by every `OciInterface`: the distribution-spec error codes, with the
//! context that says what was wrong and where.

use std::fmt;
use std::time::Duration;

use oci_types::{Digest, Repository};

/// An error code of the distribution-spec (code-1 to code-14), plus `RANGE_INVALID`, which the
/// Docker registry and the Go implementations use for unsatisfiable ranges and resume offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `BLOB_UNKNOWN`: the blob is not in the repository.
    BlobUnknown,
    /// `BLOB_UPLOAD_INVALID`: the upload is in a state that does not allow what was asked.
    BlobUploadInvalid,
    /// `BLOB_UPLOAD_UNKNOWN`: no upload with that id.
    BlobUploadUnknown,
    /// `DIGEST_INVALID`: content does not match its digest, or a digest is malformed.
    DigestInvalid,
    /// `MANIFEST_BLOB_UNKNOWN`: a manifest references a blob or manifest the repository lacks.
    ManifestBlobUnknown,
    /// `MANIFEST_INVALID`: the manifest cannot be accepted as it is.
    ManifestInvalid,
    /// `MANIFEST_UNKNOWN`: no manifest with that digest or tag.
    ManifestUnknown,
    /// `NAME_INVALID`: a repository name outside the grammar.
    NameInvalid,
    /// `NAME_UNKNOWN`: the repository does not exist.
    NameUnknown,
    /// `SIZE_INVALID`: content length differs from the size stated.
    SizeInvalid,
    /// `UNAUTHORIZED`: authentication is required.
    Unauthorized,
    /// `DENIED`: access to the resource is denied.
    Denied,
    /// `UNSUPPORTED`: the store does not support the operation.
    Unsupported,
    /// `TOOMANYREQUESTS`: rate limited.
    TooManyRequests,
    /// `RANGE_INVALID`: a byte range or resume offset that cannot be served.
    RangeInvalid,
}

impl ErrorCode {
    /// Every code, for tables and round-trip tests.
    pub const ALL: [Self; 15] = [
        Self::BlobUnknown,
        Self::BlobUploadInvalid,
        Self::BlobUploadUnknown,
        Self::DigestInvalid,
        Self::ManifestBlobUnknown,
        Self::ManifestInvalid,
        Self::ManifestUnknown,
        Self::NameInvalid,
        Self::NameUnknown,
        Self::SizeInvalid,
        Self::Unauthorized,
        Self::Denied,
        Self::Unsupported,
        Self::TooManyRequests,
        Self::RangeInvalid,
    ];

    /// The code as it appears on the wire (`"BLOB_UNKNOWN"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BlobUnknown => "BLOB_UNKNOWN",
            Self::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            Self::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            Self::DigestInvalid => "DIGEST_INVALID",
            Self::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            Self::ManifestInvalid => "MANIFEST_INVALID",
            Self::ManifestUnknown => "MANIFEST_UNKNOWN",
            Self::NameInvalid => "NAME_INVALID",
            Self::NameUnknown => "NAME_UNKNOWN",
            Self::SizeInvalid => "SIZE_INVALID",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::Denied => "DENIED",
            Self::Unsupported => "UNSUPPORTED",
            Self::TooManyRequests => "TOOMANYREQUESTS",
            Self::RangeInvalid => "RANGE_INVALID",
        }
    }

    /// Reads a wire code; `None` for codes this enum does not model.
    pub fn from_wire(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == code)
    }

    /// The HTTP status the distribution-spec (and the Go implementations where it is silent)
    /// gives this code.
    pub fn http_status(self) -> u16 {
        match self {
            Self::BlobUnknown
            | Self::BlobUploadUnknown
            | Self::ManifestBlobUnknown
            | Self::ManifestUnknown
            | Self::NameUnknown => 404,
            Self::BlobUploadInvalid | Self::RangeInvalid => 416,
            Self::DigestInvalid
            | Self::ManifestInvalid
            | Self::NameInvalid
            | Self::SizeInvalid
            | Self::Unsupported => 400,
            Self::Unauthorized => 401,
            Self::Denied => 403,
            Self::TooManyRequests => 429,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What went wrong in an [`OciInterface`](crate::OciInterface) call.
///
/// Every variant that corresponds to a distribution-spec condition reports it through
/// [`Error::code`]; match on the code, not the variant, when the error may have crossed the
/// wire (a client rebuilds the same code from the server's answer).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The blob is not in the repository.
    #[error("blob {digest} unknown in repository {repo}")]
    BlobUnknown {
        /// The repository asked.
        repo: Repository,
        /// The blob asked for.
        digest: Digest,
    },
    /// No upload with that id in the repository.
    #[error("upload {id:?} unknown in repository {repo}")]
    BlobUploadUnknown {
        /// The repository asked.
        repo: Repository,
        /// The upload id.
        id: String,
    },
    /// The upload cannot take what was asked of it.
    #[error("upload {id:?} in repository {repo} is invalid: {reason}")]
    BlobUploadInvalid {
        /// The repository asked.
        repo: Repository,
        /// The upload id.
        id: String,
        /// Why.
        reason: String,
    },
    /// Content does not hash to the digest it was given with.
    #[error("{what} content has digest {actual}, not the expected {expected}")]
    DigestInvalid {
        /// What was being checked ("blob", "manifest", "upload").
        what: String,
        /// The digest the content should have had.
        expected: Digest,
        /// The digest it has.
        actual: Digest,
    },
    /// Content has another length than the size it was given with.
    #[error("{what} {digest} has {actual} bytes, not the expected {expected}")]
    SizeInvalid {
        /// What was being checked.
        what: String,
        /// The digest of the content.
        digest: Digest,
        /// The size stated.
        expected: u64,
        /// The size seen (may be a lower bound when the stream was cut short).
        actual: u64,
    },
    /// No manifest with that digest or tag in the repository.
    #[error("manifest {reference} unknown in repository {repo}")]
    ManifestUnknown {
        /// The repository asked.
        repo: Repository,
        /// The tag or digest asked for.
        reference: String,
    },
    /// The manifest cannot be accepted.
    #[error("manifest invalid in repository {repo}: {reason}")]
    ManifestInvalid {
        /// The repository pushed to.
        repo: Repository,
        /// What is wrong with it.
        reason: String,
    },
    /// The manifest is larger than the store accepts.
    #[error(
        "manifest of {size} bytes pushed to repository {repo} is larger than the limit of {limit}"
    )]
    ManifestTooLarge {
        /// The repository pushed to.
        repo: Repository,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A manifest references content the repository lacks.
    #[error("manifest references {digest}, which is unknown in repository {repo}")]
    ManifestBlobUnknown {
        /// The repository pushed to.
        repo: Repository,
        /// The missing blob or manifest.
        digest: Digest,
    },
    /// A name (repository, tag, digest, id) that is not well formed.
    #[error("{source}")]
    InvalidInput {
        /// The code this maps to (`NAME_INVALID`, `DIGEST_INVALID`, `MANIFEST_INVALID`).
        code: ErrorCode,
        /// The parse failure, naming the input.
        source: oci_types::Error,
    },
    /// The repository does not exist.
    #[error("repository {repo} unknown")]
    NameUnknown {
        /// The repository asked.
        repo: Repository,
    },
    /// A byte range or resume offset that cannot be served.
    #[error("range invalid for {target}: {reason}")]
    RangeInvalid {
        /// The blob digest or upload id.
        target: String,
        /// Why, with the numbers.
        reason: String,
    },
    /// Authentication is required.
    #[error("unauthorized: {message}")]
    Unauthorized {
        /// What the store or registry said.
        message: String,
    },
    /// Access is denied.
    #[error("denied: {message}")]
    Denied {
        /// What was refused and why.
        message: String,
    },
    /// Rate limited.
    #[error("too many requests{}", retry_after.map(|d| format!(" (retry after {}s)", d.as_secs())).unwrap_or_default())]
    TooManyRequests {
        /// How long the server asked to wait.
        retry_after: Option<Duration>,
    },
    /// The store cannot do this at all.
    #[error("{operation} is not supported by {backend}")]
    Unsupported {
        /// The operation asked for.
        operation: &'static str,
        /// The store (its `Display`).
        backend: String,
    },
    /// An error answer from a remote registry that does not map onto a variant above.
    #[error("registry answered {status}{}: {message}", code.map(|c| format!(" {c}")).unwrap_or_default())]
    Remote {
        /// The HTTP status.
        status: u16,
        /// The distribution-spec code, when the body carried one this crate models.
        code: Option<ErrorCode>,
        /// The message (or the wire code, when it is one we do not model).
        message: String,
        /// The `detail` field of the wire error.
        detail: Option<serde_json::Value>,
    },
    /// The store could not be reached, or the connection to it failed: connecting, name
    /// resolution, TLS, a proxy's refusal, a connection reset or timed out mid-transfer. Says
    /// nothing about the content; the same request may succeed later.
    #[error("{context}")]
    Unavailable {
        /// What was being done ("GET /v2/ on registry.example").
        context: String,
        /// The transport's failure.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An I/O failure, with what was being done.
    #[error("{context}")]
    Io {
        /// What was being done ("reading blob sha256:… from /srv/oci").
        context: String,
        /// The failure.
        source: std::io::Error,
    },
    /// A layer's tar that cannot be read or applied as it is: a malformed or hostile entry,
    /// or a limit reached. Names the layer and, where there is one, the entry.
    #[error("layer {layer}{}: {reason}", entry.as_ref().map(|e| format!(", entry {e:?}")).unwrap_or_default())]
    LayerInvalid {
        /// The layer blob.
        layer: Digest,
        /// The entry's name as the tar gives it, when one is to blame.
        entry: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// A backend failure that has no distribution-spec code.
    #[error("{backend}: {message}")]
    Backend {
        /// The store.
        backend: String,
        /// What was being done.
        message: String,
        /// The failure.
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl Error {
    /// The distribution-spec code, or `None` for failures that have none (I/O, backend).
    pub fn code(&self) -> Option<ErrorCode> {
        Some(match self {
            Self::BlobUnknown { .. } => ErrorCode::BlobUnknown,
            Self::BlobUploadUnknown { .. } => ErrorCode::BlobUploadUnknown,
            Self::BlobUploadInvalid { .. } => ErrorCode::BlobUploadInvalid,
            Self::DigestInvalid { .. } => ErrorCode::DigestInvalid,
            Self::SizeInvalid { .. } => ErrorCode::SizeInvalid,
            Self::ManifestUnknown { .. } => ErrorCode::ManifestUnknown,
            Self::ManifestInvalid { .. } | Self::ManifestTooLarge { .. } => {
                ErrorCode::ManifestInvalid
            }
            Self::ManifestBlobUnknown { .. } => ErrorCode::ManifestBlobUnknown,
            Self::InvalidInput { code, .. } => *code,
            Self::NameUnknown { .. } => ErrorCode::NameUnknown,
            Self::RangeInvalid { .. } => ErrorCode::RangeInvalid,
            Self::Unauthorized { .. } => ErrorCode::Unauthorized,
            Self::Denied { .. } => ErrorCode::Denied,
            Self::TooManyRequests { .. } => ErrorCode::TooManyRequests,
            Self::Unsupported { .. } => ErrorCode::Unsupported,
            Self::Remote { code, .. } => return *code,
            Self::Io { .. }
            | Self::Unavailable { .. }
            | Self::Backend { .. }
            | Self::LayerInvalid { .. } => return None,
        })
    }

    /// The HTTP status a server answers this error with.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::ManifestTooLarge { .. } => 413,
            Self::Remote { status, .. } => *status,
            other => other.code().map_or(500, ErrorCode::http_status),
        }
    }

    /// Whether the failure says nothing about the content: the store could not be reached or
    /// failed on its own side ([`Error::Unavailable`], I/O, backend, 5xx, 408, rate limits). A
    /// cache may fall back to what it last saw; a client may retry.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Unavailable { .. }
            | Self::Io { .. }
            | Self::Backend { .. }
            | Self::TooManyRequests { .. } => true,
            Self::Remote { status, .. } => *status >= 500 || *status == 408,
            _ => false,
        }
    }

    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// An [`Error::Unavailable`]: `source` is the transport's failure.
    pub fn unavailable(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Unavailable {
            context: context.into(),
            source: source.into(),
        }
    }

    /// An [`Error::Unsupported`].
    pub fn unsupported(operation: &'static str, backend: &dyn fmt::Display) -> Self {
        Self::Unsupported {
            operation,
            backend: backend.to_string(),
        }
    }
}

impl From<oci_types::Error> for Error {
    fn from(source: oci_types::Error) -> Self {
        let code = match &source {
            oci_types::Error::Digest { .. } => ErrorCode::DigestInvalid,
            oci_types::Error::Repository { .. } | oci_types::Error::Reference { .. } => {
                ErrorCode::NameInvalid
            }
            _ => ErrorCode::ManifestInvalid,
        };
        Self::InvalidInput { code, source }
    }
}

impl From<Error> for std::io::Error {
    fn from(error: Error) -> Self {
        let kind = match error.code() {
            Some(ErrorCode::BlobUnknown | ErrorCode::ManifestUnknown | ErrorCode::NameUnknown) => {
                std::io::ErrorKind::NotFound
            }
            Some(ErrorCode::Unauthorized | ErrorCode::Denied) => {
                std::io::ErrorKind::PermissionDenied
            }
            Some(ErrorCode::DigestInvalid | ErrorCode::SizeInvalid) => {
                std::io::ErrorKind::InvalidData
            }
            _ => match &error {
                Error::Io { source, .. } => source.kind(),
                Error::Unavailable { .. } => std::io::ErrorKind::NotConnected,
                _ => std::io::ErrorKind::Other,
            },
        };
        Self::new(kind, error)
    }
}

/// The result type of `oci-store`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
