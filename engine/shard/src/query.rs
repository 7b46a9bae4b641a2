//! Read-only questions a shard answers from its state. Answers travel through the writer like
//! every reply, so nothing is seen before the journal holds it.

use crate::{EngineError, Query, QueryAnswer, ShardTotals};
use giftcard_core::state::{Delivery, ShardState};
use giftcard_core::{Account, CardId, OrderOutcome, Rejection};

/// Answers a query against one shard.
pub fn answer(state: &ShardState, q: Query) -> Result<QueryAnswer, EngineError> {
    let not_found = |r| Err(EngineError::Rejected(r));
    match q {
        Query::Wallet { caller, wallet } => match state.wallets().owned(&caller, &wallet) {
            Ok((_, w)) => Ok(QueryAnswer::Wallet(Box::new(w.clone()))),
            Err(r) => not_found(r),
        },
        Query::WalletLimits { caller, wallet } => match state.wallets().owned(&caller, &wallet) {
            Ok((id, w)) => {
                let (limits, own) = state.limits().of(&id);
                Ok(QueryAnswer::WalletLimits(Box::new(
                    crate::api::WalletLimits {
                        limits: limits.clone(),
                        own,
                        kyc_verified: w.kyc_verified,
                        kyc: state.limits().kyc_mark(&id).cloned(),
                        kyc_threshold_minor: state.limits().policy().kyc_threshold_minor.clone(),
                    },
                )))
            }
            Err(r) => not_found(r),
        },
        Query::Order { key } => match state.orders().get(&key) {
            Some(rec) => Ok(QueryAnswer::Order(Box::new(rec.clone()))),
            None => match state.reviews().get(&key) {
                // Waiting for review: the order as it stands, with what it holds.
                Some(r) => {
                    let o = &r.pending.order;
                    Ok(QueryAnswer::Order(Box::new(
                        giftcard_core::state::OrderRecord {
                            fingerprint: o.fingerprint,
                            wallet: o.wallet.clone(),
                            outcome: OrderOutcome::PendingReview {
                                held: r.held(),
                                until: r.pending.until,
                            },
                            at: o.at,
                            channel: o.channel,
                            recipient: o.recipient.clone(),
                        },
                    )))
                }
                None => Ok(QueryAnswer::Missing),
            },
        },
        Query::Reviews { limit } => {
            let mut all: Vec<_> = state
                .reviews()
                .iter()
                .map(|(k, r)| (k.clone(), r.clone()))
                .collect();
            all.sort_by(|a, b| (a.1.pending.order.at, &a.0).cmp(&(b.1.pending.order.at, &b.0)));
            all.truncate(limit);
            Ok(QueryAnswer::Reviews(all))
        }
        Query::Card { card } => match state.cards().get(&card) {
            Some(c) => Ok(QueryAnswer::Card(Box::new(c.clone()))),
            None => not_found(Rejection::CardNotFound),
        },
        Query::OrderRisk { key } => match state.risk().score_of(&key) {
            Some(s) => Ok(QueryAnswer::OrderRisk(s.clone())),
            None => Ok(QueryAnswer::Missing),
        },
        Query::CardDelivery { card } => match state.cards().get(&card) {
            Some(c) => Ok(QueryAnswer::CardDelivery(
                Box::new(c.clone()),
                state.resends().round(&card),
            )),
            None => not_found(Rejection::CardNotFound),
        },
        Query::CardByCode { hash, brands } => match state.cards().by_code(&hash) {
            Some((id, c)) if state.brand_accepts(brands.as_deref(), c) => {
                Ok(QueryAnswer::CardWithId(id, Box::new(c.clone())))
            }
            _ => not_found(Rejection::CardNotFound),
        },
        Query::Cards { first, count } => {
            let cards = (0..u64::from(count))
                .filter_map(|i| {
                    state
                        .cards()
                        .get(&giftcard_core::CardId(first.0 + i))
                        .cloned()
                })
                .collect();
            Ok(QueryAnswer::Cards(cards))
        }
        Query::Skus => {
            let mut skus: Vec<_> = state.catalog().skus().cloned().collect();
            skus.sort_by(|a, b| a.id.cmp(&b.id));
            Ok(QueryAnswer::Skus(skus))
        }
        Query::Sku { sku } => match state.catalog().sku(&sku) {
            Some(s) => Ok(QueryAnswer::Sku(
                Box::new(s.clone()),
                state.catalog().version(&sku),
            )),
            None => not_found(Rejection::SkuNotFound),
        },
        Query::Fx => Ok(QueryAnswer::Fx(state.catalog().fx().clone())),
        Query::Totals => Ok(QueryAnswer::Totals(Box::new(totals(state)))),
        Query::StockLevels => Ok(QueryAnswer::StockLevels(
            state
                .pools()
                .iter()
                .map(|(sku, p)| (sku.clone(), (p.available, p.sold)))
                .collect(),
        )),
        Query::FailedDeliveries { limit } => {
            Ok(QueryAnswer::CardList(cards_where(state, limit, |d| {
                matches!(d, Delivery::GaveUp { .. })
            })))
        }
        Query::RetryingDeliveries { limit } => Ok(QueryAnswer::CardList(cards_where(
            state,
            limit,
            |d| matches!(d, Delivery::Pending { failures } if *failures > 0),
        ))),
        Query::Stock { sku } => {
            if state.catalog().sku(&sku).is_none() {
                return not_found(Rejection::SkuNotFound);
            }
            // Every supplier's pool of the SKU.
            let pools = state.sourcing().pools_of(&sku);
            let pools = pools.iter().filter_map(|p| state.pools().get(p));
            let (available, sold) = pools.fold((0, 0), |(a, s), p| (a + p.available, s + p.sold));
            Ok(QueryAnswer::Stock { available, sold })
        }
        Query::Sourcing { sku } => Ok(QueryAnswer::Sourcing(
            state.sourcing().get(&sku).cloned().unwrap_or_default(),
        )),
        Query::ExpiryPolicy { sku } => {
            if state.catalog().sku(&sku).is_none() {
                return not_found(Rejection::SkuNotFound);
            }
            Ok(QueryAnswer::ExpiryPolicy(state.expiry().get(&sku)))
        }
        Query::Liability { at } => Ok(QueryAnswer::Liability(state.liability().at(at))),
        Query::WalletHistory {
            caller,
            wallet,
            after,
            limit,
        } => match state.wallets().owned(&caller, &wallet) {
            Ok((_, w)) => {
                let start = usize::try_from(after)
                    .unwrap_or(usize::MAX)
                    .min(w.history.len());
                Ok(QueryAnswer::History(
                    w.history[start..].iter().take(limit).cloned().collect(),
                ))
            }
            _ => not_found(Rejection::WalletNotFound),
        },
        Query::Sale { key } => match state.sales().get(&key) {
            Some(s) => Ok(QueryAnswer::Sale(s.clone())),
            None => Ok(QueryAnswer::Missing),
        },
        Query::Revenue { from, to, by } => Ok(QueryAnswer::Revenue(state.sales().revenue(
            state.catalog(),
            from,
            to,
            by,
        ))),
        Query::Fees => Ok(QueryAnswer::Fees(state.fees().clone())),
        Query::CommissionTiers { supplier } => Ok(QueryAnswer::CommissionTiers(
            state
                .commissions()
                .get(&supplier)
                .cloned()
                .unwrap_or_default(),
        )),
        Query::MarginFloors => Ok(QueryAnswer::MarginFloors(state.floors().clone())),
        Query::Pricing { sku } => Ok(QueryAnswer::Pricing(state.promotions().get(&sku).to_vec())),
        Query::PriceList { client } => Ok(QueryAnswer::PriceList(
            state
                .price_lists()
                .get(&client)
                .cloned()
                .unwrap_or_default(),
        )),
        Query::FxQuote {
            client, quote_id, ..
        } => match state.quotes().get(&client, &quote_id) {
            Some(q) => Ok(QueryAnswer::FxQuote(Box::new(q.clone()))),
            None => Ok(QueryAnswer::Missing),
        },
        Query::Redemption {
            client,
            redemption_id,
        } => match state.cards().redemption(&client, &redemption_id) {
            Some(rec) => Ok(QueryAnswer::Redemption(Box::new(rec.clone()))),
            None => Ok(QueryAnswer::Missing),
        },
    }
}

