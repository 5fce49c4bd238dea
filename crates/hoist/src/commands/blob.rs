//! `hoist blob get` and `hoist blob put`: single blobs, streamed both ways (never held in
//! memory), verified by the stores on the way; `blob get --uncompressed` writes a layer's tar
//! through `oci_unpack`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use futures::StreamExt;
use oci_store::{BlobBody, ErrorCode, FileSpan};
use oci_types::{Algorithm, Descriptor, Digest, Digester};
use oci_unpack::{ExtractOptions, write_uncompressed};
use tokio::io::AsyncWriteExt;

use crate::cli::{BlobGetArgs, BlobPutArgs};
use crate::commands::Ctx;
use crate::exit::{Failed, Failure};
use crate::open::Place;
use crate::output::{async_stdout_error, human_size, print_line};

/// The size of the reads that hash and upload a file.
const CHUNK: usize = 1 << 20;

/// `hoist blob get REF@DIGEST [-o FILE]`.
pub(crate) async fn get(ctx: &Ctx, args: BlobGetArgs) -> Result<()> {
    let Some(digest) = args.blob.digest().cloned() else {
        return Err(Failed::new(
            Failure::Usage,
            format!(
                "{} names no blob: give REPOSITORY@DIGEST or oci:DIR@DIGEST",
                args.blob
            ),
        )
        .into());
    };
    let place = ctx.opener.open(&args.blob).await?;
    if args.uncompressed {
        return get_uncompressed(ctx, &place, &args, &digest).await;
    }
    let what = || format!("cannot read blob {digest} from {}", args.blob);
    let reader = place
        .store
        .get_blob(&place.repo, &digest)
        .await
        .with_context(what)?;
    let size = reader.descriptor().size;
    let mut body = reader.into_stream();
    match &args.output {
        None => {
            let mut stdout = tokio::io::stdout();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.with_context(what)?;
                stdout.write_all(&chunk).await.map_err(async_stdout_error)?;
            }
            stdout.flush().await.map_err(async_stdout_error)?;
        }
        Some(path) => {
            write_atomically(path, body).await.with_context(what)?;
            ctx.say(format!(
                "wrote blob {digest} ({}) to {}",
                human_size(size),
                path.display()
            ));
        }
    }
    Ok(())
}

/// `hoist blob get --uncompressed REF@DIGEST [-o FILE]`: the layer's tar, its blob verified
/// by the store's read; there is no `diff_id` to check it against without an image config.
async fn get_uncompressed(
    ctx: &Ctx,
    place: &Place,
    args: &BlobGetArgs,
    digest: &Digest,
) -> Result<()> {
    let what = || format!("cannot read layer {digest} from {} uncompressed", args.blob);
    let options = ExtractOptions::default();
    let store = &*place.store;
    let Some(path) = &args.output else {
        let out = std::io::stdout();
        return match write_uncompressed(store, &place.repo, digest, None, out, &options).await {
            Ok(_) => Ok(()),
            Err(oci_unpack::Error::Output { source }) => Err(async_stdout_error(source)),
            Err(error) => Err(error).with_context(what),
        };
    };
    // As `write_atomically`: the file appears only once the read reached the blob's end and
    // its digest matched.
    let temporary = temporary_beside(path)?;
    let result = async {
        let file = tokio::fs::File::create(&temporary)
            .await
            .with_context(|| format!("cannot create {}", temporary.display()))?
            .into_std()
            .await;
        let (file, diff_id, size) =
            write_uncompressed(store, &place.repo, digest, None, file, &options)
                .await
                .with_context(what)?;
        tokio::fs::File::from_std(file)
            .sync_all()
            .await
            .with_context(|| format!("cannot write {}", temporary.display()))?;
        tokio::fs::rename(&temporary, path).await.with_context(|| {
            format!(
                "cannot rename {} to {}",
                temporary.display(),
                path.display()
            )
        })?;
        anyhow::Ok((diff_id, size))
    }
    .await;
    let (diff_id, size) = match result {
        Ok(written) => written,
        Err(error) => {
            let _ = tokio::fs::remove_file(&temporary).await;
            return Err(error);
        }
    };
    ctx.say(format!(
        "wrote layer {digest} uncompressed ({}, diff_id {diff_id}) to {}",
        human_size(size),
        path.display()
    ));
    Ok(())
}

