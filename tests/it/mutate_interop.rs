//! The commands that change images (`append`, `mutate`, `flatten`, `rebase`, `recompress`),
//! run as a program and checked by third-party peers: `umoci unpack` compares trees of the
//! image before and after, `skopeo` reads configs. Trees, layouts and command helpers are
//! those of `build_interop`.

use std::collections::BTreeSet;

use crate::build_interop::{
    Node, Work, assert_same_tree, build_tree, craft_tar, hoist, raw_manifest, rich_tree,
    skopeo_json_of, snapshot, unpack,
};
use crate::cli::Hoist;
use crate::support::peer;

/// `hoist append` puts a second tree on top: umoci unpacks both.
#[test]
fn append_adds_a_tree_that_umoci_unpacks_with_the_first() {
    let Some(umoci) = peer("umoci") else { return };
    let work = Work::new();
    rich_tree(&work.path("one"));
    work.file("two/extra/added", b"added later\n", 0o644);
    work.file("two/usr/local/bin/more", b"more\n", 0o755);
    work.dir("two/usr", 0o755);
    let hoist = Hoist::new();
    build_tree(&hoist, &work, "one", "layout", "v1");
    let (v1, v2) = (work.oci("layout", "v1"), work.oci("layout", "v2"));
    hoist!(&hoist, "append --layer {} {v1} {v2}", work.at("two"));
    let expected = snapshot(&work.path("one")).union(snapshot(&work.path("two")));
    let unpacked = unpack(&umoci, &work, "layout", "v2", "bundle");
    assert_same_tree(&unpacked, &expected, "both trees");
}

/// `hoist mutate` sets a label and the entrypoint, as skopeo reads them; the layers stay.
#[test]
fn mutate_sets_a_label_and_the_entrypoint_that_skopeo_reads() {
    let Some(skopeo_bin) = peer("skopeo") else {
        return;
    };
    let work = Work::new();
    work.file("tree/x", b"x\n", 0o755);
    let hoist = Hoist::new();
    let before = build_tree(&hoist, &work, "tree", "layout", "v1");
    let (v1, m) = (work.oci("layout", "v1"), work.oci("layout", "m"));
    let after = hoist!(&hoist, "mutate --label k=v --entrypoint /x {v1} {m}");
    assert_ne!(before, after);
    let inspected = skopeo_json_of!(&skopeo_bin, "inspect {m}");
    assert_eq!(inspected["Labels"]["k"], "v");
    let config = skopeo_json_of!(&skopeo_bin, "inspect --config {m}");
    assert_eq!(config["config"]["Entrypoint"], serde_json::json!(["/x"]));
    let (original, mutated) = (
        raw_manifest(&skopeo_bin, &v1),
        raw_manifest(&skopeo_bin, &m),
    );
    assert_eq!(original["layers"], mutated["layers"], "the layers stay");
}

