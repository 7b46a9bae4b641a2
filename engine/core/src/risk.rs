//! Risk scoring: a score computed when an order is decided on its wallet's shard, in the same
//! commit as the debit, from rules with weights. Each rule that holds adds its weight and names
//! itself as a reason; above `reject_above` the order is refused `risk_rejected`. A score above
//! zero is journaled (`RiskScored`, in the order's commit) and kept with the order here, so it is
//! read back by the admin API and published with the order's events.
//!
//! The rules are a runtime setting (`ShardState::set_scoring`), like the default limits: they
//! shape decisions, never replay. What they read is state, applied from events: the wallet's
//! recent orders (kept by `limits`), when it was first funded, its completed orders per pay
//! currency, and the recipients it sent cards to lately.
//!
//! Every rule reads the wallet's own shard only, so the decision stays in one commit. The two
//! rules about many wallets, `shared_recipient` (one recipient sent cards by many wallets) and
//! `hot_sku` (a SKU selling fast), read this shard's part of it and scale it by the shard
//! count: wallets are placed by a hash of their id, so each shard holds an even sample of
//! them, and a hot SKU's orders spread over every shard with its stock. The figure is an
//! estimate of the whole, exact with one shard; a threshold far above the shard count keeps
//! its error small.

use crate::event::{DeliveryChannel, Event};
use crate::maps::{sorted, HashMap};
use crate::*;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Recipients remembered per wallet (the most recent ones).
pub const RECIPIENTS_KEPT: usize = 16;

/// Rules one scoring may have.
pub const RULES_MAX: usize = 32;

/// Wallets remembered per recipient (the most recent senders): the largest `shared_recipient`
/// threshold, per shard.
pub const SENDERS_KEPT: usize = 64;

/// The width of the buckets a SKU's recent sales are counted in.
pub const SALES_BUCKET_MS: u64 = 1_000;

/// A condition on an order and its wallet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RiskRule {
    /// The wallet completed `orders` or more orders in the last `window_ms` (at most a day).
    Velocity { window_ms: u64, orders: u32 },
    /// The wallet was first funded less than `age_ms` before the order, or never.
    FundedRecently { age_ms: u64 },
    /// The order charges more than `percent`% of the wallet's average order in its pay
    /// currency, once the wallet has completed `min_orders` orders in it.
    AmountOverHistory { percent: u32, min_orders: u32 },
    /// The order, paid in `currency`, charges at least `min_amount_minor` and is delivered to a
    /// recipient the wallet has not sent cards to lately.
    NewRecipient {
        currency: Currency,
        min_amount_minor: i64,
    },
    /// The order's recipient was sent cards by `wallets` or more other wallets in the last
    /// `window_ms` (estimated from this shard's wallets; see the module).
    SharedRecipient { window_ms: u64, wallets: u32 },
    /// A SKU of the order sold `cards` or more cards in the last `window_ms` (estimated from
    /// this shard's sales, to the second).
    HotSku { window_ms: u64, cards: u32 },
}

impl RiskRule {
    /// The rule's name: the reason an order's score gives when the rule held.
    pub fn reason(&self) -> RiskReason {
        match self {
            RiskRule::Velocity { .. } => RiskReason::Velocity,
            RiskRule::FundedRecently { .. } => RiskReason::FundedRecently,
            RiskRule::AmountOverHistory { .. } => RiskReason::AmountOverHistory,
            RiskRule::NewRecipient { .. } => RiskReason::NewRecipient,
            RiskRule::SharedRecipient { .. } => RiskReason::SharedRecipient,
            RiskRule::HotSku { .. } => RiskReason::HotSku,
        }
    }
}

/// Why an order scored what it did: the rules that held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RiskReason {
    Velocity,
    FundedRecently,
    AmountOverHistory,
    NewRecipient,
    SharedRecipient,
    HotSku,
}

impl RiskReason {
    /// The stable wire name.
    pub fn code(self) -> &'static str {
        match self {
            RiskReason::Velocity => "velocity",
            RiskReason::FundedRecently => "funded_recently",
            RiskReason::AmountOverHistory => "amount_over_history",
            RiskReason::NewRecipient => "new_recipient",
            RiskReason::SharedRecipient => "shared_recipient",
            RiskReason::HotSku => "hot_sku",
        }
    }
}

/// A rule and what it adds to the score when it holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightedRule {
    pub rule: RiskRule,
    pub weight: u32,
}

/// The scoring in force (a runtime setting). No rules: nothing is scored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scoring {
    pub rules: Vec<WeightedRule>,
    /// A score above it refuses the order (`risk_rejected`); none: scores are only recorded.
    pub reject_above: Option<u32>,
    /// A score above it (and not above `reject_above`) sends the order to review.
    pub review_above: Option<u32>,
}

