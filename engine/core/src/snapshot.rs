//! Snapshots of a shard's state, in sections. Each concern module is one section, written as
//! `(name, version, bytes)`; the bytes are that module's own bincode. So:
//!
//! - a new field inside one module's types bumps that section's version, and the section's
//!   `decode` reads the older version into today's shape (nothing else changes);
//! - a new section (a new module) is simply absent from older snapshots and starts empty;
//! - a section this build does not know, or a version newer than it reads, is refused by name:
//!   it was written by a newer build, and dropping it would lose state.
//!
//! Sections are written in a fixed order and every map in key order, so equal states give equal
//! bytes. The bodies of state formats 1 and 2 (one positional bincode struct per shard) are read
//! by [`decode_legacy`].

use crate::cards::Cards;
use crate::catalog::Catalog;
use crate::deadlines::Deadlines;
use crate::maps::{HashMap, SpreadMap};
use crate::orders::{OrderRecord, Orders};
use crate::pools::{Pool, Pools};
use crate::reports::{Reports, SkuSales};
use crate::settlement::Settlement;
use crate::state::ShardState;
use crate::wallets::{Wallet, Wallets};
use crate::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The serialized form of a shard's state: canonical bytes, so two states are equal exactly
/// when their snapshots are.
pub type ShardSnapshot = Vec<u8>;

/// Why a snapshot could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("section {section}: {source}")]
    Codec {
        section: &'static str,
        source: bincode::Error,
    },
    #[error("section {0} is not known to this build (written by a newer one?)")]
    UnknownSection(String),
    #[error("section {section} version {version}; this build reads up to {reads}")]
    Version {
        section: &'static str,
        version: u16,
        reads: u16,
    },
    #[error("section {0} appears twice")]
    Repeated(&'static str),
    #[error("no shard section")]
    NoHeader,
    #[error("state format {0} has no legacy reader")]
    Format(u8),
}

/// One concern's part of the state, as a snapshot section.
trait Section: Serialize + DeserializeOwned + Sized {
    const NAME: &'static str;
    /// The version written today.
    const VERSION: u16;

    /// Reads a section of `version` (at most [`Section::VERSION`]). A section whose shape
    /// changed overrides this to read its older versions.
    fn decode(version: u16, body: &[u8]) -> Result<Self, SnapshotError> {
        if version != Self::VERSION {
            return Err(SnapshotError::Version {
                section: Self::NAME,
                version,
                reads: Self::VERSION,
            });
        }
        bincode::deserialize(body).map_err(|source| SnapshotError::Codec {
            section: Self::NAME,
            source,
        })
    }
}

/// The shard's identity and clocks.
#[derive(Serialize, Deserialize)]
struct Header {
    shard: ShardId,
    shard_count: u16,
    last_lsn: Lsn,
    last_at: UnixMillis,
}

macro_rules! sections {
    ($($ty:ty => $name:literal v $version:literal),* $(,)?) => {$(
        impl Section for $ty {
            const NAME: &'static str = $name;
            const VERSION: u16 = $version;
        }
    )*};
}

/// Catalog sections of version 1 had no SKU versions (see `Catalog::versions`).
fn decode_catalog(version: u16, body: &[u8]) -> Result<Catalog, SnapshotError> {
    let codec = |source| SnapshotError::Codec {
        section: "catalog",
        source,
    };
    match version {
        1 => Ok(bincode::deserialize::<crate::catalog::CatalogV1>(body)
            .map_err(codec)?
            .into()),
        _ => <Catalog as Section>::decode(version, body),
    }
}

