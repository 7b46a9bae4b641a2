//! End-to-end behaviour of the engine in-process: catalog, wallets, pools spread over shards,
//! orders that borrow stock across shards, issued cards with redemption and reversal,
//! idempotency, restart with byte-identical replay, and the invariant checker.

use giftcard_core::*;
use giftcard_shard::scenario::{caller, fingerprint, sku, usd};
use giftcard_shard::{EngineError, Outcome, Query, QueryAnswer};
use giftcard_tests::*;

#[test]
fn orders_across_shards_sell_every_code_once_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), 3);
    engine
        .call(Command::DefineSku(sku(0, SkuKind::SupplierCode, 2500)))
        .unwrap();
    let codes: Vec<String> = (0..20).map(|i| format!("SUPPLIER-CODE-{i:04}")).collect();
    engine.upload(SkuId::new("sku-0"), None, &codes).unwrap();
    assert!(matches!(
        engine.upload(SkuId::new("sku-0"), None, &codes[..1]),
        Err(EngineError::DuplicateCodes(_))
    ));
    for w in 0..11 {
        funded_wallet(&engine, &format!("w{w}"), 100_000);
    }
    for w in 0..10 {
        let (outcome, replayed) =
            place(&engine, &format!("o{w}"), &format!("w{w}"), "sku-0", 2).unwrap();
        assert!(
            matches!(outcome, OrderOutcome::Completed { cards: 2, charged, .. } if charged.minor() == 5000),
            "{outcome:?}"
        );
        assert!(!replayed);
    }
    let (outcome, _) = place(&engine, "o10", "w10", "sku-0", 1).unwrap();
    assert_eq!(outcome, OrderOutcome::Rejected(Rejection::OutOfStock));
    assert_eq!(
        balance(&engine, "w10"),
        (100_000, 0),
        "a rejected order changes nothing"
    );
    // A fresh completion carries its cards, so adapters need no second read; a replay does not.
    let mut req = giftcard_shard::scenario::order(77, 0, 0, 1);
    req.wallet = WalletId::new("w10");
    engine
        .upload(SkuId::new("sku-0"), None, &["LATE-CODE-1".to_owned()])
        .unwrap();
    for (replayed, expected) in [(false, 1), (true, 0)] {
        match engine
            .call(Command::PlaceOrder(Box::new(req.clone())))
            .unwrap()
        {
            Outcome::Order {
                replayed: r, cards, ..
            } => assert_eq!((r, cards.len()), (replayed, expected)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        balance(&engine, "w10"),
        (97_500, 0),
        "charged once for the order and its replay"
    );
    assert_eq!(balance(&engine, "w3"), (95_000, 0));

    // A retry replays; the same key with another body is a conflict.
    let (again, replayed) = place(&engine, "o3", "w3", "sku-0", 2).unwrap();
    assert!(replayed && matches!(again, OrderOutcome::Completed { cards: 2, .. }));
    assert_eq!(
        place(&engine, "o3", "w4", "sku-0", 2),
        Err(EngineError::Rejected(Rejection::IdempotencyConflict))
    );
    assert_eq!(balance(&engine, "w3"), (95_000, 0));

    let report = check_invariants(&engine);
    assert!(report.ok(), "{:?}", report.violations);
    assert_eq!(report.cards, 21);
    let before = engine.state_bytes().unwrap();
    drop(engine);

    let engine = open(dir.path(), 3);
    assert_eq!(
        engine.state_bytes().unwrap(),
        before,
        "replay rebuilds byte-identical state"
    );
    let (again, replayed) = place(&engine, "o3", "w3", "sku-0", 2).unwrap();
    assert!(
        replayed && matches!(again, OrderOutcome::Completed { .. }),
        "the answer survives a restart"
    );
    drop(engine);
    let report = giftcard_shard::verify::verify_dir(dir.path(), None).unwrap();
    assert!(report.ok(), "{:?}", report.violations);
    assert_eq!(report.orders, 12);
}

#[test]
fn issued_cards_redeem_partially_and_reverse() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), 2);
    let mut s = sku(1, SkuKind::Issued, 5000);
    s.issue_cap = Some(3);
    engine.call(Command::DefineSku(s)).unwrap();
    funded_wallet(&engine, "buyer", 20_000);
    let (outcome, _) = place(&engine, "i1", "buyer", "sku-1", 2).unwrap();
    let OrderOutcome::Completed {
        first_card,
        cards: 2,
        ..
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        place(&engine, "i2", "buyer", "sku-1", 2).unwrap().0,
        OrderOutcome::Rejected(Rejection::OutOfStock),
        "cap of 3"
    );
    let card = match engine.ask(Query::Card { card: first_card }).unwrap() {
        QueryAnswer::Card(c) => c,
        other => panic!("{other:?}"),
    };
    let code = engine.reveal(first_card, &card).unwrap();
    let hash = engine.vault().hash(&code);
    let redeem_as = |id: &str, minor: i64, brands: Option<Vec<String>>| {
        engine.call(Command::Redeem {
            caller: caller(),
            redemption_id: RequestId::new(id),
            code: hash,
            amount: Money::new(minor, usd()),
            fingerprint: fingerprint(&minor.to_le_bytes()),
            brands,
        })
    };
    let redeem = |id: &str, minor: i64| redeem_as(id, minor, None);
    // A merchant of other brands finds no such card, and nothing is recorded for its id.
    assert!(matches!(
        redeem_as("r-other", 100, Some(vec!["Other".into()])),
        Err(EngineError::Rejected(Rejection::CardNotFound))
    ));
    // ... and one accepting the card's brand redeems it (and then reverses, to leave it whole).
    assert!(matches!(
        redeem_as("r-brand", 100, Some(vec!["Other".into(), "brand-1".into()])),
        Ok(Outcome::Moved {
            replayed: false,
            ..
        })
    ));
    engine
        .call(Command::ReverseRedemption {
            caller: caller(),
            redemption_id: RequestId::new("r-brand"),
        })
        .unwrap();
    assert!(
        matches!(redeem("r1", 1500), Ok(Outcome::Moved { events: e, replayed: false, .. }) if e.len() == 1)
    );
    assert!(
        matches!(redeem("r1", 1500), Ok(Outcome::Moved { events: e, replayed: true, .. }) if e.is_empty()),
        "replay has no effect"
    );
    assert_eq!(
        redeem("r1", 1600).unwrap_err(),
        EngineError::Rejected(Rejection::IdempotencyConflict)
    );
    assert!(
        matches!(redeem("r2", 4000), Ok(Outcome::Moved { events: e, .. }) if matches!(e[0], Event::RedemptionRejected { reason: Rejection::InsufficientBalance, .. }))
    );
    let reverse = |id: &str| {
        engine.call(Command::ReverseRedemption {
            caller: caller(),
            redemption_id: RequestId::new(id),
        })
    };
    assert!(reverse("r1").is_ok());
    assert_eq!(
        reverse("r1").unwrap_err(),
        EngineError::Rejected(Rejection::AlreadyReversed)
    );
    assert_eq!(
        reverse("nope").unwrap_err(),
        EngineError::Rejected(Rejection::RedemptionNotFound)
    );
    let card = match engine.ask(Query::Card { card: first_card }).unwrap() {
        QueryAnswer::Card(c) => c,
        other => panic!("{other:?}"),
    };
    assert_eq!(card.balance_minor, 5000);
    let report = check_invariants(&engine);
    assert!(report.ok(), "{:?}", report.violations);
}

