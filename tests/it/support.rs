//! Support for the interop tests: finding the third-party peers and running them.
//!
//! The project rule: locally, an interop test whose peer is not installed skips with a printed
//! reason; on CI (`CI=true`) or with `HOIST_PEERS` set, a missing peer is a failure.
//! `tests/peers/install.sh` installs every peer.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Whether missing peers fail the tests instead of skipping them.
fn peers_required() -> bool {
    std::env::var_os("HOIST_PEERS").is_some() || std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The path of the peer program `name`, found on `PATH`.
///
/// When it is missing: `None` after printing why the test skips, or a panic on CI (`CI=true`)
/// and with `HOIST_PEERS` set.
// The skip reason is for the person running the tests (shown with `--nocapture`).
#[allow(clippy::print_stdout)]
pub(crate) fn peer(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| is_executable(candidate))
    });
    if found.is_none() {
        assert!(
            !peers_required(),
            "{name} not installed, and peers are required here (CI=true or HOIST_PEERS): \
             run tests/peers/install.sh"
        );
        println!("skipping: {name} not installed (run tests/peers/install.sh)");
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
