//! Scenario `client` (issue "registry client speed"): `hoist copy` beside `skopeo copy` and
//! `oras cp`, both ways between `docker-registry` (filesystem storage, loopback) and an OCI image layout, on an
//! image of [`LAYERS`] layers of random, incompressible data (1 GiB in all by default).
//!
//! Targets, on medians:
//! * pull (registry to a new layout): hoist takes at most [`PULL_VS_SKOPEO`] times skopeo's
//!   time, at most [`PULL_VS_ORAS`] times oras's, and at most [`BOUND_LIMIT`] times the machine's limit for the same bytes, measured in
//!   the same run: the slowest of the registry serving them (`curl` GETs to `/dev/null`),
//!   hashing them (`openssl dgst -sha256`) and writing them as new files (`dd
//!   conv=fdatasync`), each [`JOBS`] at a time as hoist does;
//! * push (layout to a registry): hoist takes at most [`BOUND_LIMIT`] times what the registry
//!   itself needs to take the blobs (`curl` `POST` + monolithic `PUT`, [`JOBS`] at a time), less
//!   time than skopeo, and at most [`PUSH_VS_ORAS`] times oras's time;
//! * peak RSS (GNU `time`): hoist's at most skopeo's, in both directions (oras's is reported).
//!
//! oras runs as `oras cp` with `--to-oci-layout` or `--from-oci-layout` and plain HTTP, at its
//! own default concurrency; its pulled layout is checked like the others' (the tag in
//! `index.json` names the source's manifest digest, every blob is there with its size).
//!
//! How it measures:
//! * the layers are gzip streams (`gzip -1` of `/dev/urandom`, which stores random data
//!   incompressibly) typed `tar+gzip`, made once per bench: skopeo compresses a layer it pushes
//!   to a registry unless it already looks compressed, and that would compare a gzip run with a
//!   copy; each push is checked to give the source's manifest digest, so both tools copied the
//!   same bytes;
//! * the source layout and the pull registry are made and filled once (with `curl`, not with the
//!   tools measured); before every step the layers are read from both, untimed, so that every
//!   step finds them in the page cache (this machine pages out what has not been touched for a
//!   minute: DAMON `pageout`, which slows a `curl` GET of the registry late in a run);
//! * every push goes to a registry of its own, started for the run with fresh storage on a
//!   fresh port: the registry's filesystem driver stores blobs globally (a second upload of a
//!   blob another repository has is received in full, then dropped instead of moved), and
//!   skopeo's blob info cache would try to mount blobs it has seen on the same host; a new
//!   registry makes every blob a full upload for every tool (oras's pushes get one too);
//! * every pull and every bound writes into a new directory; nothing is deleted until the run
//!   ends (freed memory is faster to write into), then the run's directory goes, followed by
//!   `sync` and the pause; each run starts with the ballast write of the layout scenario;
//! * `sync` before every step, so that no step pays for the write-back of another;
//! * the order of the steps reverses from one run to the next and turns by a third every second
//!   run (`measure::alternate`), so every step runs early and late; each hoist step sits between
//!   skopeo's and the bound it is compared with, oras's one step further, in all but the runs
//!   where the turn's seam falls between them (the machine drifts within a run: writes get
//!   slower as a run uses up memory the host still backs).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::data::{oci_ref, parallel};
use super::machine::{
    CpuMeter, Revision, Workspace, ballast_bytes, build_hoist, check_dd, dd, remove_dir,
    require_tools, revision, run_ballast, sha256_of, sync, sync_and_pause, version,
};
use super::measure::{
    Defaults, Runs, StepCpu, alternate, print_step, read_usage, require_gnu_time, timed, with_time,
    write_results,
};
use super::peers::{Registry, check_digest_printed, download_blob, upload_blob};
use super::{BenchArgs, Scenario};

mod image;
mod report;

use image::{Image, check_pulled, check_pushed, make_image, seed, warm};
use report::ClientReport;

