//! Revenue (admin): the fee schedule, suppliers' commission tiers, and the revenue report.

use super::reply;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::input::{self, JsonBody};
use crate::state::AppState;
use crate::wire::*;
use crate::Role;
use actix_web::http::StatusCode;
use actix_web::web;
use giftcard_core::commissions::{CommissionTiers, Tier};
use giftcard_core::fees::{FeeSchedule, Fees, FEE_MINOR_MAX};
use giftcard_core::sales::{GroupBy, RevenueRow};
use giftcard_core::{Command, Currency, SupplierId, UnixMillis, AMOUNT_MINOR_MAX};
use giftcard_shard::{Query, QueryAnswer};
use serde::Deserialize;
use std::collections::BTreeMap;

fn fees_view(s: &FeeSchedule) -> FeeScheduleDto {
    FeeScheduleDto {
        currencies: s
            .by_currency
            .iter()
            .map(|(c, f)| CurrencyFeesDto {
                currency: c.code().to_owned(),
                order_minor: f.order_minor,
                email_minor: f.email_minor,
                sms_minor: f.sms_minor,
                webhook_minor: f.webhook_minor,
            })
            .collect(),
    }
}

fn parse_fees(dto: &FeeScheduleDto) -> Result<FeeSchedule, ApiError> {
    if dto.currencies.len() > 200 {
        return Err(ApiError::invalid(
            "too_many",
            "currencies",
            "at most 200 currencies",
        ));
    }
    let mut s = FeeSchedule::default();
    for (i, c) in dto.currencies.iter().enumerate() {
        let at = |f: &str| format!("currencies[{i}].{f}");
        let ccy = input::currency(&at("currency"), &c.currency)?;
        for (name, v) in [
            ("order_minor", c.order_minor),
            ("email_minor", c.email_minor),
            ("sms_minor", c.sms_minor),
            ("webhook_minor", c.webhook_minor),
        ] {
            if !(0..=FEE_MINOR_MAX).contains(&v) {
                return Err(ApiError::invalid(
                    "invalid_amount",
                    at(name),
                    format!("must be 0 to {FEE_MINOR_MAX}"),
                ));
            }
        }
        let fees = Fees {
            order_minor: c.order_minor,
            email_minor: c.email_minor,
            sms_minor: c.sms_minor,
            webhook_minor: c.webhook_minor,
        };
        if s.by_currency.insert(ccy, fees).is_some() {
            return Err(ApiError::invalid(
                "invalid_field",
                at("currency"),
                "a currency named twice",
            ));
        }
    }
    Ok(s)
}

/// Replaces the fee schedule: per pay currency, a fee on every order and one per delivery
/// channel, taken from the wallet with the order and booked to `revenue:fees`.
#[utoipa::path(put, path = "/v1/admin/fees", tag = "admin", request_body = FeeScheduleDto,
    responses((status = 200, body = FeeScheduleDto)), security(("bearer" = [])))]
pub async fn put_fees(
    who: Principal,
    state: web::Data<AppState>,
    body: JsonBody<FeeScheduleDto>,
) -> crate::error::Answer {
    who.require(&[Role::Admin])?;
    let schedule = parse_fees(&body.parse()?)?;
    state.submit(Command::SetFees(schedule.clone())).await?;
    Ok(reply(StatusCode::OK, &fees_view(&schedule), false))
}

/// The fee schedule.
#[utoipa::path(get, path = "/v1/admin/fees", tag = "admin",
    responses((status = 200, body = FeeScheduleDto)), security(("bearer" = [])))]
pub async fn get_fees(who: Principal, state: web::Data<AppState>) -> crate::error::Answer {
    who.require(&[Role::Admin])?;
    let QueryAnswer::Fees(s) = state.ask(Query::Fees).await? else {
        return Err(ApiError::Unavailable.into());
    };
    Ok(reply(StatusCode::OK, &fees_view(&s), false))
}

fn tiers_view(t: &CommissionTiers) -> CommissionTiersDto {
    CommissionTiersDto {
        tiers: t
            .by_currency
            .iter()
            .flat_map(|(c, tiers)| {
                tiers.iter().map(|t| CommissionTierDto {
                    currency: c.code().to_owned(),
                    from_minor: t.from_minor,
                    rate: t.rate.normalize().to_string(),
                })
            })
            .collect(),
    }
}

fn parse_tiers(dto: &CommissionTiersDto) -> Result<CommissionTiers, ApiError> {
    if dto.tiers.len() > 100 {
        return Err(ApiError::invalid("too_many", "tiers", "at most 100 tiers"));
    }
    let mut by: BTreeMap<Currency, Vec<Tier>> = BTreeMap::new();
    for (i, t) in dto.tiers.iter().enumerate() {
        let at = |f: &str| format!("tiers[{i}].{f}");
        let ccy = input::currency(&at("currency"), &t.currency)?;
        if !(0..=AMOUNT_MINOR_MAX).contains(&t.from_minor) {
            return Err(ApiError::invalid(
                "invalid_amount",
                at("from_minor"),
                format!("must be 0 to {AMOUNT_MINOR_MAX}"),
            ));
        }
        let rate = input::decimal(&at("rate"), &t.rate, input::DecimalKind::Fraction)?;
        let tiers = by.entry(ccy).or_default();
        if tiers.last().is_some_and(|l| l.from_minor >= t.from_minor) {
            return Err(ApiError::invalid(
                "invalid_commission_tiers",
                at("from_minor"),
                "a currency's tiers start at increasing volumes",
            ));
        }
        tiers.push(Tier {
            from_minor: t.from_minor,
            rate,
        });
    }
    let tiers = CommissionTiers { by_currency: by };
    if let Some(why) = tiers.malformed() {
        return Err(ApiError::invalid("invalid_commission_tiers", "tiers", why));
    }
    Ok(tiers)
}

