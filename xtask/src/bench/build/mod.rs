//! Scenario `build` (issue "hoist build speed"): `hoist build --layer DIR oci:LAYOUT:TAG` beside
//! `umoci insert` of the same tree into a layout, gzip layers both, on two trees:
//! * `generated`: `--size-mib` (1 GiB by default) of files made from a fixed seed, of mixed
//!   sizes (1 KiB to 8 MiB, log-uniform, and a quarter of the bytes in files of up to 64 MiB),
//!   each half random bytes and half log-like text in alternating 64 KiB segments, so that gzip
//!   does real work on half of it and stores the other half;
//! * `usr`: a copy of part of this machine's `/usr/share` and `/usr/lib` (a sorted walk of each,
//!   files copied until 3/8 of `--size-mib` is reached, two thirds of it from `/usr/share`):
//!   many small files, as real images have.
//!
//! Targets, on medians, per tree: hoist takes at most [`TIME_LIMIT`] times umoci's time; its
//! peak RSS (GNU `time`, the largest of the runs) stays under [`RSS_LIMIT_KIB`] whatever the
//! tree. Reported beside them, measured in the same runs: the machine's limits for the same
//! bytes (reading the tree with `tar -c`, gzip at hoist's level with `pigz` on one core and on
//! all of them, `openssl dgst -sha256`, `dd conv=fdatasync` of hoist's layer into a new file),
//! hoist with `--compression-threads 1`, CPU seconds (user + sys) and umoci's peak RSS.
//!
//! How it measures:
//! * hoist runs with `SOURCE_DATE_EPOCH` set and its default compression (the level is read
//!   from `DEFAULT_GZIP_LEVEL` in the source hoist is built from, and `pigz` uses the same);
//!   every build must print the manifest digest of an untimed build made during the set-up,
//!   whatever the threads: the bytes are the same, only the time differs;
//! * umoci: `umoci init --layout L && umoci new --image L:base` (untimed), then the timed
//!   `umoci insert --rootless --image L:base TREE /`; umoci 0.4 compresses with `pgzip` at its
//!   default level (`-1`) and does not `fsync` its blobs (hoist syncs them);
//! * the trees, a `tar --sort=name` of each (for the bounds) and hoist's reference layer are
//!   made once, then every step of a run writes into a new directory, after `sync` and an
//!   untimed read of everything the step reads (so that each finds it in the page cache);
//! * each run starts with the ballast write of the layout scenario; the trees and the order of
//!   the steps alternate between runs (even runs: the generated tree first, umoci before hoist;
//!   odd runs: the other way round), each hoist build sitting between umoci and a bound;
//! * a run's outputs are deleted together when it ends, followed by `sync` and the pause; the
//!   trees and tars go at the very end.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::data::{SOURCE_DATE_EPOCH, TreeStats, blob_path, copy_usr, generate_tree, layout_image};
use super::machine::{
    Revision, Workspace, ballast_bytes, build_hoist, check_dd, cores, dd_args, load_average,
    parse_openssl_digest, read_through, remove_dir, require_tools, revision, run_ballast,
    sha256_of, sync, sync_and_pause, version, warm_tree,
};
use super::measure::{
    Defaults, Runs, Usage, alternate, format_mib, read_usage, require_gnu_time, timed, timed_drain,
    with_time, write_results,
};
use super::{BenchArgs, Scenario};
use crate::run_status;

mod report;

use report::{BuildReport, TreeReport};

/// The default size of the generated tree, and that of `--quick`.
const BUILD_SIZE_MIB: u64 = 1024;
const QUICK_SIZE_MIB: u64 = 64;
/// The seed of the generated tree.
const SEED: u64 = 0x686f_6973_7462_6c64;
/// The tag hoist builds, and the one umoci creates and inserts into.
const TAG: &str = "bench";
const UMOCI_BASE: &str = "base";
/// hoist's time over umoci's, at most.
const TIME_LIMIT: f64 = 0.5;
/// hoist's peak RSS, less than this (KiB).
const RSS_LIMIT_KIB: u64 = 64 * 1024;
/// Where hoist's default gzip level is defined.
const COMPRESS_RS: &str = "crates/oci-build/src/build/compress.rs";
/// Output of the run beside what the trees take: per tree, hoist's two layouts, umoci's and
/// the `dd` copy, each about one layer.
const LAYERS_PER_RUN: u64 = 4;

