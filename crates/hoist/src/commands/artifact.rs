//! `hoist artifact push`, `hoist artifact pull` and `hoist attach`: files as OCI artifacts, as
//! oras pushes and pulls them, through `oci-artifact`.

use anyhow::{Context, Result};
use oci_artifact::{ArtifactFile, ArtifactOptions, pull_artifact, push_artifact};
use oci_types::{Descriptor, MediaType};

use crate::cli::{ArtifactPullArgs, ArtifactPushArgs, AttachArgs};
use crate::commands::Ctx;
use crate::exit::{Failed, Failure};
use crate::location::Location;
use crate::open::Place;
use crate::output::{count, human_size, print_line};

/// Refuses archives and daemons: artifacts live in registries and layouts.
fn check_place(location: &Location) -> Result<()> {
    if matches!(location, Location::Archive(_) | Location::RegistryHost(_)) {
        return Err(Failed::new(
            Failure::Usage,
            format!(
                "{location}: artifacts are pushed to and pulled from registries and OCI layouts"
            ),
        )
        .into());
    }
    Ok(())
}

/// The descriptor of the manifest `location` names, for a subject.
async fn resolve(place: &Place, location: &Location) -> Result<Descriptor> {
    let mut descriptor = place
        .resolve(&location.manifest_ref())
        .await
        .with_context(|| format!("cannot find {location}"))?;
    // A subject is a plain descriptor: media type, digest, size.
    descriptor.annotations.clear();
    descriptor.platform = None;
    descriptor.artifact_type = None;
    Ok(descriptor)
}

fn options(artifact_type: Option<MediaType>, annotations: &[(String, String)]) -> ArtifactOptions {
    let mut options = ArtifactOptions::new();
    if let Some(artifact_type) = artifact_type {
        options = options.with_artifact_type(artifact_type);
    }
    for (key, value) in annotations {
        options = options.with_annotation(key.clone(), value.clone());
    }
    options
}

async fn push_files(
    ctx: &Ctx,
    place: &Place,
    files: &[ArtifactFile],
    options: &ArtifactOptions,
    target: &str,
) -> Result<()> {
    let pushed = push_artifact(&*place.store, &place.repo, files, options)
        .await
        .with_context(|| format!("cannot push the artifact to {target}"))?;
    print_line(&pushed.digest)?;
    ctx.say(format!(
        "pushed {} to {target} as {}",
        count(files.len(), "file", "files"),
        pushed.digest
    ));
    Ok(())
}

/// `hoist artifact push REF FILE[:TYPE]...`.
pub(crate) async fn push(ctx: &Ctx, args: ArtifactPushArgs) -> Result<()> {
    check_place(&args.reference)?;
    if args.reference.digest().is_some() {
        return Err(Failed::new(
            Failure::Usage,
            format!(
                "{}: an artifact is pushed under a tag, not a digest",
                args.reference
            ),
        )
        .into());
    }
    let place = ctx.opener.open(&args.reference).await?;
    let mut options = options(args.artifact_type, &args.annotations);
    for tag in args.reference.write_tags() {
        options = options.with_tag(tag);
    }
    if let Some(subject) = &args.subject {
        options = options.with_subject(subject_in(ctx, &args.reference, subject).await?);
    }
    push_files(
        ctx,
        &place,
        &args.files,
        &options,
        &args.reference.to_string(),
    )
    .await
}

/// The subject `subject` names, which must be in `reference`'s repository (referrers are
/// listed per repository).
async fn subject_in(ctx: &Ctx, reference: &Location, subject: &Location) -> Result<Descriptor> {
    check_place(subject)?;
    let same = match (reference, subject) {
        (Location::Registry(a), Location::Registry(b)) => {
            a.registry() == b.registry() && a.repository() == b.repository()
        }
        (Location::Layout { dir: a, .. }, Location::Layout { dir: b, .. }) => a == b,
        _ => false,
    };
    if !same {
        return Err(Failed::new(
            Failure::Usage,
            format!("the subject {subject} must be in the repository of {reference}: referrers are listed per repository"),
        )
        .into());
    }
    let place = ctx.opener.open(subject).await?;
    resolve(&place, subject).await
}

/// `hoist attach --artifact-type TYPE REF FILE[:TYPE]...`: an artifact whose subject is REF,
/// pushed untagged into REF's repository.
pub(crate) async fn attach(ctx: &Ctx, args: AttachArgs) -> Result<()> {
    check_place(&args.subject)?;
    let place = ctx.opener.open(&args.subject).await?;
    let subject = resolve(&place, &args.subject).await?;
    let options = options(Some(args.artifact_type), &args.annotations).with_subject(subject);
    push_files(
        ctx,
        &place,
        &args.files,
        &options,
        &args.subject.to_string(),
    )
    .await
}

/// `hoist artifact pull REF DIR`.
pub(crate) async fn pull(ctx: &Ctx, args: ArtifactPullArgs) -> Result<()> {
    check_place(&args.reference)?;
    let place = ctx.opener.open(&args.reference).await?;
    let reference = args.reference.manifest_ref();
    let pulled = pull_artifact(&*place.store, &place.repo, &reference, &args.dir)
        .await
        .with_context(|| format!("cannot pull {} into {}", args.reference, args.dir.display()))?;
    let mut bytes = 0;
    for file in &pulled {
        bytes += file.size;
        print_line(file.path.display())?;
    }
    ctx.say(format!(
        "pulled {} ({}) from {}",
        count(pulled.len(), "file", "files"),
        human_size(bytes),
        args.reference
    ));
    Ok(())
}
