//! oci-layout with real processes: children that push images are killed with SIGKILL at random
//! moments, or push into one layout all at once, and the layout they leave behind is checked
//! from the outside (its files) and through `LayoutStore` (every tag read back verified, fsck).
//!
//! The children are `layout-torture` (`it/bin/layout_torture.rs`), which prints
//! `pushed TAG DIGEST` once a push has completed.

// The crash test reports how much it did (`--nocapture`), as a test's own output.
#![allow(clippy::print_stderr)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use oci_layout::{LayoutOptions, LayoutStore};
use oci_store::{ErrorCode, ListParams, OciInterface};
use oci_types::{Digest, MAX_MANIFEST_SIZE, Manifest, Tag};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const TORTURE: &str = env!("CARGO_BIN_EXE_layout-torture");

/// Rounds of the crash test: one child killed per round.
const CRASH_ROUNDS: u64 = 40;

/// Children of the concurrency test, and images each of them pushes.
const WRITERS: u64 = 8;
const IMAGES_PER_WRITER: u64 = 12;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn spawn(dir: &Path, args: &[&str]) -> Child {
    Command::new(TORTURE)
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The `pushed TAG DIGEST` lines of a child's output; a last line cut short by the kill (no
/// newline) does not count.
fn reported(stdout: &str) -> Vec<(String, Digest)> {
    let complete = match stdout.rfind('\n') {
        Some(end) => &stdout[..end],
        None => "",
    };
    complete
        .lines()
        .map(|line| {
            let mut words = line.split(' ');
            match (words.next(), words.next(), words.next(), words.next()) {
                (Some("pushed"), Some(tag), Some(digest), None) => {
                    (tag.to_owned(), Digest::parse(digest).unwrap())
                }
                _ => panic!("unexpected output line from layout-torture: {line:?}"),
            }
        })
        .collect()
}

/// Checks everything a crash or a race could have broken, and returns the tags of the default
/// repository with the digests they resolve to:
/// - the layout opens, and `index.json` is valid JSON;
/// - every listed tag resolves, and its manifest, config and layers read back whole and
///   verified (the verifying reader fails on content that does not match its digest);
/// - every file under `blobs/ALG/` is named by a well-formed digest (no temporary files);
/// - fsck finds nothing wrong.
async fn check_layout(dir: &Path, context: &str) -> BTreeMap<String, Digest> {
    let store = match LayoutStore::open(dir).await {
        Ok(store) => store,
        Err(error) => panic!("{context}: the layout does not open: {error}"),
    };
    match std::fs::read(dir.join("index.json")) {
        Ok(index) => {
            if let Err(error) = serde_json::from_slice::<serde_json::Value>(&index) {
                panic!(
                    "{context}: index.json is not valid JSON ({error}): {:?}",
                    String::from_utf8_lossy(&index)
                );
            }
        }
        // A child killed before its first write leaves no layout yet: valid, as long as it did
        // not get as far as the `oci-layout` file, which is written after `index.json`.
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => assert!(
            !dir.join("oci-layout").exists(),
            "{context}: oci-layout exists but index.json does not"
        ),
        Err(error) => panic!("{context}: cannot read index.json: {error}"),
    }
    let repo = LayoutOptions::default().default_repository;
    let tags: Vec<Tag> = match store
        .tags(&repo, &ListParams::new())
        .try_collect::<Vec<_>>()
        .await
    {
        Ok(tags) => tags,
        Err(error) if error.code() == Some(ErrorCode::NameUnknown) => Vec::new(),
        Err(error) => panic!("{context}: cannot list tags: {error}"),
    };

    let mut resolved = BTreeMap::new();
    let mut blobs = BTreeMap::new();
    for tag in &tags {
        let reader = store
            .get_tag(&repo, tag)
            .await
            .unwrap_or_else(|e| panic!("{context}: tag {tag} does not resolve: {e}"));
        let descriptor = reader.descriptor().clone();
        let bytes = reader
            .bytes(MAX_MANIFEST_SIZE as u64)
            .await
            .unwrap_or_else(|e| panic!("{context}: manifest of {tag} does not read back: {e}"));
        let Ok(Manifest::Image(manifest)) = Manifest::parse(&bytes, &descriptor.media_type) else {
            panic!("{context}: {tag} is not an image manifest: {bytes:?}");
        };
        for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
            blobs.insert(blob.digest.clone(), (blob.size, tag.clone()));
        }
        resolved.insert(tag.to_string(), descriptor.digest);
    }
    for (digest, (size, tag)) in &blobs {
        let reader = store
            .get_blob(&repo, digest)
            .await
            .unwrap_or_else(|e| panic!("{context}: blob {digest} of {tag} is missing: {e}"));
        assert_eq!(
            reader.descriptor().size,
            *size,
            "{context}: blob {digest} of {tag} has the wrong size"
        );
        let mut body = reader.into_stream();
        let mut read = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.unwrap_or_else(|e| panic!("{context}: blob {digest} of {tag}: {e}"));
            read += chunk.len() as u64;
        }
        assert_eq!(read, *size, "{context}: blob {digest} of {tag} read short");
    }

    for algorithm in std::fs::read_dir(dir.join("blobs")).into_iter().flatten() {
        let algorithm = algorithm.unwrap();
        let name = algorithm.file_name().into_string().unwrap();
        let length = match name.as_str() {
            "sha256" => 64,
            "sha512" => 128,
            other => panic!("{context}: unexpected directory blobs/{other}"),
        };
        for file in std::fs::read_dir(algorithm.path()).unwrap() {
            let file = file.unwrap();
            let file_name = file.file_name().into_string().unwrap();
            assert!(
                file_name.len() == length
                    && file_name
                        .bytes()
                        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                    && file.file_type().unwrap().is_file(),
                "{context}: blobs/{name}/{file_name} is not a blob"
            );
        }
    }

    let report = store
        .fsck()
        .await
        .unwrap_or_else(|e| panic!("{context}: fsck fails: {e}"));
    assert!(report.is_clean(), "{context}: fsck: {report:?}");
    resolved
}

