//! Real daemons that speak the Docker Engine API, for the `docker-daemon:` interop tests: each
//! test starts its own fresh daemon in its own directory ([`Daemon::start`]) and drives it with
//! the docker CLI ([`Daemon::docker`]); dropping it stops the daemon and removes everything it
//! had. `tests/peers/start-daemon.sh` and `stop-daemon.sh` do the work, so that a person can
//! start the same daemons by hand.
//!
//! The engines ([`Engine`]): Debian bookworm's Docker Engine 20.10 (API 1.41, `docker save`
//! writes the classic archive), trixie's Docker Engine 26.1 (API 1.45, the Docker 25+ archive,
//! an OCI layout with a `manifest.json`) and podman 4.3's Docker-compatible service (API 1.41).
//! All three are driven by docker.io's client, `/usr/bin/docker` 20.10, which negotiates the
//! API version down to 1.41 where the daemon speaks more.
//!
//! Missing engines follow the rule of [`crate::support::peer`]: locally a test skips with a
//! printed line, on CI (`CI=true`) or with `HOIST_PEERS` set it fails. The daemons need root.
//!
//! Without network: the daemons get no bridge, no iptables rules, no forwarding, and images
//! are built `FROM scratch` ([`Daemon::build`]) by the classic builder (`DOCKER_BUILDKIT=0`).

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::support::{peer, skip, workspace_root};

/// docker.io's client, used against every engine.
const DOCKER_CLI: &str = "/usr/bin/docker";

/// A daemon that speaks the Docker Engine API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Engine {
    /// Docker Engine 20.10 (Debian bookworm's `docker.io`): API 1.41, classic `docker save`.
    Docker20,
    /// Docker Engine 26.1 (Debian trixie's `docker.io`, extracted by `tests/peers/install.sh`
    /// under `/opt/hoist-peers/docker-26`): API 1.45, Docker 25+ `docker save`.
    Docker26,
    /// podman 4.3's Docker-compatible service (`podman system service`): API 1.41.
    Podman,
}

impl Engine {
    /// Every engine, for tests that run against each.
    pub(crate) const ALL: [Self; 3] = [Self::Docker20, Self::Docker26, Self::Podman];

    /// Its name for `tests/peers/start-daemon.sh`: `docker20`, `docker26` or `podman`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Docker20 => "docker20",
            Self::Docker26 => "docker26",
            Self::Podman => "podman",
        }
    }

    /// The Engine API version the daemon speaks (`docker version`'s `Server.APIVersion`).
    pub(crate) fn api_version(self) -> &'static str {
        match self {
            Self::Docker20 | Self::Podman => "1.41",
            Self::Docker26 => "1.45",
        }
    }

    /// Whether its `docker save` writes the Docker 25+ archive (an OCI layout: `oci-layout`,
    /// `index.json`, `blobs/`, beside `manifest.json`) rather than the classic one.
    pub(crate) fn saves_oci_layout(self) -> bool {
        self == Self::Docker26
    }

    /// The daemon program `start-daemon.sh` runs for it, when installed.
    fn program(self) -> Option<PathBuf> {
        let found = |path: PathBuf| is_executable(&path).then_some(path);
        match self {
            Self::Docker20 => found(PathBuf::from("/usr/sbin/dockerd")),
            Self::Docker26 => found(peers_dir().join("docker-26/usr/sbin/dockerd")),
            Self::Podman => peer_quiet("podman"),
        }
    }
}

/// Where `tests/peers/install.sh` puts the peers it does not install as packages.
fn peers_dir() -> PathBuf {
    std::env::var_os("HOIST_PEERS_DIR")
        .map_or_else(|| PathBuf::from("/opt/hoist-peers"), PathBuf::from)
}

/// `name` on `PATH`, without a skip line.
fn peer_quiet(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| is_executable(candidate))
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Skips (`false`, after [`skip`] said why) or fails, by the peers rule, because of `why`.
fn unavailable(engine: Engine, why: &str) -> bool {
    skip(format_args!("{} daemon: {why}", engine.name()));
    false
}

/// Whether `engine` can run here: its daemon, the docker client and curl installed, and root.
fn available(engine: Engine) -> bool {
    if engine.program().is_none() {
        return unavailable(engine, "not installed (run tests/peers/install.sh)");
    }
    if !is_executable(Path::new(DOCKER_CLI)) {
        return unavailable(
            engine,
            "docker.io's client /usr/bin/docker not installed (run tests/peers/install.sh)",
        );
    }
    if peer("curl").is_none() {
        return false;
    }
    // The process's own credentials own its /proc entry.
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    root || unavailable(engine, "the daemons need root")
}

