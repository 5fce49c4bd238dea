//! The command line, declared once: parsing, `--help`, the shell completions (`hoist
//! completions`) and the man page (`hoist man`, used by `cargo xtask dist`) all come from these
//! definitions.

// The doc comments here are help texts, written for the terminal: `oci:DIR[:TAG]` and
// `auths.<registry>` are syntax, not links or HTML.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use oci_types::{Platform, Tag};

use crate::location::Location;

/// The longest time limit `hoist serve` takes, in seconds: the server's own bound (a year).
const MAX_TIME_LIMIT: u64 = oci_server::MAX_TIME_LIMIT.as_secs();

/// The longest a signed redirect URL may be valid, in seconds: a week, the most S3 and Google
/// Cloud Storage sign for.
const MAX_REDIRECT_EXPIRY: u64 = 7 * 24 * 60 * 60;

/// What `hoist --help` says after the list of commands.
const AFTER_HELP: &str = "\
Images are named as people type them: ubuntu (docker.io/library/ubuntu:latest),
ghcr.io/org/app:1.2, localhost:5000/app@sha256:..., oci:DIR[:TAG] for an OCI image layout
directory (without TAG: latest), oci-archive:FILE[:TAG] and docker-archive:FILE[:NAME:TAG] (or
FILE:@N) for archives, and docker-daemon:NAME:TAG for the Docker daemon at DOCKER_HOST.
Credentials come from docker's config.json (hoist login) and the containers auth.json.

Examples:
  hoist copy alpine:3.20 localhost:5000/alpine:3.20
  hoist pull --platform linux/arm64 ghcr.io/org/app:1.2 ./app
  hoist inspect alpine:3.20

Machine output (digests, manifests, listings, --json) goes to stdout; progress, summaries and
errors go to stderr.

Exit status:
  0  success
  1  failure of any other kind
  2  usage error (unknown flag, malformed reference, platform or tag)
  3  not found (manifest, blob or repository unknown; no image for the platform)
  4  authentication refused (UNAUTHORIZED, DENIED)
  5  network failure (connection, TLS, timeout) or registry unavailable (5xx, 429)
  6  verification failure (digest or size mismatch, fsck found problems)";

/// Copy, inspect and serve OCI images and registries.
#[derive(Debug, Parser)]
#[command(
    name = "hoist",
    version,
    about,
    propagate_version = true,
    after_help = AFTER_HELP,
    max_term_width = 100
)]
pub(crate) struct Cli {
    /// More output: per-blob progress lines when stderr is not a terminal, more log output
    /// (-v: info, -vv: debug); RUST_LOG overrides the log level.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, display_order = 900)]
    pub(crate) verbose: u8,
    /// Only errors: no progress, no summaries.
    #[arg(
        short,
        long,
        global = true,
        conflicts_with = "verbose",
        display_order = 901
    )]
    pub(crate) quiet: bool,
    #[command(flatten)]
    pub(crate) registry: RegistryArgs,
    /// The format docker-archives are written in: hybrid (Docker 25+, read by every Docker)
    /// or classic (before Docker 25).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t = DockerArchiveFormat::Hybrid,
        value_name = "FORMAT",
        help_heading = "Archive options",
        display_order = 902
    )]
    pub(crate) docker_archive_format: DockerArchiveFormat,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The formats of `--docker-archive-format`: Docker 25+'s, an OCI image layout with
/// `manifest.json` beside it, or the classic one, `manifest.json` with configs and layers as
/// files of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum DockerArchiveFormat {
    Hybrid,
    Classic,
}

// How registries are reached.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Registry options")]
pub(crate) struct RegistryArgs {
    /// Speak plain HTTP to registries (default: only to localhost, 127.0.0.0/8 and [::1]).
    #[arg(long, global = true)]
    pub(crate) plain_http: bool,
    /// Accept any TLS certificate from registries (for test registries only).
    #[arg(long, global = true)]
    pub(crate) insecure: bool,
    /// Trust the CA certificates in this PEM file too (repeatable).
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) ca_file: Vec<PathBuf>,
    /// Reach registries through this HTTP proxy, http://[USER:PASSWORD@]HOST:PORT (default:
    /// HTTPS_PROXY, HTTP_PROXY); NO_PROXY still applies, and loopback is reached directly.
    #[arg(long, global = true, value_name = "URL")]
    pub(crate) proxy: Option<String>,
}

