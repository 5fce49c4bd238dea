//! `Reference`: generated references print and parse back to themselves, Docker Hub's short
//! forms normalise to what their long form says, and any string either fails to parse or
//! parses to a value whose printed text is a fixed point.

use std::net::{Ipv4Addr, Ipv6Addr};

use oci_types::{DOCKER_HUB, Digest, MAX_REPOSITORY_LEN, Reference, Repository, Tag};
use proptest::prelude::*;
use proptest::sample::Index;

use super::config;

/// One path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, now and then a long one so that
/// some references pass the 255-character limit on `registry/repository`.
fn component() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[a-z0-9]{1,4}((\\.|_|__|-{1,3})[a-z0-9]{1,4}){0,3}",
        1 => "[a-z0-9]{40,90}",
    ]
}

/// A repository path of one to four components.
fn repository() -> impl Strategy<Value = String> {
    prop::collection::vec(component(), 1..=4).prop_map(|parts| parts.join("/"))
}

/// `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`, with the short tags more likely.
fn tag() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[A-Za-z0-9_][A-Za-z0-9._-]{0,12}",
        1 => "[A-Za-z0-9_][A-Za-z0-9._-]{0,127}",
    ]
}

fn digest() -> impl Strategy<Value = Digest> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..16).prop_map(|b| Digest::sha256(&b)),
        prop::collection::vec(any::<u8>(), 0..16)
            .prop_map(|b| Digest::of(oci_types::Algorithm::Sha512, &b)),
    ]
}

/// A DNS label: letters (either case), digits, inner hyphens.
const LABEL: &str = "[a-zA-Z0-9]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?";

/// A registry host that docker's rule takes for one: `localhost`, a dotted name, an IPv4 or a
/// bracketed IPv6 address, with an optional port; a dotless name only with a port (the colon
/// is what makes it a registry).
fn registry() -> impl Strategy<Value = String> {
    let port = prop::option::of(1..=u16::MAX);
    let dotted = prop::collection::vec(LABEL, 2..=4).prop_map(|labels| labels.join("."));
    let host = prop_oneof![
        Just("localhost".to_owned()),
        dotted,
        any::<[u8; 4]>().prop_map(|a| Ipv4Addr::from(a).to_string()),
        any::<[u16; 8]>().prop_map(|a| format!("[{}]", Ipv6Addr::from(a))),
    ];
    prop_oneof![
        (host, port).prop_map(|(host, port)| match port {
            Some(port) => format!("{host}:{port}"),
            None => host,
        }),
        (LABEL, 1..=u16::MAX).prop_map(|(host, port)| format!("{host}:{port}")),
    ]
}

/// The text of a reference from its parts.
fn text(registry: &str, repository: &str, tag: Option<&str>, digest: Option<&Digest>) -> String {
    let mut text = format!("{registry}/{repository}");
    if let Some(tag) = tag {
        text.push(':');
        text.push_str(tag);
    }
    if let Some(digest) = digest {
        text.push('@');
        text.push_str(digest.as_str());
    }
    text
}

/// The reference `text` names, built from its parts with `Reference::new` rather than by
/// parsing; a reference with neither tag nor digest means `latest`.
fn expected(
    registry: &str,
    repository: &str,
    tag: Option<&str>,
    digest: Option<&Digest>,
) -> Reference {
    let tag = match (tag, digest) {
        (None, None) => Some("latest"),
        _ => tag,
    };
    Reference::new(
        registry,
        Repository::parse(repository).unwrap(),
        tag.map(|t| Tag::parse(t).unwrap()),
        digest.cloned(),
    )
    .unwrap()
}

/// Parses `input` and checks that its printed form parses to the same value and prints the
/// same again.
fn assert_fixed_point(input: &str) -> Result<Option<Reference>, TestCaseError> {
    let Ok(parsed) = Reference::parse(input) else {
        return Ok(None);
    };
    let printed = parsed.to_string();
    let again = Reference::parse(&printed);
    prop_assert!(
        again.is_ok(),
        "{input:?} parses, but its printed form {printed:?} does not: {again:?}"
    );
    let again = again.unwrap();
    prop_assert_eq!(&again, &parsed, "{:?} printed as {:?}", input, printed);
    prop_assert_eq!(again.to_string(), printed);
    Ok(Some(parsed))
}

