//! Chunked uploads whose whole state lives in the bucket, so that any replica can continue
//! one that another started.
//!
//! An upload `ID` is a set of objects under `uploads/ID/`:
//! - `state-GEN`: JSON with the repository, the store's multipart upload id, the parts written
//!   (their ETags, or their object names on a store without multipart uploads), the tail and
//!   the running SHA-256 of everything before it ([`Sha256State`]);
//! - `tail-GEN`: the bytes after the last part (less than a part), written when a writer
//!   closes, since a part other than the last must be at least 5 MiB on S3: a tail, then up
//!   to 32 segments, each what one writer added after it. A writer that adds a few bytes to
//!   an upload writes those bytes, not the whole tail again, and reads the tail only when it
//!   makes a part of it, joins the segments into one tail (every 32 writers), or commits;
//!   a client sending one small chunk per request thus costs about a 32nd of a part per
//!   request in storage traffic, not a part;
//! - `part-GEN-N`: the parts themselves, on stores without multipart uploads;
//! - `data`: the multipart upload's target, or the parts joined, until it is verified and
//!   copied to its content-addressed name.
//!
//! Every object is written create-only, and a writer takes the upload over by creating the
//! next generation of its state before it writes anything: of two writers that resumed the
//! same upload, the second to write finds the generation taken and fails with
//! `RANGE_INVALID`, never mixing its bytes into the other's. A writer removes the state it
//! superseded, so one that stalled can still write a generation after a newer writer removed
//! it; such a state is never the newest, and its writer removes the tail and segments it read
//! only when its own state is the newest, since the newer writer's state may still name them.
//! (Only a writer stalled for longer than another takes to resume and write the same part
//! number could still replace that part in a multipart upload; S3 then refuses the
//! completion, since the ETag of the part differs from the one recorded.)

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::StreamExt;
use object_store::multipart::PartId;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload, WriteMultipart};
use oci_store::{BlobWriter, Error, Result};
use oci_types::{Algorithm, Descriptor, Digest, Repository};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::hash::Sha256State;
use crate::keys::last_segment;
use crate::store::BucketStore;

/// A fresh upload id: 128 random bits in hex.
pub(crate) fn new_id() -> String {
    format!("{:032x}", rand::rng().random::<u128>())
}

fn valid_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[derive(Serialize, Deserialize)]
struct UploadState {
    repo: String,
    generation: u64,
    /// Seconds since the epoch when the upload started (for the collection of abandoned ones).
    started: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    multipart: Option<String>,
    parts: Vec<Part>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tail: Option<Tail>,
    /// What writers added after the tail, each an object of its own, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    segments: Vec<Tail>,
    /// The running hash of the parts, the tail and the segments.
    sha256: Sha256State,
}

#[derive(Serialize, Deserialize)]
struct Part {
    /// The ETag of a multipart part, or the name of a part object.
    id: String,
    size: u64,
}

#[derive(Serialize, Deserialize)]
struct Tail {
    generation: u64,
    size: u64,
}

/// At most this many segments follow the tail; a writer adding one more joins them all into
/// a new tail instead.
const MAX_SEGMENTS: usize = 32;

impl UploadState {
    /// The bytes after the parts, kept as the tail and its segments (a sum past u64 is a
    /// corrupt state, refused on resume).
    fn stored_size(&self) -> u64 {
        self.tail
            .iter()
            .chain(&self.segments)
            .fold(0u64, |sum, t| sum.saturating_add(t.size))
    }

    fn parts_size(&self) -> u64 {
        // Read from the bucket: a sum past u64 is a corrupt state, refused on resume.
        self.parts
            .iter()
            .fold(0u64, |sum, p| sum.saturating_add(p.size))
    }
}

fn state_name(generation: u64) -> String {
    format!("state-{generation:020}")
}

fn tail_name(generation: u64) -> String {
    format!("tail-{generation:020}")
}

/// Where an upload's content is once its parts are put together.
enum Assembled {
    /// All of it is in the writer's buffer (less than a part).
    InBuffer,
    /// At `data`, a completed multipart upload of the parts as recorded (the storage checks
    /// each part against its ETag).
    Completed(Path),
    /// At `data`, joined from part objects through this process and checked on the way.
    Joined(Path),
}

