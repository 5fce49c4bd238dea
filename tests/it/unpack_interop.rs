//! `hoist unpack` and `hoist export` run as a program, with umoci as the reference: images of
//! crafted layers (whiteouts, opaque directories wherever their marker stands, hard links and
//! symlinks across layers, replaced and recreated paths, extended attributes, long names, a
//! file of several MiB, owners) and a copy of part of this machine's `/usr` are unpacked by
//! `umoci unpack` and by `hoist unpack`, and the trees must be the same: paths, types, modes,
//! sizes, contents, link targets, hard link groups, `user.*` attributes, the times of
//! everything but directories (umoci gives made-up parents the time of the unpack) and, as
//! root without `--rootless`, owners. `hoist export` of each image must list (GNU `tar -t`)
//! exactly the unpacked paths and give the same bytes twice.
//!
//! Extended attributes are read back through GNU tar (`tar --xattrs`): the tests package has
//! no binding of `getxattr`.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};

use crate::build_interop::{EPOCH, Node, Tree, Work, assert_same_tree, hoist, snapshot};
use crate::cli::Hoist;
use crate::support::{peer, run};

// ---- crafted layers ----

/// A layer tar made entry by entry, in the order given. Every entry gets its own time (one
/// second after the one before), so that which entry won a path shows.
struct Layer {
    builder: tar::Builder<Vec<u8>>,
    mtime: u64,
    owner: (u64, u64),
    pax: Vec<(String, Vec<u8>)>,
}

impl Layer {
    /// An empty layer whose entries' times start after `EPOCH + start`.
    fn new(start: u64) -> Self {
        Self {
            builder: tar::Builder::new(Vec::new()),
            mtime: EPOCH + start,
            owner: (0, 0),
            pax: Vec::new(),
        }
    }

    /// The owner of the entries that follow.
    fn owner(mut self, uid: u64, gid: u64) -> Self {
        self.owner = (uid, gid);
        self
    }

    /// An extended attribute of the next entry (`SCHILY.xattr.KEY`).
    fn xattr(mut self, key: &str, value: &[u8]) -> Self {
        self.pax
            .push((format!("SCHILY.xattr.{key}"), value.to_vec()));
        self
    }

    /// Appends an entry (after the extended attributes given before it).
    fn add(mut self, kind: tar::EntryType, path: &str, link: &str, data: &[u8], mode: u32) -> Self {
        self.mtime += 1;
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(data.len() as u64);
        header.set_mtime(self.mtime);
        header.set_uid(self.owner.0);
        header.set_gid(self.owner.1);
        let records = std::mem::take(&mut self.pax);
        if !records.is_empty() {
            let records = records.iter().map(|(k, v)| (k.as_str(), v.as_slice()));
            self.builder.append_pax_extensions(records).unwrap();
        }
        if link.is_empty() {
            self.builder.append_data(&mut header, path, data).unwrap();
        } else {
            self.builder.append_link(&mut header, path, link).unwrap();
        }
        self
    }

    fn dir(self, path: &str, mode: u32) -> Self {
        let path = format!("{}/", path.trim_end_matches('/'));
        self.add(tar::EntryType::Directory, &path, "", b"", mode)
    }

    fn file(self, path: &str, content: &[u8], mode: u32) -> Self {
        self.add(tar::EntryType::Regular, path, "", content, mode)
    }

    fn symlink(self, path: &str, target: &str) -> Self {
        self.add(tar::EntryType::Symlink, path, target, b"", 0o777)
    }

    /// A hard link at `path` to the image path `target`.
    fn link(self, path: &str, target: &str) -> Self {
        self.add(tar::EntryType::Link, path, target, b"", 0o644)
    }

