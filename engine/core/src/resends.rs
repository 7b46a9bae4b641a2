//! Resends: a card's delivery sent again on request (the recipient lost the message, or every
//! attempt failed), as a new *round* of attempts. A round is numbered (0: the first sending;
//! n: the n-th resend) and the report tokens of its attempts are bound to it, so a late report
//! on an earlier round, even a genuine one, never settles the round in flight. Only cards that
//! were resent are kept here; every other card is in round 0.

use crate::event::{DeliveryChannel, Event};
use crate::state::{Decision, ShardState};
use crate::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Times one card's delivery may be sent again: a bound on how often a client (or a stolen
/// key) can have the engine write to a recipient.
pub const RESENDS_MAX: u8 = 10;

/// The delivery rounds of this shard's resent cards.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resends {
    rounds: BTreeMap<CardId, u8>,
}

impl Resends {
    /// The card's current delivery round (0 unless it was resent).
    pub fn round(&self, card: &CardId) -> u8 {
        self.rounds.get(card).copied().unwrap_or(0)
    }

    /// Every resent card with its round, in card order.
    pub fn iter(&self) -> impl Iterator<Item = (&CardId, &u8)> {
        self.rounds.iter()
    }

    /// Sends a card's delivery again, for an admin or the client whose order bought it (to
    /// anyone else the card does not exist). Only an active card whose order named a channel
    /// is resent; one whose delivery is still in flight (sent, or failing and being retried)
    /// answers as it is, so a retried request sends nothing twice.
    pub(crate) fn decide(
        st: &ShardState,
        caller: &Caller,
        card_id: CardId,
        now: UnixMillis,
    ) -> Decision {
        let card = match st.cards().owned_by(caller, card_id) {
            Ok(c) => c,
            Err(r) => return Decision::Reject(r),
        };
        match card.status {
            crate::cards::CardStatus::Active => {}
            crate::cards::CardStatus::Cancelled => {
                return Decision::Reject(Rejection::CardCancelled)
            }
            _ => return Decision::Reject(Rejection::CardNotActive),
        }
        let channel = st.orders().get(&card.order).map(|r| r.channel);
        if matches!(channel, None | Some(DeliveryChannel::None)) {
            return Decision::Reject(Rejection::NotDeliverable);
        }
        match card.delivery {
            crate::cards::Delivery::Pending { .. } => return Decision::Answered(vec![]),
            crate::cards::Delivery::NotRequired => {
                return Decision::Reject(Rejection::NotDeliverable)
            }
            crate::cards::Delivery::Delivered | crate::cards::Delivery::GaveUp { .. } => {}
        }
        let round = st.resends().round(&card_id);
        if round >= RESENDS_MAX {
            return Decision::Reject(Rejection::ResendLimit);
        }
        Decision::Events(vec![Event::DeliveryResent {
            card: card_id,
            round: round + 1,
            by: caller.client.clone(),
            at: now,
        }])
    }

    /// The resends' part of an event.
    pub(crate) fn apply(&mut self, event: &Event) {
        if let Event::DeliveryResent { card, round, .. } = event {
            self.rounds.insert(*card, *round);
        }
    }
}
