//! Admin and FX: rates, sales statistics, settlement close, live reconciliation.

use super::reply;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::input::{self, JsonBody};
use crate::state::AppState;
use crate::wire::*;
use crate::Role;
use actix_web::http::StatusCode;
use actix_web::web;
use giftcard_core::*;
use giftcard_shard::{Outcome, Query, QueryAnswer};
use std::collections::BTreeMap;

/// Currency pairs one FX table may hold.
pub const FX_RATES_MAX: usize = 1_000;

fn fx_view(fx: &FxTable) -> FxTableDto {
    let rates = fx
        .mid
        .iter()
        .map(|((b, q), r)| FxRateDto {
            base: b.code().into(),
            quote: q.code().into(),
            mid: r.to_string(),
        })
        .collect();
    FxTableDto {
        rates,
        spread: fx.spread.to_string(),
    }
}

/// Replaces the FX mid rates and spread (admin).
#[utoipa::path(put, path = "/v1/fx/rates", tag = "fx", request_body = FxTableDto, responses((status = 200, body = FxTableDto)), security(("bearer" = [])))]
pub async fn put_fx(
    who: Principal,
    state: web::Data<AppState>,
    body: JsonBody<FxTableDto>,
) -> crate::error::Answer {
    who.require(&[Role::Admin])?;
    let body = body.parse()?;
    let t = body;
    if t.rates.len() > FX_RATES_MAX {
        return Err(ApiError::invalid(
            "too_many",
            "rates",
            format!("at most {FX_RATES_MAX} rates"),
        )
        .into());
    }
    let mut fx = FxTable {
        spread: input::decimal("spread", &t.spread, input::DecimalKind::Fraction)?,
        ..FxTable::default()
    };
    for (i, r) in t.rates.iter().enumerate() {
        let base = input::currency(&format!("rates[{i}].base"), &r.base)?;
        let quote = input::currency(&format!("rates[{i}].quote"), &r.quote)?;
        let mid = input::decimal(&format!("rates[{i}].mid"), &r.mid, input::DecimalKind::Rate)?;
        // A currency's rate to itself is 1 by definition; such entries carry nothing.
        if base == quote {
            continue;
        }
        fx.mid.insert((base, quote), mid);
    }
    state.submit(Command::SetFx(fx.clone())).await?;
    Ok(reply(StatusCode::OK, &fx_view(&fx), false))
}

/// The FX table.
#[utoipa::path(get, path = "/v1/fx/rates", tag = "fx", responses((status = 200, body = FxTableDto)), security(("bearer" = [])))]
pub async fn get_fx(who: Principal, state: web::Data<AppState>) -> crate::error::Answer {
    // Checkouts show prices in their buyers' currencies; nobody else needs the rates.
    who.require(&[Role::Checkout, Role::Admin])?;
    let QueryAnswer::Fx(fx) = state.ask(Query::Fx).await? else {
        return Err(ApiError::Unavailable.into());
    };
    Ok(reply(StatusCode::OK, &fx_view(&fx), false))
}

async fn totals(state: &AppState) -> Result<giftcard_shard::ShardTotals, ApiError> {
    match state.ask(Query::Totals).await? {
        QueryAnswer::Totals(t) => Ok(*t),
        _ => Err(ApiError::Unavailable),
    }
}

type Key = (String, Currency);

fn rows(map: BTreeMap<Key, (u64, i64, i64)>) -> Vec<SalesRow> {
    map.into_iter()
        .map(|((key, ccy), (cards, revenue, margin))| SalesRow {
            key,
            currency: ccy.code().into(),
            cards,
            revenue: MoneyView::of(Money::new(revenue, ccy)),
            margin: MoneyView::of(Money::new(margin, ccy)),
        })
        .collect()
}

