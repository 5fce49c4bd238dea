//! Authentication: basic auth against an htpasswd file (bcrypt), and bearer tokens issued by a
//! built-in token endpoint through the Docker token flow (`WWW-Authenticate: Bearer realm=…`).

// A refused request is answered with its response: the `Err` is that response, built once
// per request and sent as it is, so boxing it would only add an allocation.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use http::{Method, Request, StatusCode, header};
use hyper::body::Incoming;
use oci_store::ErrorCode;
use oci_types::Digest;
use rand::Rng;

use crate::route::{Route, TOKEN_PATH};
use crate::wire::{self, Reply, set};
use crate::{Error, Result};

/// The `service` the token endpoint issues tokens for.
pub const TOKEN_SERVICE: &str = "hoist";

/// Users and their bcrypt password hashes, from an htpasswd file (`user:$2y$…`, as
/// `htpasswd -B` writes).
#[derive(Clone)]
pub struct Htpasswd {
    users: HashMap<String, String>,
}

impl std::fmt::Debug for Htpasswd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Htpasswd")
            .field("users", &self.users.len())
            .finish()
    }
}

impl Htpasswd {
    /// Reads an htpasswd file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            context: "cannot read htpasswd file",
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|reason| Error::Config {
            what: format!("htpasswd file {}", path.display()),
            reason,
        })
    }

    /// Reads htpasswd text; only bcrypt hashes are accepted (the others are weak or unsalted).
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let mut users = HashMap::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| format!("line {}: expected user:hash", number + 1))?;
            if !(hash.starts_with("$2y$") || hash.starts_with("$2a$") || hash.starts_with("$2b$")) {
                return Err(format!(
                    "line {}: the hash of {user:?} is not bcrypt (use htpasswd -B)",
                    number + 1
                ));
            }
            users.insert(user.to_owned(), hash.to_owned());
        }
        if users.is_empty() {
            return Err("no users".to_owned());
        }
        Ok(Self { users })
    }

    fn verify(&self, user: &str, password: &str) -> bool {
        self.users
            .get(user)
            .is_some_and(|hash| bcrypt::verify(password, hash).unwrap_or(false))
    }
}

/// How clients authenticate.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Auth {
    /// `Authorization: Basic` checked against the users of an htpasswd file.
    Basic(Htpasswd),
    /// Bearer tokens from the built-in token endpoint at `/token`. With users, the endpoint
    /// wants their basic credentials; without, it gives anyone a token (to exercise the flow).
    Token {
        /// Who may get a token.
        users: Option<Htpasswd>,
        /// How long a token lasts.
        lifetime: Duration,
    },
}

/// A token's grant: what it allows and until when.
#[derive(Debug, Clone)]
struct Grant {
    scopes: Vec<Scope>,
    expires: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Scope {
    kind: String,
    name: String,
    actions: Vec<String>,
}

impl Scope {
    /// Reads `repository:team/app:pull,push`.
    fn parse(text: &str) -> Option<Self> {
        let (kind, rest) = text.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        Some(Self {
            kind: kind.to_owned(),
            name: name.to_owned(),
            actions: actions
                .split(',')
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect(),
        })
    }

    fn covers(&self, needed: &Scope) -> bool {
        self.kind == needed.kind
            && self.name == needed.name
            && needed
                .actions
                .iter()
                .all(|a| self.actions.iter().any(|mine| mine == a || mine == "*"))
    }

    fn render(&self) -> String {
        format!("{}:{}:{}", self.kind, self.name, self.actions.join(","))
    }
}

/// Checks requests against the configured [`Auth`] and runs the token endpoint.
pub(crate) struct Authenticator {
    auth: Auth,
    /// Credentials already checked, by a hash of the header: bcrypt is slow on purpose, and
    /// clients send the same header with every request.
    verified: Mutex<HashMap<Digest, Instant>>,
    tokens: Mutex<HashMap<String, Grant>>,
    /// Refresh tokens issued by password grants, with their user.
    refresh_tokens: Mutex<HashMap<String, String>>,
}

/// How long a checked basic credential is trusted without checking it again.
const VERIFIED_FOR: Duration = Duration::from_secs(300);

impl Authenticator {
    pub(crate) fn new(auth: Auth) -> Self {
        Self {
            auth,
            verified: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            refresh_tokens: Mutex::new(HashMap::new()),
        }
    }

