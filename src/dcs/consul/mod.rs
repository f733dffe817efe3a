//! The Consul backend, in Patroni's layout and with Patroni's semantics (`P:dcs/consul.py`,
//! PATRONI-COMPAT §2.4–2.6):
//!
//! * keys live under `<namespace>/<scope>/` **without** the leading `/`;
//! * one session per agent — `{"name":"<scope>-<name>","checks":[…],"lockdelay":"0.001s",
//!   "behavior":"delete","ttl":"<ttl/2>s"}` (Consul may keep a session up to 2×TTL) — renewed once per
//!   cycle and re-created when Consul answers 404;
//! * `leader` and `members/<name>` are written with `?acquire=<session>`, so they vanish with it;
//! * CAS writes use `?cas=<ModifyIndex>` (`cas=0` = create only);
//! * the HA loop wakes on a blocking query on `leader`.
//!
//! Each operation retries connection errors and 5xx answers until `retry_timeout`, with per-request
//! timeouts of `retry_timeout/3` (Patroni's `set_read_timeout`).

pub mod client;

use super::model::{Cluster, Leader, RawEntry, Version};
use super::{ClusterKeys, Dcs, DcsError, DcsParams};
use crate::config::dcs::ConsulConfig;
use async_trait::async_trait;
use client::{ClientConfig, Consistency, ConsulClient, ConsulError, PutOptions};
use serde_json::{Value, json};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// The Consul backend. See the module docs.
pub struct ConsulDcs {
    client: ConsulClient,
    /// `service/<scope>/` (no leading slash).
    base: String,
    consistency: Consistency,
    checks: Vec<String>,
    service: Option<ServiceSettings>,
    params: Mutex<DcsParams>,
    state: tokio::sync::Mutex<SessionState>,
    /// Session TTL in seconds as sent to Consul (ttl/2, or the agent's `SessionTTLMin`).
    session_ttl: Mutex<f64>,
    /// The timing changed: skip the next watch so the loop runs at once (Patroni's `__do_not_watch`).
    do_not_watch: AtomicBool,
    /// Renew at the next opportunity (set by `watch`, as Patroni zeroes `_last_session_refresh`).
    force_refresh: AtomicBool,
    /// My member key as last read: (value, session).
    my_member: Mutex<Option<(String, Option<String>)>>,
}

#[derive(Default)]
struct SessionState {
    id: Option<String>,
    last_refresh: Option<Instant>,
    /// Member data last used for the service registration, and whether that update failed.
    service_data: Option<Value>,
    service_failed: bool,
}

#[derive(Clone, Debug)]
struct ServiceSettings {
    name: String,
    tags: Vec<String>,
    interval: String,
    tls_server_name: Option<String>,
}

/// `P:dcs/consul.py service_name_from_scope_name`: lower-case, `.`/space/`_` → `-`, other
/// characters outside `[a-z0-9-]` → `u%04d` of the code point, at most 230 characters.
pub fn service_name_from_scope(scope: &str) -> String {
    let mut out = String::new();
    for c in scope.to_lowercase().chars() {
        match c {
            'a'..='z' | '0'..='9' | '-' => out.push(c),
            '.' | ' ' | '_' => out.push('-'),
            other => out.push_str(&format!("u{:04}", other as u32)),
        }
    }
    out.chars().take(230).collect()
}

/// Python's `str(float)` for the small positive values Patroni formats (`15.0`, `12.5`).
fn py_float(v: f64) -> String {
    format!("{v:?}")
}

