//! Recovery: load the latest snapshot, replay the journal after it, then settle everything that
//! was in flight when the process stopped: funds held for an order that never finished are
//! released (the client never got an answer, so the key may be used again), and stock lent by one
//! shard but not yet received by another is delivered. The settling events are journaled before
//! any shard starts, so a crash during recovery is recovered the same way.

use crate::codec;
use crate::{OpenError, RecoveryReport};
use giftcard_core::event::SlotRange;
use giftcard_core::state::ShardState;
use giftcard_core::*;
use giftcard_wal::{FrameBuilder, Wal};
use std::collections::BTreeMap;
use std::time::Instant;

const SHARD_COUNT_META: &str = "shard_count";

/// Opens a snapshot body of state format 2 or later, followed by the format byte. No format-1
/// body starts with these bytes: it begins with the shard count as a little-endian u64.
const STATE_MAGIC: &[u8; 7] = b"GCSTATE";

/// The encoding of [`ShardState`] written today: 3, the state in versioned sections
/// (`giftcard_core::snapshot`). Format 1 and 2 bodies were one positional struct per shard
/// (format 1 without the closed settlement periods); both are still read.
pub const STATE_FORMAT: u8 = 3;

/// Encodes every shard's state as one snapshot body. Fails, and so writes nothing, if any
/// shard's state does not encode.
pub fn encode_states(states: &[ShardState]) -> Result<Vec<u8>, OpenError> {
    let parts = states
        .iter()
        .map(|s| s.encode())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| OpenError::Decode(format!("snapshot does not encode: {e}")))?;
    Ok(encode_snapshot(parts))
}

/// Encodes the per-shard snapshots as one snapshot body.
pub fn encode_snapshot(parts: Vec<Vec<u8>>) -> Vec<u8> {
    let mut body = STATE_MAGIC.to_vec();
    body.push(STATE_FORMAT);
    // Serializing a list of byte strings into a Vec cannot fail.
    let _ = bincode::serialize_into(&mut body, &parts);
    body
}

/// Decodes a snapshot body into the shards' states, of the format written today, 2 or 1.
pub fn decode_snapshot(bytes: &[u8]) -> Result<Vec<ShardState>, OpenError> {
    let (format, body) = match bytes.strip_prefix(STATE_MAGIC.as_slice()) {
        Some(rest) => match rest.split_first() {
            Some((&f, body)) => (f, body),
            None => return Err(OpenError::Decode("snapshot: no state format".into())),
        },
        None => (1, bytes),
    };
    if format == 0 || format > STATE_FORMAT {
        return Err(OpenError::Decode(format!(
            "snapshot state format {format}; this build reads 1 to {STATE_FORMAT}"
        )));
    }
    let parts: Vec<Vec<u8>> =
        bincode::deserialize(body).map_err(|e| OpenError::Decode(format!("snapshot: {e}")))?;
    parts
        .into_iter()
        .map(|p| {
            let st = if format == STATE_FORMAT {
                ShardState::decode(&p)
            } else {
                giftcard_core::snapshot::decode_legacy(format, &p)
            };
            st.map_err(|e| OpenError::Decode(format!("snapshot shard: {e}")))
        })
        .collect()
}

/// Stock lent and not yet received, by (lender, borrower, sku).
pub type Transit = BTreeMap<(ShardId, ShardId, SkuId), Vec<SlotRange>>;

/// Rebuilds the shards' states from snapshot and journal, without settling anything in flight.
pub fn replay(
    wal: &mut Wal,
    shard_count: u16,
    rejection_window_ms: u64,
    report: &mut RecoveryReport,
) -> Result<(Vec<ShardState>, Transit), OpenError> {
    let mut states = match giftcard_wal::read_snapshot(wal.dir())
        .map_err(|e| OpenError::Decode(e.to_string()))?
    {
        Some((through, bytes)) => {
            report.snapshot_through = through;
            decode_snapshot(&bytes)?
        }
        None => (0..shard_count)
            .map(|s| ShardState::new(ShardId(s), shard_count))
            .collect(),
    };
    if states.len() != usize::from(shard_count) {
        return Err(OpenError::ShardCount {
            found: states.len() as u16,
            configured: shard_count,
        });
    }
    for s in &mut states {
        s.set_rejection_window_ms(rejection_window_ms);
    }
    let mut transit = Transit::new();
    let mut failure = None;
    wal.replay(report.snapshot_through, |frame| {
        if failure.is_none() {
            failure =
                replay_frame(&mut states, &mut transit, report, frame.seq, frame.records).err();
        }
    })?;
    match failure {
        Some(f) => Err(OpenError::Decode(f)),
        None => Ok((states, transit)),
    }
}

