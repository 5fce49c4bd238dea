//! Exit codes: what kind of failure ended a command, read off the error's cause chain.
//!
//! The codes are documented in `hoist --help` and the README; scripts rely on them, so they
//! never change meaning.

use std::error::Error as StdError;
use std::fmt;
use std::io::ErrorKind;

use oci_store::ErrorCode;

/// How a command ended, as an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// 1: anything not listed below.
    Other,
    /// 2: the command line cannot be run as typed (clap uses 2 for its own usage errors).
    Usage,
    /// 3: a manifest, blob or repository is not there, or an index has no image for the
    /// platform asked for.
    NotFound,
    /// 4: the registry refused the credentials, or access with them.
    Auth,
    /// 5: the registry could not be reached, or failed on its side.
    Network,
    /// 6: content did not match its digest or size, or a check found problems.
    Verification,
}

impl Failure {
    /// The process exit code.
    pub(crate) fn code(self) -> u8 {
        match self {
            Self::Other => 1,
            Self::Usage => 2,
            Self::NotFound => 3,
            Self::Auth => 4,
            Self::Network => 5,
            Self::Verification => 6,
        }
    }
}

/// A failure that hoist itself detected, with its kind.
#[derive(Debug)]
pub(crate) struct Failed {
    kind: Failure,
    message: String,
}

impl Failed {
    pub(crate) fn new(kind: Failure, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for Failed {}

/// Stdout was closed by its reader (`hoist ls | head -1`): not a failure.
#[derive(Debug)]
pub(crate) struct StdoutClosed;

impl fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stdout was closed")
    }
}

impl StdError for StdoutClosed {}

/// What to say after the error of `command` (one that takes the limits on layers as flags)
/// when a limit stopped it: the error names the limit, not the flag that moves it.
pub(crate) fn limit_hint(error: &anyhow::Error, command: &str) -> Option<String> {
    let stopped_by_a_limit = error.chain().any(|cause| {
        let text = cause.to_string();
        text.contains("(the limit") || text.contains("over the limit of")
    });
    stopped_by_a_limit.then(|| {
        format!(
            "a limit on layers stopped this; most are flags of this command (--max-layer-size, --max-path-depth and more: see `hoist {command} --help`, Limits)"
        )
    })
}

/// Whether the error only says that the reader of stdout went away.
pub(crate) fn is_stdout_closed(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.is::<StdoutClosed>())
}

/// The kind of failure an error reports: the first cause, from the outside in, that says.
pub(crate) fn classify(error: &anyhow::Error) -> Failure {
    error
        .chain()
        .find_map(classify_one)
        .unwrap_or(Failure::Other)
}

fn classify_one(cause: &(dyn StdError + 'static)) -> Option<Failure> {
    if let Some(failed) = cause.downcast_ref::<Failed>() {
        return Some(failed.kind);
    }
    if let Some(error) = cause.downcast_ref::<oci_build::Error>() {
        return match error {
            oci_build::Error::NoMatchingPlatform { .. } => Some(Failure::NotFound),
            // A store's error is the next cause in the chain.
            oci_build::Error::Store { .. } => None,
            _ => Some(Failure::Other),
        };
    }
    if let Some(error) = cause.downcast_ref::<oci_store::Error>() {
        return store_failure(error);
    }
    if let Some(error) = cause.downcast_ref::<oci_docker::Error>() {
        return match error {
            oci_docker::Error::Connect { .. }
            | oci_docker::Error::Http { .. }
            | oci_docker::Error::Timeout { .. } => Some(Failure::Network),
            // The body's own failure is the next cause.
            oci_docker::Error::Body(_) => None,
            _ => Some(Failure::Other),
        };
    }
    if cause.is::<oci_registry::Error>() || cause.is::<oci_layout::Error>() {
        // Set-up failures (certificates, credential files, layout files): their causes may
        // still be I/O errors of the network kinds below.
        return None;
    }
    if let Some(error) = cause.downcast_ref::<std::io::Error>()
        && is_network_kind(error.kind())
    {
        return Some(Failure::Network);
    }
    None
}

fn store_failure(error: &oci_store::Error) -> Option<Failure> {
    match error {
        // A name that hoist or a store could not parse: nothing about content or access.
        oci_store::Error::InvalidInput { .. } => return Some(Failure::Other),
        oci_store::Error::Unavailable { .. } => return Some(Failure::Network),
        oci_store::Error::Remote { status, .. } if *status >= 500 || *status == 408 => {
            return Some(Failure::Network);
        }
        // A store's own files: the operating system's error, whatever its kind.
        oci_store::Error::Io { .. } => return Some(Failure::Other),
        // Its source, if any, says more.
        oci_store::Error::Backend { .. } => return None,
        _ => {}
    }
    Some(match error.code() {
        Some(ErrorCode::BlobUnknown | ErrorCode::ManifestUnknown | ErrorCode::NameUnknown) => {
            Failure::NotFound
        }
        Some(ErrorCode::Unauthorized | ErrorCode::Denied) => Failure::Auth,
        Some(ErrorCode::DigestInvalid | ErrorCode::SizeInvalid) => Failure::Verification,
        Some(ErrorCode::TooManyRequests) => Failure::Network,
        _ => Failure::Other,
    })
}

fn is_network_kind(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::ConnectionRefused
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::NotConnected
            | ErrorKind::AddrNotAvailable
            | ErrorKind::TimedOut
            | ErrorKind::HostUnreachable
            | ErrorKind::NetworkUnreachable
            | ErrorKind::NetworkDown
    )
}

