//! Payment gateways' webhooks: a gateway that captured a payment posts a signed
//! `payment.succeeded` event, and the wallet it names is credited exactly once per event id.
//! The signature (Standard Webhooks: HMAC-SHA256 over `id.timestamp.body` with the gateway's
//! secret) is checked on the raw bytes before anything is parsed; the timestamp must be within
//! the gateway's tolerance, so a captured message cannot be replayed later, and a replay inside
//! the tolerance is the same deposit id and so credits nothing.

use super::reply;
use super::wallets::credit;
use crate::error::ApiError;
use crate::input::{self, JsonBody};
use crate::state::AppState;
use crate::wire::*;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use giftcard_core::{Caller, ClientId};
use giftcard_intake::signature::{self, Refusal};

/// The event type that credits a wallet; every other type is acknowledged and ignored.
const PAYMENT_SUCCEEDED: &str = "payment.succeeded";

fn header<'a>(req: &'a HttpRequest, name: &'static str) -> Result<&'a str, ApiError> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .ok_or(ApiError::InvalidSignature(match name {
            "webhook-id" => "the webhook-id header is missing",
            "webhook-timestamp" => "the webhook-timestamp header is missing",
            _ => "the webhook-signature header is missing",
        }))
}

fn refusal(r: Refusal) -> ApiError {
    ApiError::InvalidSignature(match r {
        Refusal::Malformed("webhook-id") => "webhook-id must be 1 to 256 characters",
        Refusal::Malformed("webhook-timestamp") => "webhook-timestamp must be Unix seconds",
        Refusal::Malformed(_) => "webhook-signature holds no v1 signature",
        Refusal::Stale => "webhook-timestamp is outside the tolerance",
        Refusal::Mismatch => "no signature matches",
    })
}

/// A payment gateway's signed event; `payment.succeeded` credits the wallet it names, once.
#[utoipa::path(post, path = "/v1/gateways/{gateway}/events", tag = "wallets",
    params(("gateway" = String, Path, pattern = r"^[A-Za-z0-9._:-]{1,64}$", min_length = 1, max_length = 64),
        ("webhook-id" = String, Header, description = "The event's id: its deposit id"),
        ("webhook-timestamp" = String, Header, description = "Unix seconds"),
        ("webhook-signature" = String, Header, description = "`v1,<base64 HMAC-SHA256>`, space-separated")),
    request_body = GatewayEvent,
    responses((status = 201, body = GatewayEventView), (status = 200, description = "Another event type: acknowledged, nothing done", body = GatewayEventView)))]
pub async fn gateway_event(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: JsonBody<GatewayEvent>,
) -> crate::error::Answer {
    state.engine()?;
    let name = input::id("gateway", &path)?;
    let gateway = state.gateways.get(name).ok_or(ApiError::NotFound {
        code: "gateway_not_found",
        what: "gateway",
    })?;
    let id = header(&req, "webhook-id")?;
    let timestamp = header(&req, "webhook-timestamp")?;
    let signatures = header(&req, "webhook-signature")?;
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let event = body.parse_with(|bytes| {
        signature::verify(
            &gateway.secrets,
            id,
            timestamp,
            signatures,
            bytes,
            now_s,
            gateway.tolerance_s,
        )
        .map_err(refusal)?;
        input::json::<GatewayEvent>(bytes)
    })?;
    if event.kind != PAYMENT_SUCCEEDED {
        let view = GatewayEventView {
            status: "ignored".into(),
            deposit: None,
        };
        return Ok(reply(StatusCode::OK, &view, false));
    }
    // The deposit id is the gateway's and the event's: exactly one credit per event. An event
    // id that does not fit a deposit id (too long, other characters) is used by its hash, so a
    // correctly signed event is never refused for its id's shape.
    let direct = format!("{name}:{id}");
    let deposit_id = match input::id("webhook-id", &direct) {
        Ok(_) => direct,
        Err(_) => format!("{name}:h{}", &blake3::hash(id.as_bytes()).to_hex()[..32]),
    };
    input::id("webhook-id", &deposit_id)?;
    let wallet = input::id("data.wallet_id", &event.data.wallet_id)?;
    let caller = Caller {
        client: ClientId::new(&gateway.client),
        admin: false,
    };
    let funder = format!("gateway:{name}");
    let (deposit, replayed) = credit(
        &state,
        caller,
        wallet,
        deposit_id,
        &event.data.amount,
        event.data.reference,
        (&funder, &gateway.deposit_limit),
    )
    .await?;
    let view = GatewayEventView {
        status: "credited".into(),
        deposit: Some(deposit),
    };
    Ok(reply(StatusCode::CREATED, &view, replayed))
}
