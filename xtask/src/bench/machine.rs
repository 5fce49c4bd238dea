//! The machine around the measures, shared by every scenario: where the bench works, the tools
//! it needs, the page cache (`sync`, pauses, untimed reads, the ballast), the machine's own
//! limits (`openssl dgst`, `dd`), and what the reports say of the machine and the source.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::measure::timed;
use crate::run_status;

/// Where the bench works and writes its results.
#[derive(Debug)]
pub(super) struct Workspace {
    /// `target/bench`, where `SCENARIO.json` goes.
    pub(super) bench_dir: PathBuf,
    /// `target/bench/SCENARIO-work`, emptied when made, removed at the end.
    pub(super) work: PathBuf,
}

impl Workspace {
    /// Makes `target/bench/SCENARIO-work` afresh. `no_colon` names the references that cannot
    /// hold a path with a `:` in it, if the scenario uses any.
    pub(super) fn new(root: &Path, scenario: &str, no_colon: Option<&str>) -> Result<Self> {
        let bench_dir = crate::dist::target_dir(root)?.join("bench");
        let work = bench_dir.join(format!("{scenario}-work"));
        if let Some(references) = no_colon
            && work.to_string_lossy().contains(':')
        {
            bail!(
                "{} contains `:`, which {references} cannot express",
                work.display()
            );
        }
        remove_dir(&work)?;
        fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
        Ok(Self { bench_dir, work })
    }

    /// `work/run-N` for run `index` (from 0), made.
    pub(super) fn run_dir(&self, index: usize) -> Result<PathBuf> {
        let dir = self.work.join(format!("run-{}", index + 1));
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(dir)
    }
}

/// Builds the `hoist` command line as `cargo xtask dist` ships it (the `dist` profile: fat LTO,
/// one codegen unit) and returns its path: the benchmark measures what users run.
pub(super) fn build_hoist(root: &Path) -> Result<PathBuf> {
    crate::dist::build_binary(root)
}

/// How to install `tool` on Debian: the package that has it, or the script that does it.
pub(super) fn install_hint(tool: &str) -> String {
    match tool {
        "dd" | "cat" => "apt-get install -y coreutils".to_owned(),
        "python3" => "apt-get install -y python3".to_owned(),
        "wrk" => "apt-get install -y wrk (the HTTP load tester; not in tests/peers/install.sh, \
                  which CI runs)"
            .to_owned(),
        "oras" => "apt-get install -y -t trixie oras, Debian trixie's oras 1.2, or \
                   tests/peers/install.sh"
            .to_owned(),
        "moto_server" => "tests/peers/install.sh, which puts moto[server] in a venv".to_owned(),
        "skopeo" | "umoci" | "docker-registry" | "curl" => {
            format!("apt-get install -y {tool}, or tests/peers/install.sh")
        }
        _ => format!("apt-get install -y {tool}"),
    }
}

/// Fails unless every one of `tools` is on the `PATH`, naming how to install each one missing
/// ([`install_hint`]).
pub(super) fn require_tools(tools: &[&str]) -> Result<()> {
    let missing = missing_tools(tools);
    if missing.is_empty() {
        return Ok(());
    }
    let hints: Vec<String> = missing
        .iter()
        .map(|tool| format!("`{tool}` is not installed ({})", install_hint(tool)))
        .collect();
    bail!("{}", hints.join("; "))
}

/// Those of `tools` that are not on the `PATH`.
pub(super) fn missing_tools<'a>(tools: &[&'a str]) -> Vec<&'a str> {
    tools
        .iter()
        .copied()
        .filter(|tool| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .collect()
}

/// The bytes free for an unprivileged user on the filesystem of `path` (`df`'s "Avail").
pub(super) fn free_disk_bytes(path: &Path) -> Result<u64> {
    let (_, output) = timed(Command::new("df").args(["-P", "-B1"]).arg(path))?;
    let text = String::from_utf8_lossy(&output.stdout);
    parse_df_avail(&text)
        .with_context(|| format!("no free space in `df` of {}: {text:?}", path.display()))
}

/// The "Avail" column of `df -P -B1`'s one line about a filesystem.
pub(super) fn parse_df_avail(text: &str) -> Option<u64> {
    text.lines().nth(1)?.split_whitespace().nth(3)?.parse().ok()
}

