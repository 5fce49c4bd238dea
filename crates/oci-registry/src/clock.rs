//! The time the client's token cache reads: the system's monotonic clock, or one a test moves.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

/// Where [`RegistryClient`](crate::RegistryClient) reads the time when it stores a bearer
/// token and when it decides whether a cached token is still good.
///
/// The default is [`Instant::now`]. Tests set a clock of their own with
/// [`RegistryClientBuilder::with_clock`](crate::RegistryClientBuilder::with_clock), so that
/// they move time past a token's lifetime instead of sleeping through it:
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use std::time::{Duration, Instant};
/// use oci_registry::Clock;
///
/// let now = Arc::new(Mutex::new(Instant::now()));
/// let clock = Clock::new({
///     let now = Arc::clone(&now);
///     move || *now.lock().unwrap_or_else(|e| e.into_inner())
/// });
/// let before = clock.now();
/// *now.lock().unwrap() += Duration::from_secs(120);
/// assert_eq!(clock.now() - before, Duration::from_secs(120));
/// ```
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> Instant + Send + Sync>);

impl Clock {
    /// A clock reading `now` (which must never go backwards, as [`Instant`] does not).
    pub fn new(now: impl Fn() -> Instant + Send + Sync + 'static) -> Self {
        Self(Arc::new(now))
    }

    /// The system's monotonic clock, [`Instant::now`].
    pub fn system() -> Self {
        Self::new(Instant::now)
    }

    /// The time now.
    pub fn now(&self) -> Instant {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Clock")
    }
}
