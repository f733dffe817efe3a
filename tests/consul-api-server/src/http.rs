//! The HTTP surface: `/v1/kv`, `/v1/session`, `/v1/agent`, `/v1/status`, and `/_test/` controls.

use crate::store::{ApiError, Fault, PutOp};
use crate::{Shared, duration};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Map, Value, json};
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

type S = State<Arc<Shared>>;

/// Request bodies larger than this are refused (developer.hashicorp.com/consul/api-docs/kv
/// #create-update-key: "The value … cannot be larger than 512kB").
const MAX_VALUE: usize = 512 * 1024;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/kv", get(kv_get_root).put(kv_put_root).delete(kv_delete_root))
        .route("/v1/kv/", get(kv_get_root).put(kv_put_root).delete(kv_delete_root))
        .route("/v1/kv/{*key}", get(kv_get).put(kv_put).delete(kv_delete))
        .route("/v1/session/create", put(session_create))
        .route("/v1/session/renew/{id}", put(session_renew))
        .route("/v1/session/destroy/{id}", put(session_destroy))
        .route("/v1/session/info/{id}", get(session_info))
        .route("/v1/session/node/{node}", get(session_node))
        .route("/v1/session/list", get(session_list))
        .route("/v1/agent/self", get(agent_self))
        .route("/v1/agent/services", get(agent_services))
        .route("/v1/agent/service/register", put(service_register))
        .route("/v1/agent/service/deregister/{*id}", put(service_deregister))
        .route("/v1/status/leader", get(status_leader))
        .route("/v1/status/peers", get(status_peers))
        .route("/_test/sessions/{id}/expire", post(test_expire))
        .route("/_test/fault", post(test_fault).delete(test_clear_faults))
        .route("/_test/leader/lose", post(test_lose_leader))
        .route("/_test/leader/restore", post(test_restore_leader))
        .route("/_test/state", get(test_state))
        .route("/_test/transcript/note", post(test_note))
        .layer(axum::middleware::from_fn_with_state(shared.clone(), around))
        .with_state(shared)
}

// ------------------------------------------------------------------------------------------ params

/// Query parameters. Consul treats boolean flags (`recurse`, `keys`, `stale`, `consistent`, `raw`)
/// as set when present, whatever their value (developer.hashicorp.com/consul/api-docs/kv: "recurse
/// (bool: false)" given as `?recurse`).
struct Params(Vec<(String, String)>);

impl Params {
    fn has(&self, k: &str) -> bool {
        self.0.iter().any(|(n, _)| n == k)
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }
    fn u64(&self, k: &str, what: &str) -> Result<Option<u64>, ApiError> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| ApiError::new(400, format!("Invalid {what}"))),
        }
    }

    /// `?dc=`: only our datacenter is reachable.
    fn check_dc(&self, shared: &Shared) -> Result<(), ApiError> {
        match self.get("dc") {
            Some(dc) if !dc.is_empty() && dc != shared.lock().opts.datacenter => {
                Err(ApiError::internal("No path to datacenter"))
            }
            _ => Ok(()),
        }
    }

    /// developer.hashicorp.com/consul/api-docs/features/consistency: `stale` and `consistent` are
    /// mutually exclusive. Returns whether the read may be served without a leader.
    fn stale(&self) -> Result<bool, ApiError> {
        if self.has("stale") && self.has("consistent") {
            return Err(ApiError::new(400, "Cannot specify ?stale with ?consistent, conflicting semantics."));
        }
        Ok(self.has("stale"))
    }

    /// `?index=&wait=` of a blocking query (developer.hashicorp.com/consul/api-docs/features/blocking:
    /// "wait … is limited to 10 minutes. If not set, the wait time defaults to 5 minutes. … A small
    /// random amount of additional wait time is added to the supplied maximum wait time to spread out
    /// the wake up time of any concurrent requests. This adds up to wait / 16 additional time").
    fn blocking(&self) -> Result<Option<(u64, Duration)>, ApiError> {
        let Some(index) = self.u64("index", "index")? else {
            return Ok(None);
        };
        if index == 0 {
            return Ok(None);
        }
        let wait = match self.get("wait") {
            Some(w) => duration::parse(w).map_err(|_| ApiError::new(400, "Invalid wait time"))?,
            None => Duration::from_secs(300),
        }
        .min(Duration::from_secs(600));
        let jitter = (uuid::Uuid::new_v4().as_u128() % 1000) as f64 / 1000.0;
        Ok(Some((index, wait + (wait / 16).mul_f64(jitter))))
    }
}

