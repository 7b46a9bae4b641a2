//! Orders: place one (synchronous, idempotent by `order_id`), place a batch, read one.

use super::reply_no_store;
use crate::auth::Principal;
use crate::error::{problem_of, ApiError};
use crate::input::{self, JsonBody};
use crate::metrics_http::OutcomeTally;
use crate::state::AppState;
use crate::wire::*;
use crate::Role;
use actix_web::http::StatusCode;
use actix_web::web;
use giftcard_core::state::Card;
use giftcard_core::*;
use giftcard_shard::{Query, QueryAnswer};

pub use giftcard_intake::orders::{
    amount_currencies_match, order_request, parse_order, BATCH_ORDERS_MAX, ORDER_LINES_MAX,
};
use giftcard_intake::orders::{check_amounts, OrderAnswer};

const ORDER_ROLES: &[Role] = &[Role::Checkout, Role::Admin];

/// Orders with at most this many cards have their codes revealed on the request's own thread;
/// larger ones on the blocking pool. Opening one sealed code (and reading a supplier code from
/// the store's cache) takes about a microsecond, far less than a hop to another thread.
const INLINE_REVEAL_CARDS: usize = 64;

/// The cards of a completed order with their codes, numbered from `first_card`.
fn reveal_cards(
    engine: &giftcard_shard::Engine,
    first_card: CardId,
    found: &[Card],
) -> Result<Vec<IssuedCard>, ApiError> {
    found
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let id = CardId(first_card.0 + i as u64);
            Ok(IssuedCard {
                card_id: id.0.to_string(),
                sku_id: c.sku.as_str().to_owned(),
                code: engine.reveal(id, c)?,
                face_value: MoneyView::of(c.face),
            })
        })
        .collect()
}

/// What an order earned, as the engine recorded it.
type Sale = Option<std::sync::Arc<giftcard_core::sales::Sale>>;

/// What the engine answered for one order, to render.
struct Answered {
    outcome: OrderOutcome,
    replayed: bool,
    /// The sold cards of a fresh completion (else read when rendered).
    sold: Vec<Card>,
    sale: Sale,
    /// The wallet's balances after it: in answers to placing it, not to reading it.
    balances: Option<giftcard_intake::orders::Balances>,
}

/// An order's view before its codes are revealed.
struct Settled {
    view: OrderView,
    replayed: bool,
    /// First card and the cards to reveal into `view.cards` (completed orders).
    cards: Option<(CardId, Vec<Card>)>,
}

/// Turns the engine's answer into a view, fetching the cards when the answer did not carry them
/// (a replay). Codes are not revealed yet.
async fn settle(
    state: &AppState,
    order_id: &str,
    wallet: &str,
    answered: Answered,
) -> Result<Settled, ApiError> {
    let Answered {
        outcome,
        replayed,
        sold,
        sale,
        balances,
    } = answered;
    let outcome = &outcome;
    let mut view = OrderView {
        order_id: order_id.to_owned(),
        status: "completed".into(),
        wallet_id: wallet.to_owned(),
        charged: None,
        reason: None,
        cards: vec![],
        economics: sale.as_deref().map(giftcard_intake::orders::economics),
        items: sale
            .as_deref()
            .map(giftcard_intake::orders::items_filled)
            .unwrap_or_default(),
        balances: balances
            .as_ref()
            .map(giftcard_intake::orders::balance_views),
        review: None,
    };
    let (charged, first_card, count) = match outcome {
        OrderOutcome::Rejected(r) => {
            view.status = "rejected".into();
            view.reason = Some(r.code().to_owned());
            return Ok(Settled {
                view,
                replayed,
                cards: None,
            });
        }
        OrderOutcome::Completed {
            charged,
            first_card,
            cards,
        } => (*charged, *first_card, *cards),
        OrderOutcome::PendingReview { held, until } => {
            view.status = "pending_review".into();
            view.items = Vec::new();
            view.review = Some(giftcard_intake::wire::PendingReviewView {
                held: MoneyView::of(*held),
                expires_at_ms: until.0,
            });
            return Ok(Settled {
                view,
                replayed,
                cards: None,
            });
        }
    };
    view.charged = Some(MoneyView::of(charged));
    // A fresh completion carries its cards; a replay or a read fetches them.
    let found = if sold.len() == count as usize {
        sold
    } else {
        let QueryAnswer::Cards(found) = state
            .ask_follow_up(Query::Cards {
                first: first_card,
                count,
            })
            .await?
        else {
            return Err(ApiError::Unavailable);
        };
        found
    };
    Ok(Settled {
        view,
        replayed,
        cards: Some((first_card, found)),
    })
}

