//! `oci_unpack` against a `MemoryStore`: gzip layers made here (a small gzip writer of its
//! own, stored blocks and runs of zeros, since the crate has no compressor among its
//! dependencies), unpacked and exported, with the rules of the image-spec, the limits and
//! the refusals, each error checked for what it names.

// Helpers are not `#[test]` functions; a failed expectation in them should panic all the same.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use oci_store::{MemoryStore, OciInterface, OciInterfaceExt};
use oci_types::{Digest, ImageManifest, MediaType, Repository, media_type};
use oci_unpack::{
    Error, ExportOptions, LayerLimits, LayerRef, Result, UnpackOptions, UnpackReport, export,
    image_layers, unpack,
};

const T0: u64 = 1_700_000_000;

// ---- gzip ----

/// CRC-32 (IEEE), bit by bit.
fn crc32(data: &[u8]) -> u32 {
    !data.iter().fold(!0u32, |mut c, b| {
        c ^= u32::from(*b);
        for _ in 0..8 {
            c = (c >> 1) ^ (0xedb8_8320 & (c & 1).wrapping_neg());
        }
        c
    })
}

/// One gzip member around the deflate stream `deflated` of `data_len` bytes with `crc`.
fn member(deflated: &[u8], crc: u32, data_len: usize) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    out.extend_from_slice(deflated);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&(data_len as u32).to_le_bytes());
    out
}

/// `data` as gzip of stored (uncompressed) deflate blocks.
fn gzip(data: &[u8]) -> Vec<u8> {
    let mut deflated = Vec::new();
    let count = data.len().div_ceil(65_535);
    for (index, chunk) in data.chunks(65_535).enumerate() {
        deflated.push(u8::from(index + 1 == count)); // the last block?
        let len = chunk.len() as u16;
        deflated.extend_from_slice(&len.to_le_bytes());
        deflated.extend_from_slice(&(!len).to_le_bytes());
        deflated.extend_from_slice(chunk);
    }
    member(&deflated, crc32(data), data.len())
}

/// A gzip member of `1 + 258 * runs` zero bytes: one fixed-Huffman block of a literal zero
/// and `runs` copies of length 258 at distance 1 (13 bits each), and its length.
fn gzip_zeros(runs: usize) -> (Vec<u8>, usize) {
    let mut bits: Vec<bool> = Vec::new();
    // Header fields go least significant bit first, Huffman codes most significant first.
    let mut put = |value: u32, count: u32, huffman: bool| {
        for i in 0..count {
            bits.push(value >> if huffman { count - 1 - i } else { i } & 1 == 1);
        }
    };
    put(1, 1, false); // the last block
    put(1, 2, false); // fixed Huffman codes
    put(0x30, 8, true); // literal 0
    for _ in 0..runs {
        put(0xc5, 8, true); // length 258 (symbol 285)
        put(0, 5, true); // distance 1
    }
    put(0, 7, true); // end of block
    let deflated: Vec<u8> = (bits.chunks(8))
        .map(|byte| (byte.iter().enumerate()).fold(0, |b, (i, bit)| b | u8::from(*bit) << i))
        .collect();
    let len = 1 + 258 * runs;
    (member(&deflated, crc32(&vec![0; len]), len), len)
}

// ---- layers and images ----

/// A layer tar of `spec`, entries separated by spaces: `DIR/`, `FILE=TEXT`, `LINK=>TARGET`
/// (a hard link), `SYMLINK->TARGET`, each with `@MODE` (octal; 0755 for directories, 0644
/// otherwise) and `#SECONDS` after `T0` (its time; `T0` otherwise).
fn tar(spec: &str) -> Vec<u8> {
    let mut layer = Layer::default();
    for entry in spec.split_whitespace() {
        let (entry, mtime) = match entry.rsplit_once('#') {
            Some((entry, offset)) => (entry, T0 + offset.parse::<u64>().unwrap()),
            None => (entry, T0),
        };
        let (entry, mode) = match entry.rsplit_once('@') {
            Some((entry, mode)) => (entry, u32::from_str_radix(mode, 8).ok()),
            None => (entry, None),
        };
        use tar::EntryType::{Directory, Link, Regular, Symlink};
        let (kind, path, link, data) = if let Some((path, target)) = entry.split_once("=>") {
            (Link, path, target, "")
        } else if let Some((path, target)) = entry.split_once("->") {
            (Symlink, path, target, "")
        } else if let Some((path, data)) = entry.split_once('=') {
            (Regular, path, "", data)
        } else {
            (Directory, entry, "", "")
        };
        let mode = mode.unwrap_or(if kind == Directory { 0o755 } else { 0o644 });
        // Names over ustar's 100 bytes (a long temporary directory) in PAX records.
        let long = [("path", path), ("linkpath", link)].into_iter();
        let long: Vec<(&str, &str)> = long.filter(|(_, v)| v.len() > 100).collect();
        if !long.is_empty() {
            let mut builder = tar::Builder::new(std::mem::take(&mut layer.0));
            let records = long.iter().map(|(k, v)| (*k, v.as_bytes()));
            builder.append_pax_extensions(records).unwrap();
            layer.0 = builder.into_inner().unwrap();
            layer.0.truncate(layer.0.len() - 1024);
        }
        let mut header = Layer::header(kind, path, link, mode, mtime);
        header.set_size(data.len() as u64);
        layer = layer.append(header, data.as_bytes());
    }
    layer.bytes()
}

