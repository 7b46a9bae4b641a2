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
    /// Orders waiting for review.
    pub reviews_pending: usize,
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
        check_sales(st, &mut r);
        check_limits(st, &mut r);
        check_resends(st, &mut r);
        check_risk(st, &mut r);
        check_liability(st, &mut r);
        check_reviews(st, &mut r);
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

/// The sales section against the ledger's revenue accounts: the revenue report of all time
/// must sum to exactly what margin, FX, fees and commission took in. Skipped on a shard with
/// orders completed before sales were recorded (a data directory of an older build).
fn check_sales(st: &ShardState, r: &mut Report) {
    let completed = st
        .orders()
        .iter()
        .filter(|(_, rec)| matches!(rec.outcome, OrderOutcome::Completed { .. }))
        .count();
    if completed != st.sales().len() {
        if st.sales().len() > completed {
            r.violations.push(format!(
                "shard {}: {} sales recorded for {completed} completed orders",
                st.shard().0,
                st.sales().len()
            ));
        }
        return;
    }
    let all = st.sales().revenue(
        st.catalog(),
        UnixMillis(0),
        UnixMillis(u64::MAX),
        giftcard_core::sales::GroupBy::Currency,
    );
    let mut report: BTreeMap<(u8, Currency), i64> = BTreeMap::new();
    for ((_, ccy), row) in &all {
        for (kind, v) in [
            (0, row.margin_minor),
            (1, row.fx_minor),
            (2, row.fees_minor),
            (3, row.commission_minor),
        ] {
            *report.entry((kind, *ccy)).or_default() += v;
        }
    }
    let mut ledger: BTreeMap<(u8, Currency), i64> = BTreeMap::new();
    for (account, v) in st.reports().ledger() {
        let kind = match account {
            Account::RevenueMargin(c) => (0, *c),
            Account::RevenueFx(c) => (1, *c),
            Account::RevenueFees(c) => (2, *c),
            Account::RevenueCommission(c) => (3, *c),
            _ => continue,
        };
        *ledger.entry(kind).or_default() += v;
    }
    report.retain(|_, v| *v != 0);
    ledger.retain(|_, v| *v != 0);
    if report != ledger {
        r.violations.push(format!(
            "shard {}: revenue report {report:?} differs from the ledger's revenue {ledger:?}",
            st.shard().0
        ));
    }
}

/// The risk section: every score is of an order recorded here, above zero with a reason; every
/// wallet it follows lives here, and the orders it counts per currency (and what they charged)
/// are no more than the completed orders recorded for the wallet (fewer for a data directory
/// upgraded from a build before scores, which counts orders from then on).
fn check_risk(st: &ShardState, r: &mut Report) {
    let shard = st.shard().0;
    for (key, s) in st.risk().scores() {
        let known = st.orders().get(key).is_some() || st.reviews().get(key).is_some();
        if !known || s.score == 0 || s.reasons.is_empty() {
            r.violations.push(format!(
                "shard {shard}: risk score {s:?} of order {key:?} that is not recorded here"
            ));
        }
    }
    let mut completed: BTreeMap<(&giftcard_core::WalletId, Currency), (u64, i128)> =
        BTreeMap::new();
    for (_, rec) in st.orders().iter() {
        if let OrderOutcome::Completed { charged, .. } = rec.outcome {
            let e = completed
                .entry((&rec.wallet, charged.currency()))
                .or_default();
            e.0 += 1;
            e.1 += i128::from(charged.minor());
        }
    }
    for (w, risk) in st.risk().wallets() {
        if st.wallets().get(w).is_none() {
            r.violations.push(format!(
                "shard {shard}: risk history of unknown wallet {w:?}"
            ));
        }
        for (ccy, n, sum) in &risk.orders {
            let (orders, charged) = completed.get(&(w, *ccy)).copied().unwrap_or_default();
            if *n > orders || i128::from(*sum) > charged {
                r.violations.push(format!(
                    "shard {shard}: wallet {w:?} counts {n} orders charging {sum} in {ccy:?} for risk, \
                     but {orders} completed orders charged {charged}"
                ));
            }
        }
    }
}