// Each subcommand's arguments are defined only when it is the one run (`defer`): defining
// every subcommand's arguments and help was most of what a short command such as `hoist
// digest` spent in hoist's own code. So argument structs have `//` comments, not doc comments:
// clap would take a struct's doc comment for the about text of the subcommand it defines, and
// with `defer` that would replace the variant's (applied first).
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub(crate) enum Command {
    /// Copy an image, an index or a whole multi-platform image between registries and layouts.
    ///
    /// Prints the digest of what DST now holds on stdout. Blobs the target already has are
    /// skipped; between repositories of one registry they are mounted, not uploaded.
    #[command(
        visible_alias = "cp",
        after_help = "Examples:\n  hoist copy alpine:3.20 localhost:5000/alpine:3.20\n  hoist cp --platform linux/amd64 --platform linux/arm64 ghcr.io/org/app:1.2 oci:./app:1.2\n  hoist copy --referrers reg.example/app@sha256:... reg.example/mirror/app:v1\n  hoist copy --all-tags docker.io/library/alpine localhost:5000/mirror/alpine"
    )]
    Copy(CopyArgs),
    /// Copy an image from a registry into an OCI layout directory (= copy REF oci:DIR[:TAG]).
    ///
    /// The image is tagged in the layout with REF's tag (latest when REF has only a digest),
    /// as a bare tag, which skopeo and umoci read. Prints the digest on stdout.
    #[command(after_help = "Example:\n  hoist pull --platform linux/arm64 alpine:3.20 ./alpine")]
    Pull(PullArgs),
    /// Copy an image from an OCI layout directory to a registry (= copy oci:DIR[:TAG] REF).
    ///
    /// Prints the digest on stdout.
    #[command(after_help = "Example:\n  hoist push ./alpine:3.20 localhost:5000/alpine:3.20")]
    Push(PushArgs),
    /// Print a manifest exactly as stored (the bytes its digest is computed from).
    #[command(
        after_help = "Examples:\n  hoist manifest alpine:3.20 | jq .\n  hoist manifest --platform linux/arm64 alpine:3.20"
    )]
    Manifest(ManifestArgs),
    /// Print the config of an image (for an index, of the image for --platform, default: this
    /// machine's).
    #[command(
        after_help = "Example:\n  hoist config --platform linux/amd64 alpine:3.20 | jq .config"
    )]
    Config(ManifestArgs),
    /// Print the digest of a manifest (sha256:...).
    #[command(
        after_help = "Examples:\n  hoist digest alpine:3.20\n  hoist digest --platform linux/amd64 alpine:3.20"
    )]
    Digest(ManifestArgs),
    /// Describe an image or index: digest, media type, platforms, layers, labels, entrypoint.
    #[command(
        after_help = "Examples:\n  hoist inspect alpine:3.20\n  hoist inspect --platform linux/arm64 --json alpine:3.20"
    )]
    Inspect(InspectArgs),
    /// List the tags of a repository, one per line.
    #[command(after_help = "Examples:\n  hoist ls localhost:5000/alpine\n  hoist ls oci:./layout")]
    Ls(ListArgs),
    /// List the repositories of a registry (or of an OCI layout: oci:DIR), one per line.
    #[command(after_help = "Example:\n  hoist catalog localhost:5000")]
    Catalog(CatalogArgs),
    /// Build an image from files, on a base image or from scratch, reproducibly.
    ///
    /// Each --layer is a directory (its tree, written as a deterministic tar: entries in byte
    /// order of their names, owners 0:0 unless --keep-owners, no user names, no access times),
    /// a tar file, or a .tar.gz/.tar.zst (taken as it is, recompressed as --compression says).
    /// With SOURCE_DATE_EPOCH set, the config's created time, the history and every file's
    /// time (clamped to it) come from it, so the same files give the same digest anywhere.
    /// Prints the digest of the new manifest on stdout.
    #[command(
        after_help = "Examples:\n  SOURCE_DATE_EPOCH=1700000000 hoist build --layer ./rootfs --entrypoint /app oci:./out:v1\n  hoist build --from alpine:3.20 --layer ./app --env PATH=/app/bin --platform linux/arm64 localhost:5000/app:v1"
    )]
    Build(BuildArgs),
    /// Add layers on top of an image (crane append): SRC with --layer PATH... on top, written
    /// to DST.
    #[command(
        after_help = "Example:\n  hoist append --layer ./extra localhost:5000/app:v1 localhost:5000/app:v1-extra"
    )]
    Append(AppendArgs),
    /// Change an image's config, labels or annotations (crane mutate), written to DST.
    #[command(
        after_help = "Example:\n  hoist mutate --label org.opencontainers.image.version=1.2 --entrypoint /app localhost:5000/app:v1"
    )]
    Mutate(MutateArgs),
    /// Merge all layers of an image into one, whiteouts applied (crane flatten).
    #[command(
        after_help = "Example:\n  hoist flatten localhost:5000/app:v1 localhost:5000/app:flat"
    )]
    Flatten(FlattenArgs),
    /// Move an image from its old base onto a new one (crane rebase): the old base's layers
    /// are replaced by the new base's, the image's own layers are kept as they are.
    #[command(
        after_help = "Example:\n  hoist rebase --old-base alpine:3.19 --new-base alpine:3.20 localhost:5000/app:v1 localhost:5000/app:v1-320"
    )]
    Rebase(RebaseArgs),
    /// Compress an image's layers again (gzip to zstd and back); diff_ids and config stay.
    #[command(
        after_help = "Example:\n  hoist recompress --compression zstd localhost:5000/app:v1 localhost:5000/app:v1-zstd"
    )]
    Recompress(RecompressArgs),
    /// Unpack an image's root filesystem into a new or empty directory (umoci unpack).
    ///
    /// Layers are applied in order with their whiteouts; every path is resolved inside DIR by
    /// the kernel, so no entry of a layer, however hostile, reaches outside it. As root, owners
    /// and device nodes are kept; otherwise (or with --rootless) owners are left as they come
    /// and device nodes become empty files.
    #[command(
        after_help = "Examples:\n  hoist unpack alpine:3.20 ./rootfs\n  hoist unpack --platform linux/arm64 --rootless oci:./app:v1 ./rootfs"
    )]
    Unpack(UnpackArgs),
    /// Write an image's root filesystem as one tar (crane export): its layers merged with the
    /// whiteouts applied, nothing written to disk on the way.
    #[command(
        after_help = "Examples:\n  hoist export alpine:3.20 rootfs.tar\n  hoist export alpine:3.20 - | tar -t"
    )]
    Export(ExportArgs),
    /// Write each layer of an image as its uncompressed tar, DIR/sha256/<diff_id>; prints the
    /// files' paths, lowest layer first.
    ///
    /// Each file appears only once whole and checked (the blob's digest and the diff_id the
    /// image's config gives); a layer whose file is already there is not fetched again, so a
    /// run picks up where an interrupted one stopped. Files of other images may share DIR.
    #[command(
        after_help = "Examples:\n  hoist layers alpine:3.20 ./layers\n  hoist layers --platform linux/arm64 -j 8 oci:./app:v1 ./layers"
    )]
    Layers(LayersArgs),
    /// Make and change multi-platform indexes (OCI image indexes, Docker manifest lists).
    #[command(subcommand)]
    Index(IndexCommand),
    /// Read or write single blobs.
    #[command(subcommand)]
    Blob(BlobCommand),
    /// Mirror repositories: every tag (or those a filter keeps) of each source repository into
    /// its destination, skipping tags the destination has at the same digest.
    ///
    /// From a config file (YAML or TOML: a `sync` list of entries with `source`,
    /// `destination`, and optionally `tags` with `regex` and `semver`, `platforms` and
    /// `referrers`), or one repository from the command line. Tags are listed page by page and
    /// copied --images at a time; prints one line per tag copied; exits non-zero if any failed,
    /// after trying them all.
    #[command(
        after_help = "Examples:\n  hoist sync --config mirror.yaml\n  hoist sync --semver '>=3.18' docker.io/library/alpine localhost:5000/mirror/alpine\n\nA config file:\n  sync:\n    - source: docker.io/library/alpine\n      destination: localhost:5000/mirror/alpine\n      tags: {regex: '^3\\.', semver: '>=3.18'}\n      platforms: [linux/amd64, linux/arm64]\n      referrers: true"
    )]
    Sync(SyncArgs),
    /// Push files as an OCI artifact, or pull an artifact's files (as oras does).
    #[command(subcommand)]
    Artifact(ArtifactCommand),
    /// Attach files to a manifest as an artifact that refers to it (a signature, an SBOM).
    ///
    /// The artifact is pushed untagged into REF's repository and listed by `hoist referrers
    /// REF`. Prints its digest.
    #[command(
        after_help = "Example:\n  hoist attach --artifact-type application/spdx+json localhost:5000/app:1.0 sbom.json"
    )]
    Attach(AttachArgs),
    /// Point more tags at the manifest REF names (in REF's repository).
    #[command(after_help = "Example:\n  hoist tag localhost:5000/app:1.2.3 1.2 1 latest")]
    Tag(TagArgs),
    /// Delete a tag, or a manifest by digest.
    ///
    /// By tag, only the tag goes (the manifest stays, reachable by digest); by digest, or by tag
    /// with --manifest, the manifest goes, with every tag pointing at it.
    #[command(
        after_help = "Examples:\n  hoist delete localhost:5000/app:old\n  hoist delete --manifest localhost:5000/app:old\n  hoist delete localhost:5000/app@sha256:..."
    )]
    Delete(DeleteArgs),
    /// List the manifests that refer to REF (signatures, SBOMs, attestations).
    ///
    /// One line per referrer: digest, artifact type (or - when it has none) and size, separated
    /// by tabs.
    #[command(
        after_help = "Example:\n  hoist referrers --artifact-type application/vnd.dev.cosign.artifact.sig.v1+json ghcr.io/org/app:1.2"
    )]
    Referrers(ReferrersArgs),
    /// Check credentials against a registry and store them in docker's config.json.
    ///
    /// Writes auths.<registry>.auth in $DOCKER_CONFIG/config.json (else ~/.docker/config.json)
    /// as `docker login` does, keeping everything else in the file.
    #[command(
        after_help = "Examples:\n  hoist login ghcr.io -u me --password-stdin < token.txt\n  hoist login localhost:5000 -u admin -p secret"
    )]
    Login(LoginArgs),
    /// Remove a registry's credentials from docker's config.json.
    #[command(after_help = "Example:\n  hoist logout ghcr.io")]
    Logout(LogoutArgs),
    /// Remove what nothing in an OCI layout (or a root of layouts) needs any more.
    ///
    /// Prints the digest of each removed blob on stdout.
    #[command(after_help = "Example:\n  hoist gc --dry-run ./layout")]
    Gc(GcArgs),
    /// Verify every blob of an OCI layout (or a root of layouts) against its digest.
    ///
    /// Prints one line per problem on stdout (corrupt DIGEST, missing DIGEST, stray PATH,
    /// unreadable-entries N) and exits with 6 if there is any.
    #[command(after_help = "Example:\n  hoist fsck ./layout")]
    Fsck(FsckArgs),
    /// Serve images as an OCI distribution-spec registry.
    #[command(after_help = "Example:\n  hoist serve --root ./registry --addr 127.0.0.1:5000")]
    Serve(ServeArgs),
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  hoist completions bash > /etc/bash_completion.d/hoist\n  hoist completions zsh > \"${fpath[1]}/_hoist\"\n  hoist completions fish > ~/.config/fish/completions/hoist.fish"
    )]
    Completions(CompletionsArgs),
    /// Print the man page (roff), as `cargo xtask dist` packs it.
    #[command(hide = true)]
    Man,
}

