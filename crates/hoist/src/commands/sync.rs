//! `hoist sync`: many repositories mirrored in one run, from a config file or from flags,
//! incrementally, with tag filters, in parallel under a bound on transfers.

use std::io::Read as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt};
use oci_build::{CopyOptions, ManifestRef, PlatformFilter, copy};
use oci_store::ListParams;
use oci_types::{Platform, Tag};
use serde::Deserialize;
use serde::de::Error as _;

use crate::cli::SyncArgs;
use crate::commands::Ctx;
use crate::exit::{Failed, Failure};
use crate::location::Location;
use crate::open::Place;
use crate::output::{count, human_size, print_line};

/// The largest config file read.
const MAX_CONFIG_SIZE: u64 = 1 << 20;

/// A sync config file: `sync`, a list of repositories to mirror.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncFile {
    sync: Vec<Entry>,
}

/// One repository to mirror.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Entry {
    /// The repository read: a registry repository or `oci:DIR`.
    source: Repo,
    /// The repository written.
    destination: Repo,
    /// Which tags; all when absent.
    #[serde(default)]
    tags: TagFilter,
    /// Only these platforms of indexes (a new index of them is written); all when absent.
    #[serde(default)]
    platforms: Vec<PlatformName>,
    /// Also copy what refers to each image.
    #[serde(default)]
    referrers: bool,
}

/// Tags kept: those matching `regex` (anchored as written) and within `semver` (tags that are
/// not versions, with or without a leading `v`, are left out when a range is given).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TagFilter {
    regex: Option<Pattern>,
    semver: Option<Range>,
}

#[derive(Debug)]
struct Repo(Location);

#[derive(Debug)]
struct Pattern(regex::Regex);

#[derive(Debug)]
struct Range(semver::VersionReq);

#[derive(Debug)]
struct PlatformName(Platform);

impl<'de> Deserialize<'de> for Repo {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let location = Location::parse(&text).map_err(D::Error::custom)?;
        if matches!(location, Location::Archive(_) | Location::RegistryHost(_)) {
            return Err(D::Error::custom(format!(
                "{text:?}: sync mirrors repositories of registries or layouts"
            )));
        }
        Ok(Self(location))
    }
}

impl Pattern {
    /// Bounded: a hostile pattern cannot make matching slow (the regex crate is linear in the
    /// input) or compile into much memory.
    fn new(text: &str) -> Result<Self, String> {
        regex::RegexBuilder::new(text)
            .size_limit(1 << 20)
            .build()
            .map(Self)
            .map_err(|e| format!("tag regex {text:?}: {e}"))
    }
}

impl Range {
    fn new(text: &str) -> Result<Self, String> {
        semver::VersionReq::parse(text)
            .map(Self)
            .map_err(|e| format!("semver range {text:?}: {e}"))
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::new(&String::deserialize(deserializer)?).map_err(D::Error::custom)
    }
}

impl<'de> Deserialize<'de> for Range {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::new(&String::deserialize(deserializer)?).map_err(D::Error::custom)
    }
}

impl<'de> Deserialize<'de> for PlatformName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse()
            .map(Self)
            .map_err(|e| D::Error::custom(format!("platform {text:?}: {e}")))
    }
}

impl TagFilter {
    fn keeps(&self, tag: &Tag) -> bool {
        if let Some(Pattern(regex)) = &self.regex
            && !regex.is_match(tag.as_str())
        {
            return false;
        }
        if let Some(Range(range)) = &self.semver {
            let text = tag.as_str().strip_prefix('v').unwrap_or(tag.as_str());
            return semver::Version::parse(text).is_ok_and(|version| range.matches(&version));
        }
        true
    }
}

/// Reads a config file: YAML (`.yaml`, `.yml`) or TOML (`.toml`); an error names the line.
fn read_config(path: &Path) -> Result<Vec<Entry>> {
    // Read through a bound rather than trusting the file's stated size: a FIFO or a file of
    // /proc says 0 bytes and may hold any number.
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_CONFIG_SIZE + 1).read_to_string(&mut text))
        .with_context(|| format!("cannot read {}", path.display()))?;
    if text.len() as u64 > MAX_CONFIG_SIZE {
        bail!(
            "{}: more than the {MAX_CONFIG_SIZE} bytes a sync config may be",
            path.display()
        );
    }
    let format = match path.extension().and_then(|e| e.to_str()) {
        Some("toml") => ConfigFormat::Toml,
        Some("yaml" | "yml") => ConfigFormat::Yaml,
        _ => bail!(
            "{}: the name must end in .yaml, .yml or .toml (which says its format)",
            path.display()
        ),
    };
    parse_config(&text, format).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// The two formats of a sync config.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ConfigFormat {
    Toml,
    Yaml,
}

