//! Locations opened: [`Opener`] turns a [`Location`] into a store, a repository and what to
//! read or write there ([`Place`]); it is the one place in hoist that names concrete backends,
//! and it shares one registry client per registry and one layout store per directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use oci_layout::LayoutStore;
use oci_registry::RegistryClient;
use oci_store::OciInterface;
use oci_types::Repository;
use tokio::sync::Mutex;

use crate::cli::{DockerArchiveFormat, RegistryArgs};
use crate::location::Location;
use crate::transports::Pending;

/// A location opened: the store, and the repository in it.
#[derive(Debug, Clone)]
pub(crate) struct Place {
    /// The store.
    pub(crate) store: Arc<dyn OciInterface>,
    /// The repository (a layout's default repository).
    pub(crate) repo: Repository,
    /// What is left to do once everything is written (an archive's index, a daemon's
    /// load), if anything.
    pending: Option<Arc<Mutex<Option<Pending>>>>,
}

impl Place {
    fn new(store: Arc<dyn OciInterface>, repo: Repository) -> Self {
        Self {
            store,
            repo,
            pending: None,
        }
    }

    /// Completes what was written here: an archive gets its index and appears at its path.
    /// Commands that write call it once, after their last write and before they report;
    /// it gives the notes for the user that finishing made.
    pub(crate) async fn finish(&self) -> Result<Vec<String>> {
        let Some(pending) = &self.pending else {
            return Ok(Vec::new());
        };
        let Some(pending) = pending.lock().await.take() else {
            return Ok(Vec::new());
        };
        pending.finish().await
    }

    /// The descriptor of the manifest `at` names here, without reading more than a descriptor.
    pub(crate) async fn resolve(
        &self,
        at: &oci_build::ManifestRef,
    ) -> oci_store::Result<oci_types::Descriptor> {
        use oci_store::OciInterfaceExt as _;
        self.store.resolve_manifest_ref(&self.repo, at).await
    }

    /// This place as one end of a copy.
    pub(crate) fn endpoint(&self) -> oci_build::Endpoint<'_> {
        oci_build::Endpoint::new(&*self.store, &self.repo)
    }
}

/// Opens locations, sharing one client per registry and one store per layout directory (so
/// tokens, connections and locks are shared between the two ends of a copy).
#[derive(Debug)]
pub(crate) struct Opener {
    registry: RegistryArgs,
    max_requests: usize,
    docker_format: oci_archive::DockerFormat,
    registries: Mutex<HashMap<String, Arc<dyn OciInterface>>>,
    layouts: Mutex<HashMap<PathBuf, Arc<dyn OciInterface>>>,
}

impl Opener {
    pub(crate) fn new(registry: RegistryArgs) -> Self {
        Self {
            registry,
            max_requests: 16,
            docker_format: oci_archive::DockerFormat::Hybrid,
            registries: Mutex::new(HashMap::new()),
            layouts: Mutex::new(HashMap::new()),
        }
    }

    /// Allows at least this many requests in flight per registry (for `--jobs`).
    pub(crate) fn with_max_requests(mut self, count: usize) -> Self {
        self.max_requests = self.max_requests.max(count);
        self
    }

    /// Writes docker-archives in `format`.
    pub(crate) fn with_docker_archive_format(mut self, format: DockerArchiveFormat) -> Self {
        self.docker_format = match format {
            DockerArchiveFormat::Hybrid => oci_archive::DockerFormat::Hybrid,
            DockerArchiveFormat::Classic => oci_archive::DockerFormat::Classic,
        };
        self
    }

    /// A client builder for `registry` with the command line's TLS and transport options.
    pub(crate) fn client_builder(&self, registry: &str) -> oci_registry::RegistryClientBuilder {
        let mut builder = RegistryClient::builder(registry)
            .with_skip_verify(self.registry.insecure)
            .with_max_concurrent_requests(self.max_requests);
        if self.registry.plain_http {
            builder = builder.with_plain_http(true);
        }
        for file in &self.registry.ca_file {
            builder = builder.with_ca_file(file);
        }
        if let Some(proxy) = &self.registry.proxy {
            builder = builder.with_proxy(proxy);
        }
        builder
    }

