//! Users and their bcrypt password hashes, from an htpasswd file.

use std::collections::HashMap;
use std::path::Path;

use super::token::random_token;
use crate::{Error, Result};

/// The highest bcrypt cost accepted. Every login attempt, right or wrong, costs one hash of
/// the user's cost (and of the file's highest cost for an unknown user, made once when the
/// file is read): a hash of a much higher cost would let each request take the server's CPU
/// for seconds, and reading the file take hours. `htpasswd -B` writes cost 5 by default and
/// Go's bcrypt 10.
pub const MAX_BCRYPT_COST: u32 = 14;

/// Users and their bcrypt password hashes, from an htpasswd file (`user:$2y$…`, as
/// `htpasswd -B` writes).
#[derive(Clone)]
pub struct Htpasswd {
    pub(super) users: HashMap<String, String>,
    /// A hash of a random password at the highest cost of the file: an unknown user is checked
    /// against it, so that a wrong user name takes as long as a wrong password and the time of
    /// an answer does not tell which user names exist.
    pub(super) dummy: String,
}

impl std::fmt::Debug for Htpasswd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Htpasswd")
            .field("users", &self.users.len())
            .finish()
    }
}

impl Htpasswd {
    /// Reads an htpasswd file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            context: "cannot read htpasswd file",
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|reason| Error::Config {
            what: format!("htpasswd file {}", path.display()),
            reason,
        })
    }

    /// Reads htpasswd text; only bcrypt hashes are accepted (the others are weak or unsalted).
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let mut users = HashMap::new();
        let mut cost = bcrypt::DEFAULT_COST;
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| format!("line {}: expected user:hash", number + 1))?;
            if !(hash.starts_with("$2y$") || hash.starts_with("$2a$") || hash.starts_with("$2b$")) {
                return Err(format!(
                    "line {}: the hash of {user:?} is not bcrypt (use htpasswd -B)",
                    number + 1
                ));
            }
            let this_cost = hash
                .get(4..6)
                .and_then(|c| c.parse::<u32>().ok())
                .ok_or_else(|| format!("line {}: the hash of {user:?} has no cost", number + 1))?;
            if this_cost > MAX_BCRYPT_COST {
                return Err(format!(
                    "line {}: the hash of {user:?} has bcrypt cost {this_cost}, more than the \
                     {MAX_BCRYPT_COST} accepted (each login attempt costs a hash of it)",
                    number + 1
                ));
            }
            cost = if users.is_empty() {
                this_cost
            } else {
                cost.max(this_cost)
            };
            users.insert(user.to_owned(), hash.to_owned());
        }
        if users.is_empty() {
            return Err("no users".to_owned());
        }
        let dummy = bcrypt::hash(random_token(), cost)
            .map_err(|e| format!("cannot make a bcrypt hash of cost {cost}: {e}"))?;
        Ok(Self { users, dummy })
    }

    pub(super) fn verify(&self, user: &str, password: &str) -> bool {
        match self.users.get(user) {
            Some(hash) => bcrypt::verify(password, hash).unwrap_or(false),
            None => {
                let _ = bcrypt::verify(password, &self.dummy);
                false
            }
        }
    }

    pub(super) fn contains(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the fuzz target `htpasswd`: a hash claiming cost 18 made reading the file (the
    /// dummy hash at the file's highest cost) take longer than the fuzzer's time limit, and
    /// cost 31 would take hours. Such a file is refused at once, naming the line.
    #[test]
    fn a_cost_above_the_limit_is_refused_before_any_hash_is_made() {
        let text = "alice:$2y$18$alice:$2y$059ZSGHlice:$ob:cdefPQRSqXkS2I0RNOv7a.\n# a comment\n";
        let error = Htpasswd::parse(text).unwrap_err();
        assert!(
            error.contains("line 1") && error.contains("cost 18"),
            "{error}"
        );
        let error = Htpasswd::parse("a:$2b$04$x\nb:$2b$31$y\n").unwrap_err();
        assert!(
            error.contains("line 2") && error.contains("cost 31"),
            "{error}"
        );
    }

    #[test]
    fn costs_up_to_the_limit_are_read() {
        let hash = bcrypt::hash("secret", 4).unwrap();
        let users = Htpasswd::parse(&format!("alice:{hash}\n")).unwrap();
        assert!(users.verify("alice", "secret"));
        assert!(!users.verify("alice", "wrong"));
        assert!(!users.verify("bob", "secret"));
    }
}