sections! {
    Header => "shard" v 1,
    Catalog => "catalog" v 2,
    Wallets => "wallets" v 1,
    Pools => "pools" v 1,
    Orders => "orders" v 2,
    Cards => "cards" v 1,
    Settlement => "settlement" v 1,
    Reports => "reports" v 1,
    Deadlines => "deadlines" v 3,
    crate::claims::RedemptionClaims => "redemption_claims" v 1,
    crate::quotes::FxQuotes => "fx_quotes" v 1,
    crate::pricelists::PriceLists => "price_lists" v 1,
    crate::promotions::Promotions => "pricing_rules" v 1,
    crate::floors::MarginFloors => "margin_floors" v 1,
    crate::fees::FeeSchedule => "fees" v 1,
    crate::commissions::Commissions => "commission_tiers" v 1,
    crate::sales::Sales => "sales" v 2,
    crate::sourcing::Sourcings => "sourcing" v 1,
    crate::limits::Limits => "limits" v 1,
    crate::resends::Resends => "delivery_rounds" v 1,
    crate::risk::Risk => "risk" v 2,
    crate::expiry::ExpiryPolicies => "expiry_policies" v 1,
    crate::liability::Liability => "liability" v 1,
    crate::reviews::Reviews => "reviews" v 1,
}

/// A section as written: name, version, body.
#[derive(Serialize, Deserialize)]
struct Written {
    name: String,
    version: u16,
    body: Vec<u8>,
}

fn write<T: Section>(out: &mut Vec<Written>, part: &T) -> Result<(), SnapshotError> {
    let body = bincode::serialize(part).map_err(|source| SnapshotError::Codec {
        section: T::NAME,
        source,
    })?;
    out.push(Written {
        name: T::NAME.to_owned(),
        version: T::VERSION,
        body,
    });
    Ok(())
}

/// Encodes a shard's state as sections.
pub fn encode(st: &ShardState) -> Result<ShardSnapshot, SnapshotError> {
    let mut out = Vec::with_capacity(10);
    let header = Header {
        shard: st.shard,
        shard_count: st.shard_count,
        last_lsn: st.last_lsn,
        last_at: st.last_at,
    };
    write(&mut out, &header)?;
    write(&mut out, &st.catalog)?;
    write(&mut out, &st.wallets)?;
    write(&mut out, &st.pools)?;
    write(&mut out, &st.orders)?;
    write(&mut out, &st.cards)?;
    write(&mut out, &st.settlement)?;
    write(&mut out, &st.reports)?;
    write(&mut out, &st.deadlines)?;
    write(&mut out, &st.redemption_claims)?;
    write(&mut out, &st.quotes)?;
    write(&mut out, &st.price_lists)?;
    write(&mut out, &st.promotions)?;
    write(&mut out, &st.floors)?;
    write(&mut out, &st.fees)?;
    write(&mut out, &st.commissions)?;
    write(&mut out, &st.sales)?;
    write(&mut out, &st.sourcing)?;
    write(&mut out, &st.limits)?;
    write(&mut out, &st.resends)?;
    write(&mut out, &st.risk)?;
    write(&mut out, &st.expiry)?;
    write(&mut out, &st.liability)?;
    write(&mut out, &st.reviews)?;
    bincode::serialize(&out).map_err(|source| SnapshotError::Codec {
        section: "list",
        source,
    })
}

/// Reads one section into `slot`, once.
fn read<T: Section>(slot: &mut Option<T>, w: &Written) -> Result<(), SnapshotError> {
    if slot.is_some() {
        return Err(SnapshotError::Repeated(T::NAME));
    }
    *slot = Some(T::decode(w.version, &w.body)?);
    Ok(())
}

/// Reads one section into `slot`, once, where version 1 had another shape (`V1`, read into
/// today's; later versions as [`Section::decode`] reads them).
fn read_upgrading<T: Section, V1: DeserializeOwned + Into<T>>(
    slot: &mut Option<T>,
    w: &Written,
) -> Result<(), SnapshotError> {
    if slot.is_some() {
        return Err(SnapshotError::Repeated(T::NAME));
    }
    *slot = Some(match w.version {
        1 => bincode::deserialize::<V1>(&w.body)
            .map_err(|source| SnapshotError::Codec {
                section: T::NAME,
                source,
            })?
            .into(),
        v => T::decode(v, &w.body)?,
    });
    Ok(())
}

