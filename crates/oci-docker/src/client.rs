//! [`DockerClient`]: the requests, on top of the transport.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, BodyStream, StreamBody};
use hyper::body::Frame;
use oci_types::Platform;
use serde::Deserialize;
use tokio::sync::OnceCell;

use crate::host::{self, Endpoint};
use crate::load::{LoadAnswer, LoadReport};
use crate::transport::{BoxError, MAX_ANSWER, Transport, daemon_error, empty, json, read_limited};
use crate::version::{ApiVersion, DaemonVersion, MINIMUM_API, VersionAnswer};
use crate::{Error, Result};

/// How long a request with a small answer (`/version`, `/info`, an image's inspection, a tag)
/// may take. Loads and saves have no limit as a whole: they move whole images, at the pace of
/// whoever produces or consumes them (but see [`STALL_TIMEOUT`]).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a load or a save may go without a byte moving before it fails: a daemon that took
/// the request and went silent, or stopped reading the archive. Once a load's archive is
/// sent, the daemon gets a second more for every 10 MiB of it, since it unpacks the layers
/// before it answers.
const STALL_TIMEOUT: Duration = Duration::from_secs(600);

/// The largest image inspection read (`GET /images/{name}/json`): it holds the image's whole
/// config, labels and all.
const MAX_INSPECT: usize = 4 << 20;

/// The longest image name or id taken.
const MAX_NAME: usize = 4096;

/// A client of one Docker daemon (or podman's Docker-compatible service), through its Engine
/// API.
///
/// Cheap to clone: clones share the daemon's address and the negotiated API version. Each
/// request opens a connection of its own, so requests may run concurrently from any task.
/// Every method needs a Tokio runtime with its time driver enabled.
#[derive(Clone, Debug)]
pub struct DockerClient {
    inner: Arc<Inner>,
    stall_timeout: Duration,
}

#[derive(Debug)]
struct Inner {
    transport: Transport,
    /// The daemon's version, read by the first request that needs the API version.
    version: OnceCell<DaemonVersion>,
}

impl DockerClient {
    /// A client of the daemon that `DOCKER_HOST` names, as the docker CLI reads it:
    /// `unix:///path/to/socket` or `tcp://host:port` (plain HTTP, port 2375 by default), and
    /// `unix:///var/run/docker.sock` when it is unset or empty.
    ///
    /// Docker contexts (`DOCKER_CONTEXT`, `docker context use`) are not read.
    ///
    /// # Errors
    ///
    /// [`Error::Host`] for an address this client cannot use, naming it and saying why:
    /// `https://`, `ssh://` and `npipe://` addresses, and a `tcp://` address with
    /// `DOCKER_TLS_VERIFY` or `DOCKER_TLS` set (TLS is not spoken).
    pub fn from_env() -> Result<Self> {
        let endpoint = host::from_env_values(
            std::env::var_os("DOCKER_HOST").as_deref(),
            std::env::var_os("DOCKER_TLS_VERIFY").as_deref(),
            std::env::var_os("DOCKER_TLS").as_deref(),
        )?;
        Ok(Self::with_endpoint(endpoint))
    }

    /// A client of the daemon at `host`: `unix:///path/to/socket` or `tcp://host:port`
    /// (plain HTTP, port 2375 by default; `http://host:port` is the same).
    ///
    /// Nothing is connected to until the first request.
    ///
    /// # Errors
    ///
    /// [`Error::Host`] for an address this client cannot use, naming it and saying why.
    pub fn new(host: &str) -> Result<Self> {
        host::parse(host).map(Self::with_endpoint)
    }

    fn with_endpoint(endpoint: Endpoint) -> Self {
        Self {
            inner: Arc::new(Inner {
                transport: Transport::new(endpoint),
                version: OnceCell::new(),
            }),
            stall_timeout: STALL_TIMEOUT,
        }
    }

    /// Fails a load or a save once no byte moved for `timeout` (10 minutes by default; a
    /// load's daemon gets a second more per 10 MiB sent once it has the whole archive; zero:
    /// no limit).
    #[must_use]
    pub fn with_stall_timeout(mut self, timeout: Duration) -> Self {
        self.stall_timeout = timeout;
        self
    }

    /// The daemon's address, written canonically (`unix:///var/run/docker.sock`,
    /// `tcp://host:2375`).
    pub fn host(&self) -> &str {
        &self.inner.transport.host
    }

    /// The daemon's version (`GET /version`), and the Engine API version spoken with it.
    ///
    /// The first call asks the daemon and checks that it speaks API 1.41 or newer; it then
    /// speaks the daemon's version, at most 1.45, in every later request
    /// (`/v{negotiated}/...`). Later calls return the answer kept from the first.
    ///
    /// # Errors
    ///
    /// [`Error::ApiTooOld`] naming the daemon's version and 1.41; [`Error::Connect`] when the
    /// daemon cannot be reached; [`Error::Protocol`] for an answer without a readable
    /// `ApiVersion`; [`Error::Timeout`] after 2 minutes.
    pub async fn version(&self) -> Result<DaemonVersion> {
        self.inner
            .version
            .get_or_try_init(|| self.ask_version())
            .await
            .cloned()
    }

