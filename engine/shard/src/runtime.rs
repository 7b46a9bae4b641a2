//! A shard actor: one thread that owns one `ShardState`, drains its mailboxes in batches, decides
//! and applies, hands the batch's events and replies to the writer, and only then sends messages
//! to peers, so every message a peer acts on is journaled before what the peer journals about it.
//!
//! The logic lives in [`ShardCore`], which knows nothing of threads or channels: it takes one
//! message at a time and writes what it decided into a [`Pass`] (frames and replies for the
//! writer, messages for peers). [`Shard`] drives it on a thread over crossbeam channels; the
//! deterministic simulator (`crate::sim`) drives the same core step by step under faults.

use crate::codes::{Binding, CodeVault};
use crate::writer::{WriteBatch, WriteMsg, WriterShared};
use crate::{After, EngineError, Outcome, Query, QueryAnswer, Reply, ReplyTo};
use crossbeam_channel::{Receiver, Select, Sender};
use giftcard_core::state::Decision;
use giftcard_core::*;
use rand::RngCore;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Upload of supplier codes, already hashed and sealed by the caller.
pub struct Upload {
    pub sku: SkuId,
    pub supplier: Option<SupplierId>,
    /// Each code's keyed hash and the code itself, which the shard seals bound to the slot it
    /// gets (it is in memory only until then).
    pub codes: Vec<(CodeHash, String)>,
}

/// Work a client hands a shard.
pub enum ClientMsg {
    Command(Command, ReplyTo),
    Query(Query, ReplyTo),
    Upload(Upload, ReplyTo),
    /// Seal this shard's issued codes again under the current key, and write `slots` (supplier
    /// codes already sealed again by the caller) to the store with them.
    Reseal(Vec<(u64, Vec<u8>)>, ReplyTo),
}

/// Cards per `CodesResealed` event, so each stays within a journal frame's size.
const RESEAL_CARDS_PER_EVENT: usize = 64;

/// Messages between shards.
pub enum PeerMsg {
    /// An order whose wallet lives here, forwarded by the order's home shard.
    Order(Box<OrderRequest>, ReplyTo),
    /// A command claimed at its home shard (a redemption) for the shard that owns its object.
    Command(Command, ReplyTo),
    /// A replicated event journaled by shard 0: apply it, do not journal it again.
    Replicate(Event),
    LendRequest {
        sku: SkuId,
        want: u64,
        from: ShardId,
        saga: OrderKey,
    },
    LendReply {
        sku: SkuId,
        ranges: Vec<event::SlotRange>,
        from: ShardId,
        saga: OrderKey,
    },
}

/// Control of the shard by the engine.
pub enum Control {
    Pause(Sender<()>),
    /// The shard's state bytes, or why they could not be encoded.
    Snapshot(Sender<(ShardId, Result<Vec<u8>, String>)>),
    Resume,
}

/// Counters shared by all shards, for quiescence before a snapshot.
#[derive(Default)]
pub struct Quiesce {
    /// Peer messages sent and not yet handled.
    pub in_flight: AtomicI64,
    /// Sagas open on any shard.
    pub open_sagas: AtomicUsize,
}

/// The channels of one shard.
#[derive(Clone)]
pub struct Mailbox {
    pub client: Sender<ClientMsg>,
    pub peer: Sender<PeerMsg>,
    pub control: Sender<Control>,
}

/// A cross-shard order waiting for stock.
struct Saga {
    req: Box<OrderRequest>,
    waiters: Vec<ReplyTo>,
    /// Peers not yet asked, in order.
    peers: VecDeque<ShardId>,
    outstanding: usize,
}

/// Where a shard looks up whether a code is already stored (supplier uploads must not repeat a
/// code). The journal's code index in production; a map in the simulator.
pub trait StoredCodes: Send {
    fn contains(&self, hash: &CodeHash) -> Result<bool, EngineError>;
}

impl StoredCodes for giftcard_wal::WalReader {
    fn contains(&self, hash: &CodeHash) -> Result<bool, EngineError> {
        self.get(&crate::index_key(hash))
            .map(|v| v.is_some())
            .map_err(|_| EngineError::Storage)
    }
}

