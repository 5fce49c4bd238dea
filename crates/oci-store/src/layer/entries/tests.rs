use super::*;
use oci_types::Algorithm;

fn layer() -> Digest {
    let mut digester = oci_types::Digester::new(Algorithm::Sha256);
    digester.update(b"layer");
    digester.finish()
}

/// A tar of raw entries: (name, type, data), written with ustar headers as given.
fn tar_of(entries: &[(&[u8], tar::EntryType, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, kind, data) in entries {
        let mut header = tar::Header::new_ustar();
        header.as_ustar_mut().unwrap().name[..name.len()].copy_from_slice(name);
        header.set_entry_type(*kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append(&header, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

fn collect(tar: &[u8], limits: &LayerLimits) -> Result<Vec<(String, EntryKind, Vec<u8>)>> {
    let mut seen = Vec::new();
    read_entries(&layer(), tar, limits, |entry| {
        let mut data = Vec::new();
        entry.data.read_to_end(&mut data).unwrap();
        seen.push((
            String::from_utf8_lossy(&entry.path).into_owned(),
            entry.kind,
            data,
        ));
        Ok(())
    })?;
    Ok(seen)
}

#[test]
fn names_are_taken_inside_the_root_and_whiteouts_recognised() {
    use tar::EntryType::{Directory, Regular, Symlink};
    let tar = tar_of(&[
        (b"./etc/", Directory, b""),
        (b"/etc/passwd", Regular, b"root"),
        (b"../../../escape", Regular, b"x"),
        (b"a/b/../../c", Regular, b""),
        (b"etc/.wh.shadow", Regular, b""),
        (b"var/.wh..wh..opq", Regular, b""),
        (b".wh..wh.plnk", Regular, b""),
        (b"link", Symlink, b""),
    ]);
    let seen = collect(&tar, &LayerLimits::default()).unwrap();
    let summary: Vec<(&str, EntryKind)> = seen.iter().map(|(p, k, _)| (p.as_str(), *k)).collect();
    assert_eq!(
        summary,
        [
            ("etc", EntryKind::Directory),
            ("etc/passwd", EntryKind::File),
            ("escape", EntryKind::File),
            ("c", EntryKind::File),
            ("etc/shadow", EntryKind::Whiteout),
            ("var", EntryKind::Opaque),
            ("link", EntryKind::Symlink),
        ]
    );
    assert_eq!(seen[1].2, b"root");
    assert_eq!(clean(b"/../a//./b/"), b"a/b");
}

/// A whiteout must name an entry of its directory: `.wh.` names nothing, and `.wh..` and
/// `.wh...` would delete the directory itself or the one above it (above the root, at the
/// top). Each is refused naming the entry, at the top or below.
#[test]
fn a_whiteout_of_nothing_of_dot_or_of_dot_dot_is_refused() {
    use tar::EntryType::{Directory, Regular};
    for name in [
        ".wh.",
        ".wh..",
        ".wh...",
        "d/.wh..",
        "d/.wh...",
        "./d/../.wh...",
    ] {
        let tar = tar_of(&[(b"d/", Directory, b""), (name.as_bytes(), Regular, b"")]);
        let error = collect(&tar, &LayerLimits::default()).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains(name) && text.contains("a whiteout that names no entry"),
            "{name}: {text}"
        );
    }
    // Names that only start with dots are still whiteouts of those names.
    let tar = tar_of(&[(b".wh....", Regular, b""), (b".wh..profile", Regular, b"")]);
    let seen = collect(&tar, &LayerLimits::default()).unwrap();
    let summary: Vec<(&str, EntryKind)> = seen.iter().map(|(p, k, _)| (p.as_str(), *k)).collect();
    assert_eq!(
        summary,
        [
            ("...", EntryKind::Whiteout),
            (".profile", EntryKind::Whiteout)
        ]
    );
}

/// A PAX header whose size record disagrees with the ustar size (CVE-2026-33055: readers
/// disagreed on where the next entry starts) is refused, naming the entry.
#[test]
fn a_pax_size_that_disagrees_with_the_header_is_refused() {
    let mut builder = tar::Builder::new(Vec::new());
    builder
        .append_pax_extensions([("size", b"1024".as_slice())])
        .unwrap();
    let mut header = tar::Header::new_ustar();
    header.set_path("smuggled").unwrap();
    header.set_size(4);
    header.set_cksum();
    builder.append(&header, b"abcd".as_slice()).unwrap();
    let tar = builder.into_inner().unwrap();
    let error = collect(&tar, &LayerLimits::default()).unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("smuggled") && text.contains("disagrees"),
        "{text}"
    );
}

#[test]
fn limits_stop_hostile_archives() {
    let mut builder = tar::Builder::new(Vec::new());
    let huge = vec![b'a'; 5000];
    builder
        .append_pax_extensions([("comment", huge.as_slice())])
        .unwrap();
    let mut header = tar::Header::new_ustar();
    header.set_path("f").unwrap();
    header.set_size(0);
    header.set_cksum();
    builder.append(&header, [].as_slice()).unwrap();
    let tar = builder.into_inner().unwrap();
    let limits = LayerLimits::default().with_max_pax(1000);
    let text = collect(&tar, &limits).unwrap_err().to_string();
    assert!(
        text.contains("PAX header") && text.contains("limit"),
        "{text}"
    );

    let long = vec![b'n'; 300];
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(0);
    builder
        .append_data(
            &mut header,
            std::str::from_utf8(&long).unwrap(),
            [].as_slice(),
        )
        .unwrap();
    let tar = builder.into_inner().unwrap();
    let limits = LayerLimits::default().with_max_path(255);
    let text = collect(&tar, &limits).unwrap_err().to_string();
    assert!(
        text.contains("GNU long name") && text.contains("limit"),
        "{text}"
    );

    // Deep paths: each level is a directory to make and remember.
    let deep = tar_of(&[(b"a/b/c/d/e/f/g/h/i", tar::EntryType::Regular, b"")]);
    let limits = LayerLimits::default().with_max_depth(8);
    let text = collect(&deep, &limits).unwrap_err().to_string();
    assert!(
        text.contains("a path of 9 components is over the limit of 8"),
        "{text}"
    );
    let limits = LayerLimits::default().with_max_depth(9);
    assert_eq!(collect(&deep, &limits).unwrap().len(), 1);
    assert_eq!(LayerLimits::default().max_depth, 128);

    let many: Vec<(&[u8], tar::EntryType, &[u8])> =
        vec![(b"f".as_slice(), tar::EntryType::Regular, b"".as_slice()); 11];
    let limits = LayerLimits::default().with_max_entries(10);
    let text = collect(&tar_of(&many), &limits).unwrap_err().to_string();
    assert!(text.contains("more than 10 entries"), "{text}");

    // Names in all: 11 entries of 8 bytes (paths and link targets count).
    let named: Vec<(&[u8], tar::EntryType, &[u8])> = vec![
        (
            b"12345678".as_slice(),
            tar::EntryType::Regular,
            b"".as_slice()
        );
        11
    ];
    let limits = LayerLimits::default().with_max_metadata(80);
    let text = collect(&tar_of(&named), &limits).unwrap_err().to_string();
    assert!(
        text.contains("more than 80 bytes of paths, link targets and extended attributes"),
        "{text}"
    );
    let limits = LayerLimits::default().with_max_metadata(88);
    assert_eq!(collect(&tar_of(&named), &limits).unwrap().len(), 11);
}

#[test]
fn a_tar_cut_short_is_an_error() {
    let tar = tar_of(&[(b"big", tar::EntryType::Regular, &[7u8; 4000])]);
    let cut = &tar[..1500];
    let result = read_entries(&layer(), cut, &LayerLimits::default(), |entry| {
        let mut data = Vec::new();
        entry
            .data
            .read_to_end(&mut data)
            .map_err(|e| Error::io("reading", e))?;
        if data.len() as u64 != entry.size {
            return Err(Error::io("reading", io::Error::other("short")));
        }
        Ok(())
    });
    assert!(result.is_err());
}

#[test]
fn long_names_and_xattrs_come_from_pax_records() {
    let long = "d/".repeat(80) + "file";
    let mut builder = tar::Builder::new(Vec::new());
    builder
        .append_pax_extensions([
            ("path", long.as_bytes()),
            ("SCHILY.xattr.user.k", b"v".as_slice()),
        ])
        .unwrap();
    let mut header = tar::Header::new_ustar();
    header.set_path("truncated").unwrap();
    header.set_size(1);
    header.set_cksum();
    builder.append(&header, b"x".as_slice()).unwrap();
    let tar = builder.into_inner().unwrap();
    let mut xattrs = Vec::new();
    let mut paths = Vec::new();
    read_entries(&layer(), tar.as_slice(), &LayerLimits::default(), |entry| {
        paths.push(entry.path.clone());
        xattrs.extend(entry.xattrs.clone());
        Ok(())
    })
    .unwrap();
    assert_eq!(paths, [long.into_bytes()]);
    assert_eq!(xattrs, [("user.k".to_owned(), b"v".to_vec())]);
}