/// Fails, saying what for and how much is missing, unless the filesystem of `path` has
/// `needed` bytes free.
pub(super) fn require_free_disk(path: &Path, needed: u64, what: &str) -> Result<()> {
    let free = free_disk_bytes(path)?;
    if free < needed {
        bail!(
            "not enough free disk space under {} for {what}: {:.1} GiB needed, {:.1} GiB free; \
             free some space or ask for less (`--size-mib`, `--runs`)",
            path.display(),
            needed as f64 / f64::from(1u32 << 30),
            free as f64 / f64::from(1u32 << 30)
        );
    }
    println!(
        "    disk: {:.1} GiB needed for {what}, {:.1} GiB free",
        needed as f64 / f64::from(1u32 << 30),
        free as f64 / f64::from(1u32 << 30)
    );
    Ok(())
}

/// Removes the file `path`, if it is there.
pub(super) fn remove_file(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
}

pub(super) fn remove_dir(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", dir.display())),
    }
}

/// `sync`, so that no step pays for the write-back of another.
pub(super) fn sync() -> Result<()> {
    run_status(&mut Command::new("sync"))
}

/// `sync`, then a pause of `seconds` (after a large deletion the machine is slower for a
/// while).
pub(super) fn sync_and_pause(seconds: u64) -> Result<()> {
    sync()?;
    if seconds > 0 {
        println!("    sync, pause {seconds} s");
        std::thread::sleep(Duration::from_secs(seconds));
    }
    Ok(())
}

/// Reads `file` to the end and throws the bytes away (so that it is in the page cache).
pub(super) fn read_through(file: &Path) -> Result<()> {
    read_through_with(file, &mut vec![0u8; 1 << 20])
}

/// [`read_through`] with the buffer `buffer`.
fn read_through_with(file: &Path, buffer: &mut [u8]) -> Result<()> {
    let mut f = File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    while f
        .read(buffer)
        .with_context(|| format!("cannot read {}", file.display()))?
        > 0
    {}
    Ok(())
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

/// Reads every regular file under `dir`, so that the next step finds the tree in the page
/// cache.
pub(super) fn warm_tree(dir: &Path) -> Result<()> {
    let mut buffer = vec![0u8; 1 << 20];
    walk(dir, &mut |path, meta| {
        if meta.is_file() {
            read_through_with(path, &mut buffer)?;
        }
        Ok(true)
    })?;
    Ok(())
}

/// The size of the ballast written before each run, in multiples of the bytes a run writes:
/// more than a run frees (the dd copy, the blob and the previous ballast) minus what the host
/// has taken back after the pause.
///
/// Why a ballast: memory freed recently, by the previous run or anyone else, is still backed
/// by the host and much faster to write into than memory it has taken back, so without it the
/// first tool of a run writes faster than the next; the ballast uses that memory up, so every
/// timed tool writes into fresh memory alike.
const BALLAST_FACTOR: u64 = 4;
/// Memory the ballast leaves to the rest of the machine, beyond what the run itself needs.
pub(super) const BALLAST_SPARE: u64 = 4 << 30;

/// How much ballast to write for blobs of `size` bytes when the machine has `available` bytes
/// of memory available: [`BALLAST_FACTOR`] times the size, less if that would leave under
/// [`BALLAST_SPARE`] once the run's own files (source, dd copy, blob) are in the page cache.
pub(super) fn ballast_bytes(size: u64, available: u64) -> u64 {
    let room = available.saturating_sub(3 * size + BALLAST_SPARE);
    (BALLAST_FACTOR * size).min(room)
}

/// `MemAvailable` of `/proc/meminfo`, in bytes.
pub(super) fn parse_mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?;
    let kib: u64 = line.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

/// The ballast of a run: unless `enabled` is false, `size(MemAvailable)` bytes of zeros written
/// (untimed) into `dir/ballast`, kept until the run's directory goes. Returns its size.
pub(super) fn run_ballast(enabled: bool, dir: &Path, size: impl Fn(u64) -> u64) -> Result<u64> {
    if !enabled {
        return Ok(0);
    }
    let meminfo = fs::read_to_string("/proc/meminfo").context("cannot read /proc/meminfo")?;
    let available = parse_mem_available(&meminfo).context("no MemAvailable in /proc/meminfo")?;
    let bytes = size(available);
    if bytes > 0 {
        println!("    ballast: {} MiB (untimed)", bytes >> 20);
        write_ballast(&dir.join("ballast"), bytes)?;
    }
    Ok(bytes)
}

/// Writes `bytes` zeros through the page cache into `file`, then syncs.
fn write_ballast(file: &Path, bytes: u64) -> Result<()> {
    let mut head = Command::new("head");
    head.arg("-c")
        .arg(bytes.to_string())
        .arg("/dev/zero")
        .stdout(File::create(file).with_context(|| format!("cannot create {}", file.display()))?);
    run_status(&mut head)?;
    sync()
}

pub(super) fn openssl_dgst(file: &Path) -> Command {
    let mut cmd = Command::new("openssl");
    cmd.args(["dgst", "-sha256", "-r"]).arg(file);
    cmd
}

/// The digest in the output of `openssl dgst -sha256 -r` (`HEX *FILE`).
pub(super) fn parse_openssl_digest(stdout: &str) -> Result<String> {
    let hex = stdout.split_whitespace().next().unwrap_or_default();
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        bail!("unexpected output of openssl dgst: {stdout:?}");
    }
    Ok(format!("sha256:{hex}"))
}

