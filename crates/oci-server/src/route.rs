//! Request paths of the distribution-spec, parsed into routes.
//!
//! Repository names contain `/`, so a path is read from its end: the last `/blobs/uploads/`,
//! `/manifests/`, `/referrers/`, `/blobs/` or `/tags/list` splits the name from the rest.

/// An endpoint of the distribution-spec (and the token endpoint of token auth).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route<'a> {
    /// `/v2/` (end-1).
    Base,
    /// `/v2/_catalog`.
    Catalog,
    /// `/v2/<name>/blobs/<digest>` (end-2, end-10).
    Blob { name: &'a str, digest: &'a str },
    /// `/v2/<name>/manifests/<reference>` (end-3, end-7, end-9).
    Manifest { name: &'a str, reference: &'a str },
    /// `/v2/<name>/blobs/uploads/` (end-4, end-11).
    Uploads { name: &'a str },
    /// `/v2/<name>/blobs/uploads/<id>` (end-5, end-6, end-13, end-14).
    Upload { name: &'a str, id: &'a str },
    /// `/v2/<name>/tags/list` (end-8).
    Tags { name: &'a str },
    /// `/v2/<name>/referrers/<digest>` (end-12).
    Referrers { name: &'a str, digest: &'a str },
    /// The token endpoint of the built-in token auth.
    Token,
}

/// The path of the token endpoint.
pub(crate) const TOKEN_PATH: &str = "/token";

/// Reads a request path; `None` for paths that are no endpoint.
pub(crate) fn parse(path: &str) -> Option<Route<'_>> {
    if path == TOKEN_PATH {
        return Some(Route::Token);
    }
    let rest = path.strip_prefix("/v2")?;
    if rest.is_empty() || rest == "/" {
        return Some(Route::Base);
    }
    let rest = rest.strip_prefix('/')?;
    if rest == "_catalog" {
        return Some(Route::Catalog);
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return named(name).map(|name| Route::Tags { name });
    }
    if let Some(name) = rest
        .strip_suffix("/blobs/uploads")
        .or_else(|| rest.strip_suffix("/blobs/uploads/"))
    {
        return named(name).map(|name| Route::Uploads { name });
    }
    if let Some(at) = rest.rfind("/blobs/uploads/") {
        let id = &rest[at + "/blobs/uploads/".len()..];
        if id.contains('/') {
            return None;
        }
        return named(&rest[..at]).map(|name| Route::Upload { name, id });
    }
    if let Some((name, reference)) = split_last(rest, "/manifests/") {
        return Some(Route::Manifest { name, reference });
    }
    if let Some((name, digest)) = split_last(rest, "/referrers/") {
        return Some(Route::Referrers { name, digest });
    }
    if let Some((name, digest)) = split_last(rest, "/blobs/") {
        return Some(Route::Blob { name, digest });
    }
    None
}

/// Splits at the last `marker` into a non-empty name and a non-empty last segment.
fn split_last<'a>(path: &'a str, marker: &str) -> Option<(&'a str, &'a str)> {
    let at = path.rfind(marker)?;
    let tail = &path[at + marker.len()..];
    if tail.is_empty() || tail.contains('/') {
        return None;
    }
    Some((named(&path[..at])?, tail))
}

fn named(name: &str) -> Option<&str> {
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_routes() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let cases: Vec<(String, Option<Route<'_>>)> = vec![
            ("/v2/".into(), Some(Route::Base)),
            ("/v2".into(), Some(Route::Base)),
            ("/v2/_catalog".into(), Some(Route::Catalog)),
            ("/token".into(), Some(Route::Token)),
            (
                format!("/v2/a/b/blobs/{d}"),
                Some(Route::Blob {
                    name: "a/b",
                    digest: d,
                }),
            ),
            (
                "/v2/a/manifests/latest".into(),
                Some(Route::Manifest {
                    name: "a",
                    reference: "latest",
                }),
            ),
            (
                "/v2/a/b/c/blobs/uploads/".into(),
                Some(Route::Uploads { name: "a/b/c" }),
            ),
            (
                "/v2/a/blobs/uploads".into(),
                Some(Route::Uploads { name: "a" }),
            ),
            (
                "/v2/a/blobs/uploads/abc123".into(),
                Some(Route::Upload {
                    name: "a",
                    id: "abc123",
                }),
            ),
            ("/v2/x/tags/list".into(), Some(Route::Tags { name: "x" })),
            (
                format!("/v2/x/y/referrers/{d}"),
                Some(Route::Referrers {
                    name: "x/y",
                    digest: d,
                }),
            ),
            // A repository may have a component named like an endpoint.
            (
                "/v2/blobs/manifests/manifests/v1".into(),
                Some(Route::Manifest {
                    name: "blobs/manifests",
                    reference: "v1",
                }),
            ),
            (
                "/v2/a/blobs/b/manifests/v1".into(),
                Some(Route::Manifest {
                    name: "a/blobs/b",
                    reference: "v1",
                }),
            ),
            ("/v2//manifests/v1".into(), None),
            ("/v2/manifests/v1".into(), None),
            ("/v2/a/manifests/".into(), None),
            ("/v2/a/blobs/uploads/x/y".into(), None),
            ("/v3/a/manifests/v1".into(), None),
            ("/v2x".into(), None),
            ("/".into(), None),
            ("/v2/a/unknown/thing".into(), None),
        ];
        for (path, expected) in &cases {
            assert_eq!(&parse(path), expected, "{path}");
        }
    }
}