    async fn ask_version(&self) -> Result<DaemonVersion> {
        let answer: VersionAnswer = self.get_json("/version".to_owned(), MAX_ANSWER).await?;
        let protocol = |reason: String| Error::Protocol {
            request: "GET /version".to_owned(),
            reason,
        };
        let api_version = answer
            .api_version
            .clone()
            .ok_or_else(|| protocol("it has no ApiVersion".to_owned()))?;
        let api = ApiVersion::parse(&api_version).ok_or_else(|| {
            protocol(format!("its ApiVersion {api_version:?} is not MAJOR.MINOR"))
        })?;
        let negotiated = api.negotiate().ok_or_else(|| Error::ApiTooOld {
            daemon: api_version.clone(),
            minimum: MINIMUM_API.to_string(),
        })?;
        let version = answer.into_version(api_version, negotiated);
        tracing::debug!(
            host = %self.host(),
            engine = %version.version,
            api = %version.api_version,
            negotiated = %version.negotiated_api_version,
            "Docker daemon version"
        );
        Ok(version)
    }

    /// The prefix of every versioned request: `/v1.41`.
    async fn prefix(&self) -> Result<String> {
        Ok(format!(
            "/v{}",
            self.version().await?.negotiated_api_version
        ))
    }

    /// The platform of images for this daemon: its `GET /version`'s `Os` and `Arch` (`GOOS`
    /// and `GOARCH` names), with the variant its `GET /info`'s `Architecture` (the kernel's
    /// machine name) tells for sure: `v5`, `v6`, `v7` for 32-bit ARM (`armv7l` and so on),
    /// `v8` for 64-bit ARM, none otherwise.
    ///
    /// # Errors
    ///
    /// As [`DockerClient::version`]; [`Error::Protocol`] when `Os` or `Arch` is missing.
    pub async fn platform(&self) -> Result<Platform> {
        #[derive(Deserialize)]
        struct Info {
            #[serde(rename = "Architecture")]
            architecture: Option<String>,
        }
        let version = self.version().await?;
        if version.os.is_empty() || version.arch.is_empty() {
            return Err(Error::Protocol {
                request: "GET /version".to_owned(),
                reason: "it has no Os or no Arch".to_owned(),
            });
        }
        let info: Info = self
            .get_json(format!("{}/info", self.prefix().await?), MAX_ANSWER)
            .await?;
        let machine = info.architecture.unwrap_or_default();
        let platform = crate::platform::platform(&version.os, &version.arch, &machine);
        tracing::debug!(host = %self.host(), %machine, %platform, "Docker daemon platform");
        Ok(platform)
    }

    /// The id (`sha256:...`) of the image that `name_or_id` names in the daemon
    /// (`GET /images/{name}/json`), or `None` when the daemon has no such image.
    ///
    /// `name_or_id` is a name as the daemon reads it (`busybox`, `app:1`,
    /// `registry.example/app@sha256:...`) or an image id, whole (`sha256:...`) or abbreviated.
    ///
    /// # Errors
    ///
    /// [`Error::Daemon`] when the daemon refuses the name (Docker: 400 for an invalid
    /// reference); [`Error::InvalidName`] for an empty name or one with characters no image
    /// name has; [`Error::Protocol`] for an answer without a `sha256:` id.
    pub async fn image_id(&self, name_or_id: &str) -> Result<Option<String>> {
        #[derive(Deserialize)]
        struct Inspect {
            #[serde(rename = "Id")]
            id: String,
        }
        check_name(name_or_id)?;
        let path = format!("{}/images/{name_or_id}/json", self.prefix().await?);
        let request = format!("GET {path}");
        self.timed(&request, async {
            let response = self
                .transport()
                .send(Method::GET, &path, None, empty())
                .await?;
            if response.status() == StatusCode::NOT_FOUND {
                return Ok(None);
            }
            let inspect: Inspect = json(self.transport(), &request, response, MAX_INSPECT).await?;
            image_id(&inspect.id)
                .map(Some)
                .ok_or_else(|| Error::Protocol {
                    request: request.clone(),
                    reason: format!("its Id {:?} is not a sha256 image id", inspect.id),
                })
        })
        .await
    }

