//! Reading a layer blob as the tar stream it holds (feature `layers`).
//!
//! Building (flatten, recompress), unpacking and archives all need a layer's uncompressed
//! bytes with both of its digests checked: the blob's digest (the store's verified read
//! does that) and the `diff_id` the image config gives for the uncompressed tar. That is
//! here, once, below every crate that needs it.
//!
//! Tar parsing is synchronous (the `tar` crate reads a `std::io::Read`), so a
//! [`LayerReader`] is a blocking reader: make it in async code, then read it on a blocking
//! thread (`tokio::task::spawn_blocking`), where it pulls the blob's stream through the
//! runtime it was made in.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read};

use oci_types::media_type::Compression;
use oci_types::{Descriptor, Digest, Digester};
use tokio_util::io::SyncIoBridge;

use crate::{BlobReader, Error, Result};

mod entries;
mod merge;
mod opener;
mod paths;
mod write;

pub use entries::{
    EntryKind, LayerLimits, OPAQUE_WHITEOUT, TarEntry, WHITEOUT_PREFIX, clean, read_entries,
    split_name,
};
pub use merge::{ImageMetadata, merge_layers};
pub use opener::{LayerOpener, LayerServer, layer_opener};
pub use paths::{PathMap, PathSet};
pub use write::{EntryMeta, append_entry};

/// The first bytes of a gzip member.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// The first bytes of a zstd frame.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// How many uncompressed bytes one layer may hold unless told otherwise: far above any real
/// layer, low enough that a decompression bomb stops long before it fills a disk.
pub const DEFAULT_LAYER_LIMIT: u64 = 64 << 30;

