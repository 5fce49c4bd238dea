//! Tokens that carry what they grant, signed with a key of the server's own (HMAC-SHA256):
//! nothing is stored per token, so no number of tokens asked for can push others out, as
//! a bounded map of issued tokens let anonymous clients do.
//!
//! A token is `PAYLOAD.TAG`, both unpadded base64url: the payload is JSON naming the token's
//! kind (access or refresh), when it expires (milliseconds after the signer was made, read
//! from the authenticator's clock) and its claims; the tag signs the payload's text. The key
//! is random and lives as long as the process: a restarted server's tokens are unknown to
//! it, and clients ask for new ones, as they did when tokens were kept in memory.

use std::time::Instant;

use base64::Engine as _;
use rand::Rng;
use ring::hmac;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The longest token taken for checking: a grant of 16 scopes of the longest names is about
/// 6 KiB; anything longer was not issued here.
const MAX_TOKEN_LEN: usize = 16 * 1024;

const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// What a token is for: one kind is never taken for the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Kind {
    #[serde(rename = "a")]
    Access,
    #[serde(rename = "r")]
    Refresh,
}

#[derive(Serialize, Deserialize)]
struct Payload<T> {
    #[serde(rename = "k")]
    kind: Kind,
    /// Milliseconds after [`Signer::epoch`] at which the token expires.
    #[serde(rename = "e")]
    expires: u64,
    #[serde(rename = "c")]
    claims: T,
}

/// Issues and checks signed tokens.
pub(super) struct Signer {
    key: hmac::Key,
    /// The clock reading expiries count from.
    epoch: Instant,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer with a new random key, counting time from `epoch`.
    pub(super) fn new(epoch: Instant) -> Self {
        let mut secret = [0u8; 32];
        rand::rng().fill(&mut secret);
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
            epoch,
        }
    }

    fn millis(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.epoch).as_millis();
        u64::try_from(since).unwrap_or(u64::MAX)
    }

    /// A token of `kind` for `claims`, good until `expires`.
    pub(super) fn issue<T: Serialize>(&self, kind: Kind, claims: T, expires: Instant) -> String {
        let payload = Payload {
            kind,
            expires: self.millis(expires),
            claims,
        };
        // Claims are plain data (strings and lists): they always serialise.
        let json = serde_json::to_vec(&payload).unwrap_or_default();
        let payload = BASE64.encode(json);
        let tag = hmac::sign(&self.key, payload.as_bytes());
        format!("{payload}.{}", BASE64.encode(tag.as_ref()))
    }

    /// The claims of `token` if this signer issued it, as a token of `kind`, and it has not
    /// expired at `now`.
    pub(super) fn open<T: DeserializeOwned>(
        &self,
        kind: Kind,
        token: &str,
        now: Instant,
    ) -> Option<T> {
        if token.len() > MAX_TOKEN_LEN {
            return None;
        }
        let (payload, tag) = token.split_once('.')?;
        let tag = BASE64.decode(tag).ok()?;
        hmac::verify(&self.key, payload.as_bytes(), &tag).ok()?;
        let payload: Payload<T> = serde_json::from_slice(&BASE64.decode(payload).ok()?).ok()?;
        (payload.kind == kind && self.millis(now) < payload.expires).then_some(payload.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_token_opens_for_its_kind_until_it_expires() {
        let epoch = Instant::now();
        let signer = Signer::new(epoch);
        let token = signer.issue(Kind::Access, "alice", epoch + Duration::from_secs(60));
        let open = |kind, at| signer.open::<String>(kind, &token, at);
        assert_eq!(open(Kind::Access, epoch).as_deref(), Some("alice"));
        let late = epoch + Duration::from_secs(59);
        assert_eq!(open(Kind::Access, late).as_deref(), Some("alice"));
        assert_eq!(open(Kind::Access, epoch + Duration::from_secs(60)), None);
        assert_eq!(open(Kind::Refresh, epoch), None, "another kind");
    }

    #[test]
    fn a_token_changed_or_of_another_signer_does_not_open() {
        let epoch = Instant::now();
        let signer = Signer::new(epoch);
        let later = epoch + Duration::from_secs(60);
        let token = signer.issue(Kind::Access, "alice", later);
        let other = Signer::new(epoch).issue(Kind::Access, "alice", later);
        assert_eq!(signer.open::<String>(Kind::Access, &other, epoch), None);
        // The claims changed, the signature kept.
        let (_, tag) = token.split_once('.').unwrap();
        let forged = Payload {
            kind: Kind::Access,
            expires: u64::MAX,
            claims: "root",
        };
        let forged = BASE64.encode(serde_json::to_vec(&forged).unwrap());
        let forged = format!("{forged}.{tag}");
        assert_eq!(signer.open::<String>(Kind::Access, &forged, epoch), None);
        for junk in ["", ".", "a.b", "no-dot", &"x".repeat(MAX_TOKEN_LEN + 1)] {
            assert_eq!(signer.open::<String>(Kind::Access, junk, epoch), None);
        }
    }
}
