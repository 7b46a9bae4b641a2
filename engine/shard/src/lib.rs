//! The engine runtime: shard actors over the pure core, a group-committing journal writer,
//! recovery, checkpoints, and the invariant checker. Adapters talk to [`Engine`] only.
//!
//! Placement: wallets by `shard_for(wallet)`, orders by `shard_for(client, order_id)` (their home,
//! which keeps the idempotency claim) and executed on the wallet's shard; every SKU's pool is
//! spread over all shards, and a shard that runs short borrows from its peers (a saga with a
//! funds hold); issued cards live on the buyer's wallet shard, found by the hash of their code.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod codec;
pub mod codes;
mod query;
pub mod recovery;
pub mod runtime;
pub mod scenario;
pub mod sim;
pub mod verify;
pub mod writer;

use codes::CodeVault;
use crossbeam_channel::{bounded, unbounded, Sender, TrySendError};
use giftcard_core::state::{Card, OrderRecord, Wallet};
use giftcard_core::*;
use runtime::{ClientMsg, Control, Mailbox, Quiesce, Shard, Upload};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use writer::{WriteMsg, WriterShared};

/// Failures and refusals an engine call can end in.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("rejected: {0}")]
    Rejected(Rejection),
    #[error("engine is overloaded")]
    Overloaded,
    #[error("journal storage failed; the engine accepts no more work")]
    Storage,
    #[error("codes already known at positions {0:?}")]
    DuplicateCodes(Vec<usize>),
    #[error("engine is stopping")]
    Stopping,
    /// A bug inside the engine (a decision that does not fit its command, a state that does not
    /// encode). Not a storage failure, and never worth retrying: the same input meets the same bug.
    #[error("internal engine error: {0}")]
    Internal(String),
}

/// A successful answer.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// The command's events (empty for an idempotent replay of a deposit or redemption).
    Applied(Vec<Event>),
    /// A repeated command (a settlement close of a period already closed): the events it was
    /// applied with the first time. Nothing changed.
    Answered(Vec<Event>),
    /// `cards` holds the sold cards for a fresh completion (so the caller needs no second read),
    /// and is empty for replays and rejections.
    Order {
        outcome: OrderOutcome,
        replayed: bool,
        cards: Vec<Card>,
    },
    Query(QueryAnswer),
}

/// What every engine call answers with.
pub type Reply = Result<Outcome, EngineError>;

/// Receives a reply once it may be released (after the flush covering it). Runs on the writer
/// thread: it must only hand the reply on, never block.
pub type ReplyTo = Box<dyn FnOnce(Reply) + Send>;

/// Read-only questions.
#[derive(Clone, Debug)]
pub enum Query {
    Wallet {
        caller: Caller,
        wallet: WalletId,
    },
    Order {
        key: OrderKey,
    },
    Card {
        card: CardId,
    },
    CardByCode {
        hash: CodeHash,
    },
    Cards {
        first: CardId,
        count: u32,
    },
    Skus,
    /// One SKU with its version (how many times it was defined).
    Sku {
        sku: SkuId,
    },
    Fx,
    Totals,
    /// Available and sold codes of every SKU (summed over shards). Read from the pools, which
    /// keep their counters as events apply: the cost grows with the SKUs, not with the cards.
    StockLevels,
    /// Available and sold codes of one SKU (summed over shards).
    Stock {
        sku: SkuId,
    },
    /// Cards whose delivery was given up, at most `limit` per shard.
    FailedDeliveries {
        limit: usize,
    },
    /// Cards whose delivery failed and is being retried (not given up), at most `limit` per
    /// shard: the outbox schedules their next attempt again after a restart.
    RetryingDeliveries {
        limit: usize,
    },
    /// A wallet's history from entry `after` (entries already seen; the history only grows), at most `limit`.
    WalletHistory {
        caller: Caller,
        wallet: WalletId,
        after: u64,
        limit: usize,
    },
    /// The recorded answer of a client's redemption (asked of every shard), so an idempotent
    /// replay can return the original response.
    Redemption {
        client: ClientId,
        redemption_id: RequestId,
    },
}

