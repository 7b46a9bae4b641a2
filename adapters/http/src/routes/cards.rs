//! Cards: read one (masked), balance inquiry by code, redemption and its reversal. Lookups by
//! code are rate-limited per client and per code prefix; codes are never logged or echoed.

use super::reply;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::input::{self, JsonBody};
use crate::state::AppState;
use crate::wire::*;
use crate::Role;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use giftcard_core::state::{Card, CardStatus, CodeRef, RedemptionRecord};
use giftcard_core::*;
use giftcard_shard::{codes, After, Outcome, Query, QueryAnswer};

/// Reading a card by id: the checkout whose order bought it.
const CARD_ROLES: &[Role] = &[Role::Checkout, Role::Admin];
/// Balance inquiries by code: the checkout (its customer service) and merchants.
const LOOKUP_ROLES: &[Role] = &[Role::Checkout, Role::Merchant, Role::Admin];
/// Redemptions and their reversal: merchants, for the brands they accept.
const REDEEM_ROLES: &[Role] = &[Role::Merchant, Role::Admin];

fn card_view(state: &AppState, id: CardId, c: &Card) -> Result<CardView, ApiError> {
    let code = state.engine()?.reveal(id, c)?;
    // Sealed codes belong to cards the platform issued, which carry a stored value.
    let issued = matches!(c.code, CodeRef::Sealed(_));
    Ok(CardView {
        card_id: id.0.to_string(),
        sku_id: c.sku.as_str().to_owned(),
        status: status_name(c.status).into(),
        face_value: MoneyView::of(c.face),
        balance: issued.then(|| MoneyView::of(Money::new(c.balance_minor, c.face.currency()))),
        masked_code: codes::mask(&code),
    })
}

fn status_name(s: CardStatus) -> &'static str {
    match s {
        CardStatus::Active => "active",
        CardStatus::Redeemed => "redeemed",
        CardStatus::Voided => "voided",
        CardStatus::Expired => "expired",
        CardStatus::Frozen => "frozen",
        CardStatus::Cancelled => "cancelled",
    }
}

fn code(field: &str, code: &str) -> Result<(), ApiError> {
    if codes::valid_code(code) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "invalid_code",
            field,
            "codes are 4-128 printable ASCII characters without spaces",
        ))
    }
}

