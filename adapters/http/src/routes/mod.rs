//! Route table and the small pieces every handler shares. Handlers validate, call the engine
//! through [`AppState`], and map; they hold no domain rules.

mod admin;
mod cards;
mod catalog;
mod deliveries;
mod expiry;
mod floors;
mod gateways;
mod ops;
mod orders;
mod pricelists;
mod pricing;
mod quotes;
mod revenue;
mod reviews;
mod sourcing;
mod wallets;

pub use admin::*;
pub use cards::*;
pub use catalog::*;
pub use deliveries::*;
pub use expiry::*;
pub use floors::*;
pub use gateways::*;
pub use ops::*;
pub use orders::*;
pub use pricelists::*;
pub use pricing::*;
pub use quotes::*;
pub use revenue::*;
pub use reviews::*;
pub use sourcing::*;
pub use wallets::*;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;
use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, Resource};
use serde::Serialize;
use std::future::{ready, Ready};

/// Header set on a response that replays an earlier answer for the same idempotency key.
pub const REPLAYED_HEADER: &str = "Idempotent-Replayed";

impl FromRequest for Principal {
    type Error = crate::error::HttpError;
    type Future = Ready<Result<Principal, crate::error::HttpError>>;

    /// Authenticates, then takes one of the client's request slots for the life of the request
    /// (kept in its extensions, where the body extractor also finds whose budget to charge).
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let admitted =
            req.app_data::<web::Data<AppState>>()
                .map_or(Err(ApiError::Unavailable), |state| {
                    let who = state.principal(req)?;
                    let admitted = crate::limits::Admitted::enter(
                        &who.client,
                        state.shares.of(Some(&who.client)),
                    )?;
                    actix_web::HttpMessage::extensions_mut(req).insert(admitted);
                    Ok(who)
                });
        ready(admitted.map_err(Into::into))
    }
}

/// A JSON response with a status.
pub fn reply<T: Serialize>(
    status: actix_web::http::StatusCode,
    body: &T,
    replayed: bool,
) -> HttpResponse {
    let mut res = HttpResponse::build(status);
    if replayed {
        res.insert_header((REPLAYED_HEADER, "true"));
    }
    res.json(body)
}

/// [`reply`] for an answer that carries card codes: no cache (a proxy, a browser) may keep it.
pub fn reply_no_store<T: Serialize>(
    status: actix_web::http::StatusCode,
    body: &T,
    replayed: bool,
) -> HttpResponse {
    let mut res = reply(status, body, replayed);
    res.headers_mut().insert(
        actix_web::http::header::CACHE_CONTROL,
        actix_web::http::header::HeaderValue::from_static("no-store"),
    );
    res
}

/// A resource whose other methods get 405 with the `Allow` header (RFC 9110).
fn resource(path: &str, allow: &'static str) -> Resource {
    web::resource(path).default_service(web::to(move || async move {
        let mut res = ApiError::MethodNotAllowed.into_response();
        let value = actix_web::http::header::HeaderValue::from_static(allow);
        res.headers_mut()
            .insert(actix_web::http::header::ALLOW, value);
        res
    }))
}

trait IntoResponse {
    fn into_response(self) -> HttpResponse;
    fn into_error(self) -> actix_web::Error;
}