/// The `sha256:` digest of `file`, by `openssl dgst`.
pub(super) fn sha256_of(file: &Path) -> Result<String> {
    let (_, output) = timed(&mut openssl_dgst(file))?;
    parse_openssl_digest(&String::from_utf8_lossy(&output.stdout))
}

/// Adds the arguments of `dd` writing `from` into the new file `to` with `conv=fdatasync`.
pub(super) fn dd_args<'a>(cmd: &'a mut Command, from: &Path, to: &Path) -> &'a mut Command {
    cmd.arg(format!("if={}", from.display()))
        .arg(format!("of={}", to.display()))
        .args(["bs=1M", "conv=fdatasync"])
}

/// `dd conv=fdatasync` of `from` into the new file `to`.
pub(super) fn dd(from: &Path, to: &Path) -> Command {
    let mut cmd = Command::new("dd");
    dd_args(&mut cmd, from, to);
    cmd
}

pub(super) fn file_len(path: &Path) -> Result<u64> {
    Ok(fs::metadata(path)
        .with_context(|| format!("cannot stat {}", path.display()))?
        .len())
}

/// Fails unless `dd` wrote `expected` bytes into `file`.
pub(super) fn check_dd(file: &Path, expected: u64) -> Result<()> {
    let written = file_len(file).with_context(|| format!("dd wrote no {}", file.display()))?;
    if written != expected {
        bail!("dd wrote {written} bytes, expected {expected}");
    }
    Ok(())
}

/// A field in KiB of a `/proc/PID/status` (`VmRSS`, `VmHWM`).
pub(super) fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?;
    line.trim().trim_end_matches("kB").trim().parse().ok()
}

/// The field `field` of `/proc/PID/status`, in KiB.
pub(super) fn status_kib(pid: &str, field: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_status_kib(&status, field).with_context(|| format!("no {field} in {path}"))
}

/// The CPU seconds (user and system, all threads) process `pid` has used so far, from
/// `/proc/PID/stat`, whose counts are in clock ticks of 1/100 s (`USER_HZ`, 100 on every Linux
/// ABI).
pub(super) fn process_cpu_seconds(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_stat_cpu_seconds(&stat).with_context(|| format!("no CPU times in {path}: {stat:?}"))
}

/// Counts the CPU time of some processes (the registries a step involves) over a step.
pub(super) struct CpuMeter(Vec<u32>);

impl CpuMeter {
    pub(super) fn new(pids: impl IntoIterator<Item = u32>) -> Self {
        Self(pids.into_iter().collect())
    }

    fn total(&self) -> Result<f64> {
        self.0.iter().map(|&pid| process_cpu_seconds(pid)).sum()
    }

    /// Starts counting: the returned closure gives the CPU seconds they used since.
    pub(super) fn start(&self) -> Result<impl Fn() -> Result<f64> + '_> {
        let before = self.total()?;
        Ok(move || Ok(self.total()? - before))
    }
}

