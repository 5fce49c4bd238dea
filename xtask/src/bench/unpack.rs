//! Scenario `unpack` (issue "hoist unpack speed"): `hoist unpack --rootless oci:LAYOUT:TAG DIR`
//! beside `umoci unpack --rootless --image LAYOUT:TAG BUNDLE` of the same image, each into a new
//! directory, on two images that `hoist build` makes once (gzip level [`GZIP_LEVEL`], that of
//! Go's and so most registries' layers):
//! * `generated`: `--size-mib` (1 GiB by default) of files in [`GENERATED_LAYERS`] layers of
//!   equal size, each under `srv/data-N/` a tree made as the build scenario makes its own (mixed
//!   sizes, half random bytes and half log-like text in alternating 64 KiB segments), from a
//!   seed of its own, so that inflating does real work on half of it;
//! * `usr`: a copy of part of this machine's `/usr/share` and `/usr/lib` as the build scenario
//!   makes it, 5/8 of `--size-mib` (tens of thousands of small files), in three layers:
//!   `usr/lib`, then the first and the second half (by entries) of `usr/share`.
//!
//! Targets, on medians, per image: hoist takes at most [`TIME_LIMIT`] times umoci's time; its
//! peak RSS (GNU `time`, the largest of the runs) stays under [`RSS_LIMIT_KIB`]. Reported beside
//! them, measured in the same runs: the machine's limits for the same layers, inflating them on
//! one core (`gzip -dc`, `pigz -dc`, and zlib through `python3`, to nothing) and extracting
//! their uncompressed tars in order with GNU tar into a new directory (`--no-same-owner`, as a
//! rootless unpack does); `umoci raw unpack --rootless` (umoci without the mtree manifest that
//! `umoci unpack` makes by hashing every file it wrote); CPU seconds; umoci's peak RSS.
//!
//! How it measures:
//! * set-up, untimed: the trees, the images (`SOURCE_DATE_EPOCH` set), the uncompressed tar of
//!   each layer (`gzip -dc`), then one unpack by hoist, umoci and tar each, which must give the
//!   same paths (with the same types, file sizes and link targets); the trees and those unpacks
//!   are then deleted together, followed by `sync` and the pause;
//! * every timed step writes into a new directory, after `sync` and an untimed read of what it
//!   reads (the whole layout, or the tars), so that each finds it in the page cache;
//! * each run starts with an untimed ballast write (see the layout scenario), sized for what a
//!   run writes; the images and the order of the steps alternate between runs (even runs: the
//!   generated image first, umoci before hoist; odd runs: the other way round);
//! * a run's outputs are deleted together when it ends, followed by `sync` and the pause, which
//!   is [`UNPACK_PAUSE_SECS`] here unless `--pause` says otherwise; the layouts and tars go at
//!   the end. The pause is long because of how ext4 without a journal (this machine's root
//!   filesystem) allocates inodes: it skips every free inode deleted less than 60 s ago, or
//!   360 s ago when its inode-table block is dirty (as creating files makes it), rescanning the
//!   group for each new inode. Measured here with a tar of 43k files from `/usr/share`: `tar
//!   -xf` 2.0 to 2.2 s long after any deletion, 15.2 s 90 s after deleting 300k entries
//!   (hoist 3.1 to 3.5 s against 15.6 s), 2.6 s after 420 s. A shorter pause makes every tool
//!   that creates files pay the same kernel cost, which hides their differences.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::build::{
    Rng, SOURCE_DATE_EPOCH, SYMLINK_EVERY, Text, TreeStats, blob_path, copy_usr, file_sizes,
    layout_image, load_average, parse_time_line, revision, version, walk, warm_tree, with_time,
    write_generated,
};
use super::{
    BALLAST_SPARE, BenchArgs, Target, build_hoist, format_mib, format_ratio, median,
    parse_mem_available, rate_mb_s, read_through, remove_dir, require_tools, run_status,
    sync_and_pause, target_dir, timed, verdict, write_ballast,
};

/// The default size of the generated image's files, and that of `--quick`.
const UNPACK_SIZE_MIB: u64 = 1024;
const QUICK_SIZE_MIB: u64 = 64;
/// The pause after each run's deletion unless `--pause` is given: past ext4's 360 s window
/// for recently deleted inodes (see the module's documentation).
const UNPACK_PAUSE_SECS: u64 = 420;
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
/// The ballast, at most, in multiples of what a run writes.
const BALLAST_RUNS: u64 = 2;
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

