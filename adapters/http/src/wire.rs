//! JSON request and response types of the v1 API. Converted to and from domain types by hand in
//! the handlers; money is always `{amount_minor, currency}`, rates are decimal strings.

use crate::error::Problem;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An amount: integer minor units of an ISO 4217 currency (2500 USD = $25.00). Never a float.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoneyDto {
    /// In requests 1 to 10^12; in views a balance or change, which may be zero or negative.
    pub amount_minor: i64,
    #[schema(example = "USD", min_length = 3, max_length = 3)]
    pub currency: String,
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
    pub wallet_id: String,
    #[serde(default)]
    pub kyc_verified: bool,
}

/// Admin change of a wallet.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWallet {
    pub frozen: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct BalanceView {
    pub currency: String,
    pub available: MoneyDto,
    pub held: MoneyDto,
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
    pub deposit_id: Option<String>,
    pub amount: MoneyDto,
    /// The payment gateway's reference.
    pub reference: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct DepositView {
    pub deposit_id: String,
    pub wallet_id: String,
    pub amount: MoneyDto,
    pub reference: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct TxView {
    pub seq: u64,
    pub at_ms: u64,
    /// deposit, purchase, hold, hold_released
    pub kind: String,
    /// Change of the available balance (negative for purchases and holds).
    pub amount: MoneyDto,
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

/// A catalog entry. Exactly one of `face_value` (fixed) or `face_value_min`+`face_value_max`
/// (open denomination), all in the SKU's currency.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SkuRequest {
    pub sku_id: String,
    pub brand: String,
    pub category: String,
    pub kind: SkuKindDto,
    pub face_value: Option<MoneyDto>,
    pub face_value_min: Option<MoneyDto>,
    pub face_value_max: Option<MoneyDto>,
    /// Discount off face the supplier gives, decimal string in [0, 1): "0.15".
    pub wholesale_discount: String,
    /// Sell price = face × (1 + markup), decimal string; default "0".
    pub markup: Option<String>,
    pub supplier_id: String,
    /// Regions where it may be sold; empty or absent means everywhere.
    pub regions: Option<Vec<String>>,
    pub status: Option<SkuStatusDto>,
    /// Issued SKUs only: how many cards may ever exist.
    pub issue_cap: Option<u64>,
}

/// Changes to a SKU. Kind, currency, supplier and issue cap cannot change.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SkuPatch {
    pub brand: Option<String>,
    pub category: Option<String>,
    pub face_value: Option<MoneyDto>,
    pub face_value_min: Option<MoneyDto>,
    pub face_value_max: Option<MoneyDto>,
    pub wholesale_discount: Option<String>,
    pub markup: Option<String>,
    pub regions: Option<Vec<String>>,
    pub status: Option<SkuStatusDto>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SkuView {
    pub sku_id: String,
    pub brand: String,
    pub category: String,
    pub kind: SkuKindDto,
    pub currency: String,
    pub face_value: Option<MoneyDto>,
    pub face_value_min: Option<MoneyDto>,
    pub face_value_max: Option<MoneyDto>,
    pub wholesale_discount: String,
    pub markup: String,
    pub supplier_id: String,
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
    pub codes: Vec<String>,
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

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliveryDto {
    pub channel: ChannelDto,
    #[serde(default)]
    pub recipient: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderItemDto {
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
    pub order_id: String,
    pub wallet_id: String,
    pub items: Vec<OrderItemDto>,
    pub region: String,
    /// Currency the wallet pays in; the first SKU's currency when absent.
    pub pay_currency: Option<String>,
    pub delivery: DeliveryDto,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct IssuedCard {
    pub card_id: String,
    pub sku_id: String,
    /// The secret code; only ever shown to the buyer in the order response.
    pub code: String,
    pub face_value: MoneyDto,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct OrderView {
    pub order_id: String,
    /// completed or rejected
    pub status: String,
    pub wallet_id: String,
    pub charged: Option<MoneyDto>,
    /// The rejection code of a rejected order.
    pub reason: Option<String>,
    pub cards: Vec<IssuedCard>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// 1 to 100 independent orders.
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
    /// active, redeemed, voided, expired
    pub status: String,
    pub face_value: MoneyDto,
    /// Remaining stored value (issued cards only).
    pub balance: Option<MoneyDto>,
    /// All but the last four characters hidden.
    pub masked_code: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeemRequest {
    /// The idempotency key; or send `Idempotency-Key`.
    pub redemption_id: Option<String>,
    pub code: String,
    pub amount: MoneyDto,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RedemptionView {
    pub redemption_id: String,
    pub card_id: String,
    pub amount: MoneyDto,
    /// redeemed or reversed
    pub status: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BalanceRequest {
    pub code: String,
}

// ---- FX and admin ----

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FxRateDto {
    pub base: String,
    pub quote: String,
    /// Units of `quote` per unit of `base`, decimal string: "1.0850".
    pub mid: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FxTableDto {
    pub rates: Vec<FxRateDto>,
    /// Added to the mid rate on conversions, decimal string in [0, 1): "0.01".
    pub spread: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SalesRow {
    /// SKU id, brand or currency, by table.
    pub key: String,
    pub currency: String,
    pub cards: u64,
    pub revenue: MoneyDto,
    pub margin: MoneyDto,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct StatsView {
    pub by_sku: Vec<SalesRow>,
    pub by_brand: Vec<SalesRow>,
    pub by_currency: Vec<SalesRow>,
    /// FX spread revenue per currency.
    pub fx_revenue: Vec<MoneyDto>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettlementRequest {
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
    pub owed: Vec<MoneyDto>,
    pub orders: Vec<OrderRef>,
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
