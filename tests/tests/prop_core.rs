//! A property test over the pure core alone: no sled, no threads, no clock. Shards are plain
//! `ShardState`s driven in one thread: commands go to the shard `placement::route` names, orders
//! are forwarded to their wallet's shard, short stock is borrowed from peers (hold, lend,
//! receive, retry or abort) and time moves forward so ticks fire deadlines. After every step
//! every invariant must hold; at the end, replaying the journaled events into empty shards must
//! rebuild identical states, and each state must survive its snapshot encoding.

use giftcard_core::placement::{route, wallet_shard};
use giftcard_core::state::{Decision, ShardState};
use giftcard_core::*;
use giftcard_shard::scenario::{sku, usd};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use rust_decimal::Decimal;

const WALLETS: u32 = 5;
const WINDOW_MS: u64 = 50;

#[derive(Clone, Debug)]
enum Step {
    Deposit {
        wallet: u32,
        minor: i64,
        id: u8,
    },
    Order {
        wallet: u32,
        sku: u32,
        qty: u32,
        id: u8,
        eur: bool,
        admin: bool,
    },
    Upload {
        sku: u32,
        n: u64,
    },
    Freeze {
        wallet: u32,
        frozen: bool,
    },
    Redeem {
        nth: usize,
        minor: i64,
        id: u8,
    },
    Reverse {
        id: u8,
    },
    Deliver {
        nth: usize,
        delivered: bool,
    },
    Close {
        period: u8,
    },
    SetFx {
        spread_bp: i64,
    },
    CreateWallet {
        wallet: u32,
    },
    /// A SKU defined again (the same or another brand: a replay or sku_exists), or anew.
    CreateSku {
        sku: u32,
        brand: u8,
    },
    /// A SKU changed, on its current version or a stale one.
    ChangeSku {
        sku: u32,
        paused: bool,
        markup_bp: i64,
        stale: bool,
    },
    Wait {
        ms: u64,
    },
    /// An admin gives a wallet one of a few tight sets of limits, or drops its own.
    Limits {
        wallet: u32,
        set: u8,
    },
    /// An admin verifies or unverifies a wallet's KYC.
    Kyc {
        wallet: u32,
        verified: bool,
    },
    /// A card frozen or unfrozen by its buyer.
    FreezeCard {
        nth: usize,
        frozen: bool,
    },
    /// A card's delivery sent again by its buyer.
    Resend {
        nth: usize,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0..WALLETS, 1i64..20_000, 0u8..4).prop_map(|(wallet, minor, id)| Step::Deposit { wallet, minor, id }),
        7 => (0..WALLETS, 0..3u32, 1u32..5, 0u8..24, any::<bool>(), prop::bool::weighted(0.1))
            .prop_map(|(wallet, sku, qty, id, eur, admin)| Step::Order { wallet, sku, qty, id, eur, admin }),
        2 => (0..2u32, 1u64..10).prop_map(|(sku, n)| Step::Upload { sku, n }),
        1 => (0..WALLETS, any::<bool>()).prop_map(|(wallet, frozen)| Step::Freeze { wallet, frozen }),
        2 => (0usize..8, 1i64..3_000, 0u8..6).prop_map(|(nth, minor, id)| Step::Redeem { nth, minor, id }),
        1 => (0u8..6).prop_map(|id| Step::Reverse { id }),
        1 => (0usize..12, any::<bool>()).prop_map(|(nth, delivered)| Step::Deliver { nth, delivered }),
        1 => (0u8..3).prop_map(|period| Step::Close { period }),
        1 => (0i64..300).prop_map(|spread_bp| Step::SetFx { spread_bp }),
        1 => (0..WALLETS + 1).prop_map(|wallet| Step::CreateWallet { wallet }),
        1 => (0..4u32, 0u8..2).prop_map(|(sku, brand)| Step::CreateSku { sku, brand }),
        1 => (0..3u32, prop::bool::weighted(0.2), -500i64..2_000, any::<bool>())
            .prop_map(|(sku, paused, markup_bp, stale)| Step::ChangeSku { sku, paused, markup_bp, stale }),
        2 => (1u64..40).prop_map(|ms| Step::Wait { ms }),
        1 => (0..WALLETS, 0u8..4).prop_map(|(wallet, set)| Step::Limits { wallet, set }),
        1 => (0..WALLETS, any::<bool>()).prop_map(|(wallet, verified)| Step::Kyc { wallet, verified }),
        1 => (0usize..12, any::<bool>()).prop_map(|(nth, frozen)| Step::FreezeCard { nth, frozen }),
        1 => (0usize..12).prop_map(|nth| Step::Resend { nth }),
    ]
}

