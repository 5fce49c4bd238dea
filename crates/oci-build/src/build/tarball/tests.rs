use std::os::unix::fs::{PermissionsExt, chown, symlink};
use std::os::unix::net::UnixListener;
use std::process::Command;
use std::time::{Duration, SystemTime};

use super::*;
use tar::{EntryType, Header};

/// One entry of a written tar, as the `tar` crate reads it back.
#[derive(Debug)]
struct Item {
    path: String,
    kind: EntryType,
    link: Option<String>,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    data: Vec<u8>,
    /// The entry's PAX records, in the order written.
    pax: Vec<(String, Vec<u8>)>,
    /// The raw ustar header.
    header: Header,
}

impl Item {
    fn pax(&self, key: &str) -> Option<&[u8]> {
        self.pax
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }
}

fn write(source: &LayerSource, options: &TarOptions) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    write_tar(source, options, &mut out)?;
    Ok(out)
}

fn tar_of(source: &LayerSource, options: &TarOptions) -> Vec<u8> {
    write(source, options).unwrap()
}

fn read(tar: &[u8]) -> Vec<Item> {
    let mut archive = tar::Archive::new(tar);
    let mut items = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let pax = match entry.pax_extensions().unwrap() {
            Some(records) => records
                .map(|r| {
                    let r = r.unwrap();
                    (r.key().unwrap().to_owned(), r.value_bytes().to_vec())
                })
                .collect(),
            None => Vec::new(),
        };
        let header = entry.header().clone();
        let path = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
        let link = entry
            .link_name_bytes()
            .map(|l| String::from_utf8(l.into_owned()).unwrap());
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        items.push(Item {
            path,
            kind: header.entry_type(),
            link,
            mode: header.mode().unwrap(),
            uid: header.uid().unwrap(),
            gid: header.gid().unwrap(),
            mtime: header.mtime().unwrap(),
            data,
            pax,
            header,
        });
    }
    items
}

fn paths(items: &[Item]) -> Vec<&str> {
    items.iter().map(|i| i.path.as_str()).collect()
}

fn item<'i>(items: &'i [Item], path: &str) -> &'i Item {
    items
        .iter()
        .find(|i| i.path == path)
        .unwrap_or_else(|| panic!("no entry {path} in {:?}", paths(items)))
}

fn dir_tar(root: &Path, options: &TarOptions) -> Vec<Item> {
    read(&tar_of(
        &LayerSource::Directory(root.to_path_buf()),
        options,
    ))
}

fn disk(path: &str, source: &Path) -> LayerEntry {
    LayerEntry {
        path: path.to_owned(),
        source: EntrySource::Disk(source.to_path_buf()),
    }
}

fn file(path: &Path, content: &[u8]) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(path, content).unwrap();
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn set_mtime(path: &Path, seconds: u64) {
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(seconds);
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(time)
        .unwrap();
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
}

/// The error of writing `source`, as text; the test fails if the write succeeds.
fn refusal(source: &LayerSource) -> String {
    match write(source, &TarOptions::default()) {
        Ok(_) => panic!("{source:?} was written"),
        Err(e) => e.to_string(),
    }
}

/// A tree with one of each kind of entry that can be made without privileges.
fn rich_tree(root: &Path) {
    file(&root.join("a/b"), b"bee");
    fs::create_dir_all(root.join("a/c")).unwrap();
    file(&root.join("a-b"), b"dash");
    file(&root.join("a.txt"), b"text");
    file(&root.join("b"), b"b");
    fs::hard_link(root.join("a/b"), root.join("hard")).unwrap();
    symlink("/etc/passwd", root.join("abs")).unwrap();
    symlink("../a/b", root.join("a/c/rel")).unwrap();
    symlink("t".repeat(120), root.join("long-link")).unwrap();
    let deep = [
        "d".repeat(60),
        "e".repeat(60),
        "f".repeat(60),
        "g".repeat(60),
    ];
    file(&root.join(deep.join("/")).join("file"), b"deep");
    set_mode(&root.join("b"), 0o4755);
    mkfifo(&root.join("pipe"));
}

