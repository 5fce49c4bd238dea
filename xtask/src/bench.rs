//! `cargo xtask bench`: speed and memory targets, measured against peer tools and the machine's
//! own limits in the same run and reported as ratios.
//!
//! This module reads the command line and runs the scenarios it names, all of them in
//! [`Scenario::ALL`]'s order when it names none; each scenario is a module of its own
//! (`startup`, `layout`, `files`, `client`, `copy`, `images`, `server`, `build`, `unpack`,
//! `archive`, `bucket`),
//! and what they share lives in one place each:
//! * [`measure`]: timing child processes, GNU `time`'s CPU seconds and peak RSS, medians, the
//!   order of the tools from one run to the next, targets (with the figures behind their ratios)
//!   and verdicts, tables and JSON output under `target/bench`;
//! * [`machine`]: the work directories, the tools needed, the page cache (`sync`, pauses,
//!   untimed reads, the ballast), the machine's own limits (`openssl dgst`, `dd`), versions and
//!   revisions, and the machine itself (cores, memory, kernel);
//! * [`data`]: random bytes and trees made from a seed, a copy of part of `/usr`, images built
//!   from them, OCI layouts read back;
//! * [`peers`]: the peers and servers started and stopped (`docker-registry`, `hoist serve`)
//!   and the registry API through `curl` (an image put from a layout, the access log read);
//!   [`load`]: the manifest load tests;
//! * [`summary`]: what a run of several scenarios makes of their JSON files: one row per
//!   target, `target/bench/all.json`, and the README's benchmark section (`--readme`).
//!
//! Every scenario runs an uncounted warm-up run, then [`measure::DEFAULT_RUNS`] counted runs
//! unless it sets its own count (`startup` 50 rounds, `archive` 6 runs) or `--runs` is given;
//! `--quick` runs once without a warm-up ([`measure::Runs`]). The tables and JSON files say how
//! many runs were counted and how many warm-up runs preceded them.
//!
//! What a full run's time is made of: per scenario, its set-up and, for each of its runs, the
//! steps of hoist and of its peers, the ballast write and the `sync`s around them; the scenarios
//! that delete a run's files when it ends (layout, client, copy, build, archive, bucket) pause
//! `--pause` seconds after each deletion but the last, and all but startup and server pause
//! once after its set-up. unpack and files delete nothing until they end and so never pause
//! between runs (see unpack's module for why a pause there would have to last minutes). No
//! full run has been timed yet: the figure to plan with comes from the first one.
//!
//! The peers each scenario needs, and how to install them, are listed in the README's
//! benchmark section; a missing one fails its scenario with the package to install
//! ([`machine::require_tools`]).
//!
//! A failing scenario does not stop the others; the command fails at the end if any did.
//! Misses are printed as `FAIL` but do not fail the command (the machine is shared and noisy);
//! only a failing command does.

use std::ffi::OsString;
use std::path::Path;

use anyhow::{Context, Result, bail};

mod archive;
mod bucket;
mod build;
mod client;
mod copy;
mod data;
mod files;
mod images;
mod layout;
mod load;
mod machine;
mod measure;
mod peers;
mod server;
mod startup;
mod summary;
mod unpack;

/// The scenarios `cargo xtask bench` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scenario {
    /// `hoist digest` of a small layout against `skopeo inspect --raw` and `oras manifest
    /// fetch`: what a short command costs.
    Startup,
    /// Push a blob into a new layout and read it back (issue 3).
    Layout,
    /// A tree of tens of thousands of small files: `hoist build`, `unpack` and `export`
    /// against umoci (issue 18).
    Files,
    /// `hoist serve` against `docker-registry`, side by side (issue 4).
    Server,
    /// `hoist copy` against `skopeo copy` and `oras cp`, pull and push (issue "registry client
    /// speed").
    Client,
    /// `hoist copy` from one registry to another against `skopeo copy` and `oras cp`, and
    /// within one registry (mounts).
    Copy,
    /// A 50-layer image pulled and pushed, and a 4-platform index copied, against `oras cp`
    /// and `skopeo copy` (issue 18).
    Images,
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

