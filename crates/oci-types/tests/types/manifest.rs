//! `Manifest::parse` over real fixtures and broken JSON, and manifests hoist writes.

use oci_types::media_type::{
    DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST,
    DOCKER_SCHEMA1_MANIFEST, DOCKER_SCHEMA1_SIGNED, OCI_CONFIG, OCI_EMPTY, OCI_INDEX,
    OCI_LAYER_GZIP, OCI_MANIFEST,
};
use oci_types::{
    Descriptor, Digest, ImageIndex, ImageManifest, MAX_MANIFEST_SIZE, Manifest, MediaType, Platform,
};
use serde_json::{Value, json};

use crate::fixture;

const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn mt(media_type: &str) -> MediaType {
    MediaType::parse(media_type).unwrap()
}

fn parse_fixture(name: &str, media_type: &str) -> Manifest {
    Manifest::parse(&fixture(name), &mt(media_type))
        .unwrap_or_else(|e| panic!("{name} as {media_type}: {e}"))
}

fn image(manifest: &Manifest) -> &ImageManifest {
    match manifest {
        Manifest::Image(image) => image,
        other => panic!("not an image manifest: {other:?}"),
    }
}

fn index(manifest: &Manifest) -> &ImageIndex {
    match manifest {
        Manifest::Index(index) => index,
        other => panic!("not an index: {other:?}"),
    }
}

/// `os/arch[/variant]` and `os.version` of each child of an index.
fn platforms(index: &ImageIndex) -> Vec<(String, Option<&str>)> {
    index
        .manifests
        .iter()
        .map(|d| {
            let p = d.platform.as_ref().unwrap();
            (p.to_string(), p.os_version.as_deref())
        })
        .collect()
}

#[test]
fn docker_hello_world_list() {
    let bytes = fixture("docker-hello-world-list.json");
    assert_eq!(bytes.len(), 2562);
    assert_eq!(
        Digest::sha256(&bytes).as_str(),
        "sha256:975f4b14f326b05db86e16de00144f9c12257553bba9484fed41f9b6f2257800"
    );
    let manifest = parse_fixture("docker-hello-world-list.json", DOCKER_MANIFEST_LIST);
    let list = index(&manifest);
    assert_eq!(list.media_type, DOCKER_MANIFEST_LIST);
    assert!(manifest.media_type().is_index());
    assert_eq!(list.manifests.len(), 11);
    assert!(
        list.manifests
            .iter()
            .all(|d| d.media_type == DOCKER_MANIFEST)
    );
    assert_eq!(
        platforms(list),
        [
            ("linux/amd64", None),
            ("linux/arm/v5", None),
            ("linux/arm/v7", None),
            ("linux/arm64/v8", None),
            ("linux/386", None),
            ("linux/mips64le", None),
            ("linux/ppc64le", None),
            ("linux/riscv64", None),
            ("linux/s390x", None),
            ("windows/amd64", Some("10.0.20348.469")),
            ("windows/amd64", Some("10.0.17763.2452")),
        ]
        .map(|(p, v)| (p.to_owned(), v))
    );
    assert_eq!(list.manifests[9].size, 1125);
    assert_eq!(
        list.manifests[0].digest.as_str(),
        "sha256:f54a58bc1aac5ea1a25d796ae155dc228b3f0e11d046ae276b39c4bf2f13d8c4"
    );
    assert_eq!(manifest.references().len(), 11);
    assert_eq!(manifest.subject(), None);
    assert_eq!(manifest.effective_artifact_type(), None);
    assert!(manifest.annotations().is_empty());
}

#[test]
fn docker_hello_world_amd64() {
    let bytes = fixture("docker-hello-world-amd64.json");
    // The first entry of the list above describes exactly these bytes.
    let list = parse_fixture("docker-hello-world-list.json", DOCKER_MANIFEST_LIST);
    let entry = &index(&list).manifests[0];
    assert_eq!(bytes.len() as u64, entry.size);
    assert!(entry.digest.verify(&bytes));

    let manifest = parse_fixture("docker-hello-world-amd64.json", DOCKER_MANIFEST);
    let image = image(&manifest);
    assert_eq!(image.schema_version, 2);
    assert_eq!(image.media_type, DOCKER_MANIFEST);
    assert_eq!(image.config.media_type, DOCKER_CONFIG);
    assert_eq!(image.config.size, 1469);
    assert_eq!(image.layers.len(), 1);
    assert_eq!(image.layers[0].media_type, DOCKER_LAYER_GZIP);
    assert_eq!(image.layers[0].size, 2479);
    assert_eq!(manifest.effective_artifact_type(), Some(&mt(DOCKER_CONFIG)));
    assert_eq!(manifest.subject(), None);
    assert_eq!(manifest.references(), [&image.config, &image.layers[0]]);
}

