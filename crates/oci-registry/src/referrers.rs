//! Referrers: the referrers API, and the referrers tag schema (distribution-spec, "Referrers Tag
//! Schema") for registries without it: an image index under the subject's `sha256-...` tag,
//! kept up to date by the client that pushes or deletes a referrer, and read when the API
//! answers 404.

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use http::{Method, StatusCode, header};
use oci_store::{ErrorCode, ReferrersParams, Result};
use oci_types::{
    Descriptor, Digest, ImageIndex, Manifest, MediaType, Repository, media_type, referrers_tag,
};

use crate::client::{RegistryClient, Target};
use crate::response::read_manifest;
use crate::transport::Call;

impl RegistryClient {
    /// The index kept under `subject`'s referrers tag; `None` where there is none (or what the
    /// tag names is not an index, which a push replaces).
    async fn referrers_tag_index(
        &self,
        repo: &Repository,
        subject: &Digest,
    ) -> Result<Option<ImageIndex>> {
        let tag = referrers_tag(subject);
        match self.fetch_manifest(repo, tag.as_str(), None, false).await {
            Ok((descriptor, Some(bytes))) => {
                match Manifest::parse(&bytes, &descriptor.media_type) {
                    Ok(Manifest::Index(index)) => Ok(Some(index)),
                    _ => Ok(None),
                }
            }
            Ok(_) => Ok(None),
            Err(error)
                if matches!(
                    error.code(),
                    Some(ErrorCode::ManifestUnknown | ErrorCode::NameUnknown)
                ) =>
            {
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// Puts `index` under `subject`'s referrers tag.
    async fn put_referrers_tag_index(
        &self,
        repo: &Repository,
        subject: &Digest,
        index: &ImageIndex,
    ) -> Result<()> {
        let bytes = Bytes::from(index.to_json());
        self.put_manifest(
            repo,
            referrers_tag(subject).as_str(),
            &bytes,
            &MediaType::from_static(media_type::OCI_INDEX),
        )
        .await?;
        Ok(())
    }

    /// For registries without the referrers API: adds a referrer to the index kept under the
    /// subject's referrers tag.
    pub(crate) async fn add_to_referrers_tag(
        &self,
        repo: &Repository,
        subject: &Digest,
        referrer: Descriptor,
    ) -> Result<()> {
        let mut index = self
            .referrers_tag_index(repo, subject)
            .await?
            .unwrap_or_else(|| ImageIndex::new(Vec::new()));
        if index.manifests.iter().any(|d| d.digest == referrer.digest) {
            return Ok(());
        }
        index.manifests.push(referrer);
        self.put_referrers_tag_index(repo, subject, &index).await
    }

    /// Takes a deleted referrer out of the index kept under its subject's referrers tag, where
    /// there is one.
    pub(crate) async fn remove_from_referrers_tag(
        &self,
        repo: &Repository,
        subject: &Digest,
        referrer: &Digest,
    ) -> Result<()> {
        let Some(mut index) = self.referrers_tag_index(repo, subject).await? else {
            return Ok(());
        };
        let before = index.manifests.len();
        index.manifests.retain(|d| &d.digest != referrer);
        if index.manifests.len() == before {
            return Ok(());
        }
        self.put_referrers_tag_index(repo, subject, &index).await
    }

    /// The referrers of `digest`: from the referrers API, else from the tag schema.
    pub(crate) fn list_referrers(
        &self,
        repo: &Repository,
        digest: &Digest,
        params: &ReferrersParams,
    ) -> BoxStream<'static, Result<Descriptor>> {
        let (client, repo, digest, wanted) = (
            self.clone(),
            repo.clone(),
            digest.clone(),
            params.artifact_type.clone(),
        );
        stream::once(async move {
            let mut path = format!("/v2/{repo}/referrers/{digest}");
            if let Some(kind) = &wanted {
                path.push_str(&format!(
                    "?artifactType={}",
                    form_urlencoded::byte_serialize(kind.as_str().as_bytes()).collect::<String>()
                ));
            }
            let mut call = Call::new(Method::GET, client.uri(&path)?)
                .header(header::ACCEPT, media_type::OCI_INDEX);
            let response = client
                .send(&mut call, &RegistryClient::scope(&repo, "pull"))
                .await?;
            let (found, filtered) = if response.status() == StatusCode::OK {
                let filtered = response
                    .headers()
                    .get("OCI-Filters-Applied")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.split(',').any(|f| f.trim() == "artifactType"));
                let bytes = read_manifest(&client, response).await?;
                let index =
                    match Manifest::parse(&bytes, &MediaType::from_static(media_type::OCI_INDEX)) {
                        Ok(Manifest::Index(index)) => index,
                        _ => {
                            return Err(client.backend(format!(
                                "the referrers of {digest} are not an image index"
                            )));
                        }
                    };
                (index.manifests, filtered)
            } else if response.status() == StatusCode::NOT_FOUND {
                // No referrers API: the tag schema fallback.
                let index = client.referrers_tag_index(&repo, &digest).await?;
                (
                    index.map(|index| index.manifests).unwrap_or_default(),
                    false,
                )
            } else {
                return Err(client.error_from(response, Target::Repository(&repo)).await);
            };
            let mut found: Vec<Descriptor> = found
                .into_iter()
                .filter(|d| {
                    filtered
                        || wanted
                            .as_ref()
                            .is_none_or(|w| d.artifact_type.as_ref() == Some(w))
                })
                .collect();
            // The trait's order, whatever order the registry or the tag index kept.
            found.sort_by(|a, b| a.digest.as_str().cmp(b.digest.as_str()));
            found.dedup_by(|a, b| a.digest == b.digest);
            let kept: Vec<Result<Descriptor>> = found.into_iter().map(Ok).collect();
            Ok(kept)
        })
        .map(|page| match page {
            Ok(items) => stream::iter(items).boxed(),
            Err(error) => stream::once(async move { Err(error) }).boxed(),
        })
        .flatten()
        .boxed()
    }
}
