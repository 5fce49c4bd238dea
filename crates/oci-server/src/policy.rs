//! Authorization: an access policy saying who may pull, push or delete which repositories,
//! modelled on zot's `accessControl` (repository patterns, per-user and per-group policies, a
//! policy for any authenticated user and one for anonymous requests). The file format and the
//! matching rules are documented on [`AccessPolicy`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::auth::Htpasswd;
use crate::{Error, Result};

/// The largest policy file read: a policy is a few rules, and a bound keeps a wrong path (a
/// disk image, a log) from being read whole into memory.
pub const MAX_POLICY_FILE_SIZE: u64 = 1 << 20;
/// The longest repository pattern (a repository name is at most 255 characters).
const MAX_PATTERN_LENGTH: usize = 255;
/// The most repository entries in a policy.
const MAX_PATTERNS: usize = 10_000;

/// One thing a request does to a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Action {
    /// Read manifests, blobs, tags and referrers (and see the repository in the catalog).
    Pull,
    /// Upload blobs, push manifests and tags.
    Push,
    /// Delete manifests, tags and blobs.
    Delete,
}

impl Action {
    /// Every action.
    pub const ALL: [Self; 3] = [Self::Pull, Self::Push, Self::Delete];

    /// The name of the action in token scopes and policy files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pull => "pull",
            Self::Push => "push",
            Self::Delete => "delete",
        }
    }

    /// Reads an action of a token scope.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == text)
    }

    const fn bit(self) -> u8 {
        match self {
            Self::Pull => 1,
            Self::Push => 2,
            Self::Delete => 4,
        }
    }
}

/// A set of [`Action`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Actions(u8);

impl Actions {
    /// No action.
    pub const NONE: Self = Self(0);
    /// Every action.
    pub const ALL: Self = Self(1 | 2 | 4);

    /// The set of `actions`.
    pub fn of(actions: &[Action]) -> Self {
        Self(actions.iter().fold(0, |bits, a| bits | a.bit()))
    }

    /// Whether `action` is in the set.
    pub fn contains(self, action: Action) -> bool {
        self.0 & action.bit() != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

/// A repository pattern of a policy (see [`AccessPolicy`] for the syntax).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    text: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// `**`: any number of components.
    Any,
    /// One component, with `*` and `?`.
    Glob(String),
}

impl Pattern {
    fn parse(text: &str) -> std::result::Result<Self, String> {
        if text.is_empty() {
            return Err("an empty repository pattern".to_owned());
        }
        if text.len() > MAX_PATTERN_LENGTH {
            return Err(format!(
                "repository pattern {text:?} is longer than {MAX_PATTERN_LENGTH} characters"
            ));
        }
        if let Some(c) = text
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/*?".contains(*c)))
        {
            return Err(format!(
                "repository pattern {text:?} has {c:?}, which no repository name has (lowercase letters, digits, . _ - and / only, with * ? and ** as wildcards)"
            ));
        }
        let segments = text
            .split('/')
            .map(|part| match part {
                "" => Err(format!(
                    "repository pattern {text:?} has an empty component (a leading, trailing or doubled /)"
                )),
                "**" => Ok(Segment::Any),
                part if part.contains("**") => Err(format!(
                    "repository pattern {text:?}: ** must be a whole component (team/** or **/app, not {part})"
                )),
                part => Ok(Segment::Glob(part.to_owned())),
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Self {
            text: text.to_owned(),
            segments,
        })
    }

    fn matches(&self, name: &str) -> bool {
        let components: Vec<&str> = name.split('/').collect();
        if !self.segments.contains(&Segment::Any) {
            return self.segments.len() == components.len()
                && self.segments.iter().zip(&components).all(|(s, c)| match s {
                    Segment::Glob(g) => glob_matches(g.as_bytes(), c.as_bytes()),
                    Segment::Any => true,
                });
        }
        // Several `**` could backtrack exponentially; a table of "segments i.. match components
        // j.." is quadratic at worst, and both sides are short.
        let (p, c) = (self.segments.len(), components.len());
        let width = c + 1;
        let mut table = vec![false; (p + 1) * width];
        table[p * width + c] = true;
        for i in (0..p).rev() {
            for j in (0..=c).rev() {
                table[i * width + j] = match &self.segments[i] {
                    Segment::Any => {
                        table[(i + 1) * width + j] || (j < c && table[i * width + j + 1])
                    }
                    Segment::Glob(g) => {
                        j < c
                            && table[(i + 1) * width + j + 1]
                            && glob_matches(g.as_bytes(), components[j].as_bytes())
                    }
                };
            }
        }
        table[0]
    }
}

