//! `hoist`: the command line of the hoist toolkit. Thin on purpose: it parses what the user
//! typed, turns it into stores from the library crates, and reports the outcome.
//!
//! The command line lives in this library, with [`main`] as its entry point, so that the
//! binary is one line and the project's tests can build the very same program as a binary of
//! their own (`cargo test` then builds it once, with the features of the test build, instead of
//! a nested `cargo build` inside a test).
//!
//! Machine output (digests, manifests, listings, JSON) goes to stdout; progress, summaries and
//! errors go to stderr. The exit status says what kind of failure ended a command (see
//! `hoist --help`): 1 other, 2 usage, 3 not found, 4 authentication refused, 5 network, 6
//! verification.

// A command-line program: writing to stdout and stderr is its interface.
#![warn(missing_docs)]
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cli;
mod commands;
mod daemon;
mod exit;
mod location;
mod open;
mod output;
mod progress;
mod transports;

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{ArtifactCommand, BlobCommand, Cli, Command, IndexCommand};
use crate::commands::Ctx;
use crate::open::Opener;

/// Runs the command line with the process arguments and returns its exit code.
pub fn main() -> ExitCode {
    let cli = parse_args();
    init_logging(
        cli.verbose,
        cli.quiet,
        matches!(cli.command, Command::Serve(_)),
    );
    // Commands that read or change one small thing (a tag, a manifest, a list) run on this
    // thread alone: starting a worker per core costs them more than it could give back.
    // Transfers, builds, unpacks and the server hash and compress on every core.
    let mut builder = if cli.command.is_small() {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("hoist: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let limits_command = cli.command.layer_limits_command();
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // `hoist ls | head -1`: the reader has what it wanted.
        Err(error) if exit::is_stdout_closed(&error) => ExitCode::SUCCESS,
        Err(error) => {
            // Messages of registries and daemons are in the chain: without their control
            // characters, they cannot rewrite the terminal.
            let printable = |text: &dyn std::fmt::Display| oci_types::printable(&text.to_string());
            eprintln!("hoist: {}", printable(&error));
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {}", printable(&cause));
            }
            if let Some(hint) = limits_command.and_then(|name| exit::limit_hint(&error, name)) {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(exit::classify(&error).code())
        }
    }
}

/// [`clap::Parser::parse`], without freeing clap's description of the command line afterwards: it is
/// one allocation per argument of every subcommand, the process is about to do its work and
/// exit, and freeing them took as long as parsing for a short command.
fn parse_args() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let mut command = Cli::command();
    let parsed = command
        .try_get_matches_from_mut(std::env::args_os())
        .and_then(|matches| Cli::from_arg_matches(&matches));
    let cli = parsed.unwrap_or_else(|error| error.format(&mut command).exit());
    std::mem::forget(command);
    cli
}

