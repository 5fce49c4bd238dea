//! Scenario `startup`: what a short command costs, start to exit. `hoist digest oci:DIR:TAG`
//! beside `skopeo inspect --raw oci:DIR:TAG` and `oras manifest fetch --oci-layout DIR:TAG`, on
//! a small layout (one layer of `--size-mib` MiB of seeded random data, 1 by default) made once
//! by `hoist build`.
//!
//! Target, on medians: hoist takes at most [`VS_SKOPEO`] times skopeo's time. hoist against oras
//! and every tool's peak RSS are reported.
//!
//! How it measures:
//! * an uncounted warm-up round first (none with `--quick`): each tool runs as in a counted
//!   round, output checked, so that the binaries and the layout are in the page cache;
//! * then `--runs` counted rounds (50 by default), each running every tool once, in an order that
//!   reverses from one round to the next and turns every second round, timed with `Instant` around the child process,
//!   without GNU `time` in between (its own start would weigh on the short times alike and pull
//!   the ratios towards 1);
//! * peak RSS comes from a second, untimed run of each tool under GNU `time` in every round;
//! * every run is checked: hoist prints the manifest's digest, skopeo and oras print a manifest.

use std::path::Path;
use std::process::Command;

use anyhow::{Result, bail};

use super::data::{oci_ref, seeded_image};
use super::machine::{
    Revision, Workspace, build_hoist, remove_dir, require_tools, revision, version,
};
use super::measure::{
    Defaults, Runs, alternate, format_mib, read_usage, require_gnu_time, timed, with_time,
    write_results,
};
use super::{BenchArgs, Scenario};

mod report;

use report::StartupReport;

/// Timed rounds by default, and the layer's size.
const STARTUP_RUNS: usize = 50;
const LAYER_MIB: u64 = 1;
/// hoist's median time over skopeo's, at most.
const VS_SKOPEO: f64 = 0.2;
const TAG: &str = "v1";
/// The seed of the layer's bytes.
const SEED: u64 = 0x0073_7461_7274_7570;

/// The scenario's defaults for what the command line leaves out: [`STARTUP_RUNS`] rounds
/// on a [`LAYER_MIB`] MiB layer, or with `--quick` one round.
pub(super) const DEFAULTS: Defaults = Defaults::sized(LAYER_MIB, LAYER_MIB).with_runs(STARTUP_RUNS);

/// The tools timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tool {
    Hoist,
    Skopeo,
    Oras,
}

impl Tool {
    pub(super) const ALL: [Self; 3] = [Self::Hoist, Self::Skopeo, Self::Oras];

    pub(super) fn key(self) -> &'static str {
        match self {
            Self::Hoist => "hoist_digest",
            Self::Skopeo => "skopeo_inspect_raw",
            Self::Oras => "oras_manifest_fetch",
        }
    }

    pub(super) fn label(self) -> &'static str {
        match self {
            Self::Hoist => "hoist digest",
            Self::Skopeo => "skopeo inspect --raw",
            Self::Oras => "oras manifest fetch",
        }
    }

    /// The tool's command for the image `TAG` of `layout`, run by `program` (the tool itself,
    /// or GNU `time` in front of it).
    fn command(self, hoist: &Path, layout: &Path, time_file: Option<&Path>) -> Command {
        let exe = match self {
            Self::Hoist => hoist,
            Self::Skopeo => Path::new("skopeo"),
            Self::Oras => Path::new("oras"),
        };
        let mut cmd = match time_file {
            Some(file) => with_time(file, exe),
            None => Command::new(exe),
        };
        match self {
            Self::Hoist => cmd.args(["digest", &oci_ref(layout, TAG)]),
            Self::Skopeo => cmd.args(["inspect", "--raw", &oci_ref(layout, TAG)]),
            Self::Oras => cmd
                .args(["manifest", "fetch", "--oci-layout"])
                .arg(format!("{}:{TAG}", layout.display())),
        };
        cmd
    }
}

/// The order of round `index` (from 0): hoist between its peers, turned and reversed by
/// [`alternate`] so that every tool runs first, second and last alike.
fn startup_order(index: usize) -> [Tool; 3] {
    alternate([Tool::Skopeo, Tool::Hoist, Tool::Oras], index)
}