    /// Entries separated by spaces: `DIR/`, `FILE=CONTENT`, `LINK=>TARGET` (a hard link),
    /// `SYMLINK->TARGET`, each with `@MODE` (octal) unless 0755 for a directory or 0644 for a
    /// file. Whiteouts are files: `DIR/.wh.NAME=`, `DIR/.wh..wh..opq=`.
    fn entries(mut self, spec: &str) -> Self {
        for entry in spec.split_whitespace() {
            let (entry, mode) = match entry.rsplit_once('@') {
                Some((entry, mode)) => (entry, u32::from_str_radix(mode, 8).ok()),
                None => (entry, None),
            };
            self = if let Some((path, target)) = entry.split_once("=>") {
                self.link(path, target)
            } else if let Some((path, target)) = entry.split_once("->") {
                self.symlink(path, target)
            } else if let Some((path, content)) = entry.split_once('=') {
                self.file(path, content.as_bytes(), mode.unwrap_or(0o644))
            } else {
                self.dir(entry, mode.unwrap_or(0o755))
            };
        }
        self
    }

    fn bytes(self) -> Vec<u8> {
        self.builder.into_inner().unwrap()
    }
}

// ---- what is compared ----

/// A tree as compared here: [`Tree`] and, by path, the time of everything but directories,
/// the owner of everything, and the `user.*` attributes; the root (`.`) among the owners and
/// attributes, and its mode.
#[derive(Debug)]
struct Full {
    tree: Tree,
    times: BTreeMap<String, i64>,
    owners: BTreeMap<String, (u32, u32)>,
    xattrs: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    root_mode: u32,
}

fn full(root: &Path) -> Full {
    let tree = snapshot(root);
    let (mut times, mut owners) = (BTreeMap::new(), BTreeMap::new());
    for (path, node) in &tree.nodes {
        let meta = std::fs::symlink_metadata(root.join(path)).unwrap();
        if !matches!(node, Node::Dir { .. }) {
            times.insert(path.clone(), meta.mtime());
        }
        owners.insert(path.clone(), (meta.uid(), meta.gid()));
    }
    let meta = std::fs::metadata(root).unwrap();
    owners.insert(".".to_owned(), (meta.uid(), meta.gid()));
    Full {
        tree,
        times,
        owners,
        xattrs: user_xattrs(root),
        root_mode: meta.mode() & 0o7777,
    }
}

const ROOTLESS_OWNERS: &str = "SCHILY.xattr.user.rootlesscontainers";

/// The `user.*` extended attributes under `root`, by path, as GNU tar archives them.
fn user_xattrs(root: &Path) -> BTreeMap<String, BTreeMap<String, Vec<u8>>> {
    let args = "--xattrs --xattrs-include=user.* -cf - -C";
    let args = args.split(' ').chain([root.to_str().unwrap(), "."]);
    let output = run(Path::new("tar"), args);
    let mut archive = tar::Archive::new(output.stdout.as_slice());
    let mut found = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = match path.trim_start_matches("./").trim_end_matches('/') {
            "" => ".".to_owned(),
            path => path.to_owned(),
        };
        let mut attributes = BTreeMap::new();
        if let Some(records) = entry.pax_extensions().unwrap() {
            for record in records {
                let record = record.unwrap();
                let key = record.key().unwrap();
                // umoci --rootless records the owners it could not set in
                // `user.rootlesscontainers`; hoist leaves owners out.
                if key.starts_with("SCHILY.xattr.user.") && key != ROOTLESS_OWNERS {
                    let key = key.trim_start_matches("SCHILY.xattr.");
                    attributes.insert(key.to_owned(), record.value_bytes().to_vec());
                }
            }
        }
        if !attributes.is_empty() {
            found.insert(path, attributes);
        }
    }
    found
}