/// The scenario's defaults for what the command line leaves out: [`BUILD_SIZE_MIB`], or
/// with `--quick` [`QUICK_SIZE_MIB`] and one run.
pub(super) const DEFAULTS: Defaults = Defaults::sized(BUILD_SIZE_MIB, QUICK_SIZE_MIB);

/// The trees built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tree {
    Generated,
    Usr,
}

impl Tree {
    const ALL: [Self; 2] = [Self::Generated, Self::Usr];

    fn key(self) -> &'static str {
        match self {
            Self::Generated => "generated",
            Self::Usr => "usr",
        }
    }

    /// The names of the targets: time ratio, peak RSS.
    fn target_names(self) -> [&'static str; 2] {
        match self {
            Self::Generated => [
                "generated: hoist / umoci insert",
                "generated: hoist peak RSS (max)",
            ],
            Self::Usr => ["usr: hoist / umoci insert", "usr: hoist peak RSS (max)"],
        }
    }
}

/// The order of the trees in run `index` (from 0).
fn tree_order(index: usize) -> [Tree; 2] {
    alternate(Tree::ALL, index)
}

/// What a run times, for each tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// `umoci insert --rootless --image L:base TREE /` into a new layout.
    Umoci,
    /// `hoist build --layer TREE oci:L:TAG` into a new layout.
    Hoist,
    /// The same with `--compression-threads 1`.
    HoistOneThread,
    /// `tar -c` of the tree into a pipe that xtask empties.
    TarRead,
    /// `pigz -p 1` of the tree's tar at hoist's level, to `/dev/null`.
    GzipOne,
    /// `pigz` on all cores, the same.
    GzipAll,
    /// `openssl dgst -sha256` of the tree's tar.
    Sha,
    /// `dd conv=fdatasync` of hoist's layer into a new file.
    Write,
}

impl Step {
    const ALL: [Self; 8] = [
        Self::Umoci,
        Self::Hoist,
        Self::HoistOneThread,
        Self::TarRead,
        Self::GzipOne,
        Self::GzipAll,
        Self::Sha,
        Self::Write,
    ];
    /// The tools measured (their peak RSS is shown).
    const TOOLS: [Self; 3] = [Self::Umoci, Self::Hoist, Self::HoistOneThread];
    /// The machine's limits a build cannot beat: reading the tree, compressing it on all
    /// cores, hashing it, writing the layer.
    const BOUNDS: [Self; 4] = [Self::TarRead, Self::GzipAll, Self::Sha, Self::Write];

    fn key(self) -> &'static str {
        match self {
            Self::Umoci => "umoci_insert",
            Self::Hoist => "hoist_build",
            Self::HoistOneThread => "hoist_build_1_thread",
            Self::TarRead => "tar_read",
            Self::GzipOne => "pigz_1_core",
            Self::GzipAll => "pigz_all_cores",
            Self::Sha => "openssl_sha256",
            Self::Write => "dd_layer",
        }
    }

    fn label(self, cores: usize, level: u32) -> String {
        match self {
            Self::Umoci => "umoci insert --rootless".to_owned(),
            Self::Hoist => "hoist build".to_owned(),
            Self::HoistOneThread => "hoist build --compression-threads 1".to_owned(),
            Self::TarRead => "  tar -c of the tree (read)".to_owned(),
            Self::GzipOne => format!("  pigz -p 1 -{level} of the tar"),
            Self::GzipAll => format!("  pigz -p {cores} -{level} of the tar"),
            Self::Sha => "  openssl dgst -sha256 of the tar".to_owned(),
            Self::Write => "  dd conv=fdatasync of the layer".to_owned(),
        }
    }
}