/// Reads the text of a sync config; an error names the line.
pub(crate) fn parse_config(text: &str, format: ConfigFormat) -> Result<Vec<Entry>, String> {
    let parsed: SyncFile = match format {
        ConfigFormat::Toml => toml::from_str(text).map_err(|e| e.to_string().trim().to_owned())?,
        ConfigFormat::Yaml => yaml_serde::from_str(text).map_err(|e| e.to_string())?,
    };
    Ok(parsed.sync)
}

/// What happened to the tags of a run.
#[derive(Debug, Default)]
struct Tally {
    copied: AtomicUsize,
    skipped: AtomicUsize,
    failed: AtomicUsize,
    bytes: AtomicU64,
}

pub(crate) async fn run(ctx: &Ctx, args: SyncArgs) -> Result<()> {
    let entries = match (&args.config, &args.source, &args.destination) {
        (Some(path), None, None) => {
            read_config(path).map_err(|e| Failed::new(Failure::Usage, format!("{e:#}")))?
        }
        (None, Some(source), Some(destination)) => {
            let platforms = args.platform.iter().cloned().map(PlatformName).collect();
            let usage = |reason: String| Failed::new(Failure::Usage, reason);
            let regex = args
                .tags
                .as_deref()
                .map(Pattern::new)
                .transpose()
                .map_err(usage)?;
            let semver = args
                .semver
                .as_deref()
                .map(Range::new)
                .transpose()
                .map_err(usage)?;
            vec![Entry {
                source: Repo(source.clone()),
                destination: Repo(destination.clone()),
                tags: TagFilter { regex, semver },
                platforms,
                referrers: args.referrers,
            }]
        }
        _ => {
            return Err(Failed::new(
                Failure::Usage,
                "give --config FILE, or SOURCE and DESTINATION repositories",
            )
            .into());
        }
    };
    let run = Run {
        images: usize::from(args.images),
        jobs: usize::from(args.jobs),
        dry_run: args.dry_run,
    };
    mirror(ctx, "sync", &entries, &run).await
}

/// Every tag of `source` into `destination`, unfiltered, every platform (`copy --all-tags`).
pub(crate) async fn mirror_all_tags(
    ctx: &Ctx,
    source: &Location,
    destination: &Location,
    referrers: bool,
    jobs: usize,
) -> Result<()> {
    let entry = Entry {
        source: Repo(source.clone()),
        destination: Repo(destination.clone()),
        tags: TagFilter::default(),
        platforms: Vec::new(),
        referrers,
    };
    let run = Run {
        images: 1,
        jobs,
        dry_run: false,
    };
    mirror(ctx, "copy --all-tags", &[entry], &run).await
}

/// How a mirroring run goes.
struct Run {
    /// Images copied at once.
    images: usize,
    /// Blob transfers at once, in all.
    jobs: usize,
    dry_run: bool,
}

/// Mirrors `entries`, then reports (`what` names the command) and fails if any tag failed.
async fn mirror(ctx: &Ctx, what: &str, entries: &[Entry], run: &Run) -> Result<()> {
    let images = run.images.max(1);
    // The bound on blob transfers is shared by the images copied at once.
    let jobs_per_image = (run.jobs / images).max(1);
    let tally = Tally::default();
    for entry in entries {
        sync_entry(ctx, entry, run.dry_run, images, jobs_per_image, &tally).await;
    }
    let (copied, skipped, failed) = (
        tally.copied.load(Ordering::Relaxed),
        tally.skipped.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed),
    );
    let verb = if run.dry_run { "to copy" } else { "copied" };
    ctx.say(format!(
        "{what}: {} {verb} ({}), {skipped} already there, {failed} failed, in {}",
        count(copied, "tag", "tags"),
        human_size(tally.bytes.load(Ordering::Relaxed)),
        count(entries.len(), "repository", "repositories"),
    ));
    if copied == 0 && failed == 0 && !run.dry_run {
        ctx.say(format!(
            "{what}: nothing to copy: every destination is up to date"
        ));
    }
    if failed > 0 {
        return Err(Failed::new(
            Failure::Other,
            format!(
                "{what}: {} could not be mirrored",
                count(failed, "tag", "tags")
            ),
        )
        .into());
    }
    Ok(())
}