/// Sets the scenario's defaults for what the command line left out: [`UNPACK_SIZE_MIB`] and
/// [`UNPACK_PAUSE_SECS`] (a `--pause` equal to the default one counts as left out), or with
/// `--quick` [`QUICK_SIZE_MIB`] and one run.
pub(super) fn apply_defaults(args: &mut BenchArgs, size_given: bool, runs_given: bool) {
    if !size_given {
        args.size_mib = if args.quick {
            QUICK_SIZE_MIB
        } else {
            UNPACK_SIZE_MIB
        };
    }
    if args.quick && !runs_given {
        args.runs = 1;
    }
    if !args.quick && args.pause_secs == BenchArgs::default().pause_secs {
        args.pause_secs = UNPACK_PAUSE_SECS;
    }
}

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

    /// The names of the targets: time ratio, peak RSS.
    fn target_names(self) -> [&'static str; 2] {
        match self {
            Self::Generated => [
                "generated: hoist / umoci unpack",
                "generated: hoist peak RSS (max)",
            ],
            Self::Usr => ["usr: hoist / umoci unpack", "usr: hoist peak RSS (max)"],
        }
    }
}

/// The order of the images in run `index` (from 0).
fn image_order(index: usize) -> [Kind; 2] {
    if index.is_multiple_of(2) {
        [Kind::Generated, Kind::Usr]
    } else {
        [Kind::Usr, Kind::Generated]
    }
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

/// The order of run `index` (from 0): [`ORDER`] in even runs, reversed in odd ones.
fn step_order(index: usize) -> [Step; 7] {
    let mut order = ORDER;
    if !index.is_multiple_of(2) {
        order.reverse();
    }
    order
}

/// Makes a tree of about `total` bytes of files under `dir`, as the build scenario makes its
/// generated tree, from `seed`.
fn generate_layer(dir: &Path, total: u64, seed: u64) -> Result<()> {
    let mut rng = Rng(seed);
    let mut text = Text::new(&mut rng);
    let (small, large) = file_sizes(&mut rng, total);
    let mut buf = Vec::new();
    for (i, &size) in small.iter().enumerate() {
        let parent = dir
            .join(format!("d{:02}", i % 16))
            .join(format!("s{}", (i / 16) % 8));
        fs::create_dir_all(&parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        let text_first = i % 2 == 0;
        let name = format!("f{i:05}.{}", if text_first { "log" } else { "bin" });
        let path = parent.join(&name);
        write_generated(&path, size, text_first, &mut rng, &mut text, &mut buf)?;
        if i % SYMLINK_EVERY == 0 {
            let link = parent.join(format!("link-{i:05}"));
            std::os::unix::fs::symlink(&name, &link)
                .with_context(|| format!("cannot create {}", link.display()))?;
        }
    }
    let big = dir.join("big");
    fs::create_dir_all(&big).with_context(|| format!("cannot create {}", big.display()))?;
    for (i, &size) in large.iter().enumerate() {
        let path = big.join(format!("large-{i}.bin"));
        write_generated(&path, size, i % 2 == 1, &mut rng, &mut text, &mut buf)?;
    }
    Ok(())
}

/// The number of entries under `dir` (not `dir` itself).
fn count_entries(dir: &Path) -> Result<u64> {
    let mut n = 0;
    walk(dir, &mut |_, _| {
        n += 1;
        Ok(true)
    })?;
    Ok(n)
}

/// Where to split entries of the given sizes into two runs of about equal sums: the index of
/// the first of the second half (at least 1 and at most `len - 1` when there are two or more).
fn split_half(sizes: &[u64]) -> usize {
    let total: u64 = sizes.iter().sum();
    let mut sum = 0;
    for (i, &size) in sizes.iter().enumerate() {
        if i > 0 && 2 * sum >= total {
            return i;
        }
        sum += size;
    }
    sizes
        .len()
        .saturating_sub(1)
        .max(usize::from(sizes.len() == 1))
}

/// Moves `from` to `to`, making `to`'s parents.
fn move_into(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    fs::rename(from, to)
        .with_context(|| format!("cannot move {} to {}", from.display(), to.display()))
}

/// The layer directories of the `usr` image, from a copy of `/usr` at `src` (`share`, `lib`):
/// `usr/lib`, then `usr/share` in two halves by entries.
fn split_usr(src: &Path, into: &Path) -> Result<Vec<PathBuf>> {
    let layers: Vec<PathBuf> = (1..=3).map(|n| into.join(format!("usr-{n}"))).collect();
    move_into(&src.join("lib"), &layers[0].join("usr/lib"))?;
    let share = src.join("share");
    let mut children = fs::read_dir(&share)
        .with_context(|| format!("cannot list {}", share.display()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<Vec<_>>>()
        .with_context(|| format!("cannot list {}", share.display()))?;
    children.sort();
    let mut sizes = Vec::new();
    for child in &children {
        let path = share.join(child);
        let below = if fs::symlink_metadata(&path)?.is_dir() {
            count_entries(&path)?
        } else {
            0
        };
        sizes.push(1 + below);
    }
    let split = split_half(&sizes);
    for (i, child) in children.iter().enumerate() {
        let layer = &layers[if i < split { 1 } else { 2 }];
        move_into(&share.join(child), &layer.join("usr/share").join(child))?;
    }
    for layer in &layers {
        fs::create_dir_all(layer).with_context(|| format!("cannot create {}", layer.display()))?;
    }
    Ok(layers)
}

/// What a path of an unpacked tree is, as compared between the tools.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Dir,
    File(u64),
    Symlink(PathBuf),
    Other,
}

/// Every path under `dir`, relative to it, and what it is.
fn listing(dir: &Path) -> Result<BTreeMap<PathBuf, Entry>> {
    let mut paths = BTreeMap::new();
    walk(dir, &mut |path, meta| {
        let kind = meta.file_type();
        let entry = if kind.is_dir() {
            Entry::Dir
        } else if kind.is_file() {
            Entry::File(meta.len())
        } else if kind.is_symlink() {
            Entry::Symlink(
                fs::read_link(path)
                    .with_context(|| format!("cannot read link {}", path.display()))?,
            )
        } else {
            Entry::Other
        };
        paths.insert(path.strip_prefix(dir)?.to_path_buf(), entry);
        Ok(true)
    })?;
    Ok(paths)
}

/// The first `max` differences between two listings, as lines.
fn differences(
    a: &BTreeMap<PathBuf, Entry>,
    b: &BTreeMap<PathBuf, Entry>,
    max: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    for (path, entry) in a {
        match b.get(path) {
            None => out.push(format!("{}: only in the first ({entry:?})", path.display())),
            Some(other) if other != entry => {
                out.push(format!("{}: {entry:?} against {other:?}", path.display()));
            }
            Some(_) => {}
        }
    }
    for (path, entry) in b {
        if !a.contains_key(path) {
            out.push(format!(
                "{}: only in the second ({entry:?})",
                path.display()
            ));
        }
    }
    out.truncate(max);
    out
}

/// What a listing holds.
fn listing_stats(paths: &BTreeMap<PathBuf, Entry>) -> TreeStats {
    let mut stats = TreeStats::default();
    for entry in paths.values() {
        match entry {
            Entry::Dir => stats.dirs += 1,
            Entry::File(size) => {
                stats.files += 1;
                stats.bytes += size;
            }
            Entry::Symlink(_) => stats.symlinks += 1,
            Entry::Other => {}
        }
    }
    stats
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
) -> Result<(f64, (f64, f64, u64))> {
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
    let text = fs::read_to_string(time_file)
        .with_context(|| format!("cannot read {}", time_file.display()))?;
    let times = parse_time_line(&text)
        .with_context(|| format!("no times in {}: {text:?}", time_file.display()))?;
    Ok((seconds, times))
}

/// Where `step` leaves the unpacked tree under its output `out`.
fn rootfs(step: Step, out: &Path) -> PathBuf {
    if step == Step::Umoci {
        out.join("rootfs")
    } else {
        out.to_path_buf()
    }
}

/// Builds the image of `layer_dirs` with hoist, makes the tars of its layers, and checks that
/// hoist, umoci and tar unpack it to the same paths (under `check`).
fn prepare(
    hoist: &Path,
    work: &Path,
    check: &Path,
    kind: Kind,
    layer_dirs: &[PathBuf],
) -> Result<Image> {
    let key = kind.key();
    let layout = work.join(format!("layout-{key}"));
    let mut build = Command::new(hoist);
    build.env("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH).args([
        "-q",
        "build",
        "--compression-level",
        &GZIP_LEVEL.to_string(),
    ]);
    for dir in layer_dirs {
        build.arg("--layer").arg(dir);
    }
    build.arg(format!("oci:{}:{TAG}", layout.display()));
    let (build_seconds, _) = timed(&mut build)?;
    let built = layout_image(&layout, TAG)?;
    if built.layers.len() != layer_dirs.len() {
        bail!(
            "hoist built {} layers, expected {}",
            built.layers.len(),
            layer_dirs.len()
        );
    }
    let layers: Vec<PathBuf> = built
        .layers
        .iter()
        .map(|(digest, _)| blob_path(&layout, digest))
        .collect();
    let layer_bytes = built.layers.iter().map(|(_, size)| size).sum();
    let mut tars = Vec::new();
    let mut tar_bytes = 0;
    for (i, layer) in layers.iter().enumerate() {
        let tar = work.join(format!("{key}-{}.tar", i + 1));
        let mut gzip = Command::new("gzip");
        gzip.arg("-dc").arg(layer).stdout(
            File::create(&tar).with_context(|| format!("cannot create {}", tar.display()))?,
        );
        run_status(&mut gzip)?;
        tar_bytes += fs::metadata(&tar)?.len();
        tars.push(tar);
    }
    let mut image = Image {
        layout,
        manifest: built.manifest,
        layers,
        layer_bytes,
        tars,
        tar_bytes,
        stats: TreeStats::default(),
    };
    let mut listings = Vec::new();
    let mut seconds = Vec::new();
    for step in [Step::Hoist, Step::Umoci, Step::Tar] {
        let out = check.join(format!("{key}-{}", step.key()));
        let time_file = check.join(format!("{key}-{}.time", step.key()));
        let (s, _) = run_step(step, hoist, &image, &out, &time_file)?;
        seconds.push(format!("{} {s:.1} s", step.key()));
        listings.push((step, listing(&rootfs(step, &out))?));
    }
    let (_, hoist_paths) = &listings[0];
    for (step, paths) in &listings[1..] {
        let diff = differences(hoist_paths, paths, 10);
        if !diff.is_empty() {
            bail!(
                "hoist and {} unpack {key} differently (first: hoist, second: {}):\n  {}",
                step.key(),
                step.key(),
                diff.join("\n  ")
            );
        }
    }
    image.stats = listing_stats(hoist_paths);
    let s = &image.stats;
    println!(
        "    {key}: {} layers, {} MB gzip, {} MB of tars; built in {build_seconds:.1} s; {}; \
         {} files, {} dirs, {} symlinks, {} MB; the same paths from hoist, umoci and tar \
         (untimed: {})",
        image.layers.len(),
        image.layer_bytes / 1_000_000,
        image.tar_bytes / 1_000_000,
        image.manifest,
        s.files,
        s.dirs,
        s.symlinks,
        s.bytes / 1_000_000,
        seconds.join(", ")
    );
    Ok(image)
}

/// Reads what `step` will read, untimed.
fn warm(step: Step, image: &Image) -> Result<()> {
    if step.reads_layout() {
        warm_tree(&image.layout)
    } else {
        image.tars.iter().try_for_each(|tar| read_through(tar))
    }
}

/// The ballast before a run that writes `run_writes` bytes, when `available` bytes of memory
/// are available beside what the images keep: [`BALLAST_RUNS`] times that, less if it would
/// leave under [`BALLAST_SPARE`] once the run's own trees are in the page cache.
fn unpack_ballast(run_writes: u64, available: u64) -> u64 {
    let room = available.saturating_sub(run_writes + BALLAST_SPARE);
    (BALLAST_RUNS * run_writes).min(room)
}

/// One timed step.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    step: Step,
    seconds: f64,
    user: f64,
    sys: f64,
    peak_rss_kib: u64,
}

impl Sample {
    fn cpu(&self) -> f64 {
        self.user + self.sys
    }
}

/// What one image's runs measured.
#[derive(Debug)]
struct ImageReport {
    kind: Kind,
    layers: usize,
    layer_bytes: u64,
    tar_bytes: u64,
    manifest: String,
    stats: TreeStats,
    runs: Vec<Vec<Sample>>,
}

/// Of `(step, seconds)`, the fastest inflater and the slower of it and tar: the machine's
/// limit for an unpack that inflates on one core while another extracts.
fn bound_of(at: &dyn Fn(Step) -> Option<f64>) -> Option<((Step, f64), (Step, f64))> {
    let mut inflate: Option<(Step, f64)> = None;
    for step in Step::INFLATE {
        let s = at(step)?;
        if inflate.is_none_or(|(_, best)| s < best) {
            inflate = Some((step, s));
        }
    }
    let inflate = inflate?;
    let tar = at(Step::Tar)?;
    let slowest = if tar > inflate.1 {
        (Step::Tar, tar)
    } else {
        inflate
    };
    Some((inflate, slowest))
}

impl ImageReport {
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

    /// On medians: the fastest inflater, and the slowest of it and tar.
    fn bounds(&self) -> ((Step, f64), (Step, f64)) {
        bound_of(&|step| Some(self.median(step)))
            .unwrap_or(((Step::Zlib, f64::NAN), (Step::Tar, f64::NAN)))
    }

    fn time_ratio(&self) -> f64 {
        self.median(Step::Hoist) / self.median(Step::Umoci)
    }

    /// Per run: hoist / umoci, hoist / the run's slowest bound.
    fn run_ratios(&self) -> [Vec<f64>; 2] {
        let mut vs_umoci = Vec::new();
        let mut vs_bound = Vec::new();
        for run in &self.runs {
            let at = |step| run.iter().find(|s| s.step == step).map(|s| s.seconds);
            let Some(hoist) = at(Step::Hoist) else {
                continue;
            };
            if let Some(umoci) = at(Step::Umoci) {
                vs_umoci.push(hoist / umoci);
            }
            if let Some((_, (_, bound))) = bound_of(&at) {
                vs_bound.push(hoist / bound);
            }
        }
        [vs_umoci, vs_bound]
    }

    fn targets(&self) -> Vec<Target> {
        let [time_name, rss_name] = self.kind.target_names();
        let ratio = self.time_ratio();
        let rss = self.max_rss(Step::Hoist);
        vec![
            Target {
                name: time_name,
                measured: format_ratio(ratio),
                limit: format!("≤ {}", format_ratio(TIME_LIMIT)),
                pass: ratio <= TIME_LIMIT,
                value: ratio,
                limit_value: TIME_LIMIT,
            },
            Target {
                name: rss_name,
                measured: format_mib(rss),
                limit: format!("< {}", format_mib(RSS_LIMIT_KIB)),
                pass: rss < RSS_LIMIT_KIB,
                value: rss as f64,
                limit_value: RSS_LIMIT_KIB as f64,
            },
        ]
    }

    /// Figures reported beside the targets, without a verdict: (name, value).
    fn reported(&self) -> Vec<(String, String)> {
        let key = self.kind.key();
        let ((inflate_step, inflate), (bound_step, bound)) = self.bounds();
        let hoist = self.median(Step::Hoist);
        let tar = self.median(Step::Tar);
        vec![
            (
                format!("{key}: hoist / slowest bound ({})", bound_step.key()),
                format_ratio(hoist / bound),
            ),
            (
                format!("{key}: hoist / ({} + tar_x)", inflate_step.key()),
                format_ratio(hoist / (inflate + tar)),
            ),
            (
                format!("{key}: hoist / fastest inflate ({})", inflate_step.key()),
                format_ratio(hoist / inflate),
            ),
            (format!("{key}: hoist / tar -xf"), format_ratio(hoist / tar)),
            (
                format!("{key}: hoist / umoci raw unpack"),
                format_ratio(hoist / self.median(Step::UmociRaw)),
            ),
            (
                format!("{key}: hoist CPU s / ({} + tar) CPU s", inflate_step.key()),
                format_ratio(
                    self.median_cpu(Step::Hoist)
                        / (self.median_cpu(inflate_step) + self.median_cpu(Step::Tar)),
                ),
            ),
            (
                format!("{key}: umoci peak RSS (max)"),
                format_mib(self.max_rss(Step::Umoci)),
            ),
        ]
    }

    fn table(&self, out: &mut String) {
        let runs = self.runs.len();
        let s = &self.stats;
        let _ = writeln!(
            out,
            "image {}: {} layers, {} MB gzip, {} MB of tars; unpacked: {} files, {} dirs, {} \
             symlinks, {:.1} MiB of files; manifest {}",
            self.kind.key(),
            self.layers,
            self.layer_bytes / 1_000_000,
            self.tar_bytes / 1_000_000,
            s.files,
            s.dirs,
            s.symlinks,
            s.bytes as f64 / f64::from(1 << 20),
            self.manifest
        );
        let header = |out: &mut String, title: &str, last: &str| {
            let _ = write!(out, "{title:<38}");
            for i in 1..=runs {
                let _ = write!(out, "{:>10}", format!("run {i}"));
            }
            let _ = writeln!(out, "{:>10}{last:>10}", "median");
        };
        header(out, "seconds (MB/s of the tars)", "MB/s");
        for step in Step::ALL {
            let _ = write!(out, "{:<38}", step.label());
            for v in self.seconds(step) {
                let _ = write!(out, "{v:>10.3}");
            }
            let m = self.median(step);
            let _ = writeln!(out, "{m:>10.3}{:>10.0}", rate_mb_s(self.tar_bytes, m));
        }
        let [vs_umoci, vs_bound] = self.run_ratios();
        for (name, ratios) in [
            ("hoist / umoci unpack", vs_umoci),
            ("hoist / slowest bound", vs_bound),
        ] {
            let _ = write!(out, "{name:<38}");
            for r in ratios {
                let _ = write!(out, "{:>10}", format_ratio(r));
            }
            let _ = writeln!(out);
        }
        header(out, "CPU seconds, user+sys", "user/sys");
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
        header(out, "peak RSS", "max");
        for step in Step::TOOLS {
            let _ = write!(out, "{:<38}", step.label());
            let samples = self.samples(step);
            for sample in &samples {
                let _ = write!(out, "{:>10}", format_mib(sample.peak_rss_kib));
            }
            let rss: Vec<f64> = samples.iter().map(|s| s.peak_rss_kib as f64).collect();
            let _ = writeln!(
                out,
                "{:>10}{:>10}",
                format_mib(median(&rss).unwrap_or(0.0) as u64),
                format_mib(self.max_rss(step))
            );
        }
        let _ = writeln!(out);
    }

    fn to_json(&self) -> Value {
        let by_step = |f: &dyn Fn(Step) -> Value| -> serde_json::Map<String, Value> {
            Step::ALL
                .iter()
                .map(|&s| (s.key().to_owned(), f(s)))
                .collect()
        };
        let [vs_umoci, vs_bound] = self.run_ratios();
        let ((inflate_step, _), (bound_step, _)) = self.bounds();
        json!({
            "layers": self.layers,
            "layer_bytes": self.layer_bytes,
            "tar_bytes": self.tar_bytes,
            "manifest": self.manifest,
            "files": self.stats.files,
            "dirs": self.stats.dirs,
            "symlinks": self.stats.symlinks,
            "file_bytes": self.stats.bytes,
            "order": self.runs.iter()
                .map(|run| run.iter().map(|s| s.step.key()).collect::<Vec<_>>())
                .collect::<Vec<_>>(),
            "seconds": by_step(&|s| json!(self.seconds(s))),
            "median_seconds": by_step(&|s| json!(self.median(s))),
            "user_seconds": by_step(&|s| json!(self.samples(s).iter().map(|x| x.user).collect::<Vec<_>>())),
            "sys_seconds": by_step(&|s| json!(self.samples(s).iter().map(|x| x.sys).collect::<Vec<_>>())),
            "peak_rss_kib": by_step(&|s| json!(self.samples(s).iter().map(|x| x.peak_rss_kib).collect::<Vec<_>>())),
            "fastest_inflate": inflate_step.key(),
            "slowest_bound": bound_step.key(),
            "ratios_per_run": {
                "hoist_over_umoci": vs_umoci,
                "hoist_over_slowest_bound": vs_bound,
            },
            "reported": self.reported().into_iter()
                .map(|(name, value)| json!({ "name": name, "value": value }))
                .collect::<Vec<_>>(),
        })
    }
}

/// Everything the scenario measured.
#[derive(Debug)]
struct UnpackReport {
    images: Vec<ImageReport>,
    cores: usize,
    versions: Vec<String>,
    hoist_revision: String,
    pause_secs: u64,
    ballast_bytes: Vec<u64>,
    /// The 1-minute load average when each run started and ended (others share the machine).
    load: Vec<(f64, f64)>,
}

impl UnpackReport {
    fn targets(&self) -> Vec<Target> {
        self.images.iter().flat_map(ImageReport::targets).collect()
    }

    fn table(&self) -> String {
        let mut out = String::new();
        let runs = self.images.first().map_or(0, |t| t.runs.len());
        let ballast = match self.ballast_bytes.iter().max() {
            Some(&max) if max > 0 => format!("up to {} MiB ballast before each run", max >> 20),
            _ => "no ballast".to_owned(),
        };
        let _ = writeln!(
            out,
            "unpack bench: hoist unpack --rootless beside umoci unpack --rootless of the same \
             OCI layout (made by hoist build, gzip -{GZIP_LEVEL}), each into a new \
             directory;\n{runs} run(s), {ballast}, {} s pause after each run's deletion; {} \
             cores; {};\nimages and step order alternate between runs; before every step: \
             sync, untimed read of its input;\nhoist built from {}\n",
            self.pause_secs,
            self.cores,
            self.versions.join(", "),
            self.hoist_revision,
        );
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
        for image in &self.images {
            image.table(&mut out);
        }
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
        for image in &self.images {
            for (name, value) in image.reported() {
                let _ = writeln!(out, "{name:<52}{value:>11}{:>11}   (reported)", "-");
            }
        }
        out
    }

    fn to_json(&self) -> Value {
        let images: serde_json::Map<String, Value> = self
            .images
            .iter()
            .map(|t| (t.kind.key().to_owned(), t.to_json()))
            .collect();
        json!({
            "scenario": "unpack",
            "gzip_level": GZIP_LEVEL,
            "versions": self.versions,
            "hoist_revision": self.hoist_revision,
            "cores": self.cores,
            "runs": self.images.first().map_or(0, |t| t.runs.len()),
            "pause_secs": self.pause_secs,
            "ballast_bytes": self.ballast_bytes,
            "load_average_start_end": self.load,
            "images": images,
            "targets": self.targets().iter().map(|t| json!({
                "name": t.name,
                "value": t.value,
                "limit": t.limit_value,
                "pass": t.pass,
            })).collect::<Vec<_>>(),
        })
    }
}

pub(super) fn run(root: &Path, args: &BenchArgs) -> Result<()> {
    require_tools(&["umoci", "gzip", "pigz", "tar", "python3"])?;
    if !Path::new("/usr/bin/time").exists() {
        bail!("GNU time is not installed at /usr/bin/time (apt-get install -y time)");
    }
    let hoist = build_hoist(root)?;
    let hoist_revision = revision(root);
    let versions = vec![
        version("umoci", "--version"),
        version("gzip", "--version"),
        version("pigz", "--version"),
        version("tar", "--version"),
        version(python(), "--version"),
    ];
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let bench_dir = target_dir(root).join("bench");
    let work = bench_dir.join("unpack-work");
    if work.to_string_lossy().contains(':') {
        bail!(
            "{} contains `:`, which oci:DIR:TAG and umoci's --image cannot express",
            work.display()
        );
    }
    remove_dir(&work)?;
    fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let size_bytes = args.size_mib << 20;
    let usr_budget = size_bytes / 8 * USR_EIGHTHS;

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
        generate_layer(&data, size_bytes / GENERATED_LAYERS, SEED + n)?;
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
    println!("    deleting the trees and the check unpacks");
    remove_dir(&trees)?;
    remove_dir(&check)?;
    sync_and_pause(args.pause_secs)?;

    let image = |kind: Kind| -> &Image {
        match kind {
            Kind::Generated => &images[0],
            Kind::Usr => &images[1],
        }
    };
    let kept: u64 = images.iter().map(|i| i.layer_bytes + i.tar_bytes).sum();
    let run_writes: u64 = images.iter().map(|i| TREES_PER_RUN * i.tar_bytes).sum();
    let mut runs: [Vec<Vec<Sample>>; 2] = [Vec::new(), Vec::new()];
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
            unpack_ballast(run_writes, available.saturating_sub(kept))
        } else {
            0
        };
        if ballast > 0 {
            println!("    ballast: {} MiB (untimed)", ballast >> 20);
            write_ballast(&dir.join("ballast"), ballast)?;
        }
        ballasts.push(ballast);
        let load_start = load_average();
        for kind in image_order(index) {
            let image = image(kind);
            let image_dir = dir.join(kind.key());
            fs::create_dir_all(&image_dir)
                .with_context(|| format!("cannot create {}", image_dir.display()))?;
            let mut samples = Vec::new();
            for step in step_order(index) {
                run_status(&mut Command::new("sync"))?;
                warm(step, image)?;
                let out = image_dir.join(step.key());
                let time_file = image_dir.join(format!("{}.time", step.key()));
                let (seconds, (user, sys, peak_rss_kib)) =
                    run_step(step, &hoist, image, &out, &time_file)?;
                let sample = Sample {
                    step,
                    seconds,
                    user,
                    sys,
                    peak_rss_kib,
                };
                println!(
                    "    {:<10}{:<38}{:>8.3} s {:>7.2} CPU s {:>12}",
                    kind.key(),
                    step.label(),
                    sample.seconds,
                    sample.cpu(),
                    format_mib(sample.peak_rss_kib)
                );
                samples.push(sample);
            }
            runs[usize::from(kind == Kind::Usr)].push(samples);
        }
        load.push((load_start, load_average()));
        println!("    load average {load_start:.2} -> {:.2}", load_average());
        remove_dir(&dir)?;
        if index + 1 < args.runs {
            sync_and_pause(args.pause_secs)?;
        }
    }
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
        ballast_bytes: ballasts,
        load,
    };
    let json_path = bench_dir.join("unpack.json");
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
    fn unpack_defaults_to_1_gib_a_long_pause_and_quick_to_64_mib_once() {
        let parsed = parse_args(&args(&["unpack"])).unwrap();
        assert_eq!(parsed.scenario, Scenario::Unpack);
        assert_eq!(
            (parsed.size_mib, parsed.runs, parsed.pause_secs),
            (UNPACK_SIZE_MIB, 3, UNPACK_PAUSE_SECS)
        );
        let quick = parse_args(&args(&["unpack", "--quick"])).unwrap();
        assert_eq!(
            (quick.size_mib, quick.runs, quick.pause_secs),
            (QUICK_SIZE_MIB, 1, 0)
        );
        let given = parse_args(&args(&["unpack", "--size-mib", "256", "--pause", "5"])).unwrap();
        assert_eq!((given.size_mib, given.pause_secs), (256, 5));
    }

    #[test]
    fn orders_alternate() {
        assert_eq!(image_order(0), [Kind::Generated, Kind::Usr]);
        assert_eq!(image_order(1), [Kind::Usr, Kind::Generated]);
        assert_eq!(step_order(0)[0], Step::Umoci);
        assert_eq!(step_order(1)[6], Step::Umoci);
        assert_eq!(step_order(2), step_order(0));
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

    #[test]
    fn halves_and_ballast() {
        assert_eq!(split_half(&[1, 1, 1, 1]), 2);
        assert_eq!(split_half(&[10, 1, 1]), 1);
        assert_eq!(split_half(&[1, 1, 10]), 2);
        assert_eq!(split_half(&[5]), 1);
        assert_eq!(split_half(&[]), 0);
        assert_eq!(unpack_ballast(1 << 30, 20 << 30), 2 << 30);
        assert_eq!(unpack_ballast(8 << 30, 20 << 30), 8 << 30);
        assert_eq!(unpack_ballast(8 << 30, 10 << 30), 0);
    }

    #[test]
    fn listings_are_compared() {
        let dir = std::env::temp_dir().join(format!("xtask-unpack-{}", std::process::id()));
        let (a, b) = (dir.join("a"), dir.join("b"));
        for d in [&a, &b] {
            fs::create_dir_all(d.join("x/y")).unwrap();
            fs::write(d.join("x/f"), b"12345").unwrap();
            std::os::unix::fs::symlink("f", d.join("x/l")).unwrap();
        }
        let (la, lb) = (listing(&a).unwrap(), listing(&b).unwrap());
        assert!(differences(&la, &lb, 10).is_empty());
        let stats = listing_stats(&la);
        assert_eq!(
            (stats.files, stats.dirs, stats.symlinks, stats.bytes),
            (1, 2, 1, 5)
        );
        fs::write(b.join("x/f"), b"1234").unwrap();
        fs::write(b.join("extra"), b"").unwrap();
        let lb = listing(&b).unwrap();
        let diff = differences(&la, &lb, 10);
        assert_eq!(diff.len(), 2, "{diff:?}");
        assert!(diff[0].contains("File(5) against File(4)"), "{diff:?}");
        assert!(diff[1].contains("extra: only in the second"), "{diff:?}");
        assert_eq!(differences(&la, &lb, 1).len(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    fn report(hoist: f64, rss: u64) -> ImageReport {
        let run = |scale: f64| -> Vec<Sample> {
            [
                (Step::Umoci, 20.0, 20_000),
                (Step::UmociRaw, 12.0, 18_000),
                (Step::Hoist, hoist, rss),
                (Step::Gzip, 5.0, 2_000),
                (Step::Pigz, 3.0, 2_000),
                (Step::Zlib, 2.0, 9_000),
                (Step::Tar, 4.0, 3_000),
            ]
            .into_iter()
            .map(|(step, s, rss)| Sample {
                step,
                seconds: s * scale,
                user: s * scale,
                sys: 0.5,
                peak_rss_kib: rss,
            })
            .collect()
        };
        ImageReport {
            kind: Kind::Generated,
            layers: 8,
            layer_bytes: 600_000_000,
            tar_bytes: 1_080_000_000,
            manifest: "sha256:00".to_owned(),
            stats: TreeStats {
                files: 900,
                dirs: 150,
                symlinks: 18,
                bytes: 1 << 30,
            },
            runs: vec![run(1.0), run(0.9), run(1.1)],
        }
    }

    #[test]
    fn report_compares_hoist_with_umoci_and_the_bounds() {
        let image = report(5.0, 30_000);
        assert!((image.time_ratio() - 0.25).abs() < 1e-9);
        assert_eq!(image.bounds(), ((Step::Zlib, 2.0), (Step::Tar, 4.0)));
        assert!(image.targets().iter().all(|t| t.pass));
        let [vs_umoci, vs_bound] = image.run_ratios();
        assert_eq!(vs_umoci.len(), 3);
        assert!((vs_bound[0] - 1.25).abs() < 1e-9);
        let slow = report(12.0, 70_000);
        let verdicts: Vec<bool> = slow.targets().iter().map(|t| t.pass).collect();
        assert_eq!(verdicts, [false, false]);

        let unpack = UnpackReport {
            images: vec![image],
            cores: 2,
            versions: vec!["umoci version 0.4.7".to_owned()],
            hoist_revision: "cc97138".to_owned(),
            pause_secs: 90,
            ballast_bytes: vec![4 << 30; 3],
            load: vec![(0.5, 2.0)],
        };
        let table = unpack.table();
        assert!(table.contains("generated: hoist / umoci unpack"), "{table}");
        assert!(table.contains("0.25×") && table.contains("PASS"), "{table}");
        assert!(table.contains("hoist / (zlib_python3 + tar_x)"), "{table}");
        assert!(!table.contains("FAIL"), "{table}");
        assert!(table.contains("0.50 -> 2.00"), "{table}");
        let json = unpack.to_json();
        assert_eq!(json["scenario"], json!("unpack"));
        assert_eq!(
            json["images"]["generated"]["median_seconds"]["hoist_unpack"],
            json!(5.0)
        );
        assert_eq!(json["images"]["generated"]["slowest_bound"], json!("tar_x"));
        assert_eq!(json["targets"][1]["pass"], json!(true));
    }
}
