//! `layout_bench`: the layout side of `cargo xtask bench layout`.
//!
//! ```text
//! layout_bench push SRC_FILE LAYOUT_DIR DIGEST   stream SRC_FILE into the layout as a blob
//! layout_bench read LAYOUT_DIR DIGEST            read that blob back, verified, discarding it
//! ```
//!
//! Both write into the default repository of `LayoutStore::open(LAYOUT_DIR)` through the
//! `OciInterface` methods a copy uses (`push_blob`, `get_blob`), and print one line of JSON:
//! `{"op":"push","seconds":1.23,"bytes":1073741824,"peak_rss_kib":9000}`, where `seconds` is
//! the time of the operation in this process (opening the store included) and `peak_rss_kib`
//! the process's peak resident set (`VmHWM` of `/proc/self/status`) at the end.
//!
//! The source is read as hoist reads a local file it pushes (`hoist blob put`):
//! `FileSpan::into_body`, 1 MiB pieces read on blocking threads into pooled buffers. Through
//! `tokio::fs::File`, every piece was copied once more (from tokio's buffer into a fresh one),
//! which took as much CPU as hashing it.
//!
//! Build it with `cargo build --release -p oci-layout --example layout_bench`; `cargo xtask
//! bench` does so and compares it with `dd` and `openssl` on the same bytes.

// A benchmark program: its one line of JSON on stdout is its whole interface.
#![allow(clippy::print_stdout)]

use std::error::Error;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use oci_layout::{LayoutOptions, LayoutStore};
use oci_store::{FileSpan, OciInterface};
use oci_types::{Descriptor, Digest, MediaType, media_type};

/// The read size of the source file: the pieces a push from a local file reads.
const READ_BUFFER: usize = 1 << 20;

const USAGE: &str = "usage: layout_bench push SRC_FILE LAYOUT_DIR DIGEST\n       \
                     layout_bench read LAYOUT_DIR DIGEST";

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (op, started, bytes) = match args.as_slice() {
        [op, src, dir, digest] if op == "push" => {
            let digest: Digest = digest.parse()?;
            let started = Instant::now();
            let bytes = push(Path::new(src), PathBuf::from(dir), digest).await?;
            ("push", started, bytes)
        }
        [op, dir, digest] if op == "read" => {
            let digest: Digest = digest.parse()?;
            let started = Instant::now();
            let bytes = read(PathBuf::from(dir), &digest).await?;
            ("read", started, bytes)
        }
        _ => return Err(USAGE.into()),
    };
    let seconds = started.elapsed().as_secs_f64();
    let peak_rss_kib = peak_rss_kib()?;
    println!(
        "{{\"op\":\"{op}\",\"seconds\":{seconds:.6},\"bytes\":{bytes},\"peak_rss_kib\":{peak_rss_kib}}}"
    );
    Ok(())
}

/// Streams `src` into the layout at `dir` as the blob `digest`; returns the bytes pushed.
async fn push(src: &Path, dir: PathBuf, digest: Digest) -> Result<u64, Box<dyn Error>> {
    let store = LayoutStore::open(dir).await?;
    let repo = LayoutOptions::default().default_repository;
    let file = File::open(src).map_err(|e| format!("cannot open {}: {e}", src.display()))?;
    let size = file.metadata()?.len();
    let body =
        FileSpan::new(Arc::new(file), 0, size, src.display().to_string()).into_body(READ_BUFFER);
    let descriptor = Descriptor::new(
        MediaType::from_static(media_type::OCI_LAYER_TAR),
        digest,
        size,
    );
    let stored = store.push_blob(&repo, &descriptor, body).await?;
    if stored.size != size {
        return Err(format!("the store reports {} bytes, pushed {size}", stored.size).into());
    }
    Ok(size)
}

/// Reads the blob `digest` from the layout at `dir` through its verifying stream; returns the
/// bytes read, once the stream has ended without error (the digest matched).
async fn read(dir: PathBuf, digest: &Digest) -> Result<u64, Box<dyn Error>> {
    let store = LayoutStore::open(dir).await?;
    let repo = LayoutOptions::default().default_repository;
    let mut body = store.get_blob(&repo, digest).await?.into_stream();
    let mut bytes = 0u64;
    while let Some(chunk) = body.next().await {
        bytes += chunk?.len() as u64;
    }
    Ok(bytes)
}

/// The peak resident set size of this process so far, in KiB (`VmHWM`).
fn peak_rss_kib() -> Result<u64, Box<dyn Error>> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .ok_or("no VmHWM line in /proc/self/status")?;
    let kib = line.trim().trim_end_matches("kB").trim().parse()?;
    Ok(kib)
}