/// Asserts two maps are equal, showing the keys whose values differ.
fn assert_same_map<V: PartialEq + Debug>(
    actual: &BTreeMap<String, V>,
    expected: &BTreeMap<String, V>,
    what: &str,
) {
    let keys: std::collections::BTreeSet<&String> = actual.keys().chain(expected.keys()).collect();
    let differences: Vec<String> = keys
        .into_iter()
        .filter(|k| actual.get(*k) != expected.get(*k))
        .map(|k| format!("{k}: {:?}, expected {:?}", actual.get(k), expected.get(k)))
        .collect();
    assert!(
        differences.is_empty(),
        "{what}:\n{}",
        differences.join("\n")
    );
}

// ---- running both ----

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// The layers written as tars and built into `oci:WORK/layout:v1`.
fn build_layers(hoist: &Hoist, work: &Work, layers: Vec<Vec<u8>>) -> String {
    let mut line = String::from("build");
    for (index, layer) in layers.into_iter().enumerate() {
        let name = format!("layer{index}.tar");
        std::fs::write(work.path(&name), layer).unwrap();
        line.push_str(&format!(" --layer {}", work.at(&name)));
    }
    let image = work.oci("layout", "v1");
    hoist!(hoist, "{line} {image}");
    image
}

/// umoci's and hoist's unpacks of `oci:WORK/layout:v1` into `NAME-umoci` and `NAME-hoist`,
/// rootless or (as root) not; returns umoci's rootfs and hoist's directory.
fn run_both(
    umoci: &Path,
    hoist: &Hoist,
    work: &Work,
    name: &str,
    rootless: bool,
) -> (PathBuf, PathBuf) {
    let bundle = work.at(&format!("{name}-umoci"));
    let dir = work.at(&format!("{name}-hoist"));
    let image = work.oci("layout", "v1");
    let umoci_image = format!("{}:v1", work.at("layout"));
    let mut umoci_args = vec!["unpack", "--image", &umoci_image, &bundle];
    let mut hoist_args = vec!["unpack", &image, &dir];
    if rootless {
        umoci_args.insert(1, "--rootless");
        hoist_args.insert(1, "--rootless");
    }
    run(umoci, &umoci_args);
    hoist.ok(&hoist_args);
    (PathBuf::from(&bundle).join("rootfs"), PathBuf::from(dir))
}

/// [`run_both`], then the trees compared (owners when not rootless); returns hoist's.
fn both_unpack(umoci: &Path, hoist: &Hoist, work: &Work, name: &str, rootless: bool) -> Full {
    let (rootfs, dir) = run_both(umoci, hoist, work, name, rootless);
    let expected = full(&rootfs);
    let actual = full(&dir);
    let what = format!(
        "hoist unpack{} against umoci",
        if rootless { " --rootless" } else { "" }
    );
    assert_same_tree(&actual.tree, &expected.tree, &what);
    assert_same_map(&actual.times, &expected.times, &format!("{what}: times"));
    assert_same_map(&actual.xattrs, &expected.xattrs, &format!("{what}: xattrs"));
    let modes = (actual.root_mode, expected.root_mode);
    assert_eq!(modes.0, modes.1, "{what}: the mode of the root");
    if !rootless {
        assert_same_map(&actual.owners, &expected.owners, &format!("{what}: owners"));
    }
    actual
}

/// `hoist export` of `oci:WORK/layout:v1` twice: the same bytes, and GNU tar lists exactly
/// the paths of `tree` (directories with a trailing `/`).
fn export_lists_the_tree(hoist: &Hoist, work: &Work, tree: &Tree) {
    let image = work.oci("layout", "v1");
    let [one, two] = ["export-1.tar", "export-2.tar"].map(|n| work.at(n));
    hoist.ok(&["export", &image, &one]);
    hoist.ok(&["export", &image, &two]);
    let bytes = std::fs::read(&one).unwrap();
    assert!(bytes == std::fs::read(&two).unwrap(), "two exports differ");
    let listed = run(Path::new("tar"), ["--quoting-style=literal", "-tf", &one]);
    let listed = String::from_utf8(listed.stdout).unwrap();
    let listed: Vec<&str> = listed.lines().collect();
    let expected: BTreeMap<String, ()> = (tree.nodes.iter())
        .map(|(path, node)| match node {
            Node::Dir { .. } => (format!("{path}/"), ()),
            _ => (path.clone(), ()),
        })
        .collect();
    let found = listed.iter().map(|p| ((*p).to_owned(), ())).collect();
    assert_same_map(&found, &expected, "tar -t of the export against the tree");
    assert_eq!(listed.len(), expected.len(), "a path listed twice");
}

