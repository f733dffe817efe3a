//! The etcd v3 backend over etcd-client (native gRPC), with Patroni's etcd3 semantics
//! (`dcs/etcd3.py`, PATRONI-COMPAT §2.4–2.6).
//!
//! Owns: the lease of this agent, the etcd transactions behind each [`Dcs`] verb, and the mapping of
//! etcd errors into [`DcsError`]. Must not know anything about PostgreSQL or the HA policy.
//!
//! # What it guarantees
//! - **One lease per agent** (TTL = `ttl`, whole seconds) carries `leader` and `members/<name>`. It is
//!   kept alive at most once per `loop_wait` (`touch_member`, `attempt_to_acquire_leader`) and on
//!   every `update_leader` (forced). A lease etcd no longer knows is replaced by a new grant; the
//!   next `update_leader`/`touch_member` re-puts the keys with it because their stored lease differs.
//! - **Exactly Patroni's transactions**: acquire = compare `create_revision(leader) == 0` → put with
//!   lease (once more with a fresh lease if etcd says the lease is gone); update = keep-alive, and if
//!   the stored key's lease is not ours, compare `value == name` → put, else compare
//!   `create_revision == 0` → put; release = compare `value == name` → delete; `config`, `failover`
//!   and `sync` compare `mod_revision`; `initialize` compares `create_revision == 0`.
//! - **One read per cycle**: [`Dcs::load_cluster`] is a single linearizable range over the cluster
//!   prefix. Versions are `mod_revision`s; a key's owner is its lease id in decimal.
//! - **Bounded calls**: every verb gives up after `retry_timeout` with [`DcsError::Unavailable`],
//!   retrying transient failures (unreachable member, leader election, timeouts) and so failing over
//!   between endpoints; one attempt waits at most `retry_timeout / endpoints` (≥ 1 s). Besides the
//!   configured endpoints it uses the client URLs of the other etcd members, read from the member
//!   list every 5 minutes (Patroni's machines cache), unless `use_proxies` or `proxy` is set.
//! - **Watch**: see [`Dcs::watch`] on [`EtcdDcs`]: it wakes on changes made after the last
//!   `load_cluster`, never misses one, and costs one short-lived etcd watch stream per call.

use super::model::{Cluster, Leader, RawEntry, Version};
use super::{ClusterKeys, Dcs, DcsError, DcsParams};
use crate::config::dcs::EtcdConfig;
use async_trait::async_trait;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, Identity,
    PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

/// Extra watch time for non-leaders, so their loops fall in step with the leader's (`etcd3.py watch`).
const FOLLOWER_WATCH_EXTRA: Duration = Duration::from_millis(500);

/// How long to wait between two attempts of a failing call (doubles up to 1 s).
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);

/// HTTP/2 keep-alive ping interval. etcd refuses pings more often than every 5 s
/// (`--grpc-keepalive-min-time`), so this stays above it.
const H2_PING_INTERVAL: Duration = Duration::from_secs(10);

/// How often the etcd member list is read to learn endpoints that are not configured (Patroni's
/// machines cache, `etcd.py cache_ttl`), and how soon to retry when reading it failed.
const DISCOVERY_INTERVAL: Duration = Duration::from_secs(300);
const DISCOVERY_RETRY: Duration = Duration::from_secs(30);

/// The etcd v3 store of one agent. Create it with [`EtcdDcs::connect`].
pub struct EtcdDcs {
    client: Client,
    keys: ClusterKeys,
    name: String,
    endpoints: Vec<String>,
    /// `use_proxies`: talk to the configured endpoints only, never to discovered members.
    use_proxies: bool,
    /// Client URLs learned from the member list, and when to read it next.
    discovery: tokio::sync::Mutex<(Vec<String>, Option<Instant>)>,
    /// Configured plus discovered endpoints: one attempt waits `retry_timeout` / this.
    endpoint_count: AtomicUsize,
    timing: Mutex<Timing>,
    /// Held across the network calls that renew it, so concurrent verbs share one renewal.
    lease: tokio::sync::Mutex<LeaseState>,
    seen: Mutex<Seen>,
    /// Set by `set_timing` when `ttl` changed: the next `watch` returns at once (`etcd3.py set_ttl`).
    do_not_watch: AtomicBool,
}

#[derive(Clone, Copy, Debug)]
struct Timing {
    ttl: Duration,
    loop_wait: Duration,
    retry_timeout: Duration,
}