/// Decodes a shard's state written by [`encode`] (of this build or an older one).
pub fn decode(bytes: &[u8]) -> Result<ShardState, SnapshotError> {
    let written: Vec<Written> =
        bincode::deserialize(bytes).map_err(|source| SnapshotError::Codec {
            section: "list",
            source,
        })?;
    let (mut header, mut catalog, mut wallets, mut pools) = (None, None, None, None);
    let (mut orders, mut cards, mut settlement, mut reports, mut deadlines) =
        (None, None, None, None, None);
    let (mut redemption_claims, mut quotes, mut price_lists, mut promotions) =
        (None, None, None, None);
    let (mut floors, mut fees, mut commissions, mut sales) = (None, None, None, None);
    let mut sourcing = None;
    let (mut limits, mut resends, mut risk) = (None, None, None);
    let (mut expiry, mut liability, mut reviews) = (None, None, None);
    for w in &written {
        match w.name.as_str() {
            <Header as Section>::NAME => read::<Header>(&mut header, w)?,
            <Catalog as Section>::NAME => {
                if catalog.is_some() {
                    return Err(SnapshotError::Repeated("catalog"));
                }
                catalog = Some(decode_catalog(w.version, &w.body)?);
            }
            <Wallets as Section>::NAME => read(&mut wallets, w)?,
            <Pools as Section>::NAME => read(&mut pools, w)?,
            // Version 1 holds had no deadline.
            <Orders as Section>::NAME => {
                read_upgrading::<_, crate::orders::OrdersV1>(&mut orders, w)?
            }
            <Cards as Section>::NAME => read(&mut cards, w)?,
            <Settlement as Section>::NAME => read(&mut settlement, w)?,
            <Reports as Section>::NAME => read(&mut reports, w)?,
            <Deadlines as Section>::NAME => {
                if deadlines.is_some() {
                    return Err(SnapshotError::Repeated("deadlines"));
                }
                // Versions 2 and 3 each added a kind of deadline (`QuoteForgotten`, then
                // `CardExpires`); older bodies, which cannot hold them, read as they are.
                let v = if w.version < 3 { 3 } else { w.version };
                deadlines = Some(<Deadlines as Section>::decode(v, &w.body)?);
            }
            <crate::claims::RedemptionClaims as Section>::NAME => read(&mut redemption_claims, w)?,
            <crate::quotes::FxQuotes as Section>::NAME => read(&mut quotes, w)?,
            <crate::pricelists::PriceLists as Section>::NAME => read(&mut price_lists, w)?,
            <crate::promotions::Promotions as Section>::NAME => read(&mut promotions, w)?,
            <crate::floors::MarginFloors as Section>::NAME => read(&mut floors, w)?,
            <crate::fees::FeeSchedule as Section>::NAME => read(&mut fees, w)?,
            <crate::commissions::Commissions as Section>::NAME => read(&mut commissions, w)?,
            // Version 1 had no refunds.
            <crate::sales::Sales as Section>::NAME => {
                read_upgrading::<_, crate::sales::SalesV1>(&mut sales, w)?
            }
            <crate::sourcing::Sourcings as Section>::NAME => read(&mut sourcing, w)?,
            <crate::limits::Limits as Section>::NAME => read(&mut limits, w)?,
            <crate::resends::Resends as Section>::NAME => read(&mut resends, w)?,
            // Version 1 had no crowd: the many-wallet rules count from the upgrade on.
            <crate::risk::Risk as Section>::NAME => {
                read_upgrading::<_, crate::risk::RiskV1>(&mut risk, w)?
            }
            <crate::expiry::ExpiryPolicies as Section>::NAME => read(&mut expiry, w)?,
            <crate::liability::Liability as Section>::NAME => read(&mut liability, w)?,
            <crate::reviews::Reviews as Section>::NAME => read(&mut reviews, w)?,
            other => return Err(SnapshotError::UnknownSection(other.to_owned())),
        }
    }
    let h = header.ok_or(SnapshotError::NoHeader)?;
    let mut st = ShardState {
        shard: h.shard,
        shard_count: h.shard_count,
        last_lsn: h.last_lsn,
        last_at: h.last_at,
        catalog: catalog.unwrap_or_default(),
        wallets: wallets.unwrap_or_default(),
        pools: pools.unwrap_or_default(),
        orders: orders.unwrap_or_default(),
        cards: cards.unwrap_or_default(),
        settlement: settlement.unwrap_or_default(),
        reports: reports.unwrap_or_default(),
        deadlines: deadlines.unwrap_or_default(),
        redemption_claims: redemption_claims.unwrap_or_default(),
        quotes: quotes.unwrap_or_default(),
        price_lists: price_lists.unwrap_or_default(),
        promotions: promotions.unwrap_or_default(),
        floors: floors.unwrap_or_default(),
        fees: fees.unwrap_or_default(),
        commissions: commissions.unwrap_or_default(),
        sales: sales.unwrap_or_default(),
        sourcing: sourcing.unwrap_or_default(),
        limits: limits.unwrap_or_default(),
        resends: resends.unwrap_or_default(),
        risk: risk.unwrap_or_default(),
        expiry: expiry.unwrap_or_default(),
        liability: Default::default(),
        reviews: reviews.unwrap_or_default(),
    };
    st.liability = liability.unwrap_or_else(|| st.liability_from_cards());
    st.rebuild_derived();
    Ok(st)
}

