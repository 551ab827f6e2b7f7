//! Per-app rate limits: one GCRA state (`governor`) per limited app, checked once per presign
//! request after authentication.
//!
//! The state lives in the snapshot (`Snapshot::limiters`), so it follows reloads: a reload keeps
//! the state of every app whose limit is unchanged and starts a changed or new app with a full
//! burst. Knows no HTTP and no config file; reads time only through the `RateClock` it is given
//! (tests give a manual one). GCRA: <https://en.wikipedia.org/wiki/Generic_cell_rate_algorithm>.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::clock::{Clock, FakeRelativeClock};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use sha2::{Digest, Sha256};

/// The slowest sustained rate a limit may have (one request per 1,000 s).
pub const MIN_PER_SECOND: f64 = 0.001;
/// The fastest sustained rate a limit may have.
pub const MAX_PER_SECOND: f64 = 1_000_000.0;
/// The largest burst a limit may have.
pub const MAX_BURST: u32 = 1_000_000;

/// One app's rate limit: a sustained rate and the burst allowed on top of it. Only exists valid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    per_second: f64,
    burst: NonZeroU32,
}

impl RateLimit {
    /// A limit of `per_second` requests per second with bursts of `burst` (default: one
    /// second's worth, at least 1).
    pub fn new(per_second: f64, burst: Option<u32>) -> Result<RateLimit, String> {
        if !per_second.is_finite() || !(MIN_PER_SECOND..=MAX_PER_SECOND).contains(&per_second) {
            return Err(format!(
                "per_second: {per_second} is outside {MIN_PER_SECOND}..={MAX_PER_SECOND}"
            ));
        }
        let burst = burst.unwrap_or_else(|| (per_second.ceil() as u32).max(1));
        if burst > MAX_BURST {
            return Err(format!("burst: {burst} is above {MAX_BURST}"));
        }
        let burst = NonZeroU32::new(burst).ok_or_else(|| "burst: must be at least 1".to_owned())?;
        Ok(RateLimit { per_second, burst })
    }

    pub fn per_second(&self) -> f64 {
        self.per_second
    }

    pub fn burst(&self) -> u32 {
        self.burst.get()
    }

    fn quota(&self) -> Quota {
        // `new` bounds `per_second`, so the period is between 1 µs and 1,000 s.
        let period = Duration::from_secs_f64(1.0 / self.per_second);
        Quota::with_period(period)
            .expect("a bounded rate has a non-zero period")
            .allow_burst(self.burst)
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} requests per second (burst {})", self.per_second, self.burst)
    }
}

/// The configured limit of each app; apps not listed are unlimited. Plain data: what a reload
/// reads, compared and hashed to detect changes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppLimits {
    limits: BTreeMap<String, RateLimit>,
}

impl AppLimits {
    pub fn new() -> AppLimits {
        AppLimits::default()
    }

    pub fn set(&mut self, app: &str, limit: RateLimit) {
        self.limits.insert(app.to_owned(), limit);
    }

    pub fn get(&self, app: &str) -> Option<RateLimit> {
        self.limits.get(app).copied()
    }

    /// A stable digest of the limits, for change detection.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        for (app, limit) in &self.limits {
            hasher.update(app.as_bytes());
            hasher.update([0]);
            hasher.update(limit.per_second.to_bits().to_be_bytes());
            hasher.update(limit.burst.get().to_be_bytes());
        }
        hasher.finalize().into()
    }
}

/// Where limiters read the time: the monotonic clock, or a manual one that tests advance.
#[derive(Debug, Clone)]
pub struct RateClock(ClockKind);

#[derive(Debug, Clone)]
enum ClockKind {
    Monotonic(Instant),
    Manual(FakeRelativeClock),
}

impl RateClock {
    /// The process's monotonic clock.
    pub fn monotonic() -> RateClock {
        RateClock(ClockKind::Monotonic(Instant::now()))
    }

    /// A clock that stands still until `clock.advance(…)` moves it.
    pub fn manual(clock: FakeRelativeClock) -> RateClock {
        RateClock(ClockKind::Manual(clock))
    }
}

impl Default for RateClock {
    fn default() -> RateClock {
        RateClock::monotonic()
    }
}

impl Clock for RateClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        match &self.0 {
            ClockKind::Monotonic(start) => Nanos::from(start.elapsed()),
            ClockKind::Manual(clock) => clock.now(),
        }
    }
}

type Gcra = RateLimiter<NotKeyed, InMemoryState, RateClock, NoOpMiddleware<Nanos>>;

/// A request over its app's limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OverLimit {
    pub limit: RateLimit,
    /// How long until the app's next request conforms.
    pub wait: Duration,
}

impl OverLimit {
    /// `wait` in whole seconds, rounded up, at least 1 (what `Retry-After` says).
    pub fn retry_after_secs(&self) -> NonZeroU32 {
        let secs = self.wait.as_secs() + u64::from(self.wait.subsec_nanos() > 0);
        // A wait is at most a burst of the slowest periods (10^9 s), well inside a u32.
        NonZeroU32::new(u32::try_from(secs).unwrap_or(u32::MAX).max(1)).unwrap_or(NonZeroU32::MIN)
    }
}

/// The live limiters of one snapshot: a GCRA state per limited app.
#[derive(Default)]
pub struct Limiters {
    by_app: HashMap<String, (RateLimit, Arc<Gcra>)>,
    clock: RateClock,
}

