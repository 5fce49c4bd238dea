//! `hoist build`, `append`, `mutate`, `flatten`, `rebase` and `recompress`: making and
//! changing images through `oci_build`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use oci_build::{
    Base, BaseRole, BuildOptions, Built, Compression, ConfigEdit, EnvEdit, GzipOptions,
    LayerSource, MutateOptions, TarOptions, ZstdOptions, build_image, flatten_image, read_manifest,
    rebase_image, recompress_image,
};

use crate::cli::{
    AppendArgs, BuildArgs, CompressionArg, FlattenArgs, ImageConfigArgs, LayerArgs, MutateArgs,
    RebaseArgs, RecompressArgs,
};
use crate::commands::Ctx;
use crate::commands::unpack::layer_limits;
use crate::exit::{Failed, Failure};
use crate::location::Location;
use crate::open::Place;
use crate::output::print_line;
use crate::progress::BuildProgressView;

pub(crate) async fn build(ctx: &Ctx, args: BuildArgs) -> Result<()> {
    let target = ctx
        .opener
        .open_target(&args.dst, args.platform.as_ref())
        .await?;
    let base_place = match &args.from {
        Some(from) => Some(ctx.opener.open(from).await?),
        None => None,
    };
    let base_ref = args.from.as_ref().map(Location::manifest_ref);
    // A registry reference names the base for everyone; a local path would only make builds
    // differ by where they ran.
    let base_name = match &args.from {
        Some(Location::Registry(reference)) => Some(reference.to_string()),
        _ => None,
    };
    let base = match (&base_place, &base_ref) {
        (Some(place), Some(reference)) => Some(Base::new(
            place.endpoint(),
            reference,
            BaseRole::Build {
                name: base_name.as_deref(),
            },
        )),
        _ => None,
    };
    let mut options = build_options(&args.config, &args.layers, args.keep_owners)?;
    options.platform = args.platform.clone();
    let layers = layer_sources(&args.layer)?;
    let progress = BuildProgressView::new(ctx.progress_mode(), &format!("building {}", args.dst));
    options.progress = progress.sink();
    let mut tags = args.dst.write_tags();
    tags.extend(args.tag.iter().cloned());
    let result = build_image(base, layers, target.endpoint(), &tags, &options).await;
    progress.finish();
    let built = result.with_context(|| format!("cannot build {}", args.dst))?;
    report(ctx, "built", &target, &args.dst, &built).await
}

pub(crate) async fn append(ctx: &Ctx, args: AppendArgs) -> Result<()> {
    let dst = args.dst.clone();
    let mut options = build_options(&ImageConfigArgs::default(), &args.layers, args.keep_owners)?;
    options.platform = args.platform.clone();
    options.created_by = "hoist append".to_owned();
    let layers = layer_sources(&args.layer)?;
    change(ctx, "appended to", &args.src, &dst, layers, &options).await
}

pub(crate) async fn mutate(ctx: &Ctx, args: MutateArgs) -> Result<()> {
    let dst = args.dst.clone();
    let mut options = build_options(&args.config, &default_layer_args(), false)?;
    options.platform = args.platform.clone();
    if args.created.is_some() {
        options.created = args.created;
    }
    change(ctx, "changed", &args.src, &dst, Vec::new(), &options).await
}

/// A build on SRC itself (append, mutate), written to DST.
async fn change(
    ctx: &Ctx,
    what: &str,
    src: &Location,
    dst: &Location,
    layers: Vec<LayerSource>,
    options: &BuildOptions,
) -> Result<()> {
    let source = ctx.opener.open(src).await?;
    require_platform(&source, src, options.platform.as_ref()).await?;
    let target = ctx
        .opener
        .open_target(dst, options.platform.as_ref())
        .await?;
    let reference = src.manifest_ref();
    let base = Base::new(source.endpoint(), &reference, BaseRole::Mutate);
    let progress = BuildProgressView::new(ctx.progress_mode(), &format!("changing {src}"));
    let mut options = options.clone();
    options.progress = progress.sink();
    let result = build_image(
        Some(base),
        layers,
        target.endpoint(),
        &dst.write_tags(),
        &options,
    )
    .await;
    progress.finish();
    let built = result.with_context(|| format!("cannot change {src}"))?;
    report(ctx, what, &target, dst, &built).await
}

