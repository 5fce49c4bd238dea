//! `hoist layers` and `hoist blob get --uncompressed`, run as a program on an image that
//! `hoist build` made of three layer directories.

use std::path::{Path, PathBuf};

use oci_types::Digest;

use crate::build_interop::Work;
use crate::cli::Hoist;
use crate::support::{peer, run};

/// The files of each of the three layers, by layer.
const LAYERS: [&[&str]; 3] = [
    &["etc/base.conf", "usr/bin/tool"],
    &["app/main.py", "app/lib/util.py"],
    &["app/config.json"],
];

/// Builds the three-layer image into the layout `layout`, tagged `v1`; returns its reference.
fn three_layer_image(hoist: &Hoist, work: &Work) -> String {
    let mut args = vec!["build".to_owned()];
    for (n, files) in LAYERS.iter().enumerate() {
        for (i, file) in files.iter().enumerate() {
            let content = format!("layer {n}, file {i}: {file}\n").repeat(1000);
            work.file(&format!("layer{n}/{file}"), content.as_bytes(), 0o644);
        }
        args.push("--layer".to_owned());
        args.push(work.at(&format!("layer{n}")));
    }
    let image = work.oci("layout", "v1");
    args.push(image.clone());
    hoist.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    image
}

/// `hoist layers ARGS`: the paths it printed and its stderr.
fn layers(hoist: &Hoist, args: &[&str]) -> (Vec<PathBuf>, String) {
    let mut line = vec!["layers"];
    line.extend_from_slice(args);
    let output = hoist.ok(&line);
    let paths = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(PathBuf::from)
        .collect();
    (paths, String::from_utf8(output.stderr).unwrap())
}

/// The names `tar -t` lists in the tar file `path`, without a leading `./`.
fn tar_names(tar: &Path, path: &Path) -> Vec<String> {
    let output = run(tar, [Path::new("-tf"), path]);
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|name| name.trim_start_matches("./").to_owned())
        .collect()
}

