//! The servers of the bucket scenario: one moto for the whole bench, and per run `hoist serve`
//! on a bucket of it and `docker-registry` on another with its `s3` driver.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::ACCESS_KEY;
use crate::bench::load::REPO;
use crate::bench::machine::require_tools;
use crate::bench::measure::timed;
use crate::bench::peers::{
    Proc, curl, free_port, parse_header, start_hoist_serve, wait_until_answering,
};

/// `curl` signing its requests for moto (AWS signature v4, as the servers sign theirs):
/// moto refuses an anonymous GET of an object.
pub(super) fn s3_curl() -> Command {
    let mut cmd = curl();
    cmd.args(["--aws-sigv4", "aws:amz:us-east-1:s3"])
        .args(["--user", &format!("{ACCESS_KEY}:{ACCESS_KEY}")]);
    cmd
}

/// moto's server program: from the venv `tests/peers/install.sh` makes under
/// `$HOIST_PEERS_DIR` (default `/opt/hoist-peers`), else from the `PATH`.
pub(super) fn moto_program() -> Result<PathBuf> {
    let dir = std::env::var_os("HOIST_PEERS_DIR")
        .map_or_else(|| PathBuf::from("/opt/hoist-peers"), PathBuf::from);
    let venv = dir.join("moto-venv/bin/moto_server");
    if venv.is_file() {
        return Ok(venv);
    }
    require_tools(&["moto_server"])
        .context("moto is not installed: run tests/peers/install.sh (moto[server] into a venv)")?;
    Ok(PathBuf::from("moto_server"))
}

/// Starts `moto_server` on a free loopback port, logging into `log`; returns it and its
/// endpoint (`http://127.0.0.1:PORT`) once it accepts connections.
pub(super) fn start_moto(program: &Path, log: &Path) -> Result<(Proc, String)> {
    let port = free_port()?;
    let log = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let child = Command::new(program)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .env_remove("AWS_CA_BUNDLE")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", program.display()))?;
    let mut moto = Proc(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = moto.0.try_wait()? {
            bail!("moto_server exited ({status})");
        }
        if Instant::now() > deadline {
            bail!("moto_server did not listen on 127.0.0.1:{port} within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((moto, format!("http://127.0.0.1:{port}")))
}

/// Creates the bucket `name` on moto.
pub(super) fn create_bucket(endpoint: &str, name: &str) -> Result<()> {
    let mut put = s3_curl();
    put.args(["-X", "PUT", "-o", "/dev/null"])
        .arg(format!("{endpoint}/{name}"));
    timed(&mut put).map(|_| ())
}

/// The AWS variables `hoist serve --storage s3://...` reads for moto at `endpoint`.
fn aws_env(endpoint: &str) -> [(&'static str, String); 5] {
    [
        ("AWS_ENDPOINT_URL", endpoint.to_owned()),
        ("AWS_ALLOW_HTTP", "true".to_owned()),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
        ("AWS_SECRET_ACCESS_KEY", ACCESS_KEY.to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
    ]
}

/// Starts `hoist serve --storage s3://BUCKET/hoist` (with `extra` arguments) on a free port;
/// returns it and its base URL once it answers.
pub(super) fn start_hoist(
    exe: &Path,
    endpoint: &str,
    bucket: &str,
    extra: &[&str],
    log: &Path,
) -> Result<(Proc, String)> {
    start_hoist_serve(exe, log, Duration::from_secs(30), |cmd| {
        cmd.args(["--storage", &format!("s3://{bucket}/hoist")])
            .args(extra)
            .envs(aws_env(endpoint))
            .env_remove("AWS_CA_BUNDLE");
    })
}

/// The registry's configuration: the `s3` driver on moto's `bucket`, deletes enabled, no
/// access log, listening on `addr`.
pub(super) fn registry_config(endpoint: &str, bucket: &str, addr: &str) -> String {
    format!(
        "version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  s3:
    region: us-east-1
    regionendpoint: {endpoint}
    bucket: {bucket}
    rootdirectory: /registry
    accesskey: {ACCESS_KEY}
    secretkey: {ACCESS_KEY}
    secure: false
    v4auth: true
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: {addr}
"
    )
}

/// Starts `docker-registry` on the `s3` driver (configuration in `dir`); returns it and its
/// base URL once it answers.
pub(super) fn start_registry(dir: &Path, endpoint: &str, bucket: &str) -> Result<(Proc, String)> {
    let addr = format!("127.0.0.1:{}", free_port()?);
    let config = dir.join("registry.yml");
    fs::write(&config, registry_config(endpoint, bucket, &addr))
        .with_context(|| format!("cannot write {}", config.display()))?;
    let log_path = dir.join("registry.log");
    let log =
        File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .env_remove("AWS_CA_BUNDLE")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("cannot start docker-registry")?;
    let mut registry = Proc(child);
    let base = format!("http://{addr}");
    wait_until_answering(
        "docker-registry",
        &base,
        &mut registry,
        Duration::from_secs(30),
    )?;
    Ok((registry, base))
}

/// The `Location` of a blob GET on `base` if it answers with a redirect (the registry on `s3`
/// does by default), `None` if it serves the bytes itself.
pub(super) fn blob_redirect(base: &str, digest: &str) -> Result<Option<String>> {
    let mut head = curl();
    head.args([
        "-o",
        "/dev/null",
        "-D",
        "-",
        "-X",
        "GET",
        "--max-filesize",
        "1",
    ])
    .arg(format!("{base}/v2/{REPO}/blobs/{digest}"));
    // --max-filesize stops the transfer of the bytes (exit 63) when they are served.
    let output = head
        .stdin(Stdio::null())
        .output()
        .context("cannot run curl")?;
    let headers = String::from_utf8_lossy(&output.stdout);
    let status: Option<u16> = headers
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok());
    Ok(match status {
        Some(301 | 302 | 303 | 307 | 308) => parse_header(&headers, "location"),
        _ => None,
    })
}