impl Command {
    /// Whether the command reads or changes one small thing (a digest, a manifest, a config, a
    /// tag, a list) rather than moving or making layers.
    pub(crate) fn is_small(&self) -> bool {
        matches!(
            self,
            Self::Digest(_)
                | Self::Manifest(_)
                | Self::Config(_)
                | Self::Inspect(_)
                | Self::Ls(_)
                | Self::Catalog(_)
                | Self::Referrers(_)
                | Self::Tag(_)
                | Self::Delete(_)
                | Self::Login(_)
                | Self::Logout(_)
                | Self::Completions(_)
                | Self::Man
        )
    }

    /// The command's name when it takes the limits on layers as flags (`--max-layer-size`
    /// and the others), for the hint after an error that a limit stopped it.
    pub(crate) fn layer_limits_command(&self) -> Option<&'static str> {
        match self {
            Self::Unpack(_) => Some("unpack"),
            Self::Export(_) => Some("export"),
            Self::Layers(_) => Some("layers"),
            Self::Flatten(_) => Some("flatten"),
            Self::Recompress(_) => Some("recompress"),
            _ => None,
        }
    }
}

// Which platforms of an index to copy.
#[derive(Debug, Clone, Args)]
pub(crate) struct PlatformArgs {
    /// Copy only the image for this platform, os/arch[/variant] (repeatable; with several, a
    /// new index of the chosen images is made). Default: every platform.
    #[arg(long, value_name = "PLATFORM", value_parser = parse_platform)]
    pub(crate) platform: Vec<Platform>,
    /// Copy every platform of an index, unchanged (the default; for crane and skopeo habits).
    #[arg(long, conflicts_with = "platform")]
    pub(crate) all_platforms: bool,
}

// How to copy.
#[derive(Debug, Clone, Args)]
pub(crate) struct TransferArgs {
    #[command(flatten)]
    pub(crate) platforms: PlatformArgs,
    /// Also copy what refers to the image (signatures, SBOMs, attestations), recursively.
    #[arg(long)]
    pub(crate) referrers: bool,
    /// How many blobs to transfer at once.
    #[arg(short, long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) jobs: u16,
}

// The runtime configuration flags of build, append and mutate.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Image config")]
pub(crate) struct ImageConfigArgs {
    /// The entrypoint: comma-separated (crane) or a JSON array ('["/bin/sh","-c"]'); empty
    /// to clear it.
    #[arg(long, value_name = "CMD")]
    pub(crate) entrypoint: Option<String>,
    /// The default arguments: comma-separated or a JSON array; empty to clear them.
    #[arg(long, value_name = "ARGS")]
    pub(crate) cmd: Option<String>,
    /// Set an environment variable (repeatable).
    #[arg(short, long, value_name = "NAME=VALUE")]
    pub(crate) env: Vec<String>,
    /// Append to an environment variable after a ':' (as for PATH), or set it (repeatable).
    #[arg(long, value_name = "NAME=VALUE")]
    pub(crate) env_append: Vec<String>,
    /// The working directory.
    #[arg(long, visible_alias = "workdir", value_name = "DIR")]
    pub(crate) working_dir: Option<String>,
    /// The user (NAME, UID or UID:GID).
    #[arg(short, long, value_name = "USER")]
    pub(crate) user: Option<String>,
    /// Set a label (repeatable).
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub(crate) label: Vec<String>,
    /// Set an annotation of the manifest (repeatable).
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub(crate) annotation: Vec<String>,
    /// Expose a port: PORT or PORT/tcp, PORT/udp (repeatable).
    #[arg(long, visible_alias = "exposed-ports", value_name = "PORT")]
    pub(crate) expose: Vec<String>,
    /// Declare a volume (repeatable).
    #[arg(long, value_name = "PATH")]
    pub(crate) volume: Vec<String>,
    /// The signal that stops the container.
    #[arg(long, value_name = "SIGNAL")]
    pub(crate) stop_signal: Option<String>,
}

// How new layers are written.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Layers")]
pub(crate) struct LayerArgs {
    /// Compression of new layers.
    #[arg(long, value_enum, default_value_t = CompressionArg::Gzip)]
    pub(crate) compression: CompressionArg,
    /// Compression level (gzip 1-9, zstd 1-19; default: gzip's and zstd's library defaults
    /// as hoist sets them).
    #[arg(long, value_name = "N")]
    pub(crate) compression_level: Option<i32>,
    /// Threads compressing a layer (the output does not depend on it; default: all cores).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) compression_threads: Option<u16>,
    /// Docker media types (schema 2 manifest, Docker config and layers) instead of OCI.
    #[arg(long)]
    pub(crate) docker: bool,
}

/// Layer compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum CompressionArg {
    /// gzip, in parallel blocks, the same bytes for any number of threads.
    Gzip,
    /// zstd, multi-threaded, the same bytes for any number of threads.
    Zstd,
    /// None: plain tar layers.
    None,
}

#[derive(Debug, Args)]
pub(crate) struct BuildArgs {
    /// Where the image goes: a registry reference or oci:DIR[:TAG].
    #[arg(value_name = "DST", value_parser = Location::parse)]
    pub(crate) dst: Location,
    /// The base image (any reference); without it the image starts empty.
    #[arg(long, value_name = "BASE", value_parser = Location::parse)]
    pub(crate) from: Option<Location>,
    /// A layer: a directory, a tar, a .tar.gz or .tar.zst (repeatable, lowest first).
    #[arg(long, value_name = "PATH")]
    pub(crate) layer: Vec<PathBuf>,
    /// The platform (os/arch[/variant]): the base's image for it out of an index; without a
    /// base, linux on this machine's architecture unless given.
    #[arg(long, value_name = "PLATFORM", value_parser = parse_platform)]
    pub(crate) platform: Option<Platform>,
    /// Keep files' owners as on disk instead of 0:0.
    #[arg(long)]
    pub(crate) keep_owners: bool,
    /// Another tag for the image in DST's repository (repeatable).
    #[arg(short, long, value_name = "TAG", value_parser = parse_tag)]
    pub(crate) tag: Vec<Tag>,
    #[command(flatten)]
    pub(crate) config: ImageConfigArgs,
    #[command(flatten)]
    pub(crate) layers: LayerArgs,
}

#[derive(Debug, Args)]
pub(crate) struct AppendArgs {
    /// The image to add layers to.
    #[arg(value_name = "SRC", value_parser = Location::parse)]
    pub(crate) src: Location,
    /// Where the result goes (SRC again to replace it there).
    #[arg(value_name = "DST", value_parser = Location::parse)]
    pub(crate) dst: Location,
    /// A layer: a directory, a tar, a .tar.gz or .tar.zst (repeatable, lowest first).
    #[arg(long, value_name = "PATH", required = true)]
    pub(crate) layer: Vec<PathBuf>,
    /// The image for this platform, when SRC is an index (required then).
    #[arg(long, value_name = "PLATFORM", value_parser = parse_platform)]
    pub(crate) platform: Option<Platform>,
    /// Keep files' owners as on disk instead of 0:0.
    #[arg(long)]
    pub(crate) keep_owners: bool,
    #[command(flatten)]
    pub(crate) layers: LayerArgs,
}

