//! Docker Hub's names: the one registry that goes by several host names, whose API is on yet
//! another host, and whose credentials docker files under a URL rather than a host.
//!
//! Every crate that has to recognise Docker Hub (reference parsing, the registry client, the
//! credential files) reads these, so that a new alias is added in one place.
//!
//! ```
//! use oci_types::docker_hub;
//! assert!(docker_hub::is_docker_hub("index.docker.io"));
//! assert!(!docker_hub::is_docker_hub("ghcr.io"));
//! assert_eq!(docker_hub::API_HOST, "registry-1.docker.io");
//! ```

/// The canonical name: what references without a registry part belong to, and what the
/// registry is called in messages and credential lookups.
pub const NAME: &str = "docker.io";

/// The host the registry API answers on.
pub const API_HOST: &str = "registry-1.docker.io";

/// The legacy index host, which docker's reference parsing rewrites to [`NAME`].
pub const INDEX_HOST: &str = "index.docker.io";

/// Every host name Docker Hub goes by, canonical name first.
pub const ALIASES: [&str; 3] = [NAME, INDEX_HOST, API_HOST];

/// The key `docker login` files Docker Hub's credentials under in `config.json`.
pub const CONFIG_KEY: &str = "https://index.docker.io/v1/";

/// Whether `host` is one of Docker Hub's names ([`ALIASES`]; compared exactly, as docker does).
pub fn is_docker_hub(host: &str) -> bool {
    ALIASES.contains(&host)
}