impl Scenario {
    /// Every scenario, in the order `cargo xtask bench` runs them without `--scenario`: the
    /// short ones first (files among them: it makes tens of thousands of files, best done
    /// before any scenario has deleted as many), then those that share `docker-registry`, then
    /// build, then those whose peers are the heaviest to start (a Docker daemon, moto), and
    /// unpack last: it keeps every run's trees until it ends, and the deletion of hundreds of
    /// thousands of files that follows would slow whatever created files next (see its
    /// module).
    pub(crate) const ALL: [Self; 11] = [
        Self::Startup,
        Self::Layout,
        Self::Files,
        Self::Client,
        Self::Copy,
        Self::Images,
        Self::Server,
        Self::Build,
        Self::Archive,
        Self::Bucket,
        Self::Unpack,
    ];

    /// The programs the scenario runs besides hoist and GNU `time` (moto is found apart: in
    /// its own virtual environment, see `bucket`). Checked for every scenario asked before the
    /// first starts, so that a run of all of them does not stop at the eighth for want of one.
    pub(crate) fn tools(self) -> &'static [&'static str] {
        match self {
            Self::Startup => &["skopeo", "oras"],
            Self::Layout => &["dd", "openssl"],
            Self::Files => &["umoci", "tar", "gzip"],
            Self::Server => &["curl", "wrk", "docker-registry"],
            Self::Client => &[
                "curl",
                "skopeo",
                "oras",
                "docker-registry",
                "openssl",
                "gzip",
                "dd",
            ],
            Self::Copy => &["curl", "skopeo", "oras", "docker-registry"],
            Self::Images => &["curl", "skopeo", "oras", "docker-registry"],
            Self::Build => &["umoci", "pigz", "openssl", "dd", "tar"],
            Self::Unpack => &["umoci", "gzip", "pigz", "tar", "python3"],
            Self::Archive => &["skopeo", "openssl", "dd", "cat", "tar"],
            Self::Bucket => &["curl", "wrk", "docker-registry"],
        }
    }

    /// The name on the command line and of `target/bench/NAME.json`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Startup => "startup",
            Self::Layout => "layout",
            Self::Files => "files",
            Self::Server => "server",
            Self::Client => "client",
            Self::Copy => "copy",
            Self::Images => "images",
            Self::Build => "build",
            Self::Unpack => "unpack",
            Self::Archive => "archive",
            Self::Bucket => "bucket",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// What one scenario is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BenchArgs {
    pub(crate) scenario: Scenario,
    pub(crate) size_mib: u64,
    pub(crate) runs: usize,
    /// Pause after each run's deletion (and after creating the source), in seconds.
    pub(crate) pause_secs: u64,
    /// Whether each run starts with the ballast write.
    pub(crate) ballast: bool,
    /// `--quick`: a smoke run (small sizes, one run, shorter load tests).
    pub(crate) quick: bool,
}

impl Default for BenchArgs {
    fn default() -> Self {
        Self {
            scenario: Scenario::Layout,
            size_mib: 1024,
            runs: measure::DEFAULT_RUNS,
            pause_secs: 20,
            ballast: true,
            quick: false,
        }
    }
}

/// What `cargo xtask bench` was asked to do: one or more scenarios, one after the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BenchCmd {
    /// The scenarios to run, in order, each with its own defaults applied.
    pub(crate) scenarios: Vec<BenchArgs>,
    /// `--readme`: rewrite the benchmark section of `README.md` after the run.
    pub(crate) readme: bool,
    /// The command line, as the reports quote it.
    pub(crate) command: String,
}

/// The largest blob `--size-mib` accepts (1 TiB).
const MAX_SIZE_MIB: u64 = 1 << 20;
/// The layout and server scenarios' size under `--quick`.
const QUICK_SIZE_MIB: u64 = 64;

/// The layout scenario's defaults: those of [`BenchArgs`] (1 GiB), or with `--quick`
/// [`QUICK_SIZE_MIB`] and one run.
const LAYOUT_DEFAULTS: measure::Defaults = measure::Defaults::sized(1024, QUICK_SIZE_MIB);

