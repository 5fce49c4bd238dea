//! The error type of `oci-docker`.

use std::io;
use std::time::Duration;

/// What went wrong talking to a Docker daemon.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The daemon's address (`DOCKER_HOST`, or the one given to [`DockerClient::new`]) cannot be
    /// used.
    ///
    /// [`DockerClient::new`]: crate::DockerClient::new
    #[error("Docker host {host:?} cannot be used: {reason}")]
    Host {
        /// The address as given.
        host: String,
        /// Why it was refused.
        reason: String,
    },
    /// The daemon's socket could not be reached.
    #[error(
        "cannot connect to the Docker daemon at {host} (is the daemon running, and may this user use its socket?)"
    )]
    Connect {
        /// The daemon's address.
        host: String,
        /// The failure of the connection.
        #[source]
        source: io::Error,
    },
    /// The connection failed while a request was sent or its answer read.
    #[error("{request} to the Docker daemon at {host} failed")]
    Http {
        /// The daemon's address.
        host: String,
        /// The request, such as `POST /v1.41/images/load`.
        request: String,
        /// The transport's failure.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The daemon refused a request, or reported a failure in its answer: `message` is what it
    /// said.
    ///
    /// `status` is the HTTP status of the answer; a failure reported inside a streamed answer
    /// (as Docker's `POST /images/load` does) comes with that answer's status, normally 200.
    #[error("the Docker daemon reported: {message} (HTTP {status})")]
    Daemon {
        /// The HTTP status of the answer.
        status: u16,
        /// What the daemon said, or the start of its answer when it said nothing readable.
        message: String,
    },
    /// The daemon's answer could not be read: not JSON where JSON was expected, a missing
    /// field, or beyond a limit.
    #[error("cannot read the Docker daemon's answer to {request}: {reason}")]
    Protocol {
        /// The request, such as `GET /version`.
        request: String,
        /// What was wrong with the answer.
        reason: String,
    },
    /// The daemon speaks an Engine API older than this client needs.
    #[error(
        "the Docker daemon speaks Engine API {daemon}, older than the {minimum} this client needs"
    )]
    ApiTooOld {
        /// The daemon's API version (its `/version`'s `ApiVersion`).
        daemon: String,
        /// The oldest API version this client speaks.
        minimum: String,
    },
    /// An image name or id that cannot be put in a request: empty, or with characters or path
    /// components that no image name has.
    #[error("{name:?} is not an image name or id: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The daemon did not answer a request in time.
    #[error("the Docker daemon at {host} did not answer {request} within {} s", after.as_secs())]
    Timeout {
        /// The daemon's address.
        host: String,
        /// The request.
        request: String,
        /// How long it was given.
        after: Duration,
    },
    /// The body given to [`DockerClient::load`] failed, so the request was aborted (the daemon
    /// saw a broken request, never the end of a truncated archive).
    ///
    /// [`DockerClient::load`]: crate::DockerClient::load
    #[error("the image sent to the Docker daemon failed, so its load was aborted")]
    Body(#[source] io::Error),
}

/// The result type of `oci-docker`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