/// A layer tar written header by header (names as given, no checks).
#[derive(Default)]
struct Layer(Vec<u8>);

impl Layer {
    fn header(kind: tar::EntryType, path: &str, link: &str, mode: u32, mtime: u64) -> tar::Header {
        let mut header = tar::Header::new_ustar();
        let ustar = header.as_ustar_mut().unwrap();
        let (path, link) = (&path[..path.len().min(100)], &link[..link.len().min(100)]);
        ustar.name[..path.len()].copy_from_slice(path.as_bytes());
        ustar.linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_mtime(mtime);
        header.set_size(0);
        header
    }

    fn append(mut self, mut header: tar::Header, data: &[u8]) -> Self {
        header.set_cksum();
        let mut builder = tar::Builder::new(std::mem::take(&mut self.0));
        builder.append(&header, data).unwrap();
        // Without the end-of-archive blocks, added by `bytes`.
        self.0 = builder.into_inner().unwrap();
        self.0.truncate(self.0.len() - 1024);
        self
    }

    fn bytes(mut self) -> Vec<u8> {
        self.0.extend_from_slice(&[0; 1024]);
        self.0
    }
}

/// An image in a memory store, and a temporary directory to unpack it in.
struct Image {
    store: MemoryStore,
    repo: Repository,
    layers: Vec<LayerRef>,
    dir: tempfile::TempDir,
}

/// `tars` as gzip layers of an image in a memory store.
async fn image(tars: &[Vec<u8>]) -> Image {
    image_of(tars.iter().map(|t| (gzip(t), Digest::sha256(t))).collect()).await
}

/// Blobs (gzip) with the `diff_id` each is given.
async fn image_of(blobs: Vec<(Vec<u8>, Digest)>) -> Image {
    let store = MemoryStore::new();
    let repo = Repository::parse("unpack/test").unwrap();
    let mut layers = Vec::new();
    for (blob, diff_id) in blobs {
        let media = MediaType::from_static(media_type::OCI_LAYER_GZIP);
        let pushed = store.push_blob_bytes(&repo, media, Bytes::from(blob));
        let descriptor = pushed.await.unwrap();
        layers.push(LayerRef::new(descriptor, diff_id));
    }
    let dir = tempfile::tempdir().unwrap();
    Image {
        store,
        repo,
        layers,
        dir,
    }
}

impl Image {
    /// Unpacks into `name` in the image's directory; returns that path and the result.
    async fn unpack(&self, name: &str, options: &UnpackOptions) -> (PathBuf, Result<UnpackReport>) {
        let target = self.dir.path().join(name);
        let result = unpack(&self.store, &self.repo, &self.layers, &target, options).await;
        (target, result)
    }

    /// Unpacks rootless into `name`, which must succeed.
    async fn unpacked(&self, name: &str) -> PathBuf {
        let (target, result) = self.unpack(name, &rootless()).await;
        result.unwrap();
        target
    }

    async fn export(&self) -> Vec<u8> {
        self.export_with(&ExportOptions::default()).await.unwrap()
    }

    async fn export_with(&self, options: &ExportOptions) -> Result<Vec<u8>> {
        export(&self.store, &self.repo, &self.layers, Vec::new(), options).await
    }

    fn digest(&self, layer: usize) -> String {
        self.layers[layer].descriptor.digest.to_string()
    }
}

