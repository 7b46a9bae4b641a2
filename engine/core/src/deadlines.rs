//! Deadlines: an index of the times at which something in the state falls due by itself. Time
//! still enters only as data: the runtime (or the simulator, with simulated time) sends a
//! `Command::Tick` when [`Deadlines::next_due`] has passed, and the tick journals an
//! `Event::Expired` naming what fell due, so replay repeats it exactly.
//!
//! Today's user: the recorded answer of a *rejected* order is kept for the replay window
//! (`rejection_replay_window_ms`), then forgotten, so a client may use the order id afresh. A
//! rejection changed nothing, so forgetting it early or late never moves money; only the
//! idempotent replay of the rejection ends. The window is a setting of the runtime, not of the
//! journal: an entry's due time is fixed when the rejection is applied, with the window in force
//! then (0: rejections are kept for ever and nothing is indexed).

use crate::cards::CardStatus;
use crate::event::Event;
use crate::state::{Decision, ShardState};
use crate::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Something that falls due.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Deadline {
    /// The recorded rejection of an order is forgotten.
    RejectedOrder(OrderKey),
    /// A reserved hold that nothing settled is released (an `OrderAborted`).
    HoldExpires(OrderKey),
    /// An FX quote, expired for a while, is forgotten (`quotes`).
    QuoteForgotten(ClientId, RequestId),
    /// An issued card reaches the expiry its SKU's policy gave it at issue (`expiry`).
    CardExpires(CardId),
}

/// Deadlines that fire in one tick at most, so one tick never makes a large journal frame.
pub const FIRED_PER_TICK_MAX: usize = 512;

/// The index of due times of one shard.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadlines {
    pub(crate) due: BTreeSet<(UnixMillis, Deadline)>,
    /// How long a rejected order's answer is replayed, in ms (0: for ever). Set by the runtime.
    #[serde(skip)]
    pub(crate) rejection_window_ms: u64,
    /// The due time of each reserved hold's deadline, so the entry goes when the hold ends
    /// otherwise. Derived from `due` (`rebuild_derived`), not serialized.
    #[serde(skip)]
    pub(crate) holds: BTreeMap<OrderKey, UnixMillis>,
    /// The expiry instant of each issued card that has one and has not expired yet, so a
    /// redemption after it is refused even before the tick fires. Derived from `due`.
    #[serde(skip)]
    pub(crate) card_expiry: BTreeMap<CardId, UnixMillis>,
}

impl Deadlines {
    /// The earliest due time, if anything is due at all.
    pub fn next_due(&self) -> Option<UnixMillis> {
        self.due.first().map(|(t, _)| *t)
    }

    fn end_hold(&mut self, key: &OrderKey) {
        if let Some(due) = self.holds.remove(key) {
            self.due.remove(&(due, Deadline::HoldExpires(key.clone())));
        }
    }

    /// Whether a card's expiry instant has passed at `now` (its deadline may not have fired).
    pub fn card_expired_by(&self, card: &CardId, now: UnixMillis) -> bool {
        self.card_expiry.get(card).is_some_and(|due| *due <= now)
    }

    /// Entries in the index.
    pub fn len(&self) -> usize {
        self.due.len()
    }

    pub fn is_empty(&self) -> bool {
        self.due.is_empty()
    }

    /// Every entry, earliest first.
    pub fn iter(&self) -> impl Iterator<Item = &(UnixMillis, Deadline)> {
        self.due.iter()
    }

    /// Rebuilds what is derived from the index (after a snapshot is loaded).
    pub(crate) fn rebuild_derived(&mut self) {
        self.holds = self
            .due
            .iter()
            .filter_map(|(t, d)| match d {
                Deadline::HoldExpires(key) => Some((key.clone(), *t)),
                Deadline::RejectedOrder(_)
                | Deadline::QuoteForgotten(..)
                | Deadline::CardExpires(_) => None,
            })
            .collect();
        self.card_expiry = self
            .due
            .iter()
            .filter_map(|(t, d)| match d {
                Deadline::CardExpires(card) => Some((*card, *t)),
                _ => None,
            })
            .collect();
    }