#[derive(Debug, Args)]
pub(crate) struct MutateArgs {
    /// The image to change.
    #[arg(value_name = "SRC", value_parser = Location::parse)]
    pub(crate) src: Location,
    /// Where the result goes (SRC again to replace it there).
    #[arg(value_name = "DST", value_parser = Location::parse)]
    pub(crate) dst: Location,
    /// The image for this platform, when SRC is an index (required then).
    #[arg(long, value_name = "PLATFORM", value_parser = parse_platform)]
    pub(crate) platform: Option<Platform>,
    /// Set the config's created time (seconds since the epoch; default SOURCE_DATE_EPOCH when
    /// set, else unchanged).
    #[arg(long, value_name = "SECONDS")]
    pub(crate) created: Option<u64>,
    #[command(flatten)]
    pub(crate) config: ImageConfigArgs,
}

#[derive(Debug, Args)]
pub(crate) struct FlattenArgs {
    /// The image to flatten.
    #[arg(value_name = "SRC", value_parser = Location::parse)]
    pub(crate) src: Location,
    /// Where the result goes (SRC again to replace it there).
    #[arg(value_name = "DST", value_parser = Location::parse)]
    pub(crate) dst: Location,
    /// The image for this platform, when SRC is an index (required then).
    #[arg(long, value_name = "PLATFORM", value_parser = parse_platform)]
    pub(crate) platform: Option<Platform>,
    #[command(flatten)]
    pub(crate) layers: LayerArgs,
    #[command(flatten)]
    pub(crate) layer_size: LayerSizeArg,
    #[command(flatten)]
    pub(crate) entries: EntryLimitArgs,
}

#[derive(Debug, Args)]
pub(crate) struct RebaseArgs {
    /// The image to move.
    #[arg(value_name = "SRC", value_parser = Location::parse)]
    pub(crate) src: Location,
    /// Where the result goes (SRC again to replace it there).
    #[arg(value_name = "DST", value_parser = Location::parse)]
    pub(crate) dst: Location,
    /// The base the image is built on now.
    #[arg(long, value_name = "REF", value_parser = Location::parse)]
    pub(crate) old_base: Location,
    /// The base to move it onto.
    #[arg(long, value_name = "REF", value_parser = Location::parse)]
    pub(crate) new_base: Location,
    /// The image for this platform, when SRC is an index (required then).
    #[arg(long, value_name = "PLATFORM", value_parser = parse_platform)]
    pub(crate) platform: Option<Platform>,
}

#[derive(Debug, Args)]
pub(crate) struct RecompressArgs {
    /// The image whose layers to compress again.
    #[arg(value_name = "SRC", value_parser = Location::parse)]
    pub(crate) src: Location,
    /// Where the result goes (SRC again to replace it there).
    #[arg(value_name = "DST", value_parser = Location::parse)]
    pub(crate) dst: Location,
    /// The image for this platform, when SRC is an index (required then).
    #[arg(long, value_name = "PLATFORM", value_parser = parse_platform)]
    pub(crate) platform: Option<Platform>,
    #[command(flatten)]
    pub(crate) layers: LayerArgs,
    #[command(flatten)]
    pub(crate) layer_size: LayerSizeArg,
}

#[derive(Debug, Args)]
pub(crate) struct UnpackArgs {
    /// The image.
    #[arg(value_name = "REF", value_parser = Location::parse)]
    pub(crate) image: Location,
    /// The directory (made if missing; it must be empty).
    #[arg(value_name = "DIR")]
    pub(crate) dir: PathBuf,
    /// The image for this platform out of an index (default: this machine's).
    #[arg(long, value_name = "PLATFORM", value_parser = parse_platform)]
    pub(crate) platform: Option<Platform>,
    /// Leave owners as they come and make device nodes empty files, even as root.
    #[arg(long)]
    pub(crate) rootless: bool,
    #[command(flatten)]
    pub(crate) layer_size: LayerSizeArg,
    #[command(flatten)]
    pub(crate) image_size: ImageSizeArg,
    #[command(flatten)]
    pub(crate) entries: EntryLimitArgs,
    /// Most entries in all the layers (each an inode made, or work done).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 4_000_000,
        help_heading = "Limits"
    )]
    pub(crate) max_image_entries: u64,
}

// The most uncompressed bytes of one layer read; beyond it, the command stops with an error.
// (Plain comments on these structs: a doc comment would replace the command's about text.)
#[derive(Debug, Args)]
pub(crate) struct LayerSizeArg {
    /// Most uncompressed bytes of one layer (B, KiB, MiB, GiB, TiB; K, M, G, T the same).
    #[arg(long, value_name = "SIZE", default_value = "64GiB", value_parser = parse_size, help_heading = "Limits")]
    pub(crate) max_layer_size: u64,
}

// The most uncompressed bytes of all the layers of an image.
#[derive(Debug, Args)]
pub(crate) struct ImageSizeArg {
    /// Most uncompressed bytes of all the layers.
    #[arg(long, value_name = "SIZE", default_value = "256GiB", value_parser = parse_size, help_heading = "Limits")]
    pub(crate) max_image_size: u64,
}

// What the layers' tar streams may hold. The defaults are far above real images (a large
// distribution has about 100,000 files, a few dozen directories deep) and bound what a
// hostile layer can cost; raise one for an image that needs more.
#[derive(Debug, Args)]
pub(crate) struct EntryLimitArgs {
    /// Most entries (files, directories, links) in one layer.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1_000_000,
        help_heading = "Limits"
    )]
    pub(crate) max_layer_entries: u64,
    /// Most components of a path in a layer.
    #[arg(long, value_name = "N", default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..), help_heading = "Limits")]
    pub(crate) max_path_depth: u32,
    /// Most bytes of names (paths, link targets, extended attributes) in one layer.
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = parse_size, help_heading = "Limits")]
    pub(crate) max_layer_names: u64,
    /// Most bytes of names in all the layers.
    #[arg(long, value_name = "SIZE", default_value = "1GiB", value_parser = parse_size, help_heading = "Limits")]
    pub(crate) max_image_names: u64,
}

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// The image.
    #[arg(value_name = "REF", value_parser = Location::parse)]
    pub(crate) image: Location,
    /// The tar file to write (it appears only once complete), or - for stdout.
    #[arg(value_name = "FILE")]
    pub(crate) output: PathBuf,
    /// The image for this platform out of an index (default: this machine's).
    #[arg(long, value_name = "PLATFORM", value_parser = parse_platform)]
    pub(crate) platform: Option<Platform>,
    #[command(flatten)]
    pub(crate) layer_size: LayerSizeArg,
    #[command(flatten)]
    pub(crate) entries: EntryLimitArgs,
}

// `hoist layers`.
#[derive(Debug, Args)]
pub(crate) struct LayersArgs {
    /// The image.
    #[arg(value_name = "REF", value_parser = Location::parse)]
    pub(crate) image: Location,
    /// The directory of layer files (made if missing).
    #[arg(value_name = "DIR")]
    pub(crate) dir: PathBuf,
    /// The image for this platform out of an index (default: this machine's).
    #[arg(long, value_name = "PLATFORM", value_parser = parse_platform)]
    pub(crate) platform: Option<Platform>,
    /// How many layers to fetch and write at once.
    #[arg(short, long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) jobs: u16,
    #[command(flatten)]
    pub(crate) layer_size: LayerSizeArg,
    #[command(flatten)]
    pub(crate) image_size: ImageSizeArg,
}