impl Limiters {
    /// The limiters for `limits`, reusing the state of `previous` for every app whose limit is
    /// unchanged; a new or changed limit starts with a full burst.
    pub fn build(limits: &AppLimits, previous: &Limiters, clock: &RateClock) -> Limiters {
        let by_app = limits
            .limits
            .iter()
            .map(|(app, limit)| {
                let gcra = match previous.by_app.get(app) {
                    Some((old, gcra)) if old == limit => gcra.clone(),
                    _ => Arc::new(RateLimiter::direct_with_clock(limit.quota(), clock.clone())),
                };
                (app.clone(), (*limit, gcra))
            })
            .collect();
        Limiters {
            by_app,
            clock: clock.clone(),
        }
    }

    /// Counts one request of `app` against its limit. Unlimited apps always pass.
    pub fn check(&self, app: &str) -> Result<(), OverLimit> {
        let Some((limit, gcra)) = self.by_app.get(app) else {
            return Ok(());
        };
        gcra.check().map_err(|not_until| OverLimit {
            limit: *limit,
            wait: not_until.wait_time_from(self.clock.now()),
        })
    }

    /// `app`'s limit, if it has one.
    pub fn limit_of(&self, app: &str) -> Option<RateLimit> {
        self.by_app.get(app).map(|(limit, _)| *limit)
    }

    /// Whether `app`'s state is the same object in both (tests of reuse across reloads).
    pub fn shares_state(&self, other: &Limiters, app: &str) -> bool {
        match (self.by_app.get(app), other.by_app.get(app)) {
            (Some((_, a)), Some((_, b))) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl fmt::Debug for Limiters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.by_app.iter().map(|(app, (limit, _))| (app, limit)))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(pairs: &[(&str, f64, u32)]) -> AppLimits {
        let mut limits = AppLimits::new();
        for (app, per_second, burst) in pairs {
            limits.set(app, RateLimit::new(*per_second, Some(*burst)).unwrap());
        }
        limits
    }

    #[test]
    fn limits_are_checked_when_made() {
        assert_eq!(RateLimit::new(2.5, None).unwrap().burst(), 3);
        assert_eq!(RateLimit::new(0.01, None).unwrap().burst(), 1);
        for (per_second, burst) in [(0.0, None), (-1.0, None), (f64::NAN, None), (2e6, None), (1.0, Some(0))] {
            assert!(RateLimit::new(per_second, burst).is_err(), "{per_second} {burst:?}");
        }
        assert_eq!(
            RateLimit::new(1.0, Some(MAX_BURST + 1)).unwrap_err(),
            "burst: 1000001 is above 1000000"
        );
        assert_eq!(
            RateLimit::new(0.5, Some(4)).unwrap().to_string(),
            "0.5 requests per second (burst 4)"
        );
    }

    #[test]
    fn a_burst_then_one_request_per_period() {
        let time = FakeRelativeClock::default();
        let limiters = Limiters::build(
            &limits(&[("web", 2.0, 3)]),
            &Limiters::default(),
            &RateClock::manual(time.clone()),
        );
        for _ in 0..3 {
            assert_eq!(limiters.check("web"), Ok(()));
        }
        let over = limiters.check("web").unwrap_err();
        assert_eq!(over.wait, Duration::from_millis(500));
        assert_eq!(over.retry_after_secs().get(), 1);
        time.advance(Duration::from_millis(499));
        assert!(limiters.check("web").is_err());
        time.advance(Duration::from_millis(1));
        assert_eq!(limiters.check("web"), Ok(()));
        assert!(limiters.check("web").is_err());
        // Apps without a limit are never refused.
        for _ in 0..1000 {
            assert_eq!(limiters.check("mobile"), Ok(()));
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let over = |wait| OverLimit {
            limit: RateLimit::new(1.0, None).unwrap(),
            wait,
        };
        assert_eq!(over(Duration::ZERO).retry_after_secs().get(), 1);
        assert_eq!(over(Duration::from_nanos(1)).retry_after_secs().get(), 1);
        assert_eq!(over(Duration::from_secs(2)).retry_after_secs().get(), 2);
        assert_eq!(over(Duration::from_millis(2001)).retry_after_secs().get(), 3);
    }

    #[test]
    fn rebuilding_keeps_the_state_of_unchanged_limits() {
        let time = FakeRelativeClock::default();
        let clock = RateClock::manual(time);
        let first = Limiters::build(
            &limits(&[("web", 1.0, 1), ("mobile", 1.0, 1)]),
            &Limiters::default(),
            &clock,
        );
        assert_eq!(first.check("web"), Ok(()));
        assert_eq!(first.check("mobile"), Ok(()));
        let second = Limiters::build(&limits(&[("web", 1.0, 1), ("mobile", 5.0, 5)]), &first, &clock);
        assert!(second.shares_state(&first, "web"));
        assert!(second.check("web").is_err(), "web's spent burst survives the rebuild");
        assert!(!second.shares_state(&first, "mobile"));
        assert_eq!(
            second.check("mobile"),
            Ok(()),
            "a changed limit starts with a full burst"
        );
        let third = Limiters::build(&limits(&[("mobile", 5.0, 5)]), &second, &clock);
        assert_eq!(third.check("web"), Ok(()), "an app whose limit is gone is unlimited");
    }

    #[test]
    fn fingerprints_follow_the_limits() {
        let a = limits(&[("web", 1.0, 1)]);
        assert_eq!(a.fingerprint(), limits(&[("web", 1.0, 1)]).fingerprint());
        assert_ne!(a.fingerprint(), limits(&[("web", 1.0, 2)]).fingerprint());
        assert_ne!(a.fingerprint(), limits(&[("web", 2.0, 1)]).fingerprint());
        assert_ne!(a.fingerprint(), AppLimits::new().fingerprint());
    }
}