    /// The store of a registry, built once.
    pub(crate) async fn registry(&self, name: &str) -> Result<Arc<dyn OciInterface>> {
        let mut clients = self.registries.lock().await;
        if let Some(client) = clients.get(name) {
            return Ok(Arc::clone(client));
        }
        let client = self
            .client_builder(name)
            .build()
            .await
            .with_context(|| format!("cannot set up a client of registry {name}"))?;
        let client: Arc<dyn OciInterface> = Arc::new(client);
        clients.insert(name.to_owned(), Arc::clone(&client));
        Ok(client)
    }

    /// The store of a layout directory, opened once.
    pub(crate) async fn layout(&self, dir: &Path) -> Result<Arc<dyn OciInterface>> {
        let mut layouts = self.layouts.lock().await;
        if let Some(store) = layouts.get(dir) {
            return Ok(Arc::clone(store));
        }
        // A current-thread runtime runs one of the one-request commands (`Command::is_small`):
        // nothing else waits while it reads, so it reads small files without a thread hand-off.
        let one_request = tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::CurrentThread;
        let options = oci_layout::LayoutOptions::default().with_inline_io(one_request);
        let store = LayoutStore::open_with(dir, options)
            .await
            .with_context(|| format!("cannot open {} as an OCI image layout", dir.display()))?;
        let store: Arc<dyn OciInterface> = Arc::new(store);
        layouts.insert(dir.to_path_buf(), Arc::clone(&store));
        Ok(store)
    }

    /// The store and repository of a location that names a repository.
    pub(crate) async fn open(&self, location: &Location) -> Result<Place> {
        match location {
            Location::Registry(reference) => Ok(Place::new(
                self.registry(reference.registry()).await?,
                reference.repository().clone(),
            )),
            Location::Layout { dir, .. } => Ok(Place::new(
                self.layout(dir).await?,
                oci_layout::LayoutOptions::default().default_repository,
            )),
            Location::Archive(archive) => Ok(Place::new(
                Arc::new(archive.open_reader().await?),
                archive.read_repository(),
            )),
            Location::RegistryHost(host) => Err(anyhow::anyhow!(
                "{host} is a registry, not a repository in it"
            )),
        }
    }

    /// The store and repository a command writes to: [`open`](Self::open)'s, except that an
    /// archive is created (for `platform`, when it must pick one out of an index) and must be
    /// finished with [`Place::finish`].
    pub(crate) async fn open_target(
        &self,
        location: &Location,
        platform: Option<&oci_types::Platform>,
    ) -> Result<Place> {
        self.open_target_from(location, platform, None).await
    }

    /// [`open_target`](Self::open_target) for a copy from `layers`, a local store whose layers
    /// a load into a Docker daemon reads the gzip trailers of, to send them uncompressed.
    pub(crate) async fn open_target_from(
        &self,
        location: &Location,
        platform: Option<&oci_types::Platform>,
        layers: Option<oci_archive::LayerSource>,
    ) -> Result<Place> {
        let Location::Archive(archive) = location else {
            return self.open(location).await;
        };
        let pending = archive
            .create_writer(platform, self.docker_format, layers)
            .await?;
        Ok(Place {
            store: Arc::new(pending.writer().clone()),
            repo: archive.repository(),
            pending: Some(Arc::new(Mutex::new(Some(pending)))),
        })
    }

    /// The store of a location, for listing its repositories.
    pub(crate) async fn open_store(&self, location: &Location) -> Result<Arc<dyn OciInterface>> {
        match location {
            Location::Registry(reference) => self.registry(reference.registry()).await,
            Location::RegistryHost(host) => self.registry(host).await,
            Location::Layout { dir, .. } => self.layout(dir).await,
            Location::Archive(archive) => Ok(Arc::new(archive.open_reader().await?)),
        }
    }
}