/// Sales, revenue and margin by SKU, brand and currency; FX revenue by currency (admin).
#[utoipa::path(get, path = "/v1/admin/stats", tag = "admin", responses((status = 200, body = StatsView)), security(("bearer" = [])))]
pub async fn stats(who: Principal, state: web::Data<AppState>) -> crate::error::Answer {
    who.require(&[Role::Admin])?;
    let t = totals(&state).await?;
    let skus: BTreeMap<SkuId, Sku> = super::all_skus(&state)
        .await?
        .into_iter()
        .map(|s| (s.id.clone(), s))
        .collect();
    let (mut by_sku, mut by_brand, mut by_ccy) =
        (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    for (id, s) in &t.sales {
        let Some(sku) = skus.get(id) else { continue };
        for (map, key) in [
            (&mut by_sku, id.as_str()),
            (&mut by_brand, sku.brand.as_str()),
            (&mut by_ccy, sku.currency.code()),
        ] {
            let e: &mut (u64, i64, i64) = map.entry((key.to_owned(), sku.currency)).or_default();
            e.0 += s.cards;
            e.1 += s.revenue_minor;
            e.2 += s.margin_minor;
        }
    }
    let fx_revenue = t
        .ledger
        .iter()
        .filter_map(|(a, v)| match a {
            Account::RevenueFx(ccy) => Some(MoneyView::of(Money::new(*v, *ccy))),
            _ => None,
        })
        .collect();
    let view = StatsView {
        by_sku: rows(by_sku),
        by_brand: rows(by_brand),
        by_currency: rows(by_ccy),
        fx_revenue,
    };
    Ok(reply(StatusCode::OK, &view, false))
}

/// Closes the settlement period on every shard and answers what each supplier is owed (admin).
/// Idempotent by `period_id`: closing a period again replays what it closed.
#[utoipa::path(post, path = "/v1/admin/settlements", tag = "admin", request_body = SettlementRequest, responses((status = 201, body = SettlementView)), security(("bearer" = [])))]
pub async fn close_settlement(
    who: Principal,
    state: web::Data<AppState>,
    body: JsonBody<SettlementRequest>,
) -> crate::error::Answer {
    who.require(&[Role::Admin])?;
    let body = body.parse()?;
    let period = input::id("period_id", &body.period_id)?;
    let (events, replayed) = match state
        .submit(Command::CloseSettlement {
            period_id: RequestId::new(period),
        })
        .await?
    {
        Outcome::Applied(events) => (events, false),
        Outcome::Answered(events) => (events, true),
        _ => return Err(ApiError::Unavailable.into()),
    };
    let mut merged: BTreeMap<SupplierId, SupplierDue> = BTreeMap::new();
    for ev in events {
        let Event::SettlementClosed { dues, .. } = ev else {
            continue;
        };
        for (supplier, due) in dues {
            let m = merged.entry(supplier).or_default();
            m.cards += due.cards;
            m.orders.extend(due.orders);
            for (ccy, owed) in due.owed {
                match m.owed.iter_mut().find(|(c, _)| *c == ccy) {
                    Some(e) => e.1 += owed,
                    None => m.owed.push((ccy, owed)),
                }
            }
        }
    }
    // Every shard's dues together are each supplier's whole volume: the core books its tiers'
    // commission on them once per period (a repeated close answers what it booked).
    let volumes: Vec<(SupplierId, Money)> = merged
        .iter()
        .flat_map(|(s, d)| d.owed.iter().map(|(c, m)| (s.clone(), Money::new(*m, *c))))
        .collect();
    let booked = match state
        .submit(Command::BookCommissions {
            period_id: RequestId::new(period),
            volumes,
        })
        .await?
    {
        Outcome::Applied(events) | Outcome::Answered(events) => events,
        _ => return Err(ApiError::Unavailable.into()),
    };
    let mut commission: BTreeMap<(SupplierId, Currency), i64> = BTreeMap::new();
    for ev in booked {
        if let Event::CommissionBooked {
            supplier,
            commission: c,
            ..
        } = ev
        {
            *commission.entry((supplier, c.currency())).or_default() += c.minor();
        }
    }
    let suppliers = merged
        .into_iter()
        .map(|(s, mut d)| {
            d.owed.sort();
            d.orders.sort();
            let cut = |c: &Currency| commission.get(&(s.clone(), *c)).copied().unwrap_or(0);
            SupplierDueView {
                supplier_id: s.as_str().into(),
                cards: d.cards,
                commission: d
                    .owed
                    .iter()
                    .map(|(c, _)| MoneyView::of(Money::new(cut(c), *c)))
                    .collect(),
                payable: d
                    .owed
                    .iter()
                    .map(|(c, m)| MoneyView::of(Money::new(m - cut(c), *c)))
                    .collect(),
                owed: d
                    .owed
                    .into_iter()
                    .map(|(c, m)| MoneyView::of(Money::new(m, c)))
                    .collect(),
                orders: d
                    .orders
                    .into_iter()
                    .map(|k| OrderRef {
                        client: k.client.as_str().into(),
                        order_id: k.order_id.as_str().into(),
                    })
                    .collect(),
            }
        })
        .collect();
    Ok(reply(
        StatusCode::CREATED,
        &SettlementView {
            period_id: period.into(),
            suppliers,
        },
        replayed,
    ))
}

/// Ledger totals per currency and the invariant check over live state (admin).
#[utoipa::path(get, path = "/v1/admin/reconciliation", tag = "admin", responses((status = 200, body = ReconciliationView)), security(("bearer" = [])))]
pub async fn reconciliation(who: Principal, state: web::Data<AppState>) -> crate::error::Answer {
    who.require(&[Role::Admin])?;
    let engine = state.engine()?.clone();
    // Pauses every shard at a quiescent point: one at a time, and not more often than the
    // configured interval, so no caller can keep the engine paused.
    let busy = || ApiError::RateLimited { retry_after_s: 1 };
    let mut last = state.reconciliation.try_lock().map_err(|_| busy())?;
    let since = last.map(|t| t.elapsed());
    let wait = since.and_then(|e| state.reconciliation_interval.checked_sub(e));
    if let Some(left) = wait.filter(|left| !left.is_zero()) {
        return Err(ApiError::RateLimited {
            retry_after_s: left.as_secs().max(1),
        }
        .into());
    }
    // Blocking, so off the worker.
    let report = web::block(move || engine.reconcile())
        .await
        .map_err(|_| ApiError::Unavailable)?;
    *last = Some(std::time::Instant::now());
    drop(last);
    let report = report?;
    let t = totals(&state).await?;
    let mut ledger: BTreeMap<Currency, (i64, i64)> = BTreeMap::new();
    for (account, v) in &t.ledger {
        let Some(ccy) = account.currency() else {
            continue;
        };
        ledger.entry(ccy).or_default().0 += v;
    }
    for (ccy, v) in &t.card_liability {
        let e = ledger.entry(*ccy).or_default();
        e.0 += v;
        e.1 += v;
    }
    let view = ReconciliationView {
        ok: report.ok(),
        violations: report.violations.clone(),
        shards: report.shards as u64,
        wallets: report.wallets as u64,
        orders: report.orders as u64,
        cards: report.cards as u64,
        codes_unsold: report.codes_unsold,
        holds_in_flight: report.holds_in_flight as u64,
        ledger: ledger
            .into_iter()
            .map(|(c, (sum, cards))| LedgerCurrency {
                currency: c.code().into(),
                sum_minor: sum,
                card_liability_minor: cards,
            })
            .collect(),
    };
    Ok(reply(StatusCode::OK, &view, false))
}
