//! What a copy is told (`CopyOptions`, `PlatformFilter`, `Endpoint`) and what it tells
//! (`CopyEvent`s as it goes, a `CopyReport` at the end).

use std::fmt;
use std::sync::Arc;

use oci_store::OciInterface;
use oci_types::{Descriptor, Digest, Platform, Repository, Tag};

/// Which platforms of an index to copy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum PlatformFilter {
    /// Every child, and the index itself unchanged (its digest is preserved).
    #[default]
    All,
    /// The best match for each platform. With one platform the copy is that platform's image
    /// manifest alone; with several, a new index of the chosen children (a new digest).
    Only(Vec<Platform>),
}

/// What happened during a copy, for progress displays. Sizes are in bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CopyEvent {
    /// Planning is done: this many blobs of this many bytes will be looked at.
    Planned {
        /// Blobs to check, transfer or mount.
        blobs: usize,
        /// Their total size.
        bytes: u64,
    },
    /// A blob transfer began.
    BlobStarted {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// Bytes of a blob went through (an increment, not a total).
    BlobProgress {
        /// The blob.
        digest: Digest,
        /// Bytes since the last event for this blob.
        bytes: u64,
    },
    /// A blob was transferred and verified by the target.
    BlobDone {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// The target already had the blob.
    BlobSkipped {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// The target mounted the blob from the source repository.
    BlobMounted {
        /// The blob.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// A manifest was pushed (with these tags).
    ManifestPushed {
        /// The manifest.
        digest: Digest,
        /// The tags pointed at it.
        tags: Vec<Tag>,
    },
    /// The target already had the manifest (and no tag was to be set on it).
    ManifestSkipped {
        /// The manifest.
        digest: Digest,
    },
}

/// Receives [`CopyEvent`]s; called from the copy's tasks, so it must be quick.
pub type ProgressSink = Arc<dyn Fn(&CopyEvent) + Send + Sync>;

/// How to copy: [`CopyOptions::default`], then the `with_` methods for what differs.
#[derive(Clone)]
#[non_exhaustive]
pub struct CopyOptions {
    /// Which platforms of an index to copy (default: all).
    pub platforms: PlatformFilter,
    /// Also copy the manifests that refer to what is copied (signatures, SBOMs,
    /// attestations), recursively.
    pub referrers: bool,
    /// How many blobs may transfer at once (at least 1; default 4).
    pub jobs: usize,
    /// Try a cross-repository mount before uploading: set it when source and target are the
    /// same registry (or the same store), where a mount saves the whole transfer.
    pub mount: bool,
    /// Where progress events go.
    pub progress: Option<ProgressSink>,
}

impl Default for CopyOptions {
    fn default() -> Self {
        Self {
            platforms: PlatformFilter::All,
            referrers: false,
            jobs: 4,
            mount: false,
            progress: None,
        }
    }
}

impl CopyOptions {
    /// Which platforms of an index to copy.
    pub fn with_platforms(mut self, platforms: PlatformFilter) -> Self {
        self.platforms = platforms;
        self
    }

    /// Whether to copy the manifests that refer to what is copied, recursively.
    pub fn with_referrers(mut self, referrers: bool) -> Self {
        self.referrers = referrers;
        self
    }

    /// How many blobs may transfer at once (0 is taken as 1).
    pub fn with_jobs(mut self, jobs: usize) -> Self {
        self.jobs = jobs;
        self
    }

    /// Whether to try a cross-repository mount before uploading.
    pub fn with_mount(mut self, mount: bool) -> Self {
        self.mount = mount;
        self
    }

    /// Where progress events go.
    pub fn with_progress(mut self, progress: Option<ProgressSink>) -> Self {
        self.progress = progress;
        self
    }
}

impl fmt::Debug for CopyOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CopyOptions")
            .field("platforms", &self.platforms)
            .field("referrers", &self.referrers)
            .field("jobs", &self.jobs)
            .field("mount", &self.mount)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// What a copy did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CopyReport {
    /// The manifest the target's tags now point at (or that was pushed by digest). It differs
    /// from the source's when a platform was selected or a schema 1 manifest converted.
    pub root: Option<Descriptor>,
    /// Manifests pushed.
    pub manifests_pushed: usize,
    /// Manifests the target already had.
    pub manifests_skipped: usize,
    /// Referrers found and copied (or already there).
    pub referrers: usize,
    /// Blobs transferred.
    pub blobs_copied: usize,
    /// Bytes transferred.
    pub bytes_copied: u64,
    /// Blobs the target already had.
    pub blobs_skipped: usize,
    /// Blobs mounted from the source repository.
    pub blobs_mounted: usize,
}

/// One end of a copy: a store and a repository in it ([`Endpoint::new`]).
#[derive(Clone, Copy)]
#[non_exhaustive]
pub struct Endpoint<'a> {
    /// The store.
    pub store: &'a dyn OciInterface,
    /// The repository.
    pub repo: &'a Repository,
}

impl fmt::Debug for Endpoint<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.store, self.repo)
    }
}

impl<'a> Endpoint<'a> {
    /// The repository `repo` of `store`.
    pub fn new(store: &'a dyn OciInterface, repo: &'a Repository) -> Self {
        Self { store, repo }
    }
}
