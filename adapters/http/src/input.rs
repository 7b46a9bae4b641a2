//! Request bodies over HTTP: [`JsonBody`], a size-bounded body parsed only after the role check.
//! The input discipline itself (strict JSON, ids, money, decimals) lives in `giftcard-intake`,
//! shared with the queue adapter, and is re-exported here.

use crate::error::ApiError;
use actix_web::web::Bytes;
pub use giftcard_intake::input::*;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A JSON body of at most the configured size (413 beyond it), parsed by [`JsonBody::parse`]
/// only after the handler has checked the caller's role, so a forbidden caller learns nothing
/// about the body's shape.
pub struct JsonBody<T> {
    bytes: Bytes,
    /// Whether the request said its body is JSON; checked in [`JsonBody::parse`], so after the
    /// role check like everything else about the body.
    json_media_type: bool,
    /// This body's share of the client's and the server's buffer budgets, given back when the
    /// request is done.
    _budget: Option<(
        tokio::sync::OwnedSemaphorePermit,
        tokio::sync::OwnedSemaphorePermit,
    )>,
    /// The request slot of an unauthenticated request (a gateway's, or the shared one).
    _slot: Option<crate::limits::Admitted>,
    kind: std::marker::PhantomData<T>,
}

impl<T: DeserializeOwned + Serialize> JsonBody<T> {
    /// Parses the body strictly with [`json`].
    pub fn parse(self) -> Result<T, ApiError> {
        self.parse_with(json)
    }

    /// Parses the body with `parse` (a pure parser of the bytes) once its media type is JSON.
    pub fn parse_with<U>(
        self,
        parse: impl FnOnce(&[u8]) -> Result<U, ApiError>,
    ) -> Result<U, ApiError> {
        if !self.json_media_type {
            return Err(ApiError::UnsupportedMediaType);
        }
        parse(&self.bytes)
    }
}

