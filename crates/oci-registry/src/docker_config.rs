//! Docker's `config.json` (and the containers `auth.json`, which shares its `auths` shape):
//! where it is, the keys a registry's credentials are filed under, credential helpers, and
//! rewriting it as `docker login` does.
//!
//! Everything hoist knows of these files is here: the client reads credentials through
//! [`credentials_from_files`], and `hoist login`/`hoist logout` edit the file through
//! [`DockerConfig`], so that what one writes the other finds.

use std::collections::HashMap;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use oci_types::docker_hub;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::{Credentials, Error, Result};

/// Docker's `config.json`, as a JSON document kept whole: keys hoist does not know (proxies,
/// formats, headers) are written back as they were read.
///
/// ```no_run
/// # fn example() -> oci_registry::Result<()> {
/// use oci_registry::DockerConfig;
///
/// let mut config = DockerConfig::load(DockerConfig::default_path()?)?;
/// config.store_basic("localhost:5000", "me", "secret")?;
/// config.save()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DockerConfig {
    path: PathBuf,
    document: Value,
}

impl DockerConfig {
    /// Where docker keeps its configuration: `$DOCKER_CONFIG/config.json`, else
    /// `~/.docker/config.json` (empty variables count as unset, as docker reads them).
    pub fn default_path() -> Result<PathBuf> {
        docker_config_path().ok_or_else(|| Error::Config {
            what: "neither DOCKER_CONFIG nor HOME is set".to_owned(),
            reason: "cannot find docker's config.json".to_owned(),
        })
    }

