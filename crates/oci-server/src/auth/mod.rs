//! Authentication and authorization: basic auth against an htpasswd file (bcrypt), bearer
//! tokens issued by a built-in token endpoint through the Docker token flow
//! (`WWW-Authenticate: Bearer realm=…`), and an [`AccessPolicy`] deciding what each user (or
//! an anonymous request) may do, which both schemes enforce: basic auth on every request, token
//! auth by narrowing the scopes a token is issued for.
//!
//! All state is bounded: tokens and refresh tokens are signed and carry their grant
//! (`signed.rs`), so none is stored; verified basic credentials are kept in an [`Expiring`]
//! map with a capacity, which evicts the oldest entry when full and drops expired entries
//! from the front of a queue (each entry once: no pass over the whole map per request).

// A refused request is answered with its response: the `Err` is that response, built once
// per request and sent as it is, so boxing it would only add an allocation.
#![allow(clippy::result_large_err)]

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use http::{Request, StatusCode, header};
use hyper::body::Incoming;
use oci_store::ErrorCode;
use oci_types::Digest;
use tokio::sync::Semaphore;

mod expiring;
mod htpasswd;
mod scope;
mod signed;
mod token;

pub use htpasswd::{Htpasswd, MAX_BCRYPT_COST};
pub(crate) use scope::Access;

use expiring::Expiring;
use scope::{Grant, Granted, Scope, needed_scope};
use signed::{Kind, Signer};

use crate::policy::{AccessPolicy, Action, Actions};
use crate::route::{Route, TOKEN_PATH};
use crate::wire::{self, Reply, set};

/// The `service` the token endpoint issues tokens for.
pub const TOKEN_SERVICE: &str = "hoist";
/// The largest body of a `POST /token` (an OAuth2 form of a few fields); larger ones get 413.
pub const MAX_TOKEN_REQUEST_SIZE: u64 = 64 * 1024;

/// How many `POST /token` bodies are read at once; one beyond gets 429. Each is held whole,
/// so this bounds the memory that token requests sent slowly can hold.
pub const MAX_CONCURRENT_TOKEN_FORMS: usize = 256;
/// How long a refresh token lasts unless told ([`Auth::with_refresh_lifetime`]).
pub const DEFAULT_REFRESH_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// The longest a token or a refresh token lasts, whatever the configuration asks: a year. The
/// expiry times are clock readings plus the lifetime, which a longer one (`Duration::MAX`) could
/// overflow.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// How long a checked basic credential is trusted without checking it again.
const VERIFIED_FOR: Duration = Duration::from_secs(300);

/// How many entries the auth state keeps; beyond, the oldest goes (its client authenticates
/// again).
#[derive(Debug, Clone, Copy)]
struct Limits {
    verified: usize,
}

const LIMITS: Limits = Limits { verified: 4096 };

/// A source of the current time; tests move it instead of sleeping.
type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// How clients authenticate, and what they may do.
///
/// The variants `Basic` and `Token` are the short forms of [`Auth::basic`] and [`Auth::token`]
/// with no policy and the default refresh token lifetime. Without a policy, a server with users
/// lets every user do everything and anonymous requests nothing; a server without users lets
/// anyone do everything (for tests of the token flow; `hoist serve` refuses this unless asked
/// with `--anonymous-push`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Auth {
    /// `Authorization: Basic` checked against the users of an htpasswd file.
    Basic(Htpasswd),
    /// Bearer tokens from the built-in token endpoint at `/token`. With users, the endpoint
    /// wants their basic credentials; without, it gives anyone a token (to exercise the flow).
    Token {
        /// Who may get a token.
        users: Option<Htpasswd>,
        /// How long a token lasts (at most [`MAX_TOKEN_LIFETIME`]).
        lifetime: Duration,
    },
    /// Either scheme with the settings of [`AuthConfig`]: what [`Auth::basic`] and
    /// [`Auth::token`] build.
    Configured(Box<AuthConfig>),
}

/// The full settings of [`Auth`], built through its `with_*` methods.
#[derive(Clone)]
pub struct AuthConfig {
    scheme: Scheme,
    users: Option<Htpasswd>,
    policy: Option<AccessPolicy>,
    refresh_lifetime: Duration,
    clock: Clock,
    limits: Limits,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("scheme", &self.scheme)
            .field("users", &self.users)
            .field("policy", &self.policy.is_some())
            .field("refresh_lifetime", &self.refresh_lifetime)
            .finish_non_exhaustive()
    }
}