impl Scoring {
    /// Whether the engine accepts it: at most `RULES_MAX` rules with weights up to 1000,
    /// windows within a day, positive counts and amounts.
    pub fn is_valid(&self) -> bool {
        self.rules.len() <= RULES_MAX
            && self.rules.iter().all(|w| {
                w.weight <= 1_000
                    && match &w.rule {
                        RiskRule::Velocity { window_ms, orders } => {
                            (1..=crate::limits::RECENT_KEPT_MS).contains(window_ms) && *orders > 0
                        }
                        RiskRule::FundedRecently { age_ms } => *age_ms > 0,
                        RiskRule::AmountOverHistory {
                            percent,
                            min_orders,
                        } => *percent > 0 && *min_orders > 0,
                        RiskRule::NewRecipient {
                            min_amount_minor, ..
                        } => (1..=AMOUNT_MINOR_MAX).contains(min_amount_minor),
                        RiskRule::SharedRecipient { window_ms, wallets } => {
                            (1..=crate::limits::RECENT_KEPT_MS).contains(window_ms)
                                && (1..=SENDERS_KEPT as u32).contains(wallets)
                        }
                        RiskRule::HotSku { window_ms, cards } => {
                            (SALES_BUCKET_MS..=crate::limits::RECENT_KEPT_MS).contains(window_ms)
                                && *cards > 0
                        }
                    }
            })
    }
}

/// An order's score and its reasons, and when it was scored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskScore {
    pub score: u32,
    pub reasons: Vec<RiskReason>,
    pub at: UnixMillis,
}

/// What the rules read of one wallet, applied from its events.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletRisk {
    /// When its first deposit applied.
    pub first_funded: Option<UnixMillis>,
    /// Per pay currency: orders completed and what they charged together.
    pub orders: Vec<(Currency, u64, i64)>,
    /// The recipients it sent cards to, most recent last.
    pub recipients: Vec<Arc<str>>,
}

/// The order being scored.
pub(crate) struct Scored<'a> {
    pub wallet: &'a WalletId,
    pub total: Money,
    pub channel: DeliveryChannel,
    pub recipient: &'a str,
    /// Its lines (the SKUs `hot_sku` reads).
    pub items: &'a [crate::event::OrderItem],
}

/// What the many-wallet rules read, applied from completed orders: each recipient's latest
/// senders, and each SKU's cards sold per second, both kept for a day (section `risk` v2).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Crowd {
    /// Recipient -> (when, wallet) of its latest senders, one entry per wallet, oldest first,
    /// at most `SENDERS_KEPT`.
    #[serde(serialize_with = "sorted")]
    pub(crate) senders: HashMap<Arc<str>, std::collections::VecDeque<(UnixMillis, WalletId)>>,
    /// SKU -> its cards sold, per second.
    #[serde(serialize_with = "sorted")]
    pub(crate) sold: HashMap<SkuId, SkuSales>,
}

/// One SKU's cards sold in the last day, per second, as running totals: the cards sold since
/// any instant are one subtraction after a binary search, however long the window.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkuSales {
    /// The running total before the oldest bucket kept.
    base: u64,
    /// (second, running total through it), oldest first.
    buckets: std::collections::VecDeque<(u64, u64)>,
}

impl SkuSales {
    fn add(&mut self, bucket: u64, cards: u64, kept_from_bucket: u64) {
        while self
            .buckets
            .front()
            .is_some_and(|(b, _)| *b < kept_from_bucket)
        {
            if let Some((_, total)) = self.buckets.pop_front() {
                self.base = total;
            }
        }
        let last = self.buckets.back().map_or(self.base, |(_, t)| *t);
        match self.buckets.back_mut() {
            Some((b, t)) if *b == bucket => *t = t.saturating_add(cards),
            _ => self.buckets.push_back((bucket, last.saturating_add(cards))),
        }
    }

    /// Cards sold in the buckets from `from_bucket` on.
    fn since(&self, from_bucket: u64) -> u64 {
        let last = self.buckets.back().map_or(self.base, |(_, t)| *t);
        let i = self.buckets.partition_point(|(b, _)| *b < from_bucket);
        let before = match i {
            0 => self.base,
            i => self.buckets[i - 1].1,
        };
        last - before
    }
}

impl Crowd {
    /// Other wallets that sent cards to `recipient` since `since`.
    fn senders_since(&self, recipient: &str, wallet: &WalletId, since: u64) -> usize {
        self.senders.get(recipient).map_or(0, |v| {
            v.iter()
                .rev()
                .take_while(|(t, _)| t.0 > since)
                .filter(|(_, w)| w != wallet)
                .count()
        })
    }