#[test]
fn a_directory_is_walked_in_pre_order_with_siblings_in_byte_order() {
    let dir = tempfile::tempdir().unwrap();
    file(&dir.path().join("b"), b"b");
    file(&dir.path().join("a.txt"), b"t");
    file(&dir.path().join("a/c"), b"c");
    file(&dir.path().join("a/b/x"), b"x");
    file(&dir.path().join("a-b"), b"-");
    let items = dir_tar(dir.path(), &TarOptions::default());
    // `a-b` sorts after `a` by name although `a-b` < `a/` as whole strings.
    assert_eq!(
        paths(&items),
        ["a/", "a/b/", "a/b/x", "a/c", "a-b", "a.txt", "b"]
    );
    assert_eq!(item(&items, "a/").kind, EntryType::Directory);
    assert_eq!(item(&items, "a/b/x").data, b"x");
}

#[test]
fn listed_entries_are_sorted_like_a_walk_and_get_their_missing_parents() {
    let dir = tempfile::tempdir().unwrap();
    file(&dir.path().join("f"), b"f");
    fs::create_dir(dir.path().join("d")).unwrap();
    set_mode(&dir.path().join("d"), 0o700);
    let source = LayerSource::Entries(vec![
        disk("/usr/local/bin/app", &dir.path().join("f")),
        disk("./b", &dir.path().join("f")),
        disk("a.txt", &dir.path().join("f")),
        disk("usr", &dir.path().join("d")),
        disk("a/c", &dir.path().join("f")),
        LayerEntry {
            path: "a/b".to_owned(),
            source: EntrySource::Whiteout,
        },
    ]);
    let options = TarOptions::default().with_mtime(Mtime::Set(77));
    let items = read(&tar_of(&source, &options));
    assert_eq!(
        paths(&items),
        [
            "a/",
            "a/.wh.b",
            "a/c",
            "a.txt",
            "b",
            "usr/",
            "usr/local/",
            "usr/local/bin/",
            "usr/local/bin/app"
        ]
    );
    for made in ["a/", "usr/local/", "usr/local/bin/"] {
        let made = item(&items, made);
        assert_eq!(made.kind, EntryType::Directory);
        assert_eq!(
            (made.mode, made.uid, made.gid, made.mtime),
            (0o755, 0, 0, 77)
        );
    }
    // A listed directory is the entry on disk, not a made one.
    assert_eq!(item(&items, "usr/").mode, 0o700);
    assert_eq!(item(&items, "a/.wh.b").data, b"");
    assert_eq!(item(&items, "usr/local/bin/app").data, b"f");
}

#[test]
fn a_path_listed_twice_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    file(&dir.path().join("f"), b"f");
    let error = refusal(&LayerSource::Entries(vec![
        disk("etc/conf", &dir.path().join("f")),
        disk("/etc/./conf", &dir.path().join("f")),
    ]));
    assert!(error.contains("/etc/./conf"), "{error}");
    assert!(error.contains("twice"), "{error}");
}

#[test]
fn a_dotdot_path_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    file(&dir.path().join("f"), b"f");
    let error = refusal(&LayerSource::Entries(vec![disk(
        "a/../../etc/passwd",
        &dir.path().join("f"),
    )]));
    assert!(error.contains("a/../../etc/passwd"), "{error}");
}

#[test]
fn a_second_name_of_a_file_is_a_hard_link_to_the_first_in_order() {
    let dir = tempfile::tempdir().unwrap();
    file(&dir.path().join("z/data"), b"shared");
    fs::hard_link(dir.path().join("z/data"), dir.path().join("a-copy")).unwrap();
    fs::hard_link(dir.path().join("z/data"), dir.path().join("m")).unwrap();
    let items = dir_tar(dir.path(), &TarOptions::default());
    assert_eq!(paths(&items), ["a-copy", "m", "z/", "z/data"]);
    let first = item(&items, "a-copy");
    assert_eq!(first.kind, EntryType::Regular);
    assert_eq!(first.data, b"shared");
    for later in ["m", "z/data"] {
        let later = item(&items, later);
        assert_eq!(later.kind, EntryType::Link);
        assert_eq!(later.link.as_deref(), Some("a-copy"));
        assert!(later.data.is_empty());
    }
}

