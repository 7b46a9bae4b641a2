//! The outbox: reads durable journal frames after the published position, turns their events
//! into messages (order outcome, one delivery per card, settlement per supplier, low stock), and
//! publishes them with stable ids as `Nats-Msg-Id` (a keyed hash of the event id, unguessable), in journal order (so in order per shard), at
//! least once. The position advances only after the broker acked every message of the frames;
//! while the broker is away the journal holds the backlog (the engine keeps frames the outbox
//! has not published), and publishing resumes where it stopped. After a crash a few frames may
//! go out again; the stream's duplicate window drops them because their ids are the same.
//!
//! A card sent again on request starts a new round (`{card}-resend-{round}`, its retries
//! `{card}-resend-{round}-retry-{attempt}`), with tokens of that round.
//! Failed deliveries are re-sent after an exponential backoff (`{card}-retry-{attempt}`). The
//! pending retries live in memory: a restart forgets them (the delivery service's next report,
//! or an operator, picks the card up; given-up cards are listed by the admin API).

use crate::seal::CodeSealer;
use crate::wire::*;
use crate::{sleep_unless, QueueConfig};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::Context;
use giftcard_core::state::{Card, Delivery};
use giftcard_core::*;
use giftcard_intake::wire::MoneyView;
use giftcard_shard::{Engine, EngineError, JournalFrame, Query, QueryAnswer};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One message to publish.
#[derive(Clone, Debug)]
pub struct OutMsg {
    pub subject: String,
    pub id: String,
    pub payload: Vec<u8>,
}

/// A failed card's delivery to re-send at `due_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Retry {
    due_ms: u64,
    card: CardId,
    /// The failed attempt this retry follows.
    failed_attempt: u8,
    shard: ShardId,
    lsn: Lsn,
}

/// What the outbox remembers between passes (moved into blocking work and back).
#[derive(Default)]
struct Memory {
    /// SKUs last seen below the low-stock threshold: one event per fall, not per sale.
    low: HashMap<SkuId, bool>,
}