/// The base URL from `url`, or `host` (`host[:port]`) + `port` + `scheme` (`P:dcs/consul.py
/// Consul.__init__`: an explicit `port` wins over the one in `host`).
pub fn base_url(cfg: &ConsulConfig) -> Result<String, DcsError> {
    if let Some(u) = cfg.url.as_deref().filter(|s| !s.trim().is_empty()) {
        let parsed =
            url::Url::parse(u.trim()).map_err(|e| DcsError::Config(format!("consul.url {u:?}: {e}")))?;
        let host =
            parsed.host_str().ok_or_else(|| DcsError::Config(format!("consul.url {u:?} has no host")))?;
        return Ok(format!("{}://{}:{}", parsed.scheme(), host, parsed.port().unwrap_or(8500)));
    }
    let scheme = cfg.scheme.as_deref().filter(|s| !s.is_empty()).unwrap_or("http");
    if scheme != "http" && scheme != "https" {
        return Err(DcsError::Config(format!("consul.scheme must be http or https, not {scheme:?}")));
    }
    let host_cfg = cfg.host.as_deref().filter(|s| !s.trim().is_empty()).unwrap_or("127.0.0.1:8500").trim();
    let (host, port_in_host) = match host_cfg.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') && p.chars().all(|c| c.is_ascii_digit()) && !p.is_empty() => {
            (h, Some(p))
        }
        _ => (host_cfg, None),
    };
    let port = match cfg.port.as_deref().filter(|s| !s.trim().is_empty()) {
        Some(p) => p
            .trim()
            .parse::<u16>()
            .map_err(|_| DcsError::Config(format!("consul.port {p:?} is not a port")))?,
        None => port_in_host
            .map(|p| p.parse::<u16>())
            .transpose()
            .map_err(|_| DcsError::Config(format!("consul.host {host_cfg:?}: bad port")))?
            .unwrap_or(8500),
    };
    Ok(format!("{scheme}://{host}:{port}"))
}

fn map_err(op: &'static str, e: ConsulError) -> DcsError {
    match e {
        ConsulError::Transport(m) => DcsError::Unavailable(format!("{op}: {m}")),
        ConsulError::Internal { status, body } => {
            DcsError::Unavailable(format!("{op}: consul answered {status}: {body}"))
        }
        ConsulError::InvalidSession(_) => DcsError::SessionExpired,
        other => DcsError::backend(op, other),
    }
}

impl ConsulDcs {
    /// Build the backend. The session is created by the first operation that needs one (the
    /// agent's first `touch_member`), so read-only users such as `praetorctl` never create one —
    /// as Patroni's ctl does not — and an unreachable Consul is not fatal here.
    pub async fn connect(cfg: &ConsulConfig, params: DcsParams) -> Result<ConsulDcs, DcsError> {
        ConsulDcs::new(cfg, params)
    }

    /// Build the backend without contacting Consul.
    pub fn new(cfg: &ConsulConfig, params: DcsParams) -> Result<ConsulDcs, DcsError> {
        let read = |p: &std::path::Path, what: &str| {
            std::fs::read(p).map_err(|e| DcsError::Config(format!("consul.{what} {}: {e}", p.display())))
        };
        let cacert = cfg.cacert.as_deref().map(|p| read(p, "cacert")).transpose()?;
        let identity = match (&cfg.cert, &cfg.key) {
            (Some(c), Some(k)) => {
                let mut pem = read(c, "cert")?;
                pem.push(b'\n');
                pem.extend(read(k, "key")?);
                Some(pem)
            }
            // A combined certificate+key file, as Patroni accepts.
            (Some(c), None) => Some(read(c, "cert")?),
            (None, Some(_)) => return Err(DcsError::Config("consul.key is set without consul.cert".into())),
            (None, None) => None,
        };
        // As in Patroni, TLS files do not imply https: `scheme` (or `url`) says so.
        let base = base_url(cfg)?;
        let consistency = match cfg.consistency.as_deref() {
            None => Consistency::Default,
            Some(s) => Consistency::parse(s).ok_or_else(|| {
                DcsError::Config(format!(
                    "consul.consistency must be default, consistent or stale, not {s:?}"
                ))
            })?,
        };
        let client = ConsulClient::new(&ClientConfig {
            base,
            token: cfg.token.as_ref().map(|t| t.expose().clone()).filter(|t| !t.is_empty()),
            dc: cfg.dc.clone().filter(|d| !d.is_empty()),
            verify: cfg.verify.unwrap_or(true),
            cacert,
            identity,
        })
        .map_err(|e| DcsError::Config(e.to_string()))?;
        let keys = ClusterKeys::new(&params.namespace, &params.scope);
        let base = keys.prefix().trim_start_matches('/').to_string();
        let service = cfg.register_service.unwrap_or(false).then(|| {
            let name = service_name_from_scope(&params.scope);
            if name != params.scope {
                tracing::warn!("using {name} as consul service name instead of scope name {}", params.scope);
            }
            let mut tags = cfg.service_tags.clone();
            tags.sort();
            ServiceSettings {
                name,
                tags,
                interval: cfg.service_check_interval.clone().unwrap_or_else(|| "5s".into()),
                tls_server_name: cfg.service_check_tls_server_name.clone(),
            }
        });
        let session_ttl = params.ttl.as_secs_f64() / 2.0;
        Ok(ConsulDcs {
            client,
            base,
            consistency,
            checks: cfg.checks.clone(),
            service,
            params: Mutex::new(params),
            state: tokio::sync::Mutex::new(SessionState::default()),
            session_ttl: Mutex::new(session_ttl),
            do_not_watch: AtomicBool::new(false),
            force_refresh: AtomicBool::new(false),
            my_member: Mutex::new(None),
        })
    }

