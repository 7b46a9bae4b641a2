//! Load shedding: token buckets per client and per code prefix for redemption and balance
//! inquiry (against code enumeration), and a bound on requests waiting for the engine. Both
//! answer 429 with `Retry-After` instead of queueing.

use crate::error::ApiError;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// Tokens are counted in millionths, and time in microseconds since the limiter started, so
/// a token accrues in exactly `1_000_000 / per_s` µs of credit: integer arithmetic only.
const MICRO: u64 = 1_000_000;

struct Bucket {
    /// Millionths of a token.
    tokens: u64,
    /// When `tokens` was last brought up to date (µs since the limiter started).
    at: u64,
}

/// One part of the key table: its buckets, and the keys in the order they were last touched
/// (with the touch time), so refilled buckets are found from the front in amortized O(1).
#[derive(Default)]
struct Part {
    buckets: HashMap<String, Bucket>,
    touched: VecDeque<(u64, String)>,
}

/// Parts of the key table, each behind its own lock: redemptions of different clients and
/// prefixes rarely wait for each other.
const PARTS: usize = 32;

/// Token buckets by key, with a bounded number of keys.
pub struct RateLimiter {
    rate: Rate,
    keys_max: usize,
    /// Keys held over all parts.
    keys: AtomicUsize,
    started: Instant,
    parts: Vec<Mutex<Part>>,
}

impl RateLimiter {
    pub fn new(rate: Rate, keys_max: usize) -> RateLimiter {
        RateLimiter {
            rate,
            keys_max: keys_max.max(16),
            keys: AtomicUsize::new(0),
            started: Instant::now(),
            parts: (0..PARTS).map(|_| Mutex::new(Part::default())).collect(),
        }
    }

    fn part(&self, key: &str) -> &Mutex<Part> {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let h = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
            .hash_one(key);
        &self.parts[(h % PARTS as u64) as usize]
    }

    /// Takes a token for `key`, or says how many seconds until one is free.
    pub fn take(&self, key: &str) -> Result<(), ApiError> {
        let now = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.take_at(key, now)
    }

