//! Blob URLs: where a client may fetch a blob's bytes itself, without the server in the way.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use oci_types::Digest;

use crate::Result;

/// A store whose content can be fetched from somewhere other than the process serving it: an
/// object store that signs URLs (S3, GCS, Azure), a CDN in front of a bucket.
///
/// A registry server answers a blob GET with a redirect to [`blob_url`](Self::blob_url) when
/// one is given, so that the bytes go from the storage to the client directly. The server still
/// decides who may read what, and checks that the repository holds the blob, before it asks
/// for a URL: the URL names content only, and anyone holding it can read that content until
/// it expires. The client verifies the digest of what it downloads, as it does for any blob.
#[async_trait]
pub trait BlobLocator: Send + Sync + fmt::Debug {
    /// A URL from which a plain GET, without credentials, returns the bytes of the content
    /// `digest` for at least `valid_for`; `None` when this content has no such URL (the
    /// server then streams the blob itself).
    async fn blob_url(&self, digest: &Digest, valid_for: Duration) -> Result<Option<String>>;
}
