//! `[nats]`: where the broker is, how to authenticate, how the streams and the order consumer are
//! set up, and the delivery retry and low-stock rules. Optional settings are empty strings when
//! unset, so every one of them can be overridden by a `GIFTCARD_NATS_<KEY>` variable.

use serde::Deserialize;

/// The queue adapter's settings (the `[nats]` section of the configuration).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Off in the embedded default: the engine then serves HTTP alone.
    pub enabled: bool,
    /// One or more server URLs, comma-separated (`nats://a:4222,nats://b:4222`).
    pub url: String,
    /// Token authentication (empty: none).
    #[serde(default)]
    pub token: String,
    /// User and password authentication (empty: none): the engine's own broker user, which the
    /// broker's permissions let consume every client's orders (see SECURITY.md).
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub password: String,
    /// Clients whose orders must carry `Giftcard-Signature` (`v1,` base64 HMAC-SHA256 with the
    /// client's secret over `{subject}.{timestamp}.{body}`) and `Giftcard-Timestamp` (Unix
    /// seconds). In addition to, not instead of, the broker's per-client publish permissions.
    #[serde(default)]
    pub order_signers: Vec<OrderSigner>,
    /// Refuse every order whose client has no signer configured (true), or accept the unsigned
    /// orders of such clients on the broker's word alone (false).
    #[serde(default)]
    pub order_signatures_required: bool,
    /// How far (seconds) a signed order's timestamp may be from now, either way: keep it far
    /// below `engine.rejection_replay_window_ms`, after which a rejected order's id is free.
    #[serde(default = "defaults::order_signature_tolerance_s")]
    pub order_signature_tolerance_s: i64,
    /// A `.creds` file (JWT and NKey seed) for account-based authentication (empty: none).
    #[serde(default)]
    pub credentials_file: String,
    /// Refuse to talk to a server without TLS.
    #[serde(default)]
    pub tls_required: bool,
    /// PEM root certificates to trust for the server (empty: the system's).
    #[serde(default)]
    pub tls_ca_file: String,
    /// PEM client certificate and key for mutual TLS (both or neither).
    #[serde(default)]
    pub tls_client_cert_file: String,
    #[serde(default)]
    pub tls_client_key_file: String,
    /// Replicas of each stream the adapter creates (1 on a single server).
    #[serde(default = "defaults::stream_replicas")]
    pub stream_replicas: usize,
    /// `limits`, `interest` or `workqueue`, for the streams the adapter creates.
    #[serde(default = "defaults::stream_retention")]
    pub stream_retention: String,
    /// How long a stream keeps messages (0: until its limits).
    #[serde(default = "defaults::stream_max_age_s")]
    pub stream_max_age_s: u64,
    /// How long the broker remembers a `Nats-Msg-Id` to drop duplicates.
    #[serde(default = "defaults::duplicate_window_s")]
    pub duplicate_window_s: u64,
    /// Name of the durable pull consumer on `GIFTCARD_ORDERS`.
    #[serde(default = "defaults::consumer_name")]
    pub consumer_name: String,
    /// Messages one pull request asks for.
    #[serde(default = "defaults::consumer_batch_max")]
    pub consumer_batch_max: usize,
    /// Orders taken from the stream and not yet acked; beyond it the consumer stops pulling.
    #[serde(default = "defaults::orders_inflight_max")]
    pub orders_inflight_max: usize,
    /// How long the broker waits for an ack before redelivering.
    #[serde(default = "defaults::ack_wait_s")]
    pub ack_wait_s: u64,
    /// Failed delivery reports after which a card's delivery is given up.
    #[serde(default = "defaults::delivery_attempts_max")]
    pub delivery_attempts_max: u8,
    /// First retry delay of a failed delivery; doubles per attempt up to `delivery_backoff_max_ms`.
    #[serde(default = "defaults::delivery_backoff_ms")]
    pub delivery_backoff_ms: u64,
    #[serde(default = "defaults::delivery_backoff_max_ms")]
    pub delivery_backoff_max_ms: u64,
    /// Delivery retries waiting for their time; beyond it the oldest is published at once.
    #[serde(default = "defaults::delivery_retries_pending_max")]
    pub delivery_retries_pending_max: usize,
    /// A SKU whose available codes fall below this emits `giftcard.inventory.low_stock` (0: never).
    #[serde(default = "defaults::low_stock_threshold")]
    pub low_stock_threshold: u64,
    /// Journal frames the outbox reads and publishes per pass.
    #[serde(default = "defaults::outbox_frames_max")]
    pub outbox_frames_max: usize,
    /// Keep order results in the `GIFTCARD_RESULTS` stream (a client that was away reads them
    /// later) and await the broker's ack of each before acking its order. False: results go out
    /// on core NATS, to subscribers only; the stored record of an outcome is then the
    /// `giftcard.order.{completed|rejected}` event and `GET /v1/orders/{id}`.
    #[serde(default = "defaults::store_results")]
    pub store_results: bool,
    /// The delivery consumer's X25519 public key (base64, from `giftcard delivery-keygen`):
    /// codes in delivery events are sealed to it. Required unless codes go in clear.
    #[serde(default)]
    pub delivery_public_key: String,
    /// Publish codes in clear in delivery events (readable by anyone who may read the events
    /// stream). Off unless said; the adapter warns at start when it is on.
    #[serde(default)]
    pub delivery_codes_in_clear: bool,
}