fn params(q: Query<Vec<(String, String)>>) -> Params {
    Params(q.0)
}

// ---------------------------------------------------------------------------------------- responses

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, [("content-type", "text/plain; charset=utf-8")], self.body).into_response()
    }
}

fn json_resp(status: StatusCode, index: u64, body: &Value, known_leader: bool) -> Response {
    let mut r = (status, [("content-type", "application/json")], body.to_string()).into_response();
    set_index(r.headers_mut(), index, known_leader);
    r
}

fn set_index(h: &mut HeaderMap, index: u64, known_leader: bool) {
    // developer.hashicorp.com/consul/api-docs/features/blocking: "Endpoints that support blocking
    // queries return an HTTP header named X-Consul-Index". This model sends it on every response.
    h.insert("x-consul-index", HeaderValue::from(index));
    // developer.hashicorp.com/consul/api-docs/features/consistency: "X-Consul-KnownLeader" and
    // "X-Consul-LastContact" accompany reads.
    h.insert("x-consul-knownleader", HeaderValue::from_static(if known_leader { "true" } else { "false" }));
    h.insert("x-consul-lastcontact", HeaderValue::from_static("0"));
}

/// Run a read, blocking while its index is not past `?index` (see [`Params::blocking`]). A wake-up
/// may return an unchanged result: "the return of a blocking request is no guarantee of a change".
async fn blocking_read<T>(
    shared: &Shared,
    p: &Params,
    mut read: impl FnMut(&crate::State) -> Result<(u64, T), ApiError>,
) -> Result<(u64, T, bool), ApiError> {
    p.check_dc(shared)?;
    let stale = p.stale()?;
    let block = p.blocking()?;
    let deadline = block.map(|(_, w)| Instant::now() + w);
    let mut rx = shared.changed.subscribe();
    loop {
        rx.borrow_and_update();
        let (idx, out, leader) = {
            let s = shared.lock();
            if !s.leader && !stale {
                return Err(ApiError::no_leader());
            }
            let (idx, out) = read(&s)?;
            (idx, out, s.leader)
        };
        match (block, deadline) {
            (Some((min, _)), Some(deadline)) if idx <= min && Instant::now() < deadline => {
                tokio::select! {
                    r = rx.changed() => { if r.is_err() { return Ok((idx, out, leader)); } }
                    _ = tokio::time::sleep_until(deadline) => {}
                }
            }
            _ => return Ok((idx, out, leader)),
        }
    }
}

// -------------------------------------------------------------------------------------------- KV

async fn kv_get_root(st: S, q: Query<Vec<(String, String)>>) -> Response {
    kv_read(st.0, String::new(), params(q)).await
}

async fn kv_get(st: S, Path(key): Path<String>, q: Query<Vec<(String, String)>>) -> Response {
    kv_read(st.0, key, params(q)).await
}

enum KvOut {
    Keys(Vec<String>),
    List(Vec<crate::KvEntry>),
    One(Option<crate::KvEntry>),
}

