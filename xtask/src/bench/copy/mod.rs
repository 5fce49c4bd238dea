//! Scenario `copy`: `hoist copy` from one `docker-registry` to another (filesystem storage,
//! loopback) beside `skopeo copy` and `oras cp` of the same image, and `hoist copy` from one
//! repository to another of the same registry, where blobs are mounted rather than moved. The
//! image is [`LAYERS`] layers of seeded random data built by `hoist build` (1 GiB in all by
//! default).
//!
//! Target, on medians: hoist takes at most [`BOUND_LIMIT`] times what the second registry needs
//! to take the same blobs from `curl` (`POST` + monolithic `PUT`, [`JOBS`] at a time as hoist's
//! `--jobs`), measured in the same run. Reported: hoist against skopeo and oras, every tool's
//! peak RSS (GNU `time`), and the copy within one registry against the copy between two.
//!
//! How it measures:
//! * the source registry is filled once with `curl` (not with a tool measured); before every
//!   step the layers are read from the source layout and downloaded from the source registry,
//!   untimed, so that every step finds them in the page cache;
//! * every copy between registries goes to a registry of its own, started for the run with
//!   fresh storage on a fresh port: the filesystem driver stores blobs globally, and skopeo's
//!   blob info cache would try to mount blobs it has seen on the same host, so a new registry
//!   makes every blob a full upload for every tool; each copy is checked to give the source's
//!   manifest digest;
//! * the copy within one registry goes to a new repository of the source registry
//!   (`bench/mount-N`); the registry's access log is then checked for blob uploads into that
//!   repository with a body (`PATCH` or `PUT` of an upload): there must be none, since mounts
//!   move no layer bytes;
//! * `sync` before every step; each run starts with the ballast write of the layout scenario;
//!   the order of the steps reverses from one run to the next and turns every second run
//!   (`measure::alternate`); hoist's copy sits between
//!   skopeo's and the intake it is compared with, oras's one step further.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::data::{blob_path, parallel, seeded_image};
use super::machine::{
    CpuMeter, Revision, Workspace, ballast_bytes, build_hoist, read_through, remove_dir,
    require_tools, revision, run_ballast, sync, sync_and_pause, version,
};
use super::measure::{
    Defaults, Runs, StepCpu, alternate, print_step, read_usage, require_gnu_time, timed, with_time,
    write_results,
};
use super::peers::{
    Registry, check_digest_printed, count_blob_bodies, download_blob, manifest_digest,
    put_layout_image, upload_blob,
};
use super::{BenchArgs, Scenario};

mod report;

use report::CopyReport;

/// The default image size, and that of `--quick`.
const COPY_SIZE_MIB: u64 = 1024;
const QUICK_SIZE_MIB: u64 = 64;
/// The image's layers.
const LAYERS: usize = 8;
/// Blobs at once: hoist's default `--jobs`, used for the intake too.
const JOBS: usize = 4;
/// hoist's time over the second registry's intake, at most.
const BOUND_LIMIT: f64 = 1.1;
const SOURCE_REPO: &str = "bench/copy";
const TAG: &str = "1";
/// The seed of the layers' bytes.
const SEED: u64 = 0x636f_7079;
/// Copies of the image a run writes beyond the three [`ballast_bytes`] counts (four target
/// registries) plus the two kept all along (the source layout and the source registry).
const EXTRA_COPIES: u64 = 3;

/// The scenario's defaults for what the command line leaves out: [`COPY_SIZE_MIB`], or with
/// `--quick` [`QUICK_SIZE_MIB`] and one run.
pub(super) const DEFAULTS: Defaults = Defaults::sized(COPY_SIZE_MIB, QUICK_SIZE_MIB);

