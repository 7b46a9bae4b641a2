//! Commands (imperatives, what a caller asks) and events (past tense, what happened). Events are
//! self-contained facts: applying one never consults the catalog or a rate, so replay is exact
//! whatever order replicated changes reached a shard in.

use crate::catalog::{FxTable, Sku};
use crate::{
    Caller, CardId, ClientId, CodeHash, Currency, Fingerprint, Money, OrderKey, Rejection,
    RequestId, ShardId, SkuId, SupplierId, UnixMillis, WalletId,
};
use serde::{Deserialize, Serialize};

/// A half-open range of code slots `[start, end)`. A pool is a set of these, so an unsold code
/// costs no memory of its own; the sealed code itself lives in the store under its slot.
pub type SlotRange = (u64, u64);

/// One line of an order as the client asked for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderItem {
    pub sku: SkuId,
    pub quantity: u32,
    /// Face value for open-denomination SKUs, in the SKU's minor units.
    pub amount_minor: Option<i64>,
}

/// Where the cards go once sold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryChannel {
    Email,
    Sms,
    Webhook,
    None,
}

/// A freshly generated code for an issued card, made by the runtime's CSPRNG, already hashed
/// with the redemption key and sealed with the storage key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreshCode {
    pub hash: CodeHash,
    pub sealed: Vec<u8>,
}

/// An order as it reaches the wallet's shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRequest {
    pub key: OrderKey,
    pub admin: bool,
    pub wallet: WalletId,
    pub items: Vec<OrderItem>,
    pub region: String,
    /// Currency the wallet pays in; the first item's SKU currency when absent.
    pub pay_currency: Option<Currency>,
    /// A locked FX quote of the client's that converts the order, instead of the FX table.
    pub fx_quote: Option<RequestId>,
    pub channel: DeliveryChannel,
    pub recipient: String,
    pub fingerprint: Fingerprint,
    /// One per issued card in the order; filled by the runtime, never by the client.
    pub fresh_codes: Vec<FreshCode>,
}

impl OrderRequest {
    /// Cards the order buys in all.
    pub fn card_count(&self) -> u64 {
        self.items.iter().map(|i| u64::from(i.quantity)).sum()
    }
}

/// Commands a shard decides on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Create or replace a catalog entry (replicated).
    DefineSku(Sku),
    /// Define a new SKU: identical to an existing definition it is a replay, different a
    /// conflict (`sku_exists`). Decided on shard 0, like every catalog change.
    CreateSku(Sku),
    /// Change some fields of a SKU inside the engine, so concurrent changes never lose one
    /// another; with `if_version`, only if the SKU is still at that version.
    ChangeSku {
        sku: SkuId,
        if_version: Option<u64>,
        changes: crate::catalog::SkuChanges,
    },
    /// Replace the FX table (replicated).
    SetFx(FxTable),
    /// Add `count` codes already written to the store at slots from `first_slot`; spread over shards.
    AddCodes {
        sku: SkuId,
        supplier: Option<SupplierId>,
        first_slot: u64,
        count: u64,
        shard_count: u16,
    },
    CreateWallet {
        caller: Caller,
        wallet: WalletId,
        kyc_verified: bool,
    },
    Deposit {
        caller: Caller,
        wallet: WalletId,
        deposit_id: RequestId,
        amount: Money,
        reference: String,
        fingerprint: Fingerprint,
    },
    SetWalletFrozen {
        wallet: WalletId,
        frozen: bool,
    },
    /// Record at the order's home shard that the key is taken, before the wallet's shard acts.
    ClaimOrder {
        key: OrderKey,
        fingerprint: Fingerprint,
        wallet_shard: ShardId,
    },
    PlaceOrder(Box<OrderRequest>),
    /// Give up to `want` codes of a SKU to a peer that ran short (saga step on the lender).
    LendStock {
        sku: SkuId,
        want: u64,
        to: ShardId,
    },
    /// Take codes lent by a peer into the local pool (saga step on the borrower).
    ReceiveStock {
        sku: SkuId,
        ranges: Vec<SlotRange>,
        from: ShardId,
    },
    /// Roll back an order's funds hold (stock could not be found, or recovery found it in flight).
    AbortOrder {
        key: OrderKey,
        reason: Rejection,
    },
    Redeem {
        caller: Caller,
        redemption_id: RequestId,
        code: CodeHash,
        amount: Money,
        fingerprint: Fingerprint,
        /// The brands a merchant accepts; None: every brand.
        brands: Option<Vec<String>>,
    },
    ReverseRedemption {
        caller: Caller,
        redemption_id: RequestId,
    },
    /// Let go of a redemption id's claim at its home: the card's shard refused the redemption
    /// without a trace (no such card, or a brand the merchant does not accept), so the id may
    /// be used afresh (say with the code typed correctly). Sent by the card's shard.
    ReleaseRedemptionClaim {
        client: ClientId,
        redemption_id: RequestId,
        fingerprint: Fingerprint,
    },
    /// Replace issued cards' sealed codes with boxes of the same codes under the current key
    /// (drawn by the runtime, which holds the keys); all cards of this shard.
    ResealCodes {
        cards: Vec<(CardId, Vec<u8>)>,
    },
    /// The delivery service's report on one attempt of one card; after `attempts_max` failures
    /// the card's delivery is given up and listed for operators. A report on any attempt but
    /// the current one changes nothing.
    ReportDelivery {
        card: CardId,
        delivered: bool,
        attempt: u8,
        attempts_max: u8,
    },
    /// Close the settlement period on this shard: everything owed to suppliers since the last
    /// close is totalled and reset. Sent to every shard; the adapter merges the shards' totals.
    CloseSettlement {
        period_id: RequestId,
    },
    /// Fire what is due in the shard's deadline index at the decision's time.
    Tick,
    /// Lock the FX table's rate and spread for one wallet and currency pair (a quote), on the
    /// wallet's shard.
    QuoteFx {
        caller: Caller,
        request: crate::quotes::QuoteRequest,
    },
    /// Replace a client's B2B price list (replicated; an empty list removes it).
    SetPriceList {
        client: ClientId,
        list: crate::pricelists::PriceList,
    },
    /// Replace a SKU's pricing rules (replicated; none removes them).
    SetPricing {
        sku: SkuId,
        rules: Vec<crate::promotions::PricingRule>,
    },
}

