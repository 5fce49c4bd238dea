//! Opening a store from a URL, as `hoist serve --storage` does, with a probe of the bucket.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::{BackoffConfig, ObjectStore, RetryConfig};
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
/// Stores in the cloud sign URLs for blob redirects ([`oci_store::BlobLocator`]).
///
/// The probe turns a missing bucket or refused credentials into an error here, at start-up,
/// rather than on the first request.
pub async fn open_url(url: &str) -> Result<BucketStore> {
    open_url_with(url, std::iter::empty::<(&str, &str)>()).await
}

/// How long a request to an object store that is down or unreachable is retried before it
/// fails. object_store's default (10 retries within 3 minutes) keeps `hoist serve --storage`
/// hanging for minutes on every request while the store is away, and its clients time out
/// first without an answer; a few retries with backoff within 12 s ride out a blip (a
/// restarting endpoint, a 503 `SlowDown`) and otherwise answer a clear failure quickly.
pub(crate) const DEFAULT_RETRY_TIMEOUT: Duration = Duration::from_secs(12);
/// How many times one request is retried, within [`DEFAULT_RETRY_TIMEOUT`].
pub(crate) const DEFAULT_MAX_RETRIES: usize = 4;
/// How long establishing a connection may take (object_store's default is 5 s, retried, so
/// an endpoint that drops packets would use the whole retry budget on two attempts).
pub(crate) const DEFAULT_CONNECT_TIMEOUT: &str = "3s";

/// The largest object S3 copies in one request (`CopyObject`).
const S3_COPY_LIMIT: u64 = 5 << 30;

/// [`open_url`] with configuration keys of object_store's builders (`aws_endpoint`,
/// `aws_allow_http`, `google_service_account`, `connect_timeout`, `timeout`, ...) applied over
/// the environment's, and two keys of hoist's own for object_store's [`RetryConfig`]:
/// `retry_timeout` (`12s` by default; `500ms`, `30s` or a number of seconds) and `max_retries`
/// (4). The connect timeout is 3 s unless `connect_timeout` says otherwise.
pub async fn open_url_with<K: AsRef<str>, V: Into<String>>(
    url: &str,
    options: impl IntoIterator<Item = (K, V)>,
) -> Result<BucketStore> {
    let mut options: Vec<(String, String)> = options
        .into_iter()
        .map(|(k, v)| (k.as_ref().to_owned(), v.into()))
        .collect();
    if !options.iter().any(|(key, _)| key == "connect_timeout") {
        options.insert(
            0,
            (
                "connect_timeout".to_owned(),
                DEFAULT_CONNECT_TIMEOUT.to_owned(),
            ),
        );
    }
    let unsupported = |reason: &str| Error::UnsupportedUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let parsed = Url::parse(url).map_err(|e| unsupported(&e.to_string()))?;
    let retry = retry_config(&mut options).map_err(|reason| unsupported(&reason))?;
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
            let s3 = Arc::new(builder.with_retry(retry.clone()).build().map_err(config)?);
            BucketStore::with_multipart(Arc::clone(&s3))
                .with_prefix(&prefix)
                .with_signer(s3)
                .with_copy_limit(S3_COPY_LIMIT)
        }
        "gs" => {
            install_ring_provider();
            let mut builder = GoogleCloudStorageBuilder::from_env().with_url(url);
            for (key, value) in &options {
                builder = builder.with_config(key.parse().map_err(config)?, value);
            }
            let gcs = Arc::new(builder.with_retry(retry.clone()).build().map_err(config)?);
            BucketStore::with_multipart(Arc::clone(&gcs))
                .with_prefix(&prefix)
                .with_signer(gcs)
        }
        "az" | "azure" | "abfs" | "abfss" => {
            install_ring_provider();
            let mut builder = MicrosoftAzureBuilder::from_env().with_url(url);
            for (key, value) in &options {
                builder = builder.with_config(key.parse().map_err(config)?, value);
            }
            let azure = Arc::new(builder.with_retry(retry.clone()).build().map_err(config)?);
            BucketStore::with_multipart(Arc::clone(&azure))
                .with_prefix(&prefix)
                .with_signer(azure)
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

/// Takes `retry_timeout` and `max_retries` out of the options (object_store's builders take a
/// [`RetryConfig`] only as a value) and builds the retry policy from them and the defaults.
fn retry_config(options: &mut Vec<(String, String)>) -> std::result::Result<RetryConfig, String> {
    let mut retry = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(4),
            base: 2.0,
        },
        max_retries: DEFAULT_MAX_RETRIES,
        retry_timeout: DEFAULT_RETRY_TIMEOUT,
    };
    let invalid = |key: &str, value: &str| format!("option {key}={value:?} is not valid");
    let mut error = None;
    options.retain(|(key, value)| match key.as_str() {
        "retry_timeout" => {
            match parse_duration(value) {
                Some(timeout) => retry.retry_timeout = timeout,
                None => error = Some(invalid(key, value)),
            }
            false
        }
        "max_retries" => {
            match value.trim().parse() {
                Ok(n) => retry.max_retries = n,
                Err(_) => error = Some(invalid(key, value)),
            }
            false
        }
        _ => true,
    });
    match error {
        Some(error) => Err(error),
        None => Ok(retry),
    }
}

/// `500ms`, `12s` or a number of seconds.
fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 0.001)
    } else {
        (text.strip_suffix('s').unwrap_or(text), 1.0)
    };
    let value: f64 = number.trim().parse().ok()?;
    Duration::try_from_secs_f64(value * scale).ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_options_are_read_and_taken_out() {
        let mut options = vec![
            ("retry_timeout".to_owned(), "500ms".to_owned()),
            ("max_retries".to_owned(), "2".to_owned()),
            ("aws_region".to_owned(), "us-east-1".to_owned()),
        ];
        let retry = retry_config(&mut options).unwrap();
        assert_eq!(retry.retry_timeout, Duration::from_millis(500));
        assert_eq!(retry.max_retries, 2);
        assert_eq!(options.len(), 1);
        assert_eq!(parse_duration("15"), Some(Duration::from_secs(15)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("soon"), None);
        let mut bad = vec![("max_retries".to_owned(), "many".to_owned())];
        assert!(retry_config(&mut bad).is_err());
    }
}
