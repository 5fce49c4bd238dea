//! `hoist copy` (alias `cp`), `hoist pull` and `hoist push`: one copy between any two
//! locations, through `oci_build::copy`.

use anyhow::{Context, Result};
use oci_build::{CopyOptions, ManifestRef, PlatformFilter, copy};

use crate::cli::{CopyArgs, PullArgs, PushArgs, TransferArgs};
use crate::commands::Ctx;
use crate::daemon;
use crate::exit::{Failed, Failure};
use crate::location::Location;
use crate::open::Place;
use crate::output::{count, human_size, print_line};
use crate::progress::CopyProgress;
use crate::transports::ArchiveLocation;
use oci_types::Platform;

pub(crate) async fn run(ctx: &Ctx, args: CopyArgs) -> Result<()> {
    if args.all_tags {
        return copy_all_tags(ctx, &args.src, &args.dst, &args.transfer).await;
    }
    copy_between(ctx, &args.src, &args.dst, &args.transfer).await
}

/// `copy --all-tags SRC DST`: every tag of one repository into another, each an ordinary copy
/// of the tag (images and indexes alike, every platform); a tag DST already has at the source's
/// digest costs two HEADs. A one-repository run of `sync`'s mirroring, without filters: it goes
/// on past a failed tag and fails at the end.
async fn copy_all_tags(
    ctx: &Ctx,
    src: &Location,
    dst: &Location,
    transfer: &TransferArgs,
) -> Result<()> {
    for (location, role) in [(src, "SRC"), (dst, "DST")] {
        if matches!(location, Location::Archive(_) | Location::RegistryHost(_)) {
            return Err(Failed::new(
                Failure::Usage,
                format!("--all-tags copies between repositories of registries or layouts; {role} is {location}"),
            )
            .into());
        }
        // A registry reference without a tag reads as `latest`: that one is the repository.
        let tagged = location.tag().is_some_and(|tag| {
            !(matches!(location, Location::Registry(_)) && *tag == oci_types::Tag::latest())
        });
        if tagged || location.digest().is_some() {
            return Err(Failed::new(
                Failure::Usage,
                format!("--all-tags copies whole repositories: give {role} without a tag or digest ({location})"),
            )
            .into());
        }
    }
    if !transfer.platforms.platform.is_empty() {
        return Err(Failed::new(
            Failure::Usage,
            "--all-tags copies every platform of every tag, unchanged: --platform does not apply",
        )
        .into());
    }
    crate::commands::sync::mirror_all_tags(
        ctx,
        src,
        dst,
        transfer.referrers,
        usize::from(transfer.jobs),
    )
    .await
}

/// `pull REF DIR` is `copy REF oci:DIR[:TAG]`, TAG being REF's tag unless DIR names one.
pub(crate) async fn pull(ctx: &Ctx, args: PullArgs) -> Result<()> {
    let dst = if args.dir.tag().is_some() || args.dir.digest().is_some() {
        args.dir
    } else {
        let tag = args.src.tag().cloned();
        args.dir.with_tag(tag)
    };
    copy_between(ctx, &args.src, &dst, &args.transfer).await
}

/// `push DIR[:TAG] REF` is `copy oci:DIR[:TAG] REF`.
pub(crate) async fn push(ctx: &Ctx, args: PushArgs) -> Result<()> {
    copy_between(ctx, &args.dir, &args.dst, &args.transfer).await
}

