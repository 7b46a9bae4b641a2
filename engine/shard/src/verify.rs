//! The invariants of PRODUCT §3.3, checked over all shards' states: by `giftcard verify` on a
//! data directory, by the crash tests after every restart, and by the property tests after every
//! step. Each violation is reported in words that say what is wrong and where.

use crate::recovery;
use crate::RecoveryReport;
use giftcard_core::ledger::Account;
use giftcard_core::quotes::QUOTE_KEPT_AFTER_EXPIRY_MS;
use giftcard_core::state::{CardStatus, CodeRef, ShardState};
use giftcard_core::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

/// The result of a check.
#[derive(Debug, Default)]
pub struct Report {
    pub violations: Vec<String>,
    pub shards: usize,
    pub wallets: usize,
    pub orders: usize,
    pub cards: usize,
    pub codes_unsold: u64,
    pub holds_in_flight: usize,
    pub records_replayed: u64,
}

impl Report {
    /// Whether every invariant holds.
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Replays a data directory offline (the engine must not be running on it) and checks it.
pub fn verify_dir(dir: &Path, shard_count: Option<u16>) -> Result<Report, String> {
    let mut wal = giftcard_wal::Wal::open(dir, &giftcard_wal::WalOptions::default())
        .map_err(|e| format!("open journal: {}", crate::error_chain(&e)))?;
    let n = match (
        shard_count,
        wal.meta("shard_count").map_err(|e| e.to_string())?,
    ) {
        (_, Some(b)) if b.len() == 2 => u16::from_le_bytes([b[0], b[1]]),
        (Some(n), _) => n,
        (None, _) => {
            return Err(
                "data directory has no shard count: is it a giftcard data directory?".into(),
            )
        }
    };
    let mut rr = RecoveryReport::default();
    let (states, transit) = recovery::replay(&mut wal, n, 0, &mut rr).map_err(|e| e.to_string())?;
    let in_transit: u64 = transit.values().flatten().map(|r| r.1 - r.0).sum();
    let mut report = check(&states, in_transit);
    report.records_replayed = rr.records_replayed;
    Ok(report)
}

/// Checks every invariant across a set of shard states. `in_transit` is the number of codes lent
/// and not yet received (zero once recovery or quiescence settled them).
pub fn check(states: &[ShardState], in_transit: u64) -> Report {
    let mut r = Report {
        shards: states.len(),
        ..Report::default()
    };
    let mut sums: BTreeMap<Currency, i128> = BTreeMap::new();
    let mut seen_slots: HashSet<u64> = HashSet::new();
    let mut per_sku: BTreeMap<SkuId, [u64; 5]> = BTreeMap::new();
    for st in states {
        check_wallets(st, &mut r, &mut sums);
        check_pools(st, &mut r, &mut seen_slots, &mut per_sku);
        check_cards_and_orders(st, &mut r, &mut sums, &mut seen_slots);
        for (account, v) in st.reports().ledger() {
            match account_currency(account) {
                Some(ccy) => *sums.entry(ccy).or_default() += i128::from(*v),
                None => r.violations.push(format!(
                    "shard {}: per-card account {account:?} in the aggregate ledger",
                    st.shard().0
                )),
            }
        }
    }
    for (ccy, sum) in sums {
        if sum != 0 {
            r.violations
                .push(format!("ledger does not balance in {ccy}: sum is {sum}"));
        }
    }
    let mut lent_total = 0;
    let mut received_total = 0;
    for (sku, [added, sold, lent, received, _]) in per_sku {
        lent_total += lent;
        received_total += received;
        if sold > added {
            r.violations.push(format!(
                "sku {sku:?} sold {sold} codes but received only {added}"
            ));
        }
    }
    if lent_total != received_total + in_transit {
        r.violations.push(format!(
            "stock lent ({lent_total}) != received ({received_total}) + in transit ({in_transit})"
        ));
    }
    // Maps are walked in hash order: sort, so the same state always reports the same list.
    r.violations.sort();
    r
}

fn account_currency(a: &Account) -> Option<Currency> {
    match a {
        Account::Wallet(_, c)
        | Account::Funding(c)
        | Account::SupplierPayable(_, c)
        | Account::RevenueMargin(c) => Some(*c),
        Account::RevenueFx(c) | Account::FxClearing(c) | Account::Redeemed(c) => Some(*c),
        // Card accounts are summed from the cards themselves, never kept in the aggregate ledger.
        Account::Card(_) => None,
    }
}

fn check_wallets(st: &ShardState, r: &mut Report, sums: &mut BTreeMap<Currency, i128>) {
    let mut held_by_hold: HashMap<(&WalletId, Currency), i64> = HashMap::new();
    for (_, h) in st.orders().holds() {
        *held_by_hold
            .entry((&h.wallet, h.amount.currency()))
            .or_default() += h.amount.minor();
    }
    r.holds_in_flight += st.orders().hold_count();
    r.wallets += st.wallets().len();
    for (id, w) in st.wallets().iter() {
        if st.wallet_shard(id) != st.shard() {
            r.violations.push(format!(
                "wallet {id:?} is on shard {} but belongs on {}",
                st.shard().0,
                st.wallet_shard(id).0
            ));
        }
        for (ccy, b) in &w.balances {
            if b.available_minor < 0 || b.held_minor < 0 {
                r.violations.push(format!(
                    "wallet {id:?} {ccy}: negative balance (available {}, held {})",
                    b.available_minor, b.held_minor
                ));
            }
            if b.available_minor + b.held_minor != b.ledger_minor {
                r.violations.push(format!(
                    "wallet {id:?} {ccy}: available {} + held {} != ledger {}",
                    b.available_minor, b.held_minor, b.ledger_minor
                ));
            }
            let holds = held_by_hold.get(&(id, *ccy)).copied().unwrap_or(0);
            if holds != b.held_minor {
                r.violations.push(format!(
                    "wallet {id:?} {ccy}: held {} but open holds total {holds}",
                    b.held_minor
                ));
            }
            *sums.entry(*ccy).or_default() += i128::from(b.ledger_minor);
        }
    }
}

fn check_pools(
    st: &ShardState,
    r: &mut Report,
    seen: &mut HashSet<u64>,
    per_sku: &mut BTreeMap<SkuId, [u64; 5]>,
) {
    for (sku, p) in st.pools().iter() {
        let in_ranges: u64 = p.ranges.iter().map(|(s, e)| e - s).sum();
        if in_ranges != p.available || p.available + p.lent + p.sold != p.added + p.received {
            r.violations.push(format!(
                "shard {} sku {sku:?}: pool does not reconcile (ranges {in_ranges}, available {}, added {}, received {}, lent {}, sold {})",
                st.shard().0, p.available, p.added, p.received, p.lent, p.sold
            ));
        }
        r.codes_unsold += p.available;
        let e = per_sku.entry(sku.clone()).or_default();
        e[0] += p.added;
        e[1] += p.sold;
        e[2] += p.lent;
        e[3] += p.received;
        for (s, end) in &p.ranges {
            for slot in *s..*end {
                if !seen.insert(slot) {
                    r.violations
                        .push(format!("code slot {slot} is in two places (sku {sku:?})"));
                }
            }
        }
    }
}

fn check_cards_and_orders(
    st: &ShardState,
    r: &mut Report,
    sums: &mut BTreeMap<Currency, i128>,
    seen: &mut HashSet<u64>,
) {
    r.cards += st.cards().len();
    for (id, c) in st.cards().iter() {
        if id.shard() != st.shard() {
            r.violations.push(format!(
                "card {} is on shard {} but its id says {}",
                id.0,
                st.shard().0,
                id.shard().0
            ));
        }
        match &c.code {
            CodeRef::Slot(slot) => {
                if !seen.insert(*slot) {
                    r.violations.push(format!(
                        "code slot {slot} sold twice or also unsold (card {})",
                        id.0
                    ));
                }
            }
            CodeRef::Sealed(_) => {
                if c.balance_minor != c.ledger_minor
                    || c.balance_minor < 0
                    || c.balance_minor > c.face.minor()
                {
                    r.violations.push(format!(
                        "card {}: balance {} ledger {} face {}",
                        id.0,
                        c.balance_minor,
                        c.ledger_minor,
                        c.face.minor()
                    ));
                }
                if (c.status == CardStatus::Redeemed) != (c.balance_minor == 0) {
                    r.violations.push(format!(
                        "card {}: status {:?} with balance {}",
                        id.0, c.status, c.balance_minor
                    ));
                }
            }
        }
        *sums.entry(c.face.currency()).or_default() += i128::from(c.ledger_minor);
    }
    let mut cards_in_orders = 0u64;
    for (key, rec) in st.orders().iter() {
        r.orders += 1;
        if let OrderOutcome::Completed {
            first_card, cards, ..
        } = rec.outcome
        {
            cards_in_orders += u64::from(cards);
            for i in 0..u64::from(cards) {
                if st.cards().get(&CardId(first_card.0 + i)).is_none() {
                    r.violations.push(format!(
                        "order {key:?}: card {} is missing",
                        first_card.0 + i
                    ));
                }
            }
        }
    }
    for (due, d) in st.deadlines().iter() {
        let (holds, what) = match d {
            Deadline::RejectedOrder(key) => (
                st.orders()
                    .get(key)
                    .is_some_and(|rec| matches!(rec.outcome, OrderOutcome::Rejected(_))),
                "a recorded rejection",
            ),
            Deadline::HoldExpires(key) => (
                st.orders().hold(key).is_some_and(|h| h.until == Some(*due)),
                "a hold reserved until then",
            ),
            Deadline::QuoteForgotten(client, id) => (
                st.quotes().get(client, id).is_some_and(|q| {
                    q.expires_at.0.saturating_add(QUOTE_KEPT_AFTER_EXPIRY_MS) == due.0
                }),
                "a quote kept until then",
            ),
        };
        if !holds {
            r.violations.push(format!(
                "shard {}: deadline at {} ({d:?}) does not name {what}",
                st.shard().0,
                due.0
            ));
        }
    }
    // Every quote prices a wallet of this shard, and will be forgotten.
    for ((client, id), q) in st.quotes().iter() {
        let forgotten_at = UnixMillis(q.expires_at.0.saturating_add(QUOTE_KEPT_AFTER_EXPIRY_MS));
        let indexed = st.deadlines().iter().any(|(t, d)| {
            *t == forgotten_at && *d == Deadline::QuoteForgotten(client.clone(), id.clone())
        });
        let wallet_here =
            st.wallets().get(&q.wallet).is_some() && st.wallet_shard(&q.wallet) == st.shard();
        if !indexed || !wallet_here || q.from == q.to || q.mid <= rust_decimal::Decimal::ZERO {
            r.violations.push(format!(
                "shard {}: quote {id:?} of {client:?} (indexed {indexed}, wallet here {wallet_here}) \
                 is not a live quote of a wallet here: {q:?}",
                st.shard().0
            ));
        }
    }
    for (key, h) in st.orders().holds() {
        let indexed = h.until.is_none_or(|until| {
            st.deadlines()
                .iter()
                .any(|(t, d)| *t == until && *d == Deadline::HoldExpires(key.clone()))
        });
        if !indexed {
            r.violations.push(format!(
                "shard {}: hold of {key:?} is reserved until {:?} but has no deadline",
                st.shard().0,
                h.until
            ));
        }
    }
    if cards_in_orders != st.cards().len() as u64 {
        r.violations.push(format!(
            "shard {}: orders account for {cards_in_orders} cards, {} exist",
            st.shard().0,
            st.cards().len()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use giftcard_core::state::Decision;

    /// A shard whose books are wrong in several wallets at once: the deposits are applied to
    /// shard 0's state although most of the wallets belong on shard 1.
    fn misplaced_wallets() -> Vec<ShardState> {
        let mut wrong = ShardState::new(ShardId(0), 2);
        let mut lsn = 0;
        for i in 0..40 {
            let caller = Caller {
                client: ClientId::new("c"),
                admin: false,
            };
            let wallet = WalletId::new(&format!("w-{i}"));
            let create = Command::CreateWallet {
                caller,
                wallet,
                kyc_verified: true,
            };
            let ctx = Ctx {
                now: UnixMillis(1),
                lsn: Lsn(lsn + 1),
                shard: ShardId(0),
            };
            if let Decision::Events(evs) = wrong.decide(&create, &ctx) {
                for e in evs {
                    lsn += 1;
                    wrong.apply(&e, Lsn(lsn));
                }
            }
        }
        vec![wrong, ShardState::new(ShardId(1), 2)]
    }

    #[test]
    fn violations_come_in_one_order_whatever_the_maps_hash_order() {
        let states = misplaced_wallets();
        let first = check(&states, 0).violations;
        assert!(first.len() > 10, "{first:?}");
        let mut sorted = first.clone();
        sorted.sort();
        assert_eq!(first, sorted, "violations are sorted");
        assert_eq!(check(&states, 0).violations, first);
    }
}