#[test]
fn a_settlement_period_closes_once_across_checkpoints_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let close = |engine: &giftcard_shard::Engine, period: &str| {
        engine
            .call(Command::CloseSettlement {
                period_id: RequestId::new(period),
            })
            .unwrap()
    };
    // The shards' answers arrive in any order.
    let sorted = |mut evs: Vec<Event>| {
        evs.sort_by_key(|e| format!("{e:?}"));
        evs
    };
    // Cards and orders owed per supplier, summed over the shards' close events.
    let owed = |evs: &[Event]| -> (u64, usize) {
        evs.iter()
            .filter_map(|e| match e {
                Event::SettlementClosed { dues, .. } => Some(dues),
                _ => None,
            })
            .flatten()
            .fold((0, 0), |(c, o), (_, d)| (c + d.cards, o + d.orders.len()))
    };
    let engine = open(dir.path(), 3);
    engine
        .call(Command::DefineSku(sku(0, SkuKind::SupplierCode, 2500)))
        .unwrap();
    let codes: Vec<String> = (0..10).map(|i| format!("SETTLE-{i:04}")).collect();
    engine.upload(SkuId::new("sku-0"), None, &codes).unwrap();
    for w in 0..4 {
        funded_wallet(&engine, &format!("w{w}"), 100_000);
        place(&engine, &format!("o{w}"), &format!("w{w}"), "sku-0", 1).unwrap();
    }
    let Outcome::Applied(first) = close(&engine, "p-1") else {
        panic!("a first close applies")
    };
    assert_eq!(owed(&first), (4, 4));
    let Outcome::Answered(again) = close(&engine, "p-1") else {
        panic!("a repeated close answers")
    };
    let first = sorted(first);
    assert_eq!(sorted(again), first, "the same period closes once");
    engine.checkpoint().unwrap();
    place(&engine, "o-late", "w0", "sku-0", 2).unwrap();
    engine.shutdown();
    drop(engine);

    // After a restart from the snapshot plus the journal: the closed period still answers what
    // it closed, and the next period holds only the later sale.
    let engine = open(dir.path(), 3);
    let Outcome::Answered(after_restart) = close(&engine, "p-1") else {
        panic!("a closed period stays closed after a restart")
    };
    assert_eq!(sorted(after_restart), first);
    let Outcome::Applied(second) = close(&engine, "p-2") else {
        panic!("a new period applies")
    };
    assert_eq!(owed(&second), (2, 1));
    check_invariants(&engine);
}

