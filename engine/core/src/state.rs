//! One shard's state and its two functions: `decide` (pure, no mutation) and `apply` (the only
//! mutation). Maps are `HashMap`s (`SpreadMap`s for those that grow with traffic) for lookups,
//! but they are serialized with sorted keys, so a snapshot's bytes depend only on the events
//! applied, never on hashing or insertion order.

use crate::catalog::{FxTable, Sku, SkuKind, SkuStatus, UnitPrice};
use crate::event::*;
use crate::ledger::{postings, Account};
pub use crate::spread::SpreadMap;
use crate::*;
use serde::{Deserialize, Serialize, Serializer};
use std::collections::BTreeMap;

/// Maps of the state: a fast hasher, randomly keyed so client-chosen ids cannot force
/// collisions. Iteration order never leaves the shard (snapshots sort), so the keying is harmless.
pub type HashMap<K, V> = std::collections::HashMap<K, V, ahash::RandomState>;

/// Serializes a `HashMap` as a map in key order, so equal maps give equal bytes.
fn sorted<K: Ord + Serialize, V: Serialize, S: Serializer>(
    map: &HashMap<K, V>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_map(crate::spread::sorted_entries(map.iter()))
}

/// The fixed hash that places a key on a shard (64-bit FNV-1a). It must never change: data
/// written under one placement is replayed under the same one.
pub fn shard_for(key: &[u8], shard_count: u16) -> ShardId {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    ShardId((h % u64::from(shard_count.max(1))) as u16)
}

/// Available and held funds of one currency, and the ledger's own view of the account.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    pub available: i64,
    pub held: i64,
    /// Sum of the ledger postings to this wallet account; must equal `available + held`.
    pub ledger: i64,
}

/// A customer's prepaid account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wallet {
    pub owner: ClientId,
    pub frozen: bool,
    pub kyc_verified: bool,
    /// Per currency; a short vector because most wallets hold one or two currencies.
    pub balances: Vec<(Currency, Balance)>,
    /// What changed the balances, oldest first.
    pub history: Vec<TxEntry>,
}

impl Wallet {
    /// The balance of a currency (zero when the wallet never held it).
    pub fn balance(&self, ccy: Currency) -> Balance {
        self.balances
            .iter()
            .find(|(c, _)| *c == ccy)
            .map(|(_, b)| *b)
            .unwrap_or_default()
    }
    fn balance_mut(&mut self, ccy: Currency) -> &mut Balance {
        let idx = match self.balances.iter().position(|(c, _)| *c == ccy) {
            Some(i) => i,
            None => {
                // Most wallets hold one currency: no growth slack for a million of them.
                self.balances.reserve_exact(1);
                self.balances.push((ccy, Balance::default()));
                self.balances.sort_unstable_by_key(|(c, _)| *c);
                self.balances
                    .iter()
                    .position(|(c, _)| *c == ccy)
                    .unwrap_or(0)
            }
        };
        &mut self.balances[idx].1
    }
}

/// This shard's slice of a SKU's pool of unsold codes (or issue allowance), as slot ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    /// start -> end of disjoint half-open ranges.
    pub ranges: BTreeMap<u64, u64>,
    pub available: u64,
    /// Counters that must reconcile: available = added + received - lent - sold.
    pub added: u64,
    pub received: u64,
    pub lent: u64,
    pub sold: u64,
}

impl Pool {
    /// The lowest `n` slots, without taking them (decide must not mutate).
    pub fn peek(&self, mut n: u64) -> Vec<SlotRange> {
        let mut out = Vec::new();
        for (&start, &end) in &self.ranges {
            if n == 0 {
                break;
            }
            let take = (end - start).min(n);
            out.push((start, start + take));
            n -= take;
        }
        out
    }

    fn insert(&mut self, (start, end): SlotRange) {
        debug_assert!(start < end, "empty slot range");
        self.ranges.insert(start, end);
        self.available += end - start;
    }

    /// Removes ranges that must lie within held ranges; a broken journal is a bug, not input.
    fn remove(&mut self, (start, end): SlotRange) {
        let found = self
            .ranges
            .range(..=start)
            .next_back()
            .map(|(s, e)| (*s, *e));
        let (s, e) = match found {
            Some((s, e)) if e >= end => (s, e),
            _ => panic!("slot range {start}..{end} is not in the pool"),
        };
        self.ranges.remove(&s);
        if s < start {
            self.ranges.insert(s, start);
        }
        if end < e {
            self.ranges.insert(end, e);
        }
        self.available -= end - start;
    }
}

/// Lifecycle of a card.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CardStatus {
    Active,
    Redeemed,
    Voided,
    Expired,
}

/// Where a card's delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Delivery {
    /// The order asked for no delivery (the buyer took the code from the response).
    NotRequired,
    /// Sent, no report yet, or failed `failures` times and being retried.
    Pending {
        failures: u8,
    },
    Delivered,
    /// Failed every allowed attempt; listed for operators.
    GaveUp {
        failures: u8,
    },
}

/// Where a card's code is kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CodeRef {
    /// A supplier code in the store, under its slot.
    Slot(u64),
    /// An issued card's code, sealed.
    Sealed(Vec<u8>),
}

/// A sold card.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Card {
    pub sku: SkuId,
    pub code: CodeRef,
    pub status: CardStatus,
    pub face: Money,
    /// Remaining stored value (issued cards); zero for supplier codes, whose value the brand keeps.
    pub balance: i64,
    /// The ledger's view of `card:{id}`; must equal `balance` for issued cards.
    pub ledger: i64,
    /// The order that sold it.
    pub order: OrderKey,
    pub delivery: Delivery,
}

