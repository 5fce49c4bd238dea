//! The archive transports, written as skopeo writes them: `oci-archive:FILE[:TAG]` (a tar of
//! an OCI image layout; a `.tar.gz` or `.tgz` one is written gzip-compressed, and any is
//! read whatever its compression) and `docker-archive:FILE[:NAME[:TAG]]` or
//! `docker-archive:FILE:@N` (what `docker save` writes and `docker load` reads), and
//! `docker-daemon:NAME[:TAG]` (a Docker daemon, which speaks docker-archives: see
//! [`crate::daemon`]).
//!
//! Read, an archive is an [`ArchiveReader`]; written, an [`ArchiveWriter`] that a command
//! finishes ([`Place::finish`](crate::open::Place::finish)) once everything is pushed.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use oci_archive::{
    ArchiveFormat, ArchiveLimits, ArchiveReader, ArchiveWriter, DockerFormat, ReadAs, WriteOptions,
    archive_name, archive_repository,
};
use oci_build::ManifestRef;
use oci_types::{Digest, Platform, Reference, Repository, Tag};

use crate::daemon::DaemonImage;

/// An archive named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ArchiveLocation {
    /// `oci-archive:FILE[:TAG][@DIGEST]`.
    Oci {
        file: PathBuf,
        tag: Option<Tag>,
        digest: Option<Digest>,
    },
    /// `docker-archive:FILE[:NAME[:TAG]]` or `docker-archive:FILE:@N`.
    Docker {
        file: PathBuf,
        image: DockerImageRef,
    },
    /// `docker-daemon:NAME[:TAG]`.
    Daemon(DaemonImage),
}

/// Which image of a docker-archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DockerImageRef {
    /// None named: the only image when reading, an untagged one when writing.
    Only,
    /// By name, as `docker load` tags it: the repository and tag, and the name as typed.
    Named(Repository, Tag, String),
    /// By position in `manifest.json`, from 0.
    Position(usize),
}

pub(crate) const OCI_ARCHIVE: &str = "oci-archive:";
pub(crate) const DOCKER_ARCHIVE: &str = "docker-archive:";
pub(crate) const DOCKER_DAEMON: &str = "docker-daemon:";

impl ArchiveLocation {
    /// Reads `rest`, what follows `oci-archive:` or `docker-archive:` in `input`; `None` when
    /// `input` is neither. The file is the part before the first `:` (as skopeo reads it),
    /// unless the whole rest names an existing file.
    pub(crate) fn parse(input: &str) -> Option<Result<Self, String>> {
        if let Some(rest) = input.strip_prefix(OCI_ARCHIVE) {
            return Some(parse_oci(rest));
        }
        if let Some(rest) = input.strip_prefix(DOCKER_DAEMON) {
            return Some(parse_daemon(rest));
        }
        input.strip_prefix(DOCKER_ARCHIVE).map(parse_docker)
    }

    pub(crate) fn tag(&self) -> Option<&Tag> {
        match self {
            Self::Oci { tag, .. } => tag.as_ref(),
            Self::Docker {
                image: DockerImageRef::Named(_, tag, _),
                ..
            } => Some(tag),
            Self::Daemon(image) => image.reference.tag(),
            Self::Docker { .. } => None,
        }
    }

    pub(crate) fn digest(&self) -> Option<&Digest> {
        match self {
            Self::Oci { digest, .. } => digest.as_ref(),
            Self::Docker { .. } | Self::Daemon(_) => None,
        }
    }

    /// The repository read from in the archive's store: a daemon's save holds the one image
    /// asked for, read by its position, whatever name the daemon wrote for it (podman writes
    /// `localhost/NAME`).
    pub(crate) fn read_repository(&self) -> Repository {
        match self {
            Self::Daemon(_) => ArchiveReader::default_repository(),
            _ => self.repository(),
        }
    }

