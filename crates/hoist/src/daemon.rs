//! `docker-daemon:NAME[:TAG]`: images loaded into and saved out of a Docker daemon (or
//! podman's Docker-compatible service) through its Engine API, at `DOCKER_HOST`
//! (`unix:///var/run/docker.sock` by default).
//!
//! The two sides join crates that do not know each other: an `oci_archive::ArchiveWriter`
//! writes a docker-archive into a [`ChannelWriter`] whose other end is the body of
//! `oci_docker::DockerClient::load`, so the tar is produced while the daemon reads it, with
//! no temporary file; a save is received into an anonymous temporary file and read by an
//! `ArchiveReader`, since reading an archive needs to seek.

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use bytes::Bytes;
use futures::StreamExt;
use oci_archive::{
    ArchiveFormat, ArchiveLimits, ArchiveReader, ArchiveWriter, DockerFormat, LayerSource, ReadAs,
    WriteOptions,
};
use oci_docker::{DockerClient, LoadReport};
use oci_store::BufferPool;
use oci_types::{Platform, Reference};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Pieces of the tar sent to the daemon at once.
const PIECE: usize = 1 << 20;
/// Pieces queued for the request's body.
const PIECES_QUEUED: usize = 4;

/// An image in a Docker daemon: the name as typed (what the daemon is asked for) and as
/// parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DaemonImage {
    pub(crate) name: String,
    pub(crate) reference: Reference,
}

impl DaemonImage {
    /// The name with its tag (`latest` when none was typed), as `docker load` reports it.
    pub(crate) fn tagged_name(&self) -> String {
        if self.reference.tag().is_some() {
            self.name.clone()
        } else {
            format!("{}:latest", self.name)
        }
    }
}

/// The client of the daemon at `DOCKER_HOST`.
pub(crate) fn client() -> Result<DockerClient> {
    DockerClient::from_env().context("cannot set up a client of the Docker daemon")
}

/// Saves `image` out of the daemon and opens it as a docker-archive.
pub(crate) async fn open_reader(image: &DaemonImage) -> Result<ArchiveReader> {
    let client = client()?;
    let name = image.tagged_name();
    let context = || {
        format!(
            "cannot save {name} out of the Docker daemon at {}",
            client.host()
        )
    };
    let mut stream = client
        .save(std::slice::from_ref(&name))
        .await
        .with_context(context)?;
    let spooled = tempfile::tempfile().context("cannot create a temporary file")?;
    let mut file = tokio::fs::File::from_std(
        spooled
            .try_clone()
            .context("cannot reopen a temporary file")?,
    );
    while let Some(piece) = stream.next().await {
        let piece = piece.with_context(context)?;
        file.write_all(&piece)
            .await
            .context("cannot write a temporary file")?;
    }
    file.flush()
        .await
        .context("cannot write a temporary file")?;
    drop(file);
    ArchiveReader::from_file(
        spooled,
        format!("docker-daemon:{name}"),
        ReadAs::Docker,
        ArchiveLimits::default(),
    )
    .await
    .with_context(|| format!("cannot read what the Docker daemon saved of {name}"))
}

/// A load into the daemon under way: the archive being written and the request carrying it.
#[derive(Debug)]
pub(crate) struct DaemonLoad {
    writer: ArchiveWriter,
    load: JoinHandle<Result<LoadReport, oci_docker::Error>>,
    name: String,
    host: String,
}

/// The platform images for the daemon should be, asked of the daemon itself.
pub(crate) async fn platform(client: &DockerClient) -> Result<Platform> {
    client.platform().await.with_context(|| {
        format!(
            "cannot ask the Docker daemon at {} for its platform",
            client.host()
        )
    })
}

/// Starts loading into the daemon: returns the store to push the image into.
///
/// With `layers` (a local store the image comes from, whose range reads are cheap), the daemon
/// gets a classic docker-archive whose gzip layers are decompressed on the way, each sized by
/// its gzip trailer read there (see `oci_archive::LayerSource`): `docker load` decompresses
/// every gzip layer itself before it registers it, after it has stored the whole archive.
/// Without, a Docker 25+ archive of the layers as pushed.
pub(crate) async fn start_load(
    image: &DaemonImage,
    platform: Option<&Platform>,
    layers: Option<LayerSource>,
) -> Result<DaemonLoad> {
    let client = client()?;
    let platform = match platform {
        Some(platform) => platform.clone(),
        None => self::platform(&client).await?,
    };
    let (sender, receiver) = mpsc::channel::<io::Result<Bytes>>(PIECES_QUEUED);
    let completed = Arc::new(AtomicBool::new(false));
    let body = body_stream(receiver, Arc::clone(&completed));
    let host = client.host().to_owned();
    let load = tokio::spawn(async move { client.load(body).await });
    let mut options = WriteOptions::new().with_platform(platform);
    if let Some(name) = crate::transports::shown_name(&image.reference) {
        let repo = oci_archive::archive_repository(&image.reference);
        options = options.with_name(repo, name);
    }
    let format = match layers {
        Some(layers) => {
            options = options.with_layer_source(layers);
            DockerFormat::Classic
        }
        None => DockerFormat::Hybrid,
    };
    let writer = ArchiveWriter::to_stream(
        Box::new(ChannelWriter {
            sender,
            pool: BufferPool::new(PIECE, PIECES_QUEUED + 2),
            buffer: Vec::new(),
            completed,
        }),
        ArchiveFormat::Docker(format),
        options,
        format!("docker-daemon:{}", image.tagged_name()),
    );
    Ok(DaemonLoad {
        writer,
        load,
        name: image.tagged_name(),
        host,
    })
}