/// The whole shard state as state format 2 wrote it: one positional struct. Format 1 is the
/// same without the last field. Frozen: if a type named here changes shape, its format-2 shape
/// must be copied in here first.
#[derive(Deserialize)]
struct LegacyState {
    shard: ShardId,
    shard_count: u16,
    last_lsn: Lsn,
    next_card_seq: u64,
    next_slot: u64,
    skus: HashMap<SkuId, Sku>,
    fx: FxTable,
    wallets: HashMap<WalletId, Wallet>,
    deposits: SpreadMap<(WalletId, RequestId), (Fingerprint, Money)>,
    pools: HashMap<SkuId, Pool>,
    cards: SpreadMap<CardId, crate::cards::Card>,
    code_index: SpreadMap<CodeHash, CardId>,
    orders: SpreadMap<OrderKey, OrderRecord>,
    claims: SpreadMap<OrderKey, (Fingerprint, ShardId)>,
    holds: HashMap<OrderKey, crate::orders::HoldV1>,
    redemptions: SpreadMap<(ClientId, RequestId), crate::cards::RedemptionRecord>,
    sales: HashMap<SkuId, SkuSales>,
    ledger: HashMap<Account, i64>,
    unsettled: BTreeMap<SupplierId, crate::event::SupplierDue>,
    last_at: UnixMillis,
    settlements: BTreeMap<RequestId, Vec<(SupplierId, crate::event::SupplierDue)>>,
}

