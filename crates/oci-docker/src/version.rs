//! The daemon's version (`GET /version`) and the Engine API version negotiation.

use std::fmt;

use serde::Deserialize;

/// The oldest Engine API this client speaks: Docker Engine 20.10's, and what podman's
/// Docker-compatible service reports.
pub(crate) const MINIMUM_API: ApiVersion = ApiVersion {
    major: 1,
    minor: 41,
};

/// The newest Engine API this client speaks (Docker Engine 26.1's); a newer daemon is spoken
/// to in this version, which it still serves.
pub(crate) const MAXIMUM_API: ApiVersion = ApiVersion {
    major: 1,
    minor: 45,
};

/// An Engine API version, `MAJOR.MINOR`, compared by number (`1.9` < `1.41`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ApiVersion {
    major: u32,
    minor: u32,
}

impl ApiVersion {
    /// Parses `MAJOR.MINOR` (decimal numbers); `None` for anything else.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let (major, minor) = text.split_once('.')?;
        let number = |part: &str| {
            if part.is_empty() || part.len() > 9 || !part.bytes().all(|b| b.is_ascii_digit()) {
                None
            } else {
                part.parse().ok()
            }
        };
        Some(Self {
            major: number(major)?,
            minor: number(minor)?,
        })
    }

    /// The version this client speaks to a daemon of version `self`, or `None` when the
    /// daemon is too old.
    pub(crate) fn negotiate(self) -> Option<Self> {
        (self >= MINIMUM_API).then(|| self.min(MAXIMUM_API))
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// What a daemon says of itself (`GET /version`), and the API version this client speaks to
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DaemonVersion {
    /// The newest Engine API version the daemon speaks (`ApiVersion`), such as `1.41`.
    pub api_version: String,
    /// The Engine API version this client uses with it: the daemon's, or `1.45` for a newer
    /// daemon. Every request but `GET /version` goes to `/v{negotiated_api_version}/...`.
    pub negotiated_api_version: String,
    /// The engine's version (`Version`), such as `20.10.24+dfsg1` for Docker or `4.3.1` for
    /// podman.
    pub version: String,
    /// The daemon's operating system as a `GOOS` value (`Os`), such as `linux`.
    pub os: String,
    /// The daemon's architecture as a `GOARCH` value (`Arch`), such as `amd64`.
    pub arch: String,
    /// The daemon's components and their versions (`Components`), such as `Engine` and
    /// `containerd` for Docker, `Podman Engine` and `Conmon` for podman; empty if it lists
    /// none.
    pub components: Vec<Component>,
}

/// A component of the daemon, as listed by `GET /version`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Component {
    /// Its name (`Name`), such as `containerd`.
    pub name: String,
    /// Its version (`Version`).
    pub version: String,
}

/// The wire form of `GET /version`'s answer (the fields read; the others are ignored).
#[derive(Debug, Deserialize)]
pub(crate) struct VersionAnswer {
    #[serde(rename = "ApiVersion")]
    pub(crate) api_version: Option<String>,
    #[serde(rename = "Version", default)]
    pub(crate) version: String,
    #[serde(rename = "Os", default)]
    pub(crate) os: String,
    #[serde(rename = "Arch", default)]
    pub(crate) arch: String,
    #[serde(rename = "Components", default)]
    pub(crate) components: Option<Vec<ComponentAnswer>>,
}

/// The wire form of a component.
#[derive(Debug, Deserialize)]
pub(crate) struct ComponentAnswer {
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "Version", default)]
    version: String,
}

impl VersionAnswer {
    /// The daemon's version with the API version negotiated (`api` is the daemon's, parsed).
    pub(crate) fn into_version(self, api_version: String, negotiated: ApiVersion) -> DaemonVersion {
        DaemonVersion {
            api_version,
            negotiated_api_version: negotiated.to_string(),
            version: self.version,
            os: self.os,
            arch: self.arch,
            components: self
                .components
                .unwrap_or_default()
                .into_iter()
                .map(|c| Component {
                    name: c.name,
                    version: c.version,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> ApiVersion {
        ApiVersion::parse(text).unwrap()
    }

    #[test]
    fn parse() {
        assert_eq!(
            v("1.41"),
            ApiVersion {
                major: 1,
                minor: 41
            }
        );
        assert_eq!(v("1.9").to_string(), "1.9");
        assert_eq!(v("2.0").to_string(), "2.0");
        for bad in [
            "",
            "1",
            "1.",
            ".41",
            "1.41.2",
            "v1.41",
            "1.-4",
            "1.+4",
            "a.b",
            " 1.41",
            "1.4x",
            "9999999999.1",
        ] {
            assert_eq!(ApiVersion::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn compared_by_number() {
        assert!(v("1.9") < v("1.41"));
        assert!(v("1.41") < v("1.45"));
        assert!(v("1.45") < v("1.100"));
        assert!(v("1.100") < v("2.0"));
        assert_eq!(v("1.41"), v("1.41"));
    }

    #[test]
    fn negotiation() {
        let negotiated = |d: &str| v(d).negotiate().map(|n| n.to_string());
        assert_eq!(negotiated("1.9"), None);
        assert_eq!(negotiated("1.40"), None);
        assert_eq!(negotiated("1.41").as_deref(), Some("1.41"));
        assert_eq!(negotiated("1.43").as_deref(), Some("1.43"));
        assert_eq!(negotiated("1.45").as_deref(), Some("1.45"));
        assert_eq!(negotiated("1.47").as_deref(), Some("1.45"));
        assert_eq!(negotiated("2.3").as_deref(), Some("1.45"));
    }

    #[test]
    fn answers() {
        // Docker Engine 20.10 (Debian bookworm), trimmed.
        let docker: VersionAnswer = serde_json::from_str(
            r#"{"Platform":{"Name":""},"Components":[{"Name":"Engine","Version":"20.10.24+dfsg1","Details":{"ApiVersion":"1.41"}},{"Name":"containerd","Version":"1.6.20~ds1"}],"Version":"20.10.24+dfsg1","ApiVersion":"1.41","MinAPIVersion":"1.12","GitCommit":"5d6db84","GoVersion":"go1.19.8","Os":"linux","Arch":"amd64","KernelVersion":"6.1.0"}"#,
        )
        .unwrap();
        let version = docker.into_version("1.41".to_owned(), v("1.41"));
        assert_eq!(version.version, "20.10.24+dfsg1");
        assert_eq!(
            (version.os.as_str(), version.arch.as_str()),
            ("linux", "amd64")
        );
        assert_eq!(version.components.len(), 2);
        assert_eq!(version.components[1].name, "containerd");
        // podman lists no `Components` in some versions; `null` is none.
        let podman: VersionAnswer = serde_json::from_str(
            r#"{"Components":null,"Version":"4.3.1","ApiVersion":"1.41","Os":"linux","Arch":"amd64"}"#,
        )
        .unwrap();
        assert!(
            podman
                .into_version("1.41".to_owned(), v("1.41"))
                .components
                .is_empty()
        );
    }
}
