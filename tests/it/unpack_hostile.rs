//! `hoist unpack` of hostile layers, run as a program: names with `..` and absolute names,
//! symlinks out of the target followed by files, directories, chmods and whiteouts through
//! them, hard links to host files, a `.` that is a symlink, duplicate entries, a PAX size
//! that disagrees with the header's. Nothing outside the target may be created or changed:
//! a sentinel directory next to the target and the "outside" the entries aim at (both in the
//! test's own temporary directory) are compared before and after, as are the host files that
//! hard links name (only read). Where hoist refuses, its error names the entry and the layer.
//!
//! The images are written into the layout directly (uncompressed layers, `diff_id` = digest),
//! not through `hoist build`, whose checks of a tar are not what is tested here. A limit
//! against decompression bombs is not an option of the command line: it is tested in
//! `crates/oci-unpack/tests/unpack.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use bytes::Bytes;
use oci_layout::LayoutStore;
use oci_store::{OciInterface, OciInterfaceExt, PushManifestParams};
use oci_types::{Digest, ImageManifest, MediaType, Tag, media_type};

use crate::build_interop::{EPOCH, Node, Work, snapshot};
use crate::cli::Hoist;
use crate::server_interop::layout_repo;

// ---- hostile tars ----

/// A tar of `spec`, entries separated by spaces: `DIR/`, `FILE=TEXT`, `LINK=>TARGET` (a hard
/// link), `SYMLINK->TARGET`, each with `@MODE` (octal) unless 0755 for a directory or 0644
/// otherwise; names and link names go into the ustar header as they are (no checks), or a
/// PAX record when longer than it holds.
fn tar(spec: &str) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in spec.split_whitespace() {
        let (entry, mode) = match entry.rsplit_once('@') {
            Some((entry, mode)) => (entry, u32::from_str_radix(mode, 8).ok()),
            None => (entry, None),
        };
        use tar::EntryType::{Directory, Link, Regular, Symlink};
        let (kind, name, link, data) = if let Some((name, target)) = entry.split_once("=>") {
            (Link, name, target, "")
        } else if let Some((name, target)) = entry.split_once("->") {
            (Symlink, name, target, "")
        } else if let Some((name, data)) = entry.split_once('=') {
            (Regular, name, "", data)
        } else {
            (Directory, entry, "", "")
        };
        // Names over ustar's 100 bytes (a long temporary directory) in PAX records.
        let long = [("path", name), ("linkpath", link)].into_iter();
        let long: Vec<(&str, &[u8])> = long
            .filter(|(_, v)| v.len() > 100)
            .map(|(k, v)| (k, v.as_bytes()))
            .collect();
        if !long.is_empty() {
            builder.append_pax_extensions(long).unwrap();
        }
        let (name, link) = (name.as_bytes(), link.as_bytes());
        let (name, link) = (&name[..name.len().min(100)], &link[..link.len().min(100)]);
        let mut header = tar::Header::new_ustar();
        let ustar = header.as_ustar_mut().unwrap();
        ustar.name[..name.len()].copy_from_slice(name);
        ustar.linkname[..link.len()].copy_from_slice(link);
        header.set_entry_type(kind);
        header.set_mode(mode.unwrap_or(if kind == Directory { 0o755 } else { 0o644 }));
        header.set_size(data.len() as u64);
        header.set_mtime(EPOCH);
        header.set_cksum();
        builder.append(&header, data.as_bytes()).unwrap();
    }
    builder.into_inner().unwrap()
}