/// Builds `layers`, unpacks them with umoci and hoist rootless and (as root) with owners,
/// compares, and checks the export if `export`; returns hoist's rootless tree.
fn check_image(layers: Vec<Vec<u8>>, export: bool) -> Option<(Work, Full)> {
    let umoci = peer("umoci")?;
    let work = Work::new();
    let hoist = Hoist::new();
    build_layers(&hoist, &work, layers);
    let tree = both_unpack(&umoci, &hoist, &work, "rootless", true);
    if export {
        export_lists_the_tree(&hoist, &work, &tree.tree);
    }
    if is_root() {
        let owned = both_unpack(&umoci, &hoist, &work, "root", false);
        assert_same_tree(&owned.tree, &tree.tree, "as root against rootless");
    } else {
        crate::support::skip("not root: the unpacks with owners are left out");
    }
    Some((work, tree))
}

/// The paths of a tree, as text separated by spaces.
fn paths(tree: &Tree) -> String {
    tree.nodes.keys().cloned().collect::<Vec<_>>().join(" ")
}

// ---- the images ----

/// Whiteouts of files, directories and nothing; opaque directories whose marker is the first,
/// a middle and the last entry of the directory in its layer (the last one with a
/// subdirectory the layer makes again, whose lower contents go too); a directory deleted and
/// made again in the same layer; a file deleted and made again above.
#[test]
fn whiteouts_and_opaque_directories_unpack_as_umoci_does() {
    let lower = Layer::new(0).entries(
        "etc/ etc/keep=keep etc/gone=gone gonedir/ gonedir/a=a gonedir/sub/@700 gonedir/sub/b=b \
         first/ first/old=old first/olddir/ first/olddir/deep=deep middle/ middle/old=old \
         last/ last/old=old last/sub/ last/sub/older=older back=first late=lower again/ \
         again/old=old",
    );
    let upper = Layer::new(100).entries(
        "etc/.wh.gone= .wh.gonedir= first/@750 first/.wh..wh..opq= first/new=new first/newdir/ \
         first/newdir/f=f middle/ middle/a=a middle/.wh..wh..opq= middle/z=z@600 last/ \
         last/new=new last/sub/@711 last/sub/n=n last/.wh..wh..opq= .wh.back= late=upper \
         .wh.late= .wh.never-was= .wh.again= again/@700 again/new=new",
    );
    let top = Layer::new(200).entries("back=again@640");
    let [lower, upper, top] = [lower, upper, top].map(Layer::bytes);
    let Some((_work, tree)) = check_image(vec![lower, upper, top], true) else {
        return;
    };
    assert_eq!(
        paths(&tree.tree),
        "again again/new back etc etc/keep first first/new first/newdir first/newdir/f last \
         last/new last/sub last/sub/n late middle middle/a middle/z",
        "what the whiteouts leave"
    );
}

