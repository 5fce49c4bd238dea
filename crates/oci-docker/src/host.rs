//! Where the daemon listens: `DOCKER_HOST` as the docker CLI reads it, restricted to what this
//! client speaks (a unix socket, or plain HTTP over TCP).

use std::ffi::OsStr;
use std::path::PathBuf;

use crate::{Error, Result};

/// The daemon's address when `DOCKER_HOST` is unset or empty.
pub(crate) const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// The port of a `tcp://` address without one: the daemon's plain-HTTP port.
const DEFAULT_TCP_PORT: u16 = 2375;

/// A parsed daemon address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// A unix socket.
    Unix(PathBuf),
    /// Plain HTTP over TCP to `host:port` (IPv6 hosts in brackets).
    Tcp {
        /// `host:port`.
        authority: String,
    },
}

impl Endpoint {
    /// The address written canonically: `unix:///path` or `tcp://host:port`.
    pub(crate) fn url(&self) -> String {
        match self {
            Self::Unix(path) => format!("unix://{}", path.display()),
            Self::Tcp { authority } => format!("tcp://{authority}"),
        }
    }

    /// The `Host` header of requests. HTTP/1.1 requires one and the daemon ignores it; over a
    /// unix socket it is `docker`, as the docker CLI sends.
    pub(crate) fn host_header(&self) -> &str {
        match self {
            Self::Unix(_) => "docker",
            Self::Tcp { authority } => authority,
        }
    }
}

/// The address the environment names: `DOCKER_HOST`, or the default socket when it is unset
/// or empty. A `tcp://` address with `DOCKER_TLS_VERIFY` or `DOCKER_TLS` set (which make the
/// docker CLI speak TLS to it) is refused, since this client speaks only plain HTTP.
pub(crate) fn from_env_values(
    docker_host: Option<&OsStr>,
    tls_verify: Option<&OsStr>,
    tls: Option<&OsStr>,
) -> Result<Endpoint> {
    let host = match docker_host {
        None => DEFAULT_HOST,
        Some(value) if value.is_empty() => DEFAULT_HOST,
        Some(value) => value.to_str().ok_or_else(|| Error::Host {
            host: value.to_string_lossy().into_owned(),
            reason: "DOCKER_HOST is not valid UTF-8".to_owned(),
        })?,
    };
    let endpoint = parse(host)?;
    if matches!(endpoint, Endpoint::Tcp { .. }) {
        for (name, value) in [("DOCKER_TLS_VERIFY", tls_verify), ("DOCKER_TLS", tls)] {
            if value.is_some_and(|v| !v.is_empty()) {
                return Err(Error::Host {
                    host: host.to_owned(),
                    reason: format!(
                        "{name} is set, which asks for TLS, and this client speaks only plain HTTP to tcp:// daemons"
                    ),
                });
            }
        }
    }
    Ok(endpoint)
}

/// Parses a daemon address: `unix:///path/to/socket`, or `tcp://host[:port]` (also written
/// `http://`; port 2375 by default).
pub(crate) fn parse(host: &str) -> Result<Endpoint> {
    let refuse = |reason: &str| Error::Host {
        host: host.to_owned(),
        reason: reason.to_owned(),
    };
    let Some((scheme, rest)) = host.split_once("://") else {
        return Err(refuse(
            "expected unix:///path/to/socket or tcp://host:port (a socket path needs the unix:// prefix)",
        ));
    };
    match scheme {
        "unix" => {
            if rest.is_empty() {
                return Err(refuse("no socket path after unix://"));
            }
            if rest.contains('\0') {
                return Err(refuse("the socket path contains a NUL byte"));
            }
            Ok(Endpoint::Unix(PathBuf::from(rest)))
        }
        "tcp" | "http" => parse_tcp(rest).map_err(|reason| refuse(&reason)),
        "https" => Err(refuse(
            "TLS is not supported: this client speaks only plain HTTP (tcp://host:port) or a unix socket",
        )),
        "ssh" => Err(refuse(
            "ssh:// is not supported: forward the daemon's socket (ssh -nNT -L /tmp/docker.sock:/var/run/docker.sock HOST) and use unix:///tmp/docker.sock",
        )),
        "npipe" => Err(refuse("Windows named pipes (npipe://) are not supported")),
        "fd" => Err(refuse(
            "fd:// is an address a daemon listens on, not one a client can connect to",
        )),
        other => Err(refuse(&format!(
            "unknown scheme {other}://, expected unix:// or tcp://"
        ))),
    }
}

/// Parses what follows `tcp://`: `host[:port]` and at most a trailing `/`.
fn parse_tcp(rest: &str) -> Result<Endpoint, String> {
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#']) {
        return Err("a path or query after host:port is not supported".to_owned());
    }
    if authority.contains('@') {
        return Err("credentials in the address are not supported".to_owned());
    }
    // The port is split off by hand: `http`'s `Authority::port` takes a port that is not a
    // number for no port at all.
    let (host, port) = match authority.strip_prefix('[') {
        Some(bracketed) => {
            let (inside, after) = bracketed
                .split_once(']')
                .ok_or_else(|| "an IPv6 address without its closing ']'".to_owned())?;
            (&authority[..inside.len() + 2], port_after(after)?)
        }
        None => match authority.rsplit_once(':') {
            Some((host, _)) if host.contains(':') => {
                return Err("an IPv6 address must be written in brackets ([::1]:2375)".to_owned());
            }
            Some((host, port)) => (host, port_after(&format!(":{port}"))?),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return Err("no host after tcp://".to_owned());
    }
    host.parse::<http::uri::Authority>()
        .map_err(|e| format!("not a valid host ({e})"))?;
    let port = port.unwrap_or(DEFAULT_TCP_PORT);
    Ok(Endpoint::Tcp {
        authority: format!("{host}:{port}"),
    })
}

