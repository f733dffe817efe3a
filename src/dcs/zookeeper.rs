//! The ZooKeeper backend, with Patroni's znode layout and semantics (`P:dcs/zookeeper.py`,
//! PATRONI-COMPAT §2.4–2.6), so Patroni nodes, `patronictl` and praetor share one cluster.
//!
//! # Sessions
//! One ZooKeeper session per agent, its timeout = `ttl` (as negotiated by the server, which clamps it
//! to `[minSessionTimeout, maxSessionTimeout]`). `leader` and `members/<name>` are *ephemeral* znodes
//! owned by that session: the server deletes them when the session ends (expiry after `ttl` without
//! contact, or an explicit close). Everything else is persistent.
//!
//! The session is opened lazily on first use. When it is lost (expired, or closed by us), the next call
//! opens a new one — the agent keeps running. The keys the old session owned are gone by then, so a
//! leader learns that it lost the lock: [`Dcs::update_leader`] reads the `leader` znode and answers
//! `Ok(false)` when it is gone or names someone else.
//!
//! A voluntary release ([`Dcs::delete_leader`]) restarts the session, exactly as Patroni 4.1.5 does
//! (`ZooKeeper._delete_leader` calls `self._client.restart()`): that drops `leader` *and*
//! `members/<name>`; the member key comes back on the next `touch_member`. A changed `ttl`
//! ([`Dcs::set_timing`]) restarts the session too, because ZooKeeper cannot change the timeout of a
//! live session (`ZooKeeper.set_ttl`).
//!
//! # Reads
//! [`Dcs::load_cluster`] sends `sync` on the cluster path and then, pipelined on the same session, one
//! `exists` (with a watch) plus one `getData` for `leader` and `config`, a `getData` for each other
//! fixed key, `getChildren` of `members`, and then a `getData` for each member. ZooKeeper executes the
//! requests of one session in order (FIFO), so:
//! * everything committed before the `sync` was answered is visible (ZooKeeper's `sync` caveat: a
//!   leader change inside the ensemble in that instant can weaken this, ZOOKEEPER-1675);
//! * each read is at least as new as every earlier read and write of this session — in particular our
//!   own writes, and the previous `load_cluster`: the view never goes back in time;
//! * it is *not* one atomic snapshot: a key written by someone else between two of the reads may show
//!   its old value in one and its new value in a later one.
//!
//! That is enough for the HA decision, as in Patroni (which reads the same way): every decision that
//! must be exclusive is taken by an atomic server-side operation — creating the ephemeral `leader`
//! (fails if it exists), compare-and-set on `stat.version` for `config`/`failover`/`sync`, creating
//! `initialize` — never by trusting the snapshot; and a change that the snapshot straddled fires the
//! `leader`/`config` watch set during the read, so the next cycle starts at once and sees it.
//!
//! # Watches
//! `exists` watches on `leader` and `config` (set during `load_cluster`, or by [`Dcs::watch`] itself
//! when there was no read since the last wake-up) end [`Dcs::watch`] early; so does any session state
//! change (disconnect, expiry). Like Patroni, `watch` never fails: if ZooKeeper cannot be asked it
//! waits out the timeout and answers `Ok(false)`.
//!
//! # Configuration (`zookeeper:`)
//! * `hosts`: list or comma string of `host[:port]` (default port 2181, a `/chroot` suffix on the last
//!   one is honoured); the client moves to the next host when a connection dies, keeping its session.
//!   Empty: `127.0.0.1:2181`, as kazoo. A dead connection is noticed after `max(loop_wait - 2 s, 2 s)`
//!   without traffic (Patroni's read timeout), capped at 2/5 of `ttl`; it is fixed for a session, so a
//!   changed `loop_wait` applies from the next session.
//! * `use_ssl` with `cacert` (required: no system trust store), optional `cert` + `key` (unencrypted
//!   PEM; `key_password` is rejected with a clear error). `verify: false` skips the host name check
//!   only; the chain is still verified against `cacert`.
//! * `auth_data: {scheme: credential}` is presented on every (re)connect; `set_acls:
//!   {principal: [READ, WRITE, CREATE, DELETE, ADMIN, ALL]}` becomes x509 ACLs on every znode we
//!   create, parents included — as kazoo's `default_acl` does for Patroni.
//!
//! # Compatibility notes
//! * Versions are `stat.version`. Patroni writes with `version or -1` (`ZooKeeper._set_or_create`),
//!   which turns a compare-and-set against a znode still at version 0 (never rewritten since its
//!   creation) into an unconditional write — a lost update waiting to happen. praetor compares version
//!   0 like any other. Nothing on the wire changes: the version is the client's own business.
//! * `take_leader` (after a successful bootstrap) writes the key unconditionally, as the [`Dcs`]
//!   contract says: if someone else's ephemeral `leader` exists it is replaced. Patroni calls
//!   `attempt_to_acquire_leader` there, which gives up instead.
//! * `update_leader` answers `Ok(false)` when the `leader` znode is gone. Patroni's `_update_leader`
//!   only compares session ids and, after a session change, re-creates a missing key; praetor takes a
//!   vanished key as a lost lock (the HA loop demotes and races again), as the [`Dcs`] contract says.
//! * `delete_sync_state` writes `{}` (Patroni does not delete `sync` on ZooKeeper).
//! * `RawEntry::owner` is the ephemeral owner session id in decimal (Patroni's `Member.session`);
//!   `None` for persistent znodes.

use super::model::{Cluster, Leader, RawEntry, Version};
use super::{ClusterKeys, Dcs, DcsError, DcsParams};
use crate::config::dcs::ZooKeeperConfig;
use async_trait::async_trait;
use futures::future::join_all;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;
use zookeeper_client as zk;

