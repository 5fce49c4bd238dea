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

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::{
    BenchArgs, Target, ballast_bytes, build_hoist, format_mib, format_ratio, median, openssl_dgst,
    parse_mem_available, parse_openssl_digest, rate_mb_s, read_through, remove_dir, require_tools,
    run_status, sync_and_pause, target_dir, timed, verdict, write_ballast,
};

/// The default size of the generated tree, and that of `--quick`.
const BUILD_SIZE_MIB: u64 = 1024;
const QUICK_SIZE_MIB: u64 = 64;
/// The seed of the generated tree.
const SEED: u64 = 0x686f_6973_7462_6c64;
/// Files of the generated tree alternate random and text segments of this size.
const SEGMENT: usize = 64 << 10;
/// The smallest size class of the generated files; classes double [`SIZE_CLASSES`] times.
const MIN_FILE: u64 = 1 << 10;
const SIZE_CLASSES: u64 = 13;
/// The largest file of the generated tree (a quarter of its bytes are in files this large).
const LARGE_FILE: u64 = 64 << 20;
/// One file in this many of the generated tree gets a symbolic link beside it.
pub(super) const SYMLINK_EVERY: usize = 50;
/// Where the `usr` tree comes from, with each source's share of its size in thirds.
const USR_SOURCES: [(&str, u64); 2] = [("/usr/share", 2), ("/usr/lib", 1)];
/// `SOURCE_DATE_EPOCH` of hoist's builds (2023-11-14).
pub(super) const SOURCE_DATE_EPOCH: &str = "1700000000";
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

/// Sets the scenario's defaults for what the command line left out: [`BUILD_SIZE_MIB`], or
/// with `--quick` [`QUICK_SIZE_MIB`] and one run.
pub(super) fn apply_defaults(args: &mut BenchArgs, size_given: bool, runs_given: bool) {
    if !size_given {
        args.size_mib = if args.quick {
            QUICK_SIZE_MIB
        } else {
            BUILD_SIZE_MIB
        };
    }
    if args.quick && !runs_given {
        args.runs = 1;
    }
}

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
    if index.is_multiple_of(2) {
        [Tree::Generated, Tree::Usr]
    } else {
        [Tree::Usr, Tree::Generated]
    }
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

/// The order of run `index` (from 0): [`ORDER`] in even runs, reversed in odd ones.
fn step_order(index: usize) -> [Step; 8] {
    let mut order = ORDER;
    if !index.is_multiple_of(2) {
        order.reverse();
    }
    order
}