/// A script of `tests/peers`.
fn script(name: &str) -> PathBuf {
    workspace_root().join("tests/peers").join(name)
}

/// A daemon started for one test, with all its state in a directory of its own under `/tmp`
/// (short paths: unix socket paths are limited to 108 bytes); stopped, and the directory
/// removed, on drop or by [`Daemon::stop`].
#[derive(Debug)]
pub(crate) struct Daemon {
    engine: Engine,
    dir: PathBuf,
    host: String,
    stopped: bool,
}

impl Daemon {
    /// Starts a fresh daemon of `engine` and waits until it answers (at most 30 s).
    ///
    /// `None` after a printed skip line when the engine is not installed (or the tests do not
    /// run as root); a panic instead on CI (`CI=true`) and with `HOIST_PEERS` set, and when the
    /// daemon does not start (with its log). If the test process dies without dropping it,
    /// the daemon stops by itself within a second or so (start-daemon.sh's owner watch).
    // The retry is said where a person running the tests sees it.
    #[allow(clippy::print_stdout)]
    pub(crate) fn start(engine: Engine) -> Option<Self> {
        if !available(engine) {
            return None;
        }
        // Daemons start one at a time: podman services starting side by side have failed to
        // start now and then (the daemon gone before it wrote its log), which a test of
        // hoist should not be about. A start that fails anyway is tried once more, the first
        // failure printed.
        static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _turn = STARTING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match std::panic::catch_unwind(|| Self::start_once(engine)) {
            Ok(daemon) => Some(daemon),
            Err(_) => {
                // The first failure's message, with the daemon's log, is above (the panic
                // hook printed it).
                println!("{} did not start; trying once more", engine.name());
                Some(Self::start_once(engine))
            }
        }
    }

