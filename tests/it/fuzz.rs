//! The bodies of the fuzz targets: every parser of hoist that reads outside input, fed
//! arbitrary bytes. Each must return (never panic, hang or take unbounded memory), and where a
//! parser accepts its input, what it made must keep its invariants.
//!
//! `fuzz/` runs them under libFuzzer (`cargo xtask fuzz`); the integration test `fuzz_corpus`
//! runs every file of their corpora and of `fuzz/regressions/` through them on each
//! `cargo test`, so a crash once found stays fixed.

// A fuzz target reports a broken invariant the way libFuzzer sees it: by panicking.
#![allow(clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::io::Write as _;
use std::sync::OnceLock;

use bytes::Bytes;
use oci_store::layer::{EntryKind, LayerLimits, LayerReader, merge_layers, read_entries};
use oci_store::{BlobReader, PushManifestParams};
use oci_types::{
    Descriptor, Digest, ImageManifest, Manifest, MediaType, Reference, Repository, media_type,
};

/// A target: its name (the directory of its corpus) and its body.
pub type Target = (&'static str, fn(&[u8]));

/// Every target, by name.
pub const TARGETS: &[Target] = &[
    ("reference", reference),
    ("digest", digest),
    ("manifest", manifest),
    ("image_config", image_config),
    ("tar", tar),
    ("merge", merge),
    ("unpack", unpack),
    ("www_authenticate", www_authenticate),
    ("token_response", token_response),
    ("server_request", server_request),
    ("archive", archive),
    ("access_policy", access_policy),
    ("htpasswd", htpasswd),
    ("sync_config", sync_config),
];

/// The target called `name`.
pub fn target(name: &str) -> Option<fn(&[u8])> {
    TARGETS
        .iter()
        .find(|(target, _)| *target == name)
        .map(|(_, body)| *body)
}

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// Image references as people type them, and the command line's locations (transports,
/// layouts, archives). A reference that parses prints as a reference that parses to itself.
pub fn reference(data: &[u8]) {
    let Some(text) = text(data) else { return };
    if let Ok(reference) = Reference::parse(text) {
        let printed = reference.to_string();
        let again = Reference::parse(&printed)
            .unwrap_or_else(|e| panic!("{text:?} printed as {printed:?}, which fails: {e}"));
        assert_eq!(again, reference, "{text:?} printed as {printed:?}");
    }
    hoist::fuzzing::location(text);
}

/// Digests: one that parses prints as its input (they are strict lowercase hex).
pub fn digest(data: &[u8]) {
    let Some(text) = text(data) else { return };
    if let Ok(digest) = Digest::parse(text) {
        assert_eq!(digest.to_string(), text);
    }
}

/// Manifests and indexes of every media type, and the checks a store makes before it accepts
/// one (`inspect_manifest`).
pub fn manifest(data: &[u8]) {
    let repo = Repository::parse("fuzz").expect("a valid name");
    for media_type in [
        media_type::OCI_MANIFEST,
        media_type::OCI_INDEX,
        media_type::DOCKER_MANIFEST,
        media_type::DOCKER_MANIFEST_LIST,
        media_type::DOCKER_SCHEMA1_MANIFEST,
        media_type::DOCKER_SCHEMA1_SIGNED,
    ] {
        let media_type = MediaType::from_static(media_type);
        let _ = Manifest::parse(data, &media_type);
        let _ = oci_store::inspect_manifest(&repo, data, &media_type, &PushManifestParams::new());
    }
}

/// A two-layer image manifest whose config the target varies.
fn two_layer_manifest() -> ImageManifest {
    let layer = |n: u8| {
        format!(
            r#"{{"mediaType":"{}","digest":"{}","size":1}}"#,
            media_type::OCI_LAYER_GZIP,
            Digest::sha256(&[n])
        )
    };
    let json = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{}","size":2}},"layers":[{},{}]}}"#,
        media_type::OCI_MANIFEST,
        media_type::OCI_CONFIG,
        Digest::sha256(b"{}"),
        layer(1),
        layer(2)
    );
    match Manifest::parse(
        json.as_bytes(),
        &MediaType::from_static(media_type::OCI_MANIFEST),
    ) {
        Ok(Manifest::Image(manifest)) => manifest,
        other => panic!("the fixed manifest does not parse as an image: {other:?}"),
    }
}

/// Image configs: the layers' `diff_ids` read for an unpack. When they are read, there is one
/// per layer.
pub fn image_config(data: &[u8]) {
    let manifest = two_layer_manifest();
    if let Ok(layers) = oci_unpack::image_layers(&manifest, data) {
        assert_eq!(layers.len(), manifest.layers.len());
    }
}

/// Layers' tars, entry by entry, through the hardened reader (names cleaned, whiteouts, PAX
/// and GNU long names, limits); every entry's data read to its end.
pub fn tar(data: &[u8]) {
    let layer = Digest::sha256(data);
    let limits = LayerLimits::default();
    let _ = read_entries(&layer, data, &limits, |entry| {
        assert!(
            !entry.path.starts_with(b"/"),
            "a cleaned path is relative: {entry:?}"
        );
        assert!(
            !entry.path.split(|b| *b == b'/').any(|c| c == b".."),
            "a cleaned path has no `..`: {entry:?}"
        );
        let mut sink = Vec::new();
        std::io::copy(entry.data, &mut sink)
            .map_err(|e| oci_store::Error::io("reading an entry's data", e))?;
        Ok(())
    });
}

