//! Scenario `unpack` (issue "hoist unpack speed"): `hoist unpack --rootless oci:LAYOUT:TAG DIR`
//! beside `umoci unpack --rootless --image LAYOUT:TAG BUNDLE` of the same image, each into a new
//! directory, on two images that `hoist build` makes once (gzip level [`GZIP_LEVEL`], that of
//! Go's and so most registries' layers):
//! * `generated`: `--size-mib` ([`UNPACK_SIZE_MIB`] MiB by default) of files in
//!   [`GENERATED_LAYERS`] layers of equal size, each under `srv/data-N/` a tree made as the
//!   build scenario makes its own (mixed sizes, half random bytes and half log-like text in
//!   alternating 64 KiB segments), from a seed of its own, so that inflating does real work on
//!   half of it;
//! * `usr`: a copy of part of this machine's `/usr/share` and `/usr/lib` as the build scenario
//!   makes it, 5/8 of `--size-mib` (tens of thousands of small files), in three layers:
//!   `usr/lib`, then the first and the second half (by entries) of `usr/share`.
//!
//! Targets, on medians, per image: hoist takes at most [`TIME_LIMIT`] times umoci's time; its
//! peak RSS (GNU `time`, the largest of the runs) stays under [`RSS_LIMIT_KIB`] and at most
//! umoci's (issue 18: every hoist command's peak RSS at most its peer's). Reported beside
//! them, measured in the same runs: the machine's limits for the same layers, inflating them on
//! one core (`gzip -dc`, `pigz -dc`, and zlib through `python3`, to nothing) and extracting
//! their uncompressed tars in order with GNU tar into a new directory (`--no-same-owner`, as a
//! rootless unpack does); `umoci raw unpack --rootless` (umoci without the mtree manifest that
//! `umoci unpack` makes by hashing every file it wrote); CPU seconds; umoci's peak RSS.
//!
//! How it measures:
//! * set-up, untimed: the trees, the images (`SOURCE_DATE_EPOCH` set), the uncompressed tar of
//!   each layer (`gzip -dc`), then one unpack by hoist, umoci and tar each, which must give the
//!   same paths (with the same types, file sizes and link targets); then `sync` and the pause
//!   (`--pause`);
//! * [`DEFAULT_RUNS`](super::measure::DEFAULT_RUNS) counted runs after an uncounted warm-up run
//!   (none with `--quick`); every timed step writes into a new directory, after `sync` and an
//!   untimed read of what it reads (the whole layout, or the tars), so that each finds it in
//!   the page cache;
//! * each run starts with an untimed ballast write (see the layout scenario), sized for what a
//!   run writes; the images and the order of the steps alternate between runs (even runs: the
//!   generated image first, umoci before hoist; odd runs: the other way round);
//! * nothing but the ballast (one file) is deleted until the scenario ends: every run's trees,
//!   the set-up's trees and its check unpacks stay on disk, and go all together at the end.
//!   This is because of how ext4 without a journal (this machine's root filesystem) allocates
//!   inodes: it skips every free inode deleted less than 60 s ago, or 360 s ago when its
//!   inode-table block is dirty (as creating files makes it), rescanning the group for each new
//!   inode, so that shortly after a large deletion, extracting tens of thousands of files takes
//!   several times as long as it does once the window has passed. Deleting each run's trees
//!   made every tool that creates files pay that kernel cost, which hides their differences,
//!   unless a pause of 7 minutes followed each deletion; keeping the trees makes the pauses
//!   needless. The price is disk space: a run writes [`TREES_PER_RUN`] trees of each image,
//!   and the free space is checked before the set-up (and again before the runs, with the
//!   images' real sizes) so that the scenario fails at once, with the figures, rather than
//!   midway;
//! * the default size is [`UNPACK_SIZE_MIB`] so that the runs fit in the time and the disk of
//!   a full `cargo xtask bench`; `--size-mib` asks for more.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::data::TreeStats;
use super::data::{copy_usr, generate_tree};
use super::machine::{
    Revision, Workspace, build_hoist, cores, load_average, read_through, remove_dir, remove_file,
    require_free_disk, require_tools, revision, run_ballast, sync, sync_and_pause, version,
    warm_tree,
};
use super::measure::{
    Defaults, Runs, Usage, alternate, format_mib, read_usage, require_gnu_time, timed, with_time,
    write_results,
};
use super::{BenchArgs, Scenario};

mod image;
mod report;
mod room;

