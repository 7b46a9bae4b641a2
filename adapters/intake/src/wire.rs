//! JSON request and response types of the v1 API. Converted to and from domain types by hand in
//! the handlers; money is always `{amount_minor, currency}`, rates are decimal strings.

use crate::error::Problem;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An amount: integer minor units of an ISO 4217 currency (2500 USD = $25.00). Never a float.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoneyDto {
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    pub amount_minor: i64,
    #[schema(schema_with = currency_schema)]
    pub currency: String,
}

/// An amount in a response: integer minor units; a balance or a change may be zero or negative.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MoneyView {
    pub amount_minor: i64,
    pub currency: String,
}

impl MoneyView {
    /// Wire form of a domain amount.
    pub fn of(m: giftcard_core::Money) -> MoneyView {
        MoneyView {
            amount_minor: m.minor(),
            currency: m.currency().code().to_owned(),
        }
    }
}

impl MoneyDto {
    /// Wire form of a domain amount (which may be zero or negative in views).
    pub fn of(m: giftcard_core::Money) -> MoneyDto {
        MoneyDto {
            amount_minor: m.minor(),
            currency: m.currency().code().to_owned(),
        }
    }
}

// ---- wallets ----

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWallet {
    /// Your own id for the wallet. An admin may create a client's wallet as `{client}~{id}`.
    #[schema(
        pattern = r"^[A-Za-z0-9._:-]{1,64}(~[A-Za-z0-9._:-]{1,64})?$",
        min_length = 1,
        max_length = 129
    )]
    pub wallet_id: String,
    #[serde(default)]
    pub kyc_verified: bool,
}

/// Admin change of a wallet: freeze or unfreeze it, verify or unverify its KYC (journaled with
/// the admin and the time). At least one of the two.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWallet {
    #[serde(default)]
    pub frozen: Option<bool>,
    #[serde(default)]
    pub kyc_verified: Option<bool>,
}

/// One velocity limit: in any sliding window of `window_ms`, orders paid in `currency` number
/// at most `max_orders` and charge at most `max_amount_minor` together (at least one of them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VelocityDto {
    #[schema(schema_with = currency_schema)]
    pub currency: String,
    #[schema(minimum = 1, maximum = 86_400_000)]
    pub window_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 4_294_967_295_u64)]
    pub max_orders: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    pub max_amount_minor: Option<i64>,
}

/// A wallet's limits. Every part is optional; what is absent does not limit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsDto {
    /// Per pay currency, the most one order may charge (one entry per currency).
    #[serde(default)]
    #[schema(max_items = 200)]
    pub order_max: Vec<MoneyDto>,
    #[serde(default)]
    #[schema(max_items = 16)]
    pub velocity: Vec<VelocityDto>,
    /// Cards of any one SKU the wallet may buy per UTC day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 4_294_967_295_u64)]
    pub sku_daily_cards: Option<u32>,
    /// Cards of any one brand the wallet may buy per UTC day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 4_294_967_295_u64)]
    pub brand_daily_cards: Option<u32>,
}

/// The limits the engine applies to a wallet, and its KYC standing.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct WalletLimitsView {
    pub wallet_id: String,
    /// `wallet`: the wallet's own limits; `defaults`: the engine's configured defaults.
    pub source: String,
    pub limits: LimitsDto,
    pub kyc_verified: bool,
    /// The admin who last verified or unverified the wallet, and when (absent: as created).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kyc_changed_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kyc_changed_at_ms: Option<u64>,
    /// Per currency: an order, or a UTC day's total, above this needs a verified wallet.
    pub kyc_threshold: Vec<MoneyView>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct BalanceView {
    pub currency: String,
    pub available: MoneyView,
    pub held: MoneyView,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct WalletView {
    pub wallet_id: String,
    pub owner: String,
    pub frozen: bool,
    pub kyc_verified: bool,
    pub balances: Vec<BalanceView>,
}

/// A captured payment that funds a wallet. The id may come as `Idempotency-Key` instead.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DepositRequest {
    #[schema(pattern = r"^[A-Za-z0-9._:-]{1,64}$", min_length = 1, max_length = 64, value_type = String, required = true)]
    pub deposit_id: Option<String>,
    pub amount: MoneyDto,
    /// The payment gateway's reference.
    #[schema(
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$",
        min_length = 1,
        max_length = 256
    )]
    pub reference: String,
}