/// What separates the layers of a `merge` input.
pub const LAYER_SEPARATOR: &[u8] = b"\n--layer--\n";

/// Flattening: up to four layers' tars (the input split at [`LAYER_SEPARATOR`], lowest first)
/// merged into one with their whiteouts applied, as `hoist flatten` and `hoist export` do.
/// A merge that succeeds gives a tar the hardened reader reads to its end, with no whiteout
/// left in it and no path the layers did not name (or lead to, as a parent directory).
pub fn merge(data: &[u8]) {
    let _ = merged_paths(data);
}

/// The body of [`merge`]: the merged tar's paths in order, or `None` when the merge refused
/// the layers.
pub fn merged_paths(data: &[u8]) -> Option<Vec<String>> {
    let layers: Vec<Bytes> = split_layers(data).map(Bytes::copy_from_slice).collect();
    let limits = LayerLimits::default();
    // Every path the layers name, and every directory on the way to one. Read as the merge
    // reads them (a layer that is compressed after all is decompressed).
    let mut named = HashSet::new();
    for layer in &layers {
        let mut reader = layer_reader(layer.clone());
        let digest = reader.layer().digest.clone();
        let _ = read_entries(&digest, &mut reader, &limits, |entry| {
            for (at, byte) in entry.path.iter().enumerate() {
                if *byte == b'/' {
                    named.insert(entry.path[..at].to_vec());
                }
            }
            named.insert(entry.path);
            Ok(())
        });
    }
    let mut open = |index: usize| Ok(layer_reader(layers[index].clone()));
    let mut merged = Vec::new();
    merge_layers(&mut merged, layers.len(), &mut open, &limits).ok()?;
    let mut paths = Vec::new();
    let merged_digest = Digest::sha256(&merged);
    read_entries(&merged_digest, merged.as_slice(), &limits, |entry| {
        assert!(
            !matches!(entry.kind, EntryKind::Whiteout | EntryKind::Opaque),
            "a whiteout left in the merged tar: {entry:?}"
        );
        assert!(
            named.contains(&entry.path),
            "the merged tar has {:?}, which no layer names",
            String::from_utf8_lossy(&entry.path)
        );
        std::io::copy(entry.data, &mut std::io::sink())
            .map_err(|e| oci_store::Error::io("reading an entry's data", e))?;
        paths.push(String::from_utf8_lossy(&entry.path).into_owned());
        Ok(())
    })
    .unwrap_or_else(|e| panic!("the merged tar does not read back: {e}"));
    Some(paths)
}

/// A reader of `layer` as an uncompressed tar layer (or whatever compression it turns out
/// to have), pulled through a runtime of the fuzzing process's own.
fn layer_reader(layer: Bytes) -> LayerReader {
    let descriptor =
        Descriptor::of_bytes(MediaType::from_static(media_type::OCI_LAYER_TAR), &layer);
    let _entered = runtime().enter();
    LayerReader::new(
        BlobReader::verified(descriptor, oci_store::body_from_bytes(layer)),
        None,
    )
}

/// Unpacking: up to four layers' tars (split as for [`merge`]), unpacked rootless into a new
/// directory beside one that stands for the host. Whatever the layers hold, the host's
/// directory keeps what it had and gains nothing, nothing else appears beside the target, and
/// an unpack that fails leaves no target behind.
pub fn unpack(data: &[u8]) {
    let _ = unpacked_paths(data);
}

/// What the host's directory holds.
const HOST_FILE: (&str, &[u8]) = ("kept", b"the host's");