/// What one shard owes one supplier for a settlement period.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupplierDue {
    pub cards: u64,
    /// Owed per currency, minor units.
    pub owed: Vec<(Currency, i64)>,
    pub orders: Vec<OrderKey>,
}

/// One priced line of a completed order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoldLine {
    pub sku: SkuId,
    pub supplier: SupplierId,
    pub issued: bool,
    pub quantity: u32,
    pub face: Money,
    pub unit_price: Money,
    pub unit_cost: Money,
    /// What the payer was charged for this line, in the pay currency; equal to
    /// `unit_price × quantity` unless the line was converted.
    pub charged: Money,
    /// The charge at the mid rate (the FX revenue is `charged - charged_at_mid`).
    pub charged_at_mid: Money,
    /// Supplier codes taken from the pool, in card order (empty for issued lines).
    pub slots: Vec<SlotRange>,
    /// Issued cards' codes, in card order (empty for supplier-code lines).
    pub issued_codes: Vec<FreshCode>,
}

/// Everything about a completed order that its effects depend on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletedOrder {
    pub key: OrderKey,
    pub fingerprint: Fingerprint,
    pub wallet: WalletId,
    pub charged: Money,
    /// The hold this order captured, if it had to wait for stock.
    pub captured_hold: Option<Money>,
    pub first_card: CardId,
    pub lines: Vec<SoldLine>,
    pub channel: DeliveryChannel,
    pub recipient: std::sync::Arc<str>,
    pub at: UnixMillis,
}