impl AuthConfig {
    fn new(scheme: Scheme, users: Option<Htpasswd>) -> Self {
        Self {
            scheme,
            users,
            policy: None,
            refresh_lifetime: DEFAULT_REFRESH_LIFETIME,
            clock: Arc::new(Instant::now),
            limits: LIMITS,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Scheme {
    Basic,
    Token { lifetime: Duration },
}

impl Auth {
    /// Basic auth: every request carries the credentials of one of `users` (or is anonymous,
    /// and may do what the policy lets anonymous requests do).
    pub fn basic(users: Option<Htpasswd>) -> Self {
        Self::Configured(Box::new(AuthConfig::new(Scheme::Basic, users)))
    }

    /// Token auth: the token endpoint issues tokens lasting `lifetime` (at most
    /// [`MAX_TOKEN_LIFETIME`]) to `users` (with their basic credentials) and, where the policy
    /// allows anonymous requests anything, to anyone.
    pub fn token(users: Option<Htpasswd>, lifetime: Duration) -> Self {
        Self::Configured(Box::new(AuthConfig::new(Scheme::Token { lifetime }, users)))
    }

    fn into_config(self) -> AuthConfig {
        match self {
            Self::Basic(users) => AuthConfig::new(Scheme::Basic, Some(users)),
            Self::Token { users, lifetime } => AuthConfig::new(Scheme::Token { lifetime }, users),
            Self::Configured(config) => *config,
        }
    }

    fn edit(self, change: impl FnOnce(&mut AuthConfig)) -> Self {
        let mut config = self.into_config();
        change(&mut config);
        Self::Configured(Box::new(config))
    }

    /// Decides what each user may do by `policy`.
    pub fn with_policy(self, policy: AccessPolicy) -> Self {
        self.edit(|c| c.policy = Some(policy))
    }

    /// Sets how long refresh tokens (issued by password grants of `POST /token`) last (at most
    /// [`MAX_TOKEN_LIFETIME`]).
    pub fn with_refresh_lifetime(self, lifetime: Duration) -> Self {
        self.edit(|c| c.refresh_lifetime = lifetime)
    }

    /// Reads the time from `clock` instead of [`Instant::now`] (tests move it to expire tokens
    /// and cached credentials without waiting).
    pub fn with_clock(self, clock: impl Fn() -> Instant + Send + Sync + 'static) -> Self {
        self.edit(|c| c.clock = Arc::new(clock))
    }
}

/// Checks requests against the configured [`Auth`] and runs the token endpoint.
pub(crate) struct Authenticator {
    scheme: Scheme,
    users: Option<Arc<Htpasswd>>,
    /// Password checks running at once: bcrypt is slow on purpose (up to a second a check at
    /// the costs allowed), so the checks run on blocking threads, a few at a time, and never
    /// on the threads that serve every connection.
    password_checks: Semaphore,
    /// `POST /token` bodies being read ([`MAX_CONCURRENT_TOKEN_FORMS`]).
    token_forms: Semaphore,
    policy: Arc<AccessPolicy>,
    refresh_lifetime: Duration,
    clock: Clock,
    /// Credentials already checked (with their user), by a hash of the header: bcrypt is slow
    /// on purpose, and clients send the same header with every request.
    verified: Mutex<Expiring<Digest, String>>,
    /// Issues and checks access tokens (claims: a [`Grant`]) and refresh tokens, issued by
    /// password grants (claims: their user).
    signer: Signer,
}

/// 401 asking for basic credentials: what basic auth answers, and the token endpoint too.
fn basic_challenge(message: &str) -> Reply {
    let mut response = wire::refusal(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message);
    set(
        &mut response,
        header::WWW_AUTHENTICATE,
        "Basic realm=\"hoist\"",
    );
    response
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The maps stay consistent at every step a panic could interrupt: keep using them.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Authenticator {
    pub(crate) fn new(auth: Auth) -> Self {
        let config = auth.into_config();
        let policy = match (config.policy, &config.users) {
            (Some(policy), _) => policy,
            (None, Some(_)) => AccessPolicy::authenticated_only(),
            (None, None) => AccessPolicy::anonymous(Actions::ALL),
        };
        if let Some(users) = &config.users {
            for user in policy.named_users() {
                if !users.contains(user) {
                    tracing::warn!(
                        user,
                        "the access policy names a user the htpasswd file does not have"
                    );
                }
            }
        }
        let scheme = match config.scheme {
            Scheme::Token { lifetime } => Scheme::Token {
                lifetime: lifetime.min(MAX_TOKEN_LIFETIME),
            },
            Scheme::Basic => Scheme::Basic,
        };
        // Half the cores check passwords at most: the rest serve everyone else.
        let checks = std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1));
        Self {
            scheme,
            users: config.users.map(Arc::new),
            password_checks: Semaphore::new(checks),
            token_forms: Semaphore::new(MAX_CONCURRENT_TOKEN_FORMS),
            policy: Arc::new(policy),
            refresh_lifetime: config.refresh_lifetime.min(MAX_TOKEN_LIFETIME),
            signer: Signer::new((config.clock)()),
            clock: config.clock,
            verified: Mutex::new(Expiring::new(config.limits.verified)),
        }
    }

    fn now(&self) -> Instant {
        (self.clock)()
    }

    /// Whether `password` is `user`'s, checked on a blocking thread, at most
    /// `password_checks` at a time; `false` without users.
    async fn check_password(&self, user: &str, password: &str) -> bool {
        let Some(users) = &self.users else {
            return false;
        };
        let Ok(_permit) = self.password_checks.acquire().await else {
            return false;
        };
        let (users, user, password) = (Arc::clone(users), user.to_owned(), password.to_owned());
        tokio::task::spawn_blocking(move || users.verify(&user, &password))
            .await
            .unwrap_or(false)
    }

    /// The user of basic credentials: `Ok(None)` without them, `Err` when they are wrong (or
    /// there are no users to check them against).
    async fn basic_user(
        &self,
        authorization: Option<&str>,
    ) -> std::result::Result<Option<String>, ()> {
        let Some(encoded) = authorization.and_then(|a| a.strip_prefix("Basic ")) else {
            return Ok(None);
        };
        let encoded = encoded.trim();
        if self.users.is_none() {
            return Err(());
        }
        let key = Digest::sha256(encoded.as_bytes());
        if let Some(user) = lock(&self.verified).get(&key, self.now()) {
            return Ok(Some(user.clone()));
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| ())?;
        let decoded = String::from_utf8(decoded).map_err(|_| ())?;
        let (user, password) = decoded.split_once(':').ok_or(())?;
        if !self.check_password(user, password).await {
            tracing::debug!(user, "wrong basic credentials");
            return Err(());
        }
        let now = self.now();
        lock(&self.verified).insert(key, user.to_owned(), now + VERIFIED_FOR, now);
        Ok(Some(user.to_owned()))
    }

    fn granted(&self, user: Option<String>, scopes: Option<Vec<Scope>>) -> Access {
        Access(Some(Arc::new(Granted {
            user,
            policy: Arc::clone(&self.policy),
            scopes,
        })))
    }

    /// Lets a request through with what it may do, or answers 401 with the challenge that
    /// tells the client how to authenticate (403 to a user the policy refuses).
    pub(crate) async fn authorize(
        &self,
        request: &Request<Incoming>,
        route: &Route<'_>,
        tls: bool,
    ) -> std::result::Result<Access, Reply> {
        let authorization = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let needed = needed_scope(request.method(), route);
        match self.scheme {
            Scheme::Basic => {
                let user = self
                    .basic_user(authorization)
                    .await
                    .map_err(|()| basic_challenge("wrong user name or password"))?;
                let allowed = match &needed {
                    // The base and the catalog (which is filtered) are for whoever may do
                    // anything: every user, and anonymous requests when the policy lets them.
                    None => user.is_some() || self.policy.allows_anonymous_anything(),
                    Some(_) if matches!(route, Route::Catalog) => {
                        user.is_some() || self.policy.allows_somewhere(None, Action::Pull)
                    }
                    Some(scope) => {
                        scope
                            .actions
                            .iter()
                            .filter_map(|a| Action::parse(a))
                            .all(|action| {
                                self.policy
                                    .allowed(user.as_deref(), &scope.name)
                                    .contains(action)
                            })
                    }
                };
                if allowed {
                    return Ok(self.granted(user, None));
                }
                tracing::debug!(
                    user = user.as_deref().unwrap_or("(anonymous)"),
                    scope = needed.as_ref().map(Scope::render).unwrap_or_default(),
                    "refused by the access policy"
                );
                match user {
                    // Anonymous: ask for credentials, which may be allowed more.
                    None => Err(basic_challenge("authentication required")),
                    Some(user) => Err(wire::refusal(
                        StatusCode::FORBIDDEN,
                        ErrorCode::Denied,
                        &format!(
                            "{user} may not {}",
                            needed.as_ref().map(Scope::render).unwrap_or_default()
                        ),
                    )),
                }
            }
            Scheme::Token { .. } => {
                let token = authorization
                    .and_then(|a| a.strip_prefix("Bearer "))
                    .map(str::trim);
                let grant =
                    token.and_then(|t| self.signer.open::<Grant>(Kind::Access, t, self.now()));
                if let Some(grant) = &grant
                    && needed
                        .as_ref()
                        .is_none_or(|n| grant.scopes.iter().any(|s| s.covers(n)))
                {
                    return Ok(self.granted(grant.user.clone(), Some(grant.scopes.clone())));
                }
                let host = request
                    .headers()
                    .get(header::HOST)
                    .and_then(|v| v.to_str().ok())
                    .or_else(|| request.uri().authority().map(|a| a.as_str()))
                    .unwrap_or("localhost");
                let scheme = if tls { "https" } else { "http" };
                let mut challenge = format!(
                    "Bearer realm=\"{scheme}://{host}{TOKEN_PATH}\",service=\"{TOKEN_SERVICE}\""
                );
                if let Some(needed) = &needed {
                    challenge.push_str(&format!(",scope=\"{}\"", needed.render()));
                }
                if grant.is_some() {
                    challenge.push_str(",error=\"insufficient_scope\"");
                }
                let mut response = wire::refusal(
                    StatusCode::UNAUTHORIZED,
                    ErrorCode::Unauthorized,
                    "a token with the right scope is required",
                );
                set(&mut response, header::WWW_AUTHENTICATE, &challenge);
                Err(response)
            }
        }
    }

    /// The scopes of `requested` that the policy allows `user`, with only the actions it
    /// allows: a token is narrowed, never refused, as the token flow expects (the registry then
    /// answers 401 `insufficient_scope` for what is missing).
    fn narrow(&self, user: Option<&str>, requested: Vec<Scope>) -> Vec<Scope> {
        let mut granted: Vec<Scope> = Vec::new();
        for scope in requested {
            let kept = match scope.kind.as_str() {
                "repository" => {
                    let allowed = self.policy.allowed(user, &scope.name);
                    let actions: Vec<String> = Action::ALL
                        .into_iter()
                        .filter(|&action| {
                            allowed.contains(action)
                                && scope
                                    .actions
                                    .iter()
                                    .any(|a| a == action.as_str() || a == "*")
                        })
                        .map(|a| a.as_str().to_owned())
                        .collect();
                    (!actions.is_empty()).then_some(Scope { actions, ..scope })
                }
                // The catalog lists only what the user may pull: it is theirs when anything is.
                "registry"
                    if scope.name == "catalog"
                        && self.policy.allows_somewhere(user, Action::Pull) =>
                {
                    Some(Scope::catalog())
                }
                _ => None,
            };
            if let Some(kept) = kept
                && !granted.contains(&kept)
            {
                granted.push(kept);
            }
        }
        granted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicyFormat;

    #[test]
    fn scopes_cover_what_they_name() {
        let granted = Scope::parse("repository:team/app:pull,push").unwrap();
        assert!(granted.covers(&Scope::parse("repository:team/app:pull").unwrap()));
        assert!(granted.covers(&Scope::parse("repository:team/app:push").unwrap()));
        assert!(!granted.covers(&Scope::parse("repository:team/app:delete").unwrap()));
        assert!(!granted.covers(&Scope::parse("repository:team/other:pull").unwrap()));
        assert!(
            Scope::parse("registry:catalog:*")
                .unwrap()
                .covers(&Scope::parse("registry:catalog:*").unwrap())
        );
        assert_eq!(Scope::parse("nonsense"), None);
    }

    #[test]
    fn htpasswd_takes_bcrypt_only() {
        let hash = bcrypt::hash("secret", 4).unwrap();
        let users = Htpasswd::parse(&format!("# comment\nalice:{hash}\n")).unwrap();
        assert!(users.verify("alice", "secret"));
        assert!(!users.verify("alice", "wrong"));
        assert!(!users.verify("bob", "secret"));
        assert!(
            Htpasswd::parse("alice:{SHA}abc")
                .unwrap_err()
                .contains("not bcrypt")
        );
        assert!(Htpasswd::parse("no colon").unwrap_err().contains("line 1"));
        assert!(Htpasswd::parse("").is_err());
    }

    #[test]
    fn unknown_users_are_checked_against_a_hash_of_the_same_cost() {
        let (four, five) = (bcrypt::hash("a", 4).unwrap(), bcrypt::hash("b", 5).unwrap());
        let users = Htpasswd::parse(&format!("alice:{four}\nbob:{five}\n")).unwrap();
        assert!(users.dummy.starts_with("$2b$05$"), "{}", users.dummy);
        assert!(!users.verify("nobody", "a"));
    }

    /// A clock the test moves.
    fn clock() -> (
        Arc<Mutex<Instant>>,
        impl Fn() -> Instant + Send + Sync + 'static,
    ) {
        let now = Arc::new(Mutex::new(Instant::now()));
        let read = Arc::clone(&now);
        (now, move || *read.lock().unwrap())
    }

    #[test]
    fn expiring_maps_expire_with_the_clock_and_stay_within_their_capacity() {
        let start = Instant::now();
        let second = Duration::from_secs(1);
        let mut map = Expiring::new(3);
        map.insert("a", 1, start + 10 * second, start);
        map.insert("b", 2, start + 11 * second, start + second);
        assert_eq!(map.get(&"a", start + 9 * second), Some(&1));
        assert_eq!(map.get(&"a", start + 10 * second), None, "expired at 10 s");
        assert_eq!(map.len(), 1, "swept as it expired");
        assert_eq!(map.get(&"b", start + 10 * second), Some(&2));
        // Full: the oldest goes.
        for (i, key) in ["c", "d", "e"].into_iter().enumerate() {
            map.insert(key, i + 3, start + 20 * second, start + 10 * second);
        }
        assert_eq!(map.len(), 3);
        assert_eq!(map.get(&"b", start + 10 * second), None, "evicted");
        assert_eq!(map.get(&"e", start + 10 * second), Some(&5));
        // Inserting one key again and again leaves the queue bounded.
        for i in 0..100 {
            map.insert("e", i, start + 20 * second, start + 10 * second);
        }
        assert!(map.queue.len() <= 6, "{}", map.queue.len());
        assert_eq!(map.get(&"e", start + 10 * second), Some(&99));
        assert_eq!(map.get(&"c", start + 10 * second), Some(&3));
    }

    fn config(auth: Auth, limits: Limits) -> Auth {
        auth.edit(|c| c.limits = limits)
    }

    #[tokio::test]
    async fn verified_credentials_are_bounded_and_expire() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let users = Htpasswd::parse(&format!("alice:{hash}\nbob:{hash}\ncarol:{hash}\n")).unwrap();
        let (now, read) = clock();
        let auth = config(
            Auth::basic(Some(users)).with_clock(read),
            Limits { verified: 2 },
        );
        let authenticator = Authenticator::new(auth);
        let header = |user: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:pw"))
            )
        };
        for user in ["alice", "bob", "carol"] {
            assert_eq!(
                authenticator.basic_user(Some(&header(user))).await,
                Ok(Some(user.to_owned()))
            );
        }
        assert_eq!(lock(&authenticator.verified).len(), 2, "bounded");
        assert_eq!(
            authenticator.basic_user(Some("Basic bm9ib2R5OnB3")).await,
            Err(()),
            "nobody:pw"
        );
        *now.lock().unwrap() += VERIFIED_FOR;
        lock(&authenticator.verified).sweep(authenticator.now());
        assert_eq!(lock(&authenticator.verified).len(), 0, "expired");
    }