#[test]
fn symlinks_are_kept_as_written_and_a_long_target_goes_into_pax() {
    let dir = tempfile::tempdir().unwrap();
    let long = format!("/{}", "target/".repeat(20));
    symlink("/etc/passwd", dir.path().join("abs")).unwrap();
    symlink("../x/./y", dir.path().join("rel")).unwrap();
    symlink(&long, dir.path().join("long")).unwrap();
    let items = dir_tar(dir.path(), &TarOptions::default());
    for (path, target) in [("abs", "/etc/passwd"), ("rel", "../x/./y")] {
        let link = item(&items, path);
        assert_eq!(link.kind, EntryType::Symlink);
        assert_eq!(link.link.as_deref(), Some(target));
        assert!(link.pax.is_empty(), "{:?}", link.pax);
    }
    let link = item(&items, "long");
    assert!(long.len() > 100);
    assert_eq!(link.link.as_deref(), Some(long.as_str()));
    assert_eq!(link.pax("linkpath"), Some(long.as_bytes()));
}

#[test]
fn a_path_over_255_bytes_goes_into_pax_and_one_of_150_is_split_into_prefix_and_name() {
    let dir = tempfile::tempdir().unwrap();
    let long = ["a".repeat(90), "b".repeat(90), "c".repeat(90)].join("/");
    let split = format!("{}/{}", "p".repeat(100), "n".repeat(49));
    file(&dir.path().join(&long), b"long");
    file(&dir.path().join(&split), b"split");
    let items = dir_tar(dir.path(), &TarOptions::default());

    let item_long = item(&items, &long);
    assert!(long.len() > 255);
    assert_eq!(item_long.pax("path"), Some(long.as_bytes()));
    assert_eq!(item_long.data, b"long");

    let item_split = item(&items, &split);
    assert_eq!(split.len(), 150);
    assert!(item_split.pax.is_empty(), "{:?}", item_split.pax);
    let ustar = item_split.header.as_ustar().unwrap();
    assert_eq!(&ustar.prefix[..100], "p".repeat(100).as_bytes());
    assert_eq!(ustar.prefix[100], 0);
    assert_eq!(&ustar.name[..49], "n".repeat(49).as_bytes());
    assert_eq!(ustar.name[49], 0);
}

#[test]
#[allow(clippy::print_stdout, reason = "says which check was skipped")]
fn extended_attributes_are_schily_records_in_name_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    file(&path, b"x");
    if let Err(e) = xattr::set(&path, "user.test", b"value") {
        println!("skipped: the filesystem of the temp dir refuses user xattrs ({e})");
        return;
    }
    xattr::set(&path, "user.a", b"first").unwrap();
    let items = dir_tar(dir.path(), &TarOptions::default());
    assert_eq!(
        item(&items, "f").pax,
        [
            ("SCHILY.xattr.user.a".to_owned(), b"first".to_vec()),
            ("SCHILY.xattr.user.test".to_owned(), b"value".to_vec()),
        ]
    );
    let items = dir_tar(dir.path(), &TarOptions::default().with_xattrs(false));
    assert!(item(&items, "f").pax.is_empty());
}

#[test]
fn permission_bits_are_kept_including_set_id_and_sticky() {
    let dir = tempfile::tempdir().unwrap();
    for (name, mode) in [("setuid", 0o4755), ("setgid", 0o2711), ("private", 0o600)] {
        file(&dir.path().join(name), b"x");
        set_mode(&dir.path().join(name), mode);
    }
    fs::create_dir(dir.path().join("tmp")).unwrap();
    set_mode(&dir.path().join("tmp"), 0o1777);
    let items = dir_tar(dir.path(), &TarOptions::default());
    for (path, mode) in [
        ("setuid", 0o4755),
        ("setgid", 0o2711),
        ("private", 0o600),
        ("tmp/", 0o1777),
    ] {
        assert_eq!(item(&items, path).mode, mode, "{path}");
    }
}

#[test]
fn mtimes_are_as_on_disk_clamped_or_set() {
    let dir = tempfile::tempdir().unwrap();
    file(&dir.path().join("old"), b"o");
    file(&dir.path().join("new"), b"n");
    set_mtime(&dir.path().join("old"), 1000);
    set_mtime(&dir.path().join("new"), 3000);
    let times = |mtime: Mtime| {
        let items = dir_tar(dir.path(), &TarOptions::default().with_mtime(mtime));
        (item(&items, "old").mtime, item(&items, "new").mtime)
    };
    assert_eq!(times(Mtime::AsOnDisk), (1000, 3000));
    assert_eq!(times(Mtime::Clamp(2000)), (1000, 2000));
    assert_eq!(times(Mtime::Set(42)), (42, 42));
}