/// The image of uncompressed `layers`, written into the layout `WORK/layout` as `v1`;
/// returns its reference and the layers' digests.
fn image(work: &Work, layers: &[Vec<u8>]) -> (String, Vec<String>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let digests = runtime.block_on(async {
        let store = LayoutStore::open(work.path("layout")).await.unwrap();
        let repo = layout_repo();
        let push = |media, bytes: Vec<u8>| {
            let media = MediaType::from_static(media);
            store.push_blob_bytes(&repo, media, Bytes::from(bytes))
        };
        let mut descriptors = Vec::new();
        for layer in layers {
            descriptors.push(
                push(media_type::OCI_LAYER_TAR, layer.clone())
                    .await
                    .unwrap(),
            );
        }
        let diff_ids: Vec<String> = descriptors.iter().map(|d| d.digest.to_string()).collect();
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        let config = serde_json::to_vec(&config).unwrap();
        let config = push(media_type::OCI_CONFIG, config).await.unwrap();
        let manifest = Bytes::from(ImageManifest::new(config, descriptors).to_json());
        let media = MediaType::from_static(media_type::OCI_MANIFEST);
        let params = PushManifestParams::new().with_tag(Tag::parse("v1").unwrap());
        let pushed = store.push_manifest(&repo, manifest, &media, &params);
        pushed.await.unwrap();
        diff_ids
    });
    (work.oci("layout", "v1"), digests)
}

// ---- what must not change ----

/// A path's identity and metadata, to tell that nothing touched it (a hard link changes its
/// link count and change time, a chmod its mode and change time).
fn stat(path: &Path) -> String {
    let m = std::fs::symlink_metadata(path).unwrap();
    let (ctime, ctime_nsec) = (m.ctime(), m.ctime_nsec());
    format!(
        "ino {} links {} mode {:o} uid {} size {} mtime {} ctime {ctime}.{ctime_nsec}",
        m.ino(),
        m.nlink(),
        m.mode(),
        m.uid(),
        m.size(),
        m.mtime()
    )
}

/// A test's directory: the sentinel next to the target and the outside the entries aim at.
fn prepare() -> Work {
    let work = Work::new();
    work.file("sentinel/file", b"sentinel\n", 0o644);
    work.file("sentinel/dir/inner", b"inner\n", 0o600);
    work.file("outside/file", b"outside\n", 0o600);
    work.dir("outside/dir", 0o700);
    work
}

/// Everything in the test's directory but the target (the layout included), and the host
/// files `host` that exist, with the stat of each. (The test's directory itself changes:
/// the target is made in it.)
fn outside(work: &Work, host: &[&str]) -> BTreeMap<String, String> {
    let root = work.path("");
    let mut found = BTreeMap::new();
    for (path, node) in snapshot(&root).nodes {
        if path != "target" && !path.starts_with("target/") {
            let stat = stat(&root.join(&path));
            found.insert(path, format!("{node:?} {stat}"));
        }
    }
    for path in host.iter().filter(|p| Path::new(p).exists()) {
        found.insert((*path).to_owned(), stat(Path::new(path)));
    }
    found
}

/// `hoist unpack` of `layers` into `WORK/target`, checking that nothing but the target
/// changed (nor the host files `host`), and that a refusal names a layer: `Err(stderr)`.
fn unpack(work: &Work, layers: &[Vec<u8>], host: &[&str]) -> Result<(), String> {
    let (image, digests) = image(work, layers);
    let before = outside(work, host);
    let hoist = Hoist::new();
    let target = work.at("target");
    let output = hoist.command(&["unpack", &image, &target]);
    let output = { output }.output().unwrap();
    let after = outside(work, host);
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let changed: Vec<String> = (keys.into_iter())
        .filter(|k| before.get(*k) != after.get(*k))
        .map(|k| format!("{k}: {:?} became {:?}", before.get(k), after.get(k)))
        .collect();
    assert!(
        changed.is_empty(),
        "outside the target:\n{}",
        changed.join("\n")
    );
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let named = digests.iter().any(|d| stderr.contains(d.as_str()));
    assert!(
        named,
        "the refusal names no layer of {digests:?}:\n{stderr}"
    );
    Err(stderr)
}

