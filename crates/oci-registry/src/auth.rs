//! Authentication: who the client is, `WWW-Authenticate` challenges and how they are answered
//! (basic credentials, or bearer tokens fetched per scope and cached until they expire), and
//! where credentials may be sent. Credentials come from the caller or from the files
//! [`DockerConfig`](crate::DockerConfig) reads.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Response, StatusCode, Uri, header};
use hyper::body::Incoming;
use oci_store::{Error, Result};
use serde::Deserialize;

use crate::client::RegistryClient;
use crate::response::read_limited;
use crate::transport::{Body, BodyProgress, Call, answer_within, is_loopback};

/// Who the client is to a registry.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credentials {
    /// Nobody: anonymous pulls.
    #[default]
    Anonymous,
    /// A user name and password (or personal access token).
    Basic {
        /// The user.
        username: String,
        /// The password.
        password: String,
    },
    /// An identity token (OAuth2 refresh token), as `docker login` stores for some registries.
    IdentityToken(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        match self {
            Self::Anonymous => f.write_str("Anonymous"),
            Self::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Self::IdentityToken(_) => f.write_str("IdentityToken(***)"),
        }
    }
}

impl Credentials {
    /// The `Authorization: Basic` value, for basic credentials.
    pub(crate) fn basic_header(&self) -> Option<String> {
        match self {
            Self::Basic { username, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            )),
            _ => None,
        }
    }
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Reads a `WWW-Authenticate` header: `Basic realm="…"` or
/// `Bearer realm="…",service="…",scope="…"` (quoted or bare values, any order).
pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header
        .split_once(char::is_whitespace)
        .unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(rest);
    Some(Challenge::Bearer {
        realm: params.get("realm")?.clone(),
        service: params.get("service").cloned(),
        scope: params.get("scope").cloned(),
    })
}

/// `key="value", key2=value2` with commas allowed inside quotes.
fn parse_params(text: &str) -> HashMap<String, String> {
    let mut params = HashMap::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars
            .by_ref()
            .take_while(|c| *c != '=')
            .collect::<String>()
            .trim()
            .to_ascii_lowercase();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = chars
                .by_ref()
                .take_while(|c| *c != ',')
                .collect::<String>()
                .trim()
                .to_owned();
        }
        params.insert(key, value);
    }
    params
}

/// A bearer token and when it stops being good.
#[derive(Debug, Clone)]
pub(crate) struct CachedToken {
    pub(crate) token: String,
    pub(crate) expires: Instant,
    /// How long before expiry the token is renewed: five seconds, or half its lifetime for
    /// shorter-lived tokens (so that a token is always good right after it is fetched).
    pub(crate) margin: Duration,
}

impl CachedToken {
    /// Tokens are renewed a little before they expire, so none is refused mid-request.
    /// `now` comes from the client's [`Clock`](crate::Clock).
    pub(crate) fn fresh(&self, now: Instant) -> bool {
        now + self.margin < self.expires
    }
}

/// The longest a bearer token is cached, whatever its endpoint says it lasts.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// A token endpoint's answer.
#[derive(Debug, Deserialize)]
pub(crate) struct TokenResponse {
    #[serde(default)]
    pub(crate) token: Option<String>,
    #[serde(default)]
    pub(crate) access_token: Option<String>,
    #[serde(default)]
    pub(crate) expires_in: Option<u64>,
    #[serde(default)]
    pub(crate) refresh_token: Option<String>,
}

impl TokenResponse {
    /// The token to cache, received at `now` (from the client's [`Clock`](crate::Clock)), and
    /// the refresh token if the endpoint rotated it.
    pub(crate) fn into_cached(self, now: Instant) -> Option<(CachedToken, Option<String>)> {
        let token = self.access_token.or(self.token).filter(|t| !t.is_empty())?;
        // The distribution token spec: 60 seconds when not stated. A token endpoint's word is
        // outside input: a lifetime beyond a day is kept for a day (the token is fetched
        // again then), so that no answer can overflow the expiry time.
        let lifetime =
            Duration::from_secs(self.expires_in.unwrap_or(60).max(1)).min(MAX_TOKEN_LIFETIME);
        Some((
            CachedToken {
                token,
                expires: now + lifetime,
                margin: Duration::from_secs(5).min(lifetime / 2),
            },
            self.refresh_token,
        ))
    }
}