/// A recorded order answer, with what a retry must match.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRecord {
    pub fingerprint: Fingerprint,
    pub wallet: WalletId,
    pub outcome: OrderOutcome,
    pub at: UnixMillis,
    pub channel: DeliveryChannel,
    pub recipient: std::sync::Arc<str>,
}

/// Funds held for an order waiting for stock from peers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub fingerprint: Fingerprint,
    pub wallet: WalletId,
    pub amount: Money,
}

/// A recorded redemption answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedemptionRecord {
    pub fingerprint: Fingerprint,
    pub outcome: Result<(CardId, Money), Rejection>,
    pub reversed: bool,
}

/// Kinds of wallet history entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxKind {
    Deposit,
    Purchase,
    Hold,
    HoldReleased,
}

/// One entry of a wallet's history: what changed its available balance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxEntry {
    /// The shard sequence of the event: the history's cursor.
    pub seq: u64,
    pub at: UnixMillis,
    pub kind: TxKind,
    /// Change to the available balance (negative for purchases and holds).
    pub amount: Money,
    /// The deposit id or order id.
    pub reference: std::sync::Arc<str>,
}

/// Sales counters per SKU, for the admin report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkuSales {
    pub cards: u64,
    pub revenue_minor: i64,
    pub margin_minor: i64,
}

/// What `decide` concluded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Journal and apply these events, then answer.
    Events(Vec<Event>),
    /// Refused without a trace: nothing changes, nothing is recorded.
    Reject(Rejection),
    /// Done before: answer with the events that did it; nothing is journaled again.
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
}

/// Everything one shard owns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardState {
    pub shard: ShardId,
    pub shard_count: u16,
    pub last_lsn: Lsn,
    pub next_card_seq: u64,
    /// Next free code slot; replicated through `CodesAdded`, allocated only by shard 0.
    pub next_slot: u64,
    #[serde(serialize_with = "sorted")]
    pub skus: HashMap<SkuId, Sku>,
    pub fx: FxTable,
    #[serde(serialize_with = "sorted")]
    pub wallets: HashMap<WalletId, Wallet>,
    pub deposits: SpreadMap<(WalletId, RequestId), (Fingerprint, Money)>,
    #[serde(serialize_with = "sorted")]
    pub pools: HashMap<SkuId, Pool>,
    pub cards: SpreadMap<CardId, Card>,
    pub code_index: SpreadMap<CodeHash, CardId>,
    pub orders: SpreadMap<OrderKey, OrderRecord>,
    pub claims: SpreadMap<OrderKey, (Fingerprint, ShardId)>,
    #[serde(serialize_with = "sorted")]
    pub holds: HashMap<OrderKey, Hold>,
    pub redemptions: SpreadMap<(ClientId, RequestId), RedemptionRecord>,
    #[serde(serialize_with = "sorted")]
    pub sales: HashMap<SkuId, SkuSales>,
    /// Ledger accounts other than wallets and cards (those live on the wallet and card).
    #[serde(serialize_with = "sorted")]
    pub ledger: HashMap<Account, i64>,
    /// Owed to each supplier since the last settlement close on this shard.
    pub unsettled: BTreeMap<SupplierId, SupplierDue>,
    /// Time of the last applied event that carries one (the shard's clock for history).
    pub last_at: UnixMillis,
    /// Settlement periods closed on this shard, with what each closed: a repeated close of the
    /// same period answers this again and changes nothing. Must stay the last serialized field
    /// (snapshots of state format 1 end before it; recovery appends an empty map to read them).
    pub settlements: BTreeMap<RequestId, Vec<(SupplierId, SupplierDue)>>,
    /// Unit prices of fixed-denomination SKUs, derived from the catalog when a SKU is defined
    /// (decimal pricing is a visible share of an order's cost). Not serialized: rebuilt by
    /// `rebuild_derived` after a snapshot is loaded; `price` recomputes on a miss.
    #[serde(skip)]
    pub fixed_prices: HashMap<SkuId, UnitPrice>,
}

/// A priced order, before stock is taken.
struct Plan {
    charged: Money,
    lines: Vec<(SoldLine, u32)>,
    /// Cards needed from each SKU's pool (supplier codes, and issued SKUs with a cap).
    needs: BTreeMap<SkuId, u64>,
}

impl ShardState {
    /// An empty shard.
    pub fn new(shard: ShardId, shard_count: u16) -> ShardState {
        ShardState {
            shard,
            shard_count,
            last_lsn: Lsn(0),
            next_card_seq: 0,
            next_slot: 0,
            skus: HashMap::default(),
            fx: FxTable::default(),
            wallets: HashMap::default(),
            deposits: SpreadMap::new(),
            pools: HashMap::default(),
            cards: SpreadMap::new(),
            code_index: SpreadMap::new(),
            orders: SpreadMap::new(),
            claims: SpreadMap::new(),
            holds: HashMap::default(),
            redemptions: SpreadMap::new(),
            sales: HashMap::default(),
            ledger: HashMap::default(),
            unsettled: BTreeMap::new(),
            last_at: UnixMillis(0),
            settlements: BTreeMap::new(),
            fixed_prices: HashMap::default(),
        }
    }

    /// Rebuilds what is derived from the state and not serialized (after loading a snapshot).
    pub fn rebuild_derived(&mut self) {
        self.fixed_prices = self
            .skus
            .values()
            .filter_map(|s| Some((s.id.clone(), s.unit_price(None).ok()?)))
            .collect();
    }

    /// Where a wallet lives.
    pub fn wallet_shard(&self, wallet: &WalletId) -> ShardId {
        shard_for(wallet.as_str().as_bytes(), self.shard_count)
    }

