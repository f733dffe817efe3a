//! The REST server: Patroni's paths answered from what the HA task publishes (the status watch
//! channel, the last DCS view and the metrics in [`HaShared`]). Handlers never run SQL or DCS calls,
//! so a frozen postmaster or a dead DCS never makes a health check hang.
//!
//! Layout: [`router`] builds every route; GETs (health checks, `/patroni`, `/cluster`, `/history`,
//! `/config`, `/failsafe`, `/metrics`) are open; **every mutating route goes through
//! [`super::auth::mutating`]** (allowlist → client certificate → Basic auth, Patroni's order), e.g.
//! `router.merge(auth::mutating(Router::new().route("/reload", post(reload)), &state))`. Bodies are
//! read with [`super::extract::ApiJson`] (400/411 with a message). [`serve`] runs the accept loop
//! (plain TCP or rustls), puts a [`ConnInfo`] on every request, and applies the connection limits:
//! header read timeout, body size limit ([`MAX_BODY_BYTES`]) and a per-request deadline
//! ([`READ_TIMEOUT`] for GETs, [`REQUEST_TIMEOUT`] for everything else).

use super::auth::{Access, ConnInfo};
use super::extract::ApiJson;
use super::probe::{ProbeQuery, health_status, liveness_status, readiness_failure};
use super::status::NodeStatus;
use crate::ha::command::HaHandle;
use crate::ha::runner::HaShared;
use crate::ha::snapshot::FailsafePing;
use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::{get, post};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::watch;

/// Largest request body accepted (413 above).
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Deadline of a GET (they answer from memory: this only bounds slow clients).
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline of any other request (a switchover or restart waits for the HA loop).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// Time a client has to send the request headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What every handler reads.
#[derive(Clone)]
pub struct AppState {
    /// The last published status.
    pub status: watch::Receiver<Arc<NodeStatus>>,
    /// Shared with the HA task (failsafe pings, loop liveness, DCS view, metrics).
    pub ha: Arc<HaShared>,
    /// Who may call mutating endpoints (replaced on SIGHUP, see [`AppState::set_access`]).
    pub access: Arc<std::sync::RwLock<Arc<Access>>>,
    /// Management commands to the HA side.
    pub cmd: HaHandle,
}

impl AppState {
    /// State with no access restrictions (tests; the agent sets [`AppState::access`] from
    /// `restapi`).
    pub fn new(status: watch::Receiver<Arc<NodeStatus>>, ha: Arc<HaShared>) -> AppState {
        AppState {
            status,
            ha,
            access: Arc::new(std::sync::RwLock::new(Arc::new(Access::open()))),
            cmd: HaHandle::disconnected(),
        }
    }

    /// With these access rules.
    pub fn with_access(self, access: Access) -> AppState {
        self.set_access(access);
        self
    }

    /// Replace the access rules for the requests that follow (the configuration was reloaded).
    pub fn set_access(&self, access: Access) {
        if let Ok(mut a) = self.access.write() {
            *a = Arc::new(access);
        }
    }

    /// The access rules in force.
    pub fn access(&self) -> Arc<Access> {
        self.access.read().map(|a| a.clone()).unwrap_or_else(|_| Arc::new(Access::open()))
    }

    /// Send management commands to `cmd` (without it they get 503).
    pub fn with_commands(mut self, cmd: HaHandle) -> AppState {
        self.cmd = cmd;
        self
    }
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

async fn post_failsafe(State(app): State<AppState>, ApiJson(req): ApiJson<FailsafeRequest>) -> Response {
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

/// The router (tests call it with `oneshot`, no socket). Connection facts ([`ConnInfo`]) come from
/// [`serve`]; tests add them as a request extension.
pub fn router(state: AppState) -> Router {
    use super::auth::mutating_without_members;
    use super::views;
    use tower_http::timeout::TimeoutLayer;
    // GET routes answer HEAD and OPTIONS the way Patroni does: as a health check of that path.
    let reads = Router::new()
        .route("/patroni", get(get_patroni).head(health).options(health))
        .route("/liveness", get(liveness).head(liveness).options(liveness))
        .route("/readiness", get(readiness).head(readiness).options(readiness))
        .route("/cluster", get(views::cluster).head(health).options(health))
        .route("/history", get(views::history).head(health).options(health))
        .route("/config", get(views::config).head(health).options(health))
        .route("/failsafe", get(views::failsafe).head(health).options(health))
        .route("/metrics", get(super::metrics::metrics).head(health).options(health))
        .fallback(health)
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, READ_TIMEOUT));
    let writes = mutating_without_members(Router::new().route("/failsafe", post(post_failsafe)), &state)
        .merge(super::auth::mutating(super::control::routes(), &state))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT));
    reads.merge(writes).layer(tower_http::limit::RequestBodyLimitLayer::new(MAX_BODY_BYTES)).with_state(state)
}

