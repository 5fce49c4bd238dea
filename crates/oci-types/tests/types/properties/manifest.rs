//! `Manifest`: image manifests and indexes that hoist serialises (`to_json`) parse back into
//! the same value, and serialising the parsed value gives the same bytes (hence the same
//! digest); arbitrary and mangled JSON never makes `Manifest::parse` panic, and whatever it
//! accepts serialises into JSON that it accepts again as the same value.

use std::collections::BTreeMap;

use oci_types::{
    Descriptor, Digest, ImageIndex, ImageManifest, MAX_DESCRIPTOR_SIZE, Manifest, MediaType,
    Platform, media_type,
};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Map, Value, json};

use super::config;

/// Known media types and generated `type/subtype` ones, sometimes with parameters.
fn any_media_type() -> impl Strategy<Value = MediaType> {
    let known = prop::sample::select(vec![
        media_type::OCI_CONFIG,
        media_type::OCI_LAYER_TAR,
        media_type::OCI_LAYER_GZIP,
        media_type::OCI_LAYER_ZSTD,
        media_type::OCI_EMPTY,
        media_type::OCI_MANIFEST,
        media_type::OCI_INDEX,
        media_type::DOCKER_CONFIG,
        media_type::DOCKER_LAYER_GZIP,
        media_type::DOCKER_MANIFEST,
    ])
    .prop_map(MediaType::from_static);
    let generated = (
        "[a-z0-9][a-z0-9.+-]{0,10}/[a-zA-Z0-9][a-zA-Z0-9!#$&^_.+-]{0,30}",
        prop::option::of("; ?[a-z]{1,8}=[a-z0-9-]{1,8}"),
    )
        .prop_map(|(essence, parameter)| {
            MediaType::parse(&format!("{essence}{}", parameter.unwrap_or_default())).unwrap()
        });
    prop_oneof![known, generated]
}

fn digest() -> impl Strategy<Value = Digest> {
    (any::<bool>(), prop::collection::vec(any::<u8>(), 0..8)).prop_map(|(long, bytes)| {
        if long {
            Digest::of(oci_types::Algorithm::Sha512, &bytes)
        } else {
            Digest::sha256(&bytes)
        }
    })
}

/// Annotations: dotted keys, and values of any text (quotes, backslashes, control
/// characters, non-ASCII), which JSON must escape and read back.
fn annotations() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map("[a-z]{1,6}(\\.[a-z]{1,6}){0,3}", any::<String>(), 0..3)
}

/// Platform fields are free text in the image-spec; `os.version` and `os.features` are the
/// fields `oci-spec` would lose, so they are generated often.
fn platform() -> impl Strategy<Value = Platform> {
    (
        "[a-z0-9]{1,8}",
        "[a-z0-9_]{1,8}",
        prop::option::of("[a-z0-9]{1,3}"),
        prop::option::of("[0-9]{1,3}(\\.[0-9]{1,5}){0,3}"),
        prop::collection::vec("[a-z0-9]{1,8}", 0..2),
        prop::collection::vec("[a-z0-9.+-]{1,8}", 0..2),
    )
        .prop_map(
            |(os, architecture, variant, os_version, os_features, features)| {
                let mut platform = Platform::new(os, architecture);
                platform.variant = variant;
                platform.os_version = os_version;
                platform.os_features = os_features;
                platform.features = features;
                platform
            },
        )
}

/// A descriptor with every optional field now and then, sizes over the whole allowed range.
fn descriptor() -> impl Strategy<Value = Descriptor> {
    let size = prop_oneof![0u64..100_000, 0..=MAX_DESCRIPTOR_SIZE];
    let optional = (
        prop::collection::vec("https://[a-z]{1,8}\\.example/[a-z0-9/]{0,12}", 0..2),
        annotations(),
        prop::option::of("[A-Za-z0-9+/]{0,16}={0,2}"),
        prop::option::of(platform()),
        prop::option::of(any_media_type()),
    );
    (any_media_type(), digest(), size, optional).prop_map(
        |(media_type, digest, size, (urls, annotations, data, platform, artifact_type))| {
            let mut descriptor = Descriptor::new(media_type, digest, size);
            descriptor.urls = urls;
            descriptor.annotations = annotations;
            descriptor.data = data;
            descriptor.platform = platform;
            descriptor.artifact_type = artifact_type;
            descriptor
        },
    )
}

fn image_manifest() -> impl Strategy<Value = ImageManifest> {
    (
        prop::sample::select(vec![media_type::OCI_MANIFEST, media_type::DOCKER_MANIFEST]),
        prop::option::of(any_media_type()),
        descriptor(),
        prop::collection::vec(descriptor(), 0..4),
        prop::option::of(descriptor()),
        annotations(),
    )
        .prop_map(
            |(kind, artifact_type, config, layers, subject, annotations)| {
                let mut manifest = ImageManifest::new(config, layers);
                manifest.media_type = MediaType::from_static(kind);
                manifest.artifact_type = artifact_type;
                manifest.subject = subject;
                manifest.annotations = annotations;
                manifest
            },
        )
}