    fn params(&self) -> DcsParams {
        self.params.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn key(&self, k: &str) -> String {
        format!("{}{}", self.base, k)
    }

    fn member_key(&self) -> String {
        self.key(&format!("members/{}", self.params().name))
    }

    /// Per-request timeout: `retry_timeout / 3` (Patroni `HTTPClient.set_read_timeout`), at least 1s.
    fn request_timeout(&self) -> Duration {
        (self.params().retry_timeout / 3).max(Duration::from_secs(1))
    }

    /// Run `f` until it succeeds, fails with a non-retryable error, or `retry_timeout` passes
    /// (Patroni `Retry(deadline=retry_timeout, max_delay=1)`).
    async fn retry<T, F, Fut>(&self, op: &'static str, mut f: F) -> Result<T, DcsError>
    where
        F: FnMut(Duration) -> Fut,
        Fut: std::future::Future<Output = Result<T, ConsulError>>,
    {
        let deadline = Instant::now() + self.params().retry_timeout;
        let mut delay = Duration::from_millis(100);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let timeout = self.request_timeout().min(left.max(Duration::from_millis(100)));
            match f(timeout).await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() && Instant::now() + delay < deadline => {
                    tracing::debug!("{op}: {e}; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
                Err(e) => return Err(map_err(op, e)),
            }
        }
    }

    fn session_body(&self) -> Value {
        let p = self.params();
        let ttl = *self.session_ttl.lock().unwrap_or_else(|p| p.into_inner());
        // The body Patroni sends (py-consul `session.create` plus Patroni's ttl), key order kept.
        json!({
            "name": format!("{}-{}", p.scope, p.name),
            "checks": self.checks,
            "lockdelay": "0.001s",
            "behavior": "delete",
            "ttl": format!("{}s", py_float(ttl)),
        })
    }

    /// Adopt the agent's `SessionTTLMin` after Consul rejected our TTL (`P:dcs/consul.py adjust_ttl`).
    async fn adjust_ttl(&self) {
        let min = match self.client.agent_self(self.request_timeout()).await {
            Ok(v) => session_ttl_min(&v),
            Err(e) => {
                tracing::warn!("failed to read agent/self for SessionTTLMin: {e}");
                None
            }
        }
        .unwrap_or(10.0);
        let mut t = self.session_ttl.lock().unwrap_or_else(|p| p.into_inner());
        tracing::warn!("changing session TTL from {} to {}", py_float(*t), py_float(min));
        *t = min;
    }

    /// Renew my session, or create one (`P:dcs/consul.py _do_refresh_session`). Unless `force`,
    /// nothing is sent if it was refreshed less than `loop_wait` ago. Returns whether a new session
    /// was created (keys bound to the old one are gone).
    async fn refresh_session(&self, force: bool) -> Result<bool, DcsError> {
        let mut st = self.state.lock().await;
        self.refresh_locked(&mut st, force).await
    }

    async fn refresh_locked(&self, st: &mut SessionState, force: bool) -> Result<bool, DcsError> {
        let force = force || self.force_refresh.swap(false, Ordering::SeqCst);
        let loop_wait = self.params().loop_wait;
        if !force && st.id.is_some() && st.last_refresh.is_some_and(|t| t.elapsed() < loop_wait) {
            return Ok(false);
        }
        if let Some(id) = st.id.clone() {
            let alive = self.retry("renew consul session", |t| self.client.session_renew(&id, t)).await;
            match alive {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!("consul session {id} is gone; creating a new one");
                    st.id = None;
                }
                Err(e) => {
                    self.force_refresh.store(true, Ordering::SeqCst);
                    return Err(e);
                }
            }
        }
        let created = st.id.is_none();
        if created {
            let mut adjusted = false;
            let id = loop {
                let body = self.session_body();
                match self.retry("create consul session", |t| self.client.session_create(&body, t)).await {
                    Ok(id) => break id,
                    Err(DcsError::Backend { source, .. })
                        if !adjusted
                            && source
                                .downcast_ref::<ConsulError>()
                                .is_some_and(|e| matches!(e, ConsulError::InvalidSessionTtl(_))) =>
                    {
                        tracing::warn!("consul rejected the session: {source}");
                        self.adjust_ttl().await;
                        adjusted = true;
                    }
                    Err(e) => return Err(e),
                }
            };
            tracing::info!(session = %id, "created consul session");
            st.id = Some(id);
        }
        st.last_refresh = Some(Instant::now());
        Ok(created)
    }

    async fn session_id(&self) -> Option<String> {
        self.state.lock().await.id.clone()
    }

    async fn forget_session(&self) {
        self.state.lock().await.id = None;
    }

    async fn put(
        &self,
        op: &'static str,
        key: &str,
        value: &str,
        opts: PutOptions,
    ) -> Result<bool, DcsError> {
        let key = self.key(key);
        self.retry(op, |t| self.client.kv_put(&key, value.as_bytes(), &opts, t)).await
    }

    async fn acquire(&self, key: &str, value: &str) -> Result<bool, DcsError> {
        let sid = match self.session_id().await {
            Some(s) => s,
            None => {
                self.refresh_session(true).await?;
                self.session_id().await.ok_or(DcsError::SessionExpired)?
            }
        };
        let full = key.to_string();
        let opts = PutOptions { acquire: Some(sid), ..Default::default() };
        self.retry("acquire consul lock", |t| self.client.kv_put(&full, value.as_bytes(), &opts, t)).await
    }

    /// `P:dcs/consul.py _do_attempt_to_acquire_leader`: on "invalid session" get a new session and
    /// try once more.
    async fn acquire_leader_key(&self) -> Result<bool, DcsError> {
        let key = self.key("leader");
        let name = self.params().name;
        match self.acquire(&key, &name).await {
            Err(DcsError::SessionExpired) => {
                tracing::error!("our session disappeared from consul; getting a new one and retrying");
                self.forget_session().await;
                self.refresh_session(true).await?;
                self.acquire(&key, &name).await
            }
            other => other,
        }
    }

    /// Patroni's service registration (`P:dcs/consul.py update_service, _update_service`).
    async fn update_service(&self, st: &mut SessionState, data: &Value, new_session: bool) {
        let Some(svc) = &self.service else {
            return;
        };
        let old = if new_session { None } else { st.service_data.clone() };
        let mut changed = false;
        for k in ["role", "api_url", "conn_url", "state"] {
            let Some(v) = data.get(k) else {
                tracing::warn!("could not register service: not enough params in member data");
                return;
            };
            if old.as_ref().and_then(|o| o.get(k)) != Some(v) {
                changed = true;
            }
        }
        if !(changed || st.service_failed) {
            return;
        }
        let ok = match self.service_request(svc, data).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("failed to update the consul service: {e}");
                false
            }
        };
        st.service_failed = !ok;
        st.service_data = Some(data.clone());
    }

    async fn service_request(&self, svc: &ServiceSettings, data: &Value) -> Result<(), ConsulError> {
        let p = self.params();
        let s = |k: &str| data.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
        let role = s("role").replace('_', "-");
        let state = s("state");
        let service_id = format!("{}/{}", p.scope, p.name);
        let t = self.request_timeout();
        if state == "stopped" {
            tracing::info!("deregister service {service_id}");
            self.client.service_deregister(&service_id, t).await?;
            return Ok(());
        }
        if !["master", "primary", "replica", "standby-leader"].contains(&role.as_str()) {
            tracing::warn!("could not register service: unknown role type {role}");
            return Ok(());
        }
        if state != "running" {
            return Ok(());
        }
        let api = url::Url::parse(&s("api_url")).map_err(|e| ConsulError::Decode(format!("api_url: {e}")))?;
        let conn =
            url::Url::parse(&s("conn_url")).map_err(|e| ConsulError::Decode(format!("conn_url: {e}")))?;
        let mut check_url = api.clone();
        check_url.set_path(&format!("/{role}"));
        check_url.set_query(None);
        let ttl = *self.session_ttl.lock().unwrap_or_else(|p| p.into_inner());
        let mut check = json!({
            "HTTP": check_url.as_str(),
            "Interval": svc.interval,
            "DeregisterCriticalServiceAfter": format!("{}s", py_float(ttl * 10.0)),
        });
        if let Some(n) = &svc.tls_server_name {
            check["TLSServerName"] = json!(n);
        }
        let mut tags = svc.tags.clone();
        tags.push(role.clone());
        match role.as_str() {
            "master" => tags.push("primary".into()),
            "primary" => tags.push("master".into()),
            _ => {}
        }
        let body = json!({
            "Name": svc.name,
            "ID": service_id,
            "Address": conn.host_str().unwrap_or(""),
            "Port": conn.port().unwrap_or(5432),
            "Tags": tags,
            "Check": check,
            "EnableTagOverride": true,
        });
        tracing::info!("register service {} with {body}", svc.name);
        self.client.service_register(&body, t).await
    }
}

