//! Prometheus metrics: the recorder (installed once per process), the request middleware that
//! counts requests and times them by route and status, and the gauges refreshed on each scrape.

use crate::state::AppState;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Instant;

/// Latency buckets (seconds): 100 µs to 10 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// Records per journal group.
const COUNT_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0, 16384.0,
];

/// Installs the global recorder on first use; later calls (more servers in one test process)
/// share its handle. `None` when another recorder was installed first.
pub fn install() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(SECONDS_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("giftcard_wal_group_records".into()),
                        COUNT_BUCKETS,
                    )
                });
            match builder.and_then(|b| b.install_recorder()) {
                Ok(h) => {
                    describe();
                    Some(h)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    None
                }
            }
        })
        .clone()
}

/// HELP texts and units, for the adapter's metrics and the engine's.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "giftcard_http_requests_total",
        "HTTP requests answered, by route pattern, method and status"
    );
    describe_histogram!(
        "giftcard_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency, by route pattern, method and status"
    );
    describe_gauge!(
        "giftcard_http_inflight_requests",
        "Requests waiting for an engine reply"
    );
    describe_counter!(
        "giftcard_http_rate_limited_total",
        "Lookups refused by a rate limit, by scope (client, code_prefix)"
    );
    describe_counter!(
        "giftcard_orders_total",
        "Orders answered, by outcome (completed, rejected, replayed) and rejection reason"
    );
    describe_counter!("giftcard_cards_sold_total", "Cards sold, by pay currency");
    describe_counter!(
        "giftcard_revenue_minor_units_total",
        "Amounts charged for completed orders, in minor units of the pay currency"
    );
    describe_gauge!(
        "giftcard_ready",
        "1 once recovery is done and the API serves"
    );
    describe_gauge!(
        "giftcard_shard_mailbox_depth",
        "Client messages waiting in a shard's mailbox"
    );
    describe_gauge!(
        "giftcard_sku_stock_available",
        "Unsold codes (or issue allowance) of a SKU"
    );
    describe_gauge!("giftcard_sku_stock_sold", "Sold cards of a SKU");
    describe_counter!(
        "giftcard_codes_drawn_total",
        "Codes generated for issued cards, once an order passed every check"
    );
    describe_counter!(
        "giftcard_queue_orders_total",
        "Orders taken from the NATS intake, by outcome"
    );
    describe_counter!(
        "giftcard_queue_events_published_total",
        "Events published from the outbox to NATS"
    );
    describe_counter!(
        "giftcard_queue_publish_failures_total",
        "Outbox publish attempts that failed and will be retried"
    );
    describe_histogram!(
        "giftcard_wal_flush_seconds",
        Unit::Seconds,
        "Journal group write and fsync latency"
    );
    describe_histogram!(
        "giftcard_wal_group_records",
        "Records per journal group commit"
    );
    describe_counter!(
        "giftcard_wal_written_bytes_total",
        Unit::Bytes,
        "Bytes written to the journal"
    );
    describe_gauge!(
        "giftcard_recovery_duration_seconds",
        Unit::Seconds,
        "How long the last recovery took"
    );
    describe_histogram!(
        "giftcard_checkpoint_seconds",
        Unit::Seconds,
        "Checkpoint (snapshot and journal truncation) duration"
    );
}