proptest! {
    #![proptest_config(config(256))]

    /// A reference with an explicit registry parses into exactly its parts when
    /// `registry/repository` fits in 255 characters and is refused (as too long a repository)
    /// when it does not; an accepted one prints back as the same text.
    #[test]
    fn explicit_registry_round_trips(
        registry in registry(),
        repository in repository(),
        tag in prop::option::of(tag()),
        digest in prop::option::of(digest()),
    ) {
        let input = text(&registry, &repository, tag.as_deref(), digest.as_ref());
        let fits = registry.len() + 1 + repository.len() <= MAX_REPOSITORY_LEN;
        match Reference::parse(&input) {
            Ok(parsed) => {
                prop_assert!(fits, "{input:?} is over the length limit but was accepted");
                let want = expected(&registry, &repository, tag.as_deref(), digest.as_ref());
                prop_assert_eq!(&parsed, &want);
                // A tag or a digest was given: the text is already in normal form.
                if tag.is_some() || digest.is_some() {
                    prop_assert_eq!(parsed.to_string(), input.clone());
                }
                assert_fixed_point(&input)?;
            }
            Err(oci_types::Error::Reference { part, .. }) if !fits => {
                prop_assert_eq!(part, "repository");
            }
            Err(error) => prop_assert!(false, "{input:?} was refused: {error}"),
        }
    }

    /// Docker Hub's short forms (`name`, `user/name`, `docker.io/name`,
    /// `index.docker.io/name`) mean `docker.io/library/name` or `docker.io/user/name`, and
    /// print as that long form.
    #[test]
    fn docker_hub_short_forms_normalise(
        first in component(),
        rest in prop::collection::vec(component(), 0..=2),
        prefix in prop::sample::select(vec!["", "docker.io/", "index.docker.io/"]),
        tag in prop::option::of(tag()),
        digest in prop::option::of(digest()),
    ) {
        // Without a registry prefix, a first component with a '.' followed by more path is a
        // registry by docker's rule, and so is `localhost`: those are the other property's.
        let registry_like = first.contains('.') || first == "localhost";
        prop_assume!(!(prefix.is_empty() && !rest.is_empty() && registry_like));
        let path = std::iter::once(first).chain(rest).collect::<Vec<_>>().join("/");
        let full = if path.contains('/') { path.clone() } else { format!("library/{path}") };
        prop_assume!(DOCKER_HUB.len() + 1 + full.len() <= MAX_REPOSITORY_LEN);
        let mut input = format!("{prefix}{path}");
        if let Some(tag) = &tag {
            input = format!("{input}:{tag}");
        }
        if let Some(digest) = &digest {
            input = format!("{input}@{digest}");
        }
        let parsed = Reference::parse(&input);
        prop_assert!(parsed.is_ok(), "{input:?} was refused: {parsed:?}");
        let want = expected(DOCKER_HUB, &full, tag.as_deref(), digest.as_ref());
        prop_assert_eq!(parsed.unwrap(), want.clone());
        let long = text(DOCKER_HUB, &full, want.tag().map(Tag::as_str), digest.as_ref());
        prop_assert_eq!(want.to_string(), long);
        assert_fixed_point(&input)?;
    }

    /// Any string: parsing never panics, and what parses is in a normal form after one print.
    #[test]
    fn any_string_parses_to_a_fixed_point(input in any::<String>()) {
        assert_fixed_point(&input)?;
    }

    /// Strings over the characters references are made of, where odd combinations (ports,
    /// brackets, several colons or `@`s, uppercase) are likely.
    #[test]
    fn reference_like_strings_parse_to_a_fixed_point(
        input in "[a-zA-Z0-9._:/@\\[\\]-]{0,40}",
    ) {
        assert_fixed_point(&input)?;
    }

    /// A valid reference with one character deleted, doubled or replaced by one of the
    /// separators: near misses, which must be refused or parse to a fixed point.
    #[test]
    fn mutated_references_parse_to_a_fixed_point(
        registry in registry(),
        repository in repository(),
        tag in prop::option::of(tag()),
        digest in prop::option::of(digest()),
        at in any::<Index>(),
        edit in 0..3u8,
        with in prop::sample::select(vec!['/', ':', '@', '.', '[', ']', 'A', '-', '_']),
    ) {
        let valid = text(&registry, &repository, tag.as_deref(), digest.as_ref());
        let mut chars: Vec<char> = valid.chars().collect();
        let i = at.index(chars.len());
        match edit {
            0 => { chars.remove(i); }
            1 => chars.insert(i, chars[i]),
            _ => chars[i] = with,
        }
        let input: String = chars.into_iter().collect();
        assert_fixed_point(&input)?;
    }
}
