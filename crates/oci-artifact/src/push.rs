//! Pushing files as an artifact (oras push): each file a layer titled with its name, the empty
//! config of image-spec 1.1, an artifact type, annotations, and a subject to attach to.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use oci_store::{BlobBody, FileSpan, OciInterface, PushManifestParams, body_from_bytes};
use oci_types::{
    Algorithm, Descriptor, Digester, ImageManifest, MediaType, Repository, Tag, media_type,
};
use tokio::io::AsyncReadExt;

use crate::find::TITLE;
use crate::{Error, Result};

/// The media type of a file's layer unless one is given (oras's default).
pub const DEFAULT_FILE_TYPE: &str = media_type::OCI_LAYER_TAR;
/// The artifact type of an artifact unless one is given (oras's default): image-spec 1.1 asks
/// for one whenever the config is the empty descriptor.
pub const DEFAULT_ARTIFACT_TYPE: &str = "application/vnd.unknown.artifact.v1";

/// A file to push as one layer of an artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactFile {
    /// Where the bytes are read from.
    pub path: PathBuf,
    /// The layer's title (`org.opencontainers.image.title`): the name it is pulled as.
    pub title: String,
    /// The layer's media type.
    pub media_type: MediaType,
}

impl ArtifactFile {
    /// `path`, titled with its file name, of [`DEFAULT_FILE_TYPE`].
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let title = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        Self {
            path,
            title,
            media_type: MediaType::from_static(DEFAULT_FILE_TYPE),
        }
    }

    /// The same file as a layer of `media_type`.
    pub fn with_media_type(mut self, media_type: MediaType) -> Self {
        self.media_type = media_type;
        self
    }

    /// The same file under another title.
    pub fn with_title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }
}

/// How an artifact is pushed.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ArtifactOptions {
    /// The artifact type ([`DEFAULT_ARTIFACT_TYPE`] when `None`).
    pub artifact_type: Option<MediaType>,
    /// Annotations of the manifest.
    pub annotations: BTreeMap<String, String>,
    /// The manifest the artifact refers to (a signature's image, an SBOM's image).
    pub subject: Option<Descriptor>,
    /// Tags given to the manifest.
    pub tags: Vec<Tag>,
}

impl ArtifactOptions {
    /// The defaults: no annotations, no subject, no tags.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the artifact type.
    pub fn with_artifact_type(mut self, artifact_type: MediaType) -> Self {
        self.artifact_type = Some(artifact_type);
        self
    }

    /// Adds an annotation.
    pub fn with_annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.annotations.insert(key.into(), value.into());
        self
    }

    /// Attaches the artifact to `subject`.
    pub fn with_subject(mut self, subject: Descriptor) -> Self {
        self.subject = Some(subject);
        self
    }

    /// Adds a tag.
    pub fn with_tag(mut self, tag: Tag) -> Self {
        self.tags.push(tag);
        self
    }
}

/// Pushes `files` to `repo` as one artifact and returns its manifest's descriptor.
///
/// Each file is read twice, streaming: once to learn its digest (the store needs it before
/// the bytes, to verify them as they arrive), once to push it. Titles must be unique, since
/// they are the names the files are pulled as.
pub async fn push_artifact(
    store: &dyn OciInterface,
    repo: &Repository,
    files: &[ArtifactFile],
    options: &ArtifactOptions,
) -> Result<Descriptor> {
    let mut titles = BTreeSet::new();
    for file in files {
        if file.title.is_empty() {
            return Err(Error::file(
                &file.path,
                "has no file name to title its layer with",
                None,
            ));
        }
        if !titles.insert(file.title.as_str()) {
            return Err(Error::file(
                &file.path,
                format!(
                    "is titled {:?}, as another file is: titles name the files pulled",
                    file.title
                ),
                None,
            ));
        }
    }
    let mut layers = Vec::with_capacity(files.len());
    for file in files {
        let (digest, size) = hash_file(&file.path).await?;
        let mut descriptor = Descriptor::new(file.media_type.clone(), digest, size);
        let body = file_body(&file.path, size).await?;
        store
            .push_blob(repo, &descriptor, body)
            .await
            .map_err(|e| Error::store(format!("pushing {} to {repo}", file.path.display()), e))?;
        descriptor
            .annotations
            .insert(TITLE.to_owned(), file.title.clone());
        layers.push(descriptor);
    }
    let empty = Bytes::from_static(b"{}");
    let config = Descriptor::of_bytes(MediaType::from_static(media_type::OCI_EMPTY), &empty);
    store
        .push_blob(repo, &config, body_from_bytes(empty))
        .await
        .map_err(|e| Error::store(format!("pushing the empty config to {repo}"), e))?;
    let mut manifest = ImageManifest::new(config, layers);
    manifest.artifact_type = Some(
        options
            .artifact_type
            .clone()
            .unwrap_or_else(|| MediaType::from_static(DEFAULT_ARTIFACT_TYPE)),
    );
    manifest.annotations = options.annotations.clone();
    manifest.subject = options.subject.clone();
    let params = PushManifestParams::new().with_tags(options.tags.iter().cloned());
    store
        .push_manifest(
            repo,
            Bytes::from(manifest.to_json()),
            &MediaType::from_static(media_type::OCI_MANIFEST),
            &params,
        )
        .await
        .map_err(|e| Error::store(format!("pushing the artifact's manifest to {repo}"), e))
}

async fn open(path: &Path) -> Result<tokio::fs::File> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| Error::file(path, "cannot be opened", Some(e)))?;
    let metadata = file
        .metadata()
        .await
        .map_err(|e| Error::file(path, "cannot be read", Some(e)))?;
    if !metadata.is_file() {
        return Err(Error::file(path, "is not a regular file", None));
    }
    Ok(file)
}

/// The SHA-256 digest and size of the file at `path`, read once.
async fn hash_file(path: &Path) -> Result<(oci_types::Digest, u64)> {
    let mut file = open(path).await?;
    let mut digester = Digester::new(Algorithm::Sha256);
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let read = file
            .read(&mut buffer)
            .await
            .map_err(|e| Error::file(path, "cannot be read", Some(e)))?;
        if read == 0 {
            break;
        }
        digester.update(&buffer[..read]);
        size += read as u64;
    }
    Ok((digester.finish(), size))
}

/// The `size` bytes hashed of the file at `path` as a blob body (the store checks them against
/// the digest), which a push to a plain-HTTP registry sends from the file unread.
async fn file_body(path: &Path, size: u64) -> Result<BlobBody> {
    let file = open(path).await?.into_std().await;
    let span = FileSpan::new(Arc::new(file), 0, size, path.display().to_string());
    Ok(span.into_body(1 << 20))
}
