//! `hoist index create|append|remove`: multi-platform indexes from images anywhere.

use anyhow::{Context, Result};
use oci_build::{
    CopyOptions, IndexOptions, ManifestRef, append_to_index, copy, create_index, index_entry,
    remove_from_index,
};
use oci_types::Descriptor;

use crate::cli::{IndexAppendArgs, IndexCreateArgs, IndexFlags, IndexRemoveArgs};
use crate::commands::Ctx;
use crate::exit::{Failed, Failure};
use crate::location::Location;
use crate::open::Place;
use crate::output::print_line;
use crate::progress::CopyProgress;

pub(crate) async fn create(ctx: &Ctx, args: IndexCreateArgs) -> Result<()> {
    let target = ctx.opener.open_target(&args.dst, None).await?;
    let entries = bring_images(ctx, &target, &args.dst, &args.images).await?;
    let options = index_options(&args.flags)?;
    let mut tags = args.dst.write_tags();
    tags.extend(args.flags.tag.iter().cloned());
    let index = create_index(target.endpoint(), entries, &tags, &options)
        .await
        .with_context(|| format!("cannot make index {}", args.dst))?;
    for note in target.finish().await? {
        ctx.say(note);
    }
    print_line(&index.digest)?;
    ctx.say(format!(
        "made index {} of {} images",
        args.dst,
        args.images.len()
    ));
    Ok(())
}

pub(crate) async fn append(ctx: &Ctx, args: IndexAppendArgs) -> Result<()> {
    let target = ctx.opener.open(&args.index).await?;
    let entries = bring_images(ctx, &target, &args.index, &args.images).await?;
    let options = index_options(&args.flags)?;
    let mut tags = args.index.write_tags();
    tags.extend(args.flags.tag.iter().cloned());
    let index = append_to_index(
        target.endpoint(),
        &args.index.manifest_ref(),
        entries,
        &tags,
        &options,
    )
    .await
    .with_context(|| format!("cannot add to index {}", args.index))?;
    print_line(&index.digest)?;
    Ok(())
}

pub(crate) async fn remove(ctx: &Ctx, args: IndexRemoveArgs) -> Result<()> {
    let target = ctx.opener.open(&args.index).await?;
    let index = remove_from_index(
        target.endpoint(),
        &args.index.manifest_ref(),
        &args.platform,
        &args.index.write_tags(),
    )
    .await
    .with_context(|| format!("cannot remove platforms from index {}", args.index))?;
    print_line(&index.digest)?;
    Ok(())
}

/// Copies each image into the target's repository (by digest, no tag) and returns its index
/// entry, with the platform its config gives.
async fn bring_images(
    ctx: &Ctx,
    target: &Place,
    dst: &Location,
    images: &[Location],
) -> Result<Vec<Descriptor>> {
    let mut entries = Vec::new();
    for image in images {
        let source = ctx.opener.open(image).await?;
        let progress = CopyProgress::new(ctx.progress_mode());
        let options = CopyOptions::default()
            .with_mount(image.registry().is_some() && image.registry() == dst.registry())
            .with_progress(progress.sink());
        let result = copy(
            source.endpoint(),
            &image.manifest_ref(),
            target.endpoint(),
            &[],
            &options,
        )
        .await;
        progress.finish();
        let report =
            result.with_context(|| format!("cannot copy {image} to {}", dst.repository_name()))?;
        let root = report.root.context("the copy reported no manifest")?.digest;
        let entry = index_entry(target.endpoint(), &ManifestRef::Digest(root))
            .await
            .with_context(|| format!("cannot add {image} to an index"))?;
        entries.push(entry);
    }
    Ok(entries)
}

fn index_options(flags: &IndexFlags) -> Result<IndexOptions> {
    let mut options = IndexOptions::default();
    options.docker = flags.docker;
    options.platform_tags = flags.platform_tags;
    for item in &flags.annotation {
        let Some((key, value)) = item.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return Err(Failed::new(
                Failure::Usage,
                format!("annotation {item:?} is not KEY=VALUE"),
            )
            .into());
        };
        options.annotations.insert(key.to_owned(), value.to_owned());
    }
    Ok(options)
}
