//! The unpack scenario's images: the layer trees split out of a copy of `/usr`, the build of
//! each image with its layers' tars, and the check that hoist, umoci and tar unpack it alike.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::{GZIP_LEVEL, Image, Kind, Step, TAG, rootfs, run_step};
use crate::bench::data::{SOURCE_DATE_EPOCH, TreeStats, blob_path, layout_image};
use crate::bench::machine::walk;
use crate::bench::measure::timed;
use crate::run_status;

/// The number of entries under `dir` (not `dir` itself).
fn count_entries(dir: &Path) -> Result<u64> {
    let mut n = 0;
    walk(dir, &mut |_, _| {
        n += 1;
        Ok(true)
    })?;
    Ok(n)
}

/// Where to split entries of the given sizes into two runs of about equal sums: the index of
/// the first of the second half (at least 1 and at most `len - 1` when there are two or more).
fn split_half(sizes: &[u64]) -> usize {
    let total: u64 = sizes.iter().sum();
    let mut sum = 0;
    for (i, &size) in sizes.iter().enumerate() {
        if i > 0 && 2 * sum >= total {
            return i;
        }
        sum += size;
    }
    sizes
        .len()
        .saturating_sub(1)
        .max(usize::from(sizes.len() == 1))
}

/// Moves `from` to `to`, making `to`'s parents.
fn move_into(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    fs::rename(from, to)
        .with_context(|| format!("cannot move {} to {}", from.display(), to.display()))
}

