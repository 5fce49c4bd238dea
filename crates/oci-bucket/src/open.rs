//! Opening a store from a URL, as `hoist serve --storage` does, with a probe of the bucket.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use url::Url;

use crate::error::{Error, Result};
use crate::store::BucketStore;

/// Opens the bucket a URL names and checks that it can be listed:
/// - `memory://` (a bucket in this process, gone when it ends),
/// - `file:///DIR` (a directory, created if missing),
/// - `s3://BUCKET/PREFIX`, configured from the standard AWS environment variables
///   (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`,
///   `AWS_ALLOW_HTTP`, ...), as object_store reads them,
/// - `gs://BUCKET/PREFIX` (`GOOGLE_*` variables) and `az://CONTAINER/PREFIX` (`AZURE_*`).
///
/// The probe turns a missing bucket or refused credentials into an error here, at start-up,
/// rather than on the first request.
pub async fn open_url(url: &str) -> Result<BucketStore> {
    open_url_with(url, std::iter::empty::<(&str, &str)>()).await
}

/// [`open_url`] with configuration keys of object_store's builders (`aws_endpoint`,
/// `aws_allow_http`, `google_service_account`, ...) applied over the environment's.
pub async fn open_url_with<K: AsRef<str>, V: Into<String>>(
    url: &str,
    options: impl IntoIterator<Item = (K, V)>,
) -> Result<BucketStore> {
    let options: Vec<(String, String)> = options
        .into_iter()
        .map(|(k, v)| (k.as_ref().to_owned(), v.into()))
        .collect();
    let unsupported = |reason: &str| Error::UnsupportedUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let parsed = Url::parse(url).map_err(|e| unsupported(&e.to_string()))?;
    let config = |source| Error::Config {
        url: url.to_owned(),
        source,
    };
    let prefix = parsed.path().trim_matches('/').to_owned();
    let store = match parsed.scheme() {
        "memory" => BucketStore::with_multipart(Arc::new(InMemory::new())).with_prefix(&format!(
            "{}{prefix}",
            parsed.host_str().unwrap_or_default()
        )),
        "file" => {
            let dir = parsed
                .to_file_path()
                .map_err(|()| unsupported("not a local path"))?;
            std::fs::create_dir_all(&dir).map_err(|e| {
                config(object_store::Error::Generic {
                    store: "LocalFileSystem",
                    source: Box::new(e),
                })
            })?;
            BucketStore::new(Arc::new(
                LocalFileSystem::new_with_prefix(&dir).map_err(config)?,
            ))
        }
        "s3" | "s3a" => {
            install_ring_provider();
            let mut builder = AmazonS3Builder::from_env().with_url(url);
            for (key, value) in &options {
                builder = builder.with_config(key.parse().map_err(config)?, value);
            }
            let s3 = builder.build().map_err(config)?;
            BucketStore::with_multipart(Arc::new(s3)).with_prefix(&prefix)
        }
        "gs" => {
            install_ring_provider();
            let mut builder = GoogleCloudStorageBuilder::from_env().with_url(url);
            for (key, value) in &options {
                builder = builder.with_config(key.parse().map_err(config)?, value);
            }
            let gcs = builder.build().map_err(config)?;
            BucketStore::with_multipart(Arc::new(gcs)).with_prefix(&prefix)
        }
        "az" | "azure" | "abfs" | "abfss" => {
            install_ring_provider();
            let mut builder = MicrosoftAzureBuilder::from_env().with_url(url);
            for (key, value) in &options {
                builder = builder.with_config(key.parse().map_err(config)?, value);
            }
            let azure = builder.build().map_err(config)?;
            BucketStore::with_multipart(Arc::new(azure)).with_prefix(&prefix)
        }
        _ => {
            return Err(unsupported(
                "expected memory://, file:///DIR, s3://, gs:// or az://",
            ));
        }
    };
    let store = store.with_name(url);
    probe(&store, url).await?;
    Ok(store)
}

/// object_store's HTTP client (reqwest) is built with rustls but no crypto provider of its
/// own (its default, aws-lc-rs, needs cmake): ring, as everywhere in hoist, is installed as
/// the process default. Installing twice is harmless.
fn install_ring_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _already = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Lists the prefix once: the cheapest request that needs the bucket to exist and the
/// credentials to be good.
async fn probe(store: &BucketStore, url: &str) -> Result<()> {
    let root = store.inner.keys.root();
    match store
        .object_store()
        .list_with_delimiter(root.as_ref())
        .await
    {
        Ok(_) => Ok(()),
        Err(source) => {
            let text = source.to_string();
            let hint = match &source {
                object_store::Error::NotFound { .. } => "the bucket does not exist",
                object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. } => "the credentials were refused",
                _ if text.contains("NoSuchBucket") => "the bucket does not exist",
                _ if [
                    "InvalidAccessKeyId",
                    "SignatureDoesNotMatch",
                    "AccessDenied",
                    "403",
                ]
                .iter()
                .any(|code| text.contains(code)) =>
                {
                    "the credentials were refused"
                }
                _ => "the store cannot be reached",
            };
            Err(Error::Probe {
                url: url.to_owned(),
                hint,
                source,
            })
        }
    }
}
