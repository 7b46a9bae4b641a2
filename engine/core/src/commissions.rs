//! Supplier commission tiers: per supplier and currency, marginal rates by volume in a settlement
//! period ("1% of the first $1M owed, 2% of what is above"). A supplier's volume is spread over
//! the shards that sold its codes, so no shard can see a tier's threshold on its own: tiers are
//! computed once per period, at its close, on shard 0, from every shard's closed dues added
//! together (`Command::BookCommissions`). That makes a threshold exact to the minor unit: the
//! volume is final and whole when the rates apply. The commission is owed by the supplier: it
//! comes off `supplier_payable` and goes to `revenue:commission`, in the same event.

use crate::state::Decision;
use crate::*;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most tiers one supplier's currency may have.
pub const TIERS_MAX: usize = 20;

/// One tier: `rate` on the part of the volume from `from_minor` up to the next tier's start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tier {
    pub from_minor: i64,
    pub rate: Decimal,
}

/// A supplier's tiers per currency of its volume.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommissionTiers {
    pub by_currency: BTreeMap<Currency, Vec<Tier>>,
}

impl CommissionTiers {
    /// Why the tiers are not well formed, if they are not: the first tier not starting at 0,
    /// starts not strictly increasing, a rate outside [0, 1), or too many tiers.
    pub fn malformed(&self) -> Option<&'static str> {
        for tiers in self.by_currency.values() {
            if tiers.is_empty() || tiers.len() > TIERS_MAX {
                return Some("a currency needs 1 to 20 tiers");
            }
            if tiers[0].from_minor != 0 {
                return Some("the first tier starts at 0");
            }
            if tiers.windows(2).any(|w| w[1].from_minor <= w[0].from_minor) {
                return Some("tiers are not increasing");
            }
            if tiers.iter().any(|t| t.from_minor > AMOUNT_MINOR_MAX) {
                return Some("a tier starts above the largest amount");
            }
            if tiers
                .iter()
                .any(|t| t.rate < Decimal::ZERO || t.rate >= Decimal::ONE)
            {
                return Some("a rate outside [0, 1)");
            }
        }
        None
    }

    /// The commission on a period's `volume`: each tier's rate on its slice of the volume, the
    /// sum rounded half to even to the minor unit once. Zero without tiers in its currency.
    pub fn commission(&self, volume: Money) -> Result<Money, Rejection> {
        let zero = Money::zero(volume.currency());
        let Some(tiers) = self.by_currency.get(&volume.currency()) else {
            return Ok(zero);
        };
        let v = volume.minor().max(0);
        let mut total = Decimal::ZERO;
        for (i, t) in tiers.iter().enumerate() {
            let end = tiers.get(i + 1).map_or(v, |n| n.from_minor.min(v));
            if end <= t.from_minor {
                break;
            }
            let slice = Decimal::from(end - t.from_minor)
                .checked_mul(t.rate)
                .ok_or(Rejection::AmountOutOfRange)?;
            total = total
                .checked_add(slice)
                .ok_or(Rejection::AmountOutOfRange)?;
        }
        let minor = total
            .round_dp_with_strategy(0, RoundingStrategy::MidpointNearestEven)
            .to_i64()
            .ok_or(Rejection::AmountOutOfRange)?;
        Ok(Money::new(minor, volume.currency()))
    }
}

/// Every supplier's tiers (replicated).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commissions {
    pub(crate) by_supplier: BTreeMap<SupplierId, CommissionTiers>,
}

impl Commissions {
    /// A supplier's tiers, if it has any.
    pub fn get(&self, supplier: &SupplierId) -> Option<&CommissionTiers> {
        self.by_supplier.get(supplier)
    }

    pub(crate) fn decide_set(supplier: &SupplierId, tiers: &CommissionTiers) -> Decision {
        if tiers.malformed().is_some() {
            return Decision::Reject(Rejection::InvalidCommissionTiers);
        }
        Decision::Events(vec![Event::CommissionTiersSet {
            supplier: supplier.clone(),
            tiers: tiers.clone(),
        }])
    }