#[test]
fn oci_image_manifest() {
    let manifest = parse_fixture("oci-image-manifest.json", OCI_MANIFEST);
    let image = image(&manifest);
    assert_eq!(image.config.media_type, OCI_CONFIG);
    assert_eq!(
        image.config.digest.as_str(),
        "sha256:b5b2b2c507a0944348e0303114d8d93aaaa081732b86451d9bce1f432a537bc7"
    );
    assert_eq!(
        image.layers.iter().map(|l| l.size).collect::<Vec<_>>(),
        [32654, 16724, 73109]
    );
    assert!(image.layers.iter().all(|l| l.media_type == OCI_LAYER_GZIP));
    assert_eq!(image.annotations.len(), 2);
    assert_eq!(manifest.annotations()["com.example.key2"], "value2");
    assert_eq!(image.artifact_type, None);
    assert_eq!(manifest.effective_artifact_type(), Some(&mt(OCI_CONFIG)));
    let references: Vec<_> = manifest.references().iter().map(|d| d.size).collect();
    assert_eq!(references, [7023, 32654, 16724, 73109]);
}

#[test]
fn notation_signature() {
    let manifest = parse_fixture("notation-signature.json", OCI_MANIFEST);
    let image = image(&manifest);
    assert_eq!(image.artifact_type, None);
    // Without an artifactType, a referrers list reports the config's media type.
    assert_eq!(
        manifest.effective_artifact_type().map(MediaType::as_str),
        Some("application/vnd.cncf.notary.signature")
    );
    let subject = manifest.subject().unwrap();
    assert_eq!(
        subject.digest.as_str(),
        "sha256:f17fbc7debc4eda7456dd3ab0c18c27d50821a9821cfca5607404e654f76e675"
    );
    assert_eq!(subject.size, 605);
    assert_eq!(image.layers[0].media_type, "application/jose+json");
    assert!(image.config.digest.verify(b"{}"));
    assert_eq!(manifest.references().len(), 2);
}

#[test]
fn artifact_with_subject() {
    let manifest = parse_fixture("oci-artifact-subject.json", OCI_MANIFEST);
    let image = image(&manifest);
    let artifact_type = mt("application/vnd.example+type");
    assert_eq!(image.artifact_type.as_ref(), Some(&artifact_type));
    assert_eq!(manifest.effective_artifact_type(), Some(&artifact_type));
    assert_eq!(image.config.media_type, OCI_EMPTY);
    assert_eq!(image.config.data.as_deref(), Some("e30="));
    let mut empty_config = Descriptor::of_bytes(mt(OCI_EMPTY), b"{}");
    empty_config.data = Some("e30=".to_owned());
    assert_eq!(image.config, empty_config);
    assert_eq!(image.layers.len(), 2);
    assert_eq!(
        image.layers[1].annotations["org.opencontainers.image.title"],
        "bar.txt"
    );
    // The subject is the image-spec example manifest, byte for byte.
    let subject = manifest.subject().unwrap();
    let target = fixture("oci-image-manifest.json");
    assert!(subject.digest.verify(&target));
    assert_eq!(subject.size, target.len() as u64);
    assert_eq!(subject.media_type, OCI_MANIFEST);
    // The subject may dangle: it is not among what the manifest needs.
    assert_eq!(manifest.references().len(), 3);
    assert!(!manifest.references().contains(&subject));
}

