//! Authentication: who the client is, `WWW-Authenticate` challenges, and bearer tokens fetched
//! per scope and cached until they expire. Credentials come from the caller or from the files
//! [`DockerConfig`](crate::DockerConfig) reads.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Deserialize;

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
        // The distribution token spec: 60 seconds when not stated.
        let lifetime = Duration::from_secs(self.expires_in.unwrap_or(60).max(1));
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
}