    /// The repository written to in the archive's store.
    pub(crate) fn repository(&self) -> Repository {
        match self {
            Self::Docker {
                image: DockerImageRef::Named(repo, _, _),
                ..
            } => repo.clone(),
            Self::Daemon(image) => archive_repository(&image.reference),
            _ => ArchiveReader::default_repository(),
        }
    }

    /// The manifest to read: a tag of an oci-archive (`latest` by default), a name of a
    /// docker-archive, or its image by position (the only one, `0`, when none is named, and
    /// always for a daemon's save of one image).
    pub(crate) fn manifest_ref(&self) -> ManifestRef {
        let position = |n: usize| {
            Tag::parse(&n.to_string()).map_or(ManifestRef::Tag(Tag::latest()), ManifestRef::Tag)
        };
        match self {
            Self::Oci {
                digest: Some(digest),
                ..
            } => ManifestRef::Digest(digest.clone()),
            Self::Oci { tag, .. } => ManifestRef::Tag(tag.clone().unwrap_or_else(Tag::latest)),
            Self::Docker { image, .. } => match image {
                DockerImageRef::Named(_, tag, _) => ManifestRef::Tag(tag.clone()),
                DockerImageRef::Position(n) => position(*n),
                DockerImageRef::Only => position(0),
            },
            Self::Daemon(_) => position(0),
        }
    }

    /// The tags a write points at what it wrote.
    pub(crate) fn write_tags(&self) -> Vec<Tag> {
        match self {
            Self::Oci { tag: Some(tag), .. } => vec![tag.clone()],
            Self::Oci {
                digest: Some(_), ..
            } => Vec::new(),
            Self::Oci { .. } => vec![Tag::latest()],
            Self::Docker {
                image: DockerImageRef::Named(_, tag, _),
                ..
            } => vec![tag.clone()],
            Self::Docker { .. } => Vec::new(),
            Self::Daemon(image) => {
                vec![image.reference.tag().cloned().unwrap_or_else(Tag::latest)]
            }
        }
    }

    /// Opens the archive for reading.
    pub(crate) async fn open_reader(&self) -> Result<ArchiveReader> {
        let (read_as, file) = match self {
            Self::Oci { file, .. } => (ReadAs::Oci, file),
            Self::Docker { file, .. } => (ReadAs::Docker, file),
            Self::Daemon(image) => return crate::daemon::open_reader(image).await,
        };
        let reader = ArchiveReader::open(file, read_as, ArchiveLimits::default())
            .await
            .with_context(|| format!("cannot read {self}"))?;
        if let Self::Docker {
            image: DockerImageRef::Only,
            ..
        } = self
            && reader.images().len() != 1
        {
            let names: Vec<String> = reader
                .images()
                .iter()
                .enumerate()
                .map(|(n, image)| format!("@{n} {}", image.names.join(" ")))
                .collect();
            anyhow::bail!(
                "{self} holds {} images; name one as {DOCKER_ARCHIVE}FILE:NAME:TAG or {DOCKER_ARCHIVE}FILE:@N ({})",
                reader.images().len(),
                names.join(", ")
            );
        }
        Ok(reader)
    }

    /// Starts writing the archive; nothing appears at its path until it is finished. A
    /// daemon's load starts here too, reading the gzip trailers of its layers from `layers`
    /// when given (and a layer again where its trailer is wrong).
    pub(crate) async fn create_writer(
        &self,
        platform: Option<&Platform>,
        docker_format: DockerFormat,
        layers: Option<oci_archive::LayerSource>,
    ) -> Result<Pending> {
        let (format, file) = match self {
            Self::Oci { file, .. } => (
                ArchiveFormat::Oci {
                    gzip: is_gzip_name(file),
                },
                file,
            ),
            Self::Docker { file, .. } => (ArchiveFormat::Docker(docker_format), file),
            Self::Daemon(image) => {
                return Ok(Pending::Daemon(
                    crate::daemon::start_load(image, platform, layers).await?,
                ));
            }
        };
        let mut options = WriteOptions::new();
        if let Some(platform) = platform {
            options = options.with_platform(platform.clone());
        }
        if let Self::Docker {
            image: DockerImageRef::Named(repo, _, typed),
            ..
        } = self
            && let Some(name) = Reference::parse(typed).ok().and_then(|r| shown_name(&r))
        {
            options = options.with_name(repo.clone(), name);
        }
        let writer = ArchiveWriter::create(file, format, options)
            .with_context(|| format!("cannot write {self}"))?;
        Ok(Pending::Archive(writer))
    }
}

