//! The gift card domain as pure, deterministic state machines.
//!
//! A shard's whole state is a [`ShardState`]. A command and a [`Ctx`] (time, sequence, shard)
//! go into `decide`, which either rejects or returns events; `apply` is the only way state
//! changes, and live processing and replay share it. Nothing here reads a clock, a disk, a
//! socket or a random number generator: codes, hashes and sealed secrets arrive as data.
#![forbid(unsafe_code)]
#![deny(clippy::float_arithmetic)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod cancels;
pub mod cards;
pub mod catalog;
pub mod claims;
pub mod commissions;
pub mod deadlines;
pub mod event;
pub mod expiry;
pub mod fees;
pub mod floors;
pub mod ledger;
pub mod liability;
pub mod limits;
pub mod maps;
pub mod money;
pub mod orders;
pub mod placement;
pub mod pools;
pub mod pricelists;
pub mod promotions;
pub mod quotes;
pub mod reports;
pub mod resends;
pub mod reviews;
pub mod risk;
pub mod sales;
pub mod settlement;
pub mod snapshot;
pub mod sourcing;
pub mod spread;
pub mod state;
pub mod wallets;

pub use catalog::{Catalog, Denomination, FxTable, Sku, SkuKind, SkuStatus};
pub use deadlines::Deadline;
pub use event::*;
pub use ledger::{Account, Posting};
pub use money::{convert, Currency, Money};
pub use snapshot::ShardSnapshot;
pub use state::{Decision, ShardState};

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, stamped by the shard; never goes backwards within a shard.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct UnixMillis(pub u64);

/// Position of an event within its shard's history. Order comes from here, never from time.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Lsn(pub u64);

/// A shard's index, `0..shard_count`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct ShardId(pub u16);

/// What the shard hands to `decide`: the only source of time and sequence numbers.
#[derive(Clone, Copy, Debug)]
pub struct Ctx {
    pub now: UnixMillis,
    pub lsn: Lsn,
    pub shard: ShardId,
}

// Ids are shared, not copied: an order's key is held by the order, its claim, its settlement
// entry and the wallet history, and a SKU id by every card sold; `Arc<str>` makes those clones free.
macro_rules! string_id {
    ($(#[$doc:meta] $name:ident),* $(,)?) => {$(
        #[$doc]
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(pub std::sync::Arc<str>);
        impl $name {
            /// Wraps an id that the adapter has already validated.
            pub fn new(s: &str) -> Self { Self(s.into()) }
            /// The id as text.
            pub fn as_str(&self) -> &str { &self.0 }
        }
        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(&self.0) }
        }
    )*};
}

string_id! {
    /// A wallet, chosen by the client that creates it.
    WalletId,
    /// A catalog product.
    SkuId,
    /// An API client (the tenant a key belongs to).
    ClientId,
    /// A supplier of codes.
    SupplierId,
    /// An order id, unique per client.
    OrderId,
    /// A client-chosen idempotency id for deposits and redemptions.
    RequestId,
}

impl WalletId {
    /// What separates the owning client from the client's own id in a stored wallet id:
    /// `{client}~{id}`. Neither a client id nor an id a client chooses may contain it.
    pub const NAMESPACE: char = '~';

    /// The wallet `id` in `client`'s namespace: each tenant's ids are its own, so no tenant can
    /// take, or learn of, another's.
    pub fn scoped(client: &ClientId, id: &str) -> WalletId {
        let mut s = String::with_capacity(client.as_str().len() + 1 + id.len());
        s.push_str(client.as_str());
        s.push(Self::NAMESPACE);
        s.push_str(id);
        WalletId(s.into())
    }

    /// The client's own part: the id after the namespace (the whole id of a wallet created
    /// before namespaces, which has none). Wallets are placed by it, so a wallet and the
    /// namespaced id its owner now gives it live on one shard.
    pub fn local(&self) -> &str {
        self.0
            .split_once(Self::NAMESPACE)
            .map_or(&self.0, |(_, local)| local)
    }

    /// The id as `client` names it: its own part when the wallet is in `client`'s namespace,
    /// the stored id otherwise (a wallet from before namespaces, or another's, to an admin).
    pub fn named_by(&self, client: &ClientId) -> &str {
        match self.0.split_once(Self::NAMESPACE) {
            Some((ns, local)) if ns == client.as_str() => local,
            _ => &self.0,
        }
    }

    /// The client whose namespace holds this id, if it has one.
    pub fn namespace(&self) -> Option<&str> {
        self.0.split_once(Self::NAMESPACE).map(|(client, _)| client)
    }
}