#[test]
fn oci_index_with_windows() {
    let manifest = parse_fixture("oci-index-windows.json", OCI_INDEX);
    let index = index(&manifest);
    assert_eq!(index.manifests.len(), 6);
    assert_eq!(
        platforms(index),
        [
            ("linux/ppc64le", None),
            ("linux/amd64", None),
            ("linux/arm64/v8", None),
            ("windows/amd64", Some("10.0.20348.469")),
            ("windows/amd64", Some("10.0.17763.2452")),
            ("unknown/unknown", None),
        ]
        .map(|(p, v)| (p.to_owned(), v))
    );
    let windows: &Platform = index.manifests[4].platform.as_ref().unwrap();
    assert_eq!(windows.os_features, ["win32k"]);
    assert_eq!(
        index.manifests[5].annotations["vnd.docker.reference.type"],
        "attestation-manifest"
    );
    assert_eq!(index.annotations.len(), 2);
    assert_eq!(manifest.effective_artifact_type(), None);
    assert_eq!(manifest.subject(), None);
    assert_eq!(manifest.references().len(), 6);
}

#[test]
fn oci_index_with_subject() {
    let manifest = parse_fixture("oci-index-subject.json", OCI_INDEX);
    let index = index(&manifest);
    assert_eq!(
        manifest.effective_artifact_type().map(MediaType::as_str),
        Some("application/vnd.example.bundle.v1")
    );
    assert!(
        manifest
            .subject()
            .unwrap()
            .digest
            .verify(&fixture("oci-image-manifest.json"))
    );
    assert_eq!(
        index
            .manifests
            .iter()
            .map(|d| d.artifact_type.as_ref().unwrap().as_str())
            .collect::<Vec<_>>(),
        [
            "application/vnd.example.sbom.v1",
            "application/vnd.example.signature.v1"
        ]
    );
    assert_eq!(manifest.references().len(), 2);
}

#[test]
fn media_type_with_parameters() {
    let manifest = parse_fixture(
        "oci-image-manifest.json",
        &format!("{OCI_MANIFEST}; charset=utf-8"),
    );
    assert_eq!(manifest.media_type().essence(), OCI_MANIFEST);
}

#[test]
#[cfg(feature = "oci-spec")]
fn oci_spec_conversion_agrees() {
    let bytes = fixture("oci-artifact-subject.json");
    let theirs: oci_spec::image::ImageManifest = serde_json::from_slice(&bytes).unwrap();
    let converted = ImageManifest::try_from(&theirs).unwrap();
    let parsed = parse_fixture("oci-artifact-subject.json", OCI_MANIFEST);
    assert_eq!(&converted, image(&parsed));
}

/// A small valid OCI image manifest as JSON, to break in the error cases.
fn base_manifest() -> Value {
    json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": D, "size": 2},
        "layers": [
            {"mediaType": OCI_LAYER_GZIP, "digest": D, "size": 3},
            {"mediaType": OCI_LAYER_GZIP, "digest": D, "size": 4},
            {"mediaType": OCI_LAYER_GZIP, "digest": D, "size": 5}
        ]
    })
}

fn base_index() -> Value {
    json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": D, "size": 3, "platform": {"os": "linux", "architecture": "amd64"}}
        ]
    })
}

/// The JSON of `base` with the member at `path` (a JSON pointer) set to `value`, or removed
/// when `value` is `None`.
fn edit(mut base: Value, path: &str, value: Option<Value>) -> Vec<u8> {
    let (parent, key) = path.rsplit_once('/').unwrap();
    let target = base.pointer_mut(parent).unwrap();
    match (target, value) {
        (Value::Object(map), Some(value)) => {
            map.insert(key.to_owned(), value);
        }
        (Value::Object(map), None) => {
            map.remove(key);
        }
        (Value::Array(items), Some(value)) => items[key.parse::<usize>().unwrap()] = value,
        (other, _) => panic!("cannot edit {path} in {other}"),
    }
    serde_json::to_vec(&base).unwrap()
}

/// Parses `bytes` as `media_type`; `Ok(())` when it must be accepted, `Err(fragment)` when it
/// must be refused with a reason containing `fragment`.
#[track_caller]
fn check(bytes: &[u8], media_type: &str, expected: Result<(), &str>) {
    let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
    match (Manifest::parse(bytes, &mt(media_type)), expected) {
        (Ok(_), Ok(())) => {}
        (Err(error), Err(fragment)) => {
            assert!(
                matches!(error, oci_types::Error::Manifest { .. }),
                "{error:?}"
            );
            let reason = crate::reason(&error);
            assert!(
                reason.contains(fragment),
                "{shown}: reason {reason:?} lacks {fragment:?}"
            );
        }
        (Ok(manifest), Err(_)) => panic!("{shown} was accepted as {manifest:?}"),
        (Err(error), Ok(())) => panic!("{shown} was refused: {error}"),
    }
}