/// A write to finish: an archive file, or a load into a daemon.
#[derive(Debug)]
pub(crate) enum Pending {
    Archive(ArchiveWriter),
    Daemon(crate::daemon::DaemonLoad),
}

impl Pending {
    /// The store the writes go to.
    pub(crate) fn writer(&self) -> &ArchiveWriter {
        match self {
            Self::Archive(writer) => writer,
            Self::Daemon(load) => load.writer(),
        }
    }

    /// Completes the write; returns what to tell the user.
    pub(crate) async fn finish(self) -> Result<Vec<String>> {
        match self {
            Self::Archive(writer) => {
                let report = writer
                    .finish()
                    .await
                    .with_context(|| format!("cannot finish {writer}"))?;
                Ok(report.notes)
            }
            Self::Daemon(load) => load.finish().await,
        }
    }
}

/// Whether a file name asks for a gzip-compressed archive.
fn is_gzip_name(file: &Path) -> bool {
    let name = file.to_string_lossy();
    name.ends_with(".tar.gz") || name.ends_with(".tgz")
}

fn parse_oci(rest: &str) -> Result<ArchiveLocation, String> {
    if rest.is_empty() {
        return Err("no file after oci-archive:".to_owned());
    }
    if Path::new(rest).is_file() {
        return Ok(ArchiveLocation::Oci {
            file: PathBuf::from(rest),
            tag: None,
            digest: None,
        });
    }
    let (before_digest, digest) = match rest.split_once('@') {
        Some((before, digest)) => (
            before,
            Some(Digest::parse(digest).map_err(|e| e.to_string())?),
        ),
        None => (rest, None),
    };
    let (file, tag) = match before_digest.split_once(':') {
        Some((file, tag)) => (file, Some(Tag::parse(tag).map_err(|e| e.to_string())?)),
        None => (before_digest, None),
    };
    if file.is_empty() {
        return Err("no file before the tag".to_owned());
    }
    Ok(ArchiveLocation::Oci {
        file: PathBuf::from(file),
        tag,
        digest,
    })
}

fn parse_daemon(rest: &str) -> Result<ArchiveLocation, String> {
    if rest.is_empty() {
        return Err("no image name after docker-daemon:".to_owned());
    }
    if rest.contains('@') {
        return Err(format!(
            "{rest:?}: a Docker daemon's images are named NAME:TAG here, not by digest"
        ));
    }
    let reference = oci_types::Reference::parse(rest).map_err(|e| e.to_string())?;
    Ok(ArchiveLocation::Daemon(DaemonImage {
        name: rest.to_owned(),
        reference,
    }))
}

fn parse_docker(rest: &str) -> Result<ArchiveLocation, String> {
    if rest.is_empty() {
        return Err("no file after docker-archive:".to_owned());
    }
    let (file, image) = match rest.split_once(':') {
        _ if Path::new(rest).is_file() => (rest, None),
        Some((file, image)) => (file, Some(image)),
        None => (rest, None),
    };
    if file.is_empty() {
        return Err("no file before the image name".to_owned());
    }
    let image = match image {
        None => DockerImageRef::Only,
        Some(position) if position.starts_with('@') => DockerImageRef::Position(
            position[1..]
                .parse()
                .map_err(|_| format!("{position:?} is not @N, an image's position"))?,
        ),
        Some(name) => {
            if name.contains('@') {
                return Err(format!(
                    "{name:?}: a docker-archive names images by NAME:TAG, not by digest"
                ));
            }
            let (repo, tag) = archive_name(name).map_err(|e| e.to_string())?;
            DockerImageRef::Named(repo, tag, name.to_owned())
        }
    };
    Ok(ArchiveLocation::Docker {
        file: PathBuf::from(file),
        image,
    })
}

