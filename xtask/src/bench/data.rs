//! Data the scenarios measure on, shared by them: random bytes and trees of files made from a
//! seed (the same bytes everywhere for a seed and size), a copy of part of `/usr`, images built
//! from them by `hoist build`, reading OCI layouts back, and running work on a few threads.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

use super::machine::{remove_dir, walk};
use super::measure::timed;
use crate::run_status;

/// Files of the generated trees alternate random and text segments of this size.
const SEGMENT: usize = 64 << 10;
/// The smallest size class of the generated files; classes double [`SIZE_CLASSES`] times.
const MIN_FILE: u64 = 1 << 10;
const SIZE_CLASSES: u64 = 13;
/// The largest file of a generated tree (a quarter of its bytes are in files this large).
const LARGE_FILE: u64 = 64 << 20;
/// One file in this many of a generated tree gets a symbolic link beside it.
const SYMLINK_EVERY: usize = 50;
/// Where the `usr` trees come from, with each source's share of its size in thirds.
const USR_SOURCES: [(&str, u64); 2] = [("/usr/share", 2), ("/usr/lib", 1)];
/// `SOURCE_DATE_EPOCH` of hoist's builds (2023-11-14): the same trees give the same digests.
pub(super) const SOURCE_DATE_EPOCH: &str = "1700000000";
/// Layers generated at once (one per core).
pub(super) const GEN_JOBS: usize = 2;

