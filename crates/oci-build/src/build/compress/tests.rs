use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::*;

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
    // An unnoticed change of the output (defaults, block scheme, flate2's backend) would
    // move the digests of layers pinned elsewhere: this one moves first.
    let digest: String = Sha256::digest(&gz)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        digest,
        "1c6f78662972453d3cdbb659503b7ded0f5d16e2dc03863d1698a34ce8e9f56b"
    );
    // Empty input: the header, an empty final block, CRC 0 and ISIZE 0.
    let empty = compress(&Compression::gzip(), &[], 1);
    assert_eq!(empty[10..], [3, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
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
