//! Crash test on the real binary: `giftcard bench --ack-log` places orders against one data
//! directory and prints each order the moment it is acknowledged; we kill it with SIGKILL at a
//! random moment, 22 times. After every kill we recover the directory and check that every
//! acknowledged order is there with exactly the answer the client saw, that nothing is left in
//! flight (no funds held, no stock in transit), that every invariant holds, and that
//! `giftcard verify` agrees.

use giftcard_core::{ClientId, OrderId, OrderKey, OrderOutcome};
use giftcard_shard::{Engine, EngineConfig, Query, QueryAnswer};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SHARDS: u16 = 3;
const ROUNDS: u64 = 22;

/// One acknowledged order as the client saw it.
#[derive(Debug)]
struct Ack {
    order_no: u64,
    outcome: String,
}

/// When to kill: some time after the child reports its data set loaded, or (to crash during
/// set-up, uploads and catalog writes included) some time after it starts.
enum KillAt {
    AfterReady(Duration),
    AfterStart(Duration),
}

fn run_and_kill(dir: &Path, round: u64, kill_at: KillAt) -> Vec<Ack> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_giftcard"))
        .args(["bench", "--scenario", "uniform", "--data"])
        .arg(dir)
        .args([
            "--shards",
            &SHARDS.to_string(),
            "--wallets",
            "40",
            "--skus",
            "4",
            "--codes-per-sku",
            "300",
        ])
        .args([
            "--orders",
            "1000000",
            "--window",
            "32",
            "--ack-log",
            "--json",
        ])
        .args([
            "--order-offset",
            &(round * 10_000_000).to_string(),
            "--seed",
            &round.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn giftcard bench");
    let stdout = child.stdout.take().expect("stdout");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut acks = Vec::new();
        let mut r = BufReader::new(stdout);
        let mut line = String::new();
        while r.read_line(&mut line).unwrap_or(0) > 0 {
            if line == "ready\n" {
                let _ = ready_tx.send(());
            }
            // A line cut by the kill has no newline: it was never fully acknowledged to us.
            if let Some(rest) = line.strip_suffix('\n').and_then(|l| l.strip_prefix("ack ")) {
                let (no, outcome) = rest.split_once(' ').expect("ack line");
                acks.push(Ack {
                    order_no: no.parse().expect("order number"),
                    outcome: outcome.to_owned(),
                });
            }
            line.clear();
        }
        acks
    });
    let kill_after = match kill_at {
        KillAt::AfterStart(d) => d,
        KillAt::AfterReady(d) => {
            ready_rx
                .recv_timeout(Duration::from_secs(120))
                .expect("child reports ready");
            d
        }
    };
    let started = Instant::now();
    while started.elapsed() < kill_after {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("child ended by itself with {status} before the kill");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    reader.join().expect("reader")
}

fn describe(outcome: &OrderOutcome) -> String {
    match outcome {
        OrderOutcome::Completed {
            charged,
            first_card,
            cards,
        } => format!("completed {} {cards} {}", first_card.0, charged.minor()),
        OrderOutcome::Rejected(r) => format!("rejected {}", r.code()),
        OrderOutcome::PendingReview { held, until } => {
            format!("pending_review {} {}", held.minor(), until.0)
        }
    }
}

fn check_recovered(dir: &Path, acks: &[Ack]) -> u64 {
    let engine = Engine::open(EngineConfig::new(dir, SHARDS)).expect("recovery");
    for ack in acks {
        let key = OrderKey {
            client: ClientId::new("checkout-1"),
            order_id: OrderId::new(&format!("o-{}", ack.order_no)),
        };
        match engine.ask(Query::Order { key }).expect("order query") {
            QueryAnswer::Order(rec) => assert_eq!(
                describe(&rec.outcome),
                ack.outcome,
                "order {} changed after recovery",
                ack.order_no
            ),
            other => panic!(
                "acknowledged order {} is missing after recovery: {other:?}",
                ack.order_no
            ),
        }
    }
    let report = engine.reconcile().expect("reconcile");
    assert!(
        report.ok(),
        "invariants after recovery: {:?}",
        report.violations
    );
    assert_eq!(report.holds_in_flight, 0, "recovery left funds held");
    let rolled_back = engine.recovery.holds_rolled_back;
    drop(engine);
    let out = Command::new(env!("CARGO_BIN_EXE_giftcard"))
        .args(["verify", "--data"])
        .arg(dir)
        .output()
        .expect("run verify");
    assert!(
        out.status.success(),
        "giftcard verify failed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    rolled_back
}

#[test]
fn every_acknowledged_order_survives_sigkill_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let mut total_acks = 0;
    let mut rounds_with_acks = 0;
    for round in 0..ROUNDS {
        let kill_at = if round % 5 == 4 {
            KillAt::AfterStart(Duration::from_millis(rng.gen_range(10..600)))
        } else {
            KillAt::AfterReady(Duration::from_millis(rng.gen_range(1..400)))
        };
        let acks = run_and_kill(dir.path(), round, kill_at);
        total_acks += acks.len();
        rounds_with_acks += u64::from(!acks.is_empty());
        check_recovered(dir.path(), &acks);
    }
    eprintln!("{ROUNDS} kills, {total_acks} acknowledged orders checked");
    assert!(
        rounds_with_acks >= ROUNDS * 3 / 4 - 1,
        "most kills should land while orders flow ({rounds_with_acks} of {ROUNDS} did)"
    );
}