/// `SessionTTLMin` in seconds from `agent/self`: `Config.SessionTTLMin` (nanoseconds, what Patroni
/// reads) or `DebugConfig.SessionTTLMin` (a duration string in current Consul).
fn session_ttl_min(v: &Value) -> Option<f64> {
    if let Some(ns) = v.pointer("/Config/SessionTTLMin").and_then(|x| x.as_f64()).filter(|n| *n > 0.0) {
        return Some(ns / 1e9);
    }
    let s = v.pointer("/DebugConfig/SessionTTLMin")?.as_str()?;
    let secs = s.strip_suffix('s')?.parse::<f64>().ok().or_else(|| {
        // "1m0s" and similar
        let (m, rest) = s.split_once('m')?;
        Some(m.parse::<f64>().ok()? * 60.0 + rest.trim_end_matches('s').parse::<f64>().unwrap_or(0.0))
    })?;
    (secs > 0.0).then_some(secs)
}

#[async_trait]
impl Dcs for ConsulDcs {
    fn backend(&self) -> String {
        "consul".into()
    }

    async fn load_cluster(&self) -> Result<Cluster, DcsError> {
        let (_, list) = self
            .retry("load the cluster from consul", |t| self.client.kv_list(&self.base, self.consistency, t))
            .await?;
        let me = format!("members/{}", self.params().name);
        let mut mine = None;
        let entries: Vec<RawEntry> = list
            .into_iter()
            .filter_map(|kv| {
                let rel = kv.key.strip_prefix(&self.base)?.to_string();
                let value = String::from_utf8_lossy(&kv.value).into_owned();
                if rel == me {
                    mine = Some((value.clone(), kv.session.clone()));
                }
                Some(RawEntry {
                    key: rel,
                    value,
                    version: Version(kv.modify_index as i64),
                    owner: kv.session,
                })
            })
            .collect();
        *self.my_member.lock().unwrap_or_else(|p| p.into_inner()) = mine;
        let (cluster, warnings) = Cluster::from_entries(entries);
        for w in warnings {
            tracing::warn!(key = %w.key, "ignoring malformed DCS value: {}", w.problem);
        }
        Ok(cluster)
    }

