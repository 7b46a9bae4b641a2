//! Load shedding: token buckets per client and per code prefix for redemption and balance
//! inquiry (against code enumeration), and a bound on requests waiting for the engine. Both
//! answer 429 with `Retry-After` instead of queueing.

use crate::error::ApiError;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Instant;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Rate of a bucket: `per_s` tokens a second, up to `burst`.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    pub per_s: u32,
    pub burst: u32,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets by key, with a bounded number of keys.
pub struct RateLimiter {
    rate: Rate,
    keys_max: usize,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    pub fn new(rate: Rate, keys_max: usize) -> RateLimiter {
        RateLimiter {
            rate,
            keys_max: keys_max.max(16),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `key`, or says how many seconds until one is free.
    pub fn take(&self, key: &str) -> Result<(), ApiError> {
        let per_s = f64::from(self.rate.per_s.max(1));
        let burst = f64::from(self.rate.burst.max(1));
        let now = Instant::now();
        let mut buckets = self.buckets.lock().map_err(|_| ApiError::Unavailable)?;
        if !buckets.contains_key(key) && buckets.len() >= self.keys_max {
            // Forget buckets that have refilled: they hold no information.
            buckets
                .retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * per_s < burst);
            if buckets.len() >= self.keys_max {
                return Err(ApiError::RateLimited { retry_after_s: 1 });
            }
        }
        let b = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * per_s).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - b.tokens) / per_s).ceil() as u64;
            Err(ApiError::RateLimited {
                retry_after_s: wait.max(1),
            })
        }
    }
}

/// A bound on requests handed to the engine and not yet answered.
#[derive(Clone)]
pub struct InFlight(Arc<Semaphore>);

impl InFlight {
    pub fn new(max: usize) -> InFlight {
        InFlight(Arc::new(Semaphore::new(max.max(1))))
    }

    /// A slot for one engine call, or 429 when the bound is reached.
    pub fn enter(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.0
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::Overloaded)
    }

    /// Requests currently waiting for the engine.
    pub fn current(&self, max: usize) -> usize {
        max.saturating_sub(self.0.available_permits())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_says_when_to_retry() {
        let limiter = RateLimiter::new(Rate { per_s: 1, burst: 3 }, 100);
        assert!((0..3).all(|_| limiter.take("client").is_ok()));
        assert!(matches!(
            limiter.take("client"),
            Err(ApiError::RateLimited { retry_after_s: 1 })
        ));
        assert!(limiter.take("other").is_ok(), "buckets are per key");
    }

    #[test]
    fn the_key_table_is_bounded() {
        let limiter = RateLimiter::new(Rate { per_s: 1, burst: 1 }, 16);
        for i in 0..16 {
            assert!(limiter.take(&format!("k{i}")).is_ok());
        }
        assert!(
            limiter.take("one-too-many").is_err(),
            "a full table of busy keys refuses new ones"
        );
    }

    #[test]
    fn in_flight_slots_are_bounded_and_given_back() {
        let f = InFlight::new(2);
        let (a, _b) = (f.enter(), f.enter());
        assert!(matches!(f.enter(), Err(ApiError::Overloaded)));
        drop(a);
        assert!(f.enter().is_ok());
    }
}