/// Every resent card is a card of this shard that was sold with a delivery, in a round from 1
/// to the most a card may be resent.
/// The liability history against the ledger: each series' latest totals are its issued cards'
/// `card:*` balances and its currency's `revenue:breakage`, and its points are in time order.
fn check_liability(st: &ShardState, r: &mut Report) {
    let shard = st.shard().0;
    // What the cards' ledger holds, summed afresh from the cards, not from the history.
    let mut owed =
        giftcard_core::liability::Liability::from_cards(st.cards(), st.catalog(), st.last_at())
            .latest();
    let mut breakage: BTreeMap<Currency, i64> = BTreeMap::new();
    for (key, o) in st.liability().latest() {
        *breakage.entry(key.0).or_default() += o.breakage_minor;
        let cards = owed.remove(&key).map_or(0, |o| o.owed_minor);
        if o.owed_minor != cards {
            r.violations.push(format!(
                "shard {shard}: liability of {key:?} is {} but its cards hold {cards}",
                o.owed_minor
            ));
        }
    }
    for (key, cards) in owed.into_iter().filter(|(_, v)| v.owed_minor != 0) {
        r.violations.push(format!(
            "shard {shard}: cards of {key:?} hold {} with no liability",
            cards.owed_minor
        ));
    }
    for (account, v) in st.reports().ledger() {
        if let Account::RevenueBreakage(ccy) = account {
            let kept = breakage.remove(ccy).unwrap_or(0);
            if kept != *v {
                r.violations.push(format!(
                    "shard {shard}: breakage in {ccy} is {kept} in the liability, {v} in the ledger"
                ));
            }
        }
    }
    for (ccy, v) in breakage.into_iter().filter(|(_, v)| *v != 0) {
        r.violations.push(format!(
            "shard {shard}: breakage of {v} in {ccy} is not in the ledger"
        ));
    }
    if let Some((key, _)) = st
        .liability()
        .series()
        .find(|(_, points)| points.windows(2).any(|w| w[0].at >= w[1].at))
    {
        r.violations.push(format!(
            "shard {shard}: liability points of {key:?} out of time order"
        ));
    }
}

fn check_resends(st: &ShardState, r: &mut Report) {
    let shard = st.shard().0;
    for (card, round) in st.resends().iter() {
        let sold = st
            .cards()
            .get(card)
            .is_some_and(|c| !matches!(c.delivery, giftcard_core::state::Delivery::NotRequired));
        if !sold || *round == 0 || *round > giftcard_core::resends::RESENDS_MAX {
            r.violations.push(format!(
                "shard {shard}: card {} resent in round {round} (sold with a delivery: {sold})",
                card.0
            ));
        }
    }
}

/// The limits section: every wallet it names lives here, its own limits are ones the engine
/// accepts, its KYC mark agrees with the wallet's flag, and its recent orders are in time order,
/// span at most a day and number no more than the orders it completed.
fn check_limits(st: &ShardState, r: &mut Report) {
    let shard = st.shard().0;
    let limits = st.limits();
    let missing = |w: &giftcard_core::WalletId| st.wallets().get(w).is_none();
    for (w, set) in limits.own() {
        if missing(w) {
            r.violations
                .push(format!("shard {shard}: limits of unknown wallet {w:?}"));
        } else if !set.is_valid() {
            r.violations.push(format!(
                "shard {shard}: wallet {w:?} has invalid limits {set:?}"
            ));
        }
    }
    for (w, wallet) in st.wallets().iter() {
        if let Some(mark) = limits.kyc_mark(w) {
            if mark.verified != wallet.kyc_verified {
                r.violations.push(format!(
                    "shard {shard}: wallet {w:?} kyc_verified {} but its mark says {}",
                    wallet.kyc_verified, mark.verified
                ));
            }
        }
    }
    let mut completed: BTreeMap<&giftcard_core::WalletId, usize> = BTreeMap::new();
    for (_, rec) in st.orders().iter() {
        if matches!(rec.outcome, OrderOutcome::Completed { .. }) {
            *completed.entry(&rec.wallet).or_default() += 1;
        }
    }
    for (w, activity) in limits.all_activity() {
        let recent = &activity.recent;
        // Every order of the day of the wallet's last order is less than a day old, so still in
        // `recent`: the day's totals are its orders of that day.
        let mut of_day: BTreeMap<Currency, i64> = BTreeMap::new();
        for r in recent
            .iter()
            .filter(|r| giftcard_core::limits::day_of(r.at) == activity.day)
        {
            *of_day.entry(r.charged.currency()).or_default() += r.charged.minor();
        }
        let kept: BTreeMap<Currency, i64> = activity.day_spent.iter().copied().collect();
        if of_day != kept {
            r.violations.push(format!(
                "shard {shard}: wallet {w:?} spent {kept:?} on day {} by its totals, {of_day:?} by its orders",
                activity.day
            ));
        }
        let sorted = recent
            .iter()
            .zip(recent.iter().skip(1))
            .all(|(a, b)| a.at <= b.at);
        let span = match (recent.front(), recent.back()) {
            (Some(a), Some(b)) => b.at.0 - a.at.0.min(b.at.0),
            _ => 0,
        };
        if missing(w)
            || !sorted
            || span >= giftcard_core::limits::RECENT_KEPT_MS
            || recent.len() > completed.get(w).copied().unwrap_or(0)
        {
            r.violations.push(format!(
                "shard {shard}: wallet {w:?} has {} recent orders (sorted {sorted}, span {span} ms) \
                 for {} completed",
                recent.len(),
                completed.get(w).copied().unwrap_or(0)
            ));
        }
    }
}