/// Three crafted layers on the rich tree: deletions, an opaque directory (its marker after
/// the layer's other entries in it), a directory replaced by a file and a file by a
/// directory, a deleted file made again, hard links whose target is deleted or replaced
/// above them. `hoist flatten` merges them into one layer that umoci unpacks to the tree
/// umoci makes of the four.
#[test]
fn flatten_gives_one_layer_that_unpacks_as_the_layers_do() {
    let (Some(umoci), Some(skopeo_bin)) = (peer("umoci"), peer("skopeo")) else {
        return;
    };
    let work = Work::new();
    let layers = [
        "etc/ etc/keep=keep etc/gone=gone opq/ opq/old=old opq/sub/ opq/sub/older=older d2f/ \
         d2f/inner=inner f2d=file back=first linked=shared etc/link=>linked orphan=orphaned \
         etc/orphan-link=>orphan swap=one swap-link=>swap",
        "etc/.wh.gone= opq/ opq/new=new opq/.wh..wh..opq= d2f=now-a-file f2d/ \
         f2d/child=now-a-directory .wh.back= .wh.orphan= swap=two",
        "back=again",
    ];
    for (name, entries) in ["a.tar", "b.tar", "c.tar"].iter().zip(layers) {
        craft_tar(&work.path(name), entries);
    }
    let hoist = Hoist::new();
    let (layered, flat) = (work.oci("layout", "layered"), work.oci("layout", "flat"));
    // Under the crafted layers, the rich tree: long names, set-id bits and symlinks through
    // flatten too.
    rich_tree(&work.path("tree"));
    let [tree, a, b, c] = ["tree", "a.tar", "b.tar", "c.tar"].map(|n| work.at(n));
    hoist!(
        &hoist,
        "build --layer {tree} --layer {a} --layer {b} --layer {c} {layered}"
    );
    hoist!(&hoist, "flatten {layered} {flat}");
    let manifest = raw_manifest(&skopeo_bin, &flat);
    assert_eq!(
        manifest["layers"].as_array().unwrap().len(),
        1,
        "{manifest}"
    );

    let from_layers = unpack(&umoci, &work, "layout", "layered", "l");
    let rich = snapshot(&work.path("tree")).nodes;
    let crafted = "back d2f etc/keep etc/link etc/orphan-link f2d f2d/child linked opq opq/new \
                   swap swap-link";
    let paths: BTreeSet<&str> = from_layers.nodes.keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = rich
        .keys()
        .map(String::as_str)
        .chain(crafted.split(' '))
        .collect();
    assert_eq!(paths, expected, "umoci applied the whiteouts");
    assert!(matches!(
        from_layers.nodes["d2f"],
        Node::File { size: 10, .. }
    ));
    // A hard link whose target is deleted, or replaced, above it keeps the old content.
    for (path, content) in [
        ("back", "again"),
        ("etc/orphan-link", "orphaned"),
        ("swap-link", "one"),
    ] {
        let found = std::fs::read_to_string(work.path("l/rootfs").join(path)).unwrap();
        assert_eq!(found, content, "{path}");
    }
    let flattened = unpack(&umoci, &work, "layout", "flat", "f");
    assert_same_tree(
        &flattened,
        &from_layers,
        "the flattened image against the layers",
    );
}

/// `hoist rebase` moves an image from one base to another: umoci unpacks the new base's
/// files and the image's own, none of the old base's.
#[test]
fn rebase_replaces_the_old_base_files_with_the_new_ones() {
    let Some(umoci) = peer("umoci") else { return };
    let work = Work::new();
    for (tree, files) in [
        ("old", &["old/one", "shared/from-old"][..]),
        ("new", &["new/one", "new/two", "shared/from-new"][..]),
        ("own", &["app/main"][..]),
    ] {
        for f in files {
            work.file(&format!("{tree}/{f}"), f.as_bytes(), 0o644);
        }
    }
    let hoist = Hoist::new();
    build_tree(&hoist, &work, "old", "layout", "old");
    build_tree(&hoist, &work, "new", "layout", "new");
    let [old, new, app, rebased] = ["old", "new", "app", "rebased"].map(|t| work.oci("layout", t));
    let own = work.at("own");
    hoist!(&hoist, "build --from {old} --layer {own} {app}");
    hoist!(
        &hoist,
        "rebase --old-base {old} --new-base {new} {app} {rebased}"
    );
    let unpacked = unpack(&umoci, &work, "layout", "rebased", "bundle");
    let expected = snapshot(&work.path("new")).union(snapshot(&work.path("own")));
    assert_same_tree(&unpacked, &expected, "the new base and the image");
}

/// `hoist recompress` to zstd and back to gzip keeps the config (so the diff_ids), and the
/// gzip image unpacks as the original tree.
#[test]
fn recompress_to_zstd_and_back_keeps_the_config_and_the_tree() {
    let (Some(umoci), Some(skopeo_bin)) = (peer("umoci"), peer("skopeo")) else {
        return;
    };
    let work = Work::new();
    rich_tree(&work.path("tree"));
    let hoist = Hoist::new();
    build_tree(&hoist, &work, "tree", "layout", "v1");
    let [v1, zstd, gzip] = ["v1", "zstd", "gzip"].map(|t| work.oci("layout", t));
    hoist!(&hoist, "recompress --compression zstd {v1} {zstd}");
    hoist!(&hoist, "recompress --compression gzip {zstd} {gzip}");
    let manifests = [&v1, &zstd, &gzip].map(|r| raw_manifest(&skopeo_bin, r));
    let zstd_type = "application/vnd.oci.image.layer.v1.tar+zstd";
    assert_eq!(manifests[1]["layers"][0]["mediaType"], zstd_type);
    for manifest in &manifests[1..] {
        assert_eq!(manifest["config"], manifests[0]["config"], "{manifest}");
    }
    let unpacked = unpack(&umoci, &work, "layout", "gzip", "bundle");
    assert_same_tree(
        &unpacked,
        &snapshot(&work.path("tree")),
        "after zstd and back",
    );
}
