//! Authentication: `WWW-Authenticate` challenges, bearer tokens fetched per scope and cached
//! until they expire, and credentials from docker's `config.json` (with credential helpers) and
//! the containers `auth.json`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Deserialize;

use crate::{Error, Result};

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

// ---- credentials from files ----

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default)]
    creds_store: Option<String>,
    #[serde(default)]
    cred_helpers: HashMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// The keys a registry may be stored under in `auths`: docker writes `https://index.docker.io/v1/`
/// for Docker Hub and plain or URL-shaped host names elsewhere.
fn keys_for(registry: &str) -> Vec<String> {
    let mut keys = vec![
        registry.to_owned(),
        format!("https://{registry}"),
        format!("http://{registry}"),
        format!("https://{registry}/v1/"),
        format!("https://{registry}/v2/"),
    ];
    if matches!(
        registry,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    ) {
        keys.extend(
            [
                "https://index.docker.io/v1/",
                "index.docker.io",
                "docker.io",
                "registry-1.docker.io",
            ]
            .map(str::to_owned),
        );
    }
    keys
}

fn read_config(path: &Path) -> Result<Option<ConfigFile>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Config {
                what: format!("credentials file {}", path.display()),
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io {
            context: "cannot read credentials file",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Where credentials are looked for, in order: the containers `auth.json`
/// (`$REGISTRY_AUTH_FILE`, else `$XDG_RUNTIME_DIR/containers/auth.json`), then docker's
/// `config.json` (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`).
pub fn credential_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    match std::env::var_os("REGISTRY_AUTH_FILE") {
        Some(file) => files.push(PathBuf::from(file)),
        None => {
            if let Some(runtime) = std::env::var_os("XDG_RUNTIME_DIR") {
                files.push(Path::new(&runtime).join("containers/auth.json"));
            }
        }
    }
    match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) => files.push(Path::new(&dir).join("config.json")),
        None => {
            if let Some(home) = std::env::var_os("HOME") {
                files.push(Path::new(&home).join(".docker/config.json"));
            }
        }
    }
    files
}

/// Finds credentials for `registry` in `files` (see [`credential_files`]): a credential helper
/// named for the registry (`credHelpers`), else an `auths` entry, else the default helper
/// (`credsStore`). Anonymous when nothing matches.
pub async fn credentials_from_files(registry: &str, files: &[PathBuf]) -> Result<Credentials> {
    for file in files {
        let Some(config) = read_config(file)? else {
            continue;
        };
        let keys = keys_for(registry);
        if let Some(helper) = keys.iter().find_map(|k| config.cred_helpers.get(k)) {
            return helper_credentials(helper, registry).await;
        }
        if let Some(entry) = keys.iter().find_map(|k| config.auths.get(k)) {
            if let Some(token) = entry.identitytoken.as_ref().filter(|t| !t.is_empty()) {
                return Ok(Credentials::IdentityToken(token.clone()));
            }
            if let (Some(username), Some(password)) = (&entry.username, &entry.password) {
                return Ok(Credentials::Basic {
                    username: username.clone(),
                    password: password.clone(),
                });
            }
            if let Some(auth) = entry.auth.as_ref().filter(|a| !a.is_empty()) {
                return decode_auth(auth).ok_or_else(|| Error::Config {
                    what: format!("credentials file {}", file.display()),
                    reason: format!("the auth entry of {registry} is not base64 of user:password"),
                });
            }
        }
        if let Some(store) = &config.creds_store {
            match helper_credentials(store, registry).await {
                Ok(Credentials::Anonymous) => {}
                other => return other,
            }
        }
    }
    Ok(Credentials::Anonymous)
}

fn decode_auth(auth: &str) -> Option<Credentials> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (username, password) = decoded.split_once(':')?;
    Some(Credentials::Basic {
        username: username.to_owned(),
        password: password.to_owned(),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperAnswer {
    username: String,
    secret: String,
}

/// Runs `docker-credential-HELPER get` with the registry on stdin, as docker does.
async fn helper_credentials(helper: &str, registry: &str) -> Result<Credentials> {
    use tokio::io::AsyncWriteExt;
    let program = format!("docker-credential-{helper}");
    let spawn_error = |source| Error::Io {
        context: "cannot run credential helper",
        path: PathBuf::from(&program),
        source,
    };
    let mut child = tokio::process::Command::new(&program)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(registry.as_bytes())
            .await
            .map_err(spawn_error)?;
    }
    let output = child.wait_with_output().await.map_err(spawn_error)?;
    if !output.status.success() {
        let message = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        // Helpers answer "credentials not found in native keychain" for unknown registries.
        if message.to_ascii_lowercase().contains("not found") {
            return Ok(Credentials::Anonymous);
        }
        return Err(Error::Config {
            what: format!("credential helper {program}"),
            reason: format!("exited with {}: {message}", output.status),
        });
    }
    let answer: HelperAnswer =
        serde_json::from_slice(&output.stdout).map_err(|e| Error::Config {
            what: format!("credential helper {program}"),
            reason: format!("answered something other than credentials JSON: {e}"),
        })?;
    if answer.username == "<token>" {
        return Ok(Credentials::IdentityToken(answer.secret));
    }
    Ok(Credentials::Basic {
        username: answer.username,
        password: answer.secret,
    })
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
    fn auth_entries_decode() {
        assert_eq!(
            decode_auth("dXNlcjpwYXNzOndpdGg6Y29sb25z"),
            Some(Credentials::Basic {
                username: "user".into(),
                password: "pass:with:colons".into()
            })
        );
        assert_eq!(decode_auth("not base64!"), None);
    }

    #[tokio::test]
    async fn config_files_are_searched_in_order_and_by_docker_keys() {
        let dir = std::env::temp_dir().join(format!("hoist-auth-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let docker = dir.join("config.json");
        std::fs::write(
            &docker,
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"aHViOnNlY3JldA=="},"ghcr.io":{"identitytoken":"refresh-me"}}}"#,
        )
        .unwrap();
        let containers = dir.join("auth.json");
        std::fs::write(
            &containers,
            r#"{"auths":{"quay.io":{"auth":"cXVheTpwdw=="}}}"#,
        )
        .unwrap();
        let files = [containers, docker];
        assert_eq!(
            credentials_from_files("docker.io", &files).await.unwrap(),
            Credentials::Basic {
                username: "hub".into(),
                password: "secret".into()
            }
        );
        assert_eq!(
            credentials_from_files("ghcr.io", &files).await.unwrap(),
            Credentials::IdentityToken("refresh-me".into())
        );
        assert_eq!(
            credentials_from_files("quay.io", &files).await.unwrap(),
            Credentials::Basic {
                username: "quay".into(),
                password: "pw".into()
            }
        );
        assert_eq!(
            credentials_from_files("elsewhere.example", &files)
                .await
                .unwrap(),
            Credentials::Anonymous
        );
        std::fs::write(&files[1], "{broken").unwrap();
        let error = credentials_from_files("elsewhere.example", &files)
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("config.json"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
