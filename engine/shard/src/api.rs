//! What the engine answers with and is asked: errors, outcomes, queries and their answers,
//! and the reports of recovery and the journal. The types adapters match on.

use giftcard_core::state::{Card, OrderRecord, Wallet};
use giftcard_core::*;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Failures and refusals an engine call can end in.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("rejected: {0}")]
    Rejected(Rejection),
    #[error("engine is overloaded")]
    Overloaded,
    #[error("journal storage failed; the engine accepts no more work")]
    Storage,
    #[error("codes already known at positions {0:?}")]
    DuplicateCodes(Vec<usize>),
    #[error("engine is stopping")]
    Stopping,
    /// A bug inside the engine (a decision that does not fit its command, a state that does not
    /// encode). Not a storage failure, and never worth retrying: the same input meets the same bug.
    #[error("internal engine error: {0}")]
    Internal(String),
}

/// A successful answer.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// The command's events (empty for an idempotent replay of a deposit or redemption).
    Applied(Vec<Event>),
    /// A repeated command (a settlement close of a period already closed): the events it was
    /// applied with the first time. Nothing changed.
    Answered(Vec<Event>),
    /// `cards` holds the sold cards for a fresh completion (so the caller needs no second read),
    /// and is empty for replays and rejections.
    Order {
        outcome: OrderOutcome,
        replayed: bool,
        cards: Vec<Card>,
        /// What a completed order earned (price, cost, FX and fees per line), fresh or replayed;
        /// none for rejections and for orders completed before sales were recorded.
        sale: Option<std::sync::Arc<giftcard_core::sales::Sale>>,
        /// The wallet's balances right after the order's events applied (for a replay: as
        /// they are when it is answered), so a caller's fraud engine needs no second read.
        balances: Vec<(giftcard_core::Currency, giftcard_core::state::Balance)>,
    },
    /// A deposit's, redemption's or reversal's answer: its events (none for a repeat, which is
    /// `replayed`) and what it left behind, read in the same pass as its commit, so a caller's
    /// fraud engine needs no second read (for a repeat: as it is when answered).
    Moved {
        events: Vec<Event>,
        replayed: bool,
        after: After,
    },
    Query(QueryAnswer),
}

/// What a deposit, a redemption or a reversal left behind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum After {
    /// The wallet's balances per currency.
    Wallet(Vec<(giftcard_core::Currency, giftcard_core::state::Balance)>),
    /// The card's remaining stored value and its status.
    Card {
        card: CardId,
        balance: Money,
        status: giftcard_core::state::CardStatus,
    },
    /// Nothing to show: a redemption refused before it found a card.
    Nothing,
}

impl Outcome {
    /// The events of an `Applied`, `Answered` or `Moved` answer.
    pub fn events(&self) -> Option<&[Event]> {
        match self {
            Outcome::Applied(e) | Outcome::Answered(e) | Outcome::Moved { events: e, .. } => {
                Some(e)
            }
            Outcome::Order { .. } | Outcome::Query(_) => None,
        }
    }
}

/// What every engine call answers with.
pub type Reply = Result<Outcome, EngineError>;

/// Receives a reply once it may be released (after the flush covering it). Runs on the writer
/// thread: it must only hand the reply on, never block.
pub type ReplyTo = Box<dyn FnOnce(Reply) + Send>;

