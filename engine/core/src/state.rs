//! One shard's state: a thin composite of the concern modules (catalog, wallets, pools, orders,
//! cards, settlement, reports, deadlines), with `decide` (pure, no mutation) dispatching each
//! command to the module that owns it and `apply` (the only mutation) handing each event to
//! every module, which takes its own part. Live processing and replay share `apply`.

use crate::cards::Cards;
use crate::catalog::Catalog;
use crate::deadlines::Deadlines;
use crate::orders::Orders;
use crate::pools::Pools;
use crate::reports::Reports;
use crate::settlement::Settlement;
use crate::wallets::{Applied, Wallets};
use crate::*;

pub use crate::cards::{Card, CardStatus, CodeRef, Delivery, RedemptionRecord};
pub use crate::maps::{HashMap, SpreadMap};
pub use crate::orders::{Hold, OrderRecord};
pub use crate::placement::shard_for;
pub use crate::pools::Pool;
pub use crate::reports::SkuSales;
pub use crate::snapshot::{ShardSnapshot, SnapshotError};
pub use crate::wallets::{Balance, TxEntry, TxKind, Wallet};

/// What `decide` concluded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Journal and apply these events, then answer.
    Events(Vec<Event>),
    /// Refused without a trace: nothing changes, nothing is recorded.
    Reject(Rejection),
    /// Done before (a replayed deposit, redemption, wallet creation, delivery report or
    /// settlement close): answer with the events that did it, when the answer needs them;
    /// nothing is journaled again. The one way a replay is expressed.
    Answered(Vec<Event>),
    /// The order key was answered before: the original outcome.
    Replay(OrderOutcome),
    /// The order belongs to the wallet's shard; journal `claim` (if any) here, then forward.
    Forward { claim: Option<Event>, to: ShardId },
    /// Local stock is short: journal the hold, then borrow `missing` from peers.
    NeedStock {
        hold: Event,
        missing: Vec<(SkuId, u64)>,
    },
    /// Every check passed and the order issues cards with these ids: the runtime draws their
    /// codes (randomness stays outside the core), seals each bound to its card, puts them in
    /// `fresh_codes` in this order and decides again.
    NeedCodes(Vec<CardId>),
}

/// Everything one shard owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardState {
    pub(crate) shard: ShardId,
    pub(crate) shard_count: u16,
    pub(crate) last_lsn: Lsn,
    /// Time of the last applied event that carries one (the shard's clock for history).
    pub(crate) last_at: UnixMillis,
    pub(crate) catalog: Catalog,
    pub(crate) wallets: Wallets,
    pub(crate) pools: Pools,
    pub(crate) orders: Orders,
    pub(crate) cards: Cards,
    pub(crate) settlement: Settlement,
    pub(crate) reports: Reports,
    pub(crate) deadlines: Deadlines,
    pub(crate) redemption_claims: crate::claims::RedemptionClaims,
    pub(crate) quotes: crate::quotes::FxQuotes,
    pub(crate) price_lists: crate::pricelists::PriceLists,
    pub(crate) promotions: crate::promotions::Promotions,
    pub(crate) floors: crate::floors::MarginFloors,
    pub(crate) fees: crate::fees::FeeSchedule,
    pub(crate) commissions: crate::commissions::Commissions,
    pub(crate) sales: crate::sales::Sales,
    pub(crate) sourcing: crate::sourcing::Sourcings,
    pub(crate) limits: crate::limits::Limits,
    pub(crate) resends: crate::resends::Resends,
    pub(crate) risk: crate::risk::Risk,
    pub(crate) reviews: crate::reviews::Reviews,
    pub(crate) expiry: crate::expiry::ExpiryPolicies,
    pub(crate) liability: crate::liability::Liability,
}

impl ShardState {
    /// An empty shard.
    pub fn new(shard: ShardId, shard_count: u16) -> ShardState {
        ShardState {
            shard,
            shard_count,
            last_lsn: Lsn(0),
            last_at: UnixMillis(0),
            catalog: Catalog::default(),
            wallets: Wallets::default(),
            pools: Pools::default(),
            orders: Orders::default(),
            cards: Cards::default(),
            settlement: Settlement::default(),
            reports: Reports::default(),
            deadlines: Deadlines::default(),
            redemption_claims: Default::default(),
            quotes: Default::default(),
            price_lists: Default::default(),
            promotions: Default::default(),
            floors: Default::default(),
            fees: Default::default(),
            commissions: Default::default(),
            sales: Default::default(),
            sourcing: Default::default(),
            limits: Default::default(),
            resends: Default::default(),
            risk: Default::default(),
            reviews: Default::default(),
            expiry: Default::default(),
            liability: Default::default(),
        }
    }

    /// This shard's index.
    pub fn shard(&self) -> ShardId {
        self.shard
    }

    /// Shards of the engine.
    pub fn shard_count(&self) -> u16 {
        self.shard_count
    }

    /// The sequence of the last event applied here.
    pub fn last_lsn(&self) -> Lsn {
        self.last_lsn
    }