/// One shard's logic: its state, the sagas it has open, and the bookkeeping of uploads. No
/// thread, channel, clock or disk: time is set by the driver, stored codes are looked up through
/// [`StoredCodes`], and issued codes are drawn from `code_rng`.
pub struct ShardCore {
    pub state: ShardState,
    vault: CodeVault,
    code_rng: Box<dyn RngCore + Send>,
    stored: Box<dyn StoredCodes>,
    writer_shared: Arc<WriterShared>,
    quiesce: Arc<Quiesce>,
    sagas: HashMap<OrderKey, Saga>,
    now: UnixMillis,
    /// Shard 0 only: code hashes uploaded but perhaps not yet visible in the store.
    pending_codes: VecDeque<(u64, Vec<CodeHash>)>,
    pending_set: HashSet<CodeHash>,
    upload_tickets: u64,
    fail_snapshots: Arc<AtomicBool>,
}

/// What one pass over the mailbox produced: frames and replies for the writer, then messages
/// for peers, which may only be sent after the batch is handed to the writer.
pub struct Pass {
    pub batch: WriteBatch,
    /// The frame being filled; full frames move to `batch.frames`.
    frame: giftcard_wal::FrameBuilder,
    pub out: Vec<(ShardId, PeerMsg)>,
}

impl Pass {
    /// An empty pass for `shard`, with room for `capacity` replies.
    pub fn new(shard: ShardId, capacity: usize) -> Pass {
        Pass {
            batch: WriteBatch {
                shard,
                frames: Vec::new(),
                records: 0,
                side: Vec::new(),
                replies: Vec::with_capacity(capacity),
                upload_ticket: None,
            },
            frame: giftcard_wal::FrameBuilder::new(),
            out: Vec::new(),
        }
    }

    /// The finished batch (`None` when there is nothing for the writer) and the peer messages.
    pub fn finish(self) -> (Option<WriteBatch>, Vec<(ShardId, PeerMsg)>) {
        let Pass {
            mut batch,
            frame,
            out,
        } = self;
        if !frame.is_empty() {
            batch.frames.push(frame.finish());
        }
        let work = !batch.frames.is_empty() || !batch.replies.is_empty() || !batch.side.is_empty();
        (work.then_some(batch), out)
    }
}

/// Everything a shard thread owns.
pub struct Shard {
    pub core: ShardCore,
    pub client_rx: Receiver<ClientMsg>,
    pub peer_rx: Receiver<PeerMsg>,
    pub control_rx: Receiver<Control>,
    pub peers: Vec<Mailbox>,
    pub writer: Sender<WriteMsg>,
    pub batch_max: usize,
    pub stopping: Arc<AtomicBool>,
    pub depth: Arc<AtomicUsize>,
}

impl Shard {
    /// Runs the actor until its client channel closes and peers are quiet.
    pub fn run(mut self) {
        let mut paused = false;
        loop {
            if !self.wait(paused) {
                break;
            }
            // Size the pass's vectors from what is waiting: growing vectors of large events and
            // replies by doubling was a visible share of the per-order cost.
            let waiting = (self.client_rx.len() + self.peer_rx.len()).min(self.batch_max) + 1;
            let mut pass = Pass::new(self.core.state.shard(), waiting);
            self.core.set_now(UnixMillis(wall_clock_ms()));
            if !paused {
                // A paused shard changes nothing, deadlines included: a snapshot is being taken.
                self.core.on_tick(&mut pass);
            }
            self.drain(&mut paused, &mut pass);
            self.finish(pass);
        }
    }

    /// Blocks until some mailbox has a message. False when the shard should stop.
    fn wait(&self, paused: bool) -> bool {
        if !self.peer_rx.is_empty()
            || !self.control_rx.is_empty()
            || (!paused && !self.client_rx.is_empty())
        {
            return true;
        }
        if self.stopping.load(Ordering::Acquire)
            && self.core.open_sagas() == 0
            && self.core.quiesce.in_flight.load(Ordering::Acquire) == 0
        {
            return false;
        }
        let mut sel = Select::new();
        sel.recv(&self.peer_rx);
        sel.recv(&self.control_rx);
        if !paused {
            sel.recv(&self.client_rx);
        }
        // A short timeout lets a stopping shard notice that its peers went quiet.
        let _ = sel.ready_timeout(std::time::Duration::from_millis(50));
        true
    }

