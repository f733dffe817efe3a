//! `GET /cluster`, `/history`, `/config`, `/failsafe` (PATRONI-COMPAT §3.3), answered from the DCS
//! view the HA loop read last ([`crate::ha::runner::DcsView`]): no DCS call in the request. Patroni
//! reads `/cluster` live; here it is at most one `loop_wait` old, and the body carries no age (the
//! same JSON as Patroni's).

use super::server::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::Value;

fn json(code: StatusCode, v: &Value) -> Response {
    let mut r = Response::new(Body::from(v.to_string()));
    *r.status_mut() = code;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// Patroni's `send_error(code)` body.
fn error(code: StatusCode) -> Response {
    let reason = code.canonical_reason().unwrap_or("Error");
    let mut r = Response::new(Body::from(format!(
        "<html><head><title>Error response</title></head><body><h1>Error response</h1>\
         <p>Error code: {}</p><p>Message: {reason}.</p></body></html>\n",
        code.as_u16()
    )));
    *r.status_mut() = code;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html;charset=utf-8"));
    r
}

/// No successful DCS read yet (Patroni would fail the live read): 503.
fn no_view() -> Response {
    let mut r = Response::new(Body::from("DCS is not accessible"));
    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    r
}

/// `GET /cluster`: `cluster_as_json` plus `scope`.
pub(in crate::api) async fn cluster(State(app): State<AppState>) -> Response {
    let Some(v) = app.ha.dcs_view() else {
        return no_view();
    };
    let mut body = crate::ctl::list::cluster_as_json(&v.cluster);
    let scope = app.status.borrow().patroni.scope.clone();
    body.insert("scope".into(), Value::String(scope));
    json(StatusCode::OK, &Value::Object(body))
}

/// `GET /history`: the `history` key's lines (`[]` when absent).
pub(in crate::api) async fn history(State(app): State<AppState>) -> Response {
    let Some(v) = app.ha.dcs_view() else {
        return no_view();
    };
    let lines = v
        .cluster
        .history
        .as_ref()
        .map(|h| h.lines.iter().map(|l| l.to_value()).collect())
        .unwrap_or_default();
    json(StatusCode::OK, &Value::Array(lines))
}

/// `GET /config`: the `config` key; 502 when it does not exist.
pub(in crate::api) async fn config(State(app): State<AppState>) -> Response {
    match app.ha.dcs_view().and_then(|v| v.cluster.config.as_ref().map(|c| Value::Object(c.data.clone()))) {
        Some(c) => json(StatusCode::OK, &c),
        None => error(StatusCode::BAD_GATEWAY),
    }
}

/// `GET /failsafe`: the `failsafe` key (member → api_url); 502 when absent.
pub(in crate::api) async fn failsafe(State(app): State<AppState>) -> Response {
    match app.ha.dcs_view().and_then(|v| v.cluster.failsafe.clone()) {
        Some(f) => json(StatusCode::OK, &serde_json::to_value(f).unwrap_or(Value::Null)),
        None => error(StatusCode::BAD_GATEWAY),
    }
}