/// Answers to queries.
#[derive(Clone, Debug)]
pub enum QueryAnswer {
    Wallet(Box<Wallet>),
    Order(Box<OrderRecord>),
    Card(Box<Card>),
    CardWithId(CardId, Box<Card>),
    Cards(Vec<Card>),
    Skus(Vec<Sku>),
    Sku(Box<Sku>, u64),
    Fx(FxTable),
    Totals(Box<ShardTotals>),
    /// (available, sold) codes.
    Stock {
        available: u64,
        sold: u64,
    },
    History(Vec<state::TxEntry>),
    /// SKU -> (available, sold).
    StockLevels(BTreeMap<SkuId, (u64, u64)>),
    /// Cards, with their ids.
    CardList(Vec<(CardId, Card)>),
    Redemption(Box<state::RedemptionRecord>),
    Missing,
}

/// Sales per SKU.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sales {
    pub cards: u64,
    pub revenue_minor: i64,
    pub margin_minor: i64,
}

/// Stock, sales and ledger figures, per shard or summed.
#[derive(Clone, Debug, Default)]
pub struct ShardTotals {
    /// SKU -> (available, sold).
    pub stock: BTreeMap<SkuId, (u64, u64)>,
    pub sales: BTreeMap<SkuId, Sales>,
    pub ledger: BTreeMap<Account, i64>,
    pub card_liability: BTreeMap<Currency, i64>,
    pub held_orders: u64,
}

impl ShardTotals {
    fn merge(&mut self, o: ShardTotals) {
        for (k, v) in o.stock {
            let e = self.stock.entry(k).or_default();
            e.0 += v.0;
            e.1 += v.1;
        }
        for (k, v) in o.sales {
            let e = self.sales.entry(k).or_default();
            e.cards += v.cards;
            e.revenue_minor += v.revenue_minor;
            e.margin_minor += v.margin_minor;
        }
        for (k, v) in o.ledger {
            *self.ledger.entry(k).or_default() += v;
        }
        for (k, v) in o.card_liability {
            *self.card_liability.entry(k).or_default() += v;
        }
        self.held_orders += o.held_orders;
    }
}

/// How the engine is set up. Passed down as a value; no crate reads global config.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    pub shards: u16,
    /// Client messages a shard's mailbox holds before callers get `Overloaded`.
    pub mailbox_len_max: usize,
    /// Messages a shard handles per pass (per journal hand-off).
    pub batch_events_max: usize,
    pub seal_key: [u8; 32],
    pub hash_key: [u8; 32],
    pub cache_bytes: u64,
    /// Records replayed at start-up above which a checkpoint is written right after recovery.
    pub checkpoint_after_records: u64,
    /// Keep journal frames until the outbox has published them (set when the queue adapter runs).
    pub outbox: bool,
    /// How long the recorded answer of a rejected order is replayed before the order id may be
    /// used afresh, in ms (0: for ever).
    pub rejection_replay_window_ms: u64,
}

impl EngineConfig {
    /// Defaults for a data directory (development keys: override them in production).
    pub fn new(data_dir: impl Into<PathBuf>, shards: u16) -> EngineConfig {
        EngineConfig {
            data_dir: data_dir.into(),
            shards: shards.max(1),
            mailbox_len_max: 65_536,
            batch_events_max: 4_096,
            seal_key: *b"dev-seal-key-change-me-0123456789"[..32]
                .try_into()
                .unwrap_or(&[0u8; 32]),
            hash_key: *b"dev-hash-key-change-me-0123456789"[..32]
                .try_into()
                .unwrap_or(&[0u8; 32]),
            cache_bytes: 64 << 20,
            checkpoint_after_records: 2_000_000,
            outbox: false,
            rejection_replay_window_ms: 86_400_000,
        }
    }
}

