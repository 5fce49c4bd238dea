//! The `hoist` binary: the command line of [`hoist`](hoist::main).

fn main() -> std::process::ExitCode {
    hoist::main()
}
