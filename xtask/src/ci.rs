//! `cargo xtask ci`: the CI pipeline, one step after another, stopping at the first failure.
//!
//! The steps are the same locally and on CI: formatting, clippy, installing the third-party
//! peers of the interop tests, tests, docs (warnings are errors everywhere), then the repository
//! lints of [`crate::lint`], run in-process. At the end it says how many interop tests skipped
//! for a missing peer (locally; with `CI=true` a missing peer fails its tests instead).

use std::ffi::OsString;
use std::path::Path;
use std::time::Instant;

use anyhow::{Result, bail};

use crate::{cargo, describe, lint, run_status};

/// What a step does.
#[derive(Debug)]
enum Action {
    /// Run `cargo <args>` from the workspace root with `env` added to the inherited environment.
    Cargo {
        args: Vec<OsString>,
        env: &'static [(&'static str, &'static str)],
    },
    /// Run a program from the workspace root.
    Command {
        program: &'static str,
        args: &'static [&'static str],
    },
    /// Run `cargo xtask lint` in this process.
    Lint,
}

#[derive(Debug)]
struct Step {
    name: &'static str,
    action: Action,
}

fn cargo_step(name: &'static str, args: &[&str]) -> Step {
    Step {
        name,
        action: Action::Cargo {
            args: args.iter().map(OsString::from).collect(),
            env: &[],
        },
    }
}

/// The pipeline, in order; `test_args` are appended to the `cargo test` command line.
fn steps(test_args: &[OsString]) -> Vec<Step> {
    let mut test = cargo_step("test", &["test", "--workspace", "--locked"]);
    if let Action::Cargo { args, .. } = &mut test.action {
        args.extend(test_args.iter().cloned());
    }
    let mut doc = cargo_step(
        "doc",
        &[
            "doc",
            "--workspace",
            "--all-features",
            "--no-deps",
            "--locked",
        ],
    );
    if let Action::Cargo { env, .. } = &mut doc.action {
        *env = &[("RUSTDOCFLAGS", "-D warnings")];
    }
    vec![
        cargo_step("fmt", &["fmt", "--all", "--check"]),
        cargo_step(
            "clippy",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--locked",
                "--",
                "-D",
                "warnings",
            ],
        ),
        // The interop tests run against third-party peers from Debian packages; the installer
        // is idempotent and quick once they are there.
        Step {
            name: "peers",
            action: Action::Command {
                program: "bash",
                args: &["tests/peers/install.sh"],
            },
        },
        test,
        doc,
        Step {
            name: "lint",
            action: Action::Lint,
        },
    ]
}

pub(crate) fn run(root: &Path, test_args: &[OsString]) -> Result<()> {
    let started = Instant::now();
    // The interop tests append a line per skip to this file (`tests/it/support.rs`).
    let skip_log = std::env::temp_dir().join(format!("hoist-ci-skips-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&skip_log);
    let result = run_steps(root, test_args, &skip_log);
    report_skips(&skip_log);
    let _ = std::fs::remove_file(&skip_log);
    result?;
    println!("==> ci passed in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

fn run_steps(root: &Path, test_args: &[OsString], skip_log: &Path) -> Result<()> {
    for step in steps(test_args) {
        let step_started = Instant::now();
        let result = match &step.action {
            Action::Cargo { args, env } => {
                let mut cmd = cargo(root);
                cmd.args(args).envs(env.iter().copied());
                if step.name == "test" {
                    cmd.env("HOIST_SKIP_LOG", skip_log);
                }
                let env_prefix: String = env.iter().map(|(k, v)| format!("{k}=\"{v}\" ")).collect();
                println!("==> {}: {env_prefix}{}", step.name, describe(&cmd));
                run_status(&mut cmd)
            }
            Action::Command { program, args } => {
                let mut cmd = std::process::Command::new(program);
                cmd.args(*args).current_dir(root);
                println!("==> {}: {}", step.name, describe(&cmd));
                run_status(&mut cmd)
            }
            Action::Lint => {
                println!("==> {}: cargo xtask lint (in-process)", step.name);
                lint::run(root)
            }
        };
        let elapsed = step_started.elapsed().as_secs_f64();
        match result {
            Ok(()) => println!("    {} ok in {elapsed:.1}s", step.name),
            Err(err) => {
                println!("    {} FAILED after {elapsed:.1}s", step.name);
                bail!("ci step `{}` failed: {err:#}", step.name);
            }
        }
    }
    Ok(())
}

/// Prints how many tests skipped (each once, however many reasons it gave) and why.
fn report_skips(skip_log: &Path) {
    let text = std::fs::read_to_string(skip_log).unwrap_or_default();
    let skipped = skipped_tests(&text);
    println!("==> interop tests skipped: {}", skipped.len());
    for (test, why) in &skipped {
        println!("    {test}: {why}");
    }
}

/// The tests named by `SKIPPED <test>: <why>` lines, each with its first reason, in order.
fn skipped_tests(log: &str) -> std::collections::BTreeMap<&str, &str> {
    let mut tests = std::collections::BTreeMap::new();
    for line in log.lines() {
        if let Some((test, why)) = line
            .strip_prefix("SKIPPED ")
            .and_then(|rest| rest.split_once(": "))
        {
            tests.entry(test).or_insert(why);
        }
    }
    tests
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_run_in_the_documented_order() {
        let names: Vec<_> = steps(&[]).iter().map(|s| s.name).collect();
        assert_eq!(names, ["fmt", "clippy", "peers", "test", "doc", "lint"]);
    }

    #[test]
    fn extra_args_go_to_cargo_test_only() {
        let steps = steps(&[OsString::from("--"), OsString::from("--nocapture")]);
        for step in &steps {
            if let Action::Cargo { args, .. } = &step.action {
                let has_extra = args.iter().any(|a| a == "--nocapture");
                assert_eq!(has_extra, step.name == "test", "step {}", step.name);
            }
        }
    }

    #[test]
    fn doc_step_denies_rustdoc_warnings() {
        let steps = steps(&[]);
        let doc = steps.iter().find(|s| s.name == "doc");
        assert!(matches!(
            doc.map(|s| &s.action),
            Some(Action::Cargo { env, .. }) if env == &[("RUSTDOCFLAGS", "-D warnings")]
        ));
    }

    #[test]
    fn skips_are_counted_once_per_test() {
        let log = "SKIPPED a::one: skopeo not installed\nSKIPPED a::one: umoci not installed\n\
                   SKIPPED b::two: moto not installed\nnoise\n";
        let skipped = skipped_tests(log);
        assert_eq!(skipped.len(), 2);
        assert_eq!(skipped["a::one"], "skopeo not installed");
    }
}