impl fmt::Display for ArchiveLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Oci { file, tag, digest } => {
                write!(f, "{OCI_ARCHIVE}{}", file.display())?;
                if let Some(tag) = tag {
                    write!(f, ":{tag}")?;
                }
                if let Some(digest) = digest {
                    write!(f, "@{digest}")?;
                }
                Ok(())
            }
            Self::Docker { file, image } => {
                write!(f, "{DOCKER_ARCHIVE}{}", file.display())?;
                match image {
                    DockerImageRef::Only => Ok(()),
                    DockerImageRef::Named(_, _, name) => write!(f, ":{name}"),
                    DockerImageRef::Position(n) => write!(f, ":@{n}"),
                }
            }
            Self::Daemon(image) => write!(f, "{DOCKER_DAEMON}{}", image.name),
        }
    }
}

/// The name `manifest.json` must show for images of `reference` when the archive's repository
/// cannot carry it: a registry with a port (`localhost:5000/app`), which a repository cannot
/// hold and [`archive_repository`] drops, so that `docker load` tags them as typed rather
/// than as Docker Hub's `app`. `None` when the repository says it already.
pub(crate) fn shown_name(reference: &Reference) -> Option<String> {
    let full = format!("{}/{}", reference.registry(), reference.repository());
    let kept = archive_repository(reference);
    (reference.registry() != oci_types::DOCKER_HUB && kept.as_str() != full).then_some(full)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &str) -> ArchiveLocation {
        ArchiveLocation::parse(input).unwrap().unwrap()
    }

    #[test]
    fn archives_as_skopeo_names_them() {
        assert_eq!(
            parse("oci-archive:out.tar:v1"),
            ArchiveLocation::Oci {
                file: PathBuf::from("out.tar"),
                tag: Some(Tag::parse("v1").unwrap()),
                digest: None
            }
        );
        let named = parse("docker-archive:app.tar:example/app:v1");
        assert!(
            matches!(&named, ArchiveLocation::Docker { file, .. } if file == Path::new("app.tar"))
        );
        assert_eq!(named.repository().as_str(), "example/app");
        assert_eq!(named.write_tags(), [Tag::parse("v1").unwrap()]);
        assert_eq!(named.to_string(), "docker-archive:app.tar:example/app:v1");
        let position = parse("docker-archive:app.tar:@2");
        assert_eq!(
            position.manifest_ref(),
            ManifestRef::Tag(Tag::parse("2").unwrap())
        );
        assert!(position.write_tags().is_empty());
        assert_eq!(
            parse("docker-archive:app.tar").manifest_ref(),
            ManifestRef::Tag(Tag::parse("0").unwrap())
        );
        assert!(is_gzip_name(Path::new("x.tar.gz")) && is_gzip_name(Path::new("x.tgz")));
        let daemon = parse("docker-daemon:example/app");
        assert_eq!(daemon.repository().as_str(), "example/app");
        assert_eq!(daemon.write_tags(), [Tag::latest()]);
        assert_eq!(daemon.to_string(), "docker-daemon:example/app");
        assert!(ArchiveLocation::parse("oci:dir").is_none());
    }

    #[test]
    fn bad_archive_names_say_why() {
        for (input, reason) in [
            ("oci-archive:", "no file"),
            ("docker-archive:", "no file"),
            ("docker-archive:a.tar:@x", "position"),
            ("docker-archive:a.tar:Bad Name", "repository"),
            ("docker-archive:a.tar:x@sha256:abc", "not by digest"),
            ("docker-daemon:", "no image name"),
            ("docker-daemon:x@sha256:abc", "not by digest"),
        ] {
            let error = ArchiveLocation::parse(input).unwrap().unwrap_err();
            assert!(error.contains(reason), "{input}: {error}");
        }
    }
}