    /// Basic credentials of a request, checked against `users`.
    fn basic_ok(&self, users: &Htpasswd, request_header: Option<&str>) -> Option<String> {
        let encoded = request_header?.strip_prefix("Basic ")?.trim();
        let key = Digest::sha256(encoded.as_bytes());
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (user, password) = decoded.split_once(':')?;
        {
            let verified = self
                .verified
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if verified
                .get(&key)
                .is_some_and(|at| at.elapsed() < VERIFIED_FOR)
            {
                return Some(user.to_owned());
            }
        }
        if !users.verify(user, password) {
            return None;
        }
        let mut verified = self
            .verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        verified.retain(|_, at| at.elapsed() < VERIFIED_FOR);
        verified.insert(key, Instant::now());
        Some(user.to_owned())
    }

    /// Lets a request through, or answers 401 with the challenge that tells the client how to
    /// authenticate.
    pub(crate) fn authorize(
        &self,
        request: &Request<Incoming>,
        route: &Route<'_>,
        tls: bool,
    ) -> std::result::Result<(), Reply> {
        let authorization = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        match &self.auth {
            Auth::Basic(users) => {
                if self.basic_ok(users, authorization).is_some() {
                    return Ok(());
                }
                let mut response = wire::refusal(
                    StatusCode::UNAUTHORIZED,
                    ErrorCode::Unauthorized,
                    "authentication required",
                );
                set(
                    &mut response,
                    header::WWW_AUTHENTICATE,
                    "Basic realm=\"hoist\"",
                );
                Err(response)
            }
            Auth::Token { .. } => {
                let needed = needed_scope(request.method(), route);
                let token = authorization
                    .and_then(|a| a.strip_prefix("Bearer "))
                    .map(str::trim);
                let grant = token.and_then(|t| {
                    let mut tokens = self
                        .tokens
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    tokens.retain(|_, g| g.expires > Instant::now());
                    tokens.get(t).cloned()
                });
                let allowed = grant.as_ref().is_some_and(|g| {
                    needed
                        .as_ref()
                        .is_none_or(|n| g.scopes.iter().any(|s| s.covers(n)))
                });
                if allowed {
                    return Ok(());
                }
                let host = request
                    .headers()
                    .get(header::HOST)
                    .and_then(|v| v.to_str().ok())
                    .or_else(|| request.uri().authority().map(|a| a.as_str()))
                    .unwrap_or("localhost");
                let scheme = if tls { "https" } else { "http" };
                let mut challenge = format!(
                    "Bearer realm=\"{scheme}://{host}{TOKEN_PATH}\",service=\"{TOKEN_SERVICE}\""
                );
                if let Some(needed) = &needed {
                    challenge.push_str(&format!(",scope=\"{}\"", needed.render()));
                }
                if grant.is_some() {
                    challenge.push_str(",error=\"insufficient_scope\"");
                }
                let mut response = wire::refusal(
                    StatusCode::UNAUTHORIZED,
                    ErrorCode::Unauthorized,
                    "a token with the right scope is required",
                );
                set(&mut response, header::WWW_AUTHENTICATE, &challenge);
                Err(response)
            }
        }
    }

    /// `GET /token?service=…&scope=…` (with basic credentials when users are configured):
    /// issues a token for the scopes asked.
    pub(crate) async fn token_endpoint(
        &self,
        request: Request<Incoming>,
    ) -> std::result::Result<Reply, Reply> {
        let Auth::Token { users, lifetime } = &self.auth else {
            return Err(wire::refusal(
                StatusCode::NOT_FOUND,
                ErrorCode::Unsupported,
                "token auth is not enabled",
            ));
        };
        let unauthorized = |message: &str| {
            let mut response =
                wire::refusal(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message);
            set(
                &mut response,
                header::WWW_AUTHENTICATE,
                "Basic realm=\"hoist\"",
            );
            response
        };
        let (scopes, refresh_token) = match *request.method() {
            // The Docker flow: scopes in the query, basic credentials in the header.
            Method::GET => {
                if let Some(users) = users {
                    let authorization = request
                        .headers()
                        .get(header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok());
                    if self.basic_ok(users, authorization).is_none() {
                        return Err(unauthorized("credentials required for a token"));
                    }
                }
                let query = request.uri().query().unwrap_or_default().to_owned();
                (scopes_of(form_urlencoded::parse(query.as_bytes())), None)
            }
            // OAuth2: a form with a password or refresh_token grant; a password grant also
            // gets a refresh token (what `docker login` keeps as an identity token).
            Method::POST => {
                let body = http_body_util::BodyExt::collect(request.into_body())
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let form: Vec<(String, String)> =
                    form_urlencoded::parse(&body).into_owned().collect();
                let field = |name: &str| {
                    form.iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.as_str())
                };
                match field("grant_type") {
                    Some("password") => {
                        let (user, password) = (
                            field("username").unwrap_or_default(),
                            field("password").unwrap_or_default(),
                        );
                        if users.as_ref().is_some_and(|u| !u.verify(user, password)) {
                            return Err(unauthorized("wrong user name or password"));
                        }
                        let refresh = random_token();
                        self.refresh_tokens
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .insert(refresh.clone(), user.to_owned());
                        (scopes_of(form_urlencoded::parse(&body)), Some(refresh))
                    }
                    Some("refresh_token") => {
                        let known = field("refresh_token").is_some_and(|t| {
                            self.refresh_tokens
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .contains_key(t)
                        });
                        if !known {
                            return Err(unauthorized("unknown refresh token"));
                        }
                        (scopes_of(form_urlencoded::parse(&body)), None)
                    }
                    other => {
                        return Err(wire::refusal(
                            StatusCode::BAD_REQUEST,
                            ErrorCode::Unsupported,
                            &format!(
                                "grant_type {other:?} is not supported (password or refresh_token)"
                            ),
                        ));
                    }
                }
            }
            _ => {
                return Err(wire::refusal(
                    StatusCode::METHOD_NOT_ALLOWED,
                    ErrorCode::Unsupported,
                    "the token endpoint takes GET or POST",
                ));
            }
        };
        let token = random_token();
        let grant = Grant {
            scopes,
            expires: Instant::now() + *lifetime,
        };
        self.tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(token.clone(), grant);
        let mut answer = serde_json::json!({
            "token": token,
            "access_token": token,
            "expires_in": lifetime.as_secs(),
        });
        if let Some(refresh) = refresh_token {
            answer["refresh_token"] = serde_json::Value::from(refresh);
        }
        Ok(wire::json(StatusCode::OK, &answer, "application/json"))
    }
}

