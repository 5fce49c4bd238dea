//! `hoist`: the command line of the hoist toolkit. Thin on purpose: it parses what the user
//! typed, turns it into stores from the library crates, and reports the outcome.
//!
//! The command line lives in this library, with [`main`] as its entry point, so that the
//! binary is one line and the project's tests can build the very same program as a binary of
//! their own (`cargo test` then builds it once, with the features of the test build, instead of
//! a nested `cargo build` inside a test).

// A command-line program: writing to stdout and stderr is its interface.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cli;
mod commands;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

/// Runs the command line with the process arguments and returns its exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("hoist: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => commands::serve::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("hoist: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr: warnings and the server's access log by default, more with `-v`, only
/// errors with `-q`; `RUST_LOG` overrides all of it.
fn init_logging(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn,hoist=info,oci_server=info",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, never into a file or a pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
