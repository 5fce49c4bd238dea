//! Tests of `oci-server`'s public API, used as a program depending on the crate would use it:
//! a [`RegistryServer`](oci_server::RegistryServer) over a memory store, built with the
//! options, auth and redirects the crate offers, bound to a free loopback port, and spoken to
//! over real HTTP/1.1 by a minimal client (`support`).
//!
//! The cross-crate suite (`tests/it/server_*.rs` of the workspace) checks the same server
//! against other stores and clients; these tests pin down this crate's own surface.

// Helpers shared by tests are not `#[test]` functions, which clippy's allow-in-tests covers;
// a failed expectation in a test helper should panic just the same.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod access;
mod blobs;
mod errors;
mod manifests;
mod options;
