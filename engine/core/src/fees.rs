//! Fees: an optional charge per order and per delivery channel (expedited delivery by SMS, say),
//! set per pay currency and taken from the wallet in the same commit as the order, booked to
//! `revenue:fees`. Replicated like the catalog; an order is charged the fees of the schedule it
//! was decided under, and the fee event records them, so replay never consults the schedule.

use crate::event::DeliveryChannel;
use crate::state::Decision;
use crate::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a fee is charged for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FeeKind {
    /// Every order paid in the currency.
    Order,
    /// Orders delivered by this channel.
    Delivery(DeliveryChannel),
}

impl FeeKind {
    /// The fee's name on the wire.
    pub fn code(self) -> &'static str {
        match self {
            FeeKind::Order => "order",
            FeeKind::Delivery(DeliveryChannel::Email) => "delivery_email",
            FeeKind::Delivery(DeliveryChannel::Sms) => "delivery_sms",
            FeeKind::Delivery(DeliveryChannel::Webhook) => "delivery_webhook",
            FeeKind::Delivery(DeliveryChannel::None) => "delivery_none",
        }
    }
}

/// The fees of orders paid in one currency, in its minor units (0: none).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fees {
    pub order_minor: i64,
    pub email_minor: i64,
    pub sms_minor: i64,
    pub webhook_minor: i64,
}

/// Largest single fee, in minor units.
pub const FEE_MINOR_MAX: i64 = 100_000_000;

/// Every currency's fees (replicated: the same on every shard).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeSchedule {
    pub by_currency: BTreeMap<Currency, Fees>,
}

impl FeeSchedule {
    /// The fees an order paid in `pay` and delivered by `channel` is charged, none of them zero.
    pub fn charges(&self, pay: Currency, channel: DeliveryChannel) -> Vec<(FeeKind, Money)> {
        let Some(f) = self.by_currency.get(&pay) else {
            return Vec::new();
        };
        let delivery = match channel {
            DeliveryChannel::Email => f.email_minor,
            DeliveryChannel::Sms => f.sms_minor,
            DeliveryChannel::Webhook => f.webhook_minor,
            DeliveryChannel::None => 0,
        };
        [
            (FeeKind::Order, f.order_minor),
            (FeeKind::Delivery(channel), delivery),
        ]
        .into_iter()
        .filter(|(_, m)| *m > 0)
        .map(|(k, m)| (k, Money::new(m, pay)))
        .collect()
    }

    /// Why the schedule is not well formed, if it is not: a fee below zero or above the largest.
    pub fn malformed(&self) -> Option<&'static str> {
        let bad = |m: i64| !(0..=FEE_MINOR_MAX).contains(&m);
        self.by_currency
            .values()
            .any(|f| {
                [f.order_minor, f.email_minor, f.sms_minor, f.webhook_minor]
                    .into_iter()
                    .any(bad)
            })
            .then_some("a fee outside 0 to the largest fee")
    }

    pub(crate) fn decide_set(schedule: &FeeSchedule) -> Decision {
        if schedule.malformed().is_some() {
            return Decision::Reject(Rejection::AmountOutOfRange);
        }
        Decision::Events(vec![Event::FeesSet(schedule.clone())])
    }

    pub(crate) fn apply(&mut self, event: &Event) {
        if let Event::FeesSet(s) = event {
            *self = s.clone();
        }
    }
}

/// The total of some fees (all in one currency by construction), if any.
pub fn total(fees: &[(FeeKind, Money)]) -> Option<Money> {
    let (_, first) = fees.first()?;
    Some(Money::new(
        fees.iter().map(|(_, m)| m.minor()).sum(),
        first.currency(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_pays_its_currencys_order_fee_and_its_channels_fee_only() {
        let usd = Currency::parse("USD").expect("USD");
        let mut s = FeeSchedule::default();
        s.by_currency.insert(
            usd,
            Fees {
                order_minor: 50,
                sms_minor: 99,
                ..Fees::default()
            },
        );
        assert_eq!(
            s.charges(usd, DeliveryChannel::Sms),
            vec![
                (FeeKind::Order, Money::new(50, usd)),
                (FeeKind::Delivery(DeliveryChannel::Sms), Money::new(99, usd)),
            ]
        );
        assert_eq!(
            s.charges(usd, DeliveryChannel::Email),
            vec![(FeeKind::Order, Money::new(50, usd))]
        );
        let eur = Currency::parse("EUR").expect("EUR");
        assert!(s.charges(eur, DeliveryChannel::Sms).is_empty());
        assert_eq!(
            total(&s.charges(usd, DeliveryChannel::Sms)),
            Some(Money::new(149, usd))
        );
    }
}