    /// Cards of `sku` sold in the buckets since `since`.
    fn sold_since(&self, sku: &SkuId, since: u64) -> u64 {
        self.sold
            .get(sku)
            .map_or(0, |s| s.since(since / SALES_BUCKET_MS))
    }

    fn apply(&mut self, o: &crate::event::CompletedOrder, at: UnixMillis) {
        let kept_from = at.0.saturating_sub(crate::limits::RECENT_KEPT_MS);
        if o.channel != DeliveryChannel::None && !o.recipient.is_empty() {
            let v = match self.senders.get_mut(&*o.recipient) {
                Some(v) => v,
                None => self.senders.entry(o.recipient.clone()).or_default(),
            };
            v.retain(|(t, w)| *w != o.wallet && t.0 > kept_from);
            v.push_back((at, o.wallet.clone()));
            if v.len() > SENDERS_KEPT {
                v.pop_front();
            }
        }
        let bucket = at.0 / SALES_BUCKET_MS;
        let kept_from_bucket = kept_from / SALES_BUCKET_MS;
        for line in &o.lines {
            let s = match self.sold.get_mut(&line.sku) {
                Some(s) => s,
                None => self.sold.entry(line.sku.clone()).or_default(),
            };
            s.add(bucket, u64::from(line.quantity), kept_from_bucket);
        }
    }
}

/// The risk state of one shard: its wallets' histories and its orders' scores.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Risk {
    #[serde(serialize_with = "sorted")]
    pub(crate) wallets: HashMap<WalletId, WalletRisk>,
    #[serde(serialize_with = "sorted")]
    pub(crate) scores: HashMap<OrderKey, RiskScore>,
    /// What the many-wallet rules read (section version 2 on).
    pub(crate) crowd: Crowd,
    /// Set by the runtime; not part of the state's bytes.
    #[serde(skip)]
    pub(crate) scoring: Arc<Scoring>,
}

/// The state's part: the scoring is the runtime's setting, not in the state's bytes.
impl PartialEq for Risk {
    fn eq(&self, other: &Risk) -> bool {
        self.wallets == other.wallets && self.scores == other.scores && self.crowd == other.crowd
    }
}

/// The risk section as version 1 wrote it: no crowd.
#[derive(Deserialize)]
pub(crate) struct RiskV1 {
    wallets: HashMap<WalletId, WalletRisk>,
    scores: HashMap<OrderKey, RiskScore>,
}

impl From<RiskV1> for Risk {
    fn from(v: RiskV1) -> Risk {
        Risk {
            wallets: v.wallets,
            scores: v.scores,
            ..Risk::default()
        }
    }
}

impl Eq for Risk {}

impl Risk {
    /// The scoring in force.
    pub fn scoring(&self) -> &Scoring {
        &self.scoring
    }

    /// An order's recorded score, if it scored above zero.
    pub fn score_of(&self, key: &OrderKey) -> Option<&RiskScore> {
        self.scores.get(key)
    }

    /// Every recorded score, in no particular order.
    pub fn scores(&self) -> impl Iterator<Item = (&OrderKey, &RiskScore)> {
        self.scores.iter()
    }

    /// What the rules read of a wallet.
    pub fn wallet(&self, wallet: &WalletId) -> Option<&WalletRisk> {
        self.wallets.get(wallet)
    }

    /// Every wallet's history, in no particular order.
    pub fn wallets(&self) -> impl Iterator<Item = (&WalletId, &WalletRisk)> {
        self.wallets.iter()
    }

