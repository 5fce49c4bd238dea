//! `oci-docker`'s public API against real daemons: Docker Engine 20.10 (API 1.41), Docker
//! Engine 26.1 (API 1.45) and podman 4.3's Docker-compatible service, each started fresh in a
//! directory of its own by `tests/peers/start-daemon.sh` and stopped by `stop-daemon.sh`.
//!
//! An engine that is not installed (`tests/peers/install.sh` installs them), or tests that do
//! not run as root, skip with a printed line; on CI (`CI=true`) or with `HOIST_PEERS` set they
//! fail instead.
//!
//! The archives loaded are made here: classic docker-archives (`manifest.json`, a config
//! named by its digest, one layer holding one small file), which every engine reads.

// Test helpers outside `#[test]` functions, where clippy's test exemption does not reach.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use bytes::Bytes;
use futures::StreamExt;
use oci_docker::{DockerClient, Error};
use oci_types::Platform;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    Docker20,
    Docker26,
    Podman,
}

impl Engine {
    /// Its name for `start-daemon.sh`.
    fn name(self) -> &'static str {
        match self {
            Self::Docker20 => "docker20",
            Self::Docker26 => "docker26",
            Self::Podman => "podman",
        }
    }

    /// The daemon program `start-daemon.sh` runs.
    fn program(self) -> PathBuf {
        let peers = std::env::var_os("HOIST_PEERS_DIR")
            .map_or_else(|| PathBuf::from("/opt/hoist-peers"), PathBuf::from);
        match self {
            Self::Docker20 => PathBuf::from("/usr/sbin/dockerd"),
            Self::Docker26 => peers.join("docker-26/usr/sbin/dockerd"),
            Self::Podman => PathBuf::from("/usr/bin/podman"),
        }
    }

    /// The API version the client negotiates with it.
    fn api_version(self) -> &'static str {
        match self {
            Self::Docker20 | Self::Podman => "1.41",
            Self::Docker26 => "1.45",
        }
    }

    /// The start of the engine's version.
    fn version_prefix(self) -> &'static str {
        match self {
            Self::Docker20 => "20.10.",
            Self::Docker26 => "26.1.",
            Self::Podman => "4.",
        }
    }
}

/// Whether missing peers fail the tests instead of skipping them.
fn peers_required() -> bool {
    std::env::var_os("HOIST_PEERS").is_some() || std::env::var("CI").is_ok_and(|v| v == "true")
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/peers")
        .join(name)
}

/// A daemon for one test; stopped, and its directory removed, when dropped.
#[derive(Debug)]
struct Daemon {
    dir: PathBuf,
    host: String,
}

impl Daemon {
    /// Starts `engine`, or says why it cannot (`None`), or fails when peers are required.
    #[allow(clippy::print_stdout)]
    fn start(engine: Engine) -> Option<Self> {
        let missing = if !script("start-daemon.sh").is_file() {
            Some("tests/peers/start-daemon.sh is missing".to_owned())
        } else if !engine.program().is_file() {
            Some(format!(
                "{} is not installed (run tests/peers/install.sh)",
                engine.program().display()
            ))
        } else if std::fs::metadata("/proc/self").map_or(true, |m| m.uid() != 0) {
            Some("the daemons need root".to_owned())
        } else {
            None
        };
        if let Some(why) = missing {
            assert!(
                !peers_required(),
                "{}: {why}; peers are required here (CI=true or HOIST_PEERS)",
                engine.name()
            );
            println!("skipping {}: {why}", engine.name());
            return None;
        }
        // A short path under /tmp: the socket's must stay under 108 bytes. Kept, not removed
        // on drop: stop-daemon.sh removes it without crossing into mounts the daemon left.
        let dir = tempfile::Builder::new()
            .prefix("hoist-od-")
            .tempdir_in("/tmp")
            .unwrap()
            .keep();
        let mut command = Command::new("bash");
        command
            .arg(script("start-daemon.sh"))
            .arg(engine.name())
            .arg(&dir)
            .env("HOIST_DAEMON_OWNER", std::process::id().to_string())
            .stdin(Stdio::null());
        if std::env::var_os("HOIST_DAEMON_TIMEOUT").is_none() {
            // Three daemons start at once, on machines that build at the same time.
            command.env("HOIST_DAEMON_TIMEOUT", "120");
        }
        let output = command.output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let host = stdout.lines().last().unwrap_or_default().trim().to_owned();
        let daemon = Self { dir, host };
        assert!(
            output.status.success() && daemon.host.starts_with("unix://"),
            "start-daemon.sh {} failed ({}):\n{stdout}{}",
            engine.name(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        Some(daemon)
    }
}

impl Drop for Daemon {
    #[allow(clippy::print_stdout)]
    fn drop(&mut self) {
        let output = Command::new("bash")
            .arg(script("stop-daemon.sh"))
            .arg(&self.dir)
            .stdin(Stdio::null())
            .output();
        match output {
            Ok(output) if output.status.success() => {}
            Ok(output) => println!(
                "stop-daemon.sh {} failed: {}",
                self.dir.display(),
                String::from_utf8_lossy(&output.stderr)
            ),
            Err(e) => println!("cannot run stop-daemon.sh {}: {e}", self.dir.display()),
        }
    }
}

fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// A tar of `files` (name, content), ended or not by the two zero blocks of its end.
fn tar(files: &[(&str, &[u8])], ended: bool) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, content) in files {
        let mut header = tar::Header::new_ustar();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, name, *content).unwrap();
    }
    let mut bytes = builder.into_inner().unwrap();
    if !ended {
        bytes.truncate(bytes.len() - 1024);
    }
    bytes
}

