//! Limits and KYC: what a wallet may spend, checked when its order is decided on the wallet's
//! shard, in the same commit as the debit. The shard decides one command at a time, so no
//! number of concurrent orders slips past a limit: the eleventh order of a wallet whose limit is
//! ten an hour is decided after the tenth is applied, and sees it.
//!
//! - **Single order**: the most one order may charge, per pay currency.
//! - **Velocity**: per pay currency, at most so many orders and so much charged in any sliding
//!   window (up to a day long).
//! - **Daily caps**: cards of any one SKU, and of any one brand, per UTC day.
//! - **KYC**: per currency, a threshold above which an order, or the day's total with it, needs
//!   a verified wallet. Only an admin verifies a wallet (`KycSet`, with who and when).
//!
//! Defaults are a runtime setting (the engine's configuration), like the rejection window: they
//! shape decisions, never replay. A wallet's own limits (`WalletLimitsSet`, admin) replace the
//! defaults for it entirely. What a wallet completed in the last day (`recent`) is kept here,
//! applied from `OrderCompleted`, so limits set or changed later count the orders before them.

use crate::event::Event;
use crate::maps::{sorted, HashMap};
use crate::state::{Decision, ShardState};
use crate::*;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::Arc;

/// How long completed orders are remembered for limits: the longest window, and a UTC day.
pub const RECENT_KEPT_MS: u64 = 86_400_000;

/// Velocity limits one wallet may have.
pub const VELOCITY_LIMITS_MAX: usize = 16;

/// In any window of `window_ms`, orders paid in `currency` number at most `max_orders` and
/// charge at most `max_amount_minor` together (either may be absent).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Velocity {
    pub currency: Currency,
    pub window_ms: u64,
    pub max_orders: Option<u32>,
    pub max_amount_minor: Option<i64>,
}

/// One wallet's limits (or the defaults). Empty: no limit at all.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitSet {
    /// The most one order may charge, per pay currency (sorted, one entry per currency).
    pub order_max: Vec<(Currency, i64)>,
    pub velocity: Vec<Velocity>,
    /// Cards of any one SKU a wallet may buy per UTC day.
    pub sku_daily_cards: Option<u32>,
    /// Cards of any one brand a wallet may buy per UTC day.
    pub brand_daily_cards: Option<u32>,
}

impl LimitSet {
    /// Whether the set is one the engine accepts: amounts within `1..=AMOUNT_MINOR_MAX`,
    /// windows within a day, one order maximum per currency, counts above zero.
    pub fn is_valid(&self) -> bool {
        let amount = |m: i64| (1..=AMOUNT_MINOR_MAX).contains(&m);
        self.order_max.iter().all(|(_, m)| amount(*m))
            && self.order_max.windows(2).all(|w| w[0].0 < w[1].0)
            && self.velocity.len() <= VELOCITY_LIMITS_MAX
            && self.velocity.iter().all(|v| {
                (1..=RECENT_KEPT_MS).contains(&v.window_ms)
                    && (v.max_orders.is_some() || v.max_amount_minor.is_some())
                    && v.max_orders.is_none_or(|n| n > 0)
                    && v.max_amount_minor.is_none_or(amount)
            })
            && self.sku_daily_cards.is_none_or(|n| n > 0)
            && self.brand_daily_cards.is_none_or(|n| n > 0)
    }

    fn order_max(&self, ccy: Currency) -> Option<i64> {
        self.order_max
            .iter()
            .find(|(c, _)| *c == ccy)
            .map(|(_, m)| *m)
    }
}

/// The engine's policy: default limits and KYC thresholds (a runtime setting).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RiskPolicy {
    pub limits: LimitSet,
    /// Per currency: an order above it, or a day's total above it, needs a verified wallet.
    pub kyc_threshold_minor: Vec<(Currency, i64)>,
    /// Such an order from an unverified wallet goes to review instead of being refused.
    pub kyc_review: bool,
    /// How long an order waits in review before it is released by itself (0: the default).
    pub review_ttl_ms: u64,
}

