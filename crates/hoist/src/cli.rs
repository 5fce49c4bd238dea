//! The command line, declared once: parsing, `--help` and (later) completions and the man page
//! all come from these definitions.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Copy, inspect and serve OCI images and registries.
#[derive(Debug, Parser)]
#[command(name = "hoist", version, about, propagate_version = true)]
pub(crate) struct Cli {
    /// More log output (-v: info, -vv: debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub(crate) quiet: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Serve images as an OCI distribution-spec registry.
    ///
    /// Example: hoist serve --root ./registry --addr 127.0.0.1:5000
    Serve(ServeArgs),
}

/// `hoist serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Store repositories as OCI image layouts under this directory, one per repository
    /// (default: ./hoist-registry).
    #[arg(long, value_name = "DIR", conflicts_with = "memory")]
    pub(crate) root: Option<PathBuf>,
    /// Keep everything in memory (lost on exit).
    #[arg(long)]
    pub(crate) memory: bool,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:5000")]
    pub(crate) addr: SocketAddr,
    /// Refuse every push and delete.
    #[arg(long)]
    pub(crate) read_only: bool,
    /// Refuse deletes.
    #[arg(long)]
    pub(crate) no_delete: bool,
    /// Require basic auth from the users of this htpasswd file (bcrypt, as `htpasswd -B` writes).
    #[arg(long, value_name = "FILE")]
    pub(crate) htpasswd: Option<PathBuf>,
    /// Require bearer tokens from the built-in token endpoint (/token); with --htpasswd, the
    /// token endpoint asks for those users' credentials.
    #[arg(long)]
    pub(crate) token_auth: bool,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Limit blob uploads to this many bytes each.
    #[arg(long, value_name = "BYTES")]
    pub(crate) max_blob_size: Option<u64>,
    /// Require upload chunks of at least this many bytes (announced as OCI-Chunk-Min-Length).
    #[arg(long, value_name = "BYTES")]
    pub(crate) min_chunk_size: Option<u64>,
    /// How many uploads may stream at once.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub(crate) max_concurrent_uploads: usize,
}