/// The body of [`unpack`]: the unpacked tree's paths (sorted, relative to the target), or
/// `None` when the unpack refused the layers.
pub fn unpacked_paths(data: &[u8]) -> Option<Vec<String>> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let host = dir.path().join("host");
    std::fs::create_dir(&host).expect("the host's directory");
    std::fs::write(host.join(HOST_FILE.0), HOST_FILE.1).expect("the host's file");
    let target = dir.path().join("rootfs");
    let store = oci_store::MemoryStore::new();
    let repo = Repository::parse("fuzz/unpack").expect("a repository name");
    let result = runtime().block_on(async {
        let mut layers = Vec::new();
        for layer in split_layers(data) {
            let media = MediaType::from_static(media_type::OCI_LAYER_TAR);
            let bytes = Bytes::copy_from_slice(layer);
            let descriptor =
                oci_store::OciInterfaceExt::push_blob_bytes(&store, &repo, media, bytes)
                    .await
                    .expect("a blob pushed into memory");
            // An uncompressed layer's diff_id is its digest; one that turns out to be
            // compressed fails that check after its entries are applied.
            let diff_id = descriptor.digest.clone();
            layers.push(oci_unpack::LayerRef::new(descriptor, diff_id));
        }
        let options = oci_unpack::UnpackOptions::default().with_rootless(true);
        oci_unpack::unpack(&store, &repo, &layers, &target, &options).await
    });

    let mut host_names: Vec<_> = std::fs::read_dir(&host)
        .expect("the host's directory is still there")
        .map(|entry| entry.expect("a directory entry").file_name())
        .collect();
    host_names.sort();
    assert_eq!(host_names, [HOST_FILE.0], "the host's directory changed");
    let kept = std::fs::read(host.join(HOST_FILE.0)).expect("the host's file");
    assert_eq!(kept, HOST_FILE.1, "the host's file changed");
    let beside = std::fs::read_dir(dir.path())
        .expect("the temporary directory")
        .count();
    match result {
        Ok(_) => {
            assert_eq!(beside, 2, "something was made beside the target");
            let mut paths = Vec::new();
            let mut pending = vec![std::path::PathBuf::new()];
            while let Some(relative) = pending.pop() {
                for entry in std::fs::read_dir(target.join(&relative)).expect("a directory") {
                    let entry = entry.expect("a directory entry");
                    let path = relative.join(entry.file_name());
                    if entry.file_type().expect("a file type").is_dir() {
                        pending.push(path.clone());
                    }
                    paths.push(path.to_string_lossy().into_owned());
                }
            }
            paths.sort();
            Some(paths)
        }
        Err(_) => {
            assert!(!target.exists(), "a failed unpack left its target");
            assert_eq!(beside, 1, "something was made beside the target");
            None
        }
    }
}

/// A runtime of the fuzzing process's own, for the targets that call async code.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a tokio runtime")
    })
}

/// The layers of a `merge` input: at most four, the last taking the rest.
fn split_layers(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let data = rest?;
        let found = data
            .windows(LAYER_SEPARATOR.len())
            .position(|w| w == LAYER_SEPARATOR);
        match found {
            Some(at) => {
                rest = Some(&data[at + LAYER_SEPARATOR.len()..]);
                Some(&data[..at])
            }
            None => {
                rest = None;
                Some(data)
            }
        }
    })
    .take(4)
}

/// `WWW-Authenticate` challenges, as a registry's 401 carries them.
pub fn www_authenticate(data: &[u8]) {
    if let Some(text) = text(data) {
        oci_registry::fuzzing::www_authenticate(text);
    }
}

/// A token endpoint's JSON answer, as the client reads it: a token it takes is kept for at
/// least a second and at most a day (the expiry is the time it came plus that: a lifetime the
/// clock cannot add must not get there), and is good right after it came.
pub fn token_response(data: &[u8]) {
    if let Some((kept, fresh)) = oci_registry::fuzzing::token_response(data) {
        assert!(
            kept >= std::time::Duration::from_secs(1)
                && kept <= std::time::Duration::from_secs(24 * 60 * 60),
            "a token kept for {kept:?}"
        );
        assert!(fresh, "a token not good right after it came");
    }
}

/// What the server reads of a request before any store is asked: the path, a `Range` and a
/// chunk's `Content-Range`. The input is the path, a newline, the range, a newline, the
/// content range; the blob size is taken from the input's length.
pub fn server_request(data: &[u8]) {
    let mut lines = data.splitn(3, |b| *b == b'\n');
    let path = lines.next().unwrap_or_default();
    let range = lines.next().unwrap_or_default();
    let content_range = lines.next().unwrap_or_default();
    if let Some(path) = text(path) {
        oci_server::fuzzing::request_path(path);
    }
    for size in [0, 1, data.len() as u64, u64::MAX] {
        oci_server::fuzzing::ranges(range, content_range, size);
    }
}

/// Archives: an oci-archive and a docker-archive (its `manifest.json`, configs, layers, links),
/// plain or compressed, opened and indexed as `hoist copy` opens them.
pub fn archive(data: &[u8]) {
    let Ok(mut file) = tempfile::NamedTempFile::new() else {
        return;
    };
    if file.write_all(data).is_err() {
        return;
    }
    for read_as in [oci_archive::ReadAs::Oci, oci_archive::ReadAs::Docker] {
        let limits = oci_archive::ArchiveLimits::default();
        if let Ok(reader) = oci_archive::ArchiveReader::open_blocking(file.path(), read_as, &limits)
        {
            let _ = reader.images().len();
        }
    }
}

/// Access policies of `hoist serve --access`, as TOML and as YAML.
pub fn access_policy(data: &[u8]) {
    let Some(text) = text(data) else { return };
    for format in [
        oci_server::PolicyFormat::Toml,
        oci_server::PolicyFormat::Yaml,
    ] {
        let _ = oci_server::AccessPolicy::parse(text, format);
    }
}

/// htpasswd files of `hoist serve --htpasswd`.
pub fn htpasswd(data: &[u8]) {
    if let Some(text) = text(data) {
        let _ = oci_server::Htpasswd::parse(text);
    }
}

/// Sync configs of `hoist sync --config`, as YAML and as TOML (tag regexes and semver ranges
/// compiled as they are read).
pub fn sync_config(data: &[u8]) {
    if let Some(text) = text(data) {
        hoist::fuzzing::sync_config(text);
    }
}
