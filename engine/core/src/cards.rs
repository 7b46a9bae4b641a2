//! Cards: sold cards and their status, the index from an issued code's keyed hash to its card,
//! delivery state, and redemptions (recorded per client and id) with their reversals.

use crate::event::{DeliveryChannel, Event};
use crate::maps::SpreadMap;
use crate::state::Decision;
use crate::wallets::sum;
use crate::*;
use serde::{Deserialize, Serialize};

/// Lifecycle of a card.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CardStatus {
    Active,
    Redeemed,
    Voided,
    Expired,
    /// Frozen by its buyer or an admin (a lost or disputed card): nothing is redeemed from it
    /// until it is unfrozen, back to `Active`. Only an active card is frozen.
    Frozen,
    /// Cancelled by its buyer or an admin before anything was redeemed from it: its price went
    /// back to the wallet, its code redeems nothing, and nothing revives it.
    Cancelled,
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
    pub balance_minor: i64,
    /// The ledger's view of `card:{id}`; must equal `balance_minor` for issued cards.
    pub ledger_minor: i64,
    /// The order that sold it.
    pub order: OrderKey,
    pub delivery: Delivery,
}

/// A recorded redemption answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedemptionRecord {
    pub fingerprint: Fingerprint,
    pub outcome: Result<(CardId, Money), Rejection>,
    pub reversed: bool,
}

/// The cards of one shard.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cards {
    pub(crate) next_card_seq: u64,
    pub(crate) cards: SpreadMap<CardId, Card>,
    pub(crate) code_index: SpreadMap<CodeHash, CardId>,
    pub(crate) redemptions: SpreadMap<(ClientId, RequestId), RedemptionRecord>,
}

impl Cards {
    /// A card by id.
    pub fn get(&self, id: &CardId) -> Option<&Card> {
        self.cards.get(id)
    }

    /// The card an issued code's hash names.
    pub fn by_code(&self, hash: &CodeHash) -> Option<(CardId, &Card)> {
        let id = self.code_index.get(hash)?;
        self.cards.get(id).map(|c| (*id, c))
    }