#[test]
fn errors() {
    let m = base_manifest;
    let i = base_index;
    let ok = Ok(());
    check(&serde_json::to_vec(&m()).unwrap(), OCI_MANIFEST, ok);
    check(&serde_json::to_vec(&i()).unwrap(), OCI_INDEX, ok);

    // Not JSON, not an object.
    check(b"", OCI_MANIFEST, Err("not valid JSON"));
    check(b"not json", OCI_MANIFEST, Err("not valid JSON"));
    check(
        b"{\"schemaVersion\":2,",
        OCI_MANIFEST,
        Err("not valid JSON"),
    );
    check(b"{} {}", OCI_MANIFEST, Err("not valid JSON"));
    check(b"\xff\xfe{}", OCI_MANIFEST, Err("not valid JSON"));
    check(b"[]", OCI_MANIFEST, Err("not a JSON object"));
    check(b"\"manifest\"", OCI_INDEX, Err("not a JSON object"));
    check(b"null", OCI_INDEX, Err("not a JSON object"));
    check(b"2", OCI_INDEX, Err("not a JSON object"));

    // schemaVersion.
    check(
        &edit(m(), "/schemaVersion", Some(json!(1))),
        OCI_MANIFEST,
        Err("schemaVersion is 1, expected 2"),
    );
    check(
        &edit(m(), "/schemaVersion", Some(json!(3))),
        OCI_MANIFEST,
        Err("schemaVersion is 3"),
    );
    check(
        &edit(m(), "/schemaVersion", None),
        OCI_MANIFEST,
        Err("schemaVersion is missing"),
    );
    check(
        &edit(m(), "/schemaVersion", Some(json!("2"))),
        OCI_MANIFEST,
        Err("not a number"),
    );
    check(
        &edit(m(), "/schemaVersion", Some(json!(2.5))),
        OCI_MANIFEST,
        Err("not a number"),
    );
    check(
        &edit(m(), "/schemaVersion", Some(json!(-2))),
        OCI_MANIFEST,
        Err("not a number"),
    );
    check(
        &edit(i(), "/schemaVersion", Some(json!(null))),
        OCI_INDEX,
        Err("schemaVersion is missing"),
    );

    // mediaType field against the media type given.
    check(
        &serde_json::to_vec(&m()).unwrap(),
        DOCKER_MANIFEST,
        Err("mediaType field \"application/vnd.oci.image.manifest.v1+json\" differs"),
    );
    check(
        &serde_json::to_vec(&i()).unwrap(),
        OCI_MANIFEST,
        Err("differs from the media type"),
    );
    check(
        &serde_json::to_vec(&m()).unwrap(),
        OCI_INDEX,
        Err("differs"),
    );
    check(
        &fixture("docker-hello-world-list.json"),
        OCI_INDEX,
        Err("differs"),
    );
    check(
        &fixture("docker-hello-world-amd64.json"),
        OCI_MANIFEST,
        Err("differs"),
    );
    check(
        &edit(m(), "/mediaType", Some(json!(7))),
        OCI_MANIFEST,
        Err("mediaType is not a string"),
    );
    check(
        &edit(
            m(),
            "/mediaType",
            Some(json!(format!("{OCI_MANIFEST}; charset=utf-8"))),
        ),
        OCI_MANIFEST,
        Err("differs"),
    );
    // The field is optional in OCI: its absence is fine.
    check(&edit(m(), "/mediaType", None), OCI_MANIFEST, ok);
    check(&edit(i(), "/mediaType", None), OCI_INDEX, ok);

    // Missing or mistyped required fields.
    check(
        &edit(m(), "/config", None),
        OCI_MANIFEST,
        Err("not an image manifest: missing field `config`"),
    );
    check(
        &edit(m(), "/layers", None),
        OCI_MANIFEST,
        Err("missing field `layers`"),
    );
    check(
        &edit(i(), "/manifests", None),
        OCI_INDEX,
        Err("not an image index: missing field `manifests`"),
    );
    check(
        &edit(m(), "/layers", Some(json!({}))),
        OCI_MANIFEST,
        Err("not an image manifest: invalid type: map"),
    );
    check(
        &edit(m(), "/layers", Some(json!(null))),
        OCI_MANIFEST,
        Err("not an image manifest"),
    );
    check(
        &edit(i(), "/manifests", Some(json!("x"))),
        OCI_INDEX,
        Err("not an image index"),
    );
    check(&edit(m(), "/layers", Some(json!([]))), OCI_MANIFEST, ok);

    // Descriptors: the error names the field.
    check(
        &edit(m(), "/layers/1/digest", Some(json!("sha256:abc"))),
        OCI_MANIFEST,
        Err("layers[1]: invalid digest \"sha256:abc\""),
    );
    check(
        &edit(m(), "/layers/2/digest", Some(json!(D.to_uppercase()))),
        OCI_MANIFEST,
        Err("layers[2]: invalid digest"),
    );
    check(
        &edit(
            m(),
            "/layers/0/digest",
            Some(json!("sha256:../../etc/passwd")),
        ),
        OCI_MANIFEST,
        Err("layers[0]: invalid digest"),
    );
    check(
        &edit(
            m(),
            "/config/digest",
            Some(json!("md5:d41d8cd98f00b204e9800998ecf8427e")),
        ),
        OCI_MANIFEST,
        Err("config: invalid digest"),
    );
    check(
        &edit(m(), "/config/digest", None),
        OCI_MANIFEST,
        Err("config: missing field `digest`"),
    );
    check(
        &edit(m(), "/config/mediaType", Some(json!("config"))),
        OCI_MANIFEST,
        Err("config: invalid media type"),
    );
    check(
        &edit(m(), "/layers/1/size", Some(json!(-1))),
        OCI_MANIFEST,
        Err("layers[1]: invalid value: integer `-1`"),
    );
    check(
        &edit(m(), "/layers/1/size", Some(json!(1.5))),
        OCI_MANIFEST,
        Err("layers[1]: invalid type: floating point"),
    );
    check(
        &edit(m(), "/layers/2/size", Some(json!(u64::MAX))),
        OCI_MANIFEST,
        Err("layers[2]: descriptor sha256:e3b0"),
    );
    check(
        &edit(m(), "/layers/2/size", Some(json!(i64::MAX as u64 + 1))),
        OCI_MANIFEST,
        Err("larger than 9223372036854775807"),
    );
    check(
        &edit(m(), "/layers/2/size", Some(json!(i64::MAX))),
        OCI_MANIFEST,
        ok,
    );
    check(
        &edit(m(), "/config/size", Some(json!(u64::MAX))),
        OCI_MANIFEST,
        Err("config: descriptor"),
    );
    check(
        &edit(m(), "/layers/0", Some(json!("sha256:abc"))),
        OCI_MANIFEST,
        Err("layers[0]: a string is not a JSON object"),
    );
    check(
        &edit(m(), "/layers/0", Some(json!(null))),
        OCI_MANIFEST,
        Err("layers[0]: null is not a JSON object"),
    );
    // Serde would read a struct from an array, field by field; no other implementation does.
    let as_array = json!([OCI_CONFIG, D, 2, [], {}, null, null, null]);
    check(
        &edit(m(), "/config", Some(as_array.clone())),
        OCI_MANIFEST,
        Err("config: an array is not a JSON object"),
    );
    check(
        &edit(m(), "/layers/1", Some(as_array.clone())),
        OCI_MANIFEST,
        Err("layers[1]: an array"),
    );
    check(
        &edit(i(), "/manifests/0", Some(as_array.clone())),
        OCI_INDEX,
        Err("manifests[0]: an array"),
    );
    check(
        &edit(m(), "/subject", Some(as_array)),
        OCI_MANIFEST,
        Err("subject: an array"),
    );
    check(
        &edit(
            i(),
            "/manifests/0/platform",
            Some(json!(["amd64", "linux", null, [], null, []])),
        ),
        OCI_INDEX,
        Err("manifests[0]: platform is not a JSON object"),
    );
    check(
        &edit(i(), "/manifests/0/platform", Some(json!(null))),
        OCI_INDEX,
        ok,
    );
    check(
        &edit(i(), "/manifests/0/mediaType", Some(json!("bad type"))),
        OCI_INDEX,
        Err("manifests[0]: invalid media type"),
    );
    check(
        &edit(i(), "/manifests/0/platform", Some(json!({"os": "linux"}))),
        OCI_INDEX,
        Err("manifests[0]: missing field `architecture`"),
    );
    check(
        &edit(i(), "/manifests/0/size", Some(json!(u64::MAX))),
        OCI_INDEX,
        Err("manifests[0]: descriptor"),
    );
    let subject = json!({"mediaType": OCI_MANIFEST, "digest": D, "size": 1});
    check(
        &edit(m(), "/subject", Some(subject.clone())),
        OCI_MANIFEST,
        ok,
    );
    check(&edit(i(), "/subject", Some(subject.clone())), OCI_INDEX, ok);
    check(&edit(m(), "/subject", Some(json!(null))), OCI_MANIFEST, ok);
    check(
        &edit(
            m(),
            "/subject",
            Some(json!({"mediaType": OCI_MANIFEST, "digest": "sha256:0", "size": 1})),
        ),
        OCI_MANIFEST,
        Err("subject: invalid digest"),
    );
    check(
        &edit(
            i(),
            "/subject",
            Some(json!({"mediaType": OCI_MANIFEST, "digest": D})),
        ),
        OCI_INDEX,
        Err("subject: missing field `size`"),
    );
    check(
        &edit(
            m(),
            "/subject",
            Some(json!({"mediaType": OCI_MANIFEST, "digest": D, "size": u64::MAX})),
        ),
        OCI_MANIFEST,
        Err("subject: descriptor"),
    );

    // Other fields.
    check(
        &edit(m(), "/artifactType", Some(json!("not a type"))),
        OCI_MANIFEST,
        Err("artifactType: invalid media type"),
    );
    check(
        &edit(i(), "/artifactType", Some(json!(3))),
        OCI_INDEX,
        Err("artifactType: invalid type: integer"),
    );
    // An empty artifactType reads as absent: the distribution-spec's referrers rules treat
    // "empty or missing" alike, and real signers write "".
    check(
        &edit(m(), "/artifactType", Some(json!(""))),
        OCI_MANIFEST,
        ok,
    );
    check(
        &edit(m(), "/artifactType", Some(json!(null))),
        OCI_MANIFEST,
        ok,
    );
    check(
        &edit(m(), "/annotations", Some(json!({"a": 1}))),
        OCI_MANIFEST,
        Err("annotations: invalid type: integer"),
    );
    check(
        &edit(i(), "/annotations", Some(json!(["a"]))),
        OCI_INDEX,
        Err("annotations: invalid type: sequence"),
    );
    check(
        &edit(m(), "/annotations", Some(json!(null))),
        OCI_MANIFEST,
        ok,
    );

    // Media types that are not one of the four manifest kinds.
    let schema1 = json!({"schemaVersion": 1, "name": "library/hello-world", "tag": "latest", "architecture": "amd64", "fsLayers": [], "history": []});
    check(
        &serde_json::to_vec(&schema1).unwrap(),
        DOCKER_SCHEMA1_MANIFEST,
        Err("schemaVersion is 1"),
    );
    check(
        &serde_json::to_vec(&schema1).unwrap(),
        DOCKER_SCHEMA1_SIGNED,
        Err("schemaVersion is 1"),
    );
    check(
        &edit(m(), "/mediaType", None),
        DOCKER_SCHEMA1_SIGNED,
        Err("is not an image manifest or index"),
    );
    check(
        &edit(m(), "/mediaType", None),
        "application/json",
        Err("\"application/json\" is not an image manifest or index"),
    );
    check(
        &edit(m(), "/mediaType", None),
        OCI_CONFIG,
        Err("not an image manifest or index"),
    );
    check(
        &edit(m(), "/mediaType", None),
        OCI_EMPTY,
        Err("not an image manifest or index"),
    );
    check(
        &edit(m(), "/mediaType", None),
        "application/vnd.oci.artifact.manifest.v1+json",
        Err("not an image manifest or index"),
    );
}