/// The fixed keys read by `load_cluster`, besides `members/*`.
const FIXED_KEYS: [&str; 9] =
    ["initialize", "config", "leader", "failover", "history", "status", "optime/leader", "sync", "failsafe"];

/// How long to wait for a closed session to be confirmed by the server.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

/// The current timing (from the local config, later from the dynamic configuration).
#[derive(Clone, Copy, Debug)]
struct Timing {
    ttl: Duration,
    loop_wait: Duration,
    retry_timeout: Duration,
}

impl Timing {
    /// How long a silent connection may stay idle before the client concludes it is dead and tries the
    /// next server. Patroni sets kazoo's read timeout to `max(loop_wait - 2, 2)` seconds
    /// (`ZooKeeper._kazoo_connect`); we also keep it under 2/5 of the session timeout so a dead server
    /// is left while the session can still be saved on another one.
    fn connection_timeout(&self) -> Duration {
        let patroni = self.loop_wait.saturating_sub(Duration::from_secs(2)).max(Duration::from_secs(2));
        patroni.min(self.ttl * 2 / 5).max(Duration::from_millis(100))
    }
}

/// How to reach the ensemble: everything from the `zookeeper:` section.
struct Connect {
    /// `host:port,host:port[/chroot]`.
    hosts: String,
    #[cfg_attr(not(test), allow(dead_code))]
    use_ssl: bool,
    tls: Option<zk::TlsOptions>,
    auth: Vec<(String, Vec<u8>)>,
    /// ACL for every znode we create; empty means world:anyone with all permissions.
    acls: Vec<zk::Acl>,
}

/// Watches armed by a read, consumed by the next [`Dcs::watch`].
struct Armed {
    leader: zk::OneshotWatcher,
    config: zk::OneshotWatcher,
    state: zk::StateWatcher,
    /// `stat.version` of `leader` when the watch was set (`None`: absent).
    leader_version: Option<Version>,
}

/// [`Dcs`] over ZooKeeper. See the module docs for the guarantees.
pub struct ZooKeeperDcs {
    keys: ClusterKeys,
    name: String,
    timing: Mutex<Timing>,
    connect: Connect,
    /// The live session, if any. Held across connecting so only one session is opened at a time.
    session: tokio::sync::Mutex<Option<zk::Client>>,
    armed: Mutex<Option<Armed>>,
}

/// What to do with a failed ZooKeeper call.
enum Failure {
    /// The connection dropped or the server did not answer: try again (same session).
    Retry,
    /// The session is over: open a new one and try again.
    SessionGone,
    /// Anything else: give up.
    Fatal,
}

fn classify(e: &zk::Error) -> Failure {
    match e {
        zk::Error::ConnectionLoss | zk::Error::Timeout | zk::Error::NoHosts | zk::Error::Throttled => {
            Failure::Retry
        }
        // The client library reports socket errors (reset, refused, TLS) as `Custom` wrapping the cause.
        zk::Error::Custom(_) => Failure::Retry,
        zk::Error::SessionExpired | zk::Error::SessionMoved | zk::Error::ClientClosed => Failure::SessionGone,
        _ => Failure::Fatal,
    }
}

fn session_over(state: zk::SessionState) -> bool {
    matches!(state, zk::SessionState::Expired | zk::SessionState::Closed | zk::SessionState::AuthFailed)
}

fn to_version(stat: &zk::Stat) -> Version {
    Version(i64::from(stat.version))
}

fn owner_of(stat: &zk::Stat) -> Option<String> {
    (stat.ephemeral_owner != 0).then(|| stat.ephemeral_owner.to_string())
}

/// The `stat.version` to compare with; `None`: any version. Unlike Patroni's `version or -1`, version
/// 0 (a znode never written since its creation) is compared too (see the module docs).
fn expected_version(version: Option<Version>) -> Result<Option<i32>, ()> {
    match version {
        None => Ok(None),
        Some(Version(v)) => i32::try_from(v).map(Some).map_err(|_| ()),
    }
}

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// The YAML scalar as text (`set_acls`/`auth_data` values).
fn yaml_text(v: &serde_yaml_ng::Value) -> Option<String> {
    crate::config::de::scalar_string(v)
}

fn read_file(field: &str, path: &std::path::Path) -> Result<String, DcsError> {
    std::fs::read_to_string(path)
        .map_err(|e| DcsError::Config(format!("zookeeper.{field}: cannot read {}: {e}", path.display())))
}

