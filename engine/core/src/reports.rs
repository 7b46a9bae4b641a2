//! Reports: sales per SKU and the ledger's aggregate accounts (those other than wallets and
//! cards, which keep their own ledger view on the wallet and the card).

use crate::event::Event;
use crate::ledger::{postings, Account};
use crate::maps::{sorted, HashMap};
use crate::wallets::sum;
use crate::*;
use serde::{Deserialize, Serialize};

/// Sales counters per SKU, for the admin report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkuSales {
    pub cards: u64,
    pub revenue_minor: i64,
    pub margin_minor: i64,
}

/// Sales and aggregate ledger accounts of one shard.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reports {
    #[serde(serialize_with = "sorted")]
    pub(crate) sales: HashMap<SkuId, SkuSales>,
    #[serde(serialize_with = "sorted")]
    pub(crate) ledger: HashMap<Account, i64>,
}

impl Reports {
    /// Sales per SKU, in no particular order.
    pub fn sales(&self) -> impl Iterator<Item = (&SkuId, &SkuSales)> {
        self.sales.iter()
    }

    /// Aggregate ledger accounts, in no particular order.
    pub fn ledger(&self) -> impl Iterator<Item = (&Account, &i64)> {
        self.ledger.iter()
    }

    /// One aggregate account's balance.
    pub fn account(&self, account: &Account) -> i64 {
        self.ledger.get(account).copied().unwrap_or(0)
    }

    /// The reports' part of an event.
    pub(crate) fn apply(&mut self, event: &Event) {
        for p in postings(event) {
            match p.account {
                Account::Wallet(..) | Account::Card(_) => {}
                account => match self.ledger.get_mut(&account) {
                    Some(v) => *v = sum(*v, p.amount.minor()),
                    None => drop(self.ledger.insert(account, p.amount.minor())),
                },
            }
        }
        if let Event::OrderCompleted(order) = event {
            for line in &order.lines {
                let s = match self.sales.get_mut(&line.sku) {
                    Some(s) => s,
                    None => self.sales.entry(line.sku.clone()).or_default(),
                };
                let qty = i64::from(line.quantity);
                let times = |m: i64| {
                    m.checked_mul(qty)
                        .expect("a line's amounts were priced with checked arithmetic")
                };
                s.cards += u64::from(line.quantity);
                s.revenue_minor = sum(s.revenue_minor, times(line.unit_price.minor()));
                s.margin_minor = sum(
                    s.margin_minor,
                    times(sum(line.unit_price.minor(), -line.unit_cost.minor())),
                );
            }
        }
    }
}