    fn take_at(&self, key: &str, now: u64) -> Result<(), ApiError> {
        let per_s = u64::from(self.rate.per_s.max(1));
        let burst = u64::from(self.rate.burst.max(1)) * MICRO;
        // Millionths of a token accrued over `since` µs, capped at a full bucket.
        let refill = |tokens: u64, since: u64| {
            tokens
                .saturating_add(since.saturating_mul(per_s))
                .min(burst)
        };
        let mut part = self.part(key).lock().map_err(|_| ApiError::Unavailable)?;
        let part = &mut *part;
        if !part.buckets.contains_key(key) {
            // Forget buckets that have refilled (they hold no information), oldest touch
            // first; a queue entry older than its bucket's last touch is stale and dropped.
            while self.keys.load(Ordering::Acquire) >= self.keys_max {
                let Some((at, k)) = part.touched.pop_front() else {
                    // Nothing here to forget: the table is full of other parts' keys.
                    return Err(ApiError::RateLimited { retry_after_s: 1 });
                };
                match part.buckets.get(&k) {
                    Some(b) if b.at == at => {
                        if refill(b.tokens, now.saturating_sub(b.at)) < burst {
                            // The oldest touched bucket is still busy: so are the others.
                            part.touched.push_front((at, k));
                            return Err(ApiError::RateLimited { retry_after_s: 1 });
                        }
                        part.buckets.remove(&k);
                        self.keys.fetch_sub(1, Ordering::AcqRel);
                    }
                    _ => {}
                }
            }
        }
        let b = part.buckets.entry(key.to_owned()).or_insert_with(|| {
            self.keys.fetch_add(1, Ordering::AcqRel);
            Bucket {
                tokens: burst,
                at: now,
            }
        });
        b.tokens = refill(b.tokens, now.saturating_sub(b.at));
        b.at = now;
        let taken = if b.tokens >= MICRO {
            b.tokens -= MICRO;
            Ok(())
        } else {
            let wait_us = (MICRO - b.tokens).div_ceil(per_s);
            Err(ApiError::RateLimited {
                retry_after_s: wait_us.div_ceil(MICRO).max(1),
            })
        };
        part.touched.push_back((now, key.to_owned()));
        if part.touched.len() > 4 * part.buckets.len() + 64 {
            // Stale entries of keys touched again and again: keep the queue bounded.
            let buckets = &part.buckets;
            part.touched
                .retain(|(at, k)| buckets.get(k).is_some_and(|b| b.at == *at));
        }
        taken
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

/// What one funder (a funding key's client, or a gateway) may deposit: in which currencies, how
/// much per call, and how much per UTC day in each of those currencies. The day's total is
/// counted here, in memory, like the other rate limits: a restart forgets it (see SECURITY.md),
/// and only credits that took effect count.
#[derive(Clone, Debug, Default)]
pub struct DepositLimit {
    pub per_call_minor: Option<i64>,
    pub per_day_minor: Option<i64>,
    /// The currencies it may deposit (None: any). A day's limit needs this list: counted per
    /// currency, it would otherwise allow that much again in every currency the engine knows.
    pub currencies: Option<Arc<[giftcard_core::Currency]>>,
}

impl DepositLimit {
    /// The limits of `who` from its configuration; `limited` says whether the role may carry
    /// limits at all.
    pub fn from_config(
        who: &str,
        limited: bool,
        per_call_minor: Option<i64>,
        per_day_minor: Option<i64>,
        currencies: &[String],
    ) -> Result<DepositLimit, String> {
        let set = per_call_minor.is_some() || per_day_minor.is_some() || !currencies.is_empty();
        if set && !limited {
            return Err(format!(
                "deposit limits are for funding keys and gateways ({who})"
            ));
        }
        if [per_call_minor, per_day_minor]
            .iter()
            .flatten()
            .any(|m| *m < 1)
        {
            return Err(format!("deposit limits of {who} must be positive"));
        }
        if per_day_minor.is_some() && currencies.is_empty() {
            return Err(format!(
                "{who}: a per-day deposit limit needs deposit_currencies (it counts per currency)"
            ));
        }
        let currencies = currencies
            .iter()
            .map(|c| {
                giftcard_core::Currency::parse(c)
                    .ok_or_else(|| format!("{who}: {c} is not a known currency"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(DepositLimit {
            per_call_minor,
            per_day_minor,
            currencies: (!currencies.is_empty()).then(|| currencies.into()),
        })
    }

    /// Whether a deposit in `currency` is allowed at all.
    pub fn allows(&self, currency: giftcard_core::Currency) -> bool {
        self.currencies
            .as_ref()
            .is_none_or(|list| list.contains(&currency))
    }
}

/// Deposits the day's counts remember at once; beyond, new deposits wait for the next day.
const COUNTED_DEPOSITS_MAX: usize = 1_000_000;

/// The day's deposits per (funder, currency), and which deposits were counted (so a gateway's
/// retry of a credited event is let through to the engine's replay, not refused for the limit
/// it already took its share of).
#[derive(Default)]
pub struct DailyDeposits {
    inner: Mutex<Day>,
}

#[derive(Default)]
struct Day {
    day: u64,
    used: HashMap<(String, giftcard_core::Currency), i64>,
    /// (funder, wallet, deposit id) counted today.
    counted: std::collections::HashSet<(String, String, String)>,
}

/// One deposit as the day's count sees it.
pub struct DepositCount<'a> {
    pub funder: &'a str,
    pub wallet: &'a str,
    pub deposit_id: &'a str,
    pub currency: giftcard_core::Currency,
    pub minor: i64,
    pub day: u64,
}

impl DailyDeposits {
    /// Takes the deposit's amount of its funder's allowance for the day, or `limit_exceeded`.
    /// False when this deposit was counted already today (a retry): nothing is taken.
    pub fn take(&self, d: &DepositCount<'_>, per_day: i64) -> Result<bool, ApiError> {
        let mut g = self.inner.lock().map_err(|_| ApiError::Unavailable)?;
        if g.day != d.day {
            *g = Day {
                day: d.day,
                ..Day::default()
            };
        }
        let id = (
            d.funder.to_owned(),
            d.wallet.to_owned(),
            d.deposit_id.to_owned(),
        );
        if g.counted.contains(&id) {
            return Ok(false);
        }
        let refused = ApiError::Rejected(giftcard_core::Rejection::LimitExceeded, None);
        if g.counted.len() >= COUNTED_DEPOSITS_MAX {
            return Err(refused);
        }
        let used = g.used.entry((d.funder.to_owned(), d.currency)).or_insert(0);
        match used.checked_add(d.minor) {
            Some(total) if total <= per_day => {
                *used = total;
                g.counted.insert(id);
                Ok(true)
            }
            _ => Err(refused),
        }
    }

    /// Gives back what [`DailyDeposits::take`] took for a deposit that did not take effect.
    pub fn give_back(&self, d: &DepositCount<'_>) {
        if let Ok(mut g) = self.inner.lock() {
            if g.day == d.day {
                if let Some(used) = g.used.get_mut(&(d.funder.to_owned(), d.currency)) {
                    *used = used.saturating_sub(d.minor).max(0);
                }
                let id = (
                    d.funder.to_owned(),
                    d.wallet.to_owned(),
                    d.deposit_id.to_owned(),
                );
                g.counted.remove(&id);
            }
        }
    }
}

/// One client's share of the server: requests it may have open at once and body KiB it may
/// have buffered, so one client (a leaked key, a stuck integration) cannot take every slot or
/// the whole body budget and make everyone else wait.
pub struct ClientShare {
    pub requests: Arc<Semaphore>,
    pub body_kib: Arc<Semaphore>,
}

/// The shares of every configured client, and one for unauthenticated requests (payment
/// gateways' webhooks, which authenticate by signature). Built once from the configuration: the
/// set of clients is fixed, so the table is bounded.
pub struct ClientShares {
    shares: HashMap<String, ClientShare>,
    anonymous: ClientShare,
}

impl ClientShares {
    pub fn new(
        clients: impl Iterator<Item = String>,
        requests_max: usize,
        body_kib_max: usize,
    ) -> ClientShares {
        let share = || ClientShare {
            requests: Arc::new(Semaphore::new(requests_max.max(1))),
            body_kib: Arc::new(Semaphore::new(body_kib_max.max(1))),
        };
        ClientShares {
            shares: clients.map(|c| (c, share())).collect(),
            anonymous: share(),
        }
    }

    /// The share of `client` (None: unauthenticated).
    pub fn of(&self, client: Option<&str>) -> &ClientShare {
        client
            .and_then(|c| self.shares.get(c))
            .unwrap_or(&self.anonymous)
    }
}

/// The share key of a payment gateway (which authenticates by signature, not by API key).
pub fn gateway_share(name: &str) -> String {
    format!("gateway:{name}")
}

/// The client a request was authenticated as, kept in its extensions with its request slot.
#[derive(Clone)]
pub struct Admitted {
    pub client: String,
    _slot: Arc<OwnedSemaphorePermit>,
}

impl Admitted {
    /// Takes one of `client`'s request slots, or 429 when it has all of them open.
    pub fn enter(client: &str, share: &ClientShare) -> Result<Admitted, ApiError> {
        let slot = share.requests.clone().try_acquire_owned().map_err(|_| {
            metrics::counter!("giftcard_http_rate_limited_total", "scope" => "client_share")
                .increment(1);
            ApiError::Overloaded
        })?;
        Ok(Admitted {
            client: client.to_owned(),
            _slot: Arc::new(slot),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_days_deposits_are_bounded_per_funder_and_currency_and_a_new_day_starts_afresh() {
        let d = DailyDeposits::default();
        let (usd, eur) = (
            giftcard_core::Currency::parse("USD").unwrap(),
            giftcard_core::Currency::parse("EUR").unwrap(),
        );
        let dep = |funder, id, currency, minor, day| DepositCount {
            funder,
            wallet: "w",
            deposit_id: id,
            currency,
            minor,
            day,
        };
        assert_eq!(d.take(&dep("f", "d1", usd, 600, 1), 1_000).ok(), Some(true));
        assert_eq!(
            d.take(&dep("f", "d1", usd, 600, 1), 1_000).ok(),
            Some(false),
            "a retry takes nothing"
        );
        assert!(d.take(&dep("f", "d2", usd, 401, 1), 1_000).is_err());
        assert!(
            d.take(&dep("f", "d3", eur, 1_000, 1), 1_000).is_ok(),
            "per currency"
        );
        assert!(
            d.take(&dep("g", "d4", usd, 1_000, 1), 1_000).is_ok(),
            "per funder"
        );
        d.give_back(&dep("f", "d1", usd, 600, 1));
        assert!(
            d.take(&dep("f", "d5", usd, 1_000, 1), 1_000).is_ok(),
            "given back"
        );
        assert!(
            d.take(&dep("f", "d6", usd, 1_000, 2), 1_000).is_ok(),
            "a new day"
        );
        assert!(
            d.take(&dep("f", "d7", usd, i64::MAX, 2), i64::MAX).is_err(),
            "no overflow"
        );
    }

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
    fn refilled_buckets_make_room_for_new_keys_and_tokens_refill_at_the_rate() {
        let limiter = RateLimiter::new(Rate { per_s: 2, burst: 1 }, 16);
        for i in 0..15 {
            // Fill the table with keys of parts other than "a"'s.
            let k = (0..)
                .map(|j| format!("f{i}-{j}"))
                .find(|k| !std::ptr::eq(limiter.part(k), limiter.part("a")))
                .expect("a key of another part");
            assert!(limiter.take_at(&k, 0).is_ok());
        }
        // The sixteenth key fills the table; a seventeenth in the same part as "a" waits until
        // "a" has refilled, then takes its place.
        assert!(limiter.take_at("a", 0).is_ok());
        let same = (0..1000)
            .map(|i| format!("k{i}"))
            .find(|k| std::ptr::eq(limiter.part(k), limiter.part("a")))
            .expect("some key shares a's part");
        assert!(
            limiter.take_at(&same, 100_000).is_err(),
            "a is still refilling"
        );
        assert!(
            limiter.take_at(&same, 500_000).is_ok(),
            "a refilled in 0.5 s at 2/s"
        );
        // Refill is exact in integers: half a second gives one token at 2/s, not more.
        assert!(limiter.take_at(&same, 500_001).is_err());
        assert!(limiter.take_at(&same, 1_000_000).is_ok());
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
