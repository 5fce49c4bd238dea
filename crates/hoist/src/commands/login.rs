//! `hoist login` and `hoist logout`: credentials in docker's `config.json`, written as
//! `docker login` writes them, so that docker, skopeo, crane and hoist all use them.

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use oci_registry::Credentials;
use oci_store::ErrorCode;
use serde_json::{Map, Value};

use crate::cli::{LoginArgs, LogoutArgs};
use crate::commands::Ctx;
use crate::exit::{Failed, Failure};
use crate::location::{Location, registry_host};

/// The names Docker Hub goes by.
const DOCKER_HUB_NAMES: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

/// The key `docker login` files Docker Hub's credentials under.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

pub(crate) async fn login(ctx: &Ctx, args: LoginArgs) -> Result<()> {
    let host = checked_host(&args.registry)?;
    let password = match (args.password, args.password_stdin) {
        (Some(password), false) => password,
        (None, true) => read_password_from_stdin()?,
        _ => {
            return Err(Failed::new(
                Failure::Usage,
                "give the password with --password-stdin (or -p PASSWORD)",
            )
            .into());
        }
    };
    if password.is_empty() {
        return Err(Failed::new(Failure::Usage, "the password is empty").into());
    }
    verify(ctx, &host, &args.username, &password).await?;
    let path = config_path()?;
    let mut config = read_config(&path)?;
    set_auth(&mut config, &host, &args.username, &password)
        .with_context(|| format!("cannot update {}", path.display()))?;
    write_config(&path, &config)?;
    ctx.say(format!(
        "logged in to {host} as {}; credentials stored in {}",
        args.username,
        path.display()
    ));
    if let Some(helper) = helper_for(&config, &host) {
        ctx.say(format!(
            "warning: {} names the credential helper {helper:?} for {host}: docker asks it, not the stored entry",
            path.display()
        ));
    }
    Ok(())
}

pub(crate) async fn logout(ctx: &Ctx, args: LogoutArgs) -> Result<()> {
    let host = checked_host(&args.registry)?;
    let path = config_path()?;
    let mut config = read_config(&path)?;
    if remove_auth(&mut config, &host) {
        write_config(&path, &config)?;
        ctx.say(format!(
            "removed the credentials of {host} from {}",
            path.display()
        ));
    } else {
        ctx.say(format!("not logged in to {host} (in {})", path.display()));
    }
    Ok(())
}

/// `host[:port]` of what the user typed (URLs and docker's Docker Hub key included), checked.
fn checked_host(input: &str) -> Result<String> {
    Location::parse_registry(input)
        .map_err(|e| Failed::new(Failure::Usage, format!("invalid registry {e}")))?;
    Ok(registry_host(input).to_owned())
}

/// The password from stdin, without the final newline (as `docker login --password-stdin`).
fn read_password_from_stdin() -> Result<String> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("cannot read the password from stdin")?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    Ok(text.to_owned())
}

/// Checks the credentials against the registry before they are stored, as `docker login`
/// does: `GET /v2/` with them, through the registry's token endpoint where it has one (which
/// is where a token registry checks credentials).
async fn verify(ctx: &Ctx, host: &str, username: &str, password: &str) -> Result<()> {
    let client = ctx
        .opener
        .client_builder(host)
        .with_credentials(Credentials::Basic {
            username: username.to_owned(),
            password: password.to_owned(),
        })
        .build()
        .await
        .with_context(|| format!("cannot set up a client of registry {host}"))?;
    match client.check_credentials().await {
        Ok(()) => Ok(()),
        Err(error)
            if matches!(
                error.code(),
                Some(ErrorCode::Unauthorized | ErrorCode::Denied)
            ) =>
        {
            Err(anyhow::Error::new(error)
                .context(format!("{host} refused the credentials of {username}")))
        }
        Err(error) => Err(anyhow::Error::new(error).context(format!(
            "cannot check the credentials of {username} with {host}"
        ))),
    }
}