/// A card, engine-generated: the owning shard in the top 16 bits, a per-shard counter below, so a
/// card id alone says where the card lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CardId(pub u64);

impl CardId {
    /// The card id numbered `seq` on `shard`.
    pub fn new(shard: ShardId, seq: u64) -> CardId {
        CardId((u64::from(shard.0) << 48) | (seq & ((1 << 48) - 1)))
    }
    /// The shard that owns this card.
    pub fn shard(self) -> ShardId {
        ShardId((self.0 >> 48) as u16)
    }
}

/// A digest of a request's body, computed by the adapter, to tell a replay from a conflict.
pub type Fingerprint = [u8; 16];

/// Keyed hash of a card code: how redemption finds a card without storing the code in clear.
pub type CodeHash = [u8; 16];

/// An order's idempotency key: unique per client.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OrderKey {
    pub client: ClientId,
    pub order_id: OrderId,
}

/// Who is asking: a tenant, or an admin who may act on any tenant's objects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    pub client: ClientId,
    pub admin: bool,
}

/// An expected business outcome that refuses a command. Recorded, so a retry gets the same answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    #[error("insufficient funds")]
    InsufficientFunds,
    #[error("out of stock")]
    OutOfStock,
    #[error("sku unavailable")]
    SkuUnavailable,
    #[error("region not allowed")]
    RegionNotAllowed,
    #[error("limit exceeded")]
    LimitExceeded,
    #[error("wallet frozen")]
    WalletFrozen,
    #[error("wallet not found")]
    WalletNotFound,
    #[error("wallet already exists")]
    WalletExists,
    #[error("sku not found")]
    SkuNotFound,
    #[error("card not found")]
    CardNotFound,
    #[error("card not active")]
    CardNotActive,
    #[error("insufficient card balance")]
    InsufficientBalance,
    #[error("redemption not found")]
    RedemptionNotFound,
    #[error("redemption already reversed")]
    AlreadyReversed,
    #[error("amount out of range")]
    AmountOutOfRange,
    #[error("currency mismatch")]
    CurrencyMismatch,
    #[error("no fx rate for the currency pair")]
    FxRateMissing,
    #[error("invalid denomination")]
    InvalidDenomination,
    #[error("quantity out of range")]
    QuantityOutOfRange,
    #[error("idempotency key reused with a different request")]
    IdempotencyConflict,
    #[error("not permitted")]
    Forbidden,
    #[error("invalid sku definition")]
    InvalidSku,
    #[error("a different sku with this id exists")]
    SkuExists,
    #[error("the resource changed since the version the request names")]
    VersionMismatch,
    #[error("fx quote not found")]
    QuoteNotFound,
    #[error("the fx quote has expired")]
    QuoteExpired,
    #[error("the fx quote does not price this order (another wallet or currency pair)")]
    QuoteMismatch,
    #[error("invalid price list")]
    InvalidPriceList,
    #[error("the price would be below the card's cost plus its margin floor")]
    BelowMarginFloor,
    #[error("invalid pricing rule")]
    InvalidPricingRule,
    #[error("invalid margin floor")]
    InvalidMarginFloor,
    #[error("invalid commission tiers")]
    InvalidCommissionTiers,
    #[error("invalid sourcing")]
    InvalidSourcing,
    #[error("the order charges more than one order may")]
    OrderLimitExceeded,
    #[error("the wallet has placed as many orders as its velocity limit allows in the window")]
    VelocityOrdersExceeded,
    #[error(
        "the order would take the wallet past the amount its velocity limit allows in the window"
    )]
    VelocityAmountExceeded,
    #[error("the order would take the wallet past its daily cap of cards of one sku")]
    SkuDailyLimitExceeded,
    #[error("the order would take the wallet past its daily cap of cards of one brand")]
    BrandDailyLimitExceeded,
    #[error("the order, or the day's total with it, is above the kyc threshold and the wallet is not verified")]
    KycRequired,
    #[error("invalid limits")]
    InvalidLimits,
    #[error("the card is frozen")]
    CardFrozen,
    #[error("the card's order asked for no delivery: there is nothing to send again")]
    NotDeliverable,
    #[error("the card's delivery was sent again as often as it may be")]
    ResendLimit,
    #[error("the order's risk score is above what is accepted")]
    RiskRejected,
    #[error("invalid expiry policy")]
    InvalidExpiry,
    #[error("the expiry policy gives cards less life than the jurisdiction's minimum")]
    ExpiryBelowMinimum,
    #[error("the card has expired")]
    CardExpired,
    #[error("the order was held for review and a reviewer rejected it")]
    ReviewRejected,
    #[error("the order was held for review and nobody approved it before the review expired")]
    ReviewExpired,
    #[error("the order is not waiting for a review")]
    NotInReview,
    #[error("the card was cancelled")]
    CardCancelled,
    #[error("the card cannot be cancelled: only an issued card nothing was redeemed from, or a supplier's code never delivered, paid in its own currency, is")]
    CardNotCancellable,
}