fn image_index() -> impl Strategy<Value = ImageIndex> {
    (
        prop::sample::select(vec![
            media_type::OCI_INDEX,
            media_type::DOCKER_MANIFEST_LIST,
        ]),
        prop::option::of(any_media_type()),
        prop::collection::vec(descriptor(), 0..4),
        prop::option::of(descriptor()),
        annotations(),
    )
        .prop_map(|(kind, artifact_type, manifests, subject, annotations)| {
            let mut index = ImageIndex::new(manifests);
            index.media_type = MediaType::from_static(kind);
            index.artifact_type = artifact_type;
            index.subject = subject;
            index.annotations = annotations;
            index
        })
}

/// The media type bytes are handed to `Manifest::parse` as: the manifest's own, or the same
/// with a parameter, as a `Content-Type` header may carry it.
fn served_as(media_type: &MediaType, parameter: bool) -> MediaType {
    if parameter {
        MediaType::parse(&format!("{media_type}; charset=utf-8")).unwrap()
    } else {
        media_type.clone()
    }
}

/// Checks that what `Manifest::parse` accepted serialises into JSON that it accepts again, as
/// the same value, and that this second serialisation is the first byte for byte.
fn assert_normal_form(parsed: &Manifest, media_type: &MediaType) -> Result<(), TestCaseError> {
    let bytes = match parsed {
        Manifest::Image(m) => m.to_json(),
        Manifest::Index(i) => i.to_json(),
        other => return Err(TestCaseError::fail(format!("unknown kind {other:?}"))),
    };
    let again = Manifest::parse(&bytes, media_type);
    prop_assert!(
        again.is_ok(),
        "{} re-serialised is refused: {again:?}",
        String::from_utf8_lossy(&bytes)
    );
    let again = again.unwrap();
    prop_assert_eq!(&again, parsed);
    let bytes_again = match &again {
        Manifest::Image(m) => m.to_json(),
        Manifest::Index(i) => i.to_json(),
        _ => unreachable!("checked above"),
    };
    prop_assert_eq!(bytes_again, bytes);
    Ok(())
}

/// The names manifests and descriptors use, so that generated objects hit the parser's fields.
const KEYS: &[&str] = &[
    "schemaVersion",
    "mediaType",
    "artifactType",
    "config",
    "layers",
    "manifests",
    "subject",
    "annotations",
    "digest",
    "size",
    "urls",
    "data",
    "platform",
    "os",
    "architecture",
    "os.version",
    "os.features",
    "variant",
    "features",
];

/// JSON values of any shape, with the manifest vocabulary as keys and near-valid leaves
/// (digests, media types, numbers around the edges of `u64` and `i64`).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        prop::sample::select(vec![0i64, 1, 2, -1, i64::MAX, i64::MIN]).prop_map(Value::from),
        prop::sample::select(vec![u64::MAX, 1 << 63]).prop_map(Value::from),
        prop::sample::select(vec![2.0f64, 0.5, -0.0]).prop_map(Value::from),
        digest().prop_map(|d| Value::from(d.to_string())),
        any_media_type().prop_map(|m| Value::from(m.to_string())),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS.to_vec()), inner), 0..6).prop_map(
                |fields| {
                    Value::Object(
                        fields
                            .into_iter()
                            .map(|(k, v)| (k.to_owned(), v))
                            .collect::<Map<_, _>>(),
                    )
                }
            ),
        ]
    })
}

/// The media types `Manifest::parse` is called with: the four manifest kinds and others.
fn parse_media_type() -> impl Strategy<Value = MediaType> {
    prop_oneof![
        prop::sample::select(vec![
            media_type::OCI_MANIFEST,
            media_type::OCI_INDEX,
            media_type::DOCKER_MANIFEST,
            media_type::DOCKER_MANIFEST_LIST,
            media_type::DOCKER_SCHEMA1_MANIFEST,
            media_type::OCI_CONFIG,
        ])
        .prop_map(MediaType::from_static),
        any_media_type(),
    ]
}

/// Found by `parsed_manifests_reserialise_to_a_normal_form`: a manifest parsed as the
/// `Content-Type` `…manifest.v1+json; charset=utf-8` kept the parameter in its media type and
/// wrote it into the `mediaType` field, so `to_json` gave JSON that `Manifest::parse` refused
/// ("mediaType field … differs from the media type … it was given as").
#[test]
fn regression_media_type_parameter_stays_out_of_the_json() {
    let empty = Descriptor::of_bytes(MediaType::from_static(media_type::OCI_CONFIG), b"");
    let bytes = ImageManifest::new(empty, Vec::new()).to_json();
    let served = MediaType::parse(&format!("{}; charset=utf-8", media_type::OCI_MANIFEST)).unwrap();
    let parsed = Manifest::parse(&bytes, &served).unwrap();
    assert_eq!(parsed.media_type(), &served);
    let Manifest::Image(image) = &parsed else {
        panic!("not an image manifest: {parsed:?}");
    };
    assert_eq!(image.to_json(), bytes);
    assert_eq!(Manifest::parse(&image.to_json(), &served).unwrap(), parsed);
}

