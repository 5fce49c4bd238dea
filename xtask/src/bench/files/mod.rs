//! Scenario `files` (issue 18's "realistic tree of tens of thousands of small files", and its
//! `export`): one tree of `--size-mib` (128 MiB by default, about 28,000 files of 0.5 to 16
//! KiB, three in four text, with a few hundred directories and a symbolic link beside one file
//! in twenty) made from a fixed seed, and three jobs on it, hoist beside umoci each time:
//! * build: `hoist build --layer TREE oci:L:TAG` (default compression) beside `umoci insert
//!   --rootless` of the tree into a layout made by `umoci init` + `umoci new` (untimed);
//! * unpack: `hoist unpack --rootless oci:L:TAG DIR` beside `umoci unpack --rootless` of one
//!   image (the tree as one layer, gzip -6, built once by hoist); GNU tar extracting the
//!   layer's uncompressed tar is reported as the machine's bound;
//! * export: `hoist export oci:L:TAG FILE` (the root filesystem as one tar) beside `umoci raw
//!   unpack --rootless` followed by `tar -cf FILE` of what it wrote. umoci has no export, and
//!   this is how one gets a root filesystem's tar with it; the other candidates are worse:
//!   `docker export` needs the image loaded into a daemon and a container created (it would
//!   measure the daemon), and crane, whose `export` this is, is not among the peers installed.
//!   The peer writes the tree to disk and reads it back, which hoist never does; that is the
//!   difference a user sees. hoist writes its tar beside the target and `fsync`s it before the
//!   rename; tar does not sync.
//!
//! Targets, on medians, per job: hoist takes at most [`TIME_LIMIT`] times umoci's time (the
//! issue's for build and unpack; export, an unpack into a tar, is held to the same); hoist's
//! peak RSS (GNU `time`, the largest of the runs; for the peer, the largest process of the
//! pair) is at most umoci's.
//!
//! How it measures:
//! * set-up, untimed: the tree, hoist's reference build (whose manifest every timed build must
//!   print again), the image unpacked and exported, the uncompressed tar of its layer; one
//!   unpack by hoist and by umoci, which must give as many files, directories and links as the
//!   tree has, and one export by each, which must list as many entries;
//! * [`DEFAULT_RUNS`](super::measure::DEFAULT_RUNS) counted runs after an uncounted warm-up run
//!   (none with `--quick`); the order of the steps reverses from one run to the next and turns every second run, each
//!   hoist step beside umoci's; `sync` and an untimed read of what a step reads before it;
//! * every step writes into a new directory, and nothing is deleted until the scenario ends:
//!   ext4 without a journal (this machine's root filesystem) skips recently deleted inodes when
//!   it allocates new ones (see the unpack scenario), so deleting a run's trees would slow the
//!   next run's file creation, the very thing measured; the runs keep a few GiB on disk.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::data::{SOURCE_DATE_EPOCH, TreeStats, blob_path, layout_image, oci_ref};
use super::machine::{
    Revision, Workspace, build_hoist, cores, load_average, read_through, remove_dir, require_tools,
    revision, sync, sync_and_pause, version, walk, warm_tree,
};
use super::measure::{
    Defaults, Runs, Usage, alternate, format_mib, read_usage, require_gnu_time, timed, with_time,
    write_results,
};
use super::{BenchArgs, Scenario};
use crate::run_status;

mod report;
mod tree;

use report::FilesReport;

/// The default size of the tree's files, and that of `--quick`.
const FILES_SIZE_MIB: u64 = 128;
const QUICK_SIZE_MIB: u64 = 16;
/// The seed of the tree.
const SEED: u64 = 0x6669_6c65_7374_7265;
/// The tag of every image.
const TAG: &str = "bench";
const UMOCI_BASE: &str = "base";
/// The gzip level of the image unpacked and exported (Go's default).
const GZIP_LEVEL: u32 = 6;
/// hoist's time over umoci's, at most.
const TIME_LIMIT: f64 = 0.5;
/// hoist's peak RSS over umoci's, at most.
const RSS_LIMIT: f64 = 1.0;
/// umoci's export: `raw unpack` into `$2`, then `tar -c` of it into `$3`.
const UMOCI_EXPORT_SCRIPT: &str = "umoci raw unpack --rootless --image \"$1\" \"$2\" && \
     tar --numeric-owner -cf \"$3\" -C \"$2\" .";