fn rootless() -> UnpackOptions {
    UnpackOptions::default().with_rootless(true)
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The permission bits and modification time of `path`.
fn mode_time(path: &Path) -> (u32, i64) {
    let meta = std::fs::symlink_metadata(path).unwrap();
    (meta.permissions().mode() & 0o7777, meta.mtime())
}

/// An error and its sources, one line each.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(&format!("\n{e}"));
        source = e.source();
    }
    text
}

/// Every path under `root` (relative) as `PATH d` for directories, `PATH l:TARGET` for
/// symlinks and `PATH CONTENT` for files, sorted, separated by spaces.
fn tree(root: &Path) -> String {
    let mut found = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.strip_prefix(root).unwrap().display().to_string();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let what = if meta.is_dir() {
                stack.push(path.clone());
                "d".to_owned()
            } else if meta.is_symlink() {
                format!("l:{}", std::fs::read_link(&path).unwrap().display())
            } else {
                std::fs::read_to_string(&path).unwrap()
            };
            found.insert(name, what);
        }
    }
    let lines: Vec<String> = found.iter().map(|(p, w)| format!("{p} {w}")).collect();
    lines.join(" ")
}

/// The entries of a tar as `PATH KIND CONTENT-OR-LINK`, separated by `|`.
fn listing(tar_bytes: &[u8]) -> String {
    let mut archive = tar::Archive::new(tar_bytes);
    let mut lines = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        let link = entry.link_name_bytes().unwrap_or_default();
        let link = String::from_utf8_lossy(&link).into_owned();
        let mut content = String::new();
        entry.read_to_string(&mut content).unwrap();
        lines.push(format!("{path} {kind:?} {content}{link}"));
    }
    lines.join("|")
}

// ---- the rules ----

/// Whiteouts and an opaque marker (after the layer's own entry) delete what lower layers
/// hold, never the layer's own entries; hard links within and across layers share an inode;
/// symlinks keep their targets as written; the target and its parents are made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whiteouts_apply_to_lower_layers_and_links_are_kept() {
    let image = image(&[
        tar("a/ a/x=lower b=lower c/ c/old=old orig=shared in=>orig"),
        tar(
            "a/y=upper a/.wh..wh..opq .wh.b b=again c/.wh.old across=>orig abs->/etc/passwd \
             rel->../orig",
        ),
    ])
    .await;
    let (target, report) = image.unpack("made/rootfs", &rootless()).await;
    let report = report.unwrap();
    assert_eq!((report.layers, report.rootless), (2, true));
    assert_eq!(report.bytes, 5 + 5 + 3 + 6 + 5 + 5);
    assert_eq!(
        tree(&target),
        "a d a/y upper abs l:/etc/passwd across shared b again c d in shared orig shared \
         rel l:../orig"
    );
    let ino = |p: &str| std::fs::metadata(target.join(p)).unwrap().ino();
    assert!(ino("orig") == ino("in") && ino("in") == ino("across"));
    assert_eq!(std::fs::metadata(target.join("orig")).unwrap().nlink(), 3);
}

/// A `diff_id` that is not the digest of the uncompressed layer fails, naming both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_diff_id_fails() {
    let wrong = Digest::sha256(b"something else");
    let image = image_of(vec![(gzip(&tar("f=content")), wrong.clone())]).await;
    let error = image.unpack("t", &rootless()).await.1.unwrap_err();
    let text = chain(&error);
    assert!(
        text.contains(&wrong.to_string()) && text.contains(&image.digest(0)),
        "{text}"
    );
}

