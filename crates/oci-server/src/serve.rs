//! The server itself: options, TLS, the accept loop, graceful shutdown.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::server::graceful::GracefulShutdown;
use oci_store::{BlobLocator, OciInterface};
use oci_types::MAX_MANIFEST_SIZE;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::auth::{Auth, Authenticator};
use crate::conn;
use crate::handler::{BlobRedirects, State};
use crate::{Error, Result};

/// The longest of the server's time limits: a limit set longer (up to `Duration::MAX`, "never"
/// in effect) is a year, since the limits are added to clock readings, which a longer one
/// would overflow.
pub const MAX_TIME_LIMIT: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// How a [`RegistryServer`] behaves.
///
/// Its time limits are at most [`MAX_TIME_LIMIT`] (longer ones are taken as that), and its
/// counts of things at once at least 1 and at most what a semaphore counts (a quarter of
/// `usize::MAX`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerOptions {
    /// Refuse every write and delete (405).
    pub read_only: bool,
    /// Allow deletes of blobs, manifests and tags (405 when off).
    pub deletes: bool,
    /// The largest manifest accepted (413 above); at least 4 MiB per the spec.
    pub max_manifest_size: u64,
    /// The largest request body of a blob upload, if limited (413 above).
    pub max_blob_size: Option<u64>,
    /// How many upload requests may stream at once (429 with `Retry-After` beyond).
    pub max_concurrent_uploads: usize,
    /// The smallest chunk a PATCH may carry (every chunk but the last), announced as
    /// `OCI-Chunk-Min-Length`; none by default, and then the header is not sent.
    pub min_chunk_size: Option<u64>,
    /// How long shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
    /// Whether a full blob GET streams the store's verified read (hashing every byte served,
    /// so that content damaged at rest is cut off before its end), or the bytes as stored,
    /// checked for length only. Clients verify the digest of what they download either way
    /// (the distribution-spec asks them to); off, the server serves at the speed of the disk
    /// and the network, as the CNCF registry does, and damage at rest is found by the client
    /// or by a check of the storage (`hoist fsck`). Off by default. Off, reads are range reads
    /// of the whole blob, which a caching store ([`oci_store::Cached`]) fills from as it does
    /// from full reads (the remote's read is verified as it passes).
    pub verify_blob_reads: bool,
    /// How long a client has to send a request's line and headers, from the moment the
    /// server waits for them (HTTP/1; on a kept-alive connection the wait starts when the
    /// previous answer was sent, so this also ends idle keep-alive connections). Closes
    /// connections that send half a request and stop, and connections that send nothing at
    /// all (on any protocol, TLS included: their first byte must arrive within it). Zero: no
    /// limit.
    pub header_read_timeout: Duration,
    /// How long a connection may go without a byte moving either way before it is closed: a
    /// stalled upload, a download nobody reads, an idle HTTP/2 connection. Zero: no limit.
    pub idle_timeout: Duration,
    /// How long a TLS handshake may take.
    pub tls_handshake_timeout: Duration,
    /// The slowest a request body (an upload, a manifest, a token request) may arrive, on
    /// average over each [`body_rate_window`](Self::body_rate_window): a body that stalls, or
    /// trickles below this, is cut off with an error; a slow but moving upload of any size is
    /// not. A client that takes a blob slower than this (the socket full) has its connection
    /// closed, so that slow readers cannot hold the download slots. 0 turns both off.
    pub min_body_rate: u64,
    /// The window over which [`min_body_rate`](Self::min_body_rate) is measured.
    pub body_rate_window: Duration,
    /// How many blob bodies are served at once; a download beyond waits for one to end.
    /// Each holds a few read buffers (up to about 3 MiB with 1 MiB reads), so this bounds
    /// what stalled downloads can hold until the minimum rate or the idle timeout closes them.
    pub max_concurrent_downloads: usize,
    /// How many connections are served at once; a connection beyond that is closed as soon as
    /// it is accepted (and logged), so that the clients already served keep their service.
    pub max_connections: usize,
    /// Whether the server speaks TLS (set by [`RegistryServer::with_tls`]).
    pub(crate) tls: bool,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            read_only: false,
            deletes: true,
            max_manifest_size: MAX_MANIFEST_SIZE as u64,
            max_blob_size: None,
            max_concurrent_uploads: 64,
            min_chunk_size: None,
            shutdown_grace: Duration::from_secs(30),
            verify_blob_reads: false,
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            tls_handshake_timeout: Duration::from_secs(10),
            min_body_rate: 1024,
            body_rate_window: Duration::from_secs(30),
            max_connections: 4096,
            max_concurrent_downloads: 256,
            tls: false,
        }
    }
}