    /// Gives the image `image` (a name or an id) the name `repo:tag`
    /// (`POST /images/{image}/tag?repo=..&tag=..`), moving the name if another image had it.
    ///
    /// # Errors
    ///
    /// [`Error::Daemon`] when the daemon refuses (no such image: 404; an invalid name: 400 or
    /// 500 for podman); [`Error::InvalidName`] for an `image` no image name or id can be.
    pub async fn tag(&self, image: &str, repo: &str, tag: &str) -> Result<()> {
        check_name(image)?;
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("repo", repo)
            .append_pair("tag", tag)
            .finish();
        let path = format!("{}/images/{image}/tag?{query}", self.prefix().await?);
        let request = format!("POST {path}");
        self.timed(&request, async {
            let response = self
                .transport()
                .send(Method::POST, &path, None, empty())
                .await?;
            if !response.status().is_success() {
                return Err(daemon_error(self.transport(), &request, response).await);
            }
            read_limited(self.transport(), &request, response, MAX_ANSWER).await?;
            Ok(())
        })
        .await
    }

    /// Loads the images of a tar archive into the daemon (`POST /images/load`, as
    /// `docker load` does), streaming `body` as the request's body while it is produced, and
    /// returns what the daemon says it loaded.
    ///
    /// The load is asked for quietly, as `docker load` does when its output is not a
    /// terminal: no progress messages, which cost the daemon work and nobody reads; the
    /// `Loaded image` lines and errors come all the same.
    ///
    /// The archive is whatever the daemon reads: a docker-archive for Docker, also an
    /// oci-archive for podman and Docker 25+. It is not looked at here.
    ///
    /// An error item in `body` aborts the request (the connection is closed in the middle of
    /// the chunked body, so the daemon never sees the clean end of a truncated archive) and is
    /// returned as [`Error::Body`]. There is no time limit as a whole: the daemon reads at its
    /// own pace, and podman reads the whole archive before it answers; but the load fails
    /// once the daemon takes nothing, and says nothing, for the stall timeout. Time that
    /// `body` itself takes to give its next piece (a build still making its layers) does not
    /// count.
    ///
    /// # Errors
    ///
    /// [`Error::Daemon`] with what the daemon said when it fails the load: Docker reports it
    /// in the last message of a 200 answer (then `status` is 200), podman with HTTP 500;
    /// [`Error::Body`] when `body` failed; [`Error::Protocol`] for an unreadable answer or one
    /// beyond the limits (a line over 1 MiB, more than 10,000 images); [`Error::Timeout`] when
    /// nothing moved for the stall timeout ([`with_stall_timeout`](Self::with_stall_timeout)).
    pub async fn load<S>(&self, body: S) -> Result<LoadReport>
    where
        S: Stream<Item = io::Result<Bytes>> + Send + 'static,
    {
        let path = format!("{}/images/load?quiet=1", self.prefix().await?);
        let request = format!("POST {path}");
        // The body's own failure, kept to be reported as what it is: hyper gets a copy and
        // answers with a failure of its own.
        let failure: Arc<Mutex<Option<io::Error>>> = Arc::default();
        let slot = Arc::clone(&failure);
        let moved = Arc::new(AtomicU64::new(0));
        let sent = Arc::clone(&moved);
        // Whether hyper is waiting for the body's next piece: the caller is slow, not the
        // daemon.
        let producing = Arc::new(AtomicBool::new(false));
        let waiting = Arc::clone(&producing);
        let mut body = Box::pin(body);
        let body = futures::stream::poll_fn(move |cx| {
            let polled = body.poll_next_unpin(cx);
            waiting.store(polled.is_pending(), Ordering::Relaxed);
            if let Poll::Ready(Some(Ok(bytes))) = &polled {
                sent.fetch_add(bytes.len() as u64, Ordering::Relaxed);
            }
            polled
        });
        let frames = body.map(move |item| match item {
            Ok(bytes) => Ok(Frame::data(bytes)),
            Err(error) => {
                tracing::debug!(%error, "the body of the load failed: aborting the request");
                let copy: BoxError = Box::new(io::Error::new(error.kind(), error.to_string()));
                slot.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get_or_insert(error);
                Err(copy)
            }
        });
        let body_failure = || {
            failure
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
                .map(Error::Body)
        };
        let work = async {
            let response = match self
                .transport()
                .send(
                    Method::POST,
                    &path,
                    Some("application/x-tar"),
                    StreamBody::new(frames).boxed_unsync(),
                )
                .await
            {
                Ok(response) => response,
                Err(error) => return Err(body_failure().unwrap_or(error)),
            };
            self.load_answer(&request, response, &moved, &body_failure)
                .await
        };
        self.within_stall(&request, &moved, Some(&producing), work)
            .await
    }

