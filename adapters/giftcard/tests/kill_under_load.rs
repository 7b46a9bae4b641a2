//! Crash test of the real server under concurrent HTTP load: `giftcard serve` on one data
//! directory, 8 client threads placing single- and multi-card orders, deposits, redemptions of
//! cards bought earlier and code uploads, and a SIGKILL at a random moment while they are in
//! flight; 20 rounds. After every kill `giftcard verify` must pass; the next start must show
//! every acknowledged answer unchanged, resolve every unanswered write by a retry (replayed if it
//! was durable, processed once if not), and balance the books exactly (see `acks`).
//!
//! The seed (kill delays and the clients' choices) is printed; set GIFTCARD_TEST_SEED to rerun
//! one. The timing of the kill against the requests is the machine's, not the seed's.

mod acks;
mod served;

use acks::{order_body, Books, Entry, Op, Settled, SoldCard};
use rand::{rngs::StdRng, Rng, SeedableRng};
use served::{verify, Client, Served};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ROUNDS: u64 = 20;
const CLIENTS: u64 = 8;
const WALLETS: &[&str] = &["w-0", "w-1", "w-2", "w-3", "w-4", "w-5"];
/// Supplier-code SKUs that uploads keep stocked.
const STOCKED: &[&str] = &["acme-10", "acme-25"];
/// A supplier-code SKU never restocked: it runs short, so shards borrow its codes from each
/// other and orders end `out_of_stock`.
const SCARCE: &str = "scarce-5";
/// Platform-issued cards (redeemable by code).
const ISSUED: &str = "store-50";
const REDEEM_MINOR: i64 = 100;