/// A child pushes images until it is killed at a random moment, 40 times over, into one
/// layout. After each kill the layout opens and reads back whole (see `check_layout`), and
/// every push a child reported as done before it died is there with the digest it reported.
#[test]
fn layout_survives_kills_during_pushes() {
    let runtime = runtime();
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("layout");
    let mut delays = StdRng::seed_from_u64(0x6b11);
    let mut durable: BTreeMap<String, Digest> = BTreeMap::new();
    for round in 0..CRASH_ROUNDS {
        let prefix = format!("r{round}");
        let seed = round.to_string();
        let mut child = spawn(
            &dir,
            &["--prefix", &prefix, "--count", "0", "--seed", &seed],
        );
        // The moment of the kill: not a timing assertion, any moment is fine.
        std::thread::sleep(Duration::from_millis(delays.random_range(20..=300)));
        let early_exit = child.try_wait().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        let mut stdout = String::new();
        let mut stderr = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert!(
            early_exit.is_none(),
            "round {round}: layout-torture ended by itself ({early_exit:?}): {stderr}"
        );
        for (tag, digest) in reported(&stdout) {
            assert!(
                tag.starts_with(&format!("{prefix}-")),
                "round {round}: {tag}"
            );
            durable.insert(tag, digest);
        }

        let context = format!("after round {round} (killed child with seed {seed})");
        let resolved = runtime.block_on(check_layout(&dir, &context));
        for (tag, digest) in &durable {
            assert_eq!(
                resolved.get(tag),
                Some(digest),
                "{context}: {tag} was reported pushed"
            );
        }
    }
    // What the kills interrupted: writes leave their temporary files and uploads behind.
    let leftovers =
        |name: &str| std::fs::read_dir(dir.join(".hoist").join(name)).map_or(0, Iterator::count);
    eprintln!(
        "{CRASH_ROUNDS} rounds, {} images reported pushed, {} temporary files and {} uploads left by kills",
        durable.len(),
        leftovers("tmp"),
        leftovers("uploads"),
    );
    assert!(
        !durable.is_empty(),
        "no child completed a push before it was killed: the test proved nothing"
    );
}

/// Eight children push twelve tags each into one fresh layout at the same time: every child
/// succeeds, and afterwards every tag is there with the digest its child reported.
#[test]
fn concurrent_processes_lose_no_tags() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("layout");
    let children: Vec<Child> = (0..WRITERS)
        .map(|k| {
            spawn(
                &dir,
                &[
                    "--prefix",
                    &format!("p{k}"),
                    "--count",
                    &IMAGES_PER_WRITER.to_string(),
                    "--seed",
                    &k.to_string(),
                    "--max-blob",
                    "200000",
                ],
            )
        })
        .collect();
    // Every child is waited for before anything is asserted: none outlives the test.
    let outputs: Vec<Output> = children
        .into_iter()
        .map(|child| child.wait_with_output().unwrap())
        .collect();
    let failed: Vec<String> = outputs
        .iter()
        .enumerate()
        .filter(|(_, output)| !output.status.success())
        .map(|(k, output)| {
            format!(
                "writer p{k} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim_end()
            )
        })
        .collect();
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    let mut expected = BTreeMap::new();
    for (k, output) in outputs.into_iter().enumerate() {
        let pushed = reported(&String::from_utf8(output.stdout).unwrap());
        let tags: Vec<&str> = pushed.iter().map(|(tag, _)| tag.as_str()).collect();
        let wanted: Vec<String> = (0..IMAGES_PER_WRITER)
            .map(|i| format!("p{k}-{i}"))
            .collect();
        assert_eq!(tags, wanted, "writer p{k} reported other pushes");
        expected.extend(pushed);
    }

    let resolved = runtime().block_on(check_layout(&dir, "after the concurrent pushes"));
    let listed: BTreeSet<&String> = resolved.keys().collect();
    let wanted: BTreeSet<&String> = expected.keys().collect();
    assert_eq!(listed, wanted, "the layout lists other tags");
    assert_eq!(resolved, expected, "tags resolve to other digests");
    assert_eq!(resolved.len() as u64, WRITERS * IMAGES_PER_WRITER);
}