#[test]
fn owners_are_0_0_by_default_kept_on_request_and_never_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    file(&path, b"x");
    // Only root may give a file away; anyone else's files are already not 0:0.
    let _ = chown(&path, Some(1234), Some(5678));
    let meta = fs::metadata(&path).unwrap();
    let on_disk = (u64::from(meta.uid()), u64::from(meta.gid()));
    assert_ne!(on_disk, (0, 0));

    let owner = |options: &TarOptions| {
        let items = dir_tar(dir.path(), options);
        let f = item(&items, "f");
        assert_eq!(f.header.username_bytes(), Some(&b""[..]));
        assert_eq!(f.header.groupname_bytes(), Some(&b""[..]));
        (f.uid, f.gid)
    };
    assert_eq!(owner(&TarOptions::default()), (0, 0));
    assert_eq!(owner(&TarOptions::default().with_owner(None)), on_disk);
    assert_eq!(
        owner(&TarOptions::default().with_owner(Some((7, 8)))),
        (7, 8)
    );
}

#[test]
fn a_fifo_and_a_device_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    mkfifo(&dir.path().join("pipe"));
    let source = LayerSource::Entries(vec![
        disk("pipe", &dir.path().join("pipe")),
        disk("dev/null", Path::new("/dev/null")),
    ]);
    let items = read(&tar_of(&source, &TarOptions::default()));
    assert_eq!(item(&items, "pipe").kind, EntryType::Fifo);
    let null = item(&items, "dev/null");
    assert_eq!(null.kind, EntryType::Char);
    assert_eq!(null.header.device_major().unwrap(), Some(1));
    assert_eq!(null.header.device_minor().unwrap(), Some(3));
}

#[test]
fn a_socket_is_refused_naming_its_path() {
    let dir = tempfile::tempdir().unwrap();
    file(&dir.path().join("a"), b"a");
    let socket = dir.path().join("sock");
    let _listener = UnixListener::bind(&socket).unwrap();
    let error = refusal(&LayerSource::Directory(dir.path().to_path_buf()));
    assert!(error.contains(&socket.display().to_string()), "{error}");
    assert!(error.contains("socket"), "{error}");
}

#[test]
fn a_file_that_cannot_be_read_is_refused_naming_it() {
    // Reading /proc/self/mem at offset 0 fails with EIO, even for root.
    let error = refusal(&LayerSource::Entries(vec![disk(
        "mem",
        Path::new("/proc/self/mem"),
    )]));
    assert!(error.contains("/proc/self/mem"), "{error}");
}

#[test]
#[allow(clippy::print_stdout, reason = "says which check was skipped")]
fn a_file_whose_size_changes_while_read_is_refused_naming_it() {
    // procfs files say they are empty and have content; sysfs ones say 4096 bytes and have less.
    let error = refusal(&LayerSource::Entries(vec![disk(
        "status",
        Path::new("/proc/self/status"),
    )]));
    assert!(error.contains("/proc/self/status: grew"), "{error}");
    let shrinking = Path::new("/sys/kernel/profiling");
    if fs::metadata(shrinking).map_or(true, |m| m.len() <= 16) {
        println!("skipped the shrinking file: no {}", shrinking.display());
        return;
    }
    let error = refusal(&LayerSource::Entries(vec![disk("profiling", shrinking)]));
    assert!(error.contains("/sys/kernel/profiling"), "{error}");
}

#[test]
fn a_listed_path_that_does_not_exist_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let error = refusal(&LayerSource::Entries(vec![disk("x", &missing)]));
    assert!(error.contains(&missing.display().to_string()), "{error}");
}