/// A payment gateway's event: the body of its signed webhook (`POST /v1/gateways/{gateway}/events`).
/// Only `payment.succeeded` credits; other types are acknowledged and ignored.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewayEvent {
    #[serde(rename = "type")]
    #[schema(pattern = r"^[a-z0-9._]{1,64}$", min_length = 1, max_length = 64)]
    pub kind: String,
    pub data: GatewayPayment,
}

/// The captured payment a gateway reports: which wallet it funds, how much, its reference.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewayPayment {
    #[schema(pattern = r"^[A-Za-z0-9._:-]{1,64}$", min_length = 1, max_length = 64)]
    pub wallet_id: String,
    pub amount: MoneyDto,
    #[schema(
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$",
        min_length = 1,
        max_length = 256
    )]
    pub reference: String,
}

/// What a gateway's event did: `credited` (with the deposit) or `ignored` (another event type).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct GatewayEventView {
    pub status: String,
    pub deposit: Option<DepositView>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct DepositView {
    pub deposit_id: String,
    pub wallet_id: String,
    pub amount: MoneyView,
    pub reference: String,
    /// The wallet's balances right after the deposit (a replay: as they are now).
    pub balances: Vec<BalanceView>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TxView {
    pub seq: u64,
    pub at_ms: u64,
    /// deposit, purchase, hold, hold_released, fee
    pub kind: String,
    /// Change of the available balance (negative for purchases and holds).
    pub amount: MoneyView,
    pub reference: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TxPage {
    pub transactions: Vec<TxView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

// ---- catalog ----

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SkuKindDto {
    SupplierCode,
    Issued,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SkuStatusDto {
    Active,
    Paused,
}

/// Face value: `{"fixed": money}` or `{"open": {"min": money, "max": money}}`; its currency is
/// the SKU's currency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum DenominationDto {
    Fixed(MoneyDto),
    Open(OpenRangeDto),
}

/// An open denomination: the buyer picks any face value in `[min, max]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenRangeDto {
    pub min: MoneyDto,
    pub max: MoneyDto,
}

/// Face value as shown in views.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DenominationView {
    Fixed(MoneyView),
    Open { min: MoneyView, max: MoneyView },
}

/// A supplier code: 4-128 printable ASCII characters without spaces.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[schema(pattern = r"^[!-~]{4,128}$")]
pub struct SupplierCode(pub String);

/// A region where a SKU may be sold, e.g. "US".
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[schema(pattern = r"^[A-Za-z0-9._:-]{1,64}$")]
pub struct Region(pub String);

/// A catalog entry.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SkuRequest {
    #[schema(pattern = r"^[A-Za-z0-9._:-]{1,64}$", min_length = 1, max_length = 64)]
    pub sku_id: String,
    #[schema(
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$",
        min_length = 1,
        max_length = 256
    )]
    pub brand: String,
    #[schema(
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$",
        min_length = 1,
        max_length = 256
    )]
    pub category: String,
    pub kind: SkuKindDto,
    pub face_value: DenominationDto,
    /// Discount off face the supplier gives, decimal string in [0, 1): "0.15".
    #[schema(pattern = r"^0(\.[0-9]{1,12})?$")]
    pub wholesale_discount: String,
    /// Sell price = face × (1 + markup), decimal string; default "0".
    #[schema(pattern = r"^(-0\.[0-9]{1,12}|[0-9](\.[0-9]{1,12})?|10(\.0{1,12})?)$")]
    pub markup: Option<String>,
    #[schema(pattern = r"^[A-Za-z0-9._:-]{1,64}$", min_length = 1, max_length = 64)]
    pub supplier_id: String,
    /// Regions where it may be sold; empty or absent means everywhere.
    #[schema(max_items = 250)]
    pub regions: Option<Vec<Region>>,
    pub status: Option<SkuStatusDto>,
    /// Issued SKUs only: how many cards may ever exist.
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    pub issue_cap: Option<u64>,
}