/// What the first bytes of a blob say its compression is: gzip and zstd by their magic
/// numbers (a zstd skippable frame, `0x184D2A5?` little endian, counts as zstd), anything
/// else as a plain tar.
pub fn sniff_compression(prefix: &[u8]) -> Compression {
    if prefix.starts_with(&GZIP_MAGIC) {
        Compression::Gzip
    } else if prefix.starts_with(&ZSTD_MAGIC) || is_skippable_frame(prefix) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

fn is_skippable_frame(prefix: &[u8]) -> bool {
    prefix.len() >= 4 && prefix[0] & 0xf0 == 0x50 && prefix[1..4] == [0x2a, 0x4d, 0x18]
}

/// A layer's uncompressed tar, read from its blob.
///
/// The compression is chosen by the first bytes (a layer labelled gzip that is a plain tar,
/// as some Docker tools push, is read as what it is; a disagreement with the media type is
/// logged). gzip may have several members, zstd several frames and skippable frames.
/// The blob's own digest is checked by the store's verified read underneath; the
/// uncompressed bytes are hashed as they pass and, when a `diff_id` was given, the read that
/// reaches the end fails with `InvalidData` if they do not match it. A consumer that stops
/// before the end (a tar reader stops at the end-of-archive blocks) calls
/// [`LayerReader::finish`], which reads the rest and checks.
pub struct LayerReader {
    layer: Descriptor,
    source: Source,
    diff: Option<Digester>,
    expected_diff_id: Option<Digest>,
    diff_id: Option<Digest>,
    read: u64,
    limit: u64,
    compression: Option<Compression>,
    /// The content's end was reached.
    ended: bool,
}

enum Source {
    /// Not read yet: the compression is decided by the first read.
    Raw(Option<BufReader<Bridge>>),
    Plain(BufReader<Bridge>),
    Gzip(Box<flate2::bufread::MultiGzDecoder<BufReader<Bridge>>>),
    Zstd(Box<zstd::stream::read::Decoder<'static, BufReader<Bridge>>>),
}

type Bridge = SyncIoBridge<Box<dyn tokio::io::AsyncRead + Send + Unpin>>;

/// Read buffer of the compressed side: large enough to amortise the bridge's round trips.
const COMPRESSED_BUFFER: usize = 256 << 10;

impl LayerReader {
    /// A reader of `blob`'s uncompressed content. Call this where a tokio runtime runs (the
    /// reader pulls the blob's stream through it), then read from a blocking thread.
    /// `diff_id` is what the image config says the uncompressed content hashes to.
    pub fn new(blob: BlobReader, diff_id: Option<Digest>) -> Self {
        let layer = blob.descriptor().clone();
        let read: Box<dyn tokio::io::AsyncRead + Send + Unpin> = Box::new(blob.into_async_read());
        let bridge = SyncIoBridge::new(read);
        let algorithm = diff_id
            .as_ref()
            .map_or(oci_types::Algorithm::Sha256, Digest::algorithm);
        Self {
            layer,
            source: Source::Raw(Some(BufReader::with_capacity(COMPRESSED_BUFFER, bridge))),
            diff: Some(Digester::new(algorithm)),
            expected_diff_id: diff_id,
            diff_id: None,
            read: 0,
            limit: DEFAULT_LAYER_LIMIT,
            compression: None,
            ended: false,
        }
    }

    /// Does not hash the uncompressed content: for a reader that needs only the content or
    /// its size, where the `diff_id` is checked by someone else (a daemon loading the layer)
    /// or does not matter. [`finish`](Self::finish) then has no digest to return.
    #[must_use]
    pub fn unhashed(mut self) -> Self {
        self.diff = None;
        self.expected_diff_id = None;
        self
    }

    /// Refuses more than `max_bytes` of uncompressed content (a decompression bomb).
    #[must_use]
    pub fn with_limit(mut self, max_bytes: u64) -> Self {
        self.limit = max_bytes;
        self
    }

    /// The layer blob's descriptor.
    pub fn layer(&self) -> &Descriptor {
        &self.layer
    }

    /// The compression found in the first bytes, once reading has started.
    pub fn compression(&self) -> Option<Compression> {
        self.compression
    }

    /// Uncompressed bytes read so far.
    pub fn uncompressed_size(&self) -> u64 {
        self.read
    }

    /// Reads whatever is left, checks the `diff_id` if one was given, and returns the digest
    /// of the uncompressed content.
    pub fn finish(mut self) -> Result<Digest> {
        io::copy(&mut self, &mut io::sink()).map_err(|source| self.io_error(source))?;
        self.diff_id.clone().ok_or_else(|| Error::Io {
            context: format!("reading layer {}", self.layer.digest),
            source: io::Error::other("the layer's content did not end"),
        })
    }

    /// An I/O failure of this layer as a store error: a store's own error travels inside the
    /// `io::Error` and comes back out with its code.
    pub fn io_error(&self, source: io::Error) -> Error {
        into_store_error(source, || format!("reading layer {}", self.layer.digest))
    }

    fn start(&mut self) -> io::Result<()> {
        let Source::Raw(raw) = &mut self.source else {
            return Ok(());
        };
        let Some(mut raw) = raw.take() else {
            return Err(io::Error::other("layer reader failed earlier"));
        };
        let found = sniff_compression(raw.fill_buf()?);
        if let Some(labelled) = self.layer.media_type.layer_compression()
            && labelled != found
        {
            tracing::debug!(layer = %self.layer.digest, media_type = %self.layer.media_type,
                ?found, "layer content is not compressed as its media type says; reading what it is");
        }
        self.compression = Some(found);
        self.source = match found {
            Compression::Gzip => Source::Gzip(Box::new(flate2::bufread::MultiGzDecoder::new(raw))),
            Compression::Zstd => {
                Source::Zstd(Box::new(zstd::stream::read::Decoder::with_buffer(raw)?))
            }
            _ => Source::Plain(raw),
        };
        Ok(())
    }

    fn end(&mut self) -> io::Result<()> {
        self.ended = true;
        let Some(digester) = self.diff.take() else {
            return Ok(());
        };
        let actual = digester.finish();
        self.diff_id = Some(actual.clone());
        match &self.expected_diff_id {
            Some(expected) if *expected != actual => Err(io::Error::from(Error::DigestInvalid {
                what: format!("uncompressed layer {}", self.layer.digest),
                expected: expected.clone(),
                actual,
            })),
            _ => Ok(()),
        }
    }
}

impl Read for LayerReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.ended {
            return Ok(0);
        }
        self.start()?;
        let n = match &mut self.source {
            Source::Raw(_) => return Err(io::Error::other("layer reader not started")),
            Source::Plain(inner) => inner.read(buf)?,
            Source::Gzip(inner) => inner.read(buf)?,
            Source::Zstd(inner) => inner.read(buf)?,
        };
        if n == 0 {
            self.end()?;
            return Ok(0);
        }
        self.read += n as u64;
        if self.read > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "layer {} holds more than {} uncompressed bytes (the limit)",
                    self.layer.digest, self.limit
                ),
            ));
        }
        if let Some(digester) = &mut self.diff {
            digester.update(&buf[..n]);
        }
        Ok(n)
    }
}

