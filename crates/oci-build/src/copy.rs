//! Copying images between any two stores.
//!
//! A copy runs in three phases, so that a failure never leaves a tag pointing at something
//! incomplete:
//! 1. **Plan**: read the manifests from the source (index children, referrers), choose
//!    platforms, convert schema 1, and list the blobs and manifests the target needs.
//!    Manifests the target already has are not walked again: a store only accepts a manifest
//!    whose blobs it has, so their blobs are there too.
//! 2. **Blobs**: transfer them in parallel (at most `jobs` at once), skipping those the target
//!    has and mounting them where the target can; the first failure cancels the rest.
//! 3. **Manifests**: push them children first, so that each one is complete when it lands,
//!    and the tagged root last.

use std::collections::HashSet;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use oci_store::{ErrorCode, PushManifestParams, ReferrersParams, body_from_bytes};
use oci_types::{Descriptor, Digest, ImageIndex, Manifest, ManifestRef, Tag};
use tracing::{debug, warn};

use crate::error::{Error, Result};
use crate::platform::{MAX_DEPTH, RawManifest, is_v2, read_manifest, require_child};
use crate::schema1;

mod options;

pub use options::{CopyEvent, CopyOptions, CopyReport, Endpoint, PlatformFilter, ProgressSink};

/// Copies the manifest `reference` of `src` (and everything it needs) to `dst`, pointing
/// `tags` at it there (none: push by digest only).
///
/// ```no_run
/// # async fn demo(src: &dyn oci_store::OciInterface, dst: &dyn oci_store::OciInterface)
/// # -> Result<(), Box<dyn std::error::Error>> {
/// use oci_build::{CopyOptions, Endpoint, ManifestRef, copy};
/// use oci_types::{Repository, Tag};
/// let repo = Repository::parse("library/alpine")?;
/// let tag = Tag::parse("3.20")?;
/// let report = copy(
///     Endpoint::new(src, &repo),
///     &ManifestRef::Tag(tag.clone()),
///     Endpoint::new(dst, &repo),
///     &[tag],
///     &CopyOptions::default(),
/// )
/// .await?;
/// println!("{} bytes copied", report.bytes_copied);
/// # Ok(()) }
/// ```
pub async fn copy(
    src: Endpoint<'_>,
    reference: &ManifestRef,
    dst: Endpoint<'_>,
    tags: &[Tag],
    options: &CopyOptions,
) -> Result<CopyReport> {
    let mut copier = Copier {
        src,
        dst,
        options,
        plan: Plan::default(),
        report: CopyReport::default(),
    };
    let root = read_manifest(src.store, src.repo, reference).await?;
    let root = copier.plan_root(root, tags).await?;
    copier.transfer_blobs().await?;
    copier.push_manifests().await?;
    copier.report.root = Some(root);
    Ok(copier.report)
}

/// A blob the target may need.
#[derive(Debug)]
enum BlobJob {
    /// Read from the source.
    FromSource(Descriptor),
    /// Made during the copy (a converted schema 1 config).
    Generated(Descriptor, Bytes),
}

impl BlobJob {
    fn descriptor(&self) -> &Descriptor {
        match self {
            Self::FromSource(d) | Self::Generated(d, _) => d,
        }
    }
}

/// A manifest to push.
#[derive(Debug)]
struct ManifestJob {
    manifest: RawManifest,
    tags: Vec<Tag>,
    /// The target already has it: push only to set tags.
    present: bool,
}

#[derive(Debug, Default)]
struct Plan {
    blobs: Vec<BlobJob>,
    blob_digests: HashSet<Digest>,
    /// Push order: children before parents, subjects before referrers.
    manifests: Vec<ManifestJob>,
    manifest_digests: HashSet<Digest>,
    /// The bytes of `manifests`, held until they are pushed.
    manifest_bytes: u64,
}

/// The most manifests one copy plans, and the most bytes of them it holds until they are
/// pushed: far beyond any real image (an index of a few dozen platforms with their
/// attestations and signatures), and a bound on what a hostile source can make a copy hold by
/// serving ever wider indexes.
const MAX_PLANNED_MANIFESTS: usize = 100_000;
const MAX_PLANNED_MANIFEST_BYTES: u64 = 1 << 30;

impl Plan {
    fn add_blob(&mut self, job: BlobJob) {
        if self.blob_digests.insert(job.descriptor().digest.clone()) {
            self.blobs.push(job);
        }
    }
}

