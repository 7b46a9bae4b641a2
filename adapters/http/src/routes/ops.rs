//! Operations endpoints: liveness, readiness, Prometheus metrics and the OpenAPI document.

use crate::error::ApiError;
use crate::state::AppState;
use crate::wire::HealthView;
use actix_web::{web, HttpRequest, HttpResponse};

/// Liveness: the process serves HTTP and can still make progress. After a journal failure
/// (a full or failing disk) only a restart recovers, so liveness fails too and an orchestrator
/// restarts the process; while recovery runs the process is alive (and `/readyz` says 503).
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, body = HealthView), (status = 503, description = "the journal failed; restart the process", body = HealthView)))]
pub async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    if state.ready_engine().is_some_and(|e| e.failed()) {
        return HttpResponse::ServiceUnavailable().json(HealthView {
            status: "journal_failed".into(),
        });
    }
    HttpResponse::Ok().json(HealthView {
        status: "ok".into(),
    })
}

/// Readiness: recovery is done and the journal is healthy.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses((status = 200, body = HealthView)))]
pub async fn readyz(state: web::Data<AppState>) -> crate::error::Answer {
    let engine = state.engine()?;
    if engine.failed() {
        return Err(ApiError::Unavailable.into());
    }
    Ok(HttpResponse::Ok().json(HealthView {
        status: "ready".into(),
    }))
}

/// Prometheus text exposition. Unless `http.metrics_open`, it needs a key of the `metrics` (or
/// `admin`) role: the figures describe every tenant's business.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")), security((), ("bearer" = [])))]
pub async fn metrics(state: web::Data<AppState>, req: HttpRequest) -> crate::error::Answer {
    if !state.metrics_open {
        state
            .principal(&req)?
            .require(&[crate::Role::Metrics, crate::Role::Admin])?;
    }
    crate::metrics_http::refresh(&state).await;
    let text = state
        .metrics
        .as_ref()
        .map(|h| h.render())
        .unwrap_or_default();
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}

/// This API's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses((status = 200, description = "OpenAPI 3.1 document", body = Object)))]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(crate::openapi::document())
}