impl Rejection {
    /// The stable snake_case code used on the wire. Never rename or reuse one.
    pub fn code(self) -> &'static str {
        match self {
            Rejection::InsufficientFunds => "insufficient_funds",
            Rejection::OutOfStock => "out_of_stock",
            Rejection::SkuUnavailable => "sku_unavailable",
            Rejection::RegionNotAllowed => "region_not_allowed",
            Rejection::LimitExceeded => "limit_exceeded",
            Rejection::WalletFrozen => "wallet_frozen",
            Rejection::WalletNotFound => "wallet_not_found",
            Rejection::WalletExists => "wallet_exists",
            Rejection::SkuNotFound => "sku_not_found",
            Rejection::CardNotFound => "card_not_found",
            Rejection::CardNotActive => "card_not_active",
            Rejection::InsufficientBalance => "insufficient_balance",
            Rejection::RedemptionNotFound => "redemption_not_found",
            Rejection::AlreadyReversed => "already_reversed",
            Rejection::AmountOutOfRange => "amount_out_of_range",
            Rejection::CurrencyMismatch => "currency_mismatch",
            Rejection::FxRateMissing => "fx_rate_missing",
            Rejection::InvalidDenomination => "invalid_denomination",
            Rejection::QuantityOutOfRange => "quantity_out_of_range",
            Rejection::IdempotencyConflict => "idempotency_conflict",
            Rejection::Forbidden => "forbidden",
            Rejection::InvalidSku => "invalid_sku",
            Rejection::SkuExists => "sku_exists",
            Rejection::VersionMismatch => "precondition_failed",
            Rejection::QuoteNotFound => "quote_not_found",
            Rejection::QuoteExpired => "quote_expired",
            Rejection::QuoteMismatch => "quote_mismatch",
            Rejection::InvalidPriceList => "invalid_price_list",
            Rejection::BelowMarginFloor => "below_margin_floor",
            Rejection::InvalidPricingRule => "invalid_pricing_rule",
            Rejection::InvalidMarginFloor => "invalid_margin_floor",
            Rejection::InvalidCommissionTiers => "invalid_commission_tiers",
            Rejection::InvalidSourcing => "invalid_sourcing",
            Rejection::OrderLimitExceeded
            | Rejection::VelocityOrdersExceeded
            | Rejection::VelocityAmountExceeded
            | Rejection::SkuDailyLimitExceeded
            | Rejection::BrandDailyLimitExceeded => "limit_exceeded",
            Rejection::KycRequired => "kyc_required",
            Rejection::InvalidLimits => "invalid_limits",
            Rejection::CardFrozen => "card_frozen",
            Rejection::NotDeliverable => "not_deliverable",
            Rejection::ResendLimit => "resend_limit",
            Rejection::RiskRejected => "risk_rejected",
            Rejection::InvalidExpiry => "invalid_expiry",
            Rejection::ExpiryBelowMinimum => "expiry_below_minimum",
            Rejection::CardExpired => "card_expired",
            Rejection::ReviewRejected => "review_rejected",
            Rejection::ReviewExpired => "review_expired",
            Rejection::NotInReview => "not_in_review",
            Rejection::CardCancelled => "card_cancelled",
            Rejection::CardNotCancellable => "card_not_cancellable",
        }
    }

    /// Which limit a `limit_exceeded` refusal names, on the wire.
    pub fn limit(self) -> Option<&'static str> {
        match self {
            Rejection::OrderLimitExceeded => Some("order_max"),
            Rejection::VelocityOrdersExceeded => Some("velocity_orders"),
            Rejection::VelocityAmountExceeded => Some("velocity_amount"),
            Rejection::SkuDailyLimitExceeded => Some("sku_daily_cards"),
            Rejection::BrandDailyLimitExceeded => Some("brand_daily_cards"),
            _ => None,
        }
    }
}

/// Most cards one order may buy (a bulk corporate order).
pub const ORDER_CARDS_MAX: u32 = 10_000;

/// Largest single amount accepted, in minor units: bounds every sum far below `i64::MAX`.
pub const AMOUNT_MINOR_MAX: i64 = 1_000_000_000_000;