/// Changes to a SKU. Kind, currency, supplier and issue cap cannot change.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SkuPatch {
    #[schema(
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$",
        min_length = 1,
        max_length = 256
    )]
    pub brand: Option<String>,
    #[schema(
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$",
        min_length = 1,
        max_length = 256
    )]
    pub category: Option<String>,
    /// In the SKU's currency, which cannot change.
    pub face_value: Option<DenominationDto>,
    #[schema(pattern = r"^0(\.[0-9]{1,12})?$")]
    pub wholesale_discount: Option<String>,
    #[schema(pattern = r"^(-0\.[0-9]{1,12}|[0-9](\.[0-9]{1,12})?|10(\.0{1,12})?)$")]
    pub markup: Option<String>,
    #[schema(max_items = 250)]
    pub regions: Option<Vec<Region>>,
    pub status: Option<SkuStatusDto>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SkuView {
    pub sku_id: String,
    pub brand: String,
    pub category: String,
    pub kind: SkuKindDto,
    pub currency: String,
    pub face_value: DenominationView,
    /// What we pay the supplier: shown to admins and to the SKU's own supplier only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wholesale_discount: Option<String>,
    pub markup: String,
    /// Shown to admins and to the SKU's own supplier only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supplier_id: Option<String>,
    pub regions: Vec<String>,
    pub status: SkuStatusDto,
    pub issue_cap: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SkuList {
    pub skus: Vec<SkuView>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadCodes {
    /// Supplier codes: 4-128 printable ASCII characters each, at most 50,000 per upload.
    #[schema(min_items = 1, max_items = 50000)]
    pub codes: Vec<SupplierCode>,
}

/// Codes of a SKU. Codes are taken atomically when an order completes, so none stay reserved.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct StockView {
    pub sku_id: String,
    pub available: u64,
    pub reserved: u64,
    pub sold: u64,
}

// ---- orders ----

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChannelDto {
    Email,
    Sms,
    Webhook,
    None,
}

/// What an order does when stock is short: `all_or_nothing` (the default) refuses it
/// `out_of_stock`; `fill_available` sells what there is of each line and charges only that.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FulfilmentDto {
    AllOrNothing,
    FillAvailable,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliveryDto {
    pub channel: ChannelDto,
    #[serde(default)]
    #[schema(pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$", max_length = 256)]
    pub recipient: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderItemDto {
    #[schema(pattern = r"^[A-Za-z0-9._:-]{1,64}$", min_length = 1, max_length = 64)]
    pub sku_id: String,
    #[schema(minimum = 1, maximum = 10000)]
    pub quantity: u32,
    /// Face value, only for open-denomination SKUs.
    pub amount: Option<MoneyDto>,
}

/// An order; `order_id` is its idempotency key (unique per API client).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderRequestDto {
    #[schema(pattern = r"^[A-Za-z0-9._:-]{1,64}$", min_length = 1, max_length = 64)]
    pub order_id: String,
    /// Your own wallet's id (an admin may name a client's as `{client}~{id}`).
    #[schema(
        pattern = r"^[A-Za-z0-9._:-]{1,64}(~[A-Za-z0-9._:-]{1,64})?$",
        min_length = 1,
        max_length = 129
    )]
    pub wallet_id: String,
    #[schema(min_items = 1, max_items = 100)]
    pub items: Vec<OrderItemDto>,
    #[schema(pattern = r"^[A-Za-z0-9._:-]{1,64}$", min_length = 1, max_length = 64)]
    pub region: String,
    /// Currency the wallet pays in; the first SKU's currency when absent.
    #[schema(schema_with = optional_currency_schema)]
    pub pay_currency: Option<String>,
    pub delivery: DeliveryDto,
    /// A locked FX quote of yours (`POST /v1/fx/quotes`) for this wallet: the order is
    /// converted exactly at it until it expires, then refused `quote_expired`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^[A-Za-z0-9._:-]{1,64}$", min_length = 1, max_length = 64)]
    pub fx_quote_id: Option<String>,
    /// `fill_available` lets a bulk order sell what there is when stock is short; the answer
    /// says per line what was filled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fulfilment: Option<FulfilmentDto>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct IssuedCard {
    pub card_id: String,
    pub sku_id: String,
    /// The secret code; only ever shown to the buyer in the order response.
    pub code: String,
    pub face_value: MoneyView,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct OrderView {
    pub order_id: String,
    /// completed, rejected or pending_review
    pub status: String,
    pub wallet_id: String,
    /// Everything taken from the wallet: the cards (converted when paid in another currency)
    /// and the fees.
    pub charged: Option<MoneyView>,
    /// The rejection code of a rejected order.
    pub reason: Option<String>,
    pub cards: Vec<IssuedCard>,
    /// What a completed order earned; absent for rejections (and orders from before it was
    /// recorded).
    pub economics: Option<OrderEconomics>,
    /// Per line of the request, the cards asked for and the cards sold (fewer only for a
    /// `fill_available` order that found too little stock); empty for rejections.
    pub items: Vec<ItemFilled>,
    /// In the answer to placing the order: the wallet's balances right after it (a replay:
    /// as they are when it is answered), so a fraud engine needs no second read. Absent when
    /// the order is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balances: Option<Vec<BalanceView>>,
    /// An order waiting for review (`status: pending_review`): what its wallet holds for it,
    /// and when the review expires and releases it if nobody approves or rejects it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<PendingReviewView>,
}

