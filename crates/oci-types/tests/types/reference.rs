//! `Reference`: image references as people type them.

use oci_types::{DOCKER_HUB, Digest, Reference, Repository, Tag};

const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// What a valid reference parses into: registry, repository, tag, digest.
type Parts<'a> = (&'a str, &'a str, Option<&'a str>, Option<&'a str>);

/// Parses `input`. `Ok(parts)` when it must be accepted (and then survive a `Display` round
/// trip), `Err((part, fragment))` when it must be refused naming `part` with a reason containing
/// `fragment`.
#[track_caller]
fn check(input: &str, expected: Result<Parts<'_>, (&str, &str)>) {
    match (Reference::parse(input), expected) {
        (Ok(reference), Ok((registry, repository, tag, digest))) => {
            assert_eq!(reference.registry(), registry, "{input:?}");
            assert_eq!(reference.repository().as_str(), repository, "{input:?}");
            assert_eq!(reference.tag().map(Tag::as_str), tag, "{input:?}");
            assert_eq!(reference.digest().map(Digest::as_str), digest, "{input:?}");
            let text = reference.to_string();
            let again = Reference::parse(&text)
                .unwrap_or_else(|e| panic!("{input:?} displays as {text:?}, which fails: {e}"));
            assert_eq!(again, reference, "{input:?} displays as {text:?}");
            assert_eq!(again.to_string(), text);
            assert_eq!(input.parse::<Reference>().unwrap(), reference);
        }
        (Err(error), Err((part, fragment))) => {
            let oci_types::Error::Reference {
                input: refused,
                part: named,
                reason,
            } = &error
            else {
                panic!("{input:?}: not a reference error: {error:?}");
            };
            assert_eq!(refused, input);
            assert_eq!(*named, part, "{input:?}: {error}");
            assert!(
                reason.contains(fragment),
                "{input:?}: reason {reason:?} lacks {fragment:?}"
            );
        }
        (Ok(reference), Err(_)) => panic!("{input:?} was accepted as {reference}"),
        (Err(error), Ok(_)) => panic!("{input:?} was refused: {error}"),
    }
}