/// Applies one journal frame's records to the shards' states (replicated events to every shard)
/// and tracks stock in transit. Shared by recovery and the simulator.
pub fn replay_frame(
    states: &mut [ShardState],
    transit: &mut Transit,
    report: &mut RecoveryReport,
    seq: u64,
    records: Vec<giftcard_wal::Record>,
) -> Result<(), String> {
    report.frames_replayed += 1;
    for rec in records {
        report.records_replayed += 1;
        let ev =
            codec::decode(&rec.payload).map_err(|e| format!("frame {seq} lsn {}: {e}", rec.lsn))?;
        apply_replayed(states, transit, ShardId(rec.shard), Lsn(rec.lsn), &ev);
    }
    Ok(())
}

fn apply_replayed(
    states: &mut [ShardState],
    transit: &mut Transit,
    shard: ShardId,
    lsn: Lsn,
    ev: &Event,
) {
    if usize::from(shard.0) >= states.len() {
        panic!("journal names shard {} of {}", shard.0, states.len());
    }
    if ev.is_replicated() {
        for s in states.iter_mut() {
            let l = if s.shard() == shard { lsn } else { Lsn(0) };
            s.apply(ev, l);
        }
        return;
    }
    match ev {
        Event::StockLent { sku, to, ranges } if !ranges.is_empty() => {
            transit
                .entry((shard, *to, sku.clone()))
                .or_default()
                .extend(ranges.iter().copied());
        }
        Event::StockReceived { sku, from, ranges } => {
            if let Some(v) = transit.get_mut(&(*from, shard, sku.clone())) {
                v.retain(|r| !ranges.contains(r));
            }
        }
        _ => {}
    }
    states[usize::from(shard.0)].apply(ev, lsn);
}

/// Recovers a data directory: replay, settle what was in flight, journal the settlement.
/// Metadata key of the outbox's published position (the last frame fully published).
pub const OUTBOX_CURSOR_META: &str = "outbox_cursor";

/// The frame the outbox has published through, if the outbox ever ran on this directory.
pub fn outbox_cursor(reader: &giftcard_wal::WalReader) -> Option<u64> {
    match reader.meta(OUTBOX_CURSOR_META) {
        Ok(Some(b)) if b.len() == 8 => Some(u64::from_le_bytes(b.try_into().unwrap_or([0; 8]))),
        _ => None,
    }
}

/// Recovers a data directory. With `retain_for_outbox`, frames the outbox has not published yet
/// are kept when the post-recovery checkpoint truncates the journal.
pub fn recover(
    wal: &mut Wal,
    shard_count: u16,
    checkpoint_after: u64,
    retain_for_outbox: bool,
    rejection_window_ms: u64,
) -> Result<(Vec<ShardState>, RecoveryReport), OpenError> {
    let started = Instant::now();
    match wal.meta(SHARD_COUNT_META)? {
        Some(b) if b.len() == 2 => {
            let found = u16::from_le_bytes([b[0], b[1]]);
            if found != shard_count {
                return Err(OpenError::ShardCount {
                    found,
                    configured: shard_count,
                });
            }
        }
        _ => wal.set_meta(SHARD_COUNT_META, &shard_count.to_le_bytes())?,
    }
    let mut report = RecoveryReport::default();
    let (mut states, transit) = replay(wal, shard_count, rejection_window_ms, &mut report)?;
    let frames = settle(&mut states, transit, &mut report);
    if !frames.is_empty() {
        wal.append_group(&frames, &[])?;
    }
    if report.records_replayed > checkpoint_after {
        let through = wal.next_seq().saturating_sub(1);
        let truncate = if retain_for_outbox {
            outbox_cursor(&wal.reader()).unwrap_or(0)
        } else {
            through
        };
        // A state that does not encode stops recovery here, before the journal is truncated.
        wal.checkpoint(through, truncate, &encode_states(&states)?)?;
    }
    report.duration = started.elapsed();
    metrics::gauge!("giftcard_recovery_duration_seconds").set(report.duration.as_secs_f64());
    Ok((states, report))
}

