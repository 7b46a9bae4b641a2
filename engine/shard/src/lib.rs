//! The engine runtime: shard actors over the pure core, a group-committing journal writer,
//! recovery, checkpoints, and the invariant checker. Adapters talk to [`Engine`] only.
//!
//! Placement: wallets by `shard_for(wallet)`, orders by `shard_for(client, order_id)` (their home,
//! which keeps the idempotency claim) and executed on the wallet's shard; every SKU's pool is
//! spread over all shards, and a shard that runs short borrows from its peers (a saga with a
//! funds hold); issued cards live on the buyer's wallet shard, found by the hash of their code.
//!
//! This file is the facade: [`Engine`] and its lifecycle (open, checkpoint, shutdown, the
//! journal for the outbox). What it answers with is in `api`, how it is set up in `config`,
//! where commands and queries go in `routing`, how the answers of several shards combine in
//! `fanout`, and the keys of the journal's side entries in `keys`.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod api;
pub mod codec;
pub mod codes;
mod config;
mod fanout;
mod keys;
mod query;
pub mod recovery;
mod routing;
pub mod runtime;
pub mod scenario;
pub mod sim;
pub mod verify;
pub mod writer;

pub use api::*;
pub use config::EngineConfig;
pub(crate) use fanout::{pick_found, unexpected, FanOut};
pub use keys::{index_key, index_key_hash, slot_key};

use codes::CodeVault;
use crossbeam_channel::{bounded, unbounded, Sender};
use giftcard_core::state::Card;
use giftcard_core::*;
use runtime::{ClientMsg, Control, Mailbox, Quiesce, Shard, Upload};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use writer::{WriteMsg, WriterShared};

/// What [`Engine::reseal`] sealed again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResealReport {
    /// Supplier codes in the store.
    pub slots: u64,
    /// Issued cards' codes.
    pub cards: u64,
}

/// The running engine. Cheap to share behind an `Arc`; every method is callable from any thread.
pub struct Engine {
    mailboxes: Vec<Mailbox>,
    depths: Vec<Arc<AtomicUsize>>,
    writer: Sender<WriteMsg>,
    writer_shared: Arc<WriterShared>,
    quiesce: Arc<Quiesce>,
    vault: CodeVault,
    reader: giftcard_wal::WalReader,
    stopping: Arc<AtomicBool>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    checkpoint_lock: Mutex<()>,
    sync_counter: Arc<std::sync::atomic::AtomicU64>,
    shard_count: u16,
    mailbox_len_max: usize,
    /// Frames up to here are published by the outbox (only consulted when `outbox` is set).
    outbox_floor: Arc<std::sync::atomic::AtomicU64>,
    outbox: bool,
    /// Per shard: make snapshots fail to encode (tests).
    fail_snapshots: Vec<Arc<AtomicBool>>,
    pub recovery: RecoveryReport,
}