impl ServerOptions {
    /// These options with every time limit at most [`MAX_TIME_LIMIT`] and every count of
    /// things at once within 1 and what a semaphore can count (a quarter of `usize::MAX`:
    /// "unlimited", in effect).
    fn within_limits(&self) -> Self {
        let bound = |limit: Duration| limit.min(MAX_TIME_LIMIT);
        let count = |count: usize| count.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            max_concurrent_uploads: count(self.max_concurrent_uploads),
            max_concurrent_downloads: count(self.max_concurrent_downloads),
            max_connections: count(self.max_connections),
            shutdown_grace: bound(self.shutdown_grace),
            header_read_timeout: bound(self.header_read_timeout),
            idle_timeout: bound(self.idle_timeout),
            tls_handshake_timeout: bound(self.tls_handshake_timeout),
            body_rate_window: bound(self.body_rate_window),
            ..self.clone()
        }
    }

    /// Refuse writes.
    pub fn with_read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Allow or refuse deletes.
    pub fn with_deletes(mut self, deletes: bool) -> Self {
        self.deletes = deletes;
        self
    }

    /// Limits manifests.
    pub fn with_max_manifest_size(mut self, bytes: u64) -> Self {
        self.max_manifest_size = bytes;
        self
    }

    /// Limits blob uploads.
    pub fn with_max_blob_size(mut self, bytes: Option<u64>) -> Self {
        self.max_blob_size = bytes;
        self
    }

    /// Limits concurrent upload requests.
    pub fn with_max_concurrent_uploads(mut self, count: usize) -> Self {
        self.max_concurrent_uploads = count;
        self
    }

    /// Requires chunks of at least `bytes` (announced as `OCI-Chunk-Min-Length`).
    pub fn with_min_chunk_size(mut self, bytes: Option<u64>) -> Self {
        self.min_chunk_size = bytes;
        self
    }

    /// Sets how long shutdown waits for requests in flight.
    pub fn with_shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Sets [`verify_blob_reads`](Self::verify_blob_reads).
    pub fn with_verify_blob_reads(mut self, verify: bool) -> Self {
        self.verify_blob_reads = verify;
        self
    }

    /// Sets [`header_read_timeout`](Self::header_read_timeout).
    pub fn with_header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// Sets [`idle_timeout`](Self::idle_timeout).
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sets [`tls_handshake_timeout`](Self::tls_handshake_timeout).
    pub fn with_tls_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.tls_handshake_timeout = timeout;
        self
    }

    /// Sets [`min_body_rate`](Self::min_body_rate) (bytes per second) and its window.
    pub fn with_min_body_rate(mut self, bytes_per_second: u64, window: Duration) -> Self {
        self.min_body_rate = bytes_per_second;
        self.body_rate_window = window;
        self
    }

    /// Sets [`max_concurrent_downloads`](Self::max_concurrent_downloads).
    pub fn with_max_concurrent_downloads(mut self, count: usize) -> Self {
        self.max_concurrent_downloads = count;
        self
    }

    /// Sets [`max_connections`](Self::max_connections).
    pub fn with_max_connections(mut self, count: usize) -> Self {
        self.max_connections = count;
        self
    }
}

/// Serves an [`OciInterface`] as a distribution-spec registry.
pub struct RegistryServer {
    store: Arc<dyn OciInterface>,
    options: ServerOptions,
    auth: Option<Auth>,
    tls: Option<Arc<rustls::ServerConfig>>,
    redirects: Option<BlobRedirects>,
}

impl std::fmt::Debug for RegistryServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryServer")
            .field("store", &self.store.to_string())
            .field("options", &self.options)
            .field("auth", &self.auth.is_some())
            .field("tls", &self.tls.is_some())
            .field("redirects", &self.redirects)
            .finish()
    }
}

impl RegistryServer {
    /// A server of `store` with the default options: no auth, plain HTTP, deletes allowed.
    pub fn new(store: Arc<dyn OciInterface>) -> Self {
        Self {
            store,
            options: ServerOptions::default(),
            auth: None,
            tls: None,
            redirects: None,
        }
    }

