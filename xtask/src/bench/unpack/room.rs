//! What the unpack scenario takes beside time: the ballast of each run (memory) and the disk
//! space of every tree it keeps until it ends.

use std::fs;

use super::TREES_PER_RUN;
use crate::bench::machine::{BALLAST_SPARE, parse_mem_available};

/// The ballast, at most, in multiples of what a run writes.
const BALLAST_RUNS: u64 = 2;
/// Trees the set-up writes per image and keeps: the source, the layout (at most as large),
/// the layers' tars, and the check unpacks by hoist, umoci and tar.
pub(super) const TREES_OF_SETUP: u64 = 6;
/// What a tree takes on disk, at most, in quarters of its bytes: files are rounded up to
/// whole blocks, tars add a header per entry.
const DISK_QUARTERS: u64 = 5;
/// Free space left to the rest of the machine while the scenario runs.
const DISK_SPARE: u64 = 2 << 30;

/// The disk space the scenario needs, at most, when the images' trees hold `tree_bytes` in all
/// (their tars, once known, or what was asked for): `setup_trees` trees of each image kept from
/// the set-up, [`TREES_PER_RUN`] per run for `runs` runs, each tree taking up to
/// [`DISK_QUARTERS`] quarters of its bytes; the largest ballast (one at a time); and
/// [`DISK_SPARE`].
pub(super) fn disk_needed(tree_bytes: u64, setup_trees: u64, runs: usize, ballast: u64) -> u64 {
    let trees = setup_trees + TREES_PER_RUN * runs as u64;
    trees * tree_bytes / 4 * DISK_QUARTERS + ballast + DISK_SPARE
}

/// The largest ballast a run may write when runs write `run_writes` bytes (see
/// [`unpack_ballast`]), bounded by the memory available now.
pub(super) fn ballast_bound(enabled: bool, run_writes: u64) -> u64 {
    if !enabled {
        return 0;
    }
    let available = fs::read_to_string("/proc/meminfo")
        .ok()
        .as_deref()
        .and_then(parse_mem_available)
        .unwrap_or(u64::MAX);
    unpack_ballast(run_writes, available)
}

/// The ballast before a run that writes `run_writes` bytes, when `available` bytes of memory
/// are available beside what the images keep: [`BALLAST_RUNS`] times that, less if it would
/// leave under [`BALLAST_SPARE`] once the run's own trees are in the page cache.
pub(super) fn unpack_ballast(run_writes: u64, available: u64) -> u64 {
    let room = available.saturating_sub(run_writes + BALLAST_SPARE);
    (BALLAST_RUNS * run_writes).min(room)
}

#[cfg(test)]
mod tests {
    use super::super::{UNPACK_SIZE_MIB, USR_EIGHTHS};
    use super::*;

    #[test]
    fn disk_needed_counts_every_tree_kept_and_one_ballast() {
        const GIB: u64 = 1 << 30;
        // 4 GiB of trees: 6 of the set-up and 4 per run for 6 runs, a quarter more each, one
        // ballast of 1 GiB and the spare.
        assert_eq!(
            disk_needed(4 * GIB, 6, 6, GIB),
            30 * 5 * GIB + GIB + DISK_SPARE
        );
        assert_eq!(disk_needed(4 * GIB, 0, 1, 0), 4 * 5 * GIB + DISK_SPARE);
        // The default: 512 MiB generated and 320 MiB of /usr, 6 runs, fit in well under the
        // 62 GiB this machine has free, ballast included.
        let asked = (UNPACK_SIZE_MIB << 20) / 8 * (8 + USR_EIGHTHS);
        let ballast = unpack_ballast(TREES_PER_RUN * asked, u64::MAX);
        assert!(disk_needed(asked, TREES_OF_SETUP, 6, ballast) < 40 * GIB);
        assert_eq!(ballast_bound(false, GIB), 0);
    }

    #[test]
    fn ballast_is_twice_a_run_within_available_memory() {
        assert_eq!(unpack_ballast(1 << 30, 20 << 30), 2 << 30);
        assert_eq!(unpack_ballast(8 << 30, 20 << 30), 8 << 30);
        assert_eq!(unpack_ballast(8 << 30, 10 << 30), 0);
    }
}
