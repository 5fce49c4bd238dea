//! `Digest`, `Algorithm` and `Digester`.

use std::io::Write as _;

use oci_types::{Algorithm, Digest, Digester};

const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const ABC_SHA256: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
const ABC_SHA512: &str = "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f";
const EMPTY_SHA512: &str = "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e";
/// SHA-256 of one million `a` (FIPS 180-2 test vector).
const MILLION_A_SHA256: &str = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";

/// Parses `input`; `Ok(algorithm)` when it must be accepted, `Err(fragment)` when it must be
/// refused with a reason containing `fragment`.
#[track_caller]
fn check(input: &str, expected: Result<Algorithm, &str>) {
    match (Digest::parse(input), expected) {
        (Ok(digest), Ok(algorithm)) => {
            assert_eq!(digest.algorithm(), algorithm, "{input:?}");
            assert_eq!(digest.as_str(), input);
            assert_eq!(digest.to_string(), input);
            assert_eq!(
                format!("{}:{}", digest.algorithm(), digest.encoded()),
                input
            );
            assert_eq!(digest.encoded().len(), algorithm.hex_len());
            assert_eq!(input.parse::<Digest>().unwrap(), digest);
        }
        (Err(error), Err(fragment)) => {
            assert!(
                matches!(&error, oci_types::Error::Digest { input: i, .. } if i == input),
                "{input:?}: {error:?}"
            );
            let reason = crate::reason(&error);
            assert!(
                reason.contains(fragment),
                "{input:?}: reason {reason:?} lacks {fragment:?}"
            );
        }
        (Ok(digest), Err(_)) => panic!("{input:?} was accepted as {digest:?}"),
        (Err(error), Ok(_)) => panic!("{input:?} was refused: {error}"),
    }
}

fn hex(len: usize) -> String {
    "0123456789abcdef".chars().cycle().take(len).collect()
}

#[test]
fn parse() {
    use Algorithm::{Sha256, Sha512};
    let sha256 = |hex: &str| format!("sha256:{hex}");

    check(&sha256(EMPTY_SHA256), Ok(Sha256));
    check(&sha256(ABC_SHA256), Ok(Sha256));
    check(&sha256(&hex(64)), Ok(Sha256));
    check(&sha256(&"0".repeat(64)), Ok(Sha256));
    check(&format!("sha512:{ABC_SHA512}"), Ok(Sha512));
    check(&format!("sha512:{}", hex(128)), Ok(Sha512));

    // Upper case, short and long hex.
    check(
        &sha256(&EMPTY_SHA256.to_uppercase()),
        Err("not lowercase hex"),
    );
    check(&sha256(&format!("E{}", &EMPTY_SHA256[1..])), Err("'E'"));
    check(
        &sha256("e3b0"),
        Err("sha256 needs 64 hex characters, found 4"),
    );
    check(&sha256(&hex(63)), Err("found 63"));
    check(&sha256(&hex(65)), Err("found 65"));
    check(&sha256(&hex(128)), Err("found 128"));
    check("sha256:", Err("found 0"));
    check(&format!("sha512:{EMPTY_SHA256}"), Err("sha512 needs 128"));
    check(&format!("sha512:{}", hex(127)), Err("found 127"));
    check(&sha256(&format!("{}g", hex(63))), Err("'g'"));

    // Unknown algorithms, including registered-elsewhere and case variants.
    check(
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        Err("unknown digest algorithm \"md5\""),
    );
    check(
        &format!("blake3:{}", hex(64)),
        Err("unknown digest algorithm \"blake3\""),
    );
    check(
        &format!("SHA256:{EMPTY_SHA256}"),
        Err("unknown digest algorithm \"SHA256\""),
    );
    check(
        &format!("Sha256:{EMPTY_SHA256}"),
        Err("unknown digest algorithm"),
    );
    check(
        &format!("sha384:{}", hex(96)),
        Err("unknown digest algorithm \"sha384\""),
    );
    check(
        &format!("sha256+b64u:{EMPTY_SHA256}"),
        Err("unknown digest algorithm"),
    );
    check(
        &format!("multihash+base58:{EMPTY_SHA256}"),
        Err("unknown digest algorithm"),
    );

    // Shapes: empty, no colon, empty algorithm.
    check("", Err("missing ':'"));
    check(EMPTY_SHA256, Err("missing ':'"));
    check("sha256", Err("missing ':'"));
    check(&format!(":{EMPTY_SHA256}"), Err("empty algorithm"));
    check(":", Err("empty algorithm"));

    // Hostile and sloppy input.
    check("sha256:../../etc/passwd", Err("'.' is not lowercase hex"));
    check(&sha256(&format!("../{}", hex(61))), Err("'.'"));
    check(&sha256(&format!("{}/", hex(63))), Err("'/'"));
    check(
        &format!(" sha256:{EMPTY_SHA256}"),
        Err("unknown digest algorithm"),
    );
    check(
        &format!("sha256 :{EMPTY_SHA256}"),
        Err("unknown digest algorithm"),
    );
    check(&sha256(&format!(" {EMPTY_SHA256}")), Err("' '"));
    check(&sha256(&format!("{EMPTY_SHA256} ")), Err("' '"));
    check(&sha256(&format!("{EMPTY_SHA256}\n")), Err("'\\n'"));
    check(&sha256(&format!("{EMPTY_SHA256}:")), Err("':'"));
    check(&format!("sha256:sha256:{EMPTY_SHA256}"), Err("'s'"));
    check(&sha256(&format!("é{}", hex(62))), Err("'é'"));
    check(&sha256(&format!("{}\0", hex(63))), Err("'\\0'"));
}

