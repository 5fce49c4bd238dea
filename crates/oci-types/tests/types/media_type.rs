//! `MediaType`: shapes, parameters, and what each known type is.

use oci_types::media_type::*;
use oci_types::{Compression, MediaType};

/// Parses `input`; `Ok(essence)` when it must be accepted, `Err(fragment)` when it must be
/// refused with a reason containing `fragment`.
#[track_caller]
fn check(input: &str, expected: Result<&str, &str>) {
    match (MediaType::parse(input), expected) {
        (Ok(media_type), Ok(essence)) => {
            assert_eq!(media_type.essence(), essence, "{input:?}");
            assert_eq!(media_type.as_str(), input);
            assert_eq!(media_type.to_string(), input);
            assert_eq!(media_type, input);
        }
        (Err(error), Err(fragment)) => {
            assert!(
                matches!(&error, oci_types::Error::MediaType { input: i, .. } if i == input),
                "{input:?}: {error:?}"
            );
            let reason = crate::reason(&error);
            assert!(
                reason.contains(fragment),
                "{input:?}: reason {reason:?} lacks {fragment:?}"
            );
        }
        (Ok(media_type), Err(_)) => panic!("{input:?} was accepted as {media_type:?}"),
        (Err(error), Ok(_)) => panic!("{input:?} was refused: {error}"),
    }
}

/// Every constant of `oci_types::media_type`.
const ALL: [&str; 19] = [
    OCI_MANIFEST,
    OCI_INDEX,
    OCI_CONFIG,
    OCI_LAYER_TAR,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    OCI_LAYER_NONDIST_TAR,
    OCI_LAYER_NONDIST_GZIP,
    OCI_LAYER_NONDIST_ZSTD,
    OCI_EMPTY,
    OCI_LAYOUT_HEADER,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,
    DOCKER_LAYER_FOREIGN_GZIP,
    DOCKER_SCHEMA1_MANIFEST,
    DOCKER_SCHEMA1_SIGNED,
    OCTET_STREAM,
];

#[test]
fn valid() {
    for constant in ALL {
        check(constant, Ok(constant));
        assert_eq!(
            MediaType::from_static(constant),
            MediaType::parse(constant).unwrap()
        );
    }
    check("application/json", Ok("application/json"));
    check("a/b", Ok("a/b"));
    check("0/0", Ok("0/0"));
    check("APPLICATION/JSON", Ok("APPLICATION/JSON"));
    check(
        "application/vnd.example+type",
        Ok("application/vnd.example+type"),
    );
    check("application/x.y-z_w!#$&^", Ok("application/x.y-z_w!#$&^"));
    check("text/plain; charset=utf-8", Ok("text/plain"));
    check("text/plain;charset=utf-8", Ok("text/plain"));
    check("text/plain ; charset=utf-8", Ok("text/plain"));
    check("text/plain; charset=\"utf-8\"; q=0.9", Ok("text/plain"));
    check(
        "multipart/form-data; boundary=abc",
        Ok("multipart/form-data"),
    );
    check(&format!("{OCI_MANIFEST}; charset=utf-8"), Ok(OCI_MANIFEST));
    check("application/json;", Ok("application/json"));
    check(
        &format!("{}/{}", "t".repeat(127), "s".repeat(127)),
        Ok(&format!("{}/{}", "t".repeat(127), "s".repeat(127))),
    );
}

#[test]
fn invalid() {
    check("", Err("missing '/'"));
    check("application", Err("missing '/'"));
    check("applicationjson", Err("missing '/'"));
    check(";charset=utf-8", Err("missing '/'"));
    check("/json", Err("type must be 1 to 127 characters"));
    check("application/", Err("subtype must be 1 to 127 characters"));
    check("/", Err("type must be 1 to 127"));
    check(
        "application/json/extra",
        Err("character '/' is not allowed in the subtype"),
    );
    check(
        "application /json",
        Err("character ' ' is not allowed in the type"),
    );
    check(
        "application/ json",
        Err("subtype must start with a letter or digit"),
    );
    check("appli cation/json", Err("' '"));
    check("application/js on", Err("' '"));
    check("not a media type", Err("missing '/'"));
    check(" application/json", Err("leading or trailing whitespace"));
    check("application/json ", Err("leading or trailing whitespace"));
    check("application/json\n", Err("leading or trailing whitespace"));
    check("\tapplication/json", Err("leading or trailing whitespace"));
    check(
        "application/json\r\nX-Injected: 1",
        Err("control character '\\r'"),
    );
    check("application/json; a=b\nc", Err("control character '\\n'"));
    check("application/json\0", Err("control character '\\0'"));
    check("application/js\u{7f}on", Err("control character"));
    check("+json/x", Err("type must start with a letter or digit"));
    check("application/+json", Err("subtype must start"));
    check(".a/b", Err("type must start"));
    check(
        "application/js@n",
        Err("character '@' is not allowed in the subtype"),
    );
    check("application/js,on", Err("','"));
    check("appl:cation/json", Err("':' is not allowed in the type"));
    check("application/jsön", Err("'ö'"));
    check("application/\"json\"", Err("subtype must start"));
    check(
        &format!("{}/b", "t".repeat(128)),
        Err("type must be 1 to 127"),
    );
    check(
        &format!("a/{}", "s".repeat(128)),
        Err("subtype must be 1 to 127"),
    );
}