/// The unpack must succeed; returns the target's tree.
fn unpacked(work: &Work, layers: &[Vec<u8>], host: &[&str]) -> BTreeMap<String, Node> {
    match unpack(work, layers, host) {
        Ok(()) => snapshot(&work.path("target")).nodes,
        Err(stderr) => panic!("hoist unpack refused:\n{stderr}"),
    }
}

/// The unpack must be refused naming `entry`; returns the stderr.
fn refused(work: &Work, layers: &[Vec<u8>], host: &[&str], entry: &str) -> String {
    match unpack(work, layers, host) {
        Err(stderr) => {
            let named = stderr.contains(entry);
            assert!(named, "the refusal does not name {entry}:\n{stderr}");
            stderr
        }
        Ok(()) => panic!(
            "hoist unpack succeeded: {:?}",
            snapshot(&work.path("target"))
        ),
    }
}

fn content(work: &Work, path: &str) -> String {
    std::fs::read_to_string(work.path("target").join(path)).unwrap()
}

fn paths(nodes: &BTreeMap<String, Node>) -> String {
    nodes.keys().cloned().collect::<Vec<_>>().join(" ")
}

// ---- the attacks ----

/// `..` in names is taken inside the target (as umoci and Go's tar readers clean it).
#[test]
fn dotdot_names_stay_inside_the_target() {
    let work = prepare();
    let layer = tar(
        "../escaped=1 ../../sentinel/file=overwritten a/../../../b=2 ./../c=3 \
                     ../sentinel/dir/@777",
    );
    let nodes = unpacked(&work, &[layer], &[]);
    assert_eq!(
        paths(&nodes),
        "b c escaped sentinel sentinel/dir sentinel/file"
    );
    assert_eq!(content(&work, "sentinel/file"), "overwritten");
    assert_eq!(nodes["sentinel/dir"], Node::Dir { mode: 0o777 });
}

/// Absolute names, one of them the sentinel's own path, are taken inside the target.
#[test]
fn absolute_names_stay_inside_the_target() {
    let work = prepare();
    let sentinel = work.at("sentinel/file");
    let nodes = unpacked(
        &work,
        &[tar(&format!("{sentinel}=overwritten /abs=1 //double=2"))],
        &[],
    );
    assert_eq!(content(&work, &sentinel[1..]), "overwritten");
    assert!(nodes.contains_key("abs") && nodes.contains_key("double"));
}

/// A symlink to a directory outside, given as `link` (`OUTSIDE` replaced by the outside
/// directory's path), then a file written through it in the same layer and in the next: it
/// never lands outside. hoist resolves the symlink inside the target: where its target does
/// not exist there, it refuses to write below a dangling symlink (umoci makes the
/// directories inside the root instead); `lands` is where it lands otherwise.
fn write_through_symlink(link: &str, lands: Option<&str>) {
    for split in [false, true] {
        let work = prepare();
        let symlink = format!("evil->{}", link.replace("OUTSIDE", &work.at("outside")));
        let layers = if split {
            vec![tar(&symlink), tar("evil/pwned=pwned")]
        } else {
            vec![tar(&format!("{symlink} evil/pwned=pwned"))]
        };
        match lands {
            None => {
                let stderr = refused(&work, &layers, &[], "evil/pwned");
                let writer = Digest::sha256(layers.last().unwrap()).to_string();
                assert!(stderr.contains(&writer), "{stderr}");
            }
            Some(path) => {
                let nodes = unpacked(&work, &layers, &[]);
                assert_eq!(content(&work, path), "pwned", "{nodes:?}");
            }
        }
    }
}

#[test]
fn a_file_through_an_absolute_symlink_to_outside_is_refused() {
    write_through_symlink("OUTSIDE", None);
    write_through_symlink("/../../..", Some("pwned"));
}

#[test]
fn a_file_through_a_relative_symlink_out_of_the_root_stays_inside() {
    write_through_symlink("../../..", Some("pwned"));
    write_through_symlink("../sentinel", None);
}