/// Read-only questions.
#[derive(Clone, Debug)]
pub enum Query {
    Wallet {
        caller: Caller,
        wallet: WalletId,
    },
    Order {
        key: OrderKey,
    },
    Card {
        card: CardId,
    },
    /// An order's risk score (asked of every shard; recorded where the order was decided).
    OrderRisk {
        key: OrderKey,
    },
    /// A card with its delivery round (0 unless it was sent again): what a delivery event of
    /// it is made from.
    CardDelivery {
        card: CardId,
    },
    /// The card with this code, if its brand is one of `brands` (None: any brand).
    CardByCode {
        hash: CodeHash,
        brands: Option<Vec<String>>,
    },
    Cards {
        first: CardId,
        count: u32,
    },
    Skus,
    /// One SKU with its version (how many times it was defined).
    Sku {
        sku: SkuId,
    },
    Fx,
    Totals,
    /// Available and sold codes of every SKU (summed over shards). Read from the pools, which
    /// keep their counters as events apply: the cost grows with the SKUs, not with the cards.
    StockLevels,
    /// Available and sold codes of one SKU (summed over shards).
    Stock {
        sku: SkuId,
    },
    /// Orders waiting for review, oldest first, at most `limit` per shard.
    Reviews {
        limit: usize,
    },
    /// Cards whose delivery was given up, at most `limit` per shard.
    FailedDeliveries {
        limit: usize,
    },
    /// Cards whose delivery failed and is being retried (not given up), at most `limit` per
    /// shard: the outbox schedules their next attempt again after a restart.
    RetryingDeliveries {
        limit: usize,
    },
    /// A wallet's history from entry `after` (entries already seen; the history only grows), at most `limit`.
    WalletHistory {
        caller: Caller,
        wallet: WalletId,
        after: u64,
        limit: usize,
    },
    /// The recorded answer of a client's redemption (asked of every shard), so an idempotent
    /// replay can return the original response.
    Redemption {
        client: ClientId,
        redemption_id: RequestId,
    },
    /// A SKU's pricing rules (replicated: asked of shard 0).
    Pricing {
        sku: SkuId,
    },
    /// The margin floors (replicated: asked of shard 0).
    MarginFloors,
    /// The fee schedule (replicated: asked of shard 0).
    Fees,
    /// A SKU's suppliers beyond its own (replicated: asked of shard 0).
    Sourcing {
        sku: SkuId,
    },
    /// A supplier's commission tiers (replicated: asked of shard 0).
    CommissionTiers {
        supplier: SupplierId,
    },
    /// A SKU's expiry policy (replicated: asked of shard 0).
    ExpiryPolicy {
        sku: SkuId,
    },
    /// The stored value owed on issued cards and the breakage to date, per currency and brand,
    /// after every change at or before `at` (asked of every shard).
    Liability {
        at: UnixMillis,
    },
    /// What a completed order earned (asked of every shard: the wallet's has it).
    Sale {
        key: OrderKey,
    },
    /// The revenue report of `[from, to)` over every shard, grouped `by`.
    Revenue {
        from: UnixMillis,
        to: UnixMillis,
        by: giftcard_core::sales::GroupBy,
    },
    /// A client's B2B price list (replicated: asked of shard 0).
    PriceList {
        client: ClientId,
    },
    /// The limits in force for a wallet and its KYC mark (admin), asked of the wallet's shard.
    WalletLimits {
        caller: Caller,
        wallet: WalletId,
    },
    /// A client's FX quote, asked of the shard of the wallet it was asked for.
    FxQuote {
        client: ClientId,
        wallet: WalletId,
        quote_id: RequestId,
    },
}