/// What a run times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// `hoist copy SRC/REPO:TAG DST/REPO:TAG` into a new registry.
    Hoist,
    /// `skopeo copy docker://SRC/REPO:TAG docker://DST/REPO:TAG` into a new registry.
    Skopeo,
    /// `oras cp SRC/REPO:TAG DST/REPO:TAG` into a new registry.
    Oras,
    /// `curl` `POST` + `PUT` of the config and layers into a new registry, [`JOBS`] at a time.
    Intake,
    /// `hoist copy SRC/REPO:TAG SRC/bench/mount-N:TAG`: within the source registry.
    Mount,
}

impl Step {
    pub(super) const ALL: [Self; 5] = [
        Self::Hoist,
        Self::Skopeo,
        Self::Oras,
        Self::Intake,
        Self::Mount,
    ];
    /// The steps whose peak RSS is measured.
    pub(super) const TOOLS: [Self; 4] = [Self::Hoist, Self::Skopeo, Self::Oras, Self::Mount];

    pub(super) fn key(self) -> &'static str {
        match self {
            Self::Hoist => "hoist_copy",
            Self::Skopeo => "skopeo_copy",
            Self::Oras => "oras_cp",
            Self::Intake => "curl_upload",
            Self::Mount => "hoist_copy_mount",
        }
    }

    pub(super) fn label(self) -> &'static str {
        match self {
            Self::Hoist => "registry to registry: hoist copy",
            Self::Skopeo => "registry to registry: skopeo copy",
            Self::Oras => "registry to registry: oras cp",
            Self::Intake => "  curl POST+PUT (registry takes)",
            Self::Mount => "within one registry: hoist copy",
        }
    }
}

/// The order of even runs: hoist between skopeo and the intake, oras one step further.
const ORDER: [Step; 5] = [
    Step::Oras,
    Step::Skopeo,
    Step::Hoist,
    Step::Intake,
    Step::Mount,
];

/// The order of run `index` (from 0): [`ORDER`] as [`alternate`] turns and reverses it.
fn copy_order(index: usize) -> [Step; 5] {
    alternate(ORDER, index)
}

/// One timed step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Sample {
    pub(super) step: Step,
    pub(super) seconds: f64,
    pub(super) peak_rss_kib: Option<u64>,
    /// The tool's and the registries' CPU seconds.
    pub(super) cpu: StepCpu,
}

/// The source: its layout, manifest and blobs (digest, size), and the registry holding it.
struct Source<'a> {
    layout: &'a Path,
    manifest: &'a str,
    /// The config and the layers.
    blobs: &'a [(String, u64)],
    registry: &'a Registry,
}

/// What the steps of a run use.
struct RunCx<'a> {
    hoist: &'a Path,
    source: &'a Source<'a>,
    /// The run's directory.
    dir: &'a Path,
    /// The run's number, from 1, in repository names.
    number: usize,
    /// The fresh registries of [`Step::Hoist`], [`Step::Skopeo`], [`Step::Oras`] and
    /// [`Step::Intake`].
    targets: [&'a Registry; 4],
}