impl Engine {
    /// Recovers the data directory and starts the shards and the writer.
    pub fn open(cfg: EngineConfig) -> Result<Engine, OpenError> {
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(|e| OpenError::Dir(cfg.data_dir.clone(), e))?;
        // The state maps' hash keys come from the secret hash key, so client-chosen ids cannot
        // be picked to collide; the first engine of a process sets them.
        let keys = blake3::keyed_hash(&cfg.hash_key, b"giftcard state map keys");
        let k = keys.as_bytes();
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&k[i * 8..i * 8 + 8]);
            u64::from_le_bytes(w)
        };
        giftcard_core::maps::set_hash_keys([word(0), word(1), word(2), word(3)]);
        let mut wal = giftcard_wal::Wal::open(
            &cfg.data_dir,
            &giftcard_wal::WalOptions {
                cache_bytes: cfg.cache_bytes,
            },
        )?;
        if wal.unfinished_snapshots_removed() > 0 {
            tracing::warn!(
                files = wal.unfinished_snapshots_removed(),
                "removed sled snapshot files an interrupted write left (crash or full disk)"
            );
        }
        let (mut states, report) = recovery::recover(
            &mut wal,
            cfg.shards,
            cfg.checkpoint_after_records,
            cfg.outbox,
            cfg.rejection_replay_window_ms,
        )?;
        for s in &mut states {
            s.set_risk_policy(cfg.risk.clone());
            s.set_scoring(cfg.scoring.clone());
            s.set_expiry_min_days(cfg.expiry_min_days);
        }
        let outbox_floor = Arc::new(std::sync::atomic::AtomicU64::new(
            recovery::outbox_cursor(&wal.reader()).unwrap_or(0),
        ));
        let reader = wal.reader();
        let sync_counter = wal.sync_counter();
        let n = usize::from(cfg.shards);
        let (writer_tx, writer_rx) = bounded(n * 4);
        let writer_shared = Arc::new(WriterShared::default());
        writer_shared
            .last_seq
            .store(wal.next_seq().saturating_sub(1), Ordering::Release);
        let mut threads = Vec::new();
        let ws = writer_shared.clone();
        threads.push(spawn("giftcard-wal", move || {
            writer::run(wal, writer_rx, ws)
        }));
        let quiesce = Arc::new(Quiesce::default());
        let stopping = Arc::new(AtomicBool::new(false));
        let vault = CodeVault::with_keys(
            (cfg.seal_key_version, cfg.seal_key),
            &cfg.previous_seal_keys,
            cfg.hash_key,
        );
        let mut receivers = Vec::new();
        let mut mailboxes = Vec::new();
        for _ in 0..n {
            let (ct, cr) = bounded(cfg.mailbox_len_max);
            let (pt, pr) = unbounded();
            let (xt, xr) = unbounded();
            mailboxes.push(Mailbox {
                client: ct,
                peer: pt,
                control: xt,
            });
            receivers.push((cr, pr, xr));
        }
        let depths: Vec<_> = (0..n).map(|_| Arc::new(AtomicUsize::new(0))).collect();
        let mut fail_snapshots = Vec::with_capacity(n);
        for (i, (state, (cr, pr, xr))) in states.into_iter().zip(receivers).enumerate() {
            let core = runtime::ShardCore::new(
                state,
                vault.clone(),
                Box::new(reader.clone()),
                writer_shared.clone(),
                quiesce.clone(),
            );
            fail_snapshots.push(core.fail_snapshots());
            let shard = Shard {
                core,
                client_rx: cr,
                peer_rx: pr,
                control_rx: xr,
                peers: mailboxes.clone(),
                writer: writer_tx.clone(),
                batch_max: cfg.batch_events_max,
                stopping: stopping.clone(),
                depth: depths[i].clone(),
            };
            threads.push(spawn(&format!("giftcard-shard-{i}"), move || shard.run()));
        }
        Ok(Engine {
            mailboxes,
            depths,
            writer: writer_tx,
            writer_shared,
            quiesce,
            vault,
            reader,
            stopping,
            threads: Mutex::new(threads),
            checkpoint_lock: Mutex::new(()),
            sync_counter,
            shard_count: cfg.shards,
            mailbox_len_max: cfg.mailbox_len_max,
            outbox_floor,
            outbox: cfg.outbox,
            fail_snapshots,
            recovery: report,
        })
    }

    /// Number of shards.
    pub fn shard_count(&self) -> u16 {
        self.shard_count
    }

    /// The code vault (hashing and sealing of card codes).
    pub fn vault(&self) -> &CodeVault {
        &self.vault
    }

    /// Completed `fdatasync`s of the journal so far.
    pub fn syncs(&self) -> u64 {
        self.sync_counter.load(Ordering::Acquire)
    }

    /// The counter behind [`Engine::syncs`], for reading inside a reply callback.
    pub fn sync_counter(&self) -> Arc<std::sync::atomic::AtomicU64> {
        self.sync_counter.clone()
    }

    /// Whether the journal failed (the engine then refuses all work).
    pub fn failed(&self) -> bool {
        self.writer_shared.failed.load(Ordering::Acquire)
    }

    /// Client messages waiting in each shard's mailbox.
    pub fn mailbox_depths(&self) -> Vec<usize> {
        self.depths
            .iter()
            .map(|d| d.load(Ordering::Relaxed))
            .collect()
    }

    /// Uploads supplier codes: hashed here, on the caller's thread; sealed by shard 0, which
    /// gives them their slots (each box is bound to its slot).
    pub fn upload_codes(
        &self,
        sku: SkuId,
        supplier: Option<SupplierId>,
        codes: &[String],
        reply: ReplyTo,
    ) {
        let codes = codes
            .iter()
            .map(|c| (self.vault.hash(c), c.clone()))
            .collect();
        self.deliver(
            ShardId(0),
            ClientMsg::Upload(
                Upload {
                    sku,
                    supplier,
                    codes,
                },
                reply,
            ),
        );
    }

    /// Seals every code again under the current seal key (a key rotation): the supplier codes in
    /// the store and every shard's issued cards, each durable before this returns. Afterwards
    /// no code needs an earlier key; the journal frames written before still hold the old boxes
    /// until a checkpoint truncates them. Safe while serving (codes never change, only boxes);
    /// `giftcard rotate-seal-key` runs it on a stopped server's data directory.
    pub fn reseal(&self) -> Result<ResealReport, EngineError> {
        let mut report = ResealReport::default();
        let mut slots = Vec::new();
        let send = |shard: u16, slots: Vec<(u64, Vec<u8>)>| -> Result<u64, EngineError> {
            let (tx, rx) = bounded(1);
            self.deliver(
                ShardId(shard),
                ClientMsg::Reseal(slots, Box::new(move |r| drop(tx.send(r)))),
            );
            match rx.recv().unwrap_or(Err(EngineError::Stopping))? {
                Outcome::Applied(evs) => Ok(evs
                    .iter()
                    .map(|e| match e {
                        Event::CodesResealed { cards } => cards.len() as u64,
                        _ => 0,
                    })
                    .sum()),
                other => Err(unexpected(other)),
            }
        };
        for entry in self.reader.scan_prefix(&slot_key(0)[..1]) {
            let (key, sealed) = entry.map_err(|_| EngineError::Storage)?;
            let Ok(slot) = <[u8; 8]>::try_from(&key[1..]).map(u64::from_be_bytes) else {
                continue;
            };
            let place = codes::Binding::Slot(slot);
            let opened = self
                .vault
                .open(&sealed, place)
                .map_err(|_| EngineError::Storage)?;
            if self.vault.needs_reseal(&opened) {
                slots.push((slot, self.vault.seal(&opened.code, place)));
                report.slots += 1;
            }
            if slots.len() >= 4_096 {
                report.cards += send(0, std::mem::take(&mut slots))?;
            }
        }
        report.cards += send(0, slots)?;
        for s in 1..self.shard_count() {
            report.cards += send(s, Vec::new())?;
        }
        Ok(report)
    }

    /// Reads and decrypts the code of card `id` (for the buyer's response and delivery). A box
    /// that is not bound to this card (or its slot) does not open: a moved box is damage.
    pub fn reveal(&self, id: CardId, card: &Card) -> Result<String, EngineError> {
        let (sealed, place) = match &card.code {
            state::CodeRef::Sealed(s) => (s.clone(), codes::Binding::Card(id)),
            state::CodeRef::Slot(slot) => (
                self.reader
                    .get(&slot_key(*slot))
                    .map_err(|_| EngineError::Storage)?
                    .ok_or(EngineError::Storage)?,
                codes::Binding::Slot(*slot),
            ),
        };
        self.vault
            .unseal(&sealed, place)
            .map_err(|_| EngineError::Storage)
    }

    /// Blocking form of `submit`.
    pub fn call(&self, cmd: Command) -> Reply {
        let (tx, rx) = bounded(1);
        self.submit(cmd, Box::new(move |r| drop(tx.send(r))));
        rx.recv().unwrap_or(Err(EngineError::Stopping))
    }

    /// Blocking form of `query`.
    pub fn ask(&self, q: Query) -> Result<QueryAnswer, EngineError> {
        let (tx, rx) = bounded(1);
        self.query(q, Box::new(move |r| drop(tx.send(r))));
        match rx.recv().unwrap_or(Err(EngineError::Stopping))? {
            Outcome::Query(a) => Ok(a),
            other => Err(unexpected(other)),
        }
    }

    /// Blocking form of `upload_codes`.
    pub fn upload(&self, sku: SkuId, supplier: Option<SupplierId>, codes: &[String]) -> Reply {
        let (tx, rx) = bounded(1);
        self.upload_codes(sku, supplier, codes, Box::new(move |r| drop(tx.send(r))));
        rx.recv().unwrap_or(Err(EngineError::Stopping))
    }

    /// Pauses every shard at a point where no saga or peer message is in flight, snapshots all
    /// of them, writes the snapshot and truncates the journal it covers, then resumes.
    pub fn checkpoint(&self) -> Result<u64, EngineError> {
        self.paused(|| self.checkpoint_paused())
    }

    /// Every shard's state as canonical bytes, taken at a quiescent point (for tests and tools).
    pub fn state_bytes(&self) -> Result<Vec<Vec<u8>>, EngineError> {
        self.paused(|| {
            self.wait_quiescent()?;
            Ok(self.collect_states()?.into_iter().map(|(_, b)| b).collect())
        })
    }

    fn paused<T>(&self, f: impl FnOnce() -> Result<T, EngineError>) -> Result<T, EngineError> {
        let _one_at_a_time = self
            .checkpoint_lock
            .lock()
            .map_err(|_| EngineError::Storage)?;
        let (ack_tx, ack_rx) = unbounded();
        for m in &self.mailboxes {
            let _ = m.control.send(Control::Pause(ack_tx.clone()));
        }
        for _ in &self.mailboxes {
            ack_rx.recv().map_err(|_| EngineError::Stopping)?;
        }
        let result = f();
        for m in &self.mailboxes {
            let _ = m.control.send(Control::Resume);
        }
        result
    }

    fn wait_quiescent(&self) -> Result<(), EngineError> {
        let started = Instant::now();
        while self.quiesce.in_flight.load(Ordering::Acquire) != 0
            || self.quiesce.open_sagas.load(Ordering::Acquire) != 0
        {
            if started.elapsed() > Duration::from_secs(30) {
                return Err(EngineError::Overloaded);
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        Ok(())
    }

    /// Every shard's state bytes; an error if any shard's state does not encode, so a caller
    /// never mistakes a missing state for an empty one.
    fn collect_states(&self) -> Result<Vec<(ShardId, Vec<u8>)>, EngineError> {
        let (tx, rx) = unbounded();
        for m in &self.mailboxes {
            let _ = m.control.send(Control::Snapshot(tx.clone()));
        }
        let mut parts = Vec::with_capacity(self.mailboxes.len());
        for _ in 0..self.mailboxes.len() {
            let (shard, bytes) = rx.recv().map_err(|_| EngineError::Stopping)?;
            let bytes = bytes.map_err(|e| {
                tracing::error!(shard = shard.0, error = %e, "shard state does not encode");
                EngineError::Internal(format!("shard {} state does not encode: {e}", shard.0))
            })?;
            parts.push((shard, bytes));
        }
        parts.sort_by_key(|(s, _)| *s);
        Ok(parts)
    }

    /// Makes every later snapshot fail to encode, as a bug would (tests of checkpoints).
    #[doc(hidden)]
    pub fn inject_snapshot_failure(&self) {
        for f in &self.fail_snapshots {
            f.store(true, Ordering::Relaxed);
        }
    }

    fn checkpoint_paused(&self) -> Result<u64, EngineError> {
        let started = Instant::now();
        self.wait_quiescent()?;
        // A state that does not encode ends the checkpoint here: nothing is written and the
        // journal is not truncated.
        let parts = self.collect_states()?;
        let (mark_tx, mark_rx) = bounded(1);
        self.writer
            .send(WriteMsg::Mark(mark_tx))
            .map_err(|_| EngineError::Stopping)?;
        let through = mark_rx.recv().map_err(|_| EngineError::Stopping)?;
        let state = recovery::encode_snapshot(parts.into_iter().map(|(_, b)| b).collect());
        let truncate = if self.outbox {
            self.outbox_floor.load(Ordering::Acquire).min(through)
        } else {
            through
        };
        let (done_tx, done_rx) = bounded(1);
        self.writer
            .send(WriteMsg::Checkpoint {
                through,
                truncate,
                state,
                done: done_tx,
            })
            .map_err(|_| EngineError::Stopping)?;
        done_rx
            .recv()
            .map_err(|_| EngineError::Stopping)?
            .map_err(|e| {
                tracing::error!(error = %e, "checkpoint failed");
                EngineError::Storage
            })?;
        metrics::histogram!("giftcard_checkpoint_seconds").record(started.elapsed().as_secs_f64());
        Ok(through)
    }

    /// Stops taking work, lets shards finish what they hold, waits for the journal, and joins.
    pub fn shutdown(&self) {
        self.stopping.store(true, Ordering::Release);
        let threads: Vec<_> = self
            .threads
            .lock()
            .map(|mut t| t.drain(..).collect())
            .unwrap_or_default();
        let mut iter = threads.into_iter();
        let writer = iter.next();
        for t in iter {
            let _ = t.join();
        }
        // The shards are gone, so the writer has everything they handed it; it stops after that.
        let _ = self.writer.send(WriteMsg::Stop);
        if let Some(w) = writer {
            let _ = w.join();
        }
    }

    /// Checks every invariant over all shards at a quiescent point: the live reconciliation.
    pub fn reconcile(&self) -> Result<verify::Report, EngineError> {
        let states: Vec<state::ShardState> = self
            .state_bytes()?
            .iter()
            .map(|b| codec_state(b))
            .collect::<Result<_, _>>()
            .map_err(EngineError::Internal)?;
        Ok(verify::check(&states, 0))
    }

    /// Reads the journal for the outbox: events of durable frames after `after_seq`.
    pub fn journal_after(
        &self,
        after_seq: u64,
        max_frames: usize,
    ) -> Result<Vec<JournalFrame>, EngineError> {
        let through = self.writer_shared.last_seq.load(Ordering::Acquire);
        let frames = self
            .reader
            .frames_after(after_seq, through, max_frames)
            .map_err(|_| EngineError::Storage)?;
        frames
            .into_iter()
            .map(|f| {
                let events = f
                    .records
                    .into_iter()
                    .map(|r| codec::decode(&r.payload).map(|e| (ShardId(r.shard), Lsn(r.lsn), e)))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| EngineError::Storage)?;
                Ok(JournalFrame { seq: f.seq, events })
            })
            .collect()
    }

    /// Where the outbox has published through (0 if it never ran here).
    pub fn outbox_cursor(&self) -> u64 {
        self.outbox_floor.load(Ordering::Acquire)
    }

    /// Records that every frame through `seq` is published: checkpoints may truncate them, and a
    /// restart resumes after them. Stored lazily; after a crash publishing resumes at most a
    /// little earlier and the broker's duplicate window drops the repeats.
    pub fn set_outbox_cursor(&self, seq: u64) -> Result<(), EngineError> {
        self.outbox_floor.fetch_max(seq, Ordering::AcqRel);
        self.reader
            .put_meta_lazy(recovery::OUTBOX_CURSOR_META, &seq.to_le_bytes())
            .map_err(|_| EngineError::Storage)
    }

    /// Mailbox capacity per shard.
    pub fn mailbox_len_max(&self) -> usize {
        self.mailbox_len_max
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    // Thread creation fails only when the OS is out of resources; nothing can run then.
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .expect("spawn engine thread")
}

pub use giftcard_core::placement::{order_home, route, shard_for};

/// Decodes one shard's state bytes as produced by [`Engine::state_bytes`].
pub fn codec_state(bytes: &[u8]) -> Result<state::ShardState, String> {
    state::ShardState::decode(bytes).map_err(|e| e.to_string())
}
