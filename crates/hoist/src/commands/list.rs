//! `hoist ls`, `hoist catalog` and `hoist referrers`: listings, one item per line or as JSON.

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt};
use oci_store::{ListParams, ReferrersParams};
use oci_types::Descriptor;
use serde_json::{Value, json};

use crate::cli::{CatalogArgs, ListArgs, ReferrersArgs};
use crate::commands::Ctx;
use crate::output::{print_json, print_line};

/// `hoist ls`: the tags of a repository (the tag or digest of the reference is ignored).
pub(crate) async fn tags(ctx: &Ctx, args: ListArgs) -> Result<()> {
    let place = ctx.opener.open(&args.repository).await?;
    let what = || {
        format!(
            "cannot list the tags of {}",
            args.repository.repository_name()
        )
    };
    let mut tags = place.store.tags(&place.repo, &ListParams::default());
    if args.json {
        let all: Vec<String> = tags
            .map_ok(|tag| tag.to_string())
            .try_collect()
            .await
            .with_context(what)?;
        return print_json(&json!(all));
    }
    // Printed as they come: a long listing starts at once and never sits in memory.
    while let Some(tag) = tags.next().await {
        print_line(tag.with_context(what)?)?;
    }
    Ok(())
}

/// `hoist catalog`: the repositories of a registry or layout.
pub(crate) async fn catalog(ctx: &Ctx, args: CatalogArgs) -> Result<()> {
    let store = ctx.opener.open_store(&args.registry).await?;
    let what = || format!("cannot list the repositories of {}", args.registry);
    let mut repositories = store.repositories(&ListParams::default());
    if args.json {
        let all: Vec<String> = repositories
            .map_ok(|repo| repo.to_string())
            .try_collect()
            .await
            .with_context(what)?;
        return print_json(&json!(all));
    }
    while let Some(repo) = repositories.next().await {
        print_line(repo.with_context(what)?)?;
    }
    Ok(())
}

/// `hoist referrers`: what refers to the manifest REF names.
pub(crate) async fn referrers(ctx: &Ctx, args: ReferrersArgs) -> Result<()> {
    let place = ctx.opener.open(&args.reference).await?;
    let subject = place
        .resolve(&args.reference.manifest_ref())
        .await
        .with_context(|| format!("cannot resolve {}", args.reference))?
        .digest;
    let mut params = ReferrersParams::new();
    if let Some(artifact_type) = args.artifact_type {
        params = params.with_artifact_type(artifact_type);
    }
    let what = || format!("cannot list the referrers of {}", args.reference);
    if args.tree {
        print_line(&subject)?;
        let mut seen = std::collections::HashSet::from([subject.clone()]);
        return referrer_tree(&place, &subject, &params, 1, &mut seen)
            .await
            .with_context(what);
    }
    let mut referrers = place.store.referrers(&place.repo, &subject, &params);
    if args.json {
        let all: Vec<Descriptor> = referrers.try_collect().await.with_context(what)?;
        let all: Vec<Value> = all
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<_, _>>()
            .context("cannot render a descriptor as JSON")?;
        return print_json(&Value::Array(all));
    }
    while let Some(referrer) = referrers.next().await {
        print_line(referrer_line(&referrer.with_context(what)?))?;
    }
    Ok(())
}

/// How deep `referrers --tree` goes: chains of attachments are short (a signature of an SBOM
/// of an image); a longer one is cut with a note rather than followed without end.
const MAX_TREE_DEPTH: usize = 16;

/// Prints the referrers of `subject` at `depth`, each followed by its own, depth first; a
/// manifest already printed (a cycle, which digests make impossible unless a store lies) is not
/// followed again.
fn referrer_tree<'a>(
    place: &'a crate::open::Place,
    subject: &'a oci_types::Digest,
    params: &'a ReferrersParams,
    depth: usize,
    seen: &'a mut std::collections::HashSet<oci_types::Digest>,
) -> futures::future::BoxFuture<'a, anyhow::Result<()>> {
    Box::pin(async move {
        let referrers: Vec<Descriptor> = place
            .store
            .referrers(&place.repo, subject, params)
            .try_collect()
            .await?;
        for referrer in referrers {
            let indent = "  ".repeat(depth);
            print_line(format!("{indent}{}", referrer_line(&referrer)))?;
            if depth >= MAX_TREE_DEPTH {
                print_line(format!(
                    "{indent}  ... (deeper than {MAX_TREE_DEPTH} levels)"
                ))?;
                continue;
            }
            if seen.insert(referrer.digest.clone()) {
                referrer_tree(place, &referrer.digest, params, depth + 1, seen).await?;
            }
        }
        Ok(())
    })
}

/// `DIGEST<TAB>ARTIFACT-TYPE<TAB>SIZE`, with `-` for a referrer without an artifact type.
fn referrer_line(referrer: &Descriptor) -> String {
    let artifact_type = referrer
        .artifact_type
        .as_ref()
        .map_or_else(|| "-".to_owned(), ToString::to_string);
    format!("{}\t{artifact_type}\t{}", referrer.digest, referrer.size)
}

#[cfg(test)]
mod tests {
    use oci_types::{Digest, MediaType, media_type};

    use super::*;

    #[test]
    fn referrer_lines() {
        let digest = Digest::sha256(b"sig");
        let plain = Descriptor::new(
            MediaType::from_static(media_type::OCI_MANIFEST),
            digest.clone(),
            321,
        );
        assert_eq!(referrer_line(&plain), format!("{digest}\t-\t321"));
        let typed =
            plain.with_artifact_type(MediaType::parse("application/vnd.example.sig").unwrap());
        assert_eq!(
            referrer_line(&typed),
            format!("{digest}\tapplication/vnd.example.sig\t321")
        );
    }
}