/// Where docker keeps its configuration: `$DOCKER_CONFIG/config.json`, else
/// `~/.docker/config.json`.
fn config_path() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Ok(Path::new(&dir).join("config.json"));
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => Ok(Path::new(&home).join(".docker").join("config.json")),
        None => bail!("neither DOCKER_CONFIG nor HOME is set: cannot find docker's config.json"),
    }
}

/// The key `docker login` writes a registry's credentials under.
fn auth_key(host: &str) -> String {
    if DOCKER_HUB_NAMES.contains(&host) {
        DOCKER_HUB_KEY.to_owned()
    } else {
        host.to_owned()
    }
}

/// Every key under which credentials for `host` are found (the spellings oci-registry and
/// docker look up).
fn aliases(host: &str) -> Vec<String> {
    let names: Vec<&str> = if DOCKER_HUB_NAMES.contains(&host) {
        DOCKER_HUB_NAMES.to_vec()
    } else {
        vec![host]
    };
    let mut keys: Vec<String> = names
        .iter()
        .flat_map(|name| {
            [
                (*name).to_owned(),
                format!("https://{name}"),
                format!("http://{name}"),
                format!("https://{name}/v1/"),
                format!("https://{name}/v2/"),
            ]
        })
        .collect();
    keys.push(auth_key(host));
    keys
}

/// The configuration file as JSON: an empty object when it does not exist or is empty.
fn read_config(path: &Path) -> Result<Value> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Value::Object(Map::new())),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not valid JSON", path.display()))
}

fn auths(config: &mut Value) -> Result<&mut Map<String, Value>> {
    let Some(config) = config.as_object_mut() else {
        bail!("it is not a JSON object");
    };
    let auths = config
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    if auths.is_null() {
        *auths = Value::Object(Map::new());
    }
    auths
        .as_object_mut()
        .context("its \"auths\" is not a JSON object")
}

/// Stores `user:password` for `host` as `docker login` does (`auths.KEY.auth`, base64), leaving
/// every other key of the file as it was. Entries under other spellings of the same registry
/// are removed, so that the new credentials are the ones found.
fn set_auth(config: &mut Value, host: &str, username: &str, password: &str) -> Result<()> {
    let key = auth_key(host);
    let auths = auths(config)?;
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
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}")),
            ),
        );
    }
    Ok(())
}

/// Removes every entry for `host`; returns whether there was one.
fn remove_auth(config: &mut Value, host: &str) -> bool {
    let Some(auths) = config.get_mut("auths").and_then(Value::as_object_mut) else {
        return false;
    };
    let mut removed = false;
    for alias in aliases(host) {
        removed |= auths.remove(&alias).is_some();
    }
    removed
}

/// The credential helper docker would ask for `host` instead of `auths`, if any.
fn helper_for(config: &Value, host: &str) -> Option<String> {
    let helpers = config.get("credHelpers").and_then(Value::as_object);
    aliases(host)
        .iter()
        .find_map(|alias| helpers?.get(alias)?.as_str())
        .or_else(|| config.get("credsStore")?.as_str())
        .filter(|helper| !helper.is_empty())
        .map(str::to_owned)
}

