//! Orders: place one (synchronous, idempotent by `order_id`), place a batch, read one.

use super::reply;
use crate::auth::Principal;
use crate::error::{problem_of, ApiError};
use crate::input::{self, JsonBody};
use crate::metrics_http::OutcomeTally;
use crate::state::AppState;
use crate::wire::*;
use crate::Role;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
use giftcard_core::state::Card;
use giftcard_core::*;
use giftcard_shard::{Outcome, Query, QueryAnswer};

/// Orders one batch request may carry.
pub const BATCH_ORDERS_MAX: usize = 1_000;
/// Lines one order may have.
pub const ORDER_LINES_MAX: usize = 100;

const ORDER_ROLES: &[Role] = &[Role::Checkout, Role::Admin];

fn channel(c: ChannelDto) -> DeliveryChannel {
    match c {
        ChannelDto::Email => DeliveryChannel::Email,
        ChannelDto::Sms => DeliveryChannel::Sms,
        ChannelDto::Webhook => DeliveryChannel::Webhook,
        ChannelDto::None => DeliveryChannel::None,
    }
}

/// Validates an order and builds the engine's request. Shared with the queue adapter, so an order
/// sent over HTTP and over NATS with the same id and body is the same order (same fingerprint).
pub fn order_request(
    who: &Principal,
    o: &OrderRequestDto,
    prefix: &str,
) -> Result<OrderRequest, ApiError> {
    let f = |name: &str| format!("{prefix}{name}");
    let order_id = input::id(&f("order_id"), &o.order_id)?;
    let wallet = input::id(&f("wallet_id"), &o.wallet_id)?;
    if o.items.is_empty() || o.items.len() > ORDER_LINES_MAX {
        return Err(ApiError::invalid(
            "invalid_items",
            f("items"),
            format!("an order has 1 to {ORDER_LINES_MAX} lines"),
        ));
    }
    let mut items = Vec::with_capacity(o.items.len());
    let mut cards = 0u64;
    for (i, item) in o.items.iter().enumerate() {
        let sku = input::id(&f(&format!("items[{i}].sku_id")), &item.sku_id)?;
        cards += u64::from(item.quantity);
        if item.quantity == 0 || cards > u64::from(ORDER_CARDS_MAX) {
            return Err(ApiError::invalid(
                "quantity_out_of_range",
                f(&format!("items[{i}].quantity")),
                format!("an order buys 1 to {ORDER_CARDS_MAX} cards"),
            ));
        }
        let amount_minor = match &item.amount {
            Some(a) => Some(input::money(&f(&format!("items[{i}].amount")), a)?.minor()),
            None => None,
        };
        items.push(OrderItem {
            sku: SkuId::new(sku),
            quantity: item.quantity,
            amount_minor,
        });
    }
    let region = input::id(&f("region"), &o.region)?;
    let pay_currency = o
        .pay_currency
        .as_deref()
        .map(|c| input::currency(&f("pay_currency"), c))
        .transpose()?;
    input::text(&f("delivery.recipient"), &o.delivery.recipient, 0)?;
    if o.delivery.channel != ChannelDto::None && o.delivery.recipient.is_empty() {
        return Err(ApiError::invalid(
            "missing_recipient",
            f("delivery.recipient"),
            "a delivery channel needs a recipient",
        ));
    }
    // Everything but the key itself identifies the request.
    let fingerprint = input::fingerprint(&(
        &o.wallet_id,
        &o.items,
        &o.region,
        &o.pay_currency,
        &o.delivery,
    ));
    Ok(OrderRequest {
        key: OrderKey {
            client: ClientId::new(&who.client),
            order_id: OrderId::new(order_id),
        },
        admin: who.role == Role::Admin,
        wallet: WalletId::new(wallet),
        items,
        region: region.to_owned(),
        pay_currency,
        channel: channel(o.delivery.channel),
        recipient: o.delivery.recipient.clone(),
        fingerprint,
        fresh_codes: Vec::new(),
    })
}

/// Parses and validates an order body from its bytes, without a server or an engine: exactly
/// the checks `POST /v1/orders` makes before the order reaches the engine (`who` is the caller
/// its key names). Pure, so it can be fuzzed.
pub fn parse_order(who: &Principal, body: &[u8]) -> Result<OrderRequest, ApiError> {
    let dto: OrderRequestDto = input::json(body)?;
    order_request(who, &dto, "")
}

/// Open-denomination amounts must be in the SKU's currency; the engine takes minor units only.
async fn check_amount_currencies(
    state: &AppState,
    o: &OrderRequestDto,
    prefix: &str,
) -> Result<(), ApiError> {
    if o.items.iter().all(|i| i.amount.is_none()) {
        return Ok(());
    }
    amount_currencies_match(&super::all_skus(state).await?, o, prefix)
}