#[test]
fn valid() {
    let latest = Some("latest");
    let d = Some(D);
    check("ubuntu", Ok(("docker.io", "library/ubuntu", latest, None)));
    check(
        "ubuntu:22.04",
        Ok(("docker.io", "library/ubuntu", Some("22.04"), None)),
    );
    check(
        "library/ubuntu",
        Ok(("docker.io", "library/ubuntu", latest, None)),
    );
    check(
        "docker.io/ubuntu",
        Ok(("docker.io", "library/ubuntu", latest, None)),
    );
    check(
        "docker.io/library/ubuntu",
        Ok(("docker.io", "library/ubuntu", latest, None)),
    );
    check(
        "docker.io/library/ubuntu:latest",
        Ok(("docker.io", "library/ubuntu", latest, None)),
    );
    check(
        "index.docker.io/library/ubuntu",
        Ok(("docker.io", "library/ubuntu", latest, None)),
    );
    check(
        "index.docker.io/ubuntu:20.04",
        Ok(("docker.io", "library/ubuntu", Some("20.04"), None)),
    );
    check(
        "docker.io/library",
        Ok(("docker.io", "library/library", latest, None)),
    );
    check("user/repo", Ok(("docker.io", "user/repo", latest, None)));
    check(
        "user/repo:v1",
        Ok(("docker.io", "user/repo", Some("v1"), None)),
    );
    check(
        "user/team/repo",
        Ok(("docker.io", "user/team/repo", latest, None)),
    );
    check("localhost/x", Ok(("localhost", "x", latest, None)));
    check(
        "localhost:5000/a/b:t",
        Ok(("localhost:5000", "a/b", Some("t"), None)),
    );
    check("[::1]:5000/x", Ok(("[::1]:5000", "x", latest, None)));
    check("[::1]/x:t", Ok(("[::1]", "x", Some("t"), None)));
    check(
        "[2001:db8::1]:443/team/app:v2",
        Ok(("[2001:db8::1]:443", "team/app", Some("v2"), None)),
    );
    check(
        "[::ffff:127.0.0.1]:5000/x",
        Ok(("[::ffff:127.0.0.1]:5000", "x", latest, None)),
    );
    check(
        "127.0.0.1:5000/x",
        Ok(("127.0.0.1:5000", "x", latest, None)),
    );
    check("127.0.0.1/x", Ok(("127.0.0.1", "x", latest, None)));
    check("registry:5000/x", Ok(("registry:5000", "x", latest, None)));
    check(
        "example.com:443/x",
        Ok(("example.com:443", "x", latest, None)),
    );
    check(
        "example.com:65535/x",
        Ok(("example.com:65535", "x", latest, None)),
    );
    check("example.com:1/x", Ok(("example.com:1", "x", latest, None)));
    check("Example.COM/x", Ok(("Example.COM", "x", latest, None)));
    check(
        "my-registry.example.com/a/b/c/d:e",
        Ok(("my-registry.example.com", "a/b/c/d", Some("e"), None)),
    );
    check(
        "ghcr.io/org/app:1.2",
        Ok(("ghcr.io", "org/app", Some("1.2"), None)),
    );
    check(
        &format!("ghcr.io/org/app@{D}"),
        Ok(("ghcr.io", "org/app", None, d)),
    );
    check(
        &format!("ghcr.io/org/app:1.2@{D}"),
        Ok(("ghcr.io", "org/app", Some("1.2"), d)),
    );
    check(
        &format!("repo:tag@{D}"),
        Ok(("docker.io", "library/repo", Some("tag"), d)),
    );
    check(
        &format!("ubuntu@{D}"),
        Ok(("docker.io", "library/ubuntu", None, d)),
    );
    check(
        &format!("localhost:5000/x@{D}"),
        Ok(("localhost:5000", "x", None, d)),
    );
    check(
        &format!("[::1]:5000/x:t@{D}"),
        Ok(("[::1]:5000", "x", Some("t"), d)),
    );
    let sha512 = Digest::of(oci_types::Algorithm::Sha512, b"").to_string();
    check(
        &format!("quay.io/a/b@{sha512}"),
        Ok(("quay.io", "a/b", None, Some(&sha512))),
    );
    // Without a '/', a ':' starts a tag, as docker reads it, even when it looks like a port.
    check(
        "foo:bar",
        Ok(("docker.io", "library/foo", Some("bar"), None)),
    );
    check(
        "localhost:5000",
        Ok(("docker.io", "library/localhost", Some("5000"), None)),
    );
    check(
        "localhost",
        Ok(("docker.io", "library/localhost", latest, None)),
    );
    // The longest names: registry + '/' + path is exactly 255.
    check(
        &format!("ghcr.io/{}", "a".repeat(247)),
        Ok(("ghcr.io", &"a".repeat(247), latest, None)),
    );
    let hub_longest = format!("library/{}", "a".repeat(237));
    check(
        &"a".repeat(237),
        Ok(("docker.io", &hub_longest, latest, None)),
    );
    check(
        &format!("ghcr.io/org/app:{}", "t".repeat(128)),
        Ok(("ghcr.io", "org/app", Some(&"t".repeat(128)), None)),
    );
}

