//! Order intake, the same over HTTP and NATS: an order body is validated and turned into the
//! engine's request here (so the same order id and body is the same order, with the same
//! fingerprint, whichever way it came), open amounts are checked against the SKU's currency, and
//! the engine's reply becomes one [`OrderAnswer`] that each adapter only renders.

use crate::error::ApiError;
use crate::input;
use crate::wire::*;
use giftcard_core::state::Card;
use giftcard_core::*;
use giftcard_shard::{Engine, EngineError, Outcome, Query, QueryAnswer, Reply};

/// Orders one batch request may carry.
pub const BATCH_ORDERS_MAX: usize = 1_000;
/// Lines one order may have.
pub const ORDER_LINES_MAX: usize = 100;

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
    who: &Caller,
    o: &OrderRequestDto,
    prefix: &str,
) -> Result<OrderRequest, ApiError> {
    let f = |name: &str| format!("{prefix}{name}");
    let order_id = input::id(&f("order_id"), &o.order_id)?;
    let wallet = input::wallet_id(&f("wallet_id"), &o.wallet_id, who.admin)?;
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
    let fx_quote = o
        .fx_quote_id
        .as_deref()
        .map(|q| input::id(&f("fx_quote_id"), q).map(RequestId::new))
        .transpose()?;
    // Everything but the key itself identifies the request (a quote only when named, so an
    // order without one keeps the fingerprint it had before quotes existed).
    let parts = (
        &o.wallet_id,
        &o.items,
        &o.region,
        &o.pay_currency,
        &o.delivery,
    );
    // Likewise the fulfilment, only when it is not the default.
    let fulfilment = match o.fulfilment {
        Some(FulfilmentDto::FillAvailable) => Fulfilment::FillAvailable,
        _ => Fulfilment::AllOrNothing,
    };
    let fill = (fulfilment == Fulfilment::FillAvailable).then_some("fill_available");
    let fingerprint = match (&o.fx_quote_id, fill) {
        (None, None) => input::fingerprint(&parts),
        (Some(q), None) => input::fingerprint(&(parts, q)),
        (q, Some(f)) => input::fingerprint(&(parts, q, f)),
    };
    Ok(OrderRequest {
        key: OrderKey {
            client: who.client.clone(),
            order_id: OrderId::new(order_id),
        },
        admin: who.admin,
        wallet: WalletId::new(wallet),
        items,
        region: region.to_owned(),
        pay_currency,
        fx_quote,
        channel: channel(o.delivery.channel),
        recipient: o.delivery.recipient.clone(),
        fingerprint,
        fresh_codes: Vec::new(),
        fulfilment,
        stock_final: false,
    })
}

/// Parses and validates an order body from its bytes, without a server or an engine: exactly
/// the checks `POST /v1/orders` makes before the order reaches the engine (`who` is the caller
/// its key names). Pure, so it can be fuzzed.
pub fn parse_order(who: &Caller, body: &[u8]) -> Result<OrderRequest, ApiError> {
    let dto: OrderRequestDto = input::json(body)?;
    order_request(who, &dto, "")
}

/// Open-denomination amounts must be in the SKU's currency (the engine takes minor units only),
/// checked against a catalog already read.
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

/// Why open amounts could not be accepted: the order is wrong (a final answer for it), or the
/// catalog could not be read (the engine's failure: an overloaded engine is asked again later,
/// never taken for a wrong order).
#[derive(Debug)]
pub enum AmountCheck {
    Invalid(ApiError),
    Engine(EngineError),
}

impl From<AmountCheck> for ApiError {
    fn from(e: AmountCheck) -> ApiError {
        match e {
            AmountCheck::Invalid(e) => e,
            AmountCheck::Engine(e) => e.into(),
        }
    }
}

