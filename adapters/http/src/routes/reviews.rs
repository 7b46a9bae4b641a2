//! The review queue (admin): orders held for review, and approving or rejecting one.

use super::reply;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::input;
use crate::state::AppState;
use crate::wire::*;
use crate::Role;
use actix_web::http::StatusCode;
use actix_web::web;
use giftcard_core::reviews::{Review, Verdict};
use giftcard_core::{ClientId, Command, Event, OrderId, OrderKey};
use giftcard_shard::{Outcome, Query, QueryAnswer};
use serde::Deserialize;

/// Most reviews listed per shard.
const REVIEWS_LIMIT_MAX: u32 = 1000;

/// Paging of the review queue.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReviewsParams {
    /// 1 to 1000 per shard, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

fn review_view(key: &OrderKey, r: &Review) -> ReviewView {
    let o = &r.pending.order;
    ReviewView {
        client_id: key.client.as_str().to_owned(),
        order_id: key.order_id.as_str().to_owned(),
        wallet_id: o.wallet.as_str().to_owned(),
        cause: r.pending.cause.code().to_owned(),
        held: MoneyView::of(r.held()),
        cards: o.lines.iter().map(|l| l.quantity).sum(),
        score: r.pending.score.as_ref().map(|s| s.score),
        reasons: r
            .pending
            .score
            .iter()
            .flat_map(|s| s.reasons.iter().map(|x| x.code().to_owned()))
            .collect(),
        placed_at_ms: o.at.0,
        expires_at_ms: r.pending.until.0,
    }
}

/// Orders waiting for review, oldest first: why each is there, what it holds and when it
/// expires by itself.
#[utoipa::path(get, path = "/v1/admin/reviews", tag = "admin", params(ReviewsParams),
    responses((status = 200, body = ReviewsView)), security(("bearer" = [])))]
pub async fn list_reviews(
    who: Principal,
    state: web::Data<AppState>,
    q: web::Query<ReviewsParams>,
) -> crate::error::Answer {
    who.require(&[Role::Admin])?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=REVIEWS_LIMIT_MAX).contains(&limit) {
        return Err(ApiError::invalid("invalid_limit", "limit", "must be 1 to 1000").into());
    }
    let QueryAnswer::Reviews(all) = state
        .ask(Query::Reviews {
            limit: limit as usize,
        })
        .await?
    else {
        return Err(ApiError::Unavailable.into());
    };
    let view = ReviewsView {
        reviews: all.iter().map(|(k, r)| review_view(k, r)).collect(),
    };
    Ok(reply(StatusCode::OK, &view, false))
}

/// The order a review names: its id in the path, its client in the query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReviewParams {
    /// The client that placed the order (order ids are each client's own).
    #[param(pattern = r"^[A-Za-z0-9._:-]{1,64}$", min_length = 1, max_length = 64)]
    pub client_id: String,
}

async fn settle(
    who: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<ReviewParams>,
    approve: bool,
) -> crate::error::Answer {
    who.require(&[Role::Admin])?;
    let order = input::id("order_id", &path)?;
    let client = input::id("client_id", &q.client_id)?;
    let key = OrderKey {
        client: ClientId::new(client),
        order_id: OrderId::new(order),
    };
    let cmd = Command::SettleReview {
        caller: who.caller(),
        key,
        approve,
    };
    let answer = state.submit(cmd).await.map_err(|e| match e {
        ApiError::Rejected(r, None) => ApiError::Rejected(r, Some(order.to_owned())),
        e => e,
    })?;
    let Outcome::Applied(events) = answer else {
        return Err(ApiError::Unavailable.into());
    };
    let Some(verdict) = events.iter().find_map(|e| match e {
        Event::ReviewSettled { verdict, .. } => Some(*verdict),
        _ => None,
    }) else {
        return Err(ApiError::Unavailable.into());
    };
    let view = ReviewSettledView {
        client_id: client.to_owned(),
        order_id: order.to_owned(),
        status: match verdict {
            Verdict::Approved => "completed",
            Verdict::Rejected | Verdict::Expired => "rejected",
        }
        .to_owned(),
        verdict: verdict.code().to_owned(),
    };
    Ok(reply(StatusCode::OK, &view, false))
}

/// Approves an order held for review: it completes as it was decided (the held funds are
/// captured, its reserved codes sold, its cards delivered). An order not waiting for review
/// (never held, already settled, expired) is `409 not_in_review` and changes nothing.
#[utoipa::path(post, path = "/v1/admin/reviews/{order_id}/approve", tag = "admin",
    params(("order_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,64}$", min_length = 1, max_length = 64), ReviewParams),
    responses((status = 200, body = ReviewSettledView)), security(("bearer" = [])))]
pub async fn approve_review(
    who: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<ReviewParams>,
) -> crate::error::Answer {
    settle(who, state, path, q, true).await
}

/// Rejects an order held for review: its funds are released and its codes go back to the
/// pool; the order is recorded as `review_rejected`, which a retry of it gets. An order not
/// waiting for review is `409 not_in_review` and changes nothing.
#[utoipa::path(post, path = "/v1/admin/reviews/{order_id}/reject", tag = "admin",
    params(("order_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,64}$", min_length = 1, max_length = 64), ReviewParams),
    responses((status = 200, body = ReviewSettledView)), security(("bearer" = [])))]
pub async fn reject_review(
    who: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: web::Query<ReviewParams>,
) -> crate::error::Answer {
    settle(who, state, path, q, false).await
}
