//! Wallets: a customer's prepaid balances per currency (available and held), their history, the
//! frozen and KYC flags, and the deposits recorded for idempotency.

use crate::event::Event;
use crate::maps::{sorted, HashMap, SpreadMap};
use crate::state::Decision;
use crate::*;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Adds two amounts of an applied event. Overflow means the journal does not fit the state
/// (decide checks every amount before it becomes an event): a bug, never wrapped silently.
pub(crate) fn sum(a: i64, b: i64) -> i64 {
    a.checked_add(b)
        .unwrap_or_else(|| panic!("amount overflow applying an event: {a} + {b}"))
}

/// Available and held funds of one currency, and the ledger's own view of the account.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    pub available_minor: i64,
    pub held_minor: i64,
    /// Sum of the ledger postings to this wallet account; must equal `available + held`.
    pub ledger_minor: i64,
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

    /// Moves `minor` from available to held (negative: back).
    fn hold(&mut self, ccy: Currency, minor: i64) {
        let b = self.balance_mut(ccy);
        b.available_minor = sum(b.available_minor, -minor);
        b.held_minor = sum(b.held_minor, minor);
        debug_assert!(b.available_minor >= 0, "available went negative");
    }

    fn record(
        &mut self,
        at: UnixMillis,
        lsn: Lsn,
        kind: TxKind,
        amount: Money,
        reference: &Arc<str>,
    ) {
        if self.history.capacity() == 0 {
            // Many wallets see one deposit and little else: start without growth slack.
            self.history.reserve_exact(1);
        }
        self.history.push(TxEntry {
            seq: lsn.0,
            at,
            kind,
            amount,
            reference: reference.clone(),
        });
    }
}

/// Kinds of wallet history entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxKind {
    Deposit,
    Purchase,
    Hold,
    HoldReleased,
    /// Order and delivery fees.
    Fee,
    /// A cancelled card's price, back.
    Refund,
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
    pub reference: Arc<str>,
}

/// The wallets of one shard and the deposits they recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wallets {
    #[serde(serialize_with = "sorted")]
    pub(crate) wallets: HashMap<WalletId, Wallet>,
    pub(crate) deposits: SpreadMap<(WalletId, RequestId), (Fingerprint, Money)>,
}

/// Where and when an event is applied: the shard's sequence and its clock.
#[derive(Clone, Copy, Debug)]
pub struct Applied {
    pub lsn: Lsn,
    pub at: UnixMillis,
}

impl Wallets {
    /// A wallet by id.
    pub fn get(&self, id: &WalletId) -> Option<&Wallet> {
        self.wallets.get(id)
    }

