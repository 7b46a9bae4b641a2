//! JSON payloads the adapter publishes: order results and the outbound events. Converted from
//! domain types by hand; money is `{amount_minor, currency}`. Every event names the shard and
//! lsn it comes from, so a consumer can order a shard's events even across republishing.

use giftcard_intake::error::Problem;
use giftcard_intake::wire::MoneyView;
use serde::{Deserialize, Serialize};

/// The answer to one order message, on `giftcard.results.{client}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OrderResult {
    pub client: String,
    /// Absent when the message was too malformed to carry one.
    pub order_id: Option<String>,
    /// `completed`, `rejected` (a business rule, `reason` says which) or `invalid` (the message
    /// itself is wrong: `problem` says how; it is not retried).
    pub status: String,
    pub reason: Option<String>,
    pub charged: Option<MoneyView>,
    /// Cards are numbered `first_card_id`, `first_card_id + 1`, ... (`card_count` of them);
    /// their codes travel in delivery events or come from `GET /v1/orders/{order_id}`.
    pub first_card_id: Option<String>,
    pub card_count: u32,
    /// An answer recorded earlier for the same order (a redelivery or a duplicate).
    pub replayed: bool,
    pub problem: Option<Problem>,
    /// What a completed order earned: price, cost, margin, FX spread and fees.
    #[serde(default)]
    pub economics: Option<giftcard_intake::wire::OrderEconomics>,
    /// The wallet's balances right after the order, completed or rejected (a replay: as they
    /// are when it is answered); absent when the engine did not decide it.
    #[serde(default)]
    pub balances: Option<Vec<giftcard_intake::wire::BalanceView>>,
}

/// One priced line of a completed order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LineEvent {
    pub sku_id: String,
    pub supplier_id: String,
    pub quantity: u32,
    pub face_value: MoneyView,
    pub unit_price: MoneyView,
    pub charged: MoneyView,
}

/// `giftcard.order.completed`
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OrderCompletedEvent {
    pub event_id: String,
    pub shard: u16,
    pub lsn: u64,
    pub client: String,
    pub order_id: String,
    pub wallet_id: String,
    /// Everything taken from the wallet: the lines and the fees.
    pub charged: MoneyView,
    /// Fees charged with the order (per order, per delivery channel).
    #[serde(default)]
    pub fees: Vec<giftcard_intake::wire::FeeView>,
    pub first_card_id: String,
    pub card_count: u64,
    pub lines: Vec<LineEvent>,
    pub channel: String,
    pub at_ms: u64,
}

/// `giftcard.order.rejected`
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OrderRejectedEvent {
    #[serde(flatten)]
    pub head: OrderEventHead,
    pub reason: String,
}

/// What every event about one order begins with: its stable id (`{shard}-{lsn}`), where it was
/// journaled, and the order and wallet as the client names them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OrderEventHead {
    pub event_id: String,
    pub shard: u16,
    pub lsn: u64,
    pub client: String,
    pub order_id: String,
    pub wallet_id: String,
}

/// `giftcard.order.risk_scored`: an order's risk score above zero, published right after the
/// order's own event (completed, or rejected with `risk_rejected`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OrderRiskEvent {
    #[serde(flatten)]
    pub head: OrderEventHead,
    pub score: u32,
    /// The rules that held: velocity, funded_recently, amount_over_history, new_recipient,
    /// shared_recipient, hot_sku.
    pub reasons: Vec<String>,
    pub scored_at_ms: u64,
}

/// `giftcard.order.pending_review`: an order held for review instead of completing, its
/// charge reserved on the wallet until `expires_at_ms`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OrderPendingReviewEvent {
    #[serde(flatten)]
    pub head: OrderEventHead,
    /// risk or kyc.
    pub cause: String,
    pub held: MoneyView,
    pub cards: u32,
    pub score: Option<u32>,
    pub expires_at_ms: u64,
}

/// `giftcard.order.approved`, `giftcard.order.review_rejected` or
/// `giftcard.order.review_expired`: a review's end. An approved order's
/// `giftcard.order.completed` (and its deliveries) follows it; a rejected or expired one's
/// `giftcard.order.rejected`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OrderReviewSettledEvent {
    #[serde(flatten)]
    pub head: OrderEventHead,
    /// The reviewer's client id; absent when the review expired.
    pub by: Option<String>,
    pub settled_at_ms: u64,
}

/// `giftcard.order.card_cancelled`: one card of an order cancelled, its price back on the
/// wallet (`refund`); the card redeems nothing from then on.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CardCancelledEvent {
    #[serde(flatten)]
    pub head: OrderEventHead,
    pub card_id: String,
    pub refund: MoneyView,
    pub by: String,
    pub cancelled_at_ms: u64,
}

/// `giftcard.delivery.{channel}`: one card to deliver, with its code. A bulk order's cards
/// carry the same `order_id` and `batch_count`, and their `batch_index`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeliveryEvent {
    pub event_id: String,
    pub shard: u16,
    pub lsn: u64,
    pub client: String,
    pub order_id: String,
    pub card_id: String,
    pub sku_id: String,
    /// The code in clear: only when `nats.delivery_codes_in_clear` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The code as a base64 sealed box (libsodium `crypto_box_seal`) to the delivery
    /// consumer's public key; open it with the matching secret key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_code: Option<String>,
    pub face_value: MoneyView,
    pub channel: String,
    pub recipient: String,
    pub batch_index: u64,
    pub batch_count: u64,
    /// 1 for the first sending; a retry after a failed report carries the attempt it is.
    pub attempt: u8,
    /// 0 for the order's own delivery; n for the n-th time the card was sent again on request
    /// (`POST /v1/cards/{id}/resend`), whose attempts count from 1 again.
    #[serde(default)]
    pub round: u8,
    /// What a report on this attempt must carry (with `attempt`): proof that the reporter
    /// received this event, so no one else on the bus can settle the card's delivery.
    pub report_token: String,
}

/// An order a settlement covers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OrderRefEvent {
    pub client: String,
    pub order_id: String,
}

/// `giftcard.settlement.{supplier}`: what one shard owes one supplier for a closed period. A
/// supplier's total is the sum over the period's events of all `shard_count` shards.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SettlementEvent {
    pub event_id: String,
    pub shard: u16,
    pub shard_count: u16,
    pub lsn: u64,
    pub period_id: String,
    pub supplier_id: String,
    pub cards: u64,
    pub owed: Vec<MoneyView>,
    pub orders: Vec<OrderRefEvent>,
}

/// `giftcard.inventory.low_stock`: a SKU's available codes fell below the threshold.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LowStockEvent {
    pub event_id: String,
    pub shard: u16,
    pub lsn: u64,
    pub sku_id: String,
    pub available: u64,
    pub threshold: u64,
}

/// A delivery report on `giftcard.deliveries.report` (the HTTP endpoint takes the same status).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryReportMessage {
    pub card_id: String,
    pub status: giftcard_intake::wire::DeliveryStatusDto,
    /// The delivery event's `attempt` and `report_token`.
    pub attempt: u8,
    pub token: String,
}
