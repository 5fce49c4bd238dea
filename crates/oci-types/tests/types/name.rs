//! `Repository`, `Tag` and the referrers tag schema.

use oci_types::{
    Digest, MAX_REPOSITORY_LEN, MAX_TAG_LEN, Repository, Tag, referrers_tag, referrers_tag_of,
};

/// Parses a repository name; `Err(fragment)` when it must be refused with a reason containing
/// `fragment`.
#[track_caller]
fn check_repository(input: &str, expected: Result<(), &str>) {
    match (Repository::parse(input), expected) {
        (Ok(repository), Ok(())) => {
            assert_eq!(repository.as_str(), input);
            assert_eq!(repository.to_string(), input);
            assert_eq!(repository.components().collect::<Vec<_>>().join("/"), input);
            assert!(repository.components().all(|c| c != "." && c != ".."));
        }
        (Err(error), Err(fragment)) => {
            assert!(
                matches!(&error, oci_types::Error::Repository { input: i, .. } if i == input),
                "{input:?}: {error:?}"
            );
            let reason = crate::reason(&error);
            assert!(
                reason.contains(fragment),
                "{input:?}: reason {reason:?} lacks {fragment:?}"
            );
        }
        (Ok(_), Err(_)) => panic!("{input:?} was accepted"),
        (Err(error), Ok(())) => panic!("{input:?} was refused: {error}"),
    }
}

#[test]
fn repository() {
    let ok = Ok(());
    check_repository("a", ok);
    check_repository("0", ok);
    check_repository("a/b/c", ok);
    check_repository("a.b", ok);
    check_repository("a_b", ok);
    check_repository("a__b", ok);
    check_repository("a-b", ok);
    check_repository("a---b", ok);
    check_repository("a.b_c__d-e--f", ok);
    check_repository("library/ubuntu", ok);
    check_repository("0/1/2/3/4/5/6/7/8/9", ok);
    check_repository("org/team.sub/app-name__x/v1.2", ok);
    check_repository("conformance/case-1234567890", ok);
    check_repository(&"a".repeat(MAX_REPOSITORY_LEN), ok);
    check_repository(&format!("{}/{}", "a".repeat(127), "b".repeat(127)), ok);

    check_repository("", Err("empty name"));
    check_repository("A", Err("must start with a lowercase letter or digit"));
    check_repository("Library/ubuntu", Err("path component 1 \"Library\""));
    check_repository("library/Ubuntu", Err("path component 2 \"Ubuntu\""));
    check_repository("ubuntU", Err("must end with a lowercase letter or digit"));
    check_repository("uBuntu", Err("character 'B' is not allowed"));
    check_repository("-a", Err("must start"));
    check_repository("a-", Err("must end"));
    check_repository(".a", Err("must start"));
    check_repository("a.", Err("must end"));
    check_repository("_a", Err("must start"));
    check_repository("a_", Err("must end"));
    check_repository("a___b", Err("separator \"__\" must be followed"));
    check_repository("a-_b", Err("separator \"-\" must be followed"));
    check_repository("a_-b", Err("separator \"_\" must be followed"));
    check_repository("a._b", Err("separator \".\" must be followed"));
    check_repository("a..b", Err("separator \".\" must be followed"));
    check_repository("a.-b", Err("separator"));
    check_repository("a//b", Err("path component 2 \"\": empty"));
    check_repository("//", Err("empty"));
    check_repository("/", Err("empty"));
    check_repository("/a", Err("path component 1 \"\": empty"));
    check_repository("a/", Err("path component 2 \"\": empty"));
    check_repository(".", Err("must start"));
    check_repository("..", Err("must start"));
    check_repository("a/../b", Err("path component 2 \"..\""));
    check_repository("a/./b", Err("path component 2 \".\""));
    check_repository("../a", Err("path component 1"));
    check_repository("a b", Err("character ' ' is not allowed"));
    check_repository(" a", Err("must start"));
    check_repository("a ", Err("must end"));
    check_repository("a\tb", Err("not allowed"));
    check_repository("a:b", Err("character ':' is not allowed"));
    check_repository("a@b", Err("character '@' is not allowed"));
    check_repository("a\\b", Err("not allowed"));
    check_repository("é", Err("must start"));
    check_repository("aéb", Err("character 'é' is not allowed"));
    check_repository(
        &"a".repeat(MAX_REPOSITORY_LEN + 1),
        Err("256 characters, longer than the limit of 255"),
    );
    check_repository(
        &format!("{}/{}", "a".repeat(128), "b".repeat(127)),
        Err("longer than the limit"),
    );
}

#[test]
fn repository_error_display() {
    assert_eq!(
        Repository::parse("a//b").unwrap_err().to_string(),
        "invalid repository name \"a//b\": path component 2 \"\": empty (a name cannot start or end with '/', or contain '//')"
    );
}

/// Parses a tag; `Err(fragment)` when it must be refused with a reason containing `fragment`.
#[track_caller]
fn check_tag(input: &str, expected: Result<(), &str>) {
    match (Tag::parse(input), expected) {
        (Ok(tag), Ok(())) => {
            assert_eq!(tag.as_str(), input);
            assert_eq!(tag.to_string(), input);
        }
        (Err(error), Err(fragment)) => {
            assert!(
                matches!(&error, oci_types::Error::Tag { input: i, .. } if i == input),
                "{input:?}: {error:?}"
            );
            let reason = crate::reason(&error);
            assert!(
                reason.contains(fragment),
                "{input:?}: reason {reason:?} lacks {fragment:?}"
            );
        }
        (Ok(_), Err(_)) => panic!("{input:?} was accepted"),
        (Err(error), Ok(())) => panic!("{input:?} was refused: {error}"),
    }
}