    /// The order's score at `now` (none when no rule held, or none is set).
    pub(crate) fn score(
        &self,
        limits: &crate::limits::Limits,
        o: &Scored,
        now: UnixMillis,
        shard_count: u16,
    ) -> Option<RiskScore> {
        let scale = u64::from(shard_count.max(1));
        if self.scoring.rules.is_empty() {
            return None;
        }
        let w = self.wallets.get(o.wallet);
        let ccy = o.total.currency();
        let mut score = 0u32;
        let mut reasons = Vec::new();
        for r in &self.scoring.rules {
            let holds = match &r.rule {
                RiskRule::Velocity { window_ms, orders } => {
                    // Counted from the newest, and only as far as the rule needs.
                    let since = now.0.saturating_sub(*window_ms);
                    let need = usize::try_from(*orders).unwrap_or(usize::MAX);
                    limits.activity(o.wallet).is_some_and(|a| {
                        a.recent
                            .iter()
                            .rev()
                            .take_while(|s| s.at.0 > since)
                            .take(need)
                            .count()
                            >= need
                    })
                }
                RiskRule::FundedRecently { age_ms } => w
                    .and_then(|w| w.first_funded)
                    .is_none_or(|t| now.0.saturating_sub(t.0) < *age_ms),
                RiskRule::AmountOverHistory {
                    percent,
                    min_orders,
                } => w
                    .and_then(|w| w.orders.iter().find(|(c, _, _)| *c == ccy))
                    .is_some_and(|(_, n, sum)| {
                        // total > sum / n * percent / 100, in integers.
                        *n >= u64::from(*min_orders)
                            && i128::from(o.total.minor()) * i128::from(*n) * 100
                                > i128::from(*sum) * i128::from(*percent)
                    }),
                RiskRule::NewRecipient {
                    currency,
                    min_amount_minor,
                } => {
                    *currency == ccy
                        && o.total.minor() >= *min_amount_minor
                        && o.channel != DeliveryChannel::None
                        && !w.is_some_and(|w| w.recipients.iter().any(|r| &**r == o.recipient))
                }
                RiskRule::SharedRecipient { window_ms, wallets } => {
                    let since = now.0.saturating_sub(*window_ms);
                    o.channel != DeliveryChannel::None
                        && !o.recipient.is_empty()
                        && (self.crowd.senders_since(o.recipient, o.wallet, since) as u64)
                            .saturating_mul(scale)
                            >= u64::from(*wallets)
                }
                RiskRule::HotSku { window_ms, cards } => {
                    let since = now.0.saturating_sub(*window_ms);
                    o.items.iter().any(|i| {
                        self.crowd.sold_since(&i.sku, since).saturating_mul(scale)
                            >= u64::from(*cards)
                    })
                }
            };
            if holds {
                score = score.saturating_add(r.weight);
                if !reasons.contains(&r.rule.reason()) {
                    reasons.push(r.rule.reason());
                }
            }
        }
        (score > 0).then_some(RiskScore {
            score,
            reasons,
            at: now,
        })
    }

    /// Whether a score sends its order to review (checked after `refuses`).
    pub(crate) fn reviews(&self, s: &RiskScore) -> bool {
        self.scoring.review_above.is_some_and(|t| s.score > t)
    }

    /// Whether a score refuses its order.
    pub(crate) fn refuses(&self, s: &RiskScore) -> bool {
        self.scoring.reject_above.is_some_and(|t| s.score > t)
    }

    /// The risk's part of an event applied at `at`.
    pub(crate) fn apply(&mut self, event: &Event, at: UnixMillis) {
        match event {
            Event::Deposited { wallet, .. } => match self.wallets.get_mut(wallet) {
                Some(w) => drop(w.first_funded.get_or_insert(at)),
                None => {
                    let w = WalletRisk {
                        first_funded: Some(at),
                        ..WalletRisk::default()
                    };
                    self.wallets.insert(wallet.clone(), w);
                }
            },
            Event::OrderCompleted(o) => {
                self.crowd.apply(o, at);
                if !self.wallets.contains_key(&o.wallet) {
                    self.wallets.insert(o.wallet.clone(), WalletRisk::default());
                }
                let w = self.wallets.get_mut(&o.wallet).expect("inserted above");
                let charged = o.total();
                match w
                    .orders
                    .iter_mut()
                    .find(|(c, _, _)| *c == charged.currency())
                {
                    Some((_, n, sum)) => {
                        *n = n.saturating_add(1);
                        *sum = sum.saturating_add(charged.minor());
                    }
                    None => w.orders.push((charged.currency(), 1, charged.minor())),
                }
                if o.channel != DeliveryChannel::None && !o.recipient.is_empty() {
                    w.recipients.retain(|r| *r != o.recipient);
                    w.recipients.push(o.recipient.clone());
                    if w.recipients.len() > RECIPIENTS_KEPT {
                        w.recipients.remove(0);
                    }
                }
            }
            Event::RiskScored { key, score, .. } => {
                self.scores.insert(key.clone(), score.clone());
            }
            // A rejected order's record is forgotten after the replay window: its score too.
            Event::Expired { fired, .. } => {
                for d in fired {
                    if let crate::deadlines::Deadline::RejectedOrder(key) = d {
                        self.scores.remove(key);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skus_sales_since_an_instant_count_only_the_buckets_kept_from_it() {
        let mut s = SkuSales::default();
        s.add(10, 3, 0);
        s.add(10, 1, 0);
        s.add(12, 2, 0);
        assert_eq!(
            (s.since(0), s.since(10), s.since(11), s.since(13)),
            (6, 6, 2, 0)
        );
        // A day later the old buckets go; what they counted is in the base, never in a window.
        s.add(100, 5, 50);
        assert_eq!((s.since(0), s.since(100), s.since(101)), (5, 5, 0));
    }
}