struct Copier<'a> {
    src: Endpoint<'a>,
    dst: Endpoint<'a>,
    options: &'a CopyOptions,
    plan: Plan,
    report: CopyReport,
}

/// True for the errors that mean "the target does not have it".
fn is_absent(error: &oci_store::Error) -> bool {
    matches!(
        error.code(),
        Some(ErrorCode::BlobUnknown | ErrorCode::ManifestUnknown | ErrorCode::NameUnknown)
    )
}

impl Copier<'_> {
    fn emit(&self, event: CopyEvent) {
        if let Some(sink) = &self.options.progress {
            sink(&event);
        }
    }

    /// Plans the manifest asked for, applying the platform filter if it is an index, and
    /// returns the descriptor that the tags will point at.
    async fn plan_root(&mut self, root: RawManifest, tags: &[Tag]) -> Result<Descriptor> {
        let root = self.convert_schema1(root).await?;
        let wanted = match &self.options.platforms {
            PlatformFilter::Only(wanted) if root.descriptor.media_type.is_index() => wanted.clone(),
            _ => return self.plan_manifest(root, tags.to_vec(), 0).await,
        };
        let Manifest::Index(index) = root.parse(self.src.repo)? else {
            return self.plan_manifest(root, tags.to_vec(), 0).await;
        };
        let mut chosen: Vec<Descriptor> = Vec::new();
        for platform in &wanted {
            let child = require_child(&index, platform, self.src.repo, &root.descriptor.digest)?;
            debug!(%platform, child = %child.digest, "platform selected");
            if !chosen.iter().any(|c| c.digest == child.digest) {
                chosen.push(child.clone());
            }
        }
        if let [only] = chosen.as_slice() {
            // One platform: the copy is that image, as `crane copy --platform` and
            // `skopeo copy` make it.
            let child = read_manifest(
                self.src.store,
                self.src.repo,
                &ManifestRef::Digest(only.digest.clone()),
            )
            .await?;
            return self.plan_manifest(child, tags.to_vec(), 1).await;
        }
        // Several: a new index of the chosen children, in the source's order and format.
        chosen.sort_by_key(|c| index.manifests.iter().position(|m| m.digest == c.digest));
        let mut narrowed: ImageIndex = index;
        narrowed.manifests = chosen;
        let bytes = Bytes::from(narrowed.to_json());
        let narrowed = RawManifest {
            descriptor: Descriptor::of_bytes(root.descriptor.media_type.clone(), &bytes),
            bytes,
        };
        self.plan_manifest(narrowed, tags.to_vec(), 0).await
    }

    /// Converts a schema 1 manifest to schema 2 (reading its layers to compute the config);
    /// passes v2 manifests through, and refuses what is neither.
    async fn convert_schema1(&mut self, manifest: RawManifest) -> Result<RawManifest> {
        let media_type = &manifest.descriptor.media_type;
        if is_v2(media_type) {
            return Ok(manifest);
        }
        if media_type.is_schema1() {
            let converted = schema1::convert(self.src.store, self.src.repo, &manifest).await?;
            self.plan.add_blob(BlobJob::Generated(
                converted.config_descriptor,
                converted.config,
            ));
            return Ok(converted.manifest);
        }
        Err(self.unsupported(&manifest))
    }

    fn unsupported(&self, manifest: &RawManifest) -> Error {
        Error::UnsupportedManifest {
            repo: self.src.repo.clone(),
            digest: manifest.descriptor.digest.clone(),
            media_type: manifest.descriptor.media_type.to_string(),
            action: "copy",
        }
    }

    /// Plans one manifest and, unless the target has it, what it needs; then its referrers.
    fn plan_manifest<'s>(
        &'s mut self,
        manifest: RawManifest,
        tags: Vec<Tag>,
        depth: usize,
    ) -> futures::future::BoxFuture<'s, Result<Descriptor>> {
        Box::pin(async move {
            let manifest = self.convert_schema1(manifest).await?;
            let digest = manifest.descriptor.digest.clone();
            if depth > MAX_DEPTH {
                return Err(Error::TooDeep {
                    repo: self.src.repo.clone(),
                    digest,
                    limit: MAX_DEPTH,
                });
            }
            if !self.plan.manifest_digests.insert(digest.clone()) {
                return Ok(manifest.descriptor);
            }
            let present = match self
                .dst
                .store
                .resolve_manifest(self.dst.repo, &digest)
                .await
            {
                Ok(_) => true,
                Err(error) if is_absent(&error) => false,
                Err(error) => {
                    return Err(Error::store(
                        format!(
                            "checking for manifest {digest} in {}/{}",
                            self.dst.store, self.dst.repo
                        ),
                        error,
                    ));
                }
            };
            if !present {
                match manifest.parse(self.src.repo)? {
                    Manifest::Image(image) => {
                        self.plan
                            .add_blob(BlobJob::FromSource(image.config.clone()));
                        for layer in &image.layers {
                            self.plan.add_blob(BlobJob::FromSource(layer.clone()));
                        }
                    }
                    Manifest::Index(index) => {
                        for child in &index.manifests {
                            let raw = read_manifest(
                                self.src.store,
                                self.src.repo,
                                &ManifestRef::Digest(child.digest.clone()),
                            )
                            .await?;
                            self.plan_manifest(raw, Vec::new(), depth + 1).await?;
                        }
                    }
                    _ => return Err(self.unsupported(&manifest)),
                }
            }
            let descriptor = manifest.descriptor.clone();
            self.plan.manifest_bytes += manifest.bytes.len() as u64;
            if self.plan.manifests.len() >= MAX_PLANNED_MANIFESTS
                || self.plan.manifest_bytes > MAX_PLANNED_MANIFEST_BYTES
            {
                return Err(Error::Invalid {
                    message: format!(
                        "copying {}/{}: more than {MAX_PLANNED_MANIFESTS} manifests or \
                         {MAX_PLANNED_MANIFEST_BYTES} bytes of them, more than any image holds",
                        self.src.store, self.src.repo
                    ),
                });
            }
            self.plan.manifests.push(ManifestJob {
                manifest,
                tags,
                present,
            });
            if self.options.referrers {
                self.plan_referrers(&descriptor.digest, depth).await?;
            }
            Ok(descriptor)
        })
    }

    /// Plans the manifests whose subject is `subject`, recursively.
    async fn plan_referrers(&mut self, subject: &Digest, depth: usize) -> Result<()> {
        let listing: Vec<oci_store::Result<Descriptor>> = self
            .src
            .store
            .referrers(self.src.repo, subject, &ReferrersParams::default())
            .collect()
            .await;
        for referrer in listing {
            let referrer = match referrer {
                Ok(referrer) => referrer,
                Err(error) if error.code() == Some(ErrorCode::Unsupported) => {
                    warn!(%subject, "the source cannot list referrers: {error}");
                    return Ok(());
                }
                Err(error) => {
                    return Err(Error::store(
                        format!(
                            "listing referrers of {subject} in {}/{}",
                            self.src.store, self.src.repo
                        ),
                        error,
                    ));
                }
            };
            self.report.referrers += 1;
            let raw = read_manifest(
                self.src.store,
                self.src.repo,
                &ManifestRef::Digest(referrer.digest.clone()),
            )
            .await?;
            self.plan_manifest(raw, Vec::new(), depth + 1).await?;
        }
        Ok(())
    }

    /// Phase 2: every planned blob, `jobs` at a time; the first failure drops (cancels) the
    /// transfers still running.
    async fn transfer_blobs(&mut self) -> Result<()> {
        let jobs = std::mem::take(&mut self.plan.blobs);
        self.emit(CopyEvent::Planned {
            blobs: jobs.len(),
            // Sizes come from the source's manifests: a sum past u64 is "too many to count".
            bytes: jobs
                .iter()
                .fold(0u64, |sum, job| sum.saturating_add(job.descriptor().size)),
        });
        let this = &*self;
        let outcomes: Vec<Outcome> = futures::stream::iter(jobs)
            .map(|job| this.transfer_blob(job))
            .buffer_unordered(self.options.jobs.max(1))
            .try_collect()
            .await?;
        for outcome in outcomes {
            match outcome {
                Outcome::Skipped => self.report.blobs_skipped += 1,
                Outcome::Mounted => self.report.blobs_mounted += 1,
                Outcome::Copied(bytes) => {
                    self.report.blobs_copied += 1;
                    self.report.bytes_copied += bytes;
                }
            }
        }
        Ok(())
    }

    async fn transfer_blob(&self, job: BlobJob) -> Result<Outcome> {
        let descriptor = job.descriptor().clone();
        let digest = descriptor.digest.clone();
        let (src, dst) = (self.src, self.dst);
        match dst.store.resolve_blob(dst.repo, &digest).await {
            Ok(_) => {
                self.emit(CopyEvent::BlobSkipped {
                    digest,
                    size: descriptor.size,
                });
                return Ok(Outcome::Skipped);
            }
            Err(error) if is_absent(&error) => {}
            Err(error) => {
                return Err(Error::store(
                    format!("checking for blob {digest} in {}/{}", dst.store, dst.repo),
                    error,
                ));
            }
        }
        if self.options.mount && matches!(job, BlobJob::FromSource(_)) && src.repo != dst.repo {
            match dst.store.mount_blob(src.repo, dst.repo, &digest).await {
                Ok(_) => {
                    self.emit(CopyEvent::BlobMounted {
                        digest,
                        size: descriptor.size,
                    });
                    return Ok(Outcome::Mounted);
                }
                Err(error) => debug!(%digest, "mount refused, uploading instead: {error}"),
            }
        }
        self.emit(CopyEvent::BlobStarted {
            digest: digest.clone(),
            size: descriptor.size,
        });
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.send_blob(&job).await {
                Ok(()) => break,
                // The body streamed once and is gone; the source can give it again. The
                // target may have learned from the failure (a registry that refused a big
                // PUT with 413 gets chunks next time).
                Err(error) if attempt < TRANSFER_ATTEMPTS && worth_another_attempt(&error) => {
                    warn!(%digest, attempt, "blob transfer failed, sending it again: {error}");
                }
                Err(error) => {
                    return Err(Error::store(
                        format!(
                            "copying blob {digest} from {}/{} to {}/{}",
                            src.store, src.repo, dst.store, dst.repo
                        ),
                        error,
                    ));
                }
            }
        }
        self.emit(CopyEvent::BlobDone {
            digest,
            size: descriptor.size,
        });
        Ok(Outcome::Copied(descriptor.size))
    }

    /// One attempt at streaming a blob from the source into the target.
    async fn send_blob(&self, job: &BlobJob) -> oci_store::Result<()> {
        let (src, dst) = (self.src, self.dst);
        let descriptor = job.descriptor();
        let body = match job {
            BlobJob::Generated(_, bytes) => body_from_bytes(bytes.clone()),
            BlobJob::FromSource(_) => src
                .store
                .get_blob(src.repo, &descriptor.digest)
                .await?
                // The target's push verifies the content: hashed once, there.
                .into_stream_for_push(),
        };
        let body = match self.options.progress.clone() {
            Some(sink) => {
                let digest = descriptor.digest.clone();
                // Keeps what the body verifies itself, if anything, so that the target does
                // not hash the content a second time, and the file it lies in, if any, so
                // that the target can send it unread.
                body.on_progress(move |bytes| {
                    sink(&CopyEvent::BlobProgress {
                        digest: digest.clone(),
                        bytes,
                    });
                })
            }
            None => body,
        };
        dst.store.push_blob(dst.repo, descriptor, body).await?;
        Ok(())
    }

    /// Phase 3: the manifests in plan order (children first, the tagged root after them).
    async fn push_manifests(&mut self) -> Result<()> {
        let (dst, store_name) = (self.dst, self.dst.store.to_string());
        for job in std::mem::take(&mut self.plan.manifests) {
            let digest = job.manifest.descriptor.digest.clone();
            if job.present && job.tags.is_empty() {
                self.report.manifests_skipped += 1;
                self.emit(CopyEvent::ManifestSkipped { digest });
                continue;
            }
            let params = PushManifestParams::new()
                .with_tags(job.tags.iter().cloned())
                .with_digest(digest.clone());
            dst.store
                .push_manifest(
                    dst.repo,
                    job.manifest.bytes,
                    &job.manifest.descriptor.media_type,
                    &params,
                )
                .await
                .map_err(|e| {
                    Error::store(
                        format!("pushing manifest {digest} to {store_name}/{}", dst.repo),
                        e,
                    )
                })?;
            self.report.manifests_pushed += 1;
            self.emit(CopyEvent::ManifestPushed {
                digest,
                tags: job.tags,
            });
        }
        Ok(())
    }
}

/// How many times a blob transfer is tried when the failure may pass.
const TRANSFER_ATTEMPTS: usize = 2;

/// Failures another attempt may get past: the network or the target was unavailable (the
/// stores' own retries already gave up once), or the target refused a whole-blob upload as
/// too large (413), which a registry client answers by sending chunks next time. A source
/// that gave wrong content is not among them.
fn worth_another_attempt(error: &oci_store::Error) -> bool {
    !matches!(
        error.code(),
        Some(ErrorCode::DigestInvalid | ErrorCode::SizeInvalid)
    ) && (error.is_unavailable() || error.http_status() == 413)
}

enum Outcome {
    Skipped,
    Mounted,
    Copied(u64),
}