/// Extracts the tar `$2` into the new directory `$1`.
const TAR_X_SCRIPT: &str = "mkdir \"$1\" && tar --no-same-owner -xf \"$2\" -C \"$1\"";

/// The scenario's defaults for what the command line leaves out: [`FILES_SIZE_MIB`] and
/// [`DEFAULT_RUNS`](super::measure::DEFAULT_RUNS), or with `--quick` [`QUICK_SIZE_MIB`] and one
/// run.
pub(super) const DEFAULTS: Defaults = Defaults::sized(FILES_SIZE_MIB, QUICK_SIZE_MIB);

/// What a run times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    UmociInsert,
    HoistBuild,
    UmociUnpack,
    HoistUnpack,
    TarX,
    UmociExport,
    HoistExport,
}

/// A job compared: hoist's step, the peer's, and the names of its targets (time, RSS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Job {
    key: &'static str,
    hoist: Step,
    peer: Step,
    targets: [&'static str; 2],
}

const JOBS: [Job; 3] = [
    Job {
        key: "build",
        hoist: Step::HoistBuild,
        peer: Step::UmociInsert,
        targets: [
            "small files build: hoist / umoci insert",
            "small files build: hoist peak RSS / umoci's",
        ],
    },
    Job {
        key: "unpack",
        hoist: Step::HoistUnpack,
        peer: Step::UmociUnpack,
        targets: [
            "small files unpack: hoist / umoci unpack",
            "small files unpack: hoist peak RSS / umoci's",
        ],
    },
    Job {
        key: "export",
        hoist: Step::HoistExport,
        peer: Step::UmociExport,
        targets: [
            "export: hoist / umoci raw unpack + tar -c",
            "export: hoist peak RSS / umoci's + tar's",
        ],
    },
];

impl Step {
    const ALL: [Self; 7] = [
        Self::UmociInsert,
        Self::HoistBuild,
        Self::UmociUnpack,
        Self::HoistUnpack,
        Self::TarX,
        Self::UmociExport,
        Self::HoistExport,
    ];

    fn key(self) -> &'static str {
        match self {
            Self::UmociInsert => "umoci_insert",
            Self::HoistBuild => "hoist_build",
            Self::UmociUnpack => "umoci_unpack",
            Self::HoistUnpack => "hoist_unpack",
            Self::TarX => "tar_x",
            Self::UmociExport => "umoci_raw_unpack_tar_c",
            Self::HoistExport => "hoist_export",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::UmociInsert => "build: umoci insert --rootless",
            Self::HoistBuild => "build: hoist build",
            Self::UmociUnpack => "unpack: umoci unpack --rootless",
            Self::HoistUnpack => "unpack: hoist unpack --rootless",
            Self::TarX => "  tar -xf of the layer's tar",
            Self::UmociExport => "export: umoci raw unpack + tar -c",
            Self::HoistExport => "export: hoist export",
        }
    }

    /// How the README's table names the step.
    fn short(self) -> &'static str {
        match self {
            Self::UmociInsert => "umoci insert",
            Self::UmociUnpack => "umoci unpack",
            Self::UmociExport => "umoci raw unpack + tar",
            Self::TarX => "tar -xf",
            Self::HoistBuild | Self::HoistUnpack | Self::HoistExport => "hoist",
        }
    }
}

/// The order of even runs: each hoist step beside umoci's, tar's extraction beside hoist's
/// unpack.
const ORDER: [Step; 7] = [
    Step::UmociInsert,
    Step::HoistBuild,
    Step::TarX,
    Step::HoistUnpack,
    Step::UmociUnpack,
    Step::UmociExport,
    Step::HoistExport,
];

/// The order of run `index` (from 0): [`ORDER`] as [`alternate`] turns and reverses it.
fn step_order(index: usize) -> [Step; 7] {
    alternate(ORDER, index)
}

