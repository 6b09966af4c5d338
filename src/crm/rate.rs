//! A token bucket shared by every delivery worker, so callbridge stays under the CRM's
//! per-key request rate however many calls are delivered at once. retailCRM publishes
//! 10 requests/s per key and 40/s for `/telephony*` (the official Go client's `rate.go`);
//! going over earns 503s, which cost more than waiting.
//!
//! The bucket gains `rate` tokens per second and holds at most one, so requests are spaced
//! evenly (`1/rate` apart) as the official client spaces them (`rate.NewLimiter(RPS, 1)`):
//! a server that counts per second never sees a burst. A request takes a token, waiting
//! for it when there is none. Waiters are served in arrival order (a tokio `Mutex` is
//! fair), and nobody holds the lock while sleeping longer than its own turn.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct RateLimiter {
    inner: Arc<Mutex<Bucket>>,
    per_sec: f64,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    burst: f64,
    rate: f64,
    updated: Instant,
}

impl Bucket {
    fn refill(&mut self, now: Instant) {
        let gained = now.saturating_duration_since(self.updated).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + gained).min(self.burst);
        self.updated = now;
    }
}

impl RateLimiter {
    /// `per_sec` requests per second, evenly spaced.
    pub fn new(per_sec: f64) -> Self {
        let rate = per_sec.max(0.001);
        let burst = 1.0;
        RateLimiter {
            inner: Arc::new(Mutex::new(Bucket {
                tokens: burst,
                burst,
                rate,
                updated: Instant::now(),
            })),
            per_sec: rate,
        }
    }

    pub fn per_sec(&self) -> f64 {
        self.per_sec
    }

    /// Waits until a request may go out, and takes its token.
    pub async fn acquire(&self) {
        // Holding the lock while waiting keeps the order fair: the next waiter starts
        // counting only once this one has its token.
        let mut bucket = self.inner.lock().await;
        let now = Instant::now();
        bucket.refill(now);
        if bucket.tokens < 1.0 {
            let missing = 1.0 - bucket.tokens;
            let wait = Duration::from_secs_f64(missing / bucket.rate);
            tokio::time::sleep(wait).await;
            bucket.refill(Instant::now());
        }
        bucket.tokens = (bucket.tokens - 1.0).max(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn requests_are_spaced_evenly() {
        let limiter = RateLimiter::new(10.0);
        let start = Instant::now();
        limiter.acquire().await;
        assert!(
            start.elapsed() < Duration::from_millis(1),
            "the first is free"
        );
        let mut last = Instant::now();
        for _ in 0..20 {
            limiter.acquire().await;
            let gap = last.elapsed();
            assert!(
                gap >= Duration::from_millis(99),
                "spaced 100 ms apart, got {gap:?}"
            );
            last = Instant::now();
        }
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(1990) && took <= Duration::from_millis(2100),
            "20 more at 10/s take 2 s, took {took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shared_by_concurrent_workers() {
        let limiter = RateLimiter::new(5.0);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let l = limiter.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..5 {
                    l.acquire().await;
                }
            }));
        }
        for t in tasks {
            t.await.expect("worker");
        }
        // 20 requests from 4 workers: the first at once, 19 more at 5/s.
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(3790) && took <= Duration::from_millis(3900),
            "{took:?}"
        );
    }
}
