//! Per-access-key request and bandwidth limits (`cairn key limit`): a request signed with a
//! limited key is admitted or refused with S3's 503 SlowDown, which SDKs retry with backoff.
//!
//! Each limited key has a request bucket (`requests_per_sec` tokens, refilled continuously,
//! holding at most one second's worth; a request takes one) and a byte budget (refilled at
//! `bytes_per_sec`, at most one second's worth, that may go into debt). A request is admitted
//! when its key's byte budget is not in debt and a request token is left; then the body bytes
//! it moves, request body in and response body out, are charged to the budget as they stream
//! ([`Meter`]), so one large transfer makes the key wait until its debt is paid off.
//!
//! Admission runs in the access hook ([`crate::auth::Access`]), after s3s verified the
//! signature: a request is charged only to the key it proved it holds, and anonymous requests
//! are never limited. The HTTP layer ([`crate::server`]) gives every request a [`Meter`]
//! before s3s sees it; the hook attaches the admitted key's budget to it, and bytes that passed
//! before that (a POST form's head) are charged then.
//!
//! Limits come with the key's secret ([`crate::auth::KeyAuth`], a few seconds' cache); only
//! keys with limits have state here, and at most [`MAX_KEYS`] of them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Instant;

use bytes::Bytes;
use cairn_client::KeyLimits;
use s3s::{s3_error, S3Result};
use tracing::{debug, warn};

use crate::auth::KeyAuth;
use crate::metrics::{S3Metrics, Tap};

/// Most keys whose buckets are kept. Past it, keys whose buckets are full (forgetting them
/// changes nothing) are dropped, then all.
const MAX_KEYS: usize = 4096;

/// Token amounts are kept in billionths, so refills over any number of nanoseconds are exact.
const NANOS: i128 = 1_000_000_000;

/// A token bucket whose clock is passed in: `rate` tokens per second, at most one second's
/// worth held, and a level that [`TokenBucket::charge`] may take below zero (a debt).
///
/// Not `cairn_net::RateLimiter`: that one makes callers wait off their debt, this one answers
/// yes or no at once (and the gateway does not depend on cairn-net).
#[derive(Clone, Debug)]
pub(crate) struct TokenBucket {
    /// Tokens per second, and the most held.
    rate: u64,
    /// Tokens held, in billionths; negative is a debt.
    level: i128,
    /// When `level` was last brought up to date.
    at: Instant,
}

impl TokenBucket {
    /// A full bucket of `rate` tokens per second.
    pub(crate) fn new(rate: u64, now: Instant) -> TokenBucket {
        TokenBucket {
            rate,
            level: i128::from(rate) * NANOS,
            at: now,
        }
    }

    fn burst(&self) -> i128 {
        i128::from(self.rate) * NANOS
    }

    fn refill(&mut self, now: Instant) {
        // A clock reading earlier than the last one does not move the bucket back.
        if now <= self.at {
            return;
        }
        let elapsed = i128::try_from(now.duration_since(self.at).as_nanos()).unwrap_or(i128::MAX);
        // Nanoseconds times tokens per second is billionths of a token.
        let gained = elapsed.saturating_mul(i128::from(self.rate));
        self.level = self.level.saturating_add(gained).min(self.burst());
        self.at = now;
    }

    /// Takes `n` tokens if the bucket holds them.
    pub(crate) fn take(&mut self, n: u64, now: Instant) -> bool {
        self.refill(now);
        let n = i128::from(n) * NANOS;
        let enough = self.level >= n;
        if enough {
            self.level -= n;
        }
        enough
    }

    /// Takes `n` tokens whatever the bucket holds, going into debt if it must.
    pub(crate) fn charge(&mut self, n: u64, now: Instant) {
        self.refill(now);
        self.level = self.level.saturating_sub(i128::from(n) * NANOS);
    }

    /// Whether more tokens were taken than the bucket held.
    pub(crate) fn in_debt(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.level < 0
    }

    /// Whether the bucket holds all it can: a new bucket would be the same.
    pub(crate) fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.level >= self.burst()
    }

    /// Changes the rate (and so the most held): tokens beyond the new burst are dropped, a
    /// debt is kept.
    pub(crate) fn set_rate(&mut self, rate: u64, now: Instant) {
        self.refill(now);
        self.rate = rate;
        self.level = self.level.min(self.burst());
    }
}

/// Which limit refused a request (the `reason` label of `cairn_s3_throttled_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Throttle {
    /// No request token left.
    Requests = 0,
    /// The byte budget is in debt.
    Bandwidth = 1,
}

