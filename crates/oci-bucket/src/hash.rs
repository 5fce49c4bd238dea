//! A SHA-256 whose running state can be written down and picked up by another process.
//!
//! An upload is resumable on any replica, so its running hash must live in the bucket beside
//! its parts. `sha2` 0.10 (the workspace's version) cannot export a hasher's state, and its
//! 0.11 line, which can (`SerializableState`), would put a second SHA-2 stack into every
//! build. `sha2::compress256` is public in 0.10 (feature `compress`) and is the same
//! block function (SHA-NI where the CPU has it) that `Sha256` runs, so this type keeps the
//! eight state words, the unhashed tail of the last block and the length itself, and applies
//! the standard padding (FIPS 180-4, 5.1.1) at the end. The unit tests hold it to `Sha256`.

use serde::{Deserialize, Serialize};
use sha2::digest::consts::U64;
use sha2::digest::generic_array::GenericArray;

const BLOCK: usize = 64;

/// The initial hash value of SHA-256 (FIPS 180-4, 5.3.3).
const INITIAL: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// A running SHA-256 that serialises to a few dozen bytes of JSON.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Sha256State {
    /// The chaining value after every whole block so far.
    words: [u32; 8],
    /// Bytes hashed so far, including `pending`.
    length: u64,
    /// The bytes of the unfinished block (fewer than 64), as hex.
    #[serde(with = "hex_bytes")]
    pending: Vec<u8>,
}

impl Default for Sha256State {
    fn default() -> Self {
        Self {
            words: INITIAL,
            length: 0,
            pending: Vec::with_capacity(BLOCK),
        }
    }
}

impl std::fmt::Debug for Sha256State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sha256State")
            .field("length", &self.length)
            .finish_non_exhaustive()
    }
}

impl Sha256State {
    /// Bytes hashed so far.
    pub(crate) fn len(&self) -> u64 {
        self.length
    }

    /// Whether the state is one this type could have produced (a state read back from the
    /// bucket is outside input).
    pub(crate) fn is_consistent(&self) -> bool {
        self.pending.len() < BLOCK && self.length % BLOCK as u64 == self.pending.len() as u64
    }

    pub(crate) fn update(&mut self, mut data: &[u8]) {
        self.length += data.len() as u64;
        if !self.pending.is_empty() {
            let take = (BLOCK - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() < BLOCK {
                return;
            }
            compress(&mut self.words, &self.pending);
            self.pending.clear();
        }
        let whole = data.len() - data.len() % BLOCK;
        for block in data[..whole].chunks_exact(BLOCK) {
            compress(&mut self.words, block);
        }
        self.pending.extend_from_slice(&data[whole..]);
    }

    /// The digest of everything hashed, as 32 bytes.
    pub(crate) fn finish(&self) -> [u8; 32] {
        let mut words = self.words;
        let mut tail = self.pending.clone();
        tail.push(0x80);
        while tail.len() % BLOCK != BLOCK - 8 {
            tail.push(0);
        }
        tail.extend_from_slice(&(self.length.wrapping_mul(8)).to_be_bytes());
        for block in tail.chunks_exact(BLOCK) {
            compress(&mut words, block);
        }
        let mut out = [0; 32];
        for (chunk, word) in out.chunks_exact_mut(4).zip(words) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        out
    }
}

fn compress(words: &mut [u32; 8], block: &[u8]) {
    let block: &GenericArray<u8, U64> = GenericArray::from_slice(block);
    sha2::compress256(words, std::slice::from_ref(block));
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        s.serialize_str(&hex)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let hex = String::deserialize(d)?;
        if hex.len() % 2 != 0 {
            return Err(D::Error::custom("odd number of hex digits"));
        }
        (0..hex.len())
            .step_by(2)
            .map(|i| {
                hex.get(i..i + 2)
                    .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                    .ok_or_else(|| D::Error::custom("not hex"))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::Sha256State;

    fn bytes(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn matches_sha256_at_every_length_around_the_block_edges() {
        for len in (0..200).chain([1_000, 4_096, 65_537]) {
            let data = bytes(len);
            let mut state = Sha256State::default();
            state.update(&data);
            assert_eq!(
                state.finish().as_slice(),
                Sha256::digest(&data).as_slice(),
                "{len}"
            );
        }
    }

    #[test]
    fn survives_serialisation_at_any_split() {
        let data = bytes(3_000);
        for split in [0, 1, 63, 64, 65, 127, 128, 1_000, 2_999, 3_000] {
            let mut first = Sha256State::default();
            first.update(&data[..split]);
            let json = serde_json::to_string(&first).unwrap();
            let mut second: Sha256State = serde_json::from_str(&json).unwrap();
            assert!(second.is_consistent());
            assert_eq!(second.len(), split as u64);
            for piece in data[split..].chunks(77) {
                second.update(piece);
            }
            assert_eq!(second.finish().as_slice(), Sha256::digest(&data).as_slice());
        }
    }

    #[test]
    fn an_inconsistent_state_is_recognised() {
        let mut state = Sha256State::default();
        state.update(b"abc");
        let json = serde_json::to_string(&state)
            .unwrap()
            .replace("\"length\":3", "\"length\":4");
        let read: Sha256State = serde_json::from_str(&json).unwrap();
        assert!(!read.is_consistent());
    }
}