/// Answers to queries.
#[derive(Clone, Debug)]
pub enum QueryAnswer {
    Wallet(Box<Wallet>),
    Order(Box<OrderRecord>),
    Card(Box<Card>),
    /// An order's risk score and reasons.
    OrderRisk(giftcard_core::risk::RiskScore),
    /// A card and its delivery round.
    CardDelivery(Box<Card>, u8),
    CardWithId(CardId, Box<Card>),
    Cards(Vec<Card>),
    Skus(Vec<Sku>),
    Sku(Box<Sku>, u64),
    Fx(FxTable),
    Totals(Box<ShardTotals>),
    /// (available, sold) codes.
    Stock {
        available: u64,
        sold: u64,
    },
    History(Vec<state::TxEntry>),
    /// SKU -> (available, sold).
    StockLevels(BTreeMap<SkuId, (u64, u64)>),
    /// Cards, with their ids.
    CardList(Vec<(CardId, Card)>),
    /// Orders waiting for review, oldest first.
    Reviews(Vec<(OrderKey, giftcard_core::reviews::Review)>),
    Redemption(Box<state::RedemptionRecord>),
    FxQuote(Box<giftcard_core::quotes::FxQuote>),
    PriceList(giftcard_core::pricelists::PriceList),
    Pricing(Vec<giftcard_core::promotions::PricingRule>),
    MarginFloors(giftcard_core::floors::MarginFloors),
    Sale(std::sync::Arc<giftcard_core::sales::Sale>),
    Fees(giftcard_core::fees::FeeSchedule),
    Sourcing(giftcard_core::sourcing::Sourcing),
    CommissionTiers(giftcard_core::commissions::CommissionTiers),
    Revenue(giftcard_core::sales::Revenue),
    ExpiryPolicy(giftcard_core::expiry::SkuExpiry),
    Liability(giftcard_core::liability::LiabilityReport),
    WalletLimits(Box<WalletLimits>),
    Missing,
}

/// A wallet's limits as the engine applies them.
#[derive(Clone, Debug)]
pub struct WalletLimits {
    pub limits: giftcard_core::limits::LimitSet,
    /// Whether they are the wallet's own (else the defaults).
    pub own: bool,
    pub kyc_verified: bool,
    /// Who last changed the KYC flag, and when (none: as created).
    pub kyc: Option<giftcard_core::limits::KycMark>,
    /// Per currency, the order or daily total above which the wallet must be verified.
    pub kyc_threshold_minor: Vec<(giftcard_core::Currency, i64)>,
}

/// Sales per SKU.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sales {
    pub cards: u64,
    pub revenue_minor: i64,
    pub margin_minor: i64,
}

/// Stock, sales and ledger figures, per shard or summed.
#[derive(Clone, Debug, Default)]
pub struct ShardTotals {
    /// SKU -> (available, sold).
    pub stock: BTreeMap<SkuId, (u64, u64)>,
    pub sales: BTreeMap<SkuId, Sales>,
    pub ledger: BTreeMap<Account, i64>,
    pub card_liability: BTreeMap<Currency, i64>,
    pub held_orders: u64,
}

impl ShardTotals {
    pub(crate) fn merge(&mut self, o: ShardTotals) {
        for (k, v) in o.stock {
            let e = self.stock.entry(k).or_default();
            e.0 += v.0;
            e.1 += v.1;
        }
        for (k, v) in o.sales {
            let e = self.sales.entry(k).or_default();
            e.cards += v.cards;
            e.revenue_minor += v.revenue_minor;
            e.margin_minor += v.margin_minor;
        }
        for (k, v) in o.ledger {
            *self.ledger.entry(k).or_default() += v;
        }
        for (k, v) in o.card_liability {
            *self.card_liability.entry(k).or_default() += v;
        }
        self.held_orders += o.held_orders;
    }
}

/// One journal frame's events, for the outbox.
#[derive(Clone, Debug)]
pub struct JournalFrame {
    pub seq: u64,
    pub events: Vec<(ShardId, Lsn, Event)>,
}

/// What recovery found and did.
#[derive(Clone, Debug, Default)]
pub struct RecoveryReport {
    pub snapshot_through: u64,
    pub frames_replayed: u64,
    pub records_replayed: u64,
    pub holds_rolled_back: u64,
    pub transfers_completed: u64,
    pub duration: Duration,
}

/// An error with every cause under it ("sled failed during open: No space left on device"): a
/// journal error alone says which step failed, its source says why, and operators need both.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Wal(#[from] giftcard_wal::WalError),
    #[error("data directory was written with {found} shards, configured {configured}; shard placement cannot change")]
    ShardCount { found: u16, configured: u16 },
    #[error("journal record {0}")]
    Decode(String),
    #[error("cannot create {0}: {1}")]
    Dir(PathBuf, std::io::Error),
}
