//! Sourcing: several suppliers behind one SKU. Besides the SKU's own supplier (its cost from the
//! SKU's wholesale discount), a SKU may name offers: other suppliers, each with its own discount
//! and a priority. Each supplier's codes sit in a pool of their own: the SKU's own supplier's in
//! the pool named by the SKU id (as before sourcing existed), an offer's in the pool
//! `{sku}/{supplier}` (`/` never appears in an id, so no SKU can be named so). An order takes
//! codes by the SKU's routing (`lowest_cost` first, ties by priority; or `priority` first, ties
//! by cost), from each pool what it has, failing over to the next when one runs dry; each pool's
//! cards become a line of their own with their supplier and cost, so settlement pays each
//! supplier for its own codes at its own cost. Replicated like the catalog.
//!
//! An offer removed from a SKU keeps its pool on every shard, with the codes uploaded to it:
//! they are not sold (nor uploaded to) until the offer is named again.

use crate::catalog::{Catalog, Sku, SkuKind};
use crate::money::scale_half_even;
use crate::state::Decision;
use crate::*;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most offers one SKU may have.
pub const OFFERS_MAX: usize = 10;

/// How an order picks among a SKU's suppliers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Routing {
    /// The cheapest supplier first (ties: the lower priority number, then the supplier id).
    #[default]
    LowestCost,
    /// The lowest priority number first (ties: the cheaper, then the supplier id).
    Priority,
}

/// A supplier other than the SKU's own, selling its codes at its own discount off face.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    pub supplier: SupplierId,
    pub wholesale_discount: Decimal,
    pub priority: u32,
}

/// A SKU's suppliers beyond its own.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sourcing {
    pub routing: Routing,
    /// The SKU's own supplier's priority.
    pub primary_priority: u32,
    pub offers: Vec<Offer>,
}

/// One place an order line takes codes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub pool: SkuId,
    pub supplier: SupplierId,
    pub cost: Money,
}

/// The pool of an offer's codes.
pub fn offer_pool(sku: &SkuId, supplier: &SupplierId) -> SkuId {
    SkuId::new(&format!("{}/{}", sku.as_str(), supplier.as_str()))
}

/// Every SKU's sourcing (replicated).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sourcings {
    pub(crate) by_sku: BTreeMap<SkuId, Sourcing>,
    /// Derived: each SKU's offers' pool ids, in offer order, so pricing an order names no new
    /// string. Rebuilt on every change and after a snapshot is loaded.
    #[serde(skip)]
    pools: BTreeMap<SkuId, Vec<SkuId>>,
}

impl Sourcings {
    /// A SKU's sourcing, if it names offers.
    pub fn get(&self, sku: &SkuId) -> Option<&Sourcing> {
        self.by_sku.get(sku)
    }

    /// The pools an order of `sku` takes codes from, in the order it takes them, each with its
    /// supplier and its cost per card of this face (the SKU's own supplier at `own_cost`).
    pub fn sources(
        &self,
        sku: &Sku,
        face: Money,
        own_cost: Money,
    ) -> Result<Vec<Source>, Rejection> {
        let own = Source {
            pool: sku.id.clone(),
            supplier: sku.supplier.clone(),
            cost: own_cost,
        };
        let Some(s) = self.by_sku.get(&sku.id) else {
            return Ok(vec![own]);
        };
        let pools = self.pools.get(&sku.id);
        let mut all = vec![(s.primary_priority, own)];
        for (i, o) in s.offers.iter().enumerate() {
            let cost = scale_half_even(
                face.minor(),
                Decimal::ONE - o.wholesale_discount,
                face.currency(),
            )?;
            all.push((
                o.priority,
                Source {
                    pool: pools
                        .and_then(|p| p.get(i).cloned())
                        .unwrap_or_else(|| offer_pool(&sku.id, &o.supplier)),
                    supplier: o.supplier.clone(),
                    cost,
                },
            ));
        }
        match s.routing {
            Routing::LowestCost => all.sort_by(|(pa, a), (pb, b)| {
                (a.cost.minor(), pa, &a.supplier).cmp(&(b.cost.minor(), pb, &b.supplier))
            }),
            Routing::Priority => all.sort_by(|(pa, a), (pb, b)| {
                (pa, a.cost.minor(), &a.supplier).cmp(&(pb, b.cost.minor(), &b.supplier))
            }),
        }
        Ok(all.into_iter().map(|(_, s)| s).collect())
    }

    /// Where an upload to `sku` goes: a supplier's codes to its own pool of the SKU (the SKU's
    /// pool for the SKU's own supplier, an offer's pool for a supplier the SKU names, refused
    /// for any other); an admin's to the SKU's pool.
    pub fn pool_for(
        &self,
        catalog: &Catalog,
        sku: &SkuId,
        supplier: Option<&SupplierId>,
    ) -> Result<SkuId, Rejection> {
        match (supplier, catalog.sku(sku)) {
            (Some(s), Some(def)) => self.upload_pool(def, s).ok_or(Rejection::Forbidden),
            (Some(_), None) => Err(Rejection::SkuNotFound),
            (None, _) => Ok(sku.clone()),
        }
    }