/// developer.hashicorp.com/consul/api-docs/kv#read-key: `recurse`, `keys`, `separator`, `raw`;
/// "If no entries are found, a 404 is returned".
async fn kv_read(shared: Arc<Shared>, key: String, p: Params) -> Response {
    let keys = p.has("keys");
    let recurse = p.has("recurse");
    let sep = p.get("separator").map(String::from);
    let r = blocking_read(&shared, &p, |s| {
        Ok(if keys {
            let (i, k) = s.kv_keys(&key, sep.as_deref());
            (i, KvOut::Keys(k))
        } else if recurse {
            let (i, l) = s.kv_list(&key);
            (i, KvOut::List(l))
        } else {
            let (i, e) = s.kv_get(&key);
            (i, KvOut::One(e))
        })
    })
    .await;
    let (idx, out, leader) = match r {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    let not_found = || {
        let mut r = StatusCode::NOT_FOUND.into_response();
        set_index(r.headers_mut(), idx, leader);
        r
    };
    match out {
        KvOut::Keys(k) if k.is_empty() => not_found(),
        KvOut::Keys(k) => json_resp(StatusCode::OK, idx, &json!(k), leader),
        KvOut::List(l) if l.is_empty() => not_found(),
        KvOut::List(l) => {
            json_resp(StatusCode::OK, idx, &Value::Array(l.iter().map(|e| e.to_json()).collect()), leader)
        }
        KvOut::One(None) => not_found(),
        KvOut::One(Some(e)) if p.has("raw") => {
            let mut r = (StatusCode::OK, e.value).into_response();
            set_index(r.headers_mut(), idx, leader);
            r
        }
        KvOut::One(Some(e)) => json_resp(StatusCode::OK, idx, &json!([e.to_json()]), leader),
    }
}

async fn kv_put_root(st: S, q: Query<Vec<(String, String)>>, body: Bytes) -> Response {
    kv_write(st.0, String::new(), params(q), body).await
}

async fn kv_put(st: S, Path(key): Path<String>, q: Query<Vec<(String, String)>>, body: Bytes) -> Response {
    kv_write(st.0, key, params(q), body).await
}

/// developer.hashicorp.com/consul/api-docs/kv#create-update-key: `flags`, `cas`, `acquire`,
/// `release`; "The return value is either true or false".
async fn kv_write(shared: Arc<Shared>, key: String, p: Params, body: Bytes) -> Response {
    let r = (|| {
        p.check_dc(&shared)?;
        if key.is_empty() {
            return Err(ApiError::new(400, "Missing key name"));
        }
        if body.len() > MAX_VALUE {
            return Err(ApiError::new(
                413,
                format!("Request body(-{}) too large, max size: {MAX_VALUE} bytes.", body.len()),
            ));
        }
        let flags = p.u64("flags", "flags")?;
        let mut op = PutOp::Set;
        if let Some(c) = p.u64("cas", "cas index")? {
            op = PutOp::Cas(c);
        }
        if p.has("acquire") {
            op = PutOp::Acquire(p.get("acquire").unwrap_or_default().to_string());
        }
        if p.has("release") {
            op = PutOp::Release(p.get("release").unwrap_or_default().to_string());
        }
        shared.write(|s| s.kv_put(&key, body.to_vec(), flags, op, Instant::now()))
    })();
    bool_resp(&shared, r)
}

fn bool_resp(shared: &Shared, r: Result<bool, ApiError>) -> Response {
    match r {
        Ok(b) => {
            let (idx, leader) = {
                let s = shared.lock();
                (s.index, s.leader)
            };
            json_resp(StatusCode::OK, idx, &json!(b), leader)
        }
        Err(e) => e.into_response(),
    }
}

async fn kv_delete_root(st: S, q: Query<Vec<(String, String)>>) -> Response {
    kv_remove(st.0, String::new(), params(q)).await
}

async fn kv_delete(st: S, Path(key): Path<String>, q: Query<Vec<(String, String)>>) -> Response {
    kv_remove(st.0, key, params(q)).await
}

/// developer.hashicorp.com/consul/api-docs/kv#delete-key: `recurse`, `cas`.
async fn kv_remove(shared: Arc<Shared>, key: String, p: Params) -> Response {
    let r = (|| {
        p.check_dc(&shared)?;
        let recurse = p.has("recurse");
        if key.is_empty() && !recurse {
            return Err(ApiError::new(400, "Missing key name"));
        }
        let cas = p.u64("cas", "cas index")?;
        shared.write(|s| s.kv_delete(&key, recurse, cas))
    })();
    bool_resp(&shared, r)
}

// -------------------------------------------------------------------------------------- sessions

fn json_body(body: &Bytes) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(Value::Null) => Ok(Map::new()),
        Ok(_) => Err(ApiError::new(400, "Request decode failed: expected a JSON object")),
        Err(e) => Err(ApiError::new(400, format!("Request decode failed: {e}"))),
    }
}