/// Decodes one shard's body of state format 1 or 2.
pub fn decode_legacy(format: u8, bytes: &[u8]) -> Result<ShardState, SnapshotError> {
    let codec = |source| SnapshotError::Codec {
        section: "legacy",
        source,
    };
    let l: LegacyState = match format {
        2 => bincode::deserialize(bytes).map_err(codec)?,
        1 => {
            // Format 1 ends before `settlements`: add the encoding of an empty map (a u64
            // length of 0), which is what a format-1 shard had closed on record.
            let mut b = bytes.to_vec();
            b.extend_from_slice(&0u64.to_le_bytes());
            bincode::deserialize(&b).map_err(codec)?
        }
        other => return Err(SnapshotError::Format(other)),
    };
    let mut st = ShardState {
        shard: l.shard,
        shard_count: l.shard_count,
        last_lsn: l.last_lsn,
        last_at: l.last_at,
        catalog: crate::catalog::CatalogV1::from_parts(l.skus, l.fx).into(),
        wallets: Wallets {
            wallets: l.wallets,
            deposits: l.deposits,
        },
        pools: Pools {
            pools: l.pools,
            next_slot: l.next_slot,
        },
        orders: Orders::from_v1_parts(l.orders, l.claims, l.holds),
        cards: Cards {
            next_card_seq: l.next_card_seq,
            cards: l.cards,
            code_index: l.code_index,
            redemptions: l.redemptions,
        },
        settlement: Settlement {
            unsettled: l.unsettled,
            closed: l.settlements,
        },
        reports: Reports {
            sales: l.sales,
            ledger: l.ledger,
        },
        // Formats 1 and 2 had no deadlines (rejections recorded then are kept for ever), nor
        // any section added since: those start empty, as on a new shard.
        ..ShardState::new(l.shard, l.shard_count)
    };
    st.liability = st.liability_from_cards();
    st.rebuild_derived();
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_orders_section_of_version_1_reads_its_holds_without_a_deadline() {
        #[derive(Serialize)]
        struct HoldV1 {
            fingerprint: Fingerprint,
            wallet: WalletId,
            amount: Money,
        }
        #[derive(Serialize)]
        struct OrdersV1 {
            records: BTreeMap<OrderKey, OrderRecord>,
            claims: BTreeMap<OrderKey, (Fingerprint, ShardId)>,
            holds: BTreeMap<OrderKey, HoldV1>,
        }
        let key = OrderKey {
            client: ClientId::new("c"),
            order_id: OrderId::new("o"),
        };
        let amount = Money::new(700, Currency::parse("USD").expect("USD"));
        let v1 = OrdersV1 {
            records: BTreeMap::new(),
            claims: BTreeMap::new(),
            holds: [(
                key.clone(),
                HoldV1 {
                    fingerprint: [3; 16],
                    wallet: WalletId::new("w"),
                    amount,
                },
            )]
            .into_iter()
            .collect(),
        };
        let st = ShardState::new(ShardId(0), 1);
        let mut written: Vec<Written> =
            bincode::deserialize(&encode(&st).expect("encodes")).expect("list");
        let orders = written
            .iter_mut()
            .find(|w| w.name == "orders")
            .expect("orders section");
        orders.version = 1;
        orders.body = bincode::serialize(&v1).expect("v1 body");
        let back = decode(&bincode::serialize(&written).expect("list")).expect("decodes");
        let hold = back.orders().hold(&key).expect("the hold");
        assert_eq!((hold.amount, hold.until), (amount, None));
    }

    #[test]
    fn sections_round_trip_and_unknown_or_newer_sections_are_refused_by_name() {
        let mut st = ShardState::new(ShardId(1), 4);
        st.last_at = UnixMillis(42);
        let bytes = encode(&st).expect("encodes");
        assert_eq!(decode(&bytes).expect("decodes"), st);

        let mut written: Vec<Written> = bincode::deserialize(&bytes).expect("list");
        // A section missing from an older snapshot starts empty.
        written.retain(|w| w.name != "deadlines");
        let older = bincode::serialize(&written).expect("list");
        assert_eq!(decode(&older).expect("decodes"), st);

        let mut newer = bincode::deserialize::<Vec<Written>>(&bytes).expect("list");
        newer.push(Written {
            name: "quotes".into(),
            version: 1,
            body: vec![],
        });
        let err = decode(&bincode::serialize(&newer).expect("list")).expect_err("refused");
        assert!(err.to_string().contains("quotes"), "{err}");

        let mut newer = bincode::deserialize::<Vec<Written>>(&bytes).expect("list");
        newer[2].version = 2;
        let err = decode(&bincode::serialize(&newer).expect("list")).expect_err("refused");
        assert!(err.to_string().contains("wallets version 2"), "{err}");
    }
}
