//! The journal as an outbox: events come back in order per shard after a cursor, checkpoints keep
//! frames the outbox has not published, and a restart resumes after the stored cursor.

use giftcard_core::*;
use giftcard_shard::scenario::sku;
use giftcard_shard::{Engine, EngineConfig};
use giftcard_tests::*;

fn open_outbox(dir: &std::path::Path) -> Engine {
    let mut cfg = EngineConfig::new(dir, 2);
    cfg.outbox = true;
    Engine::open(cfg).unwrap()
}

fn completed_orders(engine: &Engine, after: u64) -> Vec<String> {
    let mut out = Vec::new();
    for f in engine.journal_after(after, usize::MAX).unwrap() {
        for (_, _, e) in f.events {
            if let Event::OrderCompleted(o) = e {
                out.push(o.key.order_id.as_str().to_owned());
            }
        }
    }
    out
}

#[test]
fn unpublished_frames_survive_checkpoints_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_outbox(dir.path());
    engine
        .call(Command::DefineSku(sku(0, SkuKind::SupplierCode, 1000)))
        .unwrap();
    engine
        .upload(
            SkuId::new("sku-0"),
            None,
            &(0..10).map(|i| format!("CODE-{i:04}")).collect::<Vec<_>>(),
        )
        .unwrap();
    funded_wallet(&engine, "w", 100_000);
    place(&engine, "a", "w", "sku-0", 1).unwrap();
    let first = engine.journal_after(0, usize::MAX).unwrap();
    let published = first.last().unwrap().seq;
    engine.set_outbox_cursor(published).unwrap();
    place(&engine, "b", "w", "sku-0", 1).unwrap();
    place(&engine, "c", "w", "sku-0", 1).unwrap();
    engine.checkpoint().unwrap();
    assert_eq!(
        completed_orders(&engine, published),
        vec!["b", "c"],
        "checkpoint kept what the outbox still needs"
    );
    drop(engine);

    let engine = open_outbox(dir.path());
    assert_eq!(engine.outbox_cursor(), published);
    assert_eq!(
        completed_orders(&engine, engine.outbox_cursor()),
        vec!["b", "c"]
    );
    let report = check_invariants(&engine);
    assert!(report.ok(), "{:?}", report.violations);
}