/// A card's status, balance and masked code.
#[utoipa::path(get, path = "/v1/cards/{card_id}", tag = "cards", params(("card_id" = String, Path, pattern = r"^[0-9]{1,19}$", min_length = 1, max_length = 19)), responses((status = 200, body = CardView)), security(("bearer" = [])))]
pub async fn get_card(
    who: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> crate::error::Answer {
    who.require(CARD_ROLES)?;
    let id = CardId(input::digits("card_id", &path)?);
    let QueryAnswer::Card(card) = state.ask(Query::Card { card: id }).await? else {
        return Err(ApiError::Unavailable.into());
    };
    // A card belongs to the client whose order bought it; to anyone else it does not exist.
    if !who.caller().admin && card.order.client.as_str() != who.client {
        return Err(ApiError::Rejected(Rejection::CardNotFound, None).into());
    }
    Ok(reply(StatusCode::OK, &card_view(&state, id, &card)?, false))
}

/// Freezes or unfreezes a card for the client whose order bought it, or an admin; journaled
/// with who and when. Both idempotent: a card already in the asked state answers as it is.
async fn set_frozen(
    who: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    frozen: bool,
) -> crate::error::Answer {
    who.require(CARD_ROLES)?;
    let id = CardId(input::digits("card_id", &path)?);
    let cmd = Command::SetCardFrozen {
        caller: who.caller(),
        card: id,
        frozen,
    };
    changed_card(&state, id, cmd).await
}

/// Submits a command that changes card `id` and answers with the card as it left it.
async fn changed_card(state: &AppState, id: CardId, cmd: Command) -> crate::error::Answer {
    state.submit(cmd).await?;
    let QueryAnswer::Card(card) = state.ask(Query::Card { card: id }).await? else {
        return Err(ApiError::Unavailable.into());
    };
    Ok(reply(StatusCode::OK, &card_view(state, id, &card)?, false))
}

/// Freezes a card: nothing is redeemed from it (`422 card_frozen`) until it is unfrozen. Only
/// an active card freezes (`422 card_not_active` otherwise).
#[utoipa::path(post, path = "/v1/cards/{card_id}/freeze", tag = "cards", params(("card_id" = String, Path, pattern = r"^[0-9]{1,19}$", min_length = 1, max_length = 19)), responses((status = 200, body = CardView)), security(("bearer" = [])))]
pub async fn freeze_card(
    who: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> crate::error::Answer {
    set_frozen(who, state, path, true).await
}

/// Unfreezes a frozen card, back to active.
#[utoipa::path(post, path = "/v1/cards/{card_id}/unfreeze", tag = "cards", params(("card_id" = String, Path, pattern = r"^[0-9]{1,19}$", min_length = 1, max_length = 19)), responses((status = 200, body = CardView)), security(("bearer" = [])))]
pub async fn unfreeze_card(
    who: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> crate::error::Answer {
    set_frozen(who, state, path, false).await
}

/// Cancels a card nobody can have used, for the client whose order bought it or an admin: an
/// issued card nothing was redeemed from, or a supplier's code whose every delivery attempt
/// failed (its code goes back in stock). Its price goes back to the wallet (`refund` in the
/// wallet's history), it redeems nothing from then on (`422 card_cancelled`), and nothing
/// revives it. A card with anything redeemed, a supplier's code that was delivered or shown
/// (the brand may have redeemed it), or a card paid in another currency is
/// `422 card_not_cancellable`; an expired card `422 card_expired`.
/// Cancelling a cancelled card answers as it is.
#[utoipa::path(post, path = "/v1/cards/{card_id}/cancel", tag = "cards", params(("card_id" = String, Path, pattern = r"^[0-9]{1,19}$", min_length = 1, max_length = 19)), responses((status = 200, body = CardView)), security(("bearer" = [])))]
pub async fn cancel_card(
    who: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> crate::error::Answer {
    who.require(CARD_ROLES)?;
    let id = CardId(input::digits("card_id", &path)?);
    let cmd = Command::CancelCard {
        caller: who.caller(),
        card: id,
    };
    changed_card(&state, id, cmd).await
}

/// Sends a card's delivery again, as a new round of attempts (the recipient lost it, or every
/// attempt failed), for the client whose order bought it or an admin; journaled with who and
/// when, and published as a new delivery event with its own report tokens. A card whose
/// delivery is still in flight answers as it is (`resent: false`), so a retry sends nothing
/// twice. Only an active card of an order that named a channel (`422 not_deliverable`), at
/// most 10 times (`422 resend_limit`).
#[utoipa::path(post, path = "/v1/cards/{card_id}/resend", tag = "cards", params(("card_id" = String, Path, pattern = r"^[0-9]{1,19}$", min_length = 1, max_length = 19)), responses((status = 200, body = ResendView)), security(("bearer" = [])))]
pub async fn resend_card(
    who: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> crate::error::Answer {
    who.require(CARD_ROLES)?;
    let id = CardId(input::digits("card_id", &path)?);
    let outcome = state
        .submit(Command::ResendCard {
            caller: who.caller(),
            card: id,
        })
        .await?;
    let resent = matches!(outcome, Outcome::Applied(_));
    let QueryAnswer::CardDelivery(_, round) = state.ask(Query::CardDelivery { card: id }).await?
    else {
        return Err(ApiError::Unavailable.into());
    };
    let view = ResendView {
        card_id: id.0.to_string(),
        round,
        resent,
    };
    Ok(reply(StatusCode::OK, &view, !resent))
}

/// Balance inquiry by code (rate-limited).
#[utoipa::path(post, path = "/v1/cards/balance", tag = "cards", request_body = BalanceRequest, responses((status = 200, body = CardView)), security(("bearer" = [])))]
pub async fn card_balance(
    who: Principal,
    state: web::Data<AppState>,
    body: JsonBody<BalanceRequest>,
) -> crate::error::Answer {
    who.require(LOOKUP_ROLES)?;
    let body = body.parse()?;
    code("code", &body.code)?;
    state.limit_lookup(&who, &body.code)?;
    let hash = state.engine()?.vault().hash(&body.code);
    let brands = who.brands.as_deref().map(<[String]>::to_vec);
    let QueryAnswer::CardWithId(id, card) = state.ask(Query::CardByCode { hash, brands }).await?
    else {
        return Err(ApiError::Unavailable.into());
    };
    Ok(reply(StatusCode::OK, &card_view(&state, id, &card)?, false))
}

/// A redemption's answer with the card as the engine left it: from the answer's `after` when
/// it carries the card (read in the commit's pass), else read now (a replay answered by a shard
/// that does not hold the card).
async fn redemption_view(
    state: &AppState,
    (id, card, amount, status): (&str, CardId, Money, &str),
    after: After,
) -> Result<RedemptionView, ApiError> {
    let (balance, card_status) = match after {
        After::Card {
            card: c,
            balance,
            status,
        } if c == card => (balance, status),
        _ => match state.ask(Query::Card { card }).await? {
            QueryAnswer::Card(c) => (Money::new(c.balance_minor, c.face.currency()), c.status),
            _ => return Err(ApiError::Unavailable),
        },
    };
    Ok(RedemptionView {
        redemption_id: id.to_owned(),
        card_id: card.0.to_string(),
        amount: MoneyView::of(amount),
        status: status.into(),
        card_balance: MoneyView::of(balance),
        card_status: status_name(card_status).into(),
    })
}

async fn recorded(
    state: &AppState,
    who: &Principal,
    id: &str,
) -> Result<RedemptionRecord, ApiError> {
    let q = Query::Redemption {
        client: ClientId::new(&who.client),
        redemption_id: RequestId::new(id),
    };
    match state.ask(q).await? {
        QueryAnswer::Redemption(rec) => Ok(*rec),
        _ => Err(ApiError::Rejected(Rejection::RedemptionNotFound, None)),
    }
}

/// A redemption request that passed every check made before the rate limit and the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedemptionInput {
    /// The idempotency key: the `Idempotency-Key` header or `redemption_id`.
    pub redemption_id: String,
    pub code: String,
    pub amount: Money,
    /// The amount as sent, which the request's fingerprint covers.
    pub amount_dto: MoneyDto,
}

/// Parses and validates a redemption body from its bytes (with the `Idempotency-Key` header, if
/// sent), without a server or an engine. Pure, so it can be fuzzed; [`redeem`] uses it.
pub fn parse_redemption(
    idempotency_header: Option<&str>,
    body: &[u8],
) -> Result<RedemptionInput, ApiError> {
    let r: RedeemRequest = input::json(body)?;
    let redemption_id = input::idempotency_key(
        idempotency_header,
        r.redemption_id.as_deref(),
        "redemption_id",
    )?;
    code("code", &r.code)?;
    let amount = input::money("amount", &r.amount)?;
    Ok(RedemptionInput {
        redemption_id,
        code: r.code,
        amount,
        amount_dto: r.amount,
    })
}

/// Redeems an amount from an issued card by its code. Idempotent by `redemption_id` (or
/// `Idempotency-Key`); a replay answers as the first request did.
#[utoipa::path(post, path = "/v1/redemptions", tag = "cards",
    request_body = RedeemRequest, responses((status = 201, body = RedemptionView)), security(("bearer" = [])))]
pub async fn redeem(
    who: Principal,
    state: web::Data<AppState>,
    req: HttpRequest,
    body: JsonBody<RedeemRequest>,
) -> crate::error::Answer {
    who.require(REDEEM_ROLES)?;
    let r = body.parse_with(|bytes| parse_redemption(super::idempotency_header(&req)?, bytes))?;
    let (id, amount) = (r.redemption_id, r.amount);
    state.limit_lookup(&who, &r.code)?;
    let hash = state.engine()?.vault().hash(&r.code);
    let fingerprint = input::fingerprint(&(hash, &r.amount_dto));
    let cmd = Command::Redeem {
        caller: who.caller(),
        redemption_id: RequestId::new(&id),
        code: hash,
        amount,
        fingerprint,
        brands: who.brands.as_deref().map(<[String]>::to_vec),
    };
    let (outcome, replayed, after) = match state.submit(cmd).await? {
        Outcome::Moved {
            events,
            replayed: false,
            after,
        } => match events.first() {
            Some(Event::Redeemed { card, amount, .. }) => (Ok((*card, *amount)), false, after),
            Some(Event::RedemptionRejected { reason, .. }) => (Err(*reason), false, after),
            _ => {
                return Err(ApiError::Internal("a redemption applied no redemption".into()).into())
            }
        },
        Outcome::Moved { after, .. } => (recorded(&state, &who, &id).await?.outcome, true, after),
        _ => return Err(ApiError::Internal("a redemption answered no events".into()).into()),
    };
    match outcome {
        Ok((card, amount)) => {
            let view = redemption_view(&state, (&id, card, amount, "redeemed"), after).await?;
            Ok(reply(StatusCode::CREATED, &view, replayed))
        }
        Err(reason) => Err(ApiError::Rejected(reason, None).into()),
    }
}

/// Reverses a redemption of the calling client; repeating it replays the answer.
#[utoipa::path(post, path = "/v1/redemptions/{redemption_id}/reversal", tag = "cards", params(("redemption_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,64}$", min_length = 1, max_length = 64)),
    responses((status = 201, body = RedemptionView)), security(("bearer" = [])))]
pub async fn reverse(
    who: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> crate::error::Answer {
    who.require(REDEEM_ROLES)?;
    let id = input::id("redemption_id", &path)?;
    let cmd = Command::ReverseRedemption {
        caller: who.caller(),
        redemption_id: RequestId::new(id),
    };
    match state.submit(cmd).await {
        Ok(Outcome::Moved { events, after, .. }) => match events.first() {
            Some(Event::RedemptionReversed { card, amount, .. }) => {
                let view = redemption_view(&state, (id, *card, *amount, "reversed"), after).await?;
                Ok(reply(StatusCode::CREATED, &view, false))
            }
            _ => Err(ApiError::Unavailable.into()),
        },
        Ok(_) => Err(ApiError::Unavailable.into()),
        Err(ApiError::Rejected(Rejection::AlreadyReversed, _)) => {
            match recorded(&state, &who, id).await?.outcome {
                Ok((card, amount)) => {
                    let view =
                        redemption_view(&state, (id, card, amount, "reversed"), After::Nothing)
                            .await?;
                    Ok(reply(StatusCode::CREATED, &view, true))
                }
                Err(_) => Err(ApiError::Rejected(Rejection::RedemptionNotFound, None).into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}
