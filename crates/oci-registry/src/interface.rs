//! `OciInterface` for [`RegistryClient`]: each method as the distribution-spec requests.

use async_trait::async_trait;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use futures::stream::{BoxStream, StreamExt};
use http::{Method, Response, StatusCode, header};
use hyper::body::Incoming;
use oci_store::{
    BlobBody, BlobReader, BlobWriter, Error, ListParams, OciInterface, PushManifestParams,
    ReferrersParams, Result, body_from_bytes,
};
use oci_types::{Algorithm, Descriptor, Digest, Manifest, MediaType, Repository, Tag};

use crate::client::{ACCEPT_MANIFESTS, RegistryClient, Target};
use crate::download::content_range_start;
use crate::listing::Listing;
use crate::response::{
    content_length, content_range_total, header_digest, header_media_type, incoming_stream,
    read_manifest,
};
use crate::send_file;
use crate::transport::{Body, Call};
use crate::upload::{BodyFailure, RegistryWriter, checked_body, chunk_below_refused};
use tracing::{debug, warn};

/// Blobs up to this size are sent in one `POST ?digest=` where the registry takes it: configs
/// and small layers, for which a second round trip costs more than the bytes.
const SINGLE_POST_LIMIT: u64 = 1 << 20;

impl RegistryClient {
    /// A manifest's descriptor from a HEAD or GET answer.
    fn manifest_descriptor(
        &self,
        response: &Response<Incoming>,
        known: Option<&Digest>,
        body: Option<&Bytes>,
    ) -> Result<Descriptor> {
        let media_type = header_media_type(response).ok_or_else(|| {
            self.backend("a manifest answer without a usable Content-Type".to_owned())
        })?;
        let digest = match (header_digest(response), known, body) {
            (_, Some(known), _) => known.clone(),
            (Some(stated), None, _) => stated,
            (None, None, Some(body)) => Digest::sha256(body),
            (None, None, None) => {
                return Err(
                    self.backend("a manifest answer without Docker-Content-Digest".to_owned())
                );
            }
        };
        let size = match body {
            Some(body) => body.len() as u64,
            None => content_length(response).ok_or_else(|| {
                self.backend("a manifest answer without Content-Length".to_owned())
            })?,
        };
        Ok(Descriptor::new(media_type, digest, size))
    }