#[cfg(test)]
mod tests {
    use anyhow::Context;
    use oci_types::{Digest, Repository};

    use super::*;

    fn repo() -> Repository {
        Repository::parse("app").unwrap()
    }

    fn digest() -> Digest {
        Digest::sha256(b"x")
    }

    fn wrapped(error: oci_store::Error) -> anyhow::Error {
        // As the copy engine and the commands wrap store errors.
        anyhow::Error::new(oci_build::Error::Store {
            context: "copying".to_owned(),
            source: error,
        })
        .context("cannot copy a to b")
    }

    #[track_caller]
    fn check(error: oci_store::Error, expected: Failure) {
        let text = error.to_string();
        assert_eq!(classify(&wrapped(error)), expected, "{text}");
    }

    #[test]
    fn store_errors_by_code() {
        check(
            oci_store::Error::ManifestUnknown {
                repo: repo(),
                reference: "v1".to_owned(),
            },
            Failure::NotFound,
        );
        check(
            oci_store::Error::BlobUnknown {
                repo: repo(),
                digest: digest(),
            },
            Failure::NotFound,
        );
        check(
            oci_store::Error::NameUnknown { repo: repo() },
            Failure::NotFound,
        );
        check(
            oci_store::Error::Unauthorized {
                message: "no".to_owned(),
            },
            Failure::Auth,
        );
        check(
            oci_store::Error::Denied {
                message: "no".to_owned(),
            },
            Failure::Auth,
        );
        check(
            oci_store::Error::DigestInvalid {
                what: "blob".to_owned(),
                expected: digest(),
                actual: Digest::sha256(b"y"),
            },
            Failure::Verification,
        );
        check(
            oci_store::Error::SizeInvalid {
                what: "blob".to_owned(),
                digest: digest(),
                expected: 2,
                actual: 1,
            },
            Failure::Verification,
        );
        check(
            oci_store::Error::ManifestInvalid {
                repo: repo(),
                reason: "bad".to_owned(),
            },
            Failure::Other,
        );
    }

    #[test]
    fn unavailable_registries_and_broken_connections_are_network_failures() {
        check(
            oci_store::Error::Remote {
                status: 503,
                code: None,
                message: "down".to_owned(),
                detail: None,
            },
            Failure::Network,
        );
        check(
            oci_store::Error::TooManyRequests { retry_after: None },
            Failure::Network,
        );
        // What the registry client makes of a refused connection.
        let refused = std::io::Error::from(ErrorKind::ConnectionRefused);
        check(
            oci_store::Error::unavailable("GET /v2/ on registry x", refused),
            Failure::Network,
        );
        // A file of a store that cannot be read is not the network, whatever its kind says.
        check(
            oci_store::Error::io("reading blob", std::io::Error::from_raw_os_error(13)),
            Failure::Other,
        );
        check(
            oci_store::Error::io("reading blob", std::io::Error::from(ErrorKind::TimedOut)),
            Failure::Other,
        );
        let daemon = anyhow::Error::new(oci_docker::Error::Connect {
            host: "unix:///var/run/docker.sock".to_owned(),
            source: std::io::Error::from(ErrorKind::NotFound),
        });
        assert_eq!(classify(&daemon), Failure::Network);
        let plain = anyhow::Error::new(std::io::Error::from(ErrorKind::TimedOut)).context("x");
        assert_eq!(classify(&plain), Failure::Network);
    }

    #[test]
    fn hoist_and_copy_failures() {
        let mismatch = anyhow::Error::new(Failed::new(Failure::Verification, "digest differs"))
            .context("cannot copy");
        assert_eq!(classify(&mismatch), Failure::Verification);
        let platform = anyhow::Error::new(oci_build::Error::NoMatchingPlatform {
            wanted: "linux/s390x".to_owned(),
            repo: repo(),
            digest: digest(),
            available: Vec::new(),
        });
        assert_eq!(classify(&platform), Failure::NotFound);
        let other: anyhow::Result<()> = Err(anyhow::anyhow!("something")).context("outer");
        assert_eq!(classify(&other.unwrap_err()), Failure::Other);
        let closed = anyhow::Error::new(StdoutClosed).context("writing the manifest");
        assert!(is_stdout_closed(&closed));
        assert_eq!(
            [
                Failure::Other,
                Failure::Usage,
                Failure::NotFound,
                Failure::Auth,
                Failure::Network,
                Failure::Verification
            ]
            .map(Failure::code),
            [1, 2, 3, 4, 5, 6]
        );
    }
}
