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
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
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
    /// Whether the order may be filled in part when stock is short.
    pub fulfilment: Fulfilment,
    /// Set by the runtime once no peer has more stock to lend: a `FillAvailable` order is then
    /// filled with what there is. Never set by the client.
    pub stock_final: bool,
}

/// What an order does when stock is short.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fulfilment {
    /// The whole order or nothing (`out_of_stock`).
    #[default]
    AllOrNothing,
    /// As many cards of each line as there are, once every peer was asked; the unfilled part
    /// is never charged. Nothing at all is still `out_of_stock`.
    FillAvailable,
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
        /// The delivery round the report's token belongs to (0: the first sending; n: the
        /// n-th resend). A report on an earlier round changes nothing.
        round: u8,
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
    /// Replace the margin floors (replicated).
    SetMarginFloors(crate::floors::MarginFloors),
    /// Replace the fee schedule (replicated).
    SetFees(crate::fees::FeeSchedule),
    /// Book the commissions of a closed settlement period from every shard's dues together, on
    /// shard 0 (the one place that sees a supplier's whole volume): idempotent by period.
    BookCommissions {
        period_id: RequestId,
        /// Each supplier's owed amounts over all shards, per currency.
        volumes: Vec<(SupplierId, Money)>,
    },
    /// Replace a supplier's commission tiers (replicated).
    SetCommissionTiers {
        supplier: SupplierId,
        tiers: crate::commissions::CommissionTiers,
    },
    /// Replace a SKU's suppliers beyond its own (replicated).
    SetSourcing {
        sku: SkuId,
        sourcing: crate::sourcing::Sourcing,
    },
    /// Replace a wallet's own limits (`None`: back to the defaults). Admin only.
    SetWalletLimits {
        caller: Caller,
        wallet: WalletId,
        limits: Option<crate::limits::LimitSet>,
    },
    /// Freeze or unfreeze a card (its buyer's client or an admin).
    SetCardFrozen {
        caller: Caller,
        card: CardId,
        frozen: bool,
    },
    /// Verify or unverify a wallet's KYC. Admin only.
    SetKyc {
        caller: Caller,
        wallet: WalletId,
        verified: bool,
    },
    /// Send a card's delivery again, as a new round of attempts (its buyer's client or an
    /// admin): the recipient lost it, or every attempt failed.
    ResendCard {
        caller: Caller,
        card: CardId,
    },
    /// Set when a SKU's issued cards expire (admin); applies to the cards issued after it.
    SetExpiryPolicy {
        sku: SkuId,
        policy: crate::expiry::ExpiryPolicy,
    },
    /// Cancel an issued card nothing was redeemed from (its buyer's client or an admin): its
    /// price goes back to the wallet.
    CancelCard {
        caller: Caller,
        card: CardId,
    },
    /// Approve or reject an order held for review (admin). Sent to the order's home shard,
    /// which forwards it to the wallet's shard where the review waits.
    SettleReview {
        caller: Caller,
        key: OrderKey,
        approve: bool,
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CompletedOrder {
    pub key: OrderKey,
    pub fingerprint: Fingerprint,
    pub wallet: WalletId,
    /// What the lines were charged, in the pay currency (the fees come on top).
    pub charged: Money,
    /// The hold this order captured, if it had to wait for stock.
    pub captured_hold: Option<Money>,
    pub first_card: CardId,
    pub lines: Vec<SoldLine>,
    pub channel: DeliveryChannel,
    pub recipient: std::sync::Arc<str>,
    pub at: UnixMillis,
    /// Fees charged with the order, in the pay currency (event version 2 on).
    pub fees: Vec<(crate::fees::FeeKind, Money)>,
}

impl CompletedOrder {
    /// Everything taken from the wallet: the lines and the fees.
    pub fn total(&self) -> Money {
        let fees: i64 = self.fees.iter().map(|(_, m)| m.minor()).sum();
        Money::new(
            crate::wallets::sum(self.charged.minor(), fees),
            self.charged.currency(),
        )
    }
}

std::thread_local! {
    /// The event version of the journal record being decoded, while one older than today's is
    /// (see [`decode_version`]); 0 otherwise.
    static DECODING: std::cell::Cell<u8> = const { std::cell::Cell::new(0) };
}

/// Runs `decode` reading events as event version `version` wrote them: version 1 completed
/// orders had no fees, and before version 3 redemptions and reversals had no time. The
/// journal's envelope knows the version of each record; bincode's layout is positional, so the
/// version decides whether a field is there.
pub fn decode_version<T>(version: u8, decode: impl FnOnce() -> T) -> T {
    DECODING.with(|v| v.set(version));
    let out = decode();
    DECODING.with(|v| v.set(0));
    out
}

fn decoding_version_1() -> bool {
    DECODING.with(std::cell::Cell::get) == 1
}

/// A time field that records before event version 3 did not have: read as 0 from them.
fn since_version_3<'de, D: serde::Deserializer<'de>>(d: D) -> Result<UnixMillis, D::Error> {
    match DECODING.with(std::cell::Cell::get) {
        1 | 2 => Ok(UnixMillis(0)),
        _ => UnixMillis::deserialize(d),
    }
}

/// A completed order as event version 1 wrote it; version 2 adds `fees` after it.
#[derive(Deserialize)]
struct CompletedOrderV1 {
    key: OrderKey,
    fingerprint: Fingerprint,
    wallet: WalletId,
    charged: Money,
    captured_hold: Option<Money>,
    first_card: CardId,
    lines: Vec<SoldLine>,
    channel: DeliveryChannel,
    recipient: std::sync::Arc<str>,
    at: UnixMillis,
}

impl CompletedOrderV1 {
    fn with_fees(self, fees: Vec<(crate::fees::FeeKind, Money)>) -> CompletedOrder {
        CompletedOrder {
            key: self.key,
            fingerprint: self.fingerprint,
            wallet: self.wallet,
            charged: self.charged,
            captured_hold: self.captured_hold,
            first_card: self.first_card,
            lines: self.lines,
            channel: self.channel,
            recipient: self.recipient,
            at: self.at,
            fees,
        }
    }
}

impl<'de> Deserialize<'de> for CompletedOrder {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if decoding_version_1() {
            return CompletedOrderV1::deserialize(d).map(|o| o.with_fees(Vec::new()));
        }
        // Version 2 is version 1's fields followed by the fees: to bincode, which lays out a
        // struct and a tuple alike, field after field, that is the pair (version 1, fees).
        <(CompletedOrderV1, Vec<(crate::fees::FeeKind, Money)>)>::deserialize(d)
            .map(|(o, fees)| o.with_fees(fees))
    }
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
        /// When it was decided; 0 in records of event versions before 3, which had no time.
        #[serde(deserialize_with = "since_version_3")]
        at: UnixMillis,
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
        /// As in `Redeemed`.
        #[serde(deserialize_with = "since_version_3")]
        at: UnixMillis,
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
    /// The margin floors replaced, on every shard.
    MarginFloorsSet(crate::floors::MarginFloors),
    /// The fee schedule replaced, on every shard.
    FeesSet(crate::fees::FeeSchedule),
    /// A supplier's commission for a closed period: owed by the supplier, so it comes off what
    /// the platform owes it and goes to `revenue:commission`.
    CommissionBooked {
        period_id: RequestId,
        supplier: SupplierId,
        volume: Money,
        commission: Money,
        at: UnixMillis,
    },
    /// A `fill_available` order filled in part: per line of the request, the cards asked for
    /// and the cards sold. Journaled with (right after) its completion.
    OrderFilledInPart {
        key: OrderKey,
        items: Vec<(SkuId, u32, u32)>,
    },
    /// A supplier's commission tiers replaced, on every shard.
    CommissionTiersSet {
        supplier: SupplierId,
        tiers: crate::commissions::CommissionTiers,
    },
    /// A SKU's suppliers beyond its own replaced, on every shard.
    SourcingSet {
        sku: SkuId,
        sourcing: crate::sourcing::Sourcing,
    },
    /// A wallet's own limits set (`None`: it follows the defaults again), by an admin.
    WalletLimitsSet {
        wallet: WalletId,
        limits: Option<crate::limits::LimitSet>,
        by: ClientId,
        at: UnixMillis,
    },
    /// A card frozen or unfrozen, by whom and when.
    CardFrozenSet {
        card: CardId,
        frozen: bool,
        by: ClientId,
        at: UnixMillis,
    },
    /// A wallet's KYC verified or unverified, by an admin.
    KycSet {
        wallet: WalletId,
        verified: bool,
        by: ClientId,
        at: UnixMillis,
    },
    /// A card's delivery sent again as round `round` (1 for the first resend), by whom and
    /// when: the card's delivery is pending again, from its first attempt.
    DeliveryResent {
        card: CardId,
        round: u8,
        by: ClientId,
        at: UnixMillis,
    },
    /// An order's risk score above zero, with its reasons, in the order's own commit (whether
    /// it completed or was refused for it).
    RiskScored {
        key: OrderKey,
        wallet: WalletId,
        score: crate::risk::RiskScore,
    },
    /// A SKU's expiry policy, with the jurisdiction's minimum in force when it was set.
    ExpiryPolicySet {
        sku: SkuId,
        expiry: crate::expiry::SkuExpiry,
    },
    /// An issued card reached its expiry instant: its `remaining` balance moves to
    /// `revenue:breakage` and the card is `expired`.
    CardExpired {
        card: CardId,
        remaining: Money,
        at: UnixMillis,
    },
    /// An order held for review instead of completing: its funds are reserved (a
    /// `FundsReserved` in the same commit), its supplier codes leave the pool and its card ids
    /// are taken, until a reviewer approves it (`ReviewSettled` then `OrderCompleted` of this
    /// very order), rejects it or the review expires (`ReviewSettled` then `OrderRejected`).
    OrderPendingReview(Box<crate::reviews::PendingReview>),
    /// A card cancelled: `refund` (what it was sold for) goes back to `wallet` and the margin it
    /// made is taken back. An issued card's whole `face` leaves it; a supplier's code that was
    /// never delivered goes back to its pool (`restock`) and the supplier is owed its cost no
    /// more.
    CardCancelled {
        card: CardId,
        order: OrderKey,
        wallet: WalletId,
        refund: Money,
        face: Money,
        restock: Option<crate::cancels::Restock>,
        by: ClientId,
        at: UnixMillis,
    },
    /// A review's end, just before the order's outcome in the same commit.
    ReviewSettled {
        key: OrderKey,
        wallet: WalletId,
        verdict: crate::reviews::Verdict,
        /// The reviewer; none when the review expired.
        by: Option<ClientId>,
        at: UnixMillis,
    },
}