    pub(crate) async fn fetch_manifest(
        &self,
        repo: &Repository,
        reference: &str,
        known: Option<&Digest>,
        head: bool,
    ) -> Result<(Descriptor, Option<Bytes>)> {
        let method = if head { Method::HEAD } else { Method::GET };
        let mut call = Call::new(
            method,
            self.uri(&format!("/v2/{repo}/manifests/{reference}"))?,
        )
        .header(header::ACCEPT, ACCEPT_MANIFESTS);
        let scope = Self::scope(repo, "pull");
        // A manifest is small and read whole: a body broken off (a reset, a short read) is
        // asked for again, like a request that failed before its answer.
        let mut attempt = 1;
        let (stated, media_type_probe, bytes) = loop {
            let response = self
                .expect(
                    &mut call,
                    &scope,
                    &[StatusCode::OK],
                    Target::Manifest(repo, reference),
                )
                .await?;
            if head {
                return Ok((self.manifest_descriptor(&response, known, None)?, None));
            }
            let stated = header_digest(&response);
            let media_type_probe = header_media_type(&response);
            match read_manifest(self, response).await {
                Ok(bytes) => break (stated, media_type_probe, bytes),
                Err(error @ Error::Unavailable { .. }) if attempt < self.inner.retry.attempts => {
                    let delay = self.inner.retry.delay(attempt, None);
                    tracing::debug!(%error, ?delay, %reference, "manifest body broken off; retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        };
        let digest = match (known, stated) {
            (Some(known), _) => known.clone(),
            (None, Some(stated)) => stated,
            (None, None) => Digest::sha256(&bytes),
        };
        let media_type = media_type_probe.ok_or_else(|| {
            self.backend("a manifest answer without a usable Content-Type".to_owned())
        })?;
        let size = bytes.len() as u64;
        Ok((Descriptor::new(media_type, digest, size), Some(bytes)))
    }

    /// PUTs a manifest under one reference.
    pub(crate) async fn put_manifest(
        &self,
        repo: &Repository,
        reference: &str,
        contents: &Bytes,
        media_type: &MediaType,
    ) -> Result<Response<Incoming>> {
        let mut call = Call::new(
            Method::PUT,
            self.uri(&format!("/v2/{repo}/manifests/{reference}"))?,
        )
        .header(header::CONTENT_TYPE, media_type.essence())
        .body(Body::Bytes(contents.clone()));
        let scope = Self::scope(repo, "pull,push");
        self.expect(
            &mut call,
            &scope,
            &[StatusCode::CREATED, StatusCode::OK, StatusCode::ACCEPTED],
            Target::Manifest(repo, reference),
        )
        .await
    }
}

#[async_trait]
impl OciInterface for RegistryClient {
    async fn get_blob(&self, repo: &Repository, digest: &Digest) -> Result<BlobReader> {
        let (response, _) = self.open_blob(repo, digest, None).await?;
        let size = match content_length(&response) {
            Some(size) => size,
            None => self.resolve_blob(repo, digest).await?.size,
        };
        let body = self.resuming_body(repo, digest, response, 0, size);
        Ok(BlobReader::verified(
            Descriptor::octet_stream(digest, size),
            body,
        ))
    }

    async fn get_blob_range(
        &self,
        repo: &Repository,
        digest: &Digest,
        start: u64,
        end: Option<u64>,
    ) -> Result<BlobReader> {
        if end.is_some_and(|end| end <= start) {
            return Err(Error::RangeInvalid {
                target: digest.to_string(),
                reason: format!("range {start}..{end:?} selects no byte"),
            });
        }
        let (response, _) = self.open_blob(repo, digest, Some((start, end))).await?;
        if response.status() == StatusCode::PARTIAL_CONTENT {
            let total = content_range_total(&response)
                .ok_or_else(|| self.backend("a 206 answer without Content-Range".to_owned()))?;
            // A range has no digest to check it by: bytes other than those asked for would be
            // passed off as them, so the answer must say it starts where the range does.
            let answered = content_range_start(&response);
            if answered != Some(start) {
                return Err(self.backend(format!(
                    "asked for {digest} from byte {start}, the registry answered a range from \
                     byte {}",
                    answered.map_or_else(|| "(unreadable)".to_owned(), |at| at.to_string())
                )));
            }
            if start >= total {
                return Err(Error::RangeInvalid {
                    target: digest.to_string(),
                    reason: format!(
                        "the range starts at byte {start}, and the registry says the blob has \
                         {total} bytes"
                    ),
                });
            }
            let stop = end.unwrap_or(total).min(total);
            let body = self.resuming_body(repo, digest, response, start, stop);
            return Ok(BlobReader::ranged(
                Descriptor::octet_stream(digest, total),
                start..stop,
                body,
            ));
        }
        // The registry sent the whole blob: cut the range out of it.
        let total = content_length(&response)
            .ok_or_else(|| self.backend("a blob answer without Content-Length".to_owned()))?;
        let range = oci_store::check_range(digest, total, start, end)?;
        let mut skip = range.start;
        let mut take = range.end - range.start;
        let body = incoming_stream(response)
            .filter_map(move |chunk| {
                let out = match chunk {
                    Err(error) => Some(Err(error)),
                    Ok(mut chunk) => {
                        let drop = skip.min(chunk.len() as u64);
                        skip -= drop;
                        let _ = chunk.split_to(drop as usize);
                        let keep = take.min(chunk.len() as u64);
                        take -= keep;
                        chunk.truncate(keep as usize);
                        (!chunk.is_empty()).then_some(Ok(chunk))
                    }
                };
                futures::future::ready(out)
            })
            .boxed()
            .into();
        Ok(BlobReader::ranged(
            Descriptor::octet_stream(digest, total),
            range,
            body,
        ))
    }

    async fn get_manifest(&self, repo: &Repository, digest: &Digest) -> Result<BlobReader> {
        let (descriptor, bytes) = self
            .fetch_manifest(repo, digest.as_str(), Some(digest), false)
            .await?;
        Ok(BlobReader::verified(
            descriptor,
            body_from_bytes(bytes.unwrap_or_default()),
        ))
    }

    async fn get_tag(&self, repo: &Repository, tag: &Tag) -> Result<BlobReader> {
        let (descriptor, bytes) = self.fetch_manifest(repo, tag.as_str(), None, false).await?;
        Ok(BlobReader::verified(
            descriptor,
            body_from_bytes(bytes.unwrap_or_default()),
        ))
    }

    async fn resolve_blob(&self, repo: &Repository, digest: &Digest) -> Result<Descriptor> {
        let mut call = Call::new(
            Method::HEAD,
            self.uri(&format!("/v2/{repo}/blobs/{digest}"))?,
        );
        let scope = Self::scope(repo, "pull");
        let response = self
            .expect(
                &mut call,
                &scope,
                &[StatusCode::OK],
                Target::Blob(repo, digest),
            )
            .await?;
        let size = content_length(&response)
            .ok_or_else(|| self.backend(format!("HEAD of blob {digest} without Content-Length")))?;
        Ok(Descriptor::octet_stream(digest, size))
    }

    async fn resolve_manifest(&self, repo: &Repository, digest: &Digest) -> Result<Descriptor> {
        Ok(self
            .fetch_manifest(repo, digest.as_str(), Some(digest), true)
            .await?
            .0)
    }

    async fn resolve_tag(&self, repo: &Repository, tag: &Tag) -> Result<Descriptor> {
        match self.fetch_manifest(repo, tag.as_str(), None, true).await {
            Ok((descriptor, _)) => Ok(descriptor),
            // Some registries leave Docker-Content-Digest out of HEAD answers: GET instead.
            Err(Error::Backend { .. }) => Ok(self
                .fetch_manifest(repo, tag.as_str(), None, false)
                .await?
                .0),
            Err(error) => Err(error),
        }
    }

    async fn push_blob(
        &self,
        repo: &Repository,
        descriptor: &Descriptor,
        body: BlobBody,
    ) -> Result<Descriptor> {
        let failure = BodyFailure::default();
        let body = checked_body(descriptor, body, std::sync::Arc::clone(&failure));
        let own_failure = |error: Error| {
            failure
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take()
                .unwrap_or(error)
        };
        let refused_put_size = self.inner.refused_put_size.load(Ordering::Relaxed);
        if descriptor.size > self.inner.monolithic_limit || descriptor.size >= refused_put_size {
            // Under a refused size, chunks stay well below it: the closing PUT carries one too.
            let chunk_size = (refused_put_size < u64::MAX)
                .then(|| chunk_below_refused(refused_put_size, self.inner.chunk_size));
            let mut writer = RegistryWriter::start(self, repo, chunk_size).await?;
            let mut body = body;
            while let Some(chunk) = body.next().await {
                match chunk {
                    Ok(chunk) => writer.write(chunk).await?,
                    Err(error) => {
                        let _ = Box::new(writer).cancel().await;
                        return Err(own_failure(error));
                    }
                }
            }
            return Box::new(writer).commit(&descriptor.digest).await;
        }
        let scope = Self::scope(repo, "pull,push");
        let stored = Descriptor::octet_stream(&descriptor.digest, descriptor.size);
        let target = Target::Blob(repo, &descriptor.digest);
        if descriptor.size <= SINGLE_POST_LIMIT
            && !self.inner.single_post_refused.load(Ordering::Relaxed)
        {
            // Small blobs (configs, small layers) in one request, `POST ?digest=` with the
            // body (distribution-spec end-4b). Held in memory, so that an auth challenge, a
            // retry, or a registry that ignores the body can be answered by sending it again.
            let mut content =
                BytesMut::with_capacity(usize::try_from(descriptor.size).unwrap_or(0));
            let mut body = body;
            while let Some(chunk) = body.next().await {
                content.extend_from_slice(&chunk.map_err(&own_failure)?);
            }
            let content = content.freeze();
            let mut post = Call::new(
                Method::POST,
                self.uri(&format!(
                    "/v2/{repo}/blobs/uploads/?digest={}",
                    descriptor.digest
                ))?,
            )
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_LENGTH, &content.len().to_string())
            .body(Body::Bytes(content.clone()));
            let response = self
                .expect(
                    &mut post,
                    &scope,
                    &[StatusCode::CREATED, StatusCode::ACCEPTED],
                    target.clone(),
                )
                .await?;
            if response.status() == StatusCode::CREATED {
                return Ok(stored);
            }
            // 202: the registry opened an upload and ignored the body (the CNCF registry
            // does); finish it with a PUT, and use POST+PUT from now on.
            debug!(registry = %self.inner.name, "single-POST upload not supported; using POST+PUT");
            self.inner
                .single_post_refused
                .store(true, Ordering::Relaxed);
            let mut put = self.closing_put(&response, descriptor, Body::Bytes(content))?;
            self.expect(&mut put, &scope, &[StatusCode::CREATED], target)
                .await?;
            return Ok(stored);
        }
        // POST then PUT: the POST also settles authentication before the body streams, so the
        // body is never needed twice.
        let mut post = Call::new(
            Method::POST,
            self.uri(&format!("/v2/{repo}/blobs/uploads/"))?,
        )
        .header(header::CONTENT_LENGTH, "0");
        let response = self
            .expect(
                &mut post,
                &scope,
                &[StatusCode::ACCEPTED],
                Target::Repository(repo),
            )
            .await?;
        let mut put = self.closing_put(&response, descriptor, Body::Stream(Some(body)))?;
        // A body that lies in a file goes to a plain-HTTP registry unread, by sendfile; one
        // whose file has been cut short streams, and its reader names what is missing.
        if put.uri.scheme_str() == Some("http")
            && let Body::Stream(Some(body)) = &put.body
            && let Some(span) = body.file_span()
            && send_file::SUPPORTED
            && span.is_held()
        {
            put.body = Body::File(span.clone());
        }
        match self
            .expect(&mut put, &scope, &[StatusCode::CREATED], target)
            .await
        {
            Ok(_) => Ok(stored),
            Err(error) => {
                if error.http_status() == 413 {
                    // The body is gone (it streamed once); the caller can send it again, and
                    // this client will then send blobs this big in chunks.
                    self.inner
                        .refused_put_size
                        .fetch_min(descriptor.size, Ordering::Relaxed);
                    warn!(registry = %self.inner.name, size = descriptor.size,
                        "the registry refused a whole-blob upload as too large; blobs this big go in chunks from now on");
                }
                Err(own_failure(error))
            }
        }
    }

    async fn push_blob_chunked(
        &self,
        repo: &Repository,
        chunk_size: Option<usize>,
    ) -> Result<Box<dyn BlobWriter>> {
        Ok(Box::new(
            RegistryWriter::start(self, repo, chunk_size).await?,
        ))
    }

    async fn push_blob_chunked_resume(
        &self,
        repo: &Repository,
        id: &str,
        offset: Option<u64>,
        chunk_size: Option<usize>,
    ) -> Result<Box<dyn BlobWriter>> {
        Ok(Box::new(
            RegistryWriter::resume(self, repo, id, offset, chunk_size).await?,
        ))
    }

    async fn mount_blob(
        &self,
        from: &Repository,
        to: &Repository,
        digest: &Digest,
    ) -> Result<Descriptor> {
        let uri = self.uri(&format!(
            "/v2/{to}/blobs/uploads/?mount={digest}&from={from}"
        ))?;
        let mut call = Call::new(Method::POST, uri).header(header::CONTENT_LENGTH, "0");
        let scope = format!(
            "{} {}",
            Self::scope(to, "pull,push"),
            Self::scope(from, "pull")
        );
        let response = self
            .expect(
                &mut call,
                &scope,
                &[StatusCode::CREATED, StatusCode::ACCEPTED],
                Target::Repository(to),
            )
            .await?;
        if response.status() == StatusCode::CREATED {
            return self.resolve_blob(to, digest).await;
        }
        // 202: the registry did not mount and opened an upload instead; close it.
        if let Ok(location) = self.location(&response) {
            let mut cancel = Call::new(Method::DELETE, location);
            let _ = self.send(&mut cancel, &Self::scope(to, "pull,push")).await;
        }
        self.resolve_blob(from, digest).await?;
        Err(Error::unsupported("cross-repository mount", self))
    }

    async fn push_manifest(
        &self,
        repo: &Repository,
        contents: Bytes,
        media_type: &MediaType,
        params: &PushManifestParams,
    ) -> Result<Descriptor> {
        let inspected = oci_store::inspect_manifest(repo, &contents, media_type, params)?;
        let digest = inspected.digest.clone();
        // One tag, and a SHA-256 digest (what a registry names a manifest pushed by tag with):
        // the push is by that tag, one request on every registry. Otherwise the tags go with
        // the push by digest (`?tag=`, distribution-spec end-7b): one request where the
        // registry supports it, and the manifest keeps its digest's algorithm. A registry that
        // does not (most in use) confirms no tag with `OCI-Tag`; those tags are pushed one by
        // one below, which for a single tag would be a second PUT of the same manifest.
        let by_tag = match params.tags.as_slice() {
            [tag] if digest.algorithm() == Algorithm::Sha256 => Some(tag),
            _ => None,
        };
        let reference = match (by_tag, params.tags.as_slice()) {
            (Some(tag), _) => tag.to_string(),
            (None, []) => digest.to_string(),
            (None, tags) => {
                let query: Vec<String> = tags.iter().map(|t| format!("tag={t}")).collect();
                format!("{digest}?{}", query.join("&"))
            }
        };
        let response = self
            .put_manifest(repo, &reference, &contents, media_type)
            .await?;
        if let Some(stated) =
            header_digest(&response).filter(|d| d.algorithm() == digest.algorithm() && *d != digest)
        {
            return Err(Error::DigestInvalid {
                what: "manifest (as the registry stored it)".to_owned(),
                expected: digest,
                actual: stated,
            });
        }
        let registry_indexes_referrers = response.headers().contains_key("OCI-Subject");
        let confirmed: Vec<String> = response
            .headers()
            .get_all("OCI-Tag")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(',').map(|t| t.trim().to_owned()))
            .collect();
        for tag in params
            .tags
            .iter()
            .filter(|t| by_tag != Some(*t) && !confirmed.iter().any(|c| c == t.as_str()))
        {
            self.put_manifest(repo, tag.as_str(), &contents, media_type)
                .await?;
        }
        if let (Some(subject), false) = (&inspected.subject, registry_indexes_referrers) {
            let mut referrer = inspected.descriptor.clone();
            referrer.artifact_type = inspected.artifact_type.clone();
            referrer.annotations = inspected.annotations.clone();
            self.add_to_referrers_tag(repo, subject, referrer).await?;
        }
        Ok(inspected.descriptor)
    }

    async fn delete_blob(&self, repo: &Repository, digest: &Digest) -> Result<()> {
        let mut call = Call::new(
            Method::DELETE,
            self.uri(&format!("/v2/{repo}/blobs/{digest}"))?,
        );
        self.expect(
            &mut call,
            &Self::scope(repo, "delete"),
            &[StatusCode::ACCEPTED, StatusCode::OK, StatusCode::NO_CONTENT],
            Target::Blob(repo, digest),
        )
        .await?;
        Ok(())
    }

    async fn delete_manifest(&self, repo: &Repository, digest: &Digest) -> Result<()> {
        // A referrer must also leave its subject's referrers tag, on registries without the
        // referrers API: learn its subject before it is gone.
        let subject = match self
            .fetch_manifest(repo, digest.as_str(), Some(digest), false)
            .await
        {
            Ok((descriptor, Some(bytes))) => Manifest::parse(&bytes, &descriptor.media_type)
                .ok()
                .and_then(|m| m.subject().map(|s| s.digest.clone())),
            _ => None,
        };
        let mut call = Call::new(
            Method::DELETE,
            self.uri(&format!("/v2/{repo}/manifests/{digest}"))?,
        );
        self.expect(
            &mut call,
            &Self::scope(repo, "delete"),
            &[StatusCode::ACCEPTED, StatusCode::OK, StatusCode::NO_CONTENT],
            Target::Manifest(repo, digest.as_str()),
        )
        .await?;
        if let Some(subject) = subject {
            self.remove_from_referrers_tag(repo, &subject, digest)
                .await?;
        }
        Ok(())
    }

    async fn delete_tag(&self, repo: &Repository, tag: &Tag) -> Result<()> {
        let mut call = Call::new(
            Method::DELETE,
            self.uri(&format!("/v2/{repo}/manifests/{tag}"))?,
        );
        self.expect(
            &mut call,
            &Self::scope(repo, "delete"),
            &[StatusCode::ACCEPTED, StatusCode::OK, StatusCode::NO_CONTENT],
            Target::Manifest(repo, tag.as_str()),
        )
        .await?;
        Ok(())
    }

    fn repositories(&self, params: &ListParams) -> BoxStream<'static, Result<Repository>> {
        let listing = Listing {
            path: "/v2/_catalog".to_owned(),
            scope: "registry:catalog:*".to_owned(),
            repo: None,
            field: "repositories",
            parse: |name| Repository::parse(name).ok(),
            name_of: Repository::to_string,
        };
        self.list(listing, params)
    }

    fn tags(&self, repo: &Repository, params: &ListParams) -> BoxStream<'static, Result<Tag>> {
        let listing = Listing {
            path: format!("/v2/{repo}/tags/list"),
            scope: Self::scope(repo, "pull"),
            repo: Some(repo.clone()),
            field: "tags",
            parse: |name| Tag::parse(name).ok(),
            name_of: Tag::to_string,
        };
        self.list(listing, params)
    }

    fn referrers(
        &self,
        repo: &Repository,
        digest: &Digest,
        params: &ReferrersParams,
    ) -> BoxStream<'static, Result<Descriptor>> {
        self.list_referrers(repo, digest, params)
    }
}