/// The method as a metric label, from a fixed set: a client choosing extension methods
/// (`FOO-1`, `FOO-2`, ...) must not mint a new series per request.
pub fn method_label(m: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Counts and times every request by route pattern, method and status.
pub async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = method_label(req.method()).to_owned();
    let res = next.call(req).await?;
    let status = res.status().as_u16().to_string();
    let labels = [("route", route), ("method", method), ("status", status)];
    metrics::counter!("giftcard_http_requests_total", &labels).increment(1);
    metrics::histogram!("giftcard_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    Ok(res)
}

/// Sets the gauges that are read from the engine at scrape time.
pub async fn refresh(state: &AppState) {
    metrics::gauge!("giftcard_http_inflight_requests")
        .set(state.inflight.current(state.inflight_max) as f64);
    let Some(engine) = state.ready_engine() else {
        metrics::gauge!("giftcard_ready").set(0.0);
        return;
    };
    metrics::gauge!("giftcard_ready").set(1.0);
    for (shard, depth) in engine.mailbox_depths().into_iter().enumerate() {
        metrics::gauge!("giftcard_shard_mailbox_depth", "shard" => shard.to_string())
            .set(depth as f64);
    }
    // Stock comes from the pools' own counters: a scrape never walks cards or wallets.
    if let Ok(giftcard_shard::QueryAnswer::StockLevels(levels)) =
        state.ask(giftcard_shard::Query::StockLevels).await
    {
        for (sku, (available, sold)) in &levels {
            metrics::gauge!("giftcard_sku_stock_available", "sku" => sku.as_str().to_owned())
                .set(*available as f64);
            metrics::gauge!("giftcard_sku_stock_sold", "sku" => sku.as_str().to_owned())
                .set(*sold as f64);
        }
    }
}

/// Order outcomes (and for completed orders the cards and revenue by currency) summed locally and
/// added to the metrics once, so a batch of a thousand orders looks up each labelled counter once
/// instead of up to three times per order.
#[derive(Default)]
pub struct OutcomeTally {
    /// Orders by (outcome, rejection reason).
    orders: Vec<((&'static str, &'static str), u64)>,
    /// Cards sold and revenue in minor units, by pay currency.
    sold: Vec<(giftcard_core::Currency, u64, u64)>,
}

impl OutcomeTally {
    pub fn add(&mut self, outcome: &giftcard_core::OrderOutcome, replayed: bool) {
        use giftcard_core::OrderOutcome;
        let labels = match outcome {
            _ if replayed => ("replayed", ""),
            OrderOutcome::Completed { charged, cards, .. } => {
                let ccy = charged.currency();
                let i = match self.sold.iter().position(|(c, ..)| *c == ccy) {
                    Some(i) => i,
                    None => {
                        self.sold.push((ccy, 0, 0));
                        self.sold.len() - 1
                    }
                };
                self.sold[i].1 += u64::from(*cards);
                self.sold[i].2 += charged.minor().max(0) as u64;
                ("completed", "")
            }
            OrderOutcome::Rejected(r) => ("rejected", r.code()),
            OrderOutcome::PendingReview { .. } => ("pending_review", ""),
        };
        match self.orders.iter_mut().find(|(l, _)| *l == labels) {
            Some((_, n)) => *n += 1,
            None => self.orders.push((labels, 1)),
        }
    }

    pub fn record(self) {
        for ((outcome, reason), n) in self.orders {
            metrics::counter!("giftcard_orders_total", "outcome" => outcome, "reason" => reason)
                .increment(n);
        }
        for (ccy, cards, revenue) in self.sold {
            let ccy = ccy.code().to_owned();
            metrics::counter!("giftcard_cards_sold_total", "currency" => ccy.clone())
                .increment(cards);
            metrics::counter!("giftcard_revenue_minor_units_total", "currency" => ccy)
                .increment(revenue);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::OutcomeTally;
    use giftcard_core::{CardId, Currency, Money, OrderOutcome, Rejection};

    fn completed(minor: i64, ccy: &str, cards: u32) -> OrderOutcome {
        let ccy = Currency::parse(ccy).expect("currency");
        OrderOutcome::Completed {
            charged: Money::new(minor, ccy),
            first_card: CardId(1),
            cards,
        }
    }

    #[test]
    fn a_tally_sums_outcomes_and_sales_by_label() {
        let mut t = OutcomeTally::default();
        t.add(&completed(2_500, "USD", 1), false);
        t.add(&completed(5_000, "USD", 2), false);
        t.add(&completed(900, "EUR", 1), false);
        t.add(&completed(2_500, "USD", 1), true);
        t.add(&OrderOutcome::Rejected(Rejection::OutOfStock), false);
        t.add(&OrderOutcome::Rejected(Rejection::OutOfStock), false);
        t.add(&OrderOutcome::Rejected(Rejection::InsufficientFunds), true);
        assert_eq!(
            t.orders,
            vec![
                (("completed", ""), 3),
                (("replayed", ""), 2),
                (("rejected", "out_of_stock"), 2),
            ]
        );
        let sold: Vec<(&str, u64, u64)> =
            t.sold.iter().map(|(c, n, r)| (c.code(), *n, *r)).collect();
        assert_eq!(
            sold,
            vec![("USD", 3, 7_500), ("EUR", 1, 900)],
            "a replay sells nothing again"
        );
    }
}
