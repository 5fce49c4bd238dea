//! Support for the interop tests: finding the third-party peers and running them.
//!
//! The project rule: locally, an interop test whose peer is not installed skips with a reason
//! that `cargo test` shows ([`skip`]); on CI (`CI=true`) or with `HOIST_PEERS` set, a missing
//! peer is a failure. `tests/peers/install.sh` installs every peer.

use std::ffi::OsStr;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Whether missing peers fail the tests instead of skipping them.
pub(crate) fn peers_required() -> bool {
    std::env::var_os("HOIST_PEERS").is_some() || std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Says that the running test skips (all or part of what it checks) because of `why`: a panic
/// where peers are required, else a `SKIPPED <test>: <why>` line.
///
/// The line is written to the process's stderr directly, not through `eprintln!`, which the
/// test harness captures and shows only for failing tests: a skip is seen in every run. It is
/// also appended to the file `HOIST_SKIP_LOG` names, if any, where `cargo xtask ci` counts the
/// skipped tests.
pub(crate) fn skip(why: impl std::fmt::Display) {
    assert!(
        !peers_required(),
        "{why}; and peers are required here (CI=true or HOIST_PEERS): run tests/peers/install.sh"
    );
    // The harness runs each test on a thread named after it (`module::test`); a skip said on
    // another thread (a shared set-up on a runtime's thread) is shown but not counted, and the
    // tests that depend on that set-up report their own skips.
    let thread = std::thread::current();
    let test = thread.name().filter(|name| name.contains("::"));
    let line = format!("SKIPPED {}: {why}\n", test.unwrap_or("(shared set-up)"));
    let _ = std::io::stderr().write_all(line.as_bytes());
    if let Some(log) = std::env::var_os("HOIST_SKIP_LOG")
        && test.is_some()
    {
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut file| file.write_all(line.as_bytes()));
        if let Err(error) = appended {
            let _ = writeln!(std::io::stderr(), "cannot append to {log:?}: {error}");
        }
    }
}

/// The path of the peer program `name`, found on `PATH`.
///
/// When it is missing: `None` after [`skip`] said so (a panic where peers are required).
pub(crate) fn peer(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| is_executable(candidate))
    });
    if found.is_none() {
        skip(format_args!(
            "{name} not installed (run tests/peers/install.sh)"
        ));
    }
    found
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs `program` with `args` and returns its output; panics with the command line, its exit
/// status and its stderr unless it succeeds.
pub(crate) fn run<I, S>(program: &Path, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = Command::new(program);
    command.args(args);
    let line = format!("{command:?}");
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {line}: {e}"));
    assert!(
        output.status.success(),
        "{line} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    output
}

/// The root of the workspace (the parent of this package).
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests package sits in the workspace")
        .to_path_buf()
}

/// The `hoist` command line: the same program as `crates/hoist`, built by `cargo test` as this
/// package's `hoist-under-test` binary (a package cannot name another package's binary).
pub(crate) fn hoist_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hoist-under-test"))
}

/// A free TCP port on loopback (bound, read, released: another process may take it in
/// between, which a test on loopback can live with).
pub(crate) fn free_addr() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    listener
        .local_addr()
        .expect("the address of a bound socket")
}

/// `hoist serve ARGS --addr 127.0.0.1:PORT` running in the background, killed on drop. Its
/// stderr (the access log among it) goes to a file, read with [`ServeProcess::stderr`].
#[derive(Debug)]
pub(crate) struct ServeProcess {
    child: std::process::Child,
    addr: std::net::SocketAddr,
    log: tempfile::NamedTempFile,
}

impl ServeProcess {
    /// Starts `hoist serve` with `args` (`--addr` is added) and waits until `/v2/` answers
    /// (any status; over TLS when `--tls-cert` is among `args`, until the port accepts
    /// connections after the server said it serves).
    pub(crate) fn start<S: AsRef<OsStr>>(args: &[S]) -> Self {
        let addr = free_addr();
        let log = tempfile::NamedTempFile::new().expect("a temporary file for the stderr");
        let stderr = log.reopen().expect("reopening the stderr file");
        let mut command = Command::new(hoist_binary());
        command
            .arg("serve")
            .args(args)
            .arg("--addr")
            .arg(addr.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(stderr);
        let line = format!("{command:?}");
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {line}: {e}"));
        let tls = args.iter().any(|a| a.as_ref() == "--tls-cert");
        let mut serve = Self { child, addr, log };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Some(status) = serve.child.try_wait().expect("waiting for hoist serve") {
                panic!("{line} exited ({status}):\n{}", serve.stderr());
            }
            let ready = if tls {
                serve.stderr().contains("hoist: serving")
                    && std::net::TcpStream::connect(addr).is_ok()
            } else {
                answers(addr)
            };
            if ready {
                return serve;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{line} did not answer on /v2/ within 30 s:\n{}",
                serve.stderr()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// The address it listens on.
    pub(crate) fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// Its process id.
    pub(crate) fn id(&self) -> u32 {
        self.child.id()
    }

    /// Everything it wrote to stderr so far.
    pub(crate) fn stderr(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Waits for it to exit (after a signal sent by the test), at most `timeout`.
    pub(crate) fn wait_exit(&mut self, timeout: std::time::Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for hoist serve") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "hoist serve did not exit within {timeout:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Whether an HTTP server at `addr` answers `GET /v2/` with any status.
fn answers(addr: std::net::SocketAddr) -> bool {
    use std::io::{Read, Write};
    let timeout = std::time::Duration::from_secs(1);
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, timeout) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let request = format!("GET /v2/ HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut start = [0u8; 5];
    stream.read_exact(&mut start).is_ok() && &start == b"HTTP/"
}

/// A CA and a certificate for 127.0.0.1 (IP SAN) it signed, made with the `openssl` CLI in
/// `dir`; returns (CA certificate, server certificate, server key).
pub(crate) fn certificates(openssl: &Path, dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let path = |name: &str| dir.join(name);
    let text = |p: &Path| p.to_str().unwrap().to_owned();
    std::fs::write(
        path("ca.cnf"),
        "[req]\ndistinguished_name=dn\nx509_extensions=v3\nprompt=no\n[dn]\nCN=hoist test CA\n\
         [v3]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n\
         subjectKeyIdentifier=hash\n",
    )
    .unwrap();
    std::fs::write(
        path("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n\
         authorityKeyIdentifier=keyid\n",
    )
    .unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(
        openssl,
        ["req", "-x509", "-config", &text(&path("ca.cnf"))]
            .into_iter()
            .chain(ec)
            .chain([
                "-keyout",
                &text(&path("ca.key")),
                "-out",
                &text(&path("ca.crt")),
                "-days",
                "2",
            ]),
    );
    run(
        openssl,
        ["req", "-subj", "/CN=127.0.0.1"]
            .into_iter()
            .chain(ec)
            .chain([
                "-keyout",
                &text(&path("server.key")),
                "-out",
                &text(&path("server.csr")),
            ]),
    );
    run(
        openssl,
        [
            "x509",
            "-req",
            "-in",
            &text(&path("server.csr")),
            "-CA",
            &text(&path("ca.crt")),
            "-CAkey",
            &text(&path("ca.key")),
            "-CAcreateserial",
            "-out",
            &text(&path("server.crt")),
            "-days",
            "2",
            "-extfile",
            &text(&path("server.ext")),
        ],
    );
    (path("ca.crt"), path("server.crt"), path("server.key"))
}