/// `utime + stime` of a `/proc/PID/stat` line, in seconds. The command's name, in parentheses,
/// may hold spaces and parentheses itself: the fields are counted from the last `)`.
pub(super) fn parse_stat_cpu_seconds(stat: &str) -> Option<f64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // After the name: state (field 3), ..., utime (14), stime (15).
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// The 1-minute load average of `/proc/loadavg` (NaN if unreadable): others share the machine.
pub(super) fn load_average() -> f64 {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The cores the bench may use.
pub(super) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The machine a run was on, as `all.json` and the README name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct MachineInfo {
    /// What `nproc` says (the cores this process may use).
    pub(super) cores: usize,
    /// The first `model name` of `/proc/cpuinfo`.
    pub(super) cpu: String,
    /// `MemTotal` of `/proc/meminfo`.
    pub(super) mem_total_kib: u64,
    /// `uname -r`.
    pub(super) kernel: String,
}

impl MachineInfo {
    /// Reads the machine; what cannot be read is left empty or zero rather than failing a run
    /// that is over.
    pub(super) fn read() -> Self {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let stdout_of = |program: &str, args: &[&str]| {
            Command::new(program)
                .args(args)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        };
        let cores = stdout_of("nproc", &[])
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| {
                cpuinfo
                    .lines()
                    .filter(|l| l.starts_with("processor"))
                    .count()
            });
        Self {
            cores,
            cpu: parse_cpu_model(&cpuinfo).unwrap_or_default(),
            mem_total_kib: parse_status_kib(&meminfo, "MemTotal").unwrap_or(0),
            kernel: stdout_of("uname", &["-r"]).unwrap_or_default(),
        }
    }

    /// `2 cores (MODEL), 23.5 GiB of memory, Linux 6.1.0-18-amd64`.
    pub(super) fn describe(&self) -> String {
        let cpu = if self.cpu.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.cpu)
        };
        format!(
            "{} core{}{cpu}, {:.1} GiB of memory, Linux {}",
            self.cores,
            if self.cores == 1 { "" } else { "s" },
            self.mem_total_kib as f64 / (1024.0 * 1024.0),
            self.kernel
        )
    }
}

/// The first `model name` of a `/proc/cpuinfo`, its runs of spaces made one.
pub(super) fn parse_cpu_model(cpuinfo: &str) -> Option<String> {
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))?
        .trim_start()
        .strip_prefix(':')?;
    Some(model.split_whitespace().collect::<Vec<_>>().join(" "))
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

/// How a report names the source hoist was built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Revision {
    /// `HEAD`'s short hash and how many files under `crates/` and `Cargo.toml` differ.
    Count,
    /// `HEAD`'s short hash and the names of the files under `crates/`, `Cargo.toml` and
    /// `Cargo.lock` that differ.
    Files,
}

/// The source hoist was built from, as `style` says (`unknown` without git).
pub(super) fn revision(root: &Path, style: Revision) -> String {
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
    let mut status = vec!["status", "--porcelain", "--", "crates", "Cargo.toml"];
    if style == Revision::Files {
        status.push("Cargo.lock");
    }
    match (git(&["rev-parse", "--short", "HEAD"]), git(&status)) {
        (Some(head), Some(status)) => describe_revision(&head, &status, style),
        _ => "unknown".to_owned(),
    }
}

