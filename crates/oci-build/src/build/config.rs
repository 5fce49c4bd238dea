//! Image configs: the one a build starts from (a base's, or an empty one) and the edits made
//! to it.
//!
//! The config is handled as JSON, so fields hoist does not model (a base's `author`,
//! `Healthcheck`, `OnBuild`, vendor extensions) survive untouched. Maps are written with keys
//! in byte order, so equal configs are equal bytes.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use oci_types::{Digest, Platform};
use serde_json::{Map, Value, json};

use crate::error::{Error, Result};

/// Changes to an image's runtime configuration (the config's `config` object).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConfigEdit {
    /// Replaces `Entrypoint` (an empty list clears it).
    pub entrypoint: Option<Vec<String>>,
    /// Replaces `Cmd` (an empty list clears it).
    pub cmd: Option<Vec<String>>,
    /// Environment changes, in order.
    pub env: Vec<EnvEdit>,
    /// Replaces `WorkingDir`.
    pub working_dir: Option<String>,
    /// Replaces `User`.
    pub user: Option<String>,
    /// Labels to set (an existing label of the same name is replaced).
    pub labels: BTreeMap<String, String>,
    /// Ports to expose: `80`, `80/tcp`, `53/udp` (`/tcp` unless said).
    pub exposed_ports: Vec<String>,
    /// Volumes to declare.
    pub volumes: Vec<String>,
    /// Replaces `StopSignal`.
    pub stop_signal: Option<String>,
}

/// One change to the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnvEdit {
    /// `NAME=VALUE`, replacing any earlier value of `NAME`.
    Set(String, String),
    /// Appends `VALUE` to `NAME` after a `:` (as for `PATH`), or sets it when it is unset.
    Append(String, String),
}

impl EnvEdit {
    /// Reads `NAME=VALUE` as a [`EnvEdit::Set`].
    pub fn parse_set(text: &str) -> Result<Self> {
        let (name, value) = split_env(text)?;
        Ok(Self::Set(name, value))
    }

    /// Reads `NAME=VALUE` as an [`EnvEdit::Append`].
    pub fn parse_append(text: &str) -> Result<Self> {
        let (name, value) = split_env(text)?;
        Ok(Self::Append(name, value))
    }
}

fn split_env(text: &str) -> Result<(String, String)> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(Error::invalid(format!(
            "environment variable {text:?} is not NAME=VALUE"
        ))),
    }
}

/// An image config being built.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Config {
    json: Map<String, Value>,
}

impl Config {
    /// A config with nothing in it but the platform and an empty root filesystem.
    pub(crate) fn empty(platform: &Platform) -> Self {
        let mut config = Self { json: Map::new() };
        config.set_platform(platform);
        config.json.insert(
            "rootfs".to_owned(),
            json!({"type": "layers", "diff_ids": []}),
        );
        config.json.insert("config".to_owned(), json!({}));
        config
    }

