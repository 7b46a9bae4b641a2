//! The one place where failures and rejections become problems: RFC 9457 documents with a stable
//! snake_case `code` (a public contract: add codes, never rename or reuse one), the HTTP status
//! they carry (over NATS too) and the offending `field` where there is one. Never echoes a card
//! code. The HTTP adapter sends them as `application/problem+json`; the queue adapter embeds
//! them in results.

use giftcard_core::Rejection;
use giftcard_shard::EngineError;
use http::StatusCode;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};

/// An RFC 9457 problem document.
#[derive(Clone, Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI reference naming the problem kind: `/problems/{code}`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable machine-readable code, e.g. `insufficient_funds`.
    pub code: String,
    /// The offending request field (JSON path), when one is to blame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The order an order rejection belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// How many codes of a rejected upload are already known or repeated (never which: that
    /// would tell a supplier which codes exist). All of them: the upload was applied before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicates: Option<usize>,
    /// Which limit a `limit_exceeded` refusal tripped: `order_max`, `velocity_orders`,
    /// `velocity_amount`, `sku_daily_cards` or `brand_daily_cards`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
    /// Correlates a 5xx answer with the server log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
}

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{detail}")]
    Invalid {
        code: &'static str,
        detail: String,
        field: Option<String>,
    },
    #[error("request body exceeds {limit} bytes")]
    TooLarge { limit: usize },
    #[error("a request body must declare its Content-Length")]
    LengthRequired,
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    #[error("the body must be JSON: send Content-Type: application/json (or none)")]
    UnsupportedMediaType,
    #[error("missing or unknown API key")]
    Unauthenticated,
    /// A signed message (a gateway's webhook) whose signature or timestamp does not hold.
    #[error("{0}")]
    InvalidSignature(&'static str),
    #[error("this key may not do that")]
    Forbidden,
    #[error("{what} not found")]
    NotFound {
        code: &'static str,
        what: &'static str,
    },
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{detail}")]
    Conflict {
        code: &'static str,
        detail: &'static str,
    },
    /// A business rule refused the request; `order_id` when it was an order.
    #[error("{0}")]
    Rejected(Rejection, Option<String>),
    /// Which codes are known is not said: that would tell a supplier which codes exist.
    #[error("{} of the codes are already known (or repeated in this upload); nothing was added", .0.len())]
    DuplicateCodes(Vec<usize>),
    #[error("too many requests")]
    RateLimited { retry_after_s: u64 },
    #[error("the engine is overloaded")]
    Overloaded,
    #[error("recovery is still running")]
    NotReady,
    #[error("the engine cannot take work")]
    Unavailable,
    /// A bug in the engine; the answer carries a correlation id for the log line.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// A 400 naming the field to blame.
    pub fn invalid(
        code: &'static str,
        field: impl Into<String>,
        detail: impl Into<String>,
    ) -> ApiError {
        ApiError::Invalid {
            code,
            detail: detail.into(),
            field: Some(field.into()),
        }
    }

    /// The problem's stable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Invalid { code, .. } => code,
            ApiError::TooLarge { .. } => "payload_too_large",
            ApiError::LengthRequired => "length_required",
            ApiError::BodyTimeout => "request_timeout",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::Unauthenticated => "unauthenticated",
            ApiError::InvalidSignature(_) => "invalid_signature",
            ApiError::Forbidden => "forbidden",
            ApiError::NotFound { code, .. } => code,
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Conflict { code, .. } => code,
            ApiError::Rejected(r, _) => r.code(),
            ApiError::DuplicateCodes(_) => "duplicate_codes",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Overloaded => "overloaded",
            ApiError::NotReady => "not_ready",
            ApiError::Unavailable => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// The HTTP status the problem carries.
    pub fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Invalid { .. } => StatusCode::BAD_REQUEST,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::LengthRequired => StatusCode::LENGTH_REQUIRED,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unauthenticated | ApiError::InvalidSignature(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Rejected(r, _) => rejection_status(*r),
            ApiError::DuplicateCodes(_) => StatusCode::CONFLICT,
            ApiError::RateLimited { .. } | ApiError::Overloaded => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotReady | ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem document.
    pub fn problem(&self) -> Problem {
        let status = self.status_code();
        let (field, order_id, duplicates) = match self {
            ApiError::Invalid { field, .. } => (field.clone(), None, None),
            ApiError::Rejected(_, order) => (None, order.clone(), None),
            ApiError::DuplicateCodes(p) => (Some("codes".into()), None, Some(p.len())),
            _ => (None, None, None),
        };
        let correlation_id = status.is_server_error().then(correlation_id);
        Problem {
            kind: format!("/problems/{}", self.code()),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: self.to_string(),
            code: self.code().to_owned(),
            field,
            order_id,
            duplicates,
            limit: match self {
                ApiError::Rejected(r, _) => r.limit().map(str::to_owned),
                _ => None,
            },
            correlation_id,
        }
    }
}

/// HTTP status of a business rejection.
pub fn rejection_status(r: Rejection) -> StatusCode {
    match r {
        Rejection::WalletNotFound
        | Rejection::SkuNotFound
        | Rejection::CardNotFound
        | Rejection::RedemptionNotFound
        | Rejection::QuoteNotFound => StatusCode::NOT_FOUND,
        Rejection::IdempotencyConflict
        | Rejection::WalletExists
        | Rejection::AlreadyReversed
        | Rejection::SkuExists
        | Rejection::NotInReview => StatusCode::CONFLICT,
        Rejection::VersionMismatch => StatusCode::PRECONDITION_FAILED,
        Rejection::Forbidden => StatusCode::FORBIDDEN,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        match e {
            EngineError::Rejected(r) => ApiError::Rejected(r, None),
            EngineError::Overloaded => ApiError::Overloaded,
            EngineError::DuplicateCodes(p) => ApiError::DuplicateCodes(p),
            EngineError::Storage | EngineError::Stopping => ApiError::Unavailable,
            EngineError::Internal(e) => ApiError::Internal(e),
        }
    }
}

/// The problem body of a rule rejection, for places that embed it (batch results).
pub fn problem_of(e: &ApiError) -> Problem {
    e.problem()
}

fn correlation_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{t:x}-{n:x}")
}
