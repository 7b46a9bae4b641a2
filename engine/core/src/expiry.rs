//! Expiry of issued cards, by a policy set per SKU: `never` (the default), a number of days
//! after issue, or a fixed date. Replicated like the catalog: every shard knows every policy,
//! since a card is issued on whichever shard completes its order.
//!
//! A jurisdiction may set a least life for stored value (`engine.expiry_min_days`, a runtime
//! setting). A days-after-issue policy below it is refused when it is set; a fixed date is
//! accepted, and each card then expires no earlier than its issue plus the minimum. The minimum
//! in force when a policy is set is journaled with it, so the instant a card expires is a
//! function of the journal alone and replays the same under any later setting.
//!
//! A card's expiry instant is fixed when it is issued (a `CardExpires` deadline on its shard):
//! a policy changed later applies to the cards issued after it. At that instant the card's
//! remaining balance moves to `revenue:breakage` (`Event::CardExpired`), exactly once, and the
//! card is `expired`: nothing more is redeemed from it, and no reversal puts value back on it.
//! The move is journaled, with its time, when the deadline fires: at the instant while the
//! engine runs (a tick's latency after it), or at recovery if the engine was down then. From
//! the instant on, before the tick as after it, a redemption or a reversal on the card is
//! refused (`card_expired`), so what the move takes is what the card held at its instant.

use crate::catalog::{Catalog, SkuKind};
use crate::event::Event;
use crate::state::Decision;
use crate::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One day, in ms.
pub const DAY_MS: u64 = 86_400_000;

/// Longest life a policy may give: a hundred years.
pub const EXPIRY_DAYS_MAX: u32 = 36_500;

/// When a SKU's cards expire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpiryPolicy {
    #[default]
    Never,
    /// This many days after each card's issue.
    DaysAfterIssue(u32),
    /// At one instant for every card (a promotion's cards, say).
    FixedDate(UnixMillis),
}

/// A SKU's policy with the jurisdiction's minimum in force when it was set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkuExpiry {
    pub policy: ExpiryPolicy,
    pub min_days: u32,
}

impl SkuExpiry {
    /// When a card issued at `issued` expires, if ever.
    pub fn expires_at(&self, issued: UnixMillis) -> Option<UnixMillis> {
        let after = |days: u32| {
            issued
                .0
                .saturating_add(u64::from(days).saturating_mul(DAY_MS))
        };
        match self.policy {
            ExpiryPolicy::Never => None,
            ExpiryPolicy::DaysAfterIssue(d) => Some(UnixMillis(after(d.max(self.min_days)))),
            ExpiryPolicy::FixedDate(at) => Some(UnixMillis(at.0.max(after(self.min_days)))),
        }
    }
}

/// Every SKU's expiry policy (replicated: the same on every shard).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiryPolicies {
    pub(crate) by_sku: BTreeMap<SkuId, SkuExpiry>,
    /// The jurisdiction's least life of a card, in days (0: none). Set by the runtime; read
    /// only when a policy is set, which journals it.
    #[serde(skip)]
    pub(crate) min_days: u32,
}

impl ExpiryPolicies {
    /// A SKU's policy (`never` when none was set).
    pub fn get(&self, sku: &SkuId) -> SkuExpiry {
        self.by_sku.get(sku).copied().unwrap_or_default()
    }

    /// Every SKU with a policy set.
    pub fn iter(&self) -> impl Iterator<Item = (&SkuId, &SkuExpiry)> {
        self.by_sku.iter()
    }

    /// Sets a SKU's policy. Only a SKU of issued cards has one: a supplier's code holds value
    /// the brand owes, not the platform. A life of 0 or over a hundred years, a fixed date not in
    /// the future, or fewer days than the jurisdiction's minimum, is refused.
    pub(crate) fn decide_set(
        &self,
        catalog: &Catalog,
        sku: &SkuId,
        policy: ExpiryPolicy,
        now: UnixMillis,
    ) -> Decision {
        let min_days = self.min_days;
        let Some(s) = catalog.sku(sku) else {
            return Decision::Reject(Rejection::SkuNotFound);
        };
        if s.kind != SkuKind::Issued {
            return Decision::Reject(Rejection::InvalidExpiry);
        }
        match policy {
            ExpiryPolicy::Never => {}
            ExpiryPolicy::DaysAfterIssue(d) if d == 0 || d > EXPIRY_DAYS_MAX => {
                return Decision::Reject(Rejection::InvalidExpiry)
            }
            ExpiryPolicy::DaysAfterIssue(d) if d < min_days => {
                return Decision::Reject(Rejection::ExpiryBelowMinimum)
            }
            ExpiryPolicy::DaysAfterIssue(_) => {}
            ExpiryPolicy::FixedDate(at) => {
                let latest = now
                    .0
                    .saturating_add(u64::from(EXPIRY_DAYS_MAX).saturating_mul(DAY_MS));
                if at <= now || at.0 > latest {
                    return Decision::Reject(Rejection::InvalidExpiry);
                }
            }
        }
        Decision::Events(vec![Event::ExpiryPolicySet {
            sku: sku.clone(),
            expiry: SkuExpiry { policy, min_days },
        }])
    }

    pub(crate) fn apply(&mut self, event: &Event) {
        if let Event::ExpiryPolicySet { sku, expiry } = event {
            if expiry.policy == ExpiryPolicy::Never {
                self.by_sku.remove(sku);
            } else {
                self.by_sku.insert(sku.clone(), *expiry);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_card_lives_at_least_the_minimum_in_force_when_its_policy_was_set() {
        let issued = UnixMillis(1_000);
        let days = |d: u64| UnixMillis(1_000 + d * DAY_MS);
        let e = |policy, min_days| SkuExpiry { policy, min_days };
        assert_eq!(e(ExpiryPolicy::Never, 5).expires_at(issued), None);
        assert_eq!(
            e(ExpiryPolicy::DaysAfterIssue(30), 0).expires_at(issued),
            Some(days(30))
        );
        assert_eq!(
            e(ExpiryPolicy::DaysAfterIssue(30), 365).expires_at(issued),
            Some(days(365))
        );
        let fixed = UnixMillis(1_000 + 10 * DAY_MS);
        assert_eq!(
            e(ExpiryPolicy::FixedDate(fixed), 0).expires_at(issued),
            Some(fixed)
        );
        assert_eq!(
            e(ExpiryPolicy::FixedDate(fixed), 20).expires_at(issued),
            Some(days(20))
        );
        // Far dates saturate instead of wrapping.
        let late = UnixMillis(u64::MAX - 1);
        assert_eq!(
            e(ExpiryPolicy::DaysAfterIssue(EXPIRY_DAYS_MAX), 0).expires_at(late),
            Some(UnixMillis(u64::MAX))
        );
    }
}