/// Reveals the codes of settled orders: inline when there are few, otherwise in one task on the
/// blocking pool for all of them (a batch pays one thread hop, not one per order).
async fn reveal_all(state: &AppState, mut settled: Vec<Settled>) -> Result<Vec<Settled>, ApiError> {
    let engine = state.engine()?.clone();
    let total: usize = settled
        .iter()
        .filter_map(|s| s.cards.as_ref().map(|(_, c)| c.len()))
        .sum();
    let fill = move |mut settled: Vec<Settled>| -> Result<Vec<Settled>, ApiError> {
        for s in &mut settled {
            if let Some((first, cards)) = s.cards.take() {
                s.view.cards = reveal_cards(&engine, first, &cards)?;
            }
        }
        Ok(settled)
    };
    if total <= INLINE_REVEAL_CARDS {
        settled = fill(settled)?;
        return Ok(settled);
    }
    web::block(move || fill(settled))
        .await
        .map_err(|_| ApiError::Unavailable)?
}

/// The full view of an order outcome: a completed order with its cards and codes.
pub async fn order_view(
    state: &AppState,
    order_id: &str,
    wallet: &str,
    outcome: &OrderOutcome,
    sold: Vec<Card>,
    sale: Sale,
) -> Result<OrderView, ApiError> {
    let answered = Answered {
        outcome: outcome.clone(),
        replayed: false,
        sold,
        sale,
        balances: None,
    };
    let settled = settle(state, order_id, wallet, answered).await?;
    Ok(reveal_one(state, settled).await?.view)
}

/// [`reveal_all`] for one order.
async fn reveal_one(state: &AppState, settled: Settled) -> Result<Settled, ApiError> {
    reveal_all(state, vec![settled])
        .await?
        .pop()
        .ok_or(ApiError::Unavailable)
}

/// The engine's answer to one order as the client sees it: the outcome, whether it is a replay
/// and the sold cards; a recorded rejection becomes the 422 it is answered with.
fn order_answer(
    order_id: &str,
    answer: Result<OrderAnswer, ApiError>,
    tally: &mut OutcomeTally,
) -> Result<Answered, ApiError> {
    let answer = answer.map_err(|e| match e {
        ApiError::Rejected(r, None) => ApiError::Rejected(r, Some(order_id.to_owned())),
        e => e,
    })?;
    let (outcome, replayed) = (answer.outcome(), answer.replayed());
    tally.add(&outcome, replayed);
    match answer {
        OrderAnswer::Completed {
            sold,
            sale,
            balances,
            ..
        } => Ok(Answered {
            outcome,
            replayed,
            sold,
            sale,
            balances: Some(balances),
        }),
        // A recorded rejection: the retry gets the same 422.
        OrderAnswer::Rejected { reason, .. } => {
            Err(ApiError::Rejected(reason, Some(order_id.to_owned())))
        }
        OrderAnswer::PendingReview { balances, .. } => Ok(Answered {
            outcome,
            replayed,
            sold: Vec::new(),
            sale: None,
            balances: Some(balances),
        }),
    }
}

/// Places one validated order: (view, replayed) or the error to answer with.
async fn place(
    state: &AppState,
    who: &Principal,
    o: &OrderRequestDto,
    prefix: &str,
) -> Result<(OrderView, bool), ApiError> {
    let req = order_request(&who.caller(), o, prefix)?;
    check_amounts(state.engine()?, [(o, prefix.to_owned())]).await?;
    let answer = state.place(req).await;
    let mut tally = OutcomeTally::default();
    let answer = order_answer(&o.order_id, answer, &mut tally);
    tally.record();
    let settled = settle(state, &o.order_id, &o.wallet_id, answer?).await?;
    let s = reveal_one(state, settled).await?;
    Ok((s.view, s.replayed))
}

