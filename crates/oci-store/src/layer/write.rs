//! Writing layer tar entries the one way hoist writes them: ustar headers, PAX records where
//! ustar cannot hold a value, in a fixed order, so that the same entries give the same bytes.
//!
//! - Names are relative, `/`-separated, directories with a trailing `/`; one that does not
//!   fit ustar's name (100 bytes) or name and prefix (155 + 100, split at a `/`) goes into a
//!   PAX `path` record, the header keeping its first 100 bytes.
//! - A link target over 100 bytes goes into `linkpath`; a size of 8 GiB or more into `size`
//!   and ids over 2097151 into `uid`/`gid`, the header holding the same value in base-256 (as
//!   GNU tar writes it), so readers of either agree; extended attributes into
//!   `SCHILY.xattr.NAME` in the order given.
//! - No user or group names, no access or change times; device numbers for devices only.

use std::io::{self, Read, Write};

use tar::{EntryType, Header};

use super::entries::{EntryKind, OPAQUE_WHITEOUT, WHITEOUT_PREFIX};

/// ustar numeric fields of 8 bytes hold at most this (7 octal digits).
const MAX_USTAR_ID: u64 = 0o7_777_777;
/// ustar's 12-byte size field holds less than 8 GiB (11 octal digits).
const MAX_USTAR_SIZE: u64 = 0o77_777_777_777;

/// An entry to write: what [`read_entries`](super::read_entries) gives, without the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryMeta<'a> {
    /// The path in the image (for a whiteout: the path deleted; for an opaque whiteout: the
    /// directory made opaque).
    pub path: &'a [u8],
    /// What it is.
    pub kind: EntryKind,
    /// A symlink's target, or a hard link's target path.
    pub link: Option<&'a [u8]>,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: u64,
    /// Bytes of data (files only).
    pub size: u64,
    /// Device numbers (devices only).
    pub device: (u32, u32),
    /// Extended attributes, in the order they are written.
    pub xattrs: &'a [(String, Vec<u8>)],
}

/// Appends `entry` with `data` (exactly `entry.size` bytes for a file, nothing otherwise).
pub fn append_entry<W: Write>(
    builder: &mut tar::Builder<W>,
    entry: &EntryMeta<'_>,
    data: impl Read,
) -> io::Result<()> {
    let (header, pax) = header_for(entry)?;
    if !pax.is_empty() {
        builder.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
    }
    if header.entry_size()? == 0 {
        builder.append(&header, io::empty())
    } else {
        builder.append(&header, data)
    }
}

/// PAX records: key and value, in the order they are written.
type PaxRecords = Vec<(String, Vec<u8>)>;

/// The ustar header of an entry and the PAX records it needs.
fn header_for(entry: &EntryMeta<'_>) -> io::Result<(Header, PaxRecords)> {
    let mut header = Header::new_ustar();
    let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
    let mut name = match entry.kind {
        EntryKind::Whiteout => whiteout_name(entry.path, None),
        EntryKind::Opaque => whiteout_name(entry.path, Some(OPAQUE_WHITEOUT)),
        _ => entry.path.to_vec(),
    };
    if entry.kind == EntryKind::Directory {
        name.push(b'/');
    }
    if !set_ustar_name(&mut header, &name) {
        pax.push(("path".to_owned(), name.clone()));
        set_ustar_name(&mut header, &name[..name.len().min(100)]);
    }
    let entry_type = match entry.kind {
        EntryKind::File | EntryKind::Whiteout | EntryKind::Opaque => EntryType::Regular,
        EntryKind::Directory => EntryType::Directory,
        EntryKind::Symlink => EntryType::Symlink,
        EntryKind::HardLink => EntryType::Link,
        EntryKind::CharDevice => EntryType::Char,
        EntryKind::BlockDevice => EntryType::Block,
        EntryKind::Fifo => EntryType::Fifo,
    };
    header.set_entry_type(entry_type);
    if let Some(target) = entry
        .link
        .filter(|_| matches!(entry.kind, EntryKind::Symlink | EntryKind::HardLink))
    {
        if target.len() <= 100 {
            header.set_link_name_literal(target)?;
        } else {
            pax.push(("linkpath".to_owned(), target.to_vec()));
            header.set_link_name_literal(&target[..100])?;
        }
    }
    if matches!(entry.kind, EntryKind::CharDevice | EntryKind::BlockDevice) {
        header.set_device_major(entry.device.0)?;
        header.set_device_minor(entry.device.1)?;
    }
    let size = if entry.kind == EntryKind::File {
        entry.size
    } else {
        0
    };
    header.set_size(size);
    if size > MAX_USTAR_SIZE {
        pax.push(("size".to_owned(), size.to_string().into_bytes()));
    }
    header.set_uid(entry.uid);
    if entry.uid > MAX_USTAR_ID {
        pax.push(("uid".to_owned(), entry.uid.to_string().into_bytes()));
    }
    header.set_gid(entry.gid);
    if entry.gid > MAX_USTAR_ID {
        pax.push(("gid".to_owned(), entry.gid.to_string().into_bytes()));
    }
    header.set_mode(entry.mode & 0o7777);
    header.set_mtime(entry.mtime);
    for (key, value) in entry.xattrs {
        pax.push((format!("SCHILY.xattr.{key}"), value.clone()));
    }
    header.set_cksum();
    Ok((header, pax))
}

/// `dir/.wh.name` for a deleted `dir/name`, or `dir/.wh..wh..opq` for an opaque `dir`.
fn whiteout_name(path: &[u8], opaque: Option<&[u8]>) -> Vec<u8> {
    let (parent, name) = match opaque {
        Some(marker) => (path, marker.to_vec()),
        None => {
            let (parent, name) = super::split_name(path);
            let mut whiteout = WHITEOUT_PREFIX.to_vec();
            whiteout.extend_from_slice(name);
            (parent, whiteout)
        }
    };
    let mut full = parent.to_vec();
    if !full.is_empty() {
        full.push(b'/');
    }
    full.extend_from_slice(&name);
    full
}