    /// Sets the options.
    pub fn with_options(mut self, options: ServerOptions) -> Self {
        let tls = self.options.tls;
        self.options = options;
        self.options.tls = tls;
        self
    }

    /// Answers whole-blob GETs with a `307` redirect to a URL of `locator`'s (a presigned URL
    /// of the bucket underneath), valid for `valid_for`, so that blob bytes go from the storage
    /// to the client without passing through this server. The server still authorizes the
    /// request and checks that the repository holds the blob; HEADs, ranged GETs and blobs
    /// the locator has no URL for are answered as usual. Off by default: a client must be able
    /// to reach the storage, and the URL lets whoever holds it read that blob until it expires.
    pub fn with_blob_redirects(
        mut self,
        locator: Arc<dyn BlobLocator>,
        valid_for: Duration,
    ) -> Self {
        self.redirects = Some(BlobRedirects { locator, valid_for });
        self
    }

    /// Requires authentication.
    pub fn with_auth(mut self, auth: Auth) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Serves HTTPS (HTTP/2 and HTTP/1.1 by ALPN) with a certificate chain and private key read
    /// from PEM files.
    pub fn with_tls(mut self, certificate: &Path, key: &Path) -> Result<Self> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let config_error = |what: &Path, reason: String| Error::Config {
            what: format!("TLS file {}", what.display()),
            reason,
        };
        let chain = CertificateDer::pem_file_iter(certificate)
            .map_err(|e| config_error(certificate, e.to_string()))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| config_error(certificate, e.to_string()))?;
        if chain.is_empty() {
            return Err(config_error(certificate, "no certificate in it".to_owned()));
        }
        let key_der =
            PrivateKeyDer::from_pem_file(key).map_err(|e| config_error(key, e.to_string()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| config_error(certificate, e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key_der)
            .map_err(|e| config_error(key, e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        self.tls = Some(Arc::new(config));
        self.options.tls = true;
        Ok(self)
    }

    /// Starts listening on `addr` (port 0 picks a free one) and serving in the background.
    pub async fn bind(self, addr: SocketAddr) -> Result<Listening> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| Error::Bind { addr, source })?;
        let options = self.options.within_limits();
        let shutdown_grace = options.shutdown_grace;
        let state = Arc::new(State {
            store: self.store,
            upload_slots: Arc::new(Semaphore::new(options.max_concurrent_uploads)),
            upload_locks: Default::default(),
            download_slots: Arc::new(Semaphore::new(options.max_concurrent_downloads)),
            options,
            auth: self.auth.map(Authenticator::new),
            redirects: self.redirects,
        });
        let (stop, stopped) = oneshot::channel();
        let acceptor = self.tls.map(TlsAcceptor::from);
        tracing::info!(%local_addr, tls = acceptor.is_some(), "registry listening");
        let task = tokio::spawn(accept_loop(
            listener,
            state,
            acceptor,
            stopped,
            shutdown_grace,
        ));
        Ok(Listening {
            local_addr,
            tls: self.options.tls,
            stop: Some(stop),
            task,
        })
    }
}

/// A server that is running.
#[derive(Debug)]
pub struct Listening {
    local_addr: SocketAddr,
    tls: bool,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Listening {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Its base URL, `http://127.0.0.1:PORT` (or `https://`).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.local_addr)
    }

    /// Stops accepting connections, lets requests in flight finish (up to the shutdown grace),
    /// and returns when the server is done.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Err(error) = (&mut self.task).await {
            tracing::error!(%error, "the server task failed");
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<State>,
    tls: Option<TlsAcceptor>,
    mut stop: oneshot::Receiver<()>,
    grace: Duration,
) {
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(state.options.max_connections));
    let mut refused_logged: Option<std::time::Instant> = None;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors, typically: back off instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
                    // Closed at once: the clients already served keep their service, and a
                    // refused client learns it now rather than after a timeout.
                    if refused_logged.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
                        tracing::warn!(%peer, limit = state.options.max_connections, "too many connections: refusing new ones");
                        refused_logged = Some(std::time::Instant::now());
                    }
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let state = Arc::clone(&state);
                let tls = tls.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    conn::serve(stream, peer, state, tls, watcher).await;
                    drop(permit);
                });
            }
            _ = &mut stop => break,
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("registry stopped"),
        () = tokio::time::sleep(grace) => tracing::warn!(?grace, "requests still in flight after the shutdown grace; closing"),
    }
}