#[test]
fn unknown_fields_are_ignored() {
    let mut value = base_manifest();
    value["x-future"] = json!({"nested": [1, 2, 3]});
    value["manifests"] = json!("not read for an image manifest");
    value["config"]["x-future"] = json!(true);
    value["layers"][0]["platform"] = json!({"os": "linux", "architecture": "amd64", "x-future": 1});
    let with_extra =
        Manifest::parse(&serde_json::to_vec(&value).unwrap(), &mt(OCI_MANIFEST)).unwrap();
    let plain = Manifest::parse(
        &serde_json::to_vec(&base_manifest()).unwrap(),
        &mt(OCI_MANIFEST),
    )
    .unwrap();
    assert_eq!(image(&with_extra).config, image(&plain).config);
    assert_eq!(image(&with_extra).layers[1..], image(&plain).layers[1..]);
}

#[test]
fn size_limit() {
    let manifest = serde_json::to_vec(&base_manifest()).unwrap();
    // Padded with JSON whitespace to exactly the limit, then one byte more.
    let mut padded = manifest.clone();
    padded.resize(MAX_MANIFEST_SIZE, b' ');
    check(&padded, OCI_MANIFEST, Ok(()));
    padded.push(b' ');
    check(
        &padded,
        OCI_MANIFEST,
        Err("4194305 bytes, larger than the limit of 4194304"),
    );
    // The limit holds before anything is parsed.
    check(
        &vec![b'x'; MAX_MANIFEST_SIZE + 1],
        OCI_MANIFEST,
        Err("larger than the limit"),
    );
    assert_eq!(MAX_MANIFEST_SIZE, 4 * 1024 * 1024);
}

