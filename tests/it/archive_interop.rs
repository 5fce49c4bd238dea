//! Archives as skopeo reads and writes them: `docker-archive:` (hoist writes the Docker 25+
//! hybrid format; skopeo 1.9 writes the classic one) and `oci-archive:`, both ways, several
//! images in one archive, builds and indexes written straight to archives, and bad archives.
//!
//! Command lines are written as text and split at spaces: the paths in them are those of a
//! temporary directory, checked to have none.

use std::io::Read;
use std::path::Path;

use serde_json::Value;

use crate::build_interop::{
    EPOCH, Work, assert_same_tree, hoist, raw_manifest, rich_tree, skopeo_json_of, snapshot, unpack,
};
use crate::cli::Hoist;
use crate::support::peer;

/// The entries of a tar file: name and content (links as "-> target").
fn tar_entries(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut archive = tar::Archive::new(std::fs::File::open(path).unwrap());
    archive
        .entries()
        .unwrap()
        .map(|entry| {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().display().to_string();
            let mut content = Vec::new();
            match entry.link_name().unwrap() {
                Some(target) => content.extend(format!("-> {}", target.display()).into_bytes()),
                None => {
                    entry.read_to_end(&mut content).unwrap();
                }
            }
            (name, content)
        })
        .collect()
}

fn manifest_json(path: &Path) -> Value {
    let entries = tar_entries(path);
    let (_, content) = entries
        .iter()
        .find(|(name, _)| name == "manifest.json")
        .expect("a manifest.json");
    serde_json::from_slice(content).unwrap()
}