impl Throttle {
    pub(crate) const ALL: [Throttle; 2] = [Throttle::Requests, Throttle::Bandwidth];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Throttle::Requests => "requests",
            Throttle::Bandwidth => "bandwidth",
        }
    }
}

/// One limited key's buckets.
#[derive(Debug)]
struct KeyState {
    limits: KeyLimits,
    requests: Option<TokenBucket>,
    bytes: Option<TokenBucket>,
}

impl KeyState {
    fn new(limits: KeyLimits, now: Instant) -> KeyState {
        KeyState {
            limits,
            requests: limits.requests_per_sec.map(|r| TokenBucket::new(r, now)),
            bytes: limits.bytes_per_sec.map(|r| TokenBucket::new(r, now)),
        }
    }

    /// Follows a change of the key's limits, keeping what each kept limit has used.
    fn set_limits(&mut self, limits: KeyLimits, now: Instant) {
        fn follow(bucket: &mut Option<TokenBucket>, rate: Option<u64>, now: Instant) {
            match (bucket.as_mut(), rate) {
                (Some(b), Some(rate)) => b.set_rate(rate, now),
                (None, Some(rate)) => *bucket = Some(TokenBucket::new(rate, now)),
                (_, None) => *bucket = None,
            }
        }
        follow(&mut self.requests, limits.requests_per_sec, now);
        follow(&mut self.bytes, limits.bytes_per_sec, now);
        self.limits = limits;
    }

    /// Admits one request, or says which limit refuses it. A refused request takes nothing.
    fn admit(&mut self, now: Instant) -> Result<(), Throttle> {
        if self.bytes.as_mut().is_some_and(|b| b.in_debt(now)) {
            return Err(Throttle::Bandwidth);
        }
        if self.requests.as_mut().is_some_and(|r| !r.take(1, now)) {
            return Err(Throttle::Requests);
        }
        Ok(())
    }

    fn charge(&mut self, bytes: u64, now: Instant) {
        if let Some(b) = self.bytes.as_mut() {
            b.charge(bytes, now);
        }
    }

    /// Whether every bucket is full, so that forgetting the key changes nothing.
    fn at_rest(&mut self, now: Instant) -> bool {
        self.requests.as_mut().is_none_or(|b| b.is_full(now))
            && self.bytes.as_mut().is_none_or(|b| b.is_full(now))
    }
}

type SharedState = Arc<Mutex<KeyState>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The gateway's per-key limits: admits requests and keeps the limited keys' buckets.
pub(crate) struct Qos {
    /// Where limits are read (with the keys' secrets, briefly cached).
    keys: KeyAuth,
    /// Where refusals are counted.
    metrics: Arc<S3Metrics>,
    /// Buckets of the limited keys seen, by access key id (at most [`MAX_KEYS`]).
    states: Mutex<HashMap<String, SharedState>>,
}

impl Qos {
    pub(crate) fn new(keys: KeyAuth, metrics: Arc<S3Metrics>) -> Qos {
        Qos {
            keys,
            metrics,
            states: Mutex::new(HashMap::new()),
        }
    }

    /// Admits a request signed (and verified) with key `id`, or refuses it with 503
    /// SlowDown. Once admitted under a byte limit, `meter` charges the request's bytes to it.
    pub(crate) async fn admit(&self, id: &str, meter: Option<&Meter>) -> S3Result<()> {
        let limits = match self.keys.limits(id).await {
            Ok(limits) => limits,
            Err(e) => {
                // The request's own lookups will most likely fail too and say so; limits are
                // not a reason to refuse it.
                warn!(error = %e, key = id, "reading an access key's limits failed");
                return Ok(());
            }
        };
        self.admit_at(id, limits, meter, Instant::now())
    }

    fn admit_at(
        &self,
        id: &str,
        limits: KeyLimits,
        meter: Option<&Meter>,
        now: Instant,
    ) -> S3Result<()> {
        let Some(state) = self.state(id, limits, now) else {
            return Ok(());
        };
        let admitted = lock(&state).admit(now);
        match admitted {
            Ok(()) => {
                if let (Some(meter), Some(_)) = (meter, limits.bytes_per_sec) {
                    meter.attach(state);
                }
                Ok(())
            }
            Err(reason) => {
                self.metrics.throttled(reason);
                debug!(key = id, reason = reason.as_str(), "request throttled");
                Err(s3_error!(SlowDown, "Please reduce your request rate."))
            }
        }
    }