struct World {
    shards: Vec<ShardState>,
    log: Vec<(ShardId, Lsn, Event)>,
    now: u64,
    next_slot: u64,
    next_code: u64,
    cards: Vec<CardId>,
    issued: Vec<CodeHash>,
}

fn new_shards(n: u16) -> Vec<ShardState> {
    (0..n)
        .map(|s| {
            let mut st = ShardState::new(ShardId(s), n);
            st.set_rejection_window_ms(WINDOW_MS);
            st.set_risk_policy(std::sync::Arc::new(risk_policy()));
            st.set_scoring(std::sync::Arc::new(scoring()));
            st
        })
        .collect()
}

/// Every wallet's defaults: an unverified wallet's USD orders stop at $100.00 a day.
fn risk_policy() -> giftcard_core::limits::RiskPolicy {
    giftcard_core::limits::RiskPolicy {
        limits: Default::default(),
        kyc_threshold_minor: vec![(usd(), 10_000)],
        kyc_review: false,
        review_ttl_ms: 0,
    }
}

/// Risk scoring: every rule, so that orders score, some above the threshold.
fn scoring() -> giftcard_core::risk::Scoring {
    use giftcard_core::risk::{RiskRule, Scoring, WeightedRule};
    let w = |rule, weight| WeightedRule { rule, weight };
    Scoring {
        rules: vec![
            w(RiskRule::FundedRecently { age_ms: 30 }, 20),
            w(
                RiskRule::Velocity {
                    window_ms: 50,
                    orders: 2,
                },
                30,
            ),
            w(
                RiskRule::AmountOverHistory {
                    percent: 200,
                    min_orders: 1,
                },
                25,
            ),
            w(
                RiskRule::NewRecipient {
                    currency: usd(),
                    min_amount_minor: 5_000,
                },
                15,
            ),
        ],
        reject_above: Some(60),
        review_above: None,
    }
}

/// The limits `Step::Limits` sets: none of its own, orders per window, amount per window in
/// euros with a single-order maximum in dollars, daily caps.
fn limit_set(set: u8) -> Option<giftcard_core::limits::LimitSet> {
    use giftcard_core::limits::{LimitSet, Velocity};
    let eur = Currency::parse("EUR").unwrap();
    match set {
        1 => Some(LimitSet {
            velocity: vec![Velocity {
                currency: usd(),
                window_ms: 30,
                max_orders: Some(2),
                max_amount_minor: None,
            }],
            ..LimitSet::default()
        }),
        2 => Some(LimitSet {
            order_max: vec![(usd(), 6_000)],
            velocity: vec![Velocity {
                currency: eur,
                window_ms: 40,
                max_orders: None,
                max_amount_minor: Some(5_000),
            }],
            ..LimitSet::default()
        }),
        3 => Some(LimitSet {
            sku_daily_cards: Some(3),
            brand_daily_cards: Some(4),
            ..LimitSet::default()
        }),
        _ => None,
    }
}

fn caller(admin: bool) -> Caller {
    Caller {
        client: ClientId::new("c"),
        admin,
    }
}

impl World {
    fn ctx(&self, shard: ShardId) -> Ctx {
        let st = &self.shards[usize::from(shard.0)];
        Ctx {
            now: UnixMillis(self.now),
            lsn: Lsn(st.last_lsn().0 + 1),
            shard,
        }
    }