#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub(crate) enum IndexCommand {
    /// Make an index of images (each any reference; its platform from its config), in DST's
    /// repository. Prints the index's digest.
    #[command(
        after_help = "Example:\n  hoist index create localhost:5000/app:v1 localhost:5000/app:v1-amd64 localhost:5000/app:v1-arm64"
    )]
    Create(IndexCreateArgs),
    /// Add images to an index (an image for a platform the index has replaces it).
    #[command(
        after_help = "Example:\n  hoist index append localhost:5000/app:v1 localhost:5000/app:v1-riscv64"
    )]
    Append(IndexAppendArgs),
    /// Remove platforms from an index.
    #[command(
        after_help = "Example:\n  hoist index remove --platform linux/arm/v7 localhost:5000/app:v1"
    )]
    Remove(IndexRemoveArgs),
}

// Flags of the index commands.
#[derive(Debug, Clone, Args)]
pub(crate) struct IndexFlags {
    /// A Docker manifest list instead of an OCI image index.
    #[arg(long)]
    pub(crate) docker: bool,
    /// Set an annotation of the index (repeatable).
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub(crate) annotation: Vec<String>,
    /// Also tag each platform's image TAG-ARCH[-VARIANT] (OS- first when not linux).
    #[arg(long)]
    pub(crate) platform_tags: bool,
    /// Another tag for the index (repeatable).
    #[arg(short, long, value_name = "TAG", value_parser = parse_tag)]
    pub(crate) tag: Vec<Tag>,
}

#[derive(Debug, Args)]
pub(crate) struct IndexCreateArgs {
    /// Where the index goes.
    #[arg(value_name = "DST", value_parser = Location::parse)]
    pub(crate) dst: Location,
    /// The images, one per platform.
    #[arg(value_name = "IMAGE", required = true, value_parser = Location::parse)]
    pub(crate) images: Vec<Location>,
    #[command(flatten)]
    pub(crate) flags: IndexFlags,
}

#[derive(Debug, Args)]
pub(crate) struct IndexAppendArgs {
    /// The index (the new one is written back to it).
    #[arg(value_name = "INDEX", value_parser = Location::parse)]
    pub(crate) index: Location,
    /// The images to add.
    #[arg(value_name = "IMAGE", required = true, value_parser = Location::parse)]
    pub(crate) images: Vec<Location>,
    #[command(flatten)]
    pub(crate) flags: IndexFlags,
}

#[derive(Debug, Args)]
pub(crate) struct IndexRemoveArgs {
    /// The index (the new one is written back to it).
    #[arg(value_name = "INDEX", value_parser = Location::parse)]
    pub(crate) index: Location,
    /// A platform to remove (repeatable).
    #[arg(long, value_name = "PLATFORM", required = true, value_parser = parse_platform)]
    pub(crate) platform: Vec<Platform>,
}

// `hoist copy`.
#[derive(Debug, Args)]
pub(crate) struct CopyArgs {
    /// What to copy: a registry reference or oci:DIR[:TAG].
    #[arg(value_name = "SRC", value_parser = Location::parse)]
    pub(crate) src: Location,
    /// Where to: a registry reference or oci:DIR[:TAG]; a digest in it is checked against
    /// what was copied.
    #[arg(value_name = "DST", value_parser = Location::parse)]
    pub(crate) dst: Location,
    /// Copy every tag of the repository SRC into the repository DST (both without a tag; a
    /// registry reference's `:latest` is taken for none), skipping a tag that DST already has
    /// at the same digest before reading any blob; tags are listed page by page. Prints
    /// `DST:TAG DIGEST copied` for each tag copied; exits non-zero if any tag failed, after
    /// trying them all (`hoist sync` does the same for many repositories, with filters).
    #[arg(long)]
    pub(crate) all_tags: bool,
    #[command(flatten)]
    pub(crate) transfer: TransferArgs,
}

// `hoist pull`.
#[derive(Debug, Args)]
pub(crate) struct PullArgs {
    /// The image: a registry reference (or oci:DIR[:TAG]).
    #[arg(value_name = "REF", value_parser = Location::parse)]
    pub(crate) src: Location,
    /// The OCI layout directory (created if missing); oci:DIR:TAG chooses the tag too.
    #[arg(value_name = "DIR", value_parser = Location::parse_pull_dir)]
    pub(crate) dir: Location,
    #[command(flatten)]
    pub(crate) transfer: TransferArgs,
}

// `hoist push`.
#[derive(Debug, Args)]
pub(crate) struct PushArgs {
    /// The OCI layout directory, with the tag to push (default: latest).
    #[arg(value_name = "DIR[:TAG]", value_parser = Location::parse_layout)]
    pub(crate) dir: Location,
    /// Where to: a registry reference.
    #[arg(value_name = "REF", value_parser = Location::parse)]
    pub(crate) dst: Location,
    #[command(flatten)]
    pub(crate) transfer: TransferArgs,
}

// `hoist manifest`, `hoist config`, `hoist digest`.
#[derive(Debug, Args)]
pub(crate) struct ManifestArgs {
    /// The image: a registry reference or oci:DIR[:TAG].
    #[arg(value_name = "REF", value_parser = Location::parse)]
    pub(crate) reference: Location,
    /// For an index: the image for this platform, os/arch[/variant].
    #[arg(long, value_name = "PLATFORM", value_parser = parse_platform)]
    pub(crate) platform: Option<Platform>,
}

// `hoist inspect`.
#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    #[command(flatten)]
    pub(crate) target: ManifestArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

// `hoist ls`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// The repository: a registry reference (its tag is ignored) or oci:DIR.
    #[arg(value_name = "REF", value_parser = Location::parse)]
    pub(crate) repository: Location,
    /// Print a JSON array instead of lines.
    #[arg(long)]
    pub(crate) json: bool,
}

// `hoist catalog`.
#[derive(Debug, Args)]
pub(crate) struct CatalogArgs {
    /// The registry (host[:port]) or oci:DIR.
    #[arg(value_name = "REGISTRY", value_parser = Location::parse_registry)]
    pub(crate) registry: Location,
    /// Print a JSON array instead of lines.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub(crate) enum BlobCommand {
    /// Write a blob to stdout or a file, streamed and verified.
    ///
    /// With -o, the file appears only once the whole blob has arrived and matched its digest.
    /// With --uncompressed, a layer blob is written as its uncompressed tar.
    #[command(
        after_help = "Examples:\n  hoist blob get localhost:5000/app@sha256:... -o layer.tar.gz\n  hoist blob get --uncompressed localhost:5000/app@sha256:... -o layer.tar"
    )]
    Get(BlobGetArgs),
    /// Upload a file as a blob, streamed; prints its digest.
    #[command(after_help = "Example:\n  hoist blob put localhost:5000/app ./layer.tar.gz")]
    Put(BlobPutArgs),
}

#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub(crate) enum ArtifactCommand {
    /// Push files as one artifact: each file a layer titled with its name
    /// (org.opencontainers.image.title), the empty config of image-spec 1.1, tagged with REF's
    /// tag (latest when it has none). Prints the manifest's digest.
    #[command(
        after_help = "Examples:\n  hoist artifact push localhost:5000/docs:v1 README.md config.json:application/json\n  hoist artifact push --artifact-type application/vnd.example.report oci:./out:v1 report.pdf"
    )]
    Push(ArtifactPushArgs),
    /// Write the files of an artifact into DIR, each under its title, verified before it
    /// appears; a title that would leave DIR (`..`, an absolute path, a symbolic link on the way)
    /// is refused. Prints each file's path.
    #[command(after_help = "Example:\n  hoist artifact pull localhost:5000/docs:v1 ./docs")]
    Pull(ArtifactPullArgs),
}