/// Parses the arguments after `bench`: `[SCENARIO...] [--scenario SCENARIO] [--size-mib N]
/// [--runs R] [--pause S] [--quick] [--readme]`, where `--quick` means `--pause 0`, no ballast
/// and each scenario's smoke sizes (a smoke test, not a measure). No scenario means all of
/// them, in [`Scenario::ALL`]'s order.
pub(crate) fn parse_args(args: &[OsString]) -> Result<BenchCmd, String> {
    let mut base = BenchArgs::default();
    let mut scenarios: Vec<Scenario> = Vec::new();
    let mut readme = false;
    let mut size_given = false;
    let mut runs_given = false;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let Some(arg) = arg.to_str() else {
            return Err(format!("unexpected argument {arg:?} to `bench`"));
        };
        let mut text = |name: &str| -> Result<String, String> {
            let value = rest
                .next()
                .ok_or_else(|| format!("`{name}` needs a value"))?;
            value
                .to_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("`{name}` needs text, not {value:?}"))
        };
        let number = |name: &str, value: String| -> Result<u64, String> {
            value
                .parse()
                .map_err(|_| format!("`{name}` needs a whole number, not {value:?}"))
        };
        let scenario = match arg {
            "--scenario" => {
                let name = text(arg)?;
                Some(Scenario::from_name(&name).ok_or_else(|| {
                    format!("unknown scenario {name:?} (known: {})", known_scenarios())
                })?)
            }
            _ => Scenario::from_name(arg),
        };
        if let Some(scenario) = scenario {
            if !scenarios.contains(&scenario) {
                scenarios.push(scenario);
            }
            continue;
        }
        match arg {
            "--size-mib" => {
                base.size_mib = number(arg, text(arg)?)?;
                size_given = true;
            }
            "--runs" => {
                base.runs = usize::try_from(number(arg, text(arg)?)?)
                    .map_err(|_| "`--runs` is too large".to_owned())?;
                runs_given = true;
            }
            "--pause" => base.pause_secs = number(arg, text(arg)?)?,
            "--quick" => {
                base.pause_secs = 0;
                base.ballast = false;
                base.quick = true;
            }
            "--readme" => readme = true,
            other => return Err(format!("unexpected argument {other:?} to `bench`")),
        }
    }
    if !(1..=MAX_SIZE_MIB).contains(&base.size_mib) {
        return Err(format!("`--size-mib` must be from 1 to {MAX_SIZE_MIB}"));
    }
    if base.runs == 0 {
        return Err("`--runs` must be at least 1".to_owned());
    }
    if readme && base.quick {
        return Err(
            "`--readme` publishes real runs only; drop `--quick` (smoke runs are not measures)"
                .to_owned(),
        );
    }
    if scenarios.is_empty() {
        scenarios = Scenario::ALL.to_vec();
    }
    let scenarios = scenarios
        .into_iter()
        .map(|scenario| {
            let mut parsed = BenchArgs {
                scenario,
                ..base.clone()
            };
            let defaults = match scenario {
                Scenario::Startup => startup::DEFAULTS,
                Scenario::Layout => LAYOUT_DEFAULTS,
                Scenario::Files => files::DEFAULTS,
                Scenario::Server => server::DEFAULTS,
                Scenario::Client => client::DEFAULTS,
                Scenario::Copy => copy::DEFAULTS,
                Scenario::Images => images::DEFAULTS,
                Scenario::Build => build::DEFAULTS,
                Scenario::Unpack => unpack::DEFAULTS,
                Scenario::Archive => archive::DEFAULTS,
                Scenario::Bucket => bucket::DEFAULTS,
            };
            defaults.apply(&mut parsed, size_given, runs_given);
            parsed
        })
        .collect();
    Ok(BenchCmd {
        scenarios,
        readme,
        command: command_line(args),
    })
}

fn known_scenarios() -> String {
    Scenario::ALL.map(Scenario::name).join(", ")
}

/// `cargo xtask bench ARGS`, each argument quoted for a shell if it needs it.
fn command_line(args: &[OsString]) -> String {
    let mut line = "cargo xtask bench".to_owned();
    for arg in args {
        let arg = arg.to_string_lossy();
        let plain = !arg.is_empty()
            && arg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@+".contains(c));
        line.push(' ');
        if plain {
            line.push_str(&arg);
        } else {
            line.push_str(&format!("'{}'", arg.replace('\'', "'\\''")));
        }
    }
    line
}