/// Headers added to every response: `restapi.http_extra_headers` (plus `https_extra_headers` over
/// TLS) and `Server` per `restapi.server_tokens`.
#[derive(Clone, Debug, Default)]
pub struct ResponseHeaders(Vec<(HeaderName, HeaderValue)>);

impl ResponseHeaders {
    /// From `restapi` (`tls`: the server speaks HTTPS); invalid header names or values are logged
    /// and skipped.
    pub fn from_config(c: &crate::config::validate::RestApiConfig, tls: bool) -> ResponseHeaders {
        let mut v = Vec::new();
        let server = match c.server_tokens.as_str() {
            "minimal" => None,
            "productonly" => Some("Patroni".to_string()),
            _ => Some(format!(
                "Patroni/{} (praetor {})",
                crate::types::PATRONI_COMPAT_VERSION,
                crate::types::PRAETOR_VERSION
            )),
        };
        if let Some(s) = server.and_then(|s| HeaderValue::from_str(&s).ok()) {
            v.push((header::SERVER, s));
        }
        let extra = c.http_extra_headers.iter().chain(c.https_extra_headers.iter().filter(|_| tls));
        for (k, val) in extra {
            match (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(val)) {
                (Ok(n), Ok(hv)) => v.push((n, hv)),
                _ => tracing::warn!("restapi extra header {k:?}: invalid name or value, not sent"),
            }
        }
        ResponseHeaders(v)
    }
}

/// What the REST server presents to clients and may change on a reload: the TLS acceptor
/// (`restapi.certfile`, `keyfile`, `keyfile_password`, `cafile`, `verify_client`) and the response
/// headers (`http_extra_headers`, `https_extra_headers`, `server_tokens`). The agent keeps a handle
/// and calls [`Endpoint::reload`] on SIGHUP and `POST /reload`; the listen address stays.
pub struct Endpoint {
    tls: super::tls::ServerTls,
    headers: std::sync::RwLock<ResponseHeaders>,
}

impl Endpoint {
    /// From `restapi` at start-up; an unusable TLS file is an error naming the setting.
    pub fn load(c: &crate::config::validate::RestApiConfig) -> Result<Endpoint, super::tls::TlsError> {
        let tls = super::tls::ServerTls::load(c)?;
        let headers = std::sync::RwLock::new(ResponseHeaders::from_config(c, tls.is_tls()));
        Ok(Endpoint { tls, headers })
    }

    /// Apply a reloaded `restapi` to the connections accepted from now on. The headers always
    /// follow `c`; the TLS configuration only when its settings or files changed and the new files
    /// are usable (`Ok(true)`). On error the certificate in force keeps being served.
    pub fn reload(&self, c: &crate::config::validate::RestApiConfig) -> Result<bool, super::tls::TlsError> {
        let r = self.tls.reload(c);
        let headers = ResponseHeaders::from_config(c, self.tls.is_tls());
        *self.headers.write().unwrap_or_else(|p| p.into_inner()) = headers;
        r
    }

    fn for_connection(&self) -> (Option<tokio_rustls::TlsAcceptor>, ResponseHeaders) {
        let headers = self.headers.read().map(|h| h.clone()).unwrap_or_else(|p| p.into_inner().clone());
        (self.tls.acceptor(), headers)
    }
}

/// A bound REST listener: TCP plus the [`Endpoint`] (TLS acceptor and headers).
pub struct Listener {
    tcp: tokio::net::TcpListener,
    endpoint: Arc<Endpoint>,
}

impl Listener {
    /// Bind `restapi.listen` (`:8008` means all interfaces) and load the TLS files.
    pub async fn bind(c: &crate::config::validate::RestApiConfig) -> anyhow::Result<Listener> {
        Listener::bind_with(c, Arc::new(Endpoint::load(c)?)).await
    }