    /// Decides a command against the current state. Never mutates.
    pub fn decide(&self, cmd: &Command, ctx: &Ctx) -> Decision {
        match cmd {
            Command::DefineSku(sku) => self.decide_define_sku(sku),
            Command::SetFx(fx) => {
                let ok = fx.spread >= rust_decimal::Decimal::ZERO
                    && fx.spread < rust_decimal::Decimal::ONE
                    && fx.mid.values().all(|r| *r > rust_decimal::Decimal::ZERO);
                if ok {
                    Decision::Events(vec![Event::FxSet(fx.clone())])
                } else {
                    Decision::Reject(Rejection::AmountOutOfRange)
                }
            }
            Command::AddCodes {
                sku,
                supplier,
                first_slot,
                count,
                shard_count,
            } => self.decide_add_codes(sku, supplier.as_ref(), *first_slot, *count, *shard_count),
            Command::CreateWallet {
                caller,
                wallet,
                kyc_verified,
            } => {
                if let Some(w) = self.wallets.get(wallet) {
                    // A retry of the same creation by its owner is answered again; anything
                    // else with a taken id is a conflict. No event changes `kyc_verified` after
                    // creation, so this compares with the original request; a command that
                    // changes it must keep the original value for this check.
                    return if w.owner == caller.client && w.kyc_verified == *kyc_verified {
                        Decision::Answered(vec![])
                    } else {
                        Decision::Reject(Rejection::WalletExists)
                    };
                }
                Decision::Events(vec![Event::WalletCreated {
                    wallet: wallet.clone(),
                    owner: caller.client.clone(),
                    kyc_verified: *kyc_verified,
                }])
            }
            Command::Deposit {
                caller,
                wallet,
                deposit_id,
                amount,
                reference,
                fingerprint,
            } => self.decide_deposit(
                caller,
                wallet,
                deposit_id,
                *amount,
                reference,
                *fingerprint,
                ctx.now,
            ),
            Command::SetWalletFrozen { wallet, frozen } => match self.wallets.get(wallet) {
                None => Decision::Reject(Rejection::WalletNotFound),
                Some(_) => Decision::Events(vec![Event::WalletFrozenSet {
                    wallet: wallet.clone(),
                    frozen: *frozen,
                }]),
            },
            Command::ClaimOrder {
                key,
                fingerprint,
                wallet_shard,
            } => Decision::Events(vec![Event::OrderClaimed {
                key: key.clone(),
                fingerprint: *fingerprint,
                wallet_shard: *wallet_shard,
            }]),
            Command::PlaceOrder(req) => self.decide_order(req, ctx),
            Command::LendStock { sku, want, to } => self.decide_lend(sku, *want, *to),
            Command::ReceiveStock { sku, ranges, from } => {
                Decision::Events(vec![Event::StockReceived {
                    sku: sku.clone(),
                    from: *from,
                    ranges: ranges.clone(),
                }])
            }
            Command::AbortOrder { key, reason } => self.decide_abort(key, *reason),
            Command::Redeem {
                caller,
                redemption_id,
                code,
                amount,
                fingerprint,
            } => self.decide_redeem(caller, redemption_id, code, *amount, *fingerprint),
            Command::ReverseRedemption {
                caller,
                redemption_id,
            } => self.decide_reversal(caller, redemption_id),
            Command::ReportDelivery {
                card,
                delivered,
                attempts_max,
            } => self.decide_delivery(*card, *delivered, *attempts_max),
            Command::CloseSettlement { period_id } => {
                if let Some(dues) = self.settlements.get(period_id) {
                    return Decision::Answered(vec![Event::SettlementClosed {
                        period_id: period_id.clone(),
                        dues: dues.clone(),
                    }]);
                }
                Decision::Events(vec![Event::SettlementClosed {
                    period_id: period_id.clone(),
                    dues: self
                        .unsettled
                        .iter()
                        .map(|(s, d)| (s.clone(), d.clone()))
                        .collect(),
                }])
            }
        }
    }

    fn decide_define_sku(&self, sku: &Sku) -> Decision {
        if let Err(r) = sku.validate() {
            return Decision::Reject(r);
        }
        let existing = self.skus.get(&sku.id);
        if let Some(old) = existing {
            // Kind, currency and cap fix what was already sold and stocked; they never change.
            if old.kind != sku.kind
                || old.currency != sku.currency
                || old.issue_cap != sku.issue_cap
            {
                return Decision::Reject(Rejection::InvalidSku);
            }
        }
        let mut events = vec![Event::SkuDefined(sku.clone())];
        if let (None, Some(cap)) = (existing, sku.issue_cap) {
            // An issue cap becomes an allowance pool, spread like codes, so no shard serializes issuance.
            if let Decision::Events(mut e) =
                self.decide_add_codes(&sku.id, None, self.next_slot, cap, self.shard_count)
            {
                events.append(&mut e);
            }
        }
        Decision::Events(events)
    }

    fn decide_add_codes(
        &self,
        sku: &SkuId,
        supplier: Option<&SupplierId>,
        first: u64,
        count: u64,
        shards: u16,
    ) -> Decision {
        if count == 0 || first < self.next_slot {
            return Decision::Reject(Rejection::QuantityOutOfRange);
        }
        if let (Some(s), Some(def)) = (supplier, self.skus.get(sku)) {
            if &def.supplier != s {
                return Decision::Reject(Rejection::Forbidden);
            }
        }
        if !self.skus.contains_key(sku) && supplier.is_some() {
            return Decision::Reject(Rejection::SkuNotFound);
        }
        let shards = u64::from(shards.max(1));
        let mut slices = Vec::new();
        let mut start = first;
        for i in 0..shards {
            let n = count / shards + u64::from(i < count % shards);
            if n > 0 {
                slices.push((ShardId(i as u16), (start, start + n)));
                start += n;
            }
        }
        Decision::Events(vec![Event::CodesAdded {
            sku: sku.clone(),
            slices,
        }])
    }