/// Fails unless `tool` printed what it should: the digest for hoist, a manifest for the others.
fn check_output(tool: Tool, stdout: &[u8], digest: &str) -> Result<()> {
    let text = String::from_utf8_lossy(stdout);
    let ok = match tool {
        Tool::Hoist => text.trim() == digest,
        Tool::Skopeo | Tool::Oras => text.contains("\"schemaVersion\""),
    };
    if !ok {
        bail!("{} printed {:?}", tool.label(), text.trim());
    }
    Ok(())
}

pub(super) fn run(root: &Path, args: &BenchArgs) -> Result<()> {
    require_tools(Scenario::Startup.tools())?;
    require_gnu_time()?;
    let hoist = build_hoist(root)?;
    let workspace = Workspace::new(root, "startup", Some("oci:DIR:TAG"))?;
    let work = workspace.work.clone();
    println!(
        "==> source: one layer of {} MiB (hoist build)",
        args.size_mib
    );
    let (layout, image, _) = seeded_image(&hoist, &work, &[args.size_mib << 20], SEED, TAG)?;
    println!("    {}", image.manifest);
    let time_file = work.join("tool.time");

    let plan = Runs::new(args);
    let mut seconds = vec![Vec::new(); Tool::ALL.len()];
    let mut rss = vec![Vec::new(); Tool::ALL.len()];
    let mut order = Vec::new();
    for run in plan.iter() {
        let tools = startup_order(run.index);
        for tool in tools {
            let (s, output) = timed(&mut tool.command(&hoist, &layout, None))?;
            check_output(tool, &output.stdout, &image.manifest)?;
            let (_, output) = timed(&mut tool.command(&hoist, &layout, Some(&time_file)))?;
            check_output(tool, &output.stdout, &image.manifest)?;
            if run.counted {
                let at = tool as usize;
                seconds[at].push(s);
                rss[at].push(read_usage(&time_file)?.peak_rss_kib);
            }
        }
        if !run.counted {
            println!("    warm-up round (not counted): every tool once, output checked");
            continue;
        }
        order.push(tools);
        let index = run.index;
        if (index + 1) % 10 == 0 || run.last {
            let last: Vec<String> = Tool::ALL
                .iter()
                .map(|&t| {
                    let at = t as usize;
                    format!(
                        "{} {:.1} ms {}",
                        t.label(),
                        seconds[at].last().copied().unwrap_or(f64::NAN) * 1e3,
                        format_mib(rss[at].last().copied().unwrap_or(0))
                    )
                })
                .collect();
            println!(
                "    round {} of {}: {}",
                index + 1,
                args.runs,
                last.join(", ")
            );
        }
    }
    remove_dir(&work)?;

    let report = StartupReport {
        layer_bytes: args.size_mib << 20,
        manifest_digest: image.manifest,
        versions: [
            revision(root, Revision::Files),
            version("skopeo", "--version"),
            version("oras", "version"),
        ],
        warm_up: plan.warm_up,
        seconds,
        rss,
        order,
    };
    write_results(
        &workspace.bench_dir,
        "startup",
        &report.to_json(),
        &report.table(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::Scenario;
    use crate::bench::tests::parse_one;

    #[test]
    fn startup_defaults_to_50_rounds_and_quick_to_one() {
        let parsed = parse_one(&["startup"]).unwrap();
        assert_eq!(parsed.scenario, Scenario::Startup);
        assert_eq!((parsed.size_mib, parsed.runs), (LAYER_MIB, STARTUP_RUNS));
        let quick = parse_one(&["--scenario", "startup", "--quick"]).unwrap();
        assert_eq!(quick.runs, 1);
        assert_eq!(parse_one(&["startup", "--runs", "7"]).unwrap().runs, 7);
    }

    #[test]
    fn hoist_sits_between_its_peers_and_the_order_reverses() {
        assert_eq!(startup_order(0)[1], Tool::Hoist);
        assert_eq!(startup_order(1)[0], Tool::Oras);
        assert_ne!(startup_order(2), startup_order(0));
    }

    #[test]
    fn outputs_are_checked() {
        assert!(check_output(Tool::Hoist, b"sha256:ab\n", "sha256:ab").is_ok());
        assert!(check_output(Tool::Hoist, b"sha256:cd\n", "sha256:ab").is_err());
        assert!(check_output(Tool::Oras, b"{\"schemaVersion\":2}", "sha256:ab").is_ok());
        assert!(check_output(Tool::Skopeo, b"", "sha256:ab").is_err());
    }
}
