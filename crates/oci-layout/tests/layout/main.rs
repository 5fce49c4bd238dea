//! Public-API tests of `oci-layout`: the conformance suite in both modes, and what the layout
//! leaves on disk.

// Helpers shared by tests are not `#[test]` functions; a failed expectation in one should
// panic all the same.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod conformance;
mod disk;
