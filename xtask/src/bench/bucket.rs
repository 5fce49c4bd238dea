//! Scenario `bucket` (issue 15, "Speed"): `hoist serve --storage s3://...` beside
//! `docker-registry` with its `s3` storage driver, both on one moto (`moto_server`, an
//! S3-compatible server on loopback) started by the bench, side by side in one run.
//!
//! Targets, on medians:
//! * push (`hoist copy oci:DIR:v1 127.0.0.1:PORT/REPO:TAG`) of an image of [`LAYERS`] gzip
//!   layers of seeded random data (256 MiB in all) takes at most [`TIME_LIMIT`] times as long
//!   through hoist as through the registry;
//! * pull (`hoist copy 127.0.0.1:PORT/REPO:TAG oci:NEW:v1`, into a new layout) through a second
//!   `hoist serve` on the same bucket with `--redirect-blobs` the same, like for like: the
//!   registry on `s3` redirects blob GETs to presigned URLs by default; the pull through hoist
//!   streaming blobs itself (its default) is reported beside it;
//! * a blob GET through hoist's redirect (`curl -L` of the first layer): the download after the
//!   redirect takes at most [`REDIRECT_LIMIT`] times moto's own GET of the same bytes; the
//!   redirect's own time (one small request to hoist, which reads the repository's link in
//!   moto) is reported beside it;
//! * manifest requests per second (HEAD with xtask's loader, GET with `wrk`, both at
//!   [`WRK_CONNECTIONS`] connections, the server scenario's helpers) at least [`RPS_LIMIT`]
//!   times the registry's.
//!
//! Reported beside them, measured in the same runs: moto's own GET speed (`curl` of one layer's
//! bytes, stored as an object in a bucket of its own, to `/dev/null`), the machine's limit for
//! the blob path through either server.
//!
//! How it measures:
//! * one moto for the whole bench, in memory; every run makes a bucket for each server
//!   (`bench-hoist-N`, `bench-registry-N`) and starts both servers afresh on new ports, so that
//!   nothing of a previous run is found (no blob is skipped as already there);
//! * the client is the same for both servers (`hoist copy`, plain HTTP on loopback, its default
//!   `--jobs`), so only the server differs; each push is checked to give the source's manifest
//!   digest, each pull to name it in the new layout's `index.json`;
//! * the registry runs as configured by default apart from its storage and logs: `s3` with
//!   `regionendpoint` (which in 2.8 also selects path-style addressing: it has no
//!   `forcepathstyle` option), `secure: false`, `v4auth: true`, deletes enabled, its access log
//!   off (hoist runs with `-q`, which logs no request either). Its blob GETs are redirects to
//!   presigned moto URLs, as the registry does by default on `s3`;
//! * the image is made once (`hoist build`, `SOURCE_DATE_EPOCH` set: the same size gives the
//!   same digests); before every push its blobs are read, untimed, so that every push finds them
//!   in the page cache; `sync` before every timed step; each run starts with the ballast write
//!   of the layout scenario and ends with the deletion of its directory, `sync` and the pause;
//! * the order of the servers alternates between runs (hoist first in odd runs), and moto's GET
//!   and the GET through hoist's redirect sit before the pulls in odd runs and after them in
//!   even ones.
//!
//! Misses are printed as `FAIL` but do not fail the command.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::build::{LayoutImage, Rng, SOURCE_DATE_EPOCH, blob_path, layout_image, revision};
use super::client::{GEN_JOBS, parallel};
use super::{
    BenchArgs, MANIFEST_TYPE, REPO, RPS_LIMIT, TAG, Target, WRK_CONNECTIONS, ballast_bytes,
    build_hoist, curl, format_ratio, free_port, head_load, median, parse_mem_available,
    parse_size_and_time, rate_mb_s, read_through, remove_dir, require_tools, run_status,
    sync_and_pause, target_dir, timed, verdict, write_ballast, wrk,
};

/// The default image size of the scenario, and that of `--quick`.
const BUCKET_SIZE_MIB: u64 = 256;
const QUICK_SIZE_MIB: u64 = 64;
/// The image's layers.
const LAYERS: usize = 4;
/// The seed of the first layer's random bytes; layer N uses `SEED + N`.
const SEED: u64 = 0x6275_636b_6574_0015;
/// The tag of the image in the source layout and in the pulled ones.
const IMAGE_TAG: &str = "v1";
/// hoist's push and pull times over the registry's, at most.
const TIME_LIMIT: f64 = 1.0;
/// The time of the download after hoist's redirect over moto's own GET of the same bytes, at
/// most.
const REDIRECT_LIMIT: f64 = 1.10;
/// Timed GETs of the object from moto in a run (their median is the run's figure).
const MOTO_GETS: usize = 3;
/// The bucket and key of the object moto's own GET speed is measured on.
const MOTO_BUCKET: &str = "bench-moto";
const MOTO_KEY: &str = "object.bin";
/// The access key and secret both servers use (moto takes any).
const ACCESS_KEY: &str = "hoist";

/// `curl` signing its requests for moto (AWS signature v4, as the servers sign theirs):
/// moto refuses an anonymous GET of an object.
fn s3_curl() -> Command {
    let mut cmd = curl();
    cmd.args(["--aws-sigv4", "aws:amz:us-east-1:s3"])
        .args(["--user", &format!("{ACCESS_KEY}:{ACCESS_KEY}")]);
    cmd
}

