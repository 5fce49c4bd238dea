//! Content digests (`sha256:…`, `sha512:…`), parsed strictly, and a streaming hasher.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

use crate::{Error, Result};

/// A digest algorithm that hoist can compute and verify.
///
/// Only algorithms registered by the image-spec are accepted; any other name is refused when a
/// [`Digest`] is parsed, so a digest in hand can always be verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Algorithm {
    /// SHA-256, the default everywhere.
    Sha256,
    /// SHA-512.
    Sha512,
}

impl Algorithm {
    /// The registered name, as it appears before the colon.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
        }
    }

    /// The length of the lowercase hex encoding.
    pub fn hex_len(self) -> usize {
        match self {
            Self::Sha256 => 64,
            Self::Sha512 => 128,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "sha256" => Ok(Self::Sha256),
            "sha512" => Ok(Self::Sha512),
            other => Err(Error::Digest {
                input: other.to_owned(),
                reason: "unknown digest algorithm (expected sha256 or sha512)".to_owned(),
            }),
        }
    }
}

/// A content digest: an [`Algorithm`] and the lowercase hex of the hash.
///
/// Built only by parsing or hashing, so a `Digest` is always well formed: its hex part is made of
/// `[0-9a-f]` only and has exactly the algorithm's length. That makes it safe to use as a file
/// name (`blobs/sha256/HEX`) or in a URL.
///
/// ```
/// use oci_types::{Algorithm, Digest};
/// let d: Digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".parse()?;
/// assert_eq!(d.algorithm(), Algorithm::Sha256);
/// assert_eq!(d, Digest::of(Algorithm::Sha256, b""));
/// assert!("sha256:E3B0".parse::<Digest>().is_err());
/// # Ok::<(), oci_types::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    /// `ALGORITHM:HEX`, validated.
    value: String,
    algorithm: Algorithm,
}

impl Digest {
    /// Parses `ALGORITHM:HEX` strictly: a known algorithm, lowercase hex of exactly its length.
    pub fn parse(input: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::Digest {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        let (name, hex) = input
            .split_once(':')
            .ok_or_else(|| invalid("missing ':' between algorithm and hex"))?;
        if name.is_empty() {
            return Err(invalid("empty algorithm"));
        }
        let algorithm: Algorithm = name.parse().map_err(|_| {
            invalid(&format!(
                "unknown digest algorithm {name:?} (expected sha256 or sha512)"
            ))
        })?;
        if let Some(bad) = hex.chars().find(|c| !matches!(c, '0'..='9' | 'a'..='f')) {
            return Err(invalid(&format!("character {bad:?} is not lowercase hex")));
        }
        if hex.len() != algorithm.hex_len() {
            return Err(invalid(&format!(
                "{algorithm} needs {} hex characters, found {}",
                algorithm.hex_len(),
                hex.len()
            )));
        }
        Ok(Self {
            value: input.to_owned(),
            algorithm,
        })
    }

    /// Hashes `data` in one go.
    pub fn of(algorithm: Algorithm, data: &[u8]) -> Self {
        let mut digester = Digester::new(algorithm);
        digester.update(data);
        digester.finish()
    }

    /// The SHA-256 of `data`.
    pub fn sha256(data: &[u8]) -> Self {
        Self::of(Algorithm::Sha256, data)
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The lowercase hex part, after the colon.
    pub fn encoded(&self) -> &str {
        &self.value[self.algorithm.as_str().len() + 1..]
    }

    /// The whole digest, `ALGORITHM:HEX`.
    pub fn as_str(&self) -> &str {
        &self.value
    }

    /// Whether `data` hashes to this digest.
    pub fn verify(&self, data: &[u8]) -> bool {
        Self::of(self.algorithm, data) == *self
    }

    /// A hasher of this digest's algorithm, to verify streamed content against it.
    pub fn digester(&self) -> Digester {
        Digester::new(self.algorithm)
    }

    fn from_hash(algorithm: Algorithm, hash: &[u8]) -> Self {
        let mut value = String::with_capacity(algorithm.as_str().len() + 1 + hash.len() * 2);
        value.push_str(algorithm.as_str());
        value.push(':');
        for byte in hash {
            value.push(char::from(HEX[usize::from(byte >> 4)]));
            value.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
        Self { value, algorithm }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.value)
    }
}

impl FromStr for Digest {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl AsRef<str> for Digest {
    fn as_ref(&self) -> &str {
        &self.value
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.value)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(feature = "oci-spec")]
impl TryFrom<&oci_spec::image::Digest> for Digest {
    type Error = Error;

    fn try_from(value: &oci_spec::image::Digest) -> Result<Self> {
        Self::parse(value.as_ref())
    }
}

#[cfg(feature = "oci-spec")]
impl TryFrom<&Digest> for oci_spec::image::Digest {
    type Error = Error;

    fn try_from(value: &Digest) -> Result<Self> {
        value.as_str().parse().map_err(|e| Error::Digest {
            input: value.to_string(),
            reason: format!("oci-spec refused it: {e}"),
        })
    }
}

/// A streaming hasher: feed it content in pieces, then [`finish`](Self::finish) into a [`Digest`].
///
/// Also an [`std::io::Write`], so it can sit at the end of `std::io::copy`.
#[derive(Clone)]
pub struct Digester {
    state: DigesterState,
}

#[derive(Clone)]
enum DigesterState {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Digester {
    /// A new hasher for `algorithm`.
    pub fn new(algorithm: Algorithm) -> Self {
        let state = match algorithm {
            Algorithm::Sha256 => DigesterState::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => DigesterState::Sha512(sha2::Sha512::new()),
        };
        Self { state }
    }

    /// The algorithm this hasher computes.
    pub fn algorithm(&self) -> Algorithm {
        match self.state {
            DigesterState::Sha256(_) => Algorithm::Sha256,
            DigesterState::Sha512(_) => Algorithm::Sha512,
        }
    }

    /// Feeds more content.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.state {
            DigesterState::Sha256(h) => h.update(data),
            DigesterState::Sha512(h) => h.update(data),
        }
    }

    /// The digest of everything fed so far.
    pub fn finish(self) -> Digest {
        match self.state {
            DigesterState::Sha256(h) => Digest::from_hash(Algorithm::Sha256, &h.finalize()),
            DigesterState::Sha512(h) => Digest::from_hash(Algorithm::Sha512, &h.finalize()),
        }
    }
}

impl fmt::Debug for Digester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Digester")
            .field("algorithm", &self.algorithm())
            .finish_non_exhaustive()
    }
}

impl std::io::Write for Digester {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