pub(crate) async fn flatten(ctx: &Ctx, args: FlattenArgs) -> Result<()> {
    let dst = args.dst.clone();
    let mut options = mutate_options(args.platform.clone(), &args.layers)?;
    options.limits = layer_limits(&args.entries);
    options.max_layer_bytes = args.layer_size.max_layer_size;
    let source = ctx.opener.open(&args.src).await?;
    require_platform(&source, &args.src, args.platform.as_ref()).await?;
    let target = ctx.opener.open_target(&dst, args.platform.as_ref()).await?;
    let progress = BuildProgressView::new(ctx.progress_mode(), &format!("flattening {}", args.src));
    options.progress = progress.sink();
    let result = flatten_image(
        source.endpoint(),
        &args.src.manifest_ref(),
        target.endpoint(),
        &dst.write_tags(),
        &options,
    )
    .await;
    progress.finish();
    let built = result.with_context(|| format!("cannot flatten {}", args.src))?;
    report(ctx, "flattened", &target, &dst, &built).await
}

pub(crate) async fn rebase(ctx: &Ctx, args: RebaseArgs) -> Result<()> {
    let dst = args.dst.clone();
    let options = mutate_options(args.platform.clone(), &default_layer_args())?;
    let source = ctx.opener.open(&args.src).await?;
    require_platform(&source, &args.src, args.platform.as_ref()).await?;
    let old = ctx.opener.open(&args.old_base).await?;
    let new = ctx.opener.open(&args.new_base).await?;
    let target = ctx.opener.open_target(&dst, args.platform.as_ref()).await?;
    let (old_ref, new_ref) = (args.old_base.manifest_ref(), args.new_base.manifest_ref());
    let new_name = match &args.new_base {
        Location::Registry(reference) => Some(reference.to_string()),
        _ => None,
    };
    let built = rebase_image(
        source.endpoint(),
        &args.src.manifest_ref(),
        (old.endpoint(), &old_ref),
        (new.endpoint(), &new_ref, new_name.as_deref()),
        target.endpoint(),
        &dst.write_tags(),
        &options,
    )
    .await
    .with_context(|| format!("cannot rebase {}", args.src))?;
    report(ctx, "rebased", &target, &dst, &built).await
}

pub(crate) async fn recompress(ctx: &Ctx, args: RecompressArgs) -> Result<()> {
    let dst = args.dst.clone();
    let mut options = mutate_options(args.platform.clone(), &args.layers)?;
    options.max_layer_bytes = args.layer_size.max_layer_size;
    let source = ctx.opener.open(&args.src).await?;
    require_platform(&source, &args.src, args.platform.as_ref()).await?;
    let target = ctx.opener.open_target(&dst, args.platform.as_ref()).await?;
    let progress =
        BuildProgressView::new(ctx.progress_mode(), &format!("recompressing {}", args.src));
    options.progress = progress.sink();
    let result = recompress_image(
        source.endpoint(),
        &args.src.manifest_ref(),
        target.endpoint(),
        &dst.write_tags(),
        &options,
    )
    .await;
    progress.finish();
    let built = result.with_context(|| format!("cannot recompress {}", args.src))?;
    report(ctx, "recompressed", &target, &dst, &built).await
}

/// Refuses to pick a platform out of an index on its own: changing one platform's image and
/// writing it where the index was would lose the others.
async fn require_platform(
    place: &Place,
    location: &Location,
    platform: Option<&oci_types::Platform>,
) -> Result<()> {
    if platform.is_some() {
        return Ok(());
    }
    let raw = read_manifest(&*place.store, &place.repo, &location.manifest_ref())
        .await
        .with_context(|| format!("cannot read {location}"))?;
    if !raw.descriptor.media_type.is_index() {
        return Ok(());
    }
    let platforms = match raw.parse(&place.repo) {
        Ok(oci_types::Manifest::Index(index)) => index
            .manifests
            .iter()
            .filter_map(|m| m.platform.as_ref().map(ToString::to_string))
            .collect::<Vec<_>>()
            .join(", "),
        _ => String::new(),
    };
    Err(usage(format!(
        "{location} is an index (of {platforms}): choose its image with --platform"
    ))
    .into())
}

/// Finishes what was written to `target`, then prints the new digest and says what was made.
async fn report(
    ctx: &Ctx,
    what: &str,
    target: &Place,
    dst: &Location,
    built: &Built,
) -> Result<()> {
    for note in target.finish().await? {
        ctx.say(note);
    }
    print_line(&built.manifest.digest)?;
    ctx.say(format!(
        "{what} {dst} ({}): {} new {}",
        built.platform,
        built.layers.len(),
        if built.layers.len() == 1 {
            "layer"
        } else {
            "layers"
        }
    ));
    Ok(())
}

fn default_layer_args() -> LayerArgs {
    LayerArgs {
        compression: CompressionArg::Gzip,
        compression_level: None,
        compression_threads: None,
        docker: false,
    }
}