/// Places an order and answers with its outcome: 201 with the cards, or 422 with the reason.
#[utoipa::path(post, path = "/v1/orders", tag = "orders", request_body = OrderRequestDto, responses((status = 201, body = OrderView), (status = 202, description = "held for review (status pending_review)", body = OrderView)), security(("bearer" = [])))]
pub async fn place_order(
    who: Principal,
    state: web::Data<AppState>,
    body: JsonBody<OrderRequestDto>,
) -> crate::error::Answer {
    who.require(ORDER_ROLES)?;
    let body = body.parse()?;
    let (view, replayed) = place(&state, &who, &body, "").await?;
    // Held for review: accepted, not completed.
    let status = if view.review.is_some() {
        StatusCode::ACCEPTED
    } else {
        StatusCode::CREATED
    };
    Ok(reply_no_store(status, &view, replayed))
}

/// Places independent orders; each result carries the status it would have had alone.
#[utoipa::path(post, path = "/v1/orders/batch", tag = "orders", request_body = BatchRequest, responses((status = 200, body = BatchView)), security(("bearer" = [])))]
pub async fn place_batch(
    who: Principal,
    state: web::Data<AppState>,
    body: JsonBody<BatchRequest>,
) -> crate::error::Answer {
    who.require(ORDER_ROLES)?;
    let body = body.parse()?;
    let orders = body.orders;
    if orders.is_empty() || orders.len() > BATCH_ORDERS_MAX {
        return Err(ApiError::invalid(
            "invalid_count",
            "orders",
            format!("send 1 to {BATCH_ORDERS_MAX} orders"),
        )
        .into());
    }
    // A malformed batch is refused whole, before any order reaches the engine; business
    // outcomes (404, 409, 422...) are per order. One order id twice in a batch is malformed:
    // it would make the engine answer (and reveal the codes of) the same order again and again.
    let mut seen = std::collections::HashSet::with_capacity(orders.len());
    if let Some(i) = orders
        .iter()
        .position(|o| !seen.insert(o.order_id.as_str()))
    {
        return Err(ApiError::invalid(
            "duplicate_order_id",
            format!("orders[{i}].order_id"),
            "each order of a batch has its own order_id",
        )
        .into());
    }
    let mut reqs = Vec::with_capacity(orders.len());
    for (i, o) in orders.iter().enumerate() {
        reqs.push(order_request(&who.caller(), o, &format!("orders[{i}]."))?);
    }
    // One answer carries at most one order's worth of cards (and codes): a batch of a thousand
    // 10,000-card orders would reveal ten million codes in a single response.
    let cards: u64 = reqs
        .iter()
        .map(giftcard_core::OrderRequest::card_count)
        .sum();
    if cards > u64::from(giftcard_core::ORDER_CARDS_MAX) {
        return Err(ApiError::invalid(
            "too_many_cards",
            "orders",
            format!(
                "a batch buys at most {} cards in all; send the rest in another",
                giftcard_core::ORDER_CARDS_MAX
            ),
        )
        .into());
    }
    let engine = state.engine()?;
    let prefixed = orders.iter().enumerate();
    check_amounts(engine, prefixed.map(|(i, o)| (o, format!("orders[{i}].")))).await?;
    // Every order enters the engine at once (each with its own in-flight slot, so a full engine
    // refuses single orders with 429 rather than the whole batch), then the answers are awaited.
    let pending: Vec<_> = reqs
        .into_iter()
        .map(|req| {
            let slot = state.inflight.enter()?;
            let (tx, rx) = tokio::sync::oneshot::channel();
            engine.submit(
                Command::PlaceOrder(Box::new(req)),
                Box::new(move |r| {
                    let _ = tx.send(r);
                }),
            );
            Ok((slot, rx))
        })
        .collect();
    let mut answers = Vec::with_capacity(pending.len());
    for p in pending {
        answers.push(match p {
            Ok((slot, rx)) => {
                let r = rx.await.map_err(|_| ApiError::Unavailable);
                drop(slot);
                r.and_then(|r| OrderAnswer::from_reply(r).map_err(ApiError::from))
            }
            Err(e) => Err(e),
        });
    }
    // Settle each answer; the codes of every completed order are revealed together.
    let mut settled = Vec::new();
    let mut results: Vec<Option<BatchItem>> = Vec::with_capacity(orders.len());
    // Counted before anything else is awaited, so a client that goes away still leaves its
    // orders in the metrics.
    let mut tally = OutcomeTally::default();
    let answers: Vec<_> = orders
        .iter()
        .zip(answers)
        .map(|(o, answer)| order_answer(&o.order_id, answer, &mut tally))
        .collect();
    tally.record();
    for (o, answer) in orders.iter().zip(answers) {
        let s = match answer {
            Ok(answered) => settle(&state, &o.order_id, &o.wallet_id, answered).await,
            Err(e) => Err(e),
        };
        match s {
            Ok(s) => {
                settled.push(s);
                results.push(None);
            }
            Err(e) => results.push(Some(BatchItem {
                order_id: o.order_id.clone(),
                status: e.status_code().as_u16(),
                order: None,
                problem: Some(problem_of(&e)),
            })),
        }
    }
    let mut revealed = reveal_all(&state, settled).await?.into_iter();
    let results = results
        .into_iter()
        .zip(orders)
        .map(|(r, o)| match r {
            Some(item) => item,
            None => match revealed.next() {
                Some(s) => BatchItem {
                    order_id: o.order_id,
                    status: if s.view.review.is_some() { 202 } else { 201 },
                    order: Some(s.view),
                    problem: None,
                },
                None => BatchItem {
                    order_id: o.order_id,
                    status: 503,
                    order: None,
                    problem: Some(problem_of(&ApiError::Unavailable)),
                },
            },
        })
        .collect();
    Ok(reply_no_store(
        StatusCode::OK,
        &BatchView { results },
        false,
    ))
}