/// The order of even runs: hoist between umoci and the bounds, the one-thread build last.
const ORDER: [Step; 8] = [
    Step::Umoci,
    Step::Hoist,
    Step::Write,
    Step::Sha,
    Step::TarRead,
    Step::GzipAll,
    Step::GzipOne,
    Step::HoistOneThread,
];

/// The order of run `index` (from 0): [`ORDER`] as [`alternate`] turns and reverses it.
fn step_order(index: usize) -> [Step; 8] {
    alternate(ORDER, index)
}

/// `DEFAULT_GZIP_LEVEL` in the text of `compress.rs`.
fn parse_default_gzip_level(source: &str) -> Option<u32> {
    source.lines().find_map(|line| {
        let value = line
            .trim()
            .strip_prefix("pub const DEFAULT_GZIP_LEVEL: u32 =")?;
        value.trim().trim_end_matches(';').trim().parse().ok()
    })
}

/// What `hoist build` of `tree` into `layout` runs, under GNU `time`.
fn hoist_build(hoist: &Path, time_file: &Path, tree: &Path, layout: &Path) -> Command {
    let mut cmd = with_time(time_file, hoist);
    cmd.env("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH)
        .args(["-q", "build", "--layer"])
        .arg(tree)
        .arg(format!("oci:{}:{TAG}", layout.display()));
    cmd
}

/// A tree, made once, and what the set-up learnt of it.
#[derive(Debug)]
struct Source {
    dir: PathBuf,
    stats: TreeStats,
    /// `tar --sort=name` of the tree, for the bounds.
    tar: PathBuf,
    tar_bytes: u64,
    tar_digest: String,
    /// The manifest of hoist's untimed build, which every timed build must give again.
    manifest: String,
    /// hoist's layer in that build.
    layer: PathBuf,
    layer_bytes: u64,
}

/// Makes the tar of `tree`, hoist's reference build and the [`Source`].
fn prepare(
    hoist: &Path,
    work: &Path,
    tree: Tree,
    dir: PathBuf,
    stats: TreeStats,
) -> Result<Source> {
    let tar = work.join(format!("{}.tar", tree.key()));
    let mut cmd = Command::new("tar");
    cmd.args(["--sort=name", "--numeric-owner", "-cf"])
        .arg(&tar)
        .arg("-C")
        .arg(&dir)
        .arg(".");
    run_status(&mut cmd)?;
    let tar_bytes = fs::metadata(&tar)?.len();
    let tar_digest = sha256_of(&tar)?;
    let layout = work.join(format!("reference-{}", tree.key()));
    let time_file = work.join(format!("reference-{}.time", tree.key()));
    let (seconds, output) = timed(&mut hoist_build(hoist, &time_file, &dir, &layout))?;
    let image = layout_image(&layout, TAG)?;
    let printed = String::from_utf8_lossy(&output.stdout);
    if !printed.contains(&image.manifest) {
        bail!(
            "hoist build printed {:?}, not {}",
            printed.trim(),
            image.manifest
        );
    }
    let [(layer_digest, layer_bytes)] = image.layers.as_slice() else {
        bail!("hoist built {} layers, expected 1", image.layers.len());
    };
    println!(
        "    {}: {} files, {} dirs, {} symlinks, {} MB; tar {} MB; hoist (untimed) {seconds:.1} s: \
         layer {} MB, {}",
        tree.key(),
        stats.files,
        stats.dirs,
        stats.symlinks,
        stats.bytes / 1_000_000,
        tar_bytes / 1_000_000,
        layer_bytes / 1_000_000,
        image.manifest
    );
    Ok(Source {
        dir,
        stats,
        tar,
        tar_bytes,
        tar_digest,
        manifest: image.manifest.clone(),
        layer: blob_path(&layout, layer_digest),
        layer_bytes: *layer_bytes,
    })
}

/// One timed step.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    step: Step,
    seconds: f64,
    usage: Usage,
    /// The layer a tool wrote, in bytes.
    layer_bytes: Option<u64>,
}