fn random_token() -> String {
    format!(
        "{:032x}{:032x}",
        rand::rng().random::<u128>(),
        rand::rng().random::<u128>()
    )
}

/// The scopes of `scope` parameters (each may hold several, separated by spaces).
fn scopes_of<'a>(
    pairs: impl Iterator<Item = (std::borrow::Cow<'a, str>, std::borrow::Cow<'a, str>)>,
) -> Vec<Scope> {
    pairs
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').filter_map(Scope::parse).collect::<Vec<_>>())
        .collect()
}

/// The scope a request needs: pull to read, push to write, delete to delete; the catalog needs
/// `registry:catalog:*`; `/v2/` needs only a valid token.
fn needed_scope(method: &Method, route: &Route<'_>) -> Option<Scope> {
    let name = match route {
        Route::Base | Route::Token => return None,
        Route::Catalog => {
            return Some(Scope {
                kind: "registry".to_owned(),
                name: "catalog".to_owned(),
                actions: vec!["*".to_owned()],
            });
        }
        Route::Blob { name, .. }
        | Route::Manifest { name, .. }
        | Route::Uploads { name }
        | Route::Upload { name, .. }
        | Route::Tags { name }
        | Route::Referrers { name, .. } => name,
    };
    let action = match *method {
        Method::GET | Method::HEAD => "pull",
        Method::DELETE if !matches!(route, Route::Upload { .. }) => "delete",
        _ => "push",
    };
    Some(Scope {
        kind: "repository".to_owned(),
        name: (*name).to_owned(),
        actions: vec![action.to_owned()],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_cover_what_they_name() {
        let granted = Scope::parse("repository:team/app:pull,push").unwrap();
        assert!(granted.covers(&Scope::parse("repository:team/app:pull").unwrap()));
        assert!(granted.covers(&Scope::parse("repository:team/app:push").unwrap()));
        assert!(!granted.covers(&Scope::parse("repository:team/app:delete").unwrap()));
        assert!(!granted.covers(&Scope::parse("repository:team/other:pull").unwrap()));
        assert!(
            Scope::parse("registry:catalog:*")
                .unwrap()
                .covers(&Scope::parse("registry:catalog:*").unwrap())
        );
        assert_eq!(Scope::parse("nonsense"), None);
    }

    #[test]
    fn htpasswd_takes_bcrypt_only() {
        let hash = bcrypt::hash("secret", 4).unwrap();
        let users = Htpasswd::parse(&format!("# comment\nalice:{hash}\n")).unwrap();
        assert!(users.verify("alice", "secret"));
        assert!(!users.verify("alice", "wrong"));
        assert!(!users.verify("bob", "secret"));
        assert!(
            Htpasswd::parse("alice:{SHA}abc")
                .unwrap_err()
                .contains("not bcrypt")
        );
        assert!(Htpasswd::parse("no colon").unwrap_err().contains("line 1"));
        assert!(Htpasswd::parse("").is_err());
    }
}