    const POLICY: &str = r#"
[repositories."team/*"]
policies = [{ users = ["alice"], actions = ["pull", "push"] }]
[repositories."team/app"]
policies = [
  { users = ["bob"], actions = ["pull"] },
  { users = ["alice"], actions = ["pull", "push"] },
]
[repositories."public/*"]
anonymous = ["pull"]
"#;

    fn scopes(text: &str) -> Vec<Scope> {
        text.split(' ').filter_map(Scope::parse).collect()
    }

    fn rendered(scopes: &[Scope]) -> String {
        scopes
            .iter()
            .map(Scope::render)
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn tokens_are_narrowed_to_what_the_policy_allows() {
        let policy = AccessPolicy::parse(POLICY, PolicyFormat::Toml).unwrap();
        let hash = bcrypt::hash("pw", 4).unwrap();
        let users = Htpasswd::parse(&format!("alice:{hash}\nbob:{hash}\n")).unwrap();
        let authenticator = Authenticator::new(
            Auth::token(Some(users), Duration::from_secs(60)).with_policy(policy),
        );
        let narrow =
            |user: Option<&str>, asked: &str| rendered(&authenticator.narrow(user, scopes(asked)));
        assert_eq!(
            narrow(
                Some("alice"),
                "repository:team/app:pull,push,delete repository:other:pull"
            ),
            "repository:team/app:pull,push"
        );
        assert_eq!(
            narrow(Some("bob"), "repository:team/app:push,pull"),
            "repository:team/app:pull"
        );
        assert_eq!(narrow(Some("bob"), "repository:team/x:pull"), "");
        assert_eq!(
            narrow(Some("alice"), "repository:team/x:*"),
            "repository:team/x:pull,push"
        );
        assert_eq!(
            narrow(None, "repository:public/a:pull,push registry:catalog:*"),
            "repository:public/a:pull registry:catalog:*"
        );
        assert_eq!(narrow(None, "repository:team/app:pull"), "");
        assert_eq!(
            narrow(Some("bob"), "registry:catalog:* other:x:y"),
            "registry:catalog:*"
        );
    }

    #[test]
    fn grants_expire_with_the_clock_and_no_number_of_them_pushes_one_out() {
        let (now, read) = clock();
        let authenticator =
            Authenticator::new(Auth::token(None, Duration::from_secs(60)).with_clock(read));
        let issue = |user: &str| {
            let grant = Grant {
                user: Some(user.to_owned()),
                scopes: scopes("repository:a:pull"),
            };
            let expires = authenticator.now() + Duration::from_secs(60);
            authenticator.signer.issue(Kind::Access, grant, expires)
        };
        let user = |token: &str| {
            let grant =
                authenticator
                    .signer
                    .open::<Grant>(Kind::Access, token, authenticator.now());
            grant.and_then(|g| g.user)
        };
        let first = issue("first");
        // As many as anyone could ask for while the first is good: it stays good.
        for n in 0..20_000 {
            issue(&format!("u{n}"));
        }
        *now.lock().unwrap() += Duration::from_secs(30);
        let second = issue("second");
        assert_eq!(user(&first).as_deref(), Some("first"));
        *now.lock().unwrap() += Duration::from_secs(30);
        assert_eq!(user(&first), None, "expired");
        assert_eq!(user(&second).as_deref(), Some("second"));
        *now.lock().unwrap() += Duration::from_secs(30);
        assert_eq!(user(&second), None, "expired");
    }

    #[test]
    fn refresh_tokens_expire() {
        let (now, read) = clock();
        let authenticator = Authenticator::new(
            Auth::token(None, Duration::from_secs(60))
                .with_refresh_lifetime(Duration::from_secs(3600))
                .with_clock(read),
        );
        let expires = authenticator.now() + authenticator.refresh_lifetime;
        let alice = Some("alice".to_owned());
        let refresh = authenticator.signer.issue(Kind::Refresh, &alice, expires);
        let user = |authenticator: &Authenticator| {
            let now = authenticator.now();
            authenticator
                .signer
                .open::<Option<String>>(Kind::Refresh, &refresh, now)
        };
        assert_eq!(user(&authenticator), Some(alice.clone()));
        assert_eq!(
            authenticator
                .signer
                .open::<Grant>(Kind::Access, &refresh, authenticator.now())
                .map(|g| g.user),
            None,
            "a refresh token is no access token"
        );
        *now.lock().unwrap() += Duration::from_secs(3600);
        assert_eq!(user(&authenticator), None);
    }
}