#[test]
fn image_manifest_to_json_round_trips() {
    let config = Descriptor::of_bytes(mt(OCI_EMPTY), b"{}");
    let written = ImageManifest::new(config.clone(), Vec::new());
    let json = written.to_json();
    assert_eq!(
        String::from_utf8(json.clone()).unwrap(),
        r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#
    );
    assert_eq!(
        Digest::sha256(&json).as_str(),
        "sha256:1ccb399e44f3e0ec86bb1a95031c6b9f81ac77860556a81a90acb79bab8005d9"
    );
    assert_eq!(
        Manifest::parse(&json, &mt(OCI_MANIFEST)).unwrap(),
        Manifest::Image(written)
    );

    let layers = vec![
        Descriptor::of_bytes(mt(OCI_LAYER_GZIP), b"layer one"),
        Descriptor::of_bytes(mt(OCI_LAYER_GZIP), b"layer two")
            .with_annotation("org.opencontainers.image.title", "two"),
    ];
    let mut full = ImageManifest::new(
        Descriptor::of_bytes(mt(OCI_CONFIG), b"{\"os\":\"linux\"}"),
        layers,
    );
    full.artifact_type = Some(mt("application/vnd.example+type"));
    full.subject = Some(Descriptor::new(
        mt(OCI_MANIFEST),
        Digest::parse(D).unwrap(),
        951,
    ));
    full.annotations.insert(
        "org.opencontainers.image.created".to_owned(),
        "2024-01-01T00:00:00Z".to_owned(),
    );
    let parsed = Manifest::parse(&full.to_json(), &mt(OCI_MANIFEST)).unwrap();
    assert_eq!(parsed, Manifest::Image(full.clone()));
    assert_eq!(
        parsed.effective_artifact_type(),
        full.artifact_type.as_ref()
    );
    assert_eq!(parsed.references().len(), 3);
}

