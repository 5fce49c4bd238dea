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
//!   before the loads reverses from one run to the next and turns every second run, each hoist step beside the peer it is
//!   compared with; the two loads come last, their order swapping from one run to the next,
//!   after an untimed load of the first of them into a daemon stopped straight after;
//! * a run's outputs are deleted together when it ends, followed by `sync` and the pause.

use std::fs::{self, File};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::data::{layer_sizes, oci_ref, seeded_image};
use super::machine::{
    Revision, Workspace, ballast_bytes, build_hoist, cores, file_len, load_average,
    parse_openssl_digest, read_through, remove_dir, require_tools, revision, run_ballast, sync,
    sync_and_pause, version, warm_tree,
};
use super::measure::{
    Defaults, Runs, Usage, alternate_in_place, format_mib, read_usage, timed, with_time,
    write_results,
};
use super::{BenchArgs, Scenario};

mod daemon;
mod image;
mod report;

use daemon::{Daemon, memory_daemon_root};
use image::{Image, check_archive, check_layout, config_digest, docker_archive};
use report::ArchiveReport;

/// The default image size of the scenario, and that of `--quick`.
const ARCHIVE_SIZE_MIB: u64 = 1024;
/// The image's layers.
const LAYERS: usize = 8;
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

/// The scenario's defaults for what the command line leaves out: [`ARCHIVE_SIZE_MIB`] and
/// [`ARCHIVE_RUNS`], or with `--quick` [`QUICK_SIZE_MIB`] and one run.
pub(super) const DEFAULTS: Defaults =
    Defaults::sized(ARCHIVE_SIZE_MIB, QUICK_SIZE_MIB).with_runs(ARCHIVE_RUNS);

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

/// The order of run `index` (from 0): the steps before the loads turned and reversed as
/// [`alternate`](super::measure::alternate) does, then the loads, swapped in odd runs. The loads stay last: each daemon keeps the image it loaded
/// (on tmpfs) until the run ends, memory that a later step would miss; with the whole order
/// reversed, the loads came first in odd runs and the writes after them were slowed.
fn archive_order(index: usize) -> [Step; 10] {
    let mut order = ORDER;
    let (steps, loads) = order.split_at_mut(ORDER.len() - LOADS);
    alternate_in_place(steps, index);
    alternate_in_place(loads, index % 2);
    order
}

/// One timed step.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    step: Step,
    seconds: f64,
    usage: Usage,
    /// For the loads: the daemon's peak resident set once loaded (start-up included).
    daemon_peak_rss_kib: Option<u64>,
}