/// Card accounts are summed from the cards themselves, never kept in the aggregate ledger.
fn account_currency(a: &Account) -> Option<Currency> {
    a.currency()
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
    // Codes an order waiting for review keeps out of its pool: neither available nor sold.
    let mut reserved: BTreeMap<&SkuId, u64> = BTreeMap::new();
    for (_, rv) in st.reviews().iter() {
        for (pool, (s, e)) in rv.reserved() {
            *reserved.entry(pool).or_default() += e - s;
            for slot in *s..*e {
                if !seen.insert(slot) {
                    r.violations.push(format!(
                        "code slot {slot} is reserved for a review and also elsewhere"
                    ));
                }
            }
        }
    }
    for (sku, p) in st.pools().iter() {
        let in_ranges: u64 = p.ranges.iter().map(|(s, e)| e - s).sum();
        let held = reserved.remove(sku).unwrap_or(0);
        if in_ranges != p.available || p.available + held + p.lent + p.sold != p.added + p.received
        {
            r.violations.push(format!(
                "shard {} sku {sku:?}: pool does not reconcile (ranges {in_ranges}, available {}, reserved {held}, added {}, received {}, lent {}, sold {})",
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

/// Every order waiting for review holds exactly its charge until its deadline, has no card
/// yet, and no order after it was given its card ids.
fn check_reviews(st: &ShardState, r: &mut Report) {
    r.reviews_pending += st.reviews().len();
    for (key, rv) in st.reviews().iter() {
        let o = &rv.pending.order;
        let hold = st.orders().hold(key);
        if !hold.is_some_and(|h| h.amount == rv.held() && h.until == Some(rv.pending.until)) {
            r.violations.push(format!(
                "shard {}: order {key:?} waits for review without its reserved hold ({:?})",
                st.shard().0,
                hold
            ));
        }
        if st.orders().get(key).is_some() {
            r.violations.push(format!(
                "shard {}: order {key:?} waits for review and has an outcome",
                st.shard().0
            ));
        }
        let n: u64 = o.lines.iter().map(|l| u64::from(l.quantity)).sum();
        let ids = o.first_card.0..o.first_card.0 + n;
        if ids.clone().any(|id| st.cards().get(&CardId(id)).is_some())
            || (ids.end & ((1 << 48) - 1)) > st.cards().next_seq()
        {
            r.violations.push(format!(
                "shard {}: the card ids of order {key:?}, waiting for review, are taken or not reserved",
                st.shard().0
            ));
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
            // A cancelled card's code went back to its pool (and may be sold again).
            CodeRef::Slot(_) if c.status == CardStatus::Cancelled => {}
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
                let emptied = matches!(
                    c.status,
                    CardStatus::Redeemed | CardStatus::Expired | CardStatus::Cancelled
                );
                if emptied != (c.balance_minor == 0) {
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
            Deadline::CardExpires(card) => (
                st.cards().get(card).is_some_and(|c| {
                    matches!(c.code, CodeRef::Sealed(_))
                        && !matches!(c.status, CardStatus::Expired | CardStatus::Voided)
                }),
                "an issued card not yet expired",
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
                kyc_verified: false,
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