impl Sample {
    fn cpu(&self) -> f64 {
        self.usage.user + self.usage.sys
    }
}

/// What the steps of one tree in one run use.
struct RunCx<'a> {
    hoist: &'a Path,
    source: &'a Source,
    /// A directory of this tree in this run.
    dir: PathBuf,
    cores: usize,
    level: u32,
}

/// Reads what `step` will read, untimed.
fn warm(step: Step, source: &Source) -> Result<()> {
    match step {
        Step::Umoci | Step::Hoist | Step::HoistOneThread | Step::TarRead => warm_tree(&source.dir),
        Step::GzipOne | Step::GzipAll | Step::Sha => read_through(&source.tar),
        Step::Write => read_through(&source.layer),
    }
}

/// Times `step` and checks what it did.
fn measure(step: Step, cx: &RunCx<'_>) -> Result<Sample> {
    let source = cx.source;
    let time_file = cx.dir.join(format!("{}.time", step.key()));
    let null = || File::create("/dev/null").context("cannot open /dev/null");
    let pigz = |threads: usize| -> Result<Command> {
        let mut cmd = with_time(&time_file, Path::new("pigz"));
        cmd.args(["-p", &threads.to_string(), &format!("-{}", cx.level), "-c"])
            .arg(&source.tar)
            .stdout(null()?);
        Ok(cmd)
    };
    let mut layer_bytes = None;
    let seconds = match step {
        Step::Umoci => {
            let layout = cx.dir.join("umoci");
            let image = format!("{}:{UMOCI_BASE}", layout.display());
            let mut init = Command::new("umoci");
            init.args(["init", "--layout"]).arg(&layout);
            timed(&mut init)?;
            timed(Command::new("umoci").args(["new", "--image", &image]))?;
            sync()?;
            let mut cmd = with_time(&time_file, Path::new("umoci"));
            cmd.args(["insert", "--rootless", "--image", &image])
                .arg(&source.dir)
                .arg("/");
            let (seconds, _) = timed(&mut cmd)?;
            let built = layout_image(&layout, UMOCI_BASE)?;
            let [(_, size)] = built.layers.as_slice() else {
                bail!(
                    "umoci insert left {} layers, expected 1",
                    built.layers.len()
                );
            };
            layer_bytes = Some(*size);
            seconds
        }
        Step::Hoist | Step::HoistOneThread => {
            let layout = cx.dir.join(step.key());
            let mut cmd = hoist_build(cx.hoist, &time_file, &source.dir, &layout);
            if step == Step::HoistOneThread {
                cmd.args(["--compression-threads", "1"]);
            }
            let (seconds, output) = timed(&mut cmd)?;
            let printed = String::from_utf8_lossy(&output.stdout);
            if !printed.contains(&source.manifest) {
                bail!(
                    "hoist build printed {:?}, not the reference build's {}",
                    printed.trim(),
                    source.manifest
                );
            }
            layer_bytes = Some(source.layer_bytes);
            seconds
        }
        Step::TarRead => {
            let mut cmd = with_time(&time_file, Path::new("tar"));
            cmd.args(["--sort=name", "--numeric-owner", "-cf", "-", "-C"])
                .arg(&source.dir)
                .arg(".");
            let (seconds, bytes) = timed_drain(&mut cmd)?;
            if bytes != source.tar_bytes {
                bail!(
                    "tar -c gave {bytes} bytes, the set-up's tar has {}",
                    source.tar_bytes
                );
            }
            seconds
        }
        Step::GzipOne => timed(&mut pigz(1)?)?.0,
        Step::GzipAll => timed(&mut pigz(cx.cores)?)?.0,
        Step::Sha => {
            let mut cmd = with_time(&time_file, Path::new("openssl"));
            cmd.args(["dgst", "-sha256", "-r"]).arg(&source.tar);
            let (seconds, output) = timed(&mut cmd)?;
            let digest = parse_openssl_digest(&String::from_utf8_lossy(&output.stdout))?;
            if digest != source.tar_digest {
                bail!("openssl dgst says {digest}, expected {}", source.tar_digest);
            }
            seconds
        }
        Step::Write => {
            let target = cx.dir.join("dd-layer");
            let mut cmd = with_time(&time_file, Path::new("dd"));
            dd_args(&mut cmd, &source.layer, &target);
            let (seconds, _) = timed(&mut cmd)?;
            check_dd(&target, source.layer_bytes)?;
            seconds
        }
    };
    Ok(Sample {
        step,
        seconds,
        usage: read_usage(&time_file)?,
        layer_bytes,
    })
}