/// A layer blob that cannot be read (here: gone from the store) fails the unpack naming it,
/// after the layers below it were applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_that_cannot_be_read_fails_naming_it() {
    let image = image(&[tar("a=1"), tar("b=2"), tar("c=3")]).await;
    let gone = image.layers[1].descriptor.digest.clone();
    image.store.delete_blob(&image.repo, &gone).await.unwrap();
    let (target, result) = image.unpack("t", &rootless()).await;
    let text = chain(&result.unwrap_err());
    assert!(
        text.contains(&format!("reading layer {gone}")) && text.contains("unknown"),
        "{text}"
    );
    assert!(
        !target.join("c").exists(),
        "a layer above the missing one was applied"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_empty_target_is_refused() {
    let image = image(&[tar("f=content")]).await;
    std::fs::write(image.dir.path().join("kept"), "kept").unwrap();
    let (target, result) = image.unpack("", &rootless()).await;
    let error = result.unwrap_err();
    assert!(matches!(error, Error::Target { .. }), "{error:?}");
    assert!(error.to_string().contains("not empty"), "{error}");
    assert_eq!(tree(&target), "kept kept");
}

/// Rootless, device nodes become empty files with the entry's mode (fifos stay fifos); as
/// root, they are made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rootless_device_nodes_become_empty_files() {
    let mut layer = Layer::default();
    for (kind, name) in [
        (tar::EntryType::Char, "null"),
        (tar::EntryType::Block, "block"),
        (tar::EntryType::Fifo, "fifo"),
    ] {
        let mut header = Layer::header(kind, name, "", 0o640, T0);
        header.set_device_major(1).unwrap();
        header.set_device_minor(3).unwrap();
        layer = layer.append(header, b"");
    }
    let image = image(&[layer.bytes()]).await;
    let target = image.unpacked("rootless").await;
    for name in ["null", "block"] {
        let meta = std::fs::symlink_metadata(target.join(name)).unwrap();
        assert!(meta.is_file() && meta.len() == 0, "{name}: {meta:?}");
        assert_eq!(mode_time(&target.join(name)), (0o640, T0 as i64), "{name}");
    }
    let fifo = std::fs::symlink_metadata(target.join("fifo")).unwrap();
    assert!(fifo.file_type().is_fifo());
    if !is_root() {
        return;
    }
    let (target, report) = image.unpack("root", &UnpackOptions::default()).await;
    assert!(!report.unwrap().rootless);
    let null = std::fs::symlink_metadata(target.join("null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
    let block = std::fs::symlink_metadata(target.join("block")).unwrap();
    assert!(block.file_type().is_block_device());
}

/// Directories get the mode and time of their entry (the last one for the path), set once
/// their contents are in, whatever later layers add to them; the root's from a `./` entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_times_and_modes_are_those_of_their_entries() {
    let image = image(&[
        tar(
            "./@751#1 ro/@555#2 ro/a=a#3 nested/#4 nested/sub/@700#5 nested/sub/f=f#6 \
             again/@700#7 again/old=old#8",
        ),
        tar("ro/b=b#20 nested/sub/g=g#21 again/@711#22 again/new=new#23"),
    ])
    .await;
    let target = image.unpacked("t").await;
    let expected = ". 751 1 ro 555 2 nested 755 4 nested/sub 700 5 again 711 22 ro/a 644 3 \
                    ro/b 644 20 again/old 644 8";
    let expected: Vec<&str> = expected.split(' ').collect();
    for spec in expected.chunks(3) {
        let mode = u32::from_str_radix(spec[1], 8).unwrap();
        let mtime = (T0 + spec[2].parse::<u64>().unwrap()) as i64;
        let path = target.join(spec[0]);
        assert_eq!(
            mode_time(&path),
            (mode, mtime),
            "the mode and time of {}",
            spec[0]
        );
    }
}

/// A directory deleted by a whiteout (in the next layer, or an opaque parent), then made
/// again only as the parent of a file, is a new directory (0755, as parents are made), not
/// the deleted one: the deleted entry's mode and time must not come back at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_directory_made_again_as_a_parent_gets_no_old_metadata() {
    let image = image(&[
        tar("deleted/@700#1 deleted/x=x opq/ opq/sub/@700#1 opq/sub/x=x"),
        tar(".wh.deleted opq/.wh..wh..opq opq/sub/y=y"),
        tar("deleted/y=y"),
    ])
    .await;
    let target = image.unpacked("t").await;
    assert_eq!(
        tree(&target),
        "deleted d deleted/y y opq d opq/sub d opq/sub/y y"
    );
    let stale: Vec<String> = ["deleted", "opq/sub"]
        .into_iter()
        .map(|path| (path, mode_time(&target.join(path))))
        .filter(|(_, (mode, mtime))| *mode != 0o755 || *mtime == (T0 + 1) as i64)
        .map(|(path, (mode, mtime))| format!("{path}: mode {mode:o}, time {mtime}"))
        .collect();
    assert!(
        stale.is_empty(),
        "the deleted directories' metadata came back (0700, {}):\n{}",
        T0 + 1,
        stale.join("\n")
    );
}

/// A directory replaced by a symlink to another directory: the replaced directory's
/// subdirectory metadata must not be set, through the symlink, on the other directory's
/// subdirectory of the same name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_directory_s_metadata_does_not_land_on_another_through_a_symlink() {
    let image = image(&[tar("a/ a/sub/@700#1"), tar("a->b b/#10 b/sub/@751#11")]).await;
    let target = image.unpacked("t").await;
    let found = mode_time(&target.join("b/sub"));
    assert_eq!(
        found,
        (0o751, (T0 + 11) as i64),
        "b/sub has a/sub's mode and time"
    );
}