/// `set_acls: {principal: [READ, WRITE, ...]}` → x509 ACLs, as Patroni builds them
/// (`make_acl(scheme='x509', credential=principal, ...)`).
fn parse_acls(v: &serde_yaml_ng::Value) -> Result<Vec<zk::Acl>, DcsError> {
    let map = match v {
        serde_yaml_ng::Value::Null => return Ok(Vec::new()),
        serde_yaml_ng::Value::Mapping(m) => m,
        _ => {
            return Err(DcsError::Config(
                "zookeeper.set_acls: expected a mapping of principal to a list of permissions".into(),
            ));
        }
    };
    let mut acls = Vec::new();
    for (principal, perms) in map {
        let principal = yaml_text(principal)
            .ok_or_else(|| DcsError::Config("zookeeper.set_acls: a principal is not a string".into()))?;
        let names: Vec<String> = match perms {
            serde_yaml_ng::Value::Sequence(items) => items.iter().filter_map(yaml_text).collect(),
            other => match yaml_text(other) {
                Some(s) => s.split(',').map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect(),
                None => {
                    return Err(DcsError::Config(format!(
                        "zookeeper.set_acls.{principal}: expected a list of permissions (READ, WRITE, CREATE, DELETE, ADMIN, ALL)"
                    )));
                }
            },
        };
        let mut perm = zk::Permission::NONE;
        for name in names {
            perm = perm
                | match name.to_ascii_uppercase().as_str() {
                    "READ" => zk::Permission::READ,
                    "WRITE" => zk::Permission::WRITE,
                    "CREATE" => zk::Permission::CREATE,
                    "DELETE" => zk::Permission::DELETE,
                    "ADMIN" => zk::Permission::ADMIN,
                    "ALL" => zk::Permission::ALL,
                    other => {
                        // Patroni ignores unknown names; so do we, loudly.
                        tracing::warn!(principal = %principal, "zookeeper.set_acls: ignoring unknown permission {other:?}");
                        zk::Permission::NONE
                    }
                };
        }
        acls.push(zk::Acl::new(perm, zk::AuthId::new("x509", &principal)));
    }
    Ok(acls)
}

/// `auth_data: {scheme: credential}` → `(scheme, credential)` pairs sent after each connect.
fn parse_auth(v: &serde_yaml_ng::Value) -> Result<Vec<(String, Vec<u8>)>, DcsError> {
    match v {
        serde_yaml_ng::Value::Null => Ok(Vec::new()),
        serde_yaml_ng::Value::Mapping(m) => m
            .iter()
            .map(|(k, v)| match (yaml_text(k), yaml_text(v)) {
                (Some(k), Some(v)) => Ok((k, v.into_bytes())),
                _ => Err(DcsError::Config(
                    "zookeeper.auth_data: expected a mapping of scheme to credential".into(),
                )),
            })
            .collect(),
        _ => Err(DcsError::Config("zookeeper.auth_data: expected a mapping of scheme to credential".into())),
    }
}

fn tls_options(cfg: &ZooKeeperConfig) -> Result<zk::TlsOptions, DcsError> {
    if cfg.key_password.is_some() {
        return Err(DcsError::Config(
            "zookeeper.key_password: encrypted client keys are not supported; give an unencrypted PEM key in zookeeper.key".into(),
        ));
    }
    let Some(cacert) = &cfg.cacert else {
        return Err(DcsError::Config(
            "zookeeper.cacert is required with zookeeper.use_ssl (praetor does not use the system trust store for ZooKeeper)".into(),
        ));
    };
    let ca = read_file("cacert", cacert)?;
    let mut tls = zk::TlsOptions::new()
        .with_pem_ca(&ca)
        .map_err(|e| DcsError::Config(format!("zookeeper.cacert: {}: {e}", cacert.display())))?;
    match (&cfg.cert, &cfg.key) {
        (Some(cert), Some(key)) => {
            let c = read_file("cert", cert)?;
            let k = read_file("key", key)?;
            tls = tls
                .with_pem_identity(&c, &k)
                .map_err(|e| DcsError::Config(format!("zookeeper.cert/zookeeper.key: {e}")))?;
        }
        (Some(_), None) => {
            return Err(DcsError::Config("zookeeper.cert is set but zookeeper.key is not".into()));
        }
        (None, Some(_)) => {
            return Err(DcsError::Config("zookeeper.key is set but zookeeper.cert is not".into()));
        }
        (None, None) => {}
    }
    if cfg.verify == Some(false) {
        tracing::warn!(
            "zookeeper.verify is off: the server's host name is not checked; its certificate chain is still verified against zookeeper.cacert"
        );
        #[allow(unsafe_code)]
        {
            // SAFETY: not a memory-safety matter. The crate marks this `unsafe` because skipping the
            // host name check allows man-in-the-middle attacks; the operator asked for it
            // (`verify: false`), and the chain is still verified against `cacert`.
            tls = unsafe { tls.with_no_hostname_verification() };
        }
    }
    Ok(tls)
}

impl Connect {
    fn from_config(cfg: &ZooKeeperConfig) -> Result<Connect, DcsError> {
        let hosts: Vec<&str> = cfg.hosts.iter().map(|h| h.trim()).filter(|h| !h.is_empty()).collect();
        // kazoo's default, which Patroni inherits when `hosts` is empty.
        let hosts = if hosts.is_empty() { "127.0.0.1:2181".to_string() } else { hosts.join(",") };
        let use_ssl = cfg.use_ssl.unwrap_or(false);
        let tls = if use_ssl { Some(tls_options(cfg)?) } else { None };
        if !use_ssl && (cfg.cacert.is_some() || cfg.cert.is_some() || cfg.key.is_some()) {
            tracing::warn!("zookeeper.cacert/cert/key are ignored because zookeeper.use_ssl is off");
        }
        let auth = cfg.auth_data.as_ref().map(parse_auth).transpose()?.unwrap_or_default();
        let acls = cfg.set_acls.as_ref().map(parse_acls).transpose()?.unwrap_or_default();
        Ok(Connect { hosts, use_ssl, tls, auth, acls })
    }
}

impl ZooKeeperDcs {
    /// A client for member `params.name` configured by the `zookeeper:` section. Validates the
    /// configuration (TLS files, ACLs, auth data) now; connects on first use.
    pub fn new(params: DcsParams, cfg: &ZooKeeperConfig) -> Result<ZooKeeperDcs, DcsError> {
        let connect = Connect::from_config(cfg)?;
        zk_hosts_check(&connect.hosts)?;
        Ok(ZooKeeperDcs {
            keys: params.keys(),
            name: params.name.clone(),
            timing: Mutex::new(Timing {
                ttl: params.ttl,
                loop_wait: params.loop_wait,
                retry_timeout: params.retry_timeout,
            }),
            connect,
            session: tokio::sync::Mutex::new(None),
            armed: Mutex::new(None),
        })
    }