/// `*` (any run) and `?` (any one byte) within one component; the classic matcher that
/// backtracks only to the last `*`, linear in practice and quadratic at worst.
fn glob_matches(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// One repository entry of a policy.
#[derive(Debug, Clone)]
struct Rule {
    pattern: Pattern,
    users: HashMap<String, Actions>,
    groups: Vec<(String, Actions)>,
    authenticated: Actions,
    anonymous: Actions,
}

impl Rule {
    fn grants(&self, user: Option<&str>, groups: &[String]) -> Actions {
        let Some(user) = user else {
            return self.anonymous;
        };
        let mut actions = self.anonymous.union(self.authenticated);
        if let Some(mine) = self.users.get(user) {
            actions = actions.union(*mine);
        }
        for (group, granted) in &self.groups {
            if groups.contains(group) {
                actions = actions.union(*granted);
            }
        }
        actions
    }
}

/// Who may pull, push or delete which repositories.
///
/// A policy file is TOML (`.toml`) or YAML (`.yaml`, `.yml`):
///
/// ```toml
/// # Users and their bcrypt hashes, relative to this file (or `hoist serve --htpasswd`).
/// htpasswd = "users.htpasswd"
///
/// [groups]
/// admins = ["dave"]
///
/// [repositories."team/*"]
/// policies = [
///   { users = ["alice"], actions = ["pull", "push"] },
///   { groups = ["admins"], actions = ["pull", "push", "delete"] },
/// ]
/// authenticated = ["pull"]   # any user with valid credentials
/// anonymous = []             # requests without credentials (the default: nothing)
///
/// [repositories."public/**"]
/// anonymous = ["pull"]
/// ```
///
/// Patterns: `*` matches any run of characters within one path component (never `/`), `?` one
/// such character, and a whole component `**` any number of components, none included (so
/// `team/**` matches `team`, `team/app` and `team/app/x`; `**` matches every repository).
/// Everything else matches itself.
/// When several patterns match a repository, the longest pattern decides, as in zot (so
/// `secret/*` can take away what `**` grants); patterns of the same length that both match add
/// up. A repository no pattern matches allows nothing. An authenticated user has what the
/// matching entry grants to them, to their groups, to `authenticated` and to `anonymous`.
///
/// A file is at most [`MAX_POLICY_FILE_SIZE`] bytes, with at most 10,000 patterns of at most 255
/// characters; unknown fields, unknown actions and groups that `[groups]` does not define are
/// refused, with the line where the parser can tell it.
#[derive(Debug, Clone)]
pub struct AccessPolicy {
    /// Longest pattern first: the first match decides (with the matches of the same length).
    rules: Vec<Rule>,
    /// The groups of each user.
    member_of: HashMap<String, Vec<String>>,
    users: Option<Htpasswd>,
}

/// The format of a policy file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyFormat {
    /// TOML.
    Toml,
    /// YAML.
    Yaml,
}

