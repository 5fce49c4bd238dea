//! Scenario `images` (issue 18's "50-layer image" and "4-platform index"): the shapes of image
//! where the cost per blob and per manifest counts more than the bytes, with
//! `docker-registry` (filesystem storage, loopback):
//! * a [`FIFTY`]-layer image (half of `--size-mib`, 256 MiB by default, in layers of equal
//!   size): pull into a new layout and push into a new registry, `hoist copy` beside `oras cp`
//!   (`--to-oci-layout`, `--from-oci-layout`) and `skopeo copy`;
//! * a [`PLATFORMS`]-platform index (the other half, [`INDEX_LAYERS`] layers per platform):
//!   copied whole to a new registry, `hoist copy` (every platform by default) beside `skopeo
//!   copy --all` and `oras cp` (which copies every platform of an index), and beside what the
//!   new registry needs to take the same blobs from `curl` ([`JOBS`] at a time, as hoist's
//!   `--jobs`).
//!
//! Targets, on medians: for the 50 layers, the pull and push ratios to oras
//! ([`PULL_VS_ORAS`], [`PUSH_VS_ORAS`]); for the index, the copy ratio to the target's
//! intake ([`INTAKE_LIMIT`]); hoist's peak RSS (GNU `time`, largest of the runs) at most oras's
//! in each. hoist against skopeo is reported.
//!
//! How it measures: the images are built once by `hoist build` from seeded random bytes (the
//! index's platforms with `--platform`) and put into the source registry with `curl`, never by
//! a tool measured; [`DEFAULT_RUNS`](super::measure::DEFAULT_RUNS) counted runs after an uncounted
//! warm-up run (none with `--quick`); every pull writes into a new directory and every push or
//! copy goes to a registry of its own, started for the run with fresh storage (the filesystem
//! driver stores blobs globally, and skopeo's blob info cache would mount blobs it has seen);
//! every result is checked to have the source's digest (the pulled layout's tag, the target's
//! manifest or index); `sync` and an untimed read of the source registry's storage and layouts before every
//! step; the order of the steps reverses from one run to the next and turns every second run, each hoist step beside oras's
//! (and the index copy beside the intake).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::data::{blob_path, layer_sizes, layout_image, oci_ref, parallel, seeded_image_for};
use super::machine::{
    CpuMeter, Revision, Workspace, ballast_bytes, build_hoist, remove_dir, require_tools, revision,
    run_ballast, sync, sync_and_pause, version, warm_tree,
};
use super::measure::{
    Defaults, Runs, StepCpu, alternate, print_step, read_usage, require_gnu_time, timed, with_time,
    write_results,
};
use super::peers::{
    Registry, check_digest_printed, curl, parse_header, put_layout_image, upload_blob,
};
use super::{BenchArgs, Scenario};

mod report;

use report::ImagesReport;

/// The default size of both images together, and that of `--quick`.
const IMAGES_SIZE_MIB: u64 = 256;
const QUICK_SIZE_MIB: u64 = 32;
/// The layers of the first image.
const FIFTY: usize = 50;
/// The platforms of the index, and the layers of each platform's image.
const PLATFORMS: [&str; 4] = ["linux/amd64", "linux/arm64", "linux/arm/v7", "linux/s390x"];
const INDEX_LAYERS: usize = 4;
/// Blobs at once: hoist's default `--jobs`, used for the intake too.
const JOBS: usize = 4;
/// hoist's time over oras's (pull, push) and over the target's intake (index copy), at most.
const PULL_VS_ORAS: f64 = 0.8;
const PUSH_VS_ORAS: f64 = 0.9;
const INTAKE_LIMIT: f64 = 1.1;
/// hoist's peak RSS over oras's, at most.
const RSS_LIMIT: f64 = 1.0;
const FIFTY_REPO: &str = "bench/fifty";
const INDEX_REPO: &str = "bench/index";
const TAG: &str = "1";
/// The seeds of the images' bytes (the index's platform N adds `16 * N`).
const FIFTY_SEED: u64 = 0x0066_6966_7479;
const INDEX_SEED: u64 = 0x0069_6e64_6578;
const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// Copies of the images a run writes beyond the three [`ballast_bytes`] counts: three pulls of
/// half, and eight registries of half.
const EXTRA_COPIES: u64 = 3;