/// developer.hashicorp.com/consul/api-docs/session#create-session: returns `{"ID": "<uuid>"}`.
async fn session_create(State(shared): S, q: Query<Vec<(String, String)>>, body: Bytes) -> Response {
    let p = params(q);
    let r = (|| {
        p.check_dc(&shared)?;
        let m = json_body(&body)?;
        shared.write(|s| s.session_create(&m, Instant::now()))
    })();
    match r {
        Ok(id) => {
            let idx = shared.lock().index;
            json_resp(StatusCode::OK, idx, &json!({"ID": id}), true)
        }
        Err(e) => e.into_response(),
    }
}

/// developer.hashicorp.com/consul/api-docs/session#renew-session: returns the session in a list;
/// "The return code is 404 if the session is not found".
async fn session_renew(
    State(shared): S,
    Path(id): Path<String>,
    q: Query<Vec<(String, String)>>,
) -> Response {
    let p = params(q);
    let r = p.check_dc(&shared).and_then(|_| shared.write(|s| s.session_renew(&id, Instant::now())));
    let idx = shared.lock().index;
    match r {
        Ok(Some(sess)) => json_resp(StatusCode::OK, idx, &json!([sess.to_json()]), true),
        Ok(None) => {
            let mut r = ApiError::new(404, format!("Session id '{id}' not found")).into_response();
            set_index(r.headers_mut(), idx, true);
            r
        }
        Err(e) => e.into_response(),
    }
}

/// developer.hashicorp.com/consul/api-docs/session#delete-session: returns `true`.
async fn session_destroy(
    State(shared): S,
    Path(id): Path<String>,
    q: Query<Vec<(String, String)>>,
) -> Response {
    let p = params(q);
    let r = p.check_dc(&shared).and_then(|_| shared.write(|s| s.session_destroy(&id, Instant::now())));
    bool_resp(&shared, r)
}

/// developer.hashicorp.com/consul/api-docs/session#read-session: a list with the session, empty
/// when unknown. Supports blocking queries.
async fn session_info(State(shared): S, Path(id): Path<String>, q: Query<Vec<(String, String)>>) -> Response {
    let p = params(q);
    session_read(&shared, &p, |s| s.id == id).await
}

/// developer.hashicorp.com/consul/api-docs/session#list-sessions-for-node.
async fn session_node(
    State(shared): S,
    Path(node): Path<String>,
    q: Query<Vec<(String, String)>>,
) -> Response {
    let p = params(q);
    session_read(&shared, &p, |s| s.node == node).await
}

/// developer.hashicorp.com/consul/api-docs/session#list-sessions.
async fn session_list(State(shared): S, q: Query<Vec<(String, String)>>) -> Response {
    let p = params(q);
    session_read(&shared, &p, |_| true).await
}

async fn session_read(shared: &Shared, p: &Params, filter: impl Fn(&crate::Session) -> bool) -> Response {
    let r = blocking_read(shared, p, |s| {
        let list: Vec<Value> = s.sessions.values().filter(|x| filter(x)).map(|x| x.to_json()).collect();
        Ok((s.index, list))
    })
    .await;
    match r {
        Ok((idx, list, leader)) => json_resp(StatusCode::OK, idx, &Value::Array(list), leader),
        Err(e) => e.into_response(),
    }
}

// ----------------------------------------------------------------------------------------- agent

/// developer.hashicorp.com/consul/api-docs/agent#read-configuration. Patroni reads
/// `Config.SessionTTLMin` (nanoseconds, as Consul's full runtime config reported it) when Consul
/// rejects its session TTL; current Consul versions report it only in `DebugConfig` as a duration
/// string, so both are sent.
async fn agent_self(State(shared): S) -> Response {
    let s = shared.lock();
    let o = &s.opts;
    let body = json!({
        "Config": {
            "Datacenter": o.datacenter,
            "PrimaryDatacenter": o.datacenter,
            "NodeName": o.node_name,
            "NodeID": "6b1c1e4e-3c0f-4a51-9a3c-5d3c2b1a0f00",
            "Revision": "model",
            "Server": true,
            "Version": "1.17.0",
            "SessionTTLMin": o.session_ttl_min.as_nanos() as u64,
        },
        "DebugConfig": {
            "Datacenter": o.datacenter,
            "NodeName": o.node_name,
            "SessionTTLMin": duration::format(o.session_ttl_min),
        },
        "Member": {"Name": o.node_name, "Addr": "127.0.0.1", "Port": 8301, "Status": 1, "Tags": {"dc": o.datacenter, "role": "consul"}},
        "Meta": {},
    });
    json_resp(StatusCode::OK, s.index, &body, s.leader)
}