/// How long an order waits in review when the policy says nothing: a day.
pub const REVIEW_TTL_DEFAULT_MS: u64 = 24 * 3_600_000;

/// The longest review a policy may set: thirty days.
pub const REVIEW_TTL_MAX_MS: u64 = 30 * 24 * 3_600_000;

impl RiskPolicy {
    /// How long an order waits in review.
    pub fn review_ttl_ms(&self) -> u64 {
        match self.review_ttl_ms {
            0 => REVIEW_TTL_DEFAULT_MS,
            t => t.min(REVIEW_TTL_MAX_MS),
        }
    }
}

/// What the limits say of an order within them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Within {
    Yes,
    /// Only the KYC threshold is passed, and the policy sends such orders to review.
    NeedsKycReview,
}

/// Who verified (or unverified) a wallet, and when; and what its creation declared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KycMark {
    pub verified: bool,
    pub by: ClientId,
    pub at: UnixMillis,
    /// The flag the wallet was created with: a retried creation is compared with it.
    pub at_creation: bool,
}

/// What one completed order charged, and when: what the velocity windows count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spent {
    pub at: UnixMillis,
    pub charged: Money,
}

/// What a wallet completed lately: each order of the last day (for the sliding windows), and
/// the totals of the UTC day of its last order (for KYC and the daily caps), kept as orders
/// apply so that checking an order costs the orders in its window, not the wallet's history.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    /// Oldest first, none more than a day older than the newest.
    pub recent: VecDeque<Spent>,
    /// The UTC day (days since the epoch) the totals below are of.
    pub day: u64,
    /// Charged that day, per pay currency.
    pub day_spent: Vec<(Currency, i64)>,
    /// Cards bought that day, per SKU and per brand (the brand the SKU had when it sold).
    pub day_skus: Vec<(SkuId, u32)>,
    pub day_brands: Vec<(Arc<str>, u32)>,
}

impl Activity {
    /// The day's totals if they are of `day`.
    fn of_day(&self, day: u64) -> Option<&Activity> {
        (self.day == day).then_some(self)
    }
}

/// Adds `n` to `k`'s count in a short list of counts (`own` makes the key of a new entry).
pub(crate) fn tally<K: PartialEq + ?Sized, O: std::borrow::Borrow<K>>(
    v: &mut Vec<(O, u32)>,
    k: &K,
    n: u32,
    own: impl FnOnce() -> O,
) {
    match v.iter_mut().find(|(o, _)| o.borrow() == k) {
        Some((_, c)) => *c = c.saturating_add(n),
        None => v.push((own(), n)),
    }
}

fn count<K: PartialEq + ?Sized, O: std::borrow::Borrow<K>>(v: &[(O, u32)], k: &K) -> u32 {
    v.iter()
        .find(|(o, _)| o.borrow() == k)
        .map_or(0, |(_, n)| *n)
}

/// The limits of the wallets of one shard.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Limits {
    #[serde(serialize_with = "sorted")]
    pub(crate) own: HashMap<WalletId, LimitSet>,
    #[serde(serialize_with = "sorted")]
    pub(crate) kyc: HashMap<WalletId, KycMark>,
    #[serde(serialize_with = "sorted")]
    pub(crate) activity: HashMap<WalletId, Activity>,
    /// Set by the runtime; not part of the state's bytes.
    #[serde(skip)]
    pub(crate) policy: Arc<RiskPolicy>,
}

/// The state's part: the policy is the runtime's setting, as it is not in the state's bytes.
impl PartialEq for Limits {
    fn eq(&self, other: &Limits) -> bool {
        self.own == other.own && self.kyc == other.kyc && self.activity == other.activity
    }
}

impl Eq for Limits {}

/// What an order would add, for the check.
pub(crate) struct Spend<'a> {
    pub total: Money,
    pub cards: &'a [(SkuId, u32)],
}