/// What an order waiting for review holds, and until when.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct PendingReviewView {
    pub held: MoneyView,
    pub expires_at_ms: u64,
}

/// One line of an order: asked for and sold.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ItemFilled {
    pub sku_id: String,
    pub requested: u32,
    pub filled: u32,
}

/// What one line of a completed order earned. Per-card amounts are in the SKU's currency,
/// the line's charge and FX spread in the pay currency.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct LineEconomics {
    pub sku_id: String,
    pub quantity: u32,
    pub unit_price: MoneyView,
    pub unit_cost: MoneyView,
    pub unit_margin: MoneyView,
    pub charged: MoneyView,
    pub fx_spread: MoneyView,
}

/// A fee charged with an order: `order`, or `delivery_email` / `delivery_sms` / `delivery_webhook`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct FeeView {
    pub kind: String,
    pub amount: MoneyView,
}

/// An order's price, cost, margin, FX spread and fees, per line and in total. Price, cost and
/// margin totals are per SKU currency; the FX spread and fees are in the pay currency.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct OrderEconomics {
    pub lines: Vec<LineEconomics>,
    pub fees: Vec<FeeView>,
    pub price: Vec<MoneyView>,
    pub cost: Vec<MoneyView>,
    pub margin: Vec<MoneyView>,
    pub fx_spread: MoneyView,
    pub fees_total: MoneyView,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// 1 to 1,000 independent orders.
    #[schema(min_items = 1, max_items = 1000)]
    pub orders: Vec<OrderRequestDto>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchItem {
    pub order_id: String,
    /// The status the order would have had on its own (201, 422, 409...).
    pub status: u16,
    pub order: Option<OrderView>,
    pub problem: Option<Problem>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchView {
    pub results: Vec<BatchItem>,
}

// ---- cards and redemptions ----

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CardView {
    pub card_id: String,
    pub sku_id: String,
    /// active, redeemed, voided, expired, frozen
    pub status: String,
    pub face_value: MoneyView,
    /// Remaining stored value (issued cards only).
    pub balance: Option<MoneyView>,
    /// All but the last four characters hidden.
    pub masked_code: String,
}

/// An order's risk score.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RiskView {
    pub client_id: String,
    pub order_id: String,
    /// The sum of the weights of the rules that held.
    pub score: u32,
    /// The rules that held: velocity, funded_recently, amount_over_history, new_recipient,
    /// shared_recipient, hot_sku.
    pub reasons: Vec<String>,
    pub scored_at_ms: u64,
}

impl RiskView {
    pub fn of(client: &str, order: &str, s: &giftcard_core::risk::RiskScore) -> RiskView {
        RiskView {
            client_id: client.to_owned(),
            order_id: order.to_owned(),
            score: s.score,
            reasons: s.reasons.iter().map(|r| r.code().to_owned()).collect(),
            scored_at_ms: s.at.0,
        }
    }
}

/// An order waiting for review.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ReviewView {
    pub client_id: String,
    pub order_id: String,
    /// The wallet's stored id (`{client}~{id}`).
    pub wallet_id: String,
    /// Why it waits: `risk` (its score is above review_above) or `kyc` (over the KYC
    /// threshold from an unverified wallet).
    pub cause: String,
    /// What the wallet holds for it.
    pub held: MoneyView,
    pub cards: u32,
    /// Its risk score and the rules that held, when it scored.
    pub score: Option<u32>,
    pub reasons: Vec<String>,
    pub placed_at_ms: u64,
    /// When it is released by itself if nobody settles it.
    pub expires_at_ms: u64,
}

