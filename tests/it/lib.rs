//! Cross-crate, CLI and interop tests of hoist live in `it/main.rs`; this library is empty on
//! purpose and exists only so that the package has a place for shared test support later.