    async fn attempt_to_acquire_leader(&self) -> Result<bool, DcsError> {
        self.refresh_session(false).await?;
        let ok = self.acquire_leader_key().await?;
        if !ok {
            tracing::info!("could not take out TTL lock");
        }
        Ok(ok)
    }

    async fn update_leader(&self, leader: Option<&Leader>) -> Result<bool, DcsError> {
        let name = self.params().name;
        if leader.is_some_and(|l| l.name != name) {
            return Ok(false);
        }
        self.refresh_session(true).await?;
        let sid = self.session_id().await;
        match leader {
            // Keys bound to my live session stay alive with it: renewing is the whole update.
            Some(l) if l.owner.is_some() && l.owner == sid => Ok(true),
            Some(l) => {
                tracing::warn!("recreating the leader key due to session mismatch");
                let key = self.key("leader");
                let cas = l.version.0.max(0) as u64;
                self.retry("delete leader key", |t| self.client.kv_delete(&key, false, Some(cas), t)).await?;
                self.acquire_leader_key().await
            }
            None => self.acquire_leader_key().await,
        }
    }

    /// Patroni's Consul `take_leader` only tries to acquire (after a bootstrap the key is free). The
    /// trait asks for an unconditional write, so a key held by another session is deleted (CAS on
    /// the ModifyIndex just read) and then acquired.
    async fn take_leader(&self) -> Result<bool, DcsError> {
        self.refresh_session(false).await?;
        let key = self.key("leader");
        for _ in 0..3 {
            if self.acquire_leader_key().await? {
                return Ok(true);
            }
            let (_, kv) = self
                .retry("read leader key", |t| self.client.kv_get(&key, Consistency::Consistent, None, t))
                .await?;
            if let Some(kv) = kv {
                tracing::warn!("taking the leader key over from {:?}", String::from_utf8_lossy(&kv.value));
                let cas = kv.modify_index;
                self.retry("delete leader key", |t| self.client.kv_delete(&key, false, Some(cas), t)).await?;
            }
        }
        Ok(false)
    }