    /// What is due at `now`: an `Expired` event naming the rejections forgotten and an
    /// `OrderAborted` releasing each reserved hold that ran out, or nothing (`Answered`).
    pub(crate) fn decide_tick(&self, st: &ShardState, now: UnixMillis) -> Decision {
        let mut forgotten = Vec::new();
        let mut events = Vec::new();
        for (_, d) in self
            .due
            .iter()
            .take_while(|(t, _)| *t <= now)
            .take(FIRED_PER_TICK_MAX)
        {
            match d {
                Deadline::RejectedOrder(key) => {
                    debug_assert!(st
                        .orders()
                        .get(key)
                        .is_some_and(|r| matches!(r.outcome, OrderOutcome::Rejected(_))));
                    forgotten.push(d.clone());
                }
                Deadline::HoldExpires(key) => {
                    match (st.orders().hold(key), st.reviews().get(key)) {
                        // A review nobody settled in time: the order is released, recorded as
                        // `review_expired`, its codes back in their pools.
                        (Some(_), Some(r)) => events.extend(crate::reviews::Reviews::settled(
                            r,
                            key,
                            crate::reviews::Verdict::Expired,
                            None,
                            now,
                        )),
                        (Some(h), None) => events.push(Event::OrderAborted {
                            key: key.clone(),
                            wallet: h.wallet.clone(),
                            released_hold: h.amount,
                        }),
                        // Cannot happen (the entry goes with its hold); forget it if it does.
                        (None, _) => forgotten.push(d.clone()),
                    }
                }
                Deadline::QuoteForgotten(..) => forgotten.push(d.clone()),
                // Whatever is left on the card, if anything, moves to breakage; a card already
                // expired (or voided) has nothing left to move.
                Deadline::CardExpires(card) => match st.cards().get(card) {
                    Some(c)
                        if !matches!(
                            c.status,
                            CardStatus::Expired | CardStatus::Voided | CardStatus::Cancelled
                        ) =>
                    {
                        events.push(Event::CardExpired {
                            card: *card,
                            remaining: Money::new(c.balance_minor, c.face.currency()),
                            at: now,
                        })
                    }
                    _ => forgotten.push(d.clone()),
                },
            }
        }
        if !forgotten.is_empty() {
            events.push(Event::Expired {
                fired: forgotten,
                at: now,
            });
        }
        if events.is_empty() {
            return Decision::Answered(vec![]);
        }
        Decision::Events(events)
    }

