//! Cross-crate, CLI and interop tests of hoist live in `it/main.rs`. This library holds what is
//! shared with the fuzz targets of `fuzz/`: their bodies ([`fuzz`]), which the test
//! `fuzz_corpus` also runs over their corpora. Its doctests are the README's examples, so that
//! they cannot drift from the API they show.

pub mod fuzz;

#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