    async fn delete_leader(&self, leader: Option<&Leader>) -> Result<bool, DcsError> {
        let name = self.params().name;
        let key = self.key("leader");
        let version = match leader {
            Some(l) if l.name == name => l.version,
            Some(_) => return Ok(false),
            None => {
                let (_, kv) = self
                    .retry("read leader key", |t| self.client.kv_get(&key, Consistency::Consistent, None, t))
                    .await?;
                match kv {
                    Some(kv) if String::from_utf8_lossy(&kv.value) == name => Version(kv.modify_index as i64),
                    _ => return Ok(false),
                }
            }
        };
        let cas = version.0.max(0) as u64;
        self.retry("delete leader key", |t| self.client.kv_delete(&key, false, Some(cas), t)).await
    }

    async fn touch_member(&self, data: &str) -> Result<bool, DcsError> {
        let mut st = self.state.lock().await;
        let mut create = match self.refresh_locked(&mut st, false).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("failed to renew/create the consul session: {e}");
                return Ok(false);
            }
        };
        let key = self.member_key();
        let mine = self.my_member.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some((_, owner)) = &mine
            && (create || owner.as_deref() != st.id.as_deref())
        {
            self.retry("delete member key", |t| self.client.kv_delete(&key, false, None, t)).await?;
            create = true;
        }
        let new: Value = serde_json::from_str(data).unwrap_or(Value::Null);
        self.update_service(&mut st, &new, create).await;
        if !create
            && let Some((old, _)) = &mine
            && serde_json::from_str::<Value>(old).ok().as_ref() == Some(&new)
        {
            return Ok(true);
        }
        let Some(sid) = st.id.clone() else {
            return Ok(false);
        };
        drop(st);
        let opts = PutOptions { acquire: Some(sid), ..Default::default() };
        match self.retry("write member key", |t| self.client.kv_put(&key, data.as_bytes(), &opts, t)).await {
            Ok(ok) => {
                if ok {
                    *self.my_member.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some((data.to_string(), opts.acquire.clone()));
                }
                Ok(ok)
            }
            Err(DcsError::SessionExpired) => {
                tracing::error!("our session disappeared from consul, can not touch_member");
                self.forget_session().await;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    async fn set_config_value(&self, value: &str, version: Option<Version>) -> Result<bool, DcsError> {
        let cas = version.map(|v| v.0.max(0) as u64);
        self.put("write config key", "config", value, PutOptions { cas, ..Default::default() }).await
    }

    async fn set_failover_value(&self, value: &str, version: Option<Version>) -> Result<bool, DcsError> {
        let cas = version.map(|v| v.0.max(0) as u64);
        self.put("write failover key", "failover", value, PutOptions { cas, ..Default::default() }).await
    }

    async fn set_history_value(&self, value: &str) -> Result<bool, DcsError> {
        self.put("write history key", "history", value, PutOptions::default()).await
    }

    async fn set_sync_state_value(
        &self,
        value: &str,
        version: Option<Version>,
    ) -> Result<Option<Version>, DcsError> {
        let cas = version.map(|v| v.0.max(0) as u64);
        if !self.put("write sync key", "sync", value, PutOptions { cas, ..Default::default() }).await? {
            return Ok(None);
        }
        // Consul does not return the new ModifyIndex: read it back (`P:dcs/consul.py
        // set_sync_state_value`, "only read after write").
        let key = self.key("sync");
        let (_, kv) = self
            .retry("read sync key", |t| self.client.kv_get(&key, Consistency::Consistent, None, t))
            .await?;
        Ok(kv.filter(|kv| kv.value == value.as_bytes()).map(|kv| Version(kv.modify_index as i64)))
    }

    async fn delete_sync_state(&self, version: Option<Version>) -> Result<bool, DcsError> {
        let key = self.key("sync");
        let cas = version.map(|v| v.0.max(0) as u64);
        self.retry("delete sync key", |t| self.client.kv_delete(&key, false, cas, t)).await
    }

    async fn write_status(&self, value: &str) -> Result<bool, DcsError> {
        self.put("write status key", "status", value, PutOptions::default()).await
    }

    async fn write_failsafe(&self, value: &str) -> Result<bool, DcsError> {
        self.put("write failsafe key", "failsafe", value, PutOptions::default()).await
    }

    async fn initialize(&self, create_new: bool, sysid: &str) -> Result<bool, DcsError> {
        let cas = create_new.then_some(0);
        self.put("write initialize key", "initialize", sysid, PutOptions { cas, ..Default::default() }).await
    }

    async fn cancel_initialization(&self) -> Result<bool, DcsError> {
        let key = self.key("initialize");
        self.retry("delete initialize key", |t| self.client.kv_delete(&key, false, None, t)).await
    }

    async fn delete_cluster(&self) -> Result<bool, DcsError> {
        self.retry("delete cluster keys", |t| self.client.kv_delete(&self.base, true, None, t)).await
    }

    /// `P:dcs/consul.py watch`: a blocking query on `leader` from its ModifyIndex. The index is
    /// opaque: any answer whose `X-Consul-Index` differs (also one that went backwards, which Consul's
    /// blocking-query docs say to treat as a reset) is a change; an unchanged index with time left is a
    /// spurious wake-up and the query is repeated. Without a leader key there is nothing to block on
    /// and the call just sleeps.
    async fn watch(&self, leader_version: Option<Version>, timeout: Duration) -> Result<bool, DcsError> {
        self.force_refresh.store(true, Ordering::SeqCst);
        if self.do_not_watch.swap(false, Ordering::SeqCst) {
            return Ok(true);
        }
        let end = Instant::now() + timeout;
        let key = self.key("leader");
        // Without a leader key Patroni just sleeps; praetor also wakes when the key appears, with a
        // blocking query from the index of the 404 answer.
        let mut index = match leader_version {
            Some(v) => v.0.max(1) as u64,
            None => {
                match self.client.kv_get(&key, Consistency::Default, None, self.request_timeout()).await {
                    Ok((_, Some(_))) => return Ok(true),
                    Ok((idx, None)) => idx.max(1),
                    Err(e) => {
                        tracing::warn!("consul watch failed: {e}");
                        0
                    }
                }
            }
        };
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left < Duration::from_secs(1) || index == 0 {
                break;
            }
            match self.client.kv_get(&key, Consistency::Default, Some((index, left)), left).await {
                Ok((idx, kv)) => match leader_version {
                    Some(_) if idx != index => return Ok(true),
                    Some(_) => {}
                    None if kv.is_some() => return Ok(true),
                    // Another key changed: block again from the new index (reset when it went back).
                    None => index = idx.max(1),
                },
                Err(e) => {
                    tracing::warn!("consul watch failed: {e}");
                    tokio::time::sleep(
                        Duration::from_secs(1).min(end.saturating_duration_since(Instant::now())),
                    )
                    .await;
                }
            }
        }
        tokio::time::sleep_until(end).await;
        Ok(false)
    }

    /// `P:dcs/consul.py set_ttl, set_retry_timeout`: a new TTL means a new session (Consul cannot
    /// change a session's TTL) and an immediate next cycle.
    async fn set_timing(
        &self,
        ttl: Duration,
        loop_wait: Duration,
        retry_timeout: Duration,
    ) -> Result<(), DcsError> {
        {
            let mut p = self.params.lock().unwrap_or_else(|p| p.into_inner());
            p.ttl = ttl;
            p.loop_wait = loop_wait;
            p.retry_timeout = retry_timeout;
        }
        let half = ttl.as_secs_f64() / 2.0;
        let changed = {
            let mut t = self.session_ttl.lock().unwrap_or_else(|p| p.into_inner());
            let changed = (*t - half).abs() > f64::EPSILON;
            *t = half;
            changed
        };
        if changed {
            self.forget_session().await;
            self.do_not_watch.store(true, Ordering::SeqCst);
        }
        Ok(())
    }

    async fn close(&self) -> Result<(), DcsError> {
        let id = self.state.lock().await.id.take();
        if let Some(id) = id {
            self.client
                .session_destroy(&id, self.request_timeout())
                .await
                .map_err(|e| map_err("destroy consul session", e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_follow_patroni() {
        assert_eq!(service_name_from_scope("My_Cluster.eu 1"), "my-cluster-eu-1");
        assert_eq!(service_name_from_scope("a+b"), "au0043b");
    }

    #[test]
    fn base_url_from_host_port_url() {
        let mut c = ConsulConfig::default();
        assert_eq!(base_url(&c).unwrap(), "http://127.0.0.1:8500");
        c.host = Some("10.0.0.1:8501".into());
        assert_eq!(base_url(&c).unwrap(), "http://10.0.0.1:8501");
        c.port = Some("9000".into());
        c.scheme = Some("https".into());
        assert_eq!(base_url(&c).unwrap(), "https://10.0.0.1:9000");
        c.url = Some("https://consul.local".into());
        assert_eq!(base_url(&c).unwrap(), "https://consul.local:8500");
    }

    #[test]
    fn ttl_formats_like_python_floats() {
        assert_eq!(py_float(15.0), "15.0");
        assert_eq!(py_float(12.5), "12.5");
        assert_eq!(session_ttl_min(&json!({"Config": {"SessionTTLMin": 10_000_000_000u64}})), Some(10.0));
        assert_eq!(session_ttl_min(&json!({"DebugConfig": {"SessionTTLMin": "15s"}})), Some(15.0));
    }
}
