//! `cargo xtask bench`: speed and memory targets, measured against the machine's own limits in
//! the same run and reported as ratios.
//!
//! This module reads the command line and hands it to a scenario; each scenario is a module of
//! its own (`layout`, `server`, `client`, `build`, `unpack`, `archive`, `bucket`), and what they
//! share lives in one place each:
//! * [`measure`]: timing child processes, GNU `time`'s CPU seconds and peak RSS, medians, the
//!   order of the tools from one run to the next, targets and verdicts, tables and JSON output
//!   under `target/bench`;
//! * [`machine`]: the work directories, the tools needed, the page cache (`sync`, pauses,
//!   untimed reads, the ballast), the machine's own limits (`openssl dgst`, `dd`), versions and
//!   revisions;
//! * [`data`]: random bytes and trees made from a seed, a copy of part of `/usr`, images built
//!   from them, OCI layouts read back;
//! * [`peers`]: the peers and servers started and stopped (`docker-registry`, `hoist serve`)
//!   and the registry API through `curl`; [`load`]: the manifest load tests.
//!
//! Misses are printed as `FAIL` but do not fail the command (the machine is shared and noisy);
//! only a failing command does.

use std::ffi::OsString;
use std::path::Path;

use anyhow::Result;

mod archive;
mod bucket;
mod build;
mod client;
mod data;
mod layout;
mod load;
mod machine;
mod measure;
mod peers;
mod server;
mod unpack;

/// The scenarios `cargo xtask bench` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scenario {
    /// Push a blob into a new layout and read it back (issue 3).
    Layout,
    /// `hoist serve` against `docker-registry`, side by side (issue 4).
    Server,
    /// `hoist copy` against `skopeo copy`, pull and push (issue "registry client speed").
    Client,
    /// `hoist build` against `umoci insert` (issue "hoist build speed").
    Build,
    /// `hoist unpack` against `umoci unpack` (issue "hoist unpack speed").
    Unpack,
    /// `hoist copy` to and from docker-archives and into a Docker daemon against `skopeo copy`
    /// and `docker load`.
    Archive,
    /// `hoist serve --storage s3://` against `docker-registry` on the `s3` driver, one moto.
    Bucket,
}

/// What `cargo xtask bench` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BenchArgs {
    pub(crate) scenario: Scenario,
    pub(crate) size_mib: u64,
    pub(crate) runs: usize,
    /// Pause after each run's deletion (and after creating the source), in seconds.
    pub(crate) pause_secs: u64,
    /// Whether each run starts with the ballast write.
    pub(crate) ballast: bool,
    /// `--quick`: a smoke test (shorter load tests in the server scenario).
    pub(crate) quick: bool,
}

impl Default for BenchArgs {
    fn default() -> Self {
        Self {
            scenario: Scenario::Layout,
            size_mib: 1024,
            runs: 3,
            pause_secs: 20,
            ballast: true,
            quick: false,
        }
    }
}

/// The largest blob `--size-mib` accepts (1 TiB).
const MAX_SIZE_MIB: u64 = 1 << 20;