    /// A base image's config, as it was.
    pub(crate) fn parse(bytes: &[u8], what: &str) -> Result<Self> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::invalid(format!("the config of {what} is not JSON: {e}")))?;
        let Value::Object(json) = value else {
            return Err(Error::invalid(format!(
                "the config of {what} is not a JSON object"
            )));
        };
        Ok(Self { json })
    }

    /// The platform the config says it runs on.
    pub(crate) fn platform(&self) -> Option<Platform> {
        let text = |key: &str| {
            self.json
                .get(key)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let mut platform = Platform::new(text("os")?, text("architecture")?);
        platform.variant = text("variant");
        platform.os_version = text("os.version");
        if let Some(Value::Array(features)) = self.json.get("os.features") {
            platform.os_features = features
                .iter()
                .filter_map(|f| f.as_str().map(str::to_owned))
                .collect();
        }
        Some(platform)
    }

    pub(crate) fn set_platform(&mut self, platform: &Platform) {
        self.json
            .insert("os".to_owned(), Value::from(platform.os.clone()));
        self.json.insert(
            "architecture".to_owned(),
            Value::from(platform.architecture.clone()),
        );
        for (key, value) in [
            ("variant", &platform.variant),
            ("os.version", &platform.os_version),
        ] {
            match value {
                Some(value) => self.json.insert(key.to_owned(), Value::from(value.clone())),
                None => self.json.remove(key),
            };
        }
        if platform.os_features.is_empty() {
            self.json.remove("os.features");
        } else {
            self.json.insert(
                "os.features".to_owned(),
                Value::from(platform.os_features.clone()),
            );
        }
    }

    /// The `rootfs.diff_ids`, lowest layer first.
    pub(crate) fn diff_ids(&self) -> Result<Vec<Digest>> {
        let Some(ids) = self
            .json
            .get("rootfs")
            .and_then(|r| r.get("diff_ids"))
            .and_then(Value::as_array)
        else {
            return Ok(Vec::new());
        };
        ids.iter()
            .map(|id| {
                id.as_str()
                    .and_then(|s| Digest::parse(s).ok())
                    .ok_or_else(|| Error::invalid(format!("config has a bad diff_id {id}")))
            })
            .collect()
    }

    pub(crate) fn set_diff_ids(&mut self, diff_ids: &[Digest]) {
        let ids: Vec<Value> = diff_ids
            .iter()
            .map(|d| Value::from(d.to_string()))
            .collect();
        let rootfs = self
            .json
            .entry("rootfs")
            .or_insert_with(|| json!({"type": "layers"}));
        if let Value::Object(rootfs) = rootfs {
            rootfs.insert("type".to_owned(), Value::from("layers"));
            rootfs.insert("diff_ids".to_owned(), Value::from(ids));
        } else {
            *rootfs = json!({"type": "layers", "diff_ids": ids});
        }
    }

    /// The history entries.
    pub(crate) fn history(&self) -> Vec<Value> {
        match self.json.get("history") {
            Some(Value::Array(entries)) => entries.clone(),
            _ => Vec::new(),
        }
    }

    pub(crate) fn set_history(&mut self, history: Vec<Value>) {
        self.json.insert("history".to_owned(), Value::from(history));
    }

    /// Adds a history entry for a layer (or, with `empty_layer`, for a change without one).
    pub(crate) fn push_history(&mut self, created: &str, created_by: &str, empty_layer: bool) {
        let mut entry = json!({"created": created, "created_by": created_by});
        if empty_layer && let Value::Object(map) = &mut entry {
            map.insert("empty_layer".to_owned(), Value::from(true));
        }
        let mut history = self.history();
        history.push(entry);
        self.set_history(history);
    }

    pub(crate) fn set_created(&mut self, created: &str) {
        self.json
            .insert("created".to_owned(), Value::from(created.to_owned()));
    }

    /// Applies `edit` to the runtime configuration.
    pub(crate) fn apply(&mut self, edit: &ConfigEdit) -> Result<()> {
        let runtime = self
            .json
            .entry("config")
            .or_insert_with(|| Value::Object(Map::new()));
        if !runtime.is_object() {
            *runtime = Value::Object(Map::new());
        }
        let Value::Object(runtime) = runtime else {
            return Ok(());
        };
        let mut set_list = |key: &str, value: &Option<Vec<String>>| {
            if let Some(list) = value {
                if list.is_empty() {
                    runtime.remove(key);
                } else {
                    runtime.insert(key.to_owned(), Value::from(list.clone()));
                }
            }
        };
        set_list("Entrypoint", &edit.entrypoint);
        set_list("Cmd", &edit.cmd);
        for (key, value) in [
            ("WorkingDir", &edit.working_dir),
            ("User", &edit.user),
            ("StopSignal", &edit.stop_signal),
        ] {
            if let Some(value) = value {
                runtime.insert(key.to_owned(), Value::from(value.clone()));
            }
        }
        if !edit.env.is_empty() {
            let mut env: Vec<String> = match runtime.get("Env") {
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
                _ => Vec::new(),
            };
            for change in &edit.env {
                apply_env(&mut env, change);
            }
            runtime.insert("Env".to_owned(), Value::from(env));
        }
        if !edit.labels.is_empty() {
            let labels = object_at(runtime, "Labels");
            for (key, value) in &edit.labels {
                labels.insert(key.clone(), Value::from(value.clone()));
            }
        }
        if !edit.exposed_ports.is_empty() {
            let mut ports = Vec::new();
            for port in &edit.exposed_ports {
                ports.push(normalize_port(port)?);
            }
            let exposed = object_at(runtime, "ExposedPorts");
            for port in ports {
                exposed.insert(port, json!({}));
            }
        }
        if !edit.volumes.is_empty() {
            let volumes = object_at(runtime, "Volumes");
            for volume in &edit.volumes {
                volumes.insert(volume.clone(), json!({}));
            }
        }
        Ok(())
    }

    /// The config's JSON bytes (keys in byte order).
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        // A map of JSON values always serialises.
        serde_json::to_vec(&self.json).unwrap_or_default()
    }
}

fn object_at<'m>(map: &'m mut Map<String, Value>, key: &str) -> &'m mut Map<String, Value> {
    let slot = map.entry(key).or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    match slot {
        Value::Object(inner) => inner,
        _ => unreachable!("just made an object"),
    }
}