/// splitmix64: a small, fast generator, the same sequence everywhere for a seed.
#[derive(Debug)]
pub(super) struct Rng(pub(super) u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (`n` > 0).
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub(super) fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

/// Log-like text lines from a small vocabulary, common words more frequent.
#[derive(Debug)]
pub(super) struct Text {
    words: Vec<Vec<u8>>,
    line: u64,
}

impl Text {
    const LEVELS: [&'static str; 4] = ["INFO", "DEBUG", "WARN", "ERROR"];

    pub(super) fn new(rng: &mut Rng) -> Self {
        let words = (0..256)
            .map(|_| {
                let len = 2 + rng.below(8);
                (0..len).map(|_| b'a' + rng.below(26) as u8).collect()
            })
            .collect();
        Self { words, line: 0 }
    }

    /// Replaces `buf` with `len` bytes of text.
    fn fill(&mut self, rng: &mut Rng, buf: &mut Vec<u8>, len: usize) {
        buf.clear();
        while buf.len() < len {
            self.line += 1;
            let level = Self::LEVELS[rng.below(4) as usize];
            let _ = write!(buf, "{:08} {level} worker-{}:", self.line, rng.below(16));
            for _ in 0..4 + rng.below(9) {
                // The smaller of two draws: low indices are more frequent, as in real text.
                let word = rng.below(256).min(rng.below(256)) as usize;
                buf.push(b' ');
                buf.extend_from_slice(&self.words[word]);
            }
            buf.push(b'\n');
        }
        buf.truncate(len);
    }
}

/// The sizes of the generated tree's files for `total` bytes: log-uniform ones making three
/// quarters of it, then files of at most [`LARGE_FILE`] for the rest.
pub(super) fn file_sizes(rng: &mut Rng, total: u64) -> (Vec<u64>, Vec<u64>) {
    let small_budget = total - total / 4;
    let mut small = Vec::new();
    let mut sum = 0;
    while sum < small_budget {
        let class = MIN_FILE << rng.below(SIZE_CLASSES);
        let size = (class + rng.below(class)).min(small_budget - sum);
        small.push(size);
        sum += size;
    }
    let mut large = Vec::new();
    let mut rest = total - sum;
    while rest > 0 {
        let size = rest.min(LARGE_FILE);
        large.push(size);
        rest -= size;
    }
    (small, large)
}

/// What a tree holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct TreeStats {
    pub(super) files: u64,
    pub(super) dirs: u64,
    pub(super) symlinks: u64,
    /// Bytes of the regular files.
    pub(super) bytes: u64,
}

/// Writes `size` bytes into `path`: alternating random and text segments, text first if
/// `text_first`.
pub(super) fn write_generated(
    path: &Path,
    size: u64,
    text_first: bool,
    rng: &mut Rng,
    text: &mut Text,
    buf: &mut Vec<u8>,
) -> Result<()> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut left = size;
    let mut is_text = text_first;
    while left > 0 {
        let n = usize::try_from(left.min(SEGMENT as u64)).unwrap_or(SEGMENT);
        if is_text {
            text.fill(rng, buf, n);
        } else {
            buf.resize(n, 0);
            rng.fill(buf);
        }
        out.write_all(buf)
            .with_context(|| format!("cannot write {}", path.display()))?;
        left -= n as u64;
        is_text = !is_text;
    }
    out.flush()
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Makes a generated tree of `total` bytes from `seed` under `dir` (which must not exist):
/// files of mixed sizes ([`file_sizes`]), each half random bytes and half log-like text in
/// alternating segments, some with a symbolic link beside them.
pub(super) fn generate_tree(dir: &Path, total: u64, seed: u64) -> Result<TreeStats> {
    let mut rng = Rng(seed);
    let mut text = Text::new(&mut rng);
    let (small, large) = file_sizes(&mut rng, total);
    let mut stats = TreeStats::default();
    let mut buf = Vec::with_capacity(SEGMENT);
    let make_dir = |path: &Path, stats: &mut TreeStats| -> Result<()> {
        if !path.exists() {
            fs::create_dir_all(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            stats.dirs += 1;
        }
        Ok(())
    };
    make_dir(dir, &mut stats)?;
    for (i, &size) in small.iter().enumerate() {
        let parent = dir
            .join(format!("d{:02}", i % 16))
            .join(format!("s{}", (i / 16) % 8));
        make_dir(&parent, &mut stats)?;
        let text_first = i % 2 == 0;
        let name = format!("f{i:05}.{}", if text_first { "log" } else { "bin" });
        write_generated(
            &parent.join(&name),
            size,
            text_first,
            &mut rng,
            &mut text,
            &mut buf,
        )?;
        stats.files += 1;
        stats.bytes += size;
        if i % SYMLINK_EVERY == 0 {
            let link = parent.join(format!("link-{i:05}"));
            std::os::unix::fs::symlink(&name, &link)
                .with_context(|| format!("cannot create {}", link.display()))?;
            stats.symlinks += 1;
        }
    }
    let big = dir.join("big");
    make_dir(&big, &mut stats)?;
    for (i, &size) in large.iter().enumerate() {
        let path = big.join(format!("large-{i}.bin"));
        write_generated(&path, size, i % 2 == 1, &mut rng, &mut text, &mut buf)?;
        stats.files += 1;
        stats.bytes += size;
    }
    Ok(stats)
}

/// Copies the start of a sorted walk of each of [`USR_SOURCES`] into `dir/NAME` (`share`,
/// `lib`): directories, symbolic links and regular files, until the source's share of
/// `budget` bytes of files is reached. Files that cannot be read are left out.
pub(super) fn copy_usr(dir: &Path, budget: u64) -> Result<TreeStats> {
    let mut stats = TreeStats::default();
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    stats.dirs += 1;
    for (source, thirds) in USR_SOURCES {
        let source = Path::new(source);
        let name = source.file_name().context("a source has no name")?;
        let target = dir.join(name);
        fs::create_dir_all(&target)
            .with_context(|| format!("cannot create {}", target.display()))?;
        stats.dirs += 1;
        let limit = budget / 3 * thirds;
        let mut copied = 0;
        walk(source, &mut |path, meta| {
            let rel = path.strip_prefix(source)?;
            let to = target.join(rel);
            let kind = meta.file_type();
            if kind.is_dir() {
                fs::create_dir(&to).with_context(|| format!("cannot create {}", to.display()))?;
                stats.dirs += 1;
            } else if kind.is_symlink() {
                let link = fs::read_link(path)
                    .with_context(|| format!("cannot read link {}", path.display()))?;
                std::os::unix::fs::symlink(&link, &to)
                    .with_context(|| format!("cannot create {}", to.display()))?;
                stats.symlinks += 1;
            } else if kind.is_file() {
                if copied + meta.len() > limit {
                    return Ok(false);
                }
                match fs::copy(path, &to) {
                    Ok(n) => {
                        copied += n;
                        stats.files += 1;
                        stats.bytes += n;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {}
                    Err(e) => {
                        return Err(e).with_context(|| format!("cannot copy {}", path.display()));
                    }
                }
            }
            Ok(true)
        })?;
    }
    Ok(stats)
}

/// Writes `size` random bytes (splitmix64 from `seed`) into a new file `path`.
pub(super) fn write_random(path: &Path, size: u64, seed: u64) -> Result<()> {
    let mut rng = Rng(seed);
    let mut file =
        File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        rng.fill(&mut buf[..n]);
        file.write_all(&buf[..n])
            .with_context(|| format!("cannot write {}", path.display()))?;
        left -= n as u64;
    }
    Ok(())
}

/// Writes `size` bytes of `/dev/urandom` into a new file `path`.
pub(super) fn urandom_file(path: &Path, size: u64) -> Result<()> {
    let mut head = Command::new("head");
    head.arg("-c")
        .arg(size.to_string())
        .arg("/dev/urandom")
        .stdout(File::create(path).with_context(|| format!("cannot create {}", path.display()))?);
    run_status(&mut head)
}

/// The sizes of `count` layers of an image of `total` bytes: equal, the last one taking the
/// rest.
pub(super) fn layer_sizes(total: u64, count: usize) -> Vec<u64> {
    let count = count.max(1);
    let each = total / count as u64;
    let mut sizes = vec![each; count];
    sizes[count - 1] = total - each * (count as u64 - 1);
    sizes
}

/// Runs `f` on every item, `jobs` at a time on threads of their own; returns the seconds it all
/// took and the results in the order of `items`. Stops starting new items after an error.
pub(super) fn parallel<T, R, F>(jobs: usize, items: &[T], f: F) -> Result<(f64, Vec<R>)>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> Result<R> + Sync,
{
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<(usize, R)>> = Mutex::new(Vec::with_capacity(items.len()));
    let started = Instant::now();
    let outcomes: Vec<Result<()>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs.clamp(1, items.len().max(1)))
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    while !failed.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else {
                            return Ok(());
                        };
                        match f(item) {
                            Ok(r) => results
                                .lock()
                                .map_err(|_| anyhow!("a worker panicked"))?
                                .push((i, r)),
                            Err(e) => {
                                failed.store(true, Ordering::Relaxed);
                                return Err(e);
                            }
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(anyhow!("a worker panicked")))
            })
            .collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    outcomes.into_iter().collect::<Result<()>>()?;
    let mut results = results
        .into_inner()
        .map_err(|_| anyhow!("a worker panicked"))?;
    results.sort_by_key(|(i, _)| *i);
    Ok((seconds, results.into_iter().map(|(_, r)| r).collect()))
}