    /// Every card of the shard, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&CardId, &Card)> {
        self.cards.iter()
    }

    /// Every entry of the code index, in no particular order.
    pub fn code_index(&self) -> impl Iterator<Item = (&CodeHash, &CardId)> {
        self.code_index.iter()
    }

    pub fn len(&self) -> usize {
        self.cards.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cards.is_empty()
    }

    /// A card as `caller` may act on it: its buyer's client's or, for an admin, any; to anyone
    /// else it does not exist (`card_not_found`, as for an unknown id).
    pub(crate) fn owned_by(&self, caller: &Caller, card_id: CardId) -> Result<&Card, Rejection> {
        match self.cards.get(&card_id) {
            Some(c) if caller.admin || c.order.client == caller.client => Ok(c),
            _ => Err(Rejection::CardNotFound),
        }
    }

    /// The sequence the next card sold here gets.
    pub fn next_seq(&self) -> u64 {
        self.next_card_seq
    }

    /// A client's recorded redemption.
    pub fn redemption(&self, client: &ClientId, id: &RequestId) -> Option<&RedemptionRecord> {
        self.redemptions.get(&(client.clone(), id.clone()))
    }

    /// Every recorded redemption, in no particular order.
    pub fn redemptions(&self) -> impl Iterator<Item = (&(ClientId, RequestId), &RedemptionRecord)> {
        self.redemptions.iter()
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn decide_redeem(
        &self,
        caller: &Caller,
        id: &RequestId,
        code: &CodeHash,
        amount: Money,
        fp: Fingerprint,
        now: UnixMillis,
        expired_by: impl Fn(&CardId, UnixMillis) -> bool,
    ) -> Decision {
        if let Some(rec) = self.redemption(&caller.client, id) {
            return if rec.fingerprint == fp {
                Decision::Answered(vec![])
            } else {
                Decision::Reject(Rejection::IdempotencyConflict)
            };
        }
        let Some((card_id, card)) = self.by_code(code) else {
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
        match card.status {
            CardStatus::Active => {}
            CardStatus::Frozen => return reject(Rejection::CardFrozen),
            CardStatus::Expired => return reject(Rejection::CardExpired),
            CardStatus::Cancelled => return reject(Rejection::CardCancelled),
            _ => return reject(Rejection::CardNotActive),
        }
        // Past its expiry instant, whether or not its deadline has fired yet.
        if expired_by(&card_id, now) {
            return reject(Rejection::CardExpired);
        }
        if card.balance_minor < amount.minor() {
            return reject(Rejection::InsufficientBalance);
        }
        Decision::Events(vec![Event::Redeemed {
            client: caller.client.clone(),
            redemption_id: id.clone(),
            fingerprint: fp,
            card: card_id,
            amount,
            at: now,
        }])
    }

    /// Reverses a recorded redemption. An expired card takes no value back: its balance went to
    /// breakage, and the merchant refunds its customer otherwise (`card_expired`).
    pub(crate) fn decide_reversal(
        &self,
        caller: &Caller,
        id: &RequestId,
        now: UnixMillis,
        expired_by: impl Fn(&CardId, UnixMillis) -> bool,
    ) -> Decision {
        match self.redemption(&caller.client, id) {
            None
            | Some(RedemptionRecord {
                outcome: Err(_), ..
            }) => Decision::Reject(Rejection::RedemptionNotFound),
            Some(RedemptionRecord { reversed: true, .. }) => {
                Decision::Reject(Rejection::AlreadyReversed)
            }
            Some(RedemptionRecord {
                outcome: Ok((card, _)),
                ..
            }) if expired_by(card, now)
                || self
                    .cards
                    .get(card)
                    .is_some_and(|c| c.status == CardStatus::Expired) =>
            {
                Decision::Reject(Rejection::CardExpired)
            }
            // Nothing revives a cancelled card (its price went back to the wallet).
            Some(RedemptionRecord {
                outcome: Ok((card, _)),
                ..
            }) if self
                .cards
                .get(card)
                .is_some_and(|c| c.status == CardStatus::Cancelled) =>
            {
                Decision::Reject(Rejection::CardCancelled)
            }
            Some(RedemptionRecord {
                outcome: Ok((card, amount)),
                ..
            }) => Decision::Events(vec![Event::RedemptionReversed {
                client: caller.client.clone(),
                redemption_id: id.clone(),
                card: *card,
                amount: *amount,
                at: now,
            }]),
        }
    }

    pub(crate) fn decide_delivery(
        &self,
        card_id: CardId,
        delivered: bool,
        reported_attempt: u8,
        attempts_max: u8,
    ) -> Decision {
        let Some(card) = self.cards.get(&card_id) else {
            return Decision::Reject(Rejection::CardNotFound);
        };
        let failures = match card.delivery {
            Delivery::Pending { failures } => failures,
            // Reports after the outcome is settled change nothing: the delivery service retries too.
            Delivery::Delivered | Delivery::GaveUp { .. } | Delivery::NotRequired => {
                return Decision::Answered(vec![])
            }
        };
        let attempt = failures.saturating_add(1);
        // A report on an earlier attempt (late, or replayed from an old event) or a later one
        // (made up) is not about the delivery in flight.
        if reported_attempt != attempt {
            return Decision::Answered(vec![]);
        }
        let gave_up = !delivered && attempt >= attempts_max.max(1);
        Decision::Events(vec![Event::DeliveryReported {
            card: card_id,
            delivered,
            attempt,
            gave_up,
        }])
    }

    /// Freezes (`frozen`) or unfreezes a card, for an admin or the client whose order bought
    /// it (to anyone else the card does not exist). Only an active card freezes and only a
    /// frozen one unfreezes; asking for the state it is in changes nothing.
    pub(crate) fn decide_frozen(
        &self,
        caller: &Caller,
        card_id: CardId,
        frozen: bool,
        now: UnixMillis,
    ) -> Decision {
        let card = match self.owned_by(caller, card_id) {
            Ok(c) => c,
            Err(r) => return Decision::Reject(r),
        };
        let event = || {
            Decision::Events(vec![Event::CardFrozenSet {
                card: card_id,
                frozen,
                by: caller.client.clone(),
                at: now,
            }])
        };
        match (card.status, frozen) {
            (CardStatus::Active, true) | (CardStatus::Frozen, false) => event(),
            (CardStatus::Frozen, true) | (CardStatus::Active, false) => Decision::Answered(vec![]),
            _ => Decision::Reject(Rejection::CardNotActive),
        }
    }

    /// New sealed boxes for issued cards of this shard. Any card that is not one (unknown,
    /// another shard's, a supplier code) refuses the whole command.
    pub(crate) fn decide_reseal(&self, shard: ShardId, cards: &[(CardId, Vec<u8>)]) -> Decision {
        let issued = |id: &CardId| {
            id.shard() == shard
                && self
                    .cards
                    .get(id)
                    .is_some_and(|c| matches!(c.code, CodeRef::Sealed(_)))
        };
        if cards
            .iter()
            .any(|(id, sealed)| !issued(id) || sealed.is_empty())
        {
            return Decision::Reject(Rejection::CardNotFound);
        }
        Decision::Events(vec![Event::CodesResealed {
            cards: cards.to_vec(),
        }])
    }

    fn card_mut(&mut self, id: &CardId) -> &mut Card {
        self.cards
            .get_mut(id)
            .expect("event names an existing card")
    }

    /// The cards' part of an event.
    pub(crate) fn apply(&mut self, event: &Event) {
        match event {
            Event::CodesResealed { cards } => {
                for (id, sealed) in cards {
                    self.card_mut(id).code = CodeRef::Sealed(sealed.clone());
                }
            }
            Event::OrderCompleted(order) => self.issue(order),
            Event::CardCancelled { card, .. } => {
                let c = self.card_mut(card);
                c.balance_minor = 0;
                c.ledger_minor = 0;
                c.status = CardStatus::Cancelled;
            }
            Event::CardExpired {
                card, remaining, ..
            } => {
                let c = self.card_mut(card);
                c.balance_minor = sum(c.balance_minor, -remaining.minor());
                c.ledger_minor = sum(c.ledger_minor, -remaining.minor());
                c.status = CardStatus::Expired;
            }
            // A new round of delivery: pending again, from its first attempt.
            Event::DeliveryResent { card, .. } => {
                self.card_mut(card).delivery = Delivery::Pending { failures: 0 };
            }
            Event::CardFrozenSet { card, frozen, .. } => {
                self.card_mut(card).status = if *frozen {
                    CardStatus::Frozen
                } else {
                    CardStatus::Active
                };
            }
            Event::DeliveryReported {
                card,
                delivered,
                attempt,
                gave_up,
            } => {
                self.card_mut(card).delivery = match (delivered, gave_up) {
                    (true, _) => Delivery::Delivered,
                    (false, true) => Delivery::GaveUp { failures: *attempt },
                    (false, false) => Delivery::Pending { failures: *attempt },
                };
            }
            Event::Redeemed {
                client,
                redemption_id,
                fingerprint,
                card,
                amount,
                ..
            } => {
                let c = self.card_mut(card);
                c.balance_minor = sum(c.balance_minor, -amount.minor());
                c.ledger_minor = sum(c.ledger_minor, -amount.minor());
                if c.balance_minor == 0 {
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
                ..
            } => {
                let c = self.card_mut(card);
                c.balance_minor = sum(c.balance_minor, amount.minor());
                c.ledger_minor = sum(c.ledger_minor, amount.minor());
                // Only the redemption that emptied the card made it `Redeemed`; a voided or
                // expired card stays so, with its value back on it.
                if c.status == CardStatus::Redeemed {
                    c.status = CardStatus::Active;
                }
                if let Some(rec) = self
                    .redemptions
                    .get_mut(&(client.clone(), redemption_id.clone()))
                {
                    rec.reversed = true;
                }
            }
            _ => {}
        }
    }

    /// Takes the card ids an order waiting for review will have, so no other order is given
    /// them (the cards are created if it is approved; a rejected one leaves them unused).
    pub(crate) fn reserve_ids(&mut self, order: &crate::event::CompletedOrder) {
        let n: u64 = order.lines.iter().map(|l| u64::from(l.quantity)).sum();
        let end = order.first_card.0.saturating_add(n);
        self.next_card_seq = self.next_card_seq.max(end & ((1 << 48) - 1));
    }

    /// The cards a completed order sold, numbered from its `first_card`.
    fn issue(&mut self, order: &crate::event::CompletedOrder) {
        let mut seq = order.first_card.0;
        let delivery = if order.channel == DeliveryChannel::None {
            Delivery::NotRequired
        } else {
            Delivery::Pending { failures: 0 }
        };
        let card = |code: CodeRef, face: Money, balance: i64, sku: &SkuId| Card {
            sku: sku.clone(),
            code,
            status: CardStatus::Active,
            face,
            balance_minor: balance,
            ledger_minor: balance,
            order: order.key.clone(),
            delivery,
        };
        for line in &order.lines {
            if line.issued {
                for code in &line.issued_codes {
                    let c = card(
                        CodeRef::Sealed(code.sealed.clone()),
                        line.face,
                        line.face.minor(),
                        &line.sku,
                    );
                    self.code_index.insert(code.hash, CardId(seq));
                    self.cards.insert(CardId(seq), c);
                    seq += 1;
                }
            } else {
                for slot in line.slots.iter().flat_map(|(s, e)| *s..*e) {
                    let c = card(CodeRef::Slot(slot), line.face, 0, &line.sku);
                    self.cards.insert(CardId(seq), c);
                    seq += 1;
                }
            }
        }
        self.next_card_seq = self.next_card_seq.max(seq & ((1 << 48) - 1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{CompletedOrder, FreshCode, SoldLine};

    fn usd(minor: i64) -> Money {
        Money::new(minor, Currency::parse("USD").expect("USD"))
    }

    fn caller() -> Caller {
        Caller {
            client: ClientId::new("c"),
            admin: false,
        }
    }

    /// One issued card of face 50.00 with code hash `[7; 16]`, as card 0.
    fn one_card() -> Cards {
        let mut cards = Cards::default();
        cards.apply(&Event::OrderCompleted(Box::new(CompletedOrder {
            key: OrderKey {
                client: ClientId::new("c"),
                order_id: OrderId::new("o"),
            },
            fingerprint: [0; 16],
            wallet: WalletId::new("w"),
            charged: usd(5_000),
            captured_hold: None,
            first_card: CardId(0),
            lines: vec![SoldLine {
                sku: SkuId::new("s"),
                supplier: SupplierId::new("platform"),
                issued: true,
                quantity: 1,
                face: usd(5_000),
                unit_price: usd(5_000),
                unit_cost: usd(5_000),
                charged: usd(5_000),
                charged_at_mid: usd(5_000),
                slots: vec![],
                issued_codes: vec![FreshCode {
                    hash: [7; 16],
                    sealed: vec![1, 2, 3],
                }],
            }],
            channel: DeliveryChannel::None,
            recipient: "".into(),
            at: UnixMillis(1),
            fees: Vec::new(),
        })));
        cards
    }

    fn redeem(cards: &mut Cards, id: &str, minor: i64) -> Decision {
        let d = cards.decide_redeem(
            &caller(),
            &RequestId::new(id),
            &[7; 16],
            usd(minor),
            [minor as u8; 16],
            UnixMillis(5),
            |_, _| false,
        );
        if let Decision::Events(evs) = &d {
            evs.iter().for_each(|e| cards.apply(e));
        }
        d
    }

    fn reverse(cards: &mut Cards, id: &str) -> Decision {
        let d = cards.decide_reversal(&caller(), &RequestId::new(id), UnixMillis(6), |_, _| false);
        if let Decision::Events(evs) = &d {
            evs.iter().for_each(|e| cards.apply(e));
        }
        d
    }

    fn card(cards: &Cards) -> &Card {
        cards.get(&CardId(0)).expect("card 0")
    }

    #[test]
    fn redemption_takes_value_once_replays_and_refuses_what_the_card_lacks() {
        let mut cards = one_card();
        assert!(matches!(
            redeem(&mut cards, "r1", 1_500),
            Decision::Events(_)
        ));
        assert_eq!(card(&cards).balance_minor, 3_500);
        assert_eq!(card(&cards).ledger_minor, 3_500);
        // The same id and body is answered from the record; another body is a conflict.
        assert_eq!(redeem(&mut cards, "r1", 1_500), Decision::Answered(vec![]));
        assert_eq!(card(&cards).balance_minor, 3_500);
        assert_eq!(
            redeem(&mut cards, "r1", 1_600),
            Decision::Reject(Rejection::IdempotencyConflict)
        );
        // More than the balance is a recorded rejection that changes nothing.
        assert!(matches!(
            redeem(&mut cards, "r2", 3_501),
            Decision::Events(ref e) if matches!(e[0], Event::RedemptionRejected { reason: Rejection::InsufficientBalance, .. })
        ));
        assert_eq!(card(&cards).balance_minor, 3_500);
        // Emptying the card marks it redeemed; it then refuses further redemptions.
        redeem(&mut cards, "r3", 3_500);
        assert_eq!(card(&cards).status, CardStatus::Redeemed);
        assert!(matches!(
            redeem(&mut cards, "r4", 1),
            Decision::Events(ref e) if matches!(e[0], Event::RedemptionRejected { reason: Rejection::CardNotActive, .. })
        ));
        let wrong = cards.decide_redeem(
            &caller(),
            &RequestId::new("r5"),
            &[8; 16],
            usd(1),
            [0; 16],
            UnixMillis(7),
            |_, _| false,
        );
        assert_eq!(wrong, Decision::Reject(Rejection::CardNotFound));
    }

    #[test]
    fn reversal_gives_the_value_back_once_and_only_for_a_redemption_that_happened() {
        let mut cards = one_card();
        redeem(&mut cards, "r1", 5_000);
        assert_eq!(card(&cards).status, CardStatus::Redeemed);
        assert!(matches!(reverse(&mut cards, "r1"), Decision::Events(_)));
        assert_eq!(card(&cards).balance_minor, 5_000);
        assert_eq!(card(&cards).status, CardStatus::Active);
        assert_eq!(
            reverse(&mut cards, "r1"),
            Decision::Reject(Rejection::AlreadyReversed)
        );
        assert_eq!(
            reverse(&mut cards, "nope"),
            Decision::Reject(Rejection::RedemptionNotFound)
        );
        redeem(&mut cards, "r2", 6_000);
        assert_eq!(
            reverse(&mut cards, "r2"),
            Decision::Reject(Rejection::RedemptionNotFound),
            "a rejected redemption has nothing to reverse"
        );
    }

    #[test]
    fn a_reversal_leaves_a_voided_card_as_it_is_and_never_revives_a_cancelled_one() {
        let mut cards = one_card();
        redeem(&mut cards, "r1", 1_000);
        cards.cards.get_mut(&CardId(0)).expect("card").status = CardStatus::Voided;
        assert!(matches!(reverse(&mut cards, "r1"), Decision::Events(_)));
        assert_eq!(
            card(&cards).status,
            CardStatus::Voided,
            "reversal must not reactivate a voided card"
        );
        assert_eq!(card(&cards).balance_minor, 5_000);
        let mut cards = one_card();
        redeem(&mut cards, "r1", 1_000);
        cards.cards.get_mut(&CardId(0)).expect("card").status = CardStatus::Cancelled;
        assert_eq!(
            reverse(&mut cards, "r1"),
            Decision::Reject(Rejection::CardCancelled)
        );
        assert_eq!(card(&cards).status, CardStatus::Cancelled);
    }

    #[test]
    fn an_expired_card_moves_its_balance_once_and_takes_nothing_back() {
        let mut cards = one_card();
        redeem(&mut cards, "r1", 1_000);
        let expired = Event::CardExpired {
            card: CardId(0),
            remaining: usd(4_000),
            at: UnixMillis(9),
        };
        cards.apply(&expired);
        assert_eq!(card(&cards).status, CardStatus::Expired);
        assert_eq!(
            (card(&cards).balance_minor, card(&cards).ledger_minor),
            (0, 0)
        );
        assert_eq!(
            reverse(&mut cards, "r1"),
            Decision::Reject(Rejection::CardExpired)
        );
        assert!(matches!(
            redeem(&mut cards, "r2", 1),
            Decision::Events(ref e) if matches!(e[0], Event::RedemptionRejected { reason: Rejection::CardExpired, .. })
        ));
        assert_eq!(card(&cards).balance_minor, 0);
    }
}