    /// Reads the file at `path`: an empty configuration when it does not exist or holds only
    /// white space (as docker reads it).
    pub fn load(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::empty(path));
            }
            Err(source) => {
                return Err(Error::Io {
                    context: "cannot read",
                    path,
                    source,
                });
            }
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::empty(path));
        }
        let document = serde_json::from_slice(&bytes).map_err(|e| Error::Config {
            what: format!("credentials file {}", path.display()),
            reason: format!("not valid JSON: {e}"),
        })?;
        Ok(Self { path, document })
    }

    fn empty(path: PathBuf) -> Self {
        Self {
            path,
            document: Value::Object(Map::new()),
        }
    }

    /// The file this configuration is read from and saved to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Files `username:password` for `host` as `docker login` does (`auths.KEY.auth`, base64,
    /// under [`docker_hub::CONFIG_KEY`] for Docker Hub), leaving every other key of the file
    /// as it was. Entries under other spellings of the same registry are removed, so that the
    /// new credentials are the ones found. Fails when the file is not a JSON object or its
    /// `auths` is not one.
    pub fn store_basic(&mut self, host: &str, username: &str, password: &str) -> Result<()> {
        let refused = |reason: &str| Error::Config {
            what: format!("cannot update {}", self.path.display()),
            reason: reason.to_owned(),
        };
        let key = auth_key(host);
        let Some(config) = self.document.as_object_mut() else {
            return Err(refused("it is not a JSON object"));
        };
        let auths = config
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        if auths.is_null() {
            *auths = Value::Object(Map::new());
        }
        let Some(auths) = auths.as_object_mut() else {
            return Err(refused("its \"auths\" is not a JSON object"));
        };
        for alias in aliases(host).iter().filter(|alias| **alias != key) {
            auths.remove(alias);
        }
        let entry = auths
            .entry(key)
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        if let Some(entry) = entry.as_object_mut() {
            // Left in place, an identity token or a plain user and password would win over `auth`.
            for stale in ["username", "password", "identitytoken", "registrytoken"] {
                entry.remove(stale);
            }
            entry.insert(
                "auth".to_owned(),
                Value::String(
                    base64::engine::general_purpose::STANDARD
                        .encode(format!("{username}:{password}")),
                ),
            );
        }
        Ok(())
    }

    /// Removes every `auths` entry for `host`, under any spelling; returns whether there was
    /// one.
    pub fn remove(&mut self, host: &str) -> bool {
        let Some(auths) = self
            .document
            .get_mut("auths")
            .and_then(Value::as_object_mut)
        else {
            return false;
        };
        let mut removed = false;
        for alias in aliases(host) {
            removed |= auths.remove(&alias).is_some();
        }
        removed
    }

    /// The credential helper docker would ask for `host` instead of `auths`, if any: one named
    /// for the host in `credHelpers`, else the default `credsStore`.
    pub fn credential_helper_for(&self, host: &str) -> Option<String> {
        let helpers = self.document.get("credHelpers").and_then(Value::as_object);
        aliases(host)
            .iter()
            .find_map(|alias| helpers?.get(alias)?.as_str())
            .or_else(|| self.document.get("credsStore")?.as_str())
            .filter(|helper| !helper.is_empty())
            .map(str::to_owned)
    }

    /// Writes the file as docker does (tab-indented JSON, mode 0600, its directory created
    /// with mode 0700), atomically: a temporary file beside it, fsynced, renamed over it. A
    /// symlinked config is written where the link points, and the link stays.
    pub fn save(&self) -> Result<()> {
        let path = match std::fs::canonicalize(&self.path) {
            Ok(target) => target,
            Err(_) => self.path.clone(),
        };
        let dir = path
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| Error::Io {
                context: "cannot create",
                path: dir.to_path_buf(),
                source,
            })?;
        let mut text = Vec::new();
        let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
        let mut serializer = serde_json::Serializer::with_formatter(&mut text, formatter);
        serde::Serialize::serialize(&self.document, &mut serializer).map_err(|e| {
            Error::Config {
                what: format!("cannot render {}", self.path.display()),
                reason: e.to_string(),
            }
        })?;
        text.push(b'\n');
        let temporary = dir.join(format!(".config.json.hoist-{}.tmp", std::process::id()));
        let result = (|| -> Result<()> {
            let io = |context: &'static str, path: &Path| {
                let path = path.to_path_buf();
                move |source| Error::Io {
                    context,
                    path,
                    source,
                }
            };
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temporary)
                .map_err(io("cannot create", &temporary))?;
            file.write_all(&text)
                .and_then(|()| file.sync_all())
                .map_err(io("cannot write", &temporary))?;
            std::fs::rename(&temporary, &path).map_err(io("cannot replace", &path))
        })();
        if result.is_err() {
            // The temporary file is ours and incomplete: nothing else can use it.
            let _ = std::fs::remove_file(&temporary);
        }
        result
    }

    /// The credentials this file gives `registry`, by docker's rules: a helper named for the
    /// registry in `credHelpers` (whatever it answers), else a usable `auths` entry, else what
    /// the default helper `credsStore` knows. `None` when the file has nothing for it (the next
    /// file is then asked, see [`credentials_from_files`]). Helpers are the programs
    /// `docker-credential-NAME`, run with `get`.
    pub async fn credentials(&self, registry: &str) -> Result<Option<Credentials>> {
        let config = ConfigFile::deserialize(&self.document).map_err(|e| Error::Config {
            what: format!("credentials file {}", self.path.display()),
            reason: e.to_string(),
        })?;
        let keys = lookup_keys(registry);
        if let Some(helper) = keys.iter().find_map(|k| config.cred_helpers.get(k)) {
            return helper_credentials(helper, registry).await.map(Some);
        }
        if let Some(entry) = keys.iter().find_map(|k| config.auths.get(k)) {
            if let Some(token) = entry.identitytoken.as_ref().filter(|t| !t.is_empty()) {
                return Ok(Some(Credentials::IdentityToken(token.clone())));
            }
            if let (Some(username), Some(password)) = (&entry.username, &entry.password) {
                return Ok(Some(Credentials::Basic {
                    username: username.clone(),
                    password: password.clone(),
                }));
            }
            if let Some(auth) = entry.auth.as_ref().filter(|a| !a.is_empty()) {
                return decode_auth(auth).map(Some).ok_or_else(|| Error::Config {
                    what: format!("credentials file {}", self.path.display()),
                    reason: format!("the auth entry of {registry} is not base64 of user:password"),
                });
            }
        }
        if let Some(store) = &config.creds_store {
            match helper_credentials(store, registry).await? {
                Credentials::Anonymous => {}
                found => return Ok(Some(found)),
            }
        }
        Ok(None)
    }
}

