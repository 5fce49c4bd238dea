//! `hoist tag` and `hoist delete`: changing what tags point at.

use anyhow::{Context, Result};
use oci_build::read_manifest;
use oci_store::PushManifestParams;

use crate::cli::{DeleteArgs, TagArgs};
use crate::commands::Ctx;

/// `hoist tag REF NEWTAG...`: the same manifest bytes pushed again under more tags (the
/// digest cannot change, and the store checks that it does not).
pub(crate) async fn tag(ctx: &Ctx, args: TagArgs) -> Result<()> {
    let place = ctx.opener.open(&args.reference).await?;
    let manifest = read_manifest(&*place.store, &place.repo, &args.reference.manifest_ref())
        .await
        .with_context(|| format!("cannot read the manifest of {}", args.reference))?;
    let digest = manifest.descriptor.digest.clone();
    let names = args
        .tags
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let params = PushManifestParams::new()
        .with_tags(args.tags.iter().cloned())
        .with_digest(digest.clone());
    place
        .store
        .push_manifest(
            &place.repo,
            manifest.bytes,
            &manifest.descriptor.media_type,
            &params,
        )
        .await
        .with_context(|| format!("cannot tag {} as {names}", args.reference))?;
    ctx.say(format!("tagged {digest} as {names}"));
    Ok(())
}

/// `hoist delete REF`: the tag, or with a digest (or `--manifest`) the manifest. Like every
/// reference, one with neither tag nor digest means `latest`.
pub(crate) async fn delete(ctx: &Ctx, args: DeleteArgs) -> Result<()> {
    let location = &args.reference;
    let place = ctx.opener.open(location).await?;
    let reference = location.manifest_ref();
    if let (Some(tag), false) = (reference.tag(), args.manifest) {
        place
            .store
            .delete_tag(&place.repo, tag)
            .await
            .with_context(|| format!("cannot delete tag {tag} of {location}"))?;
        ctx.say(format!("deleted tag {tag}"));
        return Ok(());
    }
    let digest = place
        .resolve(&reference)
        .await
        .with_context(|| format!("cannot resolve {location}"))?
        .digest;
    place
        .store
        .delete_manifest(&place.repo, &digest)
        .await
        .with_context(|| format!("cannot delete manifest {digest} ({location})"))?;
    ctx.say(format!("deleted manifest {digest}"));
    Ok(())
}