/// The check of [`check_amount_currencies`] against a catalog already read (the queue adapter
/// shares it).
pub fn amount_currencies_match(
    skus: &[Sku],
    o: &OrderRequestDto,
    prefix: &str,
) -> Result<(), ApiError> {
    for (i, item) in o.items.iter().enumerate() {
        let (Some(a), Some(sku)) = (
            &item.amount,
            skus.iter().find(|s| s.id.as_str() == item.sku_id),
        ) else {
            continue;
        };
        if a.currency != sku.currency.code() {
            return Err(ApiError::invalid(
                "currency_mismatch",
                format!("{prefix}items[{i}].amount.currency"),
                "must be the SKU's currency",
            ));
        }
    }
    Ok(())
}

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
            Ok(IssuedCard {
                card_id: (first_card.0 + i as u64).to_string(),
                sku_id: c.sku.as_str().to_owned(),
                code: engine.reveal(c)?,
                face_value: MoneyView::of(c.face),
            })
        })
        .collect()
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
    outcome: &OrderOutcome,
    replayed: bool,
    sold: Vec<Card>,
) -> Result<Settled, ApiError> {
    let mut view = OrderView {
        order_id: order_id.to_owned(),
        status: "completed".into(),
        wallet_id: wallet.to_owned(),
        charged: None,
        reason: None,
        cards: vec![],
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
) -> Result<OrderView, ApiError> {
    let settled = settle(state, order_id, wallet, outcome, false, sold).await?;
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
    answer: Result<Outcome, ApiError>,
    tally: &mut OutcomeTally,
) -> Result<(OrderOutcome, bool, Vec<Card>), ApiError> {
    let outcome = answer.map_err(|e| match e {
        ApiError::Rejected(r, None) => ApiError::Rejected(r, Some(order_id.to_owned())),
        e => e,
    })?;
    let Outcome::Order {
        outcome,
        replayed,
        cards,
    } = outcome
    else {
        return Err(ApiError::Unavailable);
    };
    tally.add(&outcome, replayed);
    if let OrderOutcome::Rejected(r) = outcome {
        // A recorded rejection: the retry gets the same 422.
        return Err(ApiError::Rejected(r, Some(order_id.to_owned())));
    }
    Ok((outcome, replayed, cards))
}

/// Places one validated order: (view, replayed) or the error to answer with.
async fn place(
    state: &AppState,
    who: &Principal,
    o: &OrderRequestDto,
    prefix: &str,
) -> Result<(OrderView, bool), ApiError> {
    let req = order_request(who, o, prefix)?;
    check_amount_currencies(state, o, prefix).await?;
    let answer = state.submit(Command::PlaceOrder(Box::new(req))).await;
    let mut tally = OutcomeTally::default();
    let answer = order_answer(&o.order_id, answer, &mut tally);
    tally.record();
    let (outcome, replayed, cards) = answer?;
    let settled = settle(state, &o.order_id, &o.wallet_id, &outcome, replayed, cards).await?;
    let s = reveal_one(state, settled).await?;
    Ok((s.view, s.replayed))
}

/// Places an order and answers with its outcome: 201 with the cards, or 422 with the reason.
#[utoipa::path(post, path = "/v1/orders", tag = "orders", request_body = OrderRequestDto, responses((status = 201, body = OrderView)), security(("bearer" = [])))]
pub async fn place_order(
    who: Principal,
    state: web::Data<AppState>,
    body: JsonBody<OrderRequestDto>,
) -> Result<HttpResponse, ApiError> {
    who.require(ORDER_ROLES)?;
    let body = body.parse()?;
    let (view, replayed) = place(&state, &who, &body, "").await?;
    Ok(reply(StatusCode::CREATED, &view, replayed))
}

/// Places independent orders; each result carries the status it would have had alone.
#[utoipa::path(post, path = "/v1/orders/batch", tag = "orders", request_body = BatchRequest, responses((status = 200, body = BatchView)), security(("bearer" = [])))]
pub async fn place_batch(
    who: Principal,
    state: web::Data<AppState>,
    body: JsonBody<BatchRequest>,
) -> Result<HttpResponse, ApiError> {
    who.require(ORDER_ROLES)?;
    let body = body.parse()?;
    let orders = body.orders;
    if orders.is_empty() || orders.len() > BATCH_ORDERS_MAX {
        return Err(ApiError::invalid(
            "invalid_count",
            "orders",
            format!("send 1 to {BATCH_ORDERS_MAX} orders"),
        ));
    }
    // A malformed batch is refused whole, before any order reaches the engine; business
    // outcomes (404, 409, 422...) are per order.
    let mut reqs = Vec::with_capacity(orders.len());
    for (i, o) in orders.iter().enumerate() {
        reqs.push(order_request(&who, o, &format!("orders[{i}]."))?);
    }
    if orders
        .iter()
        .any(|o| o.items.iter().any(|i| i.amount.is_some()))
    {
        let skus = super::all_skus(&state).await?;
        for (i, o) in orders.iter().enumerate() {
            amount_currencies_match(&skus, o, &format!("orders[{i}]."))?;
        }
    }
    // Every order enters the engine at once (each with its own in-flight slot, so a full engine
    // refuses single orders with 429 rather than the whole batch), then the answers are awaited.
    let engine = state.engine()?;
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
                r.and_then(|r| r.map_err(ApiError::from))
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
            Ok((outcome, replayed, cards)) => {
                settle(&state, &o.order_id, &o.wallet_id, &outcome, replayed, cards).await
            }
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
                    status: 201,
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
    Ok(reply(StatusCode::OK, &BatchView { results }, false))
}

/// An order of the calling client, with its cards.
#[utoipa::path(get, path = "/v1/orders/{order_id}", tag = "orders", params(("order_id" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,64}$", min_length = 1, max_length = 64)), responses((status = 200, body = OrderView)), security(("bearer" = [])))]
pub async fn get_order(
    who: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    who.require(ORDER_ROLES)?;
    let id = input::id("order_id", &path)?;
    let key = OrderKey {
        client: ClientId::new(&who.client),
        order_id: OrderId::new(id),
    };
    match state.ask(Query::Order { key }).await? {
        QueryAnswer::Order(rec) => Ok(reply(
            StatusCode::OK,
            &order_view(&state, id, rec.wallet.as_str(), &rec.outcome, Vec::new()).await?,
            false,
        )),
        _ => Err(ApiError::NotFound {
            code: "order_not_found",
            what: "order",
        }),
    }
}