/// [`revision`] from `HEAD`'s short hash and the output of `git status --porcelain` (`XY PATH`
/// lines).
pub(super) fn describe_revision(head: &str, porcelain: &str, style: Revision) -> String {
    let changed: Vec<&str> = porcelain
        .lines()
        .filter_map(|l| l.get(3..))
        .map(str::trim)
        .filter(|path| !path.is_empty())
        .collect();
    match (style, changed.len()) {
        (_, 0) => head.trim().to_owned(),
        (Revision::Count, n) => format!("{} + {n} uncommitted file(s) under crates/", head.trim()),
        (Revision::Files, _) => format!("{} + uncommitted {}", head.trim(), changed.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tools_name_their_package() {
        assert!(install_hint("wrk").starts_with("apt-get install -y wrk "));
        assert_eq!(install_hint("dd"), "apt-get install -y coreutils");
        assert!(install_hint("oras").contains("-t trixie oras"));
        assert!(install_hint("docker-registry").contains("tests/peers/install.sh"));
        assert_eq!(install_hint("pigz"), "apt-get install -y pigz");
        let err = require_tools(&["surely-no-such-tool-here"]).unwrap_err();
        assert!(
            err.to_string()
                .contains("apt-get install -y surely-no-such-tool-here"),
            "{err}"
        );
        // Every missing tool is named at once, not only the first.
        let tools = ["sh", "surely-no-such-tool-here", "nor-this-one-either"];
        assert_eq!(
            missing_tools(&tools),
            ["surely-no-such-tool-here", "nor-this-one-either"]
        );
        let err = require_tools(&tools).unwrap_err().to_string();
        assert!(
            err.contains("`surely-no-such-tool-here` is not installed")
                && err.contains("`nor-this-one-either` is not installed")
                && !err.contains("`sh`"),
            "{err}"
        );
    }

    #[test]
    fn df_avail_is_the_fourth_column() {
        let df = "Filesystem 1-blocks Used Available Capacity Mounted on\n\
                  /dev/vda 270415425536 26843545600 71940702208 28% /\n";
        assert_eq!(parse_df_avail(df), Some(71_940_702_208));
        assert_eq!(parse_df_avail("Filesystem 1-blocks Used Available\n"), None);
        assert_eq!(parse_df_avail(""), None);
    }

    #[test]
    fn ballast_is_four_times_the_size_within_available_memory() {
        const GIB: u64 = 1 << 30;
        assert_eq!(ballast_bytes(GIB, 23 * GIB), 4 * GIB);
        assert_eq!(ballast_bytes(GIB, 9 * GIB), 2 * GIB);
        assert_eq!(ballast_bytes(GIB, 6 * GIB), 0);
        assert_eq!(ballast_bytes(64 << 20, GIB), 0);
        let meminfo = "MemTotal:       24684132 kB\nMemFree:        23377000 kB\n\
                       MemAvailable:   24186404 kB\n";
        assert_eq!(parse_mem_available(meminfo), Some(24186404 * 1024));
        assert_eq!(parse_mem_available("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn openssl_digests_are_parsed() -> Result<()> {
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            parse_openssl_digest(&format!("{hex} *src.bin\n"))?,
            format!("sha256:{hex}")
        );
        assert!(parse_openssl_digest("SHA2-256(src.bin)= e3b0").is_err());
        Ok(())
    }

    #[test]
    fn proc_status_fields_are_parsed() {
        let status = "Name:\thoist\nVmPeak:\t  20000 kB\nVmHWM:\t   73156 kB\n\
                      VmRSS:\t   12104 kB\nRssAnon:\t 5000 kB\n";
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(12104));
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(73156));
        assert_eq!(parse_status_kib("Name:\tx\n", "VmRSS"), None);
    }

    #[test]
    fn proc_stat_cpu_times_are_parsed() {
        let stat = "16508 (docker-registry) S 1 16508 16508 0 -1 4194560 999603 0 4 0 1684 1510 \
                    0 0 20 0 9 0 3641707 1426939904 11808";
        assert_eq!(parse_stat_cpu_seconds(stat), Some(31.94));
        let odd_name = "7 (a) b (c) S 1 7 7 0 -1 0 0 0 0 0 250 50 0 0";
        assert_eq!(parse_stat_cpu_seconds(odd_name), Some(3.0));
        assert_eq!(parse_stat_cpu_seconds("7 (cut) S 1 7"), None);
    }

    #[test]
    fn the_machine_is_described() {
        let cpuinfo = "processor\t: 0\nmodel name\t: AMD EPYC   7B13\nprocessor\t: 1\n\
                       model name\t: AMD EPYC 7B13\n";
        assert_eq!(parse_cpu_model(cpuinfo).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(parse_cpu_model("processor\t: 0\n"), None);
        let meminfo = "MemTotal:       24684132 kB\nMemFree:        23377000 kB\n";
        assert_eq!(parse_status_kib(meminfo, "MemTotal"), Some(24684132));
        let machine = MachineInfo {
            cores: 2,
            cpu: "AMD EPYC 7B13".to_owned(),
            mem_total_kib: 24684132,
            kernel: "6.1.0-18-amd64".to_owned(),
        };
        assert_eq!(
            machine.describe(),
            "2 cores (AMD EPYC 7B13), 23.5 GiB of memory, Linux 6.1.0-18-amd64"
        );
    }

    #[test]
    fn revision_names_or_counts_the_changed_files() {
        assert_eq!(
            describe_revision("c02f2a6\n", "", Revision::Files),
            "c02f2a6"
        );
        let porcelain = " M crates/oci-layout/src/layout.rs\n?? crates/x/new.rs\n";
        assert_eq!(
            describe_revision("c02f2a6\n", porcelain, Revision::Files),
            "c02f2a6 + uncommitted crates/oci-layout/src/layout.rs, crates/x/new.rs"
        );
        assert_eq!(
            describe_revision("c02f2a6\n", porcelain, Revision::Count),
            "c02f2a6 + 2 uncommitted file(s) under crates/"
        );
    }
}