impl<T: DeserializeOwned + 'static> actix_web::FromRequest for JsonBody<T> {
    type Error = crate::error::HttpError;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self, crate::error::HttpError>>>>;

    fn from_request(
        req: &actix_web::HttpRequest,
        payload: &mut actix_web::dev::Payload,
    ) -> Self::Future {
        let limit = req.app_data::<crate::BodyLimit>().map_or(4 << 20, |l| l.0);
        let declared = req
            .headers()
            .get(actix_web::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        // A body of undeclared length (chunked) would hold the whole body budget while it
        // trickles in: refused, so every body reserves exactly what it declared.
        let Some(declared) = declared else {
            return Box::pin(std::future::ready(Err(ApiError::LengthRequired.into())));
        };
        if declared > limit {
            return Box::pin(std::future::ready(Err(ApiError::TooLarge { limit }.into())));
        }
        // Reserve the bytes this body may take before reading it, from the client's share and
        // from the server's budget; when either is spent, shed the request instead of
        // buffering it.
        let kib = u32::try_from(declared.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
        let state = req.app_data::<actix_web::web::Data<crate::state::AppState>>();
        let mut timeout = std::time::Duration::from_secs(10);
        let mut slot = None;
        let budget = match state {
            Some(state) => {
                timeout = state.body_read_timeout;
                let client = actix_web::HttpMessage::extensions(req)
                    .get::<crate::limits::Admitted>()
                    .map(|a| a.client.clone());
                // An unauthenticated body is a payment gateway's webhook: an unknown gateway is
                // told so before any of its body is read, and each known one has its own share
                // (and request slots), so nobody's slow bodies starve a gateway.
                let client = match (client, req.match_info().get("gateway")) {
                    (Some(c), _) => Some(c),
                    (None, Some(name)) if state.gateways.contains_key(name) => {
                        let key = crate::limits::gateway_share(name);
                        match crate::limits::Admitted::enter(&key, state.shares.of(Some(&key))) {
                            Ok(a) => slot = Some(a),
                            Err(e) => return Box::pin(std::future::ready(Err(e.into()))),
                        }
                        Some(key)
                    }
                    (None, Some(_)) => {
                        let unknown = ApiError::NotFound {
                            code: "gateway_not_found",
                            what: "gateway",
                        };
                        return Box::pin(std::future::ready(Err(unknown.into())));
                    }
                    (None, None) => {
                        match crate::limits::Admitted::enter("", state.shares.of(None)) {
                            Ok(a) => slot = Some(a),
                            Err(e) => return Box::pin(std::future::ready(Err(e.into()))),
                        }
                        None
                    }
                };
                let share = state.shares.of(client.as_deref());
                let own = share.body_kib.clone().try_acquire_many_owned(kib);
                let all = state.body_budget_kib.clone().try_acquire_many_owned(kib);
                match (own, all) {
                    (Ok(own), Ok(all)) => Some((own, all)),
                    _ => {
                        return Box::pin(std::future::ready(Err(ApiError::Overloaded.into())));
                    }
                }
            }
            None => None,
        };
        let json_media_type = match req.headers().get(actix_web::http::header::CONTENT_TYPE) {
            // A client that declares no type (raw HTTP clients, this repository's own tests)
            // gets its body parsed as strictly as any JSON; only another declared type is 415.
            None => true,
            Some(v) => v.to_str().is_ok_and(is_json_media_type),
        };
        let bytes = <Bytes as actix_web::FromRequest>::from_request(req, payload);
        Box::pin(async move {
            // A body that trickles in (declared, then sent a byte at a time) would hold its
            // budget for as long as the client likes: it gets a deadline.
            let bytes = tokio::time::timeout(timeout, bytes)
                .await
                .map_err(|_| ApiError::BodyTimeout)?
                .map_err(|e| match e.as_response_error().status_code() {
                    actix_web::http::StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge { limit },
                    _ => ApiError::Invalid {
                        code: "malformed_body",
                        detail: "the request body could not be read".into(),
                        field: None,
                    },
                })?;
            Ok(JsonBody {
                bytes,
                json_media_type,
                _budget: budget,
                _slot: slot,
                kind: std::marker::PhantomData,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// Every property named in `LIST_FIELDS`, in every schema a request body can contain, is a
    /// list: the fast path of `json` trusts arrays under those names only because of this.
    #[test]
    fn list_fields_are_arrays_in_every_request_schema() {
        let doc: Value =
            serde_json::from_str(&crate::openapi::document()).expect("the document is JSON");
        let schemas = doc["components"]["schemas"]
            .as_object()
            .expect("components.schemas");
        fn refs(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        out.push(r.trim_start_matches("#/components/schemas/").to_owned());
                    }
                    m.values().for_each(|v| refs(v, out));
                }
                Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        // Schemas reachable from any request body.
        let mut todo = Vec::new();
        for ops in doc["paths"].as_object().expect("paths").values() {
            for op in ops.as_object().expect("operations").values() {
                refs(&op["requestBody"], &mut todo);
            }
        }
        let mut done = std::collections::BTreeSet::new();
        let mut seen = std::collections::BTreeSet::new();
        while let Some(name) = todo.pop() {
            if !done.insert(name.clone()) {
                continue;
            }
            let schema = &schemas[&name];
            refs(schema, &mut todo);
            let Some(props) = schema["properties"].as_object() else {
                continue;
            };
            for (field, p) in props {
                if !LIST_FIELDS.contains(&field.as_str()) {
                    continue;
                }
                seen.insert(field.clone());
                let is_array = p["type"] == "array"
                    || p["type"]
                        .as_array()
                        .is_some_and(|t| t.iter().any(|t| t == "array"));
                assert!(is_array, "{name}.{field} is not a list: {p}");
            }
        }
        assert!(done.len() > 5, "request schemas found: {done:?}");
        assert_eq!(seen.len(), LIST_FIELDS.len(), "list fields found: {seen:?}");
    }

    #[test]
    fn decimals_match_their_documented_patterns_only() {
        let ok = |s, k| decimal("f", s, k).is_ok();
        assert!(ok("0", DecimalKind::Fraction) && ok("0.15", DecimalKind::Fraction));
        assert!(
            !ok("1", DecimalKind::Fraction)
                && !ok("0.1e2", DecimalKind::Fraction)
                && !ok("+0.1", DecimalKind::Fraction)
        );
        assert!(
            ok("-0.5", DecimalKind::Markup)
                && ok("10", DecimalKind::Markup)
                && ok("9.99", DecimalKind::Markup)
        );
        assert!(!ok("-1", DecimalKind::Markup) && !ok("10.01", DecimalKind::Markup));
        assert!(ok("1.0850", DecimalKind::Rate) && ok("0.0001", DecimalKind::Rate));
        assert!(
            !ok("0", DecimalKind::Rate)
                && !ok("0.000", DecimalKind::Rate)
                && !ok("-1", DecimalKind::Rate)
        );
        let doc = crate::openapi::document();
        for k in [
            DecimalKind::Fraction,
            DecimalKind::Markup,
            DecimalKind::Rate,
        ] {
            let escaped = serde_json::to_string(k.pattern()).unwrap_or_default();
            assert!(
                doc.contains(&escaped),
                "the OpenAPI document states {}",
                k.pattern()
            );
        }
    }
}