    /// Every wallet of the shard, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&WalletId, &Wallet)> {
        self.wallets.iter()
    }

    pub fn len(&self) -> usize {
        self.wallets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.wallets.is_empty()
    }

    /// The recorded deposit `id` of a wallet: its fingerprint and amount.
    pub fn deposit(&self, wallet: &WalletId, id: &RequestId) -> Option<&(Fingerprint, Money)> {
        self.deposits.get(&(wallet.clone(), id.clone()))
    }

    /// Every recorded deposit, in no particular order.
    pub fn deposits(
        &self,
    ) -> impl Iterator<Item = (&(WalletId, RequestId), &(Fingerprint, Money))> {
        self.deposits.iter()
    }

    /// The stored id that the id a client gives names. A client names its own wallets only:
    /// `id` in its namespace, or, for a wallet it created before namespaces existed, the bare
    /// id of a wallet it owns. An admin names the stored id itself (`{client}~{id}`, or a bare
    /// one). A wallet of neither kind resolves to the namespaced id, which creation would take.
    pub fn resolve(&self, client: &ClientId, admin: bool, id: &WalletId) -> WalletId {
        if admin {
            return id.clone();
        }
        let scoped = WalletId::scoped(client, id.as_str());
        if self.wallets.contains_key(&scoped) {
            return scoped;
        }
        match self.wallets.get(id) {
            Some(w) if id.namespace().is_none() && w.owner == *client => id.clone(),
            _ => scoped,
        }
    }

    /// The wallet a caller's id names, with its stored id, if the caller may act on it; any
    /// other looks missing.
    pub fn owned(
        &self,
        caller: &Caller,
        wallet: &WalletId,
    ) -> Result<(WalletId, &Wallet), Rejection> {
        let id = self.resolve(&caller.client, caller.admin, wallet);
        match self.wallets.get(&id) {
            Some(w) if caller.admin || w.owner == caller.client => Ok((id, w)),
            _ => Err(Rejection::WalletNotFound),
        }
    }

    pub(crate) fn decide_create(
        &self,
        caller: &Caller,
        wallet: &WalletId,
        kyc_verified: bool,
        limits: &crate::limits::Limits,
    ) -> Decision {
        let wallet = &self.resolve(&caller.client, caller.admin, wallet);
        // An admin creating `{client}~{id}` while that client owns `id` from before namespaces
        // would give the client two wallets under one name: its own id finds the old one.
        if let (true, Some(ns)) = (caller.admin, wallet.namespace()) {
            let bare = WalletId::new(wallet.local());
            if self
                .wallets
                .get(&bare)
                .is_some_and(|w| w.owner.as_str() == ns)
            {
                return Decision::Reject(Rejection::WalletExists);
            }
        }
        if let Some(w) = self.wallets.get(wallet) {
            // A retry of the same creation by its owner is answered again; anything else with a
            // taken id is a conflict. An admin may have changed `kyc_verified` since: the retry
            // is compared with the flag the wallet was created with.
            let created = limits.created_verified(wallet, w.kyc_verified);
            return if w.owner == caller.client && created == kyc_verified {
                Decision::Answered(vec![])
            } else {
                Decision::Reject(Rejection::WalletExists)
            };
        }
        // Only an admin vouches for a wallet's KYC; a client declaring it is refused.
        if kyc_verified && !caller.admin {
            return Decision::Reject(Rejection::Forbidden);
        }
        // An admin creating `{client}~{id}` creates it for that client.
        let owner = match wallet.namespace() {
            Some(client) if caller.admin => ClientId::new(client),
            _ => caller.client.clone(),
        };
        Decision::Events(vec![Event::WalletCreated {
            wallet: wallet.clone(),
            owner,
            kyc_verified,
        }])
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn decide_deposit(
        &self,
        caller: &Caller,
        wallet: &WalletId,
        id: &RequestId,
        amount: Money,
        reference: &str,
        fp: Fingerprint,
        at: UnixMillis,
    ) -> Decision {
        let (wallet, w) = match self.owned(caller, wallet) {
            Ok(found) => found,
            Err(r) => return Decision::Reject(r),
        };
        if let Some((seen, _)) = self.deposit(&wallet, id) {
            return if *seen == fp {
                Decision::Answered(vec![])
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
        if b.available_minor
            .checked_add(b.held_minor)
            .and_then(|v| v.checked_add(amount.minor()))
            .is_none_or(|v| v > AMOUNT_MINOR_MAX * 1000)
        {
            return Decision::Reject(Rejection::AmountOutOfRange);
        }
        Decision::Events(vec![Event::Deposited {
            wallet,
            deposit_id: id.clone(),
            amount,
            reference: reference.to_owned(),
            fingerprint: fp,
            at,
        }])
    }

    pub(crate) fn decide_frozen(&self, wallet: &WalletId, frozen: bool) -> Decision {
        match self.wallets.get(wallet) {
            None => Decision::Reject(Rejection::WalletNotFound),
            Some(_) => Decision::Events(vec![Event::WalletFrozenSet {
                wallet: wallet.clone(),
                frozen,
            }]),
        }
    }

    fn wallet_mut(&mut self, wallet: &WalletId) -> &mut Wallet {
        self.wallets
            .get_mut(wallet)
            .expect("event names an existing wallet")
    }

    /// The wallets' part of an event: balances, history, flags and recorded deposits.
    pub(crate) fn apply(&mut self, event: &Event, cx: Applied) {
        let Applied { lsn, at } = cx;
        match event {
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
                ..
            } => {
                let w = self.wallet_mut(wallet);
                w.record(at, lsn, TxKind::Deposit, *amount, &deposit_id.0);
                let b = w.balance_mut(amount.currency());
                b.available_minor = sum(b.available_minor, amount.minor());
                b.ledger_minor = sum(b.ledger_minor, amount.minor());
                self.deposits.insert(
                    (wallet.clone(), deposit_id.clone()),
                    (*fingerprint, *amount),
                );
            }
            Event::WalletFrozenSet { wallet, frozen } => self.wallet_mut(wallet).frozen = *frozen,
            Event::KycSet {
                wallet, verified, ..
            } => self.wallet_mut(wallet).kyc_verified = *verified,
            Event::FundsHeld {
                key,
                wallet,
                amount,
                ..
            }
            | Event::FundsReserved {
                key,
                wallet,
                amount,
                ..
            } => {
                let w = self.wallet_mut(wallet);
                let out = Money::new(-amount.minor(), amount.currency());
                w.record(at, lsn, TxKind::Hold, out, &key.order_id.0);
                w.hold(amount.currency(), amount.minor());
            }
            Event::OrderCompleted(order) => {
                let w = self.wallet_mut(&order.wallet);
                let pay = order.charged.currency();
                if let Some(h) = order.captured_hold {
                    w.record(at, lsn, TxKind::HoldReleased, h, &order.key.order_id.0);
                    w.hold(h.currency(), -h.minor());
                }
                let charged = Money::new(-order.charged.minor(), pay);
                w.record(at, lsn, TxKind::Purchase, charged, &order.key.order_id.0);
                let b = w.balance_mut(pay);
                b.available_minor = sum(b.available_minor, -order.charged.minor());
                b.ledger_minor = sum(b.ledger_minor, -order.charged.minor());
                // Fees: entries of their own in the history, in the same commit.
                for (_, fee) in &order.fees {
                    let out = Money::new(-fee.minor(), fee.currency());
                    w.record(at, lsn, TxKind::Fee, out, &order.key.order_id.0);
                    let b = w.balance_mut(fee.currency());
                    b.available_minor = sum(b.available_minor, -fee.minor());
                    b.ledger_minor = sum(b.ledger_minor, -fee.minor());
                }
                debug_assert!(
                    w.balance(pay).available_minor >= 0,
                    "available went negative"
                );
            }

            Event::CardCancelled {
                card,
                wallet,
                refund,
                ..
            } => {
                let w = self.wallet_mut(wallet);
                let reference: std::sync::Arc<str> = card.0.to_string().into();
                w.record(at, lsn, TxKind::Refund, *refund, &reference);
                let b = w.balance_mut(refund.currency());
                b.available_minor = sum(b.available_minor, refund.minor());
                b.ledger_minor = sum(b.ledger_minor, refund.minor());
            }
            Event::OrderRejected {
                key,
                wallet,
                released_hold: Some(h),
                ..
            }
            | Event::OrderAborted {
                key,
                wallet,
                released_hold: h,
            } => {
                let w = self.wallet_mut(wallet);
                w.record(at, lsn, TxKind::HoldReleased, *h, &key.order_id.0);
                w.hold(h.currency(), -h.minor());
            }
            _ => {}
        }
    }
}