/// Events: what happened. Applying them is the only way state changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    SkuDefined(Sku),
    FxSet(FxTable),
    /// Codes added to a SKU's pool, already split into per-shard slices (replicated).
    CodesAdded {
        sku: SkuId,
        slices: Vec<(ShardId, SlotRange)>,
    },
    WalletCreated {
        wallet: WalletId,
        owner: ClientId,
        kyc_verified: bool,
    },
    Deposited {
        wallet: WalletId,
        deposit_id: RequestId,
        amount: Money,
        reference: String,
        fingerprint: Fingerprint,
        at: UnixMillis,
    },
    WalletFrozenSet {
        wallet: WalletId,
        frozen: bool,
    },
    OrderClaimed {
        key: OrderKey,
        fingerprint: Fingerprint,
        wallet_shard: ShardId,
    },
    FundsHeld {
        key: OrderKey,
        fingerprint: Fingerprint,
        wallet: WalletId,
        amount: Money,
    },
    OrderCompleted(Box<CompletedOrder>),
    OrderRejected {
        key: OrderKey,
        fingerprint: Fingerprint,
        wallet: WalletId,
        reason: Rejection,
        released_hold: Option<Money>,
    },
    /// A held order rolled back without an answer to the client; the key may be used afresh.
    OrderAborted {
        key: OrderKey,
        wallet: WalletId,
        released_hold: Money,
    },
    StockLent {
        sku: SkuId,
        to: ShardId,
        ranges: Vec<SlotRange>,
    },
    StockReceived {
        sku: SkuId,
        from: ShardId,
        ranges: Vec<SlotRange>,
    },
    Redeemed {
        client: ClientId,
        redemption_id: RequestId,
        fingerprint: Fingerprint,
        card: CardId,
        amount: Money,
    },
    RedemptionRejected {
        client: ClientId,
        redemption_id: RequestId,
        fingerprint: Fingerprint,
        reason: Rejection,
    },
    RedemptionReversed {
        client: ClientId,
        redemption_id: RequestId,
        card: CardId,
        amount: Money,
    },
    SettlementClosed {
        period_id: RequestId,
        dues: Vec<(SupplierId, SupplierDue)>,
    },
    /// A delivery attempt's result; `gave_up` when the attempts are exhausted.
    DeliveryReported {
        card: CardId,
        delivered: bool,
        attempt: u8,
        gave_up: bool,
    },
    /// Funds held for an order that must outlive a restart (waiting for a review, a supplier's
    /// purchase): unlike a saga's `FundsHeld`, recovery keeps it, and it is released by itself
    /// (`OrderAborted` from a tick) if nothing settles it by `until`.
    FundsReserved {
        key: OrderKey,
        fingerprint: Fingerprint,
        wallet: WalletId,
        amount: Money,
        until: UnixMillis,
    },
    /// Deadlines that fell due at `at` (a tick); each module forgets or settles what it names.
    Expired {
        fired: Vec<crate::deadlines::Deadline>,
        at: UnixMillis,
    },
    /// A redemption id taken at its home shard and sent on to the shard of the card it names.
    RedemptionClaimed {
        client: ClientId,
        redemption_id: RequestId,
        fingerprint: Fingerprint,
        card_shard: ShardId,
    },
    /// A redemption id's claim let go: its redemption was refused without a trace.
    RedemptionClaimReleased {
        client: ClientId,
        redemption_id: RequestId,
    },
    /// Issued cards' codes sealed again, under the current key (a key rotation): the same codes,
    /// new boxes. Carries only sealed bytes, never a code.
    CodesResealed {
        cards: Vec<(CardId, Vec<u8>)>,
    },
    /// A rate and spread locked for a client's wallet until the quote's expiry.
    FxQuoted {
        client: ClientId,
        quote_id: RequestId,
        quote: crate::quotes::FxQuote,
    },
    /// A client's price list replaced, on every shard.
    PriceListSet {
        client: ClientId,
        list: crate::pricelists::PriceList,
    },
    /// A SKU's pricing rules replaced, on every shard.
    PricingSet {
        sku: SkuId,
        rules: Vec<crate::promotions::PricingRule>,
    },
}

impl Event {
    /// The time an event carries, which advances the shard's clock.
    pub fn at(&self) -> Option<UnixMillis> {
        match self {
            Event::Deposited { at, .. } | Event::Expired { at, .. } => Some(*at),
            Event::OrderCompleted(o) => Some(o.at),
            _ => None,
        }
    }

    /// Replicated events change every shard's copy of the catalog, FX table or pools.
    pub fn is_replicated(&self) -> bool {
        matches!(
            self,
            Event::SkuDefined(_)
                | Event::FxSet(_)
                | Event::CodesAdded { .. }
                | Event::PriceListSet { .. }
                | Event::PricingSet { .. }
        )
    }
}

/// The answer recorded for an order, replayed on retry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderOutcome {
    Completed {
        charged: Money,
        first_card: CardId,
        cards: u32,
    },
    Rejected(Rejection),
}