    /// Journals and applies events decided on `shard`; replicated ones reach every shard.
    fn commit(&mut self, shard: ShardId, events: Vec<Event>) {
        for ev in events {
            let lsn = Lsn(self.shards[usize::from(shard.0)].last_lsn().0 + 1);
            for st in self.shards.iter_mut() {
                if st.shard() == shard {
                    st.apply(&ev, lsn);
                } else if ev.is_replicated() {
                    st.apply(&ev, Lsn(0));
                }
            }
            if let Event::OrderCompleted(o) = &ev {
                let n: u32 = o.lines.iter().map(|l| l.quantity).sum();
                self.cards
                    .extend((0..u64::from(n)).map(|i| CardId(o.first_card.0 + i)));
                for l in &o.lines {
                    self.issued.extend(l.issued_codes.iter().map(|c| c.hash));
                }
            }
            self.log.push((shard, lsn, ev));
        }
    }

    /// Decides on `shard` and commits; returns the decision for the caller to inspect.
    fn run(&mut self, shard: ShardId, cmd: &Command) -> Decision {
        let d = self.shards[usize::from(shard.0)].decide(cmd, &self.ctx(shard));
        if let Decision::Events(evs) = &d {
            self.commit(shard, evs.clone());
        }
        d
    }

    /// A code hash that places its card on `shard`, as the runtime draws them.
    fn fresh_code(&mut self, shard: ShardId) -> FreshCode {
        loop {
            self.next_code += 1;
            let mut hash = [0u8; 16];
            hash[..8].copy_from_slice(&self.next_code.to_le_bytes());
            hash[8] = 0xC0;
            if placement::shard_for(&hash, self.shards.len() as u16) == shard {
                return FreshCode {
                    hash,
                    sealed: self.next_code.to_le_bytes().to_vec(),
                };
            }
        }
    }

    fn order(&mut self, mut req: OrderRequest) {
        let n = self.shards.len() as u16;
        let mut at = route(&Command::PlaceOrder(Box::new(req.clone())), n);
        let home = wallet_shard(&req.wallet, n);
        let mut peers_left: Vec<ShardId> = (0..n).map(ShardId).filter(|s| *s != home).collect();
        let mut held = false;
        for _ in 0..(2 * n + 2) {
            let d = self.shards[usize::from(at.0)].decide_order(&req, &self.ctx(at));
            match d {
                Decision::Events(evs) => return self.commit(at, evs),
                Decision::Reject(_) | Decision::Replay(_) | Decision::Answered(_) => {
                    if held {
                        let abort = Command::AbortOrder {
                            key: req.key.clone(),
                            reason: Rejection::OutOfStock,
                        };
                        self.run(at, &abort);
                    }
                    return;
                }
                Decision::Forward { claim, to } => {
                    if let Some(c) = claim {
                        self.commit(at, vec![c]);
                    }
                    at = to;
                }
                // Codes are asked for once, after every check, as the runtime draws them.
                Decision::NeedCodes(ids) => {
                    assert!(req.fresh_codes.is_empty(), "codes asked for twice");
                    let next = self.shards[usize::from(at.0)].cards().next_seq();
                    assert!(
                        ids.iter()
                            .all(|c| c.shard() == at && c.0 & ((1 << 48) - 1) >= next),
                        "codes asked for cards not yet sold here: {ids:?}"
                    );
                    req.fresh_codes = ids.iter().map(|_| self.fresh_code(home)).collect();
                }
                Decision::NeedStock { hold, missing } => {
                    if !held {
                        self.commit(at, vec![hold]);
                        held = true;
                    }
                    let Some(peer) = peers_left.pop() else {
                        // As the runtime does: every peer asked, a fill_available order takes
                        // what there is.
                        if req.fulfilment == Fulfilment::FillAvailable && !req.stock_final {
                            req.stock_final = true;
                            continue;
                        }
                        let abort = Command::AbortOrder {
                            key: req.key.clone(),
                            reason: Rejection::OutOfStock,
                        };
                        self.run(at, &abort);
                        return;
                    };
                    for (sku, want) in missing {
                        let lend = Command::LendStock {
                            sku: sku.clone(),
                            want,
                            to: at,
                        };
                        if let Decision::Events(evs) = self.run(peer, &lend) {
                            if let Some(Event::StockLent { ranges, .. }) = evs.first() {
                                if !ranges.is_empty() {
                                    let receive = Command::ReceiveStock {
                                        sku,
                                        ranges: ranges.clone(),
                                        from: peer,
                                    };
                                    self.run(at, &receive);
                                }
                            }
                        }
                    }
                }
            }
        }
        panic!("order {:?} did not settle", req.key);
    }

