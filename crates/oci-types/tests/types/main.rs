//! Public-API tests of `oci-types`: table-driven parser cases (one `check` helper per area, one
//! line per case) and real manifests from `tests/fixtures/`.

// Everything in this binary is test code, but clippy's `allow-unwrap-in-tests` only sees
// `#[test]` functions, not the `check` helpers they call.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod descriptor;
mod digest;
mod manifest;
mod media_type;
mod name;
mod properties;
mod reference;
mod round_trip;

/// The bytes of a file under `tests/fixtures/`.
fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The reason inside an `oci_types::Error`, whatever its kind.
fn reason(error: &oci_types::Error) -> String {
    match error {
        oci_types::Error::Digest { reason, .. }
        | oci_types::Error::Repository { reason, .. }
        | oci_types::Error::Tag { reason, .. }
        | oci_types::Error::Reference { reason, .. }
        | oci_types::Error::MediaType { reason, .. }
        | oci_types::Error::Platform { reason, .. }
        | oci_types::Error::Manifest { reason } => reason.clone(),
        other => panic!("an error kind these tests do not know: {other:?}"),
    }
}
