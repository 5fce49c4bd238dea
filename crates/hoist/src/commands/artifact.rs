//! `hoist artifact push`, `hoist artifact pull` and `hoist attach`: files as OCI artifacts, as
//! oras pushes and pulls them, through `oci-artifact`.

use anyhow::{Context, Result};
use oci_artifact::{ArtifactFile, ArtifactOptions, pull_artifact, push_artifact};
use oci_types::{Descriptor, MediaType};

use crate::cli::{ArtifactPullArgs, ArtifactPushArgs, AttachArgs};
use crate::commands::Ctx;
use crate::exit::{Failed, Failure};
use crate::location::{Location, Place};
use crate::output::{count, human_size, print_line};

/// `FILE[:TYPE]`: a path, with a media type after its last `:` when what follows is one (a
/// path may hold `:` too, as oras reads it).
pub(crate) fn parse_file(input: &str) -> Result<ArtifactFile, String> {
    if input.is_empty() {
        return Err("an empty file name".to_owned());
    }
    if let Some((path, kind)) = input.rsplit_once(':')
        && kind.contains('/')
        && !path.is_empty()
    {
        let media_type = MediaType::parse(kind).map_err(|e| format!("{kind:?}: {e}"))?;
        return Ok(ArtifactFile::new(path).with_media_type(media_type));
    }
    Ok(ArtifactFile::new(input))
}

/// `KEY=VALUE`.
pub(crate) fn parse_annotation(input: &str) -> Result<(String, String), String> {
    match input.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{input:?} is not KEY=VALUE")),
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_take_a_media_type_after_their_last_colon() {
        let plain = parse_file("notes.txt").unwrap();
        assert_eq!(plain.title, "notes.txt");
        assert_eq!(plain.media_type.as_str(), oci_artifact::DEFAULT_FILE_TYPE);
        let typed = parse_file("dir/sbom.json:application/spdx+json").unwrap();
        assert_eq!(typed.path, std::path::Path::new("dir/sbom.json"));
        assert_eq!(typed.media_type.as_str(), "application/spdx+json");
        // A colon without a media type after it is part of the name.
        assert_eq!(parse_file("a:b.txt").unwrap().title, "a:b.txt");
        assert!(parse_file("x:bad type/").is_err());
        assert_eq!(
            parse_annotation("k=v=w").unwrap(),
            ("k".into(), "v=w".into())
        );
        assert!(parse_annotation("=v").is_err());
    }
}