/// Writes the file as docker does (tab-indented JSON, mode 0600), atomically: a temporary file
/// beside it, fsynced, renamed over it. A symlinked config is written where the link points.
fn write_config(path: &Path, config: &Value) -> Result<()> {
    let path = match std::fs::canonicalize(path) {
        Ok(target) => target,
        Err(_) => path.to_path_buf(),
    };
    let dir = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let mut text = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut serializer = serde_json::Serializer::with_formatter(&mut text, formatter);
    serde::Serialize::serialize(config, &mut serializer).context("cannot render the config")?;
    text.push(b'\n');
    let temporary = dir.join(format!(".config.json.hoist-{}.tmp", std::process::id()));
    let result = (|| -> Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)
            .with_context(|| format!("cannot create {}", temporary.display()))?;
        file.write_all(&text)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot write {}", temporary.display()))?;
        std::fs::rename(&temporary, &path)
            .with_context(|| format!("cannot replace {}", path.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use serde_json::json;

    use super::*;

    fn encoded(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    #[test]
    fn login_keeps_every_other_key() {
        let mut config = json!({
            "auths": {
                "ghcr.io": {"auth": "b2xkOm9sZA=="},
                "localhost:5000": {"auth": "old", "identitytoken": "tok", "email": "a@b"}
            },
            "credHelpers": {"gcr.io": "gcloud"},
            "proxies": {"default": {"httpProxy": "http://proxy:3128"}},
            "psFormat": "table {{.ID}}"
        });
        set_auth(&mut config, "localhost:5000", "me", "s3cret:with:colons").unwrap();
        assert_eq!(
            config,
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
        let mut config = json!({"auths": {"docker.io": {"auth": "stale"}}});
        set_auth(&mut config, "docker.io", "me", "pw").unwrap();
        assert_eq!(
            config,
            json!({"auths": {DOCKER_HUB_KEY: {"auth": encoded("me:pw")}}})
        );
        assert_eq!(auth_key("index.docker.io"), DOCKER_HUB_KEY);
        assert!(remove_auth(&mut config, "registry-1.docker.io"));
        assert_eq!(config, json!({"auths": {}}));
        assert!(!remove_auth(&mut config, "docker.io"));
    }

    #[test]
    fn a_new_file_and_files_that_are_not_objects() {
        let mut config = Value::Object(Map::new());
        set_auth(&mut config, "reg.example:8443", "u", "p").unwrap();
        assert_eq!(
            config,
            json!({"auths": {"reg.example:8443": {"auth": encoded("u:p")}}})
        );
        assert!(set_auth(&mut json!([1]), "r", "u", "p").is_err());
        assert!(set_auth(&mut json!({"auths": 3}), "r", "u", "p").is_err());
    }

    #[test]
    fn logout_removes_every_spelling() {
        let mut config = json!({"auths": {
            "reg.example": {"auth": "a"},
            "https://reg.example": {"auth": "b"},
            "other.example": {"auth": "c"}
        }, "credsStore": "desktop"});
        assert!(remove_auth(&mut config, "reg.example"));
        assert_eq!(
            config,
            json!({"auths": {"other.example": {"auth": "c"}}, "credsStore": "desktop"})
        );
        assert_eq!(
            helper_for(&config, "reg.example").as_deref(),
            Some("desktop")
        );
        assert_eq!(
            helper_for(
                &json!({"credHelpers": {"reg.example": "pass"}}),
                "reg.example"
            )
            .as_deref(),
            Some("pass")
        );
        assert_eq!(helper_for(&json!({}), "reg.example"), None);
    }

    #[test]
    fn the_file_is_replaced_atomically_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker").join("config.json");
        assert_eq!(read_config(&path).unwrap(), json!({}));
        let mut config = json!({"HttpHeaders": {"User-Agent": "x"}});
        set_auth(&mut config, "reg.example", "u", "p").unwrap();
        write_config(&path, &config).unwrap();
        assert_eq!(read_config(&path).unwrap(), config);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("{\n\t\""), "{text}");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let entries: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(entries.len(), 1, "no temporary file is left");
        // Through a symlink, the target is rewritten and the link stays.
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        remove_auth(&mut config, "reg.example");
        write_config(&link, &config).unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            read_config(&path).unwrap(),
            json!({"HttpHeaders": {"User-Agent": "x"}, "auths": {}})
        );
    }

    #[test]
    fn hosts_are_read_from_what_people_paste() {
        assert_eq!(
            checked_host("https://index.docker.io/v1/").unwrap(),
            "index.docker.io"
        );
        assert_eq!(checked_host("localhost:5000").unwrap(), "localhost:5000");
        assert!(checked_host("not a host").is_err());
    }
}
