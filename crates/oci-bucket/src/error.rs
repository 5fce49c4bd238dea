//! The crate's error type, and how object-store failures become `oci_store` errors.

/// What can go wrong opening a bucket or talking to it.
///
/// Trait methods return [`oci_store::Error`]; this type is what [`open_url`](crate::open_url)
/// returns, and it converts into `oci_store::Error` (as a backend failure) everywhere else.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A storage URL this crate cannot open.
    #[error("storage url {url:?} is not supported: {reason}")]
    UnsupportedUrl {
        /// The URL as given.
        url: String,
        /// Why.
        reason: String,
    },
    /// The object store could not be configured from the URL and the environment.
    #[error("cannot configure storage {url}")]
    Config {
        /// The URL as given.
        url: String,
        /// The builder's failure.
        source: object_store::Error,
    },
    /// The probe at start-up failed: the bucket does not exist, the credentials were refused,
    /// or the endpoint cannot be reached.
    #[error("storage {url} is not usable: {hint}")]
    Probe {
        /// The URL as given.
        url: String,
        /// The likely cause, in words.
        hint: &'static str,
        /// The store's failure.
        source: object_store::Error,
    },
    /// A request to the object store failed.
    #[error("{action} {path} in {store}")]
    Object {
        /// What was being done ("reading", "writing").
        action: &'static str,
        /// The object's path.
        path: String,
        /// The store (its display name).
        store: String,
        /// The store's failure.
        source: object_store::Error,
    },
    /// An object of hoist's own layout that cannot be read (a link, a tag, an upload's state).
    #[error("object {path} in {store} is corrupt: {reason}")]
    Corrupt {
        /// The object's path.
        path: String,
        /// The store.
        store: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The garbage collection stopped before removing anything more: something it read could
    /// not be trusted (a linked manifest missing or unreadable), or it ran too long.
    #[error("garbage collection of {store} stopped at {path}: {reason}")]
    Ambiguous {
        /// The object's path.
        path: String,
        /// The store.
        store: String,
        /// What was wrong.
        reason: String,
    },
}

/// The result type of `oci-bucket`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for oci_store::Error {
    fn from(error: Error) -> Self {
        let backend = match &error {
            Error::Object { store, .. }
            | Error::Corrupt { store, .. }
            | Error::Ambiguous { store, .. } => store.clone(),
            Error::UnsupportedUrl { url, .. }
            | Error::Config { url, .. }
            | Error::Probe { url, .. } => url.clone(),
        };
        // Refusals by the bucket are access errors, not outages: a client should not retry.
        if let Error::Object {
            source:
                object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. },
            ..
        } = &error
        {
            return Self::Denied {
                message: error.to_string(),
            };
        }
        Self::Backend {
            backend,
            message: error.to_string(),
            source: Some(Box::new(error)),
        }
    }
}