    /// The id of the current session (the ephemeral owner of keys this client creates), if one is open.
    pub fn session_id(&self) -> Option<i64> {
        let guard = self.session.try_lock().ok()?;
        guard.as_ref().filter(|c| !session_over(c.state())).map(|c| c.session_id().0)
    }

    fn timing(&self) -> Timing {
        *self.timing.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn acls(&self) -> zk::Acls<'_> {
        if self.connect.acls.is_empty() { zk::Acls::anyone_all() } else { zk::Acls::new(&self.connect.acls) }
    }

    fn base_dir(&self) -> String {
        self.keys.prefix().trim_end_matches('/').to_string()
    }

    /// Open a new session.
    async fn open(&self) -> Result<zk::Client, zk::Error> {
        let t = self.timing();
        let mut connector = zk::Client::connector()
            .with_session_timeout(t.ttl)
            .with_connection_timeout(t.connection_timeout());
        for (scheme, cred) in &self.connect.auth {
            connector = connector.with_auth(scheme, cred);
        }
        let client = match &self.connect.tls {
            Some(tls) => {
                ensure_crypto_provider();
                connector.with_tls(tls.clone()).secure_connect(&self.connect.hosts).await?
            }
            None => connector.connect(&self.connect.hosts).await?,
        };
        if client.session_timeout() != t.ttl {
            tracing::warn!(
                requested_ms = t.ttl.as_millis() as u64,
                negotiated_ms = client.session_timeout().as_millis() as u64,
                "ZooKeeper negotiated a different session timeout than ttl (check the server's min/maxSessionTimeout)"
            );
        }
        tracing::info!(session = %client.session_id(), "opened ZooKeeper session");
        Ok(client)
    }

    /// The live session, opening one if there is none or it is over.
    async fn client(&self) -> Result<zk::Client, zk::Error> {
        let mut guard = self.session.lock().await;
        if let Some(c) = guard.as_ref() {
            if !session_over(c.state()) {
                return Ok(c.clone());
            }
            tracing::warn!(session = %c.session_id(), state = %c.state(), "ZooKeeper session is over; opening a new one");
            *guard = None;
        }
        let c = self.open().await?;
        *guard = Some(c.clone());
        Ok(c)
    }

    /// Forget `client`'s session if it is still the current one (it reported itself gone).
    async fn forget(&self, client: &zk::Client) {
        let mut guard = self.session.lock().await;
        if guard.as_ref().is_some_and(|c| c.session_id() == client.session_id()) {
            *guard = None;
        }
    }

    /// Close the current session (its ephemeral znodes vanish) and wait, briefly, for the server to
    /// confirm. The next call opens a new session.
    async fn restart_session(&self, why: &str) {
        self.armed.lock().unwrap_or_else(|p| p.into_inner()).take();
        let old = self.session.lock().await.take();
        let Some(old) = old else { return };
        let id = old.session_id();
        let mut state = old.state_watcher();
        // Dropping the last handle makes the client send CloseSession.
        drop(old);
        let closed = tokio::time::timeout(CLOSE_WAIT, async {
            loop {
                if session_over(state.peek_state()) {
                    return;
                }
                state.changed().await;
            }
        })
        .await;
        match closed {
            Ok(()) => tracing::info!(session = %id, "closed ZooKeeper session ({why})"),
            Err(_) => {
                tracing::warn!(session = %id, "ZooKeeper session close not confirmed within {CLOSE_WAIT:?} ({why})")
            }
        }
    }

    /// Run `f` against the live session until it succeeds, fails for good, or `retry_timeout` passes.
    /// Connection losses are retried on the same session; a lost session is replaced by a new one.
    async fn retry<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, DcsError>
    where
        F: Fn(zk::Client) -> Fut + Send + Sync,
        Fut: Future<Output = Result<T, zk::Error>> + Send,
        T: Send,
    {
        self.retry_within(op, self.timing().retry_timeout, f).await
    }