/// The default image size of the scenario, and that of `--quick`.
const CLIENT_SIZE_MIB: u64 = 1024;
const QUICK_SIZE_MIB: u64 = 64;
/// The image's layers.
pub(super) const LAYERS: usize = 8;
/// Blobs at once: hoist's default `--jobs`, used for the bounds too.
const JOBS: usize = 4;
/// hoist's pull time over skopeo's, at most.
const PULL_VS_SKOPEO: f64 = 0.75;
/// hoist's pull and push times over oras's, at most.
const PULL_VS_ORAS: f64 = 0.8;
const PUSH_VS_ORAS: f64 = 0.9;
/// hoist's time over the machine's (pull) or the registry's (push) bound, at most.
const BOUND_LIMIT: f64 = 1.1;
/// hoist's push time over skopeo's: less than this.
const PUSH_VS_SKOPEO: f64 = 1.0;
/// hoist's peak RSS over skopeo's, at most.
const RSS_VS_SKOPEO: f64 = 1.0;
/// The image in the pull registry.
const SOURCE_REPO: &str = "bench/client";
const TAG: &str = "1";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// Copies of the image a run writes beyond the three [`ballast_bytes`] counts (three pulls, the
/// `dd` copies and four registries make eight) plus the two kept all along (the source layout
/// and the pull registry).
const EXTRA_COPIES: u64 = 7;

/// The scenario's defaults for what the command line leaves out: [`CLIENT_SIZE_MIB`], or
/// with `--quick` [`QUICK_SIZE_MIB`] and one run.
pub(super) const DEFAULTS: Defaults = Defaults::sized(CLIENT_SIZE_MIB, QUICK_SIZE_MIB);

/// What a run times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// `hoist copy REGISTRY/REPO:TAG oci:DIR:TAG` into a new directory.
    HoistPull,
    /// `skopeo copy docker://REGISTRY/REPO:TAG oci:DIR:TAG` into a new directory.
    SkopeoPull,
    /// `oras cp REGISTRY/REPO:TAG --to-oci-layout DIR:TAG` into a new directory.
    OrasPull,
    /// `curl` GETs of the layers to `/dev/null`, [`JOBS`] at a time.
    Serve,
    /// `openssl dgst -sha256` of the layers, [`JOBS`] at a time.
    Hash,
    /// `dd conv=fdatasync` of the layers into new files, [`JOBS`] at a time.
    Write,
    /// `hoist copy oci:DIR:TAG REGISTRY/REPO:TAG` into a new registry.
    HoistPush,
    /// `skopeo copy oci:DIR:TAG docker://REGISTRY/REPO:TAG` into a new registry.
    SkopeoPush,
    /// `oras cp --from-oci-layout DIR:TAG REGISTRY/REPO:TAG` into a new registry.
    OrasPush,
    /// `curl` `POST` + `PUT` of the layers into a new registry, [`JOBS`] at a time.
    Upload,
}

impl Step {
    const ALL: [Self; 10] = [
        Self::HoistPull,
        Self::SkopeoPull,
        Self::OrasPull,
        Self::Serve,
        Self::Hash,
        Self::Write,
        Self::HoistPush,
        Self::SkopeoPush,
        Self::OrasPush,
        Self::Upload,
    ];
    /// The steps whose peak RSS is measured.
    const TOOLS: [Self; 6] = [
        Self::HoistPull,
        Self::SkopeoPull,
        Self::OrasPull,
        Self::HoistPush,
        Self::SkopeoPush,
        Self::OrasPush,
    ];

    fn key(self) -> &'static str {
        match self {
            Self::HoistPull => "hoist_pull",
            Self::SkopeoPull => "skopeo_pull",
            Self::OrasPull => "oras_pull",
            Self::Serve => "curl_get",
            Self::Hash => "openssl_dgst",
            Self::Write => "dd",
            Self::HoistPush => "hoist_push",
            Self::SkopeoPush => "skopeo_push",
            Self::OrasPush => "oras_push",
            Self::Upload => "curl_upload",
        }
    }

    /// How the README's table names a bound.
    fn bound_name(self) -> &'static str {
        match self {
            Self::Serve => "curl GET",
            Self::Hash => "openssl dgst",
            Self::Write => "dd write",
            _ => self.key(),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::HoistPull => "pull: hoist copy",
            Self::SkopeoPull => "pull: skopeo copy",
            Self::OrasPull => "pull: oras cp",
            Self::Serve => "  curl GET (registry serves)",
            Self::Hash => "  openssl dgst -sha256 (hash)",
            Self::Write => "  dd conv=fdatasync (write)",
            Self::HoistPush => "push: hoist copy",
            Self::SkopeoPush => "push: skopeo copy",
            Self::OrasPush => "push: oras cp",
            Self::Upload => "  curl POST+PUT (registry takes)",
        }
    }
}