/// The port in what follows a host: nothing, or `:` and a port number other than 0.
fn port_after(after: &str) -> Result<Option<u16>, String> {
    if after.is_empty() {
        return Ok(None);
    }
    let Some(port) = after.strip_prefix(':') else {
        return Err(format!("unexpected {after:?} after the host"));
    };
    if port.is_empty() {
        return Err("an empty port after the host".to_owned());
    }
    match port.parse::<u16>() {
        Ok(0) => Err("port 0".to_owned()),
        // No sign or leading zeros: the number as written.
        Ok(number) if number.to_string() == port => Ok(Some(number)),
        _ => Err(format!("port {port:?} is not a number from 1 to 65535")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `input` and checks the canonical address, or that the error's reason contains
    /// `expected` (given as `Err`).
    fn check(input: &str, expected: Result<&str, &str>) {
        let got = parse(input);
        match (got, expected) {
            (Ok(endpoint), Ok(url)) => assert_eq!(endpoint.url(), url, "{input}"),
            (Err(Error::Host { host, reason }), Err(part)) => {
                assert_eq!(host, input);
                assert!(reason.contains(part), "{input}: {reason:?} lacks {part:?}");
            }
            (got, expected) => panic!("{input}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn unix_sockets() {
        check(
            "unix:///var/run/docker.sock",
            Ok("unix:///var/run/docker.sock"),
        );
        check(
            "unix:///run/user/1000/podman/podman.sock",
            Ok("unix:///run/user/1000/podman/podman.sock"),
        );
        check("unix://relative.sock", Ok("unix://relative.sock"));
        check("unix://", Err("no socket path"));
        check("unix:///a\0b", Err("NUL"));
        assert_eq!(
            parse("unix:///var/run/docker.sock").unwrap(),
            Endpoint::Unix(PathBuf::from("/var/run/docker.sock"))
        );
        assert_eq!(parse("unix:///x.sock").unwrap().host_header(), "docker");
    }

    #[test]
    fn tcp_addresses() {
        check("tcp://127.0.0.1:2375", Ok("tcp://127.0.0.1:2375"));
        check(
            "tcp://docker.example:12375/",
            Ok("tcp://docker.example:12375"),
        );
        check("tcp://localhost", Ok("tcp://localhost:2375"));
        check("http://localhost:8080", Ok("tcp://localhost:8080"));
        check("tcp://[::1]:2375", Ok("tcp://[::1]:2375"));
        check("tcp://[::1]", Ok("tcp://[::1]:2375"));
        assert_eq!(
            parse("tcp://[::1]:2375").unwrap().host_header(),
            "[::1]:2375"
        );
        check("tcp://", Err("host"));
        check("tcp://:2375", Err("no host"));
        check("tcp://host:", Err("empty port"));
        check("tcp://host:0", Err("port 0"));
        check("tcp://host:99999", Err("not a number from 1 to 65535"));
        check("tcp://host:+80", Err("not a number"));
        check("tcp://a:b:2375", Err("brackets"));
        check("tcp://a b:2375", Err("not a valid host"));
        check("tcp://[::1", Err("closing"));
        check("tcp://[::1]x", Err("after the host"));
        check("tcp://host:2375/v1.41", Err("path"));
        check("tcp://host:2375?x=1", Err("path or query"));
        check("tcp://user:pw@host:2375", Err("credentials"));
    }

    #[test]
    fn refused_schemes() {
        check("https://host:2376", Err("TLS is not supported"));
        check("ssh://me@host", Err("ssh:// is not supported"));
        check("npipe:////./pipe/docker_engine", Err("named pipes"));
        check("fd://", Err("fd://"));
        check("ftp://host", Err("unknown scheme ftp://"));
        check("/var/run/docker.sock", Err("needs the unix:// prefix"));
        check("", Err("expected unix://"));
    }

    #[test]
    fn environment() {
        let os = |s: &'static str| Some(OsStr::new(s));
        let url = |r: Result<Endpoint>| r.map(|e| e.url()).map_err(|e| e.to_string());
        assert_eq!(
            url(from_env_values(None, None, None)).unwrap(),
            DEFAULT_HOST
        );
        assert_eq!(
            url(from_env_values(os(""), None, None)).unwrap(),
            DEFAULT_HOST
        );
        assert_eq!(
            url(from_env_values(os("unix:///tmp/d.sock"), os("1"), None)).unwrap(),
            "unix:///tmp/d.sock",
            "TLS settings do not matter for a unix socket"
        );
        assert_eq!(
            url(from_env_values(os("tcp://h:2375"), os(""), None)).unwrap(),
            "tcp://h:2375",
            "an empty DOCKER_TLS_VERIFY is unset"
        );
        let err = url(from_env_values(os("tcp://h:2376"), os("1"), None)).unwrap_err();
        assert!(err.contains("DOCKER_TLS_VERIFY is set"), "{err}");
        let err = url(from_env_values(os("tcp://h:2376"), None, os("1"))).unwrap_err();
        assert!(err.contains("DOCKER_TLS is set"), "{err}");
        let err = url(from_env_values(os("ssh://h"), None, None)).unwrap_err();
        assert!(
            err.contains("\"ssh://h\""),
            "the error names the address: {err}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn non_utf8_docker_host() {
        use std::os::unix::ffi::OsStrExt;
        let err =
            from_env_values(Some(OsStr::from_bytes(b"unix:///\xff")), None, None).unwrap_err();
        assert!(err.to_string().contains("not valid UTF-8"), "{err}");
    }
}
