//! Snapshots written by earlier builds still load. `tests/fixtures/` holds one engine history
//! (`history.bin`: the journal records of a two-shard run) and the snapshot bodies earlier builds
//! wrote of it: format 1 (no header, no closed settlement periods) after its first part and
//! format 2 (the `GCSTATE` header) after all of it. Each body must decode to exactly the state
//! that replaying the same records rebuilds with today's code.

use giftcard_core::state::ShardState;
use giftcard_core::*;
use giftcard_shard::recovery::{decode_snapshot, replay_frame, Transit};
use giftcard_shard::RecoveryReport;
use std::path::PathBuf;

const SHARDS: u16 = 2;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The journal records of the fixture run, and how many of them the format-1 snapshot covers.
type History = (u64, Vec<(u16, u64, Vec<u8>)>);

/// Today's state after the first `n` records of the history, rebuilt the way recovery does.
fn replayed(records: &[(u16, u64, Vec<u8>)]) -> Vec<ShardState> {
    let mut states: Vec<ShardState> = (0..SHARDS)
        .map(|s| ShardState::new(ShardId(s), SHARDS))
        .collect();
    let records = records
        .iter()
        .map(|(shard, lsn, payload)| giftcard_wal::Record {
            shard: *shard,
            lsn: *lsn,
            payload: payload.clone(),
        })
        .collect();
    replay_frame(
        &mut states,
        &mut Transit::new(),
        &mut RecoveryReport::default(),
        1,
        records,
    )
    .expect("the fixture history replays");
    states
}

#[test]
fn snapshots_of_formats_1_and_2_load_as_the_state_their_history_rebuilds() {
    let (v1_records, records): History =
        bincode::deserialize(&fixture("history.bin")).expect("history decodes");
    let v1_records = usize::try_from(v1_records).expect("fits");
    assert!(
        v1_records > 20 && v1_records < records.len(),
        "{v1_records}"
    );

    let v1 = decode_snapshot(&fixture("state-format-1.bin")).expect("format 1 decodes");
    let v2 = decode_snapshot(&fixture("state-format-2.bin")).expect("format 2 decodes");
    let before_close = replayed(&records[..v1_records]);
    let all = replayed(&records);
    // Formats 1 and 2 predate the sales, limits and risk sections (what each order earned,
    // what each wallet spent lately, what the risk rules read): they load without them, and
    // are otherwise exactly the replayed state. They predate the liability history too: it
    // starts at the snapshot from the cards' balances, which are the history's latest totals.
    let unsold = |s: &[ShardState]| -> Vec<ShardState> {
        s.iter()
            .cloned()
            .map(|s| {
                s.without_sales()
                    .without_limits()
                    .without_risk()
                    .with_liability_from_cards()
            })
            .collect()
    };
    assert!(v2.iter().all(|s| s.sales().is_empty()));
    assert!(all.iter().any(|s| !s.sales().is_empty()));
    assert_eq!(v1, unsold(&before_close));
    assert_eq!(v2, unsold(&all));
    // The fixture exercises what it should: sold and issued cards, a redemption, closed periods.
    let r = giftcard_shard::verify::check(&all, 0);
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert_ne!(before_close, all);
}