/// Sets the scenario's defaults for what the command line left out: [`BUCKET_SIZE_MIB`], or
/// with `--quick` [`QUICK_SIZE_MIB`] and one run.
pub(super) fn apply_defaults(args: &mut BenchArgs, size_given: bool, runs_given: bool) {
    if !size_given {
        args.size_mib = if args.quick {
            QUICK_SIZE_MIB
        } else {
            BUCKET_SIZE_MIB
        };
    }
    if args.quick && !runs_given {
        args.runs = 1;
    }
}

/// The servers compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    /// `hoist serve --storage`, streaming blobs through (its default).
    Hoist,
    /// A second `hoist serve` on the same bucket, with `--redirect-blobs`.
    HoistRedirect,
    Registry,
}

impl Peer {
    fn key(self) -> &'static str {
        match self {
            Self::Hoist => "hoist",
            Self::HoistRedirect => "hoist_redirect",
            Self::Registry => "registry",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Hoist => "hoist",
            Self::HoistRedirect => "hoist --redirect-blobs",
            Self::Registry => "registry",
        }
    }
}

/// What a run measures: seconds for pushes, pulls and moto's GET, requests per second for the
/// manifest loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    Push(Peer),
    Pull(Peer),
    MotoGet,
    /// `curl -L` of the first layer through hoist with redirects: the blob GET answered with
    /// a redirect, then moto's own GET of the presigned URL.
    RedirectGet,
    Head(Peer),
    Get(Peer),
}

impl Probe {
    const ALL: [Self; 11] = [
        Self::Push(Peer::Hoist),
        Self::Push(Peer::Registry),
        Self::Pull(Peer::Hoist),
        Self::Pull(Peer::HoistRedirect),
        Self::Pull(Peer::Registry),
        Self::MotoGet,
        Self::RedirectGet,
        Self::Head(Peer::Hoist),
        Self::Head(Peer::Registry),
        Self::Get(Peer::Hoist),
        Self::Get(Peer::Registry),
    ];

    fn key(self) -> String {
        match self {
            Self::Push(p) => format!("{}_push", p.key()),
            Self::Pull(p) => format!("{}_pull", p.key()),
            Self::MotoGet => "moto_get".to_owned(),
            Self::RedirectGet => "hoist_redirect_blob_get".to_owned(),
            Self::Head(p) => format!("{}_manifest_head", p.key()),
            Self::Get(p) => format!("{}_manifest_get", p.key()),
        }
    }

    fn label(self) -> String {
        match self {
            Self::Push(p) => format!("push through {} (hoist copy)", p.name()),
            Self::Pull(p) => format!("pull through {} (hoist copy)", p.name()),
            Self::MotoGet => "moto GET of one layer's bytes (curl)".to_owned(),
            Self::RedirectGet => {
                "the same layer after hoist's redirect (curl -L, download only)".to_owned()
            }
            Self::Head(p) => format!("{} HEAD manifest, {WRK_CONNECTIONS} conns", p.name()),
            Self::Get(p) => format!("{} GET manifest, {WRK_CONNECTIONS} conns", p.name()),
        }
    }

    fn is_load(self) -> bool {
        matches!(self, Self::Head(_) | Self::Get(_))
    }
}

/// The order of run `index` (from 0): hoist first in even runs, the registry first in odd ones
/// (the pulls: hoist, hoist with redirects, the registry, or the reverse); moto's GET and the
/// GET through hoist's redirect before the pulls in even runs, after them in odd ones.
fn bucket_order(index: usize) -> Vec<Probe> {
    use Probe::{Get, Head, MotoGet, Pull, Push, RedirectGet};
    let even = index.is_multiple_of(2);
    let (a, b) = if even {
        (Peer::Hoist, Peer::Registry)
    } else {
        (Peer::Registry, Peer::Hoist)
    };
    let mut order = vec![Push(a), Push(b)];
    let pulls = [Pull(a), Pull(Peer::HoistRedirect), Pull(b)];
    if even {
        order.extend([MotoGet, RedirectGet]);
        order.extend(pulls);
    } else {
        order.extend(pulls);
        order.extend([RedirectGet, MotoGet]);
    }
    order.extend([Head(a), Head(b), Get(a), Get(b)]);
    order
}