/// The UTC day (days since the epoch) of an instant: what the daily caps and totals count by.
pub fn day_of(t: UnixMillis) -> u64 {
    t.0 / 86_400_000
}

impl Limits {
    /// The limits in force for a wallet, and whether they are its own.
    pub fn of(&self, wallet: &WalletId) -> (&LimitSet, bool) {
        match self.own.get(wallet) {
            Some(l) => (l, true),
            None => (&self.policy.limits, false),
        }
    }

    /// Whether the wallet's limits count cards (a daily cap is set).
    pub(crate) fn counts_cards(&self, wallet: &WalletId) -> bool {
        let (l, _) = self.of(wallet);
        l.sku_daily_cards.is_some() || l.brand_daily_cards.is_some()
    }

    /// Who last verified or unverified a wallet, and when.
    pub fn kyc_mark(&self, wallet: &WalletId) -> Option<&KycMark> {
        self.kyc.get(wallet)
    }

    /// The KYC flag a wallet was created with (`current` unless an admin changed it).
    pub fn created_verified(&self, wallet: &WalletId, current: bool) -> bool {
        self.kyc.get(wallet).map_or(current, |m| m.at_creation)
    }

    /// What a wallet completed lately.
    pub fn activity(&self, wallet: &WalletId) -> Option<&Activity> {
        self.activity.get(wallet)
    }

    /// Every wallet's own limits, in no particular order.
    pub fn own(&self) -> impl Iterator<Item = (&WalletId, &LimitSet)> {
        self.own.iter()
    }

    /// Every wallet's activity, in no particular order.
    pub fn all_activity(&self) -> impl Iterator<Item = (&WalletId, &Activity)> {
        self.activity.iter()
    }

    pub fn policy(&self) -> &RiskPolicy {
        &self.policy
    }

    /// Whether `spend` keeps `wallet` within its limits and KYC at `now`: the first limit it
    /// would break, else `Ok`.
    pub(crate) fn check(
        &self,
        st: &ShardState,
        wallet_id: &WalletId,
        verified: bool,
        spend: &Spend,
        now: UnixMillis,
    ) -> Result<Within, Rejection> {
        let (limits, _) = self.of(wallet_id);
        let ccy = spend.total.currency();
        let total = spend.total.minor();
        let threshold = self
            .policy
            .kyc_threshold_minor
            .iter()
            .find(|(c, _)| *c == ccy)
            .map(|(_, t)| *t);
        let daily_caps = limits.sku_daily_cards.is_some() || limits.brand_daily_cards.is_some();
        if limits.order_max(ccy).is_some_and(|m| total > m) {
            return Err(Rejection::OrderLimitExceeded);
        }
        if limits.velocity.is_empty() && !daily_caps && (verified || threshold.is_none()) {
            return Ok(Within::Yes);
        }
        let mut within = Within::Yes;
        let activity = self.activity.get(wallet_id);
        for v in limits.velocity.iter().filter(|v| v.currency == ccy) {
            let since = now.0.saturating_sub(v.window_ms);
            let (mut orders, mut amount) = (1u64, i128::from(total));
            let in_window = activity
                .into_iter()
                .flat_map(|a| a.recent.iter().rev())
                .take_while(|r| r.at.0 > since);
            for r in in_window.filter(|r| r.charged.currency() == ccy) {
                orders += 1;
                amount += i128::from(r.charged.minor());
            }
            if v.max_orders.is_some_and(|m| orders > u64::from(m)) {
                return Err(Rejection::VelocityOrdersExceeded);
            }
            if v.max_amount_minor.is_some_and(|m| amount > i128::from(m)) {
                return Err(Rejection::VelocityAmountExceeded);
            }
        }
        let today = activity.and_then(|a| a.of_day(day_of(now)));
        if let (Some(t), false) = (threshold, verified) {
            let before = today.map_or(0, |a| {
                a.day_spent
                    .iter()
                    .find(|(c, _)| *c == ccy)
                    .map_or(0, |(_, m)| *m)
            });
            // The day's total with this order (the total before it is never negative, so this
            // covers the order alone too).
            if i128::from(before) + i128::from(total) > i128::from(t) {
                if !self.policy.kyc_review {
                    return Err(Rejection::KycRequired);
                }
                within = Within::NeedsKycReview;
            }
        }
        if let Some(cap) = limits.sku_daily_cards {
            for (sku, n) in spend.cards {
                let before = today.map_or(0, |a| count(&a.day_skus, sku));
                if u64::from(before) + u64::from(*n) > u64::from(cap) {
                    return Err(Rejection::SkuDailyLimitExceeded);
                }
            }
        }
        if let Some(cap) = limits.brand_daily_cards {
            let brand = |sku: &SkuId| st.catalog().sku(sku).map(|s| s.brand.as_str());
            for (sku, _) in spend.cards {
                let Some(b) = brand(sku) else { continue };
                let mine: u64 = spend
                    .cards
                    .iter()
                    .filter(|(s, _)| brand(s) == Some(b))
                    .map(|(_, n)| u64::from(*n))
                    .sum();
                let before = today.map_or(0, |a| count::<str, _>(&a.day_brands, b));
                if u64::from(before) + mine > u64::from(cap) {
                    return Err(Rejection::BrandDailyLimitExceeded);
                }
            }
        }
        Ok(within)
    }