/// Times `step` and checks what it did.
fn measure(step: Step, cx: &RunCx<'_>) -> Result<Sample> {
    let source = cx.source;
    let rss_file = cx.dir.join(format!("{}.time", step.key()));
    let src = format!("{}/{SOURCE_REPO}:{TAG}", source.registry.host);
    let (target, repo) = match step {
        Step::Hoist => (cx.targets[0], "hoist"),
        Step::Skopeo => (cx.targets[1], "skopeo"),
        Step::Oras => (cx.targets[2], "oras"),
        Step::Intake => (cx.targets[3], "curl"),
        Step::Mount => (source.registry, "mount"),
    };
    let repo = format!("bench/{repo}-{}", cx.number);
    let dst = format!("{}/{repo}:{TAG}", target.host);
    let mut pids = vec![source.registry.pid];
    if target.pid != source.registry.pid {
        pids.push(target.pid);
    }
    let registries = CpuMeter::new(pids);
    let registry_cpu = registries.start()?;
    let seconds = match step {
        Step::Hoist | Step::Mount => {
            let mut cmd = with_time(&rss_file, cx.hoist);
            cmd.args(["copy", &src, &dst]);
            let (seconds, output) = timed(&mut cmd)?;
            check_digest_printed(&output.stdout, source.manifest)?;
            seconds
        }
        Step::Skopeo => {
            let mut cmd = with_time(&rss_file, Path::new("skopeo"));
            cmd.args(["copy", "--src-tls-verify=false", "--dest-tls-verify=false"])
                .args([format!("docker://{src}"), format!("docker://{dst}")]);
            timed(&mut cmd)?.0
        }
        Step::Oras => {
            let mut cmd = with_time(&rss_file, Path::new("oras"));
            cmd.args(["cp", "--from-plain-http", "--to-plain-http", &src, &dst]);
            timed(&mut cmd)?.0
        }
        Step::Intake => {
            let base = target.base();
            parallel(JOBS, source.blobs, |(digest, _)| {
                upload_blob(
                    &base,
                    &repo,
                    Some(&blob_path(source.layout, digest)),
                    "",
                    digest,
                )
            })?
            .0
        }
    };
    let registry_cpu_seconds = registry_cpu()?;
    if step != Step::Intake {
        let digest = manifest_digest(&target.base(), &repo, TAG)?;
        if digest != source.manifest {
            bail!(
                "{} copied {repo}:{TAG} as {digest}, expected {}",
                step.label().trim(),
                source.manifest
            );
        }
    }
    if step == Step::Mount {
        check_mounted(source.registry, &repo)?;
    }
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

/// Fails unless the registry's access log shows requests about `repo` and no blob upload into
/// it with a body.
fn check_mounted(registry: &Registry, repo: &str) -> Result<()> {
    let log_path = registry.log();
    let log = fs::read_to_string(&log_path)
        .with_context(|| format!("cannot read {}", log_path.display()))?;
    match count_blob_bodies(&log, repo) {
        (_, 0) => bail!(
            "{} logs no request about {repo}: cannot tell whether blobs were mounted",
            log_path.display()
        ),
        (0, _) => Ok(()),
        (bodies, _) => bail!(
            "the copy within one registry uploaded blob bytes into {repo} ({bodies} PATCH or PUT \
             of an upload in {}) instead of mounting them",
            log_path.display()
        ),
    }
}

/// Reads the blobs from the source layout and downloads them from the source registry, untimed,
/// so that the next step finds them in the page cache.
fn warm(source: &Source<'_>) -> Result<()> {
    let base = source.registry.base();
    parallel(JOBS, source.blobs, |(digest, size)| {
        read_through(&blob_path(source.layout, digest))?;
        download_blob(&base, SOURCE_REPO, digest, *size)
    })?;
    Ok(())
}

pub(super) fn run(root: &Path, args: &BenchArgs) -> Result<()> {
    require_tools(Scenario::Copy.tools())?;
    require_gnu_time()?;
    let hoist = build_hoist(root)?;
    let workspace = Workspace::new(root, "copy", None)?;
    let work = workspace.work.clone();
    let layer = (args.size_mib << 20) / LAYERS as u64;
    println!(
        "==> source: {LAYERS} layers of {} MiB (hoist build)",
        layer >> 20
    );
    let (layout, image, _) = seeded_image(&hoist, &work, &[layer; LAYERS], SEED, TAG)?;
    println!("    {}", image.manifest);
    let registry = Registry::start(root, &work.join("registry-source"), false)?;
    println!(
        "==> docker-registry on {}: {SOURCE_REPO}:{TAG} (curl)",
        registry.addr
    );
    put_layout_image(&registry.base(), SOURCE_REPO, &layout, TAG, JOBS)?;
    let config =
        crate::bench::data::read_json(&blob_path(&layout, &image.manifest))?["config"]["digest"]
            .as_str()
            .context("the manifest has no config")?
            .to_owned();
    let config_size = fs::metadata(blob_path(&layout, &config))
        .with_context(|| format!("no config blob {config}"))?
        .len();
    let blobs: Vec<(String, u64)> = image
        .layers
        .iter()
        .cloned()
        .chain([(config, config_size)])
        .collect();
    let source = Source {
        layout: &layout,
        manifest: &image.manifest,
        blobs: &blobs,
        registry: &registry,
    };
    warm(&source)?;
    sync_and_pause(args.pause_secs)?;

    let layer_bytes: u64 = image.layers.iter().map(|(_, size)| size).sum();
    let mut runs = Vec::new();
    let mut ballasts = Vec::new();
    let plan = Runs::new(args);
    for run in plan.iter() {
        let dir = workspace.run_dir(run.seq)?;
        println!("{}", run.heading(plan));
        let ballast = run_ballast(args.ballast, &dir, |available| {
            ballast_bytes(
                layer_bytes,
                available.saturating_sub(EXTRA_COPIES * layer_bytes),
            )
        })?;
        let targets = ["hoist", "skopeo", "oras", "curl"]
            .map(|name| Registry::start(root, &dir.join(format!("registry-{name}")), false));
        let [Ok(hoist_to), Ok(skopeo_to), Ok(oras_to), Ok(curl_to)] = targets else {
            let errors: Vec<String> = targets
                .into_iter()
                .filter_map(|t| t.err().map(|e| format!("{e:#}")))
                .collect();
            bail!("cannot start the target registries: {}", errors.join("; "));
        };
        let cx = RunCx {
            hoist: &hoist,
            source: &source,
            dir: &dir,
            number: run.seq + 1,
            targets: [&hoist_to, &skopeo_to, &oras_to, &curl_to],
        };
        let mut samples = Vec::new();
        for step in copy_order(run.index) {
            sync()?;
            warm(&source)?;
            let sample = measure(step, &cx)?;
            print_step(step.label(), sample.seconds, sample.peak_rss_kib);
            samples.push(sample);
        }
        if run.counted {
            runs.push(samples);
            ballasts.push(ballast);
        }
        drop((hoist_to, skopeo_to, oras_to, curl_to));
        remove_dir(&dir)?;
        if !run.last {
            sync_and_pause(args.pause_secs)?;
        }
    }
    drop(registry);
    remove_dir(&work)?;

    let report = CopyReport {
        layer_bytes,
        manifest_digest: image.manifest.clone(),
        versions: [
            revision(root, Revision::Files),
            version("skopeo", "--version"),
            version("oras", "version"),
        ],
        pause_secs: args.pause_secs,
        warm_up: plan.warm_up,
        ballast_bytes: ballasts,
        runs,
    };
    write_results(
        &workspace.bench_dir,
        "copy",
        &report.to_json(),
        &report.table(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::Scenario;
    use crate::bench::measure::DEFAULT_RUNS;
    use crate::bench::tests::parse_one;

    #[test]
    fn copy_defaults_to_1_gib_and_quick_to_64_mib_once() {
        let parsed = parse_one(&["copy"]).unwrap();
        assert_eq!(parsed.scenario, Scenario::Copy);
        assert_eq!(
            (parsed.size_mib, parsed.runs),
            (COPY_SIZE_MIB, DEFAULT_RUNS)
        );
        let quick = parse_one(&["--scenario", "copy", "--quick"]).unwrap();
        assert_eq!((quick.size_mib, quick.runs), (QUICK_SIZE_MIB, 1));
    }

    #[test]
    fn hoist_sits_between_skopeo_and_the_intake() {
        for index in 0..2 {
            let order = copy_order(index);
            let at = |step| order.iter().position(|&s| s == step).unwrap();
            assert_eq!(at(Step::Hoist).abs_diff(at(Step::Skopeo)), 1);
            assert_eq!(at(Step::Hoist).abs_diff(at(Step::Intake)), 1);
            assert_eq!(at(Step::Hoist).abs_diff(at(Step::Oras)), 2);
            for step in Step::ALL {
                assert_eq!(order.iter().filter(|&&s| s == step).count(), 1);
            }
        }
        assert_eq!(copy_order(1)[0], Step::Mount);
    }
}