/// A chunked upload into a [`BucketStore`].
pub(crate) struct BucketWriter {
    store: BucketStore,
    repo: Repository,
    id: String,
    /// The state as last read or written; its generation is this writer's once `owned`.
    state: UploadState,
    owned: bool,
    /// The bytes after the last part that are not stored in the tail and its segments: all
    /// of them once those are read (`state.tail` and `state.segments` are then empty).
    buffer: BytesMut,
    /// Objects read into `buffer` and no longer named by the state: removed once a state
    /// without them is written.
    superseded: Vec<String>,
    /// How many leading bytes of `buffer` `state.sha256` covers already (a resumed tail).
    hashed: usize,
    chunk_size: usize,
    /// Whether anything was written since the state was read.
    dirty: bool,
}

impl BucketWriter {
    pub(crate) async fn start(
        store: BucketStore,
        repo: &Repository,
        chunk_size: Option<usize>,
    ) -> Result<Self> {
        let id = new_id();
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let state = UploadState {
            repo: repo.to_string(),
            generation: 0,
            started,
            multipart: None,
            parts: Vec::new(),
            tail: None,
            segments: Vec::new(),
            sha256: Sha256State::default(),
        };
        let mut writer = Self::new(store, repo, id, state, chunk_size);
        writer.write_state(0).await?;
        writer.owned = true;
        tracing::debug!(upload = %writer.id, %repo, "upload started");
        Ok(writer)
    }

    pub(crate) async fn resume(
        store: BucketStore,
        repo: &Repository,
        id: &str,
        offset: Option<u64>,
        chunk_size: Option<usize>,
    ) -> Result<Self> {
        let unknown = || Error::BlobUploadUnknown {
            repo: repo.clone(),
            id: id.to_owned(),
        };
        if !valid_id(id) {
            return Err(unknown());
        }
        let inner = &store.inner;
        let latest = latest_state(&store, id).await?.ok_or_else(unknown)?;
        let path = inner.keys.upload_file(id, &state_name(latest));
        let state: UploadState = inner.get_json(&path).await?.ok_or_else(unknown)?;
        if state.repo != repo.as_str() {
            return Err(unknown());
        }
        let stored = state.stored_size();
        if !state.sha256.is_consistent()
            || state.sha256.len() != state.parts_size().saturating_add(stored)
            || state.segments.len() > MAX_SEGMENTS
            || stored > max_stored(store.inner.part_size)
        {
            return Err(inner
                .corrupt(&path, "its hash does not cover its parts")
                .into());
        }
        // The tail and segments are read only when they are needed.
        let writer = Self::new(store.clone(), repo, id.to_owned(), state, chunk_size);
        let size = writer.size();
        if let Some(offset) = offset.filter(|&o| o != size) {
            return Err(Error::RangeInvalid {
                target: format!("upload {id}"),
                reason: format!("resume at offset {offset}, but {size} bytes were written"),
            });
        }
        Ok(writer)
    }

    fn new(
        store: BucketStore,
        repo: &Repository,
        id: String,
        state: UploadState,
        chunk_size: Option<usize>,
    ) -> Self {
        let chunk_size = chunk_size.unwrap_or(store.inner.part_size).max(1);
        Self {
            store,
            repo: repo.clone(),
            id,
            state,
            owned: false,
            buffer: BytesMut::new(),
            superseded: Vec::new(),
            hashed: 0,
            chunk_size,
            dirty: false,
        }
    }

    fn moved_on(&self) -> Error {
        Error::RangeInvalid {
            target: format!("upload {}", self.id),
            reason: "another writer moved the upload on; resume it again".to_owned(),
        }
    }

    fn file(&self, name: &str) -> Path {
        self.store.inner.keys.upload_file(&self.id, name)
    }

    /// Writes the state as `generation`, create-only: `RANGE_INVALID` if another writer
    /// wrote that generation first.
    async fn write_state(&mut self, generation: u64) -> Result<()> {
        let previous = self.state.generation;
        self.state.generation = generation;
        let path = self.file(&state_name(generation));
        let json =
            serde_json::to_vec(&self.state).map_err(|e| self.store.inner.corrupt(&path, e))?;
        if !self
            .store
            .inner
            .create(&path, PutPayload::from(json))
            .await?
        {
            self.state.generation = previous;
            return Err(self.moved_on());
        }
        Ok(())
    }

    /// Makes the upload this writer's before it changes anything.
    async fn take_over(&mut self) -> Result<()> {
        if !self.owned {
            let previous = self.state.generation;
            self.write_state(previous + 1).await?;
            self.owned = true;
            self.forget(&state_name(previous)).await;
        }
        Ok(())
    }