/// What a metrics scrape reads: the stock of every SKU from the pools' own counters. It must
/// say what the full totals (which walk every wallet and card) say, across shards and lending.
#[test]
fn stock_levels_from_the_pools_agree_with_the_full_totals() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), 3);
    for i in 0..3 {
        engine
            .call(Command::DefineSku(sku(i, SkuKind::SupplierCode, 1_000)))
            .unwrap();
        let codes: Vec<String> = (0..7).map(|c| format!("LEVEL-{i}-{c:03}")).collect();
        engine
            .upload(SkuId::new(&format!("sku-{i}")), None, &codes)
            .unwrap();
    }
    for w in 0..4 {
        funded_wallet(&engine, &format!("w{w}"), 50_000);
    }
    for n in 0..12 {
        // Some orders borrow from other shards, one runs the SKU out.
        let _ = place(
            &engine,
            &format!("o{n}"),
            &format!("w{}", n % 4),
            &format!("sku-{}", n % 2),
            1 + n % 3,
        );
    }
    let QueryAnswer::StockLevels(levels) = engine.ask(Query::StockLevels).unwrap() else {
        panic!("stock levels")
    };
    let QueryAnswer::Totals(totals) = engine.ask(Query::Totals).unwrap() else {
        panic!("totals")
    };
    assert_eq!(levels, totals.stock);
    assert!(levels.values().any(|(_, sold)| *sold > 0));
    assert_eq!(levels[&SkuId::new("sku-2")], (7, 0));
}

