//! [`RegistryClientBuilder`]: how a [`RegistryClient`] reaches a registry (host, plain HTTP or
//! TLS with which roots and client identity, proxy) and whom it presents (credentials).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oci_types::docker_hub;
use tokio::sync::Semaphore;

use crate::auth::Credentials;
use crate::client::{Inner, RegistryClient};
use crate::clock::Clock;
use crate::proxy::ProxyRules;
use crate::transport::{RetryPolicy, http_client, is_loopback};
use crate::trust::{AcceptAnyCertificate, LazyRoots};

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

    /// Limits the requests in flight to this registry (at least 1; more than a quarter of
    /// `usize::MAX`, which a semaphore cannot count, is that).
    pub fn with_max_concurrent_requests(mut self, count: usize) -> Self {
        self.max_concurrent_requests = count.clamp(1, Semaphore::MAX_PERMITS);
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

    /// How long the registry (or its token endpoint, or a proxy on the way) may stay silent:
    /// a blob download that brings no byte for this long counts as broken (and is resumed with
    /// `Range`, like a dropped connection), and so does an answer's body (a manifest, a
    /// listing) that stops. A request waits five times this for its answer (a pull-through
    /// cache may fetch a whole blob before it answers), then fails as unreachable (and is sent
    /// again where it can be). An upload that keeps moving is waited for however long it
    /// takes; once it is sent, the registry has this long and a second more for every 10 MiB
    /// of it to commit it. Default: 60 seconds.
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
}

#[cfg(test)]
mod tests {
    use super::endpoint;

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
