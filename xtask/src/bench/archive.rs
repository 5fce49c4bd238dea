//! Scenario `archive`: `hoist copy` beside `skopeo copy` and `docker load`, writing, reading
//! and loading a docker-archive of an image of [`LAYERS`] gzip layers of incompressible data
//! (1 GiB in all by default) in an OCI layout.
//!
//! Targets, on medians, side by side in one run:
//! * write: `hoist copy oci:IMG:v1 docker-archive:OUT.tar:bench/img:v1` takes at most
//!   [`WRITE_VS_SKOPEO`] times `skopeo copy` of the same references;
//! * read: `hoist copy docker-archive:A.tar:bench/img:v1 oci:NEW:v1` takes at most
//!   [`READ_VS_SKOPEO`] times `skopeo copy` of the same references, both reading skopeo's
//!   archive; hoist reading its own archive is reported beside it (each tool reading what it
//!   wrote);
//! * load: `hoist copy oci:IMG:v1 docker-daemon:bench/img:v1` into a Docker 20.10 daemon
//!   (`DOCKER_HOST`) takes at most [`LOAD_VS_DOCKER`] times `docker load -i` of skopeo's
//!   archive into another one, each daemon started fresh (a daemon skips layers it has).
//!
//! Reported beside them, measured in the same runs: the machine's limits for the same bytes
//! (reading the layout's layers with `cat`, hashing them with `openssl dgst -sha256`, writing a
//! new file of the archive's size with `dd conv=fdatasync`), CPU seconds and the peak RSS of
//! every process (GNU `time`), and that of each daemon (`VmHWM`, start-up included).
//!
//! How it measures:
//! * the image is made once from a seed: each layer a directory holding one file of random
//!   bytes (splitmix64 from [`SEED`] + the layer's index), built by `hoist build` with
//!   `SOURCE_DATE_EPOCH` set (so the same size gives the same manifest digest), tagged
//!   [`TAG`]; skopeo's and hoist's archives of it are written once, untimed, and read by every
//!   run's reads and by `docker load`;
//! * hoist writes its archive into a temporary file which it `fsync`s and renames; skopeo
//!   writes the archive in place and does not `fsync` it (under `strace`, skopeo 1.9 syncs
//!   only its blob-info cache, and stages layers in `/var/tmp/stream-blob*` files before
//!   copying them into the archive: its own way, measured as it is). hoist writes its default
//!   `--docker-archive-format` (Docker 25+: an OCI layout with `manifest.json`), skopeo 1.9 the
//!   classic one;
//! * every step writes into a new directory (a new archive, a new layout, a new file), after
//!   `sync` and an untimed read of what it reads (the layout or an archive), so that each
//!   finds its input in the page cache; each load goes into a Docker daemon started for it,
//!   untimed, with a data root of its own (`tests/peers/start-daemon.sh docker20 DIR`), and
//!   left running until the run ends (`stop-daemon.sh DIR`) so that nothing is deleted within
//!   a run; DIR is on the tmpfs `/dev/shm` when it has room (see [`memory_daemon_root`]), so
//!   that the loads compare the tools and not the disk's moods;
//! * each run starts with the ballast write of the layout scenario; the order of the steps
//!   before the loads reverses from one run to the next, each hoist step beside the peer it is
//!   compared with; the two loads come last, their order swapping from one run to the next;
//! * a run's outputs are deleted together when it ends, followed by `sync` and the pause.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::build::{
    LayoutImage, Rng, SOURCE_DATE_EPOCH, blob_path, layout_image, load_average, parse_time_line,
    read_json, revision, version, warm_tree, with_time,
};
use super::client::{GEN_JOBS, LAYERS, layer_sizes, parallel};
use super::{
    BenchArgs, Target, ballast_bytes, build_hoist, format_mib, format_ratio, median,
    parse_mem_available, parse_openssl_digest, rate_mb_s, read_through, remove_dir, require_tools,
    run_status, sync_and_pause, target_dir, timed, verdict, write_ballast,
};

/// The default image size of the scenario, and that of `--quick`.
const ARCHIVE_SIZE_MIB: u64 = 1024;
const QUICK_SIZE_MIB: u64 = 64;
/// The default number of runs (one with `--quick`).
///
/// Even, so that each step comes first of its pair as often as second: on a noisy machine the
/// first of a pair is often slower, whichever tool it is, and with an odd count the median of
/// the tool that goes first more often may be one of those.
const ARCHIVE_RUNS: usize = 6;
/// The seed of the first layer's random bytes; layer N uses `SEED + N`.
const SEED: u64 = 0x686f_6973_7461_7263;
/// The image's tag in the layouts.
const TAG: &str = "v1";
/// The image's name in the archives and the daemons.
const NAME: &str = "bench/img:v1";
/// hoist's time over skopeo's, at most, writing and reading an archive.
const WRITE_VS_SKOPEO: f64 = 0.75;
const READ_VS_SKOPEO: f64 = 0.75;
/// hoist's load into a daemon over `docker load`'s, at most.
const LOAD_VS_DOCKER: f64 = 1.10;
/// The engine of `tests/peers/start-daemon.sh`: Debian's docker.io, Engine 20.10.
const ENGINE: &str = "docker20";
/// The Docker client of that engine (another `docker` on the `PATH` may be another one).
const DOCKER: &str = "/usr/bin/docker";
const DOCKERD: &str = "/usr/sbin/dockerd";
/// Copies of the image in the page cache beyond the three [`ballast_bytes`] counts: the layout
/// and the two archives, kept all along, and what a run writes: two archives, three layouts,
/// the `dd` file and two daemons' data (eleven in all).
const EXTRA_COPIES: u64 = 8;

/// Sets the scenario's defaults for what the command line left out: [`ARCHIVE_SIZE_MIB`] and
/// [`ARCHIVE_RUNS`], or with `--quick` [`QUICK_SIZE_MIB`] and one run.
pub(super) fn apply_defaults(args: &mut BenchArgs, size_given: bool, runs_given: bool) {
    if !size_given {
        args.size_mib = if args.quick {
            QUICK_SIZE_MIB
        } else {
            ARCHIVE_SIZE_MIB
        };
    }
    if !runs_given {
        args.runs = if args.quick { 1 } else { ARCHIVE_RUNS };
    }
}

/// What a run times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// `skopeo copy oci:IMG:v1 docker-archive:OUT.tar:bench/img:v1` into a new directory.
    SkopeoWrite,
    /// `hoist copy` of the same references.
    HoistWrite,
    /// `skopeo copy docker-archive:SKOPEO.tar:bench/img:v1 oci:NEW:v1`.
    SkopeoRead,
    /// `hoist copy` of the same references.
    HoistRead,
    /// `hoist copy docker-archive:HOIST.tar:bench/img:v1 oci:NEW:v1`: hoist's own archive.
    HoistReadOwn,
    /// `cat` of the layout's layers to `/dev/null`.
    Cat,
    /// `openssl dgst -sha256` of the layout's layers.
    Hash,
    /// `dd conv=fdatasync` of skopeo's archive into a new file.
    Dd,
    /// `docker load -i SKOPEO.tar` into a fresh daemon.
    DockerLoad,
    /// `hoist copy oci:IMG:v1 docker-daemon:bench/img:v1` into a fresh daemon.
    HoistLoad,
}