#[test]
fn image_index_to_json_round_trips() {
    let children = vec![
        Descriptor::of_bytes(mt(OCI_MANIFEST), b"amd64")
            .with_platform(Platform::new("linux", "amd64")),
        Descriptor::of_bytes(mt(OCI_MANIFEST), b"arm")
            .with_platform(Platform::new("linux", "arm").with_variant("v7")),
        Descriptor::of_bytes(mt(OCI_MANIFEST), b"windows")
            .with_platform(Platform::new("windows", "amd64").with_os_version("10.0.17763.2452")),
    ];
    let mut written = ImageIndex::new(children);
    let json = written.to_json();
    assert!(json.starts_with(br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":["#));
    assert_eq!(
        Manifest::parse(&json, &mt(OCI_INDEX)).unwrap(),
        Manifest::Index(written.clone())
    );

    written.artifact_type = Some(mt("application/vnd.example.bundle.v1"));
    written.subject = Some(Descriptor::new(
        mt(OCI_MANIFEST),
        Digest::parse(D).unwrap(),
        1,
    ));
    written.annotations.insert("k".to_owned(), "v".to_owned());
    let parsed = Manifest::parse(&written.to_json(), &mt(OCI_INDEX)).unwrap();
    assert_eq!(parsed, Manifest::Index(written));

    let empty = ImageIndex::new(Vec::new());
    assert_eq!(
        empty.to_json(),
        br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#
    );
}