/// The review queue.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ReviewsView {
    pub reviews: Vec<ReviewView>,
}

/// A review's end.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ReviewSettledView {
    pub client_id: String,
    pub order_id: String,
    /// The order's status now: completed or rejected.
    pub status: String,
    /// approved or review_rejected.
    pub verdict: String,
}

/// A card's delivery sent again (or found still in flight).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ResendView {
    pub card_id: String,
    /// The delivery round in flight: 0 for the order's own delivery, n after the n-th resend.
    pub round: u8,
    /// False when the card's delivery was still in flight, so nothing was sent again.
    pub resent: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeemRequest {
    /// The idempotency key; or send `Idempotency-Key`.
    #[schema(pattern = r"^[A-Za-z0-9._:-]{1,64}$", min_length = 1, max_length = 64, value_type = String, required = true)]
    pub redemption_id: Option<String>,
    #[schema(pattern = r"^[!-~]{4,128}$", min_length = 4, max_length = 128)]
    pub code: String,
    pub amount: MoneyDto,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RedemptionView {
    pub redemption_id: String,
    pub card_id: String,
    pub amount: MoneyView,
    /// redeemed or reversed
    pub status: String,
    /// The card's remaining stored value right after (a replay: as it is now).
    pub card_balance: MoneyView,
    /// The card's status right after: active, redeemed, frozen, ...
    pub card_status: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BalanceRequest {
    #[schema(pattern = r"^[!-~]{4,128}$", min_length = 4, max_length = 128)]
    pub code: String,
}

// ---- FX and admin ----

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FxRateDto {
    #[schema(schema_with = currency_schema)]
    pub base: String,
    #[schema(schema_with = currency_schema)]
    pub quote: String,
    /// Units of `quote` per unit of `base`, decimal string: "1.0850".
    #[schema(pattern = r"^([1-9][0-9]{0,11}(\.[0-9]{1,12})?|0\.[0-9]{0,11}[1-9][0-9]{0,11})$")]
    pub mid: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FxTableDto {
    #[schema(max_items = 1000)]
    pub rates: Vec<FxRateDto>,
    /// Added to the mid rate on conversions, decimal string in [0, 1): "0.01".
    #[schema(pattern = r"^0(\.[0-9]{1,12})?$")]
    pub spread: String,
}

/// How a pricing rule prices a card.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PriceRuleKind {
    /// The face value.
    Face,
    /// Face × (1 + `percent`).
    FacePercent,
    /// `amount_minor`, in the SKU's currency (fixed denominations only).
    Fixed,
}

/// One pricing rule of a SKU, optionally inside a window: from `from_ms` (inclusive) until
/// `until_ms` (exclusive), by the order's time.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PricingRuleDto {
    pub kind: PriceRuleKind,
    /// For `face_percent`: decimal string in (-1, 10], "-0.05" is 5% off face.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^(-0\.[0-9]{1,12}|[0-9](\.[0-9]{1,12})?|10(\.0{1,12})?)$")]
    pub percent: Option<String>,
    /// For `fixed`: the price, minor units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1000000000000_u64)]
    pub amount_minor: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<u64>,
}

/// A SKU's pricing rules: the first whose window holds at an order's time prices its cards;
/// with none, the SKU's markup does. No rule may sell a card below its cost.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PricingDto {
    #[schema(max_items = 20)]
    pub rules: Vec<PricingRuleDto>,
}

/// One entry of a client's price list: a discount on a SKU's or a brand's cards, from an order
/// line of `min_quantity` cards on.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceEntryDto {
    /// The SKU discounted (give this or `brand`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^[A-Za-z0-9._:-]{1,64}$", min_length = 1, max_length = 64)]
    pub sku_id: Option<String>,
    /// Every SKU of this brand (give this or `sku_id`); any brand a SKU may have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$",
        min_length = 1,
        max_length = 256
    )]
    pub brand: Option<String>,
    /// The tier: the cards an order line must buy for the discount; 1 when absent.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 10000)]
    pub min_quantity: Option<u32>,
    /// Off the catalog price, decimal string in [0, 1): "0.05".
    #[schema(pattern = r"^0(\.[0-9]{1,12})?$")]
    pub discount: String,
}

