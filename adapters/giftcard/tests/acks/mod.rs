//! What the clients of a fault test were told, and the check that the books agree after a
//! restart. Every write a client sends is recorded with the answer it got: an acknowledgement
//! (a 201, or an order's recorded 422 rejection) or no usable answer (a transport error, 429 or
//! 503: the outcome is unknown). After a restart:
//!
//! - every acknowledged answer must be in the books unchanged (orders read back with the same
//!   cards, codes and charge; deposits, redemptions and uploads replayed, not applied again);
//! - every unknown outcome is resolved by retrying the same request: an order found in the
//!   books must replay exactly, one not found must be processed now (once); a deposit,
//!   redemption or upload is either replayed or applied now;
//! - with every outcome known, the totals are exact: each wallet's balance is its deposits minus
//!   its completed orders' charges, each SKU has sold exactly the cards the orders returned, no
//!   code was sold twice, issued cards hold face value minus their redemptions, and the live
//!   reconciliation holds with nothing in flight.
#![allow(dead_code)]

use crate::served::{Client, Res, ADMIN, CHECKOUT, FUNDING, MERCHANT, SUPPLIER};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Cards an issued SKU of these tests may ever issue: ample for every round. (Kept small on
/// purpose: the invariant check walks every unsold slot, so a cap of a million costs `giftcard
/// verify` and the live reconciliation most of a second each in a debug build.)
const ISSUE_CAP: u64 = 20_000;

/// A write a client sent.
#[derive(Clone, Debug)]
pub enum Op {
    /// `POST /v1/orders` with this body (its `order_id` is the key).
    Order { id: String, body: Value },
    /// `POST /v1/wallets/{wallet}/deposits` with `Idempotency-Key: key`.
    Deposit {
        wallet: String,
        key: String,
        minor: i64,
    },
    /// `POST /v1/redemptions` of an issued card bought earlier.
    Redeem {
        id: String,
        card_id: String,
        code: String,
        minor: i64,
    },
    /// `POST /v1/skus/{sku}/codes` (supplier-1); the codes are new.
    Upload { sku: String, codes: Vec<String> },
}

/// A card as an order answer shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SoldCard {
    pub card_id: String,
    pub sku: String,
    pub code: String,
    pub face_minor: i64,
}

/// A durable answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// An order completed: what it charged (USD minor units) and its cards.
    Completed {
        charged_minor: i64,
        cards: Vec<SoldCard>,
    },
    /// An order rejected with this problem code (a recorded outcome: a retry gets it again).
    Rejected(String),
    /// A deposit, redemption or upload applied.
    Applied,
}

/// One write and what its client knows about it (`None`: no usable answer, outcome unknown).
#[derive(Clone, Debug)]
pub struct Entry {
    pub op: Op,
    pub answer: Option<Answer>,
}

/// A SKU of the test's catalog.
#[derive(Clone, Debug)]
pub struct SkuFacts {
    pub face_minor: i64,
    /// Supplier codes (a pool of uploaded codes) rather than platform-issued cards.
    pub supplier_codes: bool,
}

/// What one [`Books::settle`] found.
#[derive(Clone, Copy, Debug, Default)]
pub struct Settled {
    /// Acknowledged writes read back (or replayed) unchanged.
    pub acked: usize,
    /// Writes without an answer that turned out durable (the retry replayed them).
    pub unknown_durable: usize,
    /// Writes without an answer that were not durable (the retry applied them, once).
    pub unknown_redone: usize,
}

impl std::ops::AddAssign for Settled {
    fn add_assign(&mut self, o: Settled) {
        self.acked += o.acked;
        self.unknown_durable += o.unknown_durable;
        self.unknown_redone += o.unknown_redone;
    }
}

/// Everything the clients sent and were told, in order.
#[derive(Default)]
pub struct Books {
    entries: Vec<Entry>,
    /// Entries before this index were checked after a restart; all of them have known answers.
    settled: usize,
    /// Where the last settle began: the entries it checked are `settled_from..settled`.
    settled_from: usize,
    pub wallets: Vec<String>,
    pub skus: BTreeMap<String, SkuFacts>,
}