/// `user.*` attributes are set on files and directories.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_attributes_are_set() {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, kind) in [
        ("d/", tar::EntryType::Directory),
        ("d/f", tar::EntryType::Regular),
    ] {
        let records = [("SCHILY.xattr.user.test", &b"value\0binary"[..])];
        builder.append_pax_extensions(records).unwrap();
        let mut header = Layer::header(kind, path, "", 0o755, T0);
        header.set_cksum();
        builder.append(&header, &b""[..]).unwrap();
    }
    let image = image(&[builder.into_inner().unwrap()]).await;
    let target = image.unpacked("t").await;
    for path in ["d", "d/f"] {
        let mut value = [0u8; 64];
        let len = rustix::fs::getxattr(target.join(path), "user.test", &mut value[..]).unwrap();
        assert_eq!(&value[..len], b"value\0binary", "{path}");
    }
}

/// As root, owners are set (set-id bits kept after the chown); rootless, they are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_are_set_as_root_only() {
    let mut header = Layer::header(tar::EntryType::Regular, "owned", "", 0o4755, T0);
    header.set_uid(1000);
    header.set_gid(1001);
    header.set_size(2);
    let image = image(&[Layer::default().append(header, b"hi").bytes()]).await;
    let owner = |target: &Path| {
        let meta = std::fs::metadata(target.join("owned")).unwrap();
        (meta.uid(), meta.gid(), meta.permissions().mode() & 0o7777)
    };
    let me = rustix::process::geteuid().as_raw();
    let rootless = owner(&image.unpacked("rootless").await);
    assert_eq!(rootless.0, me);
    if is_root() {
        let (target, result) = image.unpack("root", &UnpackOptions::default()).await;
        result.unwrap();
        assert_eq!(owner(&target), (1000, 1001, 0o4755));
    }
}

// ---- hostile layers ----

/// `..` and absolute names, and a symlink out followed by a file, stay in the target; a
/// `.` that is a symlink is refused naming the entry and the layer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_stay_inside_or_are_refused() {
    let outside_dir = tempfile::tempdir().unwrap();
    let outside = outside_dir.path().to_str().unwrap();
    let image1 = image(&[tar(&format!("../../up=1 {outside}/abs=2 up->/.. up/x=3"))]).await;
    let target = image1.unpacked("t").await;
    assert!(target.join(&outside[1..]).join("abs").is_file());
    assert_eq!(std::fs::read_to_string(target.join("x")).unwrap(), "3");

    let image2 = image(&[tar(&format!(".->{outside} pwned=1"))]).await;
    match image2.unpack("t", &rootless()).await.1.unwrap_err() {
        Error::Apply { layer, entry, .. } => {
            assert_eq!((layer.to_string(), entry.as_str()), (image2.digest(0), "."));
        }
        other => panic!("{other:?}"),
    }
    let image3 = image(&[tar(&format!("evil->{outside} evil/pwned=1"))]).await;
    let error = image3.unpack("t", &rootless()).await.1.unwrap_err();
    assert!(
        matches!(&error, Error::Apply { entry, .. } if entry == "evil/pwned"),
        "{error:?}"
    );
    let written = std::fs::read_dir(outside).unwrap().count();
    assert_eq!(written, 0, "written outside");
}

/// A whiteout of `..` or `.` (`.wh...`, `.wh..`: at the top, through a symlink to the top,
/// or in a directory) is refused naming the entry, before anything is removed: `.wh...` at
/// the top emptied the directory the target is in. What is beside the target stays, and the
/// failed unpack leaves no target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whiteouts_of_dot_and_dot_dot_are_refused_and_remove_nothing() {
    for hostile in [".wh...=x", ".wh..=x", "top->/ top/.wh...=x", "d/.wh...=x"] {
        let image = image(&[tar("kept=lower d/ d/f=lower"), tar(hostile)]).await;
        let beside = image.dir.path().join("beside");
        std::fs::write(&beside, b"not the unpack's").unwrap();

        let (target, result) = image.unpack("t", &rootless()).await;
        let text = chain(&result.unwrap_err());
        assert!(
            text.contains("a whiteout that names no entry"),
            "{hostile}: {text}"
        );
        assert!(text.contains(&image.digest(1)), "{hostile}: {text}");
        assert_eq!(
            std::fs::read(&beside).unwrap(),
            b"not the unpack's",
            "{hostile}"
        );
        assert!(!target.exists(), "{hostile}");
    }
}