use image::{prepare, split_usr};
use report::{ImageReport, UnpackReport};
use room::{TREES_OF_SETUP, ballast_bound, disk_needed, unpack_ballast};

/// The default size of the generated image's files, and that of `--quick`.
const UNPACK_SIZE_MIB: u64 = 512;
const QUICK_SIZE_MIB: u64 = 64;
/// The layers of the generated image.
const GENERATED_LAYERS: u64 = 8;
/// The seed of the generated image's first layer; layer N uses `SEED + N`.
const SEED: u64 = 0x686f_6973_7475_6e70;
/// The `usr` image's files, in eighths of `--size-mib`.
const USR_EIGHTHS: u64 = 5;
/// The gzip level of the layers (Go's default, that of most images in registries).
const GZIP_LEVEL: u32 = 6;
/// The tag of both images.
const TAG: &str = "bench";
/// hoist's time over umoci's, at most.
const TIME_LIMIT: f64 = 0.5;
/// hoist's peak RSS, less than this (KiB).
const RSS_LIMIT_KIB: u64 = 64 * 1024;
/// Trees a run writes per image: umoci's two, hoist's and tar's.
const TREES_PER_RUN: u64 = 4;
/// Inflates the gzip files named by its arguments, one after the other, with zlib, and prints
/// the number of bytes they hold (several members per file allowed).
const ZLIB_SCRIPT: &str = "\
import sys, zlib
total = 0
for name in sys.argv[1:]:
    d, fed = zlib.decompressobj(31), False
    with open(name, 'rb', buffering=0) as f:
        while chunk := f.read(1 << 20):
            while chunk:
                fed = True
                total += len(d.decompress(chunk))
                chunk = b''
                if d.eof:
                    chunk = d.unused_data
                    d, fed = zlib.decompressobj(31), False
    if fed:
        sys.exit(name + ': truncated gzip stream')
print(total)
";
/// Extracts the tars named by its arguments after the first, in order, into the first.
const TAR_SCRIPT: &str =
    "d=$1; shift; for t do tar --no-same-owner -xf \"$t\" -C \"$d\" || exit 1; done";

/// The scenario's defaults for what the command line leaves out: [`UNPACK_SIZE_MIB`], or
/// with `--quick` [`QUICK_SIZE_MIB`] and one run.
pub(super) const DEFAULTS: Defaults = Defaults::sized(UNPACK_SIZE_MIB, QUICK_SIZE_MIB);

/// The images unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Generated,
    Usr,
}

impl Kind {
    const ALL: [Self; 2] = [Self::Generated, Self::Usr];

    fn key(self) -> &'static str {
        match self {
            Self::Generated => "generated",
            Self::Usr => "usr",
        }
    }

    /// The names of the targets: time ratio, peak RSS, peak RSS against umoci's.
    fn target_names(self) -> [&'static str; 3] {
        match self {
            Self::Generated => [
                "generated: hoist / umoci unpack",
                "generated: hoist peak RSS (max)",
                "generated: hoist peak RSS / umoci's (max)",
            ],
            Self::Usr => [
                "usr: hoist / umoci unpack",
                "usr: hoist peak RSS (max)",
                "usr: hoist peak RSS / umoci's (max)",
            ],
        }
    }
}

/// The order of the images in run `index` (from 0).
fn image_order(index: usize) -> [Kind; 2] {
    alternate(Kind::ALL, index)
}

/// What a run times, for each image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// `umoci unpack --rootless --image L:T BUNDLE` into a new bundle.
    Umoci,
    /// `umoci raw unpack --rootless --image L:T ROOTFS`: the same without the mtree.
    UmociRaw,
    /// `hoist unpack --rootless oci:L:T DIR` into a new directory.
    Hoist,
    /// `gzip -dc` of the layers to `/dev/null`.
    Gzip,
    /// `pigz -dc` of the layers to `/dev/null`.
    Pigz,
    /// zlib through `python3`, the layers one after the other.
    Zlib,
    /// `tar --no-same-owner -xf` of the uncompressed layers, in order, into a new directory.
    Tar,
}

impl Step {
    const ALL: [Self; 7] = [
        Self::Umoci,
        Self::UmociRaw,
        Self::Hoist,
        Self::Gzip,
        Self::Pigz,
        Self::Zlib,
        Self::Tar,
    ];
    /// The tools that write a tree (their peak RSS is shown).
    const TOOLS: [Self; 4] = [Self::Umoci, Self::UmociRaw, Self::Hoist, Self::Tar];
    /// Inflating on one core: the fastest of them is the machine's limit.
    const INFLATE: [Self; 3] = [Self::Gzip, Self::Pigz, Self::Zlib];