impl PolicyFormat {
    /// The format a file name's extension says: `.toml`, `.yaml` or `.yml`.
    pub fn of_path(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()? {
            "toml" => Some(Self::Toml),
            "yaml" | "yml" => Some(Self::Yaml),
            _ => None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    htpasswd: Option<PathBuf>,
    #[serde(default)]
    groups: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    repositories: BTreeMap<String, RuleFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    #[serde(default)]
    policies: Vec<GrantFile>,
    #[serde(default)]
    authenticated: Vec<Action>,
    #[serde(default)]
    anonymous: Vec<Action>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantFile {
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    actions: Vec<Action>,
}

impl AccessPolicy {
    /// Every authenticated user may do everything, anonymous requests nothing: what a server
    /// with users and no policy does.
    pub fn authenticated_only() -> Self {
        Self::everywhere(Actions::ALL, Actions::NONE)
    }

    /// Anyone, with or without credentials, may do `actions` to every repository (and users
    /// everything).
    pub fn anonymous(actions: Actions) -> Self {
        Self::everywhere(Actions::ALL, actions)
    }

    fn everywhere(authenticated: Actions, anonymous: Actions) -> Self {
        Self {
            rules: vec![Rule {
                pattern: Pattern {
                    text: "**".to_owned(),
                    segments: vec![Segment::Any],
                },
                users: HashMap::new(),
                groups: Vec::new(),
                authenticated,
                anonymous,
            }],
            member_of: HashMap::new(),
            users: None,
        }
    }

    /// Reads a policy file, TOML or YAML by its extension, and the htpasswd file it names
    /// (relative to the policy file's directory).
    pub fn load(path: &Path) -> Result<Self> {
        let what = || format!("access policy file {}", path.display());
        let format = PolicyFormat::of_path(path).ok_or_else(|| Error::Config {
            what: what(),
            reason: "the name must end in .toml, .yaml or .yml (which says its format)".to_owned(),
        })?;
        let io = |source| Error::Io {
            context: "cannot read access policy file",
            path: path.to_path_buf(),
            source,
        };
        let mut text = String::new();
        std::fs::File::open(path)
            .map_err(io)?
            .take(MAX_POLICY_FILE_SIZE + 1)
            .read_to_string(&mut text)
            .map_err(io)?;
        if text.len() as u64 > MAX_POLICY_FILE_SIZE {
            return Err(Error::Config {
                what: what(),
                reason: format!("larger than the limit of {MAX_POLICY_FILE_SIZE} bytes"),
            });
        }
        let (mut policy, htpasswd) =
            Self::parse_with_users(&text, format).map_err(|reason| Error::Config {
                what: what(),
                reason,
            })?;
        if let Some(htpasswd) = htpasswd {
            let htpasswd = path
                .parent()
                .map_or_else(|| htpasswd.clone(), |dir| dir.join(&htpasswd));
            policy.users = Some(Htpasswd::load(&htpasswd)?);
        }
        tracing::info!(
            path = %path.display(),
            patterns = policy.rules.len(),
            "access policy loaded"
        );
        Ok(policy)
    }

    /// Reads policy text. Its `htpasswd`, if any, is not read (it is relative to a file): use
    /// [`load`](Self::load) for that.
    pub fn parse(text: &str, format: PolicyFormat) -> std::result::Result<Self, String> {
        Self::parse_with_users(text, format).map(|(policy, _)| policy)
    }

    fn parse_with_users(
        text: &str,
        format: PolicyFormat,
    ) -> std::result::Result<(Self, Option<PathBuf>), String> {
        // Both parsers name the line and column of what they refuse, and the field it is in.
        let file: PolicyFile = match format {
            PolicyFormat::Toml => {
                toml::from_str(text).map_err(|e| e.to_string().trim().to_owned())?
            }
            PolicyFormat::Yaml => yaml_serde::from_str(text).map_err(|e| e.to_string())?,
        };
        if file.repositories.len() > MAX_PATTERNS {
            return Err(format!(
                "{} repository patterns, more than the limit of {MAX_PATTERNS}",
                file.repositories.len()
            ));
        }
        let mut member_of: HashMap<String, Vec<String>> = HashMap::new();
        for (group, members) in &file.groups {
            for member in members {
                member_of
                    .entry(member.clone())
                    .or_default()
                    .push(group.clone());
            }
        }
        let mut rules = Vec::with_capacity(file.repositories.len());
        for (text, entry) in file.repositories {
            let pattern = Pattern::parse(&text)
                .map_err(|reason| format!("repositories.{text:?}: {reason}"))?;
            let mut rule = Rule {
                pattern,
                users: HashMap::new(),
                groups: Vec::new(),
                authenticated: Actions::of(&entry.authenticated),
                anonymous: Actions::of(&entry.anonymous),
            };
            for (number, grant) in entry.policies.iter().enumerate() {
                let actions = Actions::of(&grant.actions);
                if grant.users.is_empty() && grant.groups.is_empty() {
                    return Err(format!(
                        "repositories.{text:?}.policies[{number}] names no users and no groups (use authenticated or anonymous for everyone)"
                    ));
                }
                for group in &grant.groups {
                    if !file.groups.contains_key(group) {
                        return Err(format!(
                            "repositories.{text:?}.policies[{number}] names group {group:?}, which [groups] does not define"
                        ));
                    }
                    rule.groups.push((group.clone(), actions));
                }
                for user in &grant.users {
                    let mine = rule.users.entry(user.clone()).or_default();
                    *mine = mine.union(actions);
                }
            }
            rules.push(rule);
        }
        rules.sort_by_key(|rule| std::cmp::Reverse(rule.pattern.text.len()));
        Ok((
            Self {
                rules,
                member_of,
                users: None,
            },
            file.htpasswd,
        ))
    }

    /// The users of the htpasswd file the policy names, if it names one.
    pub fn users(&self) -> Option<&Htpasswd> {
        self.users.as_ref()
    }

    /// What `user` (`None`: an anonymous request) may do to `repository`.
    pub fn allowed(&self, user: Option<&str>, repository: &str) -> Actions {
        let no_groups = Vec::new();
        let groups = user
            .and_then(|u| self.member_of.get(u))
            .unwrap_or(&no_groups);
        let mut decided: Option<usize> = None;
        let mut actions = Actions::NONE;
        for rule in &self.rules {
            if decided.is_some_and(|length| rule.pattern.text.len() < length) {
                break;
            }
            if rule.pattern.matches(repository) {
                decided = Some(rule.pattern.text.len());
                actions = actions.union(rule.grants(user, groups));
            }
        }
        actions
    }

    /// Whether `user` may do `action` to some repository (some pattern grants it; a longer
    /// pattern may take it away again for the repositories it matches).
    pub fn allows_somewhere(&self, user: Option<&str>, action: Action) -> bool {
        let no_groups = Vec::new();
        let groups = user
            .and_then(|u| self.member_of.get(u))
            .unwrap_or(&no_groups);
        self.rules
            .iter()
            .any(|rule| rule.grants(user, groups).contains(action))
    }

    /// Whether anonymous requests may do anything at all.
    pub(crate) fn allows_anonymous_anything(&self) -> bool {
        Action::ALL
            .into_iter()
            .any(|action| self.allows_somewhere(None, action))
    }

    /// The user names the policy grants something to by name or through a group.
    pub(crate) fn named_users(&self) -> HashSet<&str> {
        let mut names: HashSet<&str> = self.member_of.keys().map(String::as_str).collect();
        for rule in &self.rules {
            names.extend(rule.users.keys().map(String::as_str));
        }
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, name: &str) -> bool {
        Pattern::parse(pattern).unwrap().matches(name)
    }

    #[test]
    fn globs_stay_within_components_and_double_stars_cross_them() {
        assert!(matches("team/*", "team/app"));
        assert!(!matches("team/*", "team/app/sub"));
        assert!(!matches("team/*", "team"));
        assert!(!matches("team/*", "teams/app"));
        assert!(matches("team/**", "team"));
        assert!(matches("team/**", "team/app"));
        assert!(matches("team/**", "team/app/sub/x"));
        assert!(!matches("team/**", "teams/app"));
        assert!(matches("**", "a"));
        assert!(matches("**", "a/b/c"));
        assert!(matches("**/app", "app"));
        assert!(matches("**/app", "x/y/app"));
        assert!(!matches("**/app", "x/y/apps"));
        assert!(matches("a/**/z", "a/z"));
        assert!(matches("a/**/z", "a/b/c/z"));
        assert!(!matches("a/**/z", "a/b/c/zz"));
        assert!(matches("*/app", "team/app"));
        assert!(!matches("*/app", "a/team/app"));
        assert!(matches("app-?", "app-1"));
        assert!(!matches("app-?", "app-12"));
        assert!(matches("lib*", "library"));
        assert!(matches("*ary", "library"));
        assert!(matches("l*r*y", "library"));
        assert!(!matches("l*r*x", "library"));
        assert!(matches("*", "ubuntu"));
        assert!(!matches("*", "library/ubuntu"));
        assert!(matches("exact/name", "exact/name"));
        assert!(!matches("exact/name", "exact/names"));
        // Many stars in a row stay cheap.
        let long = "a".repeat(200);
        assert!(!matches(
            &"*a".repeat(50).replace("**", "*"),
            &format!("{long}b")
        ));
        assert!(matches("**/".repeat(20).trim_end_matches('/'), "a/b/c"));
    }

    #[test]
    fn patterns_that_match_no_name_are_refused() {
        for (pattern, why) in [
            ("", "empty"),
            ("team/", "empty component"),
            ("/team", "empty component"),
            ("team//app", "empty component"),
            ("Team/*", "'T'"),
            ("team/a**", "whole component"),
            ("team app", "' '"),
        ] {
            let error = Pattern::parse(pattern).unwrap_err();
            assert!(error.contains(why), "{pattern:?}: {error}");
        }
        assert!(
            Pattern::parse(&"a".repeat(256))
                .unwrap_err()
                .contains("longer")
        );
    }

    const TOML: &str = r#"
[groups]
admins = ["dave"]

[repositories."team/*"]
policies = [
  { users = ["alice"], actions = ["pull", "push"] },
  { groups = ["admins"], actions = ["pull", "push", "delete"] },
]

[repositories."team/app"]
policies = [
  { users = ["bob"], actions = ["pull"] },
  { users = ["alice"], actions = ["pull", "push"] },
  { groups = ["admins"], actions = ["pull", "push", "delete"] },
]

[repositories."team/secret"]
policies = [{ groups = ["admins"], actions = ["pull"] }]

[repositories."public/**"]
authenticated = ["pull", "push"]
anonymous = ["pull"]
"#;

    fn actions(list: &[Action]) -> Actions {
        Actions::of(list)
    }

    #[test]
    fn the_longest_matching_pattern_decides() {
        use Action::{Delete, Pull, Push};
        let policy = AccessPolicy::parse(TOML, PolicyFormat::Toml).unwrap();
        let check = |user: Option<&str>, repo: &str, expected: &[Action]| {
            assert_eq!(
                policy.allowed(user, repo),
                actions(expected),
                "{user:?} on {repo}"
            );
        };
        check(Some("alice"), "team/app", &[Pull, Push]);
        check(Some("alice"), "team/other", &[Pull, Push]);
        check(Some("alice"), "team/secret", &[]);
        check(Some("alice"), "team/app/sub", &[]);
        check(Some("bob"), "team/app", &[Pull]);
        check(Some("bob"), "team/other", &[]);
        check(Some("dave"), "team/other", &[Pull, Push, Delete]);
        check(Some("dave"), "team/secret", &[Pull]);
        check(None, "team/app", &[]);
        check(None, "public/x/y", &[Pull]);
        check(Some("bob"), "public/x", &[Pull, Push]);
        check(Some("alice"), "elsewhere", &[]);
        assert!(policy.allows_somewhere(None, Pull));
        assert!(!policy.allows_somewhere(None, Push));
        assert!(policy.allows_anonymous_anything());
        let named = policy.named_users();
        assert!(named.contains("alice") && named.contains("bob") && named.contains("dave"));
    }

    #[test]
    fn yaml_says_the_same() {
        let yaml = r#"
groups:
  admins: [dave]
repositories:
  "team/*":
    policies:
      - users: [alice]
        actions: [pull, push]
      - groups: [admins]
        actions: [pull, push, delete]
  "public/**":
    anonymous: [pull]
"#;
        let policy = AccessPolicy::parse(yaml, PolicyFormat::Yaml).unwrap();
        assert_eq!(
            policy.allowed(Some("dave"), "team/x"),
            Actions::ALL,
            "{policy:?}"
        );
        assert_eq!(
            policy.allowed(Some("alice"), "team/x"),
            actions(&[Action::Pull, Action::Push])
        );
        assert_eq!(policy.allowed(None, "public/a"), actions(&[Action::Pull]));
        assert_eq!(policy.allowed(None, "team/x"), Actions::NONE);
    }

    #[test]
    fn mistakes_are_named_with_their_line() {
        let check = |text: &str, format: PolicyFormat, expected: &[&str]| {
            let error = AccessPolicy::parse(text, format).unwrap_err();
            for part in expected {
                assert!(error.contains(part), "{text:?}: {error:?} lacks {part:?}");
            }
        };
        check(
            "[repositories.\"team/*\"]\nanonymous = [\"pul\"]\n",
            PolicyFormat::Toml,
            &["line 2", "pul", "pull"],
        );
        check(
            "[repositories.\"team/*\"]\nanonymus = [\"pull\"]\n",
            PolicyFormat::Toml,
            &["line 2", "anonymus"],
        );
        check("[repositories\n", PolicyFormat::Toml, &["line 1"]);
        check(
            "repositories:\n  team/*:\n    anonymous: [pul]\n",
            PolicyFormat::Yaml,
            &["line 3", "pul"],
        );
        check(
            "repositories:\n  team/*:\n    policies:\n      - users: [a]\n",
            PolicyFormat::Yaml,
            &["line 4", "actions"],
        );
        check(
            "[repositories.\"Team/*\"]\n",
            PolicyFormat::Toml,
            &["\"Team/*\"", "lowercase"],
        );
        check(
            "[repositories.\"team/*\"]\npolicies = [{ groups = [\"devs\"], actions = [\"pull\"] }]\n",
            PolicyFormat::Toml,
            &["policies[0]", "\"devs\"", "[groups]"],
        );
        check(
            "[repositories.\"team/*\"]\npolicies = [{ actions = [\"pull\"] }]\n",
            PolicyFormat::Toml,
            &["policies[0]", "no users"],
        );
    }

    #[test]
    fn files_are_bounded_and_named_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.toml");
        std::fs::write(&big, " ".repeat(MAX_POLICY_FILE_SIZE as usize + 1)).unwrap();
        let error = AccessPolicy::load(&big).unwrap_err().to_string();
        assert!(
            error.contains("big.toml") && error.contains("limit"),
            "{error}"
        );

        let wrong = dir.path().join("access.json");
        std::fs::write(&wrong, "{}").unwrap();
        let error = AccessPolicy::load(&wrong).unwrap_err().to_string();
        assert!(
            error.contains("access.json") && error.contains(".toml"),
            "{error}"
        );

        let bad = dir.path().join("bad.yaml");
        std::fs::write(&bad, "repositories:\n  x:\n    anonymous: [fly]\n").unwrap();
        let error = AccessPolicy::load(&bad).unwrap_err().to_string();
        assert!(
            error.contains("bad.yaml") && error.contains("line 3") && error.contains("fly"),
            "{error}"
        );

        // The htpasswd file it names is read relative to it.
        let hash = bcrypt::hash("pw", 4).unwrap();
        std::fs::write(dir.path().join("users"), format!("alice:{hash}\n")).unwrap();
        let good = dir.path().join("good.toml");
        std::fs::write(
            &good,
            "htpasswd = \"users\"\n[repositories.\"**\"]\nauthenticated = [\"pull\"]\n",
        )
        .unwrap();
        let policy = AccessPolicy::load(&good).unwrap();
        assert!(policy.users().is_some());
        assert_eq!(policy.allowed(Some("alice"), "x"), actions(&[Action::Pull]));
    }
}