async fn copy_between(
    ctx: &Ctx,
    src: &Location,
    dst: &Location,
    transfer: &TransferArgs,
) -> Result<()> {
    let from = ctx.opener.open(src).await?;
    let reference = src.manifest_ref();
    let tags = dst.write_tags();
    // `docker load` takes images, not indexes: a docker-archive gets one platform's image,
    // this machine's unless one was asked for; a daemon, its own platform's.
    let mut chosen = transfer.platforms.platform.first().cloned();
    let to_docker = match dst {
        Location::Archive(ArchiveLocation::Docker { .. }) => {
            chosen.get_or_insert_with(Platform::host);
            true
        }
        Location::Archive(ArchiveLocation::Daemon(image)) => {
            let client = daemon::client()?;
            let platform = match &chosen {
                Some(platform) => platform.clone(),
                None => daemon::platform(&client).await?,
            };
            if already_in_daemon(ctx, &client, &from, &reference, &platform, image, src, dst)
                .await?
            {
                return Ok(());
            }
            chosen = Some(platform);
            true
        }
        _ => false,
    };
    let platforms = match (transfer.platforms.platform.is_empty(), to_docker, &chosen) {
        (false, _, _) => PlatformFilter::Only(transfer.platforms.platform.clone()),
        (true, true, Some(platform)) => PlatformFilter::Only(vec![platform.clone()]),
        _ => PlatformFilter::All,
    };
    // A load into a daemon from a local source sends gzip layers uncompressed, sized by their
    // gzip trailers read from the source (a range read). Not from a registry: one that
    // ignores ranges would send the whole layer for its last four bytes.
    let layers = match (dst, src) {
        (Location::Archive(ArchiveLocation::Daemon(_)), Location::Registry(_)) => None,
        (Location::Archive(ArchiveLocation::Daemon(_)), _) => Some(oci_archive::LayerSource::new(
            std::sync::Arc::clone(&from.store),
            from.repo.clone(),
        )),
        _ => None,
    };
    let to = ctx
        .opener
        .open_target_from(dst, chosen.as_ref(), layers)
        .await?;
    let expected = dst.digest().cloned();
    // With every platform the copy keeps the source's digest: check it before writing anything,
    // and then copy that digest, not the tag again: a tag that moved meanwhile (or a source
    // that answers a HEAD and a GET of it differently) must not move the destination's tag to
    // other content before the check after the copy could say so.
    let reference = match (&expected, &platforms) {
        (Some(expected), PlatformFilter::All) => {
            let actual = from
                .resolve(&reference)
                .await
                .map(|d| d.digest)
                .with_context(|| format!("cannot read {src}"))?;
            if actual != *expected {
                return Err(Failed::new(
                    Failure::Verification,
                    format!("{src} has digest {actual}, not the {expected} that {dst} names"),
                )
                .into());
            }
            ManifestRef::Digest(actual)
        }
        _ => reference,
    };
    let progress = CopyProgress::new(ctx.progress_mode());
    let options = CopyOptions::default()
        .with_platforms(platforms)
        .with_referrers(transfer.referrers)
        .with_jobs(usize::from(transfer.jobs))
        // Between repositories of one registry, a mount saves the whole transfer.
        .with_mount(src.registry().is_some() && src.registry() == dst.registry())
        .with_progress(progress.sink());
    let result = copy(from.endpoint(), &reference, to.endpoint(), &tags, &options).await;
    progress.finish();
    let report = result.with_context(|| format!("cannot copy {src} to {dst}"))?;
    let root = report
        .root
        .as_ref()
        .map(|root| root.digest.clone())
        .context("the copy reported no manifest")?;
    if let Some(expected) = expected.filter(|expected| *expected != root) {
        return Err(Failed::new(
            Failure::Verification,
            format!("copied {src} to {dst} as {root}, not the {expected} that {dst} names"),
        )
        .into());
    }
    for note in to.finish().await? {
        ctx.say(note);
    }
    if let (true, true, Some(platform)) =
        (to_docker, transfer.platforms.platform.is_empty(), &chosen)
    {
        let source = from.resolve(&reference).await?.digest;
        if source != root {
            ctx.say(format!(
                "{src} is an index; {dst} holds its {platform} image (docker load takes images only)"
            ));
        }
    }
    print_line(&root)?;
    let mut summary = format!(
        "copied {src} to {dst}: {} copied ({})",
        count(report.blobs_copied, "blob", "blobs"),
        human_size(report.bytes_copied)
    );
    if report.blobs_skipped > 0 {
        summary.push_str(&format!(", {} already there", report.blobs_skipped));
    }
    if report.blobs_mounted > 0 {
        summary.push_str(&format!(", {} mounted", report.blobs_mounted));
    }
    summary.push_str(&format!(
        ", {} pushed",
        count(report.manifests_pushed, "manifest", "manifests")
    ));
    if report.referrers > 0 {
        summary.push_str(&format!(
            " ({})",
            count(report.referrers, "referrer", "referrers")
        ));
    }
    ctx.say(summary);
    Ok(())
}

/// When the daemon already has the image `reference` names for `platform` (an image whose id
/// is the config's digest), tags it there instead of loading it again, and says so.
#[allow(clippy::too_many_arguments)]
async fn already_in_daemon(
    ctx: &Ctx,
    client: &oci_docker::DockerClient,
    from: &Place,
    reference: &ManifestRef,
    platform: &Platform,
    image: &daemon::DaemonImage,
    src: &Location,
    dst: &Location,
) -> Result<bool> {
    let found = oci_build::fetch_image(&*from.store, &from.repo, reference, Some(platform))
        .await
        .with_context(|| format!("cannot read {src} for {platform}"))?;
    let config = &found.manifest.config.digest;
    if !daemon::tag_if_present(client, config, image).await? {
        return Ok(false);
    }
    print_line(&found.manifest_descriptor.digest)?;
    ctx.say(format!(
        "{dst}: the daemon already has image {config}; tagged it {}",
        image.tagged_name()
    ));
    Ok(true)
}
