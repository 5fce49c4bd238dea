//! `hoist unpack`, `hoist export` and `hoist layers`: an image's files, through `oci_unpack`.

use std::io::Write;

use anyhow::{Context, Result};
use oci_build::fetch_image;
use oci_unpack::{
    ExportOptions, ExtractOptions, LayerLimits, LayerRef, UnpackOptions, export, extract_layers,
    image_layers, unpack,
};

use std::sync::Arc;

use oci_build::BuildEvent;
use oci_unpack::UnpackEvent;

use crate::cli::{EntryLimitArgs, ExportArgs, LayersArgs, UnpackArgs};
use crate::commands::Ctx;
use crate::location::Location;
use crate::open::Place;
use crate::output::{count, human_size, print_line};
use crate::progress::BuildProgressView;

/// The layers of the image `location` names, for `platform` out of an index.
async fn layers_of(
    place: &Place,
    location: &Location,
    platform: Option<&oci_types::Platform>,
) -> Result<Vec<LayerRef>> {
    let image = fetch_image(
        &*place.store,
        &place.repo,
        &location.manifest_ref(),
        platform,
    )
    .await
    .with_context(|| format!("cannot read the image {location}"))?;
    image_layers(&image.manifest, &image.config)
        .with_context(|| format!("cannot read the layers of {location}"))
}

/// What the layers' tar streams may hold, as the command line set it.
pub(crate) fn layer_limits(args: &EntryLimitArgs) -> LayerLimits {
    LayerLimits::default()
        .with_max_entries(args.max_layer_entries)
        .with_max_depth(usize::try_from(args.max_path_depth).unwrap_or(usize::MAX))
        .with_max_metadata(args.max_layer_names)
        .with_max_image_metadata(args.max_image_names)
}

pub(crate) async fn run(ctx: &Ctx, args: UnpackArgs) -> Result<()> {
    let place = ctx.opener.open(&args.image).await?;
    let layers = layers_of(&place, &args.image, args.platform.as_ref()).await?;
    let mut options = UnpackOptions::default()
        .with_limits(layer_limits(&args.entries))
        .with_max_layer_bytes(args.layer_size.max_layer_size)
        .with_max_image_bytes(args.image_size.max_image_size)
        .with_max_image_entries(args.max_image_entries);
    if args.rootless {
        options = options.with_rootless(true);
    }
    let view = BuildProgressView::new(ctx.progress_mode(), &format!("unpacking {}", args.image));
    if let Some(sink) = view.sink() {
        let descriptors: Vec<_> = layers.iter().map(|l| l.descriptor.clone()).collect();
        options = options.with_progress(Arc::new(move |event: &UnpackEvent| {
            let shown = match event {
                UnpackEvent::LayerStarted { index, count } => BuildEvent::LayerStarted {
                    index: *index,
                    count: *count,
                },
                UnpackEvent::LayerProgress { index, bytes } => BuildEvent::LayerProgress {
                    index: *index,
                    bytes: *bytes,
                },
                UnpackEvent::LayerDone { index, .. } => match descriptors.get(*index) {
                    Some(descriptor) => BuildEvent::LayerDone {
                        index: *index,
                        descriptor: Box::new(descriptor.clone()),
                    },
                    None => return,
                },
                _ => return,
            };
            sink(&shown);
        }));
    }
    let result = unpack(&*place.store, &place.repo, &layers, &args.dir, &options).await;
    view.finish();
    let report = result
        .with_context(|| format!("cannot unpack {} into {}", args.image, args.dir.display()))?;
    ctx.say(format!(
        "unpacked {} into {}: {}, {} of files{}",
        args.image,
        args.dir.display(),
        count(report.layers, "layer", "layers"),
        human_size(report.bytes),
        if report.rootless {
            " (rootless: owners and device nodes left out)"
        } else {
            ""
        }
    ));
    Ok(())
}

pub(crate) async fn export_image(ctx: &Ctx, args: ExportArgs) -> Result<()> {
    let place = ctx.opener.open(&args.image).await?;
    let layers = layers_of(&place, &args.image, args.platform.as_ref()).await?;
    let options = ExportOptions::default()
        .with_limits(layer_limits(&args.entries))
        .with_max_layer_bytes(args.layer_size.max_layer_size);
    if args.output.as_os_str() == "-" {
        let mut out = export(
            &*place.store,
            &place.repo,
            &layers,
            std::io::stdout(),
            &options,
        )
        .await
        .with_context(|| format!("cannot export {}", args.image))?;
        out.flush()?;
        return Ok(());
    }
    // The file appears only once complete: written next to it, then renamed.
    let parent = match args.output.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let temp = tempfile::NamedTempFile::new_in(&parent)
        .with_context(|| format!("cannot write in {}", parent.display()))?;
    let (file, temp_path) = temp.into_parts();
    let mut file = export(&*place.store, &place.repo, &layers, file, &options)
        .await
        .with_context(|| format!("cannot export {}", args.image))?;
    file.flush()?;
    file.sync_all()
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    temp_path
        .persist(&args.output)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    ctx.say(format!(
        "exported {} to {}",
        args.image,
        args.output.display()
    ));
    Ok(())
}

/// `hoist layers REF DIR`: each layer's uncompressed tar as `DIR/sha256/<diff_id>`, their paths
/// on stdout (lowest layer first), a summary on stderr.
pub(crate) async fn layers(ctx: &Ctx, args: LayersArgs) -> Result<()> {
    let place = ctx.opener.open(&args.image).await?;
    let layers = layers_of(&place, &args.image, args.platform.as_ref()).await?;
    let options = ExtractOptions::default()
        .with_jobs(usize::from(args.jobs))
        .with_max_layer_bytes(args.layer_size.max_layer_size)
        .with_max_total_bytes(args.image_size.max_image_size);
    let report = extract_layers(&*place.store, &place.repo, &layers, &args.dir, &options)
        .await
        .with_context(|| {
            format!(
                "cannot write the layers of {} into {}",
                args.image,
                args.dir.display()
            )
        })?;
    for layer in &report.layers {
        print_line(layer.path.display())?;
    }
    ctx.say(format!(
        "wrote {} ({}) of {} into {}, {} already there",
        count(report.extracted(), "layer", "layers"),
        human_size(report.bytes),
        args.image,
        args.dir.display(),
        report.skipped()
    ));
    Ok(())
}
