//! Chunked, resumable uploads into a layout: `.hoist/uploads/<id>/{data,repository}`, outside
//! `blobs/`, so that no tool ever mistakes a partial upload for a blob.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use oci_store::{BlobWriter, Error, Result};
use oci_types::{Algorithm, Descriptor, Digest, Digester, MediaType, Repository, media_type};
use tokio::io::AsyncWriteExt;

use crate::layout::{Layout, join_error, random_id};

/// The chunk size reported when the caller gives no hint.
const DEFAULT_CHUNK_SIZE: usize = 1 << 20;

/// An upload id is exactly 32 lowercase hex characters, so it can never name a path outside the
/// uploads directory.
pub(crate) fn valid_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

pub(crate) struct LayoutWriter {
    layout: Arc<Layout>,
    repo: Repository,
    id: String,
    file: Option<tokio::fs::File>,
    size: u64,
    chunk_size: usize,
    /// SHA-256 of the data so far (its `size` bytes), when this process wrote all of it.
    hash: Option<Digester>,
}

fn unknown(repo: &Repository, id: &str) -> Error {
    Error::BlobUploadUnknown {
        repo: repo.clone(),
        id: id.to_owned(),
    }
}

fn upload_dir(layout: &Layout, id: &str) -> PathBuf {
    layout.uploads_dir().join(id)
}

impl LayoutWriter {
    /// Starts a new upload.
    pub(crate) async fn start(
        layout: Arc<Layout>,
        repo: &Repository,
        chunk_size: Option<usize>,
    ) -> Result<Self> {
        layout.ensure_created_async().await?;
        let id = random_id();
        let dir = upload_dir(&layout, &id);
        let io = |context: &'static str, path: &PathBuf| {
            let context = format!("{context} {}", path.display());
            move |e| Error::io(context, e)
        };
        tokio::fs::create_dir(&dir)
            .await
            .map_err(io("cannot create", &dir))?;
        let owner = dir.join("repository");
        tokio::fs::write(&owner, repo.as_str())
            .await
            .map_err(io("cannot write", &owner))?;
        let data = dir.join("data");
        let file = tokio::fs::File::create(&data)
            .await
            .map_err(io("cannot create", &data))?;
        Ok(Self {
            layout,
            repo: repo.clone(),
            id,
            file: Some(file),
            size: 0,
            chunk_size: chunk_size.unwrap_or(DEFAULT_CHUNK_SIZE).max(1),
            hash: Some(Digester::new(Algorithm::Sha256)),
        })
    }

    /// Continues an upload by id.
    pub(crate) async fn resume(
        layout: Arc<Layout>,
        repo: &Repository,
        id: &str,
        offset: Option<u64>,
        chunk_size: Option<usize>,
    ) -> Result<Self> {
        if !valid_id(id) {
            return Err(unknown(repo, id));
        }
        let dir = upload_dir(&layout, id);
        match tokio::fs::read_to_string(dir.join("repository")).await {
            Ok(owner) if owner == repo.as_str() => {}
            _ => return Err(unknown(repo, id)),
        }
        let size = tokio::fs::metadata(dir.join("data"))
            .await
            .map_err(|_| unknown(repo, id))?
            .len();
        if let Some(offset) = offset.filter(|&o| o != size) {
            return Err(Error::RangeInvalid {
                target: format!("upload {id}"),
                reason: format!("resume at offset {offset}, but {size} bytes were written"),
            });
        }
        let hash = layout.take_running_hash(id, size);
        Ok(Self {
            layout,
            repo: repo.clone(),
            id: id.to_owned(),
            file: None,
            size,
            chunk_size: chunk_size.unwrap_or(DEFAULT_CHUNK_SIZE).max(1),
            hash,
        })
    }

    fn data_path(&self) -> PathBuf {
        upload_dir(&self.layout, &self.id).join("data")
    }

    async fn flush(&mut self) -> Result<()> {
        if let Some(mut file) = self.file.take() {
            let path = self.data_path();
            file.flush()
                .await
                .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
            file.sync_data()
                .await
                .map_err(|e| Error::io(format!("cannot sync {}", path.display()), e))?;
        }
        Ok(())
    }

    async fn discard(&self) -> Result<()> {
        self.layout.forget_running_hash(&self.id);
        let dir = upload_dir(&self.layout, &self.id);
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("cannot remove {}", dir.display()), e)),
        }
    }
}

impl fmt::Debug for LayoutWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LayoutWriter")
            .field("layout", &self.layout.dir())
            .field("repo", &self.repo)
            .field("id", &self.id)
            .field("size", &self.size)
            .finish()
    }
}

/// Hashes an upload's data file with `digest`'s algorithm; returns the digest and the size.
async fn read_back(
    path: &std::path::Path,
    digest: &Digest,
    repo: &Repository,
    id: &str,
) -> Result<(Digest, u64)> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|_| unknown(repo, id))?;
    let mut stream = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20);
    let mut digester = digest.digester();
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
        size += chunk.len() as u64;
        digester.update(&chunk);
    }
    Ok((digester.finish(), size))
}

#[async_trait]
impl BlobWriter for LayoutWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        let path = self.data_path();
        if self.file.is_none() {
            let file = tokio::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .await
                .map_err(|_| unknown(&self.repo, &self.id))?;
            let on_disk = file
                .metadata()
                .await
                .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?
                .len();
            if on_disk != self.size {
                // Another writer resumed this upload and moved it on.
                return Err(Error::RangeInvalid {
                    target: format!("upload {}", self.id),
                    reason: format!("this writer is at {}, the upload at {on_disk}", self.size),
                });
            }
            self.file = Some(file);
        }
        if let Some(file) = &mut self.file {
            file.write_all(&chunk)
                .await
                .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
        }
        self.size += chunk.len() as u64;
        if let Some(hash) = &mut self.hash {
            hash.update(&chunk);
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    fn id(&self) -> &str {
        &self.id
    }

    async fn close(mut self: Box<Self>) -> Result<()> {
        self.flush().await?;
        if let Some(hash) = self.hash.take() {
            self.layout.keep_running_hash(&self.id, hash, self.size);
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>, digest: &Digest) -> Result<Descriptor> {
        self.flush().await?;
        let path = self.data_path();
        // The running hash counts only if it covers exactly what is on disk (a write that
        // failed halfway may have left more there).
        let on_disk = tokio::fs::metadata(&path)
            .await
            .map_err(|_| unknown(&self.repo, &self.id))?
            .len();
        let running = self
            .hash
            .take()
            .filter(|hash| self.size == on_disk && hash.algorithm() == digest.algorithm());
        let (actual, size) = match running {
            Some(hash) => (hash.finish(), self.size),
            None => read_back(&path, digest, &self.repo, &self.id).await?,
        };
        if actual != *digest {
            self.discard().await?;
            return Err(Error::DigestInvalid {
                what: "uploaded blob".to_owned(),
                expected: digest.clone(),
                actual,
            });
        }
        let layout = Arc::clone(&self.layout);
        let target = digest.clone();
        tokio::task::spawn_blocking(move || layout.install_blob(&path, &target))
            .await
            .map_err(join_error)??;
        self.discard().await?;
        Ok(Descriptor::new(
            MediaType::from_static(media_type::OCTET_STREAM),
            digest.clone(),
            size,
        ))
    }

    async fn cancel(self: Box<Self>) -> Result<()> {
        self.discard().await
    }
}