    fn tick_all(&mut self) {
        for s in 0..self.shards.len() {
            let shard = ShardId(s as u16);
            while self.shards[s]
                .deadlines()
                .next_due()
                .is_some_and(|d| d.0 <= self.now)
            {
                if !matches!(self.run(shard, &Command::Tick), Decision::Events(_)) {
                    break;
                }
            }
        }
    }

    fn step(&mut self, s: &Step) {
        let n = self.shards.len() as u16;
        self.now += 1;
        let eur = Currency::parse("EUR").expect("EUR");
        match s {
            Step::Deposit { wallet, minor, id } => {
                let cmd = Command::Deposit {
                    caller: caller(false),
                    wallet: WalletId::new(&format!("w{wallet}")),
                    deposit_id: RequestId::new(&format!("d{id}")),
                    amount: Money::new(*minor, usd()),
                    reference: "p".into(),
                    fingerprint: [*minor as u8; 16],
                };
                self.run(route(&cmd, n), &cmd);
            }
            Step::Order {
                wallet,
                sku,
                qty,
                id,
                eur: pay_eur,
                admin,
            } => {
                let req = OrderRequest {
                    key: OrderKey {
                        client: ClientId::new("c"),
                        order_id: OrderId::new(&format!("o{id}")),
                    },
                    admin: *admin,
                    wallet: WalletId::new(&format!("w{wallet}")),
                    items: vec![OrderItem {
                        sku: SkuId::new(&format!("sku-{sku}")),
                        quantity: *qty,
                        amount_minor: None,
                    }],
                    region: "US".into(),
                    pay_currency: pay_eur.then_some(eur),
                    fx_quote: None,
                    channel: if id % 2 == 0 {
                        DeliveryChannel::Email
                    } else {
                        DeliveryChannel::None
                    },
                    recipient: "a@example.com".into(),
                    fingerprint: [(*wallet as u8) ^ (*sku as u8) << 2 ^ (*qty as u8) << 4; 16],
                    fresh_codes: Vec::new(),
                    // One order id in three may be filled in part.
                    fulfilment: if id % 3 == 0 {
                        Fulfilment::FillAvailable
                    } else {
                        Fulfilment::AllOrNothing
                    },
                    stock_final: false,
                };
                self.order(req);
            }
            Step::Upload { sku, n: count } => {
                let cmd = Command::AddCodes {
                    sku: SkuId::new(&format!("sku-{sku}")),
                    supplier: None,
                    first_slot: self.next_slot,
                    count: *count,
                    shard_count: n,
                };
                if matches!(self.run(ShardId(0), &cmd), Decision::Events(_)) {
                    self.next_slot += count;
                }
            }
            Step::Limits { wallet, set } => {
                let cmd = Command::SetWalletLimits {
                    caller: caller(true),
                    wallet: WalletId::new(&format!("c~w{wallet}")),
                    limits: limit_set(*set),
                };
                self.run(route(&cmd, n), &cmd);
            }
            Step::Kyc { wallet, verified } => {
                let cmd = Command::SetKyc {
                    caller: caller(true),
                    wallet: WalletId::new(&format!("c~w{wallet}")),
                    verified: *verified,
                };
                self.run(route(&cmd, n), &cmd);
            }
            Step::FreezeCard { nth, frozen } => {
                let Some(card) = self.cards.get(*nth).copied() else {
                    return;
                };
                let cmd = Command::SetCardFrozen {
                    caller: caller(false),
                    card,
                    frozen: *frozen,
                };
                self.run(route(&cmd, n), &cmd);
            }
            Step::Resend { nth } => {
                let Some(card) = self.cards.get(*nth).copied() else {
                    return;
                };
                let cmd = Command::ResendCard {
                    caller: caller(false),
                    card,
                };
                self.run(route(&cmd, n), &cmd);
            }
            Step::Freeze { wallet, frozen } => {
                let cmd = Command::SetWalletFrozen {
                    wallet: WalletId::new(&format!("w{wallet}")),
                    frozen: *frozen,
                };
                self.run(route(&cmd, n), &cmd);
            }
            Step::Redeem { nth, minor, id } => {
                let Some(hash) = self.issued.get(*nth).copied() else {
                    return;
                };
                let cmd = Command::Redeem {
                    caller: caller(false),
                    redemption_id: RequestId::new(&format!("r{id}")),
                    code: hash,
                    amount: Money::new(*minor, usd()),
                    fingerprint: [*id ^ *nth as u8; 16],
                    brands: None,
                };
                // Claimed at the id's home, then decided on the card's shard (as the runtime
                // forwards it).
                let home = route(&cmd, n);
                if let Decision::Forward { claim, to } = self.run(home, &cmd) {
                    if let Some(c) = claim {
                        self.commit(home, vec![c]);
                    }
                    // Refused there without a trace: the claim is let go, as the runtime does.
                    if let Decision::Reject(_) = self.run(to, &cmd) {
                        let release = Command::ReleaseRedemptionClaim {
                            client: caller(false).client,
                            redemption_id: RequestId::new(&format!("r{id}")),
                            fingerprint: [*id ^ *nth as u8; 16],
                        };
                        self.run(home, &release);
                    }
                }
            }
            Step::Reverse { id } => {
                // Asked of every shard, as the engine does; the one holding it reverses it.
                let cmd = Command::ReverseRedemption {
                    caller: caller(false),
                    redemption_id: RequestId::new(&format!("r{id}")),
                };
                for s in 0..n {
                    self.run(ShardId(s), &cmd);
                }
            }
            Step::Deliver { nth, delivered } => {
                let Some(card) = self.cards.get(*nth).copied() else {
                    return;
                };
                // The report of the attempt in flight (as its delivery event would say).
                let at = route(
                    &Command::ReportDelivery {
                        card,
                        delivered: *delivered,
                        attempt: 1,
                        attempts_max: 3,
                        round: 0,
                    },
                    n,
                );
                let attempt = match self.shards[usize::from(at.0)].cards().get(&card) {
                    Some(c) => match c.delivery {
                        giftcard_core::state::Delivery::Pending { failures } => failures + 1,
                        _ => 1,
                    },
                    None => 1,
                };
                // Sometimes a late report on the round before, which must change nothing.
                let current = self.shards[usize::from(at.0)].resends().round(&card);
                let round = if attempt % 2 == 0 {
                    current.saturating_sub(1)
                } else {
                    current
                };
                let cmd = Command::ReportDelivery {
                    card,
                    delivered: *delivered,
                    attempt,
                    attempts_max: 3,
                    round,
                };
                self.run(at, &cmd);
            }
            Step::Close { period } => {
                let cmd = Command::CloseSettlement {
                    period_id: RequestId::new(&format!("p{period}")),
                };
                for s in 0..n {
                    self.run(ShardId(s), &cmd);
                }
            }
            Step::SetFx { spread_bp } => {
                let mut fx = FxTable {
                    spread: Decimal::new(*spread_bp, 4),
                    ..FxTable::default()
                };
                fx.mid.insert((usd(), eur), Decimal::new(92, 2));
                self.run(ShardId(0), &Command::SetFx(fx));
            }
            Step::CreateWallet { wallet } => {
                let cmd = Command::CreateWallet {
                    caller: caller(false),
                    wallet: WalletId::new(&format!("w{wallet}")),
                    kyc_verified: false,
                };
                self.run(route(&cmd, n), &cmd);
            }
            Step::CreateSku { sku: i, brand } => {
                let mut s = definition(*i);
                if *brand == 1 {
                    s.brand = "another".into();
                }
                let before = self.shards[0].catalog().version(&s.id);
                match self.run(ShardId(0), &Command::CreateSku(s)) {
                    Decision::Events(_) => assert_eq!(before, 0, "created over an existing SKU"),
                    Decision::Answered(_) | Decision::Reject(Rejection::SkuExists) => {
                        assert!(before > 0, "a replay or conflict of a SKU never defined")
                    }
                    other => panic!("{other:?}"),
                }
            }
            Step::ChangeSku {
                sku: i,
                paused,
                markup_bp,
                stale,
            } => {
                let id = SkuId::new(&format!("sku-{i}"));
                let version = self.shards[0].catalog().version(&id);
                let changes = giftcard_core::catalog::SkuChanges {
                    status: Some(if *paused {
                        SkuStatus::Paused
                    } else {
                        SkuStatus::Active
                    }),
                    markup: Some(Decimal::new(*markup_bp, 4)),
                    ..Default::default()
                };
                let if_version = Some(if *stale { version - 1 } else { version });
                let cmd = Command::ChangeSku {
                    sku: id.clone(),
                    if_version,
                    changes,
                };
                let d = self.run(ShardId(0), &cmd);
                let after = self.shards[0].catalog().version(&id);
                match d {
                    Decision::Events(_) => assert!(!*stale && after == version + 1),
                    Decision::Reject(Rejection::VersionMismatch) => {
                        assert!(*stale && after == version)
                    }
                    other => panic!("{other:?}"),
                }
            }
            Step::Wait { ms } => self.now += ms,
        }
        self.tick_all();
    }
}

