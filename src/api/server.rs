//! The REST server: the routes the cluster needs to run (`GET /patroni`, the health checks,
//! `/liveness`, `/readiness`, `POST /failsafe`), answering from the status the HA task publishes.
//! Handlers never run SQL or DCS calls.
//!
//! Growing it: add a route in [`router`] (one handler per resource); mutating routes get the auth
//! layer when `restapi.authentication` is set (the full API is its own issue).

use super::probe::{ProbeQuery, health_status, liveness_status, readiness_failure};
use super::status::NodeStatus;
use crate::ha::runner::HaShared;
use crate::ha::snapshot::FailsafePing;
use axum::Router;
use axum::body::Body;
use axum::extract::{Json, Query, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::{get, post};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::watch;

/// What every handler reads.
#[derive(Clone)]
pub struct AppState {
    /// The last published status.
    pub status: watch::Receiver<Arc<NodeStatus>>,
    /// Shared with the HA task (failsafe pings, loop liveness).
    pub ha: Arc<HaShared>,
}

/// Parse a `lag=` value: bytes, or a number with Patroni's size units (`B`, `kB`, `MB`, `GB`,
/// `TB`, powers of 1024). `None` when malformed.
pub fn parse_lag(v: &str) -> Option<u64> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "kB" | "KB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        "TB" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// The probe query from raw query parameters.
pub fn probe_query(q: &BTreeMap<String, String>) -> ProbeQuery {
    ProbeQuery {
        lag: q.get("lag").and_then(|l| parse_lag(l)),
        replication_state: q.get("replication_state").cloned(),
        tags: q
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("tag_").map(|t| (t.to_string(), v.clone())))
            .collect(),
        mode_write: q.get("mode").is_some_and(|m| m == "write"),
    }
}

fn json_response(code: u16, s: &NodeStatus) -> Response {
    let body = serde_json::to_string(s).unwrap_or_else(|_| "{}".into());
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn status_only(code: u16) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    r
}

async fn get_patroni(State(app): State<AppState>) -> Response {
    let s = app.status.borrow().clone();
    json_response(200, &s)
}

async fn liveness(State(app): State<AppState>) -> Response {
    let s = app.status.borrow().clone();
    let since = app.ha.last_cycle.lock().map(|t| t.elapsed().as_secs_f64()).unwrap_or(f64::MAX);
    let ttl = app.ha.ttl_secs.load(Ordering::Relaxed) as f64;
    status_only(liveness_status(&s, since, ttl))
}

async fn readiness(State(app): State<AppState>, Query(q): Query<BTreeMap<String, String>>) -> Response {
    let s = app.status.borrow().clone();
    match readiness_failure(&probe_query(&q), &s, s.failsafe_mode_is_active) {
        None => status_only(200),
        Some(why) => {
            let mut r = Response::new(Body::from(why));
            *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            r
        }
    }
}

/// Body of `POST /failsafe`.
#[derive(Debug, serde::Deserialize)]
pub struct FailsafeRequest {
    /// Leader name.
    pub name: String,
    /// Its conn_url.
    #[serde(default)]
    pub conn_url: Option<String>,
    /// Its api_url.
    #[serde(default)]
    pub api_url: Option<String>,
}

async fn post_failsafe(State(app): State<AppState>, Json(req): Json<FailsafeRequest>) -> Response {
    if !app.ha.failsafe_mode.load(Ordering::Relaxed) {
        let mut r = Response::new(Body::from("Failsafe mode is not enabled"));
        *r.status_mut() = StatusCode::BAD_GATEWAY;
        return r;
    }
    let s = app.status.borrow().clone();
    if s.role == crate::types::Role::Primary && s.state == "running" && s.patroni.name != req.name {
        let mut r = Response::new(Body::from("Running as a leader"));
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        return r;
    }
    let ping = FailsafePing {
        name: req.name,
        conn_url: req.conn_url,
        api_url: req.api_url,
        received_at: app.ha.now(),
    };
    if let Ok(mut g) = app.ha.failsafe_ping.lock() {
        *g = Some(ping);
    }
    let mut r = Response::new(Body::from("Accepted"));
    let lsn = s.replayed_location().max(s.received_location());
    if let Ok(v) = HeaderValue::from_str(&lsn.to_string()) {
        r.headers_mut().insert("lsn", v);
    }
    r
}

