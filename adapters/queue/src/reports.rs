//! Delivery reports over NATS: request/reply on `giftcard.deliveries.report` in a queue group
//! (several engine nodes share the subject). The reply is sent only after the report is durable;
//! a reporter without a reply retries, and a repeated report of a settled delivery changes
//! nothing.

use crate::streams::DELIVERY_REPORTS_SUBJECT;
use crate::wire::DeliveryReportMessage;
use crate::QueueConfig;
use futures::StreamExt;
use giftcard_core::{CardId, Command};
use giftcard_intake::call::submit;
use giftcard_intake::error::{problem_of, ApiError};
use giftcard_intake::wire::DeliveryStatusDto;
use giftcard_shard::{Engine, Outcome};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Answers reports until `stop`.
pub async fn run(
    client: async_nats::Client,
    engine: Arc<Engine>,
    cfg: Arc<QueueConfig>,
    stop: Arc<AtomicBool>,
) {
    let mut sub = loop {
        match client
            .queue_subscribe(DELIVERY_REPORTS_SUBJECT, "giftcard-engine".into())
            .await
        {
            Ok(s) => break s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot subscribe to delivery reports; retrying");
                if crate::sleep_unless(&stop, Duration::from_secs(1)).await {
                    return;
                }
            }
        }
    };
    while !stop.load(Ordering::Acquire) {
        let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(250), sub.next()).await
        else {
            continue;
        };
        let (client, engine, attempts_max) =
            (client.clone(), engine.clone(), cfg.delivery_attempts_max);
        tokio::spawn(async move {
            let answer = report(&engine, &msg.payload, attempts_max).await;
            if let Some(reply) = msg.reply {
                let body = serde_json::to_vec(&answer).unwrap_or_default();
                let _ = client.publish(reply, body.into()).await;
            }
        });
    }
}

async fn report(engine: &Engine, payload: &[u8], attempts_max: u8) -> serde_json::Value {
    let parsed: Result<DeliveryReportMessage, ApiError> =
        giftcard_intake::input::json(&bytes::Bytes::copy_from_slice(payload));
    let r = match parsed {
        Ok(m) => giftcard_intake::input::digits("card_id", &m.card_id).and_then(|id| {
            // Only who received the delivery event of this attempt holds its token.
            match engine.vault().report_round(id, m.attempt, &m.token) {
                Some(round) => Ok((CardId(id), m.status, m.attempt, round)),
                None => Err(ApiError::Forbidden),
            }
        }),
        Err(e) => Err(e),
    };
    let (card, status, attempt, round) = match r {
        Ok(v) => v,
        Err(e) => return serde_json::json!({ "problem": problem_of(&e) }),
    };
    let cmd = Command::ReportDelivery {
        card,
        delivered: status == DeliveryStatusDto::Delivered,
        attempt,
        attempts_max,
        round,
    };
    match submit(engine, cmd).await {
        Ok(Outcome::Applied(events) | Outcome::Answered(events)) => {
            serde_json::to_value(giftcard_intake::orders::delivery_report_view(card, &events))
                .unwrap_or_default()
        }
        Ok(_) => serde_json::json!({ "problem": problem_of(&ApiError::Unavailable) }),
        Err(e) => serde_json::json!({ "problem": problem_of(&ApiError::from(e)) }),
    }
}