/// A symlink to a directory inside the image is followed as the image sees it: the file
/// lands in that directory of the target, not in the host's directory of the same path.
#[test]
fn a_file_through_a_symlink_to_an_image_directory_lands_in_the_target() {
    let work = prepare();
    let outside = work.at("outside");
    let layer = tar(&format!("{outside}/ evil->{outside} evil/written=inside"));
    unpacked(&work, &[layer], &[]);
    assert_eq!(
        content(&work, &format!("{}/written", &outside[1..])),
        "inside"
    );
}

/// A symlink to a directory outside, then a directory entry of the same name (the tar-rs
/// CVE-2021-38511 pattern) with a file in it: the symlink is replaced by a directory.
#[test]
fn a_directory_entry_over_a_symlink_to_outside_replaces_the_symlink() {
    let work = prepare();
    let lower = tar(&format!(
        "sub->{} sub/@777 sub/file=in-sub",
        work.at("outside/dir")
    ));
    let upper = tar("later->../outside/dir");
    let top = tar("later/@777 later/file=in-later");
    let nodes = unpacked(&work, &[lower, upper, top], &[]);
    assert_eq!(nodes["sub"], Node::Dir { mode: 0o777 });
    assert_eq!(nodes["later"], Node::Dir { mode: 0o777 });
    assert_eq!(content(&work, "sub/file"), "in-sub");
    assert_eq!(content(&work, "later/file"), "in-later");
}

/// Hard links to host files, directly or through a symlink to a host directory, are refused
/// naming the entry: their targets are looked up in the image, which has none. The host
/// files are only read (their link count and change time are compared).
#[test]
fn a_hard_link_to_an_absolute_host_file_is_refused() {
    let host = ["/etc/passwd"];
    let work = prepare();
    let stderr = refused(&work, &[tar("link=>/etc/passwd")], &host, "link");
    assert!(stderr.contains("etc/passwd"), "{stderr}");
    let work = prepare();
    let layer = tar(&format!("link=>{}", work.at("outside/file")));
    refused(&work, &[layer], &host, "link");
    let work = prepare();
    refused(
        &work,
        &[tar("etc-link->/etc link=>etc-link/passwd")],
        &host,
        "link",
    );
    let work = prepare();
    let layer = tar(&format!("out->{} link=>out/file", work.at("outside")));
    refused(&work, &[layer], &host, "link");
}

#[test]
fn a_hard_link_out_of_the_root_by_dotdot_is_refused() {
    let host = ["/etc/hostname", "/etc/hosts"];
    let work = prepare();
    refused(&work, &[tar("link=>../../etc/hostname")], &host, "link");
    let work = prepare();
    refused(&work, &[tar("link=>../outside/file")], &host, "link");
}

/// A hard link to `/etc/passwd` in an image that has its own `etc/passwd` links to that
/// one.
#[test]
fn a_hard_link_to_an_absolute_path_links_the_image_file() {
    let work = prepare();
    let layer = tar("etc/ etc/passwd=the-image's link=>/etc/passwd up=>../../etc/passwd");
    unpacked(&work, &[layer], &["/etc/passwd"]);
    assert_eq!(content(&work, "link"), "the-image's");
    let tree = snapshot(&work.path("target"));
    let group: Vec<&str> = tree.links.iter().flatten().map(String::as_str).collect();
    assert_eq!(group, ["etc/passwd", "link", "up"]);
}

/// umoci's CVE-2021-29136: an entry for the root itself (`.` or `./`) that is a symlink to
/// outside, then files. hoist refuses it naming the entry.
#[test]
fn a_dot_entry_that_is_a_symlink_is_refused() {
    for name in [".", "./"] {
        let work = prepare();
        let layer = tar(&format!("{name}->{} pwned=1 made/@777", work.at("outside")));
        refused(&work, &[layer], &[], &format!("\"{name}\""));
    }
}

