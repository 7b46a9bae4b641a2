//! Sales: what each completed order of this shard earned, line by line (price, cost, margin, FX
//! spread) with its fees, kept for the order's answer (fresh or replayed) and for the revenue
//! report; and the supplier commissions booked here at settlement closes. The report over a
//! window sums exactly what the ledger's revenue accounts took in that window: both are made
//! from the same events, and `giftcard verify` checks that they agree.

use crate::catalog::Catalog;
use crate::event::{CompletedOrder, Event};
use crate::fees::FeeKind;
use crate::maps::SpreadMap;
use crate::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What one line of an order earned. Price and cost are per card in the SKU's currency; the
/// charge and the FX spread are the line's in the pay currency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaleLine {
    pub sku: SkuId,
    pub supplier: SupplierId,
    pub issued: bool,
    pub quantity: u32,
    pub unit_price: Money,
    pub unit_cost: Money,
    pub charged: Money,
    pub fx: Money,
}

impl SaleLine {
    /// Margin per card: price less cost (for issued cards the cost is the stored value).
    pub fn unit_margin(&self) -> i64 {
        self.unit_price.minor() - self.unit_cost.minor()
    }

    fn times(&self, m: i64) -> i64 {
        m.checked_mul(i64::from(self.quantity))
            .expect("a line's amounts were priced with checked arithmetic")
    }
}

/// What one completed order earned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sale {
    pub at: UnixMillis,
    /// The wallet's owner: the client the sale is reported under.
    pub client: ClientId,
    /// Everything taken from the wallet: the lines' charges and the fees.
    pub charged: Money,
    pub fees: Vec<(FeeKind, Money)>,
    pub lines: Vec<SaleLine>,
    /// For an order filled in part: per line of the request, (SKU, cards asked for, cards
    /// sold). Empty when every line was filled.
    pub filled_in_part: Vec<(SkuId, u32, u32)>,
}

/// A supplier's commission for a settlement period, booked at its close.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commission {
    pub period_id: RequestId,
    pub supplier: SupplierId,
    /// What the supplier was owed for the period, all shards together: the tiers' volume.
    pub volume: Money,
    pub commission: Money,
    pub at: UnixMillis,
}

/// A cancelled card's price given back: counted against revenue when it happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    pub at: UnixMillis,
    pub card: CardId,
    pub client: ClientId,
    pub sku: SkuId,
    pub supplier: SupplierId,
    /// What the card was sold for, and what it cost (an issued card's face, a supplier's
    /// code's cost).
    pub price: Money,
    pub cost: Money,
}

/// The sales and commissions of one shard.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sales {
    pub(crate) by_order: SpreadMap<OrderKey, Arc<Sale>>,
    pub(crate) commissions: Vec<Commission>,
    /// Cancelled cards' refunds, in order (section version 2 on).
    pub(crate) refunds: Vec<Refund>,
}

/// The sales section as version 1 wrote it: no refunds.
#[derive(Deserialize)]
pub(crate) struct SalesV1 {
    by_order: SpreadMap<OrderKey, Arc<Sale>>,
    commissions: Vec<Commission>,
}

impl From<SalesV1> for Sales {
    fn from(v: SalesV1) -> Sales {
        Sales {
            by_order: v.by_order,
            commissions: v.commissions,
            refunds: Vec::new(),
        }
    }
}

/// How a revenue report groups its rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupBy {
    Sku,
    Brand,
    Supplier,
    Currency,
    Client,
    Day,
}

/// One row of a revenue report, in one currency. Sales, cost and margin are in the SKUs'
/// currency; FX spread and fees in the pay currency; commission in the supplier's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevenueRow {
    pub cards: u64,
    pub sales_minor: i64,
    pub cost_minor: i64,
    pub margin_minor: i64,
    pub fx_minor: i64,
    pub fees_minor: i64,
    pub commission_minor: i64,
}

