//! `hoist gc` and `hoist fsck`: maintenance of OCI layouts on disk, and `hoist gc --storage`
//! of object storage.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use oci_layout::{GcOptions, LayoutStore};

use crate::cli::{FsckArgs, GcArgs};
use crate::commands::Ctx;
use crate::exit::{Failed, Failure};
use crate::output::{count, human_size, print_line};

/// A layout directory (it has an `oci-layout` file) or, otherwise, a root of one layout per
/// repository such as `hoist serve --root` keeps.
async fn open(dir: &Path) -> Result<LayoutStore> {
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let store = if dir.join("oci-layout").is_file() {
        LayoutStore::open(dir).await
    } else {
        LayoutStore::open_per_repository(dir).await
    };
    store.with_context(|| format!("cannot open {} as an OCI image layout", dir.display()))
}

/// `hoist gc DIR`: prints each removed blob's digest on stdout, a summary on stderr.
pub(crate) async fn gc(ctx: &Ctx, args: GcArgs) -> Result<()> {
    if let Some(url) = &args.storage {
        return gc_bucket(ctx, url, &args).await;
    }
    let Some(dir) = &args.dir else {
        bail!("give a layout directory or --storage URL");
    };
    let store = open(dir).await?;
    let options = GcOptions::default()
        .with_dry_run(args.dry_run)
        .with_grace(Duration::from_secs(args.grace));
    let report = store
        .gc(&options)
        .await
        .with_context(|| format!("cannot collect garbage in {}", dir.display()))?;
    for (digest, _) in &report.removed_blobs {
        print_line(digest)?;
    }
    ctx.say(format!(
        "{} {}, {} and {} in {} ({})",
        if report.dry_run {
            "would remove"
        } else {
            "removed"
        },
        count(report.removed_blobs.len(), "blob", "blobs"),
        count(report.removed_uploads.len(), "upload", "uploads"),
        count(
            report.removed_temp_files,
            "temporary file",
            "temporary files"
        ),
        dir.display(),
        human_size(report.freed_bytes)
    ));
    Ok(())
}

/// `hoist gc --storage URL`: the online collection of `oci-bucket`, reported the same way.
async fn gc_bucket(ctx: &Ctx, url: &str, args: &GcArgs) -> Result<()> {
    let store = oci_bucket::open_url(url)
        .await
        .with_context(|| format!("cannot open {url}"))?;
    let options = oci_bucket::GcOptions::default()
        .with_dry_run(args.dry_run)
        .with_grace(Duration::from_secs(args.grace));
    let report = store
        .gc(&options)
        .await
        .with_context(|| format!("cannot collect garbage in {url}"))?;
    for (digest, _) in &report.removed_blobs {
        print_line(digest)?;
    }
    ctx.say(format!(
        "{} {} ({}) and {} in {url}; {} kept for the grace period, {} kept for pushes that ran meanwhile",
        if report.dry_run { "would remove" } else { "removed" },
        count(report.removed_blobs.len(), "blob", "blobs"),
        human_size(report.freed_bytes),
        count(report.removed_uploads.len(), "upload", "uploads"),
        report.kept_young,
        report.rescued,
    ));
    Ok(())
}

/// `hoist fsck DIR`: one line per problem on stdout; exit status 6 when there is any.
pub(crate) async fn fsck(ctx: &Ctx, args: FsckArgs) -> Result<()> {
    let store = open(&args.dir).await?;
    let report = store
        .fsck()
        .await
        .with_context(|| format!("cannot check {}", args.dir.display()))?;
    for digest in &report.corrupt {
        print_line(format!("corrupt {digest}"))?;
    }
    for digest in &report.missing {
        print_line(format!("missing {digest}"))?;
    }
    for path in &report.stray {
        print_line(format!("stray {}", path.display()))?;
    }
    if report.unreadable_entries > 0 {
        print_line(format!("unreadable-entries {}", report.unreadable_entries))?;
    }
    if report.is_clean() {
        ctx.say(format!(
            "{}: {} checked, no problems",
            args.dir.display(),
            count(report.checked, "blob", "blobs")
        ));
        return Ok(());
    }
    Err(Failed::new(
        Failure::Verification,
        format!(
            "{} has problems: {} corrupt, {} missing, {} stray, {} unreadable index entries",
            args.dir.display(),
            report.corrupt.len(),
            report.missing.len(),
            report.stray.len(),
            report.unreadable_entries
        ),
    )
    .into())
}