    /// The buckets of key `id` under `limits` (`None`: no limit).
    fn state(&self, id: &str, limits: KeyLimits, now: Instant) -> Option<SharedState> {
        let mut states = lock(&self.states);
        if limits.is_empty() {
            states.remove(id);
            return None;
        }
        if let Some(state) = states.get(id) {
            let mut s = lock(state);
            if s.limits != limits {
                s.set_limits(limits, now);
            }
            drop(s);
            return Some(state.clone());
        }
        if states.len() >= MAX_KEYS {
            states.retain(|_, s| !lock(s).at_rest(now));
            if states.len() >= MAX_KEYS {
                warn!(
                    keys = states.len(),
                    "too many limited access keys in use at once: their limits start over"
                );
                states.clear();
            }
        }
        let state = Arc::new(Mutex::new(KeyState::new(limits, now)));
        states.insert(id.to_string(), state.clone());
        Some(state)
    }

    #[cfg(test)]
    fn keys_kept(&self) -> usize {
        lock(&self.states).len()
    }
}

/// Counts one request's body bytes, in and out, and charges them to the byte budget of the key
/// it was admitted under. Clones share the count: the HTTP layer puts one in the request's
/// extensions and wraps both bodies with it.
#[derive(Clone, Default)]
pub(crate) struct Meter(Arc<MeterInner>);

#[derive(Default)]
struct MeterInner {
    /// The admitted key's buckets, once the access hook admitted it under a byte limit.
    key: OnceLock<SharedState>,
    /// Bytes that passed before that, charged when it happens.
    early: AtomicU64,
}

impl Meter {
    fn attach(&self, state: SharedState) {
        if self.0.key.set(state).is_ok() {
            self.settle();
        }
    }

    fn charge(&self, bytes: u64) {
        match self.0.key.get() {
            Some(state) => lock(state).charge(bytes, Instant::now()),
            None => {
                self.0.early.fetch_add(bytes, Ordering::Relaxed);
                // The key may have been attached meanwhile: its early bytes are not lost.
                if self.0.key.get().is_some() {
                    self.settle();
                }
            }
        }
    }

    fn settle(&self) {
        let early = self.0.early.swap(0, Ordering::Relaxed);
        if let (Some(state), true) = (self.0.key.get(), early > 0) {
            lock(state).charge(early, Instant::now());
        }
    }
}