/// Publishes until `stop`, then once more what is durable (if the broker is there).
pub async fn run(js: Context, engine: Arc<Engine>, cfg: Arc<QueueConfig>, stop: Arc<AtomicBool>) {
    let sealer =
        match CodeSealer::from_config(&cfg.delivery_public_key, cfg.delivery_codes_in_clear) {
            Ok(s) => s,
            Err(e) => {
                // Checked when the adapter started; reaching this is a bug, and nothing is published.
                tracing::error!(error = %e, "the outbox cannot seal codes; it publishes nothing");
                return;
            }
        };
    let mut cursor = engine.outbox_cursor();
    let mut memory = Memory::default();
    let mut retries: BinaryHeap<Reverse<Retry>> = BinaryHeap::new();
    // An earlier process kept its scheduled retries in memory only; the engine knows which cards
    // are still being retried, so their next attempts are scheduled again. (One the earlier
    // process already sent carries the same id and is dropped by the broker's duplicate window.)
    let e = engine.clone();
    let limit = cfg.delivery_retries_pending_max.max(1);
    match tokio::task::spawn_blocking(move || e.ask(Query::RetryingDeliveries { limit })).await {
        Ok(Ok(QueryAnswer::CardList(cards))) => {
            let now = now_ms();
            for (card, c) in cards {
                let Delivery::Pending { failures } = c.delivery else {
                    continue;
                };
                retries.push(Reverse(Retry {
                    due_ms: now + cfg.retry_delay_ms(failures),
                    card,
                    failed_attempt: failures,
                    shard: card.shard(),
                    lsn: Lsn(0),
                }));
            }
            if !retries.is_empty() {
                tracing::info!(cards = retries.len(), "delivery retries scheduled again");
            }
        }
        other => tracing::error!(?other, "cannot list the deliveries being retried"),
    }
    let mut idle = 0u32;
    loop {
        let stopping = stop.load(Ordering::Acquire);
        publish_due_retries(&js, &engine, &cfg, &sealer, &mut retries, &stop).await;
        let (e, max) = (engine.clone(), cfg.outbox_frames_max.max(1));
        let frames = match tokio::task::spawn_blocking(move || e.journal_after(cursor, max)).await {
            Ok(Ok(f)) => f,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "outbox cannot read the journal");
                if stopping || sleep_unless(&stop, Duration::from_secs(1)).await {
                    break;
                }
                continue;
            }
            Err(_) => break,
        };
        let Some(last) = frames.last().map(|f| f.seq) else {
            if stopping {
                break;
            }
            // Idle: poll more slowly the longer nothing comes (1 ms up to 10 ms).
            idle = (idle + 1).min(10);
            tokio::time::sleep(Duration::from_millis(u64::from(idle))).await;
            continue;
        };
        idle = 0;
        let (e, c, s) = (engine.clone(), cfg.clone(), sealer.clone());
        let built = tokio::task::spawn_blocking(move || {
            let mut memory = memory;
            let r = build(&e, &c, &s, &frames, &mut memory);
            (r, memory)
        })
        .await;
        let Ok((built, back)) = built else { break };
        memory = back;
        let (messages, new_retries) = match built {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "outbox cannot read what it publishes; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if !publish_all(&js, &messages, &stop).await {
            break;
        }
        cursor = last;
        if let Err(e) = engine.set_outbox_cursor(cursor) {
            tracing::error!(error = %e, "cannot store the outbox position");
        }
        metrics::counter!("giftcard_queue_events_published_total").increment(messages.len() as u64);
        for r in new_retries {
            retries.push(Reverse(r));
        }
        while retries.len() > cfg.delivery_retries_pending_max.max(1) {
            // Bounded: the earliest retry goes out now rather than the heap growing.
            if let Some(Reverse(mut r)) = retries.pop() {
                r.due_ms = 0;
                let _ = publish_retry(&js, &engine, &sealer, r).await;
            }
        }
    }
}