// `hoist sync`.
#[derive(Debug, Args)]
pub(crate) struct SyncArgs {
    /// The repositories to mirror, from a file (.yaml, .yml or .toml).
    #[arg(short, long, value_name = "FILE", conflicts_with_all = ["source", "destination", "tags", "semver", "platform", "referrers"])]
    pub(crate) config: Option<PathBuf>,
    /// The repository to mirror (without --config): a registry repository or oci:DIR.
    #[arg(value_name = "SOURCE", value_parser = Location::parse, requires = "destination")]
    pub(crate) source: Option<Location>,
    /// Where to mirror it.
    #[arg(value_name = "DESTINATION", value_parser = Location::parse)]
    pub(crate) destination: Option<Location>,
    /// Only tags matching this regular expression.
    #[arg(long, value_name = "REGEX")]
    pub(crate) tags: Option<String>,
    /// Only tags that are versions in this semver range ('>=1.2, <2'), with or without a
    /// leading v.
    #[arg(long, value_name = "RANGE")]
    pub(crate) semver: Option<String>,
    /// Only this platform of indexes (repeatable); default: every platform, unchanged.
    #[arg(long, value_name = "PLATFORM", value_parser = parse_platform)]
    pub(crate) platform: Vec<Platform>,
    /// Also copy what refers to each image (signatures, SBOMs, attestations).
    #[arg(long)]
    pub(crate) referrers: bool,
    /// Say what would be copied, and copy nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// How many images are copied at once.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) images: u16,
    /// How many blobs are transferred at once in all (shared by the images copied at once).
    #[arg(short, long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) jobs: u16,
}

// `hoist artifact push`.
#[derive(Debug, Args)]
pub(crate) struct ArtifactPushArgs {
    /// Where to: a registry reference or oci:DIR[:TAG].
    #[arg(value_name = "REF", value_parser = Location::parse)]
    pub(crate) reference: Location,
    /// The files, each FILE or FILE:MEDIA-TYPE (default application/vnd.oci.image.layer.v1.tar).
    #[arg(value_name = "FILE[:TYPE]", required = true, value_parser = parse_file)]
    pub(crate) files: Vec<oci_artifact::ArtifactFile>,
    /// The artifact type (default application/vnd.unknown.artifact.v1).
    #[arg(long, value_name = "TYPE", value_parser = parse_media_type)]
    pub(crate) artifact_type: Option<oci_types::MediaType>,
    /// An annotation of the manifest (repeatable).
    #[arg(short, long = "annotation", value_name = "KEY=VALUE", value_parser = parse_annotation)]
    pub(crate) annotations: Vec<(String, String)>,
    /// The manifest this artifact refers to, in REF's repository (see also `hoist attach`).
    #[arg(long, value_name = "SUBJECT", value_parser = Location::parse)]
    pub(crate) subject: Option<Location>,
}

// `hoist artifact pull`.
#[derive(Debug, Args)]
pub(crate) struct ArtifactPullArgs {
    /// The artifact: a registry reference or oci:DIR[:TAG].
    #[arg(value_name = "REF", value_parser = Location::parse)]
    pub(crate) reference: Location,
    /// The directory to write the files into (created if missing).
    #[arg(value_name = "DIR")]
    pub(crate) dir: PathBuf,
}

// `hoist attach`.
#[derive(Debug, Args)]
pub(crate) struct AttachArgs {
    /// The manifest to attach to: a registry reference or oci:DIR[:TAG].
    #[arg(value_name = "REF", value_parser = Location::parse)]
    pub(crate) subject: Location,
    /// The files, each FILE or FILE:MEDIA-TYPE.
    #[arg(value_name = "FILE[:TYPE]", required = true, value_parser = parse_file)]
    pub(crate) files: Vec<oci_artifact::ArtifactFile>,
    /// The artifact type: what the attachment is (application/spdx+json, ...).
    #[arg(long, value_name = "TYPE", value_parser = parse_media_type)]
    pub(crate) artifact_type: oci_types::MediaType,
    /// An annotation of the manifest (repeatable).
    #[arg(short, long = "annotation", value_name = "KEY=VALUE", value_parser = parse_annotation)]
    pub(crate) annotations: Vec<(String, String)>,
}

// `hoist blob get`.
#[derive(Debug, Args)]
pub(crate) struct BlobGetArgs {
    /// The blob: REPOSITORY@DIGEST in a registry or oci:DIR@DIGEST.
    #[arg(value_name = "REF@DIGEST", value_parser = Location::parse)]
    pub(crate) blob: Location,
    /// Write to this file instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    /// Write a layer's uncompressed tar (gzip, zstd or plain, by its first bytes). The blob's
    /// digest is verified; the tar's own digest (diff_id) cannot be, since it is in an image
    /// config that a blob alone does not name (hoist layers checks it).
    #[arg(long)]
    pub(crate) uncompressed: bool,
}

// `hoist blob put`.
#[derive(Debug, Args)]
pub(crate) struct BlobPutArgs {
    /// The repository: a registry reference (tag ignored) or oci:DIR.
    #[arg(value_name = "REPO", value_parser = Location::parse)]
    pub(crate) repository: Location,
    /// The file to upload.
    #[arg(value_name = "FILE")]
    pub(crate) file: PathBuf,
}

// `hoist tag`.
#[derive(Debug, Args)]
pub(crate) struct TagArgs {
    /// The manifest: a registry reference or oci:DIR[:TAG].
    #[arg(value_name = "REF", value_parser = Location::parse)]
    pub(crate) reference: Location,
    /// The tags to add, in REF's repository.
    #[arg(value_name = "NEWTAG", required = true, value_parser = parse_tag)]
    pub(crate) tags: Vec<Tag>,
}

// `hoist delete`.
#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// What to delete: a reference with a tag or a digest, or oci:DIR[:TAG].
    #[arg(value_name = "REF", value_parser = Location::parse)]
    pub(crate) reference: Location,
    /// Delete the manifest the tag points at (and so every tag pointing at it), not just the
    /// tag.
    #[arg(long)]
    pub(crate) manifest: bool,
}

// `hoist referrers`.
#[derive(Debug, Args)]
pub(crate) struct ReferrersArgs {
    /// The subject: a registry reference or oci:DIR[:TAG].
    #[arg(value_name = "REF", value_parser = Location::parse)]
    pub(crate) reference: Location,
    /// Only referrers of this artifact type.
    #[arg(long, value_name = "TYPE", value_parser = parse_media_type)]
    pub(crate) artifact_type: Option<oci_types::MediaType>,
    /// Print the descriptors as a JSON array.
    #[arg(long, conflicts_with = "tree")]
    pub(crate) json: bool,
    /// Also list what refers to each referrer, recursively, as an indented tree (oras discover).
    #[arg(long)]
    pub(crate) tree: bool,
}

// `hoist login`.
#[derive(Debug, Args)]
pub(crate) struct LoginArgs {
    /// The registry (host[:port]; docker.io for Docker Hub).
    #[arg(value_name = "REGISTRY")]
    pub(crate) registry: String,
    /// The user name.
    #[arg(short, long)]
    pub(crate) username: String,
    /// The password or token (visible to other users of this machine in the process list:
    /// prefer --password-stdin).
    #[arg(short, long, conflicts_with = "password_stdin")]
    pub(crate) password: Option<String>,
    /// Read the password or token from stdin (without its final newline).
    #[arg(long)]
    pub(crate) password_stdin: bool,
}

// `hoist logout`.
#[derive(Debug, Args)]
pub(crate) struct LogoutArgs {
    /// The registry (host[:port]; docker.io for Docker Hub).
    #[arg(value_name = "REGISTRY")]
    pub(crate) registry: String,
}