/// A classic docker-archive of one image named `name` for `platform`: its config's digest
/// (the image id a daemon gives it) and the archive. With `corrupt`, the config's `diff_ids`
/// do not match the layer.
fn docker_archive(name: &str, platform: &Platform, corrupt: bool) -> (String, Vec<u8>) {
    let layer = tar(
        &[("hello.txt", format!("hello from {name}\n").as_bytes())],
        true,
    );
    let diff_id = if corrupt {
        sha256(b"something else")
    } else {
        sha256(&layer)
    };
    let mut config = serde_json::json!({
        "architecture": platform.architecture,
        "os": platform.os,
        "config": {"Cmd": ["/hello.txt"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff_id}")]},
        "history": [{"created_by": "oci-docker tests"}],
    });
    if let Some(variant) = &platform.variant {
        config["variant"] = variant.clone().into();
    }
    let config = serde_json::to_vec(&config).unwrap();
    let config_digest = sha256(&config);
    let layer_name = format!("{}/layer.tar", sha256(&layer));
    let manifest = serde_json::json!([{
        "Config": format!("{config_digest}.json"),
        "RepoTags": [name],
        "Layers": [layer_name],
    }]);
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let archive = tar(
        &[
            (&format!("{config_digest}.json"), &config),
            (&layer_name, &layer),
            ("manifest.json", &manifest),
        ],
        true,
    );
    (format!("sha256:{config_digest}"), archive)
}

/// `bytes` as a stream of small pieces, as a producer would send them.
fn pieces(bytes: Vec<u8>) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    let bytes = Bytes::from(bytes);
    let pieces: Vec<_> = (0..bytes.len())
        .step_by(4096)
        .map(|start| Ok(bytes.slice(start..bytes.len().min(start + 4096))))
        .collect();
    futures::stream::iter(pieces)
}

/// Whether a name a daemon reports is `wanted`: Docker reports names as they were given,
/// podman in full (`docker.io/` or `localhost/` in front).
fn same_name(reported: &str, wanted: &str) -> bool {
    reported == wanted
        || reported.strip_prefix("docker.io/") == Some(wanted)
        || reported.strip_prefix("localhost/") == Some(wanted)
}

/// The names of the entries of a tar, and the content of `manifest.json`.
fn tar_contents(bytes: &[u8]) -> (Vec<String>, Option<serde_json::Value>) {
    let mut archive = tar::Archive::new(bytes);
    let mut names = Vec::new();
    let mut manifest = None;
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        if name == "manifest.json" {
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            manifest = Some(serde_json::from_str(&text).unwrap());
        }
        names.push(name);
    }
    (names, manifest)
}