mod defaults {
    pub fn stream_replicas() -> usize {
        1
    }
    pub fn stream_retention() -> String {
        "limits".into()
    }
    pub fn stream_max_age_s() -> u64 {
        7 * 24 * 3600
    }
    pub fn duplicate_window_s() -> u64 {
        120
    }
    pub fn consumer_name() -> String {
        "giftcard-engine".into()
    }
    pub fn consumer_batch_max() -> usize {
        256
    }
    pub fn orders_inflight_max() -> usize {
        4096
    }
    pub fn ack_wait_s() -> u64 {
        30
    }
    pub fn delivery_attempts_max() -> u8 {
        5
    }
    pub fn delivery_backoff_ms() -> u64 {
        1_000
    }
    pub fn delivery_backoff_max_ms() -> u64 {
        300_000
    }
    pub fn delivery_retries_pending_max() -> usize {
        100_000
    }
    pub fn low_stock_threshold() -> u64 {
        10
    }
    pub fn outbox_frames_max() -> usize {
        64
    }
    pub fn store_results() -> bool {
        true
    }
    pub fn order_signature_tolerance_s() -> i64 {
        300
    }
}

/// One client's order signing secrets (`whsec_<base64>`; two while rotating).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderSigner {
    pub client: String,
    pub secrets: Vec<String>,
}

impl QueueConfig {
    /// Settings for tests and tools: one server, defaults everywhere else, enabled.
    pub fn new(url: &str) -> QueueConfig {
        QueueConfig {
            enabled: true,
            url: url.to_owned(),
            token: String::new(),
            user: String::new(),
            password: String::new(),
            order_signers: Vec::new(),
            order_signatures_required: false,
            order_signature_tolerance_s: defaults::order_signature_tolerance_s(),
            credentials_file: String::new(),
            tls_required: false,
            tls_ca_file: String::new(),
            tls_client_cert_file: String::new(),
            tls_client_key_file: String::new(),
            stream_replicas: defaults::stream_replicas(),
            stream_retention: defaults::stream_retention(),
            stream_max_age_s: defaults::stream_max_age_s(),
            duplicate_window_s: defaults::duplicate_window_s(),
            consumer_name: defaults::consumer_name(),
            consumer_batch_max: defaults::consumer_batch_max(),
            orders_inflight_max: defaults::orders_inflight_max(),
            ack_wait_s: defaults::ack_wait_s(),
            delivery_attempts_max: defaults::delivery_attempts_max(),
            delivery_backoff_ms: defaults::delivery_backoff_ms(),
            delivery_backoff_max_ms: defaults::delivery_backoff_max_ms(),
            delivery_retries_pending_max: defaults::delivery_retries_pending_max(),
            low_stock_threshold: defaults::low_stock_threshold(),
            outbox_frames_max: defaults::outbox_frames_max(),
            store_results: defaults::store_results(),
            delivery_public_key: String::new(),
            delivery_codes_in_clear: false,
        }
    }

    /// The server URLs.
    pub fn urls(&self) -> Vec<String> {
        self.url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Delay before re-sending a card's delivery after its `attempt`-th failure.
    pub fn retry_delay_ms(&self, attempt: u8) -> u64 {
        let doublings = u32::from(attempt.saturating_sub(1)).min(32);
        self.delivery_backoff_ms
            .saturating_mul(1u64 << doublings)
            .min(self.delivery_backoff_max_ms)
    }
}