#[test]
fn error_display_names_the_input() {
    let error = Digest::parse("sha256:nope").unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid digest \"sha256:nope\": character 'n' is not lowercase hex"
    );
}

#[test]
fn algorithm() {
    #[track_caller]
    fn check(input: &str, expected: Option<(Algorithm, usize)>) {
        let parsed = input.parse::<Algorithm>().ok();
        assert_eq!(parsed.map(|a| (a, a.hex_len())), expected, "{input:?}");
        if let Some(algorithm) = parsed {
            assert_eq!(algorithm.as_str(), input);
            assert_eq!(algorithm.to_string(), input);
        }
    }
    check("sha256", Some((Algorithm::Sha256, 64)));
    check("sha512", Some((Algorithm::Sha512, 128)));
    check("SHA256", None);
    check("sha384", None);
    check("md5", None);
    check("", None);
    check(" sha256", None);
}

#[test]
fn known_vectors() {
    #[track_caller]
    fn check(algorithm: Algorithm, data: &[u8], expected_hex: &str) {
        let digest = Digest::of(algorithm, data);
        assert_eq!(digest.to_string(), format!("{algorithm}:{expected_hex}"));
        assert_eq!(digest.algorithm(), algorithm);
        assert!(digest.verify(data));
        // The hashed digest equals the parsed one, in every respect.
        assert_eq!(Digest::parse(digest.as_str()).unwrap(), digest);
    }
    check(Algorithm::Sha256, b"", EMPTY_SHA256);
    check(Algorithm::Sha256, b"abc", ABC_SHA256);
    check(Algorithm::Sha512, b"", EMPTY_SHA512);
    check(Algorithm::Sha512, b"abc", ABC_SHA512);
    check(
        Algorithm::Sha256,
        b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
    );
    check(Algorithm::Sha256, &[b'a'; 1_000_000], MILLION_A_SHA256);
    assert_eq!(
        Digest::sha256(b"abc"),
        Digest::of(Algorithm::Sha256, b"abc")
    );
}

#[test]
fn verify() {
    let abc = Digest::sha256(b"abc");
    assert!(abc.verify(b"abc"));
    assert!(!abc.verify(b"abd"));
    assert!(!abc.verify(b"abc\n"));
    assert!(!abc.verify(b""));
    let abc512 = Digest::of(Algorithm::Sha512, b"abc");
    assert!(abc512.verify(b"abc"));
    assert!(!abc512.verify(b"ab"));
    // The same content under another algorithm is another digest.
    assert_ne!(abc, abc512);
}

#[test]
fn digester_in_pieces_equals_one_shot() {
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
        let one_shot = Digest::of(algorithm, &data);
        for piece in [
            1, 2, 3, 63, 64, 65, 127, 128, 129, 1000, 4096, 99_999, 100_000,
        ] {
            let mut digester = Digester::new(algorithm);
            assert_eq!(digester.algorithm(), algorithm);
            for chunk in data.chunks(piece) {
                digester.update(chunk);
                digester.update(&[]);
            }
            assert_eq!(
                digester.finish(),
                one_shot,
                "{algorithm} in pieces of {piece}"
            );
        }
    }
    let mut digester = Digester::new(Algorithm::Sha256);
    for _ in 0..1000 {
        digester.update(&[b'a'; 1000]);
    }
    assert_eq!(digester.finish().encoded(), MILLION_A_SHA256);
    // Nothing fed is the empty digest.
    assert_eq!(
        Digester::new(Algorithm::Sha256).finish().encoded(),
        EMPTY_SHA256
    );
    assert_eq!(
        Digester::new(Algorithm::Sha512).finish().encoded(),
        EMPTY_SHA512
    );
}

