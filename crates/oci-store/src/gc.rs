//! What a garbage collection of a store is asked to do: the options every store's collection
//! shares (`LayoutStore::gc`, `BucketStore::gc`). What each one removes differs, so each
//! reports in a type of its own.

use std::time::Duration;

/// How a store's garbage collection runs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GcOptions {
    /// Report what would be removed without removing it.
    pub dry_run: bool,
    /// Content, uploads and temporary files younger than this are kept even when nothing
    /// needs them: a push may be about to send the manifest that does (blob pushes take no
    /// lock). For a store shared over the network it must also exceed the clock difference
    /// between this host and the store. Default: one hour.
    pub grace: Duration,
}

impl Default for GcOptions {
    fn default() -> Self {
        Self {
            dry_run: false,
            grace: Duration::from_secs(3600),
        }
    }
}

impl GcOptions {
    /// Only report.
    pub fn with_dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Sets the grace period.
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }
}
