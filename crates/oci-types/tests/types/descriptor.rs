//! `Descriptor`: JSON shape, defaults, sizes, and the platform inside.

use oci_types::{Descriptor, Digest, MAX_DESCRIPTOR_SIZE, MediaType, Platform, media_type};
use serde_json::{Value, json};

const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn minimal(size: Value) -> Value {
    json!({"mediaType": media_type::OCI_LAYER_GZIP, "digest": D, "size": size})
}

/// Deserialises `value`; `Ok(size)` when it must be accepted with that size, `Err(fragment)`
/// when serde must refuse it with a message containing `fragment`.
#[track_caller]
fn check(value: Value, expected: Result<u64, &str>) {
    match (
        serde_json::from_value::<Descriptor>(value.clone()),
        expected,
    ) {
        (Ok(descriptor), Ok(size)) => assert_eq!(descriptor.size, size, "{value}"),
        (Err(error), Err(fragment)) => {
            let message = error.to_string();
            assert!(
                message.contains(fragment),
                "{value}: {message:?} lacks {fragment:?}"
            );
        }
        (Ok(descriptor), Err(_)) => panic!("{value} was accepted as {descriptor:?}"),
        (Err(error), Ok(_)) => panic!("{value} was refused: {error}"),
    }
}

#[test]
fn sizes_and_required_fields() {
    check(minimal(json!(0)), Ok(0));
    check(minimal(json!(32654)), Ok(32654));
    check(minimal(json!(i64::MAX)), Ok(MAX_DESCRIPTOR_SIZE));
    // Serde reads any u64; `validate` refuses what Go could not read (below).
    check(minimal(json!(u64::MAX)), Ok(u64::MAX));
    check(minimal(json!(-1)), Err("invalid value: integer `-1`"));
    check(minimal(json!(i64::MIN)), Err("invalid value"));
    check(minimal(json!(1.5)), Err("invalid type: floating point"));
    check(minimal(json!(1e3)), Err("invalid type: floating point"));
    check(minimal(json!(2.0)), Err("invalid type: floating point"));
    check(minimal(json!("10")), Err("invalid type: string"));
    check(minimal(json!(null)), Err("invalid type: null"));
    check(minimal(json!([1])), Err("invalid type"));
    check(
        serde_json::from_str(&format!(
            r#"{{"mediaType":"{}","digest":"{D}","size":18446744073709551616}}"#,
            media_type::OCI_LAYER_GZIP
        ))
        .unwrap(),
        Err("invalid type: floating point"),
    );

    check(
        json!({"digest": D, "size": 1}),
        Err("missing field `mediaType`"),
    );
    check(
        json!({"mediaType": media_type::OCI_CONFIG, "size": 1}),
        Err("missing field `digest`"),
    );
    check(
        json!({"mediaType": media_type::OCI_CONFIG, "digest": D}),
        Err("missing field `size`"),
    );
    check(
        json!({"mediaType": "nope", "digest": D, "size": 1}),
        Err("invalid media type"),
    );
    check(
        json!({"mediaType": media_type::OCI_CONFIG, "digest": "sha256:abc", "size": 1}),
        Err("invalid digest"),
    );
    check(
        json!({"mediaType": media_type::OCI_CONFIG, "digest": D.to_uppercase(), "size": 1}),
        Err("invalid digest"),
    );
    check(
        json!({"mediaType": media_type::OCI_CONFIG, "digest": D, "size": 1, "artifactType": "x"}),
        Err("invalid media type"),
    );
    check(
        json!({"mediaType": media_type::OCI_CONFIG, "digest": D, "size": 1, "annotations": {"a": 1}}),
        Err("invalid type: integer"),
    );
    check(
        json!({"mediaType": media_type::OCI_CONFIG, "digest": D, "size": 1, "urls": "x"}),
        Err("invalid type: string"),
    );
    check(
        json!({"mediaType": media_type::OCI_CONFIG, "digest": D, "size": 1, "platform": {"os": "linux"}}),
        Err("missing field `architecture`"),
    );
    check(json!("sha256:abc"), Err("invalid type: string"));
    check(json!(null), Err("invalid type: null"));
    // Unknown fields are ignored, at every level.
    check(
        json!({"mediaType": media_type::OCI_CONFIG, "digest": D, "size": 7, "x-future": {"a": [1]},
               "platform": {"os": "linux", "architecture": "amd64", "x-future": true}}),
        Ok(7),
    );
}

#[test]
fn validate() {
    #[track_caller]
    fn check(size: u64, valid: bool) {
        let descriptor = Descriptor::new(
            MediaType::from_static(media_type::OCI_LAYER_TAR),
            Digest::sha256(b""),
            size,
        );
        match descriptor.validate() {
            Ok(()) => assert!(valid, "size {size} was accepted"),
            Err(error) => {
                assert!(!valid, "size {size} was refused: {error}");
                assert!(
                    error.to_string().contains(&format!("states size {size}")),
                    "{error}"
                );
            }
        }
    }
    check(0, true);
    check(1, true);
    check(i64::MAX as u64, true);
    check(i64::MAX as u64 + 1, false);
    check(u64::MAX, false);
    assert_eq!(MAX_DESCRIPTOR_SIZE, i64::MAX as u64);
}