    fn key(self) -> &'static str {
        match self {
            Self::Umoci => "umoci_unpack",
            Self::UmociRaw => "umoci_raw_unpack",
            Self::Hoist => "hoist_unpack",
            Self::Gzip => "gzip_dc",
            Self::Pigz => "pigz_dc",
            Self::Zlib => "zlib_python3",
            Self::Tar => "tar_x",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Umoci => "umoci unpack --rootless",
            Self::UmociRaw => "umoci raw unpack --rootless",
            Self::Hoist => "hoist unpack --rootless",
            Self::Gzip => "  gzip -dc of the layers",
            Self::Pigz => "  pigz -dc of the layers",
            Self::Zlib => "  zlib (python3) of the layers",
            Self::Tar => "  tar -xf of the tars, in order",
        }
    }

    /// Whether the step reads the layout (else the tars).
    fn reads_layout(self) -> bool {
        self != Self::Tar
    }
}

/// The order of even runs: hoist between umoci and tar, the inflaters after, umoci's raw
/// unpack last.
const ORDER: [Step; 7] = [
    Step::Umoci,
    Step::Hoist,
    Step::Tar,
    Step::Zlib,
    Step::Pigz,
    Step::Gzip,
    Step::UmociRaw,
];

/// The order of run `index` (from 0): [`ORDER`] as [`alternate`] turns and reverses it.
fn step_order(index: usize) -> [Step; 7] {
    alternate(ORDER, index)
}

/// An image, made once, and what the set-up learnt of it.
#[derive(Debug)]
struct Image {
    layout: PathBuf,
    manifest: String,
    /// The layer blobs, lowest first.
    layers: Vec<PathBuf>,
    layer_bytes: u64,
    /// Their uncompressed tars.
    tars: Vec<PathBuf>,
    tar_bytes: u64,
    /// What the unpacked tree holds.
    stats: TreeStats,
}

impl Image {
    fn hoist_ref(&self) -> String {
        format!("oci:{}:{TAG}", self.layout.display())
    }

    fn umoci_ref(&self) -> String {
        format!("{}:{TAG}", self.layout.display())
    }
}

/// `python3` of the system if there is one (a shim on the `PATH` starts slower).
fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// The command of `step` on `image`, writing into `out` (a new path), under GNU `time`.
fn step_command(step: Step, hoist: &Path, image: &Image, out: &Path, time_file: &Path) -> Command {
    let program = match step {
        Step::Umoci | Step::UmociRaw => Path::new("umoci"),
        Step::Hoist => hoist,
        Step::Gzip => Path::new("gzip"),
        Step::Pigz => Path::new("pigz"),
        Step::Zlib => Path::new(python()),
        Step::Tar => Path::new("sh"),
    };
    let mut cmd = with_time(time_file, program);
    match step {
        Step::Umoci => {
            cmd.args(["unpack", "--rootless", "--image", &image.umoci_ref()])
                .arg(out);
        }
        Step::UmociRaw => {
            cmd.args(["raw", "unpack", "--rootless", "--image", &image.umoci_ref()])
                .arg(out);
        }
        Step::Hoist => {
            cmd.args(["-q", "unpack", "--rootless", &image.hoist_ref()])
                .arg(out);
        }
        Step::Gzip | Step::Pigz => {
            cmd.arg("-dc").args(&image.layers);
        }
        Step::Zlib => {
            cmd.args(["-c", ZLIB_SCRIPT]).args(&image.layers);
        }
        Step::Tar => {
            cmd.args(["-c", TAR_SCRIPT, "sh"])
                .arg(out)
                .args(&image.tars);
        }
    }
    cmd
}

/// Runs `step` on `image` into `out` and returns its wall-clock seconds and what GNU `time`
/// wrote (user, system seconds, peak RSS in KiB).
fn run_step(
    step: Step,
    hoist: &Path,
    image: &Image,
    out: &Path,
    time_file: &Path,
) -> Result<(f64, Usage)> {
    if step == Step::Tar {
        fs::create_dir(out).with_context(|| format!("cannot create {}", out.display()))?;
    }
    let mut cmd = step_command(step, hoist, image, out, time_file);
    if matches!(step, Step::Gzip | Step::Pigz) {
        cmd.stdout(File::create("/dev/null").context("cannot open /dev/null")?);
    }
    let (seconds, output) = timed(&mut cmd)?;
    if step == Step::Zlib {
        let printed = String::from_utf8_lossy(&output.stdout);
        if printed.trim().parse::<u64>().ok() != Some(image.tar_bytes) {
            bail!(
                "zlib inflated {:?} bytes, the tars have {}",
                printed.trim(),
                image.tar_bytes
            );
        }
    }
    Ok((seconds, read_usage(time_file)?))
}