/// One journal frame's events, for the outbox.
#[derive(Clone, Debug)]
pub struct JournalFrame {
    pub seq: u64,
    pub events: Vec<(ShardId, Lsn, Event)>,
}

/// What recovery found and did.
#[derive(Clone, Debug, Default)]
pub struct RecoveryReport {
    pub snapshot_through: u64,
    pub frames_replayed: u64,
    pub records_replayed: u64,
    pub holds_rolled_back: u64,
    pub transfers_completed: u64,
    pub duration: Duration,
}

/// Key of a sealed code in the store.
pub fn slot_key(slot: u64) -> Vec<u8> {
    let mut k = vec![b'c'];
    k.extend_from_slice(&slot.to_be_bytes());
    k
}

/// Key of the code index entry (code hash -> slot).
pub fn index_key(hash: &CodeHash) -> [u8; 17] {
    let mut k = [b'i'; 17];
    k[1..].copy_from_slice(hash);
    k
}

/// The code hash a code index key names (the inverse of [`index_key`]); `None` for other keys.
pub fn index_key_hash(key: &[u8]) -> Option<CodeHash> {
    match key {
        [b'i', hash @ ..] => hash.try_into().ok(),
        _ => None,
    }
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

/// An error with every cause under it ("sled failed during open: No space left on device"): a
/// journal error alone says which step failed, its source says why, and operators need both.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Wal(#[from] giftcard_wal::WalError),
    #[error("data directory was written with {found} shards, configured {configured}; shard placement cannot change")]
    ShardCount { found: u16, configured: u16 },
    #[error("journal record {0}")]
    Decode(String),
    #[error("cannot create {0}: {1}")]
    Dir(PathBuf, std::io::Error),
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
        let (states, report) = recovery::recover(
            &mut wal,
            cfg.shards,
            cfg.checkpoint_after_records,
            cfg.outbox,
            cfg.rejection_replay_window_ms,
        )?;
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
        let vault = CodeVault::new(cfg.seal_key, cfg.hash_key);
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

    /// Where a command goes first.
    pub fn route(&self, cmd: &Command) -> ShardId {
        route(cmd, self.shard_count)
    }

    // The refused message comes back by value so its reply can be answered; boxing it would
    // allocate on the overload path, which is exactly where allocation should be avoided.
    #[allow(clippy::result_large_err)]
    fn send(&self, shard: ShardId, msg: ClientMsg) -> Result<(), (EngineError, ClientMsg)> {
        if self.failed() {
            return Err((EngineError::Storage, msg));
        }
        if self.stopping.load(Ordering::Acquire) {
            return Err((EngineError::Stopping, msg));
        }
        let i = usize::from(shard.0);
        self.depths[i].fetch_add(1, Ordering::Relaxed);
        match self.mailboxes[i].client.try_send(msg) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(m)) | Err(TrySendError::Disconnected(m)) => {
                self.depths[i].fetch_sub(1, Ordering::Relaxed);
                Err((EngineError::Overloaded, m))
            }
        }
    }

    fn deliver(&self, shard: ShardId, msg: ClientMsg) {
        if let Err((e, msg)) = self.send(shard, msg) {
            match msg {
                ClientMsg::Command(_, to) | ClientMsg::Query(_, to) | ClientMsg::Upload(_, to) => {
                    to(Err(e))
                }
            }
        }
    }

    /// Submits a command; `reply` runs once the answer is durable. A reversal, whose shard is not
    /// known from its id, is asked of every shard.
    pub fn submit(&self, cmd: Command, reply: ReplyTo) {
        let fan_out = match cmd {
            Command::ReverseRedemption { .. } => Some(pick_found as fn(Vec<Reply>) -> Reply),
            Command::CloseSettlement { .. } => Some(concat_events as fn(Vec<Reply>) -> Reply),
            _ => None,
        };
        if let Some(combine) = fan_out {
            let fan = FanOut::new(self.shard_count, reply, combine);
            for s in 0..self.shard_count {
                self.deliver(ShardId(s), ClientMsg::Command(cmd.clone(), fan.part()));
            }
            return;
        }
        let shard = self.route(&cmd);
        self.deliver(shard, ClientMsg::Command(cmd, reply));
    }

    /// Asks a query of the shard that knows, or of all shards for totals and orders.
    pub fn query(&self, q: Query, reply: ReplyTo) {
        let n = self.shard_count;
        let one =
            |s: ShardId, q: Query, reply: ReplyTo| self.deliver(s, ClientMsg::Query(q, reply));
        match &q {
            Query::Wallet { wallet, .. } | Query::WalletHistory { wallet, .. } => {
                one(shard_for(wallet.as_str().as_bytes(), n), q, reply)
            }
            Query::Card { card } | Query::Cards { first: card, .. } => {
                if card.shard().0 >= n {
                    return reply(Err(EngineError::Rejected(Rejection::CardNotFound)));
                }
                one(card.shard(), q, reply)
            }
            Query::CardByCode { hash } => one(shard_for(hash, n), q, reply),
            Query::Skus | Query::Sku { .. } | Query::Fx => one(ShardId(0), q, reply),
            Query::Order { .. } | Query::Redemption { .. } => {
                let fan = FanOut::new(n, reply, pick_found);
                (0..n).for_each(|s| one(ShardId(s), q.clone(), fan.part()));
            }
            Query::FailedDeliveries { .. } | Query::RetryingDeliveries { .. } => {
                let fan = FanOut::new(n, reply, merge_card_lists);
                (0..n).for_each(|s| one(ShardId(s), q.clone(), fan.part()));
            }
            Query::Stock { .. } => {
                let fan = FanOut::new(n, reply, merge_stock);
                (0..n).for_each(|s| one(ShardId(s), q.clone(), fan.part()));
            }
            Query::StockLevels => {
                let fan = FanOut::new(n, reply, merge_stock_levels);
                (0..n).for_each(|s| one(ShardId(s), q.clone(), fan.part()));
            }
            Query::Totals => {
                let fan = FanOut::new(n, reply, merge_totals);
                (0..n).for_each(|s| one(ShardId(s), q.clone(), fan.part()));
            }
        }
    }

    /// Uploads supplier codes (hashed and sealed here, on the caller's thread).
    pub fn upload_codes(
        &self,
        sku: SkuId,
        supplier: Option<SupplierId>,
        codes: &[String],
        reply: ReplyTo,
    ) {
        let codes = codes
            .iter()
            .map(|c| (self.vault.hash(c), self.vault.seal(c)))
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

    /// Reads and decrypts the codes of cards (for the buyer's response and delivery).
    pub fn reveal(&self, card: &Card) -> Result<String, EngineError> {
        let sealed = match &card.code {
            state::CodeRef::Sealed(s) => s.clone(),
            state::CodeRef::Slot(slot) => self
                .reader
                .get(&slot_key(*slot))
                .map_err(|_| EngineError::Storage)?
                .ok_or(EngineError::Storage)?,
        };
        self.vault.unseal(&sealed).map_err(|_| EngineError::Storage)
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

/// Collects one reply from each of several shards and answers once.
pub(crate) struct FanOut {
    inner: Arc<Mutex<FanState>>,
}

struct FanState {
    left: u16,
    replies: Vec<Reply>,
    reply: Option<ReplyTo>,
    combine: fn(Vec<Reply>) -> Reply,
}

impl FanOut {
    pub(crate) fn new(n: u16, reply: ReplyTo, combine: fn(Vec<Reply>) -> Reply) -> FanOut {
        FanOut {
            inner: Arc::new(Mutex::new(FanState {
                left: n,
                replies: Vec::new(),
                reply: Some(reply),
                combine,
            })),
        }
    }

    pub(crate) fn part(&self) -> ReplyTo {
        let inner = self.inner.clone();
        Box::new(move |r| {
            let Ok(mut s) = inner.lock() else { return };
            s.replies.push(r);
            s.left -= 1;
            if s.left == 0 {
                let replies = std::mem::take(&mut s.replies);
                if let Some(reply) = s.reply.take() {
                    reply((s.combine)(replies));
                }
            }
        })
    }
}

/// The one shard that found the object, or the most telling refusal.
pub(crate) fn pick_found(replies: Vec<Reply>) -> Reply {
    let mut fallback = None;
    for r in replies {
        match r {
            Ok(Outcome::Query(QueryAnswer::Missing)) => {
                fallback = fallback.or(Some(Ok(Outcome::Query(QueryAnswer::Missing))))
            }
            Ok(o) => return Ok(o),
            Err(EngineError::Rejected(Rejection::RedemptionNotFound)) => {
                fallback = fallback.or(Some(Err(EngineError::Rejected(
                    Rejection::RedemptionNotFound,
                ))))
            }
            Err(e) => fallback = Some(Err(e)),
        }
    }
    fallback.unwrap_or_else(|| Err(EngineError::Internal("no shard answered".into())))
}

/// An answer of the wrong kind: a bug in the engine, not a storage failure.
fn unexpected(o: Outcome) -> EngineError {
    tracing::error!(?o, "an engine answer of the wrong kind");
    EngineError::Internal(format!("an answer of the wrong kind: {o:?}"))
}

/// The events of every shard; `Answered` only when every shard had done it before (a close that
/// a crash cut short is finished by its retry, and that is a change).
fn concat_events(replies: Vec<Reply>) -> Reply {
    let mut all = Vec::new();
    let mut changed = false;
    for r in replies {
        match r? {
            Outcome::Applied(mut evs) => {
                changed = true;
                all.append(&mut evs);
            }
            Outcome::Answered(mut evs) => all.append(&mut evs),
            other => return Err(unexpected(other)),
        }
    }
    Ok(if changed {
        Outcome::Applied(all)
    } else {
        Outcome::Answered(all)
    })
}

fn merge_card_lists(replies: Vec<Reply>) -> Reply {
    let mut all = Vec::new();
    for r in replies {
        match r? {
            Outcome::Query(QueryAnswer::CardList(mut v)) => all.append(&mut v),
            other => return Err(unexpected(other)),
        }
    }
    all.sort_by_key(|(id, _)| *id);
    Ok(Outcome::Query(QueryAnswer::CardList(all)))
}

fn merge_stock(replies: Vec<Reply>) -> Reply {
    let (mut available, mut sold) = (0, 0);
    for r in replies {
        match r? {
            Outcome::Query(QueryAnswer::Stock {
                available: a,
                sold: s,
            }) => {
                available += a;
                sold += s;
            }
            other => return Err(unexpected(other)),
        }
    }
    Ok(Outcome::Query(QueryAnswer::Stock { available, sold }))
}

fn merge_stock_levels(replies: Vec<Reply>) -> Reply {
    let mut all: BTreeMap<SkuId, (u64, u64)> = BTreeMap::new();
    for r in replies {
        match r? {
            Outcome::Query(QueryAnswer::StockLevels(levels)) => {
                for (sku, (available, sold)) in levels {
                    let e = all.entry(sku).or_default();
                    e.0 += available;
                    e.1 += sold;
                }
            }
            other => return Err(unexpected(other)),
        }
    }
    Ok(Outcome::Query(QueryAnswer::StockLevels(all)))
}

fn merge_totals(replies: Vec<Reply>) -> Reply {
    let mut total = ShardTotals::default();
    for r in replies {
        match r? {
            Outcome::Query(QueryAnswer::Totals(t)) => total.merge(*t),
            other => return Err(unexpected(other)),
        }
    }
    Ok(Outcome::Query(QueryAnswer::Totals(Box::new(total))))
}

/// Decodes one shard's state bytes as produced by [`Engine::state_bytes`].
pub fn codec_state(bytes: &[u8]) -> Result<state::ShardState, String> {
    state::ShardState::decode(bytes).map_err(|e| e.to_string())
}