    /// The shard's clock: the latest time an applied event carried.
    pub fn last_at(&self) -> UnixMillis {
        self.last_at
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Whether a merchant accepting `brands` (None: every brand) may see and redeem `card`:
    /// its SKU's brand is one of them. To a merchant of other brands the card does not exist.
    pub fn brand_accepts(&self, brands: Option<&[String]>, card: &Card) -> bool {
        match brands {
            None => true,
            Some(list) => self
                .catalog
                .sku(&card.sku)
                .is_some_and(|sku| list.contains(&sku.brand)),
        }
    }

    pub fn wallets(&self) -> &Wallets {
        &self.wallets
    }

    pub fn pools(&self) -> &Pools {
        &self.pools
    }

    pub fn orders(&self) -> &Orders {
        &self.orders
    }

    pub fn cards(&self) -> &Cards {
        &self.cards
    }

    pub fn redemption_claims(&self) -> &crate::claims::RedemptionClaims {
        &self.redemption_claims
    }

    /// Every SKU's pricing rules (replicated).
    pub fn promotions(&self) -> &crate::promotions::Promotions {
        &self.promotions
    }

    /// Every SKU's and brand's margin floor (replicated).
    pub fn floors(&self) -> &crate::floors::MarginFloors {
        &self.floors
    }

    /// The fee schedule (replicated).
    pub fn fees(&self) -> &crate::fees::FeeSchedule {
        &self.fees
    }

    /// Every supplier's commission tiers (replicated).
    pub fn commissions(&self) -> &crate::commissions::Commissions {
        &self.commissions
    }

    /// Every SKU's suppliers beyond its own (replicated).
    pub fn sourcing(&self) -> &crate::sourcing::Sourcings {
        &self.sourcing
    }

    /// The limits and KYC marks of the wallets on this shard, and what they completed lately.
    pub fn limits(&self) -> &crate::limits::Limits {
        &self.limits
    }

    /// The risk scores of this shard's orders and what the rules read of its wallets.
    pub fn risk(&self) -> &crate::risk::Risk {
        &self.risk
    }

    /// The orders of this shard waiting for review.
    pub fn reviews(&self) -> &crate::reviews::Reviews {
        &self.reviews
    }

    /// The risk scoring rules: a runtime setting (decisions only, never replay).
    pub fn set_scoring(&mut self, scoring: std::sync::Arc<crate::risk::Scoring>) {
        self.risk.scoring = scoring;
    }

    /// The delivery rounds of the cards on this shard that were sent again.
    pub fn resends(&self) -> &crate::resends::Resends {
        &self.resends
    }

    /// The default limits and KYC thresholds: a runtime setting (decisions only, never replay).
    pub fn set_risk_policy(&mut self, policy: std::sync::Arc<crate::limits::RiskPolicy>) {
        self.limits.policy = policy;
    }

    /// What each order completed here earned, and the commissions booked here.
    pub fn sales(&self) -> &crate::sales::Sales {
        &self.sales
    }

    /// The state without its sales: what a snapshot of a format from before sales were
    /// recorded (formats 1 and 2) holds of the same history. For comparing the two.
    pub fn without_sales(mut self) -> ShardState {
        self.sales = Default::default();
        self
    }

    /// The state without its limits section: what a snapshot of a format from before limits
    /// (formats 1 and 2, and sections written before issue 15) holds of the same history. A
    /// data directory upgraded from one counts, for its limits, only orders from then on.
    pub fn without_limits(mut self) -> ShardState {
        let policy = self.limits.policy.clone();
        self.limits = Default::default();
        self.limits.policy = policy;
        self
    }

    /// The state without its risk section: what a snapshot of a format from before risk
    /// scores loads as (its wallets' histories, for the rules, count from then on).
    pub fn without_risk(mut self) -> ShardState {
        let scoring = self.risk.scoring.clone();
        self.risk = Default::default();
        self.risk.scoring = scoring;
        self
    }

    /// Every client's B2B price list (replicated).
    pub fn price_lists(&self) -> &crate::pricelists::PriceLists {
        &self.price_lists
    }

    /// The locked FX quotes of the wallets on this shard.
    pub fn quotes(&self) -> &crate::quotes::FxQuotes {
        &self.quotes
    }

    pub fn settlement(&self) -> &Settlement {
        &self.settlement
    }

    pub fn reports(&self) -> &Reports {
        &self.reports
    }

    pub fn deadlines(&self) -> &Deadlines {
        &self.deadlines
    }

    /// How long a rejected order's answer is replayed before its id may be used afresh, in ms
    /// (0: for ever). A runtime setting: rejections applied from now on are indexed with it.
    pub fn set_rejection_window_ms(&mut self, ms: u64) {
        self.deadlines.rejection_window_ms = ms;
    }

    /// The SKUs' expiry policies.
    pub fn expiry(&self) -> &crate::expiry::ExpiryPolicies {
        &self.expiry
    }

    /// Sets the jurisdiction's least life of a card, in days, for policies set from now on.
    pub fn set_expiry_min_days(&mut self, days: u32) {
        self.expiry.min_days = days;
    }

    /// The stored value owed on this shard's issued cards, and their breakage, over time.
    pub fn liability(&self) -> &crate::liability::Liability {
        &self.liability
    }

    /// A liability history that starts now from the cards' balances (for states written
    /// before the history was kept).
    pub(crate) fn liability_from_cards(&self) -> crate::liability::Liability {
        crate::liability::Liability::from_cards(&self.cards, &self.catalog, self.last_at)
    }

    /// The state with its liability history replaced by one point now from the cards' balances,
    /// as a snapshot written before the history was kept loads (for tests of old formats).
    pub fn with_liability_from_cards(mut self) -> ShardState {
        self.liability = self.liability_from_cards();
        self
    }

    /// The state's canonical bytes, in sections (see `snapshot`).
    pub fn encode(&self) -> Result<ShardSnapshot, SnapshotError> {
        crate::snapshot::encode(self)
    }

    /// A state from bytes written by [`ShardState::encode`], of this build or an older one.
    pub fn decode(bytes: &[u8]) -> Result<ShardState, SnapshotError> {
        crate::snapshot::decode(bytes)
    }

    /// Rebuilds what is derived from the state and not serialized (after loading a snapshot).
    pub(crate) fn rebuild_derived(&mut self) {
        self.catalog.rebuild_derived();
        self.deadlines.rebuild_derived();
        self.sourcing.rebuild_derived();
    }

    /// Where a wallet lives.
    pub fn wallet_shard(&self, wallet: &WalletId) -> ShardId {
        placement::wallet_shard(wallet, self.shard_count)
    }

    /// Decides a command against the current state. Never mutates.
    pub fn decide(&self, cmd: &Command, ctx: &Ctx) -> Decision {
        match cmd {
            Command::DefineSku(sku) => {
                self.catalog
                    .decide_define_sku(&self.pools, sku, self.shard_count)
            }
            Command::CreateSku(sku) => {
                self.catalog
                    .decide_create_sku(&self.pools, sku, self.shard_count)
            }
            Command::ChangeSku {
                sku,
                if_version,
                changes,
            } => self.catalog.decide_change_sku(
                &self.pools,
                sku,
                *if_version,
                changes,
                self.shard_count,
            ),
            Command::SetFx(fx) => Catalog::decide_set_fx(fx),
            Command::AddCodes {
                sku,
                supplier,
                first_slot,
                count,
                shard_count,
            } => match self
                .sourcing
                .pool_for(&self.catalog, sku, supplier.as_ref())
            {
                Ok(pool) => self
                    .pools
                    .decide_add_codes(&pool, *first_slot, *count, *shard_count),
                Err(r) => Decision::Reject(r),
            },
            Command::CreateWallet {
                caller,
                wallet,
                kyc_verified,
            } => self
                .wallets
                .decide_create(caller, wallet, *kyc_verified, &self.limits),
            Command::Deposit {
                caller,
                wallet,
                deposit_id,
                amount,
                reference,
                fingerprint,
            } => self.wallets.decide_deposit(
                caller,
                wallet,
                deposit_id,
                *amount,
                reference,
                *fingerprint,
                ctx.now,
            ),
            Command::SetWalletFrozen { wallet, frozen } => {
                self.wallets.decide_frozen(wallet, *frozen)
            }
            Command::ClaimOrder {
                key,
                fingerprint,
                wallet_shard,
            } => Orders::decide_claim(key, *fingerprint, *wallet_shard),
            Command::PlaceOrder(req) => self.decide_order(req, ctx),
            Command::LendStock { sku, want, to } => self.pools.decide_lend(sku, *want, *to),
            Command::ReceiveStock { sku, ranges, from } => {
                Decision::Events(vec![Event::StockReceived {
                    sku: sku.clone(),
                    from: *from,
                    ranges: ranges.clone(),
                }])
            }
            Command::AbortOrder { key, reason } => self.orders.decide_abort(key, *reason),
            Command::Redeem {
                caller,
                redemption_id,
                code,
                amount,
                fingerprint,
                brands,
            } => {
                // The id's claim, kept here when this is its home: a retry goes where the first
                // request went, another request under the id is a conflict.
                if let Some((fp, to)) = self.redemption_claims.get(&caller.client, redemption_id) {
                    return if fp == fingerprint {
                        Decision::Forward {
                            claim: None,
                            to: *to,
                        }
                    } else {
                        Decision::Reject(Rejection::IdempotencyConflict)
                    };
                }
                let card_shard = crate::placement::shard_for(code, self.shard_count);
                if card_shard != self.shard
                    && self
                        .cards
                        .redemption(&caller.client, redemption_id)
                        .is_none()
                {
                    return Decision::Forward {
                        claim: Some(Event::RedemptionClaimed {
                            client: caller.client.clone(),
                            redemption_id: redemption_id.clone(),
                            fingerprint: *fingerprint,
                            card_shard,
                        }),
                        to: card_shard,
                    };
                }
                // A card of a brand the merchant does not accept is not found, before anything
                // about it (or a recorded answer) is revealed or written.
                if let Some((_, card)) = self.cards.by_code(code) {
                    if !self.brand_accepts(brands.as_deref(), card) {
                        return Decision::Reject(Rejection::CardNotFound);
                    }
                }
                self.cards.decide_redeem(
                    caller,
                    redemption_id,
                    code,
                    *amount,
                    *fingerprint,
                    ctx.now,
                    |card, now| self.deadlines.card_expired_by(card, now),
                )
            }
            Command::ReverseRedemption {
                caller,
                redemption_id,
            } => self
                .cards
                .decide_reversal(caller, redemption_id, ctx.now, |card, now| {
                    self.deadlines.card_expired_by(card, now)
                }),
            // A report on an earlier round of a card that was sent again is not about the
            // delivery in flight.
            Command::ReportDelivery { card, round, .. } if *round != self.resends.round(card) => {
                Decision::Answered(vec![])
            }
            Command::ReportDelivery {
                card,
                delivered,
                attempt,
                attempts_max,
                ..
            } => self
                .cards
                .decide_delivery(*card, *delivered, *attempt, *attempts_max),
            Command::ResealCodes { cards } => self.cards.decide_reseal(self.shard, cards),
            Command::ReleaseRedemptionClaim {
                client,
                redemption_id,
                fingerprint,
            } => self
                .redemption_claims
                .decide_release(client, redemption_id, fingerprint),
            Command::CloseSettlement { period_id } => self.settlement.decide_close(period_id),
            Command::Tick => self.deadlines.decide_tick(self, ctx.now),
            Command::QuoteFx { caller, request } => {
                self.quotes.decide_quote(self, caller, request, ctx.now)
            }
            Command::SetPriceList { client, list } => {
                crate::pricelists::PriceLists::decide_set(&self.catalog, &self.floors, client, list)
            }
            Command::SetPricing { sku, rules } => {
                crate::promotions::Promotions::decide_set(&self.catalog, &self.floors, sku, rules)
            }
            Command::SetMarginFloors(f) => crate::floors::MarginFloors::decide_set(f),
            Command::SetFees(f) => crate::fees::FeeSchedule::decide_set(f),
            Command::SetCommissionTiers { supplier, tiers } => {
                crate::commissions::Commissions::decide_set(supplier, tiers)
            }
            Command::SetSourcing { sku, sourcing } => {
                crate::sourcing::Sourcings::decide_set(&self.catalog, sku, sourcing)
            }
            Command::BookCommissions { period_id, volumes } => {
                self.commissions
                    .decide_book(&self.sales, period_id, volumes, ctx.now)
            }
            Command::SetWalletLimits {
                caller,
                wallet,
                limits,
            } => crate::limits::Limits::decide_set(self, caller, wallet, limits, ctx.now),
            Command::SetCardFrozen {
                caller,
                card,
                frozen,
            } => self.cards.decide_frozen(caller, *card, *frozen, ctx.now),
            Command::SetKyc {
                caller,
                wallet,
                verified,
            } => crate::limits::Limits::decide_kyc(self, caller, wallet, *verified, ctx.now),
            Command::ResendCard { caller, card } => {
                crate::resends::Resends::decide(self, caller, *card, ctx.now)
            }
            Command::SetExpiryPolicy { sku, policy } => {
                self.expiry.decide_set(&self.catalog, sku, *policy, ctx.now)
            }
            Command::CancelCard { caller, card } => {
                crate::cancels::decide(self, caller, *card, ctx.now)
            }
            Command::SettleReview {
                caller,
                key,
                approve,
            } => crate::reviews::Reviews::decide_settle(self, caller, key, *approve, ctx.now),
        }
    }

    /// Decides an order; the same as `decide(&Command::PlaceOrder(..))` without boxing a copy.
    pub fn decide_order(&self, req: &OrderRequest, ctx: &Ctx) -> Decision {
        orders::decide_order(self, req, ctx)
    }

    /// Applies one event. Cannot fail: a journal that does not fit the state is a bug.
    pub fn apply(&mut self, event: &Event, lsn: Lsn) {
        debug_assert!(
            lsn > self.last_lsn || event.is_replicated() || lsn == Lsn(0),
            "lsn went backwards"
        );
        self.last_lsn = self.last_lsn.max(lsn);
        if let Some(at) = event.at() {
            self.last_at = self.last_at.max(at);
        }
        let cx = Applied {
            lsn,
            at: self.last_at,
        };
        // The limits keep the flag a wallet was created with: read it before the wallets apply.
        let kyc_before = match event {
            Event::KycSet { wallet, .. } => self.wallets.get(wallet).map(|w| w.kyc_verified),
            _ => None,
        };
        // A review takes its order's codes and card ids while it waits, and gives the codes
        // back when it ends (an approval's `OrderCompleted` then takes them like any order's).
        match event {
            Event::OrderPendingReview(p) => {
                let pools = self.pools.pools_of(&p.order);
                for (line, pool) in p.order.lines.iter().zip(&pools) {
                    for r in &line.slots {
                        self.pools.reserve(pool, *r);
                    }
                }
                self.cards.reserve_ids(&p.order);
                self.reviews.start(p, pools);
            }
            Event::ReviewSettled { key, .. } => {
                if let Some(r) = self.reviews.end(key) {
                    for (pool, range) in r.reserved() {
                        self.pools.unreserve(pool, *range);
                    }
                }
            }
            Event::CardCancelled {
                restock: Some(r), ..
            } => self.pools.restock(&r.pool, r.slot),
            _ => {}
        }
        self.reports.apply(event);
        self.catalog.apply(event);
        self.pools.apply(event, self.shard);
        self.wallets.apply(event, cx);
        self.orders.apply(event, cx.at);
        self.cards.apply(event);
        self.settlement.apply(event);
        self.deadlines.apply(event, cx.at, &self.expiry);
        self.redemption_claims.apply(event);
        self.quotes.apply(event);
        self.price_lists.apply(event);
        self.promotions.apply(event);
        self.floors.apply(event);
        self.fees.apply(event);
        self.commissions.apply(event);
        self.sourcing.apply(event);
        self.limits.apply(event, kyc_before, &self.catalog);
        self.resends.apply(event);
        self.risk.apply(event, cx.at);
        self.expiry.apply(event);
        self.liability
            .apply(event, cx.at, &self.cards, &self.catalog);
        let owner = match event {
            Event::OrderCompleted(o) => self.wallets.get(&o.wallet).map(|w| &w.owner),
            Event::CardCancelled { wallet, .. } => self.wallets.get(wallet).map(|w| &w.owner),
            _ => None,
        };
        self.sales.apply(event, owner, &self.cards);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Account;
    use rust_decimal::Decimal;

    fn usd(minor: i64) -> Money {
        Money::new(minor, Currency::parse("USD").unwrap())
    }

    fn ctx_at(ms: u64) -> Ctx {
        Ctx {
            now: UnixMillis(ms),
            lsn: Lsn(1),
            shard: ShardId(0),
        }
    }

    fn caller() -> Caller {
        Caller {
            client: ClientId::new("c"),
            admin: false,
        }
    }

    /// One shard (so every wallet lives here) with a supplier-code SKU of face 25.00 and `codes` codes.
    fn shard_with(balance: i64, codes: u64) -> ShardState {
        let mut s = ShardState::new(ShardId(0), 1);
        let mut lsn = 0;
        let mut apply = |s: &mut ShardState, d: Decision| {
            let Decision::Events(evs) = d else {
                panic!("{d:?}")
            };
            for e in evs {
                lsn += 1;
                s.apply(&e, Lsn(lsn));
            }
        };
        let sku = crate::catalog::tests_support::sku("s", "b");
        let d = s.decide(&Command::DefineSku(sku), &ctx_at(1));
        apply(&mut s, d);
        let d = s.decide(
            &Command::CreateWallet {
                caller: caller(),
                wallet: WalletId::new("w"),
                kyc_verified: false,
            },
            &ctx_at(1),
        );
        apply(&mut s, d);
        if balance > 0 {
            let dep = Command::Deposit {
                caller: caller(),
                wallet: WalletId::new("w"),
                deposit_id: RequestId::new("d"),
                amount: usd(balance),
                reference: "r".into(),
                fingerprint: [0; 16],
            };
            let d = s.decide(&dep, &ctx_at(1));
            apply(&mut s, d);
        }
        if codes > 0 {
            let add = Command::AddCodes {
                sku: SkuId::new("s"),
                supplier: None,
                first_slot: 0,
                count: codes,
                shard_count: 1,
            };
            let d = s.decide(&add, &ctx_at(1));
            apply(&mut s, d);
        }
        s
    }

    fn order(qty: u32, region: &str, fp: u8) -> OrderRequest {
        OrderRequest {
            key: OrderKey {
                client: ClientId::new("c"),
                order_id: OrderId::new("o1"),
            },
            admin: false,
            wallet: WalletId::new("w"),
            items: vec![OrderItem {
                sku: SkuId::new("s"),
                quantity: qty,
                amount_minor: None,
            }],
            region: region.into(),
            pay_currency: None,
            fx_quote: None,
            channel: DeliveryChannel::None,
            recipient: String::new(),
            fingerprint: [fp; 16],
            fresh_codes: Vec::new(),
            fulfilment: Default::default(),
            stock_final: false,
        }
    }

    fn rejection(d: &Decision) -> Option<Rejection> {
        match d {
            Decision::Events(e) => match e.first() {
                Some(Event::OrderRejected { reason, .. }) => Some(*reason),
                _ => None,
            },
            Decision::Reject(r) => Some(*r),
            _ => None,
        }
    }

    #[test]
    fn order_above_the_balance_is_rejected_and_recorded() {
        let s = shard_with(4_999, 10);
        let d = s.decide_order(&order(2, "US", 1), &ctx_at(5));
        assert_eq!(rejection(&d), Some(Rejection::InsufficientFunds));
    }

    #[test]
    fn order_outside_the_skus_regions_is_rejected() {
        let s = shard_with(100_000, 10);
        assert_eq!(
            rejection(&s.decide_order(&order(1, "DE", 1), &ctx_at(5))),
            Some(Rejection::RegionNotAllowed)
        );
    }

    #[test]
    fn short_local_stock_asks_for_a_hold_and_the_missing_codes() {
        let s = shard_with(100_000, 1);
        match s.decide_order(&order(3, "US", 1), &ctx_at(5)) {
            Decision::NeedStock {
                hold: Event::FundsHeld { amount, .. },
                missing,
            } => {
                assert_eq!(amount, usd(7_500));
                assert_eq!(missing, vec![(SkuId::new("s"), 2)]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn completed_order_debits_books_margin_and_replays() {
        let mut s = shard_with(100_000, 10);
        let Decision::Events(evs) = s.decide_order(&order(2, "US", 1), &ctx_at(5)) else {
            panic!()
        };
        for e in &evs {
            s.apply(e, Lsn(100));
        }
        let b = s
            .wallets()
            .get(&WalletId::new("c~w"))
            .unwrap()
            .balance(Currency::parse("USD").unwrap());
        assert_eq!(
            (b.available_minor, b.held_minor, b.ledger_minor),
            (95_000, 0, 95_000)
        );
        assert_eq!(
            s.reports()
                .account(&Account::RevenueMargin(Currency::parse("USD").unwrap())),
            750
        );
        assert_eq!(s.pools().get(&SkuId::new("s")).unwrap().available, 8);
        assert!(matches!(
            s.decide_order(&order(2, "US", 1), &ctx_at(6)),
            Decision::Replay(OrderOutcome::Completed { cards: 2, .. })
        ));
        assert_eq!(
            s.decide_order(&order(2, "US", 2), &ctx_at(6)),
            Decision::Reject(Rejection::IdempotencyConflict)
        );
    }

    #[test]
    fn frozen_wallet_cannot_buy() {
        let mut s = shard_with(100_000, 10);
        s.apply(
            &Event::WalletFrozenSet {
                wallet: WalletId::new("c~w"),
                frozen: true,
            },
            Lsn(50),
        );
        assert_eq!(
            rejection(&s.decide_order(&order(1, "US", 1), &ctx_at(5))),
            Some(Rejection::WalletFrozen)
        );
    }

    #[test]
    fn another_clients_wallet_looks_missing() {
        let s = shard_with(100_000, 10);
        let mut o = order(1, "US", 1);
        o.key.client = ClientId::new("intruder");
        assert_eq!(
            s.decide_order(&o, &ctx_at(5)),
            Decision::Reject(Rejection::WalletNotFound)
        );
    }

    /// Issue 13: wallet ids are the tenant's own. Another tenant may use the same id (it gets
    /// its own wallet, with nothing to learn from the first), a wallet created before
    /// namespaces keeps its bare id and is found through its owner's namespace, and an admin
    /// names any wallet by its stored id and creates one for a client in that client's.
    #[test]
    fn wallet_ids_are_namespaced_per_client() {
        let mut s = shard_with(100_000, 10);
        let as_client = |name: &str, admin: bool| Caller {
            client: ClientId::new(name),
            admin,
        };
        let create = |s: &mut ShardState, who: &Caller, id: &str| {
            let d = s.decide(
                &Command::CreateWallet {
                    caller: who.clone(),
                    wallet: WalletId::new(id),
                    kyc_verified: false,
                },
                &ctx_at(2),
            );
            let answer = d.clone();
            if let Decision::Events(evs) = d {
                for e in &evs {
                    let lsn = Lsn(s.last_lsn().0 + 1);
                    s.apply(e, lsn);
                }
            }
            answer
        };
        let other = as_client("other", false);
        // The same id again by its owner is a retry; by another tenant, a wallet of its own.
        assert_eq!(create(&mut s, &caller(), "w"), Decision::Answered(vec![]));
        assert!(matches!(create(&mut s, &other, "w"), Decision::Events(_)));
        fn w(s: &ShardState, id: &str) -> Option<Wallet> {
            s.wallets().get(&WalletId::new(id)).cloned()
        }
        assert_eq!(w(&s, "other~w").unwrap().owner, ClientId::new("other"));
        assert_eq!(
            w(&s, "c~w")
                .unwrap()
                .balance(usd(1).currency())
                .available_minor,
            100_000
        );
        assert_eq!(
            s.wallets()
                .owned(&other, &WalletId::new("w"))
                .map(|(_, w)| w.balance(usd(1).currency()).available_minor),
            Ok(0),
            "the other tenant sees its own empty wallet, not c's"
        );
        // A client cannot reach into another namespace by naming it.
        assert_eq!(
            s.wallets().owned(&other, &WalletId::new("c~w")).err(),
            Some(Rejection::WalletNotFound)
        );
        // A wallet from before namespaces: found by its owner under its bare id, by no one else.
        s.apply(
            &Event::WalletCreated {
                wallet: WalletId::new("legacy"),
                owner: ClientId::new("c"),
                kyc_verified: false,
            },
            Lsn(s.last_lsn().0 + 1),
        );
        let (id, _) = s
            .wallets()
            .owned(&caller(), &WalletId::new("legacy"))
            .unwrap();
        assert_eq!(id, WalletId::new("legacy"));
        assert_eq!(
            create(&mut s, &caller(), "legacy"),
            Decision::Answered(vec![])
        );
        assert!(matches!(
            create(&mut s, &other, "legacy"),
            Decision::Events(_)
        ));
        assert_eq!(w(&s, "other~legacy").unwrap().owner, ClientId::new("other"));
        // An admin creates in a client's namespace for that client, and reads it by that id;
        // not over a wallet the client has from before namespaces under the same id.
        let admin = as_client("ops", true);
        assert_eq!(
            create(&mut s, &admin, "c~legacy"),
            Decision::Reject(Rejection::WalletExists)
        );
        assert!(matches!(
            create(&mut s, &admin, "third~w"),
            Decision::Events(_)
        ));
        assert_eq!(w(&s, "third~w").unwrap().owner, ClientId::new("third"));
        let third = as_client("third", false);
        assert!(s.wallets().owned(&third, &WalletId::new("w")).is_ok());
        assert!(s.wallets().owned(&admin, &WalletId::new("c~w")).is_ok());
        // An order names the wallet by the client's id, and its events by the stored one.
        let Decision::Events(evs) = s.decide_order(&order(1, "US", 1), &ctx_at(5)) else {
            panic!("the order completes")
        };
        assert!(evs.iter().any(|e| matches!(e,
            Event::OrderCompleted(o) if o.wallet == WalletId::new("c~w"))));
        let mut o = order(1, "US", 1);
        o.key.client = ClientId::new("other");
        assert!(matches!(
            s.decide_order(&o, &ctx_at(5)),
            Decision::Events(evs) if evs.iter().any(|e| matches!(e,
                Event::OrderRejected { reason: Rejection::InsufficientFunds, wallet, .. }
                    if *wallet == WalletId::new("other~w")))
        ));
    }

    /// Decides `cmd` at `at` and applies what it journals; returns the decision.
    fn step(s: &mut ShardState, cmd: &Command, at: u64) -> Decision {
        let d = s.decide(cmd, &ctx_at(at));
        if let Decision::Events(evs) = &d {
            for e in evs {
                let lsn = Lsn(s.last_lsn().0 + 1);
                s.apply(e, lsn);
            }
        }
        d
    }

    /// Issue 15: limits are decided with the debit. Each kind refuses with its own rejection
    /// (all `limit_exceeded` on the wire, naming the limit), counts what completed before it
    /// within its window or day, and forgets what is older; a wallet's own limits replace the
    /// defaults; only an admin sets them or verifies KYC; KYC thresholds refuse an unverified
    /// wallet's order (and a day's total) above them.
    #[test]
    fn limits_and_kyc_refuse_in_the_commit_and_count_what_completed_before() {
        use crate::limits::{LimitSet, RiskPolicy, Velocity};
        let usd_c = Currency::parse("USD").unwrap();
        let mut s = shard_with(10_000_000, 1_000);
        let admin = Caller {
            client: ClientId::new("ops"),
            admin: true,
        };
        let mut n = 0u32;
        let mut place = |s: &mut ShardState, qty: u32, at: u64| {
            n += 1;
            let mut o = order(qty, "US", 1);
            o.key.order_id = OrderId::new(&format!("o-{n}"));
            let d = step(s, &Command::PlaceOrder(Box::new(o)), at);
            rejection(&d)
        };
        // Defaults: two orders an hour, $100.00 an hour, at most $60.00 an order.
        s.set_risk_policy(std::sync::Arc::new(RiskPolicy {
            limits: LimitSet {
                order_max: vec![(usd_c, 6_000)],
                velocity: vec![Velocity {
                    currency: usd_c,
                    window_ms: 3_600_000,
                    max_orders: Some(2),
                    max_amount_minor: Some(10_000),
                }],
                sku_daily_cards: None,
                brand_daily_cards: None,
            },
            kyc_threshold_minor: vec![],
            kyc_review: false,
            review_ttl_ms: 0,
        }));
        let t0 = 86_400_000 * 10 + 1_000;
        assert_eq!(place(&mut s, 3, t0), Some(Rejection::OrderLimitExceeded));
        assert_eq!(place(&mut s, 2, t0), None);
        assert_eq!(place(&mut s, 2, t0 + 1), None);
        assert_eq!(
            place(&mut s, 1, t0 + 2),
            Some(Rejection::VelocityOrdersExceeded)
        );
        // The window slides: an hour after the first, one order is out of it.
        assert_eq!(place(&mut s, 2, t0 + 3_600_000), None);
        assert_eq!(
            place(&mut s, 1, t0 + 3_600_000),
            Some(Rejection::VelocityOrdersExceeded)
        );
        // The wallet's own limits replace the defaults: amount only, $150.00 an hour.
        let own = LimitSet {
            velocity: vec![Velocity {
                currency: usd_c,
                window_ms: 3_600_000,
                max_orders: None,
                max_amount_minor: Some(15_000),
            }],
            sku_daily_cards: Some(10),
            ..LimitSet::default()
        };
        let set = |caller: Caller, l: Option<LimitSet>| Command::SetWalletLimits {
            caller,
            wallet: WalletId::new("c~w"),
            limits: l,
        };
        assert_eq!(
            rejection(&step(&mut s, &set(caller(), Some(own.clone())), t0)),
            Some(Rejection::Forbidden)
        );
        let bad = LimitSet {
            order_max: vec![(usd_c, -5)],
            ..LimitSet::default()
        };
        assert_eq!(
            rejection(&step(&mut s, &set(admin.clone(), Some(bad)), t0)),
            Some(Rejection::InvalidLimits)
        );
        assert!(matches!(
            step(
                &mut s,
                &set(admin.clone(), Some(own.clone())),
                t0 + 3_600_002
            ),
            Decision::Events(_)
        ));
        assert_eq!(s.limits().of(&WalletId::new("c~w")), (&own, true));
        // In the last hour: one order of $50.00 (at t0 + 1h). $100.00 more fits, $125.00 not.
        assert_eq!(
            place(&mut s, 5, t0 + 3_600_003),
            Some(Rejection::VelocityAmountExceeded)
        );
        assert_eq!(place(&mut s, 4, t0 + 3_600_003), None);
        // Every order so far is of UTC day 10: 2 + 2 + 2 + 4 cards, the cap. One more is over.
        assert_eq!(
            place(&mut s, 1, t0 + 3 * 3_600_000),
            Some(Rejection::SkuDailyLimitExceeded)
        );
        // The next UTC day starts afresh.
        assert_eq!(place(&mut s, 1, 86_400_000 * 11), None);
        // Back to the defaults.
        assert!(matches!(
            step(&mut s, &set(admin.clone(), None), 86_400_000 * 11),
            Decision::Events(_)
        ));
        assert!(!s.limits().of(&WalletId::new("c~w")).1);

        // KYC: $75.00 in USD. An unverified wallet's order above it is refused, and so is one
        // that takes the day's total above it.
        s.set_risk_policy(std::sync::Arc::new(RiskPolicy {
            limits: LimitSet::default(),
            kyc_threshold_minor: vec![(usd_c, 7_500)],
            kyc_review: false,
            review_ttl_ms: 0,
        }));
        let day = 86_400_000 * 20;
        assert_eq!(place(&mut s, 4, day), Some(Rejection::KycRequired));
        assert_eq!(place(&mut s, 2, day), None);
        assert_eq!(place(&mut s, 2, day + 1), Some(Rejection::KycRequired));
        assert_eq!(place(&mut s, 1, day + 2), None, "exactly at the threshold");
        let kyc = |caller: Caller, verified| Command::SetKyc {
            caller,
            wallet: WalletId::new("c~w"),
            verified,
        };
        assert_eq!(
            rejection(&step(&mut s, &kyc(caller(), true), day)),
            Some(Rejection::Forbidden)
        );
        assert!(matches!(
            step(&mut s, &kyc(admin.clone(), true), day + 3),
            Decision::Events(_)
        ));
        let mark = s.limits().kyc_mark(&WalletId::new("c~w")).unwrap().clone();
        assert_eq!(
            (mark.verified, mark.by.as_str(), mark.at, mark.at_creation),
            (true, "ops", UnixMillis(day + 3), false)
        );
        assert!(s.wallets().get(&WalletId::new("c~w")).unwrap().kyc_verified);
        assert_eq!(place(&mut s, 4, day + 4), None);
        // The creation retried as it was first made is still a replay; as verified, a conflict.
        let create = |kyc_verified| Command::CreateWallet {
            caller: caller(),
            wallet: WalletId::new("w"),
            kyc_verified,
        };
        assert!(matches!(
            s.decide(&create(false), &ctx_at(day)),
            Decision::Answered(_)
        ));
        assert_eq!(
            rejection(&s.decide(&create(true), &ctx_at(day))),
            Some(Rejection::WalletExists)
        );
        // A client cannot declare a new wallet verified.
        let mut other = create(true);
        if let Command::CreateWallet { wallet, .. } = &mut other {
            *wallet = WalletId::new("w2");
        }
        assert_eq!(
            rejection(&s.decide(&other, &ctx_at(day))),
            Some(Rejection::Forbidden)
        );
        // The state with its limits survives a snapshot.
        let back = ShardState::decode(&s.encode().unwrap()).unwrap();
        assert_eq!(back.limits().kyc_mark(&WalletId::new("c~w")), Some(&mark));
        assert_eq!(
            back.limits().activity(&WalletId::new("c~w")),
            s.limits().activity(&WalletId::new("c~w"))
        );
    }

    /// Issue 14: a locked FX quote prices an order to the minor unit until the instant it
    /// expires, whatever the table says by then; one millisecond later the order is refused
    /// `quote_expired`; the quote is the client's and its wallet's alone; a tick forgets it.
    #[test]
    fn a_locked_quote_prices_orders_exactly_until_it_expires() {
        use crate::catalog::{convert_at, FxTable};
        use crate::quotes::{QuoteRequest, QUOTE_KEPT_AFTER_EXPIRY_MS};
        let (usd, eur) = (
            Currency::parse("USD").unwrap(),
            Currency::parse("EUR").unwrap(),
        );
        let mut s = shard_with(0, 10);
        let fx = |mid: Decimal, spread: Decimal| {
            let mut t = FxTable {
                spread,
                ..FxTable::default()
            };
            t.mid.insert((usd, eur), mid);
            Command::SetFx(t)
        };
        let (mid, spread) = (Decimal::new(9137, 4), Decimal::new(125, 4));
        step(&mut s, &fx(mid, spread), 1);
        let deposit = Command::Deposit {
            caller: caller(),
            wallet: WalletId::new("w"),
            deposit_id: RequestId::new("eur"),
            amount: Money::new(1_000_000, eur),
            reference: "r".into(),
            fingerprint: [4; 16],
        };
        assert!(matches!(step(&mut s, &deposit, 1), Decision::Events(_)));
        let ask = |id: &str, fp: u8| Command::QuoteFx {
            caller: caller(),
            request: QuoteRequest {
                wallet: WalletId::new("w"),
                quote_id: RequestId::new(id),
                from: usd,
                to: eur,
                ttl_ms: 1_000,
                fingerprint: [fp; 16],
            },
        };
        assert!(matches!(
            step(&mut s, &ask("q-1", 1), 10),
            Decision::Events(_)
        ));
        let q = s
            .quotes()
            .get(&ClientId::new("c"), &RequestId::new("q-1"))
            .unwrap()
            .clone();
        assert_eq!(
            (q.mid, q.spread, q.expires_at),
            (mid, spread, UnixMillis(1_010))
        );
        assert_eq!(q.wallet, WalletId::new("c~w"));
        // The same request again is answered by the quote; another under its id conflicts.
        assert_eq!(step(&mut s, &ask("q-1", 1), 11), Decision::Answered(vec![]));
        assert_eq!(
            step(&mut s, &ask("q-1", 2), 11),
            Decision::Reject(Rejection::IdempotencyConflict)
        );
        // The table moves far; the quote does not.
        step(&mut s, &fx(Decimal::new(2, 0), Decimal::new(5, 2)), 20);
        let with_quote = |id: &str, client: &str| {
            let mut o = order(2, "US", 9);
            o.key.order_id = OrderId::new(id);
            o.key.client = ClientId::new(client);
            o.pay_currency = Some(eur);
            o.fx_quote = Some(RequestId::new("q-1"));
            o
        };
        let decide = |s: &mut ShardState, o: &OrderRequest, at: u64| {
            step(s, &Command::PlaceOrder(Box::new(o.clone())), at)
        };
        let want = convert_at(Money::new(5_000, usd), eur, mid, spread).unwrap();
        let Decision::Events(evs) = decide(&mut s, &with_quote("at-expiry", "c"), 1_010) else {
            panic!("the order at the quote's last instant completes")
        };
        let Some(Event::OrderCompleted(done)) = evs.first() else {
            panic!("{evs:?}")
        };
        assert_eq!(done.charged, want.charged, "charged exactly at the quote");
        assert_eq!(
            s.reports().account(&crate::ledger::Account::RevenueFx(eur)),
            want.charged.minor() - want.at_mid.minor(),
            "the quote's spread is FX revenue"
        );
        assert_eq!(
            rejection(&decide(&mut s, &with_quote("late", "c"), 1_011)),
            Some(Rejection::QuoteExpired)
        );
        // Without the quote, the table's rate of now.
        let mut plain = with_quote("plain", "c");
        plain.fx_quote = None;
        let Decision::Events(evs) = decide(&mut s, &plain, 1_011) else {
            panic!("a plain order completes")
        };
        let now = convert_at(
            Money::new(5_000, usd),
            eur,
            Decimal::new(2, 0),
            Decimal::new(5, 2),
        );
        assert!(
            matches!(evs.first(), Some(Event::OrderCompleted(o)) if o.charged == now.unwrap().charged)
        );
        // Another client's order cannot use it (its id names nothing of theirs), nor an order
        // paying in another currency.
        step(
            &mut s,
            &Command::CreateWallet {
                caller: Caller {
                    client: ClientId::new("d"),
                    admin: false,
                },
                wallet: WalletId::new("w"),
                kyc_verified: false,
            },
            1_000,
        );
        assert_eq!(
            rejection(&decide(&mut s, &with_quote("theirs", "d"), 1_000)),
            Some(Rejection::QuoteNotFound)
        );
        let mut in_usd = with_quote("in-usd", "c");
        in_usd.pay_currency = Some(usd);
        assert_eq!(
            rejection(&decide(&mut s, &in_usd, 1_000)),
            Some(Rejection::QuoteMismatch)
        );
        // Forgotten by a tick once it has been expired for a while, not before.
        let forget_at = 1_010 + QUOTE_KEPT_AFTER_EXPIRY_MS;
        step(&mut s, &Command::Tick, forget_at - 1);
        assert_eq!(s.quotes().len(), 1);
        step(&mut s, &Command::Tick, forget_at);
        assert!(s.quotes().is_empty());
        assert_eq!(
            rejection(&decide(&mut s, &with_quote("after", "c"), forget_at)),
            Some(Rejection::QuoteNotFound)
        );
    }

    /// Issue 14: a client's price list discounts its orders by SKU or brand and quantity tier,
    /// exactly from the tier's quantity; a list that would sell below cost is refused; other
    /// clients pay the catalog price.
    #[test]
    fn price_lists_discount_by_tier_and_never_below_cost() {
        use crate::pricelists::{PriceEntry, PriceList, PriceTarget};
        let mut s = shard_with(1_000_000, 100);
        let entry = |target: PriceTarget, min_quantity: u32, discount: i64| PriceEntry {
            target,
            min_quantity,
            discount: Decimal::new(discount, 2),
        };
        let set = |s: &mut ShardState, entries: Vec<PriceEntry>| {
            step(
                s,
                &Command::SetPriceList {
                    client: ClientId::new("c"),
                    list: PriceList { entries },
                },
                2,
            )
        };
        // 16% off a card bought at 15% off face sells below cost: refused, nothing changes.
        assert_eq!(
            set(&mut s, vec![entry(PriceTarget::Brand("b".into()), 1, 16)]),
            Decision::Reject(Rejection::BelowMarginFloor)
        );
        assert!(s.price_lists().is_empty());
        let list = vec![
            entry(PriceTarget::Brand("b".into()), 1, 2),
            entry(PriceTarget::Sku(SkuId::new("s")), 3, 5),
        ];
        assert!(matches!(set(&mut s, list), Decision::Events(_)));
        let charged = |s: &mut ShardState, id: &str, qty: u32| {
            let mut o = order(qty, "US", qty as u8);
            o.key.order_id = OrderId::new(id);
            match step(s, &Command::PlaceOrder(Box::new(o)), 5) {
                Decision::Events(evs) => match evs.first() {
                    Some(Event::OrderCompleted(done)) => done.charged.minor(),
                    other => panic!("{other:?}"),
                },
                other => panic!("{other:?}"),
            }
        };
        // 2 cards: the brand's 2% (2450 each); 3 cards: the SKU's tier of 5% (2375 each).
        assert_eq!(charged(&mut s, "two", 2), 2 * 2_450);
        assert_eq!(charged(&mut s, "three", 3), 3 * 2_375);
        // Margin is booked on the discounted price: 2 × (2450 - 2125) + 3 × (2375 - 2125).
        assert_eq!(
            s.reports()
                .account(&crate::ledger::Account::RevenueMargin(usd(1).currency())),
            2 * 325 + 3 * 250
        );
        // An admin ordering from c's wallet pays c's price (the list follows the wallet's
        // owner, not the caller).
        let mut o = order(1, "US", 7);
        o.key.order_id = OrderId::new("theirs");
        o.key.client = ClientId::new("d");
        o.wallet = WalletId::new("c~w");
        o.admin = true;
        let Decision::Events(evs) = step(&mut s, &Command::PlaceOrder(Box::new(o)), 5) else {
            panic!("an admin's order completes")
        };
        assert!(
            matches!(evs.first(), Some(Event::OrderCompleted(d)) if d.charged.minor() == 2_450)
        );
        // Tiers that do not increase are refused; an empty list removes the client's.
        assert_eq!(
            set(
                &mut s,
                vec![
                    entry(PriceTarget::Sku(SkuId::new("s")), 3, 5),
                    entry(PriceTarget::Sku(SkuId::new("s")), 2, 6),
                ]
            ),
            Decision::Reject(Rejection::InvalidPriceList)
        );
        assert!(matches!(set(&mut s, vec![]), Decision::Events(_)));
        assert!(s.price_lists().is_empty());
    }

    /// Issue 14: a promotion prices from its first instant and not at its last; a rule that
    /// would sell below cost is refused; without a rule that holds, the markup prices.
    #[test]
    fn a_promotion_starts_and_ends_exactly_at_its_instants() {
        use crate::promotions::{PriceRule, PricingRule};
        let mut s = shard_with(1_000_000, 100);
        let set = |s: &mut ShardState, rules: Vec<PricingRule>| {
            step(
                s,
                &Command::SetPricing {
                    sku: SkuId::new("s"),
                    rules,
                },
                2,
            )
        };
        let rule = |pct: i64, from: u64, until: u64| PricingRule {
            rule: PriceRule::FacePercent(Decimal::new(pct, 2)),
            from: Some(UnixMillis(from)),
            until: Some(UnixMillis(until)),
        };
        // 20% off a card bought at 15% off face: below cost, refused.
        assert_eq!(
            set(&mut s, vec![rule(-20, 100, 200)]),
            Decision::Reject(Rejection::BelowMarginFloor)
        );
        assert_eq!(
            set(&mut s, vec![rule(-10, 200, 200)]),
            Decision::Reject(Rejection::InvalidPricingRule)
        );
        assert!(matches!(
            set(
                &mut s,
                vec![
                    rule(-10, 100, 200),
                    PricingRule {
                        rule: PriceRule::Fixed(2_600),
                        from: None,
                        until: None,
                    },
                ]
            ),
            Decision::Events(_)
        ));
        let charged = |s: &mut ShardState, id: &str, at: u64| {
            let mut o = order(1, "US", 3);
            o.key.order_id = OrderId::new(id);
            match step(s, &Command::PlaceOrder(Box::new(o)), at) {
                Decision::Events(evs) => match evs.first() {
                    Some(Event::OrderCompleted(done)) => done.charged.minor(),
                    other => panic!("{other:?}"),
                },
                other => panic!("{other:?}"),
            }
        };
        // Before and after the window the standing fixed price; inside it 10% off face.
        assert_eq!(
            [
                charged(&mut s, "a", 99),
                charged(&mut s, "b", 100),
                charged(&mut s, "c", 199),
                charged(&mut s, "d", 200),
            ],
            [2_600, 2_250, 2_250, 2_600]
        );
        // No rules: the markup (0) prices.
        assert!(matches!(set(&mut s, vec![]), Decision::Events(_)));
        assert_eq!(charged(&mut s, "e", 150), 2_500);
    }

    /// Issue 14: a margin floor above cost. A list or rule that would sell below cost plus the
    /// floor is refused when it is set; one set before the floor stops at it in every order.
    #[test]
    fn a_margin_floor_refuses_lists_below_it_and_stops_older_discounts_at_it() {
        use crate::floors::MarginFloors;
        use crate::pricelists::{PriceEntry, PriceList, PriceTarget};
        let mut s = shard_with(1_000_000, 100);
        let list = |discount: i64| Command::SetPriceList {
            client: ClientId::new("c"),
            list: PriceList {
                entries: vec![PriceEntry {
                    target: PriceTarget::Brand("b".into()),
                    min_quantity: 1,
                    discount: Decimal::new(discount, 2),
                }],
            },
        };
        // 10% off 25.00 sells at 22.50, 1.25 over the cost of 21.25: fine with no floor.
        assert!(matches!(step(&mut s, &list(10), 2), Decision::Events(_)));
        // A 6% floor (1.50 of 25.00) puts the lowest price at 22.75.
        let mut floors = MarginFloors::default();
        floors.by_brand.insert("b".into(), Decimal::new(6, 2));
        assert!(matches!(
            step(&mut s, &Command::SetMarginFloors(floors.clone()), 3),
            Decision::Events(_)
        ));
        // The 10% list set before now stops at the floor, to the minor unit.
        let charged = |s: &mut ShardState, id: &str| {
            let mut o = order(1, "US", 4);
            o.key.order_id = OrderId::new(id);
            match step(s, &Command::PlaceOrder(Box::new(o)), 5) {
                Decision::Events(evs) => match evs.first() {
                    Some(Event::OrderCompleted(done)) => done.lines[0].unit_price.minor(),
                    other => panic!("{other:?}"),
                },
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(charged(&mut s, "floored"), 2_275);
        // Setting the same list again, or a 9.1% one (22.725 → 22.72), is refused; 9% (22.75) is
        // exactly the floor and accepted.
        assert_eq!(
            step(&mut s, &list(10), 6),
            Decision::Reject(Rejection::BelowMarginFloor)
        );
        let mut over = list(0);
        if let Command::SetPriceList { list, .. } = &mut over {
            list.entries[0].discount = Decimal::new(91, 3);
        }
        assert_eq!(
            step(&mut s, &over, 6),
            Decision::Reject(Rejection::BelowMarginFloor)
        );
        assert!(matches!(step(&mut s, &list(9), 6), Decision::Events(_)));
        // A SKU's own floor wins over its brand's: 1% lets the 9% list through unclamped.
        floors.by_sku.insert(SkuId::new("s"), Decimal::new(1, 2));
        assert!(matches!(
            step(&mut s, &Command::SetMarginFloors(floors), 7),
            Decision::Events(_)
        ));
        assert!(matches!(step(&mut s, &list(10), 8), Decision::Events(_)));
        assert_eq!(charged(&mut s, "own floor"), 2_250);
    }

    /// Issue 14: fees come out of the wallet in the order's commit, a short order holds them
    /// too, and the revenue report of any window equals what the ledger's revenue accounts took
    /// in that window, commissions included.
    #[test]
    fn fees_are_charged_with_the_order_and_the_report_matches_the_ledger_in_any_window() {
        use crate::fees::{FeeSchedule, Fees};
        use crate::sales::GroupBy;
        let usd_ccy = usd(0).currency();
        let mut s = shard_with(100_000, 3);
        let mut fees = FeeSchedule::default();
        fees.by_currency.insert(
            usd_ccy,
            Fees {
                order_minor: 40,
                ..Fees::default()
            },
        );
        assert!(matches!(
            step(&mut s, &Command::SetFees(fees), 2),
            Decision::Events(_)
        ));
        // A wallet that can pay the cards but not the fee is refused.
        let mut poor = order(4, "US", 1);
        poor.key.order_id = OrderId::new("poor");
        poor.items[0].quantity = 4;
        let revenue = |s: &ShardState| -> std::collections::BTreeMap<&'static str, i64> {
            let l = s.reports();
            [
                (
                    "margin",
                    l.account(&crate::ledger::Account::RevenueMargin(usd_ccy)),
                ),
                (
                    "fees",
                    l.account(&crate::ledger::Account::RevenueFees(usd_ccy)),
                ),
                (
                    "commission",
                    l.account(&crate::ledger::Account::RevenueCommission(usd_ccy)),
                ),
            ]
            .into_iter()
            .collect()
        };
        let report = |s: &ShardState, to: u64| -> std::collections::BTreeMap<&'static str, i64> {
            let rows = s
                .sales()
                .revenue(s.catalog(), UnixMillis(0), UnixMillis(to), GroupBy::Day);
            let mut t = crate::sales::RevenueRow::default();
            rows.values().for_each(|r| t.add(r));
            [
                ("margin", t.margin_minor),
                ("fees", t.fees_minor),
                ("commission", t.commission_minor),
            ]
            .into_iter()
            .collect()
        };
        // Short of stock (4 of 3): the hold covers the fee as well.
        match s.decide_order(&poor, &ctx_at(5)) {
            Decision::NeedStock {
                hold: Event::FundsHeld { amount, .. },
                ..
            } => assert_eq!(amount, usd(4 * 2_500 + 40)),
            other => panic!("{other:?}"),
        }
        let mut first = order(2, "US", 2);
        first.key.order_id = OrderId::new("first");
        let Decision::Events(evs) = step(&mut s, &Command::PlaceOrder(Box::new(first)), 5) else {
            panic!("completes")
        };
        assert!(matches!(&evs[0], Event::OrderCompleted(d) if d.fees[0].1 == usd(40)));
        let after_first = revenue(&s);
        let mut second = order(1, "US", 3);
        second.key.order_id = OrderId::new("second");
        step(&mut s, &Command::PlaceOrder(Box::new(second)), 10);
        let w = s
            .wallets()
            .get(&WalletId::new("c~w"))
            .unwrap()
            .balance(usd_ccy);
        assert_eq!(w.available_minor, 100_000 - 3 * 2_500 - 2 * 40);
        // The record answers what left the wallet.
        let rec = s.orders().get(&OrderKey {
            client: ClientId::new("c"),
            order_id: OrderId::new("first"),
        });
        assert!(matches!(
            rec.map(|r| &r.outcome),
            Some(OrderOutcome::Completed { charged, .. }) if *charged == usd(5_040)
        ));
        // A commission booked at 20, once: the repeat answers the same without journaling.
        let book = Command::BookCommissions {
            period_id: RequestId::new("p"),
            volumes: vec![(SupplierId::new("sup"), usd(6_375))],
        };
        let mut tiers = crate::commissions::CommissionTiers::default();
        tiers.by_currency.insert(
            usd_ccy,
            vec![crate::commissions::Tier {
                from_minor: 0,
                rate: Decimal::new(1, 2),
            }],
        );
        step(
            &mut s,
            &Command::SetCommissionTiers {
                supplier: SupplierId::new("sup"),
                tiers,
            },
            11,
        );
        // A deposit moves the shard's clock to 20, when the commission is booked.
        let dep = Command::Deposit {
            caller: caller(),
            wallet: WalletId::new("w"),
            deposit_id: RequestId::new("later"),
            amount: usd(1),
            reference: "r".into(),
            fingerprint: [9; 16],
        };
        step(&mut s, &dep, 20);
        assert!(matches!(step(&mut s, &book, 20), Decision::Events(evs) if evs.len() == 1));
        assert!(matches!(step(&mut s, &book, 21), Decision::Answered(evs) if evs.len() == 1));
        assert_eq!(revenue(&s)["commission"], 64);
        // Windows: up to the first order's instant (exclusive) nothing; through it, what the
        // ledger held then; through the end, what it holds now.
        assert_eq!(report(&s, 5).values().sum::<i64>(), 0);
        assert_eq!(report(&s, 6), after_first);
        assert_eq!(report(&s, 21), revenue(&s));
    }

    /// Issue 14: a fill_available order, once every peer was asked, sells what there is of each
    /// line, priced at the quantity it bought (a tier it no longer reaches does not apply), and
    /// charges nothing for the rest; with nothing at all it is out of stock.
    #[test]
    fn fill_available_charges_only_the_cards_it_sells() {
        use crate::pricelists::{PriceEntry, PriceList, PriceTarget};
        let mut s = shard_with(100_000, 2);
        let tier = PriceList {
            entries: vec![PriceEntry {
                target: PriceTarget::Sku(SkuId::new("s")),
                min_quantity: 3,
                discount: Decimal::new(4, 2),
            }],
        };
        step(
            &mut s,
            &Command::SetPriceList {
                client: ClientId::new("c"),
                list: tier,
            },
            2,
        );
        let mut o = order(5, "US", 1);
        o.fulfilment = Fulfilment::FillAvailable;
        // Before every peer was asked: borrow, like any order.
        assert!(matches!(
            s.decide_order(&o, &ctx_at(5)),
            Decision::NeedStock { .. }
        ));
        let mut whole = order(5, "US", 1);
        whole.stock_final = true;
        assert!(matches!(
            s.decide_order(&whole, &ctx_at(5)),
            Decision::NeedStock { .. }
        ));
        o.stock_final = true;
        let Decision::Events(evs) = step(&mut s, &Command::PlaceOrder(Box::new(o.clone())), 5)
        else {
            panic!("filled in part")
        };
        let Event::OrderCompleted(done) = &evs[0] else {
            panic!("{evs:?}")
        };
        // Two cards at the catalog price: 2 do not reach the 3-card tier.
        assert_eq!((done.lines[0].quantity, done.charged), (2, usd(5_000)));
        assert_eq!(
            evs[1],
            Event::OrderFilledInPart {
                key: o.key.clone(),
                items: vec![(SkuId::new("s"), 5, 2)],
            }
        );
        let sale = s.sales().get(&o.key).expect("its sale");
        assert_eq!(sale.filled_in_part, vec![(SkuId::new("s"), 5, 2)]);
        let w = s.wallets().get(&WalletId::new("c~w")).unwrap();
        assert_eq!(w.balance(usd(0).currency()).available_minor, 95_000);
        // Nothing left: out of stock, recorded.
        let mut again = order(1, "US", 2);
        again.key.order_id = OrderId::new("none-left");
        again.fulfilment = Fulfilment::FillAvailable;
        again.stock_final = true;
        assert_eq!(
            rejection(&s.decide_order(&again, &ctx_at(6))),
            Some(Rejection::OutOfStock)
        );
        // A wallet that can pay for what there is, not for all it asks: it holds what it has
        // while peers are asked, and pays for the part it gets.
        let mut s = shard_with(5_000, 2);
        let mut o = order(5, "US", 3);
        o.fulfilment = Fulfilment::FillAvailable;
        let Decision::NeedStock { hold, .. } = s.decide_order(&o, &ctx_at(5)) else {
            panic!("borrows")
        };
        assert!(matches!(hold, Event::FundsHeld { amount, .. } if amount == usd(5_000)));
        s.apply(&hold, Lsn(90));
        o.stock_final = true;
        let Decision::Events(evs) = step(&mut s, &Command::PlaceOrder(Box::new(o)), 6) else {
            panic!("filled in part")
        };
        assert!(matches!(&evs[0], Event::OrderCompleted(d) if d.charged == usd(5_000)));
        let b = s
            .wallets()
            .get(&WalletId::new("c~w"))
            .unwrap()
            .balance(usd(0).currency());
        assert_eq!((b.available_minor, b.held_minor), (0, 0));
        // Without fill_available the same wallet is refused outright.
        let mut whole = order(5, "US", 4);
        whole.key.order_id = OrderId::new("whole");
        assert_eq!(
            rejection(&s.decide_order(&whole, &ctx_at(7))),
            Some(Rejection::InsufficientFunds)
        );
    }

    /// Issue 14: several suppliers behind one SKU. Each uploads to its own pool; an order takes
    /// the cheapest first and fails over when that pool runs dry, each supplier's cards a line
    /// at its own cost, owed to it in settlement; no pool of another SKU is ever touched; a
    /// short order asks peers for every supplier's pool.
    #[test]
    fn an_order_takes_the_cheapest_suppliers_codes_first_and_pays_each_its_cost() {
        use crate::sourcing::{Offer, Sourcing};
        let mut s = shard_with(1_000_000, 2);
        let other = crate::catalog::tests_support::sku("t", "b");
        step(&mut s, &Command::DefineSku(other), 1);
        let sourcing = Sourcing {
            offers: vec![Offer {
                supplier: SupplierId::new("cheap"),
                wholesale_discount: Decimal::new(20, 2),
                priority: 0,
            }],
            ..Sourcing::default()
        };
        let set = Command::SetSourcing {
            sku: SkuId::new("s"),
            sourcing,
        };
        assert!(matches!(step(&mut s, &set, 2), Decision::Events(_)));
        let upload = |s: &mut ShardState, sku: &str, supplier: &str, n: u64| {
            let cmd = Command::AddCodes {
                sku: SkuId::new(sku),
                supplier: Some(SupplierId::new(supplier)),
                first_slot: s.pools().next_slot(),
                count: n,
                shard_count: 1,
            };
            step(s, &cmd, 3)
        };
        assert!(matches!(
            upload(&mut s, "s", "cheap", 1),
            Decision::Events(_)
        ));
        assert!(matches!(upload(&mut s, "t", "sup", 5), Decision::Events(_)));
        // A supplier the SKU does not name may not upload to it.
        assert_eq!(
            upload(&mut s, "s", "stranger", 1),
            Decision::Reject(Rejection::Forbidden)
        );
        let Decision::Events(evs) =
            step(&mut s, &Command::PlaceOrder(Box::new(order(3, "US", 1))), 5)
        else {
            panic!("completes")
        };
        let Event::OrderCompleted(done) = &evs[0] else {
            panic!("{evs:?}")
        };
        let lines: Vec<(&str, u32, i64)> = done
            .lines
            .iter()
            .map(|l| (l.supplier.as_str(), l.quantity, l.unit_cost.minor()))
            .collect();
        assert_eq!(lines, vec![("cheap", 1, 2_000), ("sup", 2, 2_125)]);
        assert_eq!(done.charged, usd(7_500));
        // Each supplier is owed its own cards at its own cost; the other SKU's pool is whole.
        let owed = |s: &ShardState, sup: &str| {
            s.settlement()
                .unsettled()
                .get(&SupplierId::new(sup))
                .map(|d| (d.cards, d.owed[0].1))
        };
        assert_eq!(owed(&s, "cheap"), Some((1, 2_000)));
        assert_eq!(owed(&s, "sup"), Some((2, 4_250)));
        assert_eq!(s.pools().available(&SkuId::new("t")), 5);
        assert_eq!(s.pools().available(&SkuId::new("s")), 0);
        assert_eq!(s.pools().available(&SkuId::new("s/cheap")), 0);
        // Dry everywhere here: the order asks peers for both suppliers' pools.
        let mut more = order(1, "US", 2);
        more.key.order_id = OrderId::new("more");
        match s.decide_order(&more, &ctx_at(6)) {
            Decision::NeedStock { missing, .. } => assert_eq!(
                missing,
                vec![(SkuId::new("s/cheap"), 1), (SkuId::new("s"), 1)]
            ),
            other => panic!("{other:?}"),
        }
    }

    /// Issue 15: the risk score is decided in the order's commit from the rules that hold,
    /// each adding its weight; above `reject_above` the order is refused `risk_rejected`. A
    /// score above zero is journaled with the order (completed or refused) with its reasons,
    /// and is kept through a snapshot; a score of zero journals nothing.
    #[test]
    fn a_risk_score_is_decided_with_the_order_and_journaled_with_its_reasons() {
        use crate::risk::{RiskReason, RiskRule, Scoring, WeightedRule};
        let usd_c = Currency::parse("USD").unwrap();
        let mut s = shard_with(10_000_000, 1_000);
        s.set_scoring(std::sync::Arc::new(Scoring {
            rules: vec![
                WeightedRule {
                    rule: RiskRule::FundedRecently { age_ms: 1_000 },
                    weight: 10,
                },
                WeightedRule {
                    rule: RiskRule::Velocity {
                        window_ms: 60_000,
                        orders: 2,
                    },
                    weight: 50,
                },
                WeightedRule {
                    rule: RiskRule::AmountOverHistory {
                        percent: 300,
                        min_orders: 2,
                    },
                    weight: 30,
                },
                WeightedRule {
                    rule: RiskRule::NewRecipient {
                        currency: usd_c,
                        min_amount_minor: 10_000,
                    },
                    weight: 20,
                },
            ],
            reject_above: Some(60),
            review_above: None,
        }));
        let place = |s: &mut ShardState, id: &str, qty: u32, at: u64, to: Option<&str>| {
            let mut o = order(qty, "US", 1);
            o.key.order_id = OrderId::new(id);
            if let Some(r) = to {
                o.channel = DeliveryChannel::Email;
                o.recipient = r.into();
            }
            let d = step(s, &Command::PlaceOrder(Box::new(o)), at);
            let Decision::Events(evs) = d else {
                panic!("{d:?}")
            };
            let scored = evs.iter().find_map(|e| match e {
                Event::RiskScored { score, .. } => Some((score.score, score.reasons.clone())),
                _ => None,
            });
            let refused = evs.iter().find_map(|e| match e {
                Event::OrderRejected { reason, .. } => Some(*reason),
                _ => None,
            });
            (scored, refused)
        };
        // Funded at 1: an order 499 ms later scores for that alone.
        assert_eq!(
            place(&mut s, "o-1", 1, 500, None),
            (Some((10, vec![RiskReason::FundedRecently])), None)
        );
        // No rule holds: nothing is journaled beyond the order.
        assert_eq!(place(&mut s, "o-2", 1, 5_000, None), (None, None));
        // Two orders in the minute, and four times the average of two: 80, above 60.
        assert_eq!(
            place(&mut s, "o-3", 4, 6_000, None),
            (
                Some((
                    80,
                    vec![RiskReason::Velocity, RiskReason::AmountOverHistory]
                )),
                Some(Rejection::RiskRejected)
            )
        );
        // Later, out of the window: the refused order counts for no history; a new recipient.
        assert_eq!(
            place(&mut s, "o-4", 4, 200_000, Some("a@example.com")),
            (
                Some((
                    50,
                    vec![RiskReason::AmountOverHistory, RiskReason::NewRecipient]
                )),
                None
            )
        );
        // The same recipient again, and the average has risen: nothing holds.
        assert_eq!(
            place(&mut s, "o-5", 4, 400_000, Some("a@example.com")),
            (None, None)
        );
        let key = |id: &str| OrderKey {
            client: ClientId::new("c"),
            order_id: OrderId::new(id),
        };
        assert_eq!(s.risk().score_of(&key("o-3")).map(|r| r.score), Some(80));
        assert!(s.risk().score_of(&key("o-2")).is_none());
        // The refusal is recorded: a retry replays it.
        let mut again = order(4, "US", 1);
        again.key.order_id = OrderId::new("o-3");
        assert!(matches!(
            s.decide_order(&again, &ctx_at(500_000)),
            Decision::Replay(OrderOutcome::Rejected(Rejection::RiskRejected))
        ));
        let w = s.risk().wallet(&WalletId::new("c~w")).unwrap().clone();
        assert_eq!(w.orders, vec![(usd_c, 4, 25_000)]);
        assert_eq!(w.first_funded, Some(UnixMillis(1)));
        let back = ShardState::decode(&s.encode().expect("encodes")).expect("decodes");
        assert_eq!(back, s);
        assert_eq!(back.risk().score_of(&key("o-4")).map(|r| r.score), Some(50));
    }

    /// Issue 15: an order above `review_above` waits for review with its charge reserved, its
    /// codes out of the pool and its card ids taken; approved it completes as decided, rejected
    /// or expired it is refused and gives everything back, each exactly once.
    #[test]
    fn an_order_held_for_review_is_approved_rejected_or_expires_exactly_once() {
        use crate::reviews::Verdict;
        use crate::risk::{RiskRule, Scoring, WeightedRule};
        let mut s = shard_with(10_000_000, 1_000);
        s.set_scoring(std::sync::Arc::new(Scoring {
            rules: vec![WeightedRule {
                rule: RiskRule::FundedRecently { age_ms: 1_000_000 },
                weight: 50,
            }],
            reject_above: Some(90),
            review_above: Some(40),
        }));
        s.set_risk_policy(std::sync::Arc::new(crate::limits::RiskPolicy {
            review_ttl_ms: 10_000,
            ..Default::default()
        }));
        let key = |id: &str| OrderKey {
            client: ClientId::new("c"),
            order_id: OrderId::new(id),
        };
        let req = |id: &str, qty: u32| {
            let mut o = order(qty, "US", 1);
            o.key.order_id = OrderId::new(id);
            o
        };
        let w = WalletId::new("c~w");
        let usd_c = Currency::parse("USD").unwrap();
        let bal = |s: &ShardState| {
            let b = s.wallets().get(&w).unwrap().balance(usd_c);
            (b.available_minor, b.held_minor)
        };
        let admin = Caller {
            client: ClientId::new("ops"),
            admin: true,
        };
        let settle = |s: &mut ShardState, id: &str, approve: bool, by: &Caller, at: u64| {
            let cmd = Command::SettleReview {
                caller: by.clone(),
                key: key(id),
                approve,
            };
            step(s, &cmd, at)
        };
        let (avail0, _) = bal(&s);
        let codes0 = s.pools().available(&SkuId::new("s"));
        let d = step(&mut s, &Command::PlaceOrder(Box::new(req("o-1", 2))), 500);
        let Decision::Events(evs) = d else {
            panic!("{d:?}")
        };
        let Some(Event::OrderPendingReview(p)) = evs
            .iter()
            .find(|e| matches!(e, Event::OrderPendingReview(_)))
        else {
            panic!("{evs:?}")
        };
        let charge = p.order.total().minor();
        assert_eq!(p.until, UnixMillis(10_500));
        assert_eq!(p.score.as_ref().map(|r| r.score), Some(50));
        assert!(!evs.iter().any(|e| matches!(e, Event::OrderCompleted(_))));
        assert_eq!(bal(&s), (avail0 - charge, charge), "the charge is reserved");
        assert_eq!(
            s.pools().available(&SkuId::new("s")),
            codes0 - 2,
            "codes reserved"
        );
        let first = p.order.first_card;
        assert!(s.cards().get(&first).is_none(), "no card before approval");
        // A retry gets the state the order is in.
        assert_eq!(
            s.decide_order(&req("o-1", 2), &ctx_at(600)),
            Decision::Replay(OrderOutcome::PendingReview {
                held: usd(charge),
                until: UnixMillis(10_500)
            })
        );
        // Another order meanwhile takes neither its codes nor its card ids.
        let d = step(
            &mut s,
            &Command::PlaceOrder(Box::new(req("o-2", 1))),
            1_100_000,
        );
        let Decision::Events(evs) = d else {
            panic!("{d:?}")
        };
        let Event::OrderCompleted(o2) = &evs[0] else {
            panic!("{evs:?}")
        };
        assert!(o2.first_card.0 >= first.0 + 2);
        assert!(o2.lines[0].slots[0].0 >= 2, "o-1's slots stay reserved");
        // Only an admin settles a review.
        assert_eq!(
            settle(&mut s, "o-1", true, &caller(), 1_100_001),
            Decision::Reject(Rejection::Forbidden)
        );
        let d = settle(&mut s, "o-1", true, &admin, 1_100_001);
        let Decision::Events(evs) = d else {
            panic!("{d:?}")
        };
        assert!(matches!(
            &evs[0],
            Event::ReviewSettled {
                verdict: Verdict::Approved,
                ..
            }
        ));
        assert!(matches!(&evs[1], Event::OrderCompleted(o) if o.first_card == first));
        assert!(s.cards().get(&first).is_some());
        assert!(s.reviews().is_empty());
        assert_eq!(s.orders().hold(&key("o-1")), None);
        assert!(matches!(
            s.decide_order(&req("o-1", 2), &ctx_at(1_100_002)),
            Decision::Replay(OrderOutcome::Completed { cards: 2, .. })
        ));
        // Approving twice, or an order that never waited, changes nothing.
        assert_eq!(
            settle(&mut s, "o-1", true, &admin, 1_100_003),
            Decision::Reject(Rejection::NotInReview)
        );
        assert_eq!(
            settle(&mut s, "o-2", false, &admin, 1_100_003),
            Decision::Reject(Rejection::NotInReview)
        );
        // Rejected: everything back, the refusal recorded.
        s.set_scoring(std::sync::Arc::new(Scoring {
            rules: vec![WeightedRule {
                rule: RiskRule::FundedRecently { age_ms: u64::MAX },
                weight: 50,
            }],
            reject_above: None,
            review_above: Some(40),
        }));
        let (avail, held) = bal(&s);
        let codes = s.pools().available(&SkuId::new("s"));
        step(
            &mut s,
            &Command::PlaceOrder(Box::new(req("o-3", 3))),
            1_200_000,
        );
        step(
            &mut s,
            &Command::PlaceOrder(Box::new(req("o-4", 1))),
            1_200_000,
        );
        assert_eq!(s.reviews().len(), 2);
        let before_snapshot = s.clone();
        let back = ShardState::decode(&s.encode().expect("encodes")).expect("decodes");
        assert_eq!(back, before_snapshot, "reviews survive a snapshot");
        let d = settle(&mut s, "o-3", false, &admin, 1_200_001);
        assert!(
            matches!(&d, Decision::Events(e) if matches!(e[1], Event::OrderRejected { reason: Rejection::ReviewRejected, .. }))
        );
        assert!(matches!(
            s.decide_order(&req("o-3", 3), &ctx_at(1_200_002)),
            Decision::Replay(OrderOutcome::Rejected(Rejection::ReviewRejected))
        ));
        // The last expires at its deadline by a tick, once.
        assert!(matches!(
            step(&mut s, &Command::Tick, 1_209_999),
            Decision::Answered(_)
        ));
        let d = step(&mut s, &Command::Tick, 1_210_000);
        let Decision::Events(evs) = d else {
            panic!("{d:?}")
        };
        assert!(matches!(
            &evs[0],
            Event::ReviewSettled {
                verdict: Verdict::Expired,
                by: None,
                ..
            }
        ));
        assert!(matches!(
            &evs[1],
            Event::OrderRejected {
                reason: Rejection::ReviewExpired,
                ..
            }
        ));
        assert!(matches!(
            step(&mut s, &Command::Tick, 1_300_000),
            Decision::Answered(_)
        ));
        assert_eq!(
            bal(&s),
            (avail, held),
            "rejected and expired give the charge back"
        );
        assert_eq!(
            s.pools().available(&SkuId::new("s")),
            codes,
            "and their codes"
        );
        assert!(s.reviews().is_empty());
    }

    /// Issue 15: the many-wallet rules. `shared_recipient` holds once enough other wallets
    /// sent cards to the order's recipient in the window, `hot_sku` once the SKU sold enough
    /// cards in it; both forget what is older than their window, and survive a snapshot.
    #[test]
    fn a_recipient_shared_by_many_wallets_and_a_hot_sku_score_within_their_windows() {
        use crate::risk::{RiskReason, RiskRule, Scoring, WeightedRule};
        let mut s = shard_with(1_000_000, 1_000);
        s.set_scoring(std::sync::Arc::new(Scoring {
            rules: vec![
                WeightedRule {
                    rule: RiskRule::SharedRecipient {
                        window_ms: 60_000,
                        wallets: 2,
                    },
                    weight: 30,
                },
                WeightedRule {
                    rule: RiskRule::HotSku {
                        window_ms: 10_000,
                        cards: 5,
                    },
                    weight: 20,
                },
            ],
            reject_above: None,
            review_above: None,
        }));
        for w in ["w2", "w3"] {
            let create = Command::CreateWallet {
                caller: caller(),
                wallet: WalletId::new(w),
                kyc_verified: false,
            };
            step(&mut s, &create, 2);
            let dep = Command::Deposit {
                caller: caller(),
                wallet: WalletId::new(w),
                deposit_id: RequestId::new(w),
                amount: usd(1_000_000),
                reference: "r".into(),
                fingerprint: [9; 16],
            };
            step(&mut s, &dep, 2);
        }
        let mut n = 0;
        let mut place = |s: &mut ShardState, w: &str, qty: u32, to: Option<&str>, at: u64| {
            n += 1;
            let mut o = order(qty, "US", 1);
            o.key.order_id = OrderId::new(&format!("o-{n}"));
            o.wallet = WalletId::new(w);
            if let Some(r) = to {
                o.channel = DeliveryChannel::Email;
                o.recipient = r.into();
            }
            let d = step(s, &Command::PlaceOrder(Box::new(o)), at);
            let Decision::Events(evs) = d else {
                panic!("{d:?}")
            };
            assert!(matches!(evs[0], Event::OrderCompleted(_)), "{evs:?}");
            evs.iter()
                .find_map(|e| match e {
                    Event::RiskScored { score, .. } => Some(score.reasons.clone()),
                    _ => None,
                })
                .unwrap_or_default()
        };
        // Two other wallets before it: the third sender's order holds; the first two do not.
        assert_eq!(place(&mut s, "w", 1, Some("r@example.com"), 5_000), vec![]);
        assert_eq!(place(&mut s, "w2", 1, Some("r@example.com"), 6_000), vec![]);
        assert_eq!(
            place(&mut s, "w3", 1, Some("r@example.com"), 7_000),
            vec![RiskReason::SharedRecipient]
        );
        // A sender counts once, however often it sends; the order's own wallet not at all.
        assert_eq!(
            place(&mut s, "w", 1, Some("r@example.com"), 7_500),
            vec![RiskReason::SharedRecipient]
        );
        // Three cards sold so far; two more in the window make the SKU hot for the next order.
        assert_eq!(place(&mut s, "w", 1, None, 8_000), vec![]);
        assert_eq!(place(&mut s, "w", 2, None, 9_000), vec![RiskReason::HotSku]);
        let back = ShardState::decode(&s.encode().expect("encodes")).expect("decodes");
        assert_eq!(back, s, "the crowd survives a snapshot");
        // Past both windows, neither holds.
        assert_eq!(
            place(&mut s, "w2", 1, Some("r@example.com"), 100_000),
            vec![]
        );
    }
}