/// The temporary file beside `path` that becomes it once complete.
fn temporary_beside(path: &Path) -> Result<PathBuf> {
    let name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    Ok(path.with_file_name(format!(
        ".{}.hoist-{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    )))
}

/// Streams `body` into a temporary file beside `path` and renames it into place only once the
/// stream has ended cleanly (the store's reader verified it); removes it on any failure.
async fn write_atomically(path: &Path, mut body: BlobBody) -> Result<()> {
    let temporary = temporary_beside(path)?;
    let result = async {
        let mut file = tokio::fs::File::create(&temporary)
            .await
            .with_context(|| format!("cannot create {}", temporary.display()))?;
        while let Some(chunk) = body.next().await {
            file.write_all(&chunk?)
                .await
                .with_context(|| format!("cannot write {}", temporary.display()))?;
        }
        file.sync_all()
            .await
            .with_context(|| format!("cannot write {}", temporary.display()))?;
        tokio::fs::rename(&temporary, path).await.with_context(|| {
            format!(
                "cannot rename {} to {}",
                temporary.display(),
                path.display()
            )
        })
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&temporary).await;
    }
    result
}

/// `hoist blob put REPO FILE`: hashes the file in one streamed read, then uploads it in a
/// second; the store checks the upload against the digest of the first.
pub(crate) async fn put(ctx: &Ctx, args: BlobPutArgs) -> Result<()> {
    let place = ctx.opener.open(&args.repository).await?;
    let path = args.file.clone();
    let (digest, size) = hash_file(path.clone())
        .await
        .with_context(|| format!("cannot read {}", path.display()))?;
    let what = || {
        format!(
            "cannot upload {} to {} as blob {digest}",
            path.display(),
            args.repository.repository_name()
        )
    };
    match place.store.resolve_blob(&place.repo, &digest).await {
        Ok(_) => {
            ctx.say(format!(
                "blob {digest} ({}) is already in {}",
                human_size(size),
                args.repository.repository_name()
            ));
            return print_line(&digest);
        }
        Err(error)
            if matches!(
                error.code(),
                Some(ErrorCode::BlobUnknown | ErrorCode::NameUnknown)
            ) => {}
        Err(error) => return Err(error).with_context(what),
    }
    let file =
        std::fs::File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    // Sent from the file unread to a plain-HTTP registry; read in pieces to any other store.
    let body = FileSpan::new(Arc::new(file), 0, size, path.display().to_string()).into_body(CHUNK);
    place
        .store
        .push_blob(&place.repo, &Descriptor::octet_stream(&digest, size), body)
        .await
        .with_context(what)?;
    ctx.say(format!(
        "uploaded {} ({}) to {}",
        path.display(),
        human_size(size),
        args.repository.repository_name()
    ));
    print_line(&digest)
}

/// The SHA-256 digest and size of a file, read once in chunks on a blocking thread.
async fn hash_file(path: PathBuf) -> Result<(Digest, u64)> {
    tokio::task::spawn_blocking(move || -> Result<(Digest, u64)> {
        let mut file = std::fs::File::open(&path)?;
        let mut digester = Digester::new(Algorithm::Sha256);
        let mut buffer = vec![0; CHUNK];
        let mut size = 0u64;
        loop {
            let read = match file.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => read,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            digester.update(&buffer[..read]);
            size += read as u64;
        }
        Ok((digester.finish(), size))
    })
    .await
    .context("the hashing thread failed")?
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[tokio::test]
    async fn files_are_hashed_in_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let content: Vec<u8> = (0..CHUNK * 2 + 17).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &content).unwrap();
        let (digest, size) = hash_file(path).await.unwrap();
        assert_eq!(digest, Digest::sha256(&content));
        assert_eq!(size, content.len() as u64);
    }

    #[tokio::test]
    async fn a_failed_stream_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let failing: BlobBody = futures::stream::iter([
            Ok(Bytes::from_static(b"part")),
            Err(oci_store::Error::SizeInvalid {
                what: "blob".to_owned(),
                digest: Digest::sha256(b"x"),
                expected: 9,
                actual: 4,
            }),
        ])
        .boxed()
        .into();
        assert!(write_atomically(&path, failing).await.is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let good: BlobBody = futures::stream::iter([Ok(Bytes::from_static(b"whole"))])
            .boxed()
            .into();
        write_atomically(&path, good).await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"whole");
    }
}