    /// Every pool of a SKU's codes: its own and its offers'.
    pub fn pools_of(&self, sku: &SkuId) -> Vec<SkuId> {
        let mut out = vec![sku.clone()];
        if let Some(p) = self.pools.get(sku) {
            out.extend(p.iter().cloned());
        }
        out
    }

    /// The pool a supplier's upload to `sku` goes to: the SKU's own pool for its own supplier,
    /// the offer's pool for a supplier it names; none for any other supplier.
    pub fn upload_pool(&self, sku: &Sku, supplier: &SupplierId) -> Option<SkuId> {
        if sku.supplier == *supplier {
            return Some(sku.id.clone());
        }
        self.by_sku
            .get(&sku.id)
            .filter(|s| s.offers.iter().any(|o| o.supplier == *supplier))
            .map(|_| offer_pool(&sku.id, supplier))
    }

    /// Replaces a SKU's offers (none removes them): a supplier-code SKU of the catalog, at most
    /// [`OFFERS_MAX`] offers of distinct suppliers other than its own, discounts in [0, 1).
    pub(crate) fn decide_set(catalog: &Catalog, sku: &SkuId, sourcing: &Sourcing) -> Decision {
        let Some(def) = catalog.sku(sku) else {
            return Decision::Reject(Rejection::SkuNotFound);
        };
        let mut seen = std::collections::BTreeSet::new();
        let bad = def.kind != SkuKind::SupplierCode
            || sourcing.offers.len() > OFFERS_MAX
            || sourcing.offers.iter().any(|o| {
                o.supplier == def.supplier
                    || !seen.insert(&o.supplier)
                    || o.wholesale_discount < Decimal::ZERO
                    || o.wholesale_discount >= Decimal::ONE
            });
        if bad {
            return Decision::Reject(Rejection::InvalidSourcing);
        }
        Decision::Events(vec![Event::SourcingSet {
            sku: sku.clone(),
            sourcing: sourcing.clone(),
        }])
    }

    pub(crate) fn apply(&mut self, event: &Event) {
        if let Event::SourcingSet { sku, sourcing } = event {
            if sourcing.offers.is_empty() {
                self.by_sku.remove(sku);
            } else {
                self.by_sku.insert(sku.clone(), sourcing.clone());
            }
            self.rebuild_derived();
        }
    }

    /// Rebuilds the offers' pool ids (after a snapshot is loaded).
    pub(crate) fn rebuild_derived(&mut self) {
        self.pools = self
            .by_sku
            .iter()
            .map(|(sku, s)| {
                let ids = s.offers.iter().map(|o| offer_pool(sku, &o.supplier));
                (sku.clone(), ids.collect())
            })
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::tests_support::sku;

    fn usd(minor: i64) -> Money {
        Money::new(minor, Currency::parse("USD").expect("USD"))
    }

    fn offer(supplier: &str, discount: i64, priority: u32) -> Offer {
        Offer {
            supplier: SupplierId::new(supplier),
            wholesale_discount: Decimal::new(discount, 2),
            priority,
        }
    }

    #[test]
    fn routing_orders_the_pools_by_cost_or_by_priority() {
        let s = sku("gc", "b");
        let mut all = Sourcings::default();
        let mut sourcing = Sourcing {
            routing: Routing::LowestCost,
            primary_priority: 1,
            offers: vec![offer("cheap", 20, 3), offer("dear", 10, 0)],
        };
        all.by_sku.insert(s.id.clone(), sourcing.clone());
        let order = |all: &Sourcings| -> Vec<(String, i64)> {
            all.sources(&s, usd(2_500), usd(2_125))
                .expect("sources")
                .into_iter()
                .map(|x| (x.pool.as_str().to_owned(), x.cost.minor()))
                .collect()
        };
        assert_eq!(
            order(&all),
            vec![
                ("gc/cheap".to_owned(), 2_000),
                (s.id.as_str().to_owned(), 2_125),
                ("gc/dear".to_owned(), 2_250),
            ]
        );
        sourcing.routing = Routing::Priority;
        all.by_sku.insert(s.id.clone(), sourcing);
        assert_eq!(
            order(&all).into_iter().map(|(p, _)| p).collect::<Vec<_>>(),
            vec!["gc/dear", s.id.as_str(), "gc/cheap"]
        );
        assert_eq!(
            all.upload_pool(&s, &SupplierId::new("cheap")),
            Some(SkuId::new("gc/cheap"))
        );
        assert_eq!(all.upload_pool(&s, &SupplierId::new("stranger")), None);
    }
}