/// developer.hashicorp.com/consul/api-docs/agent/service#list-services.
async fn agent_services(State(shared): S) -> Response {
    let s = shared.lock();
    let m: Map<String, Value> = s.services.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    json_resp(StatusCode::OK, s.index, &Value::Object(m), s.leader)
}

/// developer.hashicorp.com/consul/api-docs/agent/service#register-service: 200 with an empty body.
async fn service_register(State(shared): S, body: Bytes) -> Response {
    let r = json_body(&body).and_then(|m| shared.write(|s| s.service_register(&m)));
    match r {
        Ok(()) => {
            let mut r = StatusCode::OK.into_response();
            set_index(r.headers_mut(), shared.lock().index, true);
            r
        }
        Err(e) => e.into_response(),
    }
}

/// developer.hashicorp.com/consul/api-docs/agent/service#deregister-service. The ID arrives
/// percent-encoded (Patroni quotes `<scope>/<name>`); an unknown ID answers 404.
async fn service_deregister(State(shared): S, Path(id): Path<String>) -> Response {
    if shared.write(|s| s.service_deregister(&id)) {
        let mut r = StatusCode::OK.into_response();
        set_index(r.headers_mut(), shared.lock().index, true);
        r
    } else {
        ApiError::new(
            404,
            format!("Unknown service ID {id:?}. Ensure that the service ID is passed, not the service name."),
        )
        .into_response()
    }
}

/// developer.hashicorp.com/consul/api-docs/status#get-raft-leader: the leader's address, `""` when
/// there is none.
async fn status_leader(State(shared): S) -> Response {
    let s = shared.lock();
    let v = if s.leader { json!("127.0.0.1:8300") } else { json!("") };
    json_resp(StatusCode::OK, s.index, &v, s.leader)
}

/// developer.hashicorp.com/consul/api-docs/status#list-raft-peers.
async fn status_peers(State(shared): S) -> Response {
    let s = shared.lock();
    json_resp(StatusCode::OK, s.index, &json!(["127.0.0.1:8300"]), s.leader)
}

// --------------------------------------------------------------------------------------- controls

async fn test_expire(State(shared): S, Path(id): Path<String>) -> Response {
    let ok = shared.write(|s| s.invalidate(&id, Instant::now()));
    axum::Json(json!(ok)).into_response()
}