impl IntoResponse for ApiError {
    fn into_response(self) -> HttpResponse {
        actix_web::ResponseError::error_response(&crate::error::HttpError(self))
    }
    fn into_error(self) -> actix_web::Error {
        crate::error::HttpError(self).into()
    }
}

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let query_errors = web::QueryConfig::default().error_handler(|e, _| {
        ApiError::Invalid {
            code: "invalid_query",
            detail: e.to_string(),
            field: None,
        }
        .into_error()
    });
    let path_errors = web::PathConfig::default().error_handler(|e, _| {
        ApiError::Invalid {
            code: "invalid_path",
            detail: e.to_string(),
            field: None,
        }
        .into_error()
    });
    cfg.app_data(query_errors)
        .app_data(path_errors)
        .service(resource("/healthz", "GET").route(web::get().to(healthz)))
        .service(resource("/readyz", "GET").route(web::get().to(readyz)))
        .service(resource("/metrics", "GET").route(web::get().to(metrics)))
        .service(resource("/openapi.json", "GET").route(web::get().to(openapi)))
        .service(
            web::scope("/v1")
                .wrap(actix_web::middleware::from_fn(crate::metrics_http::track))
                .service(resource("/wallets", "POST").route(web::post().to(create_wallet)))
                .service(
                    resource("/wallets/{wallet_id}", "GET, PATCH")
                        .route(web::get().to(get_wallet))
                        .route(web::patch().to(update_wallet)),
                )
                .service(
                    resource("/wallets/{wallet_id}/limits", "GET, PUT")
                        .route(web::get().to(get_limits))
                        .route(web::put().to(put_limits)),
                )
                .service(
                    resource("/wallets/{wallet_id}/limits/reset", "POST")
                        .route(web::post().to(reset_limits)),
                )
                .service(
                    resource("/wallets/{wallet_id}/deposits", "POST")
                        .route(web::post().to(deposit)),
                )
                .service(
                    resource("/gateways/{gateway}/events", "POST")
                        .route(web::post().to(gateway_event)),
                )
                .service(
                    resource("/wallets/{wallet_id}/transactions", "GET")
                        .route(web::get().to(transactions)),
                )
                .service(
                    resource("/skus", "POST, GET")
                        .route(web::post().to(create_sku))
                        .route(web::get().to(list_skus)),
                )
                .service(
                    resource("/skus/{sku_id}", "GET, PATCH")
                        .route(web::get().to(get_sku))
                        .route(web::patch().to(patch_sku)),
                )
                .service(
                    resource("/skus/{sku_id}/codes", "POST").route(web::post().to(upload_codes)),
                )
                .service(resource("/skus/{sku_id}/stock", "GET").route(web::get().to(stock)))
                .service(resource("/admin/reviews", "GET").route(web::get().to(list_reviews)))
                .service(
                    resource("/admin/reviews/{order_id}/approve", "POST")
                        .route(web::post().to(approve_review)),
                )
                .service(
                    resource("/admin/reviews/{order_id}/reject", "POST")
                        .route(web::post().to(reject_review)),
                )
                .service(
                    resource("/skus/{sku_id}/expiry", "PUT, GET")
                        .route(web::put().to(put_expiry))
                        .route(web::get().to(get_expiry)),
                )
                .service(
                    resource("/skus/{sku_id}/suppliers", "PUT, GET")
                        .route(web::put().to(put_sourcing))
                        .route(web::get().to(get_sourcing)),
                )
                .service(
                    resource("/skus/{sku_id}/pricing", "PUT, GET")
                        .route(web::put().to(put_pricing))
                        .route(web::get().to(get_pricing)),
                )
                .service(resource("/orders", "POST").route(web::post().to(place_order)))
                .service(resource("/orders/batch", "POST").route(web::post().to(place_batch)))
                .service(resource("/orders/{order_id}", "GET").route(web::get().to(get_order)))
                .service(resource("/cards/balance", "POST").route(web::post().to(card_balance)))
                .service(resource("/cards/{card_id}", "GET").route(web::get().to(get_card)))
                .service(
                    resource("/cards/{card_id}/freeze", "POST").route(web::post().to(freeze_card)),
                )
                .service(
                    resource("/cards/{card_id}/unfreeze", "POST")
                        .route(web::post().to(unfreeze_card)),
                )
                .service(
                    resource("/cards/{card_id}/cancel", "POST").route(web::post().to(cancel_card)),
                )
                .service(
                    resource("/cards/{card_id}/resend", "POST").route(web::post().to(resend_card)),
                )
                .service(resource("/redemptions", "POST").route(web::post().to(redeem)))
                .service(
                    resource("/redemptions/{redemption_id}/reversal", "POST")
                        .route(web::post().to(reverse)),
                )
                .service(resource("/fx/quotes", "POST").route(web::post().to(create_quote)))
                .service(
                    resource("/fx/rates", "PUT, GET")
                        .route(web::put().to(put_fx))
                        .route(web::get().to(get_fx)),
                )
                .service(resource("/admin/stats", "GET").route(web::get().to(stats)))
                .service(
                    resource("/admin/orders/{client_id}/{order_id}/risk", "GET")
                        .route(web::get().to(order_risk)),
                )
                .service(
                    resource("/admin/price-lists/{client_id}", "PUT, GET")
                        .route(web::put().to(put_price_list))
                        .route(web::get().to(get_price_list)),
                )
                .service(
                    resource("/admin/fees", "PUT, GET")
                        .route(web::put().to(put_fees))
                        .route(web::get().to(get_fees)),
                )
                .service(
                    resource(
                        "/admin/suppliers/{supplier_id}/commission-tiers",
                        "PUT, GET",
                    )
                    .route(web::put().to(put_commission_tiers))
                    .route(web::get().to(get_commission_tiers)),
                )
                .service(
                    resource("/admin/reports/revenue", "GET").route(web::get().to(revenue_report)),
                )
                .service(
                    resource("/admin/reports/liability", "GET")
                        .route(web::get().to(liability_report)),
                )
                .service(
                    resource("/admin/margin-floors", "PUT, GET")
                        .route(web::put().to(put_margin_floors))
                        .route(web::get().to(get_margin_floors)),
                )
                .service(
                    resource("/admin/settlements", "POST").route(web::post().to(close_settlement)),
                )
                .service(
                    resource("/admin/reconciliation", "GET").route(web::get().to(reconciliation)),
                )
                .service(
                    resource("/deliveries/{card_id}/report", "POST")
                        .route(web::post().to(report_delivery)),
                )
                .service(
                    resource("/admin/deliveries/failed", "GET")
                        .route(web::get().to(failed_deliveries)),
                ),
        )
        .default_service(web::to(|| async {
            ApiError::NotFound {
                code: "not_found",
                what: "route",
            }
            .into_response()
        }));
}
