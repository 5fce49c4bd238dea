//! `hoist build` and the commands that change images (`append`, `mutate`, `flatten`,
//! `rebase`, `recompress`, `index create|append|remove`), run as a program and checked by
//! third-party peers: `umoci unpack` compares trees, `skopeo` reads configs, manifests and
//! indexes, and the CNCF registry (`docker-registry`) holds bases and indexes.
//!
//! umoci 0.4.7 (Debian's) refuses zstd layers ("blob is not correct mediatype:
//! application/vnd.oci.image.layer.v1.tar+zstd"; zstd came with umoci 0.5), so zstd images
//! are read by skopeo, which decompresses them into gzip layers that umoci then unpacks.
//!
//! Command lines are written as text and split at spaces: the paths in them are those of a
//! temporary directory, checked to have none.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hasher};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::cli::Hoist;
use crate::client_peers::shared_cncf;
use crate::server_interop::skopeo;
use crate::support::{peer, run};

/// The `SOURCE_DATE_EPOCH` of the builds here.
pub(crate) const EPOCH: u64 = 1_700_000_000;

// ---- trees ----

/// What a tree holds at one path, as the tests compare trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    Dir { mode: u32 },
    File { mode: u32, size: u64, hash: u64 },
    Symlink { target: PathBuf },
}

/// Every path under a root (relative, the root left out) and the groups of hard links.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Tree {
    pub(crate) nodes: BTreeMap<String, Node>,
    pub(crate) links: BTreeSet<BTreeSet<String>>,
}

impl Tree {
    /// Both trees' paths (the same path in both must be the same directory).
    pub(crate) fn union(mut self, other: Self) -> Self {
        for (path, node) in other.nodes {
            if let Some(old) = self.nodes.insert(path.clone(), node.clone()) {
                assert_eq!(old, node, "{path} differs in the trees joined");
            }
        }
        self.links.extend(other.links);
        self
    }
}

pub(crate) fn snapshot(root: &Path) -> Tree {
    let mut tree = Tree::default();
    let mut inodes: BTreeMap<(u64, u64), BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.strip_prefix(root).unwrap().display().to_string();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            let node = if meta.is_dir() {
                stack.push(path.clone());
                Node::Dir { mode }
            } else if meta.is_symlink() {
                Node::Symlink {
                    target: std::fs::read_link(&path).unwrap(),
                }
            } else {
                assert!(meta.is_file(), "{} is not a file", path.display());
                if meta.nlink() > 1 {
                    let group = inodes.entry((meta.dev(), meta.ino())).or_default();
                    group.insert(name.clone());
                }
                let mut hasher = DefaultHasher::new();
                hasher.write(&std::fs::read(&path).unwrap());
                Node::File {
                    mode,
                    size: meta.len(),
                    hash: hasher.finish(),
                }
            };
            tree.nodes.insert(name, node);
        }
    }
    tree.links = inodes.into_values().filter(|g| g.len() > 1).collect();
    tree
}

/// Asserts that two trees are the same, showing the paths that differ.
pub(crate) fn assert_same_tree(actual: &Tree, expected: &Tree, what: &str) {
    let (a, e) = (&actual.nodes, &expected.nodes);
    let paths: BTreeSet<&String> = a.keys().chain(e.keys()).collect();
    let differences: Vec<String> = paths
        .into_iter()
        .filter(|p| a.get(*p) != e.get(*p))
        .map(|p| format!("{p}: {:?}, expected {:?}", a.get(p), e.get(p)))
        .collect();
    let (al, el) = (&actual.links, &expected.links);
    assert!(
        differences.is_empty() && al == el,
        "{what}:\n{}\nhard links {al:?}, expected {el:?}",
        differences.join("\n")
    );
}

