//! Delivery lifecycle: the delivery service reports each card's delivery (`delivered` or
//! `failed`); after `delivery_attempts_max` failures the card is given up and listed for operators.
//! The queue adapter re-publishes a failed card's delivery event with backoff; this module only
//! records reports and lists the given-up cards.

use super::reply;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::input::{self, JsonBody};
use crate::state::AppState;
use crate::wire::*;
use crate::Role;
use actix_web::http::StatusCode;
use actix_web::web;
use giftcard_core::state::Delivery;
use giftcard_core::*;
use giftcard_shard::{Outcome, Query, QueryAnswer};
use serde::Deserialize;

/// The delivery service reports with its own `delivery` key, which can do nothing else.
const DELIVERY_ROLES: &[Role] = &[Role::Delivery, Role::Admin];

/// Given-up cards one listing returns at most (per shard, before merging).
const FAILED_LIMIT_MAX: u32 = 1_000;

/// Records one delivery attempt's outcome for a card.
#[utoipa::path(post, path = "/v1/deliveries/{card_id}/report", tag = "deliveries", params(("card_id" = String, Path, pattern = r"^[0-9]{1,19}$", min_length = 1, max_length = 19)), request_body = DeliveryReportRequest, responses((status = 200, body = DeliveryReportView)), security(("bearer" = [])))]
pub async fn report_delivery(
    who: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: JsonBody<DeliveryReportRequest>,
) -> crate::error::Answer {
    who.require(DELIVERY_ROLES)?;
    let card = CardId(input::digits("card_id", &path)?);
    let body = body.parse()?;
    // The token of the attempt, from its delivery event: a delivery key alone cannot settle
    // a card it was never sent.
    // The token also says which round of the card's delivery it was sent in.
    let Some(round) = state
        .engine()?
        .vault()
        .report_round(card.0, body.attempt, &body.token)
    else {
        return Err(ApiError::Forbidden.into());
    };
    let delivered = body.status == DeliveryStatusDto::Delivered;
    let cmd = Command::ReportDelivery {
        card,
        delivered,
        attempt: body.attempt,
        attempts_max: state.delivery_attempts_max,
        round,
    };
    // Answered: the delivery was settled before and the report changed nothing.
    let (Outcome::Applied(events) | Outcome::Answered(events)) = state.submit(cmd).await? else {
        return Err(ApiError::Internal("a delivery report answered no events".into()).into());
    };
    Ok(reply(
        StatusCode::OK,
        &delivery_report_view(card, &events),
        false,
    ))
}

pub use giftcard_intake::orders::delivery_report_view;

/// Paging of the given-up list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FailedParams {
    /// 1 to 1000 per shard, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// Cards whose delivery failed every allowed attempt, for operators.
#[utoipa::path(get, path = "/v1/admin/deliveries/failed", tag = "deliveries", params(FailedParams), responses((status = 200, body = FailedDeliveriesView)), security(("bearer" = [])))]
pub async fn failed_deliveries(
    who: Principal,
    state: web::Data<AppState>,
    q: web::Query<FailedParams>,
) -> crate::error::Answer {
    who.require(&[Role::Admin])?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=FAILED_LIMIT_MAX).contains(&limit) {
        return Err(ApiError::invalid("invalid_limit", "limit", "must be 1 to 1000").into());
    }
    let QueryAnswer::CardList(cards) = state
        .ask(Query::FailedDeliveries {
            limit: limit as usize,
        })
        .await?
    else {
        return Err(ApiError::Unavailable.into());
    };
    let cards = cards
        .into_iter()
        .map(|(id, c)| FailedDeliveryView {
            card_id: id.0.to_string(),
            sku_id: c.sku.as_str().to_owned(),
            client: c.order.client.as_str().to_owned(),
            order_id: c.order.order_id.as_str().to_owned(),
            failures: match c.delivery {
                Delivery::GaveUp { failures } | Delivery::Pending { failures } => failures,
                Delivery::NotRequired | Delivery::Delivered => 0,
            },
        })
        .collect();
    Ok(reply(
        StatusCode::OK,
        &FailedDeliveriesView { cards },
        false,
    ))
}
