//! The `hoist` command line, as a binary of the test package (see `tests/Cargo.toml`).

fn main() -> std::process::ExitCode {
    hoist::main()
}
