//! `cargo xtask`: the developer tasks of the hoist workspace.
//!
//! Run `cargo xtask help` for the list of commands. Arguments are parsed by hand and commands are
//! run with `std::process::Command`, so that the tool builds quickly and has few dependencies.

// xtask is a command-line tool: printing to stdout and stderr is its whole interface.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod ci;
mod dist;
mod fuzz;
mod lint;

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

const USAGE: &str = "\
usage: cargo xtask <command> [args]

commands:
  ci [-- <args>]  run the CI pipeline: fmt, clippy, test, doc and lint, stopping at the first
                  failure; <args> are appended to `cargo test --workspace --locked`
                  (for example `cargo xtask ci -- -- --nocapture`)
  lint            check the crate layering and the tidy rules of the workspace
  dist            build `hoist` with the dist profile (LTO, stripped) and pack it with its
                  man page and bash, zsh and fish completions, README and LICENSE into
                  target/dist/hoist-<version>-<target>.tar.gz, with target/dist/SHA256SUMS
  bench [SCENARIO...] [--scenario SCENARIO] [--size-mib N] [--runs R] [--pause S] [--quick]
        [--readme]
                  measure speed and memory targets against peer tools and the machine's
                  limits, measured side by side in the same run; prints a table and writes
                  target/bench/<scenario>.json. Without a scenario, runs all of them one
                  after the other (startup, layout, files, client, copy, images, server,
                  build, unpack, archive, bucket), goes on past a failing one and fails at the end; when
                  several ran, writes target/bench/all.json (every scenario's results, the
                  machine, the date, the command) and prints one table of every target.
                  --quick: a smoke run of each scenario (small sizes, 1 run, no pause, no
                  ballast). --readme: rewrite the README between <!-- bench:start --> and
                  <!-- bench:end --> with the table, the date, the machine and the command
                  (refused with --quick)
  bench layout [--size-mib N] [--runs R] [--pause S] [--quick]
                  push a blob into a new layout and read it back, against dd and openssl
                  (default: 1024 MiB, 6 runs after a warm-up run, a 20 s pause after each run's deletion, an
                  untimed ballast write before each run; --quick: 64 MiB, 1 run)
  bench files [--size-mib N] [--runs R] [--quick]
                  a seeded tree of tens of thousands of small files: `hoist build` against
                  `umoci insert`, `hoist unpack --rootless` against `umoci unpack`, `hoist
                  export` against `umoci raw unpack` + `tar -c`; peak RSS (needs umoci, GNU
                  time; default: 128 MiB, about 28,000 files, 6 runs after a warm-up run;
                  --quick: 16 MiB, 1 run)
  bench startup [--size-mib N] [--runs R] [--quick]
                  `hoist digest oci:DIR:TAG` against `skopeo inspect --raw` and `oras
                  manifest fetch --oci-layout` of a small layout: medians and min-max of R
                  rounds after a warm-up, order alternating, peak RSS (needs skopeo, oras,
                  GNU time; default: a 1 MiB layer, 50 rounds; --quick: 1 round)
  bench server [--size-mib N] [--runs R] [--quick]
                  `hoist serve` against docker-registry (filesystem storage, loopback), side
                  by side: blob upload and download throughput, manifest HEAD/GET requests
                  per second and p99 latency with 1, 32 and 256 connections (needs curl,
                  wrk, docker-registry), memory per idle connection (default: 256 MiB blob,
                  6 runs after a warm-up run, 3 s load tests; --quick: 64 MiB, 1 run, no
                  warm-up, no ballast, 2 s load tests)
  bench client [--size-mib N] [--runs R] [--pause S] [--quick]
                  `hoist copy` against `skopeo copy` and `oras cp` with docker-registry
                  (loopback), pull into a new layout and push into a new registry, beside
                  the machine's limits measured with curl, openssl and dd, 4 blobs at a
                  time; peak RSS (needs curl, skopeo, oras, docker-registry, gzip, GNU time;
                  default: 1024 MiB in 8 gzip layers of random data, 6 runs after a warm-up
                  run; --quick: 64
                  MiB, 1 run)
  bench copy [--size-mib N] [--runs R] [--pause S] [--quick]
                  `hoist copy` from one docker-registry to a fresh second one against
                  `skopeo copy` and `oras cp`, beside the second registry's intake (curl
                  uploads of the same blobs, 4 at a time); and `hoist copy` within one
                  registry (mounts, checked in its access log); peak RSS (needs curl,
                  skopeo, oras, docker-registry, GNU time; default: 1024 MiB in 8 layers of
                  seeded random data, 6 runs after a warm-up run; --quick: 64 MiB, 1 run)
  bench images [--size-mib N] [--runs R] [--pause S] [--quick]
                  a 50-layer image pulled into a new layout and pushed into a new registry,
                  and a 4-platform index copied to a new registry: `hoist copy` against
                  `oras cp` and `skopeo copy (--all)`, the index beside the registry's intake
                  (curl); peak RSS (needs curl, skopeo, oras, docker-registry, GNU time;
                  default: 256 MiB in all, 6 runs after a warm-up run; --quick: 32 MiB, 1 run)
  bench build [--size-mib N] [--runs R] [--pause S] [--quick]
                  `hoist build --layer DIR` against `umoci insert` of the same tree into a new
                  layout (gzip), on a generated tree (seeded, mixed sizes, half random, half
                  text) and a copy of part of /usr, beside the machine's limits (tar read,
                  pigz on 1 and all cores, openssl, dd); peak RSS (needs umoci, pigz, GNU
                  time; default: 1024 MiB generated + 384 MiB of /usr, 6 runs after a warm-up
                  run; --quick: 64
                  MiB, 1 run)
  bench unpack [--size-mib N] [--runs R] [--pause S] [--quick]
                  `hoist unpack --rootless` against `umoci unpack --rootless` of the same
                  layout into a new directory, on a generated image (8 gzip layers, half
                  random, half text) and one of part of /usr in 3 layers, beside the
                  machine's limits (gzip, pigz and zlib inflate on one core, tar -xf of the
                  tars); peak RSS (needs umoci, pigz, python3, GNU time; default: 512 MiB
                  generated + 320 MiB of /usr, 6 runs after a warm-up run, every run's trees
                  kept until the end, as ext4 without a journal is slow to make files for
                  minutes after a deletion; --quick: 64 MiB, 1 run)
  bench archive [--size-mib N] [--runs R] [--pause S] [--quick]
                  `hoist copy` against `skopeo copy` writing a docker-archive of an OCI
                  layout and reading skopeo's archive into a new layout, and into a fresh
                  Docker 20.10 daemon against `docker load` of skopeo's archive, beside the
                  machine's limits (cat, openssl, dd); peak RSS (needs skopeo, docker.io,
                  GNU time; default: 1024 MiB in 8 gzip layers of seeded random data, 6
                  runs after a warm-up run; --quick: 64 MiB, 1 run)
  bench bucket [--size-mib N] [--runs R] [--pause S] [--quick]
                  `hoist serve --storage s3://` against docker-registry's s3 driver on one
                  moto (loopback), side by side: push and pull with `hoist copy` for both,
                  manifest HEAD/GET requests per second (32 connections), moto's own GET
                  speed with curl (needs moto from tests/peers/install.sh, curl, wrk,
                  docker-registry; default: 256 MiB in 4 gzip layers of seeded random data,
                  3 runs; --quick: 64 MiB, 1 run)
  fuzz [TARGET...] [--seconds N] [-j N]
                  run the fuzz targets of fuzz/ (all by default) with cargo fuzz, N seconds
                  each (default 60), N at once (default 1); a failing input is left in
                  fuzz/artifacts/TARGET/ (needs `cargo install cargo-fuzz --locked`; nightly
                  flags through RUSTC_BOOTSTRAP=1)
  help            print this message