#[test]
fn layers_are_written_as_tars_named_by_their_digest_and_resumed() {
    let Some(tar) = peer("tar") else {
        return;
    };
    let work = Work::new();
    let hoist = Hoist::new();
    let image = three_layer_image(&hoist, &work);
    let dir = work.at("layers");

    let (paths, stderr) = layers(&hoist, &["-j", "2", &image, &dir]);
    assert_eq!(paths.len(), 3, "{paths:?}");
    assert!(stderr.contains("wrote 3 layers"), "{stderr}");
    assert!(stderr.contains("0 already there"), "{stderr}");
    let mut contents = Vec::new();
    for (path, files) in paths.iter().zip(LAYERS) {
        assert_eq!(path.parent().unwrap(), work.path("layers").join("sha256"));
        let content = std::fs::read(path).unwrap();
        let name = path.file_name().unwrap().to_str().unwrap();
        assert_eq!(Digest::sha256(&content).encoded(), name);
        let listed = tar_names(&tar, path);
        for file in files {
            assert!(listed.iter().any(|n| n == file), "{file} not in {listed:?}");
        }
        // Each layer holds its own files only.
        for other in LAYERS.iter().flat_map(|f| f.iter()) {
            if !files.contains(other) {
                assert!(!listed.iter().any(|n| n == other), "{other} in {listed:?}");
            }
        }
        contents.push(content);
    }

    // As after a run killed while writing the second layer: its file is missing and a
    // temporary file of the killed process is left over.
    std::fs::remove_file(&paths[1]).unwrap();
    let leftover = work.path("layers").join(".tmp").join("leftover.tmp");
    std::fs::write(&leftover, b"half a layer").unwrap();
    let (again, stderr) = layers(&hoist, &["-v", &image, &dir]);
    assert_eq!(again, paths);
    assert!(stderr.contains("wrote 1 layer "), "{stderr}");
    assert!(stderr.contains("2 already there"), "{stderr}");
    assert_eq!(
        stderr.matches("extracted layer").count(),
        1,
        "one layer fetched:\n{stderr}"
    );
    for (path, content) in paths.iter().zip(&contents) {
        assert!(
            std::fs::read(path).unwrap() == *content,
            "{}",
            path.display()
        );
    }
    let mut files: Vec<_> = std::fs::read_dir(work.path("layers").join("sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut expected = paths.clone();
    expected.sort();
    assert_eq!(files, expected, "only the layer files");

    // Nothing to do the third time.
    let (_, stderr) = layers(&hoist, &[&image, &dir]);
    assert!(stderr.contains("wrote 0 layers"), "{stderr}");
    assert!(stderr.contains("3 already there"), "{stderr}");
}

#[test]
fn blob_get_uncompressed_writes_the_layer_tar() {
    let work = Work::new();
    let hoist = Hoist::new();
    let image = three_layer_image(&hoist, &work);
    let dir = work.at("layers");
    let (paths, _) = layers(&hoist, &[&image, &dir]);
    let manifest: serde_json::Value =
        serde_json::from_str(&hoist.stdout(&["manifest", &image])).unwrap();
    let blobs: Vec<&str> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    assert_eq!(blobs.len(), 3);
    let layout = work.at("layout");
    for (blob, path) in blobs.iter().zip(&paths) {
        let reference = format!("oci:{layout}@{blob}");
        let tar = std::fs::read(path).unwrap();
        // The blob is compressed: the uncompressed tar is something else.
        assert_ne!(Digest::sha256(&tar).as_str(), *blob);

        let out = work.path("out.tar");
        let output = hoist.ok(&[
            "blob",
            "get",
            "--uncompressed",
            &reference,
            "-o",
            out.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(std::fs::read(&out).unwrap() == tar, "{blob}");
        assert!(stderr.contains(Digest::sha256(&tar).as_str()), "{stderr}");

        let output = hoist.ok(&["blob", "get", "--uncompressed", &reference]);
        assert!(output.stdout == tar, "{blob} to stdout");
    }

    // A blob that is not there: nothing written, exit code 3 (not found).
    let missing = format!("oci:{layout}@{}", Digest::sha256(b"no such layer"));
    let out = work.path("missing.tar");
    let (code, stderr) = hoist.fails(&[
        "blob",
        "get",
        "--uncompressed",
        &missing,
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 3, "{stderr}");
    assert!(!out.exists());
    let leftovers: Vec<_> = std::fs::read_dir(work.path(""))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A layer blob damaged in the layout (its gzip time stamp: the tar inside is the same):
    // a verification failure (exit code 6), and no file from either command.
    let hex = blobs[1].trim_start_matches("sha256:");
    let blob_file = work.path("layout").join("blobs/sha256").join(hex);
    let mut damaged = std::fs::read(&blob_file).unwrap();
    damaged[4] ^= 0xff;
    std::fs::write(&blob_file, damaged).unwrap();
    let damaged_ref = format!("oci:{layout}@{}", blobs[1]);
    let (code, stderr) = hoist.fails(&[
        "blob",
        "get",
        "--uncompressed",
        &damaged_ref,
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 6, "{stderr}");
    assert!(!out.exists());
    let fresh = work.path("fresh");
    let (code, stderr) = hoist.fails(&["layers", &image, fresh.to_str().unwrap()]);
    assert_eq!(code, 6, "{stderr}");
    assert!(!stderr.contains("hint:"), "no limit stopped it: {stderr}");
    let diff_id = paths[1].file_name().unwrap();
    assert!(!fresh.join("sha256").join(diff_id).exists());
    assert_eq!(std::fs::read_dir(fresh.join(".tmp")).unwrap().count(), 0);
}

/// The limits on what layers may hold are the command line's to raise or lower: each command
/// that reads layers stops at the bound it was given, naming it, leaves no output behind, and
/// succeeds once the bound allows the image. (The three layers hold 2, 2 and 1 files of about
/// 30 KB each, up to 3 components deep.)
#[test]
fn the_limits_on_layers_are_set_on_the_command_line() {
    let work = Work::new();
    let hoist = Hoist::new();
    let image = three_layer_image(&hoist, &work);
    let refused = |args: &[&str], expected: &str| {
        let (code, stderr) = hoist.fails(args);
        assert!(code != 0 && stderr.contains(expected), "{args:?}: {stderr}");
        let hint = format!(
            "hint: a limit on layers stopped this; most are flags of this command (--max-layer-size, --max-path-depth and more: see `hoist {} --help`",
            args[0]
        );
        assert!(stderr.contains(&hint), "{args:?}: {stderr}");
    };

    let rootfs = work.at("rootfs");
    let shallow = ["unpack", "--max-path-depth", "2", &image, &rootfs];
    refused(&shallow, "a path of 3 components is over the limit of 2");
    let few = ["unpack", "--max-image-entries", "6", &image, &rootfs];
    refused(&few, "more than 6 entries");
    let small = ["unpack", "--max-image-size", "100KiB", &image, &rootfs];
    refused(&small, "limit");
    let rootfs = work.at("rootfs-deeper");
    hoist.ok(&["unpack", "--max-path-depth", "3", &image, &rootfs]);
    assert!(work.path("rootfs-deeper/app/lib/util.py").is_file());

    let tar = work.at("rootfs.tar");
    let crowded = ["export", "--max-layer-entries", "2", &image, &tar];
    refused(&crowded, "more than 2 entries");
    let named = ["export", "--max-image-names", "40B", &image, &tar];
    refused(&named, "more than 40 bytes of paths");
    assert!(!work.path("rootfs.tar").exists());
    hoist.ok(&["export", "--max-layer-entries", "5", &image, &tar]);

    let flat = work.oci("flat", "v1");
    refused(
        &["flatten", "--max-layer-size", "16KiB", &image, &flat],
        "limit",
    );
    let zstd = work.oci("zstd", "v1");
    refused(
        &[
            "recompress",
            "--compression",
            "zstd",
            "--max-layer-size",
            "16K",
            &image,
            &zstd,
        ],
        "limit",
    );
    for layout in ["flat", "zstd"] {
        let index = std::fs::read(work.path(layout).join("index.json")).unwrap_or_default();
        let tagged = String::from_utf8_lossy(&index).contains("\"v1\"");
        assert!(!tagged, "{layout}: {}", String::from_utf8_lossy(&index));
    }
    hoist.ok(&["flatten", "--max-layer-size", "1MiB", &image, &flat]);

    let dir = work.at("layers");
    refused(
        &["layers", "--max-image-size", "100KiB", &image, &dir],
        "limit",
    );
    refused(
        &["layers", "--max-layer-size", "16KiB", &image, &dir],
        "limit",
    );
    let (paths, _) = layers(&hoist, &["--max-image-size", "1MiB", &image, &dir]);
    assert_eq!(paths.len(), 3);

    let (code, stderr) =
        hoist.fails(&["unpack", "--max-layer-size", "12 parsecs", &image, &rootfs]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("12 parsecs"), "{stderr}");
    assert!(!stderr.contains("hint:"), "{stderr}");
}
