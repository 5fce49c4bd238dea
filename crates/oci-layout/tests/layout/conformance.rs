//! The shared conformance suite over a single layout and over one layout per repository.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use oci_layout::{LayoutOptions, LayoutStore};
use oci_store::conformance::{Corrupter, Fixture};

/// Damages a blob file in place (flips its first byte, or adds one to an empty file), wherever
/// under `root` it is.
pub(crate) fn corrupter(root: PathBuf) -> Corrupter {
    Arc::new(move |_repo, digest| {
        let root = root.clone();
        Box::pin(async move {
            let mut damaged = false;
            for path in find_files(&root, digest.encoded()) {
                let mut bytes = std::fs::read(&path).unwrap();
                match bytes.first_mut() {
                    Some(first) => *first ^= 0xff,
                    None => bytes.push(0),
                }
                std::fs::write(&path, bytes).unwrap();
                damaged = true;
            }
            damaged
        })
    })
}

fn find_files(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(find_files(&path, name));
        } else if entry.file_name() == name {
            found.push(path);
        }
    }
    found
}

async fn single() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = LayoutStore::open(dir.path().join("layout")).await.unwrap();
    Fixture::new(store)
        .with_corrupter(corrupter(dir.path().to_path_buf()))
        .with_guard(dir)
}

/// Small files read on the calling task, as hoist's one-request commands open a layout
/// ([`LayoutOptions::inline_io`]): the same answers, and damage caught the same way.
async fn single_inline() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let options = LayoutOptions::default().with_inline_io(true);
    let store = LayoutStore::open_with(dir.path().join("layout"), options)
        .await
        .unwrap();
    Fixture::new(store)
        .with_corrupter(corrupter(dir.path().to_path_buf()))
        .with_guard(dir)
}

async fn per_repository() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = LayoutStore::open_per_repository(dir.path().join("root"))
        .await
        .unwrap();
    Fixture::new(store)
        .with_corrupter(corrupter(dir.path().to_path_buf()))
        .with_guard(dir)
}

mod single_layout {
    oci_store::conformance_tests!(super::single);
}

mod single_layout_read_inline {
    oci_store::conformance_tests!(super::single_inline);
}

mod per_repository_layouts {
    oci_store::conformance_tests!(super::per_repository);
}