";

/// What the command line asked for.
#[derive(Debug, PartialEq, Eq)]
enum Cmd {
    Help,
    Ci { test_args: Vec<OsString> },
    Lint,
    Dist,
    Bench(bench::BenchCmd),
    Fuzz(fuzz::FuzzArgs),
}

/// A command line that cannot be run; reported with the usage and exit code 2.
#[derive(Debug, PartialEq, Eq)]
struct UsageError(String);

fn parse_args(args: &[OsString]) -> Result<Cmd, UsageError> {
    let Some((cmd, rest)) = args.split_first() else {
        return Ok(Cmd::Help);
    };
    let Some(cmd) = cmd.to_str() else {
        return Err(UsageError(format!("unknown command {cmd:?}")));
    };
    let cmd = match cmd {
        "help" | "-h" | "--help" => Cmd::Help,
        "ci" => match rest.split_first() {
            None => Cmd::Ci {
                test_args: Vec::new(),
            },
            Some((sep, test_args)) if sep == "--" => Cmd::Ci {
                test_args: test_args.to_vec(),
            },
            Some((arg, _)) => {
                return Err(UsageError(format!(
                    "unexpected argument {arg:?} to `ci` (extra `cargo test` arguments go after `--`)"
                )));
            }
        },
        "lint" => Cmd::Lint,
        "dist" => Cmd::Dist,
        "bench" => Cmd::Bench(bench::parse_args(rest).map_err(UsageError)?),
        "fuzz" => Cmd::Fuzz(fuzz::parse_args(rest).map_err(UsageError)?),
        other => return Err(UsageError(format!("unknown command `{other}`"))),
    };
    if matches!(cmd, Cmd::Lint | Cmd::Dist | Cmd::Help)
        && let Some(arg) = rest.first()
    {
        return Err(UsageError(format!("unexpected argument {arg:?}")));
    }
    Ok(cmd)
}