/// Settles what was in flight after a replay: stock in transit is delivered, funds held for
/// unfinished orders are released. Applies the settling events and returns them as frames to
/// journal before any shard starts. Shared by recovery and the simulator.
pub fn settle(
    states: &mut [ShardState],
    transit: Transit,
    report: &mut RecoveryReport,
) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let mut frame = FrameBuilder::new();
    let mut journal = |states: &mut [ShardState], shard: ShardId, ev: Event| {
        if frame.len() + 512 > giftcard_wal::FRAME_BYTES_MAX {
            frames.push(std::mem::take(&mut frame).finish());
        }
        let st = &mut states[usize::from(shard.0)];
        let lsn = Lsn(st.last_lsn().0 + 1);
        st.apply(&ev, lsn);
        frame.push_with(shard.0, lsn.0, |buf| codec::encode_into(buf, &ev));
    };
    for ((from, to, sku), ranges) in transit {
        if !ranges.is_empty() {
            report.transfers_completed += 1;
            journal(states, to, Event::StockReceived { sku, from, ranges });
        }
    }
    for i in 0..states.len() {
        // A saga's hold dies with the process (no peer finishes it); a hold reserved until a
        // deadline is kept, and its deadline releases it if nothing settles it first.
        let holds: Vec<_> = states[i]
            .orders()
            .holds()
            .into_iter()
            .filter(|(_, h)| h.until.is_none())
            .map(|(k, h)| (k.clone(), h.wallet.clone(), h.amount))
            .collect();
        for (key, wallet, amount) in holds {
            report.holds_rolled_back += 1;
            journal(
                states,
                ShardId(i as u16),
                Event::OrderAborted {
                    key,
                    wallet,
                    released_hold: amount,
                },
            );
        }
    }
    if !frame.is_empty() {
        frames.push(frame.finish());
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_releases_a_sagas_hold_and_keeps_a_hold_reserved_until_a_deadline() {
        let usd = Money::new(0, Currency::parse("USD").expect("USD")).currency();
        let key = |id: &str| OrderKey {
            client: ClientId::new("c"),
            order_id: OrderId::new(id),
        };
        let w = WalletId::new("w");
        let mut st = ShardState::new(ShardId(0), 1);
        let events = [
            Event::WalletCreated {
                wallet: w.clone(),
                owner: ClientId::new("c"),
                kyc_verified: true,
            },
            Event::Deposited {
                wallet: w.clone(),
                deposit_id: RequestId::new("d"),
                amount: Money::new(1_000, usd),
                reference: "r".into(),
                fingerprint: [0; 16],
                at: UnixMillis(1),
            },
            Event::FundsHeld {
                key: key("saga"),
                fingerprint: [1; 16],
                wallet: w.clone(),
                amount: Money::new(100, usd),
            },
            Event::FundsReserved {
                key: key("review"),
                fingerprint: [2; 16],
                wallet: w.clone(),
                amount: Money::new(200, usd),
                until: UnixMillis(5_000),
            },
        ];
        for (i, e) in events.iter().enumerate() {
            st.apply(e, Lsn(i as u64 + 1));
        }
        let mut states = vec![st];
        let mut report = RecoveryReport::default();
        let frames = settle(&mut states, Transit::new(), &mut report);
        assert_eq!(report.holds_rolled_back, 1);
        assert_eq!(frames.len(), 1);
        assert!(states[0].orders().hold(&key("saga")).is_none());
        assert!(states[0].orders().hold(&key("review")).is_some());
        assert_eq!(states[0].deadlines().next_due(), Some(UnixMillis(5_000)));
        let b = states[0].wallets().get(&w).expect("wallet").balance(usd);
        assert_eq!((b.available_minor, b.held_minor), (800, 200));
        assert!(crate::verify::check(&states, 0).ok());
    }

    #[test]
    fn todays_format_round_trips_and_a_newer_one_is_refused_by_name() {
        let states = vec![
            ShardState::new(ShardId(0), 2),
            ShardState::new(ShardId(1), 2),
        ];
        let body = encode_states(&states).expect("encodes");
        assert_eq!(decode_snapshot(&body).expect("decodes"), states);

        let mut newer = encode_snapshot(vec![]);
        newer[STATE_MAGIC.len()] = STATE_FORMAT + 1;
        let err = decode_snapshot(&newer)
            .expect_err("a newer format is refused")
            .to_string();
        assert!(err.contains("state format 4"), "{err}");
    }
}
