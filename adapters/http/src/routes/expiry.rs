//! Card expiry (admin): a SKU's expiry policy, and the liability report at an instant.

use super::reply;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::input::{self, JsonBody};
use crate::state::AppState;
use crate::wire::*;
use crate::Role;
use actix_web::http::StatusCode;
use actix_web::web;
use giftcard_core::expiry::{ExpiryPolicy, SkuExpiry, EXPIRY_DAYS_MAX};
use giftcard_core::liability::Owed;
use giftcard_core::{Command, Currency, Event, SkuId, UnixMillis};
use giftcard_shard::{Outcome, Query, QueryAnswer};
use serde::Deserialize;
use std::collections::BTreeMap;

fn policy_view(sku: &SkuId, e: &SkuExpiry) -> ExpiryPolicyView {
    let (policy, days, at_ms) = match e.policy {
        ExpiryPolicy::Never => ("never", None, None),
        ExpiryPolicy::DaysAfterIssue(d) => ("days_after_issue", Some(d), None),
        ExpiryPolicy::FixedDate(at) => ("fixed_date", None, Some(at.0)),
    };
    ExpiryPolicyView {
        sku_id: sku.as_str().to_owned(),
        policy: policy.to_owned(),
        days,
        at_ms,
        min_days: e.min_days,
    }
}

fn parse_policy(dto: &ExpiryPolicyDto) -> Result<ExpiryPolicy, ApiError> {
    let unwanted = |field: &str, policy: &str| {
        ApiError::invalid(
            "invalid_field",
            field,
            format!("not taken with policy {policy}"),
        )
    };
    match (dto.policy.as_str(), dto.days, dto.at_ms) {
        ("never", None, None) => Ok(ExpiryPolicy::Never),
        ("never", Some(_), _) => Err(unwanted("days", "never")),
        ("never", _, Some(_)) => Err(unwanted("at_ms", "never")),
        ("days_after_issue", _, Some(_)) => Err(unwanted("at_ms", "days_after_issue")),
        ("days_after_issue", Some(d), None) if (1..=EXPIRY_DAYS_MAX).contains(&d) => {
            Ok(ExpiryPolicy::DaysAfterIssue(d))
        }
        ("days_after_issue", _, None) => Err(ApiError::invalid(
            "invalid_expiry",
            "days",
            format!("days_after_issue needs days, 1 to {EXPIRY_DAYS_MAX}"),
        )),
        ("fixed_date", Some(_), _) => Err(unwanted("days", "fixed_date")),
        ("fixed_date", None, Some(at)) => Ok(ExpiryPolicy::FixedDate(UnixMillis(at))),
        ("fixed_date", None, None) => Err(ApiError::invalid(
            "invalid_expiry",
            "at_ms",
            "fixed_date needs at_ms",
        )),
        _ => Err(ApiError::invalid(
            "invalid_field",
            "policy",
            "never, days_after_issue or fixed_date",
        )),
    }
}

/// Sets when a SKU's issued cards expire; the cards issued after it get their expiry from it.
/// At expiry a card's remaining balance moves to `revenue:breakage`. A SKU of supplier codes, a
/// date not in the future, or a life of 0 days or over a hundred years is
/// `422 invalid_expiry`; fewer days than the jurisdiction's minimum is
/// `422 expiry_below_minimum`.
#[utoipa::path(put, path = "/v1/skus/{sku_id}/expiry", tag = "catalog",
    params(("sku_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,64}$", min_length = 1, max_length = 64)),
    request_body = ExpiryPolicyDto, responses((status = 200, body = ExpiryPolicyView)), security(("bearer" = [])))]
pub async fn put_expiry(
    who: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: JsonBody<ExpiryPolicyDto>,
) -> crate::error::Answer {
    who.require(&[Role::Admin])?;
    let sku = SkuId::new(input::id("sku_id", &path)?);
    let policy = parse_policy(&body.parse()?)?;
    let cmd = Command::SetExpiryPolicy {
        sku: sku.clone(),
        policy,
    };
    // The policy as journaled, with the minimum in force: no second round trip to read it.
    let Outcome::Applied(events) = state.submit(cmd).await? else {
        return Err(ApiError::Unavailable.into());
    };
    let Some(e) = events.iter().find_map(|e| match e {
        Event::ExpiryPolicySet { expiry, .. } => Some(*expiry),
        _ => None,
    }) else {
        return Err(ApiError::Unavailable.into());
    };
    Ok(reply(StatusCode::OK, &policy_view(&sku, &e), false))
}

/// A SKU's expiry policy (`never` when none was set).
#[utoipa::path(get, path = "/v1/skus/{sku_id}/expiry", tag = "catalog",
    params(("sku_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,64}$", min_length = 1, max_length = 64)),
    responses((status = 200, body = ExpiryPolicyView)), security(("bearer" = [])))]
pub async fn get_expiry(
    who: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> crate::error::Answer {
    who.require(&[Role::Admin])?;
    let sku = SkuId::new(input::id("sku_id", &path)?);
    let QueryAnswer::ExpiryPolicy(e) = state.ask(Query::ExpiryPolicy { sku: sku.clone() }).await?
    else {
        return Err(ApiError::Unavailable.into());
    };
    Ok(reply(StatusCode::OK, &policy_view(&sku, &e), false))
}

/// The liability report's instant.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LiabilityParams {
    /// The instant, ms since the epoch (default: now). Every change at or before it counts.
    #[param(pattern = r"^[0-9]{1,19}$")]
    pub at_ms: Option<String>,
}

fn liability_row(brand: Option<String>, ccy: Currency, o: &Owed) -> LiabilityRowView {
    LiabilityRowView {
        brand,
        currency: ccy.code().to_owned(),
        owed_minor: o.owed_minor,
        breakage_minor: o.breakage_minor,
    }
}

/// The stored value still owed on issued cards at `at_ms`, per currency and brand, with the
/// breakage taken from expired cards up to then; at every instant it equals the ledger's card
/// accounts.
#[utoipa::path(get, path = "/v1/admin/reports/liability", tag = "admin", params(LiabilityParams),
    responses((status = 200, body = LiabilityView)), security(("bearer" = [])))]
pub async fn liability_report(
    who: Principal,
    state: web::Data<AppState>,
    q: web::Query<LiabilityParams>,
) -> crate::error::Answer {
    who.require(&[Role::Admin])?;
    let at = match &q.at_ms {
        Some(s) => input::digits("at_ms", s)?,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    };
    let QueryAnswer::Liability(report) = state.ask(Query::Liability { at: UnixMillis(at) }).await?
    else {
        return Err(ApiError::Unavailable.into());
    };
    let mut totals: BTreeMap<Currency, Owed> = BTreeMap::new();
    for ((ccy, _), o) in &report {
        totals.entry(*ccy).or_default().add(*o);
    }
    let view = LiabilityView {
        at_ms: at,
        rows: report
            .iter()
            .map(|((c, b), o)| liability_row(Some(b.clone()), *c, o))
            .collect(),
        totals: totals
            .iter()
            .map(|(c, o)| liability_row(None, *c, o))
            .collect(),
    };
    Ok(reply(StatusCode::OK, &view, false))
}
