//! The streams the adapter uses, created when missing with the configured replicas, retention,
//! max age and duplicate window. An existing stream is used as it is (operators own its config).

use crate::{QueueConfig, QueueError};
use async_nats::jetstream::stream::{Config, RetentionPolicy};
use async_nats::jetstream::Context;
use std::time::Duration;

/// Orders in: `giftcard.orders.{client}`.
pub const ORDERS_STREAM: &str = "GIFTCARD_ORDERS";
pub const ORDERS_SUBJECTS: &str = "giftcard.orders.>";
/// Results out: `giftcard.results.{client}`, kept so a client that was away reads them later.
pub const RESULTS_STREAM: &str = "GIFTCARD_RESULTS";
pub const RESULTS_SUBJECTS: &str = "giftcard.results.>";
/// Events out (delivery, settlement, order outcome, inventory).
pub const EVENTS_STREAM: &str = "GIFTCARD_EVENTS";
pub const EVENTS_SUBJECTS: &[&str] = &[
    "giftcard.delivery.>",
    "giftcard.settlement.>",
    "giftcard.order.>",
    "giftcard.inventory.>",
];
/// Delivery reports (request/reply on core NATS; the reply says the report is durable).
pub const DELIVERY_REPORTS_SUBJECT: &str = "giftcard.deliveries.report";

/// The retention policy named in the configuration.
pub fn retention(name: &str) -> Result<RetentionPolicy, QueueError> {
    match name {
        "limits" => Ok(RetentionPolicy::Limits),
        "interest" => Ok(RetentionPolicy::Interest),
        "workqueue" => Ok(RetentionPolicy::WorkQueue),
        other => Err(QueueError::Config(format!(
            "stream_retention must be limits, interest or workqueue, not {other:?}"
        ))),
    }
}

/// Creates the streams if they are missing (`GIFTCARD_RESULTS` only when results are stored).
pub async fn ensure(js: &Context, cfg: &QueueConfig) -> Result<(), QueueError> {
    let retention = retention(&cfg.stream_retention)?;
    let make = |name: &str, subjects: Vec<String>| Config {
        name: name.to_owned(),
        subjects,
        retention,
        num_replicas: cfg.stream_replicas.max(1),
        max_age: Duration::from_secs(cfg.stream_max_age_s),
        duplicate_window: Duration::from_secs(cfg.duplicate_window_s.max(1)),
        ..Default::default()
    };
    let mut all = vec![
        make(ORDERS_STREAM, vec![ORDERS_SUBJECTS.into()]),
        make(
            EVENTS_STREAM,
            EVENTS_SUBJECTS.iter().map(|s| (*s).to_owned()).collect(),
        ),
    ];
    if cfg.store_results {
        all.push(make(RESULTS_STREAM, vec![RESULTS_SUBJECTS.into()]));
    }
    for stream in all {
        js.get_or_create_stream(stream)
            .await
            .map_err(|e| QueueError::Connect(e.to_string()))?;
    }
    Ok(())
}
