//! Link options for the `hoist` executable.
//!
//! On GNU/Linux the executable's relative relocations are packed (`DT_RELR`): a
//! position-independent executable keeps its address randomisation, and the dynamic loader reads
//! a few kilobytes of relocations at every start instead of half a megabyte of `RELA` entries
//! (fewer pages to fault in before `main`). GNU ld turns packing on only when the C library it
//! links against supports it (glibc 2.36 and later), and older linkers ignore the option with a
//! warning.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