    pub(crate) fn decide_set(
        st: &ShardState,
        caller: &Caller,
        wallet: &WalletId,
        limits: &Option<LimitSet>,
        now: UnixMillis,
    ) -> Decision {
        if !caller.admin {
            return Decision::Reject(Rejection::Forbidden);
        }
        if st.wallets().get(wallet).is_none() {
            return Decision::Reject(Rejection::WalletNotFound);
        }
        if limits.as_ref().is_some_and(|l| !l.is_valid()) {
            return Decision::Reject(Rejection::InvalidLimits);
        }
        if st.limits().own.get(wallet) == limits.as_ref() {
            return Decision::Answered(vec![]);
        }
        Decision::Events(vec![Event::WalletLimitsSet {
            wallet: wallet.clone(),
            limits: limits.clone(),
            by: caller.client.clone(),
            at: now,
        }])
    }

    pub(crate) fn decide_kyc(
        st: &ShardState,
        caller: &Caller,
        wallet: &WalletId,
        verified: bool,
        now: UnixMillis,
    ) -> Decision {
        if !caller.admin {
            return Decision::Reject(Rejection::Forbidden);
        }
        match st.wallets().get(wallet) {
            None => Decision::Reject(Rejection::WalletNotFound),
            Some(w) if w.kyc_verified == verified => Decision::Answered(vec![]),
            Some(_) => Decision::Events(vec![Event::KycSet {
                wallet: wallet.clone(),
                verified,
                by: caller.client.clone(),
                at: now,
            }]),
        }
    }