impl DaemonLoad {
    /// The store the image is pushed into.
    pub(crate) fn writer(&self) -> &ArchiveWriter {
        &self.writer
    }

    /// Ends the archive and waits for the daemon's answer; an error names what it said.
    pub(crate) async fn finish(self) -> Result<Vec<String>> {
        let report = self.writer.finish().await;
        // The writer's end of the channel is gone once finished (or given up): the request
        // ends, cleanly or with an error, and the daemon answers.
        drop(self.writer);
        let answer = self.load.await.context("the load request stopped")?;
        let (report, answer) = match (report, answer) {
            (Ok(report), Ok(answer)) => (report, answer),
            // The daemon's own words say most when it refused what it was sent, or stopped
            // reading it (the writer then saw a broken pipe).
            (_, Err(refused)) => {
                return Err(anyhow::Error::new(refused).context(format!(
                    "the Docker daemon at {} did not load {}",
                    self.host, self.name
                )));
            }
            (Err(unwritten), Ok(_)) => {
                return Err(anyhow::Error::new(unwritten)
                    .context(format!("cannot write {} for the Docker daemon", self.name)));
            }
        };
        let mut notes = report.notes;
        if !answer
            .names
            .iter()
            .any(|loaded| same_name(loaded, &self.name))
        {
            anyhow::bail!(
                "the Docker daemon at {} answered without loading {} (it loaded: {})",
                self.host,
                self.name,
                if answer.names.is_empty() {
                    "nothing named".to_owned()
                } else {
                    answer.names.join(", ")
                }
            );
        }
        notes.push(format!(
            "loaded {} into the Docker daemon at {}",
            self.name, self.host
        ));
        Ok(notes)
    }
}

/// Whether the daemon's name for what it loaded is the name asked for (docker reports
/// `busybox:latest`, podman `docker.io/library/busybox:latest` or
/// `localhost/busybox:latest`).
fn same_name(loaded: &str, wanted: &str) -> bool {
    // podman names what it loads from a name without a registry `localhost/NAME`.
    let loaded = loaded.strip_prefix("localhost/").unwrap_or(loaded);
    match (Reference::parse(loaded), Reference::parse(wanted)) {
        (Ok(a), Ok(b)) => a == b,
        _ => loaded == wanted,
    }
}

/// The body of the load request: the pieces the writer sends, and an error instead of a
/// clean end if the writer stops before the archive is complete, so that the daemon never
/// takes a truncated tar for a whole one.
fn body_stream(
    receiver: mpsc::Receiver<io::Result<Bytes>>,
    completed: Arc<AtomicBool>,
) -> impl futures::Stream<Item = io::Result<Bytes>> + Send + 'static {
    futures::stream::unfold(Some((receiver, completed)), |state| async move {
        let (mut receiver, completed) = state?;
        match receiver.recv().await {
            Some(item) => Some((item, Some((receiver, completed)))),
            None if completed.load(Ordering::Acquire) => None,
            None => Some((Err(io::Error::other("the image was not completed")), None)),
        }
    })
}

/// The writing end of the load request's body (used on the archive writer's blocking
/// thread): gathers the tar into pieces (buffers reused once the request has sent them) and
/// sends them. `flush`, which the archive calls only after its last block, marks the body
/// complete.
struct ChannelWriter {
    sender: mpsc::Sender<io::Result<Bytes>>,
    pool: BufferPool,
    buffer: Vec<u8>,
    completed: Arc<AtomicBool>,
}

impl ChannelWriter {
    fn send_buffer(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let piece = self.pool.hand_out(std::mem::take(&mut self.buffer));
        self.sender.blocking_send(Ok(piece)).map_err(|_| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the Docker daemon stopped reading the image",
            )
        })
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.buffer.capacity() == 0 {
            self.buffer = self.pool.take();
        }
        let take = bytes.len().min(PIECE - self.buffer.len());
        self.buffer.extend_from_slice(&bytes[..take]);
        if self.buffer.len() == PIECE {
            self.send_buffer()?;
        }
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buffer()?;
        self.completed.store(true, Ordering::Release);
        Ok(())
    }
}

/// Tags the image in the daemon instead of loading it when the daemon already has its config
/// (the image id): returns whether it did.
pub(crate) async fn tag_if_present(
    client: &DockerClient,
    config: &oci_types::Digest,
    image: &DaemonImage,
) -> Result<bool> {
    let Some(id) = client.image_id(config.as_str()).await.with_context(|| {
        format!(
            "cannot ask the Docker daemon at {} about {config}",
            client.host()
        )
    })?
    else {
        return Ok(false);
    };
    let repository = image
        .name
        .rsplit_once(':')
        .filter(|(_, tag)| !tag.contains('/'))
        .map_or(image.name.as_str(), |(repo, _)| repo);
    let tag = image
        .reference
        .tag()
        .map_or("latest".to_owned(), ToString::to_string);
    client.tag(&id, repository, &tag).await.with_context(|| {
        format!(
            "cannot tag {id} as {} in the Docker daemon at {}",
            image.tagged_name(),
            client.host()
        )
    })?;
    Ok(true)
}