    /// Books a closed period's commissions, once: a period booked before answers what it
    /// booked then (nothing is journaled again, whatever the tiers are now).
    pub(crate) fn decide_book(
        &self,
        sales: &crate::sales::Sales,
        period_id: &RequestId,
        volumes: &[(SupplierId, Money)],
        now: UnixMillis,
    ) -> Decision {
        let booked: Vec<Event> = sales
            .commissions()
            .iter()
            .filter(|c| c.period_id == *period_id)
            .map(|c| Event::CommissionBooked {
                period_id: c.period_id.clone(),
                supplier: c.supplier.clone(),
                volume: c.volume,
                commission: c.commission,
                at: c.at,
            })
            .collect();
        if !booked.is_empty() {
            return Decision::Answered(booked);
        }
        let mut events = Vec::with_capacity(volumes.len());
        for (supplier, volume) in volumes {
            let commission = match self.get(supplier) {
                Some(t) => match t.commission(*volume) {
                    Ok(c) => c,
                    Err(r) => return Decision::Reject(r),
                },
                None => Money::zero(volume.currency()),
            };
            events.push(Event::CommissionBooked {
                period_id: period_id.clone(),
                supplier: supplier.clone(),
                volume: *volume,
                commission,
                at: now,
            });
        }
        if events.is_empty() {
            return Decision::Answered(events);
        }
        Decision::Events(events)
    }

    pub(crate) fn apply(&mut self, event: &Event) {
        if let Event::CommissionTiersSet { supplier, tiers } = event {
            if tiers.by_currency.is_empty() {
                self.by_supplier.remove(supplier);
            } else {
                self.by_supplier.insert(supplier.clone(), tiers.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(minor: i64) -> Money {
        Money::new(minor, Currency::parse("USD").expect("USD"))
    }

    /// 1% of the first $1M, 2% above: exact to the minor unit at the threshold.
    #[test]
    fn a_tier_boundary_is_exact_to_the_minor_unit() {
        let mut t = CommissionTiers::default();
        t.by_currency.insert(
            usd(0).currency(),
            vec![
                Tier {
                    from_minor: 0,
                    rate: Decimal::new(1, 2),
                },
                Tier {
                    from_minor: 100_000_000,
                    rate: Decimal::new(2, 2),
                },
            ],
        );
        assert_eq!(t.malformed(), None);
        assert_eq!(t.commission(usd(100_000_000)), Ok(usd(1_000_000)));
        // 100 minor units above the threshold earn 2 each 100: 2, not 1.
        assert_eq!(t.commission(usd(100_000_100)), Ok(usd(1_000_002)));
        // One unit below: 1% of 99,999,999 is 999,999.99, rounded to 1,000,000.
        assert_eq!(t.commission(usd(99_999_999)), Ok(usd(1_000_000)));
        assert_eq!(t.commission(usd(99_999_900)), Ok(usd(999_999)));
        // No tiers in EUR: no commission.
        let eur = Money::new(500_000_000, Currency::parse("EUR").expect("EUR"));
        assert_eq!(t.commission(eur), Ok(Money::zero(eur.currency())));
    }

    #[test]
    fn tiers_that_do_not_increase_or_start_above_zero_are_refused() {
        let tier = |from_minor, rate| Tier {
            from_minor,
            rate: Decimal::new(rate, 2),
        };
        let mut t = CommissionTiers::default();
        t.by_currency.insert(
            usd(0).currency(),
            vec![tier(0, 1), tier(10, 2), tier(10, 3)],
        );
        assert!(t.malformed().is_some());
        t.by_currency.insert(usd(0).currency(), vec![tier(5, 1)]);
        assert!(t.malformed().is_some());
        t.by_currency.insert(usd(0).currency(), vec![tier(0, 100)]);
        assert!(t.malformed().is_some());
    }
}