/// What the set-up made once.
#[derive(Debug)]
struct Source {
    tree: PathBuf,
    stats: TreeStats,
    /// The manifest of hoist's untimed build, which every timed build must print again.
    build_manifest: String,
    build_layer_bytes: u64,
    /// The image unpacked and exported, its layer's size and that layer's tar.
    image: PathBuf,
    image_manifest: String,
    layer_bytes: u64,
    tar: PathBuf,
    tar_bytes: u64,
}

/// One timed step.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    step: Step,
    seconds: f64,
    usage: Usage,
}

/// `hoist build` of `tree` into the new layout `layout`, under GNU `time`.
fn hoist_build(hoist: &Path, time_file: &Path, tree: &Path, layout: &Path) -> Command {
    let mut cmd = with_time(time_file, hoist);
    cmd.env("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH)
        .args(["-q", "build", "--layer"])
        .arg(tree)
        .arg(oci_ref(layout, TAG));
    cmd
}

/// Entries under `dir` (not `dir` itself).
fn count_entries(dir: &Path) -> Result<u64> {
    let mut n = 0;
    walk(dir, &mut |_, _| {
        n += 1;
        Ok(true)
    })?;
    Ok(n)
}

/// Entries of the tar `file` but its root (`./`).
fn count_tar_entries(file: &Path) -> Result<u64> {
    let (_, output) = timed(Command::new("tar").arg("-tf").arg(file))?;
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(text
        .lines()
        .filter(|l| !matches!(l.trim_end_matches('/'), "." | ""))
        .count() as u64)
}

/// Runs `step` into the new path `out` and checks what it did.
fn run_step(step: Step, hoist: &Path, source: &Source, out: &Path) -> Result<Sample> {
    let time_file = out.with_extension("time");
    let image = || format!("{}:{TAG}", source.image.display());
    let mut cmd = match step {
        Step::UmociInsert => {
            let base = format!("{}:{UMOCI_BASE}", out.display());
            timed(Command::new("umoci").args(["init", "--layout"]).arg(out))?;
            timed(Command::new("umoci").args(["new", "--image", &base]))?;
            sync()?;
            let mut cmd = with_time(&time_file, Path::new("umoci"));
            cmd.args(["insert", "--rootless", "--image", &base])
                .arg(&source.tree)
                .arg("/");
            cmd
        }
        Step::HoistBuild => hoist_build(hoist, &time_file, &source.tree, out),
        Step::UmociUnpack => {
            let mut cmd = with_time(&time_file, Path::new("umoci"));
            cmd.args(["unpack", "--rootless", "--image", &image()])
                .arg(out);
            cmd
        }
        Step::HoistUnpack => {
            let mut cmd = with_time(&time_file, hoist);
            cmd.args(["-q", "unpack", "--rootless", &oci_ref(&source.image, TAG)])
                .arg(out);
            cmd
        }
        Step::TarX => {
            let mut cmd = with_time(&time_file, Path::new("sh"));
            cmd.args(["-c", TAR_X_SCRIPT, "sh"])
                .arg(out)
                .arg(&source.tar);
            cmd
        }
        Step::UmociExport => {
            fs::create_dir(out).with_context(|| format!("cannot create {}", out.display()))?;
            let mut cmd = with_time(&time_file, Path::new("sh"));
            cmd.args(["-c", UMOCI_EXPORT_SCRIPT, "sh", &image()])
                .arg(out.join("rootfs"))
                .arg(out.join("rootfs.tar"));
            cmd
        }
        Step::HoistExport => {
            fs::create_dir(out).with_context(|| format!("cannot create {}", out.display()))?;
            let mut cmd = with_time(&time_file, hoist);
            cmd.args(["-q", "export", &oci_ref(&source.image, TAG)])
                .arg(out.join("rootfs.tar"));
            cmd
        }
    };
    let (seconds, output) = timed(&mut cmd)?;
    match step {
        Step::HoistBuild => {
            let printed = String::from_utf8_lossy(&output.stdout);
            if !printed.contains(&source.build_manifest) {
                bail!(
                    "hoist build printed {:?}, not the reference build's {}",
                    printed.trim(),
                    source.build_manifest
                );
            }
        }
        Step::UmociInsert => {
            let layers = layout_image(out, UMOCI_BASE)?.layers.len();
            if layers != 1 {
                bail!("umoci insert left {layers} layers, expected 1");
            }
        }
        Step::UmociExport | Step::HoistExport => {
            let tar = out.join("rootfs.tar");
            let len = fs::metadata(&tar)
                .with_context(|| format!("no {}", tar.display()))?
                .len();
            if len < source.tar_bytes / 2 {
                bail!(
                    "{} has {len} bytes, the layer's tar {}",
                    tar.display(),
                    source.tar_bytes
                );
            }
        }
        Step::UmociUnpack | Step::HoistUnpack | Step::TarX => {}
    }
    Ok(Sample {
        step,
        seconds,
        usage: read_usage(&time_file)?,
    })
}

/// Reads what `step` will read, untimed.
fn warm(step: Step, source: &Source) -> Result<()> {
    match step {
        Step::UmociInsert | Step::HoistBuild => warm_tree(&source.tree),
        Step::TarX => read_through(&source.tar),
        _ => warm_tree(&source.image),
    }
}

/// Makes the tree, the images and the layer's tar, and checks that hoist and umoci unpack and
/// export the image alike (under `check`).
fn prepare(hoist: &Path, work: &Path, size_bytes: u64) -> Result<Source> {
    let started = Instant::now();
    let tree = work.join("tree");
    let stats = tree::small_tree(&tree, size_bytes, SEED)?;
    println!(
        "    tree: {} files, {} dirs, {} symlinks, {:.1} MiB, made in {:.1} s",
        stats.files,
        stats.dirs,
        stats.symlinks,
        stats.bytes as f64 / f64::from(1 << 20),
        started.elapsed().as_secs_f64()
    );
    let reference = work.join("reference");
    let (seconds, output) = timed(&mut hoist_build(
        hoist,
        &work.join("reference.time"),
        &tree,
        &reference,
    ))?;
    let built = layout_image(&reference, TAG)?;
    if !String::from_utf8_lossy(&output.stdout).contains(&built.manifest) {
        bail!("hoist build did not print {}", built.manifest);
    }
    let build_layer_bytes = built.layers.iter().map(|(_, size)| size).sum();
    let image = work.join("image");
    let mut build = Command::new(hoist);
    build
        .env("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH)
        .args([
            "-q",
            "build",
            "--compression-level",
            &GZIP_LEVEL.to_string(),
        ])
        .arg("--layer")
        .arg(&tree)
        .arg(oci_ref(&image, TAG));
    timed(&mut build)?;
    let unpacked = layout_image(&image, TAG)?;
    let [(layer_digest, layer_bytes)] = unpacked.layers.as_slice() else {
        bail!("hoist built {} layers, expected 1", unpacked.layers.len());
    };
    let layer = blob_path(&image, layer_digest);
    let tar = work.join("layer.tar");
    let mut gzip = Command::new("gzip");
    gzip.arg("-dc").arg(&layer).stdout(
        fs::File::create(&tar).with_context(|| format!("cannot create {}", tar.display()))?,
    );
    run_status(&mut gzip)?;
    let source = Source {
        tar_bytes: fs::metadata(&tar)?.len(),
        tree,
        stats,
        build_manifest: built.manifest,
        build_layer_bytes,
        image,
        image_manifest: unpacked.manifest,
        layer_bytes: *layer_bytes,
        tar,
    };
    println!(
        "    hoist build (untimed) {seconds:.1} s: layer {:.1} MB, {}; image (gzip -{GZIP_LEVEL}) \
         layer {:.1} MB, tar {:.1} MB",
        source.build_layer_bytes as f64 / 1e6,
        source.build_manifest,
        source.layer_bytes as f64 / 1e6,
        source.tar_bytes as f64 / 1e6
    );
    let entries = stats.files + stats.symlinks + stats.dirs - 1;
    let check = work.join("check");
    fs::create_dir_all(&check).with_context(|| format!("cannot create {}", check.display()))?;
    for step in [
        Step::HoistUnpack,
        Step::UmociUnpack,
        Step::HoistExport,
        Step::UmociExport,
    ] {
        let out = check.join(step.key());
        run_step(step, hoist, &source, &out)?;
        let found = match step {
            Step::HoistUnpack => count_entries(&out)?,
            Step::UmociUnpack => count_entries(&out.join("rootfs"))?,
            _ => count_tar_entries(&out.join("rootfs.tar"))?,
        };
        if found != entries {
            bail!(
                "{} gave {found} entries, the tree has {entries}",
                step.label()
            );
        }
    }
    println!("    hoist and umoci unpack and export all {entries} entries");
    Ok(source)
}

pub(super) fn run(root: &Path, args: &BenchArgs) -> Result<()> {
    require_tools(Scenario::Files.tools())?;
    require_gnu_time()?;
    let hoist = build_hoist(root)?;
    let hoist_revision = revision(root, Revision::Count);
    let versions = vec![version("umoci", "--version"), version("tar", "--version")];
    let workspace = Workspace::new(root, "files", Some("oci:DIR:TAG and umoci's --image"))?;
    let (bench_dir, work) = (workspace.bench_dir.clone(), workspace.work.clone());
    println!(
        "==> tree under {}: {} MiB of small files (seed {SEED:#x})",
        work.display(),
        args.size_mib
    );
    let source = prepare(&hoist, &work, args.size_mib << 20)?;
    sync_and_pause(args.pause_secs)?;

    let plan = Runs::new(args);
    let mut runs = Vec::new();
    let mut load = Vec::new();
    for run in plan.iter() {
        let dir = workspace.run_dir(run.seq)?;
        println!("{}", run.heading(plan));
        let load_start = load_average();
        let mut samples = Vec::new();
        for step in step_order(run.index) {
            sync()?;
            warm(step, &source)?;
            let sample = run_step(step, &hoist, &source, &dir.join(step.key()))?;
            println!(
                "    {:<38}{:>8.3} s {:>7.2} CPU s {:>12}",
                step.label(),
                sample.seconds,
                sample.usage.user + sample.usage.sys,
                format_mib(sample.usage.peak_rss_kib)
            );
            samples.push(sample);
        }
        if run.counted {
            runs.push(samples);
            load.push((load_start, load_average()));
        }
    }
    remove_dir(&work)?;

    let report = FilesReport {
        stats: source.stats,
        build_layer_bytes: source.build_layer_bytes,
        layer_bytes: source.layer_bytes,
        tar_bytes: source.tar_bytes,
        build_manifest: source.build_manifest,
        image_manifest: source.image_manifest,
        cores: cores(),
        versions,
        hoist_revision,
        warm_up: plan.warm_up,
        runs,
        load,
    };
    write_results(&bench_dir, "files", &report.to_json(), &report.table())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::Scenario;
    use crate::bench::measure::DEFAULT_RUNS;
    use crate::bench::tests::parse_one;

    #[test]
    fn files_defaults_to_5_runs_and_quick_to_one() {
        let parsed = parse_one(&["files"]).unwrap();
        assert_eq!(parsed.scenario, Scenario::Files);
        assert_eq!(
            (parsed.size_mib, parsed.runs),
            (FILES_SIZE_MIB, DEFAULT_RUNS)
        );
        let quick = parse_one(&["files", "--quick"]).unwrap();
        assert_eq!((quick.size_mib, quick.runs), (QUICK_SIZE_MIB, 1));
    }

    #[test]
    fn orders_alternate_with_hoist_beside_umoci() {
        assert_eq!(step_order(0)[0], Step::UmociInsert);
        assert_eq!(step_order(1)[0], Step::HoistExport);
        for index in 0..2 {
            let order = step_order(index);
            let at = |step| order.iter().position(|&s| s == step).unwrap();
            for step in Step::ALL {
                assert_eq!(order.iter().filter(|&&s| s == step).count(), 1, "{step:?}");
            }
            for job in JOBS {
                assert_eq!(at(job.hoist).abs_diff(at(job.peer)), 1, "{job:?}");
            }
            assert_eq!(at(Step::HoistUnpack).abs_diff(at(Step::TarX)), 1);
        }
    }
}