/// Replaces a supplier's commission tiers: marginal rates on its period's volume (what its
/// codes cost), applied once per settlement period at its close, over every shard's sales.
#[utoipa::path(put, path = "/v1/admin/suppliers/{supplier_id}/commission-tiers", tag = "admin",
    params(("supplier_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,64}$", min_length = 1, max_length = 64)),
    request_body = CommissionTiersDto, responses((status = 200, body = CommissionTiersDto)), security(("bearer" = [])))]
pub async fn put_commission_tiers(
    who: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: JsonBody<CommissionTiersDto>,
) -> crate::error::Answer {
    who.require(&[Role::Admin])?;
    let supplier = input::id("supplier_id", &path)?;
    let tiers = parse_tiers(&body.parse()?)?;
    state
        .submit(Command::SetCommissionTiers {
            supplier: SupplierId::new(supplier),
            tiers: tiers.clone(),
        })
        .await?;
    Ok(reply(StatusCode::OK, &tiers_view(&tiers), false))
}

/// A supplier's commission tiers (empty when it has none).
#[utoipa::path(get, path = "/v1/admin/suppliers/{supplier_id}/commission-tiers", tag = "admin",
    params(("supplier_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,64}$", min_length = 1, max_length = 64)),
    responses((status = 200, body = CommissionTiersDto)), security(("bearer" = [])))]
pub async fn get_commission_tiers(
    who: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> crate::error::Answer {
    who.require(&[Role::Admin])?;
    let supplier = input::id("supplier_id", &path)?;
    let QueryAnswer::CommissionTiers(t) = state
        .ask(Query::CommissionTiers {
            supplier: SupplierId::new(supplier),
        })
        .await?
    else {
        return Err(ApiError::Unavailable.into());
    };
    Ok(reply(StatusCode::OK, &tiers_view(&t), false))
}

/// The revenue report's window and grouping.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RevenueParams {
    /// Start of the window, inclusive, ms since the epoch (default 0).
    #[param(pattern = r"^[0-9]{1,19}$")]
    pub from_ms: Option<String>,
    /// End of the window, exclusive (default: the end of time).
    #[param(pattern = r"^[0-9]{1,19}$")]
    pub to_ms: Option<String>,
    /// sku, brand, supplier, currency, client or day (UTC); default currency.
    #[param(pattern = "^(sku|brand|supplier|currency|client|day)$")]
    pub group_by: Option<String>,
}

fn row_view(group: Option<String>, ccy: Currency, r: &RevenueRow) -> RevenueRowView {
    RevenueRowView {
        group,
        currency: ccy.code().to_owned(),
        cards: r.cards,
        sales_minor: r.sales_minor,
        cost_minor: r.cost_minor,
        margin_minor: r.margin_minor,
        fx_minor: r.fx_minor,
        fees_minor: r.fees_minor,
        commission_minor: r.commission_minor,
    }
}

/// Sales, cost, margin, FX, fee and commission revenue over `[from_ms, to_ms)`, grouped; the
/// totals per currency equal the ledger's revenue accounts over the same window.
#[utoipa::path(get, path = "/v1/admin/reports/revenue", tag = "admin", params(RevenueParams),
    responses((status = 200, body = RevenueView)), security(("bearer" = [])))]
pub async fn revenue_report(
    who: Principal,
    state: web::Data<AppState>,
    q: web::Query<RevenueParams>,
) -> crate::error::Answer {
    who.require(&[Role::Admin])?;
    let from = match &q.from_ms {
        Some(s) => input::digits("from_ms", s)?,
        None => 0,
    };
    let to = match &q.to_ms {
        Some(s) => input::digits("to_ms", s)?,
        None => u64::MAX,
    };
    if to <= from {
        return Err(ApiError::invalid("invalid_window", "to_ms", "must be after from_ms").into());
    }
    let (by, name) = match q.group_by.as_deref().unwrap_or("currency") {
        "sku" => (GroupBy::Sku, "sku"),
        "brand" => (GroupBy::Brand, "brand"),
        "supplier" => (GroupBy::Supplier, "supplier"),
        "currency" => (GroupBy::Currency, "currency"),
        "client" => (GroupBy::Client, "client"),
        "day" => (GroupBy::Day, "day"),
        _ => {
            return Err(ApiError::invalid(
                "invalid_field",
                "group_by",
                "one of sku, brand, supplier, currency, client, day",
            )
            .into())
        }
    };
    let QueryAnswer::Revenue(rev) = state
        .ask(Query::Revenue {
            from: UnixMillis(from),
            to: UnixMillis(to),
            by,
        })
        .await?
    else {
        return Err(ApiError::Unavailable.into());
    };
    let mut totals: BTreeMap<Currency, RevenueRow> = BTreeMap::new();
    for ((_, ccy), row) in &rev {
        totals.entry(*ccy).or_default().add(row);
    }
    let view = RevenueView {
        from_ms: from,
        to_ms: to,
        group_by: name.to_owned(),
        rows: rev
            .iter()
            .map(|((g, c), r)| row_view(g.clone(), *c, r))
            .collect(),
        totals: totals.iter().map(|(c, r)| row_view(None, *c, r)).collect(),
    };
    Ok(reply(StatusCode::OK, &view, false))
}