    fn drain(&mut self, paused: &mut bool, pass: &mut Pass) {
        while let Ok(c) = self.control_rx.try_recv() {
            self.control(paused, c);
        }
        let mut n = 0;
        while n < self.batch_max {
            if let Ok(p) = self.peer_rx.try_recv() {
                self.core.on_peer(pass, p);
                self.core.quiesce.in_flight.fetch_sub(1, Ordering::AcqRel);
                n += 1;
                continue;
            }
            if *paused {
                break;
            }
            let Ok(msg) = self.client_rx.try_recv() else {
                break;
            };
            self.depth.fetch_sub(1, Ordering::Relaxed);
            self.core.on_client(pass, msg);
            n += 1;
        }
    }

    fn finish(&mut self, pass: Pass) {
        let (batch, out) = pass.finish();
        if let Some(batch) = batch {
            // If the writer is gone the engine is shutting down; the replies drop unanswered.
            let _ = self.writer.send(WriteMsg::Batch(batch));
        }
        for (to, msg) in out {
            self.core.quiesce.in_flight.fetch_add(1, Ordering::AcqRel);
            let _ = self.peers[usize::from(to.0)].peer.send(msg);
        }
    }

    fn control(&mut self, paused: &mut bool, c: Control) {
        match c {
            Control::Pause(ack) => {
                *paused = true;
                let _ = ack.send(());
            }
            Control::Snapshot(tx) => {
                let _ = tx.send((self.core.state.shard(), self.core.snapshot()));
            }
            Control::Resume => *paused = false,
        }
    }
}

