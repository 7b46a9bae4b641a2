//! Orders in: a durable pull consumer on `GIFTCARD_ORDERS`. Each message's order goes through the
//! same validation and engine command as `POST /v1/orders` (same fingerprint, so the same order
//! id and body over HTTP and NATS is one order). A message is acked only after the engine's
//! durable reply and its result (stored in `GIFTCARD_RESULTS` unless `store_results` is off);
//! a redelivery or duplicate replays the recorded outcome and changes nothing. Poison messages
//! get an `invalid` result and are terminated.
//!
//! Backpressure: at most `orders_inflight_max` messages are taken and unacked; past that the
//! consumer stops pulling. An overloaded engine gets the message back (nak with delay) and the
//! consumer pauses before pulling again, so nothing is buffered without bound.

use crate::streams::{ORDERS_STREAM, ORDERS_SUBJECTS};
use crate::wire::OrderResult;
use crate::{sleep_unless, until_stopped, QueueConfig};
use async_nats::jetstream::consumer::{pull, AckPolicy};
use async_nats::jetstream::message::{AckKind, PublishMessage};
use async_nats::jetstream::{Context, Message};
use futures::StreamExt;
use giftcard_core::{Caller, ClientId};
use giftcard_intake::error::{problem_of, ApiError};
use giftcard_intake::orders::{check_amounts, order_request, AmountCheck, OrderAnswer};
use giftcard_intake::wire::{MoneyView, OrderRequestDto};
use giftcard_shard::{Engine, EngineError};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

const SUBJECT_PREFIX: &str = "giftcard.orders.";
/// The headers an order's signature travels in: the signature, and the Unix seconds it was
/// made at (signed with it, so a captured order cannot be replayed once its rejection is
/// forgotten and its id free again).
pub const SIGNATURE_HEADER: &str = "Giftcard-Signature";
pub const TIMESTAMP_HEADER: &str = "Giftcard-Timestamp";

/// The clients whose orders must be signed, with their secrets.
pub struct Signers {
    by_client: std::collections::HashMap<String, Vec<giftcard_intake::signature::Secret>>,
    required: bool,
    tolerance_s: i64,
}

impl Signers {
    /// Parses `nats.order_signers`; a malformed secret is a configuration error.
    pub fn from_config(cfg: &QueueConfig) -> Result<Signers, String> {
        let mut by_client = std::collections::HashMap::new();
        for s in &cfg.order_signers {
            if s.secrets.is_empty() || s.secrets.len() > 2 {
                return Err(format!(
                    "order signer {} needs one or two secrets",
                    s.client
                ));
            }
            let secrets = giftcard_intake::signature::Secret::parse_list(&s.secrets)
                .map_err(|e| format!("order signer {}: {e}", s.client))?;
            by_client.insert(s.client.clone(), secrets);
        }
        if !(1..=86_400).contains(&cfg.order_signature_tolerance_s) {
            return Err("nats.order_signature_tolerance_s must be 1 to 86400".into());
        }
        Ok(Signers {
            by_client,
            required: cfg.order_signatures_required,
            tolerance_s: cfg.order_signature_tolerance_s,
        })
    }

    /// Whether a message on `subject` for `client` may be taken: signed by the client when it
    /// has secrets (or when every order must be signed).
    fn check(&self, client: &str, subject: &str, msg: &Message) -> Result<(), ApiError> {
        let Some(secrets) = self.by_client.get(client) else {
            return if self.required {
                Err(ApiError::InvalidSignature(
                    "orders must be signed and this client has no signing secret",
                ))
            } else {
                Ok(())
            };
        };
        let header = |name: &str, missing: &'static str| {
            msg.headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.as_str())
                .ok_or(ApiError::InvalidSignature(missing))
        };
        let signature = header(SIGNATURE_HEADER, "the Giftcard-Signature header is missing")?;
        let timestamp = header(TIMESTAMP_HEADER, "the Giftcard-Timestamp header is missing")?;
        let now_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        giftcard_intake::signature::verify(
            secrets,
            subject,
            timestamp,
            signature,
            &msg.payload,
            now_s,
            self.tolerance_s,
        )
        .map_err(|r| {
            ApiError::InvalidSignature(match r {
                giftcard_intake::signature::Refusal::Stale => {
                    "Giftcard-Timestamp is outside the tolerance"
                }
                _ => "no signature matches",
            })
        })
    }
}
/// How long an overloaded engine's message waits before redelivery, and the consumer before
/// pulling again.
const OVERLOAD_PAUSE: Duration = Duration::from_millis(200);