/// The manifest an OCI layout tags `tag`, and its layers (digest, size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LayoutImage {
    pub(super) manifest: String,
    pub(super) layers: Vec<(String, u64)>,
}

pub(super) fn read_json(path: &Path) -> Result<Value> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

pub(super) fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// Reads the image tagged `tag` in `layout`.
pub(super) fn layout_image(layout: &Path, tag: &str) -> Result<LayoutImage> {
    let index = read_json(&layout.join("index.json"))?;
    let manifest = index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .and_then(|m| m["digest"].as_str())
        .with_context(|| format!("{} has no manifest tagged {tag}", layout.display()))?
        .to_owned();
    let body = read_json(&blob_path(layout, &manifest))?;
    let layers = body["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            let digest = l["digest"].as_str().context("a layer has no digest")?;
            let size = l["size"].as_u64().context("a layer has no size")?;
            Ok((digest.to_owned(), size))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(LayoutImage { manifest, layers })
}

/// `oci:DIR:TAG`, as hoist and skopeo name an image in a layout.
pub(super) fn oci_ref(dir: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", dir.display())
}

/// Makes an image of `sizes.len()` layers under `work`: each layer a directory holding one file
/// of random bytes (the layer's size, [`write_random`] from `seed` + the layer's index), built
/// by `hoist build` with [`SOURCE_DATE_EPOCH`] into the layout `work/image`, tagged `tag`.
/// Returns the layout, its image and the seconds the build took.
pub(super) fn seeded_image(
    hoist: &Path,
    work: &Path,
    sizes: &[u64],
    seed: u64,
    tag: &str,
) -> Result<(PathBuf, LayoutImage, f64)> {
    seeded_image_for(hoist, work, sizes, seed, tag, None)
}

/// [`seeded_image`], for `platform` (`os/arch[/variant]`) if given (else hoist's default).
pub(super) fn seeded_image_for(
    hoist: &Path,
    work: &Path,
    sizes: &[u64],
    seed: u64,
    tag: &str,
    platform: Option<&str>,
) -> Result<(PathBuf, LayoutImage, f64)> {
    let trees = work.join("trees");
    let sizes: Vec<(u64, u64)> = (0..).zip(sizes.iter().copied()).collect();
    let (seconds, dirs) = parallel(GEN_JOBS, &sizes, |&(n, size)| {
        let dir = trees.join(format!("layer-{}", n + 1));
        let data = dir.join("data");
        fs::create_dir_all(&data).with_context(|| format!("cannot create {}", data.display()))?;
        write_random(&data.join(format!("random-{}.bin", n + 1)), size, seed + n)?;
        Ok(dir)
    })?;
    println!("    {} trees in {seconds:.1} s", sizes.len());
    let layout = work.join("image");
    let mut build = Command::new(hoist);
    build
        .env("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH)
        .args(["-q", "build"]);
    if let Some(platform) = platform {
        build.args(["--platform", platform]);
    }
    for dir in &dirs {
        build.arg("--layer").arg(dir);
    }
    build.arg(oci_ref(&layout, tag));
    let (seconds, _) = timed(&mut build)?;
    let built = layout_image(&layout, tag)?;
    if built.layers.len() != sizes.len() {
        bail!(
            "hoist built {} layers, expected {}",
            built.layers.len(),
            sizes.len()
        );
    }
    remove_dir(&trees)?;
    Ok((layout, built, seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: u64 = 0x686f_6973_7462_6c64;

    #[test]
    fn the_generator_is_seeded_and_sizes_add_up() {
        let (mut a, mut b) = (Rng(SEED), Rng(SEED));
        let (sa, sb) = (file_sizes(&mut a, 1 << 30), file_sizes(&mut b, 1 << 30));
        assert_eq!(sa, sb);
        let (small, large) = sa;
        let total: u64 = small.iter().chain(&large).sum();
        assert_eq!(total, 1 << 30);
        assert_eq!(large, vec![LARGE_FILE; 4]);
        assert!(small.len() > 500, "{}", small.len());
        assert!(
            small
                .iter()
                .all(|&s| s > 0 && s < 2 * (MIN_FILE << SIZE_CLASSES))
        );

        let mut text = Text::new(&mut a);
        let mut buf = Vec::new();
        text.fill(&mut a, &mut buf, 10_000);
        assert_eq!(buf.len(), 10_000);
        assert!(buf.iter().all(|b| b.is_ascii()));
        assert!(buf.windows(5).any(|w| w == b"INFO "));
    }

    #[test]
    fn layout_images_are_read() {
        let dir = std::env::temp_dir().join(format!("xtask-build-layout-{}", std::process::id()));
        let blobs = dir.join("blobs/sha256");
        fs::create_dir_all(&blobs).unwrap();
        fs::write(
            blobs.join("aa"),
            r#"{"layers":[{"digest":"sha256:bb","size":12}]}"#,
        )
        .unwrap();
        fs::write(
            dir.join("index.json"),
            r#"{"manifests":[{"digest":"sha256:aa","annotations":{"org.opencontainers.image.ref.name":"base"}}]}"#,
        )
        .unwrap();
        let image = layout_image(&dir, "base").unwrap();
        assert_eq!(image.manifest, "sha256:aa");
        assert_eq!(image.layers, vec![("sha256:bb".to_owned(), 12)]);
        assert!(layout_image(&dir, "other").is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn layers_share_the_size() {
        assert_eq!(layer_sizes(1 << 30, 8), [128 << 20; 8]);
        let odd = layer_sizes(1003, 8);
        assert_eq!(odd.iter().sum::<u64>(), 1003);
        assert_eq!(odd[0], 125);
        assert_eq!(odd[7], 128);
        assert_eq!(layer_sizes(10, 4), [2, 2, 2, 4]);
    }

    #[test]
    fn parallel_keeps_order_and_stops_at_an_error() {
        let items: Vec<u32> = (0..20).collect();
        let (_, doubled) = parallel(4, &items, |&i| Ok(i * 2)).unwrap();
        assert_eq!(doubled, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        let (_, none) = parallel(4, &[] as &[u32], |&i| Ok(i)).unwrap();
        assert!(none.is_empty());
        let failed = parallel(4, &items, |&i| {
            if i == 5 {
                bail!("item 5")
            }
            Ok(i)
        });
        assert!(failed.unwrap_err().to_string().contains("item 5"));
    }

    #[test]
    fn random_files_follow_the_seed() {
        let dir = std::env::temp_dir().join(format!("xtask-archive-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let (a, b, c) = (dir.join("a"), dir.join("b"), dir.join("c"));
        write_random(&a, (1 << 20) + 5, SEED).unwrap();
        write_random(&b, (1 << 20) + 5, SEED).unwrap();
        write_random(&c, (1 << 20) + 5, SEED + 1).unwrap();
        let (a, b, c) = (
            fs::read(&a).unwrap(),
            fs::read(&b).unwrap(),
            fs::read(&c).unwrap(),
        );
        assert_eq!(a.len(), (1 << 20) + 5);
        assert_eq!(a, b);
        assert_ne!(a, c);
        fs::remove_dir_all(&dir).unwrap();
    }
}