/// Checks the open amounts of orders against the catalog, reading it from the engine only when
/// some line has an amount. `prefix` names each order's place in its request (`orders[3].`).
pub async fn check_amounts<'a>(
    engine: &Engine,
    orders: impl IntoIterator<Item = (&'a OrderRequestDto, String)>,
) -> Result<(), AmountCheck> {
    let orders: Vec<_> = orders
        .into_iter()
        .filter(|(o, _)| o.items.iter().any(|i| i.amount.is_some()))
        .collect();
    if orders.is_empty() {
        return Ok(());
    }
    let skus = match crate::call::ask(engine, Query::Skus).await {
        Ok(QueryAnswer::Skus(skus)) => skus,
        Ok(other) => {
            let bug = format!("the catalog query answered {other:?}");
            return Err(AmountCheck::Engine(EngineError::Internal(bug)));
        }
        Err(e) => return Err(AmountCheck::Engine(e)),
    };
    for (o, prefix) in orders {
        amount_currencies_match(&skus, o, &prefix).map_err(AmountCheck::Invalid)?;
    }
    Ok(())
}

/// What the engine answered to one order, for an adapter to render.
#[derive(Clone, Debug)]
pub enum OrderAnswer {
    Completed {
        charged: Money,
        first_card: CardId,
        cards: u32,
        /// The sold cards of a fresh completion (empty for a replay: read them if needed).
        sold: Vec<Card>,
        replayed: bool,
        /// What the order earned, line by line.
        sale: Option<std::sync::Arc<giftcard_core::sales::Sale>>,
        /// The wallet's balances right after the order (a replay: as they are now).
        balances: Balances,
    },
    /// A recorded rejection (replayed or not): a final answer for the order.
    Rejected {
        reason: Rejection,
        replayed: bool,
        balances: Balances,
    },
    /// Held for review: `held` reserved on the wallet until an admin settles it or `until`.
    PendingReview {
        held: Money,
        until: giftcard_core::UnixMillis,
        replayed: bool,
        balances: Balances,
    },
}

/// A wallet's balances per currency, as the engine answered them.
pub type Balances = Vec<(giftcard_core::Currency, giftcard_core::state::Balance)>;

/// The wire form of a wallet's balances.
pub fn balance_views(balances: &Balances) -> Vec<BalanceView> {
    balances
        .iter()
        .map(|(ccy, b)| BalanceView {
            currency: ccy.code().to_owned(),
            available: MoneyView::of(Money::new(b.available_minor, *ccy)),
            held: MoneyView::of(Money::new(b.held_minor, *ccy)),
        })
        .collect()
}

impl OrderAnswer {
    /// The engine's reply to `PlaceOrder` as an answer; an engine failure or a refusal that
    /// was not recorded (a conflicting reuse of the key) stays an error.
    pub fn from_reply(reply: Reply) -> Result<OrderAnswer, EngineError> {
        match reply? {
            Outcome::Order {
                outcome:
                    OrderOutcome::Completed {
                        charged,
                        first_card,
                        cards,
                    },
                replayed,
                cards: sold,
                sale,
                balances,
            } => Ok(OrderAnswer::Completed {
                charged,
                first_card,
                cards,
                sold,
                replayed,
                sale,
                balances,
            }),
            Outcome::Order {
                outcome: OrderOutcome::Rejected(reason),
                replayed,
                balances,
                ..
            } => Ok(OrderAnswer::Rejected {
                reason,
                replayed,
                balances,
            }),
            Outcome::Order {
                outcome: OrderOutcome::PendingReview { held, until },
                replayed,
                balances,
                ..
            } => Ok(OrderAnswer::PendingReview {
                held,
                until,
                replayed,
                balances,
            }),
            other => Err(EngineError::Internal(format!(
                "an order answered {other:?}"
            ))),
        }
    }

    /// The recorded outcome.
    pub fn outcome(&self) -> OrderOutcome {
        match self {
            OrderAnswer::Completed {
                charged,
                first_card,
                cards,
                ..
            } => OrderOutcome::Completed {
                charged: *charged,
                first_card: *first_card,
                cards: *cards,
            },
            OrderAnswer::Rejected { reason, .. } => OrderOutcome::Rejected(*reason),
            OrderAnswer::PendingReview { held, until, .. } => OrderOutcome::PendingReview {
                held: *held,
                until: *until,
            },
        }
    }

    /// Whether this is the answer recorded earlier for the same order.
    pub fn replayed(&self) -> bool {
        match self {
            OrderAnswer::Completed { replayed, .. }
            | OrderAnswer::Rejected { replayed, .. }
            | OrderAnswer::PendingReview { replayed, .. } => *replayed,
        }
    }
}