    fn start_once(engine: Engine) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("hoist-daemon-")
            .tempdir_in("/tmp")
            .expect("a temporary directory under /tmp")
            .keep();
        let mut command = Command::new("bash");
        command
            .arg(script("start-daemon.sh"))
            .arg(engine.name())
            .arg(&dir)
            .env("HOIST_DAEMON_OWNER", std::process::id().to_string())
            .stdin(Stdio::null());
        let line = format!("{command:?}");
        let output = command
            .output()
            .unwrap_or_else(|e| panic!("cannot run {line}: {e}"));
        let stdout = String::from_utf8_lossy(&output.stdout);
        let host = stdout.lines().last().unwrap_or_default().trim().to_owned();
        let daemon = Self {
            engine,
            dir,
            host,
            stopped: false,
        };
        assert!(
            output.status.success() && daemon.host.starts_with("unix://"),
            "{line} failed ({}):\n{stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
        );
        daemon
    }

    /// Which engine it is.
    pub(crate) fn engine(&self) -> Engine {
        self.engine
    }

    /// Its address, `unix:///tmp/hoist-daemon-XXXXXX/docker.sock` (or `podman.sock`): what
    /// `DOCKER_HOST` and `docker -H` take.
    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    /// The path of its unix socket.
    pub(crate) fn socket(&self) -> &Path {
        Path::new(self.host.trim_start_matches("unix://"))
    }

    /// The directory that holds all its state (removed when it stops).
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The process id of the daemon.
    pub(crate) fn pid(&self) -> u32 {
        let text = std::fs::read_to_string(self.dir.join("daemon.pid")).expect("the pidfile");
        text.trim().parse().expect("a pid in the pidfile")
    }

    /// Everything the daemon logged so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    /// A `docker -H HOST` command for this daemon, to add arguments, stdin or environment to:
    /// docker.io's client with a configuration directory of its own (nothing from `~/.docker`),
    /// the classic builder (`DOCKER_BUILDKIT=0`), and no `DOCKER_*` variables of the caller's.
    pub(crate) fn command(&self) -> Command {
        let mut command = Command::new(DOCKER_CLI);
        for (name, _) in std::env::vars_os() {
            if name.to_str().is_some_and(|n| n.starts_with("DOCKER_")) {
                command.env_remove(name);
            }
        }
        command
            .env("DOCKER_CONFIG", self.dir.join("client"))
            .env("DOCKER_BUILDKIT", "0")
            .arg("-H")
            .arg(&self.host)
            .stdin(Stdio::null());
        command
    }

    /// Runs `docker -H HOST ARGS` and returns its output, whether it succeeded or not.
    pub(crate) fn docker_unchecked<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = self.command();
        command.args(args);
        let line = format!("{command:?}");
        command
            .output()
            .unwrap_or_else(|e| panic!("cannot run {line}: {e}"))
    }

    /// Runs `docker -H HOST ARGS` and returns its output; panics unless it succeeds, with
    /// the command line, its output and the end of the daemon's log.
    pub(crate) fn docker<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<_> = args.into_iter().collect();
        let output = self.docker_unchecked(&args);
        assert!(
            output.status.success(),
            "docker -H {} {:?} failed ({}):\n{}{}\n{} log, the end:\n{}",
            self.host,
            args.iter().map(AsRef::as_ref).collect::<Vec<&OsStr>>(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.engine.name(),
            tail(&self.log(), 40),
        );
        output
    }

    /// The trimmed stdout of `docker -H HOST ARGS`, which must succeed.
    pub(crate) fn docker_text<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        String::from_utf8_lossy(&self.docker(args).stdout)
            .trim()
            .to_owned()
    }

    /// `Server.APIVersion` of `docker version`: the API version the daemon speaks.
    pub(crate) fn api_version(&self) -> String {
        self.docker_text(["version", "--format", "{{.Server.APIVersion}}"])
    }

    /// The image id (`sha256:...`) of `reference` in the daemon.
    pub(crate) fn image_id(&self, reference: &str) -> String {
        let id = self.docker_text(["image", "inspect", "--format", "{{.Id}}", reference]);
        // podman answers without the algorithm.
        if id.contains(':') {
            id
        } else {
            format!("sha256:{id}")
        }
    }

    /// Builds `tag` from `dockerfile` in a context of `files` (relative paths, parents made,
    /// and content), without network: the Dockerfile should start `FROM scratch`. Each
    /// `COPY` makes one layer. Returns the image id.
    pub(crate) fn build(&self, tag: &str, dockerfile: &str, files: &[(&str, &[u8])]) -> String {
        let context = tempfile::tempdir().expect("a temporary build context");
        for (name, content) in files {
            let path = context.path().join(name);
            std::fs::create_dir_all(path.parent().expect("a file in the context"))
                .expect("making the context's directories");
            std::fs::write(&path, content).expect("writing a file of the context");
        }
        std::fs::write(context.path().join("Dockerfile"), dockerfile).expect("the Dockerfile");
        let mut args = vec![OsStr::new("build"), OsStr::new("-q"), OsStr::new("-t")];
        args.push(OsStr::new(tag));
        args.push(context.path().as_os_str());
        self.docker(args);
        self.image_id(tag)
    }

    /// Builds `tag`: `FROM scratch`, one layer with `/hello.txt` holding `content`, and a
    /// label. Returns the image id.
    pub(crate) fn build_scratch_image(&self, tag: &str, content: &[u8]) -> String {
        self.build(
            tag,
            "FROM scratch\nCOPY hello.txt /hello.txt\nLABEL org.example.hoist=test\n",
            &[("hello.txt", content)],
        )
    }

    /// Stops the daemon and removes its directory; panics if that fails (a mount left behind,
    /// say). Dropping does the same but only reports a failure.
    pub(crate) fn stop(mut self) {
        self.stopped = true;
        let output = self
            .run_stop()
            .unwrap_or_else(|e| panic!("cannot run stop-daemon.sh {}: {e}", self.dir.display()));
        assert!(
            output.status.success(),
            "stop-daemon.sh {} failed ({}):\n{}",
            self.dir.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr),
        );
        assert!(!self.dir.exists(), "{} is still there", self.dir.display());
    }

    /// Runs `stop-daemon.sh DIR`.
    fn run_stop(&self) -> std::io::Result<Output> {
        Command::new("bash")
            .arg(script("stop-daemon.sh"))
            .arg(&self.dir)
            .stdin(Stdio::null())
            .output()
    }
}

impl Drop for Daemon {
    // A failed stop is reported, not a panic: the test may be unwinding already.
    #[allow(clippy::print_stderr)]
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        match self.run_stop() {
            Ok(output) if output.status.success() => {}
            Ok(output) => eprintln!(
                "stop-daemon.sh {} failed ({}):\n{}",
                self.dir.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ),
            Err(e) => eprintln!("cannot run stop-daemon.sh {}: {e}", self.dir.display()),
        }
    }
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Mount points at or under `dir` (from `/proc/self/mountinfo`).
pub(crate) fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_str().expect("a UTF-8 path");
    let inside = format!("{dir}/");
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("/proc/self/mountinfo")
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| *point == dir || point.starts_with(&inside))
        .map(str::to_owned)
        .collect()
}