impl RegistryClient {
    pub(crate) fn authorization(&self, scope: &str) -> Option<http::HeaderValue> {
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

    /// Answers a 401's challenge: switches to basic credentials, or fetches a token for the
    /// scope. Returns whether the request is worth sending again.
    pub(crate) async fn authenticate(
        &self,
        response: &Response<Incoming>,
        scope: &str,
    ) -> Result<bool> {
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
        let progress = Arc::new(BodyProgress::new());
        let request = call
            .build(None, &progress)
            .ok_or_else(|| self.backend("token request".to_owned()))?;
        let stall = self.inner.stall_timeout;
        let answer = answer_within(self.inner.http.request(request), &progress, stall).await;
        let response = match answer {
            Some(Ok(response)) => response,
            Some(Err(e)) => {
                let what = format!("cannot reach the token endpoint {realm}");
                return Err(self
                    .permanent(&what, &call.uri, &*e)
                    .unwrap_or_else(|| Error::unavailable(what, e)));
            }
            None => {
                return Err(Error::unavailable(
                    format!("the token endpoint {realm} did not answer within {stall:?}"),
                    std::io::Error::from(std::io::ErrorKind::TimedOut),
                ));
            }
        };
        let status = response.status();
        if status == StatusCode::PROXY_AUTHENTICATION_REQUIRED {
            return Err(self.proxy_refused(&call.uri));
        }
        let body = read_limited(response, 64 * 1024, stall).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_read_as_registries_send_them() {
        assert_eq!(
            parse_challenge("Basic realm=\"hoist\""),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/ubuntu:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".to_owned(),
                service: Some("registry.docker.io".to_owned()),
                scope: Some("repository:library/ubuntu:pull".to_owned()),
            })
        );
        assert_eq!(
            parse_challenge(
                r#"bearer scope="repository:a/b:pull,push", realm=https://ghcr.io/token"#
            ),
            Some(Challenge::Bearer {
                realm: "https://ghcr.io/token".to_owned(),
                service: None,
                scope: Some("repository:a/b:pull,push".to_owned()),
            })
        );
        assert_eq!(
            parse_challenge("Bearer service=\"x\""),
            None,
            "a bearer challenge needs a realm"
        );
        assert_eq!(parse_challenge("Negotiate abc"), None);
    }

    #[test]
    fn a_token_endpoint_cannot_overflow_the_expiry_time() {
        let now = Instant::now();
        let answer = |json: &str| {
            serde_json::from_slice::<TokenResponse>(json.as_bytes())
                .unwrap()
                .into_cached(now)
        };
        // u64::MAX seconds after now is past what an `Instant` can hold: kept for a day.
        let (token, _) = answer(r#"{"token":"t","expires_in":18446744073709551615}"#).unwrap();
        assert_eq!(token.expires, now + MAX_TOKEN_LIFETIME);
        assert!(token.fresh(now));
        assert!(!token.fresh(now + MAX_TOKEN_LIFETIME));
        let (token, _) = answer(r#"{"access_token":"a","expires_in":300}"#).unwrap();
        assert_eq!(token.expires, now + Duration::from_secs(300));
        let (token, _) = answer(r#"{"token":"t","expires_in":0}"#).unwrap();
        assert_eq!(token.expires, now + Duration::from_secs(1));
        assert!(token.fresh(now), "good right after it is fetched");
        let (token, _) = answer(r#"{"token":"t"}"#).unwrap();
        assert_eq!(token.expires, now + Duration::from_secs(60));
        assert!(answer(r#"{"token":""}"#).is_none());
    }

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
}