/// Sends a write as its client would.
pub fn send(c: &Client, op: &Op) -> Result<Res, String> {
    match op {
        Op::Order { body, .. } => c.post("/v1/orders", CHECKOUT, body),
        Op::Deposit { wallet, key, minor } => c.call(
            "POST",
            &format!("/v1/wallets/{wallet}/deposits"),
            Some(FUNDING),
            Some(&json!({ "amount": usd(*minor), "reference": format!("psp-{key}") })),
            &[("Idempotency-Key", key)],
        ),
        Op::Redeem {
            id, code, minor, ..
        } => c.post(
            "/v1/redemptions",
            MERCHANT,
            &json!({ "redemption_id": id, "code": code, "amount": usd(*minor) }),
        ),
        Op::Upload { sku, codes } => c.post(
            &format!("/v1/skus/{sku}/codes"),
            SUPPLIER,
            &json!({ "codes": codes }),
        ),
    }
}

/// What an answer tells the client: `Some` when it acknowledges a durable outcome, `None` when
/// the outcome is unknown. Anything else is a test bug or a server bug, and fails the test.
pub fn classify(op: &Op, sent: &Result<Res, String>) -> Option<Answer> {
    let res = sent.as_ref().ok()?;
    match (op, res.status) {
        (_, 429 | 503) => None,
        (Op::Order { .. }, 201) => Some(order_view(&res.body)),
        (Op::Order { id, .. }, 422) => {
            assert_eq!(res.body["order_id"], id.as_str(), "{res:?}");
            Some(Answer::Rejected(res.code().to_owned()))
        }
        (Op::Deposit { .. } | Op::Redeem { .. } | Op::Upload { .. }, 201) => Some(Answer::Applied),
        _ => panic!("unexpected answer to {op:?}: {res:?}"),
    }
}

/// An order as `POST /v1/orders` (201) or `GET /v1/orders/{id}` shows it.
pub fn order_view(body: &Value) -> Answer {
    match body["status"].as_str() {
        Some("completed") => Answer::Completed {
            charged_minor: body["charged"]["amount_minor"]
                .as_i64()
                .expect("charged amount"),
            cards: body["cards"]
                .as_array()
                .expect("cards")
                .iter()
                .map(|c| SoldCard {
                    card_id: c["card_id"].as_str().expect("card_id").to_owned(),
                    sku: c["sku_id"].as_str().expect("sku_id").to_owned(),
                    code: c["code"].as_str().expect("code").to_owned(),
                    face_minor: c["face_value"]["amount_minor"].as_i64().expect("face"),
                })
                .collect(),
        },
        Some("rejected") => Answer::Rejected(body["reason"].as_str().expect("reason").to_owned()),
        _ => panic!("not an order view: {body}"),
    }
}

pub fn usd(minor: i64) -> Value {
    json!({ "amount_minor": minor, "currency": "USD" })
}

/// An order body (region US, no delivery) for these (sku, quantity) lines.
pub fn order_body(id: &str, wallet: &str, lines: &[(&str, u32)]) -> Value {
    let items: Vec<Value> = lines
        .iter()
        .map(|(sku, q)| json!({ "sku_id": sku, "quantity": q }))
        .collect();
    json!({
        "order_id": id, "wallet_id": wallet, "items": items, "region": "US",
        "delivery": { "channel": "none", "recipient": "" },
    })
}