/// The scenario's defaults for what the command line leaves out: [`IMAGES_SIZE_MIB`] and
/// [`DEFAULT_RUNS`](super::measure::DEFAULT_RUNS), or with `--quick` [`QUICK_SIZE_MIB`] and one
/// run.
pub(super) const DEFAULTS: Defaults = Defaults::sized(IMAGES_SIZE_MIB, QUICK_SIZE_MIB);

/// What a run times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    HoistPull,
    OrasPull,
    SkopeoPull,
    HoistPush,
    OrasPush,
    SkopeoPush,
    HoistIndex,
    OrasIndex,
    SkopeoIndex,
    /// `curl` `POST` + `PUT` of the index's blobs into a new registry, [`JOBS`] at a time.
    Intake,
}

impl Step {
    const ALL: [Self; 10] = [
        Self::HoistPull,
        Self::OrasPull,
        Self::SkopeoPull,
        Self::HoistPush,
        Self::OrasPush,
        Self::SkopeoPush,
        Self::HoistIndex,
        Self::OrasIndex,
        Self::SkopeoIndex,
        Self::Intake,
    ];

    fn key(self) -> &'static str {
        match self {
            Self::HoistPull => "fifty_pull_hoist",
            Self::OrasPull => "fifty_pull_oras",
            Self::SkopeoPull => "fifty_pull_skopeo",
            Self::HoistPush => "fifty_push_hoist",
            Self::OrasPush => "fifty_push_oras",
            Self::SkopeoPush => "fifty_push_skopeo",
            Self::HoistIndex => "index_copy_hoist",
            Self::OrasIndex => "index_copy_oras",
            Self::SkopeoIndex => "index_copy_skopeo",
            Self::Intake => "index_curl_upload",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::HoistPull => "50 layers pull: hoist copy",
            Self::OrasPull => "50 layers pull: oras cp",
            Self::SkopeoPull => "50 layers pull: skopeo copy",
            Self::HoistPush => "50 layers push: hoist copy",
            Self::OrasPush => "50 layers push: oras cp",
            Self::SkopeoPush => "50 layers push: skopeo copy",
            Self::HoistIndex => "index copy: hoist copy",
            Self::OrasIndex => "index copy: oras cp",
            Self::SkopeoIndex => "index copy: skopeo copy --all",
            Self::Intake => "  curl POST+PUT (registry takes)",
        }
    }

    /// Whether GNU `time` measures the step (every tool; not the intake).
    fn is_tool(self) -> bool {
        self != Self::Intake
    }

    /// Whether the step writes into a registry of its own.
    fn has_target(self) -> bool {
        !matches!(self, Self::HoistPull | Self::OrasPull | Self::SkopeoPull)
    }
}

/// The order of even runs: each hoist step beside oras's, the index copy beside the intake.
const ORDER: [Step; 10] = [
    Step::SkopeoPull,
    Step::OrasPull,
    Step::HoistPull,
    Step::HoistPush,
    Step::OrasPush,
    Step::SkopeoPush,
    Step::SkopeoIndex,
    Step::OrasIndex,
    Step::HoistIndex,
    Step::Intake,
];

/// The order of run `index` (from 0): [`ORDER`] as [`alternate`] turns and reverses it.
fn step_order(index: usize) -> [Step; 10] {
    alternate(ORDER, index)
}

/// One timed step.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    step: Step,
    seconds: f64,
    peak_rss_kib: Option<u64>,
    /// The tool's and the registries' CPU seconds.
    cpu: StepCpu,
}

/// What the set-up made: the 50-layer image's layout and digest, the index's digest and the
/// blobs of its images (layout, digest), and the source registry.
struct Source {
    fifty: PathBuf,
    fifty_digest: String,
    index_digest: String,
    index_blobs: Vec<(PathBuf, String)>,
    layouts: Vec<PathBuf>,
    registry: Registry,
    registry_dir: PathBuf,
    /// Bytes of the layers of each image.
    fifty_bytes: u64,
    index_bytes: u64,
}

/// The digest the registry at `base` gives for `repo:tag`, accepting an index or a manifest.
fn any_digest(base: &str, repo: &str, tag: &str) -> Result<String> {
    let mut head = curl();
    head.args(["-I", "-H"])
        .arg(format!(
            "Accept: {INDEX_TYPE}, {}",
            super::peers::MANIFEST_TYPE
        ))
        .arg(format!("{base}/v2/{repo}/manifests/{tag}"));
    let (_, output) = timed(&mut head)?;
    let headers = String::from_utf8_lossy(&output.stdout);
    parse_header(&headers, "docker-content-digest")
        .with_context(|| format!("no Docker-Content-Digest for {repo}:{tag} on {base}"))
}