#[test]
fn the_same_tree_gives_the_same_bytes_readable_by_the_tar_crate_and_gnu_tar() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    rich_tree(&tree);
    let source = LayerSource::Directory(tree.clone());
    let options = TarOptions::default().with_mtime(Mtime::Clamp(1_700_000_000));
    let first = tar_of(&source, &options);
    assert_eq!(first, tar_of(&source, &options));
    assert_eq!(first.len() % 512, 0);

    let items = read(&first);
    let deep = [
        "d".repeat(60),
        "e".repeat(60),
        "f".repeat(60),
        "g".repeat(60),
    ]
    .join("/");
    let expected = [
        "a/".to_owned(),
        "a/b".to_owned(),
        "a/c/".to_owned(),
        "a/c/rel".to_owned(),
        "a-b".to_owned(),
        "a.txt".to_owned(),
        "abs".to_owned(),
        "b".to_owned(),
        format!("{}/", "d".repeat(60)),
        format!("{}/{}/", "d".repeat(60), "e".repeat(60)),
        format!("{}/{}/{}/", "d".repeat(60), "e".repeat(60), "f".repeat(60)),
        format!("{deep}/"),
        format!("{deep}/file"),
        "hard".to_owned(),
        "long-link".to_owned(),
        "pipe".to_owned(),
    ];
    assert_eq!(paths(&items), expected);
    assert_eq!(item(&items, "hard").link.as_deref(), Some("a/b"));
    assert_eq!(item(&items, "b").mode, 0o4755);

    let archive = dir.path().join("layer.tar");
    fs::write(&archive, &first).unwrap();
    let output = Command::new("tar")
        .arg("-tvf")
        .arg(&archive)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "tar -tvf: {stderr}");
    assert!(stderr.is_empty(), "tar -tvf warned: {stderr}");
    let listing = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), expected.len(), "{listing}");
    for (line, path) in lines.iter().zip(&expected) {
        assert!(line.contains(&format!(" {path}")), "{line} is not {path}");
        assert!(line.contains(" 0/0 "), "{line}");
    }
    assert!(listing.contains("hard link to a/b"), "{listing}");
    assert!(listing.contains("abs -> /etc/passwd"), "{listing}");
    assert!(listing.contains(&format!("long-link -> {}", "t".repeat(120))));
}

/// A tar made by GNU tar (padded to its 10 KiB records) with a file of `size` bytes.
fn gnu_tar(dir: &Path, size: usize) -> PathBuf {
    let content = dir.join("content");
    file(&content.join("data"), &vec![b'x'; size]);
    file(&content.join("small"), b"small");
    let archive = dir.join("gnu.tar");
    let status = Command::new("tar")
        .arg("-cf")
        .arg(&archive)
        .arg("-C")
        .arg(&content)
        .args(["data", "small"])
        .status()
        .unwrap();
    assert!(status.success());
    archive
}

#[test]
fn a_tar_passes_through_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let archive = gnu_tar(dir.path(), 2000);
    let original = fs::read(&archive).unwrap();
    assert_eq!(
        tar_of(&LayerSource::Tar(archive), &TarOptions::default()),
        original
    );
}

#[test]
fn a_compressed_tar_is_decompressed() {
    let dir = tempfile::tempdir().unwrap();
    let plain = fs::read(gnu_tar(dir.path(), 2000)).unwrap();

    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gzip.write_all(&plain).unwrap();
    let gz = dir.path().join("layer.tar.gz");
    fs::write(&gz, gzip.finish().unwrap()).unwrap();
    assert_eq!(tar_of(&LayerSource::Tar(gz), &TarOptions::default()), plain);

    let zst = dir.path().join("layer.tar.zst");
    fs::write(&zst, zstd::encode_all(plain.as_slice(), 3).unwrap()).unwrap();
    assert_eq!(
        tar_of(&LayerSource::Tar(zst), &TarOptions::default()),
        plain
    );
}

#[test]
fn a_tar_cut_inside_an_entry_or_a_header_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    // `data` (2000 bytes) is at 512..2512, padded to 2560; `small`'s header at 2560..3072.
    let whole = fs::read(gnu_tar(dir.path(), 2000)).unwrap();
    for (cut, why) in [
        (1536, "ends inside entry \"data\" (1024 of its 2000 bytes)"),
        (2000, "ends inside entry \"data\""),
        (2600, "is not a readable tar"),
        (300, "is not a readable tar"),
    ] {
        let cut_tar = dir.path().join(format!("cut-{cut}.tar"));
        fs::write(&cut_tar, &whole[..cut]).unwrap();
        let error = refusal(&LayerSource::Tar(cut_tar.clone()));
        assert!(
            error.contains(&cut_tar.display().to_string()) && error.contains(why),
            "cut at {cut}: {error}"
        );
    }
}