impl Step {
    const ALL: [Self; 10] = [
        Self::SkopeoWrite,
        Self::HoistWrite,
        Self::SkopeoRead,
        Self::HoistRead,
        Self::HoistReadOwn,
        Self::Cat,
        Self::Hash,
        Self::Dd,
        Self::DockerLoad,
        Self::HoistLoad,
    ];
    /// The machine's limits: the slowest of them bounds a write or a read.
    const BOUNDS: [Self; 3] = [Self::Cat, Self::Hash, Self::Dd];

    fn key(self) -> &'static str {
        match self {
            Self::SkopeoWrite => "skopeo_write",
            Self::HoistWrite => "hoist_write",
            Self::SkopeoRead => "skopeo_read",
            Self::HoistRead => "hoist_read",
            Self::HoistReadOwn => "hoist_read_own",
            Self::Cat => "cat",
            Self::Hash => "openssl_dgst",
            Self::Dd => "dd",
            Self::DockerLoad => "docker_load",
            Self::HoistLoad => "hoist_load",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::SkopeoWrite => "write: skopeo copy",
            Self::HoistWrite => "write: hoist copy",
            Self::SkopeoRead => "read skopeo's: skopeo copy",
            Self::HoistRead => "read skopeo's: hoist copy",
            Self::HoistReadOwn => "read hoist's: hoist copy",
            Self::Cat => "  cat of the layers (read)",
            Self::Hash => "  openssl dgst -sha256 of the layers",
            Self::Dd => "  dd conv=fdatasync (archive's size)",
            Self::DockerLoad => "load: docker load -i skopeo's",
            Self::HoistLoad => "load: hoist copy to docker-daemon",
        }
    }

    /// The command line measured, with placeholders: IMG the source layout, SKOPEO.tar and
    /// HOIST.tar the archives of the set-up, OUT.tar, NEW and FILE new paths, SOCK a fresh
    /// daemon's socket.
    fn command(self) -> &'static str {
        match self {
            Self::SkopeoWrite => "skopeo copy oci:IMG:v1 docker-archive:OUT.tar:bench/img:v1",
            Self::HoistWrite => "hoist copy oci:IMG:v1 docker-archive:OUT.tar:bench/img:v1",
            Self::SkopeoRead => "skopeo copy docker-archive:SKOPEO.tar:bench/img:v1 oci:NEW:v1",
            Self::HoistRead => "hoist copy docker-archive:SKOPEO.tar:bench/img:v1 oci:NEW:v1",
            Self::HoistReadOwn => "hoist copy docker-archive:HOIST.tar:bench/img:v1 oci:NEW:v1",
            Self::Cat => "cat IMG/blobs/sha256/LAYER... >/dev/null",
            Self::Hash => "openssl dgst -sha256 -r IMG/blobs/sha256/LAYER...",
            Self::Dd => "dd if=SKOPEO.tar of=FILE bs=1M conv=fdatasync",
            Self::DockerLoad => "DOCKER_HOST=unix://SOCK docker load -i SKOPEO.tar",
            Self::HoistLoad => {
                "DOCKER_HOST=unix://SOCK hoist copy oci:IMG:v1 docker-daemon:bench/img:v1"
            }
        }
    }

    /// Whether the step loads into a daemon of its own.
    fn loads(self) -> bool {
        matches!(self, Self::DockerLoad | Self::HoistLoad)
    }
}

/// The order of even runs: each hoist step beside the peer it is compared with, the bounds
/// between the writes and the reads, and the loads last.
const ORDER: [Step; 10] = [
    Step::SkopeoWrite,
    Step::HoistWrite,
    Step::Dd,
    Step::Cat,
    Step::Hash,
    Step::HoistReadOwn,
    Step::HoistRead,
    Step::SkopeoRead,
    Step::HoistLoad,
    Step::DockerLoad,
];

/// How many steps at the end of [`ORDER`] are the loads, which stay last in every run.
const LOADS: usize = 2;

/// The order of run `index` (from 0): [`ORDER`] in even runs; in odd ones the steps before the
/// loads are reversed and the loads swap. The loads stay last: each daemon keeps the image it
/// loaded (on tmpfs) until the run ends, memory that a later step would miss; with the whole
/// order reversed, the loads came first in odd runs and the writes after them were slowed.
fn archive_order(index: usize) -> [Step; 10] {
    let mut order = ORDER;
    if !index.is_multiple_of(2) {
        let split = ORDER.len() - LOADS;
        order[..split].reverse();
        order[split..].reverse();
    }
    order
}

/// The image of the scenario, in its layout, and the archives of it made in the set-up.
#[derive(Debug)]
struct Image {
    layout: PathBuf,
    manifest: String,
    config: String,
    /// The layer blobs (digest, size), lowest first.
    layers: Vec<(String, u64)>,
    /// skopeo's and hoist's archives of it.
    skopeo_archive: PathBuf,
    hoist_archive: PathBuf,
}

impl Image {
    fn oci(&self) -> String {
        format!("oci:{}:{TAG}", self.layout.display())
    }

    fn layer_paths(&self) -> Vec<PathBuf> {
        self.layers
            .iter()
            .map(|(digest, _)| blob_path(&self.layout, digest))
            .collect()
    }

    fn layer_bytes(&self) -> u64 {
        self.layers.iter().map(|(_, size)| size).sum()
    }
}

fn docker_archive(file: &Path) -> String {
    format!("docker-archive:{}:{NAME}", file.display())
}

fn oci(dir: &Path) -> String {
    format!("oci:{}:{TAG}", dir.display())
}