    /// The deadlines' part of an event applied at `at`.
    pub(crate) fn apply(
        &mut self,
        event: &Event,
        at: UnixMillis,
        expiry: &crate::expiry::ExpiryPolicies,
    ) {
        match event {
            Event::FundsReserved { key, until, .. } => {
                self.due
                    .insert((*until, Deadline::HoldExpires(key.clone())));
                self.holds.insert(key.clone(), *until);
            }
            // A reserved hold that ends before its deadline takes the deadline with it.
            Event::OrderCompleted(o) => self.end_hold(&o.key),
            Event::OrderRejected {
                key,
                released_hold: Some(_),
                ..
            }
            | Event::OrderAborted { key, .. } => self.end_hold(key),
            _ => {}
        }
        match event {
            Event::OrderRejected { key, .. } if self.rejection_window_ms > 0 => {
                let due = UnixMillis(at.0.saturating_add(self.rejection_window_ms));
                self.due.insert((due, Deadline::RejectedOrder(key.clone())));
            }
            // Each issued card of a SKU with a policy gets its expiry, fixed at issue.
            Event::OrderCompleted(o) => {
                let mut card = o.first_card.0;
                for line in &o.lines {
                    let expires = if line.issued {
                        expiry.get(&line.sku).expires_at(o.at)
                    } else {
                        None
                    };
                    for _ in 0..line.quantity {
                        if let Some(due) = expires {
                            self.due.insert((due, Deadline::CardExpires(CardId(card))));
                            self.card_expiry.insert(CardId(card), due);
                        }
                        card += 1;
                    }
                }
            }
            Event::CardExpired { card, .. } => {
                if let Some(due) = self.card_expiry.remove(card) {
                    self.due.remove(&(due, Deadline::CardExpires(*card)));
                }
            }
            Event::FxQuoted {
                client,
                quote_id,
                quote,
            } => {
                let due = quote
                    .expires_at
                    .0
                    .saturating_add(crate::quotes::QUOTE_KEPT_AFTER_EXPIRY_MS);
                self.due.insert((
                    UnixMillis(due),
                    Deadline::QuoteForgotten(client.clone(), quote_id.clone()),
                ));
            }
            Event::Expired { fired, .. } => {
                // A tick fires the earliest entries, so they are found at the front; anything
                // named that is not (an index built under another window) is searched for.
                let mut left: BTreeSet<&Deadline> = fired.iter().collect();
                while let Some((_, d)) = self.due.first() {
                    if !left.remove(d) {
                        break;
                    }
                    self.due.pop_first();
                }
                if !left.is_empty() {
                    self.due.retain(|(_, d)| !left.contains(d));
                }
                for d in fired {
                    if let Deadline::CardExpires(card) = d {
                        self.card_expiry.remove(card);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(minor: i64) -> Money {
        Money::new(minor, Currency::parse("USD").expect("USD"))
    }

    fn key(id: &str) -> OrderKey {
        OrderKey {
            client: ClientId::new("c"),
            order_id: OrderId::new(id),
        }
    }

    fn tick(st: &mut ShardState, at: u64) -> Vec<Event> {
        let ctx = Ctx {
            now: UnixMillis(at),
            lsn: Lsn(st.last_lsn().0 + 1),
            shard: st.shard(),
        };
        match st.decide(&Command::Tick, &ctx) {
            Decision::Events(evs) => {
                for e in &evs {
                    let lsn = Lsn(st.last_lsn().0 + 1);
                    st.apply(e, lsn);
                }
                evs
            }
            Decision::Answered(_) => vec![],
            other => panic!("{other:?}"),
        }
    }

    /// One shard with a wallet holding 10.00 and two reservations: `r-1` until 100, `r-2`
    /// until 200.
    fn reserved() -> ShardState {
        let mut st = ShardState::new(ShardId(0), 1);
        let w = WalletId::new("w");
        let events = [
            Event::WalletCreated {
                wallet: w.clone(),
                owner: ClientId::new("c"),
                kyc_verified: true,
            },
            Event::Deposited {
                wallet: w.clone(),
                deposit_id: RequestId::new("d"),
                amount: usd(1_000),
                reference: "r".into(),
                fingerprint: [0; 16],
                at: UnixMillis(1),
            },
            Event::FundsReserved {
                key: key("r-1"),
                fingerprint: [1; 16],
                wallet: w.clone(),
                amount: usd(300),
                until: UnixMillis(100),
            },
            Event::FundsReserved {
                key: key("r-2"),
                fingerprint: [2; 16],
                wallet: w,
                amount: usd(200),
                until: UnixMillis(200),
            },
        ];
        for (i, e) in events.iter().enumerate() {
            st.apply(e, Lsn(i as u64 + 1));
        }
        st
    }

    fn balance(st: &ShardState) -> (i64, i64) {
        let b = st
            .wallets()
            .get(&WalletId::new("w"))
            .expect("wallet")
            .balance(usd(0).currency());
        (b.available_minor, b.held_minor)
    }

    #[test]
    fn a_reserved_hold_is_released_by_its_deadline_and_not_before() {
        let mut st = reserved();
        assert_eq!(balance(&st), (500, 500));
        assert_eq!(st.deadlines().next_due(), Some(UnixMillis(100)));
        assert!(tick(&mut st, 99).is_empty(), "nothing is due yet");
        let evs = tick(&mut st, 150);
        assert!(
            matches!(&evs[..], [Event::OrderAborted { key: k, released_hold, .. }] if *k == key("r-1") && *released_hold == usd(300)),
            "{evs:?}"
        );
        assert_eq!(balance(&st), (800, 200));
        assert!(st.orders().hold(&key("r-1")).is_none());
        assert_eq!(st.deadlines().next_due(), Some(UnixMillis(200)));
    }

    #[test]
    fn a_hold_settled_before_its_deadline_takes_the_deadline_with_it() {
        let mut st = reserved();
        let abort = Event::OrderAborted {
            key: key("r-2"),
            wallet: WalletId::new("w"),
            released_hold: usd(200),
        };
        st.apply(&abort, Lsn(10));
        assert_eq!(st.deadlines().len(), 1);
        // The index survives a snapshot with the holds it names (and its derived part).
        let back = ShardState::decode(&st.encode().expect("encodes")).expect("decodes");
        assert_eq!(back, st);
        let mut back = back;
        let evs = tick(&mut back, 1_000);
        assert_eq!(evs.len(), 1, "only r-1 is left to release: {evs:?}");
        assert!(back.deadlines().is_empty());
        assert_eq!(balance(&back), (1_000, 0));
    }
}
