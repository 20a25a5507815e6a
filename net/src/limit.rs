//! A token bucket bounding how fast a background worker reads and sends: bytes (chunk repair,
//! rebalance, scrub) or records (garbage collection, metadata anti-entropy).

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// A token bucket of bytes per second: a worker takes the bytes it is about to read or send
/// and waits the time it returns. Tokens refill at the rate, up to the burst; a take larger
/// than what is left still succeeds, leaving a debt that the wait pays off, so a chunk larger
/// than the burst is never refused and the long-run rate is the configured one. A rate of 0
/// means unlimited: takes never wait and nothing is counted.
pub struct RateLimiter {
    bucket: Mutex<Bucket>,
}

struct Bucket {
    /// Bytes per second; 0 = unlimited.
    rate: u64,
    /// Most tokens the bucket holds.
    burst: u64,
    /// Tokens now (negative: a debt being waited off).
    tokens: f64,
    /// When `tokens` was last brought up to date.
    last: Option<Instant>,
}

impl Bucket {
    fn refill(&mut self, now: Instant) {
        if let Some(last) = self.last {
            let elapsed = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.rate as f64).min(self.burst as f64);
        }
        // A clock reading earlier than the last one (callers pass their own) does not move
        // the bucket back.
        if self.last.is_none_or(|last| now > last) {
            self.last = Some(now);
        }
    }
}

impl Default for RateLimiter {
    /// An unlimited limiter.
    fn default() -> Self {
        RateLimiter::new(0)
    }
}

impl RateLimiter {
    /// A limiter of `bytes_per_sec` (0 = unlimited) whose burst is one second's worth.
    pub fn new(bytes_per_sec: u64) -> Self {
        Self::with_burst(bytes_per_sec, bytes_per_sec)
    }

    /// A limiter of `bytes_per_sec` (0 = unlimited) holding at most `burst` tokens; it starts
    /// full.
    pub fn with_burst(bytes_per_sec: u64, burst: u64) -> Self {
        RateLimiter {
            bucket: Mutex::new(Bucket {
                rate: bytes_per_sec,
                burst,
                tokens: burst as f64,
                last: None,
            }),
        }
    }

    /// The rate, bytes per second (0 = unlimited).
    pub fn rate(&self) -> u64 {
        self.bucket.lock().rate
    }

    /// Changes the rate (0 = unlimited); the burst becomes one second's worth. Tokens held
    /// beyond the new burst are dropped, a debt is kept.
    pub fn set_rate(&self, bytes_per_sec: u64) {
        let mut b = self.bucket.lock();
        b.rate = bytes_per_sec;
        b.burst = bytes_per_sec;
        b.tokens = b.tokens.min(bytes_per_sec as f64);
    }

    /// Takes `bytes` tokens at time `now` and returns how long the caller must wait before
    /// going on (zero when the bucket held them). The accounting step of
    /// [`RateLimiter::acquire`], with the clock passed in.
    pub fn take_at(&self, bytes: u64, now: Instant) -> Duration {
        let mut b = self.bucket.lock();
        if b.rate == 0 {
            return Duration::ZERO;
        }
        b.refill(now);
        b.tokens -= bytes as f64;
        if b.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-b.tokens / b.rate as f64)
        }
    }

    /// The tokens the bucket holds at `now` (negative while a debt is being waited off);
    /// `None` when unlimited.
    pub fn tokens_at(&self, now: Instant) -> Option<f64> {
        let mut b = self.bucket.lock();
        if b.rate == 0 {
            return None;
        }
        b.refill(now);
        Some(b.tokens)
    }

    /// Takes `bytes` tokens and sleeps until the rate allows them.
    pub async fn acquire(&self, bytes: u64) {
        let wait = self.take_at(bytes, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}
