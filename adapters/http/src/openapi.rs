//! The OpenAPI 3.1 document, generated from the handlers' annotations and the wire types. Every
//! API operation also lists the problem+json error responses it can give.

use crate::error::Problem;
use crate::routes;
use crate::wire::*;
use std::sync::OnceLock;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "Giftcard engine API", version = "1.0.0", description = "Durable sharded gift card transaction engine. Money is integer minor units beside an ISO 4217 currency; errors are RFC 9457 problem+json with a stable `code`."),
    paths(
        routes::healthz, routes::readyz, routes::metrics, routes::openapi,
        routes::create_wallet, routes::get_wallet, routes::update_wallet, routes::deposit, routes::gateway_event, routes::transactions,
        routes::create_sku, routes::list_skus, routes::get_sku, routes::patch_sku, routes::upload_codes, routes::stock,
        routes::place_order, routes::place_batch, routes::get_order,
        routes::get_card, routes::freeze_card, routes::unfreeze_card, routes::cancel_card, routes::resend_card, routes::order_risk, routes::card_balance, routes::redeem, routes::reverse,
        routes::get_limits, routes::put_limits, routes::reset_limits, routes::put_fx, routes::get_fx, routes::create_quote, routes::put_price_list, routes::get_price_list, routes::put_pricing, routes::get_pricing, routes::put_sourcing, routes::get_sourcing, routes::put_expiry, routes::get_expiry, routes::put_margin_floors, routes::get_margin_floors, routes::put_fees, routes::get_fees, routes::put_commission_tiers, routes::get_commission_tiers, routes::revenue_report, routes::liability_report, routes::list_reviews, routes::approve_review, routes::reject_review, routes::stats, routes::close_settlement, routes::reconciliation,
        routes::report_delivery, routes::failed_deliveries,
    ),
    components(schemas(Problem, MoneyDto)),
    modifiers(&Security, &Problems),
    tags(
        (name = "wallets"), (name = "catalog"), (name = "orders"), (name = "cards"), (name = "fx"), (name = "admin"), (name = "deliveries"), (name = "ops"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

struct Problems;

const API_ERRORS: &[(&str, &str)] = &[
    (
        "400",
        "Malformed JSON, unknown field, or invalid value (`field` names it)",
    ),
    ("401", "Missing or unknown API key"),
    ("403", "The key's role or tenant may not do this"),
    ("404", "Unknown object (or another tenant's)"),
    ("405", "Method not allowed"),
    (
        "409",
        "Idempotency key reused with a different request, or the object exists",
    ),
    (
        "412",
        "`If-Match` names a version the object has moved on from",
    ),
    (
        "408",
        "The request body did not arrive within `http.body_read_timeout_ms`",
    ),
    ("411", "A request body without Content-Length"),
    ("413", "Request body too large"),
    (
        "415",
        "Request body declared as a media type other than JSON",
    ),
    (
        "422",
        "A business rule refused the request (`insufficient_funds`, `out_of_stock`, ...)",
    ),
    (
        "429",
        "Rate limit or engine overload; retry after `Retry-After` seconds",
    ),
    (
        "500",
        "A bug in the engine; `correlation_id` finds the log line",
    ),
    (
        "503",
        "Not ready (recovery running) or the engine cannot take work",
    ),
];

impl Modify for Problems {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        for (path, item) in doc.paths.paths.iter_mut() {
            let errors: Vec<&(&str, &str)> = if path.starts_with("/v1/") {
                API_ERRORS.iter().collect()
            } else if path == "/metrics" {
                API_ERRORS
                    .iter()
                    .filter(|(s, _)| ["401", "403", "405"].contains(s))
                    .collect()
            } else if path == "/readyz" {
                API_ERRORS
                    .iter()
                    .filter(|(s, _)| *s == "503" || *s == "405")
                    .collect()
            } else {
                API_ERRORS.iter().filter(|(s, _)| *s == "405").collect()
            };
            let ops = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for op in ops.into_iter().flatten() {
                for (status, description) in &errors {
                    let content = ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Problem")))
                        .build();
                    let mut response = ResponseBuilder::new()
                        .description(*description)
                        .content("application/problem+json", content);
                    if *status == "429" {
                        let seconds = utoipa::openapi::ObjectBuilder::new()
                            .schema_type(utoipa::openapi::schema::Type::Integer)
                            .minimum(Some(1));
                        let header = utoipa::openapi::HeaderBuilder::new()
                            .schema(seconds)
                            .description(Some("Seconds to wait before retrying"));
                        response = response.header("Retry-After", header.build());
                    }
                    let response = response.build();
                    op.responses
                        .responses
                        .entry((*status).to_owned())
                        .or_insert(RefOr::T(response));
                }
            }
        }
    }
}

/// The document as JSON, built once.
pub fn document() -> String {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
        cross_field_rules(&mut doc);
        doc.to_string()
    })
    .clone()
}

/// Rules between fields that the derive cannot state, written into the document so that it
/// describes exactly what the handlers accept.
fn cross_field_rules(doc: &mut serde_json::Value) {
    use serde_json::json;
    let schemas = &mut doc["components"]["schemas"];
    if let Some(sku) = schemas
        .get_mut("SkuRequest")
        .and_then(|s| s.as_object_mut())
    {
        // Only issued SKUs have an issue cap.
        sku.insert(
            "if".into(),
            json!({"properties": {"kind": {"const": "supplier_code"}}}),
        );
        sku.insert(
            "then".into(),
            json!({"properties": {"issue_cap": {"type": "null"}}}),
        );
    }
    // Every channel but `none` needs a recipient.
    let text = json!({"type": "string", "pattern": TEXT_PATTERN, "maxLength": 256});
    let mut named = text.clone();
    named["minLength"] = json!(1);
    schemas["DeliveryDto"] = json!({
        "description": "Where the cards go: `none`, or a channel with its recipient.",
        "oneOf": [
            {"type": "object", "additionalProperties": false, "required": ["channel"],
             "properties": {"channel": {"type": "string", "enum": ["none"]}, "recipient": text}},
            {"type": "object", "additionalProperties": false, "required": ["channel", "recipient"],
             "properties": {"channel": {"type": "string", "enum": ["email", "sms", "webhook"]}, "recipient": named}},
        ]
    });
}

/// Free text: no control characters (the handlers check the same with `char::is_control`).
const TEXT_PATTERN: &str = r"^[^\u0000-\u001F\u007F-\u009F]*$";

pub use giftcard_intake::wire::{currency_codes, currency_schema, optional_currency_schema};