#[derive(Debug, Default)]
struct LeaseState {
    id: Option<i64>,
    last_refresh: Option<Instant>,
}

/// What the caller last saw of the keys that wake a watch, as of `rev`.
#[derive(Clone, Debug, Default)]
struct Seen {
    /// Header revision of the last `load_cluster` (0: nothing loaded yet).
    rev: i64,
    leader: Option<String>,
    config: Option<String>,
    status: Option<String>,
    /// My `members/<name>` as last read or written: value and lease.
    my_member: Option<(String, i64)>,
}

/// Why one etcd call failed, before it becomes a [`DcsError`].
#[derive(Debug)]
enum CallError {
    /// etcd says our lease does not exist (expired or revoked).
    LeaseNotFound,
    /// Anything else.
    Dcs(DcsError),
}

impl From<CallError> for DcsError {
    fn from(e: CallError) -> DcsError {
        match e {
            CallError::LeaseNotFound => DcsError::SessionExpired,
            CallError::Dcs(e) => e,
        }
    }
}

enum Class {
    Transient(String),
    LeaseNotFound,
    Fatal(etcd_client::Error),
}

fn classify(e: etcd_client::Error) -> Class {
    use etcd_client::Error as E;
    // gRPC status codes (google.golang.org/grpc/codes).
    const CANCELLED: i32 = 1;
    const UNKNOWN: i32 = 2;
    const DEADLINE_EXCEEDED: i32 = 4;
    const NOT_FOUND: i32 = 5;
    const FAILED_PRECONDITION: i32 = 9;
    const UNAVAILABLE: i32 = 14;
    match e {
        E::GRpcStatus(s) if i32::from(s.code()) == NOT_FOUND && s.message().contains("lease not found") => {
            Class::LeaseNotFound
        }
        E::GRpcStatus(s)
            if matches!(
                i32::from(s.code()),
                UNAVAILABLE | DEADLINE_EXCEEDED | FAILED_PRECONDITION | UNKNOWN | CANCELLED
            ) =>
        {
            Class::Transient(format!("{}: {}", s.code(), s.message()))
        }
        E::LeaseKeepAliveError(m) if m.contains("lease not found") => Class::LeaseNotFound,
        e @ (E::TransportError(_) | E::IoError(_) | E::LeaseKeepAliveError(_) | E::WatchError(_)) => {
            Class::Transient(e.to_string())
        }
        e => Class::Fatal(e),
    }
}

/// Read a PEM file named by an `etcd3` key, for the error message.
fn read_pem(key: &str, path: &std::path::Path) -> Result<Vec<u8>, DcsError> {
    std::fs::read(path)
        .map_err(|e| DcsError::Config(format!("etcd3.{key}: cannot read {}: {e}", path.display())))
}

fn secs(d: Duration) -> i64 {
    // etcd leases have whole-second TTLs; Patroni passes the integer ttl.
    (d.as_secs_f64().round() as i64).max(1)
}