/// A file at `rel` under `root` (parents made) with `mode`.
pub(crate) fn file(root: &Path, rel: &str, content: &[u8], mode: u32) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, content).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A directory at `rel` under `root` with `mode`.
pub(crate) fn dir(root: &Path, rel: &str, mode: u32) {
    let path = root.join(rel);
    std::fs::create_dir_all(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A tree with what layers are made of: modes (0755, 0600, setuid), nested and empty
/// directories, an empty file, a few MiB of random bytes, absolute and relative symlinks, a
/// hard link pair, a name over 100 bytes and a path over 255 bytes.
pub(crate) fn rich_tree(root: &Path) {
    dir(root, "", 0o755);
    file(root, "bin/tool", b"#!/bin/sh\necho tool\n", 0o755);
    file(root, "etc/secret", b"s3cret\n", 0o600);
    dir(root, "etc", 0o750);
    file(root, "usr/bin/su", b"setuid\n", 0o4755);
    file(root, "usr/share/doc/readme", b"read me\n", 0o644);
    dir(root, "var/empty", 0o700);
    file(root, "empty", b"", 0o644);
    let random = oci_store::conformance::seeded_bytes(7, 3 << 20);
    file(root, "data/random.bin", &random, 0o644);
    symlink("/etc/secret", root.join("abs-link")).unwrap();
    symlink("../etc/secret", root.join("bin/rel-link")).unwrap();
    file(root, "data/original", b"linked content\n", 0o640);
    std::fs::hard_link(root.join("data/original"), root.join("bin/linked")).unwrap();
    file(
        root,
        &format!("long/{}", "l".repeat(150)),
        b"long name\n",
        0o644,
    );
    let deep: Vec<String> = (0..6).map(|n| format!("{n}{}", "d".repeat(47))).collect();
    file(root, &format!("{}/leaf", deep.join("/")), b"deep\n", 0o644);
}

/// Sets the modification time of every file and directory under `root` (not symlinks).
pub(crate) fn touch_all(root: &Path, time: SystemTime) {
    for (path, node) in snapshot(root).nodes {
        if !matches!(node, Node::Symlink { .. }) {
            let handle = std::fs::File::open(root.join(path)).unwrap();
            handle.set_modified(time).unwrap();
        }
    }
}

/// A tar of `entries` in that order, separated by spaces: `DIR/`, `FILE=CONTENT` or
/// `LINK=>TARGET` (a hard link).
pub(crate) fn craft_tar(path: &Path, entries: &str) {
    let mut builder = tar::Builder::new(std::fs::File::create(path).unwrap());
    for entry in entries.split_whitespace() {
        let mut header = tar::Header::new_ustar();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(EPOCH);
        header.set_mode(0o644);
        header.set_size(0);
        if let Some((name, target)) = entry.split_once("=>") {
            header.set_entry_type(tar::EntryType::Link);
            builder.append_link(&mut header, name, target).unwrap();
        } else if let Some((name, content)) = entry.split_once('=') {
            header.set_size(content.len() as u64);
            builder
                .append_data(&mut header, name, content.as_bytes())
                .unwrap();
        } else {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            builder
                .append_data(&mut header, entry, std::io::empty())
                .unwrap();
        }
    }
    builder.into_inner().unwrap();
}

// ---- running things ----

/// A temporary directory for a test, its paths as text for command lines.
pub(crate) struct Work(tempfile::TempDir);

impl Work {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().to_str().unwrap();
        assert!(!text.contains(char::is_whitespace), "a space in {text}");
        Self(dir)
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    pub(crate) fn at(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    /// A file at `name` (parents made) with `mode`.
    pub(crate) fn file(&self, name: &str, content: &[u8], mode: u32) {
        file(self.0.path(), name, content, mode);
    }

    pub(crate) fn dir(&self, name: &str, mode: u32) {
        dir(self.0.path(), name, mode);
    }

    /// `oci:DIR:TAG` of the layout `name`.
    pub(crate) fn oci(&self, name: &str, tag: &str) -> String {
        format!("oci:{}:{tag}", self.at(name))
    }
}

/// The registry's address and skopeo, or `None` after saying what is missing.
pub(crate) fn registry_and_skopeo() -> Option<(String, PathBuf)> {
    let skopeo = peer("skopeo")?;
    Some((shared_cncf()?.addr.to_string(), skopeo))
}

/// `hoist LINE` with `SOURCE_DATE_EPOCH=epoch`, which must succeed; returns the digest it
/// printed.
pub(crate) fn hoist_at(hoist: &Hoist, epoch: u64, line: &str) -> String {
    let args: Vec<&str> = line.split_whitespace().collect();
    let output = hoist
        .command(&args)
        .env("SOURCE_DATE_EPOCH", epoch.to_string())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "SOURCE_DATE_EPOCH={epoch} hoist {line} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let digest = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert!(digest.starts_with("sha256:"), "no digest: {digest:?}");
    digest
}

/// `hoist LINE` (`format!`'s arguments) at [`EPOCH`]: the digest it printed.
macro_rules! hoist {
    ($hoist:expr, $($line:tt)+) => {
        $crate::build_interop::hoist_ok($hoist, &format!($($line)+))
    };
}
pub(crate) use hoist;

/// `skopeo LINE` (`format!`'s arguments): its stdout as JSON.
macro_rules! skopeo_json_of {
    ($bin:expr, $($line:tt)+) => {
        $crate::build_interop::skopeo_json($bin, &format!($($line)+))
    };
}
pub(crate) use skopeo_json_of;

/// `hoist LINE` at [`EPOCH`].
pub(crate) fn hoist_ok(hoist: &Hoist, line: &str) -> String {
    hoist_at(hoist, EPOCH, line)
}

/// `skopeo LINE`, which must succeed; its stdout as JSON (`null` when it prints none).
pub(crate) fn skopeo_json(skopeo_bin: &Path, line: &str) -> Value {
    let args: Vec<&str> = line.split_whitespace().collect();
    let output = skopeo(skopeo_bin, &args);
    serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
}

/// The manifest (or index) at `reference` as skopeo reads it (`--raw`).
pub(crate) fn raw_manifest(skopeo_bin: &Path, reference: &str) -> Value {
    skopeo_json_of!(skopeo_bin, "inspect --tls-verify=false --raw {reference}")
}

/// `umoci unpack --rootless` of the layout `name`'s `tag` into the bundle `bundle`; returns
/// the tree of its rootfs.
pub(crate) fn unpack(umoci: &Path, work: &Work, name: &str, tag: &str, bundle: &str) -> Tree {
    let image = format!("{}:{tag}", work.at(name));
    run(
        umoci,
        ["unpack", "--rootless", "--image", &image, &work.at(bundle)],
    );
    snapshot(&work.path(bundle).join("rootfs"))
}

/// `hoist build` of the tree `tree` into the layout `layout`'s `tag`; returns the digest.
pub(crate) fn build_tree(
    hoist: &Hoist,
    work: &Work,
    tree: &str,
    layout: &str,
    tag: &str,
) -> String {
    let line = format!("build --layer {} {}", work.at(tree), work.oci(layout, tag));
    hoist_ok(hoist, &line)
}

// ---- 1. umoci reads what hoist builds ----

/// Builds the rich tree with `compression`; umoci (through skopeo for zstd) stats, lists and
/// unpacks it as the input tree, every time clamped to SOURCE_DATE_EPOCH.
fn umoci_unpacks_a_built_tree(compression: &str, media_type: &str) {
    let (Some(umoci), Some(skopeo_bin)) = (peer("umoci"), peer("skopeo")) else {
        return;
    };
    let work = Work::new();
    rich_tree(&work.path("tree"));
    let hoist = Hoist::new();
    let (image, gzip) = (work.oci("layout", "v1"), work.oci("gzip", "v1"));
    let tree = work.at("tree");
    hoist!(
        &hoist,
        "build --layer {tree} --compression {compression} {image}"
    );
    let manifest = raw_manifest(&skopeo_bin, &image);
    assert_eq!(manifest["layers"][0]["mediaType"], media_type, "{manifest}");
    let readable = if compression == "zstd" {
        skopeo_json_of!(
            &skopeo_bin,
            "copy --dest-compress --dest-compress-format gzip {image} {gzip}"
        );
        "gzip"
    } else {
        "layout"
    };
    let stat = run(
        &umoci,
        ["stat", "--image", &format!("{}:v1", work.at(readable))],
    );
    let stat = String::from_utf8_lossy(&stat.stdout);
    assert!(
        stat.contains("hoist build"),
        "umoci stat shows the history:\n{stat}"
    );
    let ls = run(&umoci, ["ls", "--layout", &work.at(readable)]);
    assert_eq!(String::from_utf8_lossy(&ls.stdout).trim(), "v1");
    let unpacked = unpack(&umoci, &work, readable, "v1", "bundle");
    assert_same_tree(&unpacked, &snapshot(&work.path("tree")), "umoci's tree");
    assert_eq!(unpacked.links.len(), 1, "the hard link pair is one inode");
    let rootfs = work.path("bundle/rootfs");
    for path in unpacked.nodes.keys() {
        let meta = std::fs::symlink_metadata(rootfs.join(path)).unwrap();
        assert_eq!(
            meta.mtime(),
            EPOCH as i64,
            "mtime of {path}, made after the epoch"
        );
    }
}

#[test]
fn umoci_unpacks_a_gzip_build_as_the_input_tree() {
    umoci_unpacks_a_built_tree("gzip", "application/vnd.oci.image.layer.v1.tar+gzip");
}

#[test]
fn umoci_unpacks_an_uncompressed_build_as_the_input_tree() {
    umoci_unpacks_a_built_tree("none", "application/vnd.oci.image.layer.v1.tar");
}

#[test]
fn a_zstd_build_decompressed_by_skopeo_unpacks_as_the_input_tree() {
    umoci_unpacks_a_built_tree("zstd", "application/vnd.oci.image.layer.v1.tar+zstd");
}

// ---- 2. reproducibility ----

/// Fresh copies of a tree (other inodes, other times) built by separate processes with 1 and
/// 4 compression threads give the same digest; another SOURCE_DATE_EPOCH another one.
#[test]
fn fresh_copies_built_with_any_threads_give_the_same_digest() {
    let work = Work::new();
    rich_tree(&work.path("first"));
    rich_tree(&work.path("second"));
    let later = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    touch_all(&work.path("first"), later);
    touch_all(&work.path("second"), SystemTime::now());
    let hoist = Hoist::new();
    let build = |tree: &str, compression: &str, threads: u32, epoch: u64| {
        let layout = work.oci(&format!("{compression}-{threads}-{epoch}"), "v1");
        let tree = work.at(tree);
        let line = format!(
            "build --layer {tree} --compression {compression} --compression-threads {threads} \
             {layout}"
        );
        hoist_at(&hoist, epoch, &line)
    };
    for compression in ["gzip", "zstd"] {
        let one = build("first", compression, 1, EPOCH);
        let four = build("second", compression, 4, EPOCH);
        assert_eq!(one, four, "{compression}: 1 and 4 threads, two copies");
        let other = build("first", compression, 1, EPOCH + 1);
        assert_ne!(one, other, "{compression}: another SOURCE_DATE_EPOCH");
    }
}

// ---- 3. skopeo and the registry ----

/// skopeo reads the config given on the command line, and copies the image into the CNCF
/// registry unchanged.
#[test]
fn skopeo_inspects_the_config_and_pushes_a_built_image() {
    let Some((addr, skopeo_bin)) = registry_and_skopeo() else {
        return;
    };
    let work = Work::new();
    work.file("tree/app/run", b"#!/bin/sh\n", 0o755);
    let hoist = Hoist::new();
    let (tree, image) = (work.at("tree"), work.oci("layout", "v1"));
    let digest = hoist!(
        &hoist,
        "build --layer {tree} --env MODE=test --entrypoint /app/run,--flag \
             --label org.example.team=hoist {image}"
    );
    let inspected = skopeo_json_of!(&skopeo_bin, "inspect {image}");
    assert_eq!(inspected["Digest"], digest.as_str());
    assert_eq!(inspected["Labels"]["org.example.team"], "hoist");
    let env = inspected["Env"].as_array().unwrap();
    assert!(env.contains(&Value::from("MODE=test")), "{env:?}");
    let config = skopeo_json_of!(&skopeo_bin, "inspect --config {image}");
    let entrypoint = &config["config"]["Entrypoint"];
    assert_eq!(*entrypoint, serde_json::json!(["/app/run", "--flag"]));

    let target = format!("docker://{addr}/build-interop/pushed:v1");
    skopeo_json_of!(&skopeo_bin, "copy --dest-tls-verify=false {image} {target}");
    let pushed = skopeo_json_of!(&skopeo_bin, "inspect --tls-verify=false {target}");
    assert_eq!(
        pushed["Digest"],
        digest.as_str(),
        "the manifest is unchanged"
    );
    assert_eq!(pushed["Labels"]["org.example.team"], "hoist");
}

/// Images built for two platforms into the registry, joined by `hoist index create`: skopeo
/// picks each platform's image, reads the raw index and copies all of it; the platform tags
/// exist. Then `index append` and `index remove` change the platforms skopeo sees.
#[test]
fn a_two_platform_index_in_the_registry_is_read_by_skopeo() {
    let Some((addr, skopeo_bin)) = registry_and_skopeo() else {
        return;
    };
    let work = Work::new();
    let hoist = Hoist::new();
    let repo = format!("{addr}/build-interop/app");
    let mut digests = BTreeMap::new();
    for arch in ["amd64", "arm64"] {
        work.file(&format!("{arch}/arch"), arch.as_bytes(), 0o644);
        let line = format!(
            "build --platform linux/{arch} --layer {} {repo}:{arch}",
            work.at(arch)
        );
        digests.insert(arch.to_owned(), hoist_ok(&hoist, &line));
    }
    let index_digest = hoist!(
        &hoist,
        "index create --platform-tags {repo}:v1 {repo}:amd64 {repo}:arm64"
    );

    let inspect = |what: &str| skopeo_json_of!(&skopeo_bin, "inspect --tls-verify=false {what}");
    for arch in ["amd64", "arm64"] {
        let picked = inspect(&format!("--override-arch {arch} docker://{repo}:v1"));
        assert_eq!(picked["Architecture"], arch);
        // skopeo's Digest is the index's; the layers say which image it picked.
        assert_eq!(picked["Digest"], index_digest.as_str());
        let own = inspect(&format!("docker://{repo}:{arch}"));
        assert_eq!(own["Digest"], digests[arch].as_str());
        assert_eq!(picked["Layers"], own["Layers"], "{arch}");
        let tagged = inspect(&format!("docker://{repo}:v1-{arch}"));
        assert_eq!(
            tagged["Digest"],
            digests[arch].as_str(),
            "the v1-{arch} tag"
        );
    }
    let index = raw_manifest(&skopeo_bin, &format!("docker://{repo}:v1"));
    let media_type = "application/vnd.oci.image.index.v1+json";
    assert_eq!(index["mediaType"], media_type, "{index}");
    assert_eq!(children(&index), digests);

    let copied = work.oci("copied", "v1");
    skopeo_json_of!(
        &skopeo_bin,
        "copy --all --src-tls-verify=false docker://{repo}:v1 {copied}"
    );
    assert_eq!(raw_manifest(&skopeo_bin, &copied), index);
    assert_eq!(hoist.stdout(&["digest", &copied]), index_digest);
    let tags = skopeo_json_of!(&skopeo_bin, "list-tags --tls-verify=false docker://{repo}");
    for tag in ["v1", "v1-amd64", "v1-arm64"] {
        let tags = tags["Tags"].as_array().unwrap();
        assert!(tags.contains(&Value::from(tag)), "{tag} missing: {tags:?}");
    }

    // `index append` adds a platform (with its tag), `index remove` takes one out.
    work.file("riscv64/arch", b"riscv64", 0o644);
    let riscv = work.at("riscv64");
    let line = format!("build --platform linux/riscv64 --layer {riscv} {repo}:riscv64");
    digests.insert("riscv64".to_owned(), hoist_ok(&hoist, &line));
    hoist!(
        &hoist,
        "index append --platform-tags {repo}:v1 {repo}:riscv64"
    );
    hoist!(&hoist, "index remove --platform linux/amd64 {repo}:v1");
    digests.remove("amd64");
    let index = raw_manifest(&skopeo_bin, &format!("docker://{repo}:v1"));
    assert_eq!(children(&index), digests);
    let picked = inspect(&format!("--override-arch riscv64 docker://{repo}:v1"));
    assert_eq!(picked["Architecture"], "riscv64");
    let tagged = inspect(&format!("docker://{repo}:v1-riscv64"));
    assert_eq!(tagged["Digest"], digests["riscv64"].as_str());
}

/// The architecture and digest of each child of an index.
fn children(index: &Value) -> BTreeMap<String, String> {
    let text = |v: &Value| v.as_str().unwrap().to_owned();
    let manifests = index["manifests"].as_array().unwrap().iter();
    manifests
        .map(|m| (text(&m["platform"]["architecture"]), text(&m["digest"])))
        .collect()
}

// ---- 4. a base in the registry ----

/// A base made by umoci (its own gzip bytes) in the registry: a build on it keeps its layers
/// byte for byte, names it in the annotations, and unpacks with the base's and its own files.
#[test]
fn a_build_on_a_registry_base_keeps_its_layers_byte_for_byte() {
    let (Some((addr, skopeo_bin)), Some(umoci)) = (registry_and_skopeo(), peer("umoci")) else {
        return;
    };
    let work = Work::new();
    work.file("base-tree/base/etc/os-release", b"ID=umoci\n", 0o644);
    work.file("base-tree/base/bin/sh", b"not a shell\n", 0o755);
    let base_image = format!("{}:base", work.at("umoci"));
    run(&umoci, ["init", "--layout", &work.at("umoci")]);
    run(&umoci, ["new", "--image", &base_image]);
    let base_dir = work.at("base-tree/base");
    let line = format!("insert --rootless --image {base_image} {base_dir} /base");
    run(&umoci, line.split_whitespace());
    let base_ref = format!("{addr}/build-interop/base:v1");
    skopeo_json_of!(
        &skopeo_bin,
        "copy --dest-tls-verify=false {} docker://{base_ref}",
        work.oci("umoci", "base")
    );
    let base = format!("docker://{base_ref}");
    let base_manifest = raw_manifest(&skopeo_bin, &base);
    let base_digest =
        skopeo_json_of!(&skopeo_bin, "inspect --tls-verify=false {base}")["Digest"].clone();

    work.file("app-tree/app/main", b"the app\n", 0o755);
    let app_ref = format!("{addr}/build-interop/on-base:v1");
    let hoist = Hoist::new();
    hoist!(
        &hoist,
        "build --from {base_ref} --layer {} {app_ref}",
        work.at("app-tree")
    );
    let app_manifest = raw_manifest(&skopeo_bin, &format!("docker://{app_ref}"));
    // The layers' descriptors (digest, size, media type) as the base has them.
    let base_layers = base_manifest["layers"].as_array().unwrap();
    let app_layers = app_manifest["layers"].as_array().unwrap();
    assert_eq!(app_layers.len(), base_layers.len() + 1, "{app_manifest}");
    assert_eq!(app_layers[..base_layers.len()], base_layers[..]);
    let annotations = &app_manifest["annotations"];
    let name = &annotations["org.opencontainers.image.base.name"];
    assert_eq!(*name, base_ref.as_str(), "{app_manifest}");
    let digest = &annotations["org.opencontainers.image.base.digest"];
    assert_eq!(*digest, base_digest, "{app_manifest}");

    hoist.ok(&["pull", &app_ref, &work.oci("pulled", "v1")]);
    let unpacked = unpack(&umoci, &work, "pulled", "v1", "bundle");
    let expected = snapshot(&work.path("base-tree")).union(snapshot(&work.path("app-tree")));
    assert_same_tree(&unpacked, &expected, "the base's and the app's files");
}

// ---- 6. bad input ----

/// A layout `layout` holding one image tagged `keep`, and the hoist that made it.
fn layout_with_keep(work: &Work) -> Hoist {
    work.file("keep-tree/kept", b"kept\n", 0o644);
    let hoist = Hoist::new();
    build_tree(&hoist, work, "keep-tree", "layout", "keep");
    hoist
}

/// `hoist LINE` fails naming each of `culprits`, and the layout `layout` still has `keep` as
/// its only tag.
fn refused(hoist: &Hoist, work: &Work, line: &str, culprits: &[&str]) {
    let args: Vec<&str> = line.split_whitespace().collect();
    let (code, stderr) = hoist.fails(&args);
    assert_ne!(code, 0);
    for culprit in culprits {
        assert!(
            stderr.contains(culprit),
            "hoist {line}: {culprit} not named:\n{stderr}"
        );
    }
    let tags = hoist.stdout(&["ls", &format!("oci:{}", work.at("layout"))]);
    assert_eq!(tags, "keep", "no tag after the failed hoist {line}");
}

#[test]
fn a_layer_directory_with_a_socket_is_refused_naming_it() {
    let work = Work::new();
    let hoist = layout_with_keep(&work);
    work.file("tree/run/ok", b"ok\n", 0o644);
    let socket = work.at("tree/run/app.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let line = format!(
        "build --layer {} {}",
        work.at("tree"),
        work.oci("layout", "bad")
    );
    refused(&hoist, &work, &line, &[&socket]);
}

#[test]
fn a_layer_tar_cut_inside_an_entry_is_refused_naming_it() {
    let work = Work::new();
    let hoist = layout_with_keep(&work);
    let big = format!("d/ d/big={}", "x".repeat(10_000));
    craft_tar(&work.path("whole.tar"), &big);
    let bytes = std::fs::read(work.path("whole.tar")).unwrap();
    let cut = work.at("cut.tar");
    let line = format!("build --layer {cut} {}", work.oci("layout", "bad"));
    // Two headers and 4 of the file's 20 blocks; then cut inside a block as well.
    for end in [512 * 6, 512 * 6 + 100] {
        std::fs::write(&cut, &bytes[..end]).unwrap();
        refused(&hoist, &work, &line, &[&cut]);
    }
}

#[test]
fn a_base_index_without_the_platform_is_refused_naming_the_platform() {
    let work = Work::new();
    let hoist = layout_with_keep(&work);
    work.file("tree/f", b"f\n", 0o644);
    let [amd64, arm64, multi] = ["amd64", "arm64", "multi"].map(|t| work.oci("other", t));
    let tree = work.at("tree");
    for (arch, image) in [("amd64", &amd64), ("arm64", &arm64)] {
        hoist!(
            &hoist,
            "build --platform linux/{arch} --layer {tree} {image}"
        );
    }
    hoist!(&hoist, "index create {multi} {amd64} {arm64}");
    let line = format!(
        "build --from {multi} --platform linux/s390x --layer {tree} {}",
        work.oci("layout", "bad")
    );
    refused(&hoist, &work, &line, &["linux/s390x"]);
}

#[test]
fn a_rebase_from_a_base_the_image_is_not_on_is_refused_naming_the_image() {
    let work = Work::new();
    let hoist = layout_with_keep(&work);
    for name in ["base", "stranger", "own"] {
        work.file(&format!("{name}/{name}"), name.as_bytes(), 0o644);
    }
    build_tree(&hoist, &work, "base", "other", "base");
    build_tree(&hoist, &work, "stranger", "other", "stranger");
    let [base, stranger, app] = ["base", "stranger", "app"].map(|t| work.oci("other", t));
    hoist!(
        &hoist,
        "build --from {base} --layer {} {app}",
        work.at("own")
    );
    let line = format!(
        "rebase --old-base {stranger} --new-base {base} {app} {}",
        work.oci("layout", "bad")
    );
    refused(&hoist, &work, &line, &[&app, "stranger"]);
}

#[test]
fn a_missing_layer_path_is_refused_naming_it() {
    let work = Work::new();
    let hoist = layout_with_keep(&work);
    let missing = work.at("no/such/layer");
    let line = format!("build --layer {missing} {}", work.oci("layout", "bad"));
    refused(&hoist, &work, &line, &[&missing]);
}