    /// Removes an object this writer has superseded; a failure only leaves garbage.
    async fn forget(&self, name: &str) {
        let path = self.file(name);
        if let Err(error) = self.store.inner.remove(&path).await {
            tracing::warn!(%path, %error, "removing a superseded upload object failed");
        }
    }

    /// Reads the tail and its segments into the front of the buffer (they are then no
    /// longer the state's, and removed once a state without them is written).
    /// A failure changes nothing: the state still names all of them.
    async fn read_stored(&mut self) -> Result<()> {
        let inner = Arc::clone(&self.store.inner);
        let mut joined = BytesMut::new();
        let mut names = Vec::new();
        for piece in self.state.tail.iter().chain(&self.state.segments) {
            let name = tail_name(piece.generation);
            let path = self.file(&name);
            let bytes = inner
                .get_bounded(&path, piece.size)
                .await?
                .ok_or_else(|| self.moved_on())?;
            if bytes.len() as u64 != piece.size {
                return Err(inner
                    .corrupt(&path, "its size is not the recorded one")
                    .into());
            }
            joined.extend_from_slice(&bytes);
            names.push(name);
        }
        if names.is_empty() {
            return Ok(());
        }
        self.state.tail = None;
        self.state.segments.clear();
        self.superseded.extend(names);
        // Covered by the running hash already, as the hashed part of the buffer is.
        self.hashed += joined.len();
        joined.extend_from_slice(&self.buffer);
        self.buffer = joined;
        Ok(())
    }

    fn hash_buffer_upto(&mut self, end: usize) {
        if end > self.hashed {
            self.state.sha256.update(&self.buffer[self.hashed..end]);
            self.hashed = end;
        }
    }

    /// Sends the first `part_size` bytes of the buffer as the next part.
    /// The buffer and the running hash change only once the part is stored: after a failure,
    /// a `close` saves the upload as it was.
    async fn flush_part(&mut self, len: usize) -> Result<()> {
        self.hash_buffer_upto(len);
        let part = self.buffer.split_to(len).freeze();
        let id = match self.put_part(part.clone()).await {
            Ok(id) => id,
            Err(error) => {
                // Back in front of the rest; the hashed length still counts them.
                let mut restored = BytesMut::with_capacity(part.len() + self.buffer.len());
                restored.extend_from_slice(&part);
                restored.extend_from_slice(&self.buffer);
                self.buffer = restored;
                return Err(error);
            }
        };
        self.hashed = self.hashed.saturating_sub(len);
        self.state.parts.push(Part {
            id,
            size: part.len() as u64,
        });
        Ok(())
    }

    async fn put_part(&mut self, part: Bytes) -> Result<String> {
        let inner = &self.store.inner;
        let index = self.state.parts.len();
        let Some(multipart) = inner.multipart.clone() else {
            let name = format!("part-{:020}-{index:05}", self.state.generation);
            if !inner
                .create(&self.file(&name), PutPayload::from(part))
                .await?
            {
                return Err(self.moved_on());
            }
            return Ok(name);
        };
        let data = self.file("data");
        let upload_id = match &self.state.multipart {
            Some(id) => id.clone(),
            None => {
                let id = multipart
                    .create_multipart(&data)
                    .await
                    .map_err(|e| inner.err("starting an upload of", &data, e))?;
                self.state.multipart = Some(id.clone());
                id
            }
        };
        let PartId { content_id } = multipart
            .put_part(&data, &upload_id, index, PutPayload::from(part))
            .await
            .map_err(|e| inner.err("uploading a part of", &data, e))?;
        Ok(content_id)
    }