/// A child process killed (and reaped) when dropped, whatever happened.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// moto's server program: from the venv `tests/peers/install.sh` makes under
/// `$HOIST_PEERS_DIR` (default `/opt/hoist-peers`), else from the `PATH`.
fn moto_program() -> Result<PathBuf> {
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
fn start_moto(program: &Path, log: &Path) -> Result<(Proc, String)> {
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
fn create_bucket(endpoint: &str, name: &str) -> Result<()> {
    let mut put = s3_curl();
    put.args(["-X", "PUT", "-o", "/dev/null"])
        .arg(format!("{endpoint}/{name}"));
    timed(&mut put).map(|_| ())
}

/// Polls `GET /v2/` of `base` until it answers (30 s at most), failing early if `server`
/// exits.
fn wait_until_answering(name: &str, base: &str, server: &mut Proc) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
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
            bail!("{name} did not answer on {base} within 30 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
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
fn start_hoist(
    exe: &Path,
    endpoint: &str,
    bucket: &str,
    extra: &[&str],
    log: &Path,
) -> Result<(Proc, String)> {
    let addr = format!("127.0.0.1:{}", free_port()?);
    let log = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let child = Command::new(exe)
        .args(["serve", "--storage", &format!("s3://{bucket}/hoist")])
        .args(["--addr", &addr, "-q"])
        .args(extra)
        .envs(aws_env(endpoint))
        .env_remove("AWS_CA_BUNDLE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    let mut hoist = Proc(child);
    let base = format!("http://{addr}");
    wait_until_answering("hoist serve", &base, &mut hoist)?;
    Ok((hoist, base))
}

/// The registry's configuration: the `s3` driver on moto's `bucket`, deletes enabled, no
/// access log, listening on `addr`.
fn registry_config(endpoint: &str, bucket: &str, addr: &str) -> String {
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
fn start_registry(dir: &Path, endpoint: &str, bucket: &str) -> Result<(Proc, String)> {
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
    wait_until_answering("docker-registry", &base, &mut registry)?;
    Ok((registry, base))
}

/// Writes `size` random bytes (splitmix64 from `seed`) into a new file `path`.
fn write_random(path: &Path, size: u64, seed: u64) -> Result<()> {
    let mut rng = Rng(seed);
    let mut file =
        File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        rng.fill(&mut buf[..n]);
        file.write_all(&buf[..n])
            .with_context(|| format!("cannot write {}", path.display()))?;
        left -= n as u64;
    }
    Ok(())
}

fn oci(dir: &Path) -> String {
    format!("oci:{}:{IMAGE_TAG}", dir.display())
}

/// Makes the image under `work`: [`LAYERS`] layers, each a directory holding one file of
/// random bytes (`random_bytes` in all), built by hoist into the layout `work/image`.
fn make_image(hoist: &Path, work: &Path, random_bytes: u64) -> Result<(PathBuf, LayoutImage)> {
    let trees = work.join("trees");
    let each = random_bytes / LAYERS as u64;
    let sizes: Vec<(u64, u64)> = (0..LAYERS as u64)
        .map(|n| {
            let size = if n + 1 == LAYERS as u64 {
                random_bytes - each * (LAYERS as u64 - 1)
            } else {
                each
            };
            (n, size)
        })
        .collect();
    let (seconds, dirs) = parallel(GEN_JOBS, &sizes, |&(n, size)| {
        let dir = trees.join(format!("layer-{}", n + 1));
        let data = dir.join("data");
        fs::create_dir_all(&data).with_context(|| format!("cannot create {}", data.display()))?;
        write_random(&data.join(format!("random-{}.bin", n + 1)), size, SEED + n)?;
        Ok(dir)
    })?;
    println!("    {LAYERS} trees in {seconds:.1} s");
    let layout = work.join("image");
    let mut build = Command::new(hoist);
    build
        .env("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH)
        .args(["-q", "build"]);
    for dir in &dirs {
        build.arg("--layer").arg(dir);
    }
    build.arg(oci(&layout));
    let (seconds, _) = timed(&mut build)?;
    let built = layout_image(&layout, IMAGE_TAG)?;
    if built.layers.len() != LAYERS {
        bail!(
            "hoist built {} layers, expected {LAYERS}",
            built.layers.len()
        );
    }
    println!(
        "    hoist build in {seconds:.1} s, manifest {}",
        built.manifest
    );
    remove_dir(&trees)?;
    Ok((layout, built))
}

/// The value of the header `name` in HTTP response heads (the last one wins).
fn parse_header(headers: &str, name: &str) -> Option<String> {
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

/// Fails unless the server at `base` has the manifest `digest` as [`REPO`]:[`TAG`].
fn check_pushed(base: &str, digest: &str) -> Result<()> {
    let mut head = curl();
    head.args(["-I", "-H", &format!("Accept: {MANIFEST_TYPE}")])
        .arg(format!("{base}/v2/{REPO}/manifests/{TAG}"));
    let (_, output) = timed(&mut head)?;
    let headers = String::from_utf8_lossy(&output.stdout);
    let got = parse_header(&headers, "docker-content-digest")
        .with_context(|| format!("no Docker-Content-Digest for {REPO}:{TAG} on {base}"))?;
    if got != digest {
        bail!("{base} has {REPO}:{TAG} as {got}, expected the source's {digest}");
    }
    Ok(())
}

/// Fails unless `hoist copy` printed `digest` on stdout.
fn check_digest_printed(stdout: &[u8], digest: &str) -> Result<()> {
    let stdout = String::from_utf8_lossy(stdout);
    if !stdout.contains(digest) {
        bail!(
            "hoist copy printed {:?}, not the digest {digest}",
            stdout.trim()
        );
    }
    Ok(())
}

/// The base URL's `host:port`, as `hoist copy` takes a registry reference.
fn host_of(base: &str) -> &str {
    base.trim_start_matches("http://")
}

/// The `Location` of a blob GET on `base` if it answers with a redirect (the registry on `s3`
/// does by default), `None` if it serves the bytes itself.
fn blob_redirect(base: &str, digest: &str) -> Result<Option<String>> {
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

/// One measure of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Reading {
    probe: Probe,
    value: f64,
    /// The load tests' 99th percentile latency, in milliseconds.
    p99_ms: Option<f64>,
    /// The GET through hoist's redirect: the redirect's time, before the download, in
    /// milliseconds.
    redirect_ms: Option<f64>,
}

/// What the probes of a run use.
struct RunCx<'a> {
    hoist: &'a Path,
    layout: &'a Path,
    image: &'a LayoutImage,
    dir: &'a Path,
    moto: &'a str,
    moto_bytes: u64,
    get_script: &'a Path,
    wrk_secs: u64,
    hoist_base: &'a str,
    hoist_redirect_base: &'a str,
    registry_base: &'a str,
}

impl RunCx<'_> {
    fn base(&self, peer: Peer) -> &str {
        match peer {
            Peer::Hoist => self.hoist_base,
            Peer::HoistRedirect => self.hoist_redirect_base,
            Peer::Registry => self.registry_base,
        }
    }

    /// Reads the source's blobs, untimed, so that the push finds them in the page cache.
    fn warm_source(&self) -> Result<()> {
        for (digest, _) in &self.image.layers {
            read_through(&blob_path(self.layout, digest))?;
        }
        Ok(())
    }
}

/// Runs `probe`, checking what it did.
fn measure(probe: Probe, cx: &RunCx<'_>) -> Result<Reading> {
    let mut p99_ms = None;
    let mut redirect_ms = None;
    let value = match probe {
        Probe::Push(peer) => {
            cx.warm_source()?;
            run_status(&mut Command::new("sync"))?;
            let base = cx.base(peer);
            let mut copy = Command::new(cx.hoist);
            copy.args(["copy", &oci(cx.layout)])
                .arg(format!("{}/{REPO}:{TAG}", host_of(base)));
            let (seconds, output) = timed(&mut copy)?;
            check_digest_printed(&output.stdout, &cx.image.manifest)?;
            check_pushed(base, &cx.image.manifest)?;
            seconds
        }
        Probe::Pull(peer) => {
            run_status(&mut Command::new("sync"))?;
            let dir = cx.dir.join(format!("pull-{}", peer.key()));
            let mut copy = Command::new(cx.hoist);
            copy.arg("copy")
                .arg(format!("{}/{REPO}:{TAG}", host_of(cx.base(peer))))
                .arg(oci(&dir));
            let (seconds, output) = timed(&mut copy)?;
            check_digest_printed(&output.stdout, &cx.image.manifest)?;
            let pulled = layout_image(&dir, IMAGE_TAG)?;
            if pulled != *cx.image {
                bail!("the pull from {} gave {pulled:?}", peer.key());
            }
            for (digest, size) in &pulled.layers {
                let got = fs::metadata(blob_path(&dir, digest))?.len();
                if got != *size {
                    bail!("the pulled {digest} has {got} bytes, expected {size}");
                }
            }
            seconds
        }
        Probe::MotoGet | Probe::RedirectGet => {
            let url = if probe == Probe::MotoGet {
                format!("{}/{MOTO_BUCKET}/{MOTO_KEY}", cx.moto)
            } else {
                let layer = &cx.image.layers[0].0;
                format!("{}/v2/{REPO}/blobs/{layer}", cx.hoist_redirect_base)
            };
            // Seconds of the download, and of the redirect before it (curl's own clock).
            let get = || -> Result<(f64, f64)> {
                let mut cmd = if probe == Probe::MotoGet {
                    s3_curl()
                } else {
                    let mut plain = curl();
                    plain.arg("-L");
                    plain
                };
                cmd.args([
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{size_download} %{time_total} %{time_redirect}",
                ])
                .arg(&url);
                let (_, output) = timed(&mut cmd)?;
                let text = String::from_utf8_lossy(&output.stdout);
                let (size, seconds) = parse_size_and_time(&text)
                    .with_context(|| format!("GET {url}: curl wrote {text:?}"))?;
                let redirect: f64 = text
                    .split_whitespace()
                    .nth(2)
                    .and_then(|t| t.parse().ok())
                    .with_context(|| format!("GET {url}: curl wrote {text:?}"))?;
                if size != cx.moto_bytes {
                    bail!("GET {url} gave {size} bytes, expected {}", cx.moto_bytes);
                }
                if probe == Probe::RedirectGet && redirect <= 0.0 {
                    bail!("GET {url} was not redirected");
                }
                Ok((seconds - redirect, redirect))
            };
            // Untimed first, then the median of a few.
            get()?;
            let times = (0..MOTO_GETS).map(|_| get()).collect::<Result<Vec<_>>>()?;
            if probe == Probe::RedirectGet {
                let redirects: Vec<f64> = times.iter().map(|(_, r)| r * 1000.0).collect();
                redirect_ms = median(&redirects);
            }
            let downloads: Vec<f64> = times.iter().map(|(d, _)| *d).collect();
            median(&downloads).unwrap_or(f64::NAN)
        }
        Probe::Head(peer) | Probe::Get(peer) => {
            let base = cx.base(peer);
            let load = if matches!(probe, Probe::Head(_)) {
                head_load(base, WRK_CONNECTIONS, cx.wrk_secs)?
            } else {
                wrk(base, cx.get_script, WRK_CONNECTIONS, cx.wrk_secs)?
            };
            p99_ms = Some(load.p99_ms);
            load.requests_per_sec
        }
    };
    Ok(Reading {
        probe,
        value,
        p99_ms,
        redirect_ms,
    })
}

/// Everything the bucket scenario measured.
#[derive(Debug)]
struct BucketReport {
    /// Bytes of the image's layers.
    layer_bytes: u64,
    manifest: String,
    /// Bytes of the object moto's GET is measured on.
    moto_bytes: u64,
    /// The untimed `PUT` of that object, in seconds (curl's clock).
    moto_put_seconds: f64,
    /// Whether the registry answered a blob GET with a redirect to moto.
    registry_redirects: bool,
    registry_version: String,
    hoist_revision: String,
    wrk_secs: u64,
    pause_secs: u64,
    ballast_bytes: Vec<u64>,
    runs: Vec<Vec<Reading>>,
}

impl BucketReport {
    fn values(&self, probe: Probe) -> Vec<f64> {
        self.runs
            .iter()
            .filter_map(|run| run.iter().find(|r| r.probe == probe).map(|r| r.value))
            .collect()
    }

    fn median(&self, probe: Probe) -> f64 {
        median(&self.values(probe)).unwrap_or(f64::NAN)
    }

    fn p99s(&self, probe: Probe) -> Vec<f64> {
        self.runs
            .iter()
            .filter_map(|run| run.iter().find(|r| r.probe == probe).and_then(|r| r.p99_ms))
            .collect()
    }

    fn median_p99(&self, probe: Probe) -> f64 {
        median(&self.p99s(probe)).unwrap_or(f64::NAN)
    }

    /// hoist's median over the registry's: times for pushes and pulls (lower is better),
    /// requests per second for the loads (higher is better).
    fn ratio(&self, probe: fn(Peer) -> Probe) -> f64 {
        self.median(probe(Peer::Hoist)) / self.median(probe(Peer::Registry))
    }

    /// The median time of hoist's redirect answers, in milliseconds.
    fn redirect_ms(&self) -> f64 {
        let all: Vec<f64> = self
            .runs
            .iter()
            .flatten()
            .filter_map(|r| r.redirect_ms)
            .collect();
        median(&all).unwrap_or(f64::NAN)
    }

    /// `hoist`'s median over `other`'s.
    fn ratio_of(&self, hoist: Probe, other: Probe) -> f64 {
        self.median(hoist) / self.median(other)
    }

    /// The bytes a probe moves, for its MB/s.
    fn bytes(&self, probe: Probe) -> Option<u64> {
        match probe {
            Probe::Push(_) | Probe::Pull(_) => Some(self.layer_bytes),
            Probe::MotoGet | Probe::RedirectGet => Some(self.moto_bytes),
            Probe::Head(_) | Probe::Get(_) => None,
        }
    }

    /// A pull's MB/s as a share of moto's own GET speed, in percent.
    fn pull_vs_moto(&self, peer: Peer) -> f64 {
        let pull = rate_mb_s(self.layer_bytes, self.median(Probe::Pull(peer)));
        let moto = rate_mb_s(self.moto_bytes, self.median(Probe::MotoGet));
        100.0 * pull / moto
    }

    fn targets(&self) -> Vec<Target> {
        let at_most = |name, ratio: f64, limit: f64| Target {
            name,
            measured: format_ratio(ratio),
            limit: format!("≤ {}", format_ratio(limit)),
            pass: ratio <= limit,
            value: ratio,
            limit_value: limit,
        };
        let at_least = |name, ratio: f64, limit: f64| Target {
            name,
            measured: format_ratio(ratio),
            limit: format!("≥ {}", format_ratio(limit)),
            pass: ratio >= limit,
            value: ratio,
            limit_value: limit,
        };
        vec![
            at_most(
                "push time, hoist / registry",
                self.ratio(Probe::Push),
                TIME_LIMIT,
            ),
            at_most(
                "pull time, hoist --redirect-blobs / registry (both redirect)",
                self.ratio_of(
                    Probe::Pull(Peer::HoistRedirect),
                    Probe::Pull(Peer::Registry),
                ),
                TIME_LIMIT,
            ),
            at_most(
                "blob download after hoist's redirect / moto's own GET",
                self.ratio_of(Probe::RedirectGet, Probe::MotoGet),
                REDIRECT_LIMIT,
            ),
            at_least(
                "manifest HEAD req/s, hoist / registry",
                self.ratio(Probe::Head),
                RPS_LIMIT,
            ),
            at_least(
                "manifest GET req/s, hoist / registry",
                self.ratio(Probe::Get),
                RPS_LIMIT,
            ),
        ]
    }

    fn table(&self) -> String {
        let runs = self.runs.len();
        let mut out = String::new();
        let ballast = match self.ballast_bytes.iter().max() {
            Some(&max) if max > 0 => format!("up to {} MiB ballast before each run", max >> 20),
            _ => "no ballast".to_owned(),
        };
        let _ = writeln!(
            out,
            "bucket bench: hoist serve --storage s3:// vs {} (s3 driver{}), one moto on \
             loopback,\na fresh bucket and fresh servers per run; client: hoist copy for \
             both; {} MiB in {LAYERS} gzip layers\nof seeded random data, manifest {};\n\
             {runs} run(s), {ballast}, {} s pause after each run; server order alternates; \
             manifest\nloads: HEAD with xtask's loader, GET with wrk -t2, \
             {WRK_CONNECTIONS} connections, {} s each; hoist built from {}\n",
            self.registry_version,
            if self.registry_redirects {
                ", blob GETs redirected to moto"
            } else {
                ", blobs streamed through"
            },
            self.layer_bytes >> 20,
            self.manifest,
            self.pause_secs,
            self.wrk_secs,
            self.hoist_revision,
        );
        let header = |out: &mut String, title: &str, last: &str| {
            let _ = write!(out, "| {title} |");
            for i in 1..=runs {
                let _ = write!(out, " run {i} |");
            }
            let _ = writeln!(out, " median | {last} |");
            let _ = write!(out, "|---|");
            for _ in 0..runs {
                let _ = write!(out, "---:|");
            }
            let _ = writeln!(out, "---:|---:|");
        };
        header(&mut out, "seconds", "MB/s");
        for probe in Probe::ALL.into_iter().filter(|p| !p.is_load()) {
            let _ = write!(out, "| {} |", probe.label());
            for v in self.values(probe) {
                let _ = write!(out, " {v:.3} |");
            }
            let m = self.median(probe);
            let rate = self.bytes(probe).map_or(f64::NAN, |b| rate_mb_s(b, m));
            let _ = writeln!(out, " {m:.3} | {rate:.0} |");
        }
        let _ = writeln!(out);
        header(&mut out, "requests/s", "p99 ms");
        for probe in Probe::ALL.into_iter().filter(|p| p.is_load()) {
            let _ = write!(out, "| {} |", probe.label());
            for v in self.values(probe) {
                let _ = write!(out, " {v:.0} |");
            }
            let _ = writeln!(
                out,
                " {:.0} | {:.2} |",
                self.median(probe),
                self.median_p99(probe)
            );
        }
        let _ = writeln!(
            out,
            "\npull speed as a share of moto's own GET: hoist {:.0}% (streamed; {:.2}× the \
             registry's time), hoist with redirects {:.0}%, registry {:.0}% (moto PUT of {} \
             MiB, untimed: {:.0} MB/s)",
            self.pull_vs_moto(Peer::Hoist),
            self.ratio(Probe::Pull),
            self.pull_vs_moto(Peer::HoistRedirect),
            self.pull_vs_moto(Peer::Registry),
            self.moto_bytes >> 20,
            rate_mb_s(self.moto_bytes, self.moto_put_seconds),
        );
        let _ = writeln!(
            out,
            "hoist's redirect answered in {:.1} ms (median; one read of the repository's link \
             in moto, then a URL signed in the process) before the download",
            self.redirect_ms()
        );
        let _ = writeln!(out, "\n| target | measured | limit | verdict |");
        let _ = writeln!(out, "|---|---:|---:|---|");
        for t in self.targets() {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                t.name,
                t.measured,
                t.limit,
                verdict(t.pass)
            );
        }
        out
    }

    fn to_json(&self) -> Value {
        let map = |f: &dyn Fn(Probe) -> Value| -> serde_json::Map<String, Value> {
            Probe::ALL.iter().map(|&p| (p.key(), f(p))).collect()
        };
        json!({
            "scenario": "bucket",
            "layer_bytes": self.layer_bytes,
            "layers": LAYERS,
            "seed": SEED,
            "manifest": self.manifest,
            "moto_object_bytes": self.moto_bytes,
            "moto_put_seconds": self.moto_put_seconds,
            "registry": self.registry_version,
            "registry_blob_redirects": self.registry_redirects,
            "hoist_revision": self.hoist_revision,
            "runs": self.runs.len(),
            "pause_secs": self.pause_secs,
            "ballast_bytes": self.ballast_bytes,
            "load": {
                "connections": WRK_CONNECTIONS,
                "seconds": self.wrk_secs,
                "head": "xtask's loader, one thread per connection",
                "get": "wrk -t2",
            },
            "order": self.runs.iter()
                .map(|run| run.iter().map(|r| r.probe.key()).collect::<Vec<_>>())
                .collect::<Vec<_>>(),
            "values": map(&|p| json!(self.values(p))),
            "medians": map(&|p| json!(self.median(p))),
            "p99_ms": Probe::ALL.iter().filter(|p| p.is_load())
                .map(|&p| (p.key(), json!(self.p99s(p))))
                .collect::<serde_json::Map<String, Value>>(),
            "units": {
                "push, pull, moto_get": "seconds",
                "manifest": "requests/s",
                "p99": "milliseconds",
            },
            "redirect_ms": self.redirect_ms(),
            "pull_percent_of_moto_get": {
                "hoist": self.pull_vs_moto(Peer::Hoist),
                "hoist_redirect": self.pull_vs_moto(Peer::HoistRedirect),
                "registry": self.pull_vs_moto(Peer::Registry),
            },
            "targets": self.targets().iter().map(|t| json!({
                "name": t.name,
                "value": t.value,
                "limit": t.limit_value,
                "at_most": t.name.contains("time"),
                "pass": t.pass,
            })).collect::<Vec<_>>(),
        })
    }
}

pub(super) fn run(root: &Path, args: &BenchArgs) -> Result<()> {
    let exe = build_hoist(root)?;
    require_tools(&["curl", "wrk", "docker-registry"])?;
    let moto_program = moto_program()?;
    let bench_dir = target_dir(root).join("bench");
    let work = bench_dir.join("bucket-work");
    remove_dir(&work)?;
    fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let size_bytes = args.size_mib << 20;
    let wrk_secs = if args.quick { 2 } else { 5 };

    println!(
        "==> image: {} MiB of random data (seed {SEED:#x}) in {LAYERS} layers, hoist build",
        args.size_mib
    );
    let (layout, image) = make_image(&exe, &work, size_bytes)?;
    let layer_bytes: u64 = image.layers.iter().map(|(_, size)| size).sum();

    let (_moto, moto) = start_moto(&moto_program, &work.join("moto.log"))?;
    println!("==> moto on {moto}");
    // moto's own GET speed, on the bytes of the first layer as an object of its own.
    create_bucket(&moto, MOTO_BUCKET)?;
    let (first_layer, moto_bytes) = image.layers[0].clone();
    let object = blob_path(&layout, &first_layer);
    read_through(&object)?;
    let mut put = s3_curl();
    put.args(["-X", "PUT", "-H", "Expect:", "-o", "/dev/null"])
        .args(["-w", "%{size_upload} %{time_total}", "-T"])
        .arg(&object)
        .arg(format!("{moto}/{MOTO_BUCKET}/{MOTO_KEY}"));
    let (_, output) = timed(&mut put)?;
    let text = String::from_utf8_lossy(&output.stdout);
    let (_, moto_put_seconds) = parse_size_and_time(&text)
        .with_context(|| format!("PUT of the object to moto: curl wrote {text:?}"))?;

    let get_script = work.join("get.lua");
    fs::write(
        &get_script,
        format!("wrk.method = \"GET\"\nwrk.headers[\"Accept\"] = \"{MANIFEST_TYPE}\"\n"),
    )?;
    sync_and_pause(args.pause_secs)?;

    let mut runs = Vec::new();
    let mut ballasts = Vec::new();
    let mut registry_redirects = false;
    for index in 0..args.runs {
        let number = index + 1;
        let dir = work.join(format!("run-{number}"));
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        println!("==> run {number} of {}", args.runs);
        let ballast = if args.ballast {
            let meminfo =
                fs::read_to_string("/proc/meminfo").context("cannot read /proc/meminfo")?;
            let available =
                parse_mem_available(&meminfo).context("no MemAvailable in /proc/meminfo")?;
            ballast_bytes(layer_bytes, available)
        } else {
            0
        };
        if ballast > 0 {
            println!("    ballast: {} MiB (untimed)", ballast >> 20);
            write_ballast(&dir.join("ballast"), ballast)?;
        }
        ballasts.push(ballast);

        let (hoist_bucket, registry_bucket) = (
            format!("bench-hoist-{number}"),
            format!("bench-registry-{number}"),
        );
        create_bucket(&moto, &hoist_bucket)?;
        create_bucket(&moto, &registry_bucket)?;
        let (hoist_proc, hoist_base) =
            start_hoist(&exe, &moto, &hoist_bucket, &[], &dir.join("hoist.log"))?;
        let (redirect_proc, hoist_redirect_base) = start_hoist(
            &exe,
            &moto,
            &hoist_bucket,
            &["--redirect-blobs"],
            &dir.join("hoist-redirect.log"),
        )?;
        let (registry_proc, registry_base) = start_registry(&dir, &moto, &registry_bucket)?;
        println!(
            "    hoist serve on {hoist_base} and with --redirect-blobs on {hoist_redirect_base} \
             (s3://{hoist_bucket}/hoist), docker-registry on \
             {registry_base} (s3://{registry_bucket}/registry)"
        );
        let cx = RunCx {
            hoist: &exe,
            layout: &layout,
            image: &image,
            dir: &dir,
            moto: &moto,
            moto_bytes,
            get_script: &get_script,
            wrk_secs,
            hoist_base: &hoist_base,
            hoist_redirect_base: &hoist_redirect_base,
            registry_base: &registry_base,
        };
        let mut readings = Vec::new();
        for probe in bucket_order(index) {
            let reading = measure(probe, &cx)?;
            match reading.p99_ms {
                None => {
                    let bytes = if matches!(probe, Probe::MotoGet | Probe::RedirectGet) {
                        moto_bytes
                    } else {
                        layer_bytes
                    };
                    println!(
                        "    {:<44}{:>9.3} s {:>7.0} MB/s",
                        probe.label(),
                        reading.value,
                        rate_mb_s(bytes, reading.value)
                    );
                }
                Some(p99) => println!(
                    "    {:<44}{:>9.0} req/s, p99 {p99:.2} ms",
                    probe.label(),
                    reading.value
                ),
            }
            readings.push(reading);
            if probe == Probe::Push(Peer::Hoist)
                && blob_redirect(&hoist_redirect_base, &image.layers[0].0)?.is_none()
            {
                bail!("hoist serve --redirect-blobs answered a blob GET without a redirect");
            }
            if probe == Probe::Push(Peer::Registry) && index == 0 {
                registry_redirects = blob_redirect(&registry_base, &image.layers[0].0)?.is_some();
            }
        }
        runs.push(readings);
        drop(hoist_proc);
        drop(redirect_proc);
        drop(registry_proc);
        remove_dir(&dir)?;
        sync_and_pause(args.pause_secs)?;
    }
    drop(_moto);
    remove_dir(&work)?;

    let report = BucketReport {
        layer_bytes,
        manifest: image.manifest.clone(),
        moto_bytes,
        moto_put_seconds,
        registry_redirects,
        registry_version: super::build::version("docker-registry", "--version"),
        hoist_revision: revision(root),
        wrk_secs,
        pause_secs: args.pause_secs,
        ballast_bytes: ballasts,
        runs,
    };
    let json_path = bench_dir.join("bucket.json");
    let mut text = serde_json::to_string_pretty(&report.to_json())?;
    text.push('\n');
    fs::write(&json_path, text).with_context(|| format!("cannot write {}", json_path.display()))?;
    println!();
    print!("{}", report.table());
    println!("\nresults: {}", json_path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_256_mib_and_quick_is_64_mib_once() {
        let mut args = BenchArgs::default();
        apply_defaults(&mut args, false, false);
        assert_eq!((args.size_mib, args.runs), (256, 3));
        let mut quick = BenchArgs {
            quick: true,
            ..BenchArgs::default()
        };
        apply_defaults(&mut quick, false, false);
        assert_eq!((quick.size_mib, quick.runs), (64, 1));
        let mut given = BenchArgs {
            quick: true,
            size_mib: 8,
            runs: 2,
            ..BenchArgs::default()
        };
        apply_defaults(&mut given, true, true);
        assert_eq!((given.size_mib, given.runs), (8, 2));
    }

    #[test]
    fn order_alternates_the_servers_and_measures_everything_once() {
        for index in 0..2 {
            let order = bucket_order(index);
            assert_eq!(order.len(), Probe::ALL.len());
            assert!(Probe::ALL.iter().all(|p| order.contains(p)));
            // Every pull after its push; every load after the pushes.
            let pos = |p| order.iter().position(|&q| q == p).unwrap();
            for peer in [Peer::Hoist, Peer::Registry] {
                assert!(pos(Probe::Push(peer)) < pos(Probe::Pull(peer)));
                assert!(pos(Probe::Push(peer)) < pos(Probe::Head(peer)));
            }
        }
        assert_eq!(bucket_order(0)[0], Probe::Push(Peer::Hoist));
        assert_eq!(bucket_order(1)[0], Probe::Push(Peer::Registry));
        assert_eq!(bucket_order(0)[2], Probe::MotoGet);
        assert_eq!(bucket_order(1)[6], Probe::MotoGet);
        // The pull with redirects comes after the push of the bucket it reads.
        for index in 0..2 {
            let order = bucket_order(index);
            let pos = |p| order.iter().position(|&q| q == p).unwrap();
            assert!(pos(Probe::Push(Peer::Hoist)) < pos(Probe::Pull(Peer::HoistRedirect)));
            assert!(pos(Probe::Push(Peer::Hoist)) < pos(Probe::RedirectGet));
        }
    }

    #[test]
    fn registry_config_names_the_bucket_and_endpoint() {
        let config = registry_config("http://127.0.0.1:9000", "b-1", "127.0.0.1:5001");
        for line in [
            "regionendpoint: http://127.0.0.1:9000",
            "bucket: b-1",
            "secure: false",
            "v4auth: true",
            "addr: 127.0.0.1:5001",
            "enabled: true",
        ] {
            assert!(config.contains(line), "{line} missing from\n{config}");
        }
    }

    #[test]
    fn headers_are_parsed_case_insensitively() {
        let heads = "HTTP/1.1 200 OK\r\nDocker-Content-Digest: sha256:aa\r\n\r\n";
        assert_eq!(
            parse_header(heads, "docker-content-digest").as_deref(),
            Some("sha256:aa")
        );
        assert_eq!(parse_header(heads, "location"), None);
    }

    fn report(hoist_push: f64, hoist_rps: f64, redirect_get: f64) -> BucketReport {
        let run = |i: usize| {
            bucket_order(i)
                .into_iter()
                .map(|probe| {
                    let value = match probe {
                        Probe::Push(Peer::Hoist | Peer::HoistRedirect) => hoist_push,
                        Probe::Push(Peer::Registry) | Probe::Pull(_) => 2.0,
                        Probe::MotoGet => 0.1,
                        Probe::RedirectGet => redirect_get,
                        Probe::Head(Peer::Hoist | Peer::HoistRedirect)
                        | Probe::Get(Peer::Hoist | Peer::HoistRedirect) => hoist_rps,
                        Probe::Head(Peer::Registry) | Probe::Get(Peer::Registry) => 1000.0,
                    };
                    let p99_ms = probe.is_load().then_some(1.0);
                    Reading {
                        probe,
                        value,
                        p99_ms,
                        redirect_ms: (probe == Probe::RedirectGet).then_some(5.0),
                    }
                })
                .collect()
        };
        BucketReport {
            layer_bytes: 256 << 20,
            manifest: "sha256:00".to_owned(),
            moto_bytes: 64 << 20,
            moto_put_seconds: 0.4,
            registry_redirects: true,
            registry_version: "docker-registry 2.8.2".to_owned(),
            hoist_revision: "abc".to_owned(),
            wrk_secs: 5,
            pause_secs: 20,
            ballast_bytes: vec![0; 3],
            runs: (0..3).map(run).collect(),
        }
    }

    #[test]
    fn targets_compare_hoist_with_the_registry() {
        let good = report(1.5, 3000.0, 0.105);
        assert!(good.targets().iter().all(|t| t.pass));
        assert!((good.ratio(Probe::Push) - 0.75).abs() < 1e-9);
        let table = good.table();
        assert!(table.contains("| push time, hoist / registry | 0.75× | ≤ 1.00× | PASS |"));
        let slow = report(2.5, 1500.0, 0.2);
        let verdicts: Vec<bool> = slow.targets().iter().map(|t| t.pass).collect();
        // push, pull with redirects, the redirect's GET against moto's, HEAD, GET.
        assert_eq!(verdicts, [false, true, false, false, false]);
        let json = slow.to_json();
        assert_eq!(json["targets"][0]["pass"], false);
        assert_eq!(json["medians"]["registry_pull"], 2.0);
    }
}