/// A symlink to an outside file, then a directory entry or a file entry with mode 0777 at
/// its path (in the same layer, or the next): the outside file's mode stays.
#[test]
fn a_mode_through_a_symlink_does_not_reach_outside() {
    for (entry, node) in [
        ("s/@777", Node::Dir { mode: 0o777 }),
        (
            "s=replaced@777",
            Node::File {
                mode: 0o777,
                size: 8,
                hash: 0,
            },
        ),
    ] {
        for same_layer in [true, false] {
            let work = prepare();
            let link = format!("s->{}", work.at("outside/file"));
            let layers = if same_layer {
                vec![tar(&format!("{link} {entry}"))]
            } else {
                vec![tar(&link), tar(entry)]
            };
            let found = match unpacked(&work, &layers, &[]).remove("s").unwrap() {
                Node::File { mode, size, .. } => Node::File {
                    mode,
                    size,
                    hash: 0,
                },
                other => other,
            };
            assert_eq!(found, node, "{entry}, in the same layer: {same_layer}");
        }
    }
}

/// A directory whose mode and time are set at the end, replaced by a later layer with a
/// symlink to an outside directory (and one below it): the end does not follow the symlink.
#[test]
fn directory_modes_set_at_the_end_do_not_follow_a_symlink_that_replaced_them() {
    let work = prepare();
    let lower = tar("d/@777 p/ p/dir/@777");
    let upper = tar(&format!(
        "d->{} p->{}",
        work.at("outside/dir"),
        work.at("outside")
    ));
    let nodes = unpacked(&work, &[lower, upper], &[]);
    assert!(matches!(nodes["d"], Node::Symlink { .. }));
    assert!(matches!(nodes["p"], Node::Symlink { .. }));
}

/// Whiteouts and an opaque marker below a symlink to outside, and a whiteout named by `..`:
/// nothing outside is deleted.
#[test]
fn whiteouts_through_a_symlink_delete_nothing_outside() {
    let work = prepare();
    let lower = tar(&format!("evil->{} rel->../sentinel", work.at("outside")));
    let upper = tar(
        "evil/.wh.file= evil/dir/.wh..wh..opq= rel/.wh.file= rel/.wh..wh..opq= \
                     ../.wh.sentinel= ../sentinel/.wh.file=",
    );
    let nodes = unpacked(&work, &[lower, upper], &[]);
    assert_eq!(paths(&nodes), "evil rel");
}

/// The same path twice in a layer: the later entry wins, whatever the kinds.
#[test]
fn of_duplicate_entries_the_later_wins() {
    let work = prepare();
    let layer = tar(
        "f=one@600 f=second d/@700 d/kept=kept d/@751 s->one s->two x=file x->f \
                     y->f y/ h=h l=>h l=own",
    );
    let nodes = unpacked(&work, &[layer], &[]);
    assert!(matches!(
        nodes["f"],
        Node::File {
            mode: 0o644,
            size: 6,
            ..
        }
    ));
    assert_eq!(content(&work, "f"), "second");
    assert_eq!(nodes["d"], Node::Dir { mode: 0o751 });
    assert_eq!(content(&work, "d/kept"), "kept");
    assert_eq!(
        nodes["s"],
        Node::Symlink {
            target: "two".into()
        }
    );
    assert_eq!(nodes["x"], Node::Symlink { target: "f".into() });
    assert_eq!(nodes["y"], Node::Dir { mode: 0o755 });
    assert_eq!(content(&work, "l"), "own");
    assert!(snapshot(&work.path("target")).links.is_empty());
}