/// The SKUs of the runs: sku-0 and sku-1 supplier codes, sku-2 issued with a cap of 14, and
/// sku-3, a supplier-code SKU only ever created by a step.
fn definition(i: u32) -> Sku {
    if i == 2 {
        let mut issued = sku(2, SkuKind::Issued, 2_500);
        issued.issue_cap = Some(14);
        return issued;
    }
    sku(i, SkuKind::SupplierCode, 1_000 + i64::from(i) * 500)
}

fn setup(n: u16) -> World {
    let mut w = World {
        shards: new_shards(n),
        log: Vec::new(),
        now: 1_000,
        next_slot: 0,
        next_code: 0,
        cards: Vec::new(),
        issued: Vec::new(),
    };
    for i in 0..3 {
        w.run(ShardId(0), &Command::DefineSku(definition(i)));
    }
    w.next_slot = w.shards[0].pools().next_slot();
    w.step(&Step::SetFx { spread_bp: 200 });
    // A fee on every euro order and on e-mail delivery in dollars: the books must balance with
    // them, and the revenue report (checked by verify) must count them.
    let mut fees = giftcard_core::fees::FeeSchedule::default();
    let fee = |order_minor, email_minor| giftcard_core::fees::Fees {
        order_minor,
        email_minor,
        ..Default::default()
    };
    fees.by_currency
        .insert(Currency::parse("EUR").expect("EUR"), fee(20, 0));
    fees.by_currency
        .insert(Currency::parse("USD").expect("USD"), fee(0, 15));
    w.run(ShardId(0), &Command::SetFees(fees));
    for i in 0..WALLETS {
        w.step(&Step::CreateWallet { wallet: i });
        w.step(&Step::Deposit {
            wallet: i,
            minor: 15_000,
            id: 9,
        });
        let eur = Command::Deposit {
            caller: caller(false),
            wallet: WalletId::new(&format!("w{i}")),
            deposit_id: RequestId::new("eur"),
            amount: Money::new(20_000, Currency::parse("EUR").expect("EUR")),
            reference: "eur".into(),
            fingerprint: [1; 16],
        };
        w.run(route(&eur, n), &eur);
    }
    w
}