/// What to do with a message once handled.
enum Settle {
    /// Result published (stored, when results are stored): ack (the outcome is durable).
    Ack,
    /// The message itself is wrong: terminate it, never redeliver.
    Term,
    /// Try again later (engine overloaded or stopping, broker refused the result).
    Retry,
}

/// Pulls and handles orders until `stop`.
pub async fn run(
    js: Context,
    engine: Arc<Engine>,
    cfg: Arc<QueueConfig>,
    signers: Arc<Signers>,
    stop: Arc<AtomicBool>,
) {
    let inflight = Arc::new(Semaphore::new(cfg.orders_inflight_max.max(1)));
    let paused_until = Arc::new(AtomicU64::new(0));
    while !stop.load(Ordering::Acquire) {
        let mut messages = match until_stopped(&stop, subscribe(&js, &cfg)).await {
            None => break,
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "order consumer unavailable; retrying");
                if sleep_unless(&stop, Duration::from_secs(1)).await {
                    break;
                }
                continue;
            }
        };
        loop {
            if stop.load(Ordering::Acquire) {
                break;
            }
            // Backpressure: no permit, no pull.
            let Ok(permit) = inflight.clone().acquire_owned().await else {
                break;
            };
            let pause = paused_until
                .load(Ordering::Acquire)
                .saturating_sub(now_ms());
            if pause > 0 {
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            let next = tokio::time::timeout(Duration::from_millis(250), messages.next()).await;
            let msg = match next {
                Err(_) => continue,
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    tracing::debug!(error = %e, "order stream hiccup");
                    continue;
                }
                Ok(Some(Ok(m))) => m,
            };
            let (js, engine, paused) = (js.clone(), engine.clone(), paused_until.clone());
            let store = cfg.store_results;
            let signers = signers.clone();
            tokio::spawn(async move {
                handle(&js, &engine, &signers, store, &msg, &paused).await;
                drop(permit);
            });
        }
    }
    // Let in-flight orders finish (their acks) before the runtime goes.
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        inflight.acquire_many(cfg.orders_inflight_max.max(1) as u32),
    )
    .await;
}