    /// Bind `restapi.listen` and serve `endpoint` (kept by the caller to reload it).
    pub async fn bind_with(
        c: &crate::config::validate::RestApiConfig,
        endpoint: Arc<Endpoint>,
    ) -> anyhow::Result<Listener> {
        let listen = &c.listen;
        let addr = if listen.starts_with(':') { format!("0.0.0.0{listen}") } else { listen.to_string() };
        let tcp = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|e| anyhow::anyhow!("restapi.listen {addr}: {e}"))?;
        Ok(Listener { tcp, endpoint })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.tcp.local_addr()
    }
}

/// Serve `router(state)` on `restapi.listen` until `stop` fires, presenting `endpoint`.
pub async fn serve(
    c: &crate::config::validate::RestApiConfig,
    endpoint: Arc<Endpoint>,
    state: AppState,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    // The API gets its own thread and runtime, so that nothing the HA task or a DCS client does
    // on the agent's runtime (a blocking call, a busy worker) can delay a health check.
    let c = c.clone();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<anyhow::Result<()>>();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("praetor-rest".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(anyhow::anyhow!("REST API runtime: {e}")));
                    return;
                }
            };
            rt.block_on(async move {
                match Listener::bind_with(&c, endpoint).await {
                    Ok(l) => {
                        let _ = ready_tx.send(Ok(()));
                        run(l, router(state), stop).await;
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            });
            let _ = done_tx.send(());
        })
        .map_err(|e| anyhow::anyhow!("start the REST API thread: {e}"))?;
    ready_rx.await.map_err(|_| anyhow::anyhow!("the REST API thread ended before binding"))??;
    Ok(tokio::spawn(async move {
        let _ = done_rx.await;
    }))
}

/// The accept loop: one task per connection (TLS handshake bounded by [`HEADER_READ_TIMEOUT`]);
/// on `stop` it stops accepting and gives open connections 2 s to finish.
pub async fn run(l: Listener, app: Router, stop: tokio_util::sync::CancellationToken) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            r = l.tcp.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("REST API accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let (tls, headers) = l.endpoint.for_connection();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            match tls {
                None => {
                    let conn = ConnInfo { peer, tls: false, client_cert: false };
                    serve_conn(stream, conn, app, headers, watcher).await
                }
                Some(acceptor) => match tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream))
                    .await
                {
                    Ok(Ok(s)) => {
                        let client_cert = s.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty());
                        let conn = ConnInfo { peer, tls: true, client_cert };
                        serve_conn(s, conn, app, headers, watcher).await
                    }
                    Ok(Err(e)) => tracing::debug!("TLS handshake with {peer} failed: {e}"),
                    Err(_) => tracing::debug!("TLS handshake with {peer} timed out"),
                },
            }
        });
    }
    drop(l.tcp);
    if tokio::time::timeout(Duration::from_secs(2), graceful.shutdown()).await.is_err() {
        tracing::debug!("REST API: connections still open at shutdown");
    }
}