/// The order of even runs: each hoist step sits between the two it is compared with (skopeo's
/// and the bound's), with oras's one step further, so that the machine's drift within a run
/// touches them alike.
const ORDER: [Step; 10] = [
    Step::OrasPull,
    Step::SkopeoPull,
    Step::HoistPull,
    Step::Write,
    Step::Hash,
    Step::Serve,
    Step::Upload,
    Step::HoistPush,
    Step::SkopeoPush,
    Step::OrasPush,
];

/// The order of run `index` (from 0): [`ORDER`] as [`alternate`] turns and reverses it.
fn client_order(index: usize) -> [Step; 10] {
    alternate(ORDER, index)
}

/// One timed step.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    step: Step,
    seconds: f64,
    /// For [`Step::TOOLS`].
    peak_rss_kib: Option<u64>,
    /// The tool's and the registries' CPU seconds.
    cpu: StepCpu,
}

/// What the steps of a run use.
struct RunCx<'a> {
    hoist: &'a Path,
    image: &'a Image,
    pull: &'a Registry,
    /// The run's directory.
    dir: PathBuf,
    /// The run's number, from 1, in repository names.
    number: usize,
    /// The fresh registries of the pushes.
    hoist_target: &'a Registry,
    skopeo_target: &'a Registry,
    oras_target: &'a Registry,
    upload_target: &'a Registry,
}

