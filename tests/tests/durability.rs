//! Durable before visible: every reply, acceptance or rejection, is released only after an
//! `fdatasync` that completed after the request was submitted. The journal counts its syncs
//! (incremented only once `fdatasync` returned); each reply callback reads the counter.

use giftcard_core::*;
use giftcard_shard::scenario::{order, sku};
use giftcard_tests::*;
use std::sync::atomic::Ordering;
use std::sync::mpsc;

#[test]
fn a_real_sync_precedes_every_reply() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), 2);
    engine
        .call(Command::DefineSku(sku(0, SkuKind::SupplierCode, 1_000)))
        .unwrap();
    engine
        .upload(
            SkuId::new("sku-0"),
            None,
            &(0..300).map(|i| format!("DUR-{i:05}")).collect::<Vec<_>>(),
        )
        .unwrap();
    for w in 0..4 {
        funded_wallet(&engine, &format!("w-{w}"), 100_000);
    }
    let counter = engine.sync_counter();
    let (tx, rx) = mpsc::channel();
    let n = 2_000u64;
    for i in 0..n {
        // Some orders complete, later ones are refused for stock or funds: rejections too must wait.
        let req = order(i, (i % 4) as u32, 0, 1);
        let before = counter.load(Ordering::Acquire);
        let (tx, c) = (tx.clone(), counter.clone());
        engine.submit(
            Command::PlaceOrder(Box::new(req)),
            Box::new(move |r| drop(tx.send((before, c.load(Ordering::Acquire), r)))),
        );
    }
    let mut rejected = 0;
    for _ in 0..n {
        let (before, at_reply, r) = rx.recv().unwrap();
        assert!(
            at_reply > before,
            "a reply was released with no fdatasync since its submission"
        );
        if matches!(
            r,
            Ok(giftcard_shard::Outcome::Order {
                outcome: OrderOutcome::Rejected(_),
                ..
            })
        ) {
            rejected += 1;
        }
    }
    assert!(rejected > 0, "the run should include rejections");
    assert!(
        engine.syncs() < n,
        "syncs are shared by groups ({} for {n} orders)",
        engine.syncs()
    );
}