    /// Reads a load's answer (counting its bytes in `moved`).
    async fn load_answer(
        &self,
        request: &str,
        response: http::Response<hyper::body::Incoming>,
        moved: &AtomicU64,
        body_failure: &(impl Fn() -> Option<Error> + Sync),
    ) -> Result<LoadReport> {
        let status = response.status();
        if !status.is_success() {
            let error = daemon_error(self.transport(), request, response).await;
            return Err(body_failure().unwrap_or(error));
        }
        let mut answer = LoadAnswer::new(request, status.as_u16());
        let mut frames = response.into_body();
        while let Some(frame) = frames.frame().await {
            match frame {
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        moved.fetch_add(data.len() as u64, Ordering::Relaxed);
                        answer.push(&data)?;
                    }
                }
                Err(error) => {
                    // What the daemon said before the connection broke says more than the
                    // broken connection.
                    return Err(body_failure()
                        .or_else(|| answer.daemon_error())
                        .unwrap_or_else(|| self.transport().http(request, error)));
                }
            }
        }
        let report = answer.finish();
        // A body that failed after the daemon answered: the daemon took what it got for a
        // whole archive, but the caller's archive was not what it meant to send.
        if let Some(error) = body_failure() {
            return Err(error);
        }
        report
    }

    /// Saves images out of the daemon as one tar archive (`GET /images/get?names=..`, as
    /// `docker save` does): the archive as the daemon sends it, as a stream.
    ///
    /// The daemon writes its own format: the classic docker-archive for Docker before 25, the
    /// Docker 25+ one (an OCI layout with a `manifest.json`) after, a docker-archive for
    /// podman. The stream holds nothing and has no time limit as a whole: it is read at the
    /// consumer's pace, and fails only when a piece asked for does not come within the stall
    /// timeout ([`with_stall_timeout`](Self::with_stall_timeout)).
    ///
    /// A failure of the daemon after it started sending cannot be told apart from the
    /// archive by this client (Docker then writes a JSON error message into the stream and
    /// ends it): the archive's reader finds it broken.
    ///
    /// # Errors
    ///
    /// [`Error::Daemon`] with what the daemon said when it refuses (Docker: 404 for an image it
    /// does not have); the stream's errors are [`io::Error`]s whose source is an [`Error`].
    pub async fn save(&self, names: &[String]) -> Result<BoxStream<'static, io::Result<Bytes>>> {
        let prefix = self.prefix().await?;
        // The serializer holds a closure that is not `Send`: built and dropped between awaits.
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(names.iter().map(|name| ("names", name)))
            .finish();
        let path = format!("{prefix}/images/get?{query}");
        let request = format!("GET {path}");
        let nothing_moved = AtomicU64::new(0);
        let response = self
            .within_stall(&request, &nothing_moved, None, async {
                let response = self
                    .transport()
                    .send(Method::GET, &path, None, empty())
                    .await?;
                if !response.status().is_success() {
                    return Err(daemon_error(self.transport(), &request, response).await);
                }
                Ok(response)
            })
            .await?;
        let (host, stalled_request) = (self.host().to_owned(), request.clone());
        let stream = BodyStream::new(response.into_body()).filter_map(move |frame| {
            let item = match frame {
                Ok(frame) => frame.into_data().ok().map(Ok),
                Err(source) => Some(Err(io::Error::other(Error::Http {
                    host: host.clone(),
                    request: request.clone(),
                    source: Box::new(source),
                }))),
            };
            std::future::ready(item)
        });
        Ok(self.each_within_stall(stream.boxed(), stalled_request))
    }

    /// Runs `work` until it ends, or fails it once `moved` stayed the same for a whole
    /// period (the stall timeout, plus a second per 10 MiB moved so far) while `producing`,
    /// if given, did not say that the wait was for the caller's own body.
    async fn within_stall<T>(
        &self,
        request: &str,
        moved: &AtomicU64,
        producing: Option<&AtomicBool>,
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        if self.stall_timeout.is_zero() {
            return work.await;
        }
        let mut work = std::pin::pin!(work);
        let mut seen = moved.load(Ordering::Relaxed);
        loop {
            let period = self
                .stall_timeout
                .saturating_add(Duration::from_secs(seen / (10 << 20)));
            match tokio::time::timeout(period, &mut work).await {
                Ok(result) => return result,
                Err(_) => {
                    let now = moved.load(Ordering::Relaxed);
                    let ours = producing.is_some_and(|p| p.load(Ordering::Relaxed));
                    if now == seen && !ours {
                        return Err(Error::Timeout {
                            host: self.host().to_owned(),
                            request: request.to_owned(),
                            after: period,
                        });
                    }
                    seen = now;
                }
            }
        }
    }

    /// `stream`, failing once its next piece takes longer than the stall timeout (counted
    /// while it is asked for: a consumer that reads slowly is not the daemon stalling).
    fn each_within_stall(
        &self,
        stream: BoxStream<'static, io::Result<Bytes>>,
        request: String,
    ) -> BoxStream<'static, io::Result<Bytes>> {
        let (stall, host) = (self.stall_timeout, self.host().to_owned());
        if stall.is_zero() {
            return stream;
        }
        futures::stream::unfold(Some(stream), move |state| {
            let (host, request) = (host.clone(), request.clone());
            async move {
                let mut stream = state?;
                match tokio::time::timeout(stall, stream.next()).await {
                    Ok(Some(item)) => Some((item, Some(stream))),
                    Ok(None) => None,
                    Err(_) => {
                        let error = Error::Timeout {
                            host,
                            request,
                            after: stall,
                        };
                        Some((Err(io::Error::new(io::ErrorKind::TimedOut, error)), None))
                    }
                }
            }
        })
        .boxed()
    }

    fn transport(&self) -> &Transport {
        &self.inner.transport
    }

    /// `GET path`, its JSON answer read whole (at most `limit` bytes), within the time limit.
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: String,
        limit: usize,
    ) -> Result<T> {
        let request = format!("GET {path}");
        self.timed(&request, async {
            let response = self
                .transport()
                .send(Method::GET, &path, None, empty())
                .await?;
            json(self.transport(), &request, response, limit).await
        })
        .await
    }

    /// Runs a request with a small answer within [`REQUEST_TIMEOUT`].
    async fn timed<T>(&self, request: &str, work: impl Future<Output = Result<T>>) -> Result<T> {
        tokio::time::timeout(REQUEST_TIMEOUT, work)
            .await
            .map_err(|_| Error::Timeout {
                host: self.host().to_owned(),
                request: request.to_owned(),
                after: REQUEST_TIMEOUT,
            })?
    }
}