async fn run(cli: Cli) -> Result<()> {
    let jobs = match &cli.command {
        Command::Copy(args) => args.transfer.jobs,
        Command::Pull(args) => args.transfer.jobs,
        Command::Push(args) => args.transfer.jobs,
        Command::Layers(args) => args.jobs,
        Command::Sync(args) => args.jobs,
        // Builds copy a base's blobs four at a time.
        Command::Build(_) | Command::Append(_) | Command::Mutate(_) | Command::Rebase(_) => 4,
        _ => 1,
    };
    let ctx = Ctx {
        quiet: cli.quiet,
        verbose: cli.verbose,
        // Room for every blob transfer plus the manifest and check requests beside them.
        opener: Opener::new(cli.registry)
            .with_max_requests(usize::from(jobs) + 4)
            .with_docker_archive_format(cli.docker_archive_format),
    };
    match cli.command {
        Command::Copy(args) => {
            on_worker(
                ctx,
                |ctx| async move { commands::copy::run(&ctx, args).await },
            )
            .await
        }
        Command::Pull(args) => {
            on_worker(
                ctx,
                |ctx| async move { commands::copy::pull(&ctx, args).await },
            )
            .await
        }
        Command::Push(args) => {
            on_worker(
                ctx,
                |ctx| async move { commands::copy::push(&ctx, args).await },
            )
            .await
        }
        Command::Manifest(args) => commands::manifest::manifest(&ctx, args).await,
        Command::Config(args) => commands::manifest::config(&ctx, args).await,
        Command::Digest(args) => commands::manifest::digest(&ctx, args).await,
        Command::Inspect(args) => commands::inspect::run(&ctx, args).await,
        Command::Ls(args) => commands::list::tags(&ctx, args).await,
        Command::Catalog(args) => commands::list::catalog(&ctx, args).await,
        Command::Referrers(args) => commands::list::referrers(&ctx, args).await,
        Command::Build(args) => commands::build::build(&ctx, args).await,
        Command::Append(args) => commands::build::append(&ctx, args).await,
        Command::Mutate(args) => commands::build::mutate(&ctx, args).await,
        Command::Flatten(args) => commands::build::flatten(&ctx, args).await,
        Command::Rebase(args) => commands::build::rebase(&ctx, args).await,
        Command::Recompress(args) => commands::build::recompress(&ctx, args).await,
        Command::Unpack(args) => {
            on_worker(
                ctx,
                |ctx| async move { commands::unpack::run(&ctx, args).await },
            )
            .await
        }
        Command::Export(args) => {
            on_worker(ctx, |ctx| async move {
                commands::unpack::export_image(&ctx, args).await
            })
            .await
        }
        Command::Layers(args) => {
            on_worker(ctx, |ctx| async move {
                commands::unpack::layers(&ctx, args).await
            })
            .await
        }
        Command::Index(IndexCommand::Create(args)) => commands::index::create(&ctx, args).await,
        Command::Index(IndexCommand::Append(args)) => commands::index::append(&ctx, args).await,
        Command::Index(IndexCommand::Remove(args)) => commands::index::remove(&ctx, args).await,
        Command::Blob(BlobCommand::Get(args)) => {
            on_worker(
                ctx,
                |ctx| async move { commands::blob::get(&ctx, args).await },
            )
            .await
        }
        Command::Blob(BlobCommand::Put(args)) => {
            on_worker(
                ctx,
                |ctx| async move { commands::blob::put(&ctx, args).await },
            )
            .await
        }
        Command::Artifact(ArtifactCommand::Push(args)) => {
            commands::artifact::push(&ctx, args).await
        }
        Command::Artifact(ArtifactCommand::Pull(args)) => {
            commands::artifact::pull(&ctx, args).await
        }
        Command::Attach(args) => commands::artifact::attach(&ctx, args).await,
        Command::Sync(args) => {
            on_worker(
                ctx,
                |ctx| async move { commands::sync::run(&ctx, args).await },
            )
            .await
        }
        Command::Tag(args) => commands::tag::tag(&ctx, args).await,
        Command::Delete(args) => commands::tag::delete(&ctx, args).await,
        Command::Login(args) => commands::login::login(&ctx, args).await,
        Command::Logout(args) => commands::login::logout(&ctx, args).await,
        Command::Gc(args) => commands::layout::gc(&ctx, args).await,
        Command::Fsck(args) => commands::layout::fsck(&ctx, args).await,
        Command::Serve(args) => commands::serve::run(&ctx, args).await,
        Command::Completions(args) => commands::generate::completions(&args),
        Command::Man => commands::generate::man(),
    }
}

/// Runs a command that moves blobs as a task of the runtime, on a worker thread. Polled by
/// `block_on` on the main thread instead, each piece arriving from a connection (whose task
/// runs on a worker) woke a thread that is not a worker, and small blobs spent more time
/// switching threads than moving bytes. Commands whose futures are not `Send` (the builds) run
/// on the main thread.
async fn on_worker<F, Work>(ctx: Ctx, command: F) -> Result<()>
where
    F: FnOnce(Ctx) -> Work,
    Work: Future<Output = Result<()>> + Send + 'static,
{
    match tokio::spawn(command(ctx)).await {
        Ok(outcome) => outcome,
        Err(stopped) if stopped.is_panic() => std::panic::resume_unwind(stopped.into_panic()),
        Err(stopped) => Err(anyhow::anyhow!("the command's task stopped: {stopped}")),
    }
}

/// Logs to stderr: warnings by default (and the server's access log for `hoist serve`), more
/// with `-v`, only errors with `-q`; `RUST_LOG` overrides all of it.
fn init_logging(verbose: u8, quiet: bool, serving: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) if serving => "warn,hoist=info,oci_server=info",
        (false, 0) => "warn",
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

/// Entry points of the fuzz targets (`fuzz/`) into the command line's own parsers of what
/// users and their files give; with the `fuzzing` feature only, and not an API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    use crate::commands::sync::{ConfigFormat, parse_config};

    /// Reads a sync config as YAML and as TOML; how many entries the readings had.
    pub fn sync_config(text: &str) -> usize {
        [ConfigFormat::Yaml, ConfigFormat::Toml]
            .into_iter()
            .filter_map(|format| parse_config(text, format).ok())
            .map(|entries| entries.len())
            .sum()
    }

    /// Reads what a user typed where an image goes; whether it names one.
    pub fn location(text: &str) -> bool {
        crate::location::Location::parse(text).is_ok()
    }
}
