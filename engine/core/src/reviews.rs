//! The review queue: orders that scored above `review_above`, or that need KYC from a wallet
//! configured to send them to review, wait here instead of completing (section `reviews`).
//!
//! An order goes to review fully decided: priced, its codes chosen and sealed, its card ids
//! taken. Its commit journals `FundsReserved` (the charge held on the wallet until the review's
//! deadline, a hold recovery keeps) and `OrderPendingReview` carrying the completed order
//! itself. Applying the latter takes the order's supplier codes out of their pools (kept here,
//! with the pool each came from) and moves the shard's card numbering past its cards, so
//! nothing else can sell them while it waits.
//!
//! It ends in one of three ways, each a `ReviewSettled` followed in the same commit by the
//! order's outcome:
//! - approved: `OrderCompleted` of the order as it was decided, at the approval's time (its
//!   codes go back to their pools by the first event and are taken by the second, so every
//!   module sees an ordinary completion that captures the hold);
//! - rejected by a reviewer, or expired at `until` (the reserved hold's deadline, fired by a
//!   tick, also after a restart): `OrderRejected` releasing the hold, `review_rejected` or
//!   `review_expired`, recorded like any rejection, the codes back in their pools.
//!
//! A retried order answers from here while it waits (`PendingReview`), then from its record.

use crate::event::{CompletedOrder, Event, SlotRange};
use crate::maps::{sorted, HashMap};
use crate::risk::RiskScore;
use crate::state::{Decision, ShardState};
use crate::*;
use serde::{Deserialize, Serialize};

/// Why an order went to review.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReviewCause {
    /// Its risk score was above `review_above`.
    Risk,
    /// It needs a verified wallet (the KYC threshold) and the policy sends such orders to
    /// review instead of refusing them.
    Kyc,
}

impl ReviewCause {
    pub fn code(self) -> &'static str {
        match self {
            ReviewCause::Risk => "risk",
            ReviewCause::Kyc => "kyc",
        }
    }
}

/// How a review ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    Approved,
    Rejected,
    Expired,
}

impl Verdict {
    pub fn code(self) -> &'static str {
        match self {
            Verdict::Approved => "approved",
            Verdict::Rejected => "review_rejected",
            Verdict::Expired => "review_expired",
        }
    }
}

/// What `OrderPendingReview` carries: the order as it will complete if approved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingReview {
    /// Its `captured_hold` is the reserved charge.
    pub order: CompletedOrder,
    pub cause: ReviewCause,
    pub score: Option<RiskScore>,
    /// When the review expires and the order is released.
    pub until: UnixMillis,
}

/// One order waiting for its review, and the pool each of its lines' codes came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    pub pending: PendingReview,
    /// Per line, in line order: the pool its slots were taken from (for the line of an issued
    /// SKU without a cap, which takes no slot, the SKU's id).
    pub pools: Vec<SkuId>,
}

impl Review {
    /// What the wallet has reserved for it.
    pub fn held(&self) -> Money {
        self.pending.order.total()
    }

    /// The supplier codes it keeps out of their pools: (pool, slots).
    pub fn reserved(&self) -> impl Iterator<Item = (&SkuId, &SlotRange)> {
        self.pending
            .order
            .lines
            .iter()
            .zip(&self.pools)
            .flat_map(|(l, p)| l.slots.iter().map(move |r| (p, r)))
    }
}

/// The shard's orders waiting for review.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reviews {
    #[serde(serialize_with = "sorted")]
    pub(crate) pending: HashMap<OrderKey, Review>,
}

impl Reviews {
    /// An order's review, while it waits.
    pub fn get(&self, key: &OrderKey) -> Option<&Review> {
        self.pending.get(key)
    }

    /// Every waiting review, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&OrderKey, &Review)> {
        self.pending.iter()
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The answer a retried order gets while it waits.
    pub(crate) fn outcome(&self, key: &OrderKey) -> Option<crate::event::OrderOutcome> {
        self.pending
            .get(key)
            .map(|r| crate::event::OrderOutcome::PendingReview {
                held: r.held(),
                until: r.pending.until,
            })
    }

    /// Approve or reject (an admin). On the order's home shard when the wallet is elsewhere,
    /// the command follows the order's claim there; an order that is not waiting is
    /// `not_in_review` (approving twice, or an order that never went to review).
    pub(crate) fn decide_settle(
        st: &ShardState,
        caller: &Caller,
        key: &OrderKey,
        approve: bool,
        now: UnixMillis,
    ) -> Decision {
        if !caller.admin {
            return Decision::Reject(Rejection::Forbidden);
        }
        let Some(r) = st.reviews().get(key) else {
            return match st.orders().claim(key) {
                Some((_, to)) if *to != st.shard() => Decision::Forward {
                    claim: None,
                    to: *to,
                },
                _ => Decision::Reject(Rejection::NotInReview),
            };
        };
        let verdict = if approve {
            Verdict::Approved
        } else {
            Verdict::Rejected
        };
        Decision::Events(Self::settled(
            r,
            key,
            verdict,
            Some(caller.client.clone()),
            now,
        ))
    }

    /// A review's end and the order's outcome, for one commit.
    pub(crate) fn settled(
        r: &Review,
        key: &OrderKey,
        verdict: Verdict,
        by: Option<ClientId>,
        at: UnixMillis,
    ) -> Vec<Event> {
        let o = &r.pending.order;
        let end = Event::ReviewSettled {
            key: key.clone(),
            wallet: o.wallet.clone(),
            verdict,
            by,
            at,
        };
        let outcome = match verdict {
            // The sale happens when it is approved: its limits, sales, cards' lives and
            // record count from then.
            Verdict::Approved => {
                let mut done = o.clone();
                done.at = at;
                Event::OrderCompleted(Box::new(done))
            }
            Verdict::Rejected | Verdict::Expired => Event::OrderRejected {
                key: key.clone(),
                fingerprint: o.fingerprint,
                wallet: o.wallet.clone(),
                reason: if verdict == Verdict::Rejected {
                    Rejection::ReviewRejected
                } else {
                    Rejection::ReviewExpired
                },
                released_hold: Some(r.held()),
            },
        };
        vec![end, outcome]
    }

    /// Starts a review; `pools` per line, read from the pools before they apply the event.
    pub(crate) fn start(&mut self, p: &PendingReview, pools: Vec<SkuId>) {
        let review = Review {
            pending: p.clone(),
            pools,
        };
        self.pending.insert(p.order.key.clone(), review);
    }

    /// Ends a review (its codes go back to their pools: the caller's part).
    pub(crate) fn end(&mut self, key: &OrderKey) -> Option<Review> {
        self.pending.remove(key)
    }
}