/// Places one order and waits for its durable answer.
pub async fn place(engine: &Engine, req: OrderRequest) -> Result<OrderAnswer, EngineError> {
    OrderAnswer::from_reply(crate::call::submit(engine, Command::PlaceOrder(Box::new(req))).await)
}

/// What a delivery report did, from the events it caused (none: the delivery was already
/// settled and the report changed nothing).
pub fn delivery_report_view(card: CardId, events: &[Event]) -> DeliveryReportView {
    let reported = events.iter().find_map(|e| match e {
        Event::DeliveryReported {
            delivered,
            attempt,
            gave_up,
            ..
        } => Some((*delivered, *attempt, *gave_up)),
        _ => None,
    });
    let (delivery, attempt) = match reported {
        None => ("unchanged", None),
        Some((true, a, _)) => ("delivered", Some(a)),
        Some((false, a, true)) => ("gave_up", Some(a)),
        Some((false, a, false)) => ("retrying", Some(a)),
    };
    DeliveryReportView {
        card_id: card.0.to_string(),
        delivery: delivery.into(),
        attempt,
    }
}

/// The wire form of what a completed order earned: per line and card, and in total.
pub fn economics(sale: &giftcard_core::sales::Sale) -> crate::wire::OrderEconomics {
    use crate::wire::{LineEconomics, MoneyView, OrderEconomics};
    use std::collections::BTreeMap;
    let pay = sale.charged.currency();
    let mut totals: BTreeMap<giftcard_core::Currency, (i64, i64, i64)> = BTreeMap::new();
    let mut fx = 0i64;
    let lines = sale
        .lines
        .iter()
        .map(|l| {
            let q = i64::from(l.quantity);
            let t = totals.entry(l.unit_price.currency()).or_default();
            t.0 += l.unit_price.minor() * q;
            t.1 += l.unit_cost.minor() * q;
            t.2 += l.unit_margin() * q;
            fx += l.fx.minor();
            LineEconomics {
                sku_id: l.sku.as_str().to_owned(),
                quantity: l.quantity,
                unit_price: MoneyView::of(l.unit_price),
                unit_cost: MoneyView::of(l.unit_cost),
                unit_margin: MoneyView::of(Money::new(l.unit_margin(), l.unit_price.currency())),
                charged: MoneyView::of(l.charged),
                fx_spread: MoneyView::of(l.fx),
            }
        })
        .collect();
    let per = |f: fn(&(i64, i64, i64)) -> i64| {
        totals
            .iter()
            .map(|(c, t)| MoneyView::of(Money::new(f(t), *c)))
            .collect::<Vec<_>>()
    };
    OrderEconomics {
        lines,
        fees: fee_views(&sale.fees),
        price: per(|t| t.0),
        cost: per(|t| t.1),
        margin: per(|t| t.2),
        fx_spread: MoneyView::of(Money::new(fx, pay)),
        fees_total: MoneyView::of(Money::new(
            sale.fees.iter().map(|(_, m)| m.minor()).sum(),
            pay,
        )),
    }
}

/// Per line of the request, the cards asked for and sold, from what the order earned.
pub fn items_filled(sale: &giftcard_core::sales::Sale) -> Vec<crate::wire::ItemFilled> {
    use crate::wire::ItemFilled;
    if sale.filled_in_part.is_empty() {
        return sale
            .lines
            .iter()
            .map(|l| ItemFilled {
                sku_id: l.sku.as_str().to_owned(),
                requested: l.quantity,
                filled: l.quantity,
            })
            .collect();
    }
    sale.filled_in_part
        .iter()
        .map(|(sku, asked, got)| ItemFilled {
            sku_id: sku.as_str().to_owned(),
            requested: *asked,
            filled: *got,
        })
        .collect()
}

/// The wire form of an order's fees.
pub fn fee_views(fees: &[(giftcard_core::fees::FeeKind, Money)]) -> Vec<crate::wire::FeeView> {
    fees.iter()
        .map(|(k, m)| crate::wire::FeeView {
            kind: k.code().to_owned(),
            amount: crate::wire::MoneyView::of(*m),
        })
        .collect()
}