/// A PAX `size` that disagrees with the ustar size (CVE-2026-33055: readers that trust one
/// or the other see different entries; here the data of the first size holds a smuggled
/// header): refused naming the entry, smaller or larger.
#[test]
fn a_pax_size_that_disagrees_with_the_header_is_refused() {
    for pax_size in ["0", "1024"] {
        let work = prepare();
        let smuggled = tar("smuggled=smuggled");
        let mut builder = tar::Builder::new(Vec::new());
        let records = [("size", pax_size.as_bytes())];
        builder.append_pax_extensions(records).unwrap();
        for (name, data) in [("carrier", &smuggled[..512]), ("after", b"end")] {
            let mut header = tar::Header::new_ustar();
            header.set_mode(0o644);
            header.set_mtime(EPOCH);
            header.set_size(data.len() as u64);
            builder.append_data(&mut header, name, data).unwrap();
        }
        let layer = builder.into_inner().unwrap();
        let stderr = refused(&work, &[layer], &[], "carrier");
        assert!(stderr.contains("PAX size"), "{stderr}");
        assert!(!work.path("target/smuggled").exists(), "{stderr}");
    }
}

/// A directory whose POSIX ACL shuts everyone out, its owner too, holding a file: an unpack
/// without privileges makes the file, then gives the directory its mode and ACL, last (the
/// ACL set at once refused the file, and then the cleanup). As root, `hoist unpack` runs as
/// `nobody` through `setpriv`, since root passes every permission check.
#[test]
fn a_directory_acl_that_shuts_its_owner_out_is_set_after_what_it_holds() {
    use std::os::unix::fs::PermissionsExt;
    let root = std::fs::metadata("/proc/self").unwrap().uid() == 0;
    let setpriv = Path::new("/usr/bin/setpriv");
    if root && !setpriv.exists() {
        crate::support::skip(
            "running as root without /usr/bin/setpriv (util-linux) to run as nobody",
        );
        return;
    }
    // ACL version 2; USER_OBJ, GROUP_OBJ and OTHER entries, each without a permission.
    let mut acl = 2u32.to_le_bytes().to_vec();
    for tag in [0x01u16, 0x04, 0x20] {
        acl.extend_from_slice(&tag.to_le_bytes());
        acl.extend_from_slice(&0u16.to_le_bytes());
        acl.extend_from_slice(&u32::MAX.to_le_bytes());
    }
    let mut builder = tar::Builder::new(Vec::new());
    builder
        .append_pax_extensions([("SCHILY.xattr.system.posix_acl_access", acl.as_slice())])
        .unwrap();
    let mut header = tar::Header::new_ustar();
    header.set_path("d/").unwrap();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_mode(0o755);
    header.set_size(0);
    header.set_mtime(EPOCH);
    header.set_cksum();
    builder.append(&header, &b""[..]).unwrap();
    let content = b"inside\n";
    let mut header = tar::Header::new_ustar();
    header.set_path("d/f").unwrap();
    header.set_mode(0o644);
    header.set_size(content.len() as u64);
    header.set_mtime(EPOCH);
    header.set_cksum();
    builder.append(&header, &content[..]).unwrap();
    let layer = builder.into_inner().unwrap();

    let work = Work::new();
    let (image, _) = image(&work, &[layer]);
    // Where nobody may read the layout and make the target.
    let open = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    open(&work.path(""), 0o755);
    work.dir("out", 0o777);
    work.dir("home", 0o777);
    let target = work.at("out/target");
    let hoist = Hoist::new();
    let mut command = if root {
        let mut command = std::process::Command::new(setpriv);
        command.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
        command.arg(crate::support::hoist_binary());
        command
    } else {
        hoist.command(&[])
    };
    let home = work.path("home");
    let output = command
        .args(["unpack", "--rootless", &image, &target])
        .env("HOME", &home)
        .env("DOCKER_CONFIG", &home)
        .env("XDG_RUNTIME_DIR", &home)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "hoist unpack failed:\n{stderr}");
    let dir = work.path("out/target/d");
    // The ACL took the place of the mode, as it came last.
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0, "the directory's ACL was not set last");
    if root {
        assert_eq!(std::fs::read(dir.join("f")).unwrap(), content);
    }
}