impl Sample {
    fn cpu(&self) -> f64 {
        self.usage.user + self.usage.sys
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
        Step::SkopeoRead => {
            skopeo_copy(docker_archive(&image.skopeo_archive), oci_ref(&layout, TAG))
        }
        Step::HoistRead => hoist_copy(docker_archive(&image.skopeo_archive), oci_ref(&layout, TAG)),
        Step::HoistReadOwn => {
            hoist_copy(docker_archive(&image.hoist_archive), oci_ref(&layout, TAG))
        }
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
    Ok(Sample {
        step,
        seconds,
        usage: read_usage(&time_file)?,
        daemon_peak_rss_kib,
    })
}

pub(super) fn run(root: &Path, args: &BenchArgs) -> Result<()> {
    require_tools(Scenario::Archive.tools())?;
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
    let hoist_revision = revision(root, Revision::Count);
    let versions = vec![
        version("skopeo", "--version"),
        format!("docker client: {}", version(DOCKER, "--version")),
        format!("dockerd: {}", version(DOCKERD, "--version")),
    ];
    let cores = cores();
    let peers_dir = root.join("tests").join("peers");
    let workspace = Workspace::new(
        root,
        "archive",
        Some("oci:DIR:TAG and docker-archive:FILE:NAME"),
    )?;
    let (bench_dir, work) = (workspace.bench_dir.clone(), workspace.work.clone());
    let random_bytes = args.size_mib << 20;

    println!(
        "==> image: {} MiB of random data (seed {SEED:#x}) in {LAYERS} layers, hoist build \
         (untimed) into {}",
        args.size_mib,
        work.join("image").display()
    );
    let (layout, built, seconds) =
        seeded_image(&hoist, &work, &layer_sizes(random_bytes, LAYERS), SEED, TAG)?;
    println!("    hoist build in {seconds:.1} s");
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
    let plan = Runs::new(args);
    for run in plan.iter() {
        let dir = workspace.run_dir(run.seq)?;
        println!("{}", run.heading(plan));
        let ballast = run_ballast(args.ballast, &dir, |available| {
            ballast_bytes(
                size_bytes,
                available.saturating_sub(EXTRA_COPIES * size_bytes),
            )
        })?;
        let load_start = load_average();
        let mut daemons = Vec::new();
        let mut samples = Vec::new();
        let daemon_dir = |name: &str| {
            daemon_root
                .as_deref()
                .unwrap_or(&dir)
                .join(format!("run-{}-daemon-{name}", run.seq + 1))
        };
        for step in archive_order(run.index) {
            if step.loads() && daemons.is_empty() {
                // Whichever load came first in a run was slower than in second place, for
                // both tools: the first load is repeated, untimed, into a daemon stopped at
                // once (which removes what it loaded).
                let daemon = Daemon::start(&peers_dir, &daemon_dir("warm-up"))?;
                sync()?;
                warm(step, image)?;
                let warm_up_dir = dir.join("warm-up");
                fs::create_dir(&warm_up_dir)
                    .with_context(|| format!("cannot create {}", warm_up_dir.display()))?;
                let sample = measure(step, &hoist, image, &warm_up_dir, Some(&daemon))?;
                println!(
                    "    {:<38}{:>8.3} s (warm-up, not counted)",
                    step.label(),
                    sample.seconds
                );
                daemon.stop()?;
            }
            let daemon = if step.loads() {
                Some(Daemon::start(&peers_dir, &daemon_dir(step.key()))?)
            } else {
                None
            };
            sync()?;
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
                format_mib(sample.usage.peak_rss_kib)
            );
            samples.push(sample);
            // Kept running until the run ends: stopping removes the daemon's data.
            daemons.extend(daemon);
        }
        if run.counted {
            runs.push(samples);
            ballasts.push(ballast);
            load.push((load_start, load_average()));
        }
        println!("    load average {load_start:.2} -> {:.2}", load_average());
        for daemon in daemons {
            daemon.stop()?;
        }
        remove_dir(&dir)?;
        if !run.last {
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
        warm_up: plan.warm_up,
        ballast_bytes: ballasts,
        load,
        runs,
    };
    write_results(&bench_dir, "archive", &report.to_json(), &report.table())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::Scenario;
    use crate::bench::tests::parse_one;

    #[test]
    fn archive_defaults_to_1_gib_5_runs_and_quick_to_64_mib_once() {
        let parsed = parse_one(&["archive"]).unwrap();
        assert_eq!(parsed.scenario, Scenario::Archive);
        assert_eq!(
            (parsed.size_mib, parsed.runs, parsed.pause_secs),
            (ARCHIVE_SIZE_MIB, ARCHIVE_RUNS, 20)
        );
        assert!(parsed.ballast && !parsed.quick);
        let quick = parse_one(&["archive", "--quick"]).unwrap();
        assert_eq!(
            (quick.size_mib, quick.runs, quick.pause_secs),
            (QUICK_SIZE_MIB, 1, 0)
        );
        assert!(!quick.ballast && quick.quick);
        let given = parse_one(&["--runs", "2", "archive", "--size-mib", "128", "--quick"]).unwrap();
        assert_eq!((given.size_mib, given.runs), (128, 2));
        assert_eq!(
            parse_one(&["archive", "--runs", "3", "--pause", "5"]).map(|a| (a.runs, a.pause_secs)),
            Ok((3, 5))
        );
        assert!(parse_one(&["archive", "--runs", "0"]).is_err());
        assert!(parse_one(&["archive", "--size-mib", "0"]).is_err());
    }

    #[test]
    fn order_reverses_between_runs_with_hoist_beside_its_peers() {
        assert_eq!(archive_order(0)[0], Step::SkopeoWrite);
        assert_eq!(archive_order(1)[0], Step::SkopeoRead);
        assert_eq!(archive_order(0)[8], Step::HoistLoad);
        assert_eq!(archive_order(1)[8], Step::DockerLoad);
        assert!(archive_order(1)[10 - LOADS..].iter().all(|s| s.loads()));
        assert_eq!(archive_order(2)[8..], archive_order(0)[8..]);
        assert_ne!(archive_order(2)[0], archive_order(0)[0]);
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
}