/// Hard links within a layer and across layers (to a file and to a link of it), links whose
/// target a later layer deletes or replaces, symlinks (absolute, relative, dangling, to a
/// directory) made in one layer and used or replaced in another, long link targets.
#[test]
fn hard_links_and_symlinks_across_layers_unpack_as_umoci_does() {
    let long_target = format!("data/{}", "t".repeat(120));
    let lower = Layer::new(0)
        .entries(
            "data/ data/orig=shared@640 data/inlayer=>data/orig abs->/data/orig rel->data/orig \
             dangling->/nowhere/at/all dirlink->data swap=one swap-link=>swap \
             orphan=orphaned@600 orphan-link=>orphan",
        )
        .file(&long_target, b"long", 0o644)
        .link("long-link", &long_target)
        .symlink("long-symlink", &format!("/{long_target}"))
        .bytes();
    let upper = Layer::new(100)
        .entries(
            "across=>data/orig data/second=>data/inlayer via-symlink->dirlink/orig \
             data/up->../rel swap=two .wh.orphan= abs=now-a-file",
        )
        .bytes();
    let Some((_work, tree)) = check_image(vec![lower, upper], true) else {
        return;
    };
    let group = "across data/inlayer data/orig data/second".split(' ');
    let group = group.map(str::to_owned).collect();
    let links = &tree.tree.links;
    assert!(
        links.contains(&group),
        "one inode across the layers: {links:?}"
    );
}

/// A directory replaced by a file and back, a file by a directory and back, a symlink by a
/// directory, a directory by a symlink, with the modes of the entries that won.
#[test]
fn replaced_and_recreated_paths_unpack_as_umoci_does() {
    let lower = Layer::new(0).entries(
        "d2f/@750 d2f/inner=inner d2f/sub/ d2f/sub/x=x f2d=file f2d2f=file s2d->d2f d2s/ \
         d2s/x=x",
    );
    let middle = Layer::new(100).entries(
        "d2f=now-a-file@600 f2d/@711 f2d/child=child s2d/@700 s2d/y=y d2s->f2d f2d2f/ \
         f2d2f/z=z",
    );
    let top = Layer::new(200).entries("d2f/@705 d2f/again=again f2d2f=file-again@604");
    let [lower, middle, top] = [lower, middle, top].map(Layer::bytes);
    let Some((_work, tree)) = check_image(vec![lower, middle, top], true) else {
        return;
    };
    assert_eq!(
        paths(&tree.tree),
        "d2f d2f/again d2s f2d f2d/child f2d2f s2d s2d/y"
    );
    assert_eq!(tree.tree.nodes["d2f"], Node::Dir { mode: 0o705 });
}

/// A directory deleted by a middle layer, then made again by a top layer that has a file in
/// it but no entry for the directory itself: the directory is a new one (umoci makes it
/// 0755), not the lower layer's (0700). (A directory replaced by a file cannot be made again
/// that way: umoci and hoist both refuse a file below a file.)
#[test]
fn a_directory_made_again_without_an_entry_unpacks_as_umoci_does() {
    let lower = Layer::new(0).entries("deleted/@700 deleted/x=x").bytes();
    let middle = Layer::new(100).entries(".wh.deleted=").bytes();
    let top = Layer::new(200).entries("deleted/y=y").bytes();
    // The export of these layers has no entry for the directory either: see
    // `export_lists_the_directories_a_layer_leaves_implicit`.
    let Some((_work, tree)) = check_image(vec![lower, middle, top], false) else {
        return;
    };
    assert_eq!(tree.tree.nodes["deleted"], Node::Dir { mode: 0o755 });
}

/// A layer with files but no entries for their directories unpacks with the directories
/// made (as umoci makes them); the export must list them too, as `tar -t` lists the
/// directories of the unpacked tree.
#[test]
fn export_lists_the_directories_a_layer_leaves_implicit() {
    let layer = Layer::new(0)
        .entries("implicit/deeper/file=f explicit/ explicit/implicit/file=g")
        .bytes();
    check_image(vec![layer], true);
}

