//! The fuzz targets' corpora as regression tests: every file under `fuzz/corpus/TARGET/` (the
//! seeds and what the fuzzer kept) and `fuzz/regressions/TARGET/` (each input that once
//! crashed, kept after its fix) runs through the target's body, as libFuzzer would run it. A
//! target without a corpus fails, so that a new target cannot go untested.

use std::panic::AssertUnwindSafe;
use std::path::Path;

use hoist_tests::fuzz::TARGETS;

use crate::support::workspace_root;

/// The files of `dir`, sorted, or none when it does not exist.
fn inputs(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_and_regression_input_runs_through_its_target() {
    let fuzz = workspace_root().join("fuzz");
    let mut failures = Vec::new();
    for (name, body) in TARGETS {
        let corpus = inputs(&fuzz.join("corpus").join(name));
        assert!(
            !corpus.is_empty(),
            "fuzz target {name} has no seed corpus in fuzz/corpus/{name}"
        );
        for file in corpus
            .iter()
            .chain(&inputs(&fuzz.join("regressions").join(name)))
        {
            let data = std::fs::read(file).unwrap();
            if std::panic::catch_unwind(AssertUnwindSafe(|| body(&data))).is_err() {
                failures.push(file.display().to_string());
            }
        }
    }
    assert!(failures.is_empty(), "inputs that panic: {failures:#?}");
}

#[test]
fn every_target_has_a_fuzz_binary() {
    let fuzz = workspace_root().join("fuzz");
    let manifest = std::fs::read_to_string(fuzz.join("Cargo.toml")).unwrap();
    for (name, _) in TARGETS {
        let source = fuzz.join("fuzz_targets").join(format!("{name}.rs"));
        let text = std::fs::read_to_string(&source)
            .unwrap_or_else(|e| panic!("{}: {e}", source.display()));
        assert!(
            text.contains(&format!("hoist_tests::fuzz::{name}(")),
            "{} does not call its target",
            source.display()
        );
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "fuzz/Cargo.toml has no [[bin]] {name}"
        );
    }
}

/// The merge target's harness merges for real (a target whose every input failed early would
/// fuzz nothing): its whiteouts seed gives the flattened tree, the hard link whose target a
/// whiteout deletes written last as the file it pointed at.
#[test]
fn the_merge_target_merges_its_seeds() {
    let seed = workspace_root().join("fuzz/corpus/merge/seed-whiteouts");
    let data = std::fs::read(&seed).unwrap();
    let paths = hoist_tests::fuzz::merged_paths(&data).expect("the seed merges");
    assert_eq!(paths, ["a", "a/c", "d", "d/y", "a/l"]);
    let damaged = [
        &data[..600],
        hoist_tests::fuzz::LAYER_SEPARATOR,
        &data[600..],
    ]
    .concat();
    assert_eq!(hoist_tests::fuzz::merged_paths(&damaged), None);
}

/// The unpack target's harness unpacks for real: its escapes seed lands every file that aimed
/// outside (through `..`, through `/..`, two levels up) in the image's own `host` directory,
/// and the whiteout through a symlink removes the image's file, not the host's (which the
/// harness checks itself); a hard link to the host's file is refused, leaving no target.
#[test]
fn the_unpack_target_unpacks_its_seeds() {
    let seed = |name: &str| std::fs::read(workspace_root().join("fuzz/corpus/unpack").join(name));
    let paths = hoist_tests::fuzz::unpacked_paths(&seed("seed-escapes").unwrap());
    let expected = [
        "abs",
        "d",
        "d/deeper",
        "host",
        "host/evil",
        "host/evil2",
        "host/evil3",
        "up",
    ];
    assert_eq!(paths.expect("the seed unpacks"), expected);
    let refused = seed("seed-escape-hardlink").unwrap();
    assert_eq!(hoist_tests::fuzz::unpacked_paths(&refused), None);
    let deep = hoist_tests::fuzz::unpacked_paths(&seed("seed-deep-parents").unwrap()).unwrap();
    assert!(deep.contains(&"a/real/kept".to_owned()), "{deep:?}");
    // The opaque whiteout of the third layer emptied `a/real` of what the second put there.
    assert!(!deep.iter().any(|p| p.starts_with("a/real/d0")), "{deep:?}");
    assert!(deep.iter().any(|p| p.ends_with("/d29/f")), "{deep:?}");
}