#[test]
fn digester_clone_forks_the_state() {
    let mut ab = Digester::new(Algorithm::Sha256);
    ab.update(b"ab");
    let mut fork = ab.clone();
    ab.update(b"c");
    fork.update(b"d");
    assert_eq!(ab.finish(), Digest::sha256(b"abc"));
    assert_eq!(fork.finish(), Digest::sha256(b"abd"));
}

#[test]
fn digester_is_io_write() {
    let data = vec![b'a'; 1_000_000];
    let mut digester = Digester::new(Algorithm::Sha256);
    let copied = std::io::copy(&mut data.as_slice(), &mut digester).unwrap();
    assert_eq!(copied, 1_000_000);
    assert_eq!(digester.finish().encoded(), MILLION_A_SHA256);

    let mut digester = Digest::of(Algorithm::Sha512, b"").digester();
    assert_eq!(digester.algorithm(), Algorithm::Sha512);
    assert_eq!(digester.write(b"ab").unwrap(), 2);
    digester.write_all(b"c").unwrap();
    digester.flush().unwrap();
    assert_eq!(digester.finish().encoded(), ABC_SHA512);
}

#[test]
fn debug_shows_the_digest() {
    let digest = Digest::sha256(b"");
    assert_eq!(
        format!("{digest:?}"),
        format!("Digest(sha256:{EMPTY_SHA256})")
    );
    let digester = Digester::new(Algorithm::Sha512);
    assert!(format!("{digester:?}").contains("Sha512"));
}

#[test]
fn serde() {
    let digest = Digest::sha256(b"abc");
    let json = serde_json::to_string(&digest).unwrap();
    assert_eq!(json, format!("\"sha256:{ABC_SHA256}\""));
    assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), digest);

    #[track_caller]
    fn refused(json: &str, fragment: &str) {
        let error = serde_json::from_str::<Digest>(json)
            .unwrap_err()
            .to_string();
        assert!(error.contains(fragment), "{json}: {error}");
    }
    refused(
        &format!("\"sha256:{}\"", ABC_SHA256.to_uppercase()),
        "invalid digest",
    );
    refused("\"sha256:abc\"", "found 3");
    refused(
        "\"md5:d41d8cd98f00b204e9800998ecf8427e\"",
        "unknown digest algorithm",
    );
    refused("\"\"", "missing ':'");
    refused("\"sha256:../../etc/passwd\"", "not lowercase hex");
    refused("42", "invalid type");
    refused("null", "invalid type");
    refused(&format!("[\"sha256:{ABC_SHA256}\"]"), "invalid type");
}

#[test]
#[cfg(feature = "oci-spec")]
fn oci_spec_conversions() {
    #[track_caller]
    fn check(input: &str, expected: Result<(), &str>) {
        let theirs: oci_spec::image::Digest = input.parse().unwrap();
        match (Digest::try_from(&theirs), expected) {
            (Ok(ours), Ok(())) => {
                assert_eq!(ours.as_str(), input);
                let back = oci_spec::image::Digest::try_from(&ours).unwrap();
                assert_eq!(back, theirs);
                assert_eq!(back.digest(), ours.encoded());
            }
            (Err(error), Err(fragment)) => {
                assert!(crate::reason(&error).contains(fragment), "{input}: {error}");
            }
            (ours, expected) => panic!("{input}: {ours:?}, expected {expected:?}"),
        }
    }
    check(&format!("sha256:{EMPTY_SHA256}"), Ok(()));
    check(&format!("sha512:{ABC_SHA512}"), Ok(()));
    // oci-spec accepts any registered-shape algorithm; hoist only what it can verify.
    check(
        &format!("sha384:{}", hex(96)),
        Err("unknown digest algorithm"),
    );
    check(
        "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8",
        Err("unknown digest algorithm"),
    );
    check(
        &format!("blake3:{}", hex(64)),
        Err("unknown digest algorithm"),
    );
}