async fn serve_conn<S>(
    stream: S,
    conn: ConnInfo,
    app: Router,
    headers: ResponseHeaders,
    watcher: hyper_util::server::graceful::Watcher,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use tower::ServiceExt;
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(conn);
        let app = app.clone();
        let headers = headers.clone();
        async move {
            let mut resp = app.oneshot(req.map(Body::new)).await?;
            for (k, v) in &headers.0 {
                resp.headers_mut().insert(k.clone(), v.clone());
            }
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT);
    let c = b.serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
    if let Err(e) = watcher.watch(c).await {
        tracing::debug!("REST connection from {} ended: {e}", conn.peer);
    }
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
        (router(AppState::new(rx, ha.clone())), ha)
    }

    /// A running primary holding the lock, with a DCS view.
    fn leader_status() -> NodeStatus {
        let mut s = NodeStatus::initial("demo", "pg0");
        s.state = "running".into();
        s.role = crate::types::Role::Primary;
        s.is_leader = true;
        s.cluster_known = true;
        s
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
        let (r, _) = app(leader_status());
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

    fn post_failsafe_req(auth: Option<&str>, peer: &str) -> Request<Body> {
        let mut b = Request::builder().method(Method::POST).uri("/failsafe");
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        let mut r = b.body(Body::from(r#"{"name":"pg0"}"#)).expect("request");
        r.extensions_mut().insert(ConnInfo {
            peer: format!("{peer}:5000").parse().expect("addr"),
            tls: false,
            client_cert: false,
        });
        r
    }

    #[tokio::test]
    async fn mutating_routes_need_credentials_and_an_allowed_address() {
        use base64::Engine;
        let (_tx, rx) = watch::channel(Arc::new(NodeStatus::initial("demo", "pg1")));
        let ha = Arc::new(HaShared::new());
        ha.failsafe_mode.store(true, Ordering::Relaxed);
        let access = Access::open()
            .with_basic("admin", "pw")
            .with_allowlist(vec![super::super::auth::IpNet::parse_cidr("127.0.0.0/8").expect("net")], false);
        let r = router(AppState::new(rx, ha).with_access(access));
        let good = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("admin:pw"));
        let bad = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("admin:nope"));
        for (auth, peer, code) in [
            (None, "127.0.0.1", 401),
            (Some(bad.as_str()), "127.0.0.1", 401),
            (Some(good.as_str()), "10.1.1.1", 403),
            (Some(good.as_str()), "127.0.0.1", 200),
        ] {
            let resp = r.clone().oneshot(post_failsafe_req(auth, peer)).await.expect("response");
            assert_eq!(resp.status().as_u16(), code, "{auth:?} from {peer}");
        }
        // Reads stay open.
        let mut req = Request::builder().uri("/patroni").body(Body::empty()).expect("request");
        req.extensions_mut().insert(ConnInfo {
            peer: "10.1.1.1:1".parse().expect("addr"),
            tls: false,
            client_cert: false,
        });
        assert_eq!(r.clone().oneshot(req).await.expect("response").status().as_u16(), 200);
        drop(_tx);
    }

    #[tokio::test]
    async fn malformed_failsafe_body_gets_400_with_a_message() {
        let (r, ha) = app(NodeStatus::initial("demo", "pg1"));
        ha.failsafe_mode.store(true, Ordering::Relaxed);
        let req = Request::builder()
            .method(Method::POST)
            .uri("/failsafe")
            .header("content-length", "5")
            .body(Body::from("{nope"))
            .expect("request");
        let resp = r.clone().oneshot(req).await.expect("response");
        assert_eq!(resp.status().as_u16(), 400);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16).await.expect("body");
        assert!(String::from_utf8_lossy(&body).contains("invalid JSON"));
        let big = vec![b' '; MAX_BODY_BYTES + 10];
        let req = Request::builder()
            .method(Method::POST)
            .uri("/failsafe")
            .header("content-length", big.len().to_string())
            .body(Body::from(big))
            .expect("request");
        assert_eq!(r.oneshot(req).await.expect("response").status().as_u16(), 413);
    }

    async fn get(r: &Router, path: &str) -> (u16, serde_json::Value) {
        let resp = r
            .clone()
            .oneshot(Request::builder().uri(path).body(Body::empty()).expect("request"))
            .await
            .expect("response");
        let code = resp.status().as_u16();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.expect("body");
        (code, serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null))
    }

    #[tokio::test]
    async fn cluster_history_config_failsafe_come_from_the_last_dcs_view() {
        use crate::dcs::model::{Cluster, RawEntry, Version};
        let (r, ha) = app(NodeStatus::initial("demo", "pg1"));
        assert_eq!(get(&r, "/cluster").await.0, 503, "no DCS view yet");
        assert_eq!(get(&r, "/config").await.0, 502);
        let e =
            |k: &str, v: &str| RawEntry { key: k.into(), value: v.into(), version: Version(1), owner: None };
        let (c, _) = Cluster::from_entries([
            e("config", r#"{"ttl":30,"loop_wait":10}"#),
            e("leader", "pg0"),
            e(
                "members/pg0",
                r#"{"conn_url":"postgres://127.0.0.1:5432/postgres","api_url":"http://127.0.0.1:8008/patroni","state":"running","role":"primary","timeline":2}"#,
            ),
            e(
                "members/pg1",
                r#"{"conn_url":"postgres://127.0.0.1:5433/postgres","api_url":"http://127.0.0.1:8009/patroni","state":"running","role":"replica","xlog_location":100,"replication_state":"streaming"}"#,
            ),
            e("status", r#"{"optime":150}"#),
            e(
                "history",
                r#"[[1,25165984,"no recovery target specified","2026-12-06T22:00:00+00:00","pg0"]]"#,
            ),
            e("failsafe", r#"{"pg0":"http://127.0.0.1:8008/patroni"}"#),
        ]);
        *ha.dcs_view.lock().expect("lock") =
            Some(Arc::new(crate::ha::runner::DcsView { cluster: c, read_at: chrono::Utc::now() }));
        let (code, v) = get(&r, "/cluster").await;
        assert_eq!(code, 200);
        assert_eq!(v["scope"], "demo");
        assert_eq!(v["members"][0]["name"], "pg0");
        assert_eq!(v["members"][0]["role"], "leader");
        assert_eq!(v["members"][1]["role"], "replica");
        assert_eq!(v["members"][1]["state"], "streaming");
        assert_eq!(v["members"][1]["lag"], 50);
        let (code, v) = get(&r, "/history").await;
        assert_eq!(code, 200);
        assert_eq!(v[0][0], 1);
        assert_eq!(v[0][4], "pg0");
        let (code, v) = get(&r, "/config").await;
        assert_eq!((code, v["ttl"].clone()), (200, serde_json::json!(30)));
        let (code, v) = get(&r, "/failsafe").await;
        assert_eq!((code, v["pg0"].clone()), (200, serde_json::json!("http://127.0.0.1:8008/patroni")));
    }

    #[tokio::test]
    async fn head_and_options_answer_status_only_and_metrics_is_text() {
        let (r, _) = app(leader_status());
        for (m, path, code) in
            [(Method::HEAD, "/primary", 200), (Method::OPTIONS, "/replica", 503), (Method::OPTIONS, "/", 200)]
        {
            let resp = r
                .clone()
                .oneshot(Request::builder().method(m).uri(path).body(Body::empty()).expect("request"))
                .await
                .expect("response");
            assert_eq!(resp.status().as_u16(), code, "{path}");
            let body = axum::body::to_bytes(resp.into_body(), 1 << 16).await.expect("body");
            assert!(body.is_empty(), "{path}");
        }
        let resp = r
            .clone()
            .oneshot(Request::builder().uri("/metrics").body(Body::empty()).expect("request"))
            .await
            .expect("response");
        assert_eq!(resp.status().as_u16(), 200);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.expect("body");
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("patroni_primary{scope=\"demo\",name=\"pg0\"} 1"), "{text}");
        assert!(text.contains("praetor_ha_cycles_total"), "{text}");
    }

    #[tokio::test]
    async fn liveness_turns_503_when_the_ha_loop_is_stuck() {
        let mut s = NodeStatus::initial("demo", "pg0");
        s.state = "running".into();
        s.role = crate::types::Role::Primary;
        let (r, ha) = app(s);
        let live = || async {
            let req = Request::builder().uri("/liveness").body(Body::empty()).expect("request");
            r.clone().oneshot(req).await.expect("response").status().as_u16()
        };
        assert_eq!(live().await, 200);
        // The last cycle ended 31 s ago with ttl 30: a primary's loop is stuck.
        let Some(past) = std::time::Instant::now().checked_sub(Duration::from_secs(31)) else { return };
        *ha.last_cycle.lock().expect("lock") = past;
        assert_eq!(live().await, 503);
    }

    #[tokio::test]
    async fn reloaded_access_rules_apply_to_the_next_request() {
        let (_tx, rx) = watch::channel(Arc::new(NodeStatus::initial("demo", "pg1")));
        let ha = Arc::new(HaShared::new());
        ha.failsafe_mode.store(true, Ordering::Relaxed);
        let state = AppState::new(rx, ha);
        let r = router(state.clone());
        let code = |r: Router| async move {
            r.oneshot(post_failsafe_req(None, "127.0.0.1")).await.expect("response").status().as_u16()
        };
        assert_eq!(code(r.clone()).await, 200);
        state.set_access(Access::open().with_basic("admin", "pw"));
        assert_eq!(code(r).await, 401);
        drop(_tx);
    }
}