/// Puts `name` in ustar's name field, or split between prefix and name at a `/`; false when
/// it fits neither way.
fn set_ustar_name(header: &mut Header, name: &[u8]) -> bool {
    let Some(ustar) = header.as_ustar_mut() else {
        return false;
    };
    ustar.name = [0; 100];
    ustar.prefix = [0; 155];
    if name.len() <= ustar.name.len() {
        ustar.name[..name.len()].copy_from_slice(name);
        return true;
    }
    // The last `/` that leaves a prefix of at most 155 bytes and a name of at most 100; a
    // directory's trailing `/` stays with its name.
    let search = &name[..name.len() - 1];
    let split = search
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, b)| **b == b'/')
        .map(|(i, _)| i)
        .find(|&i| i > 0 && i <= 155 && name.len() - i - 1 <= 100);
    let Some(split) = split else {
        return false;
    };
    ustar.prefix[..split].copy_from_slice(&name[..split]);
    let rest = &name[split + 1..];
    ustar.name[..rest.len()].copy_from_slice(rest);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::{LayerLimits, read_entries};

    fn meta(path: &[u8], kind: EntryKind) -> EntryMeta<'_> {
        EntryMeta {
            path,
            kind,
            link: None,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 1_700_000_000,
            size: 0,
            device: (0, 0),
            xattrs: &[],
        }
    }

    #[test]
    fn what_is_written_reads_back() {
        // Over the 100 bytes of a ustar name, within the 128 components a layer may have.
        let long = "xyz/".repeat(60) + "end";
        let split = "p".repeat(120) + "/" + &"n".repeat(90);
        let xattrs = [("user.a".to_owned(), b"1".to_vec())];
        let mut builder = tar::Builder::new(Vec::new());
        let mut file = meta(b"etc/file", EntryKind::File);
        file.size = 3;
        file.xattrs = &xattrs;
        file.uid = 3_000_000;
        append_entry(
            &mut builder,
            &meta(b"etc", EntryKind::Directory),
            io::empty(),
        )
        .unwrap();
        append_entry(&mut builder, &file, b"abc".as_slice()).unwrap();
        append_entry(
            &mut builder,
            &meta(long.as_bytes(), EntryKind::File),
            io::empty(),
        )
        .unwrap();
        append_entry(
            &mut builder,
            &meta(split.as_bytes(), EntryKind::Directory),
            io::empty(),
        )
        .unwrap();
        append_entry(
            &mut builder,
            &meta(b"etc/gone", EntryKind::Whiteout),
            io::empty(),
        )
        .unwrap();
        append_entry(&mut builder, &meta(b"var", EntryKind::Opaque), io::empty()).unwrap();
        let tar = builder.into_inner().unwrap();
        let digest = oci_types::Digest::parse(&format!("sha256:{}", "0".repeat(64))).unwrap();
        let mut seen = Vec::new();
        read_entries(&digest, tar.as_slice(), &LayerLimits::default(), |entry| {
            seen.push((
                String::from_utf8(entry.path.clone()).unwrap(),
                entry.kind,
                entry.uid,
                entry.xattrs.clone(),
            ));
            Ok(())
        })
        .unwrap();
        let paths: Vec<(&str, EntryKind)> = seen.iter().map(|s| (s.0.as_str(), s.1)).collect();
        assert_eq!(
            paths,
            [
                ("etc", EntryKind::Directory),
                ("etc/file", EntryKind::File),
                (long.as_str(), EntryKind::File),
                (split.as_str(), EntryKind::Directory),
                ("etc/gone", EntryKind::Whiteout),
                ("var", EntryKind::Opaque),
            ]
        );
        assert_eq!(seen[1].2, 3_000_000);
        assert_eq!(seen[1].3, xattrs);
    }

    #[test]
    fn sizes_from_8_gib_and_ids_over_2097151_get_pax_records() {
        let entry = |size: u64, uid: u64, gid: u64| {
            let mut entry = meta(b"big", EntryKind::File);
            entry.size = size;
            entry.uid = uid;
            entry.gid = gid;
            entry
        };
        let (header, pax) = header_for(&entry(9 << 30, 3_000_000, 4_000_000)).unwrap();
        assert_eq!(
            pax,
            [
                ("size".to_owned(), b"9663676416".to_vec()),
                ("uid".to_owned(), b"3000000".to_vec()),
                ("gid".to_owned(), b"4000000".to_vec()),
            ]
        );
        assert_eq!(header.entry_size().unwrap(), 9 << 30);
        assert_eq!(header.uid().unwrap(), 3_000_000);
        let (header, pax) = header_for(&entry(MAX_USTAR_SIZE, 2_097_151, 2_097_151)).unwrap();
        assert!(pax.is_empty(), "{pax:?}");
        assert_eq!(header.entry_size().unwrap(), MAX_USTAR_SIZE);
        assert_eq!(header.as_ustar().unwrap().uid, *b"7777777\0");
    }

    #[test]
    fn ustar_split_edges() {
        for (prefix, name, fits) in [
            (155, 100, true),
            (156, 99, false),
            (1, 100, true),
            (10, 101, false),
        ] {
            let path = "p".repeat(prefix) + "/" + &"n".repeat(name);
            let mut header = Header::new_ustar();
            assert_eq!(
                set_ustar_name(&mut header, path.as_bytes()),
                fits,
                "{prefix}+{name}"
            );
            if fits {
                assert_eq!(header.path_bytes().as_ref(), path.as_bytes());
            }
        }
    }
}