/// Mirrors one entry's tags, `images` at a time; failures are counted and reported, not
/// returned, so that one bad tag or repository does not stop the others.
async fn sync_entry(
    ctx: &Ctx,
    entry: &Entry,
    dry_run: bool,
    images: usize,
    jobs: usize,
    tally: &Tally,
) {
    let (src, dst) = (&entry.source.0, &entry.destination.0);
    let (src_name, dst_name) = (src.repository_name(), dst.repository_name());
    let (src_name, dst_name) = (src_name.as_str(), dst_name.as_str());
    let opened = async {
        let from = ctx.opener.open(src).await?;
        let to = ctx.opener.open(dst).await?;
        anyhow::Ok((from, to))
    };
    let (from, to) = match opened.await {
        Ok(places) => places,
        Err(error) => {
            tally.failed.fetch_add(1, Ordering::Relaxed);
            ctx.warn(format!("cannot sync {src_name} to {dst_name}: {error:#}"));
            return;
        }
    };
    let platforms = if entry.platforms.is_empty() {
        PlatformFilter::All
    } else {
        PlatformFilter::Only(entry.platforms.iter().map(|p| p.0.clone()).collect())
    };
    let options = CopyOptions::default()
        .with_platforms(platforms)
        .with_referrers(entry.referrers)
        .with_jobs(jobs)
        .with_mount(src.registry().is_some() && src.registry() == dst.registry());
    // Tags arrive page by page and are taken `images` at a time: memory stays bounded
    // however many tags the repository has.
    let tags = from.store.tags(&from.repo, &ListParams::default());
    let listed = tags
        .try_filter(|tag| std::future::ready(entry.tags.keeps(tag)))
        .map(|tag| {
            let (from, to, options) = (&from, &to, &options);
            let (src, dst) = (src_name, dst_name);
            async move {
                match tag {
                    Ok(tag) => {
                        sync_tag(ctx, from, to, src, dst, tag, options, dry_run, tally).await
                    }
                    Err(error) => {
                        tally.failed.fetch_add(1, Ordering::Relaxed);
                        ctx.warn(format!("cannot list the tags of {src}: {error}"));
                    }
                }
            }
        })
        .buffer_unordered(images);
    listed.collect::<()>().await;
}

#[allow(clippy::too_many_arguments)]
async fn sync_tag(
    ctx: &Ctx,
    from: &Place,
    to: &Place,
    src: &str,
    dst: &str,
    tag: Tag,
    options: &CopyOptions,
    dry_run: bool,
    tally: &Tally,
) {
    let source = match from.store.resolve_tag(&from.repo, &tag).await {
        Ok(source) => source,
        Err(error) => {
            tally.failed.fetch_add(1, Ordering::Relaxed);
            ctx.warn(format!("{src}:{tag}: {error}"));
            return;
        }
    };
    // What the copy will write: with every platform, the source's manifest itself; with one,
    // the source's image for it (an index's child). With several a new index is made, whose
    // digest is only known once it is.
    let expected = match &options.platforms {
        PlatformFilter::All => Some(source.digest.clone()),
        PlatformFilter::Only(platforms) if platforms.len() == 1 => oci_build::fetch_image(
            &*from.store,
            &from.repo,
            &ManifestRef::Tag(tag.clone()),
            platforms.first(),
        )
        .await
        .ok()
        .map(|image| image.manifest_descriptor.digest),
        _ => None,
    };
    // One request at the target tells whether it is there.
    if let Some(expected) = &expected
        && let Ok(there) = to.store.resolve_tag(&to.repo, &tag).await
        && &there.digest == expected
    {
        tally.skipped.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if dry_run {
        tally.copied.fetch_add(1, Ordering::Relaxed);
        let _ = print_line(format!("{src}:{tag} {} would be copied", source.digest));
        return;
    }
    let reference = ManifestRef::Tag(tag.clone());
    match copy(
        from.endpoint(),
        &reference,
        to.endpoint(),
        std::slice::from_ref(&tag),
        options,
    )
    .await
    {
        Ok(report) => {
            tally.copied.fetch_add(1, Ordering::Relaxed);
            tally
                .bytes
                .fetch_add(report.bytes_copied, Ordering::Relaxed);
            let root = report
                .root
                .map(|d| d.digest.to_string())
                .unwrap_or_default();
            let _ = print_line(format!("{dst}:{tag} {root} copied"));
        }
        Err(error) => {
            tally.failed.fetch_add(1, Ordering::Relaxed);
            ctx.warn(format!("cannot copy {src}:{tag} to {dst}: {error:#}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Result<Vec<Entry>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sync.yaml");
        std::fs::write(&path, text).unwrap();
        read_config(&path)
    }

    #[test]
    fn configs_are_read_and_errors_name_the_line() {
        let entries = yaml(
            "sync:\n  - source: reg.example/team/app\n    destination: localhost:5000/app\n    tags:\n      regex: '^v1\\.'\n      semver: '>=1.2, <2'\n    platforms: [linux/amd64]\n    referrers: true\n",
        )
        .unwrap();
        assert_eq!(entries.len(), 1);
        let keeps = |tag: &str| entries[0].tags.keeps(&tag.parse().unwrap());
        assert!(keeps("v1.2.3"));
        assert!(!keeps("v1.1.0"), "below the range");
        assert!(!keeps("v2.0.0"), "outside the regex");
        assert!(!keeps("v1.latest"), "not a version");
        let unknown = yaml("sync:\n  - source: a/b\n    destination: c/d\n    tagz: {}\n")
            .unwrap_err()
            .to_string();
        assert!(
            unknown.contains("tagz") && unknown.contains("line 4"),
            "{unknown}"
        );
        let bad_regex = yaml(
            "sync:\n  - source: a/b\n    destination: c/d\n    tags:\n      regex: '(unclosed'\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            bad_regex.contains("(unclosed") && bad_regex.contains("line 5"),
            "{bad_regex}"
        );
    }
}