/// A client's B2B price list. Tiers of one target increase in quantity; no entry may sell a
/// card below its cost.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceListDto {
    #[schema(max_items = 100)]
    pub entries: Vec<PriceEntryDto>,
}

/// One margin floor: the least a SKU's (or a brand's) cards earn over their cost, as a fraction
/// of face value.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarginFloorDto {
    /// The SKU (give this or `brand`); a SKU's own floor wins over its brand's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = r"^[A-Za-z0-9._:-]{1,64}$", min_length = 1, max_length = 64)]
    pub sku_id: Option<String>,
    /// Every SKU of this brand (give this or `sku_id`); any brand a SKU may have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$",
        min_length = 1,
        max_length = 256
    )]
    pub brand: Option<String>,
    /// Of face value, decimal string in [0, 1): "0.02" keeps every sale at least 2% of face
    /// above cost.
    #[schema(pattern = r"^0(\.[0-9]{1,12})?$")]
    pub min_margin: String,
}

/// Every margin floor. Replacing the table keeps price lists and rules set before; orders stop
/// their discounts at the new floors.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarginFloorsDto {
    #[schema(max_items = 1000)]
    pub floors: Vec<MarginFloorDto>,
}

/// A request to lock the FX rate at which a wallet pays for cards priced in another currency.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FxQuoteRequest {
    /// Your id for the quote; asking again with the same body answers the same quote.
    #[schema(pattern = r"^[A-Za-z0-9._:-]{1,64}$", min_length = 1, max_length = 64)]
    pub quote_id: String,
    /// The wallet that will pay (an admin may name a client's as `{client}~{id}`).
    #[schema(
        pattern = r"^[A-Za-z0-9._:-]{1,64}(~[A-Za-z0-9._:-]{1,64})?$",
        min_length = 1,
        max_length = 129
    )]
    pub wallet_id: String,
    /// The currency the cards are priced in.
    #[schema(schema_with = currency_schema)]
    pub from: String,
    /// The currency the wallet pays in.
    #[schema(schema_with = currency_schema)]
    pub to: String,
    /// How long the quote holds, 1 to 900000 ms; 60000 when absent.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 900000)]
    pub ttl_ms: Option<u64>,
}

/// A locked FX quote: orders that name it pay `rate` (mid plus spread) until `expires_at_ms`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct FxQuoteView {
    pub quote_id: String,
    pub wallet_id: String,
    pub from: String,
    pub to: String,
    /// Units of `to` per unit of `from` at mid, decimal string.
    pub mid_rate: String,
    /// Added to the mid rate, decimal string.
    pub spread: String,
    /// What an order is charged per unit: mid × (1 + spread), decimal string.
    pub rate: String,
    /// The last instant (ms since the epoch, inclusive) at which the quote prices an order.
    pub expires_at_ms: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SalesRow {
    /// SKU id, brand or currency, by table.
    pub key: String,
    pub currency: String,
    pub cards: u64,
    pub revenue: MoneyView,
    pub margin: MoneyView,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct StatsView {
    pub by_sku: Vec<SalesRow>,
    pub by_brand: Vec<SalesRow>,
    pub by_currency: Vec<SalesRow>,
    /// FX spread revenue per currency.
    pub fx_revenue: Vec<MoneyView>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettlementRequest {
    #[schema(pattern = r"^[A-Za-z0-9._:-]{1,64}$", min_length = 1, max_length = 64)]
    pub period_id: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct OrderRef {
    pub client: String,
    pub order_id: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SupplierDueView {
    pub supplier_id: String,
    pub cards: u64,
    /// What the codes sold cost, per currency: the volume of the commission tiers.
    pub owed: Vec<MoneyView>,
    /// The supplier's commission by its tiers, per currency (zero without tiers).
    pub commission: Vec<MoneyView>,
    /// What is paid to the supplier: owed less commission.
    pub payable: Vec<MoneyView>,
    pub orders: Vec<OrderRef>,
}

/// The fees of orders paid in one currency, in its minor units (0 or absent: none).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CurrencyFeesDto {
    #[schema(pattern = "^[A-Z]{3}$")]
    pub currency: String,
    /// Charged on every order paid in the currency.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 100000000)]
    pub order_minor: i64,
    /// Charged on orders delivered by e-mail, SMS or webhook (expedited delivery).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 100000000)]
    pub email_minor: i64,
    #[serde(default)]
    #[schema(minimum = 0, maximum = 100000000)]
    pub sms_minor: i64,
    #[serde(default)]
    #[schema(minimum = 0, maximum = 100000000)]
    pub webhook_minor: i64,
}

/// One supplier of a SKU besides its own.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OfferDto {
    #[schema(pattern = r"^[A-Za-z0-9._:-]{1,64}$", min_length = 1, max_length = 64)]
    pub supplier_id: String,
    /// Its discount off face, decimal string in [0, 1): its cost is face × (1 − discount).
    #[schema(pattern = r"^0(\.[0-9]{1,12})?$")]
    pub wholesale_discount: String,
    /// Lower goes first under `priority` routing (and breaks ties under `lowest_cost`).
    #[serde(default)]
    pub priority: u32,
}

/// A SKU's suppliers beyond its own, and how an order picks among them all: `lowest_cost`
/// (default) or `priority`. Each supplier uploads to its own pool; an empty list removes them.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourcingDto {
    #[serde(default)]
    #[schema(pattern = "^(lowest_cost|priority)$")]
    pub routing: Option<String>,
    /// The SKU's own supplier's priority (default 0).
    #[serde(default)]
    pub primary_priority: u32,
    #[schema(max_items = 10)]
    pub offers: Vec<OfferDto>,
}

/// The fee schedule: per pay currency.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeeScheduleDto {
    #[schema(max_items = 200)]
    pub currencies: Vec<CurrencyFeesDto>,
}

