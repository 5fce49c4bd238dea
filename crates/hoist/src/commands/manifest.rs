//! `hoist manifest`, `hoist config` and `hoist digest`: one object of an image, for scripts.

use anyhow::{Context, Result};
use oci_build::{ManifestRef, RawManifest, fetch_image, read_manifest, require_child};
use oci_types::{Manifest, Platform};

use crate::cli::ManifestArgs;
use crate::commands::Ctx;
use crate::location::Location;
use crate::open::Place;
use crate::output::{print_bytes, print_line};

/// A manifest chosen for a platform, with the index it was chosen from.
#[derive(Debug)]
pub(crate) struct Chosen {
    /// The index the reference named, when a platform was chosen out of it.
    pub(crate) index: Option<RawManifest>,
    /// The manifest: what the reference named, or the index's child for the platform.
    pub(crate) manifest: RawManifest,
}

/// Reads the manifest `location` names; with a platform and an index, the child for that
/// platform instead (by the matching rules of `oci_build::select_child`).
pub(crate) async fn read_for_platform(
    place: &Place,
    location: &Location,
    platform: Option<&Platform>,
) -> Result<Chosen> {
    let root = read_manifest(&*place.store, &place.repo, &location.manifest_ref())
        .await
        .with_context(|| format!("cannot read the manifest of {location}"))?;
    let Some(platform) = platform.filter(|_| root.descriptor.media_type.is_index()) else {
        return Ok(Chosen {
            index: None,
            manifest: root,
        });
    };
    let Manifest::Index(index) = root
        .parse(&place.repo)
        .with_context(|| format!("cannot read the index of {location}"))?
    else {
        return Ok(Chosen {
            index: None,
            manifest: root,
        });
    };
    let child = require_child(&index, platform, &place.repo, &root.descriptor.digest)
        .with_context(|| format!("cannot choose an image of {location}"))?;
    let manifest = read_manifest(
        &*place.store,
        &place.repo,
        &ManifestRef::Digest(child.digest.clone()),
    )
    .await
    .with_context(|| format!("cannot read the {platform} manifest of {location}"))?;
    Ok(Chosen {
        index: Some(root),
        manifest,
    })
}

/// `hoist manifest`: the exact bytes.
pub(crate) async fn manifest(ctx: &Ctx, args: ManifestArgs) -> Result<()> {
    let place = ctx.opener.open(&args.reference).await?;
    let chosen = read_for_platform(&place, &args.reference, args.platform.as_ref()).await?;
    print_bytes(&chosen.manifest.bytes)
}

/// `hoist config`: the config blob's exact bytes.
pub(crate) async fn config(ctx: &Ctx, args: ManifestArgs) -> Result<()> {
    let place = ctx.opener.open(&args.reference).await?;
    let image = fetch_image(
        &*place.store,
        &place.repo,
        &args.reference.manifest_ref(),
        args.platform.as_ref(),
    )
    .await
    .with_context(|| format!("cannot read the config of {}", args.reference))?;
    print_bytes(&image.config)
}

/// `hoist digest`: `sha256:…` of the manifest (HEAD only, unless a platform is chosen).
pub(crate) async fn digest(ctx: &Ctx, args: ManifestArgs) -> Result<()> {
    let place = ctx.opener.open(&args.reference).await?;
    let digest = match &args.platform {
        None => {
            place
                .resolve(&args.reference.manifest_ref())
                .await
                .with_context(|| format!("cannot resolve {}", args.reference))?
                .digest
        }
        Some(platform) => {
            read_for_platform(&place, &args.reference, Some(platform))
                .await?
                .manifest
                .descriptor
                .digest
        }
    };
    print_line(digest)
}
