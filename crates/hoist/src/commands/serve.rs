//! `hoist serve`: a registry on a directory (one OCI layout per repository), in memory, or on
//! object storage (`--storage`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use oci_layout::{LayoutOptions, LayoutStore};
use oci_server::{AccessPolicy, Action, Actions, Auth, Htpasswd, RegistryServer, ServerOptions};
use oci_store::{BlobLocator, Cached, MemoryStore, OciInterface};

use crate::cli::ServeArgs;
use crate::commands::Ctx;

/// Where `hoist serve` keeps repositories when given neither `--root` nor `--memory`.
const DEFAULT_ROOT: &str = "hoist-registry";
/// The size of blob reads of `hoist serve` on disk.
const SERVE_READ_BUFFER: usize = 1 << 20;

pub(crate) async fn run(ctx: &Ctx, args: ServeArgs) -> Result<()> {
    if args.redirect_blobs && args.mirror.is_some() {
        bail!(
            "--redirect-blobs and --mirror do not go together: a blob not yet cached has no URL in the storage"
        );
    }
    if args.redirect_blobs && args.storage.is_none() {
        bail!("--redirect-blobs needs --storage URL: only object storage can sign URLs of blobs");
    }
    let mut locator: Option<Arc<dyn BlobLocator>> = None;
    let (store, place): (Arc<dyn OciInterface>, String) = if let Some(url) = &args.storage {
        // Opening probes the bucket: a missing bucket or refused credentials stop here.
        let store = oci_bucket::open_url(url)
            .await
            .with_context(|| format!("cannot serve from {url}"))?;
        if args.redirect_blobs {
            if !store.signs_urls() {
                bail!(
                    "--redirect-blobs needs storage that signs URLs (s3://, gs://, az://); {url} has none"
                );
            }
            locator = Some(Arc::new(store.clone()));
        }
        (Arc::new(store), format!("{url} (object storage)"))
    } else if args.memory {
        (
            Arc::new(MemoryStore::new()),
            "memory (lost on exit)".to_owned(),
        )
    } else {
        let explicit = args.root.is_some();
        let root = args.root.unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT));
        // Larger reads than a copy's: a server streams whole blobs to many clients, where
        // fewer, larger reads pay off, at the cost of a few MiB per download in flight
        // (`cargo xtask bench server` compares the sizes).
        let options = LayoutOptions::default().with_read_buffer(SERVE_READ_BUFFER);
        let store = LayoutStore::open_per_repository_with(&root, options)
            .await
            .with_context(|| format!("cannot open {} as a registry root", root.display()))?;
        let place = format!("{} (one OCI layout per repository)", root.display());
        if !explicit {
            eprintln!("hoist: no --root given: serving ./{DEFAULT_ROOT}");
        }
        (Arc::new(store), place)
    };
    let (store, place) = match &args.mirror {
        Some(upstream) => {
            let remote = upstream_client(ctx, upstream).await?;
            let ttl = Duration::from_secs(args.mirror_tag_ttl);
            let cached: Arc<dyn OciInterface> =
                Arc::new(Cached::new(remote, store).with_tag_ttl(ttl));
            (
                cached,
                format!("a pull-through cache of {upstream} in {place}"),
            )
        }
        None => (store, place),
    };
    // A mirror takes no writes unless a policy says who may push (through to upstream).
    let read_only = args.read_only || (args.mirror.is_some() && args.access.is_none());
    let options = ServerOptions::default()
        .with_read_only(read_only)
        .with_deletes(!args.no_delete)
        .with_verify_blob_reads(args.verify_reads)
        .with_max_blob_size(args.max_blob_size)
        .with_max_concurrent_uploads(args.max_concurrent_uploads)
        .with_min_chunk_size(args.min_chunk_size)
        .with_shutdown_grace(Duration::from_secs(30))
        .with_max_connections(args.max_connections)
        .with_max_concurrent_downloads(args.max_concurrent_downloads)
        .with_header_read_timeout(Duration::from_secs(args.header_timeout))
        .with_idle_timeout(Duration::from_secs(args.idle_timeout))
        .with_tls_handshake_timeout(Duration::from_secs(args.tls_handshake_timeout))
        .with_min_body_rate(args.min_body_rate, Duration::from_secs(30));
    let mut server = RegistryServer::new(store).with_options(options);
    if let Some(locator) = locator {
        server = server.with_blob_redirects(locator, Duration::from_secs(args.redirect_expiry));
    }
    let policy = args
        .access
        .as_deref()
        .map(AccessPolicy::load)
        .transpose()
        .context("cannot use the access policy file")?;
    let mut users = args
        .htpasswd
        .as_deref()
        .map(Htpasswd::load)
        .transpose()
        .context("cannot use the htpasswd file")?;
    if let Some(listed) = policy.as_ref().and_then(AccessPolicy::users) {
        if users.is_some() {
            bail!(
                "users are given twice: by --htpasswd and by the htpasswd file of the --access policy; keep one"
            );
        }
        users = Some(listed.clone());
    }
    let policy = match (policy, args.anonymous_push) {
        (Some(policy), _) => Some(policy),
        (None, true) => Some(AccessPolicy::anonymous(Actions::of(&[
            Action::Pull,
            Action::Push,
        ]))),
        (None, false) => None,
    };
    if args.token_auth && users.is_none() && policy.is_none() {
        // Without users every token request is anonymous: the token flow would give anyone
        // a push token, which is no authentication at all; ask for that to be said.
        bail!(
            "--token-auth without users would give anyone a token to push and delete: add --htpasswd FILE (or an htpasswd file in an --access policy), an --access FILE policy, or --anonymous-push to let anyone push on purpose"
        );
    }
    let auth = if args.token_auth {
        Some(Auth::token(users, Duration::from_secs(300)))
    } else if users.is_some() || policy.is_some() {
        Some(Auth::basic(users))
    } else {
        None
    };
    if let Some(mut auth) = auth {
        if let Some(policy) = policy {
            auth = auth.with_policy(policy);
        }
        server = server.with_auth(auth);
    }
    if let (Some(certificate), Some(key)) = (&args.tls_cert, &args.tls_key) {
        server = server
            .with_tls(certificate, key)
            .context("cannot set up TLS")?;
    }
    let listening = server
        .bind(args.addr)
        .await
        .with_context(|| format!("cannot serve on {}", args.addr))?;
    eprintln!("hoist: serving {place} on {}", listening.url());
    wait_for_signal().await?;
    eprintln!("hoist: shutting down; finishing requests in flight");
    listening.shutdown().await;
    Ok(())
}

/// Returns on SIGINT (Ctrl-C) or SIGTERM.
async fn wait_for_signal() -> Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("cannot listen for SIGINT"),
        _ = terminate.recv() => Ok(()),
    }
}

/// A client of the registry `upstream` names (`host[:port]`, or a URL whose `http://` asks
/// for plain HTTP), with the command line's registry options.
async fn upstream_client(ctx: &Ctx, upstream: &str) -> Result<Arc<dyn OciInterface>> {
    let (host, plain) = match upstream.split_once("://") {
        Some(("https", host)) => (host, false),
        Some(("http", host)) => (host, true),
        Some((scheme, _)) => bail!(
            "--mirror {upstream}: {scheme}:// is not a registry's scheme (https:// or http://)"
        ),
        None => (upstream, false),
    };
    let host = host.trim_end_matches('/');
    if host.is_empty() || host.contains('/') {
        bail!("--mirror {upstream}: give the registry's host (and port), not a repository");
    }
    let mut builder = ctx.opener.client_builder(host);
    if plain {
        builder = builder.with_plain_http(true);
    }
    let client = builder
        .build()
        .await
        .with_context(|| format!("cannot set up a client of {upstream}"))?;
    Ok(Arc::new(client))
}