async fn subscribe(js: &Context, cfg: &QueueConfig) -> Result<pull::Stream, String> {
    let stream = js
        .get_stream(ORDERS_STREAM)
        .await
        .map_err(|e| e.to_string())?;
    let consumer = stream
        .get_or_create_consumer(
            &cfg.consumer_name,
            pull::Config {
                durable_name: Some(cfg.consumer_name.clone()),
                filter_subject: ORDERS_SUBJECTS.into(),
                ack_policy: AckPolicy::Explicit,
                ack_wait: Duration::from_secs(cfg.ack_wait_s.max(1)),
                max_ack_pending: (cfg.orders_inflight_max + cfg.consumer_batch_max) as i64,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    consumer
        .stream()
        .max_messages_per_batch(cfg.consumer_batch_max.max(1))
        .expires(Duration::from_secs(5))
        .heartbeat(Duration::from_secs(2))
        .messages()
        .await
        .map_err(|e| e.to_string())
}

/// How a message whose engine call failed is settled. A storage failure, a stopping engine or a
/// full mailbox may pass, so the message comes back later; a bug in the engine meets the same bug
/// on every delivery, so the message is terminated (and logged) instead of redelivered for ever.
fn settle_failed(e: &EngineError, seq: u64) -> Settle {
    match e {
        EngineError::Internal(why) => {
            tracing::error!(seq, error = %why, "internal engine error; the order message is terminated");
            metrics::counter!("giftcard_queue_orders_total", "outcome" => "internal").increment(1);
            Settle::Term
        }
        _ => Settle::Retry,
    }
}

async fn handle(
    js: &Context,
    engine: &Engine,
    signers: &Signers,
    store: bool,
    msg: &Message,
    paused_until: &AtomicU64,
) {
    let seq = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
    let settle = match decide(engine, signers, msg, seq).await {
        Err(EngineError::Overloaded) => {
            paused_until.store(
                now_ms() + OVERLOAD_PAUSE.as_millis() as u64,
                Ordering::Release,
            );
            metrics::counter!("giftcard_queue_orders_total", "outcome" => "overloaded")
                .increment(1);
            Settle::Retry
        }
        Err(e) => settle_failed(&e, seq),
        Ok((client, result, id, term)) => {
            match publish_result(js, store, &client, &result, &id).await {
                Ok(()) => {
                    metrics::counter!("giftcard_queue_orders_total", "outcome" => result.status.clone())
                    .increment(1);
                    if term {
                        Settle::Term
                    } else {
                        Settle::Ack
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot publish an order result; the order is redelivered");
                    Settle::Retry
                }
            }
        }
    };
    let acked = match settle {
        Settle::Ack => msg.double_ack().await,
        Settle::Term => msg.ack_with(AckKind::Term).await,
        Settle::Retry => msg.ack_with(AckKind::Nak(Some(OVERLOAD_PAUSE))).await,
    };
    if let Err(e) = acked {
        // The broker redelivers after ack_wait; the engine replays the recorded outcome then.
        tracing::debug!(error = %e, seq, "ack not confirmed");
    }
}

/// The result of one message: (client, result, result id, terminate), or an engine failure to
/// retry on.
async fn decide(
    engine: &Engine,
    signers: &Signers,
    msg: &Message,
    seq: u64,
) -> Result<(String, OrderResult, String, bool), EngineError> {
    let client = msg
        .subject
        .as_str()
        .strip_prefix(SUBJECT_PREFIX)
        .unwrap_or("")
        .to_owned();
    let invalid = |client: &str, order_id: Option<String>, e: ApiError| {
        metrics::counter!("giftcard_queue_orders_total", "outcome" => "invalid").increment(1);
        (
            client.to_owned(),
            OrderResult {
                client: client.to_owned(),
                order_id,
                status: "invalid".into(),
                reason: None,
                charged: None,
                first_card_id: None,
                card_count: 0,
                replayed: false,
                problem: Some(problem_of(&e)),
                economics: None,
                balances: None,
            },
            format!("invalid-{seq}"),
            true,
        )
    };
    let checked = giftcard_intake::input::id("subject client", &client).and_then(|c| {
        // Results go to `giftcard.results.{client}`, which must be a valid subject too.
        if c.split('.').any(str::is_empty) {
            Err(ApiError::invalid(
                "invalid_id",
                "subject client",
                "the client in the subject has an empty token",
            ))
        } else {
            Ok(c)
        }
    });
    if let Err(e) = checked {
        // No client to answer: the result goes to `giftcard.results._invalid` for operators.
        return Ok(invalid("_invalid", None, e));
    }
    // Before anything is parsed: an unsigned or forged order of a signing client is refused.
    if let Err(e) = signers.check(&client, msg.subject.as_str(), msg) {
        return Ok(invalid(&client, None, e));
    }
    let dto: OrderRequestDto = match giftcard_intake::input::json(&msg.payload) {
        Ok(d) => d,
        Err(e) => return Ok(invalid(&client, None, e)),
    };
    let who = Caller {
        client: ClientId::new(&client),
        admin: false,
    };
    let order_id = dto.order_id.clone();
    let req = match order_request(&who, &dto, "") {
        Ok(r) => r,
        Err(e) => return Ok(invalid(&client, Some(order_id), e)),
    };
    match check_amounts(engine, [(&dto, String::new())]).await {
        Ok(()) => {}
        Err(AmountCheck::Invalid(e)) => return Ok(invalid(&client, Some(order_id), e)),
        // The catalog could not be read: the message comes back later (or, for a bug, is
        // terminated), never answered as an invalid order.
        Err(AmountCheck::Engine(e)) => return Err(e),
    }
    let mut result = OrderResult {
        client: client.clone(),
        order_id: Some(order_id.clone()),
        status: "rejected".into(),
        reason: None,
        charged: None,
        first_card_id: None,
        card_count: 0,
        replayed: false,
        problem: None,
        economics: None,
        balances: None,
    };
    match giftcard_intake::orders::place(engine, req).await {
        Ok(answer) => {
            result.replayed = answer.replayed();
            match answer {
                OrderAnswer::Completed {
                    charged,
                    first_card,
                    cards,
                    sale,
                    balances,
                    ..
                } => {
                    result.balances = Some(giftcard_intake::orders::balance_views(&balances));
                    result.status = "completed".into();
                    result.economics = sale.as_deref().map(giftcard_intake::orders::economics);
                    result.charged = Some(MoneyView::of(charged));
                    result.first_card_id = Some(first_card.0.to_string());
                    result.card_count = cards;
                }
                OrderAnswer::Rejected {
                    reason, balances, ..
                } => {
                    result.balances = Some(giftcard_intake::orders::balance_views(&balances));
                    result.reason = Some(reason.code().to_owned())
                }
                // Held for review: its outcome follows as giftcard.order.approved,
                // .review_rejected or .review_expired.
                OrderAnswer::PendingReview { balances, .. } => {
                    result.balances = Some(giftcard_intake::orders::balance_views(&balances));
                    result.status = "pending_review".into();
                }
            }
            // One id per order: a redelivery's result is the same message, dropped by the broker.
            let id = format!("result-{client}-{order_id}");
            Ok((client, result, id, false))
        }
        Err(EngineError::Rejected(r)) => {
            // Refused without being recorded (e.g. the key was used with another body): a final
            // answer for this message, keyed by the message so it does not shadow the order's.
            result.reason = Some(r.code().to_owned());
            let e = ApiError::Rejected(r, Some(order_id));
            result.problem = Some(problem_of(&e));
            Ok((client, result, format!("refused-{seq}"), false))
        }
        Err(e) => Err(e),
    }
}

/// Publishes an order's result: stored in `GIFTCARD_RESULTS` (the broker's ack awaited), or on
/// core NATS when results are not stored. A core publish is sent on the same connection before
/// the order's ack, so a subscribed client sees the result before the broker forgets the order.
async fn publish_result(
    js: &Context,
    store: bool,
    client: &str,
    result: &OrderResult,
    id: &str,
) -> Result<(), String> {
    let payload = serde_json::to_vec(result).map_err(|e| e.to_string())?;
    if !store {
        return js
            .client()
            .publish(format!("giftcard.results.{client}"), payload.into())
            .await
            .map_err(|e| e.to_string());
    }
    let ack = js
        .send_publish(
            format!("giftcard.results.{client}"),
            PublishMessage::build()
                .payload(payload.into())
                .message_id(id),
        )
        .await
        .map_err(|e| e.to_string())?;
    ack.await.map(|_| ()).map_err(|e| e.to_string())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_engine_bug_terminates_the_message_and_a_passing_failure_redelivers_it() {
        let bug = EngineError::Internal("decision does not fit the command".into());
        assert!(matches!(settle_failed(&bug, 7), Settle::Term));
        for passing in [
            EngineError::Storage,
            EngineError::Stopping,
            EngineError::Overloaded,
        ] {
            assert!(
                matches!(settle_failed(&passing, 7), Settle::Retry),
                "{passing:?}"
            );
        }
    }
}
