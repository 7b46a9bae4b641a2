//! Locked FX quotes: a checkout fixes the rate at which a wallet pays for cards priced in
//! another currency, then names the quote in its orders until it expires.

use super::reply;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::input::{self, JsonBody};
use crate::state::AppState;
use crate::wire::*;
use crate::Role;
use actix_web::http::StatusCode;
use actix_web::web;
use giftcard_core::quotes::{FxQuote, QuoteRequest, QUOTE_TTL_MAX_MS};
use giftcard_core::{ClientId, Command, Event, RequestId, WalletId};
use giftcard_shard::{Outcome, Query, QueryAnswer};

/// Who may lock a rate: the checkout that will place the orders, and admins.
const QUOTE_ROLES: &[Role] = &[Role::Checkout, Role::Admin];

/// How long a quote holds when the request does not say.
const QUOTE_TTL_DEFAULT_MS: u64 = 60_000;

fn quote_view(id: &str, wallet: &str, q: &FxQuote) -> FxQuoteView {
    // Rates and spreads are bounded where they are set, so this cannot overflow; the core's
    // conversion checks it again.
    let rate = rust_decimal::Decimal::ONE
        .checked_add(q.spread)
        .and_then(|f| q.mid.checked_mul(f))
        .unwrap_or_default();
    FxQuoteView {
        quote_id: id.to_owned(),
        wallet_id: wallet.to_owned(),
        from: q.from.code().to_owned(),
        to: q.to.code().to_owned(),
        mid_rate: q.mid.normalize().to_string(),
        spread: q.spread.normalize().to_string(),
        rate: rate.normalize().to_string(),
        expires_at_ms: q.expires_at.0,
    }
}

/// Locks the FX table's current rate and spread for one wallet and currency pair.
#[utoipa::path(post, path = "/v1/fx/quotes", tag = "fx", request_body = FxQuoteRequest,
    responses((status = 201, body = FxQuoteView)), security(("bearer" = [])))]
pub async fn create_quote(
    who: Principal,
    state: web::Data<AppState>,
    body: JsonBody<FxQuoteRequest>,
) -> crate::error::Answer {
    who.require(QUOTE_ROLES)?;
    let body = body.parse()?;
    let quote_id = input::id("quote_id", &body.quote_id)?;
    let wallet = input::wallet_id("wallet_id", &body.wallet_id, who.role == Role::Admin)?;
    let from = input::currency("from", &body.from)?;
    let to = input::currency("to", &body.to)?;
    if from == to {
        return Err(ApiError::invalid(
            "same_currency",
            "to",
            "a quote converts between two currencies",
        )
        .into());
    }
    let ttl_ms = body.ttl_ms.unwrap_or(QUOTE_TTL_DEFAULT_MS);
    if !(1..=QUOTE_TTL_MAX_MS).contains(&ttl_ms) {
        return Err(ApiError::invalid(
            "invalid_ttl",
            "ttl_ms",
            format!("must be 1 to {QUOTE_TTL_MAX_MS}"),
        )
        .into());
    }
    let request = QuoteRequest {
        wallet: WalletId::new(wallet),
        quote_id: RequestId::new(quote_id),
        from,
        to,
        ttl_ms,
        fingerprint: input::fingerprint(&(wallet, &body.from, &body.to, ttl_ms)),
    };
    let outcome = state
        .submit(Command::QuoteFx {
            caller: who.caller(),
            request: request.clone(),
        })
        .await?;
    let replayed = !matches!(outcome, Outcome::Applied(_));
    let quote = match outcome {
        Outcome::Applied(evs) => evs.into_iter().find_map(|e| match e {
            Event::FxQuoted { quote, .. } => Some(quote),
            _ => None,
        }),
        // A retry: the quote it made, as it was made.
        _ => match state
            .ask(Query::FxQuote {
                client: ClientId::new(&who.client),
                wallet: request.wallet.clone(),
                quote_id: request.quote_id.clone(),
            })
            .await?
        {
            QueryAnswer::FxQuote(q) => Some(*q),
            _ => None,
        },
    };
    let Some(quote) = quote else {
        return Err(ApiError::Unavailable.into());
    };
    Ok(reply(
        StatusCode::CREATED,
        &quote_view(quote_id, wallet, &quote),
        replayed,
    ))
}