/// Runs one scenario; it writes `target/bench/NAME.json`.
fn run_scenario(root: &Path, args: &BenchArgs) -> Result<()> {
    match args.scenario {
        Scenario::Startup => startup::run(root, args),
        Scenario::Layout => layout::run(root, args),
        Scenario::Files => files::run(root, args),
        Scenario::Server => server::run(root, args),
        Scenario::Client => client::run(root, args),
        Scenario::Copy => copy::run(root, args),
        Scenario::Images => images::run(root, args),
        Scenario::Build => build::run(root, args),
        Scenario::Unpack => unpack::run(root, args),
        Scenario::Archive => archive::run(root, args),
        Scenario::Bucket => bucket::run(root, args),
    }
}

/// Runs the scenarios one after the other, going on past a failing one; then, if several ran,
/// writes `target/bench/all.json` and prints every target's row; with `--readme`, rewrites the
/// benchmark section of `README.md`. Fails at the end if any scenario failed.
pub(crate) fn run(root: &Path, cmd: &BenchCmd) -> Result<()> {
    let mut tools: Vec<&str> = cmd
        .scenarios
        .iter()
        .flat_map(|args| args.scenario.tools().iter().copied())
        .collect();
    tools.sort_unstable();
    tools.dedup();
    machine::require_tools(&tools).context("before any scenario ran")?;
    // Where `cargo xtask dist` finds the binary the bench measures: results beside it.
    let bench_dir = crate::dist::target_dir(root)?.join("bench");
    let several = cmd.scenarios.len() > 1;
    let mut done = Vec::new();
    let mut failed = Vec::new();
    for (i, args) in cmd.scenarios.iter().enumerate() {
        let name = args.scenario.name();
        if several {
            println!(
                "\n===> scenario {name} ({} of {}): {} MiB, {}",
                i + 1,
                cmd.scenarios.len(),
                args.size_mib,
                measure::Runs::new(args).describe()
            );
        }
        match summary::run_and_read(&bench_dir, name, || run_scenario(root, args)) {
            Ok(json) => done.push((name, json)),
            Err(err) => {
                eprintln!("error: scenario {name} failed: {err:#}");
                failed.push((name, format!("{err:#}")));
            }
        }
    }
    let rows = summary::rows(&done);
    if several {
        let path = summary::write_all(&bench_dir, cmd, &done, &failed, &rows)?;
        println!("\n{}", summary::markdown_table(&rows));
        println!("all results: {}", path.display());
    }
    if cmd.readme {
        if done.is_empty() {
            bail!("no scenario ran to the end: README.md left as it is");
        }
        let ran: Vec<&str> = done.iter().map(|(name, _)| *name).collect();
        let readme = summary::rewrite_readme(root, cmd, &rows, &ran, &failed)?;
        println!("rewrote the benchmark section of {}", readme.display());
    }
    if !failed.is_empty() {
        let names: Vec<&str> = failed.iter().map(|(name, _)| *name).collect();
        bail!(
            "{} of {} scenario(s) failed: {}",
            failed.len(),
            cmd.scenarios.len(),
            names.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command line as `parse_args` receives it (the scenarios' tests use it too).
    pub(super) fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    /// The one scenario `list` asks for.
    pub(super) fn parse_one(list: &[&str]) -> Result<BenchArgs, String> {
        let cmd = parse_args(&args(list))?;
        match cmd.scenarios.as_slice() {
            [one] => Ok(one.clone()),
            more => Err(format!("{} scenarios", more.len())),
        }
    }

    #[test]
    fn no_scenario_means_all_in_order() {
        let cmd = parse_args(&[]).unwrap();
        let names: Vec<&str> = cmd.scenarios.iter().map(|a| a.scenario.name()).collect();
        assert_eq!(
            names,
            [
                "startup", "layout", "files", "client", "copy", "images", "server", "build",
                "archive", "bucket", "unpack"
            ]
        );
        assert!(!cmd.readme);
        assert_eq!(cmd.command, "cargo xtask bench");
        // Each keeps its own defaults.
        let client = &cmd.scenarios[3];
        assert_eq!(
            (client.size_mib, client.runs),
            (1024, measure::DEFAULT_RUNS)
        );
        assert_eq!(cmd.scenarios[1], BenchArgs::default());
    }

    #[test]
    fn layout_defaults_are_the_issue_scenario() {
        assert_eq!(parse_one(&["layout"]), Ok(BenchArgs::default()));
        assert_eq!(
            parse_one(&["--scenario", "layout"]),
            Ok(BenchArgs::default())
        );
    }

    #[test]
    fn options_are_parsed() {
        let parsed = parse_one(&["layout", "--size-mib", "64", "--runs", "5", "--quick"]);
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
            parse_one(&["layout", "--pause", "90"]).map(|a| a.pause_secs),
            Ok(90)
        );
        let cmd = parse_args(&args(&["--scenario", "client", "startup", "client"])).unwrap();
        let names: Vec<&str> = cmd.scenarios.iter().map(|a| a.scenario.name()).collect();
        assert_eq!(names, ["client", "startup"]);
    }

    #[test]
    fn quick_makes_every_scenario_a_smoke_run() {
        let cmd = parse_args(&args(&["--quick"])).unwrap();
        assert_eq!(cmd.scenarios.len(), Scenario::ALL.len());
        for args in &cmd.scenarios {
            assert!(args.quick && !args.ballast, "{args:?}");
            assert_eq!(args.runs, 1, "{args:?}");
            assert!(args.size_mib <= 64, "{args:?}");
            assert_eq!(args.pause_secs, 0, "{args:?}");
        }
    }

    #[test]
    fn every_scenario_counts_at_least_5_runs_after_a_warm_up() {
        // An even count: each of the two alternating orders counts as often.
        assert_eq!(BenchArgs::default().runs, 6);
        let cmd = parse_args(&[]).unwrap();
        for args in &cmd.scenarios {
            assert!(args.runs >= 5, "{args:?}");
            let runs = measure::Runs::new(args);
            assert_eq!((runs.warm_up, runs.counted), (1, args.runs), "{args:?}");
        }
        // `--runs` overrides every scenario's default, and `--quick` has no warm-up.
        for list in [&["--runs", "2"][..], &["--runs", "2", "--quick"]] {
            let cmd = parse_args(&args(list)).unwrap();
            for parsed in &cmd.scenarios {
                assert_eq!(parsed.runs, 2, "{list:?} {parsed:?}");
                let runs = measure::Runs::new(parsed);
                assert_eq!(runs.warm_up, usize::from(!parsed.quick), "{parsed:?}");
            }
        }
        let cmd = parse_args(&args(&["--quick"])).unwrap();
        for parsed in &cmd.scenarios {
            assert_eq!(measure::Runs::new(parsed).total(), 1, "{parsed:?}");
        }
    }

    #[test]
    fn readme_needs_a_real_run() {
        let cmd = parse_args(&args(&["--readme"])).unwrap();
        assert!(cmd.readme);
        assert_eq!(cmd.scenarios.len(), Scenario::ALL.len());
        assert!(parse_args(&args(&["client", "--readme", "--quick"])).is_err());
        assert!(parse_args(&args(&["--quick", "--readme"])).is_err());
    }

    #[test]
    fn the_command_line_is_quoted_for_a_shell() {
        let cmd = parse_args(&args(&["--scenario", "client", "--runs", "5", "--readme"])).unwrap();
        assert_eq!(
            cmd.command,
            "cargo xtask bench --scenario client --runs 5 --readme"
        );
        assert_eq!(
            command_line(&args(&["a b", "it's"])),
            "cargo xtask bench 'a b' 'it'\\''s'"
        );
    }

    #[test]
    fn bad_arguments_are_refused() {
        for bad in [
            &["registry"][..],
            &["--scenario"],
            &["--scenario", "registry"],
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
    fn server_scenario_defaults_to_256_mib_and_6_runs() {
        let parsed = parse_one(&["server"]).unwrap();
        assert_eq!(parsed.scenario, Scenario::Server);
        assert_eq!(parsed.size_mib, 256);
        assert_eq!(parsed.runs, 6);
        let parsed = parse_one(&["server", "--size-mib", "128", "--quick"]).unwrap();
        assert_eq!((parsed.size_mib, parsed.quick, parsed.runs), (128, true, 1));
        assert_eq!(
            parse_one(&["--size-mib", "64", "server"]).map(|a| a.size_mib),
            Ok(64)
        );
    }
}
