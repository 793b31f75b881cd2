//! The HTTP routes: agent cards, the bearer-token check, the JSON-RPC endpoint, `/healthz` and
//! `/metrics`.

use super::*;

pub(super) async fn card(
    State(server): State<Arc<A2aServer>>,
    Path(module): Path<String>,
) -> Response {
    match server.module(&module) {
        Some(info) => Json(server.card(&info)).into_response(),
        None => (StatusCode::NOT_FOUND, format!("no agent named {module:?}")).into_response(),
    }
}

/// Checks the caller's token from the headers alone, before anything reads the body: a
/// call without a token this server knows is answered 401 at once, and a body it announced
/// but never sends holds nothing. The caller's participant goes on to the handler as a
/// request extension.
pub(super) async fn require_token(
    State(server): State<Arc<A2aServer>>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let authorization = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    let Some(caller) = server.caller_of(authorization) else {
        server.metrics.error("unauthorized");
        return unauthorized();
    };
    request.extensions_mut().insert(caller);
    next.run(request).await
}

pub(super) fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
        "a bearer token this server knows is required",
    )
        .into_response()
}

pub(super) async fn rpc(
    State(server): State<Arc<A2aServer>>,
    Path(module): Path<String>,
    // Found from the token by `require_token`, before the body was read.
    Extension(caller): Extension<ModuleName>,
    body: Bytes,
) -> Response {
    let Some(info) = server.module(&module) else {
        return (StatusCode::NOT_FOUND, format!("no agent named {module:?}")).into_response();
    };
    let answer = |id: &Value, outcome: Result<Raw, RpcError>| match outcome {
        // The result is already JSON: written as it is, never parsed again.
        Ok(result) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            format!(
                r#"{{"jsonrpc":"2.0","id":{},"result":{}}}"#,
                Value::to_string(id),
                result.get()
            ),
        )
            .into_response(),
        Err(e) => {
            server.metrics.error(error_kind(e.code));
            Json(json!({"jsonrpc": "2.0", "id": id, "error": {"code": e.code, "message": e.message}}))
                .into_response()
        }
    };
    let reply = |id: &Value, method: &'static str, outcome: Result<Raw, RpcError>| {
        server
            .metrics
            .request(method, outcome.as_ref().err().map(|e| e.code));
        answer(id, outcome)
    };
    let call: Call<'_> = match serde_json::from_slice(&body) {
        Ok(call) => call,
        Err(e) => {
            let (code, what) = match e.classify() {
                serde_json::error::Category::Data => {
                    (error_code::INVALID_REQUEST, "not a JSON-RPC request")
                }
                _ => (error_code::PARSE_ERROR, "not JSON"),
            };
            return reply(
                &Value::Null,
                "invalid",
                Err(RpcError::new(code, format!("{what}: {e}"))),
            );
        }
    };
    let id = call.id.unwrap_or(Value::Null);
    let valid_id = matches!(id, Value::Null | Value::String(_) | Value::Number(_));
    let (Some(Value::String(method)), true, Some("2.0")) = (
        &call.method,
        valid_id,
        call.jsonrpc.as_ref().and_then(Value::as_str),
    ) else {
        return reply(
            if valid_id { &id } else { &Value::Null },
            "invalid",
            Err(RpcError::new(
                error_code::INVALID_REQUEST,
                "a JSON-RPC 2.0 request needs \"jsonrpc\": \"2.0\", a string method and a string, number or null id",
            )),
        );
    };
    let label = crate::ops::method_label(method);
    let null = RawValue::NULL;
    let params = call.params.unwrap_or(null);
    // Clients that speak v0.3 call its method names with its JSON, and get its JSON back.
    let v03 = legacy::is_v03(method);
    let converted;
    let params = if v03 {
        let value = serde_json::from_str(params.get()).unwrap_or(Value::Null);
        converted = match serde_json::value::to_raw_value(&legacy::params_from_v03(value)) {
            Ok(raw) => raw,
            Err(e) => {
                return reply(
                    &id,
                    label,
                    Err(RpcError::new(error_code::INTERNAL_ERROR, e.to_string())),
                )
            }
        };
        &*converted
    } else {
        params
    };
    if is_streaming(method) {
        let events = Arc::clone(&server)
            .stream(caller, info.name.clone(), method, params)
            .await;
        return match events {
            Ok(events) => {
                server.metrics.request(label, None);
                sse(id, v03, events)
            }
            Err(e) => reply(&id, label, Err(e)),
        };
    }
    let outcome = server.call(&caller, &info.name, method, params).await;
    let outcome = if v03 {
        outcome.and_then(|result| {
            let value = serde_json::from_str(result.get()).unwrap_or(Value::Null);
            to_raw(&legacy::result_to_v03(method, value))
        })
    } else {
        outcome
    };
    reply(&id, label, outcome)
}

/// A JSON-RPC request as read: each member checked after parsing, so that a request with a
/// wrong member gets "invalid request" rather than "not JSON"; params kept as raw JSON and
/// parsed once, into the method's own type.
#[derive(serde::Deserialize)]
pub(super) struct Call<'a> {
    #[serde(default)]
    pub(super) jsonrpc: Option<Value>,
    #[serde(default)]
    pub(super) id: Option<Value>,
    #[serde(default)]
    pub(super) method: Option<Value>,
    #[serde(default, borrow)]
    pub(super) params: Option<&'a RawValue>,
}

pub(super) async fn healthz(State(server): State<Arc<A2aServer>>) -> Response {
    let health = server.hub.health(None).await;
    let status = if health.healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    // Liveness for anyone who asks; the callers' names are not everyone's business.
    let mut health = health;
    health.modules.retain(|m| !server.callers.contains(m));
    (status, Json(health_json(&health))).into_response()
}

pub(super) async fn metrics(State(server): State<Arc<A2aServer>>) -> Response {
    // Counted by the store at each scrape (an index count); a store that does not answer
    // leaves the series out of this scrape rather than failing it.
    let by_status = server.hub.reader().count_by_status().await.ok();
    let text = server.metrics.render(
        &server.hub.stats(),
        server.flights.len(),
        server.hub.timed_out_total(),
        by_status.as_ref(),
    );
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
