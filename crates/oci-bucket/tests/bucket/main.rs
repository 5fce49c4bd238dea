//! The public-API tests of `oci-bucket`: the conformance suite over memory and local files,
//! and uploads continued by another store over the same bucket.

// Fixtures are helpers of tests, outside `#[test]` functions: a failure there is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod conformance;
mod gc;
mod stores;
mod uploads;