/// Times `step` and checks what it did.
fn measure(step: Step, cx: &RunCx<'_>) -> Result<Sample> {
    let image = cx.image;
    let rss_file = cx.dir.join(format!("{}.time", step.key()));
    let hoist = |src: String, dst: String| {
        let mut cmd = with_time(&rss_file, cx.hoist);
        cmd.args(["copy", &src, &dst]);
        cmd
    };
    let skopeo = |tls: &str, src: String, dst: String| {
        let mut cmd = with_time(&rss_file, Path::new("skopeo"));
        cmd.args(["copy", tls, &src, &dst]);
        cmd
    };
    let oras = |args: &[&str]| {
        let mut cmd = with_time(&rss_file, Path::new("oras"));
        cmd.arg("cp").args(args);
        cmd
    };
    let source = format!("{}/{SOURCE_REPO}:{TAG}", cx.pull.host);
    let oci = |dir: &Path| oci_ref(dir, TAG);
    // oras names a layout `DIR:TAG`, without hoist's and skopeo's `oci:`.
    let oras_layout = |dir: &Path| format!("{}:{TAG}", dir.display());
    let target = match step {
        Step::HoistPush => Some(cx.hoist_target),
        Step::SkopeoPush => Some(cx.skopeo_target),
        Step::OrasPush => Some(cx.oras_target),
        Step::Upload => Some(cx.upload_target),
        _ => None,
    };
    let registries = CpuMeter::new(
        [Some(cx.pull.pid), target.map(|t| t.pid)]
            .into_iter()
            .flatten(),
    );
    let registry_cpu = registries.start()?;
    let seconds = match step {
        Step::HoistPull | Step::SkopeoPull | Step::OrasPull => {
            let dir = cx.dir.join(step.key());
            let mut cmd = match step {
                Step::HoistPull => hoist(source, oci(&dir)),
                Step::SkopeoPull => skopeo(
                    "--src-tls-verify=false",
                    format!("docker://{source}"),
                    oci(&dir),
                ),
                _ => oras(&[
                    "--from-plain-http",
                    &source,
                    "--to-oci-layout",
                    &oras_layout(&dir),
                ]),
            };
            let (seconds, output) = timed(&mut cmd)?;
            if step == Step::HoistPull {
                check_digest_printed(&output.stdout, &image.manifest.digest)?;
            }
            check_pulled(&dir, image)?;
            seconds
        }
        Step::HoistPush | Step::SkopeoPush | Step::OrasPush => {
            let (target, tool) = match step {
                Step::HoistPush => (cx.hoist_target, "hoist"),
                Step::SkopeoPush => (cx.skopeo_target, "skopeo"),
                _ => (cx.oras_target, "oras"),
            };
            let repo = format!("bench/push-{tool}-{}", cx.number);
            let dst = format!("{}/{repo}:{TAG}", target.host);
            let mut cmd = match step {
                Step::HoistPush => hoist(oci(&image.layout), dst),
                Step::SkopeoPush => skopeo(
                    "--dest-tls-verify=false",
                    oci(&image.layout),
                    format!("docker://{dst}"),
                ),
                _ => oras(&[
                    "--to-plain-http",
                    "--from-oci-layout",
                    &oras_layout(&image.layout),
                    &dst,
                ]),
            };
            let (seconds, output) = timed(&mut cmd)?;
            if step == Step::HoistPush {
                check_digest_printed(&output.stdout, &image.manifest.digest)?;
            }
            check_pushed(target, &repo, image)?;
            seconds
        }
        Step::Serve => {
            let base = cx.pull.base();
            parallel(JOBS, &image.layers, |l| {
                download_blob(&base, SOURCE_REPO, &l.digest, l.size)
            })?
            .0
        }
        Step::Hash => {
            parallel(JOBS, &image.layers, |l| {
                let actual = sha256_of(&l.path)?;
                if actual != l.digest {
                    bail!("openssl dgst says {actual}, expected {}", l.digest);
                }
                Ok(())
            })?
            .0
        }
        Step::Write => {
            let dir = cx.dir.join("dd");
            fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            parallel(JOBS, &image.layers, |l| {
                let file = dir.join(l.hex());
                timed(&mut dd(&l.path, &file))?;
                check_dd(&file, l.size)
            })?
            .0
        }
        Step::Upload => {
            let base = cx.upload_target.base();
            let repo = format!("bench/upload-{}", cx.number);
            parallel(JOBS, &image.layers, |l| {
                upload_blob(&base, &repo, Some(l.path.as_path()), "", &l.digest)
            })?
            .0
        }
    };
    let registry_cpu_seconds = registry_cpu()?;
    let usage = if Step::TOOLS.contains(&step) {
        Some(read_usage(&rss_file)?)
    } else {
        None
    };
    Ok(Sample {
        step,
        seconds,
        peak_rss_kib: usage.as_ref().map(|u| u.peak_rss_kib),
        cpu: StepCpu {
            tool: usage.map(|u| u.user + u.sys),
            registries: registry_cpu_seconds,
        },
    })
}

