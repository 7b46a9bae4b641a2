//! The engine over its NATS JetStream queue adapter (PRODUCT §5): each order is published to
//! `giftcard.orders.{client}` with `Nats-Msg-Id` `{client}.{order_id}`, and counts as answered
//! when its result arrives on `giftcard.results.{client}`. Latency runs from the intended send
//! time to that result, so time spent queued in the stream (the adapter's backpressure) counts.
//!
//! The queue carries orders only, so everything else goes through the engine's HTTP API: the
//! data set, redemptions and balance inquiries, order lookups and the books.

use super::{Books, Http, Outcome, TargetOpts};
use crate::plan::{Op, Scale};
use anyhow::{bail, Context, Result};
use async_nats::jetstream::{self, message::PublishMessage};
use futures::StreamExt;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// The client of `dev-checkout-key`, whose subjects the orders and results use.
const CLIENT: &str = "checkout-1";
/// An order whose result has not arrived after this long counts as failed (effect unknown).
const RESULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A result as the adapter publishes it (the fields this tool reads).
#[derive(Deserialize)]
struct ResultMsg {
    order_id: Option<String>,
    status: String,
    reason: Option<String>,
    #[serde(default)]
    card_count: u32,
    problem: Option<serde_json::Value>,
}

type Waiters = Arc<Mutex<HashMap<String, oneshot::Sender<ResultMsg>>>>;

struct Inner {
    url: String,
    js: jetstream::Context,
    http: Http,
    waiting: Waiters,
}

/// The engine behind `nats://HOST:PORT`, with its HTTP API for everything but orders.
#[derive(Clone)]
pub struct Nats(Arc<Inner>);

impl Nats {
    pub async fn open(url: &str, opts: &TargetOpts) -> Result<Nats> {
        let http = Http::open(&opts.http, opts).await.with_context(|| {
            format!(
                "the NATS target sets up and checks books over HTTP at {} (--http)",
                opts.http
            )
        })?;
        let client = async_nats::connect(url)
            .await
            .with_context(|| format!("connecting to {url}"))?;
        // Subscribed before the first order is published, so no result can be missed.
        let mut results = client
            .subscribe(format!("giftcard.results.{CLIENT}"))
            .await
            .context("subscribing to results")?;
        client.flush().await.context("flushing the subscription")?;
        let waiting: Waiters = Arc::default();
        let dispatch = waiting.clone();
        tokio::spawn(async move {
            while let Some(msg) = results.next().await {
                let Ok(r) = serde_json::from_slice::<ResultMsg>(&msg.payload) else {
                    continue;
                };
                let Some(id) = r.order_id.clone() else {
                    continue;
                };
                let waiter = dispatch.lock().ok().and_then(|mut w| w.remove(&id));
                if let Some(tx) = waiter {
                    let _ = tx.send(r);
                }
            }
        });
        Ok(Nats(Arc::new(Inner {
            url: url.to_owned(),
            js: jetstream::new(client),
            http,
            waiting,
        })))
    }

    pub fn describe(&self) -> String {
        format!(
            "engine over NATS JetStream at {} (orders; set-up, redemptions and books over {})",
            self.0.url,
            self.0.http.describe()
        )
    }

    pub async fn setup(&self, scale: &Scale) -> Result<()> {
        self.0.http.setup(scale).await
    }

    pub async fn exec(&self, op: &Op) -> Outcome {
        let Op::Order {
            order_no,
            wallet,
            sku,
            quantity,
        } = *op
        else {
            return self.0.http.exec(op).await;
        };
        let order_id = self.0.http.id("o", order_no);
        let body = self.0.http.order_body(&order_id, wallet, sku, quantity);
        let Ok(payload) = serde_json::to_vec(&body) else {
            return Outcome::Failed("encode".into());
        };
        let (tx, rx) = oneshot::channel();
        if let Ok(mut w) = self.0.waiting.lock() {
            w.insert(order_id.clone(), tx);
        }
        let publish = PublishMessage::build()
            .payload(payload.into())
            .message_id(format!("{CLIENT}.{order_id}"));
        let sent = async {
            self.0
                .js
                .send_publish(format!("giftcard.orders.{CLIENT}"), publish)
                .await?
                .await?;
            anyhow::Ok(())
        };
        let outcome = match tokio::time::timeout(RESULT_TIMEOUT, async {
            sent.await?;
            anyhow::Ok(rx.await?)
        })
        .await
        {
            Err(_) => Outcome::Failed("timeout".into()),
            Ok(Err(_)) => Outcome::Failed("publish".into()),
            Ok(Ok(r)) => classify(&r),
        };
        if let Ok(mut w) = self.0.waiting.lock() {
            w.remove(&order_id);
        }
        outcome
    }

    pub async fn lookup(&self, order_no: u64) -> Result<Option<Outcome>> {
        self.0.http.lookup(order_no).await
    }

    pub async fn books(&self) -> Result<Books> {
        self.0.http.books().await
    }
}

/// Reads a result the way a checkout service would.
fn classify(r: &ResultMsg) -> Outcome {
    match r.status.as_str() {
        "completed" => Outcome::Completed {
            cards: r.card_count,
        },
        // A recorded business rejection; a refusal that was not recorded carries a problem.
        "rejected" if r.problem.is_none() => {
            Outcome::Rejected(r.reason.clone().unwrap_or_else(|| "rejected".into()))
        }
        "rejected" => Outcome::Failed(format!("refused_{}", r.reason.clone().unwrap_or_default())),
        other => Outcome::Failed(other.to_owned()),
    }
}

/// Checks that a spec is a NATS URL this target can use.
pub fn check_url(spec: &str) -> Result<()> {
    let rest = spec.trim_start_matches("nats://");
    if rest.is_empty() || rest.contains('/') {
        bail!("a NATS target is nats://HOST:PORT, got {spec:?}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(json: &str) -> ResultMsg {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn results_map_to_outcomes_like_http_answers() {
        let done = msg(r#"{"order_id":"o","status":"completed","card_count":3}"#);
        assert_eq!(classify(&done), Outcome::Completed { cards: 3 });
        let oos = msg(r#"{"order_id":"o","status":"rejected","reason":"out_of_stock"}"#);
        assert_eq!(classify(&oos), Outcome::Rejected("out_of_stock".into()));
        let conflict = msg(
            r#"{"order_id":"o","status":"rejected","reason":"idempotency_conflict","problem":{"code":"idempotency_conflict"}}"#,
        );
        assert_eq!(
            classify(&conflict),
            Outcome::Failed("refused_idempotency_conflict".into())
        );
        assert_eq!(
            classify(&msg(r#"{"order_id":"o","status":"invalid"}"#)),
            Outcome::Failed("invalid".into())
        );
    }
}