pub(super) fn run(root: &Path, args: &BenchArgs) -> Result<()> {
    require_tools(Scenario::Build.tools())?;
    require_gnu_time()?;
    let compress_rs = root.join(COMPRESS_RS);
    let gzip_level = fs::read_to_string(&compress_rs)
        .ok()
        .as_deref()
        .and_then(parse_default_gzip_level)
        .with_context(|| format!("no DEFAULT_GZIP_LEVEL in {}", compress_rs.display()))?;
    let hoist = build_hoist(root)?;
    let hoist_revision = revision(root, Revision::Count);
    let umoci_version = version("umoci", "--version");
    let pigz_version = version("pigz", "--version");
    let cores = cores();
    let workspace = Workspace::new(root, "build", Some("oci:DIR:TAG and umoci's --image"))?;
    let (bench_dir, work) = (workspace.bench_dir.clone(), workspace.work.clone());
    let size_bytes = args.size_mib << 20;
    // The `usr` tree: 3/8 of the generated one.
    let usr_budget = size_bytes / 8 * 3;

    println!(
        "==> trees under {}: {} MiB generated (seed {SEED:#x}), up to {} MiB of /usr",
        work.display(),
        args.size_mib,
        usr_budget >> 20
    );
    let started = Instant::now();
    let generated_dir = work.join("tree-generated");
    let generated = generate_tree(&generated_dir, size_bytes, SEED)?;
    let usr_dir = work.join("tree-usr");
    let usr = copy_usr(&usr_dir, usr_budget)?;
    println!("    made in {:.1} s", started.elapsed().as_secs_f64());
    println!("==> tars and hoist's reference builds (untimed)");
    let sources = [
        prepare(&hoist, &work, Tree::Generated, generated_dir, generated)?,
        prepare(&hoist, &work, Tree::Usr, usr_dir, usr)?,
    ];
    sync_and_pause(args.pause_secs)?;

    let source = |tree: Tree| -> &Source {
        match tree {
            Tree::Generated => &sources[0],
            Tree::Usr => &sources[1],
        }
    };
    let kept: u64 = sources
        .iter()
        .map(|s| s.stats.bytes + s.tar_bytes + s.layer_bytes)
        .sum();
    let run_writes: u64 = sources.iter().map(|s| LAYERS_PER_RUN * s.layer_bytes).sum();
    let mut runs: [Vec<Vec<Sample>>; 2] = [Vec::new(), Vec::new()];
    let mut ballasts = Vec::new();
    let mut load = Vec::new();
    let plan = Runs::new(args);
    for run in plan.iter() {
        let dir = workspace.run_dir(run.seq)?;
        println!("{}", run.heading(plan));
        let ballast = run_ballast(args.ballast, &dir, |available| {
            ballast_bytes(run_writes, available.saturating_sub(kept))
        })?;
        let load_start = load_average();
        for tree in tree_order(run.index) {
            let cx = RunCx {
                hoist: &hoist,
                source: source(tree),
                dir: dir.join(tree.key()),
                cores,
                level: gzip_level,
            };
            fs::create_dir_all(&cx.dir)
                .with_context(|| format!("cannot create {}", cx.dir.display()))?;
            let mut samples = Vec::new();
            for step in step_order(run.index) {
                sync()?;
                warm(step, cx.source)?;
                let sample = measure(step, &cx)?;
                println!(
                    "    {:<10}{:<38}{:>8.3} s {:>7.2} CPU s {:>12}",
                    tree.key(),
                    step.label(cores, gzip_level),
                    sample.seconds,
                    sample.cpu(),
                    format_mib(sample.usage.peak_rss_kib)
                );
                samples.push(sample);
            }
            if run.counted {
                runs[usize::from(tree == Tree::Usr)].push(samples);
            }
        }
        if run.counted {
            ballasts.push(ballast);
            load.push((load_start, load_average()));
        }
        println!("    load average {load_start:.2} -> {:.2}", load_average());
        remove_dir(&dir)?;
        if !run.last {
            sync_and_pause(args.pause_secs)?;
        }
    }
    remove_dir(&work)?;

    let [generated_runs, usr_runs] = runs;
    let trees = Tree::ALL
        .iter()
        .zip([generated_runs, usr_runs])
        .map(|(&tree, runs)| {
            let s = source(tree);
            TreeReport {
                tree,
                stats: s.stats,
                tar_bytes: s.tar_bytes,
                hoist_layer_bytes: s.layer_bytes,
                manifest: s.manifest.clone(),
                runs,
            }
        })
        .collect();
    let report = BuildReport {
        trees,
        cores,
        gzip_level,
        umoci_version,
        pigz_version,
        hoist_revision,
        pause_secs: args.pause_secs,
        warm_up: plan.warm_up,
        ballast_bytes: ballasts,
        load,
    };
    write_results(&bench_dir, "build", &report.to_json(), &report.table())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::Scenario;
    use crate::bench::measure::DEFAULT_RUNS;
    use crate::bench::tests::parse_one;

    #[test]
    fn build_defaults_to_1_gib_and_quick_to_64_mib_once() {
        let parsed = parse_one(&["build"]).unwrap();
        assert_eq!(parsed.scenario, Scenario::Build);
        assert_eq!(
            (parsed.size_mib, parsed.runs),
            (BUILD_SIZE_MIB, DEFAULT_RUNS)
        );
        let quick = parse_one(&["build", "--quick"]).unwrap();
        assert_eq!((quick.size_mib, quick.runs), (QUICK_SIZE_MIB, 1));
        let given = parse_one(&["build", "--size-mib", "256", "--runs", "2"]).unwrap();
        assert_eq!((given.size_mib, given.runs), (256, 2));
    }

    #[test]
    fn orders_alternate() {
        assert_eq!(tree_order(0), [Tree::Generated, Tree::Usr]);
        assert_eq!(tree_order(1), [Tree::Usr, Tree::Generated]);
        assert_eq!(step_order(0)[0], Step::Umoci);
        assert_eq!(step_order(1)[7], Step::Umoci);
        assert_ne!(step_order(2), step_order(0));
        for index in 0..2 {
            let order = step_order(index);
            for step in Step::ALL {
                assert_eq!(order.iter().filter(|&&s| s == step).count(), 1, "{step:?}");
            }
            let at = |step| order.iter().position(|&s| s == step).unwrap();
            assert_eq!(at(Step::Hoist).abs_diff(at(Step::Umoci)), 1);
        }
    }

    #[test]
    fn the_gzip_level_is_read_from_the_source() {
        let source = "/// doc\npub const DEFAULT_GZIP_LEVEL: u32 = 1;\npub const X: u32 = 2;\n";
        assert_eq!(parse_default_gzip_level(source), Some(1));
        assert_eq!(parse_default_gzip_level("const Y: u32 = 1;"), None);
    }
}
