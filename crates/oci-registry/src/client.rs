//! `RegistryClient`: a distribution-spec registry as an `OciInterface`.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::stream::{self, BoxStream, StreamExt};
use http::{Method, Response, StatusCode, Uri, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use oci_store::{BlobBody, Error, ErrorCode, PushCheck, Result};
use oci_types::{Descriptor, Digest, MAX_MANIFEST_SIZE, MediaType, Repository, docker_hub};
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::auth::{CachedToken, Challenge, Credentials, TokenResponse, parse_challenge};
use crate::clock::Clock;
use crate::proxy::ProxyRules;
use crate::transport::{
    Body, Call, HttpClient, Permanent, RetryPolicy, http_client, is_loopback, permanent_failure,
    retry_after, transient,
};
use crate::trust::{AcceptAnyCertificate, LazyRoots};

/// Every manifest type a pull accepts.
pub(crate) const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.v1+prettyjws, application/vnd.docker.distribution.manifest.v1+json;q=0.5, */*;q=0.1";

/// Error bodies are read up to this size (registries send small JSON; anything larger is not
/// an error description worth holding).
const ERROR_BODY_LIMIT: usize = 8 * 1024;

/// How often a broken blob download is resumed from the byte reached.
const DOWNLOAD_RESUMES: u32 = 5;

/// How to reach and authenticate to a registry: see [`RegistryClient::builder`].
#[derive(Debug, Clone)]
pub struct RegistryClientBuilder {
    registry: String,
    credentials: Option<Credentials>,
    credential_files: Option<Vec<PathBuf>>,
    plain_http: Option<bool>,
    ca_files: Vec<PathBuf>,
    skip_verify: bool,
    retry: RetryPolicy,
    max_concurrent_requests: usize,
    chunk_size: usize,
    monolithic_limit: u64,
    stall_timeout: Duration,
    client_identity: Option<(PathBuf, PathBuf)>,
    proxy: Option<String>,
    clock: Clock,
}

impl RegistryClientBuilder {
    /// Uses these credentials instead of looking them up in the credential files.
    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Looks credentials up in these files instead of the default ones
    /// ([`credential_files`](crate::credential_files)).
    pub fn with_credential_files(mut self, files: Vec<PathBuf>) -> Self {
        self.credential_files = Some(files);
        self
    }

    /// Speaks plain HTTP (true) or HTTPS (false). By default, plain HTTP for `localhost`,
    /// `127.0.0.0/8` and `[::1]`, HTTPS elsewhere.
    pub fn with_plain_http(mut self, plain: bool) -> Self {
        self.plain_http = Some(plain);
        self
    }

    /// Trusts the certificates in a PEM file too (a private CA).
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_files.push(path.into());
        self
    }

    /// Accepts any certificate from this registry. Dangerous; for test registries only.
    pub fn with_skip_verify(mut self, skip: bool) -> Self {
        self.skip_verify = skip;
        self
    }

    /// Sets when requests are retried.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Limits the requests in flight to this registry.
    pub fn with_max_concurrent_requests(mut self, count: usize) -> Self {
        self.max_concurrent_requests = count.max(1);
        self
    }

    /// Blobs larger than this are uploaded in chunks of [`with_chunk_size`](Self::with_chunk_size)
    /// rather than in one request.
    pub fn with_monolithic_limit(mut self, bytes: u64) -> Self {
        self.monolithic_limit = bytes;
        self
    }

    /// The size of upload chunks (raised to a registry's `OCI-Chunk-Min-Length`).
    pub fn with_chunk_size(mut self, bytes: usize) -> Self {
        self.chunk_size = bytes.max(1);
        self
    }

    /// Presents this client certificate (PEM chain and PEM private key) to registries that ask
    /// for one (mutual TLS).
    pub fn with_client_identity(
        mut self,
        certificate: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        self.client_identity = Some((certificate.into(), key.into()));
        self
    }

    /// How long a blob download may go without a byte before it counts as broken (and is
    /// resumed with `Range`, like a dropped connection). Default: 60 seconds.
    pub fn with_stall_timeout(mut self, timeout: Duration) -> Self {
        self.stall_timeout = timeout;
        self
    }

    /// Reaches the registry through this forward proxy (`http://[user:password@]host:port`)
    /// instead of the one `HTTPS_PROXY` or `HTTP_PROXY` names. `NO_PROXY` still applies, and
    /// loopback registries (`localhost`, `127.0.0.0/8`, `[::1]`) are always reached directly,
    /// since a proxy's loopback is not this machine's.
    ///
    /// Without it, proxies come from the environment as Go programs (docker, skopeo, crane)
    /// read it: `HTTPS_PROXY` for HTTPS registries, `HTTP_PROXY` for plain-HTTP ones, each in
    /// upper case first, then lower case; `NO_PROXY` lists domains (with their subdomains),
    /// IP addresses, CIDR ranges, `host:port` entries, or `*`. HTTPS goes through a `CONNECT`
    /// tunnel; plain HTTP is forwarded. Credentials in the URL are sent as
    /// `Proxy-Authorization: Basic`.
    pub fn with_proxy(mut self, url: impl Into<String>) -> Self {
        self.proxy = Some(url.into());
        self
    }

    /// Reads the time from `clock` when caching bearer tokens and checking their expiry,
    /// instead of the system clock: tests move it past a token's lifetime rather than sleep.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Builds the client, reading credentials, certificates and proxy settings.
    pub async fn build(self) -> crate::Result<RegistryClient> {
        let (name, host) = endpoint(&self.registry);
        let credentials = match self.credentials {
            Some(credentials) => credentials,
            None => {
                let files = self
                    .credential_files
                    .unwrap_or_else(crate::credential_files);
                crate::credentials_from_files(&name, &files).await?
            }
        };
        let plain = self.plain_http.unwrap_or_else(|| is_loopback(&host));
        let tls = tls_config(
            &self.ca_files,
            self.skip_verify,
            self.client_identity.as_ref(),
        )?;
        let proxies = ProxyRules::from_env(self.proxy.as_deref(), |name| std::env::var(name).ok())?;
        Ok(RegistryClient {
            inner: Arc::new(Inner {
                base: format!("{}://{host}", if plain { "http" } else { "https" }),
                name,
                host,
                http: http_client(tls, proxies),
                insecure: self.plain_http == Some(true) || self.skip_verify,
                credentials: Mutex::new(credentials),
                tokens: Mutex::new(HashMap::new()),
                clock: self.clock,
                basic: AtomicBool::new(false),
                retry: self.retry,
                permits: Arc::new(Semaphore::new(self.max_concurrent_requests)),
                chunk_size: self.chunk_size,
                monolithic_limit: self.monolithic_limit,
                stall_timeout: self.stall_timeout,
                uploads: Mutex::new(HashMap::new()),
                refused_put_size: AtomicU64::new(u64::MAX),
                single_post_refused: AtomicBool::new(false),
            }),
        })
    }
}

/// The registry's name for credentials and display, and the host to connect to: Docker Hub's
/// names ([`docker_hub::ALIASES`]) go to its API host.
fn endpoint(registry: &str) -> (String, String) {
    let registry = registry.trim_end_matches('/');
    let registry = registry
        .strip_prefix("https://")
        .or_else(|| registry.strip_prefix("http://"))
        .unwrap_or(registry);
    if docker_hub::is_docker_hub(registry) {
        (docker_hub::NAME.to_owned(), docker_hub::API_HOST.to_owned())
    } else {
        (registry.to_owned(), registry.to_owned())
    }
}

fn tls_config(
    ca_files: &[PathBuf],
    skip_verify: bool,
    identity: Option<&(PathBuf, PathBuf)>,
) -> crate::Result<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| crate::Error::Config {
            what: "TLS".to_owned(),
            reason: e.to_string(),
        })?;
    let wants_identity = if skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        for file in ca_files {
            let certificates =
                CertificateDer::pem_file_iter(file).map_err(|e| crate::Error::Config {
                    what: format!("CA file {}", file.display()),
                    reason: e.to_string(),
                })?;
            for certificate in certificates {
                let certificate = certificate.map_err(|e| crate::Error::Config {
                    what: format!("CA file {}", file.display()),
                    reason: e.to_string(),
                })?;
                roots.add(certificate).map_err(|e| crate::Error::Config {
                    what: format!("CA file {}", file.display()),
                    reason: e.to_string(),
                })?;
            }
        }
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(LazyRoots::new(provider, roots)))
    };
    let config = match identity {
        None => wants_identity.with_no_client_auth(),
        Some((certificate, key)) => {
            use rustls::pki_types::PrivateKeyDer;
            let bad = |path: &PathBuf, reason: String| crate::Error::Config {
                what: format!("client identity {}", path.display()),
                reason,
            };
            let chain = CertificateDer::pem_file_iter(certificate)
                .map_err(|e| bad(certificate, e.to_string()))?
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| bad(certificate, e.to_string()))?;
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, e.to_string()))?;
            wants_identity
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| bad(certificate, e.to_string()))?
        }
    };
    Ok(config)
}

/// A client of one registry; cheap to clone (the connection pool and token cache are shared).
#[derive(Clone)]
pub struct RegistryClient {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// The registry's name (`docker.io`, `localhost:5000`).
    pub(crate) name: String,
    /// The host connected to.
    pub(crate) host: String,
    /// `scheme://host`.
    pub(crate) base: String,
    http: HttpClient,
    /// The user said this registry may be reached insecurely (plain HTTP asked for, or any
    /// certificate accepted): credentials may then go to a plain-HTTP token endpoint too.
    insecure: bool,
    credentials: Mutex<Credentials>,
    /// Bearer tokens by the scope they were asked for.
    tokens: Mutex<HashMap<String, CachedToken>>,
    /// What the token cache reads the time from.
    clock: Clock,
    /// The registry asked for basic credentials: send them up front.
    basic: AtomicBool,
    pub(crate) retry: RetryPolicy,
    permits: Arc<Semaphore>,
    pub(crate) chunk_size: usize,
    pub(crate) monolithic_limit: u64,
    /// The size above which this registry refused a whole-blob PUT with 413: larger blobs go
    /// in chunks from then on.
    pub(crate) refused_put_size: AtomicU64,
    /// The registry answered a single-POST upload (`POST ?digest=` with the body) with a new
    /// upload instead of storing it: POST+PUT from then on.
    pub(crate) single_post_refused: AtomicBool,
    stall_timeout: Duration,
    /// The latest URL of each upload this client started or resumed, by upload id: registries
    /// (the CNCF one among them) move an upload's URL with every answer and refuse old ones.
    pub(crate) uploads: Mutex<HashMap<String, Uri>>,
}

/// What a request was about: used to turn an error answer into the right typed error.
#[derive(Debug, Clone)]
pub(crate) enum Target<'a> {
    Blob(&'a Repository, &'a Digest),
    Manifest(&'a Repository, &'a str),
    Upload(&'a Repository, &'a str),
    Repository(&'a Repository),
    Catalog,
}

impl RegistryClient {
    /// A client of `registry` (`ghcr.io`, `localhost:5000`, `docker.io`), to configure and
    /// [`build`](RegistryClientBuilder::build).
    pub fn builder(registry: &str) -> RegistryClientBuilder {
        RegistryClientBuilder {
            registry: registry.to_owned(),
            credentials: None,
            credential_files: None,
            plain_http: None,
            ca_files: Vec::new(),
            skip_verify: false,
            retry: RetryPolicy::default(),
            max_concurrent_requests: 16,
            chunk_size: 8 << 20,
            monolithic_limit: u64::MAX,
            stall_timeout: Duration::from_secs(60),
            client_identity: None,
            proxy: None,
            clock: Clock::system(),
        }
    }

    /// Checks that the registry accepts this client's credentials, as `docker login` does:
    /// `GET /v2/`, authenticated as any request is (basic credentials, or a token without a
    /// scope from the registry's token endpoint). Wrong credentials are `UNAUTHORIZED` (or
    /// `DENIED`), whether the registry or its token endpoint refused them.
    pub async fn check_credentials(&self) -> oci_store::Result<()> {
        let mut call = Call::new(Method::GET, self.uri("/v2/")?);
        self.expect(&mut call, "", &[StatusCode::OK], Target::Catalog)
            .await?;
        Ok(())
    }

    /// The registry's name.
    pub fn registry(&self) -> &str {
        &self.inner.name
    }

    pub(crate) fn uri(&self, path_and_query: &str) -> Result<Uri> {
        let text = format!("{}{path_and_query}", self.inner.base);
        text.parse()
            .map_err(|e| self.backend(format!("cannot build the URL {text}: {e}")))
    }

    /// Resolves a `Location` (absolute or relative) against the registry.
    pub(crate) fn location(&self, response: &Response<Incoming>) -> Result<Uri> {
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                self.backend(format!(
                    "answer {} without a Location header",
                    response.status()
                ))
            })?;
        self.resolve(location)
    }

    /// The `PUT` that closes the upload a POST answered with, carrying the whole blob
    /// `descriptor` as `body`: the POST's `Location` plus `digest=`.
    pub(crate) fn closing_put(
        &self,
        response: &Response<Incoming>,
        descriptor: &Descriptor,
        body: Body,
    ) -> Result<Call> {
        let location = self.location(response)?.to_string();
        let separator = if location.contains('?') { '&' } else { '?' };
        let uri = self.resolve(&format!(
            "{location}{separator}digest={}",
            descriptor.digest
        ))?;
        Ok(Call::new(Method::PUT, uri)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_LENGTH, &descriptor.size.to_string())
            .body(body))
    }

    pub(crate) fn resolve(&self, location: &str) -> Result<Uri> {
        if location.starts_with("http://") || location.starts_with("https://") {
            location
                .parse()
                .map_err(|e| self.backend(format!("bad Location {location:?}: {e}")))
        } else if location.starts_with('/') {
            self.uri(location)
        } else {
            self.uri(&format!("/{location}"))
        }
    }

    pub(crate) fn backend(&self, message: String) -> Error {
        Error::Backend {
            backend: self.to_string(),
            message,
            source: None,
        }
    }

    fn is_own_host(&self, uri: &Uri) -> bool {
        uri.authority()
            .is_some_and(|a| a.as_str().eq_ignore_ascii_case(&self.inner.host))
    }

    /// The scope of a request on a repository.
    pub(crate) fn scope(repo: &Repository, actions: &str) -> String {
        format!("repository:{repo}:{actions}")
    }

    fn authorization(&self, scope: &str) -> Option<http::HeaderValue> {
        if self.inner.basic.load(Ordering::Relaxed) {
            let credentials = self
                .inner
                .credentials
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            return credentials.basic_header().and_then(|h| h.parse().ok());
        }
        let tokens = self
            .inner
            .tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        tokens
            .get(scope)
            .filter(|t| t.fresh(self.inner.clock.now()))
            .and_then(|t| format!("Bearer {}", t.token).parse().ok())
    }

    /// Sends `call`, authenticating when challenged and retrying transient failures of
    /// requests that can be sent again. `scope` is what the request needs ("" for none).
    pub(crate) async fn send(&self, call: &mut Call, scope: &str) -> Result<Response<Incoming>> {
        let _permit = Arc::clone(&self.inner.permits)
            .acquire_owned()
            .await
            .map_err(|_| self.backend("client closed".to_owned()))?;
        let mut authenticated = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let authorization = if self.is_own_host(&call.uri) {
                self.authorization(scope)
            } else {
                None
            };
            let request = call.build(authorization.as_ref()).ok_or_else(|| {
                self.backend("a streamed request body cannot be sent twice".to_owned())
            })?;
            // Attached to the request's future, not entered: a span entered across an await
            // stays entered on the thread while the future waits, and the tasks run there
            // meanwhile logged inside it (`request{..}:request{..}:..`).
            let span =
                tracing::debug_span!("request", method = %call.method, path = call.uri.path());
            let result = self.inner.http.request(request).instrument(span).await;
            let can_retry = call.retryable() && attempt < self.inner.retry.attempts;
            match result {
                Err(error) => {
                    let what = format!("{} {} on {self}", call.method, call.uri.path());
                    if let Some(permanent) = self.permanent(&what, &call.uri, &error) {
                        return Err(permanent);
                    }
                    if can_retry {
                        let delay = self.inner.retry.delay(attempt, None);
                        tracing::debug!(%error, ?delay, uri = %call.uri, "request failed; retrying");
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    return Err(Error::unavailable(what, error));
                }
                Ok(response) => {
                    let status = response.status();
                    tracing::debug!(
                        method = %call.method,
                        path = call.uri.path(),
                        status = status.as_u16(),
                        bytes = content_length(&response),
                        "response"
                    );
                    if status == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
                        return Err(self.proxy_refused(&call.uri));
                    }
                    if status == StatusCode::UNAUTHORIZED
                        && !authenticated
                        && call.body.replayable()
                    {
                        authenticated = true;
                        if self.authenticate(&response, scope).await? {
                            continue;
                        }
                        return Ok(response);
                    }
                    if transient(status) && can_retry {
                        let delay = self.inner.retry.delay(attempt, retry_after(&response));
                        tracing::debug!(status = status.as_u16(), ?delay, uri = %call.uri, "transient answer; retrying");
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    return Ok(response);
                }
            }
        }
    }

    /// The error of a request that failed in a way retrying will not mend, if it did.
    fn permanent(
        &self,
        what: &str,
        uri: &Uri,
        error: &hyper_util::client::legacy::Error,
    ) -> Option<Error> {
        match permanent_failure(error)? {
            Permanent::Tls(tls) => {
                let why = if matches!(tls, rustls::Error::InvalidCertificate(_)) {
                    format!(
                        "{what}: the TLS certificate of {} is not accepted ({tls}); not retried",
                        uri.authority().map_or("", |a| a.as_str())
                    )
                } else {
                    format!("{what}: TLS failed ({tls}); not retried")
                };
                Some(Error::unavailable(why, tls.clone()))
            }
            Permanent::Proxy(proxy) => {
                let message = format!("{what}: {proxy}");
                Some(match proxy {
                    // 407 is the answer the standard gives; tinyproxy answers wrong
                    // credentials with 401.
                    crate::proxy::ProxyError::Refused {
                        status: 401 | 407, ..
                    } => Error::Unauthorized {
                        message: format!(
                            "{message} (the proxy wants other credentials in its URL)"
                        ),
                    },
                    _ => Error::unavailable(message, proxy.to_string()),
                })
            }
        }
    }

    /// The error of a plain-HTTP request a proxy refused with 407.
    fn proxy_refused(&self, uri: &Uri) -> Error {
        let proxy = self.inner.http.proxy_for(uri).unwrap_or_default();
        Error::Unauthorized {
            message: format!(
                "{self}: the proxy {proxy} answered 407 Proxy Authentication Required to {uri} \
                 (the proxy wants other credentials in its URL)"
            ),
        }
    }

    /// Answers a 401's challenge: switches to basic credentials, or fetches a token for the
    /// scope. Returns whether the request is worth sending again.
    async fn authenticate(&self, response: &Response<Incoming>, scope: &str) -> Result<bool> {
        let Some(challenge) = response
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(parse_challenge)
        else {
            return Ok(false);
        };
        match challenge {
            Challenge::Basic => {
                let has_basic = self
                    .inner
                    .credentials
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .basic_header()
                    .is_some();
                if has_basic {
                    self.inner.basic.store(true, Ordering::Relaxed);
                }
                Ok(has_basic)
            }
            Challenge::Bearer {
                realm,
                service,
                scope: asked,
            } => {
                let mut scopes: Vec<String> = asked.into_iter().collect();
                for part in scope.split(' ').filter(|s| !s.is_empty()) {
                    if !scopes.iter().any(|s| s == part) {
                        scopes.push(part.to_owned());
                    }
                }
                let token = self
                    .fetch_token(&realm, service.as_deref(), &scopes)
                    .await?;
                self.inner
                    .tokens
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(scope.to_owned(), token);
                Ok(true)
            }
        }
    }

    /// Asks a token endpoint for a token: OAuth2 `refresh_token` grant with an identity token,
    /// else the Docker `GET` flow with basic credentials (or none).
    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<CachedToken> {
        let credentials = self
            .inner
            .credentials
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let unauthorized = |message: String| Error::Unauthorized { message };
        let sends_secret = match &credentials {
            Credentials::IdentityToken(_) => true,
            other => other.basic_header().is_some(),
        };
        if sends_secret {
            let uri: Uri = realm
                .parse()
                .map_err(|e| unauthorized(format!("bad token realm {realm:?}: {e}")))?;
            let plain = self.inner.base.starts_with("http://");
            if let Some(why) = realm_refusal(&uri, &self.inner.host, plain, self.inner.insecure) {
                return Err(unauthorized(format!(
                    "{self}: refusing to send credentials to the token realm {realm}: {why}"
                )));
            }
        }
        let mut call = match &credentials {
            Credentials::IdentityToken(refresh) => {
                let mut form = form_urlencoded::Serializer::new(String::new());
                form.append_pair("grant_type", "refresh_token");
                form.append_pair("refresh_token", refresh);
                form.append_pair("client_id", "hoist");
                if let Some(service) = service {
                    form.append_pair("service", service);
                }
                form.append_pair("scope", &scopes.join(" "));
                let uri: Uri = realm
                    .parse()
                    .map_err(|e| unauthorized(format!("bad token realm {realm:?}: {e}")))?;
                Call::new(Method::POST, uri)
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(Body::Bytes(Bytes::from(form.finish())))
            }
            _ => {
                let mut query = form_urlencoded::Serializer::new(String::new());
                if let Some(service) = service {
                    query.append_pair("service", service);
                }
                for scope in scopes {
                    query.append_pair("scope", scope);
                }
                let separator = if realm.contains('?') { '&' } else { '?' };
                let uri: Uri = format!("{realm}{separator}{}", query.finish())
                    .parse()
                    .map_err(|e| unauthorized(format!("bad token realm {realm:?}: {e}")))?;
                let mut call = Call::new(Method::GET, uri);
                if let Some(basic) = credentials.basic_header() {
                    call = call.header(header::AUTHORIZATION, &basic);
                }
                call
            }
        };
        let request = call
            .build(None)
            .ok_or_else(|| self.backend("token request".to_owned()))?;
        let response = match self.inner.http.request(request).await {
            Ok(response) => response,
            Err(e) => {
                let what = format!("cannot reach the token endpoint {realm}");
                return Err(self
                    .permanent(&what, &call.uri, &e)
                    .unwrap_or_else(|| Error::unavailable(what, e)));
            }
        };
        let status = response.status();
        if status == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
            return Err(self.proxy_refused(&call.uri));
        }
        let body = read_limited(response, 64 * 1024).await?;
        if !status.is_success() {
            return Err(unauthorized(format!(
                "{self}: the token endpoint {realm} answered {status}: {}",
                String::from_utf8_lossy(&body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            )));
        }
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
            unauthorized(format!(
                "{self}: the token endpoint {realm} answered something other than a token: {e}"
            ))
        })?;
        let (token, refresh) = parsed.into_cached(self.inner.clock.now()).ok_or_else(|| {
            unauthorized(format!(
                "{self}: the token endpoint {realm} answered without a token"
            ))
        })?;
        if let (Some(refresh), Credentials::IdentityToken(_)) = (refresh, &credentials) {
            // OAuth2 servers may rotate refresh tokens.
            *self
                .inner
                .credentials
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Credentials::IdentityToken(refresh);
        }
        Ok(token)
    }

    /// Sends a request and turns any answer other than `expected` into an error.
    pub(crate) async fn expect(
        &self,
        call: &mut Call,
        scope: &str,
        expected: &[StatusCode],
        target: Target<'_>,
    ) -> Result<Response<Incoming>> {
        let response = self.send(call, scope).await?;
        if expected.contains(&response.status()) {
            return Ok(response);
        }
        Err(self.error_from(response, target).await)
    }

    /// Turns an error answer into the typed error of what was asked; a HEAD's missing body is
    /// made up for by the target (a 404 on a blob is `BLOB_UNKNOWN`, not a guess).
    pub(crate) async fn error_from(
        &self,
        response: Response<Incoming>,
        target: Target<'_>,
    ) -> Error {
        let status = response.status();
        let wait = retry_after(&response);
        let body = read_limited(response, ERROR_BODY_LIMIT)
            .await
            .unwrap_or_default();
        let wire: Option<(String, String, Option<serde_json::Value>)> =
            serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("errors")?.as_array()?.first().cloned())
                .map(|e| {
                    (
                        e.get("code")
                            .and_then(|c| c.as_str())
                            .unwrap_or_default()
                            .to_owned(),
                        e.get("message")
                            .and_then(|m| m.as_str())
                            .unwrap_or_default()
                            .to_owned(),
                        e.get("detail").cloned().filter(|d| !d.is_null()),
                    )
                });
        let code = match &wire {
            Some((code, _, _)) => ErrorCode::from_wire(code),
            None => match (status.as_u16(), &target) {
                (404, Target::Blob(..)) => Some(ErrorCode::BlobUnknown),
                (404, Target::Manifest(..)) => Some(ErrorCode::ManifestUnknown),
                (404, Target::Upload(..)) => Some(ErrorCode::BlobUploadUnknown),
                (404, Target::Repository(..)) => Some(ErrorCode::NameUnknown),
                (401, _) => Some(ErrorCode::Unauthorized),
                (403, _) => Some(ErrorCode::Denied),
                (429, _) => Some(ErrorCode::TooManyRequests),
                (416, _) => Some(ErrorCode::RangeInvalid),
                _ => None,
            },
        };
        let message = wire
            .as_ref()
            .map(|(code, message, _)| {
                if message.is_empty() {
                    code.clone()
                } else {
                    message.clone()
                }
            })
            .unwrap_or_else(|| format!("{self} answered {status}"));
        match (code, &target) {
            (Some(ErrorCode::BlobUnknown), Target::Blob(repo, digest)) => Error::BlobUnknown {
                repo: (*repo).clone(),
                digest: (*digest).clone(),
            },
            (Some(ErrorCode::ManifestUnknown), Target::Manifest(repo, reference)) => {
                Error::ManifestUnknown {
                    repo: (*repo).clone(),
                    reference: (*reference).to_owned(),
                }
            }
            (
                Some(ErrorCode::NameUnknown),
                Target::Blob(repo, _)
                | Target::Manifest(repo, _)
                | Target::Upload(repo, _)
                | Target::Repository(repo),
            ) => Error::NameUnknown {
                repo: (*repo).clone(),
            },
            (Some(ErrorCode::BlobUploadUnknown), Target::Upload(repo, id)) => {
                Error::BlobUploadUnknown {
                    repo: (*repo).clone(),
                    id: (*id).to_owned(),
                }
            }
            (Some(ErrorCode::Unauthorized), _) => Error::Unauthorized {
                message: format!("{self}: {message}"),
            },
            (Some(ErrorCode::Denied), _) => Error::Denied {
                message: format!("{self}: {message}"),
            },
            (Some(ErrorCode::TooManyRequests), _) => Error::TooManyRequests { retry_after: wait },
            (Some(ErrorCode::RangeInvalid), _) => Error::RangeInvalid {
                target: format!("{target:?}"),
                reason: message,
            },
            (code, _) => Error::Remote {
                status: status.as_u16(),
                code,
                message: format!("{self}: {message}"),
                detail: wire.and_then(|(_, _, detail)| detail),
            },
        }
    }

    /// Opens a blob's content from `offset` on, following redirects (credentials never go to
    /// another host). Returns the response and the URL that answered.
    pub(crate) async fn open_blob(
        &self,
        repo: &Repository,
        digest: &Digest,
        range: Option<(u64, Option<u64>)>,
    ) -> Result<(Response<Incoming>, Uri)> {
        let mut uri = self.uri(&format!("/v2/{repo}/blobs/{digest}"))?;
        let scope = Self::scope(repo, "pull");
        for _ in 0..6 {
            let mut call = Call::new(Method::GET, uri.clone());
            if let Some((start, end)) = range {
                let value = match end {
                    Some(end) => format!("bytes={start}-{}", end.saturating_sub(1)),
                    None => format!("bytes={start}-"),
                };
                call = call.header(header::RANGE, &value);
            }
            let response = self.send(&mut call, &scope).await?;
            if response.status().is_redirection() {
                let next = self.location(&response)?;
                tracing::debug!(from = %uri, to = %next, "following a redirect");
                uri = next;
                continue;
            }
            let ok = if range.is_some() {
                [StatusCode::PARTIAL_CONTENT, StatusCode::OK]
            } else {
                [StatusCode::OK, StatusCode::OK]
            };
            if ok.contains(&response.status()) {
                return Ok((response, uri));
            }
            return Err(self.error_from(response, Target::Blob(repo, digest)).await);
        }
        Err(self.backend(format!("too many redirects fetching {digest}")))
    }

    /// A blob body that resumes with `Range` from the byte reached when the connection breaks.
    pub(crate) fn resuming_body(
        &self,
        repo: &Repository,
        digest: &Digest,
        first: Response<Incoming>,
        start: u64,
        end: u64,
    ) -> BlobBody {
        struct State {
            client: RegistryClient,
            repo: Repository,
            digest: Digest,
            body: Option<BoxStream<'static, Result<Bytes>>>,
            offset: u64,
            end: u64,
            resumes: u32,
            done: bool,
        }
        let state = State {
            client: self.clone(),
            repo: repo.clone(),
            digest: digest.clone(),
            body: Some(incoming_stream(first)),
            offset: start,
            end,
            resumes: DOWNLOAD_RESUMES,
            done: false,
        };
        stream::unfold(state, |mut state| async move {
            loop {
                if state.done {
                    return None;
                }
                let Some(body) = state.body.as_mut() else {
                    match state.client.open_blob(&state.repo, &state.digest, Some((state.offset, Some(state.end)))).await {
                        Ok((response, _)) if response.status() == StatusCode::PARTIAL_CONTENT && content_range_start(&response) == Some(state.offset) => {
                            state.body = Some(incoming_stream(response));
                            continue;
                        }
                        Ok((response, _)) => {
                            state.done = true;
                            let error = state.client.backend(format!(
                                "resuming {} at byte {}: the registry answered {} without the range asked",
                                state.digest,
                                state.offset,
                                response.status()
                            ));
                            return Some((Err(error), state));
                        }
                        Err(error) => {
                            state.done = true;
                            return Some((Err(error), state));
                        }
                    }
                };
                let stall = state.client.inner.stall_timeout;
                let next = match tokio::time::timeout(stall, body.next()).await {
                    Ok(next) => next,
                    Err(_) => Some(Err(Error::unavailable(
                        format!("downloading {}: no data for {stall:?}", state.digest),
                        std::io::Error::from(std::io::ErrorKind::TimedOut),
                    ))),
                };
                match next {
                    Some(Ok(chunk)) => {
                        state.offset += chunk.len() as u64;
                        return Some((Ok(chunk), state));
                    }
                    Some(Err(error)) if state.resumes > 0 && state.offset < state.end => {
                        state.resumes -= 1;
                        tracing::warn!(%error, digest = %state.digest, offset = state.offset, "download broke off; resuming");
                        state.body = None;
                    }
                    Some(Err(error)) => {
                        state.done = true;
                        return Some((Err(error), state));
                    }
                    None => return None,
                }
            }
        })
        .boxed()
        .into()
    }
}

/// Why credentials must not go to the token endpoint `realm`, if they must not. Over HTTPS
/// they may. Over plain HTTP anyone on the way reads them, so only where that exposes nothing
/// the registry itself does not: the registry is plain HTTP on this machine and the realm is
/// on its host (`hoist serve`'s own token endpoint, a test setup), or the user declared the
/// registry insecure, so that its own requests already cross the network unprotected.
pub(crate) fn realm_refusal(
    realm: &Uri,
    registry_host: &str,
    registry_plain: bool,
    insecure: bool,
) -> Option<&'static str> {
    match realm.scheme_str() {
        Some("https") => return None,
        Some("http") => {}
        _ => return Some("it is not an http:// or https:// URL"),
    }
    if insecure {
        return None;
    }
    if !registry_plain {
        return Some(
            "it is plain HTTP while the registry is HTTPS (the credentials would cross the \
             network unencrypted); only a registry declared insecure may use such a realm",
        );
    }
    let registry: Option<Uri> = format!("http://{registry_host}/").parse().ok();
    let registry_name = registry.as_ref().and_then(Uri::host).unwrap_or_default();
    let same_host = realm
        .host()
        .is_some_and(|h| h.eq_ignore_ascii_case(registry_name));
    if same_host && is_loopback(registry_host) {
        return None;
    }
    Some(
        "it is plain HTTP and not on the host of the registry, itself plain HTTP on loopback; \
         only a registry declared insecure may use such a realm",
    )
}

fn content_range_start(response: &Response<Incoming>) -> Option<u64> {
    let value = response
        .headers()
        .get(header::CONTENT_RANGE)?
        .to_str()
        .ok()?;
    value
        .trim()
        .strip_prefix("bytes ")?
        .split('-')
        .next()?
        .trim()
        .parse()
        .ok()
}

/// The total size stated by `Content-Range: bytes a-b/size`.
pub(crate) fn content_range_total(response: &Response<Incoming>) -> Option<u64> {
    let value = response
        .headers()
        .get(header::CONTENT_RANGE)?
        .to_str()
        .ok()?;
    value.rsplit_once('/')?.1.trim().parse().ok()
}

pub(crate) fn content_length(response: &Response<Incoming>) -> Option<u64> {
    response
        .headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

pub(crate) fn header_digest(response: &Response<Incoming>) -> Option<Digest> {
    Digest::parse(
        response
            .headers()
            .get("Docker-Content-Digest")?
            .to_str()
            .ok()?,
    )
    .ok()
}

pub(crate) fn header_media_type(response: &Response<Incoming>) -> Option<MediaType> {
    let value = response
        .headers()
        .get(header::CONTENT_TYPE)?
        .to_str()
        .ok()?;
    MediaType::parse(value.split(';').next()?.trim()).ok()
}

pub(crate) fn incoming_stream(response: Response<Incoming>) -> BoxStream<'static, Result<Bytes>> {
    response
        .into_body()
        .into_data_stream()
        .map(|chunk| chunk.map_err(|e| Error::unavailable("reading a registry's answer", e)))
        .boxed()
}

/// Reads a body, keeping at most `limit` bytes.
pub(crate) async fn read_limited(response: Response<Incoming>, limit: usize) -> Result<Bytes> {
    let mut body = incoming_stream(response);
    let mut buffer = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        let room = limit.saturating_sub(buffer.len());
        buffer.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if buffer.len() >= limit {
            break;
        }
    }
    Ok(buffer.freeze())
}

/// Reads a manifest body whole (at most [`MAX_MANIFEST_SIZE`]).
pub(crate) async fn read_manifest(
    client: &RegistryClient,
    response: Response<Incoming>,
) -> Result<Bytes> {
    let bytes = read_limited(response, MAX_MANIFEST_SIZE + 1).await?;
    if bytes.len() > MAX_MANIFEST_SIZE {
        return Err(client.backend(format!("a manifest larger than {MAX_MANIFEST_SIZE} bytes")));
    }
    Ok(bytes)
}

/// Where [`checked_body`] leaves the reason it failed a body: the transport reports only that
/// the request body broke off.
pub(crate) type BodyFailure = Arc<Mutex<Option<Error>>>;

/// Wraps a pushed body so that a body of the wrong length ends in an error, which aborts the
/// upload before the registry can commit it. The digest is the registry's to check: it
/// verifies every upload when it commits it (distribution-spec) and answers a mismatch with
/// `DIGEST_INVALID`, which the push returns; hashing here too would spend a core on what the
/// registry does anyway (a body that verifies itself, a store's read, still does).
pub(crate) fn checked_body(
    descriptor: &Descriptor,
    body: BlobBody,
    failure: BodyFailure,
) -> BlobBody {
    let mut check = Some(PushCheck::counting(descriptor));
    let record = move |error: Error| -> Error {
        let message = error.to_string();
        *failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(error);
        Error::Backend {
            backend: "oci-registry".to_owned(),
            message,
            source: None,
        }
    };
    body.map(Some)
        .chain(stream::once(async { None }))
        .filter_map(move |item| {
            let out = match item {
                Some(Ok(chunk)) => match check.as_mut().map(|c| c.update(&chunk)) {
                    Some(Err(error)) => Some(Err(record(error))),
                    _ => Some(Ok(chunk)),
                },
                // The body's own failure, including its own digest check
                // (`PushCheck::for_body`), is the reason to report.
                Some(Err(error)) => Some(Err(record(error))),
                None => check
                    .take()
                    .and_then(|c| c.finish().err())
                    .map(|e| Err(record(e))),
            };
            futures::future::ready(out)
        })
        .boxed()
        .into()
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryClient")
            .field("registry", &self.inner.name)
            .field("base", &self.inner.base)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "registry {}", self.inner.name)
    }
}

#[cfg(test)]
mod tests {
    use super::{endpoint, realm_refusal};

    #[test]
    fn credentials_go_to_a_plain_http_realm_only_where_nothing_more_is_exposed() {
        let allowed = |realm: &str, host: &str, plain: bool, insecure: bool| {
            realm_refusal(&realm.parse().unwrap(), host, plain, insecure).is_none()
        };
        // HTTPS realms always.
        assert!(allowed(
            "https://auth.example/token",
            "ghcr.io",
            false,
            false
        ));
        assert!(allowed(
            "https://auth.example/token",
            "127.0.0.1:5000",
            true,
            false
        ));
        // A plain-HTTP loopback registry's own host, whatever the port.
        assert!(allowed(
            "http://127.0.0.1:5000/token",
            "127.0.0.1:5000",
            true,
            false
        ));
        assert!(allowed(
            "http://127.0.0.1:5001/token",
            "127.0.0.1:5000",
            true,
            false
        ));
        assert!(allowed(
            "http://LOCALHOST:5000/token",
            "localhost:5000",
            true,
            false
        ));
        assert!(allowed(
            "http://[::1]:5000/token",
            "[::1]:5000",
            true,
            false
        ));
        // Another host, even on loopback, or from an HTTPS registry: refused.
        assert!(!allowed(
            "http://localhost:5000/token",
            "127.0.0.1:5000",
            true,
            false
        ));
        assert!(!allowed(
            "http://auth.example/token",
            "127.0.0.1:5000",
            true,
            false
        ));
        assert!(!allowed("http://ghcr.io/token", "ghcr.io", false, false));
        assert!(!allowed(
            "http://127.0.0.1:5000/token",
            "127.0.0.1:5000",
            false,
            false
        ));
        // A registry declared insecure (plain HTTP asked for, or any certificate accepted).
        assert!(allowed(
            "http://auth.lan/token",
            "registry.lan:5000",
            true,
            true
        ));
        assert!(allowed(
            "http://auth.lan/token",
            "registry.lan",
            false,
            true
        ));
        // Not HTTP at all.
        assert!(!allowed("ftp://auth.lan/token", "registry.lan", true, true));
        let why = realm_refusal(
            &"http://auth.example/token".parse().unwrap(),
            "ghcr.io",
            false,
            false,
        )
        .unwrap();
        assert!(
            why.contains("plain HTTP while the registry is HTTPS"),
            "{why}"
        );
    }

    #[test]
    fn docker_hub_names_go_to_its_registry_host() {
        for name in [
            "docker.io",
            "index.docker.io",
            "registry-1.docker.io",
            "https://index.docker.io/",
        ] {
            assert_eq!(
                endpoint(name),
                ("docker.io".to_owned(), "registry-1.docker.io".to_owned()),
                "{name}"
            );
        }
        assert_eq!(
            endpoint("ghcr.io"),
            ("ghcr.io".to_owned(), "ghcr.io".to_owned())
        );
        assert_eq!(
            endpoint("localhost:5000"),
            ("localhost:5000".to_owned(), "localhost:5000".to_owned())
        );
    }
}