/// An order of the calling client, with its cards.
#[utoipa::path(get, path = "/v1/orders/{order_id}", tag = "orders", params(("order_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,64}$", min_length = 1, max_length = 64)), responses((status = 200, body = OrderView)), security(("bearer" = [])))]
pub async fn get_order(
    who: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> crate::error::Answer {
    who.require(ORDER_ROLES)?;
    let id = input::id("order_id", &path)?;
    let key = OrderKey {
        client: ClientId::new(&who.client),
        order_id: OrderId::new(id),
    };
    match state.ask(Query::Order { key: key.clone() }).await? {
        QueryAnswer::Order(rec) => {
            let sale = match state.ask_follow_up(Query::Sale { key }).await? {
                QueryAnswer::Sale(s) => Some(s),
                _ => None,
            };
            Ok(reply_no_store(
                StatusCode::OK,
                &order_view(
                    &state,
                    id,
                    rec.wallet.named_by(&ClientId::new(&who.client)),
                    &rec.outcome,
                    Vec::new(),
                    sale,
                )
                .await?,
                false,
            ))
        }
        _ => Err(ApiError::NotFound {
            code: "order_not_found",
            what: "order",
        }
        .into()),
    }
}

/// An order's risk score: its score, the rules that held (`reasons`) and when it was scored
/// (admin). Only orders that scored above zero have one (`404 risk_not_found` otherwise).
#[utoipa::path(get, path = "/v1/admin/orders/{client_id}/{order_id}/risk", tag = "admin",
    params(("client_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,64}$", min_length = 1, max_length = 64),
        ("order_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,64}$", min_length = 1, max_length = 64)),
    responses((status = 200, body = RiskView)), security(("bearer" = [])))]
pub async fn order_risk(
    who: Principal,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> crate::error::Answer {
    who.require(&[Role::Admin])?;
    let (client, order) = path.into_inner();
    let client = input::id("client_id", &client)?;
    let order = input::id("order_id", &order)?;
    let key = OrderKey {
        client: ClientId::new(client),
        order_id: OrderId::new(order),
    };
    match state.ask(Query::OrderRisk { key }).await? {
        QueryAnswer::OrderRisk(s) => Ok(reply_no_store(
            StatusCode::OK,
            &giftcard_intake::wire::RiskView::of(client, order, &s),
            false,
        )),
        _ => Err(ApiError::NotFound {
            code: "risk_not_found",
            what: "risk score",
        }
        .into()),
    }
}