/// `SOURCE_DATE_EPOCH`, the reproducible-builds variable: seconds since the epoch.
pub(crate) fn source_date_epoch() -> Result<Option<u64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(text) if text.trim().is_empty() => Ok(None),
        Ok(text) => text.trim().parse::<u64>().map(Some).map_err(|_| {
            Failed::new(
                Failure::Usage,
                format!("SOURCE_DATE_EPOCH={text:?} is not a number of seconds since 1970"),
            )
            .into()
        }),
        Err(_) => Ok(None),
    }
}

fn compression(layers: &LayerArgs) -> Result<Compression> {
    let threads = layers.compression_threads.map(usize::from);
    Ok(match layers.compression {
        CompressionArg::None => Compression::None,
        CompressionArg::Gzip => {
            let mut gzip = GzipOptions::default();
            if let Some(level) = layers.compression_level {
                let level = u32::try_from(level)
                    .ok()
                    .filter(|l| (1..=9).contains(l))
                    .ok_or_else(|| usage(format!("gzip level {level} is not 1 to 9")))?;
                gzip = gzip.with_level(level);
            }
            if let Some(threads) = threads {
                gzip = gzip.with_threads(threads);
            }
            Compression::Gzip(gzip)
        }
        CompressionArg::Zstd => {
            let mut zstd = ZstdOptions::default();
            if let Some(level) = layers.compression_level {
                if !(1..=19).contains(&level) {
                    bail!(usage(format!("zstd level {level} is not 1 to 19")));
                }
                zstd = zstd.with_level(level);
            }
            if let Some(threads) = threads {
                zstd = zstd.with_workers(u32::try_from(threads).unwrap_or(1));
            }
            Compression::Zstd(zstd)
        }
    })
}

fn usage(message: String) -> Failed {
    Failed::new(Failure::Usage, message)
}

fn mutate_options(
    platform: Option<oci_types::Platform>,
    layers: &LayerArgs,
) -> Result<MutateOptions> {
    let mut options = MutateOptions::default();
    options.platform = platform;
    options.compression = compression(layers)?;
    options.created = source_date_epoch()?;
    if layers.docker {
        options.docker = Some(true);
    }
    Ok(options)
}

fn build_options(
    config: &ImageConfigArgs,
    layers: &LayerArgs,
    keep_owners: bool,
) -> Result<BuildOptions> {
    let mut options = BuildOptions::default();
    options.created = source_date_epoch()?;
    options.compression = compression(layers)?;
    options.docker = layers.docker.then_some(true);
    options.tar = TarOptions::default().with_owner(if keep_owners { None } else { Some((0, 0)) });
    options.config = config_edit(config)?;
    options.annotations = key_values(&config.annotation, "annotation")?;
    Ok(options)
}

fn config_edit(args: &ImageConfigArgs) -> Result<ConfigEdit> {
    let mut edit = ConfigEdit::default();
    edit.entrypoint = args.entrypoint.as_deref().map(command_list).transpose()?;
    edit.cmd = args.cmd.as_deref().map(command_list).transpose()?;
    for set in &args.env {
        edit.env
            .push(EnvEdit::parse_set(set).map_err(|e| usage(e.to_string()))?);
    }
    for append in &args.env_append {
        edit.env
            .push(EnvEdit::parse_append(append).map_err(|e| usage(e.to_string()))?);
    }
    edit.working_dir = args.working_dir.clone();
    edit.user = args.user.clone();
    edit.labels = key_values(&args.label, "label")?;
    edit.exposed_ports = args.expose.clone();
    edit.volumes = args.volume.clone();
    edit.stop_signal = args.stop_signal.clone();
    Ok(edit)
}

/// A command as crane takes it (comma-separated) or as a JSON array of strings.
fn command_list(text: &str) -> Result<Vec<String>> {
    let trimmed = text.trim();
    if trimmed.starts_with('[') {
        return serde_json::from_str(trimmed)
            .map_err(|e| usage(format!("{text:?} is not a JSON array of strings: {e}")).into());
    }
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    Ok(text.split(',').map(str::to_owned).collect())
}

fn key_values(items: &[String], what: &str) -> Result<BTreeMap<String, String>> {
    items
        .iter()
        .map(|item| match item.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
            _ => Err(usage(format!("{what} {item:?} is not KEY=VALUE")).into()),
        })
        .collect()
}

/// What `--layer PATH` names: a directory, or a tar file (plain or compressed).
fn layer_sources(paths: &[PathBuf]) -> Result<Vec<LayerSource>> {
    paths
        .iter()
        .map(|path| {
            let meta = std::fs::metadata(path)
                .with_context(|| format!("cannot use layer {}", path.display()))?;
            Ok(if meta.is_dir() {
                LayerSource::Directory(path.clone())
            } else {
                LayerSource::Tar(path.clone())
            })
        })
        .collect()
}