#[test]
fn invalid() {
    // Tags.
    check("ubuntu:", Err(("tag", "empty tag")));
    check("ubuntu:.x", Err(("tag", "must start")));
    check("ubuntu:-x", Err(("tag", "must start")));
    check("ubuntu:a+b", Err(("tag", "'+'")));
    check("ubuntu:latest ", Err(("tag", "' '")));
    check(
        &format!("ubuntu:{}", "t".repeat(129)),
        Err(("tag", "longer than the limit of 128")),
    );
    check("localhost:5000/x:", Err(("tag", "empty tag")));
    check("ubuntu:tag:tag", Err(("repository", "':'")));
    // Digests.
    check("ubuntu@sha256:abc", Err(("digest", "found 3")));
    check("ubuntu@", Err(("digest", "missing ':'")));
    check("ubuntu@latest", Err(("digest", "missing ':'")));
    check(
        "ubuntu@md5:d41d8cd98f00b204e9800998ecf8427e",
        Err(("digest", "unknown digest algorithm")),
    );
    check(
        &format!("ubuntu:tag@{}", D.to_uppercase()),
        Err(("digest", "unknown digest algorithm")),
    );
    check(
        &format!("ubuntu@sha256:{}", "E".repeat(64)),
        Err(("digest", "not lowercase hex")),
    );
    check(&format!("ubuntu@{D}@{D}"), Err(("digest", "'@'")));
    check(&format!("ubuntu@{D} "), Err(("digest", "' '")));
    // Repositories.
    check("Ubuntu", Err(("repository", "lowercase")));
    check("ubuntU", Err(("repository", "lowercase")));
    check(
        "ghcr.io/Org/app",
        Err(("repository", "path component 1 \"Org\"")),
    );
    check(
        "user/Repo",
        Err(("repository", "path component 2 \"Repo\"")),
    );
    check("", Err(("repository", "is empty")));
    check(":tag", Err(("repository", "empty")));
    check("a//b", Err(("repository", "empty")));
    check("ghcr.io//a", Err(("repository", "empty")));
    check("ghcr.io/", Err(("repository", "empty")));
    check("ghcr.io/a/", Err(("repository", "empty")));
    check("ghcr.io/a/../b", Err(("repository", "\"..\"")));
    check("ubuntu latest", Err(("repository", "' '")));
    check(" ubuntu", Err(("repository", "must start")));
    check("a___b", Err(("repository", "separator")));
    check(
        &format!("ghcr.io/{}", "a".repeat(248)),
        Err(("repository", "ghcr.io/aaa")),
    );
    check(
        &format!("ghcr.io/{}", "a".repeat(248)),
        Err(("repository", "256 characters, longer than the limit of 255")),
    );
    check(
        &"a".repeat(238),
        Err(("repository", "docker.io/library/aaa")),
    );
    check(&"a".repeat(256), Err(("repository", "264 characters")));
    check(
        &format!("localhost:5000/{}", "a".repeat(241)),
        Err(("repository", "longer than the limit")),
    );
    // Registries: ports.
    check(
        "localhost:0/x",
        Err(("registry", "port \"0\" is not a number from 1 to 65535")),
    );
    check("localhost:99999/x", Err(("registry", "port \"99999\"")));
    check("localhost:65536/x", Err(("registry", "port \"65536\"")));
    check("localhost:abc/x", Err(("registry", "port \"abc\"")));
    check("localhost:/x", Err(("registry", "port \"\"")));
    check("localhost:+80/x", Err(("registry", "port \"+80\"")));
    check("localhost:-80/x", Err(("registry", "port \"-80\"")));
    check("localhost:80:80/x", Err(("registry", "port \"80:80\"")));
    check("[::1]:0/x", Err(("registry", "port \"0\"")));
    // Registries: IPv6.
    check("[::1/x", Err(("registry", "opens '[' without closing it")));
    check("[::1:5000/x", Err(("registry", "without closing")));
    check(
        "[::1]x/y",
        Err(("registry", "unexpected \"x\" after the IPv6 address")),
    );
    check("[]/x", Err(("registry", "is not an IPv6 address")));
    check("[1.2.3.4]/x", Err(("registry", "is not an IPv6 address")));
    check("[::g]/x", Err(("registry", "is not an IPv6 address")));
    check(
        "[fe80::1%eth0]/x",
        Err(("registry", "is not an IPv6 address")),
    );
    // Registries: host names.
    check(":5000/x", Err(("registry", "host is empty")));
    check("-bad.com/x", Err(("registry", "invalid label \"-bad\"")));
    check("bad-.com/x", Err(("registry", "invalid label \"bad-\"")));
    check("a..b.com/x", Err(("registry", "invalid label \"\"")));
    check(".example.com/x", Err(("registry", "invalid label \"\"")));
    check("example.com./x", Err(("registry", "invalid label \"\"")));
    check(
        "exa_mple.com/x",
        Err(("registry", "invalid label \"exa_mple\"")),
    );
    check("exämple.com/x", Err(("registry", "invalid label")));
}

#[test]
fn error_display() {
    assert_eq!(
        Reference::parse("ubuntu:").unwrap_err().to_string(),
        "invalid reference \"ubuntu:\": tag empty tag"
    );
    assert_eq!(
        Reference::parse("localhost:0/x").unwrap_err().to_string(),
        "invalid reference \"localhost:0/x\": registry port \"0\" is not a number from 1 to 65535"
    );
}

#[test]
fn builders() {
    let reference = Reference::parse(&format!("ghcr.io/org/app:1.2@{D}")).unwrap();
    let retagged = reference.clone().with_tag(Tag::parse("2.0").unwrap());
    assert_eq!(retagged.to_string(), "ghcr.io/org/app:2.0");
    assert_eq!(retagged.digest(), None);
    let pinned = retagged.with_digest(Digest::parse(D).unwrap());
    assert_eq!(pinned.to_string(), format!("ghcr.io/org/app:2.0@{D}"));

    let built = Reference::new(
        "ghcr.io",
        Repository::parse("org/app").unwrap(),
        Some(Tag::parse("1.2").unwrap()),
        Some(Digest::parse(D).unwrap()),
    )
    .unwrap();
    assert_eq!(built, reference);
    assert_eq!(DOCKER_HUB, "docker.io");

    let error =
        Reference::new("bad host", Repository::parse("x").unwrap(), None, None).unwrap_err();
    assert!(
        matches!(
            &error,
            oci_types::Error::Reference {
                part: "registry",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(Reference::new("localhost:0", Repository::parse("x").unwrap(), None, None).is_err());
    assert!(Reference::new("[::1", Repository::parse("x").unwrap(), None, None).is_err());
}