// `hoist gc`.
#[derive(Debug, Args)]
pub(crate) struct GcArgs {
    /// An OCI layout directory, or a root of one layout per repository (as `hoist serve
    /// --root` keeps).
    #[arg(value_name = "DIR", required_unless_present = "storage")]
    pub(crate) dir: Option<PathBuf>,
    /// Object storage that `hoist serve --storage` serves (s3://BUCKET/PREFIX, gs://, az://,
    /// file:///DIR), collected online: replicas may keep serving and pushing meanwhile.
    #[arg(long, value_name = "URL", conflicts_with = "dir")]
    pub(crate) storage: Option<String>,
    /// Only report what would be removed.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Keep unreferenced blobs, uploads and temporary files younger than this many seconds:
    /// another process may be about to push the manifest that needs them.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub(crate) grace: u64,
}

// `hoist fsck`.
#[derive(Debug, Args)]
pub(crate) struct FsckArgs {
    /// An OCI layout directory, or a root of one layout per repository.
    #[arg(value_name = "DIR")]
    pub(crate) dir: PathBuf,
}

// `hoist completions`.
#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell.
    #[arg(value_name = "SHELL")]
    pub(crate) shell: clap_complete::Shell,
}

// `hoist serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Store repositories as OCI image layouts under this directory, one per repository
    /// (default: ./hoist-registry).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["memory", "storage"])]
    pub(crate) root: Option<PathBuf>,
    /// Keep everything in memory (lost on exit).
    #[arg(long, conflicts_with = "storage")]
    pub(crate) memory: bool,
    /// Store everything in object storage: s3://BUCKET/PREFIX (credentials, region and
    /// endpoint from the AWS_* environment variables), gs://, az://, file:///DIR or
    /// memory://; several replicas may serve one bucket.
    #[arg(long, value_name = "URL")]
    pub(crate) storage: Option<String>,
    /// Serve as a pull-through cache of this registry (https://registry-1.docker.io,
    /// host:port, http://host:port): pulls are served from the storage, and what it lacks is
    /// fetched from upstream once, passed on as it arrives, verified, and kept (credentials for
    /// upstream come from the usual files, as for every command). Pushes and deletes are refused unless an --access
    /// policy is given (they then go upstream).
    #[arg(long, value_name = "UPSTREAM")]
    pub(crate) mirror: Option<String>,
    /// With --mirror: how long upstream's answer for a tag is trusted before it is asked again,
    /// in seconds (0: every pull asks); while upstream cannot be reached, the last answer serves.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub(crate) mirror_tag_ttl: u64,
    /// Answer blob downloads with a redirect to a URL of the bucket signed for a short time
    /// (s3://, gs://, az://), so that blob bytes go from the storage to the client directly;
    /// clients must be able to reach the storage. Access and the repository's holding of the
    /// blob are checked first; HEADs and ranged reads are answered here.
    #[arg(long, requires = "storage")]
    pub(crate) redirect_blobs: bool,
    /// How long each redirect URL stays valid, in seconds (at most 604800, a week: the longest
    /// S3 and Google Cloud Storage sign for).
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 1200,
        value_parser = clap::value_parser!(u64).range(1..=MAX_REDIRECT_EXPIRY),
        requires = "redirect_blobs"
    )]
    pub(crate) redirect_expiry: u64,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:5000")]
    pub(crate) addr: SocketAddr,
    /// Refuse every push and delete.
    #[arg(long)]
    pub(crate) read_only: bool,
    /// Refuse deletes.
    #[arg(long)]
    pub(crate) no_delete: bool,
    /// Hash every blob served and cut a download off where it does not match its digest.
    /// Off by default: blobs were verified when written, clients check every digest they
    /// download, and `hoist fsck` finds damage at rest.
    #[arg(long)]
    pub(crate) verify_reads: bool,
    /// Require basic auth from the users of this htpasswd file (bcrypt, as `htpasswd -B` writes).
    #[arg(long, value_name = "FILE")]
    pub(crate) htpasswd: Option<PathBuf>,
    /// Require bearer tokens from the built-in token endpoint (/token); with --htpasswd, the
    /// token endpoint asks for those users' credentials. Needs users, --access or
    /// --anonymous-push.
    #[arg(long)]
    pub(crate) token_auth: bool,
    /// Decide who may pull, push or delete which repositories by this access policy file
    /// (.toml, .yaml or .yml: users, groups, repository patterns, anonymous access).
    #[arg(long, value_name = "FILE")]
    pub(crate) access: Option<PathBuf>,
    /// Let requests without credentials pull and push every repository (users, if any, may do
    /// everything); with an --access policy, say so in the policy instead.
    #[arg(long, conflicts_with = "access")]
    pub(crate) anonymous_push: bool,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Limit blob uploads to this many bytes each (a number, or with a unit: MiB, GiB).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub(crate) max_blob_size: Option<u64>,
    /// Require upload chunks of at least this many bytes (announced as OCI-Chunk-Min-Length).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub(crate) min_chunk_size: Option<u64>,
    /// How many uploads may stream at once.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub(crate) max_concurrent_uploads: usize,
    /// How many blob downloads are served at once; more wait for their turn.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub(crate) max_concurrent_downloads: usize,
    /// How many connections are served at once; more are closed as they come.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 4096,
        help_heading = "Time limits"
    )]
    pub(crate) max_connections: usize,
    /// Close a connection whose request line and headers take longer than this (HTTP/1; also
    /// how long a kept-alive connection may wait for its next request); 0: no limit.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(..=MAX_TIME_LIMIT),
        help_heading = "Time limits"
    )]
    pub(crate) header_timeout: u64,
    /// Close a connection on which no byte moved for this long; 0: no limit.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 120,
        value_parser = clap::value_parser!(u64).range(..=MAX_TIME_LIMIT),
        help_heading = "Time limits"
    )]
    pub(crate) idle_timeout: u64,
    /// Close a connection whose TLS handshake takes longer than this.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..=MAX_TIME_LIMIT),
        help_heading = "Time limits"
    )]
    pub(crate) tls_handshake_timeout: u64,
    /// Cut off an upload body (a blob, a manifest, a token request) that brings less than
    /// this many bytes per second, on average over each 30 s, and a download whose client
    /// takes less (0: never).
    #[arg(
        long,
        value_name = "BYTES",
        default_value_t = 1024,
        help_heading = "Time limits"
    )]
    pub(crate) min_body_rate: u64,
}

fn parse_platform(input: &str) -> Result<Platform, oci_types::Error> {
    Platform::parse(input)
}

/// A number of bytes: digits, then a unit or none. `K`, `M`, `G`, `T` and `KiB` to `TiB` are
/// powers of 1024; `KB` to `TB` powers of 1000 (as `dd` reads them); case does not matter.
fn parse_size(input: &str) -> Result<u64, String> {
    let digits = input.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &input[digits.len()..];
    let number: u64 = digits.parse().map_err(|_| {
        format!("{input:?} is not a size (a number of bytes, then B, KiB, MiB, GiB or TiB)")
    })?;
    let scale: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(format!(
                "{input:?}: unknown unit {unit:?} (B, KiB, MiB, GiB or TiB)"
            ));
        }
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("{input:?} is more bytes than a 64-bit count holds"))
}

fn parse_tag(input: &str) -> Result<Tag, oci_types::Error> {
    Tag::parse(input)
}

fn parse_media_type(input: &str) -> Result<oci_types::MediaType, oci_types::Error> {
    oci_types::MediaType::parse(input)
}

/// `FILE[:TYPE]`: a path, with a media type after its last `:` when what follows is one (a
/// path may hold `:` too, as oras reads it).
fn parse_file(input: &str) -> Result<oci_artifact::ArtifactFile, String> {
    if input.is_empty() {
        return Err("an empty file name".to_owned());
    }
    if let Some((path, kind)) = input.rsplit_once(':')
        && kind.contains('/')
        && !path.is_empty()
    {
        let media_type = oci_types::MediaType::parse(kind).map_err(|e| format!("{kind:?}: {e}"))?;
        return Ok(oci_artifact::ArtifactFile::new(path).with_media_type(media_type));
    }
    Ok(oci_artifact::ArtifactFile::new(input))
}