/// `POST /_test/fault` `{"path_prefix": "/v1/kv/", "status": 500, "delay_ms": 0, "count": 3}`.
async fn test_fault(State(shared): S, body: Bytes) -> Response {
    let m = match json_body(&body) {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    let fault = Fault {
        path_prefix: m.get("path_prefix").and_then(|v| v.as_str()).unwrap_or("/v1/").to_string(),
        status: m.get("status").and_then(|v| v.as_u64()).map(|v| v as u16),
        delay: m.get("delay_ms").and_then(|v| v.as_u64()).map(Duration::from_millis),
        remaining: m.get("count").and_then(|v| v.as_u64()).map(|v| v as u32),
    };
    shared.lock().faults.push(fault);
    axum::Json(json!(true)).into_response()
}

async fn test_clear_faults(State(shared): S) -> Response {
    shared.lock().faults.clear();
    axum::Json(json!(true)).into_response()
}

async fn test_lose_leader(State(shared): S) -> Response {
    shared.write(|s| s.set_leader(false, Instant::now()));
    axum::Json(json!(true)).into_response()
}

async fn test_restore_leader(State(shared): S) -> Response {
    shared.write(|s| s.set_leader(true, Instant::now()));
    axum::Json(json!(true)).into_response()
}

async fn test_state(State(shared): S) -> Response {
    let s = shared.lock();
    axum::Json(json!({
        "index": s.index,
        "leader": s.leader,
        "kv": s.kv.values().map(|e| e.to_json()).collect::<Vec<_>>(),
        "sessions": s.sessions.values().map(|x| x.to_json()).collect::<Vec<_>>(),
        "services": s.services,
    }))
    .into_response()
}

/// Write a marker line into the transcript (`{"note": "..."}`), e.g. "killed pg0".
async fn test_note(State(shared): S, body: Bytes) -> Response {
    transcript(
        &shared,
        json!({"t_ms": shared.started.elapsed().as_millis() as u64, "note": String::from_utf8_lossy(&body)}),
    );
    axum::Json(json!(true)).into_response()
}

// ------------------------------------------------------------------------------------- middleware

fn transcript(shared: &Shared, line: Value) {
    if let Some(f) = &shared.transcript {
        let mut f = f.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(f, "{line}");
        let _ = f.flush();
    }
}

fn request_token(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(t) = headers.get("x-consul-token").and_then(|v| v.to_str().ok()) {
        return Some(t.to_string());
    }
    if let Some(t) =
        headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(t.to_string());
    }
    query?.split('&').find_map(|kv| kv.strip_prefix("token=").map(String::from))
}

/// Faults, ACL check, `X-Consul-Index` on every response, and the transcript.
async fn around(State(shared): S, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if path.starts_with("/_test/") {
        return next.run(req).await;
    }
    let method = req.method().clone();
    let uri = req.uri().to_string();
    let t0 = shared.started.elapsed().as_millis() as u64;
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, MAX_VALUE * 2).await {
        Ok(b) => b,
        Err(e) => return ApiError::new(413, format!("Request body too large: {e}")).into_response(),
    };
    let req_text = String::from_utf8_lossy(&body).to_string();
    let token = request_token(&parts.headers, parts.uri.query());
    let fault = {
        let mut s = shared.lock();
        let pos = s.faults.iter().position(|f| path.starts_with(&f.path_prefix));
        let fault = pos.map(|i| s.faults[i].clone());
        if let Some(i) = pos
            && let Some(n) = s.faults[i].remaining.as_mut()
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                s.faults.remove(i);
            }
        }
        fault
    };
    let acl = shared.lock().opts.acl_token.clone();
    let mut resp = 'resp: {
        if let Some(f) = &fault {
            if let Some(d) = f.delay {
                tokio::time::sleep(d).await;
            }
            if let Some(st) = f.status {
                break 'resp ApiError::new(st, format!("injected fault {st}")).into_response();
            }
        }
        // developer.hashicorp.com/consul/api-docs/api-structure#authentication; an unknown token is
        // "ACL not found", a missing one falls back to the anonymous token and is denied.
        if let Some(want) = acl
            && path != "/v1/status/leader"
            && path != "/v1/status/peers"
        {
            match token {
                Some(t) if t == want => {}
                Some(_) => break 'resp ApiError::new(403, "ACL not found").into_response(),
                None => break 'resp ApiError::new(403, "Permission denied").into_response(),
            }
        }
        next.run(Request::from_parts(parts, Body::from(body))).await
    };
    if !resp.headers().contains_key("x-consul-index") {
        let (idx, leader) = {
            let s = shared.lock();
            (s.index, s.leader)
        };
        set_index(resp.headers_mut(), idx, leader);
    }
    if shared.transcript.is_none() {
        return resp;
    }
    let (rparts, rbody) = resp.into_parts();
    let rbytes = axum::body::to_bytes(rbody, usize::MAX).await.unwrap_or_default();
    let index = rparts.headers.get("x-consul-index").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    transcript(
        &shared,
        json!({
            "t_ms": t0,
            "ms": shared.started.elapsed().as_millis() as u64 - t0,
            "method": method.as_str(),
            "uri": uri,
            "request": req_text,
            "status": rparts.status.as_u16(),
            "index": index,
            "response": String::from_utf8_lossy(&rbytes),
        }),
    );
    Response::from_parts(rparts, Body::from(rbytes))
}