impl fmt::Debug for LayerReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LayerReader")
            .field("layer", &self.layer.digest)
            .field("compression", &self.compression)
            .field("read", &self.read)
            .finish_non_exhaustive()
    }
}

/// Whether an `io::Error` carries the store's own error (a digest or size check, a read that
/// failed), as a [`LayerReader`] passes it through `std::io::Read`, rather than a failure of
/// whatever read the bytes (a decompressor, a tar parser).
pub fn carries_store_error(error: &io::Error) -> bool {
    error.get_ref().is_some_and(|inner| inner.is::<Error>())
}

/// An `io::Error` back as a store error: the store's own error when one travels inside it
/// (with its code), else an I/O failure with `context`.
pub fn into_store_error(source: io::Error, context: impl FnOnce() -> String) -> Error {
    if !carries_store_error(&source) {
        return Error::Io {
            context: context(),
            source,
        };
    }
    match source.into_inner().map(|inner| inner.downcast::<Error>()) {
        Some(Ok(store)) => *store,
        Some(Err(other)) => Error::Io {
            context: context(),
            source: io::Error::other(other),
        },
        None => Error::Io {
            context: context(),
            source: io::Error::other("unknown failure"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body_from_bytes;
    use bytes::Bytes;
    use oci_types::{MediaType, media_type};
    use std::io::Write;

    fn reader_of(media_type: &'static str, blob: Vec<u8>, diff_id: Option<Digest>) -> LayerReader {
        let descriptor = Descriptor::of_bytes(MediaType::from_static(media_type), &blob);
        LayerReader::new(
            BlobReader::verified(descriptor, body_from_bytes(Bytes::from(blob))),
            diff_id,
        )
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn sha256(data: &[u8]) -> Digest {
        let mut digester = Digester::new(oci_types::Algorithm::Sha256);
        digester.update(data);
        digester.finish()
    }

    async fn read_all(mut reader: LayerReader) -> (io::Result<Vec<u8>>, LayerReader) {
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            let result = reader.read_to_end(&mut out).map(|_| out);
            (result, reader)
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn reads_gzip_members_zstd_frames_and_plain_checking_the_diff_id() {
        let content = b"a tar would be here, but any bytes do".repeat(1000);
        let mut two_members = gzip(&content[..10_000]);
        two_members.extend(gzip(&content[10_000..]));
        let mut frames = zstd::encode_all(&content[..5000], 3).unwrap();
        frames.extend([0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3]); // a skippable frame
        frames.extend(zstd::encode_all(&content[5000..], 3).unwrap());
        for (media_type, blob, kind) in [
            (media_type::OCI_LAYER_GZIP, two_members, Compression::Gzip),
            (media_type::OCI_LAYER_ZSTD, frames, Compression::Zstd),
            (
                media_type::OCI_LAYER_TAR,
                content.clone(),
                Compression::None,
            ),
            // A Docker layer labelled gzip that is a plain tar.
            (
                media_type::DOCKER_LAYER_GZIP,
                content.clone(),
                Compression::None,
            ),
        ] {
            let reader = reader_of(media_type, blob, Some(sha256(&content)));
            let (out, reader) = read_all(reader).await;
            assert_eq!(out.unwrap(), content, "{media_type}");
            assert_eq!(reader.compression(), Some(kind));
            assert_eq!(reader.finish().unwrap(), sha256(&content));
        }
    }

    #[tokio::test]
    async fn an_unhashed_reader_gives_the_content_and_ignores_the_diff_id() {
        let content = b"only the size is wanted".repeat(500);
        let wrong = sha256(b"something else");
        let reader = reader_of(media_type::OCI_LAYER_GZIP, gzip(&content), Some(wrong)).unhashed();
        let (out, reader) = read_all(reader).await;
        assert_eq!(out.unwrap(), content);
        assert_eq!(reader.uncompressed_size(), content.len() as u64);
        // Reading on after the end gives nothing more.
        let (more, _) = read_all(reader).await;
        assert!(more.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_wrong_diff_id_fails_the_read_that_reaches_the_end() {
        let content = b"layer".repeat(100);
        let reader = reader_of(
            media_type::OCI_LAYER_GZIP,
            gzip(&content),
            Some(sha256(b"something else")),
        );
        let (out, reader) = read_all(reader).await;
        let error = reader.io_error(out.unwrap_err());
        assert_eq!(
            error.code(),
            Some(crate::ErrorCode::DigestInvalid),
            "{error}"
        );
        assert!(error.to_string().contains("uncompressed layer"), "{error}");
    }

    #[tokio::test]
    async fn finish_drains_what_a_consumer_left_and_checks() {
        let content = b"0123456789".repeat(10_000);
        let mut reader = reader_of(
            media_type::OCI_LAYER_GZIP,
            gzip(&content),
            Some(sha256(b"not it")),
        );
        let result = tokio::task::spawn_blocking(move || {
            let mut first = [0u8; 10];
            reader.read_exact(&mut first).unwrap();
            reader.finish()
        })
        .await
        .unwrap();
        assert_eq!(
            result.unwrap_err().code(),
            Some(crate::ErrorCode::DigestInvalid)
        );
    }

    #[tokio::test]
    async fn a_corrupt_blob_fails_with_the_stores_code() {
        let content = gzip(&b"x".repeat(100_000));
        let mut descriptor =
            Descriptor::of_bytes(MediaType::from_static(media_type::OCI_LAYER_GZIP), &content);
        descriptor.digest = sha256(b"other");
        let reader = LayerReader::new(
            BlobReader::verified(descriptor, body_from_bytes(Bytes::from(content))),
            None,
        );
        let (out, reader) = read_all(reader).await;
        let error = reader.io_error(out.unwrap_err());
        assert_eq!(
            error.code(),
            Some(crate::ErrorCode::DigestInvalid),
            "{error}"
        );
    }

    #[tokio::test]
    async fn the_limit_stops_a_decompression_bomb() {
        let bomb = gzip(&vec![0u8; 4 << 20]);
        let reader = reader_of(media_type::OCI_LAYER_GZIP, bomb, None).with_limit(1 << 20);
        let (out, _) = read_all(reader).await;
        let error = out.unwrap_err();
        assert!(error.to_string().contains("limit"), "{error}");
    }

    #[test]
    fn sniffing() {
        assert_eq!(sniff_compression(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(sniff_compression(&ZSTD_MAGIC), Compression::Zstd);
        assert_eq!(
            sniff_compression(&[0x5e, 0x2a, 0x4d, 0x18]),
            Compression::Zstd
        );
        assert_eq!(sniff_compression(b"etc/\0\0\0"), Compression::None);
        assert_eq!(sniff_compression(&[]), Compression::None);
    }
}