/// splitmix64: a small, fast generator, the same sequence everywhere for a seed.
#[derive(Debug)]
pub(super) struct Rng(pub(super) u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (`n` > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub(super) fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// Log-like text lines from a small vocabulary, common words more frequent.
#[derive(Debug)]
pub(super) struct Text {
    words: Vec<Vec<u8>>,
    line: u64,
}

impl Text {
    const LEVELS: [&'static str; 4] = ["INFO", "DEBUG", "WARN", "ERROR"];

    pub(super) fn new(rng: &mut Rng) -> Self {
        let words = (0..256)
            .map(|_| {
                let len = 2 + rng.below(8);
                (0..len).map(|_| b'a' + rng.below(26) as u8).collect()
            })
            .collect();
        Self { words, line: 0 }
    }

    /// Replaces `buf` with `len` bytes of text.
    fn fill(&mut self, rng: &mut Rng, buf: &mut Vec<u8>, len: usize) {
        buf.clear();
        while buf.len() < len {
            self.line += 1;
            let level = Self::LEVELS[rng.below(4) as usize];
            let _ = write!(buf, "{:08} {level} worker-{}:", self.line, rng.below(16));
            for _ in 0..4 + rng.below(9) {
                // The smaller of two draws: low indices are more frequent, as in real text.
                let word = rng.below(256).min(rng.below(256)) as usize;
                buf.push(b' ');
                buf.extend_from_slice(&self.words[word]);
            }
            buf.push(b'\n');
        }
        buf.truncate(len);
    }
}

/// The sizes of the generated tree's files for `total` bytes: log-uniform ones making three
/// quarters of it, then files of at most [`LARGE_FILE`] for the rest.
pub(super) fn file_sizes(rng: &mut Rng, total: u64) -> (Vec<u64>, Vec<u64>) {
    let small_budget = total - total / 4;
    let mut small = Vec::new();
    let mut sum = 0;
    while sum < small_budget {
        let class = MIN_FILE << rng.below(SIZE_CLASSES);
        let size = (class + rng.below(class)).min(small_budget - sum);
        small.push(size);
        sum += size;
    }
    let mut large = Vec::new();
    let mut rest = total - sum;
    while rest > 0 {
        let size = rest.min(LARGE_FILE);
        large.push(size);
        rest -= size;
    }
    (small, large)
}

/// What a tree holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct TreeStats {
    pub(super) files: u64,
    pub(super) dirs: u64,
    pub(super) symlinks: u64,
    /// Bytes of the regular files.
    pub(super) bytes: u64,
}

/// Writes `size` bytes into `path`: alternating random and text segments, text first if
/// `text_first`.
pub(super) fn write_generated(
    path: &Path,
    size: u64,
    text_first: bool,
    rng: &mut Rng,
    text: &mut Text,
    buf: &mut Vec<u8>,
) -> Result<()> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut left = size;
    let mut is_text = text_first;
    while left > 0 {
        let n = usize::try_from(left.min(SEGMENT as u64)).unwrap_or(SEGMENT);
        if is_text {
            text.fill(rng, buf, n);
        } else {
            buf.resize(n, 0);
            rng.fill(buf);
        }
        out.write_all(buf)
            .with_context(|| format!("cannot write {}", path.display()))?;
        left -= n as u64;
        is_text = !is_text;
    }
    out.flush()
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Makes the generated tree of `total` bytes under `dir` (which must not exist).
fn generate_tree(dir: &Path, total: u64) -> Result<TreeStats> {
    let mut rng = Rng(SEED);
    let mut text = Text::new(&mut rng);
    let (small, large) = file_sizes(&mut rng, total);
    let mut stats = TreeStats::default();
    let mut buf = Vec::with_capacity(SEGMENT);
    let make_dir = |path: &Path, stats: &mut TreeStats| -> Result<()> {
        if !path.exists() {
            fs::create_dir_all(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            stats.dirs += 1;
        }
        Ok(())
    };
    make_dir(dir, &mut stats)?;
    for (i, &size) in small.iter().enumerate() {
        let parent = dir
            .join(format!("d{:02}", i % 16))
            .join(format!("s{}", (i / 16) % 8));
        make_dir(&parent, &mut stats)?;
        let text_first = i % 2 == 0;
        let name = format!("f{i:05}.{}", if text_first { "log" } else { "bin" });
        write_generated(
            &parent.join(&name),
            size,
            text_first,
            &mut rng,
            &mut text,
            &mut buf,
        )?;
        stats.files += 1;
        stats.bytes += size;
        if i % SYMLINK_EVERY == 0 {
            let link = parent.join(format!("link-{i:05}"));
            std::os::unix::fs::symlink(&name, &link)
                .with_context(|| format!("cannot create {}", link.display()))?;
            stats.symlinks += 1;
        }
    }
    let big = dir.join("big");
    make_dir(&big, &mut stats)?;
    for (i, &size) in large.iter().enumerate() {
        let path = big.join(format!("large-{i}.bin"));
        write_generated(&path, size, i % 2 == 1, &mut rng, &mut text, &mut buf)?;
        stats.files += 1;
        stats.bytes += size;
    }
    Ok(stats)
}

/// Calls `f` on every entry under `dir` (not `dir` itself), depth first, siblings in byte
/// order of their names, with its `symlink_metadata`; `f` returns `false` to stop the walk,
/// which then returns `false`. Directories that cannot be listed for lack of permission are
/// skipped.
pub(super) fn walk(
    dir: &Path,
    f: &mut dyn FnMut(&Path, &fs::Metadata) -> Result<bool>,
) -> Result<bool> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Ok(true),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    let mut names = entries
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<Vec<_>>>()
        .with_context(|| format!("cannot list {}", dir.display()))?;
    names.sort();
    for name in names {
        let path = dir.join(name);
        let meta = fs::symlink_metadata(&path)
            .with_context(|| format!("cannot stat {}", path.display()))?;
        if !f(&path, &meta)? {
            return Ok(false);
        }
        if meta.is_dir() && !walk(&path, f)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Copies the start of a sorted walk of each of [`USR_SOURCES`] into `dir/NAME` (`share`,
/// `lib`): directories, symbolic links and regular files, until the source's share of
/// `budget` bytes of files is reached. Files that cannot be read are left out.
pub(super) fn copy_usr(dir: &Path, budget: u64) -> Result<TreeStats> {
    let mut stats = TreeStats::default();
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    stats.dirs += 1;
    for (source, thirds) in USR_SOURCES {
        let source = Path::new(source);
        let name = source.file_name().context("a source has no name")?;
        let target = dir.join(name);
        fs::create_dir_all(&target)
            .with_context(|| format!("cannot create {}", target.display()))?;
        stats.dirs += 1;
        let limit = budget / 3 * thirds;
        let mut copied = 0;
        walk(source, &mut |path, meta| {
            let rel = path.strip_prefix(source)?;
            let to = target.join(rel);
            let kind = meta.file_type();
            if kind.is_dir() {
                fs::create_dir(&to).with_context(|| format!("cannot create {}", to.display()))?;
                stats.dirs += 1;
            } else if kind.is_symlink() {
                let link = fs::read_link(path)
                    .with_context(|| format!("cannot read link {}", path.display()))?;
                std::os::unix::fs::symlink(&link, &to)
                    .with_context(|| format!("cannot create {}", to.display()))?;
                stats.symlinks += 1;
            } else if kind.is_file() {
                if copied + meta.len() > limit {
                    return Ok(false);
                }
                match fs::copy(path, &to) {
                    Ok(n) => {
                        copied += n;
                        stats.files += 1;
                        stats.bytes += n;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {}
                    Err(e) => {
                        return Err(e).with_context(|| format!("cannot copy {}", path.display()));
                    }
                }
            }
            Ok(true)
        })?;
    }
    Ok(stats)
}

/// Reads every regular file under `dir`, so that the next step finds the tree in the page
/// cache.
pub(super) fn warm_tree(dir: &Path) -> Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    walk(dir, &mut |path, meta| {
        if meta.is_file() {
            let mut file =
                File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            while file
                .read(&mut buf)
                .with_context(|| format!("cannot read {}", path.display()))?
                > 0
            {}
        }
        Ok(true)
    })?;
    Ok(())
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

/// User seconds, system seconds and peak RSS in KiB, as GNU `time -f "%U %S %M"` writes them
/// (the last line; a line about the exit status may precede it).
pub(super) fn parse_time_line(text: &str) -> Option<(f64, f64, u64)> {
    let line = text.lines().rfind(|l| !l.trim().is_empty())?;
    let mut parts = line.split_whitespace();
    let user = parts.next()?.parse().ok()?;
    let sys = parts.next()?.parse().ok()?;
    let rss = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((user, sys, rss))
}

/// `program` under GNU `time`, which writes user and system seconds and the peak RSS into
/// `time_file`.
pub(super) fn with_time(time_file: &Path, program: &Path) -> Command {
    let mut cmd = Command::new("/usr/bin/time");
    cmd.args(["-f", "%U %S %M", "-o"])
        .arg(time_file)
        .arg(program);
    cmd
}

/// Runs `cmd` with its stdout read and thrown away by xtask, timing it from spawn to exit;
/// returns the seconds and the bytes read.
fn timed_drain(cmd: &mut Command) -> Result<(f64, u64)> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("failed to start {}", super::describe(cmd)))?;
    let mut stdout = child.stdout.take().context("no stdout pipe")?;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = stdout.read(&mut buf).context("cannot read the pipe")?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    let status = child.wait()?;
    let seconds = started.elapsed().as_secs_f64();
    if !status.success() {
        bail!("{} failed ({status})", super::describe(cmd));
    }
    Ok((seconds, total))
}

/// The manifest an OCI layout tags `tag`, and its layers (digest, size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LayoutImage {
    pub(super) manifest: String,
    pub(super) layers: Vec<(String, u64)>,
}

pub(super) fn read_json(path: &Path) -> Result<Value> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

pub(super) fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// Reads the image tagged `tag` in `layout`.
pub(super) fn layout_image(layout: &Path, tag: &str) -> Result<LayoutImage> {
    let index = read_json(&layout.join("index.json"))?;
    let manifest = index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .and_then(|m| m["digest"].as_str())
        .with_context(|| format!("{} has no manifest tagged {tag}", layout.display()))?
        .to_owned();
    let body = read_json(&blob_path(layout, &manifest))?;
    let layers = body["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            let digest = l["digest"].as_str().context("a layer has no digest")?;
            let size = l["size"].as_u64().context("a layer has no size")?;
            Ok((digest.to_owned(), size))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(LayoutImage { manifest, layers })
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
    let (_, output) = timed(&mut openssl_dgst(&tar))?;
    let tar_digest = parse_openssl_digest(&String::from_utf8_lossy(&output.stdout))?;
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
    user: f64,
    sys: f64,
    peak_rss_kib: u64,
    /// The layer a tool wrote, in bytes.
    layer_bytes: Option<u64>,
}

impl Sample {
    fn cpu(&self) -> f64 {
        self.user + self.sys
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
            run_status(&mut Command::new("sync"))?;
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
            cmd.arg(format!("if={}", source.layer.display()))
                .arg(format!("of={}", target.display()))
                .args(["bs=1M", "conv=fdatasync"]);
            let (seconds, _) = timed(&mut cmd)?;
            let written = fs::metadata(&target)?.len();
            if written != source.layer_bytes {
                bail!("dd wrote {written} bytes, expected {}", source.layer_bytes);
            }
            seconds
        }
    };
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
        layer_bytes,
    })
}

/// What one tree's runs measured.
#[derive(Debug)]
struct TreeReport {
    tree: Tree,
    stats: TreeStats,
    tar_bytes: u64,
    hoist_layer_bytes: u64,
    manifest: String,
    runs: Vec<Vec<Sample>>,
}

impl TreeReport {
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

    fn umoci_layer_bytes(&self) -> Option<u64> {
        self.samples(Step::Umoci)
            .first()
            .and_then(|s| s.layer_bytes)
    }

    /// The slowest of the bounds' medians, and which it is.
    fn bound(&self) -> (Step, f64) {
        let mut slowest = (Step::BOUNDS[0], self.median(Step::BOUNDS[0]));
        for step in &Step::BOUNDS[1..] {
            let m = self.median(*step);
            if m > slowest.1 {
                slowest = (*step, m);
            }
        }
        slowest
    }

    fn time_ratio(&self) -> f64 {
        self.median(Step::Hoist) / self.median(Step::Umoci)
    }

    /// Per run: hoist / umoci, hoist / the slowest bound.
    fn run_ratios(&self) -> [Vec<f64>; 2] {
        let at = |run: &[Sample], step| run.iter().find(|s| s.step == step).map(|s| s.seconds);
        let per_run = |f: &dyn Fn(&[Sample]) -> Option<f64>| -> Vec<f64> {
            self.runs.iter().filter_map(|run| f(run)).collect()
        };
        [
            per_run(&|run| Some(at(run, Step::Hoist)? / at(run, Step::Umoci)?)),
            per_run(&|run| {
                let bound = Step::BOUNDS
                    .iter()
                    .map(|&s| at(run, s))
                    .collect::<Option<Vec<f64>>>()?
                    .into_iter()
                    .fold(f64::NAN, f64::max);
                Some(at(run, Step::Hoist)? / bound)
            }),
        ]
    }

    fn targets(&self) -> Vec<Target> {
        let [time_name, rss_name] = self.tree.target_names();
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
    fn reported(&self, cores: usize) -> Vec<(String, String)> {
        let key = self.tree.key();
        let (bound_step, bound) = self.bound();
        let hoist = self.median(Step::Hoist);
        let mb_s = |step| rate_mb_s(self.tar_bytes, self.median(step));
        let mut lines = vec![
            (
                format!("{key}: hoist / slowest bound ({})", bound_step.key()),
                format_ratio(hoist / bound),
            ),
            (
                format!("{key}: hoist MB/s / pigz 1 core MB/s"),
                format_ratio(mb_s(Step::Hoist) / mb_s(Step::GzipOne)),
            ),
            (
                format!("{key}: hoist / pigz {cores} cores"),
                format_ratio(hoist / self.median(Step::GzipAll)),
            ),
            (
                format!("{key}: hoist CPU s / pigz 1 core CPU s"),
                format_ratio(self.median_cpu(Step::Hoist) / self.median_cpu(Step::GzipOne)),
            ),
            (
                format!("{key}: hoist 1 thread / hoist"),
                format_ratio(self.median(Step::HoistOneThread) / hoist),
            ),
            (
                format!("{key}: umoci peak RSS (max)"),
                format_mib(self.max_rss(Step::Umoci)),
            ),
        ];
        if let Some(umoci) = self.umoci_layer_bytes() {
            lines.push((
                format!("{key}: layer MB, hoist / umoci"),
                format!(
                    "{} / {}",
                    self.hoist_layer_bytes / 1_000_000,
                    umoci / 1_000_000
                ),
            ));
        }
        lines
    }

    fn table(&self, out: &mut String, cores: usize, level: u32) {
        let runs = self.runs.len();
        let s = &self.stats;
        let _ = writeln!(
            out,
            "tree {}: {} files, {} dirs, {} symlinks, {:.1} MiB of files; tar {} MB; \
             manifest {}",
            self.tree.key(),
            s.files,
            s.dirs,
            s.symlinks,
            s.bytes as f64 / f64::from(1 << 20),
            self.tar_bytes / 1_000_000,
            self.manifest
        );
        let header = |out: &mut String, title: &str, last: &str| {
            let _ = write!(out, "{title:<38}");
            for i in 1..=runs {
                let _ = write!(out, "{:>10}", format!("run {i}"));
            }
            let _ = writeln!(out, "{:>10}{last:>10}", "median");
        };
        header(out, "seconds (MB/s of the tar)", "MB/s");
        for step in Step::ALL {
            let _ = write!(out, "{:<38}", step.label(cores, level));
            for v in self.seconds(step) {
                let _ = write!(out, "{v:>10.3}");
            }
            let m = self.median(step);
            let _ = writeln!(out, "{m:>10.3}{:>10.0}", rate_mb_s(self.tar_bytes, m));
        }
        let [vs_umoci, vs_bound] = self.run_ratios();
        for (name, ratios) in [
            ("hoist / umoci", vs_umoci),
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
            let _ = write!(out, "{:<38}", step.label(cores, level));
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
            let _ = write!(out, "{:<38}", step.label(cores, level));
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

    fn to_json(&self, cores: usize) -> Value {
        let by_step = |f: &dyn Fn(Step) -> Value| -> serde_json::Map<String, Value> {
            Step::ALL
                .iter()
                .map(|&s| (s.key().to_owned(), f(s)))
                .collect()
        };
        let [vs_umoci, vs_bound] = self.run_ratios();
        let (bound_step, _) = self.bound();
        json!({
            "files": self.stats.files,
            "dirs": self.stats.dirs,
            "symlinks": self.stats.symlinks,
            "file_bytes": self.stats.bytes,
            "tar_bytes": self.tar_bytes,
            "manifest": self.manifest,
            "hoist_layer_bytes": self.hoist_layer_bytes,
            "umoci_layer_bytes": self.umoci_layer_bytes(),
            "order": self.runs.iter()
                .map(|run| run.iter().map(|s| s.step.key()).collect::<Vec<_>>())
                .collect::<Vec<_>>(),
            "seconds": by_step(&|s| json!(self.seconds(s))),
            "median_seconds": by_step(&|s| json!(self.median(s))),
            "user_seconds": by_step(&|s| json!(self.samples(s).iter().map(|x| x.user).collect::<Vec<_>>())),
            "sys_seconds": by_step(&|s| json!(self.samples(s).iter().map(|x| x.sys).collect::<Vec<_>>())),
            "peak_rss_kib": by_step(&|s| json!(self.samples(s).iter().map(|x| x.peak_rss_kib).collect::<Vec<_>>())),
            "slowest_bound": bound_step.key(),
            "ratios_per_run": {
                "hoist_over_umoci": vs_umoci,
                "hoist_over_slowest_bound": vs_bound,
            },
            "reported": self.reported(cores).into_iter()
                .map(|(name, value)| json!({ "name": name, "value": value }))
                .collect::<Vec<_>>(),
        })
    }
}

/// Everything the scenario measured.
#[derive(Debug)]
struct BuildReport {
    trees: Vec<TreeReport>,
    cores: usize,
    gzip_level: u32,
    umoci_version: String,
    pigz_version: String,
    hoist_revision: String,
    pause_secs: u64,
    ballast_bytes: Vec<u64>,
    /// The 1-minute load average when each run started and ended (others share the machine).
    load: Vec<(f64, f64)>,
}

impl BuildReport {
    fn targets(&self) -> Vec<Target> {
        self.trees.iter().flat_map(TreeReport::targets).collect()
    }

    fn table(&self) -> String {
        let mut out = String::new();
        let runs = self.trees.first().map_or(0, |t| t.runs.len());
        let ballast = match self.ballast_bytes.iter().max() {
            Some(&max) if max > 0 => format!("up to {} MiB ballast before each run", max >> 20),
            _ => "no ballast".to_owned(),
        };
        let _ = writeln!(
            out,
            "build bench: hoist build (SOURCE_DATE_EPOCH={SOURCE_DATE_EPOCH}, default gzip, \
             level {} = DEFAULT_GZIP_LEVEL, all cores)\nvs {} (umoci insert --rootless into a \
             new layout made by umoci init + new, untimed; pgzip default level);\n{runs} \
             run(s), {ballast}, {} s pause after each run; {} cores; {};\ntrees and step \
             order alternate between runs; before every step: sync, untimed read of its \
             input;\nevery step writes into a new directory; hoist built from {}\n",
            self.gzip_level,
            self.umoci_version,
            self.pause_secs,
            self.cores,
            self.pigz_version,
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
        for tree in &self.trees {
            tree.table(&mut out, self.cores, self.gzip_level);
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
        for tree in &self.trees {
            for (name, value) in tree.reported(self.cores) {
                let _ = writeln!(out, "{name:<52}{value:>11}{:>11}   (reported)", "-");
            }
        }
        out
    }

    fn to_json(&self) -> Value {
        let trees: serde_json::Map<String, Value> = self
            .trees
            .iter()
            .map(|t| (t.tree.key().to_owned(), t.to_json(self.cores)))
            .collect();
        json!({
            "scenario": "build",
            "source_date_epoch": SOURCE_DATE_EPOCH,
            "hoist_gzip_level": self.gzip_level,
            "umoci": self.umoci_version,
            "pigz": self.pigz_version,
            "hoist_revision": self.hoist_revision,
            "cores": self.cores,
            "runs": self.trees.first().map_or(0, |t| t.runs.len()),
            "pause_secs": self.pause_secs,
            "ballast_bytes": self.ballast_bytes,
            "load_average_start_end": self.load,
            "trees": trees,
            "targets": self.targets().iter().map(|t| json!({
                "name": t.name,
                "value": t.value,
                "limit": t.limit_value,
                "pass": t.pass,
            })).collect::<Vec<_>>(),
        })
    }
}

/// The 1-minute load average of `/proc/loadavg` (NaN if unreadable).
pub(super) fn load_average() -> f64 {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The first line a tool prints about its version, on stdout or stderr.
pub(super) fn version(program: &str, arg: &str) -> String {
    Command::new(program)
        .arg(arg)
        .output()
        .ok()
        .and_then(|o| {
            let text = [o.stdout, o.stderr].concat();
            String::from_utf8_lossy(&text)
                .lines()
                .find(|l| !l.trim().is_empty())
                .map(|l| l.trim().to_owned())
        })
        .unwrap_or_else(|| format!("{program} (unknown version)"))
}

/// `HEAD`'s short hash and how many files of the crates differ from it (`unknown` without git).
pub(super) fn revision(root: &Path) -> String {
    let git = |args: &[&str]| -> Option<String> {
        let output = Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let status = ["status", "--porcelain", "--", "crates", "Cargo.toml"];
    match (git(&["rev-parse", "--short", "HEAD"]), git(&status)) {
        (Some(head), Some(status)) => match status.lines().count() {
            0 => head.trim().to_owned(),
            n => format!("{} + {n} uncommitted file(s) under crates/", head.trim()),
        },
        _ => "unknown".to_owned(),
    }
}

pub(super) fn run(root: &Path, args: &BenchArgs) -> Result<()> {
    require_tools(&["umoci", "pigz", "openssl", "dd", "tar"])?;
    if !Path::new("/usr/bin/time").exists() {
        bail!("GNU time is not installed at /usr/bin/time (apt-get install -y time)");
    }
    let compress_rs = root.join(COMPRESS_RS);
    let gzip_level = fs::read_to_string(&compress_rs)
        .ok()
        .as_deref()
        .and_then(parse_default_gzip_level)
        .with_context(|| format!("no DEFAULT_GZIP_LEVEL in {}", compress_rs.display()))?;
    let hoist = build_hoist(root)?;
    let hoist_revision = revision(root);
    let umoci_version = version("umoci", "--version");
    let pigz_version = version("pigz", "--version");
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let bench_dir = target_dir(root).join("bench");
    let work = bench_dir.join("build-work");
    if work.to_string_lossy().contains(':') {
        bail!(
            "{} contains `:`, which oci:DIR:TAG and umoci's --image cannot express",
            work.display()
        );
    }
    remove_dir(&work)?;
    fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
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
    let generated = generate_tree(&generated_dir, size_bytes)?;
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
    for index in 0..args.runs {
        let dir = work.join(format!("run-{}", index + 1));
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        println!("==> run {} of {}", index + 1, args.runs);
        let ballast = if args.ballast {
            let meminfo =
                fs::read_to_string("/proc/meminfo").context("cannot read /proc/meminfo")?;
            let available =
                parse_mem_available(&meminfo).context("no MemAvailable in /proc/meminfo")?;
            ballast_bytes(run_writes, available.saturating_sub(kept))
        } else {
            0
        };
        if ballast > 0 {
            println!("    ballast: {} MiB (untimed)", ballast >> 20);
            write_ballast(&dir.join("ballast"), ballast)?;
        }
        ballasts.push(ballast);
        let load_start = load_average();
        for tree in tree_order(index) {
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
            for step in step_order(index) {
                run_status(&mut Command::new("sync"))?;
                warm(step, cx.source)?;
                let sample = measure(step, &cx)?;
                println!(
                    "    {:<10}{:<38}{:>8.3} s {:>7.2} CPU s {:>12}",
                    tree.key(),
                    step.label(cores, gzip_level),
                    sample.seconds,
                    sample.cpu(),
                    format_mib(sample.peak_rss_kib)
                );
                samples.push(sample);
            }
            runs[usize::from(tree == Tree::Usr)].push(samples);
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
        ballast_bytes: ballasts,
        load,
    };
    let json_path = bench_dir.join("build.json");
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
    fn build_defaults_to_1_gib_and_quick_to_64_mib_once() {
        let parsed = parse_args(&args(&["build"])).unwrap();
        assert_eq!(parsed.scenario, Scenario::Build);
        assert_eq!((parsed.size_mib, parsed.runs), (BUILD_SIZE_MIB, 3));
        let quick = parse_args(&args(&["build", "--quick"])).unwrap();
        assert_eq!((quick.size_mib, quick.runs), (QUICK_SIZE_MIB, 1));
        let given = parse_args(&args(&["build", "--size-mib", "256", "--runs", "2"])).unwrap();
        assert_eq!((given.size_mib, given.runs), (256, 2));
    }

    #[test]
    fn the_generator_is_seeded_and_sizes_add_up() {
        let (mut a, mut b) = (Rng(SEED), Rng(SEED));
        let (sa, sb) = (file_sizes(&mut a, 1 << 30), file_sizes(&mut b, 1 << 30));
        assert_eq!(sa, sb);
        let (small, large) = sa;
        let total: u64 = small.iter().chain(&large).sum();
        assert_eq!(total, 1 << 30);
        assert_eq!(large, vec![LARGE_FILE; 4]);
        assert!(small.len() > 500, "{}", small.len());
        assert!(
            small
                .iter()
                .all(|&s| s > 0 && s < 2 * (MIN_FILE << SIZE_CLASSES))
        );

        let mut text = Text::new(&mut a);
        let mut buf = Vec::new();
        text.fill(&mut a, &mut buf, 10_000);
        assert_eq!(buf.len(), 10_000);
        assert!(buf.iter().all(|b| b.is_ascii()));
        assert!(buf.windows(5).any(|w| w == b"INFO "));
    }

    #[test]
    fn orders_alternate() {
        assert_eq!(tree_order(0), [Tree::Generated, Tree::Usr]);
        assert_eq!(tree_order(1), [Tree::Usr, Tree::Generated]);
        assert_eq!(step_order(0)[0], Step::Umoci);
        assert_eq!(step_order(1)[7], Step::Umoci);
        assert_eq!(step_order(2), step_order(0));
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
    fn level_and_time_lines_are_parsed() {
        let source = "/// doc\npub const DEFAULT_GZIP_LEVEL: u32 = 1;\npub const X: u32 = 2;\n";
        assert_eq!(parse_default_gzip_level(source), Some(1));
        assert_eq!(parse_default_gzip_level("const Y: u32 = 1;"), None);
        assert_eq!(
            parse_time_line("4.51 0.62 20480\n"),
            Some((4.51, 0.62, 20480))
        );
        assert_eq!(
            parse_time_line("Command exited with non-zero status 1\n0.00 0.00 1234\n"),
            Some((0.0, 0.0, 1234))
        );
        assert_eq!(parse_time_line("Command terminated by signal 9\n"), None);
        assert_eq!(parse_time_line(""), None);
    }

    #[test]
    fn layout_images_are_read() {
        let dir = std::env::temp_dir().join(format!("xtask-build-layout-{}", std::process::id()));
        let blobs = dir.join("blobs/sha256");
        fs::create_dir_all(&blobs).unwrap();
        fs::write(
            blobs.join("aa"),
            r#"{"layers":[{"digest":"sha256:bb","size":12}]}"#,
        )
        .unwrap();
        fs::write(
            dir.join("index.json"),
            r#"{"manifests":[{"digest":"sha256:aa","annotations":{"org.opencontainers.image.ref.name":"base"}}]}"#,
        )
        .unwrap();
        let image = layout_image(&dir, "base").unwrap();
        assert_eq!(image.manifest, "sha256:aa");
        assert_eq!(image.layers, vec![("sha256:bb".to_owned(), 12)]);
        assert!(layout_image(&dir, "other").is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    fn report(hoist: f64, rss: u64) -> TreeReport {
        let run = |scale: f64| -> Vec<Sample> {
            [
                (Step::Umoci, 20.0, 40_000),
                (Step::Hoist, hoist, rss),
                (Step::HoistOneThread, 2.0 * hoist, rss),
                (Step::TarRead, 2.0, 3_000),
                (Step::GzipOne, 8.0, 2_000),
                (Step::GzipAll, 4.0, 3_000),
                (Step::Sha, 1.0, 2_000),
                (Step::Write, 3.0, 2_000),
            ]
            .into_iter()
            .map(|(step, s, rss)| Sample {
                step,
                seconds: s * scale,
                user: s * scale,
                sys: 0.5,
                peak_rss_kib: rss,
                layer_bytes: (step == Step::Umoci).then_some(500_000_000),
            })
            .collect()
        };
        TreeReport {
            tree: Tree::Generated,
            stats: TreeStats {
                files: 900,
                dirs: 150,
                symlinks: 18,
                bytes: 1 << 30,
            },
            tar_bytes: 1_075_000_000,
            hoist_layer_bytes: 600_000_000,
            manifest: "sha256:00".to_owned(),
            runs: vec![run(1.0), run(0.9), run(1.1)],
        }
    }

    #[test]
    fn report_compares_hoist_with_umoci_and_the_bounds() {
        let tree = report(5.0, 30_000);
        assert!((tree.time_ratio() - 0.25).abs() < 1e-9);
        assert_eq!(tree.bound(), (Step::GzipAll, 4.0));
        let targets = tree.targets();
        assert!(targets.iter().all(|t| t.pass), "{targets:#?}");
        let [vs_umoci, vs_bound] = tree.run_ratios();
        assert_eq!(vs_umoci.len(), 3);
        assert!((vs_bound[0] - 1.25).abs() < 1e-9);
        let slow = report(12.0, 70_000);
        let verdicts: Vec<bool> = slow.targets().iter().map(|t| t.pass).collect();
        assert_eq!(verdicts, [false, false]);

        let build = BuildReport {
            trees: vec![tree],
            cores: 2,
            gzip_level: 1,
            umoci_version: "umoci version 0.4.7".to_owned(),
            pigz_version: "pigz 2.6".to_owned(),
            hoist_revision: "3a12748".to_owned(),
            pause_secs: 20,
            ballast_bytes: vec![4 << 30; 3],
            load: vec![(0.5, 2.0)],
        };
        let table = build.table();
        assert!(table.contains("generated: hoist / umoci insert"), "{table}");
        assert!(table.contains("0.25×") && table.contains("PASS"), "{table}");
        assert!(table.contains("pigz -p 2 -1 of the tar"), "{table}");
        assert!(!table.contains("FAIL"), "{table}");
        assert!(table.contains("0.50 -> 2.00"), "{table}");
        let json = build.to_json();
        assert_eq!(json["scenario"], json!("build"));
        assert_eq!(
            json["trees"]["generated"]["median_seconds"]["hoist_build"],
            json!(5.0)
        );
        assert_eq!(
            json["trees"]["generated"]["umoci_layer_bytes"],
            json!(500_000_000)
        );
        assert_eq!(json["targets"][1]["pass"], json!(true));
    }
}
