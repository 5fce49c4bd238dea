//! `layout-torture`: a child process for the crash-safety and concurrency tests of oci-layout.
//!
//! ```text
//! layout-torture DIR --prefix P --count N [--seed S] [--max-blob BYTES]
//! ```
//!
//! Opens the image layout `DIR` and, `N` times (forever when `N` is 0), pushes one image: one to
//! three random layers (streamed in pieces through `push_blob`, or through a chunked upload, or
//! now and then a layer of the previous image pushed again), a config blob, and an OCI image
//! manifest tagged `P-<i>`. After each image it prints `pushed P-<i> <digest>` and flushes, so
//! that a parent that kills it knows which pushes completed. The content depends only on the
//! seed (random when not given; it is then reported on stderr).

// A command-line test helper: stdout is its protocol with the parent test, stderr its errors.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::error::Error;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use bytes::Bytes;
use futures::StreamExt;
use oci_layout::{LayoutOptions, LayoutStore};
use oci_store::{OciInterface, OciInterfaceExt, PushManifestParams};
use oci_types::{Descriptor, ImageManifest, MediaType, Repository, Tag, media_type};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

const USAGE: &str = "usage: layout-torture DIR --prefix P --count N [--seed S] [--max-blob BYTES]";

/// The largest piece a blob is streamed in.
const MAX_PIECE: usize = 256 * 1024;

type BoxError = Box<dyn Error + Send + Sync>;

#[derive(Debug)]
struct Args {
    dir: PathBuf,
    prefix: String,
    count: u64,
    seed: Option<u64>,
    max_blob: usize,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut dir = None;
    let mut prefix = None;
    let mut count = None;
    let mut seed = None;
    let mut max_blob = 2 * 1024 * 1024;
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--prefix" => prefix = Some(value("--prefix")?),
            "--count" => count = Some(number(&value("--count")?, "--count")?),
            "--seed" => seed = Some(number(&value("--seed")?, "--seed")?),
            "--max-blob" => max_blob = number(&value("--max-blob")?, "--max-blob")?,
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            _ if dir.is_none() => dir = Some(PathBuf::from(arg)),
            _ => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    Ok(Args {
        dir: dir.ok_or("the layout directory is missing")?,
        prefix: prefix.ok_or("--prefix is missing")?,
        count: count.ok_or("--count is missing")?,
        seed,
        max_blob,
    })
}

fn number<T: std::str::FromStr>(text: &str, name: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("{name}: {text:?} is not a number"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("layout-torture: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let mut message = format!("layout-torture: {error}");
            let mut source = error.source();
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), BoxError> {
    let seed = args.seed.unwrap_or_else(|| {
        let seed = rand::rng().random();
        eprintln!("layout-torture: seed {seed}");
        seed
    });
    let mut rng = StdRng::seed_from_u64(seed);
    let store = LayoutStore::open(&args.dir).await?;
    let repo = LayoutOptions::default().default_repository;
    let mut previous: Vec<Descriptor> = Vec::new();
    let mut i = 0u64;
    while args.count == 0 || i < args.count {
        let tag = Tag::parse(&format!("{}-{i}", args.prefix))?;
        let mut layers = Vec::new();
        for _ in 0..rng.random_range(1..=3) {
            let layer = match previous.first() {
                // Now and then a layer the layout already has: the push verifies it again.
                Some(old) if rng.random_ratio(1, 6) => {
                    let old = old.clone();
                    repush(&store, &repo, &old, &mut rng).await?;
                    old
                }
                _ => push_layer(&store, &repo, &mut rng, args.max_blob).await?,
            };
            layers.push(layer);
        }
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"config":{{"Labels":{{"torture":"{tag} seed {seed}"}}}}}}"#
        );
        let config = store
            .push_blob_bytes(
                &repo,
                MediaType::from_static(media_type::OCI_CONFIG),
                Bytes::from(config),
            )
            .await?;
        let manifest = ImageManifest::new(config, layers.clone()).to_json();
        let pushed = store
            .push_manifest(
                &repo,
                manifest.into(),
                &MediaType::from_static(media_type::OCI_MANIFEST),
                &PushManifestParams::new().with_tag(tag.clone()),
            )
            .await?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "pushed {tag} {}", pushed.digest)?;
        out.flush()?;
        previous = layers;
        i += 1;
    }
    Ok(())
}

/// Pushes a random layer of up to `max_blob` bytes, through `push_blob` or (one time in three)
/// through a chunked upload, in pieces of random sizes.
async fn push_layer(
    store: &LayoutStore,
    repo: &Repository,
    rng: &mut StdRng,
    max_blob: usize,
) -> Result<Descriptor, BoxError> {
    let mut content = vec![0u8; rng.random_range(0..=max_blob)];
    rng.fill_bytes(&mut content);
    let content = Bytes::from(content);
    let descriptor =
        Descriptor::of_bytes(MediaType::from_static(media_type::OCI_LAYER_TAR), &content);
    let pieces = split(&content, rng);
    if rng.random_ratio(1, 3) {
        let mut writer = store.push_blob_chunked(repo, Some(MAX_PIECE)).await?;
        for piece in pieces {
            writer.write(piece).await?;
        }
        writer.commit(&descriptor.digest).await?;
    } else {
        store
            .push_blob(
                repo,
                &descriptor,
                futures::stream::iter(pieces.into_iter().map(Ok))
                    .boxed()
                    .into(),
            )
            .await?;
    }
    Ok(descriptor)
}

/// Pushes a blob the layout already holds again, with its content read back from the layout.
async fn repush(
    store: &LayoutStore,
    repo: &Repository,
    descriptor: &Descriptor,
    rng: &mut StdRng,
) -> Result<(), BoxError> {
    let content = store
        .get_blob_bytes(repo, &descriptor.digest, descriptor.size)
        .await?;
    let pieces = split(&content, rng);
    store
        .push_blob(
            repo,
            descriptor,
            futures::stream::iter(pieces.into_iter().map(Ok))
                .boxed()
                .into(),
        )
        .await?;
    Ok(())
}

/// Cuts `content` into pieces of random sizes (1 to `MAX_PIECE` bytes).
fn split(content: &Bytes, rng: &mut StdRng) -> Vec<Bytes> {
    let mut pieces = Vec::new();
    let mut start = 0;
    while start < content.len() {
        let end = (start + rng.random_range(1..=MAX_PIECE)).min(content.len());
        pieces.push(content.slice(start..end));
        start = end;
    }
    pieces
}