/// Refuses what cannot be an image name or id before it goes into a request's path: names are
/// letters, digits, `._-`, `/` between components, `:` before a tag, `@` and `+` in digests.
fn check_name(name: &str) -> Result<()> {
    let refuse = |reason: &str| Error::InvalidName {
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    if name.is_empty() {
        return Err(refuse("it is empty"));
    }
    if name.len() > MAX_NAME {
        return Err(refuse(&format!("it is longer than {MAX_NAME} bytes")));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._-/:@+".contains(*c)))
    {
        return Err(refuse(&format!("it contains {c:?}")));
    }
    if name
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err(refuse("it has an empty, '.' or '..' path component"));
    }
    Ok(())
}

/// The image id `id` as `sha256:HEX`: podman's compatible service writes it the same as
/// Docker, but a bare hex id is taken too.
fn image_id(id: &str) -> Option<String> {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    (hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then(|| format!("sha256:{hex}"))
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::path::PathBuf;

    use http::{Request, Response};
    use http_body_util::Full;
    use hyper::body::Incoming;
    use hyper_util::rt::TokioIo;
    use tokio::net::UnixListener;
    use tokio::sync::mpsc;

    use super::*;

    #[test]
    fn names() {
        for good in [
            "busybox",
            "app:1",
            "registry.example:5000/a/b-c_d.e:v1.2",
            "app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "0123456789ab",
        ] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for (bad, reason) in [
            ("", "empty"),
            ("a b", "' '"),
            ("a?b", "'?'"),
            ("a%2f", "'%'"),
            ("a/../json", "'..'"),
            ("./a", "'.'"),
            ("a//b", "empty"),
            ("/a", "empty"),
            ("a\nb", "'\\n'"),
        ] {
            let error = check_name(bad).unwrap_err().to_string();
            assert!(error.contains(reason), "{bad:?}: {error}");
        }
        assert!(check_name(&"a".repeat(MAX_NAME + 1)).is_err());
    }

    #[test]
    fn image_ids() {
        let hex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(
            image_id(&format!("sha256:{hex}")),
            Some(format!("sha256:{hex}"))
        );
        assert_eq!(image_id(hex), Some(format!("sha256:{hex}")));
        assert_eq!(image_id(&format!("sha512:{hex}")), None);
        assert_eq!(image_id(&hex.to_uppercase()), None);
        assert_eq!(image_id(&hex[1..]), None);
        assert_eq!(image_id(""), None);
    }

    /// What the fake daemon saw of one request.
    #[derive(Debug)]
    struct Seen {
        line: String,
        host: Option<String>,
        content_type: Option<String>,
        /// The body's length, or its failure.
        body: Result<usize, String>,
    }

    /// A daemon that answers as `answer` says, on a unix socket in a temporary directory; each
    /// request is reported on the channel once its body was read.
    struct FakeDaemon {
        _dir: tempfile::TempDir,
        host: String,
        seen: mpsc::UnboundedReceiver<Seen>,
        /// Each request's line, as soon as its head arrives.
        heads: mpsc::UnboundedReceiver<String>,
    }

    type Answer = fn(&str, usize) -> (u16, String);

    impl FakeDaemon {
        fn start(answer: Answer) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let socket: PathBuf = dir.path().join("d.sock");
            let listener = UnixListener::bind(&socket).unwrap();
            let (report, seen) = mpsc::unbounded_channel();
            let (head, heads) = mpsc::unbounded_channel();
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    let report = report.clone();
                    let head = head.clone();
                    tokio::spawn(async move {
                        let service =
                            hyper::service::service_fn(move |request: Request<Incoming>| {
                                let report = report.clone();
                                let line = format!("{} {}", request.method(), request.uri());
                                let _ = head.send(line.clone());
                                async move {
                                    let header = |name| {
                                        request.headers().get(name).map(|v: &http::HeaderValue| {
                                            v.to_str().unwrap().to_owned()
                                        })
                                    };
                                    let host = header(http::header::HOST);
                                    let content_type = header(http::header::CONTENT_TYPE);
                                    let body = request
                                        .into_body()
                                        .collect()
                                        .await
                                        .map(|b| b.to_bytes().len())
                                        .map_err(|e| e.to_string());
                                    let length = *body.as_ref().unwrap_or(&0);
                                    report
                                        .send(Seen {
                                            line: line.clone(),
                                            host,
                                            content_type,
                                            body,
                                        })
                                        .unwrap();
                                    let (status, text) = answer(&line, length);
                                    Ok::<_, Infallible>(
                                        Response::builder()
                                            .status(status)
                                            .body(Full::new(Bytes::from(text)))
                                            .unwrap(),
                                    )
                                }
                            });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
            Self {
                host: format!("unix://{}", socket.display()),
                _dir: dir,
                seen,
                heads,
            }
        }

        fn client(&self) -> DockerClient {
            DockerClient::new(&self.host).unwrap()
        }

        async fn next(&mut self) -> Seen {
            self.seen.recv().await.unwrap()
        }

        fn lines(&mut self) -> Vec<String> {
            std::iter::from_fn(|| self.seen.try_recv().ok())
                .map(|s| s.line)
                .collect()
        }
    }

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// A daemon of API 1.47 on 32-bit ARM with one image, `a:1`, loading anything.
    fn newer_daemon(line: &str, body: usize) -> (u16, String) {
        match line {
            "GET /version" => (
                200,
                r#"{"ApiVersion":"1.47","Version":"27.0.0","Os":"linux","Arch":"arm","Components":[{"Name":"Engine","Version":"27.0.0"}]}"#.to_owned(),
            ),
            "GET /v1.45/info" => (200, r#"{"Architecture":"armv7l","OSType":"linux"}"#.to_owned()),
            "GET /v1.45/images/a:1/json" => (200, format!(r#"{{"Id":"sha256:{HEX}","RepoTags":["a:1"]}}"#)),
            "POST /v1.45/images/a:1/tag?repo=b%2Fc&tag=2" => (201, String::new()),
            "POST /v1.45/images/load?quiet=1" => (
                200,
                format!("{{\"status\":\"Loading layer\",\"progressDetail\":{{\"current\":{body},\"total\":{body}}}}}\r\n{{\"stream\":\"Loaded image: a:1\\n\"}}\r\n"),
            ),
            "GET /v1.45/images/get?names=a%3A1&names=b" => (200, "tar bytes".to_owned()),
            _ => (404, r#"{"message":"No such image: x"}"#.to_owned()),
        }
    }

    #[tokio::test]
    async fn negotiates_once_and_speaks_the_newest_known_version() {
        let mut daemon = FakeDaemon::start(newer_daemon);
        let client = daemon.client();
        let version = client.version().await.unwrap();
        assert_eq!(version.api_version, "1.47");
        assert_eq!(version.negotiated_api_version, "1.45");
        assert_eq!(version.version, "27.0.0");
        assert_eq!(version.components[0].name, "Engine");
        let seen = daemon.next().await;
        assert_eq!(seen.line, "GET /version");
        assert_eq!(seen.host.as_deref(), Some("docker"));
        // Clones share the negotiation.
        assert_eq!(client.clone().version().await.unwrap(), version);
        assert_eq!(
            client.platform().await.unwrap(),
            Platform::new("linux", "arm").with_variant("v7")
        );
        assert_eq!(
            client.image_id("a:1").await.unwrap(),
            Some(format!("sha256:{HEX}"))
        );
        assert_eq!(client.image_id("nothing").await.unwrap(), None);
        client.tag("a:1", "b/c", "2").await.unwrap();
        assert_eq!(
            daemon.lines(),
            [
                "GET /v1.45/info",
                "GET /v1.45/images/a:1/json",
                "GET /v1.45/images/nothing/json",
                "POST /v1.45/images/a:1/tag?repo=b%2Fc&tag=2",
            ]
        );
        match client.tag("nothing", "b", "1").await {
            Err(Error::Daemon {
                status: 404,
                message,
            }) => assert_eq!(message, "No such image: x"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn an_old_daemon_is_refused() {
        let daemon = FakeDaemon::start(|line, _| match line {
            "GET /version" => (200, r#"{"ApiVersion":"1.40","Version":"19.03"}"#.to_owned()),
            _ => (500, String::new()),
        });
        let client = daemon.client();
        match client.version().await {
            Err(Error::ApiTooOld { daemon, minimum }) => {
                assert_eq!((daemon.as_str(), minimum.as_str()), ("1.40", "1.41"))
            }
            other => panic!("{other:?}"),
        }
        let error = client.image_id("a").await.unwrap_err().to_string();
        assert_eq!(
            error,
            "the Docker daemon speaks Engine API 1.40, older than the 1.41 this client needs"
        );
        let daemon = FakeDaemon::start(|_, _| (200, r#"{"Version":"x"}"#.to_owned()));
        let error = daemon.client().version().await.unwrap_err().to_string();
        assert_eq!(
            error,
            "cannot read the Docker daemon's answer to GET /version: it has no ApiVersion"
        );
        let daemon = FakeDaemon::start(|_, _| (200, "not json".to_owned()));
        let error = daemon.client().version().await.unwrap_err().to_string();
        assert!(error.contains("\"not json\""), "{error}");
    }

    #[tokio::test]
    async fn load_streams_the_body_and_reads_the_answer() {
        let mut daemon = FakeDaemon::start(newer_daemon);
        let client = daemon.client();
        client.version().await.unwrap();
        daemon.next().await;
        let pieces = (0..100).map(|i| Ok(Bytes::from(vec![i as u8; 10_000])));
        let report = client.load(futures::stream::iter(pieces)).await.unwrap();
        assert_eq!(report.names, ["a:1"]);
        let seen = daemon.next().await;
        assert_eq!(seen.line, "POST /v1.45/images/load?quiet=1");
        assert_eq!(seen.content_type.as_deref(), Some("application/x-tar"));
        assert_eq!(seen.body, Ok(1_000_000));
    }

    #[tokio::test]
    async fn a_failed_body_aborts_the_load() {
        let mut daemon = FakeDaemon::start(newer_daemon);
        let client = daemon.client();
        client.version().await.unwrap();
        daemon.next().await;
        // The failure comes once the daemon has the request's head, so that it sees a body
        // that breaks (had it come first, the daemon would have seen no request at all).
        let mut heads = std::mem::replace(&mut daemon.heads, mpsc::unbounded_channel().1);
        let pieces = futures::stream::iter([Ok(Bytes::from_static(b"the start of an archive"))])
            .chain(futures::stream::once(async move {
                while heads.recv().await.unwrap() != "POST /v1.45/images/load?quiet=1" {}
                Err(io::Error::other("the archive could not be finished"))
            }))
            .chain(futures::stream::iter([Ok(Bytes::from_static(
                b"never sent",
            ))]));
        match client.load(pieces).await {
            Err(Error::Body(error)) => {
                assert_eq!(error.to_string(), "the archive could not be finished")
            }
            other => panic!("{other:?}"),
        }
        let seen = daemon.next().await;
        assert_eq!(seen.line, "POST /v1.45/images/load?quiet=1");
        let failure = seen.body.unwrap_err();
        assert!(
            !failure.is_empty(),
            "the daemon saw the body break, not end"
        );
    }

    #[tokio::test]
    async fn load_failures_name_what_the_daemon_said() {
        // Docker: 200, the failure in the stream.
        let daemon = FakeDaemon::start(|line, _| {
            match line {
            "GET /version" => (200, r#"{"ApiVersion":"1.41"}"#.to_owned()),
            _ => (200, "{\"errorDetail\":{\"message\":\"unexpected EOF\"},\"error\":\"unexpected EOF\"}\r\n".to_owned()),
        }
        });
        let body = futures::stream::iter([Ok(Bytes::from_static(b"x"))]);
        match daemon.client().load(body).await {
            Err(Error::Daemon {
                status: 200,
                message,
            }) => assert_eq!(message, "unexpected EOF"),
            other => panic!("{other:?}"),
        }
        // podman: 500.
        let daemon = FakeDaemon::start(|line, _| match line {
            "GET /version" => (200, r#"{"ApiVersion":"1.41"}"#.to_owned()),
            _ => (
                500,
                r#"{"cause":"c","message":"failed to load image: c","response":500}"#.to_owned(),
            ),
        });
        let body = futures::stream::iter([Ok(Bytes::from_static(b"x"))]);
        let error = daemon.client().load(body).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "the Docker daemon reported: failed to load image: c (HTTP 500)"
        );
    }

    #[tokio::test]
    async fn save_streams_the_answer() {
        let daemon = FakeDaemon::start(newer_daemon);
        let client = daemon.client();
        let stream = client
            .save(&["a:1".to_owned(), "b".to_owned()])
            .await
            .unwrap();
        let pieces: Vec<Bytes> = stream.map(Result::unwrap).collect().await;
        assert_eq!(pieces.concat(), b"tar bytes");
        match client.save(&["c".to_owned()]).await {
            Err(Error::Daemon {
                status: 404,
                message,
            }) => assert_eq!(message, "No such image: x"),
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("saved an image the daemon does not have"),
        }
    }

    #[tokio::test]
    async fn an_absent_daemon_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let host = format!("unix://{}/none.sock", dir.path().display());
        let client = DockerClient::new(&host).unwrap();
        assert_eq!(client.host(), host);
        let error = client.version().await.unwrap_err();
        assert!(
            matches!(&error, Error::Connect { host: h, .. } if *h == host),
            "{error:?}"
        );
        assert!(
            error.to_string().contains("is the daemon running"),
            "{error}"
        );
        let error = client.load(futures::stream::empty()).await.unwrap_err();
        assert!(matches!(error, Error::Connect { .. }), "{error:?}");
    }

    /// What a [`silent_daemon`] does with a load or a save once it has the request's head.
    #[derive(Clone, Copy)]
    enum Silence {
        /// Reads the whole archive, then never answers.
        AfterTheArchive,
        /// Reads nothing more of the archive, keeping the connection open.
        StopsReading,
        /// Answers a save with a head and five bytes, then sends nothing more.
        MidSave,
    }

    /// A daemon that answers `/version` (API 1.41) and then goes silent as `silence` says;
    /// returns its `unix://` address and its directory.
    fn silent_daemon(silence: Silence) -> (String, tempfile::TempDir) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("docker.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    if head.starts_with(b"GET /version") {
                        let body = r#"{"ApiVersion":"1.41"}"#;
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = stream.write_all(answer.as_bytes()).await;
                        return;
                    }
                    match silence {
                        Silence::AfterTheArchive => {
                            let _ = tokio::io::copy(&mut stream, &mut tokio::io::sink()).await;
                        }
                        Silence::StopsReading => {}
                        Silence::MidSave => {
                            let _ = stream
                                .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
                                .await;
                        }
                    }
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    drop(stream);
                });
            }
        });
        (format!("unix://{}", socket.display()), dir)
    }

    fn archive(len: usize) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
        futures::stream::iter((0..len / 65_536).map(|_| Ok(Bytes::from(vec![7u8; 65_536]))))
    }

    #[tokio::test]
    async fn a_load_that_the_daemon_stops_answering_or_reading_fails_after_the_stall_timeout() {
        for (silence, size) in [
            (Silence::AfterTheArchive, 1 << 20),
            // More than the socket's buffers hold.
            (Silence::StopsReading, 64 << 20),
        ] {
            let (host, _dir) = silent_daemon(silence);
            let client = DockerClient::new(&host)
                .unwrap()
                .with_stall_timeout(Duration::from_millis(300));
            let loading = client.load(archive(size));
            let error = tokio::time::timeout(Duration::from_secs(30), loading)
                .await
                .expect("the stall timeout ended the load")
                .unwrap_err();
            assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
            assert!(error.to_string().contains("images/load"), "{error}");
        }
    }

    #[tokio::test]
    async fn a_body_that_is_slow_to_come_is_not_a_stalled_daemon() {
        let mut daemon = FakeDaemon::start(newer_daemon);
        let client = daemon
            .client()
            .with_stall_timeout(Duration::from_millis(300));
        // Each piece takes three stall timeouts to make (a build making its layers).
        let pieces = futures::stream::iter(0..3).then(|_| async {
            tokio::time::sleep(Duration::from_millis(900)).await;
            Ok(Bytes::from(vec![1u8; 1000]))
        });
        let report = client.load(pieces).await.unwrap();
        assert_eq!(report.names, ["a:1"]);
        daemon.next().await;
        assert_eq!(daemon.next().await.body, Ok(3000));
    }

    #[tokio::test]
    async fn a_save_that_stops_coming_fails_after_the_stall_timeout() {
        let (host, _dir) = silent_daemon(Silence::MidSave);
        let client = DockerClient::new(&host)
            .unwrap()
            .with_stall_timeout(Duration::from_millis(300));
        let mut stream = client.save(&["a:1".to_owned()]).await.unwrap();
        assert_eq!(stream.next().await.unwrap().unwrap(), "hello");
        let error = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("the stall timeout ended the save")
            .unwrap()
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut, "{error}");
        assert!(stream.next().await.is_none(), "nothing after the failure");
        // A daemon that sends no answer at all to a save fails the same way.
        let (host, _dir) = silent_daemon(Silence::AfterTheArchive);
        let client = DockerClient::new(&host)
            .unwrap()
            .with_stall_timeout(Duration::from_millis(300));
        let names = ["a:1".to_owned()];
        let saving = client.save(&names);
        match tokio::time::timeout(Duration::from_secs(30), saving).await {
            Ok(Err(Error::Timeout { .. })) => {}
            Ok(Err(other)) => panic!("{other:?}"),
            Ok(Ok(_)) => panic!("an answer from a silent daemon"),
            Err(_) => panic!("the stall timeout did not end the save"),
        }
    }
}