    /// Puts the whole content at `data`, or leaves it in the buffer when it is one part.
    /// Parts kept as objects are joined through this process, and checked against `digest`
    /// and their recorded sizes on the way: they were hashed when they were written, but
    /// could have changed in the bucket since.
    async fn assemble(&mut self, digest: &Digest) -> Result<Assembled> {
        if self.state.parts.is_empty() {
            return Ok(Assembled::InBuffer);
        }
        let inner = Arc::clone(&self.store.inner);
        let data = self.file("data");
        let rest = std::mem::take(&mut self.buffer).freeze();
        if let (Some(multipart), Some(upload_id)) =
            (inner.multipart.clone(), self.state.multipart.clone())
        {
            if !rest.is_empty() {
                let id = self.put_part(rest.clone()).await?;
                self.state.parts.push(Part {
                    id,
                    size: rest.len() as u64,
                });
            }
            let parts = self
                .state
                .parts
                .iter()
                .map(|p| PartId {
                    content_id: p.id.clone(),
                })
                .collect();
            multipart
                .complete_multipart(&data, &upload_id, parts)
                .await
                .map_err(|e| inner.err("completing", &data, e))?;
            return Ok(Assembled::Completed(data));
        }
        // Parts as objects: streamed one after the other into one multipart write.
        let upload = inner
            .store
            .put_multipart(&data)
            .await
            .map_err(|e| inner.err("starting an upload of", &data, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, inner.part_size);
        let mut digester = digest.digester();
        let joined: Result<()> = async {
            for part in &self.state.parts {
                let path = self.file(&part.id);
                let found = inner
                    .store
                    .get(&path)
                    .await
                    .map_err(|e| inner.err("reading", &path, e))?;
                let mut stream = found.into_stream();
                let mut seen = 0u64;
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(|e| inner.err("reading", &path, e))?;
                    seen = seen.saturating_add(chunk.len() as u64);
                    if seen > part.size {
                        break;
                    }
                    digester.update(&chunk);
                    writer
                        .wait_for_capacity(2)
                        .await
                        .map_err(|e| inner.err("writing", &data, e))?;
                    writer.put(chunk);
                }
                if seen != part.size {
                    return Err(inner
                        .corrupt(&path, format!("it is not the {} bytes recorded", part.size))
                        .into());
                }
            }
            digester.update(&rest);
            writer.put(rest);
            let actual = std::mem::replace(&mut digester, digest.digester()).finish();
            if &actual != digest {
                return Err(inner
                    .corrupt(
                        &self.file("data"),
                        format!("its parts now hash to {actual}, not {digest} as written"),
                    )
                    .into());
            }
            Ok(())
        }
        .await;
        if let Err(error) = joined {
            if let Err(abort) = writer.abort().await {
                tracing::warn!(%data, error = %abort, "aborting a join failed");
            }
            return Err(error);
        }
        writer
            .finish()
            .await
            .map_err(|e| inner.err("completing", &data, e))?;
        Ok(Assembled::Joined(data))
    }

    /// Removes every object of the upload and aborts its multipart upload.
    async fn discard(&self) {
        let inner = &self.store.inner;
        if let (Some(multipart), Some(upload_id)) = (&inner.multipart, &self.state.multipart) {
            // Already completed or aborted by another writer: nothing to do.
            if let Err(error) = multipart
                .abort_multipart(&self.file("data"), upload_id)
                .await
            {
                tracing::debug!(upload = %self.id, %error, "aborting the multipart upload");
            }
        }
        match inner.list(&inner.keys.upload(&self.id), None).await {
            Ok(paths) => {
                for path in paths {
                    if let Err(error) = inner.remove(&path).await {
                        tracing::warn!(%path, %error, "removing an upload object failed");
                    }
                }
            }
            Err(error) => {
                tracing::warn!(upload = %self.id, %error, "listing an upload to remove it failed")
            }
        }
    }

    async fn mismatch(&self, expected: &Digest, actual: Digest) -> Error {
        self.discard().await;
        Error::DigestInvalid {
            what: "uploaded blob".to_owned(),
            expected: expected.clone(),
            actual,
        }
    }
}

