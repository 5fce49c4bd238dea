use std::cell::Cell;
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::gzip::{MAX_STORED, SEGMENT, incompressible, max_collisions_milli, stored_size};
use super::*;

thread_local! {
    /// How many times the compressor ran on this thread (`deflate_at`).
    pub(super) static DEFLATES: Cell<usize> = const { Cell::new(0) };
}

/// A sink the test reads back after `finish` took it.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A sink that fails once it has taken `.0` bytes.
struct FailAfter(usize);

impl Write for FailAfter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.0 == 0 {
            return Err(io::Error::other("disk full"));
        }
        let n = buf.len().min(self.0);
        self.0 -= n;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn compress(c: &Compression, data: &[u8], piece: usize) -> Vec<u8> {
    let sink = Shared::default();
    let mut encoder = c.encoder(Box::new(sink.clone())).unwrap();
    data.chunks(piece)
        .for_each(|c| encoder.write_all(c).unwrap());
    encoder.finish().unwrap();
    sink.0.lock().unwrap().clone()
}

fn gzip(level: u32, block_size: usize, threads: usize) -> Compression {
    let o = GzipOptions::default().with_level(level);
    Compression::Gzip(o.with_block_size(block_size).with_threads(threads))
}

/// Pseudo-random bytes (xorshift64*), the same on every run.
fn random(len: usize, mut seed: u64) -> Vec<u8> {
    let mut next = || {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        (seed.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
    };
    (0..len).map(|_| next()).collect()
}

/// Bytes that compress well but not trivially, like a listing of files.
fn text(len: usize) -> Vec<u8> {
    let lines = (0u64..).map(|i| format!("usr/lib/f-{i}.so size={}\n", i * 7919 % 100_003));
    let mut out: Vec<u8> = lines.take(len / 20 + 1).collect::<String>().into_bytes();
    out.truncate(len);
    out
}

/// `len` bytes: `offset` bytes of text (so that pieces and blocks do not line up), then
/// pieces of `piece` bytes, random and text in turn; with the text alone and the number of
/// random bytes.
fn mixed(len: usize, piece: usize, offset: usize) -> (Vec<u8>, Vec<u8>, usize) {
    let mut data = text(offset);
    let (mut texts, mut randoms) = (data.clone(), 0);
    for i in 0.. {
        let n = piece.min(len - data.len());
        if n == 0 {
            break;
        }
        if i % 2 == 0 {
            data.extend(random(n, i as u64 + 1));
            randoms += n;
        } else {
            let text = text(n + i * 1000).split_off(i * 1000);
            data.extend_from_slice(&text);
            texts.extend(text);
        }
    }
    (data, texts, randoms)
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut decoder = flate2::read::MultiGzDecoder::new(data);
    decoder.read_to_end(&mut out).unwrap();
    out
}

/// Decompresses with the `gzip` program, or says that it is absent.
#[allow(clippy::print_stdout, reason = "says which check was skipped")]
fn gunzip_binary(data: &[u8]) -> Option<Vec<u8>> {
    let mut command = Command::new("gzip");
    command
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let Ok(mut child) = command.spawn() else {
        println!("no gzip on PATH: not checking with the gzip program");
        return None;
    };
    let (mut stdin, data) = (child.stdin.take().unwrap(), data.to_vec());
    let feeder = thread::spawn(move || stdin.write_all(&data));
    let output = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    assert!(output.status.success(), "gzip -dc failed");
    Some(output.stdout)
}

#[test]
fn gzip_round_trips() {
    for bs in [1000, DEFAULT_GZIP_BLOCK_SIZE] {
        for len in [0, 1, bs, bs + 1, 5 * bs + 123] {
            for (data, random) in [(text(len), false), (random(len, len as u64 + 1), true)] {
                let gz = compress(&gzip(DEFAULT_GZIP_LEVEL, bs, 3), &data, 7919);
                assert!(gunzip(&gz) == data, "block size {bs}, length {len}");
                if let Some(plain) = gunzip_binary(&gz) {
                    assert!(plain == data, "gzip -dc: block size {bs}, length {len}");
                }
                if random && len > 10_000 {
                    // Incompressible blocks are stored, not made larger.
                    assert!(gz.len() < len + len / 500, "{} for {len}", gz.len());
                }
            }
        }
    }
}

#[test]
fn gzip_bytes_do_not_depend_on_threads_or_writes() {
    let data = [text(700_000), random(300_000, 7)].concat();
    let level = DEFAULT_GZIP_LEVEL;
    let reference = compress(&gzip(level, DEFAULT_GZIP_BLOCK_SIZE, 1), &data, data.len());
    for threads in [1, 2, 3, 8] {
        for piece in [data.len(), 7919, 65536, 131_073] {
            let gz = compress(&gzip(level, DEFAULT_GZIP_BLOCK_SIZE, threads), &data, piece);
            assert!(gz == reference, "threads {threads}, pieces of {piece}");
        }
    }
    // One byte at a time, across blocks and their dictionaries.
    let small = text(5000);
    let reference = compress(&gzip(level, 1000, 1), &small, small.len());
    for threads in [1, 2, 8] {
        assert!(compress(&gzip(level, 1000, threads), &small, 1) == reference);
    }
    for level in 0..=9 {
        let one = compress(&gzip(level, 50_000, 1), &data, 7919);
        assert!(compress(&gzip(level, 50_000, 3), &data, data.len()) == one);
        assert!(gunzip(&one) == data, "level {level}");
    }
    // Stored and deflated runs inside blocks.
    let (data, _, _) = mixed(1 << 20, 20_000, 3000);
    let reference = compress(&gzip(level, DEFAULT_GZIP_BLOCK_SIZE, 1), &data, data.len());
    for threads in [2, 3] {
        let gz = compress(&gzip(level, DEFAULT_GZIP_BLOCK_SIZE, threads), &data, 7919);
        assert!(gz == reference, "threads {threads}");
    }
    assert!(gunzip(&reference) == data);
}

#[test]
fn segments_are_judged_by_their_byte_collisions() {
    let level_1 = max_collisions_milli(1).unwrap();
    assert!(incompressible(&random(SEGMENT, 21), level_1));
    assert!(incompressible(
        &random(SEGMENT, 22),
        max_collisions_milli(9).unwrap()
    ));
    assert!(!incompressible(&text(SEGMENT), level_1));
    assert!(!incompressible(&[0; SEGMENT], level_1));
    // A part that compresses is enough for the segment to be deflated.
    let eighth = [text(SEGMENT / 8), random(SEGMENT / 8 * 7, 23)].concat();
    assert!(!incompressible(&eighth, level_1));
    // A tar header (mostly zeros) in random bytes, as in a tar of small compressed files.
    let mut header = random(SEGMENT, 24);
    header[100..500].fill(0);
    assert!(!incompressible(&header, level_1));
    // Exact arithmetic: every byte value equally often is below uniform random bytes.
    let flat: Vec<u8> = (0..SEGMENT).map(|i| i as u8).collect();
    assert!(incompressible(&flat, 1000));
}

/// The lengths of the blocks of a raw deflate stream made of stored blocks only, or `None` if it
/// holds any other.
fn stored_blocks(mut deflate: &[u8]) -> Option<Vec<usize>> {
    let mut lens = Vec::new();
    loop {
        let (&[header, l0, l1, n0, n1], rest) = deflate.split_first_chunk()?;
        let len = u16::from_le_bytes([l0, l1]);
        if header & !1 != 0 || !len != u16::from_le_bytes([n0, n1]) {
            return None;
        }
        lens.push(usize::from(len));
        deflate = rest.get(usize::from(len)..)?;
        if header == 1 {
            return deflate.is_empty().then_some(lens);
        }
    }
}

#[test]
fn random_input_is_stored_without_deflating() {
    // 8 full blocks, then 24 KiB (three segments); and blocks longer than a stored block.
    for (level, block_size) in [(1, DEFAULT_GZIP_BLOCK_SIZE), (9, 200_000), (0, 200_000)] {
        let data = random(8 * DEFAULT_GZIP_BLOCK_SIZE + 3 * SEGMENT, 9);
        DEFLATES.with(|n| n.set(0));
        // One thread: the blocks are compressed on this one.
        let gz = compress(&gzip(level, block_size, 1), &data, 65536);
        assert_eq!(DEFLATES.with(Cell::get), 0, "level {level}");
        let lens = stored_blocks(&gz[10..gz.len() - 8]).expect("stored blocks only");
        assert_eq!(lens.iter().sum::<usize>(), data.len());
        let blocks: usize = data
            .chunks(block_size)
            .map(|b| b.len().div_ceil(MAX_STORED))
            .sum();
        assert_eq!(lens.len(), blocks);
        assert_eq!(gz.len(), 10 + data.len() + 5 * blocks + 8);
        assert!(gunzip(&gz) == data);
        if let Some(plain) = gunzip_binary(&gz) {
            assert!(plain == data, "gzip -dc: level {level}");
        }
    }
}

#[test]
fn mixed_input_compresses_its_text_and_stores_the_rest() {
    let gz_len = |data: &[u8], threads| {
        compress(&gzip(1, DEFAULT_GZIP_BLOCK_SIZE, threads), data, 65536).len()
    };
    // One block, half text then half random: the text half is deflated.
    let half = [text(65536), random(65536, 31)].concat();
    DEFLATES.with(|n| n.set(0));
    let gz = compress(&gzip(1, DEFAULT_GZIP_BLOCK_SIZE, 1), &half, 65536);
    // The text half, then the empty last block at `finish`.
    assert_eq!(DEFLATES.with(Cell::get), 2);
    assert!(gunzip(&gz) == half);
    let text_alone = gz_len(&half[..65536], 1);
    // The sync flush and the empty last block are the only other costs.
    let overhead = 16;
    let both = text_alone + stored_size(65536) + overhead;
    assert!(gz.len() <= both, "{} vs {text_alone}", gz.len());

    // Pieces of 64 KiB (as the build bench's tree), not lined up with blocks or segments: the
    // random bytes cost at most 0.5% more than their size (deflating them in whole blocks
    // would cost 5.5%), the text at most 2% more than alone.
    let (data, text_only, randoms) = mixed(4 << 20, 65536, 5000);
    let texts = text_only.len();
    let gz = compress(&gzip(1, DEFAULT_GZIP_BLOCK_SIZE, 2), &data, 100_000);
    assert!(gunzip(&gz) == data);
    let text_gz = gz_len(&text_only, 1);
    assert!(text_gz * 2 < texts, "{text_gz} for {texts} bytes of text");
    assert!(
        gz.len() < randoms + randoms / 200 + text_gz + text_gz / 50,
        "{} for {randoms} random bytes and {texts} of text ({text_gz} alone)",
        gz.len()
    );
}

#[test]
fn gzip_header_trailer_and_pinned_digest() {
    let data = [text(300_000), random(200_000, 1)].concat();
    let gz = compress(&Compression::gzip(), &data, 10_000);
    assert_eq!(gz[..10], [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
    assert_eq!(
        gz[gz.len() - 8..][..4],
        crc32fast::hash(&data).to_le_bytes()
    );
    assert_eq!(gz[gz.len() - 4..], (data.len() as u32).to_le_bytes());
    assert!(gunzip(&gz) == data);
    // An unnoticed change of the output (defaults, block scheme, flate2's backend) would
    // move the digests of layers pinned elsewhere: this one moves first.
    let digest: String = Sha256::digest(&gz)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        digest,
        "347a79dfbee2549309d5989ac0fa2ed55719db6e641a7503656992fea2d74919"
    );
    // Empty input: the header, an empty final block, CRC 0 and ISIZE 0.
    let empty = compress(&Compression::gzip(), &[], 1);
    assert_eq!(empty[10..], [3, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    // At level 0 an empty final stored block.
    let empty = compress(&gzip(0, DEFAULT_GZIP_BLOCK_SIZE, 1), &[], 1);
    assert_eq!(empty[10..15], [1, 0, 0, 0xff, 0xff]);
}

#[test]
fn zstd_round_trips_and_ignores_workers() {
    // More than one zstd job at level 3 (8 MiB), for the workers to share.
    let data = [text(9 << 20), random(1 << 20, 3)].concat();
    let zstd = |workers| Compression::Zstd(ZstdOptions::default().with_workers(workers));
    let one = compress(&zstd(1), &data, 7919);
    assert!(compress(&zstd(2), &data, 1 << 20) == one);
    let mut plain = Vec::new();
    let mut decoder = zstd::stream::read::Decoder::new(&one[..]).unwrap();
    decoder.read_to_end(&mut plain).unwrap();
    assert!(plain == data);
}

#[test]
fn options_media_types_and_descriptions() {
    let data = random(10_000, 5);
    assert_eq!(compress(&Compression::None, &data, 333), data);
    assert_eq!(Compression::None.describe(), None);
    assert_eq!(Compression::None.kind(), media_type::Compression::None);
    let oci_gzip = Compression::default().layer_media_type(false);
    assert_eq!(oci_gzip.as_str(), media_type::OCI_LAYER_GZIP);
    let docker_zstd = Compression::zstd().layer_media_type(true);
    assert_eq!(docker_zstd.as_str(), media_type::DOCKER_LAYER_ZSTD);

    let describe = |c: Compression| c.describe().unwrap();
    assert_eq!(describe(gzip(6, 4096, 1)), describe(gzip(6, 4096, 8)));
    assert_ne!(describe(gzip(6, 4096, 1)), describe(gzip(9, 4096, 1)));
    assert_ne!(describe(gzip(6, 4096, 1)), describe(gzip(6, 8192, 1)));
    let level_1 = describe(gzip(1, DEFAULT_GZIP_BLOCK_SIZE, 2));
    assert_eq!(
        level_1,
        "gzip;level=1;block-size=131072;dictionary=32768;stored-if-larger;\
         skip-incompressible=collisions<=1.050/8192;zlib-rs"
    );
    assert!(describe(gzip(6, 4096, 1)).contains(";skip-incompressible=collisions<=1.010/8192;"));
    assert!(describe(gzip(0, 4096, 1)).contains(";skip-incompressible=all;"));
    let zstd = |o: ZstdOptions| describe(Compression::Zstd(o));
    let z = ZstdOptions::default();
    assert_eq!(
        zstd(z.clone().with_workers(1)),
        zstd(z.clone().with_workers(4))
    );
    assert_ne!(zstd(z.clone().with_level(19)), zstd(z.clone()));
    assert!(zstd(z).contains(zstd::zstd_safe::version_string()));

    for bad in [gzip(10, 4096, 1), gzip(6, 0, 1)] {
        let error = bad.encoder(Box::new(io::sink())).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }
}

/// Runs `f` on a thread, failing if it takes more than a minute (a hang).
fn without_hang(f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    let handle = thread::spawn(move || {
        f();
        tx.send(())
    });
    let ended = rx.recv_timeout(Duration::from_secs(60));
    assert!(
        !matches!(ended, Err(mpsc::RecvTimeoutError::Timeout)),
        "hung"
    );
    handle.join().unwrap().ok();
}

#[test]
fn sink_errors_come_back_without_hanging() {
    let data = Arc::new(random(3 << 20, 11));
    for threads in [1, 2, 4] {
        for fail_after in [0, 20, 500_000] {
            let data = Arc::clone(&data);
            without_hang(move || {
                let sink = Box::new(FailAfter(fail_after));
                let gzip = gzip(DEFAULT_GZIP_LEVEL, DEFAULT_GZIP_BLOCK_SIZE, threads);
                let Ok(mut encoder) = gzip.encoder(sink) else {
                    return assert_eq!(fail_after, 0, "only the header fails here");
                };
                if data
                    .chunks(100_000)
                    .try_for_each(|c| encoder.write_all(c))
                    .is_err()
                {
                    // Broken for good: later writes fail too.
                    assert!(encoder.write_all(b"more").is_err());
                }
                assert!(encoder.finish().is_err(), "threads {threads}, {fail_after}");
            });
        }
        // Dropping an unfinished encoder ends its threads.
        let data = Arc::clone(&data);
        without_hang(move || {
            let sink = Box::new(io::sink());
            let mut encoder = gzip(DEFAULT_GZIP_LEVEL, 1000, threads)
                .encoder(sink)
                .unwrap();
            encoder.write_all(&data[..100_000]).unwrap();
        });
    }
}
