//! `RegistryClient`: a distribution-spec registry as an `OciInterface`.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Response, StatusCode, Uri, header};
use hyper::body::Incoming;
use oci_store::{Error, Result};
use oci_types::{Descriptor, Digest, Repository};
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::auth::{CachedToken, Credentials};
use crate::clock::Clock;
use crate::response::content_length;
use crate::transport::{
    Body, BodyProgress, Call, HttpClient, Permanent, RetryPolicy, answer_within, permanent_failure,
    retry_after, transient,
};

/// Every manifest type a pull accepts.
pub(crate) const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.v1+prettyjws, application/vnd.docker.distribution.manifest.v1+json;q=0.5, */*;q=0.1";

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
    pub(crate) http: HttpClient,
    /// The user said this registry may be reached insecurely (plain HTTP asked for, or any
    /// certificate accepted): credentials may then go to a plain-HTTP token endpoint too.
    pub(crate) insecure: bool,
    pub(crate) credentials: Mutex<Credentials>,
    /// Bearer tokens by the scope they were asked for.
    pub(crate) tokens: Mutex<HashMap<String, CachedToken>>,
    /// What the token cache reads the time from.
    pub(crate) clock: Clock,
    /// The registry asked for basic credentials: send them up front.
    pub(crate) basic: AtomicBool,
    pub(crate) retry: RetryPolicy,
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) chunk_size: usize,
    pub(crate) monolithic_limit: u64,
    /// The size above which this registry refused a whole-blob PUT with 413: larger blobs go
    /// in chunks from then on.
    pub(crate) refused_put_size: AtomicU64,
    /// The registry answered a single-POST upload (`POST ?digest=` with the body) with a new
    /// upload instead of storing it: POST+PUT from then on.
    pub(crate) single_post_refused: AtomicBool,
    pub(crate) stall_timeout: Duration,
    /// The latest URL of each upload this client started or resumed, by upload id: registries
    /// (the CNCF one among them) move an upload's URL with every answer and refuse old ones.
    pub(crate) uploads: Mutex<HashMap<String, Uri>>,
}

/// `uri` for a log line: without its query, where a storage's signed URL (a redirect's
/// `X-Amz-Signature`, a token) would otherwise end up in CI logs at debug level.
pub(crate) fn loggable(uri: &Uri) -> String {
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) => format!("{scheme}://{authority}{}", uri.path()),
        _ => uri.path().to_owned(),
    }
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

    /// Whether `uri` is on the registry's own host, reached at least as safely as the
    /// registry is: credentials go only there. The same host and port over plain HTTP, from a
    /// registry reached over HTTPS, is not (a `Location` through a TLS-terminating proxy
    /// would otherwise carry them in clear).
    pub(crate) fn is_own_host(&self, uri: &Uri) -> bool {
        let own_authority = uri
            .authority()
            .is_some_and(|a| a.as_str().eq_ignore_ascii_case(&self.inner.host));
        let as_safe = match uri.scheme_str() {
            Some(scheme) if scheme.eq_ignore_ascii_case("https") => true,
            Some(scheme) if scheme.eq_ignore_ascii_case("http") => {
                self.inner.base.starts_with("http://")
            }
            _ => false,
        };
        own_authority && as_safe
    }

    /// The scope of a request on a repository.
    pub(crate) fn scope(repo: &Repository, actions: &str) -> String {
        format!("repository:{repo}:{actions}")
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
            let progress = Arc::new(BodyProgress::new());
            let request = call
                .build(authorization.as_ref(), &progress)
                .ok_or_else(|| {
                    self.backend("a streamed request body cannot be sent twice".to_owned())
                })?;
            // Attached to the request's future, not entered: a span entered across an await
            // stays entered on the thread while the future waits, and the tasks run there
            // meanwhile logged inside it (`request{..}:request{..}:..`).
            let span =
                tracing::debug_span!("request", method = %call.method, path = call.uri.path());
            let stall = self.inner.stall_timeout;
            let answer = match call.body.file_span() {
                Some(file) => {
                    self.inner
                        .http
                        .send_file(request, file.clone(), Arc::clone(&progress))
                }
                None => self.inner.http.request(request),
            }
            .instrument(span);
            let result = answer_within(answer, &progress, stall).await;
            let can_retry = call.retryable() && attempt < self.inner.retry.attempts;
            match result {
                // Silent for the stall timeout, with the request's body (if any) not moving.
                None => {
                    let what = format!(
                        "{} {} on {self}: no answer within {stall:?}",
                        call.method,
                        call.uri.path()
                    );
                    if can_retry {
                        let delay = self.inner.retry.delay(attempt, None);
                        tracing::debug!(?delay, uri = %loggable(&call.uri), "no answer; retrying");
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    return Err(Error::unavailable(
                        what,
                        std::io::Error::from(std::io::ErrorKind::TimedOut),
                    ));
                }
                Some(Err(error)) => {
                    let what = format!("{} {} on {self}", call.method, call.uri.path());
                    if let Some(permanent) = self.permanent(&what, &call.uri, &*error) {
                        return Err(permanent);
                    }
                    if can_retry {
                        let delay = self.inner.retry.delay(attempt, None);
                        tracing::debug!(%error, ?delay, uri = %loggable(&call.uri), "request failed; retrying");
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    return Err(Error::unavailable(what, error));
                }
                Some(Ok(response)) => {
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
                    // Only the registry's own host is answered with credentials: another
                    // host (a redirect's, an upload's or a listing's `Location`) asking for
                    // them gets its 401 back as the answer, and its realm nothing.
                    if status == StatusCode::UNAUTHORIZED
                        && !authenticated
                        && call.body.replayable()
                        && self.is_own_host(&call.uri)
                    {
                        authenticated = true;
                        if self.authenticate(&response, scope).await? {
                            continue;
                        }
                        return Ok(response);
                    }
                    if transient(status) && can_retry {
                        let delay = self.inner.retry.delay(attempt, retry_after(&response));
                        tracing::debug!(status = status.as_u16(), ?delay, uri = %loggable(&call.uri), "transient answer; retrying");
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    return Ok(response);
                }
            }
        }
    }

    /// The error of a request that failed in a way retrying will not mend, if it did.
    pub(crate) fn permanent(
        &self,
        what: &str,
        uri: &Uri,
        error: &(dyn std::error::Error + 'static),
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
    pub(crate) fn proxy_refused(&self, uri: &Uri) -> Error {
        let proxy = self.inner.http.proxy_for(uri).unwrap_or_default();
        Error::Unauthorized {
            message: format!(
                "{self}: the proxy {proxy} answered 407 Proxy Authentication Required to {uri} \
                 (the proxy wants other credentials in its URL)"
            ),
        }
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
    use super::*;

    /// A logged URL keeps its host and path, never its query (a signed URL's signature).
    #[test]
    fn logged_urls_leave_out_their_query() {
        let uri: Uri = "https://bucket.example/blob?X-Amz-Signature=secret&X-Amz-Credential=k"
            .parse()
            .unwrap();
        assert_eq!(loggable(&uri), "https://bucket.example/blob");
        assert_eq!(loggable(&"/v2/a?b=c".parse().unwrap()), "/v2/a");
    }

    /// Credentials go to the registry's own host and port, over its scheme or HTTPS: never
    /// over plain HTTP from a registry reached over HTTPS, nor to another port or host.
    #[tokio::test]
    async fn own_host_is_the_same_authority_reached_at_least_as_safely() {
        let https = RegistryClient::builder("registry.example:5000")
            .with_plain_http(false)
            .build()
            .await
            .unwrap();
        let plain = RegistryClient::builder("registry.example:5000")
            .with_plain_http(true)
            .build()
            .await
            .unwrap();
        let uri = |text: &str| text.parse::<Uri>().unwrap();
        let cases = [
            ("https://registry.example:5000/v2/", true, true),
            ("https://REGISTRY.example:5000/v2/", true, true),
            ("http://registry.example:5000/v2/", false, true),
            ("https://registry.example:5001/v2/", false, false),
            ("https://registry.example/v2/", false, false),
            ("https://evil.example:5000/v2/", false, false),
            ("/v2/", false, false),
        ];
        for (text, for_https, for_plain) in cases {
            assert_eq!(https.is_own_host(&uri(text)), for_https, "{text} (https)");
            assert_eq!(plain.is_own_host(&uri(text)), for_plain, "{text} (plain)");
        }
    }
}