/// Sends a request that must get a real answer: waits out rate limits (429), and fails on
/// anything the server should not say while it is up and healthy.
fn answered(c: &Client, what: &str, mut call: impl FnMut() -> Result<Res, String>) -> Res {
    let started = Instant::now();
    loop {
        let res = call().unwrap_or_else(|e| panic!("{what}: no answer: {e}"));
        if res.status != 429 {
            return res;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{what}: still 429 after a minute ({})",
            c.base
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Books {
    /// Defines a USD SKU sold in the US: supplier-1's codes, or platform-issued cards.
    pub fn define_sku(&mut self, c: &Client, id: &str, face_minor: i64, supplier_codes: bool) {
        let body = if supplier_codes {
            json!({
                "sku_id": id, "brand": "Acme", "category": "retail", "kind": "supplier_code",
                "face_value": {"fixed": usd(face_minor)}, "wholesale_discount": "0.15",
                "supplier_id": "supplier-1", "regions": ["US"],
            })
        } else {
            json!({
                "sku_id": id, "brand": "Our Store", "category": "store-credit", "kind": "issued",
                "face_value": {"fixed": usd(face_minor)}, "wholesale_discount": "0",
                "supplier_id": "platform", "regions": ["US"], "issue_cap": ISSUE_CAP,
            })
        };
        let r = answered(c, "define SKU", || c.post("/v1/skus", ADMIN, &body));
        assert_eq!(r.status, 201, "{r:?}");
        self.skus.insert(
            id.to_owned(),
            SkuFacts {
                face_minor,
                supplier_codes,
            },
        );
    }

    /// Creates a wallet of checkout-1.
    pub fn create_wallet(&mut self, c: &Client, id: &str) {
        let r = answered(c, "create wallet", || {
            c.post("/v1/wallets", CHECKOUT, &json!({ "wallet_id": id }))
        });
        assert_eq!(r.status, 201, "{r:?}");
        self.wallets.push(id.to_owned());
    }

    /// Sends a write that must be acknowledged now (set-up), and records it.
    pub fn run(&mut self, c: &Client, op: Op) -> Answer {
        let sent = send(c, &op);
        let answer =
            classify(&op, &sent).unwrap_or_else(|| panic!("{op:?} was not acknowledged: {sent:?}"));
        self.entries.push(Entry {
            op,
            answer: Some(answer.clone()),
        });
        answer
    }

    /// Records writes sent elsewhere (client threads).
    pub fn extend(&mut self, entries: impl IntoIterator<Item = Entry>) {
        self.entries.extend(entries);
    }

    /// Issued cards bought so far with at least `minor` left after their recorded redemptions
    /// (call after [`Books::settle`], when every redemption's outcome is known).
    pub fn redeemable_cards(&self, minor: i64) -> Vec<SoldCard> {
        let redeemed = self.redeemed_per_card();
        self.completed_cards()
            .filter(|card| !self.skus[&card.sku].supplier_codes)
            .filter(|card| {
                card.face_minor - redeemed.get(&card.card_id).copied().unwrap_or(0) >= minor
            })
            .cloned()
            .collect()
    }

    fn completed_cards(&self) -> impl Iterator<Item = &SoldCard> {
        self.entries.iter().flat_map(|e| match &e.answer {
            Some(Answer::Completed { cards, .. }) => cards.as_slice(),
            _ => &[],
        })
    }

    fn redeemed_per_card(&self) -> BTreeMap<String, i64> {
        let mut out = BTreeMap::new();
        for e in &self.entries {
            if let (Op::Redeem { card_id, minor, .. }, Some(Answer::Applied)) = (&e.op, &e.answer) {
                *out.entry(card_id.clone()).or_insert(0) += minor;
            }
        }
        out
    }

    /// After a restart: checks every entry recorded since the last settle against the books and
    /// resolves every unknown outcome by retrying it (see the module documentation).
    pub fn settle(&mut self, c: &Client) -> Settled {
        let mut settled = Settled::default();
        self.settled_from = self.settled;
        for i in self.settled..self.entries.len() {
            let Entry { op, answer } = self.entries[i].clone();
            let known = match answer {
                Some(acked) => {
                    check_acked(c, &op, &acked);
                    settled.acked += 1;
                    acked
                }
                None => {
                    let (known, was_durable) = resolve(c, &op);
                    if was_durable {
                        settled.unknown_durable += 1;
                    } else {
                        settled.unknown_redone += 1;
                    }
                    known
                }
            };
            self.entries[i].answer = Some(known);
        }
        self.settled = self.entries.len();
        settled
    }

    /// With every outcome known (right after [`Books::settle`]): the exact totals.
    pub fn check_totals(&self, c: &Client) {
        assert_eq!(
            self.settled,
            self.entries.len(),
            "settle before checking totals"
        );
        self.check_wallets(c);
        self.check_stock(c);
        self.check_cards(c, &self.entries[self.settled_from..]);
        let r = answered(c, "reconciliation", || {
            c.get("/v1/admin/reconciliation", Some(ADMIN))
        });
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body["ok"], true, "invariants: {}", r.body);
        assert_eq!(r.body["holds_in_flight"], 0, "funds held: {}", r.body);
        for l in r.body["ledger"].as_array().cloned().unwrap_or_default() {
            assert_eq!(l["sum_minor"], 0, "ledger sums to zero per currency: {l}");
        }
    }

    /// Each wallet: available = acknowledged deposits − completed orders' charges; nothing held.
    fn check_wallets(&self, c: &Client) {
        let mut want: BTreeMap<&str, i64> = self.wallets.iter().map(|w| (w.as_str(), 0)).collect();
        for e in &self.entries {
            match (&e.op, &e.answer) {
                (Op::Deposit { wallet, minor, .. }, Some(Answer::Applied)) => {
                    *want.get_mut(wallet.as_str()).expect("known wallet") += minor;
                }
                (Op::Order { body, .. }, Some(Answer::Completed { charged_minor, .. })) => {
                    let wallet = body["wallet_id"].as_str().expect("wallet");
                    *want.get_mut(wallet).expect("known wallet") -= charged_minor;
                }
                _ => {}
            }
        }
        for (wallet, want) in want {
            let r = answered(c, "wallet", || {
                // The admin names a client's wallet by its stored id.
                c.get(&format!("/v1/wallets/checkout-1~{wallet}"), Some(ADMIN))
            });
            assert_eq!(r.status, 200, "{r:?}");
            let usd = r.body["balances"]
                .as_array()
                .and_then(|b| b.iter().find(|b| b["currency"] == "USD").cloned())
                .unwrap_or(Value::Null);
            let available = usd["available"]["amount_minor"].as_i64().unwrap_or(0);
            let held = usd["held"]["amount_minor"].as_i64().unwrap_or(0);
            assert_eq!(
                (available, held),
                (want, 0),
                "wallet {wallet}: (available, held) against the acknowledged deposits and charges"
            );
        }
    }

    /// Each SKU sold exactly the cards the orders returned; supplier pools hold the rest of what
    /// was uploaded; no card id or code appears twice.
    fn check_stock(&self, c: &Client) {
        let mut sold: BTreeMap<&str, u64> = self.skus.keys().map(|s| (s.as_str(), 0)).collect();
        let (mut ids, mut codes) = (BTreeSet::new(), BTreeSet::new());
        for card in self.completed_cards() {
            *sold.get_mut(card.sku.as_str()).expect("known sku") += 1;
            assert!(
                ids.insert(&card.card_id),
                "card {} sold twice",
                card.card_id
            );
            assert!(
                codes.insert(&card.code),
                "a code was sold twice (card {})",
                card.card_id
            );
        }
        let mut uploaded: BTreeMap<&str, u64> = BTreeMap::new();
        for e in &self.entries {
            if let (Op::Upload { sku, codes }, Some(Answer::Applied)) = (&e.op, &e.answer) {
                *uploaded.entry(sku.as_str()).or_insert(0) += codes.len() as u64;
            }
        }
        for (sku, sold) in sold {
            let r = answered(c, "stock", || {
                c.get(&format!("/v1/skus/{sku}/stock"), Some(ADMIN))
            });
            assert_eq!(r.status, 200, "{r:?}");
            assert_eq!(r.body["sold"], sold, "SKU {sku}: sold: {}", r.body);
            assert_eq!(r.body["reserved"], 0, "SKU {sku}: reserved: {}", r.body);
            if self.skus[sku].supplier_codes {
                let available = r.body["available"].as_u64().expect("available");
                assert_eq!(
                    available + sold,
                    uploaded.get(sku).copied().unwrap_or(0),
                    "SKU {sku}: available + sold = uploaded: {}",
                    r.body
                );
            }
        }
    }

    /// Every issued card redeemed in `entries` holds its face value minus all its redemptions.
    fn check_cards(&self, c: &Client, entries: &[Entry]) {
        let redeemed = self.redeemed_per_card();
        let faces: BTreeMap<&str, i64> = self
            .completed_cards()
            .map(|card| (card.card_id.as_str(), card.face_minor))
            .collect();
        let touched: BTreeSet<&str> = entries
            .iter()
            .filter_map(|e| match &e.op {
                Op::Redeem { card_id, .. } => Some(card_id.as_str()),
                _ => None,
            })
            .collect();
        for card in touched {
            let minor = redeemed.get(card).copied().unwrap_or(0);
            let r = answered(c, "card", || {
                c.get(&format!("/v1/cards/{card}"), Some(ADMIN))
            });
            assert_eq!(r.status, 200, "{r:?}");
            assert_eq!(
                r.body["balance"]["amount_minor"].as_i64(),
                Some(faces[card] - minor),
                "card {card}: face minus acknowledged redemptions: {}",
                r.body
            );
        }
    }

    /// Reads back every order and every redeemed card from the first round on: a later crash
    /// must not lose what an earlier one kept. Returns the number of orders read.
    pub fn recheck_all(&self, c: &Client) -> usize {
        assert_eq!(
            self.settled,
            self.entries.len(),
            "settle before the recheck"
        );
        self.check_cards(c, &self.entries);
        let orders: Vec<(&str, &Answer)> = self
            .entries
            .iter()
            .filter_map(|e| match (&e.op, &e.answer) {
                (Op::Order { id, .. }, Some(answer)) => Some((id.as_str(), answer)),
                _ => None,
            })
            .collect();
        // A few readers at once: thousands of reads, each revealing codes, in a debug build.
        std::thread::scope(|s| {
            for part in orders.chunks(orders.len().div_ceil(4).max(1)) {
                s.spawn(move || {
                    for (id, answer) in part {
                        assert_eq!(read_order(c, id).as_ref(), Some(*answer), "order {id}");
                    }
                });
            }
        });
        orders.len()
    }

    /// How many writes of each kind ended how ("order completed", "order out_of_stock", ...).
    pub fn outcomes(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for e in &self.entries {
            let kind = match e.op {
                Op::Order { .. } => "order",
                Op::Deposit { .. } => "deposit",
                Op::Redeem { .. } => "redemption",
                Op::Upload { .. } => "upload",
            };
            let how = match &e.answer {
                Some(Answer::Completed { .. }) => "completed",
                Some(Answer::Rejected(code)) => code.as_str(),
                Some(Answer::Applied) => "applied",
                None => "unknown",
            };
            *out.entry(format!("{kind} {how}")).or_insert(0) += 1;
        }
        out
    }

    /// How many of `entries` the clients saw acknowledged, and how many got no usable answer.
    pub fn counts(entries: &[Entry]) -> (usize, usize) {
        let acked = entries.iter().filter(|e| e.answer.is_some()).count();
        (acked, entries.len() - acked)
    }
}

/// `GET /v1/orders/{id}`: the order as the books hold it, or `None` when it is not there.
fn read_order(c: &Client, id: &str) -> Option<Answer> {
    let r = answered(c, "read order", || {
        c.get(&format!("/v1/orders/{id}"), Some(CHECKOUT))
    });
    match r.status {
        200 => Some(order_view(&r.body)),
        404 => {
            assert_eq!(r.code(), "order_not_found", "{r:?}");
            None
        }
        _ => panic!("GET order {id}: {r:?}"),
    }
}

/// An acknowledged write must be in the books exactly as the client was told.
fn check_acked(c: &Client, op: &Op, acked: &Answer) {
    match op {
        Op::Order { id, .. } => assert_eq!(
            read_order(c, id).as_ref(),
            Some(acked),
            "acknowledged order {id} after restart"
        ),
        _ => {
            let r = answered(c, "retry", || send(c, op));
            assert!(
                is_replay(op, &r),
                "an acknowledged {op:?} was not found on retry (applied again or refused): {r:?}"
            );
        }
    }
}

/// Whether `r` answers a retry of `op` by showing it was already applied.
fn is_replay(op: &Op, r: &Res) -> bool {
    match op {
        Op::Upload { codes, .. } => {
            r.status == 409
                && r.code() == "duplicate_codes"
                && r.body["duplicates"].as_u64() == Some(codes.len() as u64)
        }
        Op::Redeem { card_id, minor, .. } => {
            r.status == 201
                && r.replayed
                && r.body["card_id"] == card_id.as_str()
                && r.body["amount"]["amount_minor"] == *minor
        }
        _ => r.status == 201 && r.replayed,
    }
}

/// Resolves a write whose outcome the client never learned: (its outcome now, whether it had
/// been durable all along). An order found in the books must replay exactly when retried; one not
/// found is processed now, once. Other writes are retried and must replay or apply now.
fn resolve(c: &Client, op: &Op) -> (Answer, bool) {
    if let Op::Order { id, .. } = op {
        return resolve_order(c, op, id);
    }
    let r = answered(c, "retry", || send(c, op));
    if is_replay(op, &r) {
        return (Answer::Applied, true);
    }
    assert!(
        r.status == 201 && !r.replayed,
        "retry of {op:?} neither replayed nor applied: {r:?}"
    );
    (Answer::Applied, false)
}

fn resolve_order(c: &Client, op: &Op, id: &str) -> (Answer, bool) {
    let found = read_order(c, id);
    let r = answered(c, "retry", || send(c, op));
    let retried = classify(op, &Ok(r.clone()))
        .unwrap_or_else(|| panic!("retry of order {id} got no answer: {r:?}"));
    match found {
        Some(found) => {
            // A completed order's retry says it replays; a rejection is the same 422 again.
            assert!(
                r.replayed || matches!(found, Answer::Rejected(_)),
                "retry of durable order {id} did not replay: {r:?}"
            );
            assert_eq!(
                retried, found,
                "retry of durable order {id} changed its answer"
            );
            (found, true)
        }
        None => {
            assert!(
                !r.replayed,
                "order {id} was not in the books, yet replayed: {r:?}"
            );
            // Processed once: reading it back gives what the retry said.
            assert_eq!(
                read_order(c, id).as_ref(),
                Some(&retried),
                "order {id} after retry"
            );
            (retried, false)
        }
    }
}
