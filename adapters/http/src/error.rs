//! Problems over HTTP: the adapter-neutral [`ApiError`] (in `giftcard-intake`, shared with the
//! queue adapter) sent as RFC 9457 `application/problem+json`, with `Retry-After` and
//! `WWW-Authenticate` where they belong.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
pub use giftcard_intake::error::{problem_of, rejection_status, ApiError, Problem};

/// An [`ApiError`] as an actix-web error: what every handler fails with. Anything that converts
/// into an `ApiError` converts into this, so `?` works on both.
#[derive(Debug)]
pub struct HttpError(pub ApiError);

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<E: Into<ApiError>> From<E> for HttpError {
    fn from(e: E) -> HttpError {
        HttpError(e.into())
    }
}

/// What a handler answers.
pub type Answer = Result<HttpResponse, HttpError>;

impl ResponseError for HttpError {
    fn status_code(&self) -> StatusCode {
        self.0.status_code()
    }

    fn error_response(&self) -> HttpResponse {
        let problem = self.0.problem();
        if let Some(id) = &problem.correlation_id {
            tracing::warn!(correlation_id = %id, code = problem.code, "request failed: {}", self.0);
        }
        let mut res = HttpResponse::build(self.status_code());
        res.content_type("application/problem+json");
        match &self.0 {
            ApiError::RateLimited { retry_after_s } => {
                res.insert_header((header::RETRY_AFTER, retry_after_s.max(&1).to_string()));
            }
            ApiError::Overloaded | ApiError::NotReady => {
                res.insert_header((header::RETRY_AFTER, "1"));
            }
            ApiError::Unauthenticated => {
                res.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            _ => {}
        }
        res.json(problem)
    }
}
