//! The account's rate limit: requests per second per API key, telephony apart, kept
//! with a token bucket per key and budget.

use std::time::Instant;

/// Requests per second per API key; telephony methods (`/api/v5/telephony/*`) have their own
/// budget. A rate of 0 means no limit for that class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_sec: u32,
    pub telephony_per_sec: u32,
}

impl RateLimit {
    /// The real service's limits, as the official Go client enforces them.
    pub const REAL: RateLimit = RateLimit {
        per_sec: 10,
        telephony_per_sec: 40,
    };
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit::REAL
    }
}

/// Token buckets of one API key: a burst of up to one second's budget, refilled continuously.
pub(super) struct KeyBuckets {
    pub(super) general: Bucket,
    pub(super) telephony: Bucket,
}

impl KeyBuckets {
    pub(super) fn new(limit: RateLimit, now: Instant) -> KeyBuckets {
        KeyBuckets {
            general: Bucket {
                tokens: f64::from(limit.per_sec),
                last: now,
            },
            telephony: Bucket {
                tokens: f64::from(limit.telephony_per_sec),
                last: now,
            },
        }
    }
}

pub(super) struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    pub(super) fn take(&mut self, per_sec: u32, now: Instant) -> bool {
        if per_sec == 0 {
            return true;
        }
        let rate = f64::from(per_sec);
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
