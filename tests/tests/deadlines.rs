//! Deadlines end to end: a rejected order's answer is replayed within
//! `rejection_replay_window_ms` and forgotten after it, by the shard's own tick, before and after
//! a restart; and a checkpoint whose state does not encode writes nothing and truncates nothing.

use giftcard_core::*;
use giftcard_shard::scenario::{caller, fingerprint, sku, usd};
use giftcard_shard::{Engine, EngineConfig, EngineError, Outcome};
use giftcard_tests::*;
use std::path::Path;
use std::time::{Duration, Instant};

const WINDOW_MS: u64 = 300;

fn open_with_window(dir: &Path, shards: u16) -> Engine {
    let mut cfg = EngineConfig::new(dir, shards);
    cfg.rejection_replay_window_ms = WINDOW_MS;
    Engine::open(cfg).expect("engine opens")
}

fn set_up(engine: &Engine) {
    engine
        .call(Command::DefineSku(sku(0, SkuKind::SupplierCode, 2_500)))
        .expect("sku");
    let codes: Vec<String> = (0..4).map(|i| format!("DEADLINE-{i:04}")).collect();
    engine
        .upload(SkuId::new("sku-0"), None, &codes)
        .expect("codes");
    funded_wallet(engine, "w1", 1_000);
}

fn top_up(engine: &Engine) {
    engine
        .call(Command::Deposit {
            caller: caller(),
            wallet: WalletId::new("w1"),
            deposit_id: RequestId::new("top-up"),
            amount: Money::new(10_000, usd()),
            reference: "top-up".into(),
            fingerprint: fingerprint(b"top-up"),
        })
        .expect("deposit");
}

/// Retries the order until its rejection is forgotten (or a generous bound passes).
fn place_until_fresh(engine: &Engine) -> (OrderOutcome, bool) {
    let started = Instant::now();
    loop {
        let answer = place(engine, "o-1", "w1", "sku-0", 1).expect("order");
        if !answer.1 || started.elapsed() > Duration::from_secs(20) {
            return answer;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_rejected_orders_answer_is_replayed_within_the_window_and_forgotten_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = open_with_window(dir.path(), 2);
    set_up(&engine);
    let rejected = place(&engine, "o-1", "w1", "sku-0", 1).expect("order");
    assert_eq!(
        rejected,
        (OrderOutcome::Rejected(Rejection::InsufficientFunds), false)
    );
    top_up(&engine);
    // Within the window the retry gets the recorded rejection, though funds arrived meanwhile.
    let replay = place(&engine, "o-1", "w1", "sku-0", 1).expect("order");
    assert_eq!(
        replay,
        (OrderOutcome::Rejected(Rejection::InsufficientFunds), true)
    );
    // After it, the shard's tick forgot the rejection: the same id is decided afresh, once.
    let (fresh, replayed) = place_until_fresh(&engine);
    assert!(!replayed, "the rejection was never forgotten");
    assert!(
        matches!(fresh, OrderOutcome::Completed { cards: 1, .. }),
        "{fresh:?}"
    );
    let again = place(&engine, "o-1", "w1", "sku-0", 1).expect("order");
    assert!(again.1 && matches!(again.0, OrderOutcome::Completed { .. }));
    assert!(check_invariants(&engine).ok());
}

#[test]
fn a_deadline_indexed_before_a_restart_fires_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let engine = open_with_window(dir.path(), 2);
        set_up(&engine);
        let rejected = place(&engine, "o-1", "w1", "sku-0", 1).expect("order");
        assert!(matches!(rejected.0, OrderOutcome::Rejected(_)));
        // Half of them from a snapshot, half from the journal: both must keep the deadline.
        engine.checkpoint().expect("checkpoint");
        let other = place(&engine, "o-2", "w1", "sku-0", 1).expect("order");
        assert!(matches!(other.0, OrderOutcome::Rejected(_)));
        engine.shutdown();
    }
    let engine = open_with_window(dir.path(), 2);
    top_up(&engine);
    let (fresh, replayed) = place_until_fresh(&engine);
    assert!(
        !replayed,
        "the rejection was never forgotten after the restart"
    );
    assert!(matches!(fresh, OrderOutcome::Completed { .. }), "{fresh:?}");
    let started = Instant::now();
    loop {
        let (outcome, replayed) = place(&engine, "o-2", "w1", "sku-0", 1).expect("order");
        if !replayed {
            assert!(
                matches!(outcome, OrderOutcome::Completed { .. }),
                "{outcome:?}"
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "o-2 never expired"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(check_invariants(&engine).ok());
}

#[test]
fn a_checkpoint_whose_state_does_not_encode_writes_nothing_and_truncates_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let before;
    {
        let engine = open(dir.path(), 2);
        set_up(&engine);
        top_up(&engine);
        let (outcome, _) = place(&engine, "o-1", "w1", "sku-0", 2).expect("order");
        assert!(matches!(outcome, OrderOutcome::Completed { cards: 2, .. }));
        before = engine.state_bytes().expect("states");
        engine.inject_snapshot_failure();
        assert!(matches!(engine.checkpoint(), Err(EngineError::Internal(_))));
        engine.shutdown();
    }
    // Before the fix the failed state was written as empty bytes and the journal truncated:
    // the directory then opened empty, or not at all.
    let engine = open(dir.path(), 2);
    assert_eq!(engine.state_bytes().expect("states"), before);
    let (_, replayed) = place(&engine, "o-1", "w1", "sku-0", 2).expect("order");
    assert!(replayed);
    assert!(matches!(
        engine.call(Command::CloseSettlement {
            period_id: RequestId::new("p")
        }),
        Ok(Outcome::Applied(_))
    ));
}