    fn owned_wallet(&self, caller: &Caller, wallet: &WalletId) -> Result<&Wallet, Rejection> {
        match self.wallets.get(wallet) {
            Some(w) if caller.admin || w.owner == caller.client => Ok(w),
            // Another tenant's wallet is indistinguishable from a missing one.
            _ => Err(Rejection::WalletNotFound),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn decide_deposit(
        &self,
        caller: &Caller,
        wallet: &WalletId,
        id: &RequestId,
        amount: Money,
        reference: &str,
        fp: Fingerprint,
        at: UnixMillis,
    ) -> Decision {
        let w = match self.owned_wallet(caller, wallet) {
            Ok(w) => w,
            Err(r) => return Decision::Reject(r),
        };
        if let Some((seen, _)) = self.deposits.get(&(wallet.clone(), id.clone())) {
            return if *seen == fp {
                Decision::Events(vec![])
            } else {
                Decision::Reject(Rejection::IdempotencyConflict)
            };
        }
        if !(1..=AMOUNT_MINOR_MAX).contains(&amount.minor()) {
            return Decision::Reject(Rejection::AmountOutOfRange);
        }
        if w.frozen {
            return Decision::Reject(Rejection::WalletFrozen);
        }
        let b = w.balance(amount.currency());
        if b.available
            .checked_add(amount.minor())
            .is_none_or(|v| v > AMOUNT_MINOR_MAX * 1000)
        {
            return Decision::Reject(Rejection::AmountOutOfRange);
        }
        Decision::Events(vec![Event::Deposited {
            wallet: wallet.clone(),
            deposit_id: id.clone(),
            amount,
            reference: reference.to_owned(),
            fingerprint: fp,
            at,
        }])
    }

    /// Decides an order; the same as `decide(&Command::PlaceOrder(..))` without boxing a copy.
    pub fn decide_order(&self, req: &OrderRequest, ctx: &Ctx) -> Decision {
        let key = &req.key;
        if let Some(rec) = self.orders.get(key) {
            return if rec.fingerprint == req.fingerprint {
                Decision::Replay(rec.outcome.clone())
            } else {
                Decision::Reject(Rejection::IdempotencyConflict)
            };
        }
        let hold = self.holds.get(key);
        if let Some(h) = hold {
            if h.fingerprint != req.fingerprint {
                return Decision::Reject(Rejection::IdempotencyConflict);
            }
        }
        let wallet_shard = self.wallet_shard(&req.wallet);
        if wallet_shard != self.shard {
            return match self.claims.get(key) {
                Some((fp, _)) if *fp != req.fingerprint => {
                    Decision::Reject(Rejection::IdempotencyConflict)
                }
                Some((_, to)) => Decision::Forward {
                    claim: None,
                    to: *to,
                },
                None => Decision::Forward {
                    claim: Some(Event::OrderClaimed {
                        key: key.clone(),
                        fingerprint: req.fingerprint,
                        wallet_shard,
                    }),
                    to: wallet_shard,
                },
            };
        }
        let wallet = match self.wallets.get(&req.wallet) {
            Some(w) if req.admin || w.owner == key.client => w,
            _ => return Decision::Reject(Rejection::WalletNotFound),
        };
        let rejected = |reason| {
            Decision::Events(vec![Event::OrderRejected {
                key: key.clone(),
                fingerprint: req.fingerprint,
                wallet: req.wallet.clone(),
                reason,
                released_hold: hold.map(|h| h.amount),
            }])
        };
        let cards = req.card_count();
        if req.items.is_empty() || cards == 0 || cards > u64::from(ORDER_CARDS_MAX) {
            return Decision::Reject(Rejection::QuantityOutOfRange);
        }
        if wallet.frozen {
            return rejected(Rejection::WalletFrozen);
        }
        let plan = match self.price(req) {
            Ok(p) => p,
            Err(r) => return rejected(r),
        };
        let held = hold.map_or(0, |h| h.amount.minor());
        let bal = wallet.balance(plan.charged.currency());
        if hold.is_some_and(|h| h.amount.currency() != plan.charged.currency())
            || bal.available + held < plan.charged.minor()
        {
            return rejected(Rejection::InsufficientFunds);
        }
        let missing: Vec<(SkuId, u64)> = plan
            .needs
            .iter()
            .filter_map(|(sku, n)| {
                let have = self.pools.get(sku).map_or(0, |p| p.available);
                (have < *n).then(|| (sku.clone(), n - have))
            })
            .collect();
        if !missing.is_empty() {
            // When already holding, the runtime does not journal `hold` again: it asks further peers.
            return Decision::NeedStock {
                hold: Event::FundsHeld {
                    key: key.clone(),
                    fingerprint: req.fingerprint,
                    wallet: req.wallet.clone(),
                    amount: plan.charged,
                },
                missing,
            };
        }
        if req.fresh_codes.len() as u64
            != plan
                .lines
                .iter()
                .filter(|(l, _)| l.issued)
                .map(|(l, _)| u64::from(l.quantity))
                .sum::<u64>()
        {
            return Decision::Reject(Rejection::QuantityOutOfRange);
        }
        Decision::Events(vec![Event::OrderCompleted(Box::new(self.fill(
            req,
            plan,
            hold.map(|h| h.amount),
            ctx,
        )))])
    }

    /// Prices every line and converts it to the pay currency.
    fn price(&self, req: &OrderRequest) -> Result<Plan, Rejection> {
        let first_ccy = req
            .items
            .first()
            .and_then(|i| self.skus.get(&i.sku))
            .map(|s| s.currency);
        let pay = req
            .pay_currency
            .or(first_ccy)
            .ok_or(Rejection::SkuUnavailable)?;
        let mut charged = Money::zero(pay);
        let mut lines = Vec::with_capacity(req.items.len());
        let mut needs: BTreeMap<SkuId, u64> = BTreeMap::new();
        for item in &req.items {
            let sku = self.skus.get(&item.sku).ok_or(Rejection::SkuUnavailable)?;
            if sku.status != SkuStatus::Active {
                return Err(Rejection::SkuUnavailable);
            }
            if !sku.sells_in(&req.region) {
                return Err(Rejection::RegionNotAllowed);
            }
            if item.quantity == 0 {
                return Err(Rejection::QuantityOutOfRange);
            }
            let cached = if item.amount_minor.is_none() {
                self.fixed_prices.get(&sku.id).copied()
            } else {
                None
            };
            let UnitPrice { face, price, cost } = match cached {
                Some(p) => p,
                None => sku.unit_price(item.amount_minor)?,
            };
            let total = price.checked_mul(item.quantity)?;
            let (line_charged, at_mid) = if sku.currency == pay {
                (total, total)
            } else {
                let c = self.fx.convert_for_payer(total, pay)?;
                (c.charged, c.at_mid)
            };
            charged = charged.checked_add(line_charged)?;
            if sku.kind == SkuKind::SupplierCode || sku.issue_cap.is_some() {
                *needs.entry(sku.id.clone()).or_default() += u64::from(item.quantity);
            }
            let line = SoldLine {
                sku: sku.id.clone(),
                supplier: sku.supplier.clone(),
                issued: sku.kind == SkuKind::Issued,
                quantity: item.quantity,
                face,
                unit_price: price,
                unit_cost: cost,
                charged: line_charged,
                charged_at_mid: at_mid,
                slots: Vec::new(),
                issued_codes: Vec::new(),
            };
            lines.push((line, item.quantity));
        }
        Ok(Plan {
            charged,
            lines,
            needs,
        })
    }

    /// Takes stock and codes for a priced plan. Stock sufficiency was checked by the caller.
    fn fill(
        &self,
        req: &OrderRequest,
        plan: Plan,
        captured_hold: Option<Money>,
        ctx: &Ctx,
    ) -> CompletedOrder {
        // Usually one SKU: a short vector beats a map here.
        let mut taken: Vec<(&SkuId, Vec<SlotRange>)> = plan
            .needs
            .iter()
            .map(|(sku, n)| {
                (
                    sku,
                    self.pools.get(sku).map(|p| p.peek(*n)).unwrap_or_default(),
                )
            })
            .collect();
        let mut fresh = req.fresh_codes.iter();
        let mut lines = Vec::with_capacity(plan.lines.len());
        for (mut line, qty) in plan.lines {
            if let Some((_, ranges)) = taken.iter_mut().find(|(sku, _)| **sku == line.sku) {
                line.slots = split_off_front(ranges, u64::from(qty));
            }
            if line.issued {
                // Slots of an issued line are its share of the issue cap, not stored codes.
                line.issued_codes = fresh.by_ref().take(qty as usize).cloned().collect();
            }
            lines.push(line);
        }
        CompletedOrder {
            key: req.key.clone(),
            fingerprint: req.fingerprint,
            wallet: req.wallet.clone(),
            charged: plan.charged,
            captured_hold,
            first_card: CardId::new(self.shard, self.next_card_seq),
            lines,
            channel: req.channel,
            recipient: req.recipient.as_str().into(),
            at: ctx.now,
        }
    }

    fn decide_lend(&self, sku: &SkuId, want: u64, to: ShardId) -> Decision {
        let have = self.pools.get(sku).map_or(0, |p| p.available);
        // Lend at least what was asked and up to half of what we have, so a hot SKU's stock
        // drifts to the shards that sell it instead of being borrowed one code at a time.
        let give = have.min(want.max(have / 2));
        let ranges = self
            .pools
            .get(sku)
            .map(|p| p.peek(give))
            .unwrap_or_default();
        Decision::Events(vec![Event::StockLent {
            sku: sku.clone(),
            to,
            ranges,
        }])
    }

    fn decide_abort(&self, key: &OrderKey, reason: Rejection) -> Decision {
        let Some(hold) = self.holds.get(key) else {
            return Decision::Events(vec![]);
        };
        if reason == Rejection::OutOfStock {
            return Decision::Events(vec![Event::OrderRejected {
                key: key.clone(),
                fingerprint: hold.fingerprint,
                wallet: hold.wallet.clone(),
                reason,
                released_hold: Some(hold.amount),
            }]);
        }
        Decision::Events(vec![Event::OrderAborted {
            key: key.clone(),
            wallet: hold.wallet.clone(),
            released_hold: hold.amount,
        }])
    }

    fn decide_redeem(
        &self,
        caller: &Caller,
        id: &RequestId,
        code: &CodeHash,
        amount: Money,
        fp: Fingerprint,
    ) -> Decision {
        let rkey = (caller.client.clone(), id.clone());
        if let Some(rec) = self.redemptions.get(&rkey) {
            return if rec.fingerprint == fp {
                Decision::Events(vec![])
            } else {
                Decision::Reject(Rejection::IdempotencyConflict)
            };
        }
        let Some(card_id) = self.code_index.get(code) else {
            return Decision::Reject(Rejection::CardNotFound);
        };
        let Some(card) = self.cards.get(card_id) else {
            return Decision::Reject(Rejection::CardNotFound);
        };
        let reject = |reason| {
            Decision::Events(vec![Event::RedemptionRejected {
                client: caller.client.clone(),
                redemption_id: id.clone(),
                fingerprint: fp,
                reason,
            }])
        };
        if !(1..=AMOUNT_MINOR_MAX).contains(&amount.minor()) {
            return Decision::Reject(Rejection::AmountOutOfRange);
        }
        if amount.currency() != card.face.currency() {
            return reject(Rejection::CurrencyMismatch);
        }
        if card.status != CardStatus::Active {
            return reject(Rejection::CardNotActive);
        }
        if card.balance < amount.minor() {
            return reject(Rejection::InsufficientBalance);
        }
        Decision::Events(vec![Event::Redeemed {
            client: caller.client.clone(),
            redemption_id: id.clone(),
            fingerprint: fp,
            card: *card_id,
            amount,
        }])
    }

    fn decide_delivery(&self, card_id: CardId, delivered: bool, attempts_max: u8) -> Decision {
        let Some(card) = self.cards.get(&card_id) else {
            return Decision::Reject(Rejection::CardNotFound);
        };
        let failures = match card.delivery {
            Delivery::Pending { failures } => failures,
            // Reports after the outcome is settled change nothing: the delivery service retries too.
            Delivery::Delivered | Delivery::GaveUp { .. } | Delivery::NotRequired => {
                return Decision::Events(vec![])
            }
        };
        let attempt = failures.saturating_add(1);
        let gave_up = !delivered && attempt >= attempts_max.max(1);
        Decision::Events(vec![Event::DeliveryReported {
            card: card_id,
            delivered,
            attempt,
            gave_up,
        }])
    }

    fn decide_reversal(&self, caller: &Caller, id: &RequestId) -> Decision {
        match self.redemptions.get(&(caller.client.clone(), id.clone())) {
            None
            | Some(RedemptionRecord {
                outcome: Err(_), ..
            }) => Decision::Reject(Rejection::RedemptionNotFound),
            Some(RedemptionRecord { reversed: true, .. }) => {
                Decision::Reject(Rejection::AlreadyReversed)
            }
            Some(RedemptionRecord {
                outcome: Ok((card, amount)),
                ..
            }) => Decision::Events(vec![Event::RedemptionReversed {
                client: caller.client.clone(),
                redemption_id: id.clone(),
                card: *card,
                amount: *amount,
            }]),
        }
    }

    /// Applies one event. Cannot fail: a journal that does not fit the state is a bug.
    pub fn apply(&mut self, event: &Event, lsn: Lsn) {
        debug_assert!(
            lsn > self.last_lsn || event.is_replicated() || lsn == Lsn(0),
            "lsn went backwards"
        );
        self.last_lsn = self.last_lsn.max(lsn);
        for p in postings(event) {
            match p.account {
                Account::Wallet(..) | Account::Card(_) => {}
                account => match self.ledger.get_mut(&account) {
                    Some(v) => *v += p.amount.minor(),
                    None => drop(self.ledger.insert(account, p.amount.minor())),
                },
            }
        }
        match event {
            Event::SkuDefined(sku) => {
                match sku.unit_price(None) {
                    Ok(p) => drop(self.fixed_prices.insert(sku.id.clone(), p)),
                    Err(_) => drop(self.fixed_prices.remove(&sku.id)),
                }
                self.skus.insert(sku.id.clone(), sku.clone());
            }
            Event::FxSet(fx) => self.fx = fx.clone(),
            Event::CodesAdded { sku, slices } => {
                for (shard, range) in slices {
                    self.next_slot = self.next_slot.max(range.1);
                    if *shard == self.shard {
                        let pool = self.pools.entry(sku.clone()).or_default();
                        pool.insert(*range);
                        pool.added += range.1 - range.0;
                    }
                }
            }
            Event::WalletCreated {
                wallet,
                owner,
                kyc_verified,
            } => {
                let w = Wallet {
                    owner: owner.clone(),
                    frozen: false,
                    kyc_verified: *kyc_verified,
                    balances: Vec::new(),
                    history: Vec::new(),
                };
                self.wallets.insert(wallet.clone(), w);
            }
            Event::Deposited {
                wallet,
                deposit_id,
                amount,
                fingerprint,
                at,
                ..
            } => {
                self.last_at = self.last_at.max(*at);
                self.record(wallet, lsn, TxKind::Deposit, *amount, &deposit_id.0);
                let b = self.wallet_mut(wallet).balance_mut(amount.currency());
                b.available += amount.minor();
                b.ledger += amount.minor();
                self.deposits.insert(
                    (wallet.clone(), deposit_id.clone()),
                    (*fingerprint, *amount),
                );
            }
            Event::WalletFrozenSet { wallet, frozen } => self.wallet_mut(wallet).frozen = *frozen,
            Event::OrderClaimed {
                key,
                fingerprint,
                wallet_shard,
            } => {
                self.claims
                    .insert(key.clone(), (*fingerprint, *wallet_shard));
            }
            Event::FundsHeld {
                key,
                fingerprint,
                wallet,
                amount,
            } => {
                self.record(
                    wallet,
                    lsn,
                    TxKind::Hold,
                    Money::new(-amount.minor(), amount.currency()),
                    &key.order_id.0,
                );
                let b = self.wallet_mut(wallet).balance_mut(amount.currency());
                b.available -= amount.minor();
                b.held += amount.minor();
                debug_assert!(b.available >= 0, "available went negative");
                self.holds.insert(
                    key.clone(),
                    Hold {
                        fingerprint: *fingerprint,
                        wallet: wallet.clone(),
                        amount: *amount,
                    },
                );
            }
            Event::OrderCompleted(order) => {
                self.last_at = self.last_at.max(order.at);
                if let Some(h) = order.captured_hold {
                    self.record(
                        &order.wallet,
                        lsn,
                        TxKind::HoldReleased,
                        h,
                        &order.key.order_id.0,
                    );
                }
                let charged = Money::new(-order.charged.minor(), order.charged.currency());
                self.record(
                    &order.wallet,
                    lsn,
                    TxKind::Purchase,
                    charged,
                    &order.key.order_id.0,
                );
                self.apply_completed(order)
            }
            Event::OrderRejected {
                key,
                fingerprint,
                wallet,
                reason,
                released_hold,
            } => {
                if let Some(h) = released_hold {
                    self.record(wallet, lsn, TxKind::HoldReleased, *h, &key.order_id.0);
                    self.release(key, wallet, *h);
                }
                let rec = OrderRecord {
                    fingerprint: *fingerprint,
                    wallet: wallet.clone(),
                    outcome: OrderOutcome::Rejected(*reason),
                    at: self.last_at,
                    channel: DeliveryChannel::None,
                    recipient: "".into(),
                };
                self.orders.insert(key.clone(), rec);
            }
            Event::OrderAborted {
                key,
                wallet,
                released_hold,
            } => {
                self.record(
                    wallet,
                    lsn,
                    TxKind::HoldReleased,
                    *released_hold,
                    &key.order_id.0,
                );
                self.release(key, wallet, *released_hold)
            }
            Event::DeliveryReported {
                card,
                delivered,
                attempt,
                gave_up,
            } => {
                let c = self.cards.get_mut(card).expect("reported card exists");
                c.delivery = match (delivered, gave_up) {
                    (true, _) => Delivery::Delivered,
                    (false, true) => Delivery::GaveUp { failures: *attempt },
                    (false, false) => Delivery::Pending { failures: *attempt },
                };
            }
            Event::SettlementClosed { period_id, dues } => {
                self.settlements.insert(period_id.clone(), dues.clone());
                for (supplier, due) in dues {
                    let open = self.unsettled.entry(supplier.clone()).or_default();
                    open.cards -= due.cards;
                    for (ccy, owed) in &due.owed {
                        if let Some(e) = open.owed.iter_mut().find(|(c, _)| c == ccy) {
                            e.1 -= owed;
                        }
                    }
                    open.orders.drain(..due.orders.len().min(open.orders.len()));
                    if open.cards == 0 {
                        self.unsettled.remove(supplier);
                    }
                }
            }
            Event::StockLent { sku, ranges, .. } => {
                let pool = self.pools.entry(sku.clone()).or_default();
                for r in ranges {
                    pool.remove(*r);
                    pool.lent += r.1 - r.0;
                }
            }
            Event::StockReceived { sku, ranges, .. } => {
                let pool = self.pools.entry(sku.clone()).or_default();
                for r in ranges {
                    pool.insert(*r);
                    pool.received += r.1 - r.0;
                }
            }
            Event::Redeemed {
                client,
                redemption_id,
                fingerprint,
                card,
                amount,
            } => {
                let c = self.cards.get_mut(card).expect("redeemed card exists");
                c.balance -= amount.minor();
                c.ledger -= amount.minor();
                if c.balance == 0 {
                    c.status = CardStatus::Redeemed;
                }
                let rec = RedemptionRecord {
                    fingerprint: *fingerprint,
                    outcome: Ok((*card, *amount)),
                    reversed: false,
                };
                self.redemptions
                    .insert((client.clone(), redemption_id.clone()), rec);
            }
            Event::RedemptionRejected {
                client,
                redemption_id,
                fingerprint,
                reason,
            } => {
                let rec = RedemptionRecord {
                    fingerprint: *fingerprint,
                    outcome: Err(*reason),
                    reversed: false,
                };
                self.redemptions
                    .insert((client.clone(), redemption_id.clone()), rec);
            }
            Event::RedemptionReversed {
                client,
                redemption_id,
                card,
                amount,
            } => {
                let c = self.cards.get_mut(card).expect("reversed card exists");
                c.balance += amount.minor();
                c.ledger += amount.minor();
                c.status = CardStatus::Active;
                if let Some(rec) = self
                    .redemptions
                    .get_mut(&(client.clone(), redemption_id.clone()))
                {
                    rec.reversed = true;
                }
            }
        }
    }

    fn record(
        &mut self,
        wallet: &WalletId,
        lsn: Lsn,
        kind: TxKind,
        amount: Money,
        reference: &std::sync::Arc<str>,
    ) {
        let at = self.last_at;
        let history = &mut self.wallet_mut(wallet).history;
        if history.capacity() == 0 {
            // Many wallets see one deposit and little else: start without growth slack.
            history.reserve_exact(1);
        }
        history.push(TxEntry {
            seq: lsn.0,
            at,
            kind,
            amount,
            reference: reference.clone(),
        });
    }

    fn wallet_mut(&mut self, wallet: &WalletId) -> &mut Wallet {
        self.wallets
            .get_mut(wallet)
            .expect("event names an existing wallet")
    }

    fn release(&mut self, key: &OrderKey, wallet: &WalletId, amount: Money) {
        let b = self.wallet_mut(wallet).balance_mut(amount.currency());
        b.held -= amount.minor();
        b.available += amount.minor();
        self.holds.remove(key);
    }

    fn apply_completed(&mut self, order: &CompletedOrder) {
        let pay = order.charged.currency();
        let b = self.wallet_mut(&order.wallet).balance_mut(pay);
        if let Some(h) = order.captured_hold {
            b.held -= h.minor();
            b.available += h.minor();
        }
        b.available -= order.charged.minor();
        b.ledger -= order.charged.minor();
        debug_assert!(b.available >= 0, "available went negative");
        self.holds.remove(&order.key);
        let mut seq = order.first_card.0;
        let mut cards = 0u32;
        let delivery = if order.channel == DeliveryChannel::None {
            Delivery::NotRequired
        } else {
            Delivery::Pending { failures: 0 }
        };
        for line in &order.lines {
            if !line.slots.is_empty() {
                let pool = self.pools.entry(line.sku.clone()).or_default();
                for r in &line.slots {
                    pool.remove(*r);
                    pool.sold += r.1 - r.0;
                }
            }
            if line.issued {
                for code in &line.issued_codes {
                    let card = Card {
                        sku: line.sku.clone(),
                        code: CodeRef::Sealed(code.sealed.clone()),
                        status: CardStatus::Active,
                        face: line.face,
                        balance: line.face.minor(),
                        ledger: line.face.minor(),
                        order: order.key.clone(),
                        delivery,
                    };
                    self.code_index.insert(code.hash, CardId(seq));
                    self.cards.insert(CardId(seq), card);
                    seq += 1;
                }
            } else {
                for slot in line.slots.iter().flat_map(|(s, e)| *s..*e) {
                    let card = Card {
                        sku: line.sku.clone(),
                        code: CodeRef::Slot(slot),
                        status: CardStatus::Active,
                        face: line.face,
                        balance: 0,
                        ledger: 0,
                        order: order.key.clone(),
                        delivery,
                    };
                    self.cards.insert(CardId(seq), card);
                    seq += 1;
                }
            }
            cards += line.quantity;
            if !line.issued {
                let due = self.unsettled.entry(line.supplier.clone()).or_default();
                due.cards += u64::from(line.quantity);
                let owed = line.unit_cost.minor() * i64::from(line.quantity);
                match due
                    .owed
                    .iter_mut()
                    .find(|(c, _)| *c == line.unit_cost.currency())
                {
                    Some(e) => e.1 += owed,
                    None => due.owed.push((line.unit_cost.currency(), owed)),
                }
                if due.orders.last() != Some(&order.key) {
                    due.orders.push(order.key.clone());
                }
            }
            let s = match self.sales.get_mut(&line.sku) {
                Some(s) => s,
                None => self.sales.entry(line.sku.clone()).or_default(),
            };
            s.cards += u64::from(line.quantity);
            s.revenue_minor += line.unit_price.minor() * i64::from(line.quantity);
            s.margin_minor +=
                (line.unit_price.minor() - line.unit_cost.minor()) * i64::from(line.quantity);
        }
        self.next_card_seq = self.next_card_seq.max(seq & ((1 << 48) - 1));
        let outcome = OrderOutcome::Completed {
            charged: order.charged,
            first_card: order.first_card,
            cards,
        };
        let rec = OrderRecord {
            fingerprint: order.fingerprint,
            wallet: order.wallet.clone(),
            outcome,
            at: order.at,
            channel: order.channel,
            recipient: order.recipient.clone(),
        };
        self.orders.insert(order.key.clone(), rec);
    }
}

/// Takes the first `n` slots off the front of `ranges`.
fn split_off_front(ranges: &mut Vec<SlotRange>, mut n: u64) -> Vec<SlotRange> {
    let mut out = Vec::new();
    while n > 0 && !ranges.is_empty() {
        let (s, e) = ranges[0];
        let take = (e - s).min(n);
        out.push((s, s + take));
        n -= take;
        if s + take == e {
            ranges.remove(0);
        } else {
            ranges[0].0 = s + take;
        }
    }
    out
}

/// The serialized form of a shard's state: canonical bytes, so two states are equal exactly
/// when their snapshots are.
pub type ShardSnapshot = Vec<u8>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Denomination, SkuStatus};
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
        let sku = Sku {
            id: SkuId::new("s"),
            brand: "b".into(),
            category: "c".into(),
            kind: SkuKind::SupplierCode,
            denomination: Denomination::Fixed(2500),
            currency: Currency::parse("USD").unwrap(),
            wholesale_discount: Decimal::new(15, 2),
            markup: Decimal::ZERO,
            supplier: SupplierId::new("sup"),
            regions: vec!["US".into()],
            status: SkuStatus::Active,
            issue_cap: None,
        };
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
        let b = s.wallets[&WalletId::new("w")].balance(Currency::parse("USD").unwrap());
        assert_eq!((b.available, b.held, b.ledger), (95_000, 0, 95_000));
        assert_eq!(
            s.ledger[&Account::RevenueMargin(Currency::parse("USD").unwrap())],
            750
        );
        assert_eq!(s.pools[&SkuId::new("s")].available, 8);
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
                wallet: WalletId::new("w"),
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

    #[test]
    fn pool_takes_lowest_slots_and_splits_ranges() {
        let mut p = Pool::default();
        p.insert((10, 20));
        p.insert((30, 35));
        assert_eq!(p.peek(12), vec![(10, 20), (30, 32)]);
        p.remove((12, 15));
        assert_eq!(
            p.ranges.iter().map(|(a, b)| (*a, *b)).collect::<Vec<_>>(),
            vec![(10, 12), (15, 20), (30, 35)]
        );
        assert_eq!(p.available, 12);
    }
}
