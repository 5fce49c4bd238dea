//! Users and their bcrypt password hashes, from an htpasswd file.

use std::collections::HashMap;
use std::path::Path;

use super::token::random_token;
use crate::{Error, Result};

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
