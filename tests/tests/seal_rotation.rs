//! Seal key rotation (issue 13): sealed codes name their key's version, a rotated engine opens
//! codes sealed under the previous key and seals new ones under the new key, and
//! `Engine::reseal` seals every code again, after which the previous key is not needed (and the
//! old key alone opens nothing).

use giftcard_core::*;
use giftcard_shard::scenario::sku;
use giftcard_shard::{Engine, EngineConfig, EngineError, Query, QueryAnswer, ResealReport};
use giftcard_tests::*;
use std::path::Path;

const OLD: [u8; 32] = [0x11; 32];
const NEW: [u8; 32] = [0x22; 32];

fn engine(dir: &Path, current: (u8, [u8; 32]), previous: &[(u8, [u8; 32])]) -> Engine {
    let mut cfg = EngineConfig::new(dir, 2);
    cfg.seal_key_version = current.0;
    cfg.seal_key = current.1;
    cfg.previous_seal_keys = previous.to_vec();
    Engine::open(cfg).expect("engine opens")
}

/// Every sold card's code, by card id (reveal fails if a key is missing).
fn codes(e: &Engine, orders: &[CardId]) -> Result<Vec<String>, EngineError> {
    orders
        .iter()
        .map(|id| match e.ask(Query::Card { card: *id })? {
            QueryAnswer::Card(c) => e.reveal(*id, &c),
            other => panic!("{other:?}"),
        })
        .collect()
}

fn buy(e: &Engine, order: &str, sku_id: &str, qty: u32) -> Vec<CardId> {
    match place(e, order, "buyer", sku_id, qty).expect("order") {
        (
            OrderOutcome::Completed {
                first_card, cards, ..
            },
            _,
        ) => (0..u64::from(cards))
            .map(|i| CardId(first_card.0 + i))
            .collect(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn rotated_keys_open_old_codes_and_resealing_retires_the_old_key() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path(), (0, OLD), &[]);
    let mut issued = sku(1, SkuKind::Issued, 5000);
    issued.issue_cap = Some(100);
    e.call(Command::DefineSku(issued)).unwrap();
    e.call(Command::DefineSku(sku(2, SkuKind::SupplierCode, 2500)))
        .unwrap();
    let supplier_codes: Vec<String> = (0..6).map(|i| format!("SUPPLIED-{i:04}")).collect();
    e.upload(SkuId::new("sku-2"), None, &supplier_codes)
        .unwrap();
    funded_wallet(&e, "buyer", 1_000_000);
    let mut cards = buy(&e, "o-1", "sku-1", 3);
    cards.extend(buy(&e, "o-2", "sku-2", 2));
    let before = codes(&e, &cards).unwrap();
    e.shutdown();
    drop(e);

    // The new key seals, the old one still opens.
    let e = engine(dir.path(), (1, NEW), &[(0, OLD)]);
    assert_eq!(codes(&e, &cards).unwrap(), before);
    cards.extend(buy(&e, "o-3", "sku-1", 2));
    let all = codes(&e, &cards).unwrap();
    let report = e.reseal().unwrap();
    // 3 issued cards under the old key (the 2 new ones are already under the new key), and 6
    // supplier codes (sold or not) in the store.
    assert_eq!(report, ResealReport { slots: 6, cards: 3 });
    assert_eq!(e.reseal().unwrap(), ResealReport::default(), "nothing left");
    assert_eq!(codes(&e, &cards).unwrap(), all);
    check_invariants(&e);
    e.checkpoint().unwrap();
    e.shutdown();
    drop(e);

    // The old key dropped: every code still opens, and unsold supplier codes still sell.
    let e = engine(dir.path(), (1, NEW), &[]);
    assert_eq!(codes(&e, &cards).unwrap(), all);
    let more = buy(&e, "o-4", "sku-2", 4);
    let sold = codes(&e, &more).unwrap();
    assert!(sold.iter().all(|c| supplier_codes.contains(c)), "{sold:?}");
    check_invariants(&e);
    e.shutdown();
    drop(e);

    // The old key alone opens none of them: the boxes were sealed again, not copied.
    let e = engine(dir.path(), (0, OLD), &[]);
    for id in &cards {
        assert!(
            codes(&e, &[*id]).is_err(),
            "card {id:?} still opens under the old key"
        );
    }
}

/// Issue 13: a sealed code is bound to the slot (or card) it belongs to. Someone who can write
/// the data directory but holds no key moves the box of a dear card into the slot of a cheap
/// one; the cheap card sold from it then does not open (before, it opened as the dear code).
#[test]
fn a_box_moved_to_another_slot_does_not_open_there() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path(), (0, OLD), &[]);
    e.call(Command::DefineSku(sku(2, SkuKind::SupplierCode, 500)))
        .unwrap();
    e.call(Command::DefineSku(sku(3, SkuKind::SupplierCode, 50_000)))
        .unwrap();
    e.upload(SkuId::new("sku-2"), None, &["CHEAP-0001".to_owned()])
        .unwrap();
    e.upload(SkuId::new("sku-3"), None, &["DEAR-0001".to_owned()])
        .unwrap();
    e.shutdown();
    drop(e);

    let mut wal = giftcard_wal::Wal::open(
        dir.path(),
        &giftcard_wal::WalOptions {
            cache_bytes: 8 << 20,
        },
    )
    .unwrap();
    let reader = wal.reader();
    let (cheap, dear) = (giftcard_shard::slot_key(0), giftcard_shard::slot_key(1));
    let cheap_box = reader.get(&cheap).unwrap().expect("slot 0");
    let dear_box = reader.get(&dear).unwrap().expect("slot 1");
    wal.append_group(&[], &[(cheap.clone(), dear_box), (dear, cheap_box)])
        .unwrap();
    drop((reader, wal));

    let e = engine(dir.path(), (0, OLD), &[]);
    funded_wallet(&e, "buyer", 1_000_000);
    let cheap_card = buy(&e, "o-cheap", "sku-2", 1);
    assert!(
        codes(&e, &cheap_card).is_err(),
        "the cheap card opened the box moved into its slot"
    );
    let dear_card = buy(&e, "o-dear", "sku-3", 1);
    assert!(codes(&e, &dear_card).is_err());
}