/// The config digest of the image at `reference`, as skopeo reads it.
fn config_digest(skopeo_bin: &Path, reference: &str) -> String {
    raw_manifest(skopeo_bin, reference)["config"]["digest"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Builds the rich tree into `oci:WORK/image:v1`; returns its digest.
fn built_image(hoist: &Hoist, work: &Work) -> String {
    rich_tree(&work.path("tree"));
    hoist!(
        hoist,
        "build --layer {} {}",
        work.at("tree"),
        work.oci("image", "v1")
    )
}

#[test]
fn skopeo_and_umoci_read_the_docker_archives_hoist_writes() {
    let (Some(skopeo_bin), Some(umoci)) = (peer("skopeo"), peer("umoci")) else {
        return;
    };
    let work = Work::new();
    let hoist = Hoist::new();
    built_image(&hoist, &work);
    let archive = work.path("app.tar");
    hoist!(
        &hoist,
        "copy {} docker-archive:{}:example/app:v1",
        work.oci("image", "v1"),
        archive.display()
    );
    // The Docker 25+ format: an OCI layout with manifest.json beside it.
    let names: Vec<String> = tar_entries(&archive).into_iter().map(|(n, _)| n).collect();
    for wanted in ["oci-layout", "index.json", "manifest.json"] {
        assert!(names.iter().any(|n| n == wanted), "{wanted} in {names:?}");
    }
    let listed = manifest_json(&archive);
    assert_eq!(listed[0]["RepoTags"], serde_json::json!(["example/app:v1"]));
    // skopeo reads it, by name and alone, to the same config.
    let config = config_digest(&skopeo_bin, &work.oci("image", "v1"));
    for reference in ["", ":example/app:v1", ":@0"] {
        let at = format!("docker-archive:{}{reference}", archive.display());
        assert_eq!(config_digest(&skopeo_bin, &at), config, "{at}");
    }
    skopeo_json_of!(
        &skopeo_bin,
        "copy docker-archive:{} {}",
        archive.display(),
        work.oci("from-archive", "v1")
    );
    let tree = unpack(&umoci, &work, "from-archive", "v1", "bundle");
    assert_same_tree(
        &tree,
        &snapshot(&work.path("tree")),
        "the tree through skopeo",
    );
    // The classic format, on request: no OCI layout, and skopeo reads the same image.
    let classic = work.path("classic.tar");
    hoist!(
        &hoist,
        "copy --docker-archive-format classic {} docker-archive:{}:example/app:v1",
        work.oci("image", "v1"),
        classic.display()
    );
    let names: Vec<String> = tar_entries(&classic).into_iter().map(|(n, _)| n).collect();
    assert!(
        !names.iter().any(|n| n == "index.json" || n == "oci-layout"),
        "{names:?}"
    );
    let at = format!("docker-archive:{}", classic.display());
    assert_eq!(config_digest(&skopeo_bin, &at), config, "{at}");
}

#[test]
fn hoist_reads_the_docker_archives_skopeo_writes() {
    let (Some(skopeo_bin), Some(umoci)) = (peer("skopeo"), peer("umoci")) else {
        return;
    };
    let work = Work::new();
    let hoist = Hoist::new();
    built_image(&hoist, &work);
    let archive = work.path("skopeo.tar");
    skopeo_json_of!(
        &skopeo_bin,
        "copy {} docker-archive:{}:example/sk:v2",
        work.oci("image", "v1"),
        archive.display()
    );
    // skopeo 1.9 writes the classic format: no OCI layout.
    let names: Vec<String> = tar_entries(&archive).into_iter().map(|(n, _)| n).collect();
    assert!(!names.iter().any(|n| n == "index.json"), "{names:?}");
    let config = config_digest(&skopeo_bin, &work.oci("image", "v1"));
    for reference in [":example/sk:v2", ":docker.io/example/sk:v2", ":@0", ""] {
        let at = format!("docker-archive:{}{reference}", archive.display());
        let inspected: Value =
            serde_json::from_str(&hoist.stdout(&["inspect", "--json", &at])).unwrap();
        assert_eq!(
            inspected["config"]["digest"],
            config.as_str(),
            "{at}: {inspected}"
        );
    }
    // The layers skopeo wrote (uncompressed) come out as an OCI image that umoci unpacks to
    // the tree that was built.
    let at = format!("docker-archive:{}:example/sk:v2", archive.display());
    hoist.ok(&["copy", &at, &work.oci("back", "v2")]);
    let tree = unpack(&umoci, &work, "back", "v2", "bundle");
    assert_same_tree(
        &tree,
        &snapshot(&work.path("tree")),
        "the tree skopeo archived, through hoist",
    );
}

#[test]
fn oci_archives_keep_the_manifest_digest_both_ways() {
    let Some(skopeo_bin) = peer("skopeo") else {
        return;
    };
    let work = Work::new();
    let hoist = Hoist::new();
    let digest = built_image(&hoist, &work);
    let image = work.oci("image", "v1");
    let ours = work.path("ours.tar");
    let copied = hoist!(&hoist, "copy {image} oci-archive:{}:v1", ours.display());
    assert_eq!(copied, digest);
    let read = raw_manifest(&skopeo_bin, &format!("oci-archive:{}:v1", ours.display()));
    let bytes = serde_json::to_vec(&read).unwrap();
    assert_eq!(
        read["config"]["digest"],
        config_digest(&skopeo_bin, &image),
        "{bytes:?}"
    );
    skopeo_json_of!(
        &skopeo_bin,
        "copy oci-archive:{}:v1 {}",
        ours.display(),
        work.oci("through-skopeo", "v1")
    );
    let through = hoist.stdout(&["inspect", "--json", &work.oci("through-skopeo", "v1")]);
    let through: Value = serde_json::from_str(&through).unwrap();
    assert_eq!(through["digest"], digest.as_str(), "skopeo kept the digest");
    // skopeo's oci-archive, read by hoist.
    let theirs = work.path("theirs.tar");
    skopeo_json_of!(
        &skopeo_bin,
        "copy {image} oci-archive:{}:v9",
        theirs.display()
    );
    let back = hoist!(
        &hoist,
        "copy oci-archive:{}:v9 {}",
        theirs.display(),
        work.oci("back", "v9")
    );
    assert_eq!(back, digest);
    // A .tar.gz of a layout is gzip for real, and reads back the same.
    let gz = work.path("layout.tar.gz");
    hoist!(&hoist, "copy {image} oci-archive:{}:v1", gz.display());
    let magic = std::fs::read(&gz).unwrap();
    assert_eq!(&magic[..2], &[0x1f, 0x8b], "gzip");
    let again = hoist!(
        &hoist,
        "copy oci-archive:{}:v1 {}",
        gz.display(),
        work.oci("from-gz", "v1")
    );
    assert_eq!(again, digest);
}

/// Two archives skopeo wrote, joined into one (their files side by side, their
/// `manifest.json` lists concatenated), as `docker save` of two images writes them.
fn join_archives(parts: &[&Path], joined: &Path) {
    let mut builder = tar::Builder::new(std::fs::File::create(joined).unwrap());
    let mut listed = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for part in parts {
        for (name, content) in tar_entries(part) {
            if name == "manifest.json" {
                let images: Vec<Value> = serde_json::from_slice(&content).unwrap();
                listed.extend(images);
            } else if content.starts_with(b"-> ")
                || name == "repositories"
                || !seen.insert(name.clone())
            {
                continue;
            } else {
                let mut header = tar::Header::new_ustar();
                header.set_size(content.len() as u64);
                header.set_mode(0o644);
                builder
                    .append_data(&mut header, &name, &content[..])
                    .unwrap();
            }
        }
    }
    let listed = serde_json::to_vec(&listed).unwrap();
    let mut header = tar::Header::new_ustar();
    header.set_size(listed.len() as u64);
    header.set_mode(0o644);
    builder
        .append_data(&mut header, "manifest.json", &listed[..])
        .unwrap();
    builder.into_inner().unwrap();
}

#[test]
fn several_images_in_one_archive_are_selected_as_skopeo_selects_them() {
    let Some(skopeo_bin) = peer("skopeo") else {
        return;
    };
    let work = Work::new();
    let hoist = Hoist::new();
    let mut parts = Vec::new();
    for name in ["one", "two"] {
        work.file(&format!("{name}-tree/file"), name.as_bytes(), 0o644);
        let tree = work.at(&format!("{name}-tree"));
        hoist!(&hoist, "build --layer {tree} {}", work.oci(name, "v1"));
        let part = work.path(&format!("{name}.tar"));
        skopeo_json_of!(
            &skopeo_bin,
            "copy {} docker-archive:{}:example/{name}:v1",
            work.oci(name, "v1"),
            part.display()
        );
        parts.push(part);
    }
    let joined = work.path("joined.tar");
    join_archives(&[&parts[0], &parts[1]], &joined);
    for (n, name) in ["one", "two"].into_iter().enumerate() {
        let config = config_digest(&skopeo_bin, &work.oci(name, "v1"));
        for selector in [format!(":example/{name}:v1"), format!(":@{n}")] {
            let at = format!("docker-archive:{}{selector}", joined.display());
            assert_eq!(config_digest(&skopeo_bin, &at), config, "skopeo {at}");
            let ours: Value =
                serde_json::from_str(&hoist.stdout(&["inspect", "--json", &at])).unwrap();
            assert_eq!(ours["config"]["digest"], config.as_str(), "hoist {at}");
        }
    }
    // With two images, one must be named.
    let (_, stderr) = hoist.fails(&["inspect", &format!("docker-archive:{}", joined.display())]);
    assert!(
        stderr.contains("holds 2 images") && stderr.contains("@1"),
        "{stderr}"
    );
    let tags = hoist.stdout(&[
        "ls",
        &format!("docker-archive:{}:example/two:v1", joined.display()),
    ]);
    assert_eq!(tags, "v1");
}

#[test]
fn builds_and_indexes_are_written_straight_to_archives() {
    let Some(skopeo_bin) = peer("skopeo") else {
        return;
    };
    let work = Work::new();
    let hoist = Hoist::new();
    let mut images = Vec::new();
    for arch in ["amd64", "arm64"] {
        work.file(&format!("{arch}/arch"), arch.as_bytes(), 0o644);
        let archive = work.path(&format!("{arch}.tar"));
        hoist!(
            &hoist,
            "build --platform linux/{arch} --layer {} docker-archive:{}:example/b:{arch}",
            work.at(arch),
            archive.display()
        );
        let inspected = skopeo_json_of!(
            &skopeo_bin,
            "inspect docker-archive:{}:example/b:{arch}",
            archive.display()
        );
        assert_eq!(inspected["Architecture"], arch);
        images.push(format!("docker-archive:{}", archive.display()));
    }
    let index_archive = work.path("index.tar");
    let index = hoist!(
        &hoist,
        "index create oci-archive:{}:v1 {} {}",
        index_archive.display(),
        images[0],
        images[1]
    );
    let raw = raw_manifest(
        &skopeo_bin,
        &format!("oci-archive:{}:v1", index_archive.display()),
    );
    assert_eq!(raw["manifests"].as_array().map(Vec::len), Some(2), "{raw}");
    let arm = skopeo_json_of!(
        &skopeo_bin,
        "inspect --override-arch arm64 oci-archive:{}:v1",
        index_archive.display()
    );
    assert_eq!(arm["Architecture"], "arm64");
    // An index copied to a docker-archive: this machine's image, and hoist says so.
    let single = work.path("single.tar");
    let output = hoist
        .command(&[
            "copy",
            &format!("oci-archive:{}:v1", index_archive.display()),
            &format!("docker-archive:{}:example/i:v1", single.display()),
        ])
        .env("SOURCE_DATE_EPOCH", EPOCH.to_string())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("is an index") && stderr.contains("linux/amd64"),
        "{stderr}"
    );
    let picked = skopeo_json_of!(&skopeo_bin, "inspect docker-archive:{}", single.display());
    assert_eq!(picked["Architecture"], "amd64");
    assert_ne!(index, String::from_utf8_lossy(&output.stdout).trim());
}

#[test]
fn bad_archives_are_clear_errors_and_failed_writes_leave_nothing() {
    let work = Work::new();
    let hoist = Hoist::new();
    built_image(&hoist, &work);
    let good = work.path("good.tar");
    hoist!(
        &hoist,
        "copy {} docker-archive:{}:x/y:v1",
        work.oci("image", "v1"),
        good.display()
    );
    let bytes = std::fs::read(&good).unwrap();
    // Truncated in the middle of a layer.
    let truncated = work.path("truncated.tar");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let (_, stderr) = hoist.fails(&[
        "inspect",
        &format!("docker-archive:{}", truncated.display()),
    ]);
    assert!(
        stderr.contains(&truncated.display().to_string()),
        "{stderr}"
    );
    // Not an archive at all.
    let text = work.path("text.tar");
    std::fs::write(&text, b"hello").unwrap();
    let (_, stderr) = hoist.fails(&["inspect", &format!("oci-archive:{}", text.display())]);
    assert!(stderr.contains("text.tar"), "{stderr}");
    // A copy that fails half-way (a layer of the source is corrupt) leaves no archive and no
    // temporary file, and an archive already there untouched.
    let layout = work.path("image");
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let manifest_path = layout
        .join("blobs/sha256")
        .join(&manifest_digest["sha256:".len()..]);
    let manifest: Value = serde_json::from_slice(&std::fs::read(manifest_path).unwrap()).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let layer_path = layout.join("blobs/sha256").join(&layer["sha256:".len()..]);
    let mut corrupt = std::fs::read(&layer_path).unwrap();
    let middle = corrupt.len() / 2;
    corrupt[middle] ^= 0xff;
    std::fs::write(&layer_path, corrupt).unwrap();
    std::fs::write(work.path("kept.tar"), b"an older archive").unwrap();
    for target in ["fresh.tar", "kept.tar"] {
        let (_, stderr) = hoist.fails(&[
            "copy",
            &work.oci("image", "v1"),
            &format!("docker-archive:{}:x/y:v1", work.at(target)),
        ]);
        assert!(stderr.contains(layer), "names the layer: {stderr}");
    }
    assert!(!work.path("fresh.tar").exists());
    assert_eq!(
        std::fs::read(work.path("kept.tar")).unwrap(),
        b"an older archive"
    );
    let partial: Vec<String> = std::fs::read_dir(work.path(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("partial"))
        .collect();
    assert!(partial.is_empty(), "{partial:?}");
}

/// An archive is made with the user's umask, as `docker save -o` and skopeo make theirs:
/// 0600 under `umask 077` (a fixed 0644 made a private image world-readable), 0644 under 022.
#[test]
fn archives_are_made_with_the_users_umask() {
    use std::os::unix::fs::PermissionsExt;
    let work = Work::new();
    let hoist = Hoist::new();
    built_image(&hoist, &work);
    for (umask, expected) in [("077", 0o600), ("022", 0o644)] {
        let archive = work.path(&format!("umask-{umask}.tar"));
        let command = hoist.command(&[]);
        let program = command.get_program().to_owned();
        let args = [
            "copy".to_owned(),
            work.oci("image", "v1"),
            format!("docker-archive:{}:x/y:v1", archive.display()),
        ];
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
            .arg(program)
            .args(args)
            .envs(command.get_envs().filter_map(|(k, v)| Some((k, v?))))
            .status()
            .unwrap();
        assert!(status.success(), "umask {umask}");
        let mode = std::fs::metadata(&archive).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, expected, "umask {umask}");
    }
}

/// A name with a registry port keeps it in `manifest.json`: `localhost:5000/app:v1` was
/// written as `app:v1` (a repository cannot hold the `:`), which `docker load` takes for
/// Docker Hub's `app`, replacing that image. The archive reads back by the name as typed.
#[test]
fn a_registry_port_in_a_docker_archive_name_is_kept() {
    let work = Work::new();
    let hoist = Hoist::new();
    built_image(&hoist, &work);
    for (name, shown) in [
        ("localhost:5000/app:v1", "localhost:5000/app:v1"),
        ("ghcr.io/org/app:v2", "ghcr.io/org/app:v2"),
        ("team/app:v3", "team/app:v3"),
    ] {
        let archive = work.path(&format!("{}.tar", name.replace(['/', ':'], "_")));
        let dst = format!("docker-archive:{}:{name}", archive.display());
        hoist!(&hoist, "copy {} {dst}", work.oci("image", "v1"));
        let manifest = manifest_json(&archive);
        assert_eq!(
            manifest[0]["RepoTags"],
            serde_json::json!([shown]),
            "{name}"
        );
        hoist.ok(&["inspect", &dst]);
    }
}
