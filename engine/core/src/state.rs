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
            } => self.pools.decide_add_codes(
                &self.catalog,
                sku,
                supplier.as_ref(),
                *first_slot,
                *count,
                *shard_count,
            ),
            Command::CreateWallet {
                caller,
                wallet,
                kyc_verified,
            } => self.wallets.decide_create(caller, wallet, *kyc_verified),
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
                self.cards
                    .decide_redeem(caller, redemption_id, code, *amount, *fingerprint)
            }
            Command::ReverseRedemption {
                caller,
                redemption_id,
            } => self.cards.decide_reversal(caller, redemption_id),
            Command::ReportDelivery {
                card,
                delivered,
                attempt,
                attempts_max,
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
                crate::pricelists::PriceLists::decide_set(&self.catalog, client, list)
            }
            Command::SetPricing { sku, rules } => {
                crate::promotions::Promotions::decide_set(&self.catalog, sku, rules)
            }
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
        self.reports.apply(event);
        self.catalog.apply(event);
        self.pools.apply(event, self.shard);
        self.wallets.apply(event, cx);
        self.orders.apply(event, cx.at);
        self.cards.apply(event);
        self.settlement.apply(event);
        self.deadlines.apply(event, cx.at);
        self.redemption_claims.apply(event);
        self.quotes.apply(event);
        self.price_lists.apply(event);
        self.promotions.apply(event);
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
                kyc_verified: true,
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
                    kyc_verified: true,
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
                kyc_verified: true,
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
                kyc_verified: true,
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
}
