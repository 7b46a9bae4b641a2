//! Card cancellation: a card goes back, its price to the wallet that bought it, when nobody can
//! have used it. An issued card qualifies while nothing was redeemed from it (its balance is
//! its face). A supplier's code qualifies only when it was never delivered (every delivery
//! attempt failed): a code that reached anyone may have been redeemed at the brand, which the
//! engine cannot see. A never-delivered code goes back to its pool, and the supplier is owed
//! its cost no more (in the open settlement period). A converted line's price is in another
//! currency than the card, with an FX spread earned on it; such a card is not cancelled (the
//! refund would need a conversion of its own).
//!
//! `CardCancelled` moves the price into the wallet and the margin back out of revenue, and the
//! face out of an issued card or the cost out of the supplier's payable; the sale keeps a refund
//! (section `sales`), so the revenue report counts it at the instant of the cancellation and
//! still equals the ledger.

use crate::cards::{CardStatus, CodeRef, Delivery};
use crate::event::Event;
use crate::state::{Decision, ShardState};
use crate::*;
use serde::{Deserialize, Serialize};

/// A cancelled supplier's code going back: the slot, the pool it came from, and what the
/// supplier is owed for it no more.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restock {
    pub pool: SkuId,
    pub slot: u64,
    pub supplier: SupplierId,
    pub cost: Money,
}

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
    let usable = match card.code {
        CodeRef::Sealed(_) => card.balance_minor != card.face.minor(),
        CodeRef::Slot(_) => !matches!(card.delivery, Delivery::GaveUp { .. }),
    };
    if usable {
        return Decision::Reject(Rejection::CardNotCancellable);
    }
    let Some(line) = line_of(st, card_id, &card.order) else {
        return Decision::Reject(Rejection::CardNotCancellable);
    };
    let restock = match card.code {
        CodeRef::Sealed(_) => None,
        CodeRef::Slot(slot) => {
            let own = st
                .catalog()
                .sku(&line.sku)
                .is_some_and(|s| s.supplier == line.supplier);
            let pool = if own {
                line.sku.clone()
            } else {
                crate::sourcing::offer_pool(&line.sku, &line.supplier)
            };
            // The pool its sale was counted in (a SKU whose supplier changed since names
            // another): a code is only ever put back where it was taken from.
            if st.pools().get(&pool).is_none_or(|p| p.sold == 0) {
                return Decision::Reject(Rejection::CardNotCancellable);
            }
            Some(Restock {
                pool,
                slot,
                supplier: line.supplier.clone(),
                cost: line.unit_cost,
            })
        }
    };
    let Some(rec) = st.orders().get(&card.order) else {
        return Decision::Reject(Rejection::CardNotCancellable);
    };
    Decision::Events(vec![Event::CardCancelled {
        card: card_id,
        order: card.order.clone(),
        wallet: rec.wallet.clone(),
        refund: line.unit_price,
        face: card.face,
        restock,
        by: caller.client.clone(),
        at: now,
    }])
}

/// The sale's line the card was sold in, found by walking the order's lines from its first
/// card. None for a converted line, or an order without a sale record (completed before sales
/// were recorded).
fn line_of<'a>(
    st: &'a ShardState,
    card_id: CardId,
    order: &OrderKey,
) -> Option<&'a crate::sales::SaleLine> {
    let first = match st.orders().get(order)?.outcome {
        crate::event::OrderOutcome::Completed { first_card, .. } => first_card,
        _ => return None,
    };
    let mut at = card_id.0.checked_sub(first.0)?;
    for line in &st.sales().get(order)?.lines {
        let q = u64::from(line.quantity);
        if at < q {
            let same =
                line.unit_price.currency() == line.charged.currency() && line.fx.minor() == 0;
            return same.then_some(line);
        }
        at -= q;
    }
    None
}