/// Builds both images, puts them into a new source registry, and returns them.
fn prepare(root: &Path, hoist: &Path, work: &Path, size_bytes: u64) -> Result<Source> {
    let half = size_bytes / 2;
    let (fifty, image, seconds) = seeded_image_for(
        hoist,
        &work.join("fifty"),
        &layer_sizes(half, FIFTY),
        FIFTY_SEED,
        TAG,
        None,
    )?;
    println!("    50 layers: {} built in {seconds:.1} s", image.manifest);
    let fifty_bytes = image.layers.iter().map(|(_, size)| size).sum();
    let registry_dir = work.join("registry-source");
    let registry = Registry::start(root, &registry_dir, false)?;
    let base = registry.base();
    let fifty_digest = put_layout_image(&base, FIFTY_REPO, &fifty, TAG, JOBS)?;
    let mut entries = Vec::new();
    let mut index_blobs = Vec::new();
    let mut layouts = vec![fifty.clone()];
    let mut index_bytes = 0;
    for (n, platform) in (0u64..).zip(PLATFORMS) {
        let (layout, image, _) = seeded_image_for(
            hoist,
            &work.join(format!("platform-{n}")),
            &layer_sizes(half / PLATFORMS.len() as u64, INDEX_LAYERS),
            INDEX_SEED + 16 * n,
            TAG,
            Some(platform),
        )?;
        let digest = put_layout_image(&base, INDEX_REPO, &layout, TAG, JOBS)?;
        let manifest_path = blob_path(&layout, &digest);
        let manifest = super::data::read_json(&manifest_path)?;
        let config = manifest["config"]["digest"]
            .as_str()
            .context("a manifest has no config")?
            .to_owned();
        index_bytes += image.layers.iter().map(|(_, size)| size).sum::<u64>();
        for digest in image.layers.iter().map(|(d, _)| d.clone()).chain([config]) {
            index_blobs.push((layout.clone(), digest));
        }
        let mut parts = platform.split('/');
        let mut entry_platform = json!({
            "os": parts.next().unwrap_or("linux"),
            "architecture": parts.next().unwrap_or("amd64"),
        });
        if let Some(variant) = parts.next() {
            entry_platform["variant"] = json!(variant);
        }
        entries.push(json!({
            "mediaType": super::peers::MANIFEST_TYPE,
            "digest": digest,
            "size": fs::metadata(&manifest_path)?.len(),
            "platform": entry_platform,
        }));
        layouts.push(layout);
    }
    let index = json!({ "schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": entries });
    let mut put = curl();
    put.args(["-X", "PUT", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(["-H", &format!("Content-Type: {INDEX_TYPE}")])
        .args(["--data-binary", &index.to_string()])
        .arg(format!("{base}/v2/{INDEX_REPO}/manifests/{TAG}"));
    let (_, output) = timed(&mut put)?;
    let code = String::from_utf8_lossy(&output.stdout);
    if code.trim() != "201" {
        bail!("PUT of the index to {base} answered {code}, expected 201");
    }
    let index_digest = any_digest(&base, INDEX_REPO, TAG)?;
    println!(
        "    index of {} platforms: {index_digest}, {} blobs",
        PLATFORMS.len(),
        index_blobs.len()
    );
    Ok(Source {
        fifty,
        fifty_digest,
        index_digest,
        index_blobs,
        layouts,
        registry,
        registry_dir,
        fifty_bytes,
        index_bytes,
    })
}

/// Times `step` (writing under `dir`, or into `target`) and checks what it did.
fn measure(
    step: Step,
    hoist: &Path,
    source: &Source,
    dir: &Path,
    target: Option<&Registry>,
) -> Result<Sample> {
    let time_file = dir.join(format!("{}.time", step.key()));
    let host = &source.registry.host;
    let fifty_src = format!("{host}/{FIFTY_REPO}:{TAG}");
    let index_src = format!("{host}/{INDEX_REPO}:{TAG}");
    let out = dir.join(step.key());
    let repo = format!("bench/{}", step.key().replace('_', "-"));
    let dst = target.map(|t| format!("{}/{repo}:{TAG}", t.host));
    let registries = CpuMeter::new(
        [Some(source.registry.pid), target.map(|t| t.pid)]
            .into_iter()
            .flatten(),
    );
    let dst = || dst.clone().context("a step without a target registry");
    let tool = |program: &Path| with_time(&time_file, program);
    let (hoist_tool, oras, skopeo) = (
        || tool(hoist),
        || tool(Path::new("oras")),
        || tool(Path::new("skopeo")),
    );
    let oras_layout = |path: &Path| format!("{}:{TAG}", path.display());
    let mut cmd = match step {
        Step::HoistPull => {
            let mut cmd = hoist_tool();
            cmd.args(["copy", &fifty_src, &oci_ref(&out, TAG)]);
            cmd
        }
        Step::OrasPull => {
            let mut cmd = oras();
            cmd.args(["cp", "--from-plain-http", &fifty_src, "--to-oci-layout"])
                .arg(oras_layout(&out));
            cmd
        }
        Step::SkopeoPull => {
            let mut cmd = skopeo();
            cmd.args(["copy", "--src-tls-verify=false"])
                .arg(format!("docker://{fifty_src}"))
                .arg(oci_ref(&out, TAG));
            cmd
        }
        Step::HoistPush => {
            let mut cmd = hoist_tool();
            cmd.args(["copy", &oci_ref(&source.fifty, TAG), &dst()?]);
            cmd
        }
        Step::OrasPush => {
            let mut cmd = oras();
            cmd.args(["cp", "--to-plain-http", "--from-oci-layout"])
                .arg(oras_layout(&source.fifty))
                .arg(dst()?);
            cmd
        }
        Step::SkopeoPush => {
            let mut cmd = skopeo();
            cmd.args(["copy", "--dest-tls-verify=false"])
                .arg(oci_ref(&source.fifty, TAG))
                .arg(format!("docker://{}", dst()?));
            cmd
        }
        Step::HoistIndex => {
            let mut cmd = hoist_tool();
            cmd.args(["copy", &index_src, &dst()?]);
            cmd
        }
        Step::OrasIndex => {
            let mut cmd = oras();
            cmd.args([
                "cp",
                "--from-plain-http",
                "--to-plain-http",
                &index_src,
                &dst()?,
            ]);
            cmd
        }
        Step::SkopeoIndex => {
            let mut cmd = skopeo();
            cmd.args([
                "copy",
                "--all",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
            ])
            .arg(format!("docker://{index_src}"))
            .arg(format!("docker://{}", dst()?));
            cmd
        }
        Step::Intake => {
            let base = target.context("the intake has no registry")?.base();
            let registry_cpu = registries.start()?;
            let (seconds, _) = parallel(JOBS, &source.index_blobs, |(layout, digest)| {
                upload_blob(&base, &repo, Some(&blob_path(layout, digest)), "", digest)
            })?;
            return Ok(Sample {
                step,
                seconds,
                peak_rss_kib: None,
                cpu: StepCpu {
                    tool: None,
                    registries: registry_cpu()?,
                },
            });
        }
    };
    let registry_cpu = registries.start()?;
    let (seconds, output) = timed(&mut cmd)?;
    let registry_cpu_seconds = registry_cpu()?;
    let expected = match step {
        Step::HoistIndex | Step::OrasIndex | Step::SkopeoIndex => &source.index_digest,
        _ => &source.fifty_digest,
    };
    if matches!(step, Step::HoistPull | Step::HoistPush | Step::HoistIndex) {
        check_digest_printed(&output.stdout, expected)?;
    }
    let got = match (step.has_target(), target) {
        (true, Some(target)) => any_digest(&target.base(), &repo, TAG)?,
        _ => {
            let pulled = layout_image(&out, TAG)?;
            if pulled.layers.len() != FIFTY {
                bail!("{} left {} layers", step.label(), pulled.layers.len());
            }
            pulled.manifest
        }
    };
    if &got != expected {
        bail!("{} gave {got}, expected {expected}", step.label());
    }
    let usage = read_usage(&time_file)?;
    Ok(Sample {
        step,
        seconds,
        peak_rss_kib: Some(usage.peak_rss_kib),
        cpu: StepCpu {
            tool: Some(usage.user + usage.sys),
            registries: registry_cpu_seconds,
        },
    })
}

pub(super) fn run(root: &Path, args: &BenchArgs) -> Result<()> {
    require_tools(Scenario::Images.tools())?;
    require_gnu_time()?;
    let hoist = build_hoist(root)?;
    let hoist_revision = revision(root, Revision::Files);
    let versions = vec![
        version("skopeo", "--version"),
        version("oras", "version")
            .replace("Version:", "oras")
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" "),
    ];
    let workspace = Workspace::new(root, "images", Some("oci:DIR:TAG"))?;
    let (bench_dir, work) = (workspace.bench_dir.clone(), workspace.work.clone());
    println!(
        "==> images under {}: {FIFTY} layers and a {}-platform index, {} MiB in all",
        work.display(),
        PLATFORMS.len(),
        args.size_mib
    );
    let source = prepare(root, &hoist, &work, args.size_mib << 20)?;
    let warm = || -> Result<()> {
        warm_tree(&source.registry_dir)?;
        source.layouts.iter().try_for_each(|l| warm_tree(l))
    };
    warm()?;
    sync_and_pause(args.pause_secs)?;

    let size_bytes = source.fifty_bytes + source.index_bytes;
    let plan = Runs::new(args);
    let mut runs = Vec::new();
    let mut ballasts = Vec::new();
    for run in plan.iter() {
        let dir = workspace.run_dir(run.seq)?;
        println!("{}", run.heading(plan));
        let ballast = run_ballast(args.ballast, &dir, |available| {
            ballast_bytes(
                size_bytes,
                available.saturating_sub(EXTRA_COPIES * size_bytes),
            )
        })?;
        let mut samples = Vec::new();
        for step in step_order(run.index) {
            let target = if step.has_target() {
                Some(Registry::start(
                    root,
                    &dir.join(format!("registry-{}", step.key())),
                    false,
                )?)
            } else {
                None
            };
            sync()?;
            warm()?;
            let sample = measure(step, &hoist, &source, &dir, target.as_ref())?;
            print_step(step.label(), sample.seconds, sample.peak_rss_kib);
            samples.push(sample);
        }
        if run.counted {
            runs.push(samples);
            ballasts.push(ballast);
        }
    }
    let fifty_bytes = source.fifty_bytes;
    let index_bytes = source.index_bytes;
    let (fifty_digest, index_digest) = (source.fifty_digest.clone(), source.index_digest.clone());
    drop(source);
    remove_dir(&work)?;

    let report = ImagesReport {
        fifty_bytes,
        index_bytes,
        fifty_digest,
        index_digest,
        versions,
        hoist_revision,
        ballast_bytes: ballasts,
        warm_up: plan.warm_up,
        runs,
    };
    write_results(&bench_dir, "images", &report.to_json(), &report.table())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::Scenario;
    use crate::bench::measure::DEFAULT_RUNS;
    use crate::bench::tests::parse_one;

    #[test]
    fn images_defaults_to_5_runs_and_quick_to_one() {
        let parsed = parse_one(&["images"]).unwrap();
        assert_eq!(parsed.scenario, Scenario::Images);
        assert_eq!(
            (parsed.size_mib, parsed.runs),
            (IMAGES_SIZE_MIB, DEFAULT_RUNS)
        );
        let quick = parse_one(&["images", "--quick"]).unwrap();
        assert_eq!((quick.size_mib, quick.runs), (QUICK_SIZE_MIB, 1));
    }

    #[test]
    fn orders_alternate_with_hoist_beside_oras() {
        assert_eq!(step_order(1)[0], Step::Intake);
        for index in 0..2 {
            let order = step_order(index);
            let at = |step| order.iter().position(|&s| s == step).unwrap();
            for step in Step::ALL {
                assert_eq!(order.iter().filter(|&&s| s == step).count(), 1, "{step:?}");
            }
            for (hoist, peer) in [
                (Step::HoistPull, Step::OrasPull),
                (Step::HoistPush, Step::OrasPush),
                (Step::HoistIndex, Step::OrasIndex),
                (Step::HoistIndex, Step::Intake),
            ] {
                assert_eq!(at(hoist).abs_diff(at(peer)), 1, "{hoist:?}");
            }
        }
        assert!(Step::ALL.iter().filter(|s| s.is_tool()).count() == 9);
    }
}