/// A redemption id is claimed at its home shard (issue 13): the same id on a card of another
/// shard is a conflict, not a second redemption, and a retry of the first replays its answer.
#[test]
fn one_redemption_id_redeems_once_whichever_shard_its_cards_live_on() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), 4);
    let mut s = sku(1, SkuKind::Issued, 5000);
    s.issue_cap = Some(10);
    engine.call(Command::DefineSku(s)).unwrap();
    // Two wallets on two shards, so their issued cards (and codes) live on two shards.
    let wallets: Vec<String> = (0..)
        .map(|i| format!("w{i}"))
        .scan(std::collections::BTreeSet::new(), |seen, w| {
            let shard = giftcard_core::placement::wallet_shard(&WalletId::new(&w), 4);
            Some(seen.insert(shard).then_some(w))
        })
        .flatten()
        .take(2)
        .collect();
    let code_of = |order: &str, wallet: &str| {
        funded_wallet(&engine, wallet, 10_000);
        let (outcome, _) = place(&engine, order, wallet, "sku-1", 1).unwrap();
        let OrderOutcome::Completed { first_card, .. } = outcome else {
            panic!("{outcome:?}")
        };
        let QueryAnswer::Card(card) = engine.ask(Query::Card { card: first_card }).unwrap() else {
            panic!("a card")
        };
        (
            first_card,
            engine
                .vault()
                .hash(&engine.reveal(first_card, &card).unwrap()),
        )
    };
    let (card_a, hash_a) = code_of("o-a", &wallets[0]);
    let (card_b, hash_b) = code_of("o-b", &wallets[1]);
    assert_ne!(card_a.shard(), card_b.shard());
    let redeem = |hash: CodeHash| {
        engine.call(Command::Redeem {
            caller: caller(),
            redemption_id: RequestId::new("one-id"),
            code: hash,
            amount: Money::new(1000, usd()),
            fingerprint: fingerprint(&hash),
            brands: None,
        })
    };
    assert!(matches!(
        redeem(hash_a),
        Ok(Outcome::Moved {
            replayed: false,
            ..
        })
    ));
    assert!(
        matches!(redeem(hash_a), Ok(Outcome::Moved { replayed: true, .. })),
        "a retry replays"
    );
    assert!(
        matches!(
            redeem(hash_b),
            Err(EngineError::Rejected(Rejection::IdempotencyConflict))
        ),
        "the same id on another shard's card"
    );
    let balance = |id| match engine.ask(Query::Card { card: id }).unwrap() {
        QueryAnswer::Card(c) => c.balance_minor,
        other => panic!("{other:?}"),
    };
    assert_eq!((balance(card_a), balance(card_b)), (4000, 5000));
    check_invariants(&engine);
}

/// A redemption refused on the card's shard without a trace (no such card: a mistyped code)
/// lets go of its id's claim at the home shard, so the id can be used again with the right
/// code instead of being tied to the wrong one for ever.
#[test]
fn a_redemption_id_sent_with_a_mistyped_code_can_be_used_again() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path(), 4);
    let mut s = sku(1, SkuKind::Issued, 5000);
    s.issue_cap = Some(10);
    engine.call(Command::DefineSku(s)).unwrap();
    funded_wallet(&engine, "buyer", 10_000);
    let (outcome, _) = place(&engine, "o-1", "buyer", "sku-1", 1).unwrap();
    let OrderOutcome::Completed { first_card, .. } = outcome else {
        panic!("{outcome:?}")
    };
    let QueryAnswer::Card(card) = engine.ask(Query::Card { card: first_card }).unwrap() else {
        panic!("a card")
    };
    let real = engine
        .vault()
        .hash(&engine.reveal(first_card, &card).unwrap());
    // An id whose home is not the card's shard, and a mistyped code on a third shard, so the
    // claim is made at the home and refused elsewhere.
    let shard = |h: &[u8]| giftcard_core::placement::shard_for(h, 4);
    let id = (0..)
        .map(|i| format!("typo-{i}"))
        .find(|id| {
            let home =
                giftcard_core::placement::redemption_home(&caller().client, &RequestId::new(id), 4);
            home != shard(&real)
        })
        .unwrap();
    let home = giftcard_core::placement::redemption_home(&caller().client, &RequestId::new(&id), 4);
    let typo: CodeHash = (0u8..).map(|b| [b; 16]).find(|h| shard(h) != home).unwrap();
    let redeem = |hash: CodeHash| {
        engine.call(Command::Redeem {
            caller: caller(),
            redemption_id: RequestId::new(&id),
            code: hash,
            amount: Money::new(1000, usd()),
            fingerprint: fingerprint(&hash),
            brands: None,
        })
    };
    assert!(matches!(
        redeem(typo),
        Err(EngineError::Rejected(Rejection::CardNotFound))
    ));
    // The release travels from the card's shard to the home after the refusal is answered.
    let started = std::time::Instant::now();
    let outcome = loop {
        match redeem(real) {
            Err(EngineError::Rejected(Rejection::IdempotencyConflict))
                if started.elapsed() < std::time::Duration::from_secs(5) =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5))
            }
            other => break other,
        }
    };
    assert!(
        matches!(
            outcome,
            Ok(Outcome::Moved {
                replayed: false,
                ..
            })
        ),
        "{outcome:?}"
    );
    check_invariants(&engine);
}