    async fn retry_within<T, F, Fut>(&self, op: &'static str, budget: Duration, f: F) -> Result<T, DcsError>
    where
        F: Fn(zk::Client) -> Fut + Send + Sync,
        Fut: Future<Output = Result<T, zk::Error>> + Send,
        T: Send,
    {
        let deadline = Instant::now() + budget;
        let mut delay = Duration::from_millis(50);
        let mut last: DcsError =
            DcsError::Unavailable(format!("ZooKeeper did not answer within {budget:?} ({op})"));
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(last);
            }
            let attempt = tokio::time::timeout(remaining, async {
                let client = self.client().await.map_err(|e| (None, e))?;
                f(client.clone()).await.map_err(|e| (Some(client), e))
            })
            .await;
            match attempt {
                Err(_) => {
                    return Err(DcsError::Unavailable(format!(
                        "ZooKeeper did not answer within {budget:?} ({op})"
                    )));
                }
                Ok(Ok(v)) => return Ok(v),
                Ok(Err((client, e))) => match classify(&e) {
                    Failure::Retry => {
                        tracing::debug!("{op}: {e}; retrying");
                        last = DcsError::Unavailable(format!("{op}: {e}"));
                    }
                    Failure::SessionGone => {
                        tracing::warn!("{op}: ZooKeeper session lost ({e}); opening a new session");
                        if let Some(c) = &client {
                            self.forget(c).await;
                        }
                        last = DcsError::SessionExpired;
                    }
                    Failure::Fatal => return Err(DcsError::backend(op, e)),
                },
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(delay.min(remaining)).await;
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }

    /// Create `path` (ephemeral or persistent), creating missing parents like kazoo's `makepath`.
    async fn create(
        &self,
        c: &zk::Client,
        path: &str,
        data: &[u8],
        ephemeral: bool,
    ) -> Result<zk::Stat, zk::Error> {
        let mode = if ephemeral { zk::CreateMode::Ephemeral } else { zk::CreateMode::Persistent };
        let opts = mode.with_acls(self.acls());
        match c.create(path, data, &opts).await {
            Err(zk::Error::NoNode) => {
                let parent = parent_of(path);
                if parent != "/" {
                    c.mkdir(parent, &zk::CreateMode::Persistent.with_acls(self.acls())).await?;
                }
                c.create(path, data, &opts).await.map(|(s, _)| s)
            }
            r => r.map(|(s, _)| s),
        }
    }

    /// Patroni's `_set_or_create`: `set` with `version or -1`; if the znode is missing, create it when
    /// no version was given. `Ok(None)`: version mismatch (or missing with a version).
    async fn set_or_create(
        &self,
        op: &'static str,
        key: &str,
        value: &str,
        version: Option<Version>,
    ) -> Result<Option<Version>, DcsError> {
        let Ok(expected) = expected_version(version) else {
            return Ok(None);
        };
        let path = self.keys.path(key);
        self.retry(op, |c| {
            let path = path.clone();
            async move {
                match c.set_data(&path, value.as_bytes(), expected).await {
                    Ok(stat) => Ok(Some(to_version(&stat))),
                    Err(zk::Error::BadVersion) => Ok(None),
                    Err(zk::Error::NoNode) if version.is_none() => {
                        match self.create(&c, &path, value.as_bytes(), false).await {
                            Ok(stat) => Ok(Some(to_version(&stat))),
                            // Created by someone else meanwhile: an unconditional write still wins.
                            Err(zk::Error::NodeExists) => {
                                c.set_data(&path, value.as_bytes(), None).await.map(|s| Some(to_version(&s)))
                            }
                            Err(e) => Err(e),
                        }
                    }
                    Err(zk::Error::NoNode) => Ok(None),
                    Err(e) => Err(e),
                }
            }
        })
        .await
    }

    /// Arm `exists` watches on `leader` and `config`; resolves to them with the leader's version. The
    /// requests are sent when this is called (not when the future is first polled), so requests made
    /// after it are answered after it.
    fn arm<'a>(&self, c: &'a zk::Client) -> impl Future<Output = Result<Armed, zk::Error>> + Send + 'a {
        let state = c.state_watcher();
        let leader = c.check_and_watch_stat(&self.keys.path("leader"));
        let config = c.check_and_watch_stat(&self.keys.path("config"));
        async move {
            let (leader_stat, leader) = leader.await?;
            let (_, config) = config.await?;
            Ok(Armed { leader, config, state, leader_version: leader_stat.as_ref().map(to_version) })
        }
    }

    /// Delete `path` and everything below it. Missing nodes are fine.
    async fn delete_tree(c: &zk::Client, path: &str) -> Result<(), zk::Error> {
        // Depth-first, iteratively: collect the tree, delete deepest first.
        let mut order = vec![path.to_string()];
        let mut i = 0;
        while i < order.len() {
            match c.list_children(&order[i]).await {
                Ok(children) => {
                    let base = order[i].clone();
                    order.extend(children.into_iter().map(|ch| format!("{base}/{ch}")));
                }
                Err(zk::Error::NoNode) => {}
                Err(e) => return Err(e),
            }
            i += 1;
        }
        for p in order.iter().rev() {
            match c.delete(p, None).await {
                Ok(()) | Err(zk::Error::NoNode) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// zookeeper-client builds its TLS configuration with rustls' process-wide default crypto provider,
/// which rustls cannot pick by itself when several providers are compiled in (this binary has both
/// `ring` and `aws-lc-rs`): install `ring` unless something already installed one.
fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Err only means another thread installed one first, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

fn zk_hosts_check(hosts: &str) -> Result<(), DcsError> {
    for h in hosts.split(',') {
        let h = h.trim();
        let h = h.strip_prefix("tcp://").or_else(|| h.strip_prefix("tcp+tls://")).unwrap_or(h);
        let hostport = h.split('/').next().unwrap_or("");
        if hostport.is_empty() {
            return Err(DcsError::Config(format!("zookeeper.hosts: empty host in {hosts:?}")));
        }
        if let Some((_, port)) = hostport.rsplit_once(':')
            && !hostport.ends_with(']')
            && port.parse::<u16>().ok().is_none_or(|p| p == 0)
        {
            return Err(DcsError::Config(format!("zookeeper.hosts: invalid port in {hostport:?}")));
        }
    }
    Ok(())
}

#[async_trait]
impl Dcs for ZooKeeperDcs {
    fn backend(&self) -> String {
        "zookeeper".into()
    }

    async fn load_cluster(&self) -> Result<Cluster, DcsError> {
        let base = self.base_dir();
        let members_dir = self.keys.path("members");
        let (entries, armed) = self
            .retry("read the cluster", |c| {
                let base = base.clone();
                let members_dir = members_dir.clone();
                async move {
                    match c.sync(&base).await {
                        Ok(()) | Err(zk::Error::NoNode) => {}
                        Err(e) => return Err(e),
                    }
                    // Requests are sent in call order and answered in order (FIFO per session): the
                    // watches first, so a change after them (even if our reads miss it) fires them.
                    let armed = self.arm(&c);
                    let paths: Vec<String> = FIXED_KEYS.iter().map(|k| self.keys.path(k)).collect();
                    let fixed = join_all(paths.iter().map(|p| c.get_data(p)));
                    let children = c.list_children(&members_dir);
                    let (armed, fixed, children) = futures::join!(armed, fixed, children);
                    let armed = armed?;
                    let mut entries = Vec::new();
                    for (key, r) in FIXED_KEYS.iter().zip(fixed) {
                        match r {
                            Ok((data, stat)) => entries.push(RawEntry {
                                key: (*key).to_string(),
                                value: text(&data),
                                version: to_version(&stat),
                                owner: owner_of(&stat),
                            }),
                            Err(zk::Error::NoNode) => {}
                            Err(e) => return Err(e),
                        }
                    }
                    let names = match children {
                        Ok(n) => n,
                        Err(zk::Error::NoNode) => Vec::new(),
                        Err(e) => return Err(e),
                    };
                    let member_paths: Vec<String> =
                        names.iter().map(|n| format!("{members_dir}/{n}")).collect();
                    let members = join_all(member_paths.iter().map(|p| c.get_data(p))).await;
                    for (name, r) in names.iter().zip(members) {
                        match r {
                            Ok((data, stat)) => entries.push(RawEntry {
                                key: format!("members/{name}"),
                                value: text(&data),
                                version: to_version(&stat),
                                owner: owner_of(&stat),
                            }),
                            // Gone since the listing (its session ended): not a member any more.
                            Err(zk::Error::NoNode) => {}
                            Err(e) => return Err(e),
                        }
                    }
                    Ok((entries, armed))
                }
            })
            .await?;
        *self.armed.lock().unwrap_or_else(|p| p.into_inner()) = Some(armed);
        let (cluster, warnings) = Cluster::from_entries(entries);
        for w in warnings {
            tracing::warn!(key = %w.key, "ignoring malformed DCS value: {}", w.problem);
        }
        Ok(cluster)
    }

    async fn attempt_to_acquire_leader(&self) -> Result<bool, DcsError> {
        let path = self.keys.path("leader");
        let acquired = self
            .retry("create the leader key", |c| {
                let path = path.clone();
                async move {
                    match self.create(&c, &path, self.name.as_bytes(), true).await {
                        Ok(_) => Ok(true),
                        Err(zk::Error::NodeExists) => {
                            // Ours if a retried create already went through before the connection dropped.
                            match c.get_data(&path).await {
                                Ok((data, stat)) => {
                                    Ok(stat.ephemeral_owner == c.session_id().0 && text(&data) == self.name)
                                }
                                Err(zk::Error::NoNode) => Ok(false),
                                Err(e) => Err(e),
                            }
                        }
                        Err(e) => Err(e),
                    }
                }
            })
            .await?;
        if !acquired {
            tracing::info!("could not take the leader lock: it is held");
        }
        Ok(acquired)
    }

    async fn update_leader(&self, _leader: Option<&Leader>) -> Result<bool, DcsError> {
        // The znode itself is the truth, not the caller's (possibly stale) read of it.
        let path = self.keys.path("leader");
        self.retry("update the leader key", |c| {
            let path = path.clone();
            async move {
                let (data, stat) = match c.get_data(&path).await {
                    Ok(v) => v,
                    Err(zk::Error::NoNode) => return Ok(false),
                    Err(e) => return Err(e),
                };
                if text(&data) != self.name {
                    return Ok(false);
                }
                if stat.ephemeral_owner == c.session_id().0 {
                    // Our session keeps it alive: nothing to write (`ZooKeeper._update_leader`).
                    return Ok(true);
                }
                tracing::warn!("re-creating the leader znode: it is owned by another session");
                match c.delete(&path, Some(stat.version)).await {
                    Ok(()) | Err(zk::Error::NoNode) => {}
                    Err(zk::Error::BadVersion) => return Ok(false),
                    Err(e) => return Err(e),
                }
                match self.create(&c, &path, self.name.as_bytes(), true).await {
                    Ok(_) => Ok(true),
                    Err(zk::Error::NodeExists) => Ok(false),
                    Err(e) => Err(e),
                }
            }
        })
        .await
    }

    async fn take_leader(&self) -> Result<bool, DcsError> {
        let path = self.keys.path("leader");
        self.retry("take the leader key", |c| {
            let path = path.clone();
            async move {
                loop {
                    match self.create(&c, &path, self.name.as_bytes(), true).await {
                        Ok(_) => return Ok(true),
                        Err(zk::Error::NodeExists) => {}
                        Err(e) => return Err(e),
                    }
                    match c.get_data(&path).await {
                        Ok((data, stat))
                            if stat.ephemeral_owner == c.session_id().0 && text(&data) == self.name =>
                        {
                            return Ok(true);
                        }
                        Ok((_, stat)) => match c.delete(&path, Some(stat.version)).await {
                            Ok(()) | Err(zk::Error::NoNode) | Err(zk::Error::BadVersion) => {}
                            Err(e) => return Err(e),
                        },
                        Err(zk::Error::NoNode) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        })
        .await
    }

    async fn delete_leader(&self, _leader: Option<&Leader>) -> Result<bool, DcsError> {
        let path = self.keys.path("leader");
        // 0: not mine; 1: mine, owned by this session; 2: mine, owned by an older session (deleted).
        let verdict = self
            .retry("release the leader key", |c| {
                let path = path.clone();
                async move {
                    let (data, stat) = match c.get_data(&path).await {
                        Ok(v) => v,
                        Err(zk::Error::NoNode) => return Ok(0),
                        Err(e) => return Err(e),
                    };
                    if text(&data) != self.name {
                        return Ok(0);
                    }
                    if stat.ephemeral_owner == c.session_id().0 {
                        return Ok(1);
                    }
                    match c.delete(&path, Some(stat.version)).await {
                        Ok(()) => Ok(2),
                        Err(zk::Error::NoNode) | Err(zk::Error::BadVersion) => Ok(0),
                        Err(e) => Err(e),
                    }
                }
            })
            .await?;
        if verdict == 1 {
            // Patroni 4.1.5 `ZooKeeper._delete_leader`: `self._client.restart()`.
            self.restart_session("released the leader lock").await;
        }
        Ok(verdict != 0)
    }

    async fn touch_member(&self, data: &str) -> Result<bool, DcsError> {
        let path = self.keys.member(&self.name);
        self.retry("publish the member key", |c| {
            let path = path.clone();
            async move {
                let me = c.session_id().0;
                loop {
                    match c.get_data(&path).await {
                        Err(zk::Error::NoNode) => match self.create(&c, &path, data.as_bytes(), true).await {
                            Ok(_) => return Ok(true),
                            Err(zk::Error::NodeExists) => continue,
                            Err(e) => return Err(e),
                        },
                        Ok((current, stat)) if stat.ephemeral_owner == me => {
                            if current == data.as_bytes() {
                                return Ok(true);
                            }
                            match c.set_data(&path, data.as_bytes(), Some(stat.version)).await {
                                Ok(_) => return Ok(true),
                                Err(zk::Error::BadVersion) | Err(zk::Error::NoNode) => continue,
                                Err(e) => return Err(e),
                            }
                        }
                        Ok((_, stat)) => {
                            // Owned by another (older) session: take it over (`ZooKeeper.touch_member`).
                            tracing::warn!("re-creating the member znode: it is owned by another session");
                            match c.delete(&path, Some(stat.version)).await {
                                Ok(()) | Err(zk::Error::NoNode) | Err(zk::Error::BadVersion) => continue,
                                Err(e) => return Err(e),
                            }
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        })
        .await
    }

    async fn set_config_value(&self, value: &str, version: Option<Version>) -> Result<bool, DcsError> {
        Ok(self.set_or_create("write the config key", "config", value, version).await?.is_some())
    }

    async fn set_failover_value(&self, value: &str, version: Option<Version>) -> Result<bool, DcsError> {
        Ok(self.set_or_create("write the failover key", "failover", value, version).await?.is_some())
    }

    async fn set_history_value(&self, value: &str) -> Result<bool, DcsError> {
        Ok(self.set_or_create("write the history key", "history", value, None).await?.is_some())
    }

    async fn set_sync_state_value(
        &self,
        value: &str,
        version: Option<Version>,
    ) -> Result<Option<Version>, DcsError> {
        self.set_or_create("write the sync key", "sync", value, version).await
    }

    async fn delete_sync_state(&self, version: Option<Version>) -> Result<bool, DcsError> {
        // Patroni on ZooKeeper "deletes" sync by writing `{}` (`ZooKeeper.delete_sync_state`).
        Ok(self.set_sync_state_value("{}", version).await?.is_some())
    }

    async fn write_status(&self, value: &str) -> Result<bool, DcsError> {
        Ok(self.set_or_create("write the status key", "status", value, None).await?.is_some())
    }

    async fn write_failsafe(&self, value: &str) -> Result<bool, DcsError> {
        Ok(self.set_or_create("write the failsafe key", "failsafe", value, None).await?.is_some())
    }

    async fn initialize(&self, create_new: bool, sysid: &str) -> Result<bool, DcsError> {
        let path = self.keys.path("initialize");
        if create_new {
            return self
                .retry("create the initialize key", |c| {
                    let path = path.clone();
                    async move {
                        match self.create(&c, &path, sysid.as_bytes(), false).await {
                            Ok(_) => Ok(true),
                            Err(zk::Error::NodeExists) => Ok(false),
                            Err(e) => Err(e),
                        }
                    }
                })
                .await;
        }
        Ok(self.set_or_create("write the initialize key", "initialize", sysid, None).await?.is_some())
    }

    async fn cancel_initialization(&self) -> Result<bool, DcsError> {
        // Patroni `_cancel_initialization`: delete with the version just read.
        let path = self.keys.path("initialize");
        self.retry("delete the initialize key", |c| {
            let path = path.clone();
            async move {
                loop {
                    let stat = match c.check_stat(&path).await? {
                        Some(s) => s,
                        None => return Ok(true),
                    };
                    match c.delete(&path, Some(stat.version)).await {
                        Ok(()) | Err(zk::Error::NoNode) => return Ok(true),
                        Err(zk::Error::BadVersion) => continue,
                        Err(e) => return Err(e),
                    }
                }
            }
        })
        .await
    }

    async fn delete_cluster(&self) -> Result<bool, DcsError> {
        let base = self.base_dir();
        self.retry("delete the cluster", |c| {
            let base = base.clone();
            async move {
                // Deletions race with members re-creating their keys: repeat until the tree is gone.
                for _ in 0..5 {
                    match Self::delete_tree(&c, &base).await {
                        Ok(()) => return Ok(true),
                        Err(zk::Error::NotEmpty) => continue,
                        Err(e) => return Err(e),
                    }
                }
                Err(zk::Error::NotEmpty)
            }
        })
        .await
    }

    async fn watch(&self, leader_version: Option<Version>, timeout: Duration) -> Result<bool, DcsError> {
        let deadline = Instant::now() + timeout;
        let stored = self.armed.lock().unwrap_or_else(|p| p.into_inner()).take();
        let armed = match stored {
            Some(a) => a,
            None => {
                let budget = timeout.min(self.timing().retry_timeout);
                match self
                    .retry_within("watch the leader and config keys", budget, |c| async move {
                        self.arm(&c).await
                    })
                    .await
                {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::debug!("cannot watch ZooKeeper ({e}); waiting out the timeout");
                        tokio::time::sleep_until(deadline).await;
                        return Ok(false);
                    }
                }
            }
        };
        if armed.leader_version != leader_version {
            return Ok(true);
        }
        let Armed { leader, config, mut state, .. } = armed;
        if session_over(state.peek_state()) {
            return Ok(true);
        }
        tokio::select! {
            _ = leader.changed() => Ok(true),
            _ = config.changed() => Ok(true),
            _ = state.changed() => Ok(true),
            _ = tokio::time::sleep_until(deadline) => Ok(false),
        }
    }

    async fn set_timing(
        &self,
        ttl: Duration,
        loop_wait: Duration,
        retry_timeout: Duration,
    ) -> Result<(), DcsError> {
        let old = {
            let mut t = self.timing.lock().unwrap_or_else(|p| p.into_inner());
            let old = *t;
            *t = Timing { ttl, loop_wait, retry_timeout };
            old
        };
        if old.ttl != ttl {
            // ZooKeeper cannot change a live session's timeout (`ZooKeeper.set_ttl` restarts too).
            self.restart_session("ttl changed").await;
        }
        Ok(())
    }

    async fn close(&self) -> Result<(), DcsError> {
        self.restart_session("closing").await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> serde_yaml_ng::Value {
        serde_yaml_ng::from_str(s).expect("test yaml")
    }

    #[test]
    fn only_a_missing_version_is_unconditional() {
        assert_eq!(expected_version(None), Ok(None));
        assert_eq!(expected_version(Some(Version(0))), Ok(Some(0)));
        assert_eq!(expected_version(Some(Version(3))), Ok(Some(3)));
        assert!(expected_version(Some(Version(i64::MAX))).is_err());
    }

    #[test]
    fn set_acls_become_x509_acls() {
        let acls = parse_acls(&yaml("CN=principal1: [READ, write]\nCN=principal2: [ALL]\n")).unwrap();
        assert_eq!(acls.len(), 2);
        assert_eq!(acls[0].scheme(), "x509");
        assert_eq!(acls[0].id(), "CN=principal1");
        assert_eq!(acls[0].permission(), zk::Permission::READ | zk::Permission::WRITE);
        assert_eq!(acls[1].permission(), zk::Permission::ALL);
        let err = parse_acls(&yaml("[a, b]")).unwrap_err().to_string();
        assert!(err.contains("zookeeper.set_acls"), "{err}");
    }

    #[test]
    fn auth_data_is_scheme_to_credential() {
        let auth = parse_auth(&yaml("digest: 'user:pass'")).unwrap();
        assert_eq!(auth, vec![("digest".to_string(), b"user:pass".to_vec())]);
        assert!(parse_auth(&yaml("[x]")).unwrap_err().to_string().contains("zookeeper.auth_data"));
    }

    #[test]
    fn config_errors_name_the_key() {
        let cfg = ZooKeeperConfig { use_ssl: Some(true), ..Default::default() };
        let err = Connect::from_config(&cfg).err().unwrap().to_string();
        assert!(err.contains("zookeeper.cacert"), "{err}");
        let cfg = ZooKeeperConfig {
            use_ssl: Some(true),
            cacert: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        let err = Connect::from_config(&cfg).err().unwrap().to_string();
        assert!(err.contains("zookeeper.cacert") && err.contains("/nonexistent/ca.pem"), "{err}");
        let cfg = ZooKeeperConfig {
            use_ssl: Some(true),
            key_password: Some(crate::types::Secret("x".into())),
            ..Default::default()
        };
        assert!(Connect::from_config(&cfg).err().unwrap().to_string().contains("zookeeper.key_password"));
        assert!(zk_hosts_check("a:1,b:x").unwrap_err().to_string().contains("zookeeper.hosts"));
        assert!(zk_hosts_check("a:2181,b,tcp+tls://c:2281/chroot").is_ok());
    }

    #[test]
    fn hosts_default_and_join() {
        let c = Connect::from_config(&ZooKeeperConfig::default()).unwrap();
        assert_eq!(c.hosts, "127.0.0.1:2181");
        assert!(!c.use_ssl);
        let cfg = ZooKeeperConfig { hosts: vec!["h1:2181".into(), " h2:2182 ".into()], ..Default::default() };
        assert_eq!(Connect::from_config(&cfg).unwrap().hosts, "h1:2181,h2:2182");
    }

    #[test]
    fn connection_timeout_follows_patroni_and_stays_under_the_session() {
        let t = Timing {
            ttl: Duration::from_secs(30),
            loop_wait: Duration::from_secs(10),
            retry_timeout: Duration::from_secs(10),
        };
        assert_eq!(t.connection_timeout(), Duration::from_secs(8));
        let t = Timing {
            ttl: Duration::from_secs(2),
            loop_wait: Duration::from_secs(1),
            retry_timeout: Duration::from_secs(1),
        };
        assert_eq!(t.connection_timeout(), Duration::from_millis(800));
    }

    #[test]
    fn parent_paths() {
        assert_eq!(parent_of("/service/pg/leader"), "/service/pg");
        assert_eq!(parent_of("/leader"), "/");
    }
}
