//! The files scenario's tree: tens of thousands of small files made from a seed, as the
//! source trees, configuration and documentation of a real image are.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

use crate::bench::data::{Rng, Text, TreeStats, write_generated};

/// The smallest size class of the files; classes double [`SIZE_CLASSES`] times, and a file's
/// size is its class plus a random part below it.
const MIN_FILE: u64 = 512;
const SIZE_CLASSES: u64 = 5;
/// Top-level directories, and directories under each.
const TOP_DIRS: usize = 24;
const SUB_DIRS: usize = 16;
/// One file in this many is random bytes (the rest text), and one in this many gets a symbolic
/// link beside it.
const BINARY_EVERY: usize = 4;
const SYMLINK_EVERY: usize = 20;

/// The sizes of the files of a tree of `total` bytes: from [`MIN_FILE`] to under 32 times it,
/// the last one taking what is left.
pub(super) fn small_sizes(rng: &mut Rng, total: u64) -> Vec<u64> {
    let mut sizes = Vec::new();
    let mut sum = 0;
    while sum < total {
        let class = MIN_FILE << rng.below(SIZE_CLASSES);
        let size = (class + rng.below(class)).min(total - sum);
        sizes.push(size);
        sum += size;
    }
    sizes
}

/// Makes the tree of `total` bytes from `seed` under `dir` (which must not exist): small files
/// ([`small_sizes`]) spread over [`TOP_DIRS`] × [`SUB_DIRS`] directories, three in four text
/// and one random bytes, one in [`SYMLINK_EVERY`] with a symbolic link beside it.
pub(super) fn small_tree(dir: &Path, total: u64, seed: u64) -> Result<TreeStats> {
    let mut rng = Rng(seed);
    let mut text = Text::new(&mut rng);
    let sizes = small_sizes(&mut rng, total);
    let mut stats = TreeStats::default();
    let mut buf = Vec::new();
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    stats.dirs += 1;
    for (i, &size) in sizes.iter().enumerate() {
        let top = i % TOP_DIRS;
        let sub = (i / TOP_DIRS) % SUB_DIRS;
        let parent = dir
            .join(format!("pkg{top:02}"))
            .join(format!("mod{sub:02}"));
        if !parent.exists() {
            if !parent.parent().is_some_and(Path::exists) {
                stats.dirs += 1;
            }
            fs::create_dir_all(&parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
            stats.dirs += 1;
        }
        let binary = i % BINARY_EVERY == BINARY_EVERY - 1;
        let name = format!("f{i:06}.{}", if binary { "bin" } else { "txt" });
        write_generated(
            &parent.join(&name),
            size,
            !binary,
            &mut rng,
            &mut text,
            &mut buf,
        )?;
        stats.files += 1;
        stats.bytes += size;
        if i % SYMLINK_EVERY == 0 {
            let link = parent.join(format!("link{i:06}"));
            std::os::unix::fs::symlink(&name, &link)
                .with_context(|| format!("cannot create {}", link.display()))?;
            stats.symlinks += 1;
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_trees_follow_the_seed() {
        let sizes = small_sizes(&mut Rng(7), 128 << 20);
        assert_eq!(sizes, small_sizes(&mut Rng(7), 128 << 20));
        assert_eq!(sizes.iter().sum::<u64>(), 128 << 20);
        assert!(sizes.len() > 20_000, "{}", sizes.len());
        assert!(sizes.iter().all(|&s| s < MIN_FILE << (SIZE_CLASSES + 1)));

        let dir = std::env::temp_dir().join(format!("xtask-files-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let stats = small_tree(&dir, 1 << 20, 7).unwrap();
        let mut seen = TreeStats::default();
        crate::bench::machine::walk(&dir, &mut |_, meta| {
            let kind = meta.file_type();
            if kind.is_dir() {
                seen.dirs += 1;
            } else if kind.is_symlink() {
                seen.symlinks += 1;
            } else {
                seen.files += 1;
                seen.bytes += meta.len();
            }
            Ok(true)
        })
        .unwrap();
        // The walk leaves out `dir` itself.
        seen.dirs += 1;
        assert_eq!(seen, stats);
        assert!(stats.files > 100 && stats.symlinks > 5, "{stats:?}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