/// One commission tier: `rate` on the part of a period's volume from `from_minor` to the next
/// tier's start.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommissionTierDto {
    #[schema(pattern = "^[A-Z]{3}$")]
    pub currency: String,
    #[schema(minimum = 0, maximum = 1000000000000_u64)]
    pub from_minor: i64,
    /// Decimal string in [0, 1): "0.01".
    #[schema(pattern = r"^0(\.[0-9]{1,12})?$")]
    pub rate: String,
}

/// A supplier's commission tiers. Per currency, the first starts at 0 and each starts above the
/// one before; an empty list removes them.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommissionTiersDto {
    #[schema(max_items = 100)]
    pub tiers: Vec<CommissionTierDto>,
}

/// One row of the revenue report, in one currency.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RevenueRowView {
    /// The group (a SKU, brand, supplier, currency, client or `YYYY-MM-DD` day); null for what
    /// the grouping cannot split (order fees by SKU, brand or supplier; commissions by SKU,
    /// brand or client).
    pub group: Option<String>,
    pub currency: String,
    pub cards: u64,
    pub sales_minor: i64,
    pub cost_minor: i64,
    pub margin_minor: i64,
    pub fx_minor: i64,
    pub fees_minor: i64,
    pub commission_minor: i64,
}

/// Revenue over `[from_ms, to_ms)`: its rows, and the totals per currency (equal to what the
/// ledger's revenue accounts took over the window).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RevenueView {
    pub from_ms: u64,
    pub to_ms: u64,
    pub group_by: String,
    pub rows: Vec<RevenueRowView>,
    pub totals: Vec<RevenueRowView>,
}

/// When a SKU's issued cards expire: `never`, `days_after_issue` (with `days`), or
/// `fixed_date` (with `at_ms`). It applies to the cards issued after it is set.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpiryPolicyDto {
    #[schema(pattern = "^(never|days_after_issue|fixed_date)$")]
    pub policy: String,
    /// Days after each card's issue (`days_after_issue`), 1 to 36500.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 36500)]
    pub days: Option<u32>,
    /// The instant every card expires (`fixed_date`), ms since the epoch, in the future.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<u64>,
}

/// A SKU's expiry policy as the engine applies it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ExpiryPolicyView {
    pub sku_id: String,
    pub policy: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<u64>,
    /// The jurisdiction's least life of a card, in days, in force when the policy was set: no
    /// card of it expires sooner after its issue.
    pub min_days: u32,
}