fn check(w: &World) -> Result<(), TestCaseError> {
    let r = giftcard_shard::verify::check(&w.shards, 0);
    prop_assert!(r.violations.is_empty(), "{:?}", r.violations);
    Ok(())
}

/// Replays the log into empty shards: the states must be identical, and survive encoding.
fn check_replay(w: &World) -> Result<(), TestCaseError> {
    let mut rebuilt = new_shards(w.shards.len() as u16);
    for (shard, lsn, ev) in &w.log {
        for st in rebuilt.iter_mut() {
            if st.shard() == *shard {
                st.apply(ev, *lsn);
            } else if ev.is_replicated() {
                st.apply(ev, Lsn(0));
            }
        }
    }
    for (live, again) in w.shards.iter().zip(&rebuilt) {
        prop_assert_eq!(live, again);
        let bytes = live.encode().expect("encodes");
        let mut decoded = ShardState::decode(&bytes).expect("decodes");
        decoded.set_rejection_window_ms(WINDOW_MS);
        prop_assert_eq!(live, &decoded);
    }
    Ok(())
}

const STEPS: usize = 250;

proptest! {
    // 40 cases of 250 steps: 10,000 steps per `cargo test`, each checked.
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn every_command_keeps_every_invariant_and_replay_rebuilds_the_state(
        shards in 1u16..4,
        steps in prop::collection::vec(step(), STEPS..=STEPS),
    ) {
        let mut w = setup(shards);
        check(&w)?;
        for s in &steps {
            w.step(s);
            check(&w)?;
        }
        check_replay(&w)?;
    }
}