impl Tap for Meter {
    fn data(&self, data: &Bytes) {
        self.charge(data.len() as u64);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn requests_get_a_burst_of_one_second_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(4, t0);
        for _ in 0..4 {
            assert!(b.take(1, t0));
        }
        assert!(!b.take(1, t0), "the burst is one second's worth");
        assert!(
            !b.take(1, t0 + ms(249)),
            "a token takes 250 ms to come back"
        );
        assert!(b.take(1, t0 + ms(250)));
        assert!(!b.take(1, t0 + ms(250)));
        // An hour idle refills no more than the burst.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..4 {
            assert!(b.take(1, later));
        }
        assert!(!b.take(1, later));
    }

    #[test]
    fn refills_add_up_exactly_over_small_steps() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(3, t0);
        for _ in 0..3 {
            assert!(b.take(1, t0));
        }
        // A token takes 333,333,333 1/3 ns: stepping there by microseconds loses nothing to
        // rounding, so it is back after exactly 333,333,334 ns.
        let mut now = t0;
        for _ in 0..333_333 {
            now += Duration::from_micros(1);
            b.refill(now);
        }
        assert!(!b.take(1, now + Duration::from_nanos(333)));
        assert!(b.take(1, now + Duration::from_nanos(334)));
    }

    #[test]
    fn a_budget_goes_into_debt_and_is_paid_off_at_its_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000, t0);
        assert!(!b.in_debt(t0));
        b.charge(1000, t0);
        assert!(!b.in_debt(t0), "an empty budget is not a debt");
        b.charge(2500, t0);
        assert!(b.in_debt(t0));
        assert!(b.in_debt(t0 + ms(2499)));
        assert!(!b.in_debt(t0 + ms(2500)), "2500 bytes at 1000/s take 2.5 s");
        assert!(!b.is_full(t0 + ms(3499)));
        assert!(b.is_full(t0 + ms(3500)));
    }

    #[test]
    fn the_clock_going_back_changes_nothing() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut b = TokenBucket::new(2, t0);
        assert!(b.take(2, t0));
        assert!(!b.take(1, t0 - Duration::from_secs(5)));
        assert!(b.take(1, t0 + ms(500)));
    }

    #[test]
    fn a_new_rate_keeps_the_debt_and_drops_tokens_over_the_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100, t0);
        b.set_rate(10, t0);
        assert!(b.take(10, t0));
        assert!(!b.take(1, t0), "tokens over the new burst were dropped");
        b.charge(20, t0);
        b.set_rate(1000, t0);
        assert!(b.in_debt(t0));
        assert!(!b.in_debt(t0 + ms(20)));
    }

    #[test]
    fn key_state_refuses_by_bandwidth_before_taking_a_request_token() {
        let t0 = Instant::now();
        let limits = KeyLimits {
            requests_per_sec: Some(2),
            bytes_per_sec: Some(100),
        };
        let mut s = KeyState::new(limits, t0);
        assert_eq!(s.admit(t0), Ok(()));
        s.charge(150, t0);
        assert_eq!(s.admit(t0), Err(Throttle::Bandwidth));
        // Paid off after 0.5 s; the refused request took no request token.
        assert_eq!(s.admit(t0 + ms(500)), Ok(()));
        assert_eq!(s.admit(t0 + ms(500)), Ok(()));
        assert_eq!(s.admit(t0 + ms(500)), Err(Throttle::Requests));
        s.set_limits(
            KeyLimits {
                requests_per_sec: None,
                ..limits
            },
            t0 + ms(500),
        );
        assert_eq!(s.admit(t0 + ms(500)), Ok(()));
        assert!(!s.at_rest(t0 + ms(500)));
        assert!(s.at_rest(t0 + ms(1500)));
    }

    #[test]
    fn meter_charges_bytes_seen_before_and_after_admission() {
        let t0 = Instant::now();
        let state = Arc::new(Mutex::new(KeyState::new(
            KeyLimits {
                requests_per_sec: None,
                bytes_per_sec: Some(1 << 40),
            },
            t0,
        )));
        let meter = Meter::default();
        meter.charge(1 << 40);
        meter.attach(state.clone());
        meter.charge(1 << 39);
        // One and a half budgets were taken (the early bytes when the key was attached), so
        // the budget is in debt.
        assert!(lock(&state).bytes.as_mut().unwrap().in_debt(t0));
        assert_eq!(meter.0.early.load(Ordering::Relaxed), 0);
    }

    fn qos() -> (tempfile::TempDir, Qos) {
        let dir = tempfile::tempdir().unwrap();
        let client = cairn_client::Client::open_dir(dir.path()).unwrap();
        let qos = Qos::new(KeyAuth::new(client), Arc::new(S3Metrics::new()));
        (dir, qos)
    }

    fn per_sec(requests: u64) -> KeyLimits {
        KeyLimits {
            requests_per_sec: Some(requests),
            bytes_per_sec: None,
        }
    }

    #[test]
    fn unlimited_keys_keep_no_state_and_lifting_limits_forgets_a_key() {
        let (_dir, qos) = qos();
        let t0 = Instant::now();
        assert!(qos.admit_at("free", KeyLimits::default(), None, t0).is_ok());
        assert_eq!(qos.keys_kept(), 0);
        assert!(qos.admit_at("slow", per_sec(1), None, t0).is_ok());
        let refused = qos.admit_at("slow", per_sec(1), None, t0).unwrap_err();
        assert_eq!(*refused.code(), s3s::S3ErrorCode::SlowDown);
        assert_eq!(qos.keys_kept(), 1);
        assert!(qos.admit_at("slow", KeyLimits::default(), None, t0).is_ok());
        assert_eq!(qos.keys_kept(), 0);
        let mut text = String::new();
        qos.metrics.render(&mut text);
        assert!(text.contains("cairn_s3_throttled_total{reason=\"requests\"} 1"));
        assert!(text.contains("cairn_s3_throttled_total{reason=\"bandwidth\"} 0"));
    }

    #[test]
    fn the_keys_kept_are_bounded_and_busy_ones_are_kept_first() {
        let (_dir, qos) = qos();
        let t0 = Instant::now();
        // A token of these comes back in 100 ms, one of `busy` in a second.
        for i in 0..MAX_KEYS - 1 {
            assert!(qos
                .admit_at(&format!("K{i}"), per_sec(10), None, t0)
                .is_ok());
        }
        assert!(qos.admit_at("busy", per_sec(1), None, t0).is_ok());
        assert_eq!(qos.keys_kept(), MAX_KEYS);
        let later = t0 + ms(500);
        assert!(qos.admit_at("new", per_sec(10), None, later).is_ok());
        assert_eq!(qos.keys_kept(), 2, "the keys at rest made room");
        assert!(
            qos.admit_at("busy", per_sec(1), None, later).is_err(),
            "the busy key kept its state"
        );
        // With no key at rest, all start over rather than grow past the bound.
        for i in 0..MAX_KEYS - 2 {
            assert!(qos
                .admit_at(&format!("L{i}"), per_sec(10), None, later)
                .is_ok());
        }
        assert_eq!(qos.keys_kept(), MAX_KEYS);
        assert!(qos.admit_at("last", per_sec(10), None, later).is_ok());
        assert_eq!(qos.keys_kept(), 1);
    }
}