fn utf8(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Two member values carry the same data (JSON compared as values, like Patroni's `deep_compare`).
fn same_member_data(a: &str, b: &str) -> bool {
    match (serde_json::from_str::<serde_json::Value>(a), serde_json::from_str::<serde_json::Value>(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

impl EtcdDcs {
    /// Build the client for `cfg` (endpoints, TLS, user) and this member's `params`.
    ///
    /// Does not grant the lease yet (the first verb that needs it does), so it returns quickly even
    /// when etcd is down; with a username it authenticates, bounded by `retry_timeout`.
    /// `Err(Config)` names the offending `etcd3` key.
    pub async fn connect(cfg: &EtcdConfig, params: DcsParams) -> Result<EtcdDcs, DcsError> {
        let endpoints = cfg.endpoints();
        if endpoints.is_empty() {
            let why = if cfg.srv.is_some() {
                "`srv` discovery is not supported by praetor; list the members in `hosts`"
            } else {
                "no endpoint: set `hosts`, `host` or `url`"
            };
            return Err(DcsError::Config(format!("etcd3: {why}")));
        }
        if cfg.srv.is_some() {
            warn!("etcd3.srv is not supported by praetor and is ignored; using {endpoints:?}");
        }
        let timing = Timing {
            ttl: params.ttl,
            loop_wait: params.loop_wait,
            retry_timeout: params.retry_timeout.max(Duration::from_secs(1)),
        };
        let attempt = attempt_timeout(timing.retry_timeout, endpoints.len());
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(attempt)
            .with_keep_alive(H2_PING_INTERVAL, attempt)
            .with_tcp_keepalive(H2_PING_INTERVAL);

        let https = endpoints.iter().filter(|e| e.starts_with("https://")).count();
        if https > 0 && https < endpoints.len() {
            return Err(DcsError::Config(format!(
                "etcd3: endpoints mix http and https ({endpoints:?}); use one scheme"
            )));
        }
        if https > 0 {
            let mut tls = TlsOptions::new();
            if let Some(ca) = &cfg.cacert {
                tls = tls.ca_certificate(Certificate::from_pem(read_pem("cacert", ca)?));
            }
            match (&cfg.cert, &cfg.key) {
                (Some(cert), Some(key)) => {
                    tls = tls.identity(Identity::from_pem(read_pem("cert", cert)?, read_pem("key", key)?));
                }
                (Some(_), None) => {
                    return Err(DcsError::Config("etcd3.cert is set but etcd3.key is not".into()));
                }
                (None, Some(_)) => {
                    return Err(DcsError::Config("etcd3.key is set but etcd3.cert is not".into()));
                }
                (None, None) => {}
            }
            opts = opts.with_tls(tls);
        } else if cfg.cacert.is_some() || cfg.cert.is_some() {
            warn!("etcd3: cacert/cert are set but every endpoint is http://; TLS is not used");
        }
        match (&cfg.username, &cfg.password) {
            (Some(user), Some(pw)) => {
                opts = opts.with_user(user.clone(), pw.expose().clone()).with_auto_token_refresh(true)
            }
            (Some(_), None) => {
                return Err(DcsError::Config("etcd3.username is set but etcd3.password is not".into()));
            }
            _ => {}
        }

        let client = match tokio::time::timeout(timing.retry_timeout, Client::connect(&endpoints, Some(opts)))
            .await
        {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                return Err(match classify(e) {
                    Class::Transient(m) => {
                        DcsError::Unavailable(format!("connect to etcd {endpoints:?}: {m}"))
                    }
                    Class::Fatal(e @ etcd_client::Error::InvalidArgs(_))
                    | Class::Fatal(e @ etcd_client::Error::InvalidUri(_)) => {
                        DcsError::Config(format!("etcd3 endpoints {endpoints:?}: {e}"))
                    }
                    Class::Fatal(e) => DcsError::backend("connect to etcd", e),
                    Class::LeaseNotFound => {
                        DcsError::Unavailable("connect to etcd: unexpected lease error".into())
                    }
                });
            }
            Err(_) => return Err(DcsError::Unavailable(format!("connect to etcd {endpoints:?}: timed out"))),
        };
        info!(endpoints = ?endpoints, scope = %params.scope, "using etcd v3");
        let endpoint_count = endpoints.len();
        Ok(EtcdDcs {
            client,
            keys: params.keys(),
            name: params.name,
            endpoints,
            use_proxies: cfg.use_proxies.unwrap_or(false) || cfg.proxy.is_some(),
            discovery: tokio::sync::Mutex::new((Vec::new(), None)),
            endpoint_count: AtomicUsize::new(endpoint_count),
            timing: Mutex::new(timing),
            lease: tokio::sync::Mutex::new(LeaseState::default()),
            seen: Mutex::new(Seen::default()),
            do_not_watch: AtomicBool::new(false),
        })
    }

    /// The lease this agent currently holds, if any (for tests and diagnostics).
    pub async fn lease_id(&self) -> Option<i64> {
        self.lease.lock().await.id
    }

    /// The etcd client URLs in use: configured, then discovered.
    pub async fn endpoints(&self) -> Vec<String> {
        let d = self.discovery.lock().await;
        self.endpoints.iter().chain(d.0.iter()).cloned().collect()
    }

    /// Add the client URLs of etcd members that are not configured, so that losing the configured
    /// ones is survived (Patroni's machines cache). Best effort, at most every
    /// [`DISCOVERY_INTERVAL`], one attempt; skipped with `use_proxies` or `proxy`.
    async fn discover_members(&self) {
        if self.use_proxies {
            return;
        }
        let Ok(mut d) = self.discovery.try_lock() else { return };
        let now = Instant::now();
        if d.1.is_some_and(|next| now < next) {
            return;
        }
        d.1 = Some(now + DISCOVERY_RETRY);
        let attempt =
            attempt_timeout(self.timing().retry_timeout, self.endpoint_count.load(Ordering::Relaxed));
        let mut c = self.client.clone();
        let list = match tokio::time::timeout(attempt, c.member_list()).await {
            Ok(Ok(l)) => l,
            Ok(Err(e)) => return debug!("cannot list etcd members: {e}"),
            Err(_) => return debug!("cannot list etcd members: no answer within {attempt:?}"),
        };
        d.1 = Some(now + DISCOVERY_INTERVAL);
        let https = self.endpoints.iter().any(|e| e.starts_with("https://"));
        for url in list.members().iter().flat_map(|m| m.client_urls()) {
            let url = url.trim_end_matches('/').to_string();
            if url.starts_with("https://") != https
                || self.endpoints.iter().any(|e| e.trim_end_matches('/') == url)
                || d.0.contains(&url)
            {
                continue;
            }
            match self.client.add_endpoint(&url).await {
                Ok(()) => {
                    info!(endpoint = %url, "using etcd member discovered from the member list");
                    d.0.push(url);
                    self.endpoint_count.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => debug!(endpoint = %url, "cannot use discovered etcd member: {e}"),
            }
        }
    }

    fn timing(&self) -> Timing {
        *self.timing.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run `f` until it succeeds, fails for good, or `retry_timeout` passes.
    async fn call<T, F, Fut>(&self, op: &'static str, mut f: F) -> Result<T, CallError>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let retry_timeout = self.timing().retry_timeout;
        let deadline = Instant::now() + retry_timeout;
        let per_attempt = attempt_timeout(retry_timeout, self.endpoint_count.load(Ordering::Relaxed));
        let mut delay = FIRST_RETRY_DELAY;
        loop {
            let now = Instant::now();
            let attempt = per_attempt.min(deadline.saturating_duration_since(now));
            let last = match tokio::time::timeout(attempt, f(self.client.clone())).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => match classify(e) {
                    Class::Transient(m) => m,
                    Class::LeaseNotFound => return Err(CallError::LeaseNotFound),
                    Class::Fatal(e) => return Err(CallError::Dcs(DcsError::backend(op, e))),
                },
                Err(_) => format!("no answer within {attempt:?}"),
            };
            if Instant::now() + delay >= deadline {
                return Err(CallError::Dcs(DcsError::Unavailable(format!(
                    "{op}: gave up after {retry_timeout:?}: {last}"
                ))));
            }
            debug!(op, "etcd call failed, retrying: {last}");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }

    /// Keep the lease alive (at most once per `loop_wait` unless `force`), granting a new one when
    /// there is none or etcd forgot it (`etcd3.py _do_refresh_lease`). Returns my lease id.
    async fn refresh_lease(&self, force: bool) -> Result<i64, DcsError> {
        let t = self.timing();
        let mut l = self.lease.lock().await;
        if let (Some(id), Some(last), false) = (l.id, l.last_refresh, force)
            && last + t.loop_wait > Instant::now()
        {
            return Ok(id);
        }
        if let Some(id) = l.id {
            let alive = self
                .call("keep the lease alive", |mut c| async move { c.lease_keep_alive(id).await.map(|_| ()) })
                .await;
            match alive {
                Ok(()) => {}
                Err(CallError::LeaseNotFound) => {
                    warn!(lease = id, "etcd lost our lease; granting a new one");
                    l.id = None;
                }
                Err(CallError::Dcs(e)) => return Err(e),
            }
        }
        let id = match l.id {
            Some(id) => id,
            None => {
                let ttl = secs(t.ttl);
                let r =
                    self.call("grant a lease", |mut c| async move { c.lease_grant(ttl, None).await }).await?;
                info!(lease = r.id(), ttl, "granted etcd lease");
                l.id = Some(r.id());
                r.id()
            }
        };
        l.last_refresh = Some(Instant::now());
        Ok(id)
    }

    /// Forget the lease (etcd said it does not exist) so the next refresh grants a new one.
    async fn drop_lease(&self, id: i64) {
        let mut l = self.lease.lock().await;
        if l.id == Some(id) {
            l.id = None;
        }
    }

    async fn txn(&self, op: &'static str, txn: Txn) -> Result<etcd_client::TxnResponse, CallError> {
        self.call(op, |mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await
    }

    /// Put `value` at `key`; with `mod_revision`, only if the key's `mod_revision` still matches.
    /// Returns the revision of the write, `None` if the compare failed.
    async fn put_cas(
        &self,
        op: &'static str,
        key: String,
        value: &str,
        mod_revision: Option<Version>,
    ) -> Result<Option<i64>, DcsError> {
        let value = value.to_string();
        match mod_revision {
            None => {
                let r = self
                    .call(op, |mut c| {
                        let (k, v) = (key.clone(), value.clone());
                        async move { c.put(k, v, None).await }
                    })
                    .await?;
                Ok(Some(r.header().map_or(0, |h| h.revision())))
            }
            Some(Version(rev)) => {
                let txn = Txn::new()
                    .when([Compare::mod_revision(key.clone(), CompareOp::Equal, rev)])
                    .and_then([TxnOp::put(key, value, None)]);
                let r = self.txn(op, txn).await?;
                Ok(r.succeeded().then(|| r.header().map_or(0, |h| h.revision())))
            }
        }
    }

    /// compare `create_revision(leader) == 0` → put my name with `lease`. On failure, reads the key:
    /// a key that already names me with this lease (a retried request that had succeeded) counts.
    async fn try_acquire(&self, lease: i64) -> Result<bool, CallError> {
        let key = self.keys.path("leader");
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.clone(), self.name.clone(), Some(PutOptions::new().with_lease(lease)))])
            .or_else([TxnOp::get(key, None)]);
        let r = self.txn("acquire the leader key", txn).await?;
        if r.succeeded() {
            return Ok(true);
        }
        let mine = r.op_responses().iter().any(|op| match op {
            TxnOpResponse::Get(g) => {
                g.kvs().iter().any(|kv| kv.value() == self.name.as_bytes() && kv.lease() == lease)
            }
            _ => false,
        });
        Ok(mine)
    }

    fn note_leader(&self, value: Option<&str>) {
        let mut s = self.seen();
        if s.rev > 0 {
            s.leader = value.map(String::from);
        }
    }

    /// One linearizable range over the cluster prefix.
    async fn range_prefix(&self) -> Result<etcd_client::GetResponse, DcsError> {
        let prefix = self.keys.prefix().to_string();
        Ok(self
            .call("read the cluster", |mut c| {
                let p = prefix.clone();
                async move { c.get(p, Some(GetOptions::new().with_prefix())).await }
            })
            .await?)
    }

    /// Whether an event on `rel` (relative key) with `new` value, given `state` so far, should wake
    /// the HA loop (`etcd3.py KVCache._process_event`). Updates `state`.
    fn wakes(&self, state: &mut Seen, rel: &str, new: Option<String>) -> bool {
        match rel {
            "leader" => {
                let changed = state.leader != new;
                state.leader = new;
                changed
            }
            "config" => {
                let changed = state.config.is_some() && new.is_some() && state.config != new;
                state.config = new;
                changed
            }
            "status" | "optime/leader" => {
                let changed = new.is_some() && state.status != new;
                state.status = new;
                changed && state.leader.as_deref() != Some(self.name.as_str())
            }
            _ => false,
        }
    }
}

fn attempt_timeout(retry_timeout: Duration, endpoints: usize) -> Duration {
    let n = u32::try_from(endpoints.max(1)).unwrap_or(u32::MAX);
    (retry_timeout / n).max(Duration::from_secs(1)).min(retry_timeout)
}

#[async_trait]
impl Dcs for EtcdDcs {
    fn backend(&self) -> String {
        "etcd3".into()
    }

    async fn load_cluster(&self) -> Result<Cluster, DcsError> {
        let resp = self.range_prefix().await?;
        // After a successful read only, so an unreachable etcd costs retry_timeout and no more.
        self.discover_members().await;
        let rev = resp.header().map_or(0, |h| h.revision());
        let mut seen = Seen { rev: rev.max(1), ..Seen::default() };
        let mut entries = Vec::with_capacity(resp.kvs().len());
        for kv in resp.kvs() {
            let full = utf8(kv.key());
            let Some(rel) = self.keys.relative(&full) else { continue };
            let value = utf8(kv.value());
            match rel {
                "leader" => seen.leader = Some(value.clone()),
                "config" => seen.config = Some(value.clone()),
                "status" => seen.status = Some(value.clone()),
                "optime/leader" if seen.status.is_none() => seen.status = Some(value.clone()),
                _ => {}
            }
            if rel == format!("members/{}", self.name) {
                seen.my_member = Some((value.clone(), kv.lease()));
            }
            entries.push(RawEntry {
                key: rel.to_string(),
                value,
                version: Version(kv.mod_revision()),
                owner: (kv.lease() != 0).then(|| kv.lease().to_string()),
            });
        }
        let (cluster, warnings) = Cluster::from_entries(entries);
        for w in warnings {
            warn!(key = %self.keys.path(&w.key), "ignoring malformed DCS value: {}", w.problem);
        }
        if let Some(l) = &cluster.leader {
            // Only a hint: skip it rather than wait while a renewal holds the lease.
            let mine = self.lease.try_lock().ok().map(|g| g.id.map(|id| id.to_string()));
            if let Some(mine) = mine
                && l.name == self.name
                && l.owner.is_some()
                && l.owner != mine
            {
                warn!("I am the leader but not owner of the lease");
            }
        }
        *self.seen() = seen;
        Ok(cluster)
    }

    async fn attempt_to_acquire_leader(&self) -> Result<bool, DcsError> {
        let lease = self.refresh_lease(false).await?;
        let won = match self.try_acquire(lease).await {
            Ok(won) => won,
            Err(CallError::LeaseNotFound) => {
                error!("Our lease disappeared from etcd; getting a new one and retrying the attempt");
                self.drop_lease(lease).await;
                let lease = self.refresh_lease(false).await?;
                self.try_acquire(lease).await?
            }
            Err(CallError::Dcs(e)) => return Err(e),
        };
        if won {
            self.note_leader(Some(&self.name));
        } else {
            info!("Could not take out TTL lock");
        }
        Ok(won)
    }

    async fn update_leader(&self, leader: Option<&Leader>) -> Result<bool, DcsError> {
        let lease = self.refresh_lease(true).await?;
        let lease_str = lease.to_string();
        if let Some(l) = leader
            && l.name == self.name
            && l.owner.as_deref() == Some(lease_str.as_str())
        {
            return Ok(true);
        }
        // The key is not bound to my current lease: re-put it if it still names me, or create it
        // if it is gone (`etcd3.py _update_leader`).
        let key = self.keys.path("leader");
        let put = TxnOp::put(key.clone(), self.name.clone(), Some(PutOptions::new().with_lease(lease)));
        let create = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([put.clone()]);
        let txn = Txn::new()
            .when([Compare::value(key, CompareOp::Equal, self.name.clone())])
            .and_then([put])
            .or_else([TxnOp::txn(create)]);
        let r = match self.txn("update the leader key", txn).await {
            Ok(r) => r,
            Err(CallError::LeaseNotFound) => {
                warn!("etcd lost our lease while updating the leader key");
                self.drop_lease(lease).await;
                return Ok(false);
            }
            Err(CallError::Dcs(e)) => return Err(e),
        };
        let ok = r.succeeded()
            || r.op_responses().iter().any(|op| matches!(op, TxnOpResponse::Txn(t) if t.succeeded()));
        if ok {
            self.note_leader(Some(&self.name));
        }
        Ok(ok)
    }

    async fn take_leader(&self) -> Result<bool, DcsError> {
        let key = self.keys.path("leader");
        let mut retried = false;
        loop {
            let lease = self.refresh_lease(false).await?;
            let r = self
                .call("take the leader key", |mut c| {
                    let (k, v) = (key.clone(), self.name.clone());
                    async move { c.put(k, v, Some(PutOptions::new().with_lease(lease))).await }
                })
                .await;
            match r {
                Ok(_) => {
                    self.note_leader(Some(&self.name));
                    return Ok(true);
                }
                Err(CallError::LeaseNotFound) if !retried => {
                    self.drop_lease(lease).await;
                    retried = true;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    async fn delete_leader(&self, _leader: Option<&Leader>) -> Result<bool, DcsError> {
        let key = self.keys.path("leader");
        let txn = Txn::new()
            .when([Compare::value(key.clone(), CompareOp::Equal, self.name.clone())])
            .and_then([TxnOp::delete(key, None)]);
        let ok = self.txn("delete the leader key", txn).await?.succeeded();
        if ok {
            self.note_leader(None);
        }
        Ok(ok)
    }

    async fn touch_member(&self, data: &str) -> Result<bool, DcsError> {
        let lease = self.refresh_lease(false).await?;
        let unchanged =
            self.seen().my_member.as_ref().is_some_and(|(v, l)| *l == lease && same_member_data(v, data));
        if unchanged {
            return Ok(true);
        }
        let key = self.keys.member(&self.name);
        let value = data.to_string();
        let r = self
            .call("put the member key", |mut c| {
                let (k, v) = (key.clone(), value.clone());
                async move { c.put(k, v, Some(PutOptions::new().with_lease(lease))).await }
            })
            .await;
        match r {
            Ok(_) => {
                self.seen().my_member = Some((value, lease));
                Ok(true)
            }
            Err(CallError::LeaseNotFound) => {
                error!("Our lease disappeared from etcd, can not \"touch_member\"");
                self.drop_lease(lease).await;
                Ok(false)
            }
            Err(CallError::Dcs(e)) => Err(e),
        }
    }

    async fn set_config_value(&self, value: &str, version: Option<Version>) -> Result<bool, DcsError> {
        let ok =
            self.put_cas("write the config key", self.keys.path("config"), value, version).await?.is_some();
        if ok {
            let mut s = self.seen();
            if s.rev > 0 {
                s.config = Some(value.to_string());
            }
        }
        Ok(ok)
    }

    async fn set_failover_value(&self, value: &str, version: Option<Version>) -> Result<bool, DcsError> {
        Ok(self
            .put_cas("write the failover key", self.keys.path("failover"), value, version)
            .await?
            .is_some())
    }

    async fn set_history_value(&self, value: &str) -> Result<bool, DcsError> {
        Ok(self.put_cas("write the history key", self.keys.path("history"), value, None).await?.is_some())
    }

    async fn set_sync_state_value(
        &self,
        value: &str,
        version: Option<Version>,
    ) -> Result<Option<Version>, DcsError> {
        Ok(self.put_cas("write the sync key", self.keys.path("sync"), value, version).await?.map(Version))
    }

    async fn delete_sync_state(&self, version: Option<Version>) -> Result<bool, DcsError> {
        let key = self.keys.path("sync");
        match version {
            None => {
                self.call("delete the sync key", |mut c| {
                    let k = key.clone();
                    async move { c.delete(k, None).await }
                })
                .await?;
                Ok(true)
            }
            Some(Version(rev)) => {
                let txn = Txn::new()
                    .when([Compare::mod_revision(key.clone(), CompareOp::Equal, rev)])
                    .and_then([TxnOp::delete(key, None)]);
                Ok(self.txn("delete the sync key", txn).await?.succeeded())
            }
        }
    }

    async fn write_status(&self, value: &str) -> Result<bool, DcsError> {
        let ok = self.put_cas("write the status key", self.keys.path("status"), value, None).await?.is_some();
        let mut s = self.seen();
        if ok && s.rev > 0 {
            s.status = Some(value.to_string());
        }
        Ok(ok)
    }

    async fn write_failsafe(&self, value: &str) -> Result<bool, DcsError> {
        Ok(self.put_cas("write the failsafe key", self.keys.path("failsafe"), value, None).await?.is_some())
    }

    async fn initialize(&self, create_new: bool, sysid: &str) -> Result<bool, DcsError> {
        let key = self.keys.path("initialize");
        if !create_new {
            return Ok(self.put_cas("write the initialize key", key, sysid, None).await?.is_some());
        }
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, sysid, None)]);
        Ok(self.txn("create the initialize key", txn).await?.succeeded())
    }

    async fn cancel_initialization(&self) -> Result<bool, DcsError> {
        let key = self.keys.path("initialize");
        self.call("delete the initialize key", |mut c| {
            let k = key.clone();
            async move { c.delete(k, None).await }
        })
        .await?;
        Ok(true)
    }

    async fn delete_cluster(&self) -> Result<bool, DcsError> {
        let prefix = self.keys.prefix().to_string();
        self.call("delete the cluster", |mut c| {
            let p = prefix.clone();
            async move { c.delete(p, Some(DeleteOptions::new().with_prefix())).await }
        })
        .await?;
        *self.seen() = Seen::default();
        Ok(true)
    }

    /// Wait for a change that the last [`Dcs::load_cluster`] did not see, or `timeout`.
    ///
    /// Wakes (`Ok(true)`) on what wakes Patroni's etcd3 KV cache: the `leader` value created,
    /// changed or deleted (also by lease expiry); `config` changed; `status`/`optime/leader` changed
    /// while the leader is someone else. Changes this agent made itself do not wake it. Changes made
    /// between the last `load_cluster` and this call do (the etcd watch starts at the revision that
    /// read returned), so none is missed; if etcd compacted that history, it wakes at once.
    ///
    /// `leader_version` is advisory, as in Patroni's etcd3: when it is set (a follower), the wait is
    /// 0.5 s longer. After `set_timing` changed `ttl`, the next call returns `Ok(true)` at once.
    /// Without any `load_cluster` before, it reads the cluster first.
    ///
    /// Never fails: while etcd is unreachable it keeps trying to watch and returns `Ok(false)` at
    /// the deadline, so the caller's next `load_cluster` reports the outage.
    async fn watch(&self, leader_version: Option<Version>, timeout: Duration) -> Result<bool, DcsError> {
        if self.do_not_watch.swap(false, Ordering::SeqCst) {
            return Ok(true);
        }
        let extra = if leader_version.is_some() { FOLLOWER_WATCH_EXTRA } else { Duration::ZERO };
        let deadline = Instant::now() + timeout + extra;
        let never_loaded = self.seen().rev == 0;
        if never_loaded {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.load_cluster()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => debug!("watch: cannot read the cluster: {e}"),
                Err(_) => return Ok(false),
            }
        }
        let start = self.seen().clone();
        let mut state = start.clone();
        let mut next_rev = start.rev + 1;
        let prefix = self.keys.prefix().to_string();
        let per_attempt =
            attempt_timeout(self.timing().retry_timeout, self.endpoint_count.load(Ordering::Relaxed));

        while Instant::now() < deadline {
            let opts = WatchOptions::new().with_prefix().with_start_revision(next_rev);
            let attempt = per_attempt.min(deadline.saturating_duration_since(Instant::now()));
            let mut client = self.client.clone();
            let mut stream =
                match tokio::time::timeout(attempt, client.watch(prefix.clone(), Some(opts))).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        debug!("watch: cannot open an etcd watch: {e}");
                        tokio::time::sleep_until(deadline.min(Instant::now() + Duration::from_secs(1))).await;
                        continue;
                    }
                    Err(_) => continue,
                };
            loop {
                let msg = tokio::select! {
                    m = stream.message() => m,
                    _ = tokio::time::sleep_until(deadline) => break,
                };
                let resp = match msg {
                    Ok(Some(r)) => r,
                    Ok(None) | Err(_) => {
                        debug!("watch: etcd watch stream ended; reopening");
                        tokio::time::sleep_until(deadline.min(Instant::now() + Duration::from_millis(200)))
                            .await;
                        break;
                    }
                };
                if resp.canceled() || resp.compact_revision() > 0 {
                    debug!(compacted = resp.compact_revision(), "watch: history not available; waking");
                    return Ok(true);
                }
                for ev in resp.events() {
                    let Some(kv) = ev.kv() else { continue };
                    next_rev = next_rev.max(kv.mod_revision() + 1);
                    let full = utf8(kv.key());
                    let Some(rel) = self.keys.relative(&full) else { continue };
                    let new = match ev.event_type() {
                        EventType::Put => Some(utf8(kv.value())),
                        EventType::Delete => None,
                    };
                    if self.wakes(&mut state, rel, new) {
                        debug!(key = %full, "watch: woken");
                        return Ok(true);
                    }
                }
            }
        }
        // Nothing relevant happened: remember how far we looked, unless the caller read meanwhile.
        let mut s = self.seen();
        if s.rev == start.rev && next_rev - 1 > s.rev {
            s.rev = next_rev - 1;
            s.leader = state.leader;
            s.config = state.config;
            s.status = state.status;
        }
        Ok(false)
    }

    async fn set_timing(
        &self,
        ttl: Duration,
        loop_wait: Duration,
        retry_timeout: Duration,
    ) -> Result<(), DcsError> {
        let old = {
            let mut t = self.timing.lock().unwrap_or_else(|p| p.into_inner());
            let old = t.ttl;
            *t = Timing { ttl, loop_wait, retry_timeout: retry_timeout.max(Duration::from_secs(1)) };
            old
        };
        if secs(old) != secs(ttl) {
            // A new lease with the new TTL at the next renewal; the keys move to it when re-put.
            self.lease.lock().await.id = None;
            self.do_not_watch.store(true, Ordering::SeqCst);
        }
        Ok(())
    }

    async fn close(&self) -> Result<(), DcsError> {
        let id = self.lease.lock().await.id.take();
        if let Some(id) = id {
            match self.call("revoke the lease", |mut c| async move { c.lease_revoke(id).await }).await {
                Ok(_) | Err(CallError::LeaseNotFound) => info!(lease = id, "revoked etcd lease"),
                Err(CallError::Dcs(e)) => return Err(e),
            }
        }
        Ok(())
    }
}