/// Where `step` leaves the unpacked tree under its output `out`.
fn rootfs(step: Step, out: &Path) -> PathBuf {
    if step == Step::Umoci {
        out.join("rootfs")
    } else {
        out.to_path_buf()
    }
}

/// Reads what `step` will read, untimed.
fn warm(step: Step, image: &Image) -> Result<()> {
    if step.reads_layout() {
        warm_tree(&image.layout)
    } else {
        image.tars.iter().try_for_each(|tar| read_through(tar))
    }
}

/// One timed step.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    step: Step,
    seconds: f64,
    usage: Usage,
}

impl Sample {
    fn cpu(&self) -> f64 {
        self.usage.user + self.usage.sys
    }
}

pub(super) fn run(root: &Path, args: &BenchArgs) -> Result<()> {
    require_tools(Scenario::Unpack.tools())?;
    require_gnu_time()?;
    let hoist = build_hoist(root)?;
    let hoist_revision = revision(root, Revision::Count);
    let versions = vec![
        version("umoci", "--version"),
        version("gzip", "--version"),
        version("pigz", "--version"),
        version("tar", "--version"),
        version(python(), "--version"),
    ];
    let cores = cores();
    let workspace = Workspace::new(root, "unpack", Some("oci:DIR:TAG and umoci's --image"))?;
    let (bench_dir, work) = (workspace.bench_dir.clone(), workspace.work.clone());
    let size_bytes = args.size_mib << 20;
    let usr_budget = size_bytes / 8 * USR_EIGHTHS;
    let plan = Runs::new(args);
    let asked = size_bytes + usr_budget;
    require_free_disk(
        &work,
        disk_needed(
            asked,
            TREES_OF_SETUP,
            plan.total(),
            ballast_bound(args.ballast, TREES_PER_RUN * asked),
        ),
        &format!(
            "the set-up and {} run(s), every tree kept until the end",
            plan.total()
        ),
    )?;

    println!(
        "==> trees under {}: {} MiB generated in {GENERATED_LAYERS} layers (seed {SEED:#x}), \
         up to {} MiB of /usr in 3",
        work.display(),
        args.size_mib,
        usr_budget >> 20
    );
    let started = Instant::now();
    let trees = work.join("trees");
    let generated_layers: Vec<PathBuf> = (0..GENERATED_LAYERS)
        .map(|n| trees.join(format!("generated-{}", n + 1)))
        .collect();
    for (n, dir) in (0..).zip(&generated_layers) {
        let data = dir.join("srv").join(format!("data-{}", n + 1));
        generate_tree(&data, size_bytes / GENERATED_LAYERS, SEED + n)?;
    }
    let usr_src = trees.join("usr-copy");
    copy_usr(&usr_src, usr_budget)?;
    let usr_layers = split_usr(&usr_src, &trees)?;
    println!("    made in {:.1} s", started.elapsed().as_secs_f64());
    println!(
        "==> images (hoist build, untimed), tars of their layers, and one unpack by hoist, \
         umoci and tar each (untimed, compared)"
    );
    let check = work.join("check");
    fs::create_dir_all(&check).with_context(|| format!("cannot create {}", check.display()))?;
    let images = [
        prepare(&hoist, &work, &check, Kind::Generated, &generated_layers)?,
        prepare(&hoist, &work, &check, Kind::Usr, &usr_layers)?,
    ];
    sync_and_pause(args.pause_secs)?;

    let image = |kind: Kind| -> &Image {
        match kind {
            Kind::Generated => &images[0],
            Kind::Usr => &images[1],
        }
    };
    let kept: u64 = images.iter().map(|i| i.layer_bytes + i.tar_bytes).sum();
    let run_writes: u64 = images.iter().map(|i| TREES_PER_RUN * i.tar_bytes).sum();
    let tar_bytes: u64 = images.iter().map(|i| i.tar_bytes).sum();
    require_free_disk(
        &work,
        disk_needed(
            tar_bytes,
            0,
            plan.total(),
            ballast_bound(args.ballast, run_writes),
        ),
        &format!("{} run(s), every tree kept until the end", plan.total()),
    )?;
    let mut runs: [Vec<Vec<Sample>>; 2] = [Vec::new(), Vec::new()];
    let mut ballasts = Vec::new();
    let mut load = Vec::new();
    for run in plan.iter() {
        let dir = workspace.run_dir(run.seq)?;
        println!("{}", run.heading(plan));
        let ballast = run_ballast(args.ballast, &dir, |available| {
            unpack_ballast(run_writes, available.saturating_sub(kept))
        })?;
        let load_start = load_average();
        for kind in image_order(run.index) {
            let image = image(kind);
            let image_dir = dir.join(kind.key());
            fs::create_dir_all(&image_dir)
                .with_context(|| format!("cannot create {}", image_dir.display()))?;
            let mut samples = Vec::new();
            for step in step_order(run.index) {
                sync()?;
                warm(step, image)?;
                let out = image_dir.join(step.key());
                let time_file = image_dir.join(format!("{}.time", step.key()));
                let (seconds, usage) = run_step(step, &hoist, image, &out, &time_file)?;
                let sample = Sample {
                    step,
                    seconds,
                    usage,
                };
                println!(
                    "    {:<10}{:<38}{:>8.3} s {:>7.2} CPU s {:>12}",
                    kind.key(),
                    step.label(),
                    sample.seconds,
                    sample.cpu(),
                    format_mib(sample.usage.peak_rss_kib)
                );
                samples.push(sample);
            }
            if run.counted {
                runs[usize::from(kind == Kind::Usr)].push(samples);
            }
        }
        if run.counted {
            ballasts.push(ballast);
            load.push((load_start, load_average()));
        }
        println!("    load average {load_start:.2} -> {:.2}", load_average());
        // The ballast only: one file, one inode. The trees stay until the end.
        remove_file(&dir.join("ballast"))?;
    }
    println!("==> deleting every run's trees, the set-up's and the images");
    remove_dir(&work)?;

    let [generated_runs, usr_runs] = runs;
    let reports = Kind::ALL
        .iter()
        .zip([generated_runs, usr_runs])
        .map(|(&kind, runs)| {
            let i = image(kind);
            ImageReport {
                kind,
                layers: i.layers.len(),
                layer_bytes: i.layer_bytes,
                tar_bytes: i.tar_bytes,
                manifest: i.manifest.clone(),
                stats: i.stats,
                runs,
            }
        })
        .collect();
    let report = UnpackReport {
        images: reports,
        cores,
        versions,
        hoist_revision,
        pause_secs: args.pause_secs,
        warm_up: plan.warm_up,
        ballast_bytes: ballasts,
        load,
    };
    write_results(&bench_dir, "unpack", &report.to_json(), &report.table())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::Scenario;
    use crate::bench::measure::DEFAULT_RUNS;
    use crate::bench::tests::parse_one;

    #[test]
    fn unpack_defaults_to_512_mib_5_runs_and_quick_to_64_mib_once() {
        let parsed = parse_one(&["unpack"]).unwrap();
        assert_eq!(parsed.scenario, Scenario::Unpack);
        assert_eq!(
            (parsed.size_mib, parsed.runs, parsed.pause_secs),
            (
                UNPACK_SIZE_MIB,
                DEFAULT_RUNS,
                BenchArgs::default().pause_secs
            )
        );
        let quick = parse_one(&["unpack", "--quick"]).unwrap();
        assert_eq!(
            (quick.size_mib, quick.runs, quick.pause_secs),
            (QUICK_SIZE_MIB, 1, 0)
        );
        let given = parse_one(&["unpack", "--size-mib", "256", "--pause", "5"]).unwrap();
        assert_eq!((given.size_mib, given.pause_secs), (256, 5));
    }

    #[test]
    fn orders_alternate() {
        assert_eq!(image_order(0), [Kind::Generated, Kind::Usr]);
        assert_eq!(image_order(1), [Kind::Usr, Kind::Generated]);
        assert_eq!(step_order(0)[0], Step::Umoci);
        assert_eq!(step_order(1)[6], Step::Umoci);
        assert_ne!(step_order(2), step_order(0));
        for index in 0..2 {
            let order = step_order(index);
            for step in Step::ALL {
                assert_eq!(order.iter().filter(|&&s| s == step).count(), 1, "{step:?}");
            }
            let at = |step| order.iter().position(|&s| s == step).unwrap();
            assert_eq!(at(Step::Hoist).abs_diff(at(Step::Umoci)), 1);
            assert_eq!(at(Step::Hoist).abs_diff(at(Step::Tar)), 1);
        }
    }
}