/// `user.*` attributes on files and directories, names over 100 and 255 bytes (a component
/// of 255), special modes (set-id, sticky, none), an empty file and a file of 5 MiB.
#[test]
fn xattrs_long_names_modes_and_a_big_file_unpack_as_umoci_does() {
    // Six directories of 48 bytes, each with an entry (the second 0711), and a file in them.
    let parts: Vec<String> = (0..6).map(|n| format!("{n}{}", "d".repeat(47))).collect();
    let dirs: Vec<String> = (1..=6).map(|n| parts[..n].join("/")).collect();
    let deep = format!(
        "{} {}@711 {} {}/leaf=deep",
        dirs[0],
        dirs[1],
        dirs[2..].join(" "),
        dirs[5]
    );
    let big = oci_store::conformance::seeded_bytes(11, 5 << 20);
    let lower = Layer::new(0)
        .xattr("user.dir", b"on a directory")
        .dir("attrs", 0o755)
        .xattr("user.one", b"1")
        .xattr("user.binary", &[0, 1, 2, 255])
        .file("attrs/file", b"with attributes", 0o644)
        .xattr("user.lower", b"lower")
        .file("attrs/replaced", b"lower", 0o644)
        .entries(&format!(
            "long/ long/{}=150 long/{}=255",
            "l".repeat(150),
            "m".repeat(255)
        ))
        .entries(&deep)
        .entries(
            "modes/ modes/setuid=su@4755 modes/setgid=sg@2711 modes/none=none@0 \
             modes/read-only=ro@444 modes/sticky/@1777 modes/closed/@500 modes/closed/inside=in \
             empty=",
        )
        .file("big.bin", &big, 0o644)
        .bytes();
    let upper = Layer::new(100)
        .xattr("user.upper", b"upper")
        .file("attrs/replaced", b"upper", 0o644)
        .bytes();
    let Some((_work, tree)) = check_image(vec![lower, upper], true) else {
        return;
    };
    assert_eq!(
        tree.xattrs["attrs/replaced"],
        BTreeMap::from([("user.upper".to_owned(), b"upper".to_vec())]),
        "the upper entry's attributes only"
    );
    assert!(tree.xattrs["attrs"].contains_key("user.dir"));
    assert!(
        matches!(tree.tree.nodes["big.bin"], Node::File { size, .. } if size == 5 << 20),
        "the big file"
    );
}

/// Owners of files, directories and symlinks (uid and gid 1000, a set-uid file owned by
/// 1000): as root without `--rootless` both keep them; rootless, hoist leaves them out.
#[test]
fn owners_are_kept_as_root_as_umoci_keeps_them() {
    let layer = Layer::new(0)
        .entries("home/")
        .owner(1000, 1000)
        .dir("home/user", 0o750)
        .file("home/user/notes", b"mine", 0o600)
        .file("home/user/tool", b"setuid", 0o4755)
        .symlink("home/user/link", "notes")
        .owner(0, 1000)
        .file("home/shared", b"group", 0o640)
        .owner(0, 0)
        .file("root-file", b"root", 0o644)
        .bytes();
    let Some((work, _)) = check_image(vec![layer], true) else {
        return;
    };
    if !is_root() {
        return;
    }
    let owners = |dir: &str| full(&work.path(dir)).owners;
    let (owned, rootless) = (owners("root-hoist"), owners("rootless-hoist"));
    let expected = "home/user:1000:1000 home/user/notes:1000:1000 home/user/tool:1000:1000 \
                    home/user/link:1000:1000 home/shared:0:1000 root-file:0:0";
    for spec in expected.split_whitespace() {
        let [path, uid, gid] = spec.splitn(3, ':').collect::<Vec<_>>()[..] else {
            unreachable!()
        };
        let owner = (uid.parse().unwrap(), gid.parse().unwrap());
        assert_eq!(owned[path], owner, "the owner of {path}");
        assert_eq!(
            rootless[path],
            (0, 0),
            "the owner of {path}, rootless as root"
        );
    }
    let tool = std::fs::metadata(work.path("root-hoist/home/user/tool")).unwrap();
    let mode = tool.mode() & 0o7777;
    assert_eq!(mode, 0o4755, "the set-uid bit survives the owner");
}