impl Event {
    /// The time an event carries, which advances the shard's clock.
    pub fn at(&self) -> Option<UnixMillis> {
        match self {
            Event::Deposited { at, .. }
            | Event::Expired { at, .. }
            | Event::CommissionBooked { at, .. }
            | Event::WalletLimitsSet { at, .. }
            | Event::KycSet { at, .. }
            | Event::CardFrozenSet { at, .. }
            | Event::DeliveryResent { at, .. }
            | Event::CardExpired { at, .. }
            | Event::ReviewSettled { at, .. }
            | Event::CardCancelled { at, .. } => Some(*at),
            // Records written before these carried a time read as 0, which advances nothing.
            Event::Redeemed { at, .. } | Event::RedemptionReversed { at, .. } if at.0 > 0 => {
                Some(*at)
            }
            Event::RiskScored { score, .. } => Some(score.at),
            Event::OrderCompleted(o) => Some(o.at),
            Event::OrderPendingReview(p) => Some(p.order.at),
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
                | Event::MarginFloorsSet(_)
                | Event::FeesSet(_)
                | Event::CommissionTiersSet { .. }
                | Event::SourcingSet { .. }
                | Event::ExpiryPolicySet { .. }
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
    /// Held for review: `held` is reserved on the wallet until `until`, when the review
    /// expires if nobody settled it. Never recorded: read from the review while it waits.
    PendingReview {
        held: Money,
        until: UnixMillis,
    },
}
