//! Orders: the recorded answer of every order key, the claims a home shard keeps for orders
//! executed on another shard, and the funds held for orders waiting for stock. An order is
//! priced, checked against the wallet and the local pools, and filled here; its effects on
//! wallets, pools, cards, settlement and reports are applied by those modules from the same
//! `OrderCompleted` event.

use crate::catalog::{SkuKind, SkuStatus, UnitPrice};
use crate::event::*;
use crate::maps::{sorted, HashMap, SpreadMap};
use crate::state::{Decision, ShardState};
use crate::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A recorded order answer, with what a retry must match.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRecord {
    pub fingerprint: Fingerprint,
    pub wallet: WalletId,
    pub outcome: OrderOutcome,
    pub at: UnixMillis,
    pub channel: DeliveryChannel,
    pub recipient: Arc<str>,
}

/// Funds held for an order: waiting for stock from peers (a saga's hold, released by recovery:
/// no peer finishes a saga after a restart), or reserved `until` a deadline (kept by recovery,
/// released by the deadline if nothing settles it first).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub fingerprint: Fingerprint,
    pub wallet: WalletId,
    pub amount: Money,
    pub until: Option<UnixMillis>,
}

/// A hold as orders section version 1 (and state formats 1 and 2) wrote it, before `until`.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct HoldV1 {
    fingerprint: Fingerprint,
    wallet: WalletId,
    amount: Money,
}

impl From<HoldV1> for Hold {
    fn from(h: HoldV1) -> Hold {
        Hold {
            fingerprint: h.fingerprint,
            wallet: h.wallet,
            amount: h.amount,
            until: None,
        }
    }
}

/// The orders section as version 1 wrote it.
#[derive(Deserialize)]
pub(crate) struct OrdersV1 {
    records: SpreadMap<OrderKey, OrderRecord>,
    claims: SpreadMap<OrderKey, (Fingerprint, ShardId)>,
    holds: HashMap<OrderKey, HoldV1>,
}

impl From<OrdersV1> for Orders {
    fn from(v1: OrdersV1) -> Orders {
        Orders::from_v1_parts(v1.records, v1.claims, v1.holds)
    }
}

/// The orders of one shard: answers, claims and holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Orders {
    pub(crate) records: SpreadMap<OrderKey, OrderRecord>,
    pub(crate) claims: SpreadMap<OrderKey, (Fingerprint, ShardId)>,
    #[serde(serialize_with = "sorted")]
    pub(crate) holds: HashMap<OrderKey, Hold>,
}

/// A priced order, before stock is taken.
struct Plan {
    charged: Money,
    /// Each line with its cards and the pool they come from.
    lines: Vec<(SoldLine, u32, Option<SkuId>)>,
    /// Cards needed from each pool (supplier codes, and issued SKUs with a cap).
    needs: BTreeMap<SkuId, u64>,
    /// Other suppliers' pools to ask peers for when a line of several suppliers is short.
    short: Vec<(SkuId, u64)>,
}

impl Orders {
    /// Orders from the parts older formats wrote.
    pub(crate) fn from_v1_parts(
        records: SpreadMap<OrderKey, OrderRecord>,
        claims: SpreadMap<OrderKey, (Fingerprint, ShardId)>,
        holds: HashMap<OrderKey, HoldV1>,
    ) -> Orders {
        Orders {
            records,
            claims,
            holds: holds.into_iter().map(|(k, h)| (k, h.into())).collect(),
        }
    }

    /// The recorded answer of an order key.
    pub fn get(&self, key: &OrderKey) -> Option<&OrderRecord> {
        self.records.get(key)
    }

    /// Every recorded order, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&OrderKey, &OrderRecord)> {
        self.records.iter()
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The claim a home shard recorded for an order executed elsewhere.
    pub fn claim(&self, key: &OrderKey) -> Option<&(Fingerprint, ShardId)> {
        self.claims.get(key)
    }

    /// Funds held for an order waiting for stock.
    pub fn hold(&self, key: &OrderKey) -> Option<&Hold> {
        self.holds.get(key)
    }

    /// Open holds.
    pub fn hold_count(&self) -> usize {
        self.holds.len()
    }

    /// Every open hold, in key order.
    pub fn holds(&self) -> Vec<(&OrderKey, &Hold)> {
        crate::spread::sorted_entries(self.holds.iter())
    }

