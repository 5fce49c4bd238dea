//! [`LayoutOptions`]: how a [`LayoutStore`](crate::LayoutStore) is opened.

use oci_types::Repository;

/// The repository that bare-tag entries belong to when the store is opened without naming one.
pub const DEFAULT_REPOSITORY: &str = "default";

/// How to open a [`LayoutStore`](crate::LayoutStore).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LayoutOptions {
    /// The repository that entries named by a bare tag (or by nothing) belong to, and whose
    /// tags hoist writes as bare tags: what skopeo, umoci and oras read and write.
    pub default_repository: Repository,
    /// How many bytes one read of a blob file takes ([`DEFAULT_READ_BUFFER`] unless set): a
    /// read holds a few such buffers, so larger ones cost memory per concurrent read and gain
    /// speed (a server streaming large blobs to many clients, as `hoist serve` sets it).
    pub read_buffer: usize,
    /// Whether the store's short file work runs on the calling task instead of tokio's blocking
    /// pool: reading metadata and small files (the `oci-layout` file, `index.json`, manifests,
    /// configs), updating `index.json` and deleting; `false` by default. For a program that
    /// makes one short request on a current-thread runtime, as `hoist digest` does, handing
    /// each step to another thread and back costs more than the step; anything that runs
    /// requests side by side (a server, a copy) must leave it off, since the step then holds up
    /// every other task. Blobs over 4 MiB are read on the pool either way, and blob content is
    /// always written there.
    pub inline_io: bool,
}

/// [`LayoutOptions::read_buffer`] within what a read can use: at least 4 KiB (a zero would
/// divide by zero), at most 64 MiB (a few such buffers are held per read).
pub(crate) fn usable_read_buffer(bytes: usize) -> usize {
    bytes.clamp(4 << 10, 64 << 20)
}

/// The default of [`LayoutOptions::read_buffer`]: four parallel reads (a push of four blobs at
/// once) stay within oras's memory; smaller pieces cost more in hand-offs to the blocking
/// threads than they save.
pub const DEFAULT_READ_BUFFER: usize = 128 << 10;

impl Default for LayoutOptions {
    fn default() -> Self {
        Self {
            // A constant known to be a valid name.
            default_repository: Repository::parse(DEFAULT_REPOSITORY)
                .unwrap_or_else(|_| unreachable!("DEFAULT_REPOSITORY is a valid name")),
            read_buffer: DEFAULT_READ_BUFFER,
            inline_io: false,
        }
    }
}

impl LayoutOptions {
    /// Sets the default repository.
    pub fn with_default_repository(mut self, repository: Repository) -> Self {
        self.default_repository = repository;
        self
    }

    /// Sets the size of blob reads (used within 4 KiB..64 MiB).
    pub fn with_read_buffer(mut self, bytes: usize) -> Self {
        self.read_buffer = bytes;
        self
    }

    /// Sets [`inline_io`](Self::inline_io).
    pub fn with_inline_io(mut self, inline: bool) -> Self {
        self.inline_io = inline;
        self
    }
}