/// The entries of a tar stream: names and contents.
fn tar_entries(reader: impl Read) -> Vec<(String, Vec<u8>)> {
    let mut archive = tar::Archive::new(reader);
    archive
        .entries()
        .unwrap()
        .map(|entry| {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().display().to_string();
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            (name, content)
        })
        .collect()
}

/// Starts `engine`, checks its API version, builds a `FROM scratch` image, saves it (the
/// archive format the engine is known for, the file in the layer), loads it back after
/// removing it, and stops it, leaving no process, mount or file behind.
fn start_build_save_load_stop(engine: Engine) {
    let Some(daemon) = Daemon::start(engine) else {
        return;
    };
    assert_eq!(daemon.engine(), engine);
    assert!(daemon.socket().exists(), "{} is not there", daemon.host());
    assert_eq!(daemon.api_version(), engine.api_version());
    let version = daemon.docker_text(["version", "--format", "{{.Server.Version}}"]);
    let expected = match engine {
        Engine::Docker20 => "20.10.",
        Engine::Docker26 => "26.1.",
        Engine::Podman => "4.",
    };
    assert!(
        version.starts_with(expected),
        "{engine:?} is version {version}"
    );

    let id = daemon.build_scratch_image("hoist-test/hello:v1", b"hello from scratch\n");
    assert!(id.starts_with("sha256:") && id.len() == 71, "image id {id}");
    let layers = daemon.docker_text([
        "image",
        "inspect",
        "--format",
        "{{len .RootFS.Layers}} {{index .Config.Labels \"org.example.hoist\"}}",
        "hoist-test/hello:v1",
    ]);
    assert_eq!(layers, "1 test");

    let archive = daemon.docker(["save", "hoist-test/hello:v1"]).stdout;
    let entries = tar_entries(archive.as_slice());
    let entry = |name: &str| {
        entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, content)| content.as_slice())
    };
    assert_eq!(
        entry("oci-layout").is_some(),
        engine.saves_oci_layout(),
        "{engine:?} saved {:?}",
        entries.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(entry("manifest.json").expect("a manifest.json")).unwrap();
    let layer_path = manifest[0]["Layers"][0]
        .as_str()
        .expect("a layer in manifest.json");
    let layer = tar_entries(entry(layer_path).expect("the layer in the archive"));
    assert!(
        layer
            .iter()
            .any(|(n, c)| n == "hello.txt" && c == b"hello from scratch\n"),
        "the layer holds {:?}",
        layer.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );

    daemon.docker(["rmi", "hoist-test/hello:v1"]);
    assert!(
        !daemon
            .docker_unchecked(["image", "inspect", "hoist-test/hello:v1"])
            .status
            .success()
    );
    let mut load = daemon.command();
    load.arg("load")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = load.spawn().expect("docker load");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &archive).unwrap();
    let loaded = child.wait_with_output().unwrap();
    assert!(loaded.status.success(), "docker load: {loaded:?}");
    assert_eq!(daemon.image_id("hoist-test/hello:v1"), id);

    let dir = daemon.dir().to_path_buf();
    let pid = daemon.pid();
    daemon.stop();
    assert!(!dir.exists());
    assert_eq!(mounts_under(&dir), Vec::<String>::new());
    // Gone, or at most a zombie until its parent reaps it.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(cmdline.is_empty(), "{engine:?} (PID {pid}) still runs");
}

#[test]
fn docker20_starts_builds_from_scratch_saves_loads_and_stops() {
    start_build_save_load_stop(Engine::Docker20);
}

#[test]
fn docker26_starts_builds_from_scratch_saves_loads_and_stops() {
    start_build_save_load_stop(Engine::Docker26);
}

#[test]
fn podman_starts_builds_from_scratch_saves_loads_and_stops() {
    start_build_save_load_stop(Engine::Podman);
}

/// A daemon of every engine at once, each in its own directory (as tests running in parallel
/// have them), all stopped by dropping them.
#[test]
fn daemons_run_side_by_side() {
    let daemons: Vec<Daemon> = Engine::ALL
        .iter()
        .filter_map(|&e| Daemon::start(e))
        .collect();
    for daemon in &daemons {
        daemon.build_scratch_image("hoist-test/side:v1", daemon.host().as_bytes());
    }
    let dirs: Vec<PathBuf> = daemons.iter().map(|d| d.dir().to_path_buf()).collect();
    drop(daemons);
    for dir in dirs {
        assert!(!dir.exists(), "{} left behind", dir.display());
        assert_eq!(mounts_under(&dir), Vec::<String>::new());
    }
}
