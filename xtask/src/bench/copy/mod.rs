//! Scenario `copy` (placeholder while it is written).

use std::path::Path;

use anyhow::Result;

use super::BenchArgs;

pub(super) fn apply_defaults(args: &mut BenchArgs, size_given: bool, runs_given: bool) {
    if args.quick && !size_given {
        args.size_mib = 64;
    }
    if args.quick && !runs_given {
        args.runs = 1;
    }
}

pub(super) fn run(_root: &Path, _args: &BenchArgs) -> Result<()> {
    anyhow::bail!("not yet")
}