pub(super) fn run(root: &Path, args: &BenchArgs) -> Result<()> {
    require_tools(Scenario::Client.tools())?;
    require_gnu_time()?;
    let hoist = build_hoist(root)?;
    let hoist_revision = revision(root, Revision::Files);
    let (_, output) = timed(Command::new("skopeo").arg("--version"))?;
    let skopeo_version = String::from_utf8_lossy(&output.stdout)
        .trim()
        .replace("skopeo version", "skopeo");
    let oras_version = version("oras", "version").replace("Version:", "oras");
    let oras_version = oras_version
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let workspace = Workspace::new(root, "client", Some("oci:DIR:TAG"))?;
    let (bench_dir, work) = (workspace.bench_dir.clone(), workspace.work.clone());
    let random_bytes = args.size_mib << 20;

    println!(
        "==> source: {} MiB of random data in {LAYERS} gzip layers at {}",
        args.size_mib,
        work.join("source").display()
    );
    let image = make_image(&work, random_bytes)?;
    println!(
        "    {} ({} bytes of layers)",
        image.manifest.digest,
        image.layer_bytes()
    );
    let pull = Registry::start(root, &work.join("registry-pull"), false)?;
    println!(
        "==> docker-registry on {}: {SOURCE_REPO}:{TAG} (curl)",
        pull.addr
    );
    seed(&pull, &image)?;
    warm(&pull, &image)?;
    sync_and_pause(args.pause_secs)?;

    let size_bytes = image.layer_bytes();
    let mut runs = Vec::new();
    let mut ballasts = Vec::new();
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
        let hoist_target = Registry::start(root, &dir.join("registry-hoist"), false)?;
        let skopeo_target = Registry::start(root, &dir.join("registry-skopeo"), false)?;
        let oras_target = Registry::start(root, &dir.join("registry-oras"), false)?;
        let upload_target = Registry::start(root, &dir.join("registry-curl"), false)?;
        let cx = RunCx {
            hoist: &hoist,
            image: &image,
            pull: &pull,
            dir: dir.clone(),
            number: run.seq + 1,
            hoist_target: &hoist_target,
            skopeo_target: &skopeo_target,
            oras_target: &oras_target,
            upload_target: &upload_target,
        };
        let mut samples = Vec::new();
        for step in client_order(run.index) {
            sync()?;
            warm(&pull, &image)?;
            let sample = measure(step, &cx)?;
            print_step(step.label(), sample.seconds, sample.peak_rss_kib);
            samples.push(sample);
        }
        if run.counted {
            runs.push(samples);
            ballasts.push(ballast);
        }
        drop((hoist_target, skopeo_target, oras_target, upload_target));
        remove_dir(&dir)?;
        if !run.last {
            sync_and_pause(args.pause_secs)?;
        }
    }
    drop(pull);
    remove_dir(&work)?;

    let report = ClientReport {
        layer_bytes: size_bytes,
        random_bytes,
        manifest_digest: image.manifest.digest.clone(),
        skopeo_version,
        oras_version,
        hoist_revision,
        pause_secs: args.pause_secs,
        warm_up: plan.warm_up,
        ballast_bytes: ballasts,
        runs,
    };
    write_results(&bench_dir, "client", &report.to_json(), &report.table())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::Scenario;
    use crate::bench::measure::DEFAULT_RUNS;
    use crate::bench::tests::parse_one;

    #[test]
    fn client_defaults_to_1_gib_and_quick_to_64_mib_once() {
        let parsed = parse_one(&["client"]).unwrap();
        assert_eq!(parsed.scenario, Scenario::Client);
        assert_eq!(
            (parsed.size_mib, parsed.runs),
            (CLIENT_SIZE_MIB, DEFAULT_RUNS)
        );
        assert!(parsed.ballast);
        let quick = parse_one(&["client", "--quick"]).unwrap();
        assert_eq!((quick.size_mib, quick.runs), (QUICK_SIZE_MIB, 1));
        assert!(!quick.ballast && quick.quick);
        assert_eq!(quick.pause_secs, 0);
        let given = parse_one(&["--runs", "2", "client", "--quick", "--size-mib", "128"]).unwrap();
        assert_eq!((given.size_mib, given.runs), (128, 2));
        assert!(parse_one(&["client", "--size-mib", "0"]).is_err());
    }

    #[test]
    fn order_reverses_between_runs_with_hoist_beside_its_peers() {
        assert_eq!(client_order(0)[0], Step::OrasPull);
        assert_eq!(client_order(1)[0], Step::OrasPush);
        assert_eq!(client_order(1)[9], Step::OrasPull);
        assert_ne!(client_order(2), client_order(0));
        for index in 0..2 {
            let order = client_order(index);
            let at = |step| order.iter().position(|&s| s == step).unwrap();
            for step in Step::ALL {
                assert_eq!(order.iter().filter(|&&s| s == step).count(), 1);
            }
            for (hoist, peers) in [
                (Step::HoistPull, [Step::SkopeoPull, Step::Write]),
                (Step::HoistPush, [Step::SkopeoPush, Step::Upload]),
            ] {
                for peer in peers {
                    assert_eq!(at(hoist).abs_diff(at(peer)), 1, "{hoist:?} {peer:?}");
                }
            }
            for (hoist, oras) in [
                (Step::HoistPull, Step::OrasPull),
                (Step::HoistPush, Step::OrasPush),
            ] {
                assert_eq!(at(hoist).abs_diff(at(oras)), 2, "{hoist:?} {oras:?}");
            }
        }
    }
}