#[test]
fn tag() {
    let ok = Ok(());
    check_tag("latest", ok);
    check_tag("v1.2.3", ok);
    check_tag("_x", ok);
    check_tag("_", ok);
    check_tag("0", ok);
    check_tag("A", ok);
    check_tag("V1_2-3.4", ok);
    check_tag("x..y", ok);
    check_tag("x--", ok);
    check_tag("22.04", ok);
    check_tag(
        "sha256-e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ok,
    );
    check_tag(&"a".repeat(MAX_TAG_LEN), ok);
    check_tag(&format!("_{}", "-".repeat(MAX_TAG_LEN - 1)), ok);

    check_tag("", Err("empty tag"));
    check_tag(".x", Err("must start with a letter, digit or '_', not '.'"));
    check_tag("-x", Err("not '-'"));
    check_tag(
        &"a".repeat(MAX_TAG_LEN + 1),
        Err("129 characters, longer than the limit of 128"),
    );
    check_tag("a/b", Err("character '/' is not allowed"));
    check_tag("a:b", Err("character ':' is not allowed"));
    check_tag("a@b", Err("character '@' is not allowed"));
    check_tag("v1+build", Err("character '+' is not allowed"));
    check_tag("a b", Err("' '"));
    check_tag(" a", Err("not ' '"));
    check_tag("a\n", Err("'\\n'"));
    check_tag("é", Err("not 'é'"));
    check_tag("café", Err("character 'é' is not allowed"));
    check_tag("日本", Err("must start"));
    check_tag("..", Err("must start"));
    check_tag(
        &format!("{}é", "a".repeat(MAX_TAG_LEN - 1)),
        Err("not allowed"),
    );
}

#[test]
fn latest() {
    assert_eq!(Tag::latest(), Tag::parse("latest").unwrap());
    assert_eq!(Tag::latest().as_str(), "latest");
}

#[test]
fn serde() {
    let tag = Tag::parse("v1.2.3").unwrap();
    assert_eq!(serde_json::to_string(&tag).unwrap(), "\"v1.2.3\"");
    assert_eq!(serde_json::from_str::<Tag>("\"v1.2.3\"").unwrap(), tag);
    assert!(
        serde_json::from_str::<Tag>("\".hidden\"")
            .unwrap_err()
            .to_string()
            .contains("invalid tag")
    );
    assert!(serde_json::from_str::<Tag>("1").is_err());

    let repository = Repository::parse("library/ubuntu").unwrap();
    assert_eq!(
        serde_json::to_string(&repository).unwrap(),
        "\"library/ubuntu\""
    );
    assert_eq!(
        serde_json::from_str::<Repository>("\"library/ubuntu\"").unwrap(),
        repository
    );
    for bad in [
        "\"a/../b\"",
        "\"Library/ubuntu\"",
        "\"\"",
        "\"/etc/passwd\"",
    ] {
        let error = serde_json::from_str::<Repository>(bad)
            .unwrap_err()
            .to_string();
        assert!(error.contains("invalid repository name"), "{bad}: {error}");
    }
}

#[test]
fn debug() {
    assert_eq!(format!("{:?}", Tag::latest()), "Tag(latest)");
    assert_eq!(
        format!("{:?}", Repository::parse("a/b").unwrap()),
        "Repository(a/b)"
    );
}

/// The referrers tag of `algorithm:encoded`, computed from its parts and, where hoist can parse
/// the digest, from the digest.
#[track_caller]
fn check_referrers_tag(algorithm: &str, encoded: &str, expected: &str) {
    let tag = referrers_tag_of(algorithm, encoded);
    assert_eq!(tag.as_str(), expected);
    assert_eq!(Tag::parse(tag.as_str()).unwrap(), tag, "not a valid tag");
    if let Ok(digest) = Digest::parse(&format!("{algorithm}:{encoded}")) {
        assert_eq!(referrers_tag(&digest), tag);
    }
}

#[test]
fn referrers_tag_schema() {
    // The three examples of the distribution-spec's "Referrers Tag Schema".
    let a64 = "a".repeat(64);
    check_referrers_tag("sha256", &a64, &format!("sha256-{a64}"));
    check_referrers_tag("sha512", &"a".repeat(128), &format!("sha512-{a64}"));
    check_referrers_tag(
        "test+algorithm+using+algorithm+separators+and+lots+of+characters+to+excercise+overall+truncation",
        "alsoSome=InTheEncodedSectionToShowHyphenReplacementAndLotsAndLotsOfCharactersToExcerciseEncodedTruncation",
        "test-algorithm-using-algorithm-s-alsoSome-InTheEncodedSectionToShowHyphenReplacementAndLotsAndLot",
    );

    check_referrers_tag(
        "sha256",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "sha256-e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    );
    // Short parts stay whole; a tag never starts with '-' or '.'.
    check_referrers_tag("x", "y", "x-y");
    check_referrers_tag("", "abc", "_abc");
    check_referrers_tag(".alg", "abc", "_alg-abc");
    check_referrers_tag("a_b.c", "d_e.f", "a_b.c-d_e.f");
    check_referrers_tag("alg", "a/b:c@d", "alg-a-b-c-d");
    check_referrers_tag("alg", "ééé", "alg----");
    let longest = referrers_tag_of(&"x".repeat(100), &"y".repeat(100));
    assert_eq!(longest.as_str().len(), 32 + 1 + 64);
}