impl ShardCore {
    /// The logic of one shard over a recovered state. Issued codes come from the OS's CSPRNG
    /// unless [`ShardCore::with_code_rng`] says otherwise.
    pub fn new(
        state: ShardState,
        vault: CodeVault,
        stored: Box<dyn StoredCodes>,
        writer_shared: Arc<WriterShared>,
        quiesce: Arc<Quiesce>,
    ) -> ShardCore {
        ShardCore {
            state,
            vault,
            code_rng: Box::new(rand::rngs::OsRng),
            stored,
            writer_shared,
            quiesce,
            sagas: HashMap::new(),
            now: UnixMillis(0),
            pending_codes: VecDeque::new(),
            pending_set: HashSet::new(),
            upload_tickets: 0,
            fail_snapshots: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Draws issued codes from `rng` (the simulator's seeded generator).
    pub fn with_code_rng(mut self, rng: Box<dyn RngCore + Send>) -> ShardCore {
        self.code_rng = rng;
        self
    }

    /// Sets the time the next decisions see; time never goes backwards.
    pub fn set_now(&mut self, now: UnixMillis) {
        self.now = UnixMillis(now.0.max(self.now.0));
    }

    /// Orders waiting here for stock from peers.
    pub fn open_sagas(&self) -> usize {
        self.sagas.len()
    }

    /// The state's canonical bytes, as snapshots store them.
    pub fn snapshot(&self) -> Result<Vec<u8>, String> {
        if self.fail_snapshots.load(Ordering::Relaxed) {
            return Err("snapshot encoding failure injected".into());
        }
        self.state.encode().map_err(|e| e.to_string())
    }

    /// Makes every later snapshot of this shard fail to encode (tests of the checkpoint's
    /// refusal to truncate).
    pub fn fail_snapshots(&self) -> Arc<AtomicBool> {
        self.fail_snapshots.clone()
    }

    fn ctx(&self) -> Ctx {
        Ctx {
            now: self.now,
            lsn: Lsn(self.state.last_lsn().0 + 1),
            shard: self.state.shard(),
        }
    }

    /// Applies and journals events decided here; replicated ones also go to every other shard.
    fn commit(&mut self, pass: &mut Pass, events: Vec<Event>) {
        for ev in events {
            let lsn = Lsn(self.state.last_lsn().0 + 1);
            self.state.apply(&ev, lsn);
            if ev.is_replicated() {
                for s in 0..self.state.shard_count() {
                    if s != self.state.shard().0 {
                        pass.out.push((ShardId(s), PeerMsg::Replicate(ev.clone())));
                    }
                }
            }
            if pass.frame.len() + 512 > giftcard_wal::FRAME_BYTES_MAX {
                pass.batch
                    .frames
                    .push(std::mem::take(&mut pass.frame).finish());
            }
            pass.frame.push_with(self.state.shard().0, lsn.0, |buf| {
                crate::codec::encode_into(buf, &ev)
            });
            pass.batch.records += 1;
        }
    }

    fn reply(pass: &mut Pass, to: ReplyTo, reply: Reply) {
        pass.batch.replies.push((to, reply));
    }

    /// Fires what is due in the state's deadline index at the current time (the driver's clock,
    /// entering as data through `Command::Tick`), and returns what fired.
    pub fn on_tick(&mut self, pass: &mut Pass) -> Vec<Deadline> {
        if self
            .state
            .deadlines()
            .next_due()
            .is_none_or(|due| due > self.now)
        {
            return Vec::new();
        }
        match self.state.decide(&Command::Tick, &self.ctx()) {
            Decision::Events(evs) => {
                let fired = evs
                    .iter()
                    .flat_map(|e| match e {
                        Event::Expired { fired, .. } => fired.clone(),
                        // A review released by its deadline.
                        Event::ReviewSettled {
                            key,
                            verdict: giftcard_core::reviews::Verdict::Expired,
                            ..
                        } => vec![Deadline::HoldExpires(key.clone())],
                        _ => Vec::new(),
                    })
                    .collect();
                self.commit(pass, evs);
                fired
            }
            _ => Vec::new(),
        }
    }

    /// Handles one message from a client.
    pub fn on_client(&mut self, pass: &mut Pass, msg: ClientMsg) {
        match msg {
            ClientMsg::Command(Command::PlaceOrder(req), to) => self.order(pass, req, to),
            ClientMsg::Command(cmd, to) => self.command(pass, cmd, to),
            ClientMsg::Query(q, to) => {
                let answer = crate::query::answer(&self.state, q);
                Self::reply(pass, to, answer.map(Outcome::Query));
            }
            ClientMsg::Upload(up, to) => {
                let r = self.upload(pass, up);
                Self::reply(pass, to, r);
            }
            ClientMsg::Reseal(slots, to) => {
                let r = self.reseal(pass, slots);
                Self::reply(pass, to, r);
            }
        }
    }

    /// Decides and answers one command (not an order), forwarding it after its claim when its
    /// object lives on another shard.
    fn command(&mut self, pass: &mut Pass, cmd: Command, to: ReplyTo) {
        let reply = match self.state.decide(&cmd, &self.ctx()) {
            Decision::Events(evs) => {
                self.commit(pass, evs.clone());
                Ok(self.moved(&cmd, evs, false))
            }
            // Released with this pass's group, so never before the original is durable.
            Decision::Answered(evs) => Ok(self.moved(&cmd, evs, true)),
            Decision::Reject(r) => {
                self.release_claim(pass, &cmd);
                Err(EngineError::Rejected(r))
            }
            Decision::Forward { claim, to: shard } if shard != self.state.shard() => {
                if let Some(c) = claim {
                    self.commit(pass, vec![c]);
                }
                pass.out.push((shard, PeerMsg::Command(cmd, to)));
                return;
            }
            other => unreachable_decision(other),
        };
        Self::reply(pass, to, reply);
    }

    /// A command's answer (call after its commit): for a deposit, a redemption or a reversal,
    /// with the wallet's or the card's balance its events left, read in the same pass.
    fn moved(&self, cmd: &Command, events: Vec<Event>, replayed: bool) -> Outcome {
        let card_after = |card: CardId| match self.state.cards().get(&card) {
            Some(c) => After::Card {
                card,
                balance: Money::new(c.balance_minor, c.face.currency()),
                status: c.status,
            },
            None => After::Nothing,
        };
        let after = match cmd {
            Command::Deposit { caller, wallet, .. } => {
                let id = self
                    .state
                    .wallets()
                    .resolve(&caller.client, caller.admin, wallet);
                After::Wallet(self.balances_of(Some(&id)))
            }
            Command::Redeem {
                caller,
                redemption_id,
                ..
            } => {
                let fresh = events.iter().find_map(|e| match e {
                    Event::Redeemed { card, .. } => Some(*card),
                    _ => None,
                });
                let recorded = || {
                    self.state
                        .cards()
                        .redemption(&caller.client, redemption_id)
                        .and_then(|r| r.outcome.as_ref().ok().map(|(card, _)| *card))
                };
                fresh.or_else(recorded).map_or(After::Nothing, card_after)
            }
            Command::ReverseRedemption { .. } => events
                .iter()
                .find_map(|e| match e {
                    Event::RedemptionReversed { card, .. } => Some(*card),
                    _ => None,
                })
                .map_or(After::Nothing, card_after),
            _ if replayed => return Outcome::Answered(events),
            _ => return Outcome::Applied(events),
        };
        Outcome::Moved {
            events,
            replayed,
            after,
        }
    }

    /// A redemption refused here without a trace, whose id was claimed at another shard (its
    /// home): the claim is let go there, so the id may be used afresh (a mistyped code). The
    /// home keeps it if another request under the id claimed it meanwhile.
    fn release_claim(&mut self, pass: &mut Pass, cmd: &Command) {
        let Command::Redeem {
            caller,
            redemption_id,
            fingerprint,
            ..
        } = cmd
        else {
            return;
        };
        let n = self.state.shard_count();
        let home = giftcard_core::placement::redemption_home(&caller.client, redemption_id, n);
        if home == self.state.shard() {
            return;
        }
        let release = Command::ReleaseRedemptionClaim {
            client: caller.client.clone(),
            redemption_id: redemption_id.clone(),
            fingerprint: *fingerprint,
        };
        pass.out
            .push((home, PeerMsg::Command(release, Box::new(|_| ()))));
    }

    /// Seals every issued code of this shard that the current key did not seal again, and
    /// writes the given supplier codes, in one pass: durable together before the reply.
    fn reseal(&mut self, pass: &mut Pass, slots: Vec<(u64, Vec<u8>)>) -> Reply {
        let mut cards = Vec::new();
        for (id, card) in self.state.cards().iter() {
            if let giftcard_core::state::CodeRef::Sealed(sealed) = &card.code {
                let place = Binding::Card(*id);
                let opened = self
                    .vault
                    .open(sealed, place)
                    .map_err(|_| EngineError::Storage)?;
                if self.vault.needs_reseal(&opened) {
                    let sealed = self
                        .vault
                        .seal_with(&mut *self.code_rng, &opened.code, place);
                    cards.push((*id, sealed));
                }
            }
        }
        cards.sort_by_key(|(id, _)| *id);
        let mut events = Vec::new();
        let mut chunks: Vec<Vec<(CardId, Vec<u8>)>> = cards
            .chunks(RESEAL_CARDS_PER_EVENT)
            .map(<[_]>::to_vec)
            .collect();
        if chunks.is_empty() && !slots.is_empty() {
            // The supplier codes need a frame to travel with.
            chunks.push(Vec::new());
        }
        for chunk in chunks {
            match self
                .state
                .decide(&Command::ResealCodes { cards: chunk }, &self.ctx())
            {
                Decision::Events(evs) => {
                    events.extend(evs.iter().cloned());
                    self.commit(pass, evs);
                }
                Decision::Reject(r) => return Err(EngineError::Rejected(r)),
                other => return unreachable_decision(other),
            }
        }
        for (slot, sealed) in slots {
            pass.batch.side.push((crate::slot_key(slot), sealed));
        }
        Ok(Outcome::Applied(events))
    }

    fn upload(&mut self, pass: &mut Pass, up: Upload) -> Reply {
        let applied = self.writer_shared.uploads_applied.load(Ordering::Acquire);
        while self
            .pending_codes
            .front()
            .is_some_and(|(t, _)| *t <= applied)
        {
            if let Some((_, hashes)) = self.pending_codes.pop_front() {
                hashes.iter().for_each(|h| {
                    self.pending_set.remove(h);
                });
            }
        }
        // Ownership first: a supplier uploading to another's SKU learns nothing about which
        // codes exist (the duplicate check below would be an oracle on everyone's codes).
        let first_slot = self.state.pools().next_slot();
        let cmd = Command::AddCodes {
            sku: up.sku.clone(),
            supplier: up.supplier,
            first_slot,
            count: up.codes.len() as u64,
            shard_count: self.state.shard_count(),
        };
        let evs = match self.state.decide(&cmd, &self.ctx()) {
            Decision::Events(evs) => evs,
            Decision::Reject(r) => return Err(EngineError::Rejected(r)),
            other => return unreachable_decision(other),
        };
        let mut seen = HashSet::with_capacity(up.codes.len());
        let mut duplicates = Vec::new();
        for (i, (hash, _)) in up.codes.iter().enumerate() {
            let stored = self.stored.contains(hash)?;
            if !seen.insert(*hash) || self.pending_set.contains(hash) || stored {
                duplicates.push(i);
            }
        }
        if !duplicates.is_empty() {
            return Err(EngineError::DuplicateCodes(duplicates));
        }
        self.upload_tickets += 1;
        pass.batch.upload_ticket = Some(self.upload_tickets);
        let mut hashes = Vec::with_capacity(up.codes.len());
        for (i, (hash, code)) in up.codes.into_iter().enumerate() {
            let slot = first_slot + i as u64;
            let sealed = self
                .vault
                .seal_with(&mut *self.code_rng, &code, Binding::Slot(slot));
            pass.batch.side.push((crate::slot_key(slot), sealed));
            pass.batch.side.push((
                crate::index_key(&hash).to_vec(),
                slot.to_be_bytes().to_vec(),
            ));
            self.pending_set.insert(hash);
            hashes.push(hash);
        }
        self.pending_codes.push_back((self.upload_tickets, hashes));
        self.commit(pass, evs.clone());
        Ok(Outcome::Applied(evs))
    }

    fn order(&mut self, pass: &mut Pass, mut req: Box<OrderRequest>, to: ReplyTo) {
        if let Some(s) = self.sagas.get_mut(&req.key) {
            // The same order is waiting for stock here: answer both when it settles.
            if s.req.fingerprint == req.fingerprint {
                s.waiters.push(to);
            } else {
                Self::reply(
                    pass,
                    to,
                    Err(EngineError::Rejected(Rejection::IdempotencyConflict)),
                );
            }
            return;
        }
        match self.decide_order(&mut req) {
            Decision::Events(evs) => {
                let reply = order_reply(&evs);
                let wallet = order_wallet(&evs);
                self.commit(pass, evs);
                let reply = self.with_balances(reply, wallet.as_ref());
                let reply = self.with_cards(reply);
                Self::reply(pass, to, reply);
            }
            Decision::Reject(r) => Self::reply(pass, to, Err(EngineError::Rejected(r))),
            Decision::Replay(outcome) => Self::reply(
                pass,
                to,
                Ok(Outcome::Order {
                    outcome,
                    replayed: true,
                    cards: Vec::new(),
                    sale: self.state.sales().get(&req.key).cloned(),
                    balances: self
                        .balances_of(self.state.orders().get(&req.key).map(|r| &r.wallet)),
                }),
            ),
            Decision::Forward { claim, to: shard } => {
                if let Some(c) = claim {
                    self.commit(pass, vec![c]);
                }
                pass.out.push((shard, PeerMsg::Order(req, to)));
            }
            Decision::NeedStock { hold, missing } => {
                self.commit(pass, vec![hold]);
                let n = self.state.shard_count();
                let me = self.state.shard().0;
                let peers: VecDeque<ShardId> = (1..n).map(|i| ShardId((me + i) % n)).collect();
                let mut saga = Saga {
                    req,
                    waiters: vec![to],
                    peers,
                    outstanding: 0,
                };
                self.quiesce.open_sagas.fetch_add(1, Ordering::AcqRel);
                self.ask_next_peer(pass, &mut saga, missing);
                self.settle_or_keep(pass, saga);
            }
            other @ (Decision::Answered(_) | Decision::NeedCodes(_)) => {
                Self::reply(pass, to, unreachable_decision(other))
            }
        }
    }

    /// Decides an order, drawing its issued cards' codes when the core asks for them (only
    /// once every check has passed), and deciding again with them.
    fn decide_order(&mut self, req: &mut OrderRequest) -> Decision {
        match self.state.decide_order(req, &self.ctx()) {
            Decision::NeedCodes(cards) if req.fresh_codes.is_empty() => {
                metrics::counter!("giftcard_codes_drawn_total").increment(cards.len() as u64);
                let (shard, count) = (self.state.shard(), self.state.shard_count());
                req.fresh_codes = cards
                    .into_iter()
                    .map(|card| {
                        self.vault
                            .generate_for_shard_with(&mut *self.code_rng, shard, count, card)
                            .1
                    })
                    .collect();
                self.state.decide_order(req, &self.ctx())
            }
            other => other,
        }
    }

    /// Asks the next peer for every missing SKU. False if no peer is left.
    fn ask_next_peer(&self, pass: &mut Pass, saga: &mut Saga, missing: Vec<(SkuId, u64)>) -> bool {
        let Some(peer) = saga.peers.pop_front() else {
            return false;
        };
        for (sku, want) in missing {
            saga.outstanding += 1;
            pass.out.push((
                peer,
                PeerMsg::LendRequest {
                    sku,
                    want,
                    from: self.state.shard(),
                    saga: saga.req.key.clone(),
                },
            ));
        }
        true
    }

    /// Keeps a saga that waits for replies, or ends it with a rejection when no peer is left.
    fn settle_or_keep(&mut self, pass: &mut Pass, mut saga: Saga) {
        if saga.outstanding > 0 {
            self.sagas.insert(saga.req.key.clone(), saga);
            return;
        }
        // Every peer was asked: an order that may be filled in part takes what there is.
        if saga.req.fulfilment == Fulfilment::FillAvailable && !saga.req.stock_final {
            saga.req.stock_final = true;
            return self.retry_saga(pass, saga);
        }
        let abort = Command::AbortOrder {
            key: saga.req.key.clone(),
            reason: Rejection::OutOfStock,
        };
        let evs = match self.state.decide(&abort, &self.ctx()) {
            Decision::Events(evs) => evs,
            _ => Vec::new(),
        };
        let reply = order_reply(&evs);
        let wallet = order_wallet(&evs);
        self.commit(pass, evs);
        let reply = self.with_balances(reply, wallet.as_ref());
        self.end_saga(pass, saga, reply);
    }

    fn end_saga(&mut self, pass: &mut Pass, saga: Saga, reply: Reply) {
        self.quiesce.open_sagas.fetch_sub(1, Ordering::AcqRel);
        let mut waiters = saga.waiters.into_iter();
        if let Some(first) = waiters.next() {
            Self::reply(pass, first, reply.clone());
        }
        for w in waiters {
            let replayed = match &reply {
                Ok(Outcome::Order {
                    outcome,
                    sale,
                    balances,
                    ..
                }) => Ok(Outcome::Order {
                    outcome: outcome.clone(),
                    replayed: true,
                    cards: Vec::new(),
                    sale: sale.clone(),
                    balances: balances.clone(),
                }),
                other => other.clone(),
            };
            Self::reply(pass, w, replayed);
        }
    }

    /// Adds the cards a fresh completion sold, read from the state the order just changed.
    fn with_cards(&self, reply: Reply) -> Reply {
        match reply {
            Ok(Outcome::Order {
                outcome:
                    outcome @ OrderOutcome::Completed {
                        first_card,
                        cards: n,
                        ..
                    },
                replayed: false,
                balances,
                ..
            }) => {
                let cards: Vec<_> = (0..u64::from(n))
                    .filter_map(|i| self.state.cards().get(&CardId(first_card.0 + i)).cloned())
                    .collect();
                // The cards' order, and so its sale.
                let sale = cards
                    .first()
                    .and_then(|c| self.state.sales().get(&c.order).cloned());
                Ok(Outcome::Order {
                    outcome,
                    replayed: false,
                    cards,
                    sale,
                    balances,
                })
            }
            other => other,
        }
    }

    /// A wallet's balances as they are now (none for a wallet not here).
    fn balances_of(
        &self,
        wallet: Option<&WalletId>,
    ) -> Vec<(Currency, giftcard_core::state::Balance)> {
        wallet
            .and_then(|w| self.state.wallets().get(w))
            .map(|w| w.balances.clone())
            .unwrap_or_default()
    }

    /// An order's reply with the balances its events left on its wallet (call after commit).
    fn with_balances(&self, reply: Reply, evs_wallet: Option<&WalletId>) -> Reply {
        match reply {
            Ok(Outcome::Order {
                outcome,
                replayed,
                cards,
                sale,
                ..
            }) => Ok(Outcome::Order {
                outcome,
                replayed,
                cards,
                sale,
                balances: self.balances_of(evs_wallet),
            }),
            other => other,
        }
    }

    /// Handles one message from a peer shard.
    pub fn on_peer(&mut self, pass: &mut Pass, msg: PeerMsg) {
        match msg {
            PeerMsg::Order(req, to) => self.order(pass, req, to),
            PeerMsg::Command(cmd, to) => self.command(pass, cmd, to),
            PeerMsg::Replicate(ev) => self.state.apply(&ev, Lsn(0)),
            PeerMsg::LendRequest {
                sku,
                want,
                from,
                saga,
            } => {
                let cmd = Command::LendStock {
                    sku: sku.clone(),
                    want,
                    to: from,
                };
                let mut ranges = Vec::new();
                if let Decision::Events(evs) = self.state.decide(&cmd, &self.ctx()) {
                    if let Some(Event::StockLent { ranges: r, .. }) = evs.first() {
                        ranges = r.clone();
                    }
                    if !ranges.is_empty() {
                        self.commit(pass, evs);
                    }
                }
                pass.out.push((
                    from,
                    PeerMsg::LendReply {
                        sku,
                        ranges,
                        from: self.state.shard(),
                        saga,
                    },
                ));
            }
            PeerMsg::LendReply {
                sku,
                ranges,
                from,
                saga,
            } => {
                if !ranges.is_empty() {
                    self.commit(pass, vec![Event::StockReceived { sku, from, ranges }]);
                }
                let Some(mut s) = self.sagas.remove(&saga) else {
                    return;
                };
                s.outstanding -= 1;
                if s.outstanding > 0 {
                    self.sagas.insert(saga, s);
                    return;
                }
                self.retry_saga(pass, s);
            }
        }
    }

    /// All replies of a round are in: complete the order, or ask the next peer.
    fn retry_saga(&mut self, pass: &mut Pass, mut saga: Saga) {
        match self.decide_order(&mut saga.req) {
            Decision::Events(evs) => {
                let reply = order_reply(&evs);
                let wallet = order_wallet(&evs);
                self.commit(pass, evs);
                let reply = self.with_balances(reply, wallet.as_ref());
                let reply = self.with_cards(reply);
                self.end_saga(pass, saga, reply);
            }
            Decision::NeedStock { missing, .. } => {
                self.ask_next_peer(pass, &mut saga, missing);
                self.settle_or_keep(pass, saga);
            }
            Decision::Reject(r) => {
                let abort = Command::AbortOrder {
                    key: saga.req.key.clone(),
                    reason: r,
                };
                if let Decision::Events(evs) = self.state.decide(&abort, &self.ctx()) {
                    self.commit(pass, evs);
                }
                self.end_saga(pass, saga, Err(EngineError::Rejected(r)));
            }
            other => {
                tracing::error!(?other, "unexpected decision for a held order");
                let reply = Err(EngineError::Internal(format!(
                    "held order decided {other:?}"
                )));
                self.end_saga(pass, saga, reply);
            }
        }
    }
}

fn unreachable_decision(d: Decision) -> Reply {
    tracing::error!(?d, "decision does not fit the command");
    Err(EngineError::Internal(format!(
        "decision does not fit the command: {d:?}"
    )))
}

/// The wallet an order's events settle against.
fn order_wallet(evs: &[Event]) -> Option<WalletId> {
    evs.iter().find_map(|e| match e {
        Event::OrderCompleted(o) => Some(o.wallet.clone()),
        Event::OrderRejected { wallet, .. } => Some(wallet.clone()),
        Event::OrderPendingReview(p) => Some(p.order.wallet.clone()),
        _ => None,
    })
}

/// The client's answer for an order from the events that settled it.
fn order_reply(evs: &[Event]) -> Reply {
    for ev in evs {
        match ev {
            Event::OrderCompleted(o) => {
                let cards = o.lines.iter().map(|l| l.quantity).sum();
                // What left the wallet: the lines and the fees charged with them.
                let outcome = OrderOutcome::Completed {
                    charged: o.total(),
                    first_card: o.first_card,
                    cards,
                };
                return Ok(Outcome::Order {
                    outcome,
                    replayed: false,
                    cards: Vec::new(),
                    sale: None,
                    balances: Vec::new(),
                });
            }
            Event::OrderPendingReview(p) => {
                return Ok(Outcome::Order {
                    outcome: OrderOutcome::PendingReview {
                        held: p.order.total(),
                        until: p.until,
                    },
                    replayed: false,
                    cards: Vec::new(),
                    sale: None,
                    balances: Vec::new(),
                })
            }
            Event::OrderRejected { reason, .. } => {
                return Ok(Outcome::Order {
                    outcome: OrderOutcome::Rejected(*reason),
                    replayed: false,
                    cards: Vec::new(),
                    sale: None,
                    balances: Vec::new(),
                })
            }
            _ => {}
        }
    }
    Err(EngineError::Internal("an order decided no outcome".into()))
}

fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Answers for read-only queries.
pub type QueryReply = Result<QueryAnswer, EngineError>;