proptest! {
    #![proptest_config(config(256))]

    /// An image manifest hoist serialises parses back into the same value, and serialising
    /// that value again gives the same bytes, so its digest does not move.
    #[test]
    fn image_manifest_round_trips(manifest in image_manifest()) {
        let bytes = manifest.to_json();
        prop_assert_eq!(&serde_json::to_vec(&manifest).unwrap(), &bytes);
        let parsed = Manifest::parse(&bytes, &manifest.media_type);
        prop_assert!(parsed.is_ok(), "{} is refused: {parsed:?}", String::from_utf8_lossy(&bytes));
        let Manifest::Image(parsed) = parsed.unwrap() else {
            return Err(TestCaseError::fail("an image manifest parsed as something else"));
        };
        prop_assert_eq!(&parsed, &manifest);
        prop_assert_eq!(parsed.to_json(), bytes);
    }

    /// The same for indexes.
    #[test]
    fn image_index_round_trips(index in image_index()) {
        let bytes = index.to_json();
        prop_assert_eq!(&serde_json::to_vec(&index).unwrap(), &bytes);
        let parsed = Manifest::parse(&bytes, &index.media_type);
        prop_assert!(parsed.is_ok(), "{} is refused: {parsed:?}", String::from_utf8_lossy(&bytes));
        let Manifest::Index(parsed) = parsed.unwrap() else {
            return Err(TestCaseError::fail("an index parsed as something else"));
        };
        prop_assert_eq!(&parsed, &index);
        prop_assert_eq!(parsed.to_json(), bytes);
    }

    /// Bytes hoist produced, read as the media type a `Content-Type` gives (perhaps with a
    /// parameter), parse into a value that serialises into a normal form.
    #[test]
    fn parsed_manifests_reserialise_to_a_normal_form(
        manifest in image_manifest(),
        index in image_index(),
        parameter in any::<bool>(),
    ) {
        let as_type = served_as(&manifest.media_type, parameter);
        let parsed = Manifest::parse(&manifest.to_json(), &as_type).unwrap();
        assert_normal_form(&parsed, &as_type)?;
        let as_type = served_as(&index.media_type, parameter);
        let parsed = Manifest::parse(&index.to_json(), &as_type).unwrap();
        assert_normal_form(&parsed, &as_type)?;
    }

    /// Arbitrary bytes never make `Manifest::parse` panic.
    #[test]
    fn arbitrary_bytes_do_not_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..256),
        media_type in parse_media_type(),
    ) {
        if let Ok(parsed) = Manifest::parse(&bytes, &media_type) {
            assert_normal_form(&parsed, &media_type)?;
        }
    }

    /// JSON of any shape built from the manifest vocabulary, and the same inside an object
    /// that otherwise looks like a manifest (so that the parser gets past `schemaVersion`):
    /// refused without panicking, or accepted into a value with a normal form.
    #[test]
    fn json_shapes_are_refused_or_normal(
        value in json_value(),
        field in prop::sample::select(KEYS.to_vec()),
        media_type in parse_media_type(),
    ) {
        let bytes = serde_json::to_vec(&value).unwrap();
        if let Ok(parsed) = Manifest::parse(&bytes, &media_type) {
            assert_normal_form(&parsed, &media_type)?;
        }
        let mut object = json!({
            "schemaVersion": 2,
            "config": {"mediaType": media_type::OCI_CONFIG, "digest": Digest::sha256(b"").to_string(), "size": 0},
            "layers": [],
            "manifests": [],
        });
        object[field] = value;
        let bytes = serde_json::to_vec(&object).unwrap();
        if let Ok(parsed) = Manifest::parse(&bytes, &media_type) {
            assert_normal_form(&parsed, &media_type)?;
        }
    }

    /// Valid manifest bytes with one byte changed, or cut short: refused without panicking,
    /// or accepted into a value with a normal form.
    #[test]
    fn mangled_manifests_are_refused_or_normal(
        manifest in image_manifest(),
        at in any::<Index>(),
        byte in any::<u8>(),
        cut in any::<bool>(),
    ) {
        let mut bytes = manifest.to_json();
        let i = at.index(bytes.len());
        if cut {
            bytes.truncate(i);
        } else {
            bytes[i] = byte;
        }
        if let Ok(parsed) = Manifest::parse(&bytes, &manifest.media_type) {
            assert_normal_form(&parsed, &manifest.media_type)?;
        }
    }
}