// ---- limits ----

/// The files of an image over `max_image_bytes` stop the unpack naming the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bytes_of_files_of_an_image_are_limited() {
    let image = image(&[tar("a=12345678"), tar("b=12345678")]).await;
    let options = rootless().with_max_image_bytes(10);
    let error = image.unpack("t", &options).await.1.unwrap_err();
    assert!(matches!(error, Error::Invalid { .. }), "{error:?}");
    let text = error.to_string();
    assert!(
        text.contains("limit") && text.contains(&image.digest(1)),
        "{text}"
    );
}

/// Entries cost inodes whatever their size: an image over `max_image_entries` (empty files,
/// directories) stops at the limit, naming the layer that passed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_entries_of_an_image_are_limited() {
    let image = image(&[tar("a/ a/b= c="), tar("d/ d/e= f/")]).await;
    let options = rootless().with_max_image_entries(5);
    let error = image.unpack("t", &options).await.1.unwrap_err();
    assert!(matches!(error, Error::Invalid { .. }), "{error:?}");
    let text = error.to_string();
    assert!(
        text.contains("entries (the limit)") && text.contains(&image.digest(1)),
        "{text}"
    );
    let (_, done) = image
        .unpack("u", &rootless().with_max_image_entries(6))
        .await;
    done.unwrap();
}

/// The directories an entry's path implies without entries of their own are inodes too, and
/// are remembered for the layer: they count against the image's entries and names. A file
/// 5 levels deep is 1 entry and 4 directories.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_directories_paths_imply_are_counted() {
    let image = image(&[tar("a/b/c/d/f=x"), tar("a/b/c/d/g=y")]).await;
    let error = image
        .unpack("t", &rootless().with_max_image_entries(5))
        .await
        .1
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("more than 5 entries (the limit), counting 4 directories its paths imply")
            && text.contains(&image.digest(1)),
        "{text}"
    );
    image
        .unpack("u", &rootless().with_max_image_entries(6))
        .await
        .1
        .unwrap();

    // Names: the parents a layer's paths imply are remembered for the layer, and count
    // against its limit on names: 7, 5, 3 and 1 bytes here, besides the entry's 9.
    let limits = LayerLimits::default().with_max_metadata(15);
    let text = chain(
        &image
            .unpack("v", &rootless().with_limits(limits))
            .await
            .1
            .unwrap_err(),
    );
    assert!(
        text.contains("imply more than 15 bytes of directories' paths")
            && text.contains(&image.digest(0)),
        "{text}"
    );
    let limits = limits.with_max_metadata(16);
    image
        .unpack("w", &rootless().with_limits(limits))
        .await
        .1
        .unwrap();
}

/// A layer whose entries are deep paths that share nothing but their first part: each makes
/// the directories below that part, inside one another, and every path stays inside the
/// target, through a symlink the layer below put in the middle as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_missing_parents_are_made_inside_the_target() {
    let deep = |top: &str, leaf: &str| {
        let middle: Vec<String> = (0..40).map(|i| format!("d{i}")).collect();
        format!("{top}/{}/{leaf}=x", middle.join("/"))
    };
    let outside = tempfile::tempdir().unwrap();
    let lower = format!(
        "base/ base/real/ base/link->/base/real out->{}",
        outside.path().display()
    );
    let upper = [
        deep("p0", "f"),
        deep("p1", "f"),
        deep("base/link", "f"),
        deep("base/link/d0/d1", "g"),
    ]
    .join(" ");
    let layered = image(&[tar(&lower), tar(&upper)]).await;
    let target = layered.unpacked("t").await;
    let middle: Vec<String> = (0..40).map(|i| format!("d{i}")).collect();
    let middle = middle.join("/");
    for path in [
        format!("p0/{middle}/f"),
        format!("p1/{middle}/f"),
        format!("base/real/{middle}/f"),
        format!("base/real/d0/d1/{middle}/g"),
    ] {
        assert_eq!(std::fs::read(target.join(&path)).unwrap(), b"x", "{path}");
    }
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    // Under a symlink to outside, the parents are looked for inside the target, where they
    // are missing: refused, as before (`unpack_hostile` has the rest), and nothing outside.
    let outward = image(&[tar(&lower), tar(&deep("out/d0", "f"))]).await;
    let text = chain(&outward.unpack("u", &rootless()).await.1.unwrap_err());
    assert!(text.contains("out/d0/d0/d1"), "{text}");
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
}