/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`; `None` without either variable.
fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(Path::new(&dir).join("config.json"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| Path::new(&home).join(".docker").join("config.json"))
}

/// Where credentials are looked for, in order: the containers `auth.json`
/// (`$REGISTRY_AUTH_FILE`, else `$XDG_RUNTIME_DIR/containers/auth.json`), then docker's
/// `config.json` ([`DockerConfig::default_path`]).
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
    files.extend(docker_config_path());
    files
}

/// Finds credentials for `registry` in `files` (see [`credential_files`]), each read as a
/// [`DockerConfig`] and asked in turn ([`DockerConfig::credentials`]). Anonymous when nothing
/// matches.
pub async fn credentials_from_files(registry: &str, files: &[PathBuf]) -> Result<Credentials> {
    for file in files {
        if let Some(found) = DockerConfig::load(file)?.credentials(registry).await? {
            return Ok(found);
        }
    }
    Ok(Credentials::Anonymous)
}

// ---- the keys a registry is filed under ----

/// The key `docker login` writes a registry's credentials under.
fn auth_key(host: &str) -> String {
    if docker_hub::is_docker_hub(host) {
        docker_hub::CONFIG_KEY.to_owned()
    } else {
        host.to_owned()
    }
}

/// The spellings of one name docker and other tools file credentials under.
fn spellings(name: &str) -> [String; 5] {
    [
        name.to_owned(),
        format!("https://{name}"),
        format!("http://{name}"),
        format!("https://{name}/v1/"),
        format!("https://{name}/v2/"),
    ]
}

/// The keys credentials for `registry` are looked up under, in the order they are tried: its
/// own spellings first, then for Docker Hub docker's key and the other names.
fn lookup_keys(registry: &str) -> Vec<String> {
    let mut keys = spellings(registry).to_vec();
    if docker_hub::is_docker_hub(registry) {
        keys.push(docker_hub::CONFIG_KEY.to_owned());
        keys.extend(docker_hub::ALIASES.map(str::to_owned));
    }
    keys
}

/// Every key under which credentials for `host` may be filed: each spelling of each of its
/// names (all of Docker Hub's for Docker Hub), and the key `docker login` writes.
fn aliases(host: &str) -> Vec<String> {
    let names: &[&str] = if docker_hub::is_docker_hub(host) {
        &docker_hub::ALIASES
    } else {
        &[host]
    };
    let mut keys: Vec<String> = names.iter().flat_map(|name| spellings(name)).collect();
    keys.push(auth_key(host));
    keys
}

// ---- reading credentials ----

/// What the credential lookup reads of a file.
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
    use std::os::unix::fs::PermissionsExt;

    use serde_json::json;

    use super::*;

    fn encoded(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    fn in_memory(document: Value) -> DockerConfig {
        DockerConfig {
            path: PathBuf::from("/nowhere/config.json"),
            document,
        }
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
        let dir = tempfile::tempdir().unwrap();
        let docker = dir.path().join("config.json");
        std::fs::write(
            &docker,
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"aHViOnNlY3JldA=="},"ghcr.io":{"identitytoken":"refresh-me"}}}"#,
        )
        .unwrap();
        let containers = dir.path().join("auth.json");
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
    }

    #[test]
    fn login_keeps_every_other_key() {
        let mut config = in_memory(json!({
            "auths": {
                "ghcr.io": {"auth": "b2xkOm9sZA=="},
                "localhost:5000": {"auth": "old", "identitytoken": "tok", "email": "a@b"}
            },
            "credHelpers": {"gcr.io": "gcloud"},
            "proxies": {"default": {"httpProxy": "http://proxy:3128"}},
            "psFormat": "table {{.ID}}"
        }));
        config
            .store_basic("localhost:5000", "me", "s3cret:with:colons")
            .unwrap();
        assert_eq!(
            config.document,
            json!({
                "auths": {
                    "ghcr.io": {"auth": "b2xkOm9sZA=="},
                    "localhost:5000": {"auth": encoded("me:s3cret:with:colons"), "email": "a@b"}
                },
                "credHelpers": {"gcr.io": "gcloud"},
                "proxies": {"default": {"httpProxy": "http://proxy:3128"}},
                "psFormat": "table {{.ID}}"
            })
        );
    }

    #[test]
    fn docker_hub_is_filed_under_dockers_key() {
        let mut config = in_memory(json!({"auths": {"docker.io": {"auth": "stale"}}}));
        config.store_basic("docker.io", "me", "pw").unwrap();
        assert_eq!(
            config.document,
            json!({"auths": {docker_hub::CONFIG_KEY: {"auth": encoded("me:pw")}}})
        );
        assert_eq!(auth_key("index.docker.io"), docker_hub::CONFIG_KEY);
        assert!(config.remove("registry-1.docker.io"));
        assert_eq!(config.document, json!({"auths": {}}));
        assert!(!config.remove("docker.io"));
    }

    #[test]
    fn a_new_file_and_files_that_are_not_objects() {
        let mut new = in_memory(Value::Object(Map::new()));
        new.store_basic("reg.example:8443", "u", "p").unwrap();
        assert_eq!(
            new.document,
            json!({"auths": {"reg.example:8443": {"auth": encoded("u:p")}}})
        );
        let error = in_memory(json!([1]))
            .store_basic("r", "u", "p")
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "cannot update /nowhere/config.json: it is not a JSON object"
        );
        assert!(
            in_memory(json!({"auths": 3}))
                .store_basic("r", "u", "p")
                .is_err()
        );
    }

    #[test]
    fn logout_removes_every_spelling() {
        let mut config = in_memory(json!({"auths": {
            "reg.example": {"auth": "a"},
            "https://reg.example": {"auth": "b"},
            "other.example": {"auth": "c"}
        }, "credsStore": "desktop"}));
        assert!(config.remove("reg.example"));
        assert_eq!(
            config.document,
            json!({"auths": {"other.example": {"auth": "c"}}, "credsStore": "desktop"})
        );
        assert_eq!(
            config.credential_helper_for("reg.example").as_deref(),
            Some("desktop")
        );
        assert_eq!(
            in_memory(json!({"credHelpers": {"reg.example": "pass"}}))
                .credential_helper_for("reg.example")
                .as_deref(),
            Some("pass")
        );
        assert_eq!(
            in_memory(json!({})).credential_helper_for("reg.example"),
            None
        );
    }

    #[test]
    fn the_file_is_replaced_atomically_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker").join("config.json");
        let mut config = DockerConfig::load(&path).unwrap();
        assert_eq!(config.document, json!({}));
        config.document = json!({"HttpHeaders": {"User-Agent": "x"}});
        config.store_basic("reg.example", "u", "p").unwrap();
        config.save().unwrap();
        assert_eq!(DockerConfig::load(&path).unwrap().document, config.document);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("{\n\t\""), "{text}");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let entries: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(entries.len(), 1, "no temporary file is left");
        // Through a symlink, the target is rewritten and the link stays.
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let mut linked = DockerConfig::load(&link).unwrap();
        linked.remove("reg.example");
        linked.save().unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            DockerConfig::load(&path).unwrap().document,
            json!({"HttpHeaders": {"User-Agent": "x"}, "auths": {}})
        );
        // Empty files read as empty configurations; broken ones name the file.
        std::fs::write(&path, " \n").unwrap();
        assert_eq!(DockerConfig::load(&path).unwrap().document, json!({}));
        std::fs::write(&path, "{broken").unwrap();
        let error = DockerConfig::load(&path).unwrap_err().to_string();
        assert!(error.contains(&path.display().to_string()), "{error}");
    }
}