/// Parses the arguments after `bench`: `[layout] [--size-mib N] [--runs R] [--pause S]
/// [--quick]`, where `--quick` means `--pause 0` and no ballast (a smoke test, not a measure).
pub(crate) fn parse_args(args: &[OsString]) -> Result<BenchArgs, String> {
    let mut parsed = BenchArgs::default();
    let mut size_given = false;
    let mut runs_given = false;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let Some(arg) = arg.to_str() else {
            return Err(format!("unexpected argument {arg:?} to `bench`"));
        };
        let mut value = |name: &str| -> Result<u64, String> {
            let value = rest
                .next()
                .ok_or_else(|| format!("`{name}` needs a value"))?;
            value
                .to_str()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("`{name}` needs a whole number, not {value:?}"))
        };
        match arg {
            "layout" => parsed.scenario = Scenario::Layout,
            "server" => parsed.scenario = Scenario::Server,
            "client" => parsed.scenario = Scenario::Client,
            "build" => parsed.scenario = Scenario::Build,
            "unpack" => parsed.scenario = Scenario::Unpack,
            "archive" => parsed.scenario = Scenario::Archive,
            "bucket" => parsed.scenario = Scenario::Bucket,
            "--size-mib" => {
                parsed.size_mib = value(arg)?;
                size_given = true;
            }
            "--runs" => {
                parsed.runs =
                    usize::try_from(value(arg)?).map_err(|_| "`--runs` is too large".to_owned())?;
                runs_given = true;
            }
            "--pause" => parsed.pause_secs = value(arg)?,
            "--quick" => {
                parsed.pause_secs = 0;
                parsed.ballast = false;
                parsed.quick = true;
            }
            other => return Err(format!("unexpected argument {other:?} to `bench`")),
        }
    }
    let apply_defaults = match parsed.scenario {
        Scenario::Layout => |_: &mut BenchArgs, _, _| {},
        Scenario::Server => server::apply_defaults,
        Scenario::Client => client::apply_defaults,
        Scenario::Build => build::apply_defaults,
        Scenario::Unpack => unpack::apply_defaults,
        Scenario::Archive => archive::apply_defaults,
        Scenario::Bucket => bucket::apply_defaults,
    };
    apply_defaults(&mut parsed, size_given, runs_given);
    if !(1..=MAX_SIZE_MIB).contains(&parsed.size_mib) {
        return Err(format!("`--size-mib` must be from 1 to {MAX_SIZE_MIB}"));
    }
    if parsed.runs == 0 {
        return Err("`--runs` must be at least 1".to_owned());
    }
    Ok(parsed)
}

pub(crate) fn run(root: &Path, args: &BenchArgs) -> Result<()> {
    match args.scenario {
        Scenario::Layout => layout::run(root, args),
        Scenario::Server => server::run(root, args),
        Scenario::Client => client::run(root, args),
        Scenario::Build => build::run(root, args),
        Scenario::Unpack => unpack::run(root, args),
        Scenario::Archive => archive::run(root, args),
        Scenario::Bucket => bucket::run(root, args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command line as `parse_args` receives it (the scenarios' tests use it too).
    pub(super) fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn defaults_are_the_issue_scenario() {
        assert_eq!(
            parse_args(&[]),
            Ok(BenchArgs {
                scenario: Scenario::Layout,
                size_mib: 1024,
                runs: 3,
                pause_secs: 20,
                ballast: true,
                quick: false,
            })
        );
        assert_eq!(parse_args(&args(&["layout"])), parse_args(&[]));
    }

    #[test]
    fn options_are_parsed() {
        let parsed = parse_args(&args(&[
            "layout",
            "--size-mib",
            "64",
            "--runs",
            "5",
            "--quick",
        ]));
        assert_eq!(
            parsed,
            Ok(BenchArgs {
                scenario: Scenario::Layout,
                size_mib: 64,
                runs: 5,
                pause_secs: 0,
                ballast: false,
                quick: true,
            })
        );
        assert_eq!(
            parse_args(&args(&["--pause", "90"])).map(|a| a.pause_secs),
            Ok(90)
        );
    }

    #[test]
    fn bad_arguments_are_refused() {
        for bad in [
            &["registry"][..],
            &["server", "--size-mib", "0"],
            &["--size-mib"],
            &["--size-mib", "-1"],
            &["--size-mib", "0"],
            &["--size-mib", "1048577"],
            &["--runs", "0"],
            &["--runs", "three"],
            &["--fast"],
        ] {
            assert!(parse_args(&args(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn server_scenario_defaults_to_256_mib() {
        let parsed = parse_args(&args(&["server"])).unwrap();
        assert_eq!(parsed.scenario, Scenario::Server);
        assert_eq!(parsed.size_mib, 256);
        assert_eq!(parsed.runs, 3);
        let parsed = parse_args(&args(&["server", "--size-mib", "64", "--quick"])).unwrap();
        assert_eq!((parsed.size_mib, parsed.quick), (64, true));
        assert_eq!(
            parse_args(&args(&["--size-mib", "64", "server"])).map(|a| a.size_mib),
            Ok(64)
        );
    }
}