/// The names of an image are counted over all its layers (directories' are remembered until
/// the end): each layer within its own limit, all of them over the image's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_names_of_an_image_are_limited() {
    let image = image(&[tar("aaaaaaaa/ bbbbbbbb="), tar("cccccccc/ dddddddd=")]).await;
    let limits = LayerLimits::default()
        .with_max_metadata(16)
        .with_max_image_metadata(31);
    let error = image
        .unpack("t", &rootless().with_limits(limits))
        .await
        .1
        .unwrap_err();
    let text = chain(&error);
    assert!(
        text.contains("more than 31 bytes of paths") && text.contains(&image.digest(1)),
        "{text}"
    );
    let limits = limits.with_max_image_metadata(32);
    image
        .unpack("u", &rootless().with_limits(limits))
        .await
        .1
        .unwrap();
}

/// A gzip layer of 3 GiB of zeros (20 MB compressed): one file of nearly all of it. The
/// image limit stops it at the file's header, the layer limit after that many bytes; the
/// `diff_id` is never reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decompression_bomb_stops_at_a_limit() {
    let (zeros, zeros_len) = gzip_zeros(4064);
    let members = 3100;
    let size = ((zeros_len * members) as u64 - 1024) / 512 * 512;
    let mut header = Layer::header(tar::EntryType::Regular, "bomb", "", 0o644, T0);
    header.set_size(size);
    header.set_cksum();
    let mut blob = gzip(header.as_bytes());
    blob.reserve(zeros.len() * members);
    for _ in 0..members {
        blob.extend_from_slice(&zeros);
    }
    assert!(blob.len() < 25 << 20 && size > 3 << 30);
    let image = image_of(vec![(blob, Digest::sha256(b"never checked"))]).await;

    let options = rootless().with_max_image_bytes(1 << 30);
    let error = image.unpack("image", &options).await.1.unwrap_err();
    assert!(matches!(error, Error::Invalid { .. }), "{error:?}");
    assert!(error.to_string().contains("limit"), "{error}");

    let limit = 64 << 20;
    let options = rootless().with_max_layer_bytes(limit);
    let (target, result) = image.unpack("layer", &options).await;
    let text = chain(&result.unwrap_err());
    assert!(
        text.contains("limit") && text.contains(&image.digest(0)),
        "{text}"
    );
    assert!(
        !target.exists(),
        "a failed unpack removes the directory it made"
    );
}

/// A failed unpack leaves its directory as it found it: made by the unpack, it is gone; there
/// before (empty), it is empty again. What the layers made there goes, a tree several levels
/// deep, a symlink to outside (removed, not followed) and a read-only file among it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_unpack_leaves_its_directory_as_it_found_it() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("kept"), b"not the unpack's").unwrap();
    let link = format!("out->{}", outside.path().display());
    let image = image(&[
        tar(&format!("a/ a/b/ a/b/c/ a/b/c/f=deep ro=x@0444 {link}")),
        tar("x/ x/y=1 x/z=2"),
    ])
    .await;
    let options = rootless().with_max_image_entries(8);

    let (target, result) = image.unpack("new", &options).await;
    let text = chain(&result.unwrap_err());
    assert!(text.contains("more than 8 entries"), "{text}");
    assert!(!target.exists());

    let target = image.dir.path().join("there");
    std::fs::create_dir(&target).unwrap();
    let (target, result) = image.unpack("there", &options).await;
    result.unwrap_err();
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);
    assert_eq!(
        std::fs::read(outside.path().join("kept")).unwrap(),
        b"not the unpack's"
    );

    image
        .unpack("there", &options.with_max_image_entries(9))
        .await
        .1
        .unwrap();
    assert_eq!(std::fs::read(target.join("a/b/c/f")).unwrap(), b"deep");
}

// ---- export ----

/// Export's limits are its caller's: a layer over the uncompressed bytes allowed, or over the
/// entries allowed, is refused with the layer named; within them the same image exports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_takes_its_limits_from_its_options() {
    let image = image(&[tar("a=1 b=2 c=3"), tar("d=4")]).await;
    let whole = image.export().await;

    let small = ExportOptions::default().with_max_layer_bytes(2048);
    let text = chain(&image.export_with(&small).await.unwrap_err());
    assert!(
        text.contains("limit") && text.contains(&image.digest(0)),
        "{text}"
    );
    let few = ExportOptions::default().with_limits(LayerLimits::default().with_max_entries(2));
    let text = chain(&image.export_with(&few).await.unwrap_err());
    assert!(
        text.contains("more than 2 entries") && text.contains(&image.digest(0)),
        "{text}"
    );

    let enough = ExportOptions::default()
        .with_max_layer_bytes(8192)
        .with_limits(LayerLimits::default().with_max_entries(3));
    assert_eq!(image.export_with(&enough).await.unwrap(), whole);
}