/// Every check, against one engine.
#[allow(clippy::print_stdout)]
async fn check_engine(engine: Engine) {
    let Some(daemon) = Daemon::start(engine) else {
        return;
    };
    let client = DockerClient::new(&daemon.host).unwrap();
    assert_eq!(client.host(), daemon.host);

    // The version, negotiated.
    let version = client.version().await.unwrap();
    println!("{}: {version:?}", engine.name());
    assert_eq!(version.api_version, engine.api_version());
    assert_eq!(version.negotiated_api_version, engine.api_version());
    assert!(
        version.version.starts_with(engine.version_prefix()),
        "{}",
        version.version
    );
    assert_eq!(version.os, "linux");

    // The platform: this machine's.
    let platform = client.platform().await.unwrap();
    assert_eq!(platform.normalized(), Platform::host());
    if cfg!(target_arch = "x86_64") {
        assert_eq!(platform, Platform::new("linux", "amd64"));
    }

    // A name the daemon does not have.
    assert_eq!(client.image_id("hoist-test/missing:1").await.unwrap(), None);

    // A load, streamed in pieces.
    let (config_id, archive) = docker_archive("hoist-test/x:1", &platform, false);
    let report = client.load(pieces(archive)).await.unwrap();
    println!("{}: load: {report:?}", engine.name());
    assert!(
        report.names.iter().any(|n| same_name(n, "hoist-test/x:1")),
        "{report:?}"
    );
    let id = client.image_id("hoist-test/x:1").await.unwrap();
    assert_eq!(id.as_deref(), Some(config_id.as_str()));
    // By id too, whole and short.
    assert_eq!(
        client.image_id(&config_id).await.unwrap().as_ref(),
        Some(&config_id)
    );
    assert_eq!(
        client
            .image_id(&config_id["sha256:".len()..][..12])
            .await
            .unwrap()
            .as_ref(),
        Some(&config_id)
    );

    // A tag.
    client.tag(&config_id, "hoist-test/y", "2").await.unwrap();
    assert_eq!(
        client.image_id("hoist-test/y:2").await.unwrap().as_ref(),
        Some(&config_id)
    );
    let error = client
        .tag("hoist-test/missing:1", "hoist-test/z", "1")
        .await
        .unwrap_err();
    println!("{}: tag of a missing image: {error}", engine.name());
    assert!(
        matches!(error, Error::Daemon { status: 404, .. }),
        "{error:?}"
    );

    // A save: the archive as it arrives.
    let mut stream = client.save(&["hoist-test/x:1".to_owned()]).await.unwrap();
    let mut saved = Vec::new();
    while let Some(piece) = stream.next().await {
        saved.extend_from_slice(&piece.unwrap());
    }
    let (entries, manifest) = tar_contents(&saved);
    println!("{}: save: {entries:?}", engine.name());
    let manifest = manifest.unwrap_or_else(|| panic!("no manifest.json in {entries:?}"));
    let tags = manifest[0]["RepoTags"].as_array().unwrap();
    assert!(
        tags.iter()
            .any(|t| same_name(t.as_str().unwrap(), "hoist-test/x:1")),
        "{manifest}"
    );
    let error = match client.save(&["hoist-test/missing:1".to_owned()]).await {
        Ok(_) => panic!("saved an image the daemon does not have"),
        Err(error) => error,
    };
    println!("{}: save of a missing image: {error}", engine.name());
    assert!(matches!(error, Error::Daemon { .. }), "{error:?}");

    // A corrupt archive: a layer that does not match its diff_id.
    let (_, corrupt) = docker_archive("hoist-test/bad:1", &platform, true);
    let error = client.load(pieces(corrupt)).await.unwrap_err();
    println!("{}: corrupt load: {error}", engine.name());
    match &error {
        Error::Daemon { message, .. } => assert!(!message.is_empty()),
        other => panic!("{other:?}"),
    }
    assert_eq!(client.image_id("hoist-test/bad:1").await.unwrap(), None);

    // An archive without its end: the daemon takes it whole when the request ends cleanly
    // (Go's tar reader takes an end of file between entries for the end)...
    let (id, archive) = docker_archive("hoist-test/unended:1", &platform, false);
    let unended = archive[..archive.len() - 1024].to_vec();
    let loaded = client.load(pieces(unended.clone())).await;
    println!("{}: unended load: {loaded:?}", engine.name());
    let takes_unended = loaded.is_ok();
    // ... so the same bytes followed by an error must abort the request, not end it.
    let (_, archive) = docker_archive("hoist-test/aborted:1", &platform, false);
    let aborted = archive[..archive.len() - 1024].to_vec();
    let body = pieces(aborted).chain(futures::stream::once(async {
        // Let the pieces reach the daemon first.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        Err(std::io::Error::other("the producer failed"))
    }));
    let error = client.load(body).await.unwrap_err();
    println!("{}: aborted load: {error}", engine.name());
    assert!(matches!(error, Error::Body(_)), "{error:?}");
    assert_eq!(client.image_id("hoist-test/aborted:1").await.unwrap(), None);
    if takes_unended {
        assert_eq!(
            client
                .image_id("hoist-test/unended:1")
                .await
                .unwrap()
                .as_ref(),
            Some(&id)
        );
    }
    // The daemon still answers.
    assert!(client.image_id("hoist-test/x:1").await.unwrap().is_some());
}

#[tokio::test]
async fn docker20() {
    check_engine(Engine::Docker20).await;
}

#[tokio::test]
async fn docker26() {
    check_engine(Engine::Docker26).await;
}

#[tokio::test]
async fn podman() {
    check_engine(Engine::Podman).await;
}