    /// The limits' part of an event. `kyc_before` is the wallet's flag before a `KycSet` (the
    /// state applies the wallets first); the catalog names each sold SKU's brand.
    pub(crate) fn apply(
        &mut self,
        event: &Event,
        kyc_before: Option<bool>,
        catalog: &crate::catalog::Catalog,
    ) {
        match event {
            Event::WalletLimitsSet { wallet, limits, .. } => match limits {
                Some(l) => drop(self.own.insert(wallet.clone(), l.clone())),
                None => drop(self.own.remove(wallet)),
            },
            Event::KycSet {
                wallet,
                verified,
                by,
                at,
            } => {
                let at_creation = self
                    .kyc
                    .get(wallet)
                    .map_or(kyc_before.unwrap_or(false), |m| m.at_creation);
                let mark = KycMark {
                    verified: *verified,
                    by: by.clone(),
                    at: *at,
                    at_creation,
                };
                self.kyc.insert(wallet.clone(), mark);
            }
            Event::OrderCompleted(order) => {
                let a = self.activity.entry(order.wallet.clone()).or_default();
                let kept_from = order.at.0.saturating_sub(RECENT_KEPT_MS);
                while a.recent.front().is_some_and(|r| r.at.0 <= kept_from) {
                    a.recent.pop_front();
                }
                let charged = order.total();
                a.recent.push_back(Spent {
                    at: order.at,
                    charged,
                });
                let day = day_of(order.at);
                if a.day != day {
                    a.day = day;
                    a.day_spent.clear();
                    a.day_skus.clear();
                    a.day_brands.clear();
                }
                match a
                    .day_spent
                    .iter_mut()
                    .find(|(c, _)| *c == charged.currency())
                {
                    Some((_, m)) => *m = crate::wallets::sum(*m, charged.minor()),
                    None => a.day_spent.push((charged.currency(), charged.minor())),
                }
                for l in &order.lines {
                    tally(&mut a.day_skus, &l.sku, l.quantity, || l.sku.clone());
                    let Some(brand) = catalog.sku(&l.sku).map(|s| s.brand.as_str()) else {
                        continue;
                    };
                    tally::<str, _>(&mut a.day_brands, brand, l.quantity, || Arc::from(brand));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eur_c() -> Currency {
        Currency::parse("EUR").unwrap()
    }

    fn eur(m: i64) -> Money {
        Money::new(m, eur_c())
    }

    #[test]
    fn a_limit_set_is_refused_with_amounts_or_windows_out_of_range() {
        let ok = LimitSet {
            order_max: vec![(eur_c(), 10_000)],
            velocity: vec![Velocity {
                currency: eur_c(),
                window_ms: 3_600_000,
                max_orders: Some(10),
                max_amount_minor: None,
            }],
            sku_daily_cards: Some(5),
            brand_daily_cards: None,
        };
        assert!(ok.is_valid());
        let mut neg = ok.clone();
        neg.order_max[0].1 = -1;
        assert!(!neg.is_valid());
        let mut long = ok.clone();
        long.velocity[0].window_ms = RECENT_KEPT_MS + 1;
        assert!(!long.is_valid());
        let mut empty = ok.clone();
        empty.velocity[0].max_orders = None;
        assert!(!empty.is_valid(), "a velocity limit limits something");
        let mut zero = ok.clone();
        zero.sku_daily_cards = Some(0);
        assert!(!zero.is_valid());
        let mut twice = ok;
        twice.order_max.push((eur_c(), 5));
        assert!(!twice.is_valid());
    }

    #[test]
    fn recent_orders_older_than_a_day_are_forgotten_when_the_wallet_orders_again() {
        let mut l = Limits::default();
        let w = WalletId::new("w");
        let order = |at: u64| {
            Event::OrderCompleted(Box::new(crate::event::CompletedOrder {
                key: OrderKey {
                    client: ClientId::new("c"),
                    order_id: OrderId::new(&format!("o-{at}")),
                },
                fingerprint: [0; 16],
                wallet: w.clone(),
                charged: eur(100),
                captured_hold: None,
                first_card: CardId(0),
                lines: Vec::new(),
                channel: crate::event::DeliveryChannel::None,
                recipient: "".into(),
                at: UnixMillis(at),
                fees: Vec::new(),
            }))
        };
        let catalog = crate::catalog::Catalog::default();
        l.apply(&order(1_000), None, &catalog);
        l.apply(&order(2_000), None, &catalog);
        let a = l.activity(&w).unwrap();
        assert_eq!((a.day, &a.day_spent), (0, &vec![(eur_c(), 200)]));
        l.apply(&order(1_000 + RECENT_KEPT_MS), None, &catalog);
        let a = l.activity(&w).unwrap();
        let ats: Vec<u64> = a.recent.iter().map(|r| r.at.0).collect();
        assert_eq!(ats, vec![2_000, 1_000 + RECENT_KEPT_MS]);
        assert_eq!(
            (a.day, &a.day_spent),
            (1, &vec![(eur_c(), 100)]),
            "a new day counts afresh"
        );
    }
}