#[test]
fn acknowledged_writes_survive_sigkill_under_concurrent_http_load() {
    let seed = std::env::var("GIFTCARD_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("kill_under_load: GIFTCARD_TEST_SEED={seed}");
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut books = Books::default();
    let mut server = Served::start(dir.path());
    set_up(&server.client, &mut books);
    let mut total = Settled::default();
    for round in 0..ROUNDS {
        let kill_after = Duration::from_millis(rng.gen_range(100..800));
        let entries = load_and_kill(server, &books, seed, round, kill_after);
        let (acked, unknown) = Books::counts(&entries);
        books.extend(entries);
        let report = verify(dir.path());
        server = Served::start(dir.path());
        let settled = books.settle(&server.client);
        books.check_totals(&server.client);
        eprintln!(
            "round {round}: killed after {kill_after:?}: {acked} acknowledged, {unknown} unanswered \
             ({} were durable, {} redone); {} checked; verify: {}",
            settled.unknown_durable,
            settled.unknown_redone,
            settled.acked,
            report.lines().next().unwrap_or("")
        );
        total += settled;
    }
    let orders = books.recheck_all(&server.client);
    let status = server.terminate(Duration::from_secs(60));
    assert!(status.success(), "SIGTERM after the last round: {status}");
    verify(dir.path());
    eprintln!(
        "{ROUNDS} kills: {} acknowledged writes checked ({orders} orders read back at the end), \
         {} unanswered durable, {} unanswered redone, in {:?}",
        total.acked,
        total.unknown_durable,
        total.unknown_redone,
        started.elapsed()
    );
    eprintln!("outcomes: {:?}", books.outcomes());
    assert!(total.acked > 0, "no write was ever acknowledged under load");
}

/// The catalog, stock, wallets and their first deposits, all acknowledged before any kill.
fn set_up(c: &Client, books: &mut Books) {
    for (sku, face) in [(STOCKED[0], 1_000), (STOCKED[1], 2_500), (SCARCE, 500)] {
        books.define_sku(c, sku, face, true);
    }
    books.define_sku(c, ISSUED, 5_000, false);
    for (sku, n) in [(STOCKED[0], 150), (STOCKED[1], 150), (SCARCE, 40)] {
        let codes = (0..n).map(|i| format!("{sku}-init-{i:04}")).collect();
        books.run(
            c,
            Op::Upload {
                sku: sku.to_owned(),
                codes,
            },
        );
    }
    for w in WALLETS {
        books.create_wallet(c, w);
        books.run(
            c,
            Op::Deposit {
                wallet: (*w).to_owned(),
                key: format!("init-{w}"),
                minor: 100_000,
            },
        );
    }
}

/// Runs the clients against `server` and SIGKILLs it after `kill_after`; returns what every
/// client sent and was told.
fn load_and_kill(
    server: Served,
    books: &Books,
    seed: u64,
    round: u64,
    kill_after: Duration,
) -> Vec<Entry> {
    // Each card is redeemed by one client only, at most once a round, so no redemption can
    // exceed a card's balance whatever else is in flight.
    let mut shares: Vec<Vec<SoldCard>> = (0..CLIENTS).map(|_| Vec::new()).collect();
    for (i, card) in books.redeemable_cards(REDEEM_MINOR).into_iter().enumerate() {
        shares[i % CLIENTS as usize].push(card);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0u64..)
        .zip(shares)
        .map(|(t, mine)| {
            let client = LoadClient {
                http: server.client.clone(),
                rng: StdRng::seed_from_u64(seed ^ (round << 16) ^ t),
                tag: format!("r{round}-c{t}"),
                cards: mine,
                n: 0,
            };
            let stop = stop.clone();
            std::thread::spawn(move || client.run(&stop))
        })
        .collect();
    std::thread::sleep(kill_after);
    // Stop first: requests already sent stay in flight through the kill, and no client goes on
    // to fire requests at a dead port (each would be one more unanswered write to resolve).
    stop.store(true, Ordering::Release);
    server.kill();
    clients
        .into_iter()
        .flat_map(|c| c.join().expect("client thread"))
        .collect()
}

/// One client thread of a round.
struct LoadClient {
    http: Client,
    rng: StdRng,
    /// Makes every id unique across rounds and clients.
    tag: String,
    /// Issued cards this client may redeem from, once each.
    cards: Vec<SoldCard>,
    n: u64,
}

impl LoadClient {
    fn run(mut self, stop: &AtomicBool) -> Vec<Entry> {
        let mut entries = Vec::new();
        while !stop.load(Ordering::Acquire) {
            let op = self.next_op();
            let sent = acks::send(&self.http, &op);
            let answer = acks::classify(&op, &sent);
            entries.push(Entry { op, answer });
        }
        entries
    }

    fn next_op(&mut self) -> Op {
        self.n += 1;
        let id = format!("{}-{}", self.tag, self.n);
        let roll = self.rng.gen_range(0..100);
        if roll < 20 {
            let wallet = WALLETS[self.rng.gen_range(0..WALLETS.len())].to_owned();
            return Op::Deposit {
                wallet,
                key: format!("d-{id}"),
                minor: self.rng.gen_range(2_000..8_000),
            };
        }
        if roll < 32 {
            if let Some(card) = self.cards.pop() {
                return Op::Redeem {
                    id: format!("x-{id}"),
                    card_id: card.card_id,
                    code: card.code,
                    minor: REDEEM_MINOR,
                };
            }
        }
        if roll >= 95 {
            let sku = STOCKED[self.rng.gen_range(0..STOCKED.len())];
            let codes = (0..10).map(|i| format!("{sku}-{id}-{i}")).collect();
            return Op::Upload {
                sku: sku.to_owned(),
                codes,
            };
        }
        self.order(format!("o-{id}"))
    }

    /// Mostly single cards; some orders of up to 3 cards, some of two SKUs.
    fn order(&mut self, id: String) -> Op {
        let wallet = WALLETS[self.rng.gen_range(0..WALLETS.len())];
        let skus = [STOCKED[0], STOCKED[1], SCARCE, ISSUED];
        let sku = skus[self.rng.gen_range(0..skus.len())];
        let body = match self.rng.gen_range(0..10) {
            0..=5 => order_body(&id, wallet, &[(sku, 1)]),
            6..=7 => order_body(&id, wallet, &[(sku, self.rng.gen_range(2..=3))]),
            _ => {
                let other = skus[self.rng.gen_range(0..skus.len())];
                if other == sku {
                    order_body(&id, wallet, &[(sku, 2)])
                } else {
                    order_body(&id, wallet, &[(sku, 1), (other, 1)])
                }
            }
        };
        Op::Order { id, body }
    }
}