    pub(crate) fn decide_claim(
        key: &OrderKey,
        fingerprint: Fingerprint,
        wallet_shard: ShardId,
    ) -> Decision {
        Decision::Events(vec![Event::OrderClaimed {
            key: key.clone(),
            fingerprint,
            wallet_shard,
        }])
    }

    pub(crate) fn decide_abort(&self, key: &OrderKey, reason: Rejection) -> Decision {
        let Some(hold) = self.holds.get(key) else {
            return Decision::Answered(vec![]);
        };
        if reason == Rejection::OutOfStock {
            return Decision::Events(vec![Event::OrderRejected {
                key: key.clone(),
                fingerprint: hold.fingerprint,
                wallet: hold.wallet.clone(),
                reason,
                released_hold: Some(hold.amount),
            }]);
        }
        Decision::Events(vec![Event::OrderAborted {
            key: key.clone(),
            wallet: hold.wallet.clone(),
            released_hold: hold.amount,
        }])
    }

    /// The orders' part of an event applied at `at`.
    pub(crate) fn apply(&mut self, event: &Event, at: UnixMillis) {
        match event {
            Event::OrderClaimed {
                key,
                fingerprint,
                wallet_shard,
            } => {
                self.claims
                    .insert(key.clone(), (*fingerprint, *wallet_shard));
            }
            Event::FundsHeld {
                key,
                fingerprint,
                wallet,
                amount,
            } => {
                let hold = Hold {
                    fingerprint: *fingerprint,
                    wallet: wallet.clone(),
                    amount: *amount,
                    until: None,
                };
                self.holds.insert(key.clone(), hold);
            }
            Event::FundsReserved {
                key,
                fingerprint,
                wallet,
                amount,
                until,
            } => {
                let hold = Hold {
                    fingerprint: *fingerprint,
                    wallet: wallet.clone(),
                    amount: *amount,
                    until: Some(*until),
                };
                self.holds.insert(key.clone(), hold);
            }
            Event::OrderCompleted(order) => {
                self.holds.remove(&order.key);
                // The answer says what left the wallet: the lines and the fees.
                let outcome = OrderOutcome::Completed {
                    charged: order.total(),
                    first_card: order.first_card,
                    cards: order.lines.iter().map(|l| l.quantity).sum(),
                };
                let rec = OrderRecord {
                    fingerprint: order.fingerprint,
                    wallet: order.wallet.clone(),
                    outcome,
                    at: order.at,
                    channel: order.channel,
                    recipient: order.recipient.clone(),
                };
                self.records.insert(order.key.clone(), rec);
            }
            Event::OrderRejected {
                key,
                fingerprint,
                wallet,
                reason,
                released_hold,
            } => {
                if released_hold.is_some() {
                    self.holds.remove(key);
                }
                let rec = OrderRecord {
                    fingerprint: *fingerprint,
                    wallet: wallet.clone(),
                    outcome: OrderOutcome::Rejected(*reason),
                    at,
                    channel: DeliveryChannel::None,
                    recipient: "".into(),
                };
                self.records.insert(key.clone(), rec);
            }
            Event::OrderAborted { key, .. } => drop(self.holds.remove(key)),
            Event::Expired { fired, .. } => {
                for d in fired {
                    let crate::deadlines::Deadline::RejectedOrder(key) = d else {
                        continue;
                    };
                    if self
                        .records
                        .get(key)
                        .is_some_and(|r| matches!(r.outcome, OrderOutcome::Rejected(_)))
                    {
                        self.records.remove(key);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Decides an order against the whole shard: the key's record and claim, the wallet, the
/// catalog's prices, the local pools.
use crate::reviews::{PendingReview, ReviewCause};

pub(crate) fn decide_order(st: &ShardState, req: &OrderRequest, ctx: &Ctx) -> Decision {
    let key = &req.key;
    let orders = st.orders();
    if let Some(rec) = orders.get(key) {
        return if rec.fingerprint == req.fingerprint {
            Decision::Replay(rec.outcome.clone())
        } else {
            Decision::Reject(Rejection::IdempotencyConflict)
        };
    }
    let hold = orders.hold(key);
    if hold.is_some_and(|h| h.fingerprint != req.fingerprint) {
        return Decision::Reject(Rejection::IdempotencyConflict);
    }
    // Waiting for review: a retry gets the order's state, decided nothing again.
    if let Some(outcome) = st.reviews().outcome(key) {
        return Decision::Replay(outcome);
    }
    let wallet_shard = st.wallet_shard(&req.wallet);
    if wallet_shard != st.shard() {
        return match orders.claim(key) {
            Some((fp, _)) if *fp != req.fingerprint => {
                Decision::Reject(Rejection::IdempotencyConflict)
            }
            Some((_, to)) => Decision::Forward {
                claim: None,
                to: *to,
            },
            None => Decision::Forward {
                claim: Some(Event::OrderClaimed {
                    key: key.clone(),
                    fingerprint: req.fingerprint,
                    wallet_shard,
                }),
                to: wallet_shard,
            },
        };
    }
    // The client's own wallet of that id (any wallet for an admin); the events name it by its
    // stored id. An order already holding funds settles against the wallet its hold is on,
    // whatever the id would resolve to now.
    let wallet_id = match hold {
        Some(h) => h.wallet.clone(),
        None => st.wallets().resolve(&key.client, req.admin, &req.wallet),
    };
    let wallet = match st.wallets().get(&wallet_id) {
        Some(w) if req.admin || w.owner == key.client => w,
        _ => return Decision::Reject(Rejection::WalletNotFound),
    };
    let rejected = |reason| {
        Decision::Events(vec![Event::OrderRejected {
            key: key.clone(),
            fingerprint: req.fingerprint,
            wallet: wallet_id.clone(),
            reason,
            released_hold: hold.map(|h| h.amount),
        }])
    };
    let cards = req.card_count();
    if req.items.is_empty() || cards == 0 || cards > u64::from(ORDER_CARDS_MAX) {
        return Decision::Reject(Rejection::QuantityOutOfRange);
    }
    if wallet.frozen {
        return rejected(Rejection::WalletFrozen);
    }
    // A locked quote prices the order's conversions while it lives; one that cannot (gone,
    // expired, another wallet's or pair's) refuses the order like any other rule.
    let quote = match &req.fx_quote {
        None => None,
        Some(id) => match st.quotes().for_order(&key.client, id, &wallet_id, ctx.now) {
            Ok(q) => Some(q),
            Err(r) => return rejected(r),
        },
    };
    // The wallet owner's negotiated prices (an admin ordering for a client pays the client's).
    let list = st.price_lists().get(&wallet.owner);
    let mut plan = match price(st, req, &req.items, quote, list, ctx.now) {
        Ok(p) => p,
        Err(r) => return rejected(r),
    };
    // A fill_available order that every peer was asked for: what there is, priced as bought.
    let mut filled_in_part = None;
    if req.fulfilment == Fulfilment::FillAvailable && req.stock_final {
        let (items, filled) = available_part(st, req, &plan);
        if items.is_empty() {
            return rejected(Rejection::OutOfStock);
        }
        if filled.iter().any(|(_, asked, got)| asked != got) {
            plan = match price(st, req, &items, quote, list, ctx.now) {
                Ok(p) => p,
                Err(r) => return rejected(r),
            };
            filled_in_part = Some(filled);
        }
    }
    // The fees of the schedule now, in the pay currency: charged in the same commit.
    let fees = st.fees().charges(plan.charged.currency(), req.channel);
    let total = match crate::fees::total(&fees) {
        Some(f) => match plan.charged.checked_add(f) {
            Ok(t) => t,
            Err(r) => return rejected(r),
        },
        None => plan.charged,
    };
    let held = hold.map_or(0, |h| h.amount.minor());
    let bal = wallet.balance(total.currency());
    let have = bal.available_minor.checked_add(held).unwrap_or(0);
    if hold.is_some_and(|h| h.amount.currency() != total.currency()) {
        return rejected(Rejection::InsufficientFunds);
    }
    // Limits and KYC, decided with the debit on the wallet's shard. An order that may be filled
    // in part is checked when its part is known; any other before it asks peers for stock.
    let within_limits = |plan: &Plan, total: Money| {
        let cards = if st.limits().counts_cards(&wallet_id) {
            cards_per_sku(plan)
        } else {
            Vec::new()
        };
        let spend = crate::limits::Spend {
            total,
            cards: &cards,
        };
        st.limits()
            .check(st, &wallet_id, wallet.kyc_verified, &spend, ctx.now)
            .map(|w| (w == crate::limits::Within::NeedsKycReview).then_some(ReviewCause::Kyc))
    };
    // The risk score, with the limits: a score above the threshold refuses the order, and
    // any score above zero is journaled with the order's outcome.
    let scored = |total: Money| {
        let o = crate::risk::Scored {
            wallet: &wallet_id,
            total,
            channel: req.channel,
            recipient: &req.recipient,
            items: &req.items,
        };
        st.risk().score(st.limits(), &o, ctx.now, st.shard_count())
    };
    let risk_event = |score: crate::risk::RiskScore| Event::RiskScored {
        key: key.clone(),
        wallet: wallet_id.clone(),
        score,
    };
    let refused_for = |score: &crate::risk::RiskScore| match rejected(Rejection::RiskRejected) {
        Decision::Events(mut evs) => {
            evs.push(risk_event(score.clone()));
            Decision::Events(evs)
        }
        other => other,
    };
    // Why the order goes to review instead of completing, if it does: the KYC threshold
    // (when the policy reviews instead of refusing), else a score above `review_above`.
    let review_for = |kyc: Option<ReviewCause>, risk: Option<&crate::risk::RiskScore>| {
        kyc.or(risk
            .filter(|s| st.risk().reviews(s))
            .map(|_| ReviewCause::Risk))
    };
    let mut risk = None;
    let mut review = None;
    if req.fulfilment == Fulfilment::AllOrNothing {
        let kyc = match within_limits(&plan, total) {
            Ok(k) => k,
            Err(r) => return rejected(r),
        };
        risk = scored(total);
        if let Some(s) = risk.as_ref().filter(|s| st.risk().refuses(s)) {
            return refused_for(s);
        }
        review = review_for(kyc, risk.as_ref());
    }
    let mut missing: Vec<(SkuId, u64)> = plan
        .needs
        .iter()
        .filter_map(|(sku, n)| {
            let have = st.pools().available(sku);
            (have < *n).then(|| (sku.clone(), n - have))
        })
        .collect();
    if !missing.is_empty() {
        missing.extend(plan.short.iter().cloned());
    }
    // An order that may be filled in part and is short of stock holds what it can of its
    // price while peers are asked (the part it gets must fit in that); any other order must
    // afford the whole of it.
    let partial_short = req.fulfilment == Fulfilment::FillAvailable && !missing.is_empty();
    if have <= 0 || (have < total.minor() && !partial_short) {
        return rejected(Rejection::InsufficientFunds);
    }
    if !missing.is_empty() {
        // When already holding, the runtime does not journal `hold` again: it asks further peers.
        return Decision::NeedStock {
            hold: Event::FundsHeld {
                key: key.clone(),
                fingerprint: req.fingerprint,
                wallet: wallet_id,
                amount: Money::new(total.minor().min(have), total.currency()),
            },
            missing,
        };
    }
    if req.fulfilment == Fulfilment::FillAvailable {
        let kyc = match within_limits(&plan, total) {
            Ok(k) => k,
            Err(r) => return rejected(r),
        };
        risk = scored(total);
        if let Some(s) = risk.as_ref().filter(|s| st.risk().refuses(s)) {
            return refused_for(s);
        }
        review = review_for(kyc, risk.as_ref());
    }
    let issued: u64 = plan
        .lines
        .iter()
        .filter(|(l, _, _)| l.issued)
        .map(|(l, _, _)| u64::from(l.quantity))
        .sum();
    // Codes are drawn only now, when every check has passed: an order that is refused costs
    // no randomness, hashing or sealing (and its refusal is recorded like any other).
    if req.fresh_codes.is_empty() && issued > 0 {
        return Decision::NeedCodes(issued_card_ids(st, &plan));
    }
    if req.fresh_codes.len() as u64 != issued {
        return Decision::Reject(Rejection::QuantityOutOfRange);
    }
    let scored_event = risk.clone().map(risk_event);
    let mut done = fill(st, req, wallet_id, plan, hold.map(|h| h.amount), ctx);
    done.fees = fees;
    let mut events = Vec::with_capacity(2);
    match review {
        None => events.push(Event::OrderCompleted(Box::new(done))),
        Some(cause) => {
            // Held for review: the whole charge reserved until the review's deadline, in place
            // of a stock saga's hold if it had one (which recovery would not keep).
            let until = UnixMillis(
                ctx.now
                    .0
                    .saturating_add(st.limits().policy().review_ttl_ms()),
            );
            if let Some(h) = hold {
                events.push(Event::OrderAborted {
                    key: key.clone(),
                    wallet: done.wallet.clone(),
                    released_hold: h.amount,
                });
            }
            done.captured_hold = Some(total);
            events.push(Event::FundsReserved {
                key: key.clone(),
                fingerprint: req.fingerprint,
                wallet: done.wallet.clone(),
                amount: total,
                until,
            });
            events.push(Event::OrderPendingReview(Box::new(PendingReview {
                order: done,
                cause,
                score: risk,
                until,
            })));
        }
    }
    if let Some(items) = filled_in_part {
        events.push(Event::OrderFilledInPart {
            key: key.clone(),
            items,
        });
    }
    events.extend(scored_event);
    Decision::Events(events)
}

/// The cards of a plan per SKU, in first-seen order (what the daily caps count).
fn cards_per_sku(plan: &Plan) -> Vec<(SkuId, u32)> {
    let mut out: Vec<(SkuId, u32)> = Vec::new();
    for (l, _, _) in &plan.lines {
        crate::limits::tally(&mut out, &l.sku, l.quantity, || l.sku.clone());
    }
    out
}

/// Prices every line and converts it to the pay currency: at the locked `quote` when the
/// order names one (every converted line must be of its pair), else at the FX table.
fn price(
    st: &ShardState,
    req: &OrderRequest,
    items: &[OrderItem],
    quote: Option<&crate::quotes::FxQuote>,
    list: Option<&crate::pricelists::PriceList>,
    now: UnixMillis,
) -> Result<Plan, Rejection> {
    let catalog = st.catalog();
    let first_ccy = items
        .first()
        .and_then(|i| catalog.sku(&i.sku))
        .map(|s| s.currency);
    let pay = req
        .pay_currency
        .or(quote.map(|q| q.to))
        .or(first_ccy)
        .ok_or(Rejection::SkuUnavailable)?;
    if quote.is_some_and(|q| q.to != pay) {
        return Err(Rejection::QuoteMismatch);
    }
    let mut charged = Money::zero(pay);
    let mut lines = Vec::with_capacity(items.len());
    let mut needs: BTreeMap<SkuId, u64> = BTreeMap::new();
    let mut short = Vec::new();
    for item in items {
        let sku = catalog.sku(&item.sku).ok_or(Rejection::SkuUnavailable)?;
        if sku.status != SkuStatus::Active {
            return Err(Rejection::SkuUnavailable);
        }
        if !sku.sells_in(&req.region) {
            return Err(Rejection::RegionNotAllowed);
        }
        if item.quantity == 0 {
            return Err(Rejection::QuantityOutOfRange);
        }
        let UnitPrice {
            face,
            price: base,
            cost: own_cost,
        } = catalog.unit_price(sku, item.amount_minor)?;
        // A pricing rule of the SKU's that holds at the order's instant replaces the markup's
        // price; then the client's price list, if it has one.
        let base = match st.promotions().price_at(&sku.id, face, now) {
            Some(p) => p?,
            None => base,
        };
        let discount = list
            .map(|l| l.discount(sku, item.quantity))
            .filter(|d| !d.is_zero());
        // Each supplier's part at its own floor; the item's total is converted once, as the
        // client asked for it, and the charge shared between the parts in proportion, so a
        // split between suppliers never changes what the item costs the client.
        let mut priced = Vec::new();
        let mut item_total = Money::zero(sku.currency);
        for part in parts_of(st, sku, item, face, own_cost, &needs, &mut short)? {
            // Cost plus the margin floor: no rule, list or later change sells a card below it.
            let lowest = st.floors().lowest_price(sku, face, part.cost)?;
            let price = match discount {
                Some(d) => crate::pricelists::discounted(base, d, lowest)?,
                None => base,
            };
            let price = if price.minor() < lowest.minor() {
                lowest
            } else {
                price
            };
            let total = price.checked_mul(part.quantity)?;
            // Settlement and reports multiply the cost and margin by the quantity when the
            // order applies: check here that they fit, so applying never overflows.
            part.cost.checked_mul(part.quantity)?;
            price.checked_sub(part.cost)?.checked_mul(part.quantity)?;
            item_total = item_total.checked_add(total)?;
            if let Some(pool) = &part.pool {
                *needs.entry(pool.clone()).or_default() += u64::from(part.quantity);
            }
            priced.push((part, price, total));
        }
        let (item_charged, item_at_mid) = if sku.currency == pay {
            (item_total, item_total)
        } else {
            let c = match quote {
                Some(q) if q.from == sku.currency => {
                    crate::catalog::convert_at(item_total, pay, q.mid, q.spread)?
                }
                Some(_) => return Err(Rejection::QuoteMismatch),
                None => catalog.fx().convert_for_payer(item_total, pay)?,
            };
            (c.charged, c.at_mid)
        };
        charged = charged.checked_add(item_charged)?;
        let (mut charged_left, mut mid_left) = (item_charged.minor(), item_at_mid.minor());
        let n = priced.len();
        for (i, (part, price, total)) in priced.into_iter().enumerate() {
            let share = |whole: i64| -> i64 {
                if item_total.minor() == 0 {
                    return 0;
                }
                (i128::from(whole) * i128::from(total.minor()) / i128::from(item_total.minor()))
                    as i64
            };
            let (c, m) = if i + 1 == n {
                (charged_left, mid_left)
            } else {
                (share(item_charged.minor()), share(item_at_mid.minor()))
            };
            charged_left -= c;
            mid_left -= m;
            let line = SoldLine {
                sku: sku.id.clone(),
                supplier: part.supplier,
                issued: sku.kind == SkuKind::Issued,
                quantity: part.quantity,
                face,
                unit_price: price,
                unit_cost: part.cost,
                charged: Money::new(c, pay),
                charged_at_mid: Money::new(m, pay),
                slots: Vec::new(),
                issued_codes: Vec::new(),
            };
            lines.push((line, part.quantity, part.pool));
        }
    }
    Ok(Plan {
        charged,
        lines,
        needs,
        short,
    })
}

/// Cards of one order line from one place: a supplier's pool (supplier codes), the SKU's cap
/// (issued cards with one), or nowhere in particular (issued cards without a cap).
struct Part {
    pool: Option<SkuId>,
    supplier: SupplierId,
    cost: Money,
    quantity: u32,
}

/// Where an order line's cards come from. Supplier codes follow the SKU's routing over its
/// suppliers' pools, each giving what it has here (less what earlier lines of the order took);
/// if they are short, the first pool takes the rest (so the order asks peers for it) and every
/// other pool of the SKU is asked too (`short`), so stock of any supplier anywhere is found.
fn parts_of(
    st: &ShardState,
    sku: &crate::catalog::Sku,
    item: &OrderItem,
    face: Money,
    own_cost: Money,
    needs: &BTreeMap<SkuId, u64>,
    short: &mut Vec<(SkuId, u64)>,
) -> Result<Vec<Part>, Rejection> {
    if sku.kind != SkuKind::SupplierCode {
        return Ok(vec![Part {
            pool: sku.issue_cap.map(|_| sku.id.clone()),
            supplier: sku.supplier.clone(),
            cost: own_cost,
            quantity: item.quantity,
        }]);
    }
    let sources = st.sourcing().sources(sku, face, own_cost)?;
    let whole = |s: &crate::sourcing::Source| Part {
        pool: Some(s.pool.clone()),
        supplier: s.supplier.clone(),
        cost: s.cost,
        quantity: item.quantity,
    };
    if sources.len() == 1 {
        return Ok(sources.iter().map(whole).collect());
    }
    let mut left = item.quantity;
    let mut parts: Vec<Part> = Vec::with_capacity(sources.len());
    for s in &sources {
        let used = needs.get(&s.pool).copied().unwrap_or(0);
        let have = st.pools().available(&s.pool).saturating_sub(used);
        let take = have.min(u64::from(left)) as u32;
        if take > 0 {
            let mut p = whole(s);
            p.quantity = take;
            parts.push(p);
            left -= take;
        }
    }
    if left > 0 {
        match parts
            .iter_mut()
            .find(|p| p.pool.as_ref() == Some(&sources[0].pool))
        {
            Some(p) => p.quantity += left,
            None => {
                let mut p = whole(&sources[0]);
                p.quantity = left;
                parts.insert(0, p);
            }
        }
        short.extend(
            sources[1..]
                .iter()
                .map(|s| (s.pool.clone(), u64::from(left))),
        );
    }
    Ok(parts)
}

/// The part of an order the shard's pools can fill, lines in the request's order taking what
/// is left of their SKU's stock: the items to price (lines of no cards dropped) and, per line
/// of the request, (SKU, cards asked for, cards filled).
fn available_part(
    st: &ShardState,
    req: &OrderRequest,
    plan: &Plan,
) -> (Vec<OrderItem>, Vec<(SkuId, u32, u32)>) {
    // Stock per SKU: the sum of its pools here (unlimited for issued cards without a cap).
    let mut left: BTreeMap<SkuId, u64> = BTreeMap::new();
    for (line, _, pool) in &plan.lines {
        if pool.is_some() && !left.contains_key(&line.sku) {
            let pools = st.sourcing().pools_of(&line.sku);
            let have = pools.iter().map(|p| st.pools().available(p)).sum();
            left.insert(line.sku.clone(), have);
        }
    }
    let mut items = Vec::with_capacity(req.items.len());
    let mut filled = Vec::with_capacity(req.items.len());
    for item in &req.items {
        let got = match left.get_mut(&item.sku) {
            // Unlimited (issued without a cap).
            None => item.quantity,
            Some(have) => {
                let got = (*have).min(u64::from(item.quantity));
                *have -= got;
                got as u32
            }
        };
        filled.push((item.sku.clone(), item.quantity, got));
        if got > 0 {
            items.push(OrderItem {
                quantity: got,
                ..item.clone()
            });
        }
    }
    (items, filled)
}

/// The ids `fill` gives the issued cards of `plan`, in its order: cards are numbered from the
/// shard's next sequence through the lines in turn, each line's cards together.
fn issued_card_ids(st: &ShardState, plan: &Plan) -> Vec<CardId> {
    let first = CardId::new(st.shard(), st.cards().next_seq()).0;
    let mut at = first;
    let mut ids = Vec::new();
    for (line, qty, _) in &plan.lines {
        let qty = u64::from(*qty);
        if line.issued {
            ids.extend((at..at + qty).map(CardId));
        }
        at += qty;
    }
    ids
}

/// Takes stock and codes for a priced plan. Stock sufficiency was checked by the caller.
fn fill(
    st: &ShardState,
    req: &OrderRequest,
    wallet: WalletId,
    plan: Plan,
    captured_hold: Option<Money>,
    ctx: &Ctx,
) -> CompletedOrder {
    // Usually one SKU: a short vector beats a map here.
    let mut taken: Vec<(&SkuId, Vec<SlotRange>)> = plan
        .needs
        .iter()
        .map(|(sku, n)| {
            let ranges = st.pools().get(sku).map(|p| p.peek(*n)).unwrap_or_default();
            (sku, ranges)
        })
        .collect();
    let mut fresh = req.fresh_codes.iter();
    let mut lines = Vec::with_capacity(plan.lines.len());
    for (mut line, qty, pool) in plan.lines {
        if let Some((_, ranges)) = taken.iter_mut().find(|(p, _)| Some(*p) == pool.as_ref()) {
            line.slots = split_off_front(ranges, u64::from(qty));
        }
        if line.issued {
            // Slots of an issued line are its share of the issue cap, not stored codes.
            line.issued_codes = fresh.by_ref().take(qty as usize).cloned().collect();
        }
        lines.push(line);
    }
    CompletedOrder {
        key: req.key.clone(),
        fingerprint: req.fingerprint,
        wallet,
        charged: plan.charged,
        captured_hold,
        first_card: CardId::new(st.shard(), st.cards().next_seq()),
        lines,
        channel: req.channel,
        recipient: req.recipient.as_str().into(),
        at: ctx.now,
        fees: Vec::new(),
    }
}

/// Takes the first `n` slots off the front of `ranges`.
fn split_off_front(ranges: &mut Vec<SlotRange>, mut n: u64) -> Vec<SlotRange> {
    let mut out = Vec::new();
    while n > 0 && !ranges.is_empty() {
        let (s, e) = ranges[0];
        let take = (e - s).min(n);
        out.push((s, s + take));
        n -= take;
        if s + take == e {
            ranges.remove(0);
        } else {
            ranges[0].0 = s + take;
        }
    }
    out
}