impl RevenueRow {
    /// Adds another row's amounts into this one.
    pub fn add(&mut self, o: &RevenueRow) {
        self.cards += o.cards;
        self.sales_minor += o.sales_minor;
        self.cost_minor += o.cost_minor;
        self.margin_minor += o.margin_minor;
        self.fx_minor += o.fx_minor;
        self.fees_minor += o.fees_minor;
        self.commission_minor += o.commission_minor;
    }
}

/// A revenue report: rows by (group, currency). A group of `None` holds what the grouping cannot
/// split: order fees by SKU, brand or supplier; commissions by SKU, brand or client.
pub type Revenue = BTreeMap<(Option<String>, Currency), RevenueRow>;

/// Adds one shard's report into another's.
pub fn merge(into: &mut Revenue, part: Revenue) {
    for (k, row) in part {
        into.entry(k).or_default().add(&row);
    }
}

/// A day as `YYYY-MM-DD` (UTC) from milliseconds since the epoch.
pub fn day_of(at: UnixMillis) -> String {
    // Days to a civil date (the proleptic Gregorian calendar), after H. Hinnant's algorithm.
    let z = (at.0 / 86_400_000) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

impl Sales {
    /// What an order earned, if it completed here (orders completed before this module existed
    /// have no record).
    pub fn get(&self, key: &OrderKey) -> Option<&Arc<Sale>> {
        self.by_order.get(key)
    }

    pub fn len(&self) -> usize {
        self.by_order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_order.is_empty()
    }

    /// Commissions booked here, in booking order.
    pub fn commissions(&self) -> &[Commission] {
        &self.commissions
    }

    /// The report of `[from, to)`, grouped `by`.
    pub fn revenue(
        &self,
        catalog: &Catalog,
        from: UnixMillis,
        to: UnixMillis,
        by: GroupBy,
    ) -> Revenue {
        let mut out = Revenue::new();
        let inside = |at: UnixMillis| from <= at && at < to;
        for sale in self.by_order.values().filter(|s| inside(s.at)) {
            let order_key = match by {
                GroupBy::Client => Some(sale.client.as_str().to_owned()),
                GroupBy::Day => Some(day_of(sale.at)),
                GroupBy::Currency => Some(sale.charged.currency().code().to_owned()),
                GroupBy::Sku | GroupBy::Brand | GroupBy::Supplier => None,
            };
            for line in &sale.lines {
                let key = match by {
                    GroupBy::Sku => Some(line.sku.as_str().to_owned()),
                    GroupBy::Brand => Some(
                        catalog
                            .sku(&line.sku)
                            .map_or_else(String::new, |s| s.brand.clone()),
                    ),
                    GroupBy::Supplier => Some(line.supplier.as_str().to_owned()),
                    GroupBy::Currency => Some(line.unit_price.currency().code().to_owned()),
                    GroupBy::Client | GroupBy::Day => order_key.clone(),
                };
                let row = out
                    .entry((key.clone(), line.unit_price.currency()))
                    .or_default();
                row.cards += u64::from(line.quantity);
                row.sales_minor += line.times(line.unit_price.minor());
                row.cost_minor += line.times(line.unit_cost.minor());
                row.margin_minor += line.times(line.unit_margin());
                if line.fx.minor() != 0 {
                    let key = match by {
                        GroupBy::Currency => Some(line.fx.currency().code().to_owned()),
                        _ => key,
                    };
                    out.entry((key, line.fx.currency())).or_default().fx_minor += line.fx.minor();
                }
            }
            for (_, fee) in &sale.fees {
                out.entry((order_key.clone(), fee.currency()))
                    .or_default()
                    .fees_minor += fee.minor();
            }
        }
        for r in self.refunds.iter().filter(|r| inside(r.at)) {
            let ccy = r.price.currency();
            let key = match by {
                GroupBy::Sku => Some(r.sku.as_str().to_owned()),
                GroupBy::Brand => Some(
                    catalog
                        .sku(&r.sku)
                        .map_or_else(String::new, |s| s.brand.clone()),
                ),
                GroupBy::Supplier => Some(r.supplier.as_str().to_owned()),
                GroupBy::Currency => Some(ccy.code().to_owned()),
                GroupBy::Client => Some(r.client.as_str().to_owned()),
                GroupBy::Day => Some(day_of(r.at)),
            };
            let row = out.entry((key, ccy)).or_default();
            row.cards = row.cards.saturating_sub(1);
            row.sales_minor -= r.price.minor();
            row.cost_minor -= r.cost.minor();
            row.margin_minor -= r.price.minor() - r.cost.minor();
        }
        for c in self.commissions.iter().filter(|c| inside(c.at)) {
            let key = match by {
                GroupBy::Supplier => Some(c.supplier.as_str().to_owned()),
                GroupBy::Currency => Some(c.commission.currency().code().to_owned()),
                GroupBy::Day => Some(day_of(c.at)),
                GroupBy::Sku | GroupBy::Brand | GroupBy::Client => None,
            };
            out.entry((key, c.commission.currency()))
                .or_default()
                .commission_minor += c.commission.minor();
        }
        out
    }

    /// Cancelled cards' refunds, in order.
    pub fn refunds(&self) -> &[Refund] {
        &self.refunds
    }

    /// The sales' part of an event applied at `at`; `owner` is the client of the order's wallet
    /// (for a cancellation, of the card's order).
    pub(crate) fn apply(
        &mut self,
        event: &Event,
        owner: Option<&ClientId>,
        cards: &crate::cards::Cards,
    ) {
        match event {
            Event::CardCancelled {
                card,
                refund,
                face,
                restock,
                at,
                ..
            } => {
                let Some(c) = cards.get(card) else { return };
                let (supplier, cost) = match restock {
                    Some(r) => (r.supplier.clone(), r.cost),
                    None => {
                        let supplier = self
                            .by_order
                            .get(&c.order)
                            .and_then(|s| s.lines.iter().find(|l| l.sku == c.sku))
                            .map(|l| l.supplier.clone())
                            .unwrap_or_else(|| SupplierId::new(""));
                        (supplier, *face)
                    }
                };
                self.refunds.push(Refund {
                    at: *at,
                    card: *card,
                    client: owner.unwrap_or(&c.order.client).clone(),
                    sku: c.sku.clone(),
                    supplier,
                    price: *refund,
                    cost,
                });
            }
            Event::OrderCompleted(order) => {
                let client = owner.unwrap_or(&order.key.client).clone();
                self.by_order
                    .insert(order.key.clone(), Arc::new(sale_of(order, client)));
            }
            Event::OrderFilledInPart { key, items } => {
                if let Some(sale) = self.by_order.get_mut(key) {
                    Arc::make_mut(sale).filled_in_part = items.clone();
                }
            }
            Event::CommissionBooked {
                period_id,
                supplier,
                volume,
                commission,
                at,
            } => self.commissions.push(Commission {
                period_id: period_id.clone(),
                supplier: supplier.clone(),
                volume: *volume,
                commission: *commission,
                at: *at,
            }),
            _ => {}
        }
    }
}

fn sale_of(order: &CompletedOrder, client: ClientId) -> Sale {
    let lines = order
        .lines
        .iter()
        .map(|l| SaleLine {
            sku: l.sku.clone(),
            supplier: l.supplier.clone(),
            issued: l.issued,
            quantity: l.quantity,
            unit_price: l.unit_price,
            unit_cost: l.unit_cost,
            charged: l.charged,
            fx: Money::new(
                l.charged.minor() - l.charged_at_mid.minor(),
                l.charged.currency(),
            ),
        })
        .collect();
    Sale {
        at: order.at,
        client,
        charged: order.total(),
        fees: order.fees.clone(),
        lines,
        filled_in_part: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_utc_calendar_dates() {
        assert_eq!(day_of(UnixMillis(0)), "1970-01-01");
        // 2026-12-01T00:00:00Z and the millisecond before it.
        assert_eq!(day_of(UnixMillis(1_796_083_200_000)), "2026-12-01");
        assert_eq!(day_of(UnixMillis(1_796_083_199_999)), "2026-11-30");
        assert_eq!(day_of(UnixMillis(951_782_400_000)), "2000-02-29");
    }
}
