//! The token endpoint (`/token`): the Docker token flow's `GET` and OAuth2's `POST`.

// A refused request is answered with its response (see the parent module).
#![allow(clippy::result_large_err)]

use http::{Method, Request, StatusCode, header};
use hyper::body::Incoming;
use oci_store::ErrorCode;
use rand::Rng;

use super::*;
use crate::body::{MinRate, read_whole};
use crate::wire::{self, Reply};

impl Authenticator {
    /// `GET /token?service=…&scope=…` (with basic credentials, or anonymous) or the OAuth2
    /// `POST /token`: issues a token for the scopes asked, narrowed to what the user may do.
    pub(crate) async fn token_endpoint(
        &self,
        request: Request<Incoming>,
        rate: MinRate,
    ) -> std::result::Result<Reply, Reply> {
        let Scheme::Token { lifetime } = self.scheme else {
            return Err(wire::refusal(
                StatusCode::NOT_FOUND,
                ErrorCode::Unsupported,
                "token auth is not enabled",
            ));
        };
        let (user, requested, refresh_token) = match *request.method() {
            // The Docker flow: scopes in the query, basic credentials in the header.
            Method::GET => {
                let authorization = request
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok());
                let user = match &self.users {
                    Some(_) => self
                        .basic_user(authorization)
                        .await
                        .map_err(|()| basic_challenge("wrong user name or password"))?,
                    // Without users, credentials name nobody: every request is anonymous.
                    None => None,
                };
                let query = request.uri().query().unwrap_or_default().to_owned();
                (
                    user,
                    scopes_of(form_urlencoded::parse(query.as_bytes())),
                    None,
                )
            }
            // OAuth2: a form with a password or refresh_token grant; a password grant also
            // gets a refresh token (what `docker login` keeps as an identity token).
            Method::POST => {
                let _slot = self.token_forms.try_acquire().map_err(|_| {
                    wire::error(&oci_store::Error::TooManyRequests {
                        retry_after: Some(Duration::from_secs(1)),
                    })
                })?;
                let body = read_form(request, rate).await?;
                let form: Vec<(String, String)> =
                    form_urlencoded::parse(&body).into_owned().collect();
                let field = |name: &str| {
                    form.iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.as_str())
                };
                let requested = scopes_of(form_urlencoded::parse(&body));
                match field("grant_type") {
                    Some("password") => {
                        let (user, password) = (
                            field("username").unwrap_or_default(),
                            field("password").unwrap_or_default(),
                        );
                        let user = match &self.users {
                            Some(_) if self.check_password(user, password).await => {
                                Some(user.to_owned())
                            }
                            Some(_) => return Err(basic_challenge("wrong user name or password")),
                            None => None,
                        };
                        let expires = self.now() + self.refresh_lifetime;
                        let refresh = self.signer.issue(Kind::Refresh, &user, expires);
                        (user, requested, Some(refresh))
                    }
                    Some("refresh_token") => {
                        let known = field("refresh_token").and_then(|t| {
                            self.signer
                                .open::<Option<String>>(Kind::Refresh, t, self.now())
                        });
                        let Some(user) = known else {
                            return Err(basic_challenge("unknown or expired refresh token"));
                        };
                        (user, requested, None)
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
        // With users and nothing for anonymous requests, a token without credentials would
        // be worthless: ask for them instead, so that clients prompt for a login.
        if user.is_none() && self.users.is_some() && !self.policy.allows_anonymous_anything() {
            return Err(basic_challenge("credentials required for a token"));
        }
        let asked = requested.len();
        let scopes = self.narrow(user.as_deref(), requested);
        let scope_text = scopes
            .iter()
            .map(Scope::render)
            .collect::<Vec<_>>()
            .join(" ");
        tracing::debug!(
            user = user.as_deref().unwrap_or("(anonymous)"),
            asked,
            granted = %scope_text,
            "token issued"
        );
        let token = self
            .signer
            .issue(Kind::Access, Grant { user, scopes }, self.now() + lifetime);
        let mut answer = serde_json::json!({
            "token": token,
            "access_token": token,
            "expires_in": lifetime.as_secs(),
            // OAuth2 (RFC 6749, 5.1) names the scope granted when it differs from the request.
            "scope": scope_text,
        });
        if let Some(refresh) = refresh_token {
            answer["refresh_token"] = serde_json::Value::from(refresh);
        }
        Ok(wire::json(StatusCode::OK, &answer, "application/json"))
    }
}

/// The body of a `POST /token`, at most [`MAX_TOKEN_REQUEST_SIZE`] bytes (a larger
/// `Content-Length` is refused before anything is read, and a body without one is cut off),
/// arriving at the server's minimum `rate` for bodies (408 below it).
pub(super) async fn read_form(
    request: Request<Incoming>,
    rate: MinRate,
) -> std::result::Result<bytes::Bytes, Reply> {
    let too_large = || {
        wire::refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::SizeInvalid,
            &format!("a token request is at most {MAX_TOKEN_REQUEST_SIZE} bytes"),
        )
    };
    let length = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if length.is_some_and(|length| length > MAX_TOKEN_REQUEST_SIZE) {
        return Err(too_large());
    }
    read_whole(request.into_body(), MAX_TOKEN_REQUEST_SIZE, rate)
        .await
        .map_err(|(error, watch)| {
            if watch.overflowed() {
                too_large()
            } else if watch.too_slow() {
                wire::refusal(
                    StatusCode::REQUEST_TIMEOUT,
                    ErrorCode::Unsupported,
                    &format!(
                        "the token request arrived slower than {} bytes/s over {:?}: cut off",
                        rate.bytes_per_second, rate.window
                    ),
                )
            } else {
                wire::refusal(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::Unsupported,
                    &format!("cannot read the token request: {error}"),
                )
            }
        })
}

pub(super) fn random_token() -> String {
    format!(
        "{:032x}{:032x}",
        rand::rng().random::<u128>(),
        rand::rng().random::<u128>()
    )
}

/// The most scopes one token is issued for. Clients ask for one to three (a pull, a push, the
/// source of a mount); each granted scope is carried in the token, so a request naming
/// thousands would make a token too large to send back as a header.
pub(super) const MAX_SCOPES: usize = 16;

/// The scopes of `scope` parameters (each may hold several, separated by spaces): the first
/// [`MAX_SCOPES`] that are well formed, repositories named as repositories are.
pub(super) fn scopes_of<'a>(
    pairs: impl Iterator<Item = (std::borrow::Cow<'a, str>, std::borrow::Cow<'a, str>)>,
) -> Vec<Scope> {
    pairs
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').filter_map(Scope::parse).collect::<Vec<_>>())
        .filter(|scope| {
            scope.kind != "repository" || oci_types::Repository::parse(&scope.name).is_ok()
        })
        .take(MAX_SCOPES)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_request_names_a_bounded_number_of_well_formed_scopes() {
        let query: String = (0..1000)
            .map(|n| format!("scope=repository:team/app{n}:pull&"))
            .collect();
        let scopes = scopes_of(form_urlencoded::parse(query.as_bytes()));
        assert_eq!(scopes.len(), MAX_SCOPES);
        assert_eq!(scopes[0].name, "team/app0");
        let scopes = scopes_of(form_urlencoded::parse(
            b"scope=repository:Bad..Name:pull repository:ok/x:push registry:catalog:*",
        ));
        let names: Vec<&str> = scopes.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["ok/x", "catalog"]);
    }
}