#[test]
fn round_trip_with_every_field() {
    let input = json!({
        "mediaType": media_type::OCI_MANIFEST,
        "digest": D,
        "size": 7682,
        "urls": ["https://example.com/a", "https://mirror.example.com/a"],
        "annotations": {"org.opencontainers.image.ref.name": "v1", "com.example.key": "value"},
        "data": "e30=",
        "platform": {
            "architecture": "amd64",
            "os": "windows",
            "os.version": "10.0.17763.2452",
            "os.features": ["win32k"],
            "variant": "v3",
            "features": ["sse4"]
        },
        "artifactType": "application/vnd.example.sbom.v1"
    });
    let descriptor: Descriptor = serde_json::from_value(input.clone()).unwrap();
    assert_eq!(descriptor.urls.len(), 2);
    assert_eq!(descriptor.annotations["com.example.key"], "value");
    assert_eq!(descriptor.data.as_deref(), Some("e30="));
    assert_eq!(
        descriptor.artifact_type.as_ref().map(MediaType::as_str),
        Some("application/vnd.example.sbom.v1")
    );
    let platform = descriptor.platform.as_ref().unwrap();
    assert_eq!(platform.os_version.as_deref(), Some("10.0.17763.2452"));
    assert_eq!(platform.os_features, ["win32k"]);
    assert_eq!(platform.variant.as_deref(), Some("v3"));
    assert_eq!(platform.features, ["sse4"]);

    let output = serde_json::to_value(&descriptor).unwrap();
    assert_eq!(output, input);
    assert_eq!(
        serde_json::from_value::<Descriptor>(output).unwrap(),
        descriptor
    );
}

#[test]
fn optional_fields_absent_or_empty() {
    let absent: Descriptor = serde_json::from_value(minimal(json!(3))).unwrap();
    let mut with_empty = minimal(json!(3));
    with_empty["annotations"] = json!({});
    with_empty["urls"] = json!([]);
    let empty: Descriptor = serde_json::from_value(with_empty).unwrap();
    assert_eq!(absent, empty);
    assert!(absent.annotations.is_empty());
    assert!(absent.urls.is_empty());
    assert_eq!(
        (
            absent.data.as_ref(),
            absent.platform.as_ref(),
            absent.artifact_type.as_ref()
        ),
        (None, None, None)
    );
    assert_eq!(
        absent,
        Descriptor::new(
            MediaType::from_static(media_type::OCI_LAYER_GZIP),
            Digest::parse(D).unwrap(),
            3
        )
    );
    // Empty optional fields are left out when written.
    assert_eq!(serde_json::to_value(&empty).unwrap(), minimal(json!(3)));
}

#[test]
fn platform_fields_survive() {
    #[track_caller]
    fn check(platform: Value) {
        let mut input = minimal(json!(1));
        input["platform"] = platform.clone();
        let descriptor: Descriptor = serde_json::from_value(input).unwrap();
        let output = serde_json::to_value(&descriptor).unwrap();
        assert_eq!(output["platform"], platform);
    }
    check(json!({"architecture": "amd64", "os": "linux"}));
    check(json!({"architecture": "arm", "os": "linux", "variant": "v7"}));
    check(json!({"architecture": "amd64", "os": "windows", "os.version": "10.0.20348.469"}));
    check(json!({"architecture": "amd64", "os": "windows", "os.features": ["win32k"]}));
    check(
        json!({"architecture": "amd64", "os": "windows", "os.version": "10.0.14393.1066", "os.features": ["win32k", "x"]}),
    );
    check(json!({"architecture": "unknown", "os": "unknown"}));

    // Written by hoist: the spec's dotted names.
    let descriptor = Descriptor::new(
        MediaType::from_static(media_type::OCI_MANIFEST),
        Digest::parse(D).unwrap(),
        1,
    )
    .with_platform(Platform::new("windows", "amd64").with_os_version("10.0.17763.2452"));
    let text = serde_json::to_string(&descriptor).unwrap();
    assert!(text.contains(r#""os.version":"10.0.17763.2452""#), "{text}");
    assert!(!text.contains("osVersion"), "{text}");
}

#[test]
fn builders() {
    let config = b"{}";
    let descriptor = Descriptor::of_bytes(MediaType::from_static(media_type::OCI_EMPTY), config)
        .with_artifact_type(MediaType::parse("application/vnd.example+type").unwrap())
        .with_annotation("a", "1")
        .with_annotation("b", "2")
        .with_annotation("a", "3");
    assert_eq!(descriptor.size, 2);
    assert_eq!(
        descriptor.digest.as_str(),
        "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    );
    assert!(descriptor.digest.verify(config));
    assert_eq!(descriptor.annotations.len(), 2);
    assert_eq!(descriptor.annotations["a"], "3");
    assert_eq!(
        serde_json::to_string(&descriptor).unwrap(),
        r#"{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2,"annotations":{"a":"3","b":"2"},"artifactType":"application/vnd.example+type"}"#
    );
}

#[test]
#[cfg(feature = "oci-spec")]
fn from_oci_spec() {
    #[track_caller]
    fn check(input: Value, expected: Result<(), &str>) {
        let theirs: oci_spec::image::Descriptor = serde_json::from_value(input.clone()).unwrap();
        match (Descriptor::try_from(&theirs), expected) {
            (Ok(ours), Ok(())) => {
                let direct: Descriptor = serde_json::from_value(input).unwrap();
                assert_eq!(ours, direct);
            }
            (Err(error), Err(fragment)) => assert!(error.to_string().contains(fragment), "{error}"),
            (ours, expected) => panic!("{input}: {ours:?}, expected {expected:?}"),
        }
    }
    check(minimal(json!(5)), Ok(()));
    check(
        json!({"mediaType": media_type::OCI_MANIFEST, "digest": D, "size": 5, "urls": ["https://x"],
               "annotations": {"k": "v"}, "data": "e30=", "artifactType": "application/vnd.example+type",
               "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}}),
        Ok(()),
    );
    check(
        json!({"mediaType": media_type::OCI_MANIFEST, "digest": format!("sha384:{}", "a".repeat(96)), "size": 5}),
        Err("unknown digest algorithm"),
    );
    check(minimal(json!(u64::MAX)), Err("larger than"));
}