/// Every other path: Patroni's generic health check, matched by substring. GET returns the status
/// JSON; HEAD and OPTIONS only the status line.
async fn health(State(app): State<AppState>, method: Method, uri: Uri) -> Response {
    let q: BTreeMap<String, String> = uri
        .query()
        .map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let s = app.status.borrow().clone();
    let code = health_status(uri.path(), &probe_query(&q), &s);
    match method {
        Method::GET => json_response(code, &s),
        Method::HEAD | Method::OPTIONS => status_only(code),
        _ => status_only(501),
    }
}

/// The router (tests call it with `oneshot`, no socket).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/patroni", get(get_patroni))
        .route("/liveness", get(liveness).head(liveness).options(liveness))
        .route("/readiness", get(readiness).head(readiness).options(readiness))
        .route("/failsafe", post(post_failsafe))
        .fallback(health)
        .with_state(state)
}

/// Serve `router(state)` on `listen` until `stop` fires.
pub async fn serve(
    listen: &str,
    state: AppState,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let addr = if listen.starts_with(':') { format!("0.0.0.0{listen}") } else { listen.to_string() };
    let l = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| anyhow::anyhow!("restapi.listen {addr}: {e}"))?;
    let app = router(state);
    Ok(tokio::spawn(async move {
        let r = axum::serve(l, app).with_graceful_shutdown(async move { stop.cancelled().await }).await;
        if let Err(e) = r {
            tracing::error!("REST API server failed: {e}");
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;
    use tower::ServiceExt;

    fn app(s: NodeStatus) -> (Router, Arc<HaShared>) {
        let (_tx, rx) = watch::channel(Arc::new(s));
        let ha = Arc::new(HaShared::new());
        // Keep the sender alive for the test: leak-free because the channel is dropped with rx.
        std::mem::forget(_tx);
        (router(AppState { status: rx, ha: ha.clone() }), ha)
    }

    #[test]
    fn lag_accepts_patroni_units() {
        assert_eq!(parse_lag("1024"), Some(1024));
        assert_eq!(parse_lag("16kB"), Some(16 * 1024));
        assert_eq!(parse_lag("64MB"), Some(64 << 20));
        assert_eq!(parse_lag("1GB"), Some(1 << 30));
        assert_eq!(parse_lag("1XB"), None);
    }

    #[tokio::test]
    async fn primary_answers_200_on_primary_and_503_on_replica_by_substring() {
        let mut s = NodeStatus::initial("demo", "pg0");
        s.state = "running".into();
        s.role = crate::types::Role::Primary;
        s.is_leader = true;
        s.cluster_known = true;
        let (r, _) = app(s);
        for (path, method, code) in [
            ("/primary", Method::GET, 200),
            ("/read-write", Method::HEAD, 200),
            ("/master", Method::OPTIONS, 200),
            ("/replica", Method::GET, 503),
            ("/patroni", Method::GET, 200),
        ] {
            let resp = r
                .clone()
                .oneshot(Request::builder().method(method).uri(path).body(Body::empty()).expect("request"))
                .await
                .expect("response");
            assert_eq!(resp.status().as_u16(), code, "{path}");
        }
    }

    #[tokio::test]
    async fn failsafe_ping_is_recorded_only_in_failsafe_mode() {
        let s = NodeStatus::initial("demo", "pg1");
        let (r, ha) = app(s);
        let req = || {
            Request::builder()
                .method(Method::POST)
                .uri("/failsafe")
                .header("content-type", "application/json")
                .body(Body::from(r#"{"name":"pg0","conn_url":"postgres://127.0.0.1:5432/postgres"}"#))
                .expect("request")
        };
        let resp = r.clone().oneshot(req()).await.expect("response");
        assert_eq!(resp.status().as_u16(), 502);
        ha.failsafe_mode.store(true, Ordering::Relaxed);
        let resp = r.oneshot(req()).await.expect("response");
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(
            ha.failsafe_ping.lock().expect("lock").as_ref().map(|p| p.name.clone()),
            Some("pg0".into())
        );
    }
}