/// The layer directories of the `usr` image, from a copy of `/usr` at `src` (`share`, `lib`):
/// `usr/lib`, then `usr/share` in two halves by entries.
pub(super) fn split_usr(src: &Path, into: &Path) -> Result<Vec<PathBuf>> {
    let layers: Vec<PathBuf> = (1..=3).map(|n| into.join(format!("usr-{n}"))).collect();
    move_into(&src.join("lib"), &layers[0].join("usr/lib"))?;
    let share = src.join("share");
    let mut children = fs::read_dir(&share)
        .with_context(|| format!("cannot list {}", share.display()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<Vec<_>>>()
        .with_context(|| format!("cannot list {}", share.display()))?;
    children.sort();
    let mut sizes = Vec::new();
    for child in &children {
        let path = share.join(child);
        let below = if fs::symlink_metadata(&path)?.is_dir() {
            count_entries(&path)?
        } else {
            0
        };
        sizes.push(1 + below);
    }
    let split = split_half(&sizes);
    for (i, child) in children.iter().enumerate() {
        let layer = &layers[if i < split { 1 } else { 2 }];
        move_into(&share.join(child), &layer.join("usr/share").join(child))?;
    }
    for layer in &layers {
        fs::create_dir_all(layer).with_context(|| format!("cannot create {}", layer.display()))?;
    }
    Ok(layers)
}

/// What a path of an unpacked tree is, as compared between the tools.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Dir,
    File(u64),
    Symlink(PathBuf),
    Other,
}

/// Every path under `dir`, relative to it, and what it is.
fn listing(dir: &Path) -> Result<BTreeMap<PathBuf, Entry>> {
    let mut paths = BTreeMap::new();
    walk(dir, &mut |path, meta| {
        let kind = meta.file_type();
        let entry = if kind.is_dir() {
            Entry::Dir
        } else if kind.is_file() {
            Entry::File(meta.len())
        } else if kind.is_symlink() {
            Entry::Symlink(
                fs::read_link(path)
                    .with_context(|| format!("cannot read link {}", path.display()))?,
            )
        } else {
            Entry::Other
        };
        paths.insert(path.strip_prefix(dir)?.to_path_buf(), entry);
        Ok(true)
    })?;
    Ok(paths)
}

/// The first `max` differences between two listings, as lines.
fn differences(
    a: &BTreeMap<PathBuf, Entry>,
    b: &BTreeMap<PathBuf, Entry>,
    max: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    for (path, entry) in a {
        match b.get(path) {
            None => out.push(format!("{}: only in the first ({entry:?})", path.display())),
            Some(other) if other != entry => {
                out.push(format!("{}: {entry:?} against {other:?}", path.display()));
            }
            Some(_) => {}
        }
    }
    for (path, entry) in b {
        if !a.contains_key(path) {
            out.push(format!(
                "{}: only in the second ({entry:?})",
                path.display()
            ));
        }
    }
    out.truncate(max);
    out
}

/// What a listing holds.
fn listing_stats(paths: &BTreeMap<PathBuf, Entry>) -> TreeStats {
    let mut stats = TreeStats::default();
    for entry in paths.values() {
        match entry {
            Entry::Dir => stats.dirs += 1,
            Entry::File(size) => {
                stats.files += 1;
                stats.bytes += size;
            }
            Entry::Symlink(_) => stats.symlinks += 1,
            Entry::Other => {}
        }
    }
    stats
}

/// Builds the image of `layer_dirs` with hoist, makes the tars of its layers, and checks that
/// hoist, umoci and tar unpack it to the same paths (under `check`).
pub(super) fn prepare(
    hoist: &Path,
    work: &Path,
    check: &Path,
    kind: Kind,
    layer_dirs: &[PathBuf],
) -> Result<Image> {
    let key = kind.key();
    let layout = work.join(format!("layout-{key}"));
    let mut build = Command::new(hoist);
    build.env("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH).args([
        "-q",
        "build",
        "--compression-level",
        &GZIP_LEVEL.to_string(),
    ]);
    for dir in layer_dirs {
        build.arg("--layer").arg(dir);
    }
    build.arg(format!("oci:{}:{TAG}", layout.display()));
    let (build_seconds, _) = timed(&mut build)?;
    let built = layout_image(&layout, TAG)?;
    if built.layers.len() != layer_dirs.len() {
        bail!(
            "hoist built {} layers, expected {}",
            built.layers.len(),
            layer_dirs.len()
        );
    }
    let layers: Vec<PathBuf> = built
        .layers
        .iter()
        .map(|(digest, _)| blob_path(&layout, digest))
        .collect();
    let layer_bytes = built.layers.iter().map(|(_, size)| size).sum();
    let mut tars = Vec::new();
    let mut tar_bytes = 0;
    for (i, layer) in layers.iter().enumerate() {
        let tar = work.join(format!("{key}-{}.tar", i + 1));
        let mut gzip = Command::new("gzip");
        gzip.arg("-dc").arg(layer).stdout(
            File::create(&tar).with_context(|| format!("cannot create {}", tar.display()))?,
        );
        run_status(&mut gzip)?;
        tar_bytes += fs::metadata(&tar)?.len();
        tars.push(tar);
    }
    let mut image = Image {
        layout,
        manifest: built.manifest,
        layers,
        layer_bytes,
        tars,
        tar_bytes,
        stats: TreeStats::default(),
    };
    let mut listings = Vec::new();
    let mut seconds = Vec::new();
    for step in [Step::Hoist, Step::Umoci, Step::Tar] {
        let out = check.join(format!("{key}-{}", step.key()));
        let time_file = check.join(format!("{key}-{}.time", step.key()));
        let (s, _) = run_step(step, hoist, &image, &out, &time_file)?;
        seconds.push(format!("{} {s:.1} s", step.key()));
        listings.push((step, listing(&rootfs(step, &out))?));
    }
    let (_, hoist_paths) = &listings[0];
    for (step, paths) in &listings[1..] {
        let diff = differences(hoist_paths, paths, 10);
        if !diff.is_empty() {
            bail!(
                "hoist and {} unpack {key} differently (first: hoist, second: {}):\n  {}",
                step.key(),
                step.key(),
                diff.join("\n  ")
            );
        }
    }
    image.stats = listing_stats(hoist_paths);
    let s = &image.stats;
    println!(
        "    {key}: {} layers, {} MB gzip, {} MB of tars; built in {build_seconds:.1} s; {}; \
         {} files, {} dirs, {} symlinks, {} MB; the same paths from hoist, umoci and tar \
         (untimed: {})",
        image.layers.len(),
        image.layer_bytes / 1_000_000,
        image.tar_bytes / 1_000_000,
        image.manifest,
        s.files,
        s.dirs,
        s.symlinks,
        s.bytes / 1_000_000,
        seconds.join(", ")
    );
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_are_compared() {
        let dir = std::env::temp_dir().join(format!("xtask-unpack-{}", std::process::id()));
        let (a, b) = (dir.join("a"), dir.join("b"));
        for d in [&a, &b] {
            fs::create_dir_all(d.join("x/y")).unwrap();
            fs::write(d.join("x/f"), b"12345").unwrap();
            std::os::unix::fs::symlink("f", d.join("x/l")).unwrap();
        }
        let (la, lb) = (listing(&a).unwrap(), listing(&b).unwrap());
        assert!(differences(&la, &lb, 10).is_empty());
        let stats = listing_stats(&la);
        assert_eq!(
            (stats.files, stats.dirs, stats.symlinks, stats.bytes),
            (1, 2, 1, 5)
        );
        fs::write(b.join("x/f"), b"1234").unwrap();
        fs::write(b.join("extra"), b"").unwrap();
        let lb = listing(&b).unwrap();
        let diff = differences(&la, &lb, 10);
        assert_eq!(diff.len(), 2, "{diff:?}");
        assert!(diff[0].contains("File(5) against File(4)"), "{diff:?}");
        assert!(diff[1].contains("extra: only in the second"), "{diff:?}");
        assert_eq!(differences(&la, &lb, 1).len(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn halves_split_by_sum() {
        assert_eq!(split_half(&[1, 1, 1, 1]), 2);
        assert_eq!(split_half(&[10, 1, 1]), 1);
        assert_eq!(split_half(&[1, 1, 10]), 2);
        assert_eq!(split_half(&[5]), 1);
        assert_eq!(split_half(&[]), 0);
    }
}