/// Stored value owed on issued cards of one brand in one currency, and its breakage to date.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct LiabilityRowView {
    /// The brand; null in the totals.
    pub brand: Option<String>,
    pub currency: String,
    pub owed_minor: i64,
    pub breakage_minor: i64,
}

/// The liability at `at_ms`: what issued cards still hold (equal to the ledger's card accounts
/// then), and what expired cards left to breakage up to it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct LiabilityView {
    pub at_ms: u64,
    pub rows: Vec<LiabilityRowView>,
    pub totals: Vec<LiabilityRowView>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SettlementView {
    pub period_id: String,
    pub suppliers: Vec<SupplierDueView>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct LedgerCurrency {
    pub currency: String,
    /// Sum over every ledger account in this currency, card liabilities included: always 0.
    pub sum_minor: i64,
    pub card_liability_minor: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ReconciliationView {
    pub ok: bool,
    pub violations: Vec<String>,
    pub shards: u64,
    pub wallets: u64,
    pub orders: u64,
    pub cards: u64,
    pub codes_unsold: u64,
    pub holds_in_flight: u64,
    pub ledger: Vec<LedgerCurrency>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct HealthView {
    pub status: String,
}

// ---- deliveries ----

/// What the delivery service saw for one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatusDto {
    Delivered,
    Failed,
}

/// One delivery attempt's report.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliveryReportRequest {
    pub status: DeliveryStatusDto,
    /// The attempt reported on: the delivery event's `attempt`.
    #[schema(minimum = 1, maximum = 255)]
    pub attempt: u8,
    /// The delivery event's `report_token` for that attempt.
    #[schema(pattern = r"^[0-9a-f]{64}$", min_length = 64, max_length = 64)]
    pub token: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct DeliveryReportView {
    pub card_id: String,
    /// delivered, retrying (the event is re-sent after a backoff), gave_up (listed for
    /// operators), or unchanged (the delivery was already settled; the report changed nothing).
    pub delivery: String,
    /// Which attempt this report counted as (absent when unchanged).
    pub attempt: Option<u8>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct FailedDeliveryView {
    pub card_id: String,
    pub sku_id: String,
    pub client: String,
    pub order_id: String,
    pub failures: u8,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct FailedDeliveriesView {
    pub cards: Vec<FailedDeliveryView>,
}

/// Every active ISO 4217 code the engine accepts, for the `enum` of currency fields.
pub fn currency_codes() -> Vec<String> {
    let letters = b'A'..=b'Z';
    let mut out = Vec::new();
    for a in letters.clone() {
        for b in letters.clone() {
            for c in letters.clone() {
                let code = String::from_utf8(vec![a, b, c]).unwrap_or_default();
                if giftcard_core::Currency::parse(&code).is_some() {
                    out.push(code);
                }
            }
        }
    }
    out
}

/// The schema of an optional currency field: one of the ISO 4217 codes, or null.
pub fn optional_currency_schema() -> utoipa::openapi::Object {
    let mut values: Vec<serde_json::Value> = currency_codes()
        .into_iter()
        .map(serde_json::Value::from)
        .collect();
    values.push(serde_json::Value::Null);
    let types = utoipa::openapi::schema::SchemaType::from_iter([
        utoipa::openapi::schema::Type::String,
        utoipa::openapi::schema::Type::Null,
    ]);
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(types)
        .description(Some("ISO 4217 currency code"))
        .enum_values(Some(values))
        .build()
}

/// The schema of a currency field: one of the ISO 4217 codes.
pub fn currency_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .description(Some("ISO 4217 currency code"))
        .enum_values(Some(currency_codes()))
        .build()
}

impl LimitsDto {
    /// Wire form of a limit set.
    pub fn of(l: &giftcard_core::limits::LimitSet) -> LimitsDto {
        LimitsDto {
            order_max: l
                .order_max
                .iter()
                .map(|(c, m)| MoneyDto::of(giftcard_core::Money::new(*m, *c)))
                .collect(),
            velocity: l
                .velocity
                .iter()
                .map(|v| VelocityDto {
                    currency: v.currency.code().to_owned(),
                    window_ms: v.window_ms,
                    max_orders: v.max_orders,
                    max_amount_minor: v.max_amount_minor,
                })
                .collect(),
            sku_daily_cards: l.sku_daily_cards,
            brand_daily_cards: l.brand_daily_cards,
        }
    }
}
