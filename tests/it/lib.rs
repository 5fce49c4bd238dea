//! Cross-crate, CLI and interop tests of hoist live in `it/main.rs`. This library holds no
//! code: it exists so that the README's examples are compiled and run as its doctests, and so
//! cannot drift from the API they show.

#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
