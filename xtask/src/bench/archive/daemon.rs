//! The Docker daemons the archive scenario loads into: one started fresh for each load, its
//! data on a tmpfs when there is room, stopped when the run ends.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use super::{DOCKER, ENGINE, NAME};
use crate::bench::machine::{remove_dir, status_kib};
use crate::bench::measure::timed;

/// The socket URL that `start-daemon.sh` prints last.
fn parse_socket_url(stdout: &str) -> Option<String> {
    let line = stdout.lines().rfind(|l| !l.trim().is_empty())?.trim();
    line.starts_with("unix://").then(|| line.to_owned())
}

/// Where the daemons keep their data: `/dev/shm` when it is a tmpfs with room for the two loads
/// of a run (the extracted layers of each, plus their metadata) beside what is there already;
/// `None` (the run's directory on disk) otherwise. On disk, every load mostly measures how
/// fast the disk takes dockerd's writes at that moment, which on a shared virtual disk varies
/// widely within minutes, and the difference between the tools drowns in it.
pub(super) fn memory_daemon_root(layer_bytes: u64) -> Result<Option<PathBuf>> {
    let shm = Path::new("/dev/shm");
    let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
    let is_tmpfs = mounts.lines().any(|line| {
        let mut fields = line.split_whitespace();
        matches!(
            (fields.next(), fields.next(), fields.next()),
            (Some(_), Some("/dev/shm"), Some("tmpfs"))
        )
    });
    if !is_tmpfs {
        return Ok(None);
    }
    let output = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(shm)
        .output()
        .context("cannot run df")?;
    let available: u64 = String::from_utf8_lossy(&output.stdout)
        .lines()
        .nth(1)
        .and_then(|line| line.trim().parse().ok())
        .unwrap_or(0);
    if available < 3 * layer_bytes {
        return Ok(None);
    }
    let root = shm.join("hoist-bench-daemons");
    remove_dir(&root)?;
    fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    Ok(Some(root))
}

/// A Docker daemon of `tests/peers/start-daemon.sh`, stopped (and its directory removed) by
/// [`Daemon::stop`] or when dropped.
#[derive(Debug)]
pub(super) struct Daemon {
    dir: PathBuf,
    stop_script: PathBuf,
    /// `unix://DIR/docker.sock`, for `DOCKER_HOST`.
    pub(super) host: String,
    stopped: bool,
}

impl Daemon {
    /// Starts a daemon of [`ENGINE`] with all its state in `dir` (new), stopped by
    /// `start-daemon.sh`'s watcher too if xtask dies first.
    pub(super) fn start(peers_dir: &Path, dir: &Path) -> Result<Self> {
        let mut start = Command::new("bash");
        start
            .arg(peers_dir.join("start-daemon.sh"))
            .arg(ENGINE)
            .arg(dir)
            .env("HOIST_DAEMON_OWNER", std::process::id().to_string());
        let (seconds, output) = timed(&mut start)?;
        // Made before the socket URL is read, so that a daemon whose URL cannot be is stopped.
        let mut daemon = Self {
            dir: dir.to_path_buf(),
            stop_script: peers_dir.join("stop-daemon.sh"),
            host: String::new(),
            stopped: false,
        };
        let stdout = String::from_utf8_lossy(&output.stdout);
        daemon.host = parse_socket_url(&stdout)
            .with_context(|| format!("start-daemon.sh printed no socket URL: {stdout:?}"))?;
        println!(
            "    {ENGINE} daemon started in {seconds:.1} s (untimed): {}",
            daemon.host
        );
        Ok(daemon)
    }

    /// The daemon's peak resident set so far, in KiB (its own pidfile names it).
    pub(super) fn peak_rss_kib(&self) -> Result<u64> {
        let pidfile = self.dir.join("dockerd.pid");
        let pid = fs::read_to_string(&pidfile)
            .with_context(|| format!("cannot read {}", pidfile.display()))?;
        status_kib(pid.trim(), "VmHWM")
    }

    /// `docker` of [`ENGINE`] talking to this daemon.
    fn docker(&self) -> Command {
        let mut cmd = Command::new(DOCKER);
        cmd.env("DOCKER_HOST", &self.host);
        cmd
    }

    /// The ID of [`NAME`] in the daemon.
    pub(super) fn image_id(&self) -> Result<String> {
        let (_, output) = timed(
            self.docker()
                .args(["image", "inspect", "--format", "{{.Id}}", NAME]),
        )?;
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Stops the daemon and removes its directory.
    pub(super) fn stop(mut self) -> Result<()> {
        self.stopped = true;
        let mut stop = Command::new("bash");
        stop.arg(&self.stop_script).arg(&self.dir);
        timed(&mut stop).map(drop)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = Command::new("bash")
                .arg(&self.stop_script)
                .arg(&self.dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_urls_are_parsed() {
        let started = "docker20 (Docker version 20.10.24) answers on unix:///w/d/docker.sock\n\
                       unix:///w/d/docker.sock\n";
        assert_eq!(
            parse_socket_url(started).as_deref(),
            Some("unix:///w/d/docker.sock")
        );
        assert_eq!(parse_socket_url("started\n\n"), None);
        assert_eq!(parse_socket_url(""), None);
    }
}
