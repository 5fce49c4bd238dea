//! Cross-crate tests of the hoist workspace: the public API of several crates used together, as
//! a program depending on them would.

// Helpers shared by tests are not `#[test]` functions, which clippy's allow-in-tests covers;
// a failed expectation in a test helper should panic just the same.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod archive_interop;
mod artifact_cli;
mod bucket_faults;
mod bucket_gc;
mod bucket_interop;
mod bucket_redirects;
mod bucket_replicas;
mod build_interop;
mod cli;
mod client_conformance;
mod client_faults;
mod client_peers;
mod conformance;
mod daemon_interop;
mod daemons;
mod fault_matrix;
mod fault_proxy;
mod fuzz_corpus;
mod http;
mod interop_layout;
mod layers_cli;
mod layout_processes;
mod mirror_cli;
mod mutate_interop;
mod platform_pull;
mod proxy_interop;
mod server_abuse;
mod server_auth;
mod server_authz;
mod server_http;
mod server_interop;
mod support;
mod sync_cli;
mod tar_roundtrip;
mod unpack_hostile;
mod unpack_interop;
