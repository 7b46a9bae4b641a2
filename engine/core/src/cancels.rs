//! Card cancellation: an issued card nothing was redeemed from goes back, its price to the
//! wallet that bought it. Only stored value the engine itself issued can be taken back: a
//! supplier's code, once sold, may have been redeemed at the brand, which the engine cannot
//! see, so it is not cancelled here. A converted line's price is in another currency than the
//! card, with an FX spread earned on it; such a card is not cancelled either (the refund would
//! need a conversion of its own).
//!
//! `CardCancelled` moves the card's whole face out of it, the price into the wallet and the
//! margin back out of revenue; the sale keeps a refund (section `sales`), so the revenue report
//! counts it at the instant of the cancellation and still equals the ledger.

use crate::cards::{CardStatus, CodeRef};
use crate::event::Event;
use crate::state::{Decision, ShardState};
use crate::*;

/// Cancels `card_id` for its buyer's client or an admin (to anyone else it does not exist).
/// Cancelling a cancelled card answers as it is.
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
        CardStatus::Cancelled => return Decision::Answered(vec![]),
        CardStatus::Active | CardStatus::Frozen => {}
        CardStatus::Expired => return Decision::Reject(Rejection::CardExpired),
        CardStatus::Redeemed | CardStatus::Voided => {
            return Decision::Reject(Rejection::CardNotCancellable)
        }
    }
    if st.deadlines().card_expired_by(&card_id, now) {
        return Decision::Reject(Rejection::CardExpired);
    }
    if !matches!(card.code, CodeRef::Sealed(_)) || card.balance_minor != card.face.minor() {
        return Decision::Reject(Rejection::CardNotCancellable);
    }
    let Some(price) = price_of(st, card_id, &card.order) else {
        return Decision::Reject(Rejection::CardNotCancellable);
    };
    let Some(rec) = st.orders().get(&card.order) else {
        return Decision::Reject(Rejection::CardNotCancellable);
    };
    Decision::Events(vec![Event::CardCancelled {
        card: card_id,
        order: card.order.clone(),
        wallet: rec.wallet.clone(),
        refund: price,
        face: card.face,
        by: caller.client.clone(),
        at: now,
    }])
}

/// What the card was sold for, in its own currency: its line's unit price, found by walking
/// the order's lines from its first card. None for a converted line, or an order without a
/// sale record (completed before sales were recorded).
fn price_of(st: &ShardState, card_id: CardId, order: &OrderKey) -> Option<Money> {
    let first = match st.orders().get(order)?.outcome {
        crate::event::OrderOutcome::Completed { first_card, .. } => first_card,
        _ => return None,
    };
    let mut at = card_id.0.checked_sub(first.0)?;
    for line in &st.sales().get(order)?.lines {
        let q = u64::from(line.quantity);
        if at < q {
            let same = line.issued
                && line.unit_price.currency() == line.charged.currency()
                && line.fx.minor() == 0;
            return same.then_some(line.unit_price);
        }
        at -= q;
    }
    None
}