fn apply_env(env: &mut Vec<String>, change: &EnvEdit) {
    let (name, value, append) = match change {
        EnvEdit::Set(name, value) => (name, value, false),
        EnvEdit::Append(name, value) => (name, value, true),
    };
    let prefix = format!("{name}=");
    if let Some(existing) = env.iter_mut().find(|e| e.starts_with(&prefix)) {
        if append {
            existing.push(':');
            existing.push_str(value);
        } else {
            *existing = format!("{prefix}{value}");
        }
    } else {
        env.push(format!("{prefix}{value}"));
    }
}

fn normalize_port(port: &str) -> Result<String> {
    let (number, protocol) = port.split_once('/').unwrap_or((port, "tcp"));
    let valid_number = number.parse::<u16>().is_ok_and(|n| n > 0);
    if !valid_number || !matches!(protocol, "tcp" | "udp" | "sctp") {
        return Err(Error::invalid(format!(
            "exposed port {port:?} is not PORT or PORT/tcp, PORT/udp, PORT/sctp"
        )));
    }
    Ok(format!("{number}/{protocol}"))
}

/// A time as the image-spec writes it: RFC 3339 in UTC, whole seconds.
pub(crate) fn rfc3339(seconds_since_epoch: u64) -> Result<String> {
    // RFC 3339 has four-digit years: 9999-12-31T23:59:59Z is the last time it can write.
    const LAST: u64 = 253_402_300_799;
    if seconds_since_epoch > LAST {
        return Err(Error::invalid(format!(
            "time {seconds_since_epoch} (seconds since 1970) is after the year 9999"
        )));
    }
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(seconds_since_epoch);
    Ok(humantime::format_rfc3339_seconds(time).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime(config: &Config) -> &Map<String, Value> {
        config.json["config"].as_object().unwrap()
    }

    #[test]
    fn edits_replace_and_append() {
        let mut config = Config::parse(
            br#"{"architecture":"amd64","os":"linux","author":"kept","config":{"Env":["PATH=/bin","A=1"],"Labels":{"x":"1"}},"rootfs":{"type":"layers","diff_ids":[]}}"#,
            "base",
        )
        .unwrap();
        let edit = ConfigEdit {
            entrypoint: Some(vec!["/app".into()]),
            cmd: Some(vec![]),
            env: vec![
                EnvEdit::parse_append("PATH=/opt/bin").unwrap(),
                EnvEdit::parse_set("A=2").unwrap(),
                EnvEdit::parse_set("B=x=y").unwrap(),
            ],
            working_dir: Some("/work".into()),
            user: Some("1000:1000".into()),
            labels: [("y".to_owned(), "2".to_owned())].into(),
            exposed_ports: vec!["80".into(), "53/udp".into()],
            volumes: vec!["/data".into()],
            stop_signal: Some("SIGTERM".into()),
        };
        config.apply(&edit).unwrap();
        let runtime = runtime(&config);
        assert_eq!(
            runtime["Env"],
            json!(["PATH=/bin:/opt/bin", "A=2", "B=x=y"])
        );
        assert_eq!(runtime["Entrypoint"], json!(["/app"]));
        assert!(runtime.get("Cmd").is_none());
        assert_eq!(runtime["Labels"], json!({"x": "1", "y": "2"}));
        assert_eq!(runtime["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
        assert_eq!(runtime["Volumes"], json!({"/data": {}}));
        assert_eq!(runtime["User"], json!("1000:1000"));
        assert_eq!(config.json["author"], json!("kept"));
    }

    #[test]
    fn bad_values_are_named() {
        assert!(
            EnvEdit::parse_set("NOVALUE")
                .unwrap_err()
                .to_string()
                .contains("NOVALUE")
        );
        let mut config = Config::empty(&Platform::new("linux", "amd64"));
        let edit = ConfigEdit {
            exposed_ports: vec!["http".into()],
            ..ConfigEdit::default()
        };
        assert!(
            config
                .apply(&edit)
                .unwrap_err()
                .to_string()
                .contains("http")
        );
    }

    #[test]
    fn platform_round_trips_and_times_are_rfc3339() {
        let platform = Platform::new("linux", "arm").with_variant("v7");
        let config = Config::empty(&platform);
        assert_eq!(config.platform().unwrap(), platform);
        assert_eq!(rfc3339(0).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000).unwrap(), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(253_402_300_799).unwrap(), "9999-12-31T23:59:59Z");
        assert!(
            rfc3339(253_402_300_800)
                .unwrap_err()
                .to_string()
                .contains("9999")
        );
    }
}