fn main() -> ExitCode {
    let args: Vec<OsString> = env::args_os().skip(1).collect();
    let cmd = match parse_args(&args) {
        Ok(cmd) => cmd,
        Err(UsageError(msg)) => {
            eprintln!("error: {msg}\n");
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match cmd {
        Cmd::Help => {
            print!("{USAGE}");
            Ok(())
        }
        Cmd::Ci { test_args } => workspace_root().and_then(|root| ci::run(&root, &test_args)),
        Cmd::Lint => workspace_root().and_then(|root| lint::run(&root)),
        Cmd::Dist => workspace_root().and_then(|root| dist::run(&root)),
        Cmd::Bench(args) => workspace_root().and_then(|root| bench::run(&root, &args)),
        Cmd::Fuzz(args) => workspace_root().and_then(|root| fuzz::run(&root, &args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: the parent of this crate's directory.
pub(crate) fn workspace_root() -> Result<PathBuf> {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    match manifest_dir.parent() {
        Some(root) => Ok(root.to_path_buf()),
        None => bail!("xtask directory {} has no parent", manifest_dir.display()),
    }
}

/// A `cargo` command run from the workspace root, using the cargo that runs us (`$CARGO`) if any.
pub(crate) fn cargo(root: &Path) -> Command {
    let program = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(program);
    cmd.current_dir(root);
    cmd
}

/// Runs `cmd` to completion with inherited stdio and fails unless it exits successfully.
pub(crate) fn run_status(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("failed to start {}", describe(cmd)))?;
    if !status.success() {
        bail!("{} failed ({status})", describe(cmd));
    }
    Ok(())
}

/// `cmd` as a shell-like string for messages, e.g. "`cargo fmt --all --check`".
pub(crate) fn describe(cmd: &Command) -> String {
    let program = Path::new(cmd.get_program())
        .file_name()
        .unwrap_or(cmd.get_program())
        .to_string_lossy();
    let mut out = format!("`{program}");
    for arg in cmd.get_args() {
        out.push(' ');
        out.push_str(&arg.to_string_lossy());
    }
    out.push('`');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn no_args_and_help_print_usage() {
        assert_eq!(parse_args(&[]), Ok(Cmd::Help));
        assert_eq!(parse_args(&args(&["help"])), Ok(Cmd::Help));
        assert_eq!(parse_args(&args(&["--help"])), Ok(Cmd::Help));
    }

    #[test]
    fn ci_passes_args_after_separator() {
        assert_eq!(
            parse_args(&args(&["ci"])),
            Ok(Cmd::Ci {
                test_args: Vec::new()
            })
        );
        assert_eq!(
            parse_args(&args(&["ci", "--", "--", "--nocapture"])),
            Ok(Cmd::Ci {
                test_args: args(&["--", "--nocapture"])
            })
        );
        assert!(parse_args(&args(&["ci", "--nocapture"])).is_err());
    }

    #[test]
    fn unknown_commands_and_stray_args_are_usage_errors() {
        assert!(parse_args(&args(&["bogus"])).is_err());
        assert!(parse_args(&args(&["lint", "extra"])).is_err());
        assert_eq!(parse_args(&args(&["lint"])), Ok(Cmd::Lint));
        assert_eq!(parse_args(&args(&["dist"])), Ok(Cmd::Dist));
        assert!(parse_args(&args(&["dist", "extra"])).is_err());
    }

    #[test]
    fn bench_takes_its_own_arguments() {
        let Ok(Cmd::Bench(all)) = parse_args(&args(&["bench"])) else {
            panic!("`bench` is not a bench");
        };
        assert_eq!(all.scenarios.len(), 11);
        let Ok(Cmd::Bench(one)) = parse_args(&args(&["bench", "layout", "--runs", "1"])) else {
            panic!("`bench layout` is not a bench");
        };
        assert_eq!(one.scenarios.len(), 1);
        assert_eq!(one.scenarios[0].runs, 1);
        let Ok(Cmd::Bench(server)) = parse_args(&args(&["bench", "--scenario", "server"])) else {
            panic!("`bench --scenario server` is not a bench");
        };
        assert_eq!(server.scenarios[0].size_mib, 256);
        assert!(parse_args(&args(&["bench", "--runs"])).is_err());
        assert!(parse_args(&args(&["bench", "--quick", "--readme"])).is_err());
    }

    #[test]
    fn describe_shows_program_name_and_args() {
        let mut cmd = Command::new("/usr/bin/cargo");
        cmd.args(["fmt", "--all"]);
        assert_eq!(describe(&cmd), "`cargo fmt --all`");
    }
}
