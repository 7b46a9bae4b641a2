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
    lines: Vec<(SoldLine, u32)>,
    /// Cards needed from each SKU's pool (supplier codes, and issued SKUs with a cap).
    needs: BTreeMap<SkuId, u64>,
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
                let outcome = OrderOutcome::Completed {
                    charged: order.charged,
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
    let plan = match price(st, req, quote, list, ctx.now) {
        Ok(p) => p,
        Err(r) => return rejected(r),
    };
    let held = hold.map_or(0, |h| h.amount.minor());
    let bal = wallet.balance(plan.charged.currency());
    let affordable = bal
        .available_minor
        .checked_add(held)
        .is_some_and(|have| have >= plan.charged.minor());
    if hold.is_some_and(|h| h.amount.currency() != plan.charged.currency()) || !affordable {
        return rejected(Rejection::InsufficientFunds);
    }
    let missing: Vec<(SkuId, u64)> = plan
        .needs
        .iter()
        .filter_map(|(sku, n)| {
            let have = st.pools().available(sku);
            (have < *n).then(|| (sku.clone(), n - have))
        })
        .collect();
    if !missing.is_empty() {
        // When already holding, the runtime does not journal `hold` again: it asks further peers.
        return Decision::NeedStock {
            hold: Event::FundsHeld {
                key: key.clone(),
                fingerprint: req.fingerprint,
                wallet: wallet_id,
                amount: plan.charged,
            },
            missing,
        };
    }
    let issued: u64 = plan
        .lines
        .iter()
        .filter(|(l, _)| l.issued)
        .map(|(l, _)| u64::from(l.quantity))
        .sum();
    // Codes are drawn only now, when every check has passed: an order that is refused costs
    // no randomness, hashing or sealing (and its refusal is recorded like any other).
    if req.fresh_codes.is_empty() && issued > 0 {
        return Decision::NeedCodes(issued_card_ids(st, &plan));
    }
    if req.fresh_codes.len() as u64 != issued {
        return Decision::Reject(Rejection::QuantityOutOfRange);
    }
    Decision::Events(vec![Event::OrderCompleted(Box::new(fill(
        st,
        req,
        wallet_id,
        plan,
        hold.map(|h| h.amount),
        ctx,
    )))])
}

/// Prices every line and converts it to the pay currency: at the locked `quote` when the
/// order names one (every converted line must be of its pair), else at the FX table.
fn price(
    st: &ShardState,
    req: &OrderRequest,
    quote: Option<&crate::quotes::FxQuote>,
    list: Option<&crate::pricelists::PriceList>,
    now: UnixMillis,
) -> Result<Plan, Rejection> {
    let catalog = st.catalog();
    let first_ccy = req
        .items
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
    let mut lines = Vec::with_capacity(req.items.len());
    let mut needs: BTreeMap<SkuId, u64> = BTreeMap::new();
    for item in &req.items {
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
        let UnitPrice { face, price, cost } = catalog.unit_price(sku, item.amount_minor)?;
        // A pricing rule of the SKU's that holds at the order's instant replaces the markup's
        // price, never below the card's cost.
        let price = match st.promotions().price_at(&sku.id, face, now) {
            Some(p) => {
                let p = p?;
                if p.minor() < cost.minor() {
                    cost
                } else {
                    p
                }
            }
            None => price,
        };
        // The client's price list, if it has one: never below the card's cost.
        let price = match list.map(|l| l.discount(sku, item.quantity)) {
            Some(d) if !d.is_zero() => crate::pricelists::discounted(price, d, cost)?,
            _ => price,
        };
        let total = price.checked_mul(item.quantity)?;
        // Settlement and reports multiply the cost and margin by the quantity when the order
        // applies: check here that they fit, so applying never overflows.
        cost.checked_mul(item.quantity)?;
        price.checked_sub(cost)?.checked_mul(item.quantity)?;
        let (line_charged, at_mid) = if sku.currency == pay {
            (total, total)
        } else {
            let c = match quote {
                Some(q) if q.from == sku.currency => {
                    crate::catalog::convert_at(total, pay, q.mid, q.spread)?
                }
                Some(_) => return Err(Rejection::QuoteMismatch),
                None => catalog.fx().convert_for_payer(total, pay)?,
            };
            (c.charged, c.at_mid)
        };
        charged = charged.checked_add(line_charged)?;
        if sku.kind == SkuKind::SupplierCode || sku.issue_cap.is_some() {
            *needs.entry(sku.id.clone()).or_default() += u64::from(item.quantity);
        }
        let line = SoldLine {
            sku: sku.id.clone(),
            supplier: sku.supplier.clone(),
            issued: sku.kind == SkuKind::Issued,
            quantity: item.quantity,
            face,
            unit_price: price,
            unit_cost: cost,
            charged: line_charged,
            charged_at_mid: at_mid,
            slots: Vec::new(),
            issued_codes: Vec::new(),
        };
        lines.push((line, item.quantity));
    }
    Ok(Plan {
        charged,
        lines,
        needs,
    })
}

/// The ids `fill` gives the issued cards of `plan`, in its order: cards are numbered from the
/// shard's next sequence through the lines in turn, each line's cards together.
fn issued_card_ids(st: &ShardState, plan: &Plan) -> Vec<CardId> {
    let first = CardId::new(st.shard(), st.cards().next_seq()).0;
    let mut at = first;
    let mut ids = Vec::new();
    for (line, qty) in &plan.lines {
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
    for (mut line, qty) in plan.lines {
        if let Some((_, ranges)) = taken.iter_mut().find(|(sku, _)| **sku == line.sku) {
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