/// Publishes in order and waits for every ack; on failure waits and starts over with the same
/// messages (the broker drops the ones it already has). False when stopped before success.
async fn publish_all(js: &Context, messages: &[OutMsg], stop: &AtomicBool) -> bool {
    let mut delay = Duration::from_millis(100);
    loop {
        match try_publish(js, messages).await {
            Ok(()) => return true,
            Err(e) => {
                tracing::warn!(error = %e, "outbox publish failed; the journal keeps the backlog");
                metrics::counter!("giftcard_queue_publish_failures_total").increment(1);
                if sleep_unless(stop, delay).await {
                    return false;
                }
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Acks outstanding at once: the client's ack permits are bounded (5000 by default), so a
/// frame of a huge bulk order must not take them all before awaiting any.
const PUBLISH_WINDOW: usize = 1_024;

async fn try_publish(js: &Context, messages: &[OutMsg]) -> Result<(), String> {
    let mut acks: std::collections::VecDeque<async_nats::jetstream::context::PublishAckFuture> =
        std::collections::VecDeque::with_capacity(PUBLISH_WINDOW);
    for m in messages {
        if acks.len() >= PUBLISH_WINDOW {
            if let Some(ack) = acks.pop_front() {
                ack.await.map_err(|e| e.to_string())?;
            }
        }
        let ack = js
            .send_publish(
                m.subject.clone(),
                PublishMessage::build()
                    .payload(m.payload.clone().into())
                    .message_id(&m.id),
            )
            .await
            .map_err(|e| e.to_string())?;
        acks.push_back(ack);
    }
    for ack in acks {
        ack.await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

async fn publish_due_retries(
    js: &Context,
    engine: &Arc<Engine>,
    cfg: &QueueConfig,
    sealer: &CodeSealer,
    retries: &mut BinaryHeap<Reverse<Retry>>,
    stop: &AtomicBool,
) {
    let now = now_ms();
    while let Some(Reverse(r)) = retries.peek().copied() {
        if r.due_ms > now || stop.load(Ordering::Acquire) {
            return;
        }
        retries.pop();
        if let Err(e) = publish_retry(js, engine, sealer, r).await {
            tracing::warn!(error = %e, card = r.card.0, "delivery retry failed; trying again later");
            retries.push(Reverse(Retry {
                due_ms: now + cfg.delivery_backoff_ms.max(100),
                ..r
            }));
            return;
        }
    }
}

async fn publish_retry(
    js: &Context,
    engine: &Arc<Engine>,
    sealer: &CodeSealer,
    r: Retry,
) -> Result<(), String> {
    let (e, s) = (engine.clone(), sealer.clone());
    let msg = tokio::task::spawn_blocking(move || retry_message(&e, &s, r))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    match msg {
        Some(m) => try_publish(js, &[m]).await,
        None => Ok(()),
    }
}

/// The delivery event re-sent for a failed card, unless its delivery is settled meanwhile.
fn retry_message(
    engine: &Engine,
    sealer: &CodeSealer,
    r: Retry,
) -> Result<Option<OutMsg>, EngineError> {
    let attempt = r.failed_attempt.saturating_add(1);
    let Some((round, channel, mut ev)) = pending_delivery(engine, sealer, r.card, attempt)? else {
        return Ok(None);
    };
    ev.event_id = match round {
        0 => format!("{}-retry-{}", r.card.0, r.failed_attempt),
        n => format!("{}-resend-{n}-retry-{}", r.card.0, r.failed_attempt),
    };
    ev.shard = r.shard.0;
    ev.lsn = r.lsn.0;
    let id = engine.vault().message_id(&ev.event_id);
    Ok(Some(out(format!("giftcard.delivery.{channel}"), &id, &ev)))
}

/// The delivery event of `attempt` in the card's current round, if its delivery is pending
/// (not settled, not given up) and its order named a channel: (round, channel, event).
fn pending_delivery(
    engine: &Engine,
    sealer: &CodeSealer,
    card_id: CardId,
    attempt: u8,
) -> Result<Option<(u8, &'static str, DeliveryEvent)>, EngineError> {
    let QueryAnswer::CardDelivery(card, round) =
        ask(engine, Query::CardDelivery { card: card_id })?
    else {
        return Ok(None);
    };
    if !matches!(card.delivery, Delivery::Pending { .. }) {
        return Ok(None);
    }
    let QueryAnswer::Order(order) = ask(
        engine,
        Query::Order {
            key: card.order.clone(),
        },
    )?
    else {
        return Ok(None);
    };
    let Some(channel) = channel_name(order.channel) else {
        return Ok(None);
    };
    let mut ev = delivery_event(engine, sealer, card_id, &card, channel, &order.recipient)?;
    ev.attempt = attempt;
    ev.round = round;
    ev.report_token = engine.vault().report_token(card_id.0, round, attempt);
    Ok(Some((round, channel, ev)))
}

/// The first attempt of a resend's round, unless the card was sent again since (that round's
/// own event goes out) or its delivery is no longer pending.
fn resend_message(
    engine: &Engine,
    sealer: &CodeSealer,
    (card, round): (CardId, u8),
    (shard, lsn): (ShardId, Lsn),
) -> Result<Option<OutMsg>, EngineError> {
    let Some((now_round, channel, mut ev)) = pending_delivery(engine, sealer, card, 1)? else {
        return Ok(None);
    };
    if now_round != round {
        return Ok(None);
    }
    ev.event_id = format!("{}-resend-{round}", card.0);
    ev.shard = shard.0;
    ev.lsn = lsn.0;
    // Ids are hashed with the rest of the frame's messages.
    Ok(Some(out(
        format!("giftcard.delivery.{channel}"),
        &ev.event_id,
        &ev,
    )))
}

/// Turns frames into messages (in journal order) and the retries their reports ask for.
fn build(
    engine: &Engine,
    cfg: &QueueConfig,
    sealer: &CodeSealer,
    frames: &[JournalFrame],
    memory: &mut Memory,
) -> Result<(Vec<OutMsg>, Vec<Retry>), EngineError> {
    let mut msgs = Vec::new();
    let mut retries = Vec::new();
    for frame in frames {
        // The last sale of each SKU in this frame, where a low-stock event is attached.
        let mut sold: Vec<(SkuId, ShardId, Lsn)> = Vec::new();
        for (shard, lsn, event) in &frame.events {
            match event {
                Event::OrderCompleted(o) => {
                    completed(engine, sealer, *shard, *lsn, o, &mut msgs)?;
                    for line in &o.lines {
                        match sold.iter_mut().find(|(s, _, _)| *s == line.sku) {
                            Some(e) => *e = (line.sku.clone(), *shard, *lsn),
                            None => sold.push((line.sku.clone(), *shard, *lsn)),
                        }
                    }
                }
                Event::OrderRejected {
                    key,
                    wallet,
                    reason,
                    ..
                } => {
                    let ev = OrderRejectedEvent {
                        head: order_head((*shard, *lsn), key, wallet),
                        reason: reason.code().to_owned(),
                    };
                    msgs.push(out(
                        "giftcard.order.rejected".into(),
                        &ev.head.event_id,
                        &ev,
                    ));
                }
                Event::SettlementClosed { period_id, dues } => {
                    settlement(engine, *shard, *lsn, period_id, dues, &mut msgs)
                }
                Event::RiskScored { key, wallet, score } => {
                    let ev = OrderRiskEvent {
                        head: order_head((*shard, *lsn), key, wallet),
                        score: score.score,
                        reasons: score.reasons.iter().map(|r| r.code().to_owned()).collect(),
                        scored_at_ms: score.at.0,
                    };
                    msgs.push(out(
                        "giftcard.order.risk_scored".into(),
                        &ev.head.event_id,
                        &ev,
                    ));
                }
                Event::OrderPendingReview(p) => {
                    let o = &p.order;
                    let ev = OrderPendingReviewEvent {
                        head: order_head((*shard, *lsn), &o.key, &o.wallet),
                        cause: p.cause.code().to_owned(),
                        held: MoneyView::of(o.total()),
                        cards: o.lines.iter().map(|l| l.quantity).sum(),
                        score: p.score.as_ref().map(|s| s.score),
                        expires_at_ms: p.until.0,
                    };
                    msgs.push(out(
                        "giftcard.order.pending_review".into(),
                        &ev.head.event_id,
                        &ev,
                    ));
                }
                Event::ReviewSettled {
                    key,
                    wallet,
                    verdict,
                    by,
                    at,
                } => {
                    let ev = OrderReviewSettledEvent {
                        head: order_head((*shard, *lsn), key, wallet),
                        by: by.as_ref().map(|c| c.as_str().to_owned()),
                        settled_at_ms: at.0,
                    };
                    msgs.push(out(
                        format!("giftcard.order.{}", verdict.code()),
                        &ev.head.event_id,
                        &ev,
                    ));
                }
                Event::CardCancelled {
                    card,
                    order,
                    wallet,
                    refund,
                    by,
                    at,
                    ..
                } => {
                    let ev = CardCancelledEvent {
                        head: order_head((*shard, *lsn), order, wallet),
                        card_id: card.0.to_string(),
                        refund: MoneyView::of(*refund),
                        by: by.as_str().to_owned(),
                        cancelled_at_ms: at.0,
                    };
                    msgs.push(out(
                        "giftcard.order.card_cancelled".into(),
                        &ev.head.event_id,
                        &ev,
                    ));
                }
                Event::DeliveryResent { card, round, .. } => {
                    if let Some(m) =
                        resend_message(engine, sealer, (*card, *round), (*shard, *lsn))?
                    {
                        msgs.push(m);
                    }
                }
                Event::DeliveryReported {
                    card,
                    delivered: false,
                    attempt,
                    gave_up: false,
                } => retries.push(Retry {
                    due_ms: now_ms() + cfg.retry_delay_ms(*attempt),
                    card: *card,
                    failed_attempt: *attempt,
                    shard: *shard,
                    lsn: *lsn,
                }),
                _ => {}
            }
        }
        if cfg.low_stock_threshold > 0 {
            for (sku, shard, lsn) in sold {
                low_stock(engine, cfg, memory, sku, shard, lsn, &mut msgs)?;
            }
        }
    }
    for m in &mut msgs {
        m.id = engine.vault().message_id(&m.id);
    }
    Ok((msgs, retries))
}

/// The head of an event about one order journaled at (shard, lsn).
fn order_head((shard, lsn): (ShardId, Lsn), key: &OrderKey, wallet: &WalletId) -> OrderEventHead {
    OrderEventHead {
        event_id: format!("{}-{}", shard.0, lsn.0),
        shard: shard.0,
        lsn: lsn.0,
        client: key.client.as_str().to_owned(),
        order_id: key.order_id.as_str().to_owned(),
        // As the client named it (its namespace is the event's client).
        wallet_id: wallet.named_by(&key.client).to_owned(),
    }
}

fn completed(
    engine: &Engine,
    sealer: &CodeSealer,
    shard: ShardId,
    lsn: Lsn,
    o: &CompletedOrder,
    msgs: &mut Vec<OutMsg>,
) -> Result<(), EngineError> {
    let count: u64 = o.lines.iter().map(|l| u64::from(l.quantity)).sum();
    let channel = channel_name(o.channel);
    let ev = OrderCompletedEvent {
        event_id: format!("{}-{}", shard.0, lsn.0),
        shard: shard.0,
        lsn: lsn.0,
        client: o.key.client.as_str().to_owned(),
        order_id: o.key.order_id.as_str().to_owned(),
        wallet_id: o.wallet.named_by(&o.key.client).to_owned(),
        charged: MoneyView::of(o.total()),
        fees: giftcard_intake::orders::fee_views(&o.fees),
        first_card_id: o.first_card.0.to_string(),
        card_count: count,
        lines: o
            .lines
            .iter()
            .map(|l| LineEvent {
                sku_id: l.sku.as_str().to_owned(),
                supplier_id: l.supplier.as_str().to_owned(),
                quantity: l.quantity,
                face_value: MoneyView::of(l.face),
                unit_price: MoneyView::of(l.unit_price),
                charged: MoneyView::of(l.charged),
            })
            .collect(),
        channel: channel.unwrap_or("none").to_owned(),
        at_ms: o.at.0,
    };
    msgs.push(out("giftcard.order.completed".into(), &ev.event_id, &ev));
    let Some(channel) = channel else {
        return Ok(());
    };
    let QueryAnswer::Cards(cards) = ask(
        engine,
        Query::Cards {
            first: o.first_card,
            count: count as u32,
        },
    )?
    else {
        return Err(EngineError::Storage);
    };
    for (i, card) in cards.iter().enumerate() {
        let id = CardId(o.first_card.0 + i as u64);
        let mut ev = delivery_event(engine, sealer, id, card, channel, &o.recipient)?;
        ev.event_id = format!("{}-{}-{i}", shard.0, lsn.0);
        ev.shard = shard.0;
        ev.lsn = lsn.0;
        ev.batch_index = i as u64;
        ev.batch_count = count;
        msgs.push(out(
            format!("giftcard.delivery.{channel}"),
            &ev.event_id,
            &ev,
        ));
    }
    Ok(())
}

fn delivery_event(
    engine: &Engine,
    sealer: &CodeSealer,
    id: CardId,
    card: &Card,
    channel: &str,
    recipient: &str,
) -> Result<DeliveryEvent, EngineError> {
    let code = sealer
        .field(engine.reveal(id, card)?)
        .map_err(|e| EngineError::Internal(e.to_string()))?;
    Ok(DeliveryEvent {
        event_id: String::new(),
        shard: 0,
        lsn: 0,
        client: card.order.client.as_str().to_owned(),
        order_id: card.order.order_id.as_str().to_owned(),
        card_id: id.0.to_string(),
        sku_id: card.sku.as_str().to_owned(),
        code: code.code,
        sealed_code: code.sealed_code,
        face_value: MoneyView::of(card.face),
        channel: channel.to_owned(),
        recipient: recipient.to_owned(),
        batch_index: 0,
        batch_count: 1,
        attempt: 1,
        round: 0,
        report_token: engine.vault().report_token(id.0, 0, 1),
    })
}

fn settlement(
    engine: &Engine,
    shard: ShardId,
    lsn: Lsn,
    period_id: &RequestId,
    dues: &[(SupplierId, SupplierDue)],
    msgs: &mut Vec<OutMsg>,
) {
    for (supplier, due) in dues {
        let ev = SettlementEvent {
            event_id: format!("{}-{}-{}", shard.0, lsn.0, supplier.as_str()),
            shard: shard.0,
            shard_count: engine.shard_count(),
            lsn: lsn.0,
            period_id: period_id.as_str().to_owned(),
            supplier_id: supplier.as_str().to_owned(),
            cards: due.cards,
            owed: due
                .owed
                .iter()
                .map(|(c, minor)| MoneyView::of(Money::new(*minor, *c)))
                .collect(),
            orders: due
                .orders
                .iter()
                .map(|k| OrderRefEvent {
                    client: k.client.as_str().to_owned(),
                    order_id: k.order_id.as_str().to_owned(),
                })
                .collect(),
        };
        let subject = format!("giftcard.settlement.{}", supplier.as_str());
        msgs.push(out(subject, &ev.event_id, &ev));
    }
}

fn low_stock(
    engine: &Engine,
    cfg: &QueueConfig,
    memory: &mut Memory,
    sku: SkuId,
    shard: ShardId,
    lsn: Lsn,
    msgs: &mut Vec<OutMsg>,
) -> Result<(), EngineError> {
    let QueryAnswer::Stock { available, .. } = ask(engine, Query::Stock { sku: sku.clone() })?
    else {
        return Err(EngineError::Storage);
    };
    let low = available < cfg.low_stock_threshold;
    let was_low = memory.low.insert(sku.clone(), low).unwrap_or(false);
    if low && !was_low {
        let ev = LowStockEvent {
            event_id: format!("lowstock-{}-{}-{}", shard.0, lsn.0, sku.as_str()),
            shard: shard.0,
            lsn: lsn.0,
            sku_id: sku.as_str().to_owned(),
            available,
            threshold: cfg.low_stock_threshold,
        };
        msgs.push(out(
            "giftcard.inventory.low_stock".into(),
            &ev.event_id,
            &ev,
        ));
    }
    Ok(())
}

/// A blocking query that waits out a short overload (the engine-call retry policy) instead of
/// failing the pass.
fn ask(engine: &Engine, q: Query) -> Result<QueryAnswer, EngineError> {
    giftcard_intake::call::retrying_blocking(|| engine.ask(q.clone()))
}

fn out<T: serde::Serialize>(subject: String, id: &str, ev: &T) -> OutMsg {
    OutMsg {
        subject,
        id: id.to_owned(),
        // Serializing these plain structs cannot fail.
        payload: serde_json::to_vec(ev).unwrap_or_default(),
    }
}

fn channel_name(c: DeliveryChannel) -> Option<&'static str> {
    match c {
        DeliveryChannel::Email => Some("email"),
        DeliveryChannel::Sms => Some("sms"),
        DeliveryChannel::Webhook => Some("webhook"),
        DeliveryChannel::None => None,
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
