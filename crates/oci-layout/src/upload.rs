//! Chunked, resumable uploads into a layout: `.hoist/uploads/<id>/{data,repository}`, outside
//! `blobs/`, so that no tool ever mistakes a partial upload for a blob.
//!
//! The data file is a [`DirectFile`], written with `O_DIRECT` where the filesystem allows it
//! (the builder stores every layer it makes through an upload, and the copy into fresh
//! page-cache pages is slow on the VMs this runs on): pieces are gathered into its aligned
//! staging buffer, whole blocks are written directly as it fills, on a blocking thread; the
//! unaligned tail is written through the page cache only by `close` or `commit`, which then
//! sync. Bytes still staged are on disk only once `close` or `commit` returns: a writer dropped
//! without either loses them (the upload then resumes from what is on disk).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use oci_store::{BlobWriter, Error, Result};
use oci_types::{Algorithm, Descriptor, Digest, Digester, MediaType, Repository, media_type};

use crate::direct::DirectFile;
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
    /// The data file, once opened (a resumed upload opens it at its first write); its staging
    /// buffer may hold the last of the `size` bytes.
    file: Option<DirectFile>,
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
        let owner = repo.as_str().to_owned();
        let file = tokio::task::spawn_blocking(move || -> Result<DirectFile> {
            let io = |context: &'static str, path: &std::path::Path| {
                let context = format!("{context} {}", path.display());
                move |e| Error::io(context, e)
            };
            std::fs::create_dir(&dir).map_err(io("cannot create", &dir))?;
            let owner_path = dir.join("repository");
            std::fs::write(&owner_path, owner).map_err(io("cannot write", &owner_path))?;
            let data = dir.join("data");
            DirectFile::create(&data).map_err(io("cannot create", &data))
        })
        .await
        .map_err(join_error)??;
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

    /// Writes what is staged (the unaligned tail through the page cache) and syncs.
    async fn flush(&mut self) -> Result<()> {
        if let Some(mut file) = self.file.take() {
            let path = self.data_path();
            tokio::task::spawn_blocking(move || {
                file.finish()
                    .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
                file.sync()
                    .map_err(|e| Error::io(format!("cannot sync {}", path.display()), e))
            })
            .await
            .map_err(join_error)??;
        }
        Ok(())
    }

    /// Opens the data file of a resumed upload to write after its end, checking that nobody
    /// moved the upload on since this writer was made.
    ///
    /// An upload closed with an unaligned tail cannot take direct writes at its end
    /// (`O_DIRECT` needs aligned offsets): this writer then writes it through the page cache,
    /// which costs only resumed uploads (a registry client's chunks; the builder never
    /// resumes). One closed at an aligned size goes on directly.
    async fn open(&self) -> Result<DirectFile> {
        let path = self.data_path();
        let (file, on_disk) = tokio::task::spawn_blocking(move || DirectFile::append_to(&path))
            .await
            .map_err(join_error)?
            .map_err(|_| unknown(&self.repo, &self.id))?;
        if on_disk != self.size {
            // Another writer resumed this upload and moved it on.
            return Err(Error::RangeInvalid {
                target: format!("upload {}", self.id),
                reason: format!("this writer is at {}, the upload at {on_disk}", self.size),
            });
        }
        Ok(file)
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
        // Taken for the time of the write: if it fails, or this future is dropped halfway, the
        // writer is left without them, so a later write reopens the file and checks its size
        // against `size` again, and a commit reads the data back instead of trusting a hash.
        let mut file = match self.file.take() {
            Some(file) => file,
            None => self.open().await?,
        };
        let mut hash = self.hash.take();
        let len = chunk.len() as u64;
        if !file.try_stage(&chunk) {
            // The staging buffer fills: blocks go to the disk, on a blocking thread, while
            // this one hashes.
            let path = self.data_path();
            let piece = chunk.clone();
            let writing = tokio::task::spawn_blocking(move || {
                file.write(&piece)
                    .map(|()| file)
                    .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
            });
            if let Some(hash) = &mut hash {
                hash.update(&chunk);
            }
            file = writing.await.map_err(join_error)??;
        } else if let Some(hash) = &mut hash {
            hash.update(&chunk);
        }
        self.file = Some(file);
        self.hash = hash;
        self.size += len;
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

    fn written_digest(&self) -> Option<Digest> {
        // No running hash after a failed write or in a resumption by another process.
        self.hash.as_ref().map(|hash| hash.clone().finish())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::direct::tests::{ODD_PIECES, content, scratch_dirs};

    fn sha256(data: &[u8]) -> Digest {
        let mut digester = Digester::new(Algorithm::Sha256);
        digester.update(data);
        digester.finish()
    }

    /// Writes `pieces` of `data` from `at` into `writer`; gives where they end.
    async fn write_pieces(
        writer: &mut LayoutWriter,
        data: &[u8],
        mut at: usize,
        pieces: &[usize],
    ) -> usize {
        for &len in pieces {
            writer
                .write(Bytes::copy_from_slice(&data[at..at + len]))
                .await
                .unwrap();
            at += len;
            assert_eq!(writer.size(), at as u64);
        }
        at
    }

    async fn check_committed(writer: LayoutWriter, layout: &Layout, data: &[u8]) {
        let digest = sha256(data);
        let descriptor = Box::new(writer).commit(&digest).await.unwrap();
        assert_eq!(descriptor.size, data.len() as u64);
        assert_eq!(descriptor.digest, digest);
        assert_eq!(std::fs::read(layout.blob_path(&digest)).unwrap(), data);
    }

    #[tokio::test]
    async fn odd_pieces_across_unaligned_resumes_commit_whole() {
        let repo: Repository = "test/odd".parse().unwrap();
        for scratch in scratch_dirs(false) {
            let layout = Arc::new(Layout::new(scratch.dir.path().join("layout")));
            let small = [333; 1000];
            let total = ODD_PIECES.iter().sum::<usize>() + small.iter().sum::<usize>() + 10;
            let data = content(total);
            let mut writer = LayoutWriter::start(Arc::clone(&layout), &repo, None)
                .await
                .unwrap();
            assert_eq!(writer.written_digest(), Some(sha256(b"")));
            let at = write_pieces(&mut writer, &data, 0, &ODD_PIECES[..3]).await;
            assert_eq!(at, 8193);
            assert_eq!(writer.written_digest(), Some(sha256(&data[..at])));
            let id = writer.id().to_owned();
            Box::new(writer).close().await.unwrap();
            let path = upload_dir(&layout, &id).join("data");
            assert_eq!(std::fs::read(&path).unwrap(), &data[..at]);

            // Resumed at an unaligned end: through the page cache from then on.
            let mut writer =
                LayoutWriter::resume(Arc::clone(&layout), &repo, &id, Some(at as u64), None)
                    .await
                    .unwrap();
            let at = write_pieces(&mut writer, &data, at, &ODD_PIECES[3..]).await;
            assert!(writer.file.as_ref().is_some_and(|file| !file.is_direct()));
            let at = write_pieces(&mut writer, &data, at, &small).await;
            Box::new(writer).close().await.unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), &data[..at]);

            // Committed with the running hash kept across the resumptions.
            let mut writer = LayoutWriter::resume(Arc::clone(&layout), &repo, &id, None, None)
                .await
                .unwrap();
            assert!(writer.hash.is_some(), "the running hash was kept");
            let at = write_pieces(&mut writer, &data, at, &[1, 9]).await;
            assert_eq!(at, total);
            assert_eq!(writer.written_digest(), Some(sha256(&data)));
            check_committed(writer, &layout, &data).await;
            assert!(!upload_dir(&layout, &id).exists());
        }
    }

    #[tokio::test]
    async fn aligned_resumes_write_directly() {
        let repo: Repository = "test/aligned".parse().unwrap();
        for scratch in scratch_dirs(false) {
            let layout = Arc::new(Layout::new(scratch.dir.path().join("layout")));
            let data = content((5 << 20) + 7);
            let mut writer = LayoutWriter::start(Arc::clone(&layout), &repo, None)
                .await
                .unwrap();
            assert_eq!(
                writer.file.as_ref().map(DirectFile::is_direct),
                Some(scratch.direct())
            );
            // Staged without a write, then written with the rest of the buffer.
            let third = crate::direct::WRITE_BUFFER / 3;
            let at = write_pieces(&mut writer, &data, 0, &[third, third]).await;
            let path = upload_dir(&layout, writer.id()).join("data");
            assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
            let at = write_pieces(&mut writer, &data, at, &[(1 << 20) - at]).await;
            let id = writer.id().to_owned();
            Box::new(writer).close().await.unwrap();

            // Another process resumes it (no running hash: the commit reads the data back).
            let layout = Arc::new(Layout::new(layout.dir().to_path_buf()));
            let mut writer = LayoutWriter::resume(Arc::clone(&layout), &repo, &id, None, None)
                .await
                .unwrap();
            assert!(writer.hash.is_none());
            assert_eq!(writer.written_digest(), None, "no hash to tell");
            let at = write_pieces(&mut writer, &data, at, &[4097, 1 << 20]).await;
            assert_eq!(
                writer.file.as_ref().map(DirectFile::is_direct),
                Some(scratch.direct())
            );
            let at = write_pieces(&mut writer, &data, at, &[data.len() - at]).await;
            assert_eq!(at, data.len());
            check_committed(writer, &layout, &data).await;
        }
    }
}