fn file_len(path: &Path) -> Result<u64> {
    Ok(fs::metadata(path)
        .with_context(|| format!("cannot stat {}", path.display()))?
        .len())
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

/// The config digest of the manifest `manifest` in `layout`.
fn config_digest(layout: &Path, manifest: &str) -> Result<String> {
    let body = read_json(&blob_path(layout, manifest))?;
    body["config"]["digest"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("the manifest {manifest} has no config digest"))
}

/// Makes the image under `work`: [`LAYERS`] layers holding `random_bytes` of random data in
/// all, built by hoist into the layout `work/image`, tagged [`TAG`].
fn make_image(hoist: &Path, work: &Path, random_bytes: u64) -> Result<(PathBuf, LayoutImage)> {
    let trees = work.join("trees");
    let sizes: Vec<(u64, u64)> = (0..).zip(layer_sizes(random_bytes)).collect();
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
    let built = layout_image(&layout, TAG)?;
    if built.layers.len() != LAYERS {
        bail!(
            "hoist built {} layers, expected {LAYERS}",
            built.layers.len()
        );
    }
    println!("    hoist build in {seconds:.1} s");
    remove_dir(&trees)?;
    Ok((layout, built))
}

/// The repository tags and the number of layers of the first image in the `manifest.json` of
/// a docker-archive.
fn parse_archive_manifest(text: &str) -> Result<(Vec<String>, usize)> {
    let value: Value = serde_json::from_str(text).context("manifest.json is not JSON")?;
    let first = value
        .as_array()
        .and_then(|images| images.first())
        .context("manifest.json lists no image")?;
    let tags = first["RepoTags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    let layers = first["Layers"]
        .as_array()
        .context("manifest.json has no Layers")?
        .len();
    Ok((tags, layers))
}

/// Whether `tag` (as `manifest.json` or Docker writes it) names [`NAME`].
fn names_image(tag: &str) -> bool {
    tag == NAME || tag.strip_prefix("docker.io/") == Some(NAME)
}

/// Fails unless `file` is a docker-archive of `image` as [`NAME`] (by its `manifest.json`);
/// returns its size.
fn check_archive(file: &Path, image: &Image) -> Result<u64> {
    let size = file_len(file)?;
    if size < image.layer_bytes() / 2 {
        bail!("{} has only {size} bytes", file.display());
    }
    let mut tar = Command::new("tar");
    tar.args(["--occurrence=1", "-xOf"])
        .arg(file)
        .arg("manifest.json");
    let (_, output) = timed(&mut tar)?;
    let (tags, layers) = parse_archive_manifest(&String::from_utf8_lossy(&output.stdout))
        .with_context(|| format!("in {}", file.display()))?;
    if !tags.iter().any(|t| names_image(t)) || layers != image.layers.len() {
        bail!(
            "{} holds {tags:?} with {layers} layers, expected {NAME} with {}",
            file.display(),
            image.layers.len()
        );
    }
    Ok(size)
}

/// Fails unless the layout `dir` has an image tagged [`TAG`] of as many layers as `image`,
/// each blob present with its size.
fn check_layout(dir: &Path, image: &Image) -> Result<()> {
    let read = layout_image(dir, TAG)?;
    if read.layers.len() != image.layers.len() {
        bail!(
            "{} has {} layers, expected {}",
            dir.display(),
            read.layers.len(),
            image.layers.len()
        );
    }
    for (digest, size) in &read.layers {
        let path = blob_path(dir, digest);
        let actual = file_len(&path)?;
        if actual != *size {
            bail!("{} has {actual} bytes, expected {size}", path.display());
        }
    }
    Ok(())
}

/// The socket URL that `start-daemon.sh` prints last.
fn parse_socket_url(stdout: &str) -> Option<String> {
    let line = stdout.lines().rfind(|l| !l.trim().is_empty())?.trim();
    line.starts_with("unix://").then(|| line.to_owned())
}

/// `VmHWM` (the peak resident set) of a `/proc/PID/status`, in KiB.
fn parse_vm_hwm_kib(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    line.trim().trim_end_matches("kB").trim().parse().ok()
}

/// A Docker daemon of `tests/peers/start-daemon.sh`, stopped (and its directory removed) by
/// [`Daemon::stop`] or when dropped.
/// Where the daemons keep their data: `/dev/shm` when it is a tmpfs with room for the two loads
/// of a run (the extracted layers of each, plus their metadata) beside what is there already;
/// `None` (the run's directory on disk) otherwise. On disk, every load mostly measures how
/// fast the disk takes dockerd's writes at that moment, which on a shared virtual disk varies
/// by several times within minutes, and the difference between the tools drowns in it.
fn memory_daemon_root(layer_bytes: u64) -> Result<Option<PathBuf>> {
    let shm = Path::new("/dev/shm");
    let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
    let is_tmpfs = mounts.lines().any(|line| {
        let mut fields = line.split_whitespace();
        matches!(
            (fields.next(), fields.next(), fields.next()),
            (Some(_), Some("/dev/shm"), Some("tmpfs"))
        )
    });
    if !is_tmpfs {
        return Ok(None);
    }
    let output = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(shm)
        .output()
        .context("cannot run df")?;
    let available: u64 = String::from_utf8_lossy(&output.stdout)
        .lines()
        .nth(1)
        .and_then(|line| line.trim().parse().ok())
        .unwrap_or(0);
    if available < 3 * layer_bytes {
        return Ok(None);
    }
    let root = shm.join("hoist-bench-daemons");
    remove_dir(&root)?;
    fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    Ok(Some(root))
}

#[derive(Debug)]
struct Daemon {
    dir: PathBuf,
    stop_script: PathBuf,
    /// `unix://DIR/docker.sock`, for `DOCKER_HOST`.
    host: String,
    stopped: bool,
}

impl Daemon {
    /// Starts a daemon of [`ENGINE`] with all its state in `dir` (new), stopped by
    /// `start-daemon.sh`'s watcher too if xtask dies first.
    fn start(peers_dir: &Path, dir: &Path) -> Result<Self> {
        let mut start = Command::new("bash");
        start
            .arg(peers_dir.join("start-daemon.sh"))
            .arg(ENGINE)
            .arg(dir)
            .env("HOIST_DAEMON_OWNER", std::process::id().to_string());
        let (seconds, output) = timed(&mut start)?;
        // Made before the socket URL is read, so that a daemon whose URL cannot be is stopped.
        let mut daemon = Self {
            dir: dir.to_path_buf(),
            stop_script: peers_dir.join("stop-daemon.sh"),
            host: String::new(),
            stopped: false,
        };
        let stdout = String::from_utf8_lossy(&output.stdout);
        daemon.host = parse_socket_url(&stdout)
            .with_context(|| format!("start-daemon.sh printed no socket URL: {stdout:?}"))?;
        println!(
            "    {ENGINE} daemon started in {seconds:.1} s (untimed): {}",
            daemon.host
        );
        Ok(daemon)
    }

    /// The daemon's peak resident set so far, in KiB (its own pidfile names it).
    fn peak_rss_kib(&self) -> Result<u64> {
        let pidfile = self.dir.join("dockerd.pid");
        let pid = fs::read_to_string(&pidfile)
            .with_context(|| format!("cannot read {}", pidfile.display()))?;
        let path = format!("/proc/{}/status", pid.trim());
        let status = fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        parse_vm_hwm_kib(&status).with_context(|| format!("no VmHWM in {path}"))
    }

    /// `docker` of [`ENGINE`] talking to this daemon.
    fn docker(&self) -> Command {
        let mut cmd = Command::new(DOCKER);
        cmd.env("DOCKER_HOST", &self.host);
        cmd
    }

    /// The ID of [`NAME`] in the daemon.
    fn image_id(&self) -> Result<String> {
        let (_, output) = timed(
            self.docker()
                .args(["image", "inspect", "--format", "{{.Id}}", NAME]),
        )?;
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Stops the daemon and removes its directory.
    fn stop(mut self) -> Result<()> {
        self.stopped = true;
        let mut stop = Command::new("bash");
        stop.arg(&self.stop_script).arg(&self.dir);
        timed(&mut stop).map(drop)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = Command::new("bash")
                .arg(&self.stop_script)
                .arg(&self.dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// One timed step.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    step: Step,
    seconds: f64,
    user: f64,
    sys: f64,
    peak_rss_kib: u64,
    /// For the loads: the daemon's peak resident set once loaded (start-up included).
    daemon_peak_rss_kib: Option<u64>,
}

impl Sample {
    fn cpu(&self) -> f64 {
        self.user + self.sys
    }
}

/// Reads what `step` will read, untimed.
fn warm(step: Step, image: &Image) -> Result<()> {
    match step {
        Step::SkopeoWrite | Step::HoistWrite | Step::HoistLoad => warm_tree(&image.layout),
        Step::Cat | Step::Hash => image.layer_paths().iter().try_for_each(|p| read_through(p)),
        Step::SkopeoRead | Step::HoistRead | Step::Dd | Step::DockerLoad => {
            read_through(&image.skopeo_archive)
        }
        Step::HoistReadOwn => read_through(&image.hoist_archive),
    }
}

/// Times `step`, writing under `dir` (the run's directory) or into `daemon`, and checks what it
/// did.
fn measure(
    step: Step,
    hoist: &Path,
    image: &Image,
    dir: &Path,
    daemon: Option<&Daemon>,
) -> Result<Sample> {
    let out = dir.join(step.key());
    fs::create_dir(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let time_file = dir.join(format!("{}.time", step.key()));
    let hoist_copy = |src: String, dst: String| {
        let mut cmd = with_time(&time_file, hoist);
        cmd.args(["copy", &src, &dst]);
        cmd
    };
    let skopeo_copy = |src: String, dst: String| {
        let mut cmd = with_time(&time_file, Path::new("skopeo"));
        cmd.args(["copy", &src, &dst]);
        cmd
    };
    let archive = out.join("out.tar");
    let layout = out.join("layout");
    let mut cmd = match step {
        Step::SkopeoWrite => skopeo_copy(image.oci(), docker_archive(&archive)),
        Step::HoistWrite => hoist_copy(image.oci(), docker_archive(&archive)),
        Step::SkopeoRead => skopeo_copy(docker_archive(&image.skopeo_archive), oci(&layout)),
        Step::HoistRead => hoist_copy(docker_archive(&image.skopeo_archive), oci(&layout)),
        Step::HoistReadOwn => hoist_copy(docker_archive(&image.hoist_archive), oci(&layout)),
        Step::Cat => {
            let mut cmd = with_time(&time_file, Path::new("cat"));
            cmd.args(image.layer_paths())
                .stdout(File::create("/dev/null").context("cannot open /dev/null")?);
            cmd
        }
        Step::Hash => {
            let mut cmd = with_time(&time_file, Path::new("openssl"));
            cmd.args(["dgst", "-sha256", "-r"])
                .args(image.layer_paths());
            cmd
        }
        Step::Dd => {
            let mut cmd = with_time(&time_file, Path::new("dd"));
            cmd.arg(format!("if={}", image.skopeo_archive.display()))
                .arg(format!("of={}", archive.display()))
                .args(["bs=1M", "conv=fdatasync"]);
            cmd
        }
        Step::DockerLoad | Step::HoistLoad => {
            let daemon = daemon.context("a load without a daemon")?;
            let mut cmd = if step == Step::DockerLoad {
                let mut cmd = with_time(&time_file, Path::new(DOCKER));
                cmd.arg("load").arg("-i").arg(&image.skopeo_archive);
                cmd
            } else {
                hoist_copy(image.oci(), format!("docker-daemon:{NAME}"))
            };
            cmd.env("DOCKER_HOST", &daemon.host);
            cmd
        }
    };
    let (seconds, output) = timed(&mut cmd)?;
    let mut daemon_peak_rss_kib = None;
    match step {
        Step::SkopeoWrite | Step::HoistWrite => {
            check_archive(&archive, image)?;
        }
        Step::SkopeoRead | Step::HoistRead | Step::HoistReadOwn => check_layout(&layout, image)?,
        Step::Cat => {}
        Step::Hash => {
            let stdout = String::from_utf8_lossy(&output.stdout);
            let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
            if lines.len() != image.layers.len() {
                bail!("openssl dgst printed {stdout:?}");
            }
            for (line, (digest, _)) in lines.iter().zip(&image.layers) {
                let actual = parse_openssl_digest(line)?;
                if actual != *digest {
                    bail!("openssl dgst says {actual}, expected {digest}");
                }
            }
        }
        Step::Dd => {
            let (written, expected) = (file_len(&archive)?, file_len(&image.skopeo_archive)?);
            if written != expected {
                bail!("dd wrote {written} bytes, expected {expected}");
            }
        }
        Step::DockerLoad | Step::HoistLoad => {
            let daemon = daemon.context("a load without a daemon")?;
            let id = daemon.image_id()?;
            if id != image.config {
                bail!(
                    "after {}, {NAME} is {id} in the daemon, expected the config {}",
                    step.key(),
                    image.config
                );
            }
            daemon_peak_rss_kib = Some(daemon.peak_rss_kib()?);
        }
    }
    let text = fs::read_to_string(&time_file)
        .with_context(|| format!("cannot read {}", time_file.display()))?;
    let (user, sys, peak_rss_kib) = parse_time_line(&text)
        .with_context(|| format!("no times in {}: {text:?}", time_file.display()))?;
    Ok(Sample {
        step,
        seconds,
        user,
        sys,
        peak_rss_kib,
        daemon_peak_rss_kib,
    })
}

/// Everything the archive scenario measured.
#[derive(Debug)]
struct ArchiveReport {
    /// Random bytes in the layers.
    random_bytes: u64,
    /// Bytes of the layers (gzip streams).
    layer_bytes: u64,
    skopeo_archive_bytes: u64,
    hoist_archive_bytes: u64,
    manifest: String,
    config: String,
    /// skopeo, docker, dockerd.
    versions: Vec<String>,
    hoist_revision: String,
    cores: usize,
    pause_secs: u64,
    ballast_bytes: Vec<u64>,
    /// The 1-minute load average when each run started and ended (others share the machine).
    load: Vec<(f64, f64)>,
    runs: Vec<Vec<Sample>>,
}

impl ArchiveReport {
    fn samples(&self, step: Step) -> Vec<Sample> {
        self.runs
            .iter()
            .filter_map(|run| run.iter().find(|s| s.step == step).copied())
            .collect()
    }

    fn seconds(&self, step: Step) -> Vec<f64> {
        self.samples(step).iter().map(|s| s.seconds).collect()
    }

    fn median(&self, step: Step) -> f64 {
        median(&self.seconds(step)).unwrap_or(f64::NAN)
    }

    fn median_cpu(&self, step: Step) -> f64 {
        let cpu: Vec<f64> = self.samples(step).iter().map(Sample::cpu).collect();
        median(&cpu).unwrap_or(f64::NAN)
    }

    fn max_rss(&self, step: Step) -> u64 {
        self.samples(step)
            .iter()
            .map(|s| s.peak_rss_kib)
            .max()
            .unwrap_or(0)
    }

    fn max_daemon_rss(&self, step: Step) -> u64 {
        self.samples(step)
            .iter()
            .filter_map(|s| s.daemon_peak_rss_kib)
            .max()
            .unwrap_or(0)
    }

    /// The slowest of the machine's limits, on medians, and which it is.
    fn bound(&self) -> (Step, f64) {
        let mut slowest = (Step::Cat, f64::NAN);
        for step in Step::BOUNDS {
            let m = self.median(step);
            if slowest.1.is_nan() || m > slowest.1 {
                slowest = (step, m);
            }
        }
        slowest
    }

    /// The compared pairs: (name, hoist's step, its peer).
    const PAIRS: [(&'static str, Step, Step); 4] = [
        ("write: hoist / skopeo", Step::HoistWrite, Step::SkopeoWrite),
        (
            "read skopeo's archive: hoist / skopeo",
            Step::HoistRead,
            Step::SkopeoRead,
        ),
        (
            "read own archive: hoist / skopeo",
            Step::HoistReadOwn,
            Step::SkopeoRead,
        ),
        (
            "load: hoist / docker load",
            Step::HoistLoad,
            Step::DockerLoad,
        ),
    ];

    /// Per run, for each of [`Self::PAIRS`]: hoist's time over its peer's.
    fn run_ratios(&self) -> Vec<Vec<f64>> {
        Self::PAIRS
            .iter()
            .map(|&(_, hoist, peer)| {
                self.runs
                    .iter()
                    .filter_map(|run| {
                        let at = |step| run.iter().find(|s| s.step == step).map(|s| s.seconds);
                        Some(at(hoist)? / at(peer)?)
                    })
                    .collect()
            })
            .collect()
    }

    fn ratio(&self, hoist: Step, peer: Step) -> f64 {
        self.median(hoist) / self.median(peer)
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
        let [write, read, _, load] = Self::PAIRS;
        vec![
            at_most(write.0, self.ratio(write.1, write.2), WRITE_VS_SKOPEO),
            at_most(read.0, self.ratio(read.1, read.2), READ_VS_SKOPEO),
            at_most(load.0, self.ratio(load.1, load.2), LOAD_VS_DOCKER),
        ]
    }

    /// Figures reported beside the targets, without a verdict: (name, value).
    fn reported(&self) -> Vec<(String, String)> {
        let (bound_step, bound) = self.bound();
        let [_, _, own, _] = Self::PAIRS;
        let mut out = vec![
            (own.0.to_owned(), format_ratio(self.ratio(own.1, own.2))),
            (
                format!("write: hoist / slowest bound ({})", bound_step.key()),
                format_ratio(self.median(Step::HoistWrite) / bound),
            ),
            (
                format!(
                    "read skopeo's: hoist / slowest bound ({})",
                    bound_step.key()
                ),
                format_ratio(self.median(Step::HoistRead) / bound),
            ),
            (
                "write: hoist / dd (archive's size)".to_owned(),
                format_ratio(self.median(Step::HoistWrite) / self.median(Step::Dd)),
            ),
        ];
        for (name, hoist, peer) in [
            ("write", Step::HoistWrite, Step::SkopeoWrite),
            ("read skopeo's", Step::HoistRead, Step::SkopeoRead),
            ("load", Step::HoistLoad, Step::DockerLoad),
        ] {
            out.push((
                format!("{name}: peak RSS (max), hoist / {}", peer.key()),
                format_ratio(self.max_rss(hoist) as f64 / self.max_rss(peer) as f64),
            ));
        }
        out.push((
            "load: dockerd peak RSS (max), hoist / docker load".to_owned(),
            format_ratio(
                self.max_daemon_rss(Step::HoistLoad) as f64
                    / self.max_daemon_rss(Step::DockerLoad) as f64,
            ),
        ));
        out
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
            "archive bench: hoist copy vs {} and docker load ({}; {});\n{} MiB of random \
             data in {LAYERS} gzip layers ({} MB), manifest {},\nconfig {}; archives: \
             skopeo's {} MB (classic format), hoist's {} MB (Docker 25+ format, hoist's \
             default);\nhoist writes a temporary file, fsyncs it and renames it; skopeo does \
             not fsync the archive;\neach load into a fresh {ENGINE} daemon (data root of its \
             own, started untimed);\n{runs} run(s), {ballast}, {} s pause after each run; {} \
             cores; step order reverses between runs;\nbefore every step: sync, untimed read \
             of its input; every step writes into a new directory;\nhoist built from {}\n",
            self.versions.first().map_or("skopeo", String::as_str),
            self.versions.get(1).map_or("docker", String::as_str),
            self.versions.get(2).map_or("dockerd", String::as_str),
            self.random_bytes >> 20,
            self.layer_bytes / 1_000_000,
            self.manifest,
            self.config,
            self.skopeo_archive_bytes / 1_000_000,
            self.hoist_archive_bytes / 1_000_000,
            self.pause_secs,
            self.cores,
            self.hoist_revision,
        );
        let _ = writeln!(out, "commands measured:");
        for step in Step::ALL {
            let _ = writeln!(out, "  {:<16}{}", step.key(), step.command());
        }
        let _ = writeln!(out);
        if !self.load.is_empty() {
            let load: Vec<String> = self
                .load
                .iter()
                .map(|(start, end)| format!("{start:.2} -> {end:.2}"))
                .collect();
            let _ = writeln!(
                out,
                "load average (1 min) at the start and end of each run: {}\n",
                load.join(", ")
            );
        }
        let header = |out: &mut String, title: &str, last: &str| {
            let _ = write!(out, "{title:<38}");
            for i in 1..=runs {
                let _ = write!(out, "{:>10}", format!("run {i}"));
            }
            let _ = writeln!(out, "{:>10}{last:>10}", "median");
        };
        header(&mut out, "seconds (MB/s of the layers)", "MB/s");
        for step in Step::ALL {
            let _ = write!(out, "{:<38}", step.label());
            for v in self.seconds(step) {
                let _ = write!(out, "{v:>10.3}");
            }
            let m = self.median(step);
            let _ = writeln!(out, "{m:>10.3}{:>10.0}", rate_mb_s(self.layer_bytes, m));
        }
        for ((name, ..), ratios) in Self::PAIRS.iter().zip(self.run_ratios()) {
            let _ = write!(out, "{name:<38}");
            for r in ratios {
                let _ = write!(out, "{:>10}", format_ratio(r));
            }
            let _ = writeln!(out);
        }
        let _ = writeln!(out);
        header(&mut out, "CPU seconds, user+sys", "user/sys");
        for step in Step::ALL {
            let _ = write!(out, "{:<38}", step.label());
            let samples = self.samples(step);
            for sample in &samples {
                let _ = write!(out, "{:>10.2}", sample.cpu());
            }
            let user = median(&samples.iter().map(|s| s.user).collect::<Vec<_>>());
            let sys = median(&samples.iter().map(|s| s.sys).collect::<Vec<_>>());
            let _ = writeln!(
                out,
                "{:>10.2}{:>10}",
                self.median_cpu(step),
                format!(
                    "{:.1}/{:.1}",
                    user.unwrap_or(f64::NAN),
                    sys.unwrap_or(f64::NAN)
                )
            );
        }
        let _ = writeln!(out);
        header(&mut out, "peak RSS", "max");
        let rss_row = |out: &mut String, label: &str, values: Vec<u64>, max: u64| {
            let _ = write!(out, "{label:<38}");
            for kib in &values {
                let _ = write!(out, "{:>10}", format_mib(*kib));
            }
            let as_f64: Vec<f64> = values.iter().map(|&k| k as f64).collect();
            let _ = writeln!(
                out,
                "{:>10}{:>10}",
                format_mib(median(&as_f64).unwrap_or(0.0) as u64),
                format_mib(max)
            );
        };
        for step in Step::ALL {
            let values = self.samples(step).iter().map(|s| s.peak_rss_kib).collect();
            rss_row(&mut out, step.label(), values, self.max_rss(step));
        }
        for (step, label) in [
            (Step::DockerLoad, "  dockerd (VmHWM), docker load"),
            (Step::HoistLoad, "  dockerd (VmHWM), hoist copy"),
        ] {
            let values = self
                .samples(step)
                .iter()
                .filter_map(|s| s.daemon_peak_rss_kib)
                .collect();
            rss_row(&mut out, label, values, self.max_daemon_rss(step));
        }
        let (bound_step, _) = self.bound();
        let _ = writeln!(
            out,
            "slowest bound (median): {}\n",
            bound_step.label().trim()
        );
        let _ = writeln!(
            out,
            "{:<52}{:>11}{:>11}   verdict",
            "target", "measured", "limit"
        );
        for t in self.targets() {
            let _ = writeln!(
                out,
                "{:<52}{:>11}{:>11}   {}",
                t.name,
                t.measured,
                t.limit,
                verdict(t.pass)
            );
        }
        for (name, value) in self.reported() {
            let _ = writeln!(out, "{name:<52}{value:>11}{:>11}   (reported)", "-");
        }
        out
    }

    fn to_json(&self) -> Value {
        let by_step = |f: &dyn Fn(Step) -> Value| -> serde_json::Map<String, Value> {
            Step::ALL
                .iter()
                .map(|&s| (s.key().to_owned(), f(s)))
                .collect()
        };
        let ratios: serde_json::Map<String, Value> = Self::PAIRS
            .iter()
            .zip(self.run_ratios())
            .map(|(&(_, hoist, peer), r)| {
                (format!("{}_over_{}", hoist.key(), peer.key()), json!(r))
            })
            .collect();
        json!({
            "scenario": "archive",
            "layers": LAYERS,
            "random_bytes": self.random_bytes,
            "layer_bytes": self.layer_bytes,
            "skopeo_archive_bytes": self.skopeo_archive_bytes,
            "hoist_archive_bytes": self.hoist_archive_bytes,
            "manifest_digest": self.manifest,
            "config_digest": self.config,
            "seed": SEED,
            "source_date_epoch": SOURCE_DATE_EPOCH,
            "engine": ENGINE,
            "versions": self.versions,
            "hoist_revision": self.hoist_revision,
            "cores": self.cores,
            "runs": self.runs.len(),
            "pause_secs": self.pause_secs,
            "ballast_bytes": self.ballast_bytes,
            "load_average_start_end": self.load,
            "commands": by_step(&|s| json!(s.command())),
            "order": self.runs.iter()
                .map(|run| run.iter().map(|s| s.step.key()).collect::<Vec<_>>())
                .collect::<Vec<_>>(),
            "seconds": by_step(&|s| json!(self.seconds(s))),
            "median_seconds": by_step(&|s| json!(self.median(s))),
            "user_seconds": by_step(&|s| json!(self.samples(s).iter().map(|x| x.user).collect::<Vec<_>>())),
            "sys_seconds": by_step(&|s| json!(self.samples(s).iter().map(|x| x.sys).collect::<Vec<_>>())),
            "peak_rss_kib": by_step(&|s| json!(self.samples(s).iter().map(|x| x.peak_rss_kib).collect::<Vec<_>>())),
            "dockerd_peak_rss_kib": {
                "docker_load": self.samples(Step::DockerLoad).iter().filter_map(|s| s.daemon_peak_rss_kib).collect::<Vec<_>>(),
                "hoist_load": self.samples(Step::HoistLoad).iter().filter_map(|s| s.daemon_peak_rss_kib).collect::<Vec<_>>(),
            },
            "slowest_bound": self.bound().0.key(),
            "ratios_per_run": ratios,
            "targets": self.targets().iter().map(|t| json!({
                "name": t.name,
                "value": t.value,
                "at_most": t.limit_value,
                "pass": t.pass,
            })).collect::<Vec<_>>(),
            "reported": self.reported().into_iter()
                .map(|(name, value)| json!({ "name": name, "value": value }))
                .collect::<Vec<_>>(),
        })
    }
}

pub(super) fn run(root: &Path, args: &BenchArgs) -> Result<()> {
    require_tools(&["skopeo", "openssl", "dd", "cat", "tar"])?;
    for (path, package) in [
        ("/usr/bin/time", "time"),
        (DOCKER, "docker.io"),
        (DOCKERD, "docker.io"),
    ] {
        if !Path::new(path).exists() {
            bail!(
                "{path} is not installed (apt-get install -y {package}, or tests/peers/install.sh)"
            );
        }
    }
    let hoist = build_hoist(root)?;
    let hoist_revision = revision(root);
    let versions = vec![
        version("skopeo", "--version"),
        format!("docker client: {}", version(DOCKER, "--version")),
        format!("dockerd: {}", version(DOCKERD, "--version")),
    ];
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let peers_dir = root.join("tests").join("peers");
    let bench_dir = target_dir(root).join("bench");
    let work = bench_dir.join("archive-work");
    if work.to_string_lossy().contains(':') {
        bail!(
            "{} contains `:`, which oci:DIR:TAG and docker-archive:FILE:NAME cannot express",
            work.display()
        );
    }
    remove_dir(&work)?;
    fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let random_bytes = args.size_mib << 20;

    println!(
        "==> image: {} MiB of random data (seed {SEED:#x}) in {LAYERS} layers, hoist build \
         (untimed) into {}",
        args.size_mib,
        work.join("image").display()
    );
    let (layout, built) = make_image(&hoist, &work, random_bytes)?;
    let image = Image {
        config: config_digest(&layout, &built.manifest)?,
        manifest: built.manifest,
        layers: built.layers,
        layout,
        skopeo_archive: work.join("skopeo.tar"),
        hoist_archive: work.join("hoist.tar"),
    };
    println!(
        "    {} ({} bytes of layers), config {}",
        image.manifest,
        image.layer_bytes(),
        image.config
    );
    println!("==> archives of it by skopeo and hoist (untimed)");
    let started = Instant::now();
    timed(Command::new("skopeo").args([
        "copy",
        &image.oci(),
        &docker_archive(&image.skopeo_archive),
    ]))?;
    let skopeo_archive_bytes = check_archive(&image.skopeo_archive, &image)?;
    let skopeo_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    timed(Command::new(&hoist).args([
        "-q",
        "copy",
        &image.oci(),
        &docker_archive(&image.hoist_archive),
    ]))?;
    let hoist_archive_bytes = check_archive(&image.hoist_archive, &image)?;
    println!(
        "    skopeo's: {skopeo_archive_bytes} bytes ({skopeo_seconds:.1} s), hoist's: \
         {hoist_archive_bytes} bytes ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    let image = &image;
    sync_and_pause(args.pause_secs)?;

    let size_bytes = image.layer_bytes();
    let daemon_root = memory_daemon_root(size_bytes)?;
    match &daemon_root {
        Some(root) => println!(
            "==> the daemons keep their data in memory, under {} (tmpfs): each load measures \
             the tools and dockerd, not the disk's moods",
            root.display()
        ),
        None => println!("==> the daemons keep their data on disk (no tmpfs with room for it)"),
    }
    let mut runs = Vec::new();
    let mut ballasts = Vec::new();
    let mut load = Vec::new();
    for index in 0..args.runs {
        let dir = work.join(format!("run-{}", index + 1));
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        println!("==> run {} of {}", index + 1, args.runs);
        let ballast = if args.ballast {
            let meminfo =
                fs::read_to_string("/proc/meminfo").context("cannot read /proc/meminfo")?;
            let available =
                parse_mem_available(&meminfo).context("no MemAvailable in /proc/meminfo")?;
            ballast_bytes(
                size_bytes,
                available.saturating_sub(EXTRA_COPIES * size_bytes),
            )
        } else {
            0
        };
        if ballast > 0 {
            println!("    ballast: {} MiB (untimed)", ballast >> 20);
            write_ballast(&dir.join("ballast"), ballast)?;
        }
        ballasts.push(ballast);
        let load_start = load_average();
        let mut daemons = Vec::new();
        let mut samples = Vec::new();
        for step in archive_order(index) {
            let daemon = if step.loads() {
                Some(Daemon::start(
                    &peers_dir,
                    &daemon_root.as_deref().unwrap_or(&dir).join(format!(
                        "run-{}-daemon-{}",
                        index + 1,
                        step.key()
                    )),
                )?)
            } else {
                None
            };
            run_status(&mut Command::new("sync"))?;
            warm(step, image)?;
            let sample = measure(step, &hoist, image, &dir, daemon.as_ref())?;
            let daemon_rss = sample
                .daemon_peak_rss_kib
                .map(|kib| format!(", dockerd {}", format_mib(kib)))
                .unwrap_or_default();
            println!(
                "    {:<38}{:>8.3} s {:>7.2} CPU s {:>12}{daemon_rss}",
                step.label(),
                sample.seconds,
                sample.cpu(),
                format_mib(sample.peak_rss_kib)
            );
            samples.push(sample);
            // Kept running until the run ends: stopping removes the daemon's data.
            daemons.extend(daemon);
        }
        runs.push(samples);
        load.push((load_start, load_average()));
        println!("    load average {load_start:.2} -> {:.2}", load_average());
        for daemon in daemons {
            daemon.stop()?;
        }
        remove_dir(&dir)?;
        if index + 1 < args.runs {
            sync_and_pause(args.pause_secs)?;
        }
    }
    remove_dir(&work)?;
    if let Some(root) = &daemon_root {
        remove_dir(root)?;
    }

    let report = ArchiveReport {
        random_bytes,
        layer_bytes: size_bytes,
        skopeo_archive_bytes,
        hoist_archive_bytes,
        manifest: image.manifest.clone(),
        config: image.config.clone(),
        versions,
        hoist_revision,
        cores,
        pause_secs: args.pause_secs,
        ballast_bytes: ballasts,
        load,
        runs,
    };
    let json_path = bench_dir.join("archive.json");
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
    use std::ffi::OsString;

    use super::super::{Scenario, parse_args};
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn archive_defaults_to_1_gib_5_runs_and_quick_to_64_mib_once() {
        let parsed = parse_args(&args(&["archive"])).unwrap();
        assert_eq!(parsed.scenario, Scenario::Archive);
        assert_eq!(
            (parsed.size_mib, parsed.runs, parsed.pause_secs),
            (ARCHIVE_SIZE_MIB, ARCHIVE_RUNS, 20)
        );
        assert!(parsed.ballast && !parsed.quick);
        let quick = parse_args(&args(&["archive", "--quick"])).unwrap();
        assert_eq!(
            (quick.size_mib, quick.runs, quick.pause_secs),
            (QUICK_SIZE_MIB, 1, 0)
        );
        assert!(!quick.ballast && quick.quick);
        let given = parse_args(&args(&[
            "--runs",
            "2",
            "archive",
            "--size-mib",
            "128",
            "--quick",
        ]))
        .unwrap();
        assert_eq!((given.size_mib, given.runs), (128, 2));
        assert_eq!(
            parse_args(&args(&["archive", "--runs", "3", "--pause", "5"]))
                .map(|a| (a.runs, a.pause_secs)),
            Ok((3, 5))
        );
        assert!(parse_args(&args(&["archive", "--runs", "0"])).is_err());
        assert!(parse_args(&args(&["archive", "--size-mib", "0"])).is_err());
        // Other scenarios keep their defaults.
        assert_eq!(parse_args(&args(&["layout"])).unwrap().runs, 3);
    }

    #[test]
    fn order_reverses_between_runs_with_hoist_beside_its_peers() {
        assert_eq!(archive_order(0)[0], Step::SkopeoWrite);
        assert_eq!(archive_order(1)[0], Step::SkopeoRead);
        assert_eq!(archive_order(0)[8], Step::HoistLoad);
        assert_eq!(archive_order(1)[8], Step::DockerLoad);
        assert!(archive_order(1)[10 - LOADS..].iter().all(|s| s.loads()));
        assert_eq!(archive_order(2), archive_order(0));
        for index in 0..2 {
            let order = archive_order(index);
            let at = |step| order.iter().position(|&s| s == step).unwrap();
            for step in Step::ALL {
                assert_eq!(order.iter().filter(|&&s| s == step).count(), 1, "{step:?}");
            }
            for (_, hoist, peer) in ArchiveReport::PAIRS {
                if hoist != Step::HoistReadOwn {
                    assert_eq!(at(hoist).abs_diff(at(peer)), 1, "{hoist:?} {peer:?}");
                }
            }
            assert_eq!(at(Step::HoistReadOwn).abs_diff(at(Step::HoistRead)), 1);
        }
        assert!(Step::ALL.iter().filter(|s| s.loads()).count() == 2);
    }

    #[test]
    fn tool_outputs_are_parsed() {
        let started = "docker20 (Docker version 20.10.24) answers on unix:///w/d/docker.sock\n\
                       unix:///w/d/docker.sock\n";
        assert_eq!(
            parse_socket_url(started).as_deref(),
            Some("unix:///w/d/docker.sock")
        );
        assert_eq!(parse_socket_url("started\n\n"), None);
        assert_eq!(parse_socket_url(""), None);

        let status =
            "Name:\tdockerd\nVmPeak:\t 1900000 kB\nVmHWM:\t   73156 kB\nVmRSS:\t 70000 kB\n";
        assert_eq!(parse_vm_hwm_kib(status), Some(73156));
        assert_eq!(parse_vm_hwm_kib("Name:\tx\nVmRSS:\t 1 kB\n"), None);

        let classic = r#"[{"Config":"ab.json","RepoTags":["bench/img:v1"],"Layers":["1/layer.tar","2/layer.tar"]}]"#;
        assert_eq!(
            parse_archive_manifest(classic).unwrap(),
            (vec!["bench/img:v1".to_owned()], 2)
        );
        let untagged = r#"[{"Config":"blobs/sha256/ab","RepoTags":null,"Layers":[]}]"#;
        assert_eq!(parse_archive_manifest(untagged).unwrap(), (vec![], 0));
        assert!(parse_archive_manifest("[]").is_err());
        assert!(parse_archive_manifest("{").is_err());
        assert!(parse_archive_manifest(r#"[{"RepoTags":[]}]"#).is_err());
        assert!(names_image("bench/img:v1"));
        assert!(names_image("docker.io/bench/img:v1"));
        assert!(!names_image("bench/img:v2"));
        assert!(!names_image("quay.io/bench/img:v1"));
    }

    #[test]
    fn random_files_follow_the_seed() {
        let dir = std::env::temp_dir().join(format!("xtask-archive-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let (a, b, c) = (dir.join("a"), dir.join("b"), dir.join("c"));
        write_random(&a, (1 << 20) + 5, SEED).unwrap();
        write_random(&b, (1 << 20) + 5, SEED).unwrap();
        write_random(&c, (1 << 20) + 5, SEED + 1).unwrap();
        let (a, b, c) = (
            fs::read(&a).unwrap(),
            fs::read(&b).unwrap(),
            fs::read(&c).unwrap(),
        );
        assert_eq!(a.len(), (1 << 20) + 5);
        assert_eq!(a, b);
        assert_ne!(a, c);
        fs::remove_dir_all(&dir).unwrap();
    }

    fn sample(step: Step, seconds: f64, rss: u64) -> Sample {
        Sample {
            step,
            seconds,
            user: seconds / 2.0,
            sys: seconds / 4.0,
            peak_rss_kib: rss,
            daemon_peak_rss_kib: step.loads().then_some(100_000),
        }
    }

    fn report(hoist_write: f64) -> ArchiveReport {
        let run = |scale: f64| -> Vec<Sample> {
            [
                (Step::SkopeoWrite, 4.0, 60_000),
                (Step::HoistWrite, hoist_write, 20_000),
                (Step::SkopeoRead, 6.0, 70_000),
                (Step::HoistRead, 3.0, 21_000),
                (Step::HoistReadOwn, 2.8, 22_000),
                (Step::Cat, 0.3, 1_000),
                (Step::Hash, 1.6, 5_000),
                (Step::Dd, 2.0, 3_000),
                (Step::DockerLoad, 10.0, 40_000),
                (Step::HoistLoad, 10.5, 23_000),
            ]
            .into_iter()
            .map(|(step, s, rss)| sample(step, s * scale, rss))
            .collect()
        };
        ArchiveReport {
            random_bytes: 1 << 30,
            layer_bytes: (1 << 30) + 200_000,
            skopeo_archive_bytes: (1 << 30) + 30_000,
            hoist_archive_bytes: (1 << 30) + 40_000,
            manifest: "sha256:00".to_owned(),
            config: "sha256:11".to_owned(),
            versions: vec![
                "skopeo version 1.9.3".to_owned(),
                "Docker version 20.10.24".to_owned(),
                "Docker version 20.10.24 (dockerd)".to_owned(),
            ],
            hoist_revision: "27d4ca9".to_owned(),
            cores: 2,
            pause_secs: 20,
            ballast_bytes: vec![4 << 30; 3],
            load: vec![(0.5, 1.5); 3],
            runs: vec![run(1.0), run(0.9), run(1.2)],
        }
    }

    #[test]
    fn report_compares_hoist_with_its_peers() {
        let report = report(2.8);
        let targets = report.targets();
        let values: Vec<f64> = targets.iter().map(|t| t.value).collect();
        for (v, e) in values.iter().zip([0.7, 0.5, 1.05]) {
            assert!((v - e).abs() < 1e-9, "{values:?}");
        }
        assert!(targets.iter().all(|t| t.pass), "{targets:#?}");
        assert_eq!(report.bound(), (Step::Dd, 2.0));
        let ratios = report.run_ratios();
        assert_eq!(ratios.len(), 4);
        assert_eq!(ratios[0].len(), 3);
        let table = report.table();
        assert!(table.contains("write: hoist / skopeo"), "{table}");
        assert!(table.contains("0.70×") && table.contains("PASS"), "{table}");
        assert!(!table.contains("FAIL"), "{table}");
        assert!(table.contains("skopeo does not fsync"), "{table}");
        assert!(table.contains("docker-daemon:bench/img:v1"), "{table}");
        assert!(table.contains("dockerd (VmHWM)"), "{table}");
        assert!(table.contains("97.7 MiB"), "{table}");
        assert!(
            table.contains("read own archive: hoist / skopeo"),
            "{table}"
        );
        let rss = report
            .reported()
            .into_iter()
            .find(|(name, _)| name.starts_with("read skopeo's: peak RSS"))
            .map(|(_, value)| value);
        assert_eq!(rss.as_deref(), Some("0.30×"));
        let json = report.to_json();
        assert_eq!(json["scenario"], json!("archive"));
        assert_eq!(json["median_seconds"]["hoist_write"], json!(2.8));
        assert_eq!(json["peak_rss_kib"]["skopeo_read"], json!(vec![70_000; 3]));
        assert_eq!(
            json["dockerd_peak_rss_kib"]["hoist_load"],
            json!(vec![100_000; 3])
        );
        assert_eq!(json["slowest_bound"], json!("dd"));
        assert_eq!(
            json["ratios_per_run"]["hoist_load_over_docker_load"]
                .as_array()
                .map(Vec::len),
            Some(3)
        );
        assert_eq!(json["targets"][2]["pass"], json!(true));
    }

    #[test]
    fn a_slow_write_fails() {
        let report = report(3.5);
        let verdicts: Vec<bool> = report.targets().iter().map(|t| t.pass).collect();
        assert_eq!(verdicts, [false, true, true]);
        assert!(report.table().contains("FAIL"));
        assert_eq!(report.to_json()["targets"][0]["pass"], json!(false));
    }
}
