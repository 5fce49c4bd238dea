//! The peers and servers the scenarios start and talk to, shared by them: free loopback ports,
//! child processes stopped whatever happens, `docker-registry` started by the peers' scripts,
//! `hoist serve`, and the registry API through `curl` (uploads, downloads, manifests).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::data::{blob_path, layout_image, parallel, read_json};
use super::measure::timed;

pub(super) const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// A free TCP port on loopback (free when this returns; nothing else should take it meanwhile).
pub(super) fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind loopback")?;
    Ok(listener.local_addr()?.port())
}

/// A child process killed (and reaped) when dropped, whatever happened.
#[derive(Debug)]
pub(super) struct Proc(pub(super) Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(super) fn curl() -> Command {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-f"]);
    cmd
}

/// Polls `GET /v2/` of `base` until it answers (`timeout` at most), failing early if `server`
/// (called `name` in messages) exits.
pub(super) fn wait_until_answering(
    name: &str,
    base: &str,
    server: &mut Proc,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let ok = curl()
            .args(["-o", "/dev/null", "--max-time", "2"])
            .arg(format!("{base}/v2/"))
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(());
        }
        if let Some(status) = server.0.try_wait()? {
            bail!("{name} exited ({status}) before answering on {base}");
        }
        if Instant::now() > deadline {
            bail!(
                "{name} did not answer on {base} within {} s",
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts `hoist serve` on a free loopback port, quiet, with its stderr into `log`, after
/// `configure` has added its storage and any flags or environment; returns it and its base URL
/// (`http://127.0.0.1:PORT`) once it answers (within `timeout`).
pub(super) fn start_hoist_serve(
    exe: &Path,
    log: &Path,
    timeout: Duration,
    configure: impl FnOnce(&mut Command),
) -> Result<(Proc, String)> {
    let addr = format!("127.0.0.1:{}", free_port()?);
    let log = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let mut cmd = Command::new(exe);
    cmd.arg("serve").args(["--addr", &addr, "-q"]);
    configure(&mut cmd);
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    let mut hoist = Proc(child);
    let base = format!("http://{addr}");
    wait_until_answering("hoist serve", &base, &mut hoist, timeout)?;
    Ok((hoist, base))
}

/// A `docker-registry` started by `tests/peers/start-registry.sh` with filesystem storage,
/// stopped by `stop-registry.sh` when dropped (its data deleted too if `wipe`).
#[derive(Debug)]
pub(super) struct Registry {
    dir: PathBuf,
    stop_script: PathBuf,
    wipe: bool,
    /// `127.0.0.1:PORT`, for curl.
    pub(super) addr: String,
    /// `localhost:PORT`, for the tools measured.
    pub(super) host: String,
    pub(super) pid: u32,
}

impl Registry {
    /// Starts a registry with its data under `dir/data`, on a free loopback port.
    pub(super) fn start(root: &Path, dir: &Path, wipe: bool) -> Result<Self> {
        let peers_dir = root.join("tests").join("peers");
        let port = free_port()?;
        let mut registry = Self {
            dir: dir.to_path_buf(),
            stop_script: peers_dir.join("stop-registry.sh"),
            wipe,
            addr: format!("127.0.0.1:{port}"),
            host: format!("localhost:{port}"),
            pid: 0,
        };
        let mut start = Command::new("bash");
        start
            .arg(peers_dir.join("start-registry.sh"))
            .env("REGISTRY_DIR", dir)
            .env("REGISTRY_ADDR", &registry.addr)
            .env_remove("REGISTRY_RESET");
        let (_, output) = timed(&mut start)?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        registry.pid = stdout
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .with_context(|| format!("start-registry.sh printed no PID: {stdout:?}"))?;
        Ok(registry)
    }

    /// `http://127.0.0.1:PORT`.
    pub(super) fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where `start-registry.sh` sends the registry's output, its access log among it.
    pub(super) fn log(&self) -> PathBuf {
        self.dir.join("registry.log")
    }
}

impl Drop for Registry {
    /// Errors are ignored: this runs on the way out.
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(&self.stop_script)
            .env("REGISTRY_DIR", &self.dir)
            .env("REGISTRY_WIPE", if self.wipe { "1" } else { "0" })
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The value of the header `name` in HTTP response heads (the last one, after redirects or
/// `100`s).
pub(super) fn parse_header(headers: &str, name: &str) -> Option<String> {
    headers
        .lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
        .next_back()
}

/// The URL to `PUT` a monolithic upload to: `location` made absolute against `base`
/// (`http://host:port`), with the digest query parameter appended.
pub(super) fn upload_url(base: &str, location: &str, digest: &str) -> String {
    let absolute = if location.starts_with("http://") || location.starts_with("https://") {
        location.to_owned()
    } else {
        format!("{base}/{}", location.trim_start_matches('/'))
    };
    let sep = if absolute.contains('?') { '&' } else { '?' };
    format!("{absolute}{sep}digest={digest}")
}

/// Uploads a blob to the repository `repo` at `base`: the file `file`, or `data` when `file`
/// is `None`, as the blob `digest`: `POST`, then one monolithic `PUT`. Returns the seconds both
/// took.
pub(super) fn upload_blob(
    base: &str,
    repo: &str,
    file: Option<&Path>,
    data: &str,
    digest: &str,
) -> Result<f64> {
    let started = Instant::now();
    let mut post = curl();
    post.args(["-X", "POST", "-D", "-", "-o", "/dev/null"])
        .arg(format!("{base}/v2/{repo}/blobs/uploads/"));
    let (_, output) = timed(&mut post)?;
    let headers = String::from_utf8_lossy(&output.stdout);
    let location = parse_header(&headers, "location")
        .with_context(|| format!("no Location in the answer to the POST:\n{headers}"))?;
    let mut put = curl();
    put.args([
        "-X",
        "PUT",
        "-H",
        "Expect:",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
    ])
    .args(["-H", "Content-Type: application/octet-stream"]);
    match file {
        Some(file) => put.arg("-T").arg(file),
        None => put.args(["--data-binary", data]),
    };
    put.arg(upload_url(base, &location, digest));
    let (_, output) = timed(&mut put)?;
    let seconds = started.elapsed().as_secs_f64();
    let code = String::from_utf8_lossy(&output.stdout);
    if code.trim() != "201" {
        bail!("PUT of {digest} to {base} answered {code}, expected 201");
    }
    Ok(seconds)
}

/// Downloads the blob `digest` from the repository `repo` at `base` and checks its size;
/// returns the seconds it took.
pub(super) fn download_blob(base: &str, repo: &str, digest: &str, size_bytes: u64) -> Result<f64> {
    let mut get = curl();
    // curl's own clock, from the connection to the last byte: a transfer on loopback is short,
    // and the start of the curl process would weigh on both servers' figures alike and pull
    // their ratio towards 1.
    get.args(["-o", "/dev/null", "-w", "%{size_download} %{time_total}"])
        .arg(format!("{base}/v2/{repo}/blobs/{digest}"));
    let (_, output) = timed(&mut get)?;
    let got = String::from_utf8_lossy(&output.stdout);
    let (size, seconds) = parse_size_and_time(&got)
        .with_context(|| format!("GET of {digest} from {base}: curl wrote {got:?}"))?;
    if size != size_bytes {
        bail!("GET of {digest} from {base} gave {size} bytes, expected {size_bytes}");
    }
    Ok(seconds)
}

/// `SIZE SECONDS`, as curl's `-w "%{size_download} %{time_total}"` writes them.
pub(super) fn parse_size_and_time(text: &str) -> Option<(u64, f64)> {
    let mut parts = text.split_whitespace();
    let size = parts.next()?.parse().ok()?;
    let seconds: f64 = parts.next()?.parse().ok()?;
    (seconds > 0.0).then_some((size, seconds))
}

/// The digest the registry at `base` gives for the manifest `repo:tag`.
pub(super) fn manifest_digest(base: &str, repo: &str, tag: &str) -> Result<String> {
    let mut head = curl();
    head.args(["-I", "-H", &format!("Accept: {MANIFEST_TYPE}")])
        .arg(format!("{base}/v2/{repo}/manifests/{tag}"));
    let (_, output) = timed(&mut head)?;
    let headers = String::from_utf8_lossy(&output.stdout);
    parse_header(&headers, "docker-content-digest")
        .with_context(|| format!("no Docker-Content-Digest for {repo}:{tag} on {base}:\n{headers}"))
}

/// Puts the image tagged `tag` in the OCI layout `layout` into the repository `repo` at `base`
/// with curl, not with a tool the bench measures: its config and layers, `jobs` at a time, then
/// its manifest. Returns the manifest's digest, checked against what the registry says.
pub(super) fn put_layout_image(
    base: &str,
    repo: &str,
    layout: &Path,
    tag: &str,
    jobs: usize,
) -> Result<String> {
    let image = layout_image(layout, tag)?;
    let manifest_file = blob_path(layout, &image.manifest);
    let manifest = read_json(&manifest_file)?;
    let config = manifest["config"]["digest"]
        .as_str()
        .with_context(|| format!("{} has no config", image.manifest))?
        .to_owned();
    let blobs: Vec<String> = image
        .layers
        .iter()
        .map(|(digest, _)| digest.clone())
        .chain([config])
        .collect();
    parallel(jobs, &blobs, |digest| {
        upload_blob(base, repo, Some(&blob_path(layout, digest)), "", digest)
    })?;
    let media_type = manifest["mediaType"].as_str().unwrap_or(MANIFEST_TYPE);
    let mut put = curl();
    put.args(["-X", "PUT", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(["-H", &format!("Content-Type: {media_type}")])
        .arg("--data-binary")
        .arg(format!("@{}", manifest_file.display()))
        .arg(format!("{base}/v2/{repo}/manifests/{tag}"));
    let (_, output) = timed(&mut put)?;
    let code = String::from_utf8_lossy(&output.stdout);
    if code.trim() != "201" {
        bail!("PUT of the manifest {repo}:{tag} to {base} answered {code}, expected 201");
    }
    let digest = manifest_digest(base, repo, tag)?;
    if digest != image.manifest {
        bail!(
            "{base} gives {repo}:{tag} as {digest}, expected {}",
            image.manifest
        );
    }
    Ok(digest)
}

/// Requests for blob uploads into `repo` that carry a body (`PATCH` or `PUT` of
/// `/v2/REPO/blobs/uploads/…`), and requests about `repo` at all, counted in the access log
/// `log` of a `docker-registry`.
pub(super) fn count_blob_bodies(log: &str, repo: &str) -> (usize, usize) {
    let uploads = format!("/v2/{repo}/blobs/uploads/");
    let any = format!("/v2/{repo}/");
    let requests: Vec<&str> = log.lines().filter(|l| l.contains(&any)).collect();
    let bodies = requests
        .iter()
        .filter(|l| {
            ["PATCH", "PUT"]
                .iter()
                .any(|method| l.contains(&format!("\"{method} {uploads}")))
        })
        .count();
    (bodies, requests.len())
}

/// Fails unless `hoist copy` printed `digest` on stdout.
pub(super) fn check_digest_printed(stdout: &[u8], digest: &str) -> Result<()> {
    let stdout = String::from_utf8_lossy(stdout);
    if !stdout.contains(digest) {
        bail!(
            "hoist copy printed {:?}, not the digest {digest}",
            stdout.trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_is_found_and_made_absolute() {
        let headers = "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\
                       location: /v2/r/blobs/uploads/abc\r\nRange: 0-0\r\n\r\n";
        let location = parse_header(headers, "location").unwrap();
        assert_eq!(location, "/v2/r/blobs/uploads/abc");
        assert_eq!(
            upload_url("http://127.0.0.1:1", &location, "sha256:00"),
            "http://127.0.0.1:1/v2/r/blobs/uploads/abc?digest=sha256:00"
        );
        let absolute = parse_header(
            "HTTP/1.1 202 Accepted\r\nLocation: http://h:5/v2/r/blobs/uploads/u?_state=x\r\n\r\n",
            "location",
        )
        .unwrap();
        assert_eq!(
            upload_url("http://127.0.0.1:1", &absolute, "sha256:00"),
            "http://h:5/v2/r/blobs/uploads/u?_state=x&digest=sha256:00"
        );
        assert_eq!(
            parse_header("HTTP/1.1 202 Accepted\r\n\r\n", "location"),
            None
        );
    }

    #[test]
    fn blob_bodies_are_counted_from_the_access_log() {
        let log = r#"127.0.0.1 - - [01/Jan/2025:00:00:00 +0000] "HEAD /v2/b/m/blobs/sha256:aa HTTP/1.1" 404 157 "" "hoist"
127.0.0.1 - - [01/Jan/2025:00:00:00 +0000] "POST /v2/b/m/blobs/uploads/?from=b%2Fc&mount=sha256:aa HTTP/1.1" 201 0 "" "hoist"
127.0.0.1 - - [01/Jan/2025:00:00:00 +0000] "PUT /v2/b/m/manifests/1 HTTP/1.1" 201 0 "" "hoist"
127.0.0.1 - - [01/Jan/2025:00:00:00 +0000] "PUT /v2/b/c/blobs/uploads/x?digest=sha256:bb HTTP/1.1" 201 0 "" "curl"
"#;
        assert_eq!(count_blob_bodies(log, "b/m"), (0, 3));
        assert_eq!(count_blob_bodies(log, "b/c"), (1, 1));
        assert_eq!(count_blob_bodies(log, "b/x"), (0, 0));
    }

    #[test]
    fn curl_size_and_time_are_read() {
        assert_eq!(
            parse_size_and_time("268435456 0.110784"),
            Some((268_435_456, 0.110_784))
        );
        assert_eq!(parse_size_and_time("268435456"), None);
        assert_eq!(parse_size_and_time("12 0.000000"), None);
    }

    #[test]
    fn headers_are_parsed_case_insensitively() {
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\
                    docker-content-digest: sha256:aa\r\nDocker-Content-Digest: sha256:bb\r\n\r\n";
        assert_eq!(
            parse_header(head, "Docker-Content-Digest").as_deref(),
            Some("sha256:bb")
        );
        assert_eq!(parse_header(head, "content-length").as_deref(), Some("1"));
        assert_eq!(parse_header(head, "location"), None);
    }
}
