//! The runs of a scenario, shared by every scenario: an uncounted warm-up run (none with
//! `--quick`), then the counted ones, [`DEFAULT_RUNS`] unless the scenario or `--runs` says
//! otherwise (issue 18: at least 5 counted runs after a warm-up); a scenario's sizes and run
//! count for what the command line leaves out ([`Defaults`]).
//!
//! The warm-up does everything a counted run does (same steps, same order as the first counted
//! run, its own directory) and is left out of the results: it fills the page cache with the
//! programs and their libraries, starts the peers' caches and lets the machine settle, so that
//! the first counted run is not the odd one out.

use crate::bench::BenchArgs;

/// The counted runs of a scenario unless it sets its own or `--runs` is given: an even number,
/// so that each of the two orders the tools alternate between counts as often (whichever runs
/// second after the ballast may gain, and with an odd count the median leans to the order
/// that ran once more).
pub(in crate::bench) const DEFAULT_RUNS: usize = 6;

/// What a scenario measures unless the command line says otherwise: `size_mib` MiB of data
/// and `runs` counted runs, or with `--quick` `quick_size_mib` MiB and one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::bench) struct Defaults {
    pub(in crate::bench) size_mib: u64,
    pub(in crate::bench) quick_size_mib: u64,
    pub(in crate::bench) runs: usize,
}

impl Defaults {
    /// `size_mib` MiB (`quick_size_mib` with `--quick`) and [`DEFAULT_RUNS`] runs.
    pub(in crate::bench) const fn sized(size_mib: u64, quick_size_mib: u64) -> Self {
        Self {
            size_mib,
            quick_size_mib,
            runs: DEFAULT_RUNS,
        }
    }

    /// The same with `runs` counted runs.
    pub(in crate::bench) const fn with_runs(self, runs: usize) -> Self {
        Self { runs, ..self }
    }

    /// Fills in what the command line left out (`size_given`, `runs_given` say what it gave).
    pub(in crate::bench) fn apply(&self, args: &mut BenchArgs, size_given: bool, runs_given: bool) {
        if !size_given {
            args.size_mib = if args.quick {
                self.quick_size_mib
            } else {
                self.size_mib
            };
        }
        if !runs_given {
            args.runs = if args.quick { 1 } else { self.runs };
        }
    }
}

/// The runs of one scenario: `warm_up` uncounted ones, then `counted` ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::bench) struct Runs {
    pub(in crate::bench) warm_up: usize,
    pub(in crate::bench) counted: usize,
}

/// One run of a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::bench) struct Run {
    /// Its place among all the runs, the warm-up's included (from 0): what names its directory.
    pub(in crate::bench) seq: usize,
    /// Its place among the counted runs (from 0), which sets the order of the tools; a warm-up
    /// run takes the first counted run's (0).
    pub(in crate::bench) index: usize,
    /// Whether its figures count (false for the warm-up).
    pub(in crate::bench) counted: bool,
    /// Whether it is the last run of the scenario.
    pub(in crate::bench) last: bool,
}

impl Runs {
    /// The runs `args` asks for: `args.runs` counted ones, after one warm-up run unless
    /// `--quick` was given.
    pub(in crate::bench) fn new(args: &BenchArgs) -> Self {
        Self {
            warm_up: usize::from(!args.quick),
            counted: args.runs,
        }
    }

    /// Every run, warm-up included.
    pub(in crate::bench) fn total(self) -> usize {
        self.warm_up + self.counted
    }

    /// Every run in order: the warm-up first, then the counted ones.
    pub(in crate::bench) fn iter(self) -> impl Iterator<Item = Run> {
        (0..self.total()).map(move |seq| Run {
            seq,
            index: seq.saturating_sub(self.warm_up),
            counted: seq >= self.warm_up,
            last: seq + 1 == self.total(),
        })
    }

    /// What the tables' headings say of the runs: `5 counted run(s) after 1 uncounted warm-up
    /// run`, or `1 counted run(s), no warm-up run`.
    pub(in crate::bench) fn describe(self) -> String {
        match self.warm_up {
            0 => format!("{} counted run(s), no warm-up run", self.counted),
            1 => format!(
                "{} counted run(s) after 1 uncounted warm-up run",
                self.counted
            ),
            n => format!(
                "{} counted run(s) after {n} uncounted warm-up runs",
                self.counted
            ),
        }
    }
}

impl Run {
    /// The line announcing the run: `==> run 2 of 5`, or `==> warm-up run (not counted)`.
    pub(in crate::bench) fn heading(self, runs: Runs) -> String {
        if self.counted {
            format!("==> run {} of {}", self.index + 1, runs.counted)
        } else {
            "==> warm-up run (not counted)".to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(runs: usize, quick: bool) -> BenchArgs {
        BenchArgs {
            runs,
            quick,
            ..BenchArgs::default()
        }
    }

    #[test]
    fn a_warm_up_run_comes_before_the_counted_ones() {
        let runs = Runs::new(&args(3, false));
        assert_eq!((runs.warm_up, runs.counted, runs.total()), (1, 3, 4));
        let all: Vec<Run> = runs.iter().collect();
        let flags: Vec<(usize, usize, bool, bool)> = all
            .iter()
            .map(|r| (r.seq, r.index, r.counted, r.last))
            .collect();
        assert_eq!(
            flags,
            [
                (0, 0, false, false),
                (1, 0, true, false),
                (2, 1, true, false),
                (3, 2, true, true),
            ]
        );
        assert_eq!(all[0].heading(runs), "==> warm-up run (not counted)");
        assert_eq!(all[1].heading(runs), "==> run 1 of 3");
        assert_eq!(all[3].heading(runs), "==> run 3 of 3");
        assert_eq!(
            runs.describe(),
            "3 counted run(s) after 1 uncounted warm-up run"
        );
    }

    #[test]
    fn quick_runs_once_without_a_warm_up() {
        let runs = Runs::new(&args(1, true));
        let all: Vec<Run> = runs.iter().collect();
        assert_eq!(
            all,
            [Run {
                seq: 0,
                index: 0,
                counted: true,
                last: true
            }]
        );
        assert_eq!(all[0].heading(runs), "==> run 1 of 1");
        assert_eq!(runs.describe(), "1 counted run(s), no warm-up run");
    }

    #[test]
    fn counted_runs_are_those_asked_for() {
        for counted in [1, 5, 50] {
            for quick in [false, true] {
                let runs = Runs::new(&args(counted, quick));
                assert_eq!(runs.iter().filter(|r| r.counted).count(), counted);
                assert_eq!(
                    runs.iter().filter(|r| !r.counted).count(),
                    usize::from(!quick)
                );
                assert_eq!(runs.iter().filter(|r| r.last).count(), 1);
                let indices: Vec<usize> =
                    runs.iter().filter(|r| r.counted).map(|r| r.index).collect();
                assert_eq!(indices, (0..counted).collect::<Vec<_>>());
            }
        }
    }
}
