//! `Digest`: exact lowercase hex of the algorithm's length round-trips, everything else is
//! refused (checked against an independent statement of the grammar), and a hash verifies its
//! own bytes only.

use oci_types::{Algorithm, Digest, Digester};
use proptest::prelude::*;
use proptest::sample::Index;

use super::config;

/// The grammar hoist accepts, stated without the parser's code: `sha256:` and 64, or `sha512:`
/// and 128, characters of `[0-9a-f]`.
fn is_valid(text: &str) -> bool {
    let hex_of = |len: usize, hex: &str| {
        hex.len() == len && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    match text.split_once(':') {
        Some(("sha256", hex)) => hex_of(64, hex),
        Some(("sha512", hex)) => hex_of(128, hex),
        _ => false,
    }
}

fn algorithm() -> impl Strategy<Value = Algorithm> {
    prop_oneof![Just(Algorithm::Sha256), Just(Algorithm::Sha512)]
}

/// `ALGORITHM:HEX` with the exact length, lowercase.
fn valid() -> impl Strategy<Value = String> {
    prop_oneof!["sha256:[0-9a-f]{64}", "sha512:[0-9a-f]{128}",]
}

/// Near misses: known and unknown algorithm names in several cases, with or without the
/// colon, hex of either case and of lengths around the right ones.
fn near_valid() -> impl Strategy<Value = String> {
    let name = prop::sample::select(vec![
        "sha256", "sha512", "SHA256", "Sha512", "sha384", "md5", "", "sha256 ", "blake3",
    ]);
    let length = prop_oneof![
        prop::sample::select(vec![0usize, 1, 63, 64, 65, 127, 128, 129]),
        0usize..200,
    ];
    let colon = prop::sample::select(vec![":", "", "::", "+"]);
    (name, colon, length, "[0-9a-fA-F]{200}")
        .prop_map(|(name, colon, length, hex)| format!("{name}{colon}{}", &hex[..length]))
}

proptest! {
    #![proptest_config(config(256))]

    /// A valid digest parses into its parts and prints as the same text.
    #[test]
    fn valid_text_round_trips(text in valid()) {
        let digest = Digest::parse(&text);
        prop_assert!(digest.is_ok(), "{text:?} was refused: {digest:?}");
        let digest = digest.unwrap();
        let (name, hex) = text.split_once(':').unwrap();
        prop_assert_eq!(digest.algorithm().as_str(), name);
        prop_assert_eq!(digest.encoded(), hex);
        prop_assert_eq!(digest.to_string(), text.clone());
        prop_assert_eq!(Digest::parse(digest.as_str()).unwrap(), digest);
    }

    /// Parsing accepts exactly the grammar, whatever the string, and never panics.
    #[test]
    fn accepts_exactly_the_grammar(
        text in prop_oneof![any::<String>(), near_valid(), valid()],
    ) {
        let parsed = Digest::parse(&text);
        prop_assert_eq!(parsed.is_ok(), is_valid(&text), "{:?}: {:?}", text, parsed);
        if let Ok(digest) = parsed {
            prop_assert_eq!(digest.as_str(), text.as_str());
        }
    }

    /// One hex letter in uppercase, or one character more or fewer, and a valid digest is
    /// refused.
    #[test]
    fn uppercase_and_wrong_lengths_are_refused(
        text in valid(),
        at in any::<Index>(),
        extra in "[0-9a-f]",
    ) {
        let colon = text.find(':').unwrap();
        let hex_at = colon + 1 + at.index(text.len() - colon - 1);
        let mut upper = text.clone();
        upper.replace_range(hex_at..=hex_at, &text[hex_at..=hex_at].to_ascii_uppercase());
        if upper != text {
            prop_assert!(Digest::parse(&upper).is_err(), "{upper:?} was accepted");
        }
        let shorter = &text[..text.len() - 1];
        prop_assert!(Digest::parse(shorter).is_err(), "{shorter:?} was accepted");
        let longer = format!("{text}{extra}");
        prop_assert!(Digest::parse(&longer).is_err(), "{longer:?} was accepted");
    }

    /// A digest of some bytes verifies them and not different bytes, is the same when the
    /// bytes are streamed in pieces, and its text parses back to it.
    #[test]
    fn hash_verifies_its_own_bytes_only(
        algorithm in algorithm(),
        data in prop::collection::vec(any::<u8>(), 0..512),
        other in prop::collection::vec(any::<u8>(), 0..512),
        cut in any::<Index>(),
    ) {
        let digest = Digest::of(algorithm, &data);
        prop_assert_eq!(digest.algorithm(), algorithm);
        prop_assert!(is_valid(digest.as_str()), "{digest} is not in the grammar");
        prop_assert!(digest.verify(&data));
        if other != data {
            prop_assert!(!digest.verify(&other), "{digest} verifies {other:?} too");
        }
        if algorithm == Algorithm::Sha256 {
            prop_assert_eq!(&Digest::sha256(&data), &digest);
        }
        let (head, tail) = data.split_at(cut.index(data.len() + 1));
        let mut digester = Digester::new(algorithm);
        digester.update(head);
        digester.update(tail);
        prop_assert_eq!(&digester.finish(), &digest);
        prop_assert_eq!(Digest::parse(digest.as_str()).unwrap(), digest);
    }

    /// Changing one byte changes the digest (the check above rarely meets a near miss).
    #[test]
    fn one_changed_byte_fails_verification(
        algorithm in algorithm(),
        data in prop::collection::vec(any::<u8>(), 1..512),
        at in any::<Index>(),
        flip in 1..=u8::MAX,
    ) {
        let digest = Digest::of(algorithm, &data);
        let mut changed = data.clone();
        changed[at.index(data.len())] ^= flip;
        prop_assert!(!digest.verify(&changed));
        let mut longer = data.clone();
        longer.push(0);
        prop_assert!(!digest.verify(&longer));
        prop_assert!(!digest.verify(&data[..data.len() - 1]));
    }
}