/// The layer's entry for the root itself (`./`, owned by 1000, with an attribute): its mode,
/// attributes and (as root) owner apply to the target's root, as umoci applies them.
#[test]
fn the_root_entry_s_owner_and_attributes_apply_as_umoci_applies_them() {
    let layer = Layer::new(0)
        .owner(1000, 1000)
        .xattr("user.root", b"the root")
        .dir(".", 0o750)
        .owner(0, 0)
        .entries("f=f")
        .bytes();
    check_image(vec![layer], true);
}

// ---- a real tree ----

/// Copies regular files (of at most 256 KiB) and symlinks of parts of `/usr`
/// (documentation, time zones, Python's library, headers, then the rest of `/usr/share` and
/// `/usr/lib`: those that exist), at most `per_part` of each in a sorted walk, into `a` and
/// `b` under `root` by the parity of their index, until `max_files` files or `max_bytes`
/// bytes; returns the files and bytes copied.
fn copy_usr(root: &Path, per_part: usize, max_files: usize, max_bytes: u64) -> (usize, u64) {
    let (mut files, mut bytes) = (0, 0);
    let parts =
        "/usr/share/doc /usr/share/zoneinfo /usr/lib/python3 /usr/include /usr/share /usr/lib";
    for part in parts.split(' ').map(PathBuf::from) {
        let (mut in_part, mut stack) = (0, vec![part]);
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut paths: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
            paths.sort_by(|a, b| b.cmp(a));
            for path in paths {
                if files >= max_files || bytes >= max_bytes {
                    return (files, bytes);
                }
                let (Ok(meta), Some(_)) = (path.symlink_metadata(), path.to_str()) else {
                    continue; // gone, or a name that is not UTF-8 (compared as text here)
                };
                let rel = path.strip_prefix("/").unwrap();
                let [a, b] = ["a", "b"].map(|side| root.join(side).join(rel));
                if in_part >= per_part
                    || a.symlink_metadata().is_ok()
                    || b.symlink_metadata().is_ok()
                {
                    continue; // enough of this part, or copied with an earlier one
                }
                let copy = if files % 2 == 0 { a } else { b };
                if meta.is_dir() {
                    stack.push(path);
                    continue;
                }
                std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
                if meta.is_symlink() {
                    symlink(std::fs::read_link(&path).unwrap(), &copy).unwrap();
                } else if meta.is_file() && meta.len() <= 256 << 10 {
                    if std::fs::copy(&path, &copy).is_err() {
                        let _ = std::fs::remove_file(&copy); // unreadable here
                        continue;
                    }
                    bytes += meta.len();
                } else {
                    continue;
                }
                files += 1;
                in_part += 1;
            }
        }
    }
    (files, bytes)
}

/// A few thousand files of this machine's `/usr` in two layers (the directories in both):
/// umoci and hoist unpack the same tree, and the export lists it.
#[test]
fn a_copy_of_part_of_usr_in_two_layers_unpacks_as_umoci_does() {
    let Some(umoci) = peer("umoci") else { return };
    let work = Work::new();
    let (files, bytes) = copy_usr(&work.path("usr"), 1200, 4000, 40 << 20);
    assert!(files >= 100, "only {files} files under /usr");
    let hoist = Hoist::new();
    let [a, b, image] = [work.at("usr/a"), work.at("usr/b"), work.oci("layout", "v1")];
    hoist!(&hoist, "build --layer {a} --layer {b} {image}");
    let tree = both_unpack(&umoci, &hoist, &work, "rootless", true);
    export_lists_the_tree(&hoist, &work, &tree.tree);
    let copied = snapshot(&work.path("usr/a")).union(snapshot(&work.path("usr/b")));
    assert_eq!(
        tree.tree.nodes.keys().collect::<Vec<_>>(),
        copied.nodes.keys().collect::<Vec<_>>(),
        "the paths of both layers ({files} files, {bytes} bytes)"
    );
}