/// A shard's contribution to stock, sales and ledger reports.
pub fn totals(state: &ShardState) -> ShardTotals {
    let mut t = ShardTotals::default();
    for (sku, pool) in state.pools().iter() {
        let e = t.stock.entry(sku.clone()).or_default();
        e.0 += pool.available;
        e.1 += pool.sold;
    }
    for (sku, s) in state.reports().sales() {
        let e = t.sales.entry(sku.clone()).or_default();
        e.cards += s.cards;
        e.revenue_minor += s.revenue_minor;
        e.margin_minor += s.margin_minor;
    }
    for (account, v) in state.reports().ledger() {
        *t.ledger.entry(account.clone()).or_default() += *v;
    }
    for (id, w) in state.wallets().iter() {
        for (ccy, b) in &w.balances {
            *t.ledger
                .entry(Account::Wallet(id.clone(), *ccy))
                .or_default() += b.ledger_minor;
        }
    }
    for (_, c) in state.cards().iter() {
        *t.card_liability.entry(c.face.currency()).or_default() += c.ledger_minor;
    }
    t.held_orders = state.orders().hold_count() as u64;
    t
}

/// The first `limit` cards (by id) whose delivery state passes `keep`.
fn cards_where(
    state: &ShardState,
    limit: usize,
    keep: impl Fn(&Delivery) -> bool,
) -> Vec<(CardId, giftcard_core::state::Card)> {
    let mut v: Vec<_> = state
        .cards()
        .iter()
        .filter(|(_, c)| keep(&c.delivery))
        .map(|(id, c)| (*id, c.clone()))
        .collect();
    v.sort_by_key(|(id, _)| *id);
    v.truncate(limit);
    v
}