#[test]
fn the_runs_sell_cards_redeem_them_and_forget_rejections() {
    // The generator reaches what the property is about: a fixed run shows each kind happens.
    let mut w = setup(3);
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let steps = prop::collection::vec(step(), 2_000..=2_000)
        .new_tree(&mut runner)
        .expect("steps")
        .current();
    for s in &steps {
        w.step(s);
    }
    let count = |f: &dyn Fn(&Event) -> bool| w.log.iter().filter(|(_, _, e)| f(e)).count();
    let completed = count(&|e| matches!(e, Event::OrderCompleted(_)));
    assert!(completed > 20);
    assert!(count(&|e| matches!(e, Event::Redeemed { .. })) > 0);
    assert!(count(&|e| matches!(e, Event::Expired { .. })) > 0);
    assert!(count(&|e| matches!(e, Event::StockReceived { .. })) > 0);
    assert!(count(&|e| matches!(e, Event::SettlementClosed { .. })) > 0);
    assert!(
        count(&|e| matches!(e, Event::SkuDefined(_))) > 4,
        "SKU changes happen"
    );
    // Limits are set, KYC changes, cards freeze, and orders are refused by limits and KYC.
    assert!(
        count(&|e| matches!(
            e,
            Event::WalletLimitsSet {
                limits: Some(_),
                ..
            }
        )) > 0
    );
    assert!(count(&|e| matches!(e, Event::KycSet { .. })) > 0);
    assert!(count(&|e| matches!(e, Event::CardFrozenSet { .. })) > 0);
    let refused =
        |r: Rejection| count(&|e| matches!(e, Event::OrderRejected { reason, .. } if *reason == r));
    let by_limits = [
        Rejection::OrderLimitExceeded,
        Rejection::VelocityOrdersExceeded,
        Rejection::VelocityAmountExceeded,
        Rejection::SkuDailyLimitExceeded,
        Rejection::BrandDailyLimitExceeded,
    ]
    .into_iter()
    .map(refused)
    .sum::<usize>();
    assert!(by_limits > 0, "no order was refused by a limit");
    assert!(refused(Rejection::KycRequired) > 0, "no order needed KYC");
}
