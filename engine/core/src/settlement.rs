//! Settlement: what each supplier is owed for the codes sold on this shard since the last close,
//! and the periods closed here with what each closed, so a repeated close answers the same.

use crate::event::{Event, SupplierDue};
use crate::state::Decision;
use crate::wallets::sum;
use crate::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Open dues and closed periods of one shard.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    /// Owed to each supplier since the last settlement close on this shard.
    pub(crate) unsettled: BTreeMap<SupplierId, SupplierDue>,
    /// Settlement periods closed on this shard, with what each closed.
    pub(crate) closed: BTreeMap<RequestId, Vec<(SupplierId, SupplierDue)>>,
}

impl Settlement {
    /// What each supplier is owed since the last close.
    pub fn unsettled(&self) -> &BTreeMap<SupplierId, SupplierDue> {
        &self.unsettled
    }

    /// What a closed period closed on this shard.
    pub fn closed(&self, period: &RequestId) -> Option<&Vec<(SupplierId, SupplierDue)>> {
        self.closed.get(period)
    }

    /// A close of `period_id`: what is open now, or, for a period closed before, what it closed
    /// then (nothing is journaled again).
    pub(crate) fn decide_close(&self, period_id: &RequestId) -> Decision {
        if let Some(dues) = self.closed.get(period_id) {
            return Decision::Answered(vec![Event::SettlementClosed {
                period_id: period_id.clone(),
                dues: dues.clone(),
            }]);
        }
        Decision::Events(vec![Event::SettlementClosed {
            period_id: period_id.clone(),
            dues: self
                .unsettled
                .iter()
                .map(|(s, d)| (s.clone(), d.clone()))
                .collect(),
        }])
    }

    /// The settlement's part of an event.
    pub(crate) fn apply(&mut self, event: &Event) {
        match event {
            Event::OrderCompleted(order) => {
                for line in order.lines.iter().filter(|l| !l.issued) {
                    let due = self.unsettled.entry(line.supplier.clone()).or_default();
                    due.cards += u64::from(line.quantity);
                    let owed = line
                        .unit_cost
                        .minor()
                        .checked_mul(i64::from(line.quantity))
                        .expect("a line's cost was priced with checked arithmetic");
                    let ccy = line.unit_cost.currency();
                    match due.owed.iter_mut().find(|(c, _)| *c == ccy) {
                        Some(e) => e.1 = sum(e.1, owed),
                        None => due.owed.push((ccy, owed)),
                    }
                    if due.orders.last() != Some(&order.key) {
                        due.orders.push(order.key.clone());
                    }
                }
            }
            // A never-delivered code cancelled: its supplier is owed its cost no more, in the
            // open period (which may go below zero if the sale was settled in a closed one).
            Event::CardCancelled {
                restock: Some(r), ..
            } => {
                let due = self.unsettled.entry(r.supplier.clone()).or_default();
                due.cards = due.cards.saturating_sub(1);
                let ccy = r.cost.currency();
                match due.owed.iter_mut().find(|(c, _)| *c == ccy) {
                    Some(e) => e.1 = sum(e.1, -r.cost.minor()),
                    None => due.owed.push((ccy, -r.cost.minor())),
                }
            }
            Event::SettlementClosed { period_id, dues } => {
                self.closed.insert(period_id.clone(), dues.clone());
                for (supplier, due) in dues {
                    let open = self.unsettled.entry(supplier.clone()).or_default();
                    open.cards -= due.cards;
                    for (ccy, owed) in &due.owed {
                        if let Some(e) = open.owed.iter_mut().find(|(c, _)| c == ccy) {
                            e.1 = sum(e.1, -owed);
                        }
                    }
                    open.orders.drain(..due.orders.len().min(open.orders.len()));
                    if open.cards == 0 {
                        self.unsettled.remove(supplier);
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
    use crate::event::{CompletedOrder, DeliveryChannel, SoldLine};

    fn usd(minor: i64) -> Money {
        Money::new(minor, Currency::parse("USD").expect("USD"))
    }

    fn sale(order: &str, qty: u32, unit_cost: i64) -> Event {
        let key = OrderKey {
            client: ClientId::new("c"),
            order_id: OrderId::new(order),
        };
        Event::OrderCompleted(Box::new(CompletedOrder {
            key,
            fingerprint: [0; 16],
            wallet: WalletId::new("w"),
            charged: usd(2_500 * i64::from(qty)),
            captured_hold: None,
            first_card: CardId(0),
            lines: vec![SoldLine {
                sku: SkuId::new("s"),
                supplier: SupplierId::new("sup"),
                issued: false,
                quantity: qty,
                face: usd(2_500),
                unit_price: usd(2_500),
                unit_cost: usd(unit_cost),
                charged: usd(2_500 * i64::from(qty)),
                charged_at_mid: usd(2_500 * i64::from(qty)),
                slots: vec![(0, u64::from(qty))],
                issued_codes: vec![],
            }],
            channel: DeliveryChannel::None,
            recipient: "".into(),
            at: UnixMillis(1),
            fees: Vec::new(),
        }))
    }

    fn close(s: &mut Settlement, period: &str) -> Vec<(SupplierId, SupplierDue)> {
        match s.decide_close(&RequestId::new(period)) {
            Decision::Events(evs) => {
                s.apply(&evs[0]);
                match &evs[0] {
                    Event::SettlementClosed { dues, .. } => dues.clone(),
                    other => panic!("{other:?}"),
                }
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_close_takes_what_is_open_and_a_repeat_answers_the_same_without_events() {
        let mut s = Settlement::default();
        s.apply(&sale("o1", 2, 2_125));
        s.apply(&sale("o2", 1, 2_125));
        let dues = close(&mut s, "2026-11");
        assert_eq!(dues.len(), 1);
        assert_eq!(dues[0].1.cards, 3);
        assert_eq!(dues[0].1.owed, vec![(usd(0).currency(), 6_375)]);
        assert!(s.unsettled().is_empty());
        assert_eq!(
            s.decide_close(&RequestId::new("2026-11")),
            Decision::Answered(vec![Event::SettlementClosed {
                period_id: RequestId::new("2026-11"),
                dues: dues.clone(),
            }])
        );
        // A later period holds only later sales.
        s.apply(&sale("o3", 1, 2_125));
        let later = close(&mut s, "2026-12");
        assert_eq!(later[0].1.cards, 1);
        assert_eq!(later[0].1.orders.len(), 1);
    }
}
