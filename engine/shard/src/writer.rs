//! The journal writer: one thread that owns the WAL and turns whatever the shards sent since the
//! last flush into one group: frames plus side entries in one sled batch, one flush, one
//! `fdatasync`, and only then every reply of the group. If the disk fails, the writer answers
//! every request with a failure from then on and marks the engine unhealthy; it never releases a
//! reply whose events are not on disk.

use crate::{Reply, ReplyTo};
use crossbeam_channel::{Receiver, Sender};
use giftcard_core::ShardId;
use giftcard_wal::Wal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// What a shard hands the writer after one pass over its mailbox. The shard encodes its events
/// into finished frames itself: encoding runs in parallel on the shards, and the events are
/// dropped on the thread that made them (cross-thread frees were a tenth of an order's cost).
pub struct WriteBatch {
    pub shard: ShardId,
    pub frames: Vec<Vec<u8>>,
    /// Records in `frames`.
    pub records: usize,
    /// Side entries (sealed codes, code index) that must be durable with the events.
    pub side: Vec<(Vec<u8>, Vec<u8>)>,
    pub replies: Vec<(ReplyTo, Reply)>,
    /// Set on uploads, so shard 0 knows when its duplicate check can read the store again.
    pub upload_ticket: Option<u64>,
}

/// Messages to the writer.
pub enum WriteMsg {
    Batch(WriteBatch),
    /// Answer with the last frame's sequence once everything sent before is durable.
    Mark(Sender<u64>),
    /// Write a snapshot through the marked frame and truncate the journal.
    Checkpoint {
        through: u64,
        truncate: u64,
        state: Vec<u8>,
        done: Sender<Result<(), String>>,
    },
    /// Finish the current group and close the journal.
    Stop,
}

/// State the writer shares with the rest of the engine.
#[derive(Default)]
pub struct WriterShared {
    pub failed: AtomicBool,
    pub uploads_applied: AtomicU64,
    pub last_seq: AtomicU64,
}

/// Most bytes one group may carry before it is flushed (bounds latency under a burst).
const GROUP_BYTES_MAX: usize = 8 << 20;

/// Runs the writer until every sender is gone.
pub fn run(mut wal: Wal, rx: Receiver<WriteMsg>, shared: Arc<WriterShared>) {
    let mut pending: Vec<WriteMsg> = Vec::new();
    let mut stop = false;
    while let Ok(first) = rx.recv() {
        stop |= matches!(first, WriteMsg::Stop);
        pending.push(first);
        let mut bytes = 0usize;
        while bytes < GROUP_BYTES_MAX {
            match rx.try_recv() {
                Ok(m) => {
                    stop |= matches!(m, WriteMsg::Stop);
                    if let WriteMsg::Batch(b) = &m {
                        bytes += b.frames.iter().map(Vec::len).sum::<usize>()
                            + b.side.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
                    }
                    pending.push(m);
                }
                Err(_) => break,
            }
        }
        write_group(&mut wal, &mut pending, &shared);
        if stop {
            break;
        }
    }
    shared
        .last_seq
        .store(wal.next_seq().saturating_sub(1), Ordering::Release);
}

fn write_group(wal: &mut Wal, pending: &mut Vec<WriteMsg>, shared: &WriterShared) {
    let mut frames = Vec::new();
    let mut side = Vec::new();
    let mut records = 0usize;
    let mut upload_ticket = None;
    for m in pending.iter_mut() {
        if let WriteMsg::Batch(b) = m {
            frames.append(&mut b.frames);
            records += b.records;
            side.append(&mut b.side);
            upload_ticket = upload_ticket.max(b.upload_ticket);
        }
    }
    let ok = if shared.failed.load(Ordering::Acquire) {
        false
    } else if frames.is_empty() && side.is_empty() {
        true
    } else {
        let started = Instant::now();
        let bytes: usize = frames.iter().map(Vec::len).sum();
        match wal.append_group(&frames, &side) {
            Ok(seq) => {
                shared.last_seq.store(seq, Ordering::Release);
                metrics::histogram!("giftcard_wal_flush_seconds")
                    .record(started.elapsed().as_secs_f64());
                metrics::histogram!("giftcard_wal_group_records").record(records as f64);
                metrics::counter!("giftcard_wal_written_bytes_total").increment(bytes as u64);
                true
            }
            Err(e) => {
                tracing::error!(
                    error = %crate::error_chain(&e),
                    "journal write failed; the engine stops accepting work"
                );
                shared.failed.store(true, Ordering::Release);
                false
            }
        }
    };
    if let Some(t) = upload_ticket {
        shared.uploads_applied.fetch_max(t, Ordering::AcqRel);
    }
    for m in pending.drain(..) {
        match m {
            WriteMsg::Batch(b) => {
                for (reply_to, reply) in b.replies {
                    reply_to(if ok {
                        reply
                    } else {
                        Err(crate::EngineError::Storage)
                    });
                }
            }
            WriteMsg::Mark(tx) => {
                let _ = tx.send(wal.next_seq().saturating_sub(1));
            }
            WriteMsg::Checkpoint {
                through,
                truncate,
                state,
                done,
            } => {
                let r = if ok {
                    wal.checkpoint(through, truncate, &state)
                        .map_err(|e| e.to_string())
                } else {
                    Err("journal failed".into())
                };
                let _ = done.send(r);
            }
            WriteMsg::Stop => {}
        }
    }
}