/// `KEY=VALUE`.
fn parse_annotation(input: &str) -> Result<(String, String), String> {
    match input.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{input:?} is not KEY=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    /// With `defer`, a subcommand's arguments are added after its about text: a doc comment
    /// on an argument struct would then replace the text its variant gives (as "How to copy"
    /// once replaced `hoist copy`'s). Every subcommand, at every depth, keeps its own.
    #[test]
    fn defining_a_subcommand_keeps_its_about_text() {
        fn check(unbuilt: &clap::Command, path: &str) {
            for sub in unbuilt.get_subcommands() {
                let name = format!("{path} {}", sub.get_name());
                let mut built = sub.clone();
                built.build();
                assert_eq!(
                    built.get_about().map(ToString::to_string),
                    sub.get_about().map(ToString::to_string),
                    "{name}"
                );
                assert_eq!(
                    built.get_long_about().map(ToString::to_string),
                    sub.get_long_about().map(ToString::to_string),
                    "{name}"
                );
                check(&built, &name);
            }
        }
        let command = Cli::command();
        assert!(command.get_subcommands().count() > 30);
        check(&command, "hoist");
    }

    #[test]
    fn copy_takes_platforms_jobs_and_an_alias() {
        let cli = Cli::try_parse_from([
            "hoist",
            "cp",
            "--platform",
            "linux/arm64",
            "--platform",
            "linux/amd64",
            "-j",
            "8",
            "alpine",
            "oci:./out:v1",
        ])
        .unwrap();
        let Command::Copy(args) = cli.command else {
            panic!("not a copy: {:?}", cli.command)
        };
        assert_eq!(args.transfer.jobs, 8);
        assert_eq!(args.transfer.platforms.platform.len(), 2);
        assert_eq!(args.dst.to_string(), "oci:./out:v1");
    }

    #[test]
    fn malformed_input_is_a_usage_error() {
        for args in [
            &["hoist", "copy", "Bad//ref", "x"][..],
            &["hoist", "copy", "a", "b", "-j", "0"],
            &["hoist", "manifest", "--platform", "linux", "a"],
            &["hoist", "tag", "a", "-bad-"],
            &[
                "hoist",
                "copy",
                "--platform",
                "linux/amd64",
                "--all-platforms",
                "a",
                "b",
            ],
        ] {
            let error = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{args:?}: {error}");
        }
    }

    #[test]
    fn sizes_take_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("3B"), Ok(3));
        assert_eq!(parse_size("2k"), Ok(2048));
        assert_eq!(parse_size("5MiB"), Ok(5 << 20));
        assert_eq!(parse_size("64GiB"), Ok(64 << 30));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        assert_eq!(parse_size("3MB"), Ok(3_000_000));
        assert_eq!(parse_size("16777215TiB"), Ok(16_777_215 << 40));
        for bad in [
            "",
            "GiB",
            "-1",
            "1.5G",
            "12 MiB",
            "7PiB",
            "16777216TiB",
            "1e9",
        ] {
            let error = parse_size(bad).unwrap_err();
            assert!(error.contains(&format!("{bad:?}")), "{bad}: {error}");
        }
    }

    /// The limits the command line shows as defaults are the libraries' own: a command given
    /// no limit flag reads layers as a library caller would.
    #[test]
    fn limit_defaults_are_the_libraries() {
        let cli = Cli::try_parse_from(["hoist", "unpack", "oci:./a:v1", "out"]).unwrap();
        let Command::Unpack(args) = cli.command else {
            panic!("not an unpack: {:?}", cli.command)
        };
        let library = oci_unpack::UnpackOptions::default();
        let limits = crate::commands::unpack::layer_limits(&args.entries);
        assert_eq!(limits, library.limits);
        assert_eq!(args.layer_size.max_layer_size, library.max_layer_bytes);
        assert_eq!(args.image_size.max_image_size, library.max_image_bytes);
        assert_eq!(args.max_image_entries, library.max_image_entries);

        let cli = Cli::try_parse_from(["hoist", "layers", "oci:./a:v1", "out"]).unwrap();
        let Command::Layers(args) = cli.command else {
            panic!("not layers: {:?}", cli.command)
        };
        let extract = oci_unpack::ExtractOptions::default();
        assert_eq!(args.layer_size.max_layer_size, extract.max_layer_bytes);
        assert_eq!(args.image_size.max_image_size, extract.max_total_bytes);

        let cli = Cli::try_parse_from(["hoist", "flatten", "oci:./a:v1", "oci:./b:v1"]).unwrap();
        let Command::Flatten(args) = cli.command else {
            panic!("not a flatten: {:?}", cli.command)
        };
        let mutate = oci_build::MutateOptions::default();
        let limits = crate::commands::unpack::layer_limits(&args.entries);
        assert_eq!(limits, mutate.limits);
        assert_eq!(args.layer_size.max_layer_size, mutate.max_layer_bytes);
    }

    #[test]
    fn limits_are_set_by_flags() {
        let cli = Cli::try_parse_from([
            "hoist",
            "unpack",
            "--max-layer-size",
            "2GiB",
            "--max-image-size",
            "3G",
            "--max-layer-entries",
            "7",
            "--max-path-depth",
            "300",
            "--max-layer-names",
            "1MiB",
            "--max-image-names",
            "2MiB",
            "--max-image-entries",
            "9",
            "oci:./a:v1",
            "out",
        ])
        .unwrap();
        let Command::Unpack(args) = cli.command else {
            panic!("not an unpack: {:?}", cli.command)
        };
        let limits = crate::commands::unpack::layer_limits(&args.entries);
        let expected = oci_unpack::LayerLimits::default()
            .with_max_entries(7)
            .with_max_depth(300)
            .with_max_metadata(1 << 20)
            .with_max_image_metadata(2 << 20);
        assert_eq!(limits, expected);
        assert_eq!(args.layer_size.max_layer_size, 2 << 30);
        assert_eq!(args.image_size.max_image_size, 3 << 30);
        assert_eq!(args.max_image_entries, 9);
        let error = Cli::try_parse_from(["hoist", "export", "--max-path-depth", "0", "a", "f"])
            .unwrap_err();
        assert_eq!(error.exit_code(), 2, "{error}");
    }

    #[test]
    fn registry_flags_are_global() {
        let cli = Cli::try_parse_from([
            "hoist",
            "ls",
            "--plain-http",
            "--ca-file",
            "ca.pem",
            "--insecure",
            "reg.example/app",
        ])
        .unwrap();
        assert!(cli.registry.plain_http && cli.registry.insecure);
        assert_eq!(cli.registry.ca_file, [PathBuf::from("ca.pem")]);
    }

    #[test]
    fn files_take_a_media_type_after_their_last_colon() {
        let plain = parse_file("notes.txt").unwrap();
        assert_eq!(plain.title, "notes.txt");
        assert_eq!(plain.media_type.as_str(), oci_artifact::DEFAULT_FILE_TYPE);
        let typed = parse_file("dir/sbom.json:application/spdx+json").unwrap();
        assert_eq!(typed.path, std::path::Path::new("dir/sbom.json"));
        assert_eq!(typed.media_type.as_str(), "application/spdx+json");
        // A colon without a media type after it is part of the name.
        assert_eq!(parse_file("a:b.txt").unwrap().title, "a:b.txt");
        assert!(parse_file("x:bad type/").is_err());
        assert_eq!(
            parse_annotation("k=v=w").unwrap(),
            ("k".into(), "v=w".into())
        );
        assert!(parse_annotation("=v").is_err());
    }
}