/// A hard link whose target a later layer removed is exported as a regular file with the
/// content; a second link to the same target links to it; whiteouts are applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_makes_a_file_of_a_link_whose_target_was_removed() {
    let image = image(&[
        tar("d/ d/target=content d/link=>d/target d/second=>d/target gone=x"),
        tar("d/.wh.target .wh.gone"),
    ])
    .await;
    let exported = image.export().await;
    assert_eq!(
        listing(&exported),
        "d/ Directory |d/link Regular content|d/second Link d/link"
    );
    assert_eq!(image.export().await, exported, "the same bytes twice");
    let target = image.unpacked("t").await;
    assert_eq!(tree(&target), "d d d/link content d/second content");
}

/// A writer that counts the writes it is given.
#[derive(Default)]
struct CountingWriter {
    bytes: Vec<u8>,
    writes: usize,
}

impl std::io::Write for CountingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writes += 1;
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Export gathers the tar's small pieces (headers, contents, padding) before writing them:
/// an unbuffered file or stdout is given a few large writes, not several per file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_writes_in_large_pieces() {
    let spec: Vec<String> = (0..2000).map(|i| format!("dir/f{i}={i}")).collect();
    let image = image(&[tar(&spec.join(" "))]).await;
    let out = CountingWriter::default();
    let out = export(
        &image.store,
        &image.repo,
        &image.layers,
        out,
        &ExportOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(out.bytes, image.export().await, "the same bytes");
    // 2000 files of a header and a padded block each: about 2 MiB.
    let most = out.bytes.len() / (128 << 10) + 2;
    assert!(
        out.writes <= most,
        "{} writes for {} bytes",
        out.writes,
        out.bytes.len()
    );
}

/// `image_layers` pairs layers with the config's `diff_ids`, and refuses a count that
/// disagrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_layers_needs_a_diff_id_per_layer() {
    let image = image(&[tar("a=1"), tar("b=2")]).await;
    let descriptors: Vec<_> = image.layers.iter().map(|l| l.descriptor.clone()).collect();
    let media = MediaType::from_static(media_type::OCI_CONFIG);
    let config = image
        .store
        .push_blob_bytes(&image.repo, media, Bytes::from_static(b"{}"));
    let manifest = ImageManifest::new(config.await.unwrap(), descriptors);
    let ids: Vec<String> = image.layers.iter().map(|l| l.diff_id.to_string()).collect();
    let config = serde_json::json!({"rootfs": {"type": "layers", "diff_ids": ids}});
    let layers = image_layers(&manifest, &serde_json::to_vec(&config).unwrap()).unwrap();
    assert_eq!(layers, image.layers);
    let short = serde_json::json!({"rootfs": {"type": "layers", "diff_ids": [ids[0]]}});
    let error = image_layers(&manifest, &serde_json::to_vec(&short).unwrap()).unwrap_err();
    assert!(matches!(error, Error::Invalid { .. }), "{error:?}");
}

/// A layer that repeats an opaque whiteout of a directory it filled: the first empties the
/// directory of lower contents, the others have nothing to do and do nothing. Each used to
/// list and walk the whole tree the layer made there, so 10,000 files and 10,000 repeats
/// took 100 million calls (minutes; 5,000 of each took 42 s); here they take moments (bounded
/// at 60 s, a hang for this test), and the result is the layer's files without the lower
/// one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_opaque_whiteouts_empty_a_directory_once() {
    let files: Vec<String> = (0..10_000).map(|n| format!("d/f{n}=x")).collect();
    let repeats = vec!["d/.wh..wh..opq"; 10_000];
    let upper = tar(&format!("{} {}", files.join(" "), repeats.join(" ")));
    let image = image(&[tar("d/ d/lower=old"), upper]).await;
    let unpacked = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        image.unpack("rootfs", &rootless()),
    )
    .await
    .expect("still unpacking after 60 s");
    let (target, report) = unpacked;
    report.unwrap();
    assert!(!target.join("d/lower").exists());
    assert_eq!(std::fs::read_dir(target.join("d")).unwrap().count(), 10_000);
}