/// What a media type is: `[index, manifest, schema1, any manifest, layer, config,
/// non-distributable, docker]` and its layer compression.
#[track_caller]
fn check_kind(input: &str, expected: [bool; 8], compression: Option<Compression>) {
    let media_type = MediaType::parse(input).unwrap();
    let got = [
        media_type.is_index(),
        media_type.is_manifest(),
        media_type.is_schema1(),
        media_type.is_any_manifest(),
        media_type.is_layer(),
        media_type.is_config(),
        media_type.is_non_distributable(),
        media_type.is_docker(),
    ];
    assert_eq!(
        got, expected,
        "{input:?} [index, manifest, schema1, any, layer, config, nondist, docker]"
    );
    assert_eq!(media_type.layer_compression(), compression, "{input:?}");
    // Parameters do not change what a type is.
    let with_parameters = MediaType::parse(&format!("{input}; charset=utf-8")).unwrap();
    assert_eq!(with_parameters.layer_compression(), compression);
    assert_eq!(with_parameters.is_index(), expected[0]);
    assert_eq!(with_parameters.is_manifest(), expected[1]);
    assert_eq!(with_parameters.is_schema1(), expected[2]);
    assert_eq!(with_parameters.is_any_manifest(), expected[3]);
    assert_eq!(with_parameters.is_layer(), expected[4]);
    assert_eq!(with_parameters.is_config(), expected[5]);
    assert_eq!(with_parameters.is_non_distributable(), expected[6]);
    assert_eq!(with_parameters.is_docker(), expected[7]);
}

#[test]
fn kinds() {
    const T: bool = true;
    const F: bool = false;
    use Compression::{Gzip, None as Plain, Zstd};
    //                                index manif  sch1  any   layer conf  nondi docker
    check_kind(OCI_MANIFEST, [F, T, F, T, F, F, F, F], None);
    check_kind(OCI_INDEX, [T, F, F, T, F, F, F, F], None);
    check_kind(OCI_CONFIG, [F, F, F, F, F, T, F, F], None);
    check_kind(OCI_LAYER_TAR, [F, F, F, F, T, F, F, F], Some(Plain));
    check_kind(OCI_LAYER_GZIP, [F, F, F, F, T, F, F, F], Some(Gzip));
    check_kind(OCI_LAYER_ZSTD, [F, F, F, F, T, F, F, F], Some(Zstd));
    check_kind(OCI_LAYER_NONDIST_TAR, [F, F, F, F, T, F, T, F], Some(Plain));
    check_kind(OCI_LAYER_NONDIST_GZIP, [F, F, F, F, T, F, T, F], Some(Gzip));
    check_kind(OCI_LAYER_NONDIST_ZSTD, [F, F, F, F, T, F, T, F], Some(Zstd));
    check_kind(OCI_EMPTY, [F, F, F, F, F, F, F, F], None);
    check_kind(OCI_LAYOUT_HEADER, [F, F, F, F, F, F, F, F], None);
    check_kind(DOCKER_MANIFEST, [F, T, F, T, F, F, F, T], None);
    check_kind(DOCKER_MANIFEST_LIST, [T, F, F, T, F, F, F, T], None);
    check_kind(DOCKER_CONFIG, [F, F, F, F, F, T, F, T], None);
    check_kind(DOCKER_LAYER_GZIP, [F, F, F, F, T, F, F, T], Some(Gzip));
    check_kind(
        DOCKER_LAYER_FOREIGN_GZIP,
        [F, F, F, F, T, F, T, T],
        Some(Gzip),
    );
    check_kind(DOCKER_SCHEMA1_MANIFEST, [F, F, T, T, F, F, F, T], None);
    check_kind(DOCKER_SCHEMA1_SIGNED, [F, F, T, T, F, F, F, T], None);
    check_kind(OCTET_STREAM, [F, F, F, F, F, F, F, F], None);
    // Types hoist does not know are nothing in particular.
    check_kind("application/json", [F, F, F, F, F, F, F, F], None);
    check_kind(
        "application/vnd.cncf.notary.signature",
        [F, F, F, F, F, F, F, F],
        None,
    );
    check_kind(
        "application/vnd.oci.image.layer.v1.tar+bzip2",
        [F, F, F, F, F, F, F, F],
        None,
    );
    check_kind(
        "application/vnd.docker.plugin.v1+json",
        [F, F, F, F, F, F, F, T],
        None,
    );
    // Matching is exact, case included.
    check_kind(
        "APPLICATION/VND.OCI.IMAGE.MANIFEST.V1+JSON",
        [F, F, F, F, F, F, F, F],
        None,
    );
    check_kind(
        "application/vnd.oci.image.manifest.v1+jsonx",
        [F, F, F, F, F, F, F, F],
        None,
    );
}

#[test]
fn serde() {
    let media_type = MediaType::from_static(OCI_INDEX);
    let json = serde_json::to_string(&media_type).unwrap();
    assert_eq!(json, format!("\"{OCI_INDEX}\""));
    assert_eq!(
        serde_json::from_str::<MediaType>(&json).unwrap(),
        media_type
    );
    for bad in [
        "\"\"",
        "\"json\"",
        "\" application/json\"",
        "\"a/b\\r\\nc: d\"",
        "7",
    ] {
        assert!(serde_json::from_str::<MediaType>(bad).is_err(), "{bad}");
    }
    assert_eq!(format!("{media_type:?}"), format!("MediaType({OCI_INDEX})"));
}