impl fmt::Debug for BucketWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BucketWriter")
            .field("repo", &self.repo)
            .field("id", &self.id)
            .field("size", &self.size())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl BlobWriter for BucketWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        self.take_over().await?;
        self.dirty = true;
        self.buffer.extend_from_slice(&chunk);
        let part_size = self.store.inner.part_size;
        if self.size() - self.state.parts_size() >= part_size as u64 {
            // A part's worth after the last part: the stored tail goes into it.
            self.read_stored().await?;
        }
        while self.buffer.len() >= part_size {
            self.flush_part(part_size).await?;
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.state
            .parts_size()
            .saturating_add(self.state.stored_size())
            .saturating_add(self.buffer.len() as u64)
    }

    fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn written_digest(&self) -> Option<Digest> {
        // The running hash covers the parts and the tail; the buffer's end is hashed lazily.
        let mut sha256 = self.state.sha256.clone();
        sha256.update(self.buffer.get(self.hashed..)?);
        sha256_digest(&sha256.finish()).ok()
    }

    async fn close(mut self: Box<Self>) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let next = self.state.generation + 1;
        if !self.buffer.is_empty() && self.state.segments.len() >= MAX_SEGMENTS {
            // Segments enough: they are joined into a new tail with what this writer adds.
            self.read_stored().await?;
        }
        self.hash_buffer_upto(self.buffer.len());
        if !self.buffer.is_empty() {
            let piece = Bytes::copy_from_slice(&self.buffer);
            let record = Tail {
                generation: next,
                size: piece.len() as u64,
            };
            if !self
                .store
                .inner
                .create(&self.file(&tail_name(next)), PutPayload::from(piece))
                .await?
            {
                return Err(self.moved_on());
            }
            if self.state.tail.is_none() && self.state.segments.is_empty() {
                self.state.tail = Some(record);
            } else {
                self.state.segments.push(record);
            }
        }
        let previous = self.state.generation;
        self.write_state(next).await?;
        self.forget(&state_name(previous)).await;
        let superseded = std::mem::take(&mut self.superseded);
        if !superseded.is_empty() {
            // A writer that stalled can write a generation that a newer writer had removed,
            // after it; the newer writer's state may still name what this one read. Only the
            // newest state's writer removes them (the rest go when the upload ends).
            if latest_state(&self.store, &self.id).await? == Some(next) {
                for name in superseded {
                    self.forget(&name).await;
                }
            } else {
                tracing::warn!(upload = %self.id, generation = next, "a newer writer moved the upload on: keeping what this one read");
            }
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>, digest: &Digest) -> Result<Descriptor> {
        self.take_over().await?;
        self.read_stored().await?;
        let size = self.size();
        self.hash_buffer_upto(self.buffer.len());
        let inner = Arc::clone(&self.store.inner);
        let target = inner.keys.content(digest);
        if digest.algorithm() == Algorithm::Sha256 {
            // The running hash covers every byte: checked before anything is assembled.
            let actual = sha256_digest(&self.state.sha256.finish())?;
            if &actual != digest {
                return Err(self.mismatch(digest, actual).await);
            }
            match self.assemble(digest).await? {
                Assembled::InBuffer => {
                    inner
                        .create(&target, PutPayload::from(self.buffer.split().freeze()))
                        .await?;
                }
                Assembled::Completed(data) | Assembled::Joined(data) => {
                    inner.publish(&data, &target, size).await?;
                }
            }
        } else {
            // Another algorithm than the running hash's: the content is hashed as it is
            // joined, or read back once.
            match self.assemble(digest).await? {
                Assembled::InBuffer => {
                    let content = self.buffer.split().freeze();
                    let actual = Digest::of(digest.algorithm(), &content);
                    if &actual != digest {
                        return Err(self.mismatch(digest, actual).await);
                    }
                    inner.create(&target, PutPayload::from(content)).await?;
                }
                Assembled::Joined(data) => inner.publish(&data, &target, size).await?,
                Assembled::Completed(data) => {
                    let found = inner
                        .store
                        .get(&data)
                        .await
                        .map_err(|e| inner.err("reading", &data, e))?;
                    let mut digester = digest.digester();
                    let mut stream = found.into_stream();
                    while let Some(chunk) = stream.next().await {
                        digester.update(&chunk.map_err(|e| inner.err("reading", &data, e))?);
                    }
                    let actual = digester.finish();
                    if &actual != digest {
                        return Err(self.mismatch(digest, actual).await);
                    }
                    inner.publish(&data, &target, size).await?;
                }
            }
        }
        inner.link_blob(&self.repo, digest, size).await?;
        // The multipart upload is complete: nothing to abort, only objects to remove.
        self.state.multipart = None;
        self.discard().await;
        tracing::debug!(upload = %self.id, %digest, size, "upload committed");
        Ok(Descriptor::octet_stream(digest, size))
    }

    async fn cancel(self: Box<Self>) -> Result<()> {
        self.discard().await;
        Ok(())
    }
}

/// The newest generation of the upload `id`'s state; `None` when it has none.
async fn latest_state(store: &BucketStore, id: &str) -> Result<Option<u64>> {
    let inner = &store.inner;
    let names = inner.list(&inner.keys.upload(id), None).await?;
    Ok(names
        .iter()
        .filter_map(|path| {
            last_segment(path)
                .strip_prefix("state-")?
                .parse::<u64>()
                .ok()
        })
        .max())
}

/// The most bytes an upload may keep below its parts: less than a part normally, more after
/// a part's upload failed (the buffer is then saved whole), never more than this.
fn max_stored(part_size: usize) -> u64 {
    (part_size as u64).saturating_mul(4).max(64 << 20)
}

/// The digest whose hash is `hash`.
fn sha256_digest(hash: &[u8; 32]) -> Result<Digest> {
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    Digest::parse(&format!("sha256:{hex}")).map_err(Into::into)
}
