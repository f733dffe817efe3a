//! The in-memory state of the model Consul: one KV table, sessions, lock-delays, agent services,
//! and a single Raft-like index that every write advances.
//!
//! Every rule cites the HashiCorp documentation page it comes from. Where the documentation is
//! silent the behaviour of Consul's own server is copied and marked "(Consul server behaviour)".

use crate::duration;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;
use tokio::time::Instant;

/// An error answered to the client: HTTP status and the plain-text body Consul sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Plain-text body.
    pub body: String,
}

impl ApiError {
    pub(crate) fn new(status: u16, body: impl Into<String>) -> ApiError {
        ApiError { status, body: body.into() }
    }

    /// RPC errors surface as `500` with the error text as the body (Consul server behaviour;
    /// Patroni's `HTTPClient.response` relies on it for "Invalid Session TTL" and "invalid session").
    pub(crate) fn internal(body: impl Into<String>) -> ApiError {
        ApiError::new(500, body)
    }

    pub(crate) fn no_leader() -> ApiError {
        // developer.hashicorp.com/consul/api-docs/features/consistency: reads other than `stale`
        // and all writes go through the leader; without one Consul answers "No cluster leader".
        ApiError::internal("No cluster leader")
    }
}

/// One KV entry (developer.hashicorp.com/consul/api-docs/kv#read-key: CreateIndex, ModifyIndex,
/// LockIndex, Key, Flags, Value, Session).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvEntry {
    /// Full key.
    pub key: String,
    /// Raw value.
    pub value: Vec<u8>,
    /// Opaque client flags.
    pub flags: u64,
    /// Index that created the entry.
    pub create_index: u64,
    /// Index of the last modification.
    pub modify_index: u64,
    /// Number of successful acquisitions.
    pub lock_index: u64,
    /// Session holding the lock.
    pub session: Option<String>,
}

impl KvEntry {
    /// The JSON object Consul returns, with the value base64-encoded (`null` when empty).
    pub fn to_json(&self) -> Value {
        use base64::Engine as _;
        let value = if self.value.is_empty() {
            Value::Null
        } else {
            Value::String(base64::engine::general_purpose::STANDARD.encode(&self.value))
        };
        let mut m = Map::new();
        m.insert("LockIndex".into(), json!(self.lock_index));
        m.insert("Key".into(), json!(self.key));
        m.insert("Flags".into(), json!(self.flags));
        m.insert("Value".into(), value);
        if let Some(s) = &self.session {
            m.insert("Session".into(), json!(s));
        }
        m.insert("CreateIndex".into(), json!(self.create_index));
        m.insert("ModifyIndex".into(), json!(self.modify_index));
        Value::Object(m)
    }
}

/// What happens to a session's locks when it is invalidated
/// (developer.hashicorp.com/consul/api-docs/session#behavior).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behavior {
    /// Locks are released (the keys stay).
    Release,
    /// The locked keys are deleted.
    Delete,
}

/// A session (developer.hashicorp.com/consul/api-docs/session#create-session).
#[derive(Clone, Debug)]
pub struct Session {
    /// UUID.
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// Node the session belongs to.
    pub node: String,
    /// Lock-delay applied to the keys it held when invalidated.
    pub lock_delay: Duration,
    /// Release or delete.
    pub behavior: Behavior,
    /// The TTL string as the client sent it (`""` for none).
    pub ttl: String,
    /// Parsed TTL.
    pub ttl_dur: Option<Duration>,
    /// Node health checks the session is bound to.
    pub node_checks: Vec<String>,
    /// Service health checks the session is bound to.
    pub service_checks: Vec<String>,
    /// Creation index.
    pub create_index: u64,
    /// Modification index.
    pub modify_index: u64,
    /// When it is invalidated unless renewed.
    pub deadline: Option<Instant>,
}

impl Session {
    /// The JSON object Consul returns from `session/info`, `list`, `renew`.
    pub fn to_json(&self) -> Value {
        json!({
            "ID": self.id,
            "Name": self.name,
            "Node": self.node,
            "LockDelay": self.lock_delay.as_nanos() as u64,
            "Behavior": match self.behavior { Behavior::Release => "release", Behavior::Delete => "delete" },
            "TTL": self.ttl,
            "NodeChecks": self.node_checks,
            "ServiceChecks": if self.service_checks.is_empty() { Value::Null } else { json!(self.service_checks) },
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        })
    }
}

/// A fault injected through the control API.
#[derive(Clone, Debug, Default)]
pub struct Fault {
    /// Only requests whose path starts with this (default: every `/v1/` request).
    pub path_prefix: String,
    /// Answer with this status instead of handling the request.
    pub status: Option<u16>,
    /// Delay the request by this much (then handle it or fail it).
    pub delay: Option<Duration>,
    /// How many requests it applies to (`None`: until cleared).
    pub remaining: Option<u32>,
}

/// Tunables of the model (all documented defaults).
#[derive(Clone, Debug)]
pub struct Options {
    /// `session_ttl_min` of the agent (developer.hashicorp.com/consul/docs/agent/config/config-files
    /// `session_ttl_min`: default 10s).
    pub session_ttl_min: Duration,
    /// Invalidate a session this many TTLs after its last renewal. The session API documents that
    /// "Consul may take up to double this TTL" (developer.hashicorp.com/consul/api-docs/session),
    /// and Consul's server arms its timer at exactly 2×TTL, which is why Patroni sends ttl/2.
    /// Default 2.0; any value in 1.0..=2.0 is within the documented contract.
    pub ttl_multiplier: f64,
    /// Datacenter name (`dc1`).
    pub datacenter: String,
    /// Node name of the agent.
    pub node_name: String,
    /// When set, ACLs are enforced with this single token (developer.hashicorp.com/consul/api-docs/api-structure
    /// #authentication: `X-Consul-Token` header, `Authorization: Bearer`, or `?token=`).
    pub acl_token: Option<String>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            session_ttl_min: Duration::from_secs(10),
            ttl_multiplier: 2.0,
            datacenter: "dc1".into(),
            node_name: "consul-api-server".into(),
            acl_token: None,
        }
    }
}

/// Maximum session TTL: 86400s (developer.hashicorp.com/consul/api-docs/session: "TTL … must be
/// between 10s and 86400s currently").
pub const SESSION_TTL_MAX: Duration = Duration::from_secs(86400);

/// The state behind the HTTP API.
#[derive(Debug)]
pub struct State {
    /// Global index; every write advances it.
    pub index: u64,
    /// Index of the last KV-table change (writes, deletes, tombstones).
    pub kv_index: u64,
    /// The KV table.
    pub kv: BTreeMap<String, KvEntry>,
    /// Deleted keys and the index that deleted them (Consul keeps tombstones so that blocking
    /// queries see deletes; developer.hashicorp.com/consul/api-docs/features/blocking).
    pub tombstones: BTreeMap<String, u64>,
    /// Live sessions.
    pub sessions: BTreeMap<String, Session>,
    /// Key → until when acquisitions are refused.
    pub lock_delays: HashMap<String, Instant>,
    /// Registered services by ID (the JSON Consul returns from `agent/services`).
    pub services: BTreeMap<String, Value>,
    /// Whether the cluster has a leader.
    pub leader: bool,
    /// Injected faults.
    pub faults: Vec<Fault>,
    /// Options.
    pub opts: Options,
}

impl State {
    /// An empty store.
    pub fn new(opts: Options) -> State {
        State {
            index: 1,
            kv_index: 0,
            kv: BTreeMap::new(),
            tombstones: BTreeMap::new(),
            sessions: BTreeMap::new(),
            lock_delays: HashMap::new(),
            services: BTreeMap::new(),
            leader: true,
            faults: Vec::new(),
            opts,
        }
    }

    fn bump(&mut self) -> u64 {
        self.index += 1;
        self.index
    }

    fn require_leader(&self) -> Result<(), ApiError> {
        if self.leader { Ok(()) } else { Err(ApiError::no_leader()) }
    }

    // ---------------------------------------------------------------- KV reads

    /// `GET /v1/kv/<key>`: the entry and the index for `X-Consul-Index`.
    ///
    /// developer.hashicorp.com/consul/api-docs/kv#read-key: "ModifyIndex … corresponds to the
    /// X-Consul-Index header value". For a missing key Consul answers 404 with the KV table's index,
    /// never 0, so a blocking query on it does not spin (Consul server behaviour: `KVS.Get`).
    pub fn kv_get(&self, key: &str) -> (u64, Option<KvEntry>) {
        match self.kv.get(key) {
            Some(e) => (e.modify_index, Some(e.clone())),
            None => (self.kv_index.max(1), None),
        }
    }

    /// `GET /v1/kv/<prefix>?recurse`: entries under the prefix, sorted by key.
    ///
    /// developer.hashicorp.com/consul/api-docs/kv#read-key: with `recurse` "the returned
    /// X-Consul-Index corresponds to the latest ModifyIndex within the prefix, and a blocking query
    /// using that ?index will wait until any key within that prefix is updated" (deletes included,
    /// through tombstones).
    pub fn kv_list(&self, prefix: &str) -> (u64, Vec<KvEntry>) {
        let entries: Vec<KvEntry> = self
            .kv
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, e)| e.clone())
            .collect();
        let mut idx = entries.iter().map(|e| e.modify_index).max().unwrap_or(0);
        for (k, i) in self.tombstones.range(prefix.to_string()..) {
            if !k.starts_with(prefix) {
                break;
            }
            idx = idx.max(*i);
        }
        if idx == 0 {
            idx = self.kv_index.max(1);
        }
        (idx, entries)
    }

    /// `GET /v1/kv/<prefix>?keys[&separator=]` (developer.hashicorp.com/consul/api-docs/kv#keys:
    /// "Specifies to return only keys (no values or metadata)"; `separator` "list only up to a given
    /// separator").
    pub fn kv_keys(&self, prefix: &str, separator: Option<&str>) -> (u64, Vec<String>) {
        let (idx, entries) = self.kv_list(prefix);
        let mut out = BTreeSet::new();
        for e in entries {
            let rest = &e.key[prefix.len()..];
            match separator.filter(|s| !s.is_empty()).and_then(|s| rest.find(s).map(|p| p + s.len())) {
                Some(end) => out.insert(format!("{prefix}{}", &rest[..end])),
                None => out.insert(e.key.clone()),
            };
        }
        (idx, out.into_iter().collect())
    }

    // ---------------------------------------------------------------- KV writes

    /// `PUT /v1/kv/<key>` with at most one of `cas`, `acquire`, `release` (when several are given
    /// the last of cas < acquire < release wins, as Consul's HTTP handler does).
    pub fn kv_put(
        &mut self,
        key: &str,
        value: Vec<u8>,
        flags: Option<u64>,
        op: PutOp,
        now: Instant,
    ) -> Result<bool, ApiError> {
        self.require_leader()?;
        let existing = self.kv.get(key).cloned();
        match &op {
            PutOp::Set => {}
            // developer.hashicorp.com/consul/api-docs/kv#create-update-key, `cas`: "If the index is 0,
            // Consul will only put the key if it does not already exist. If the index is non-zero, the
            // key is only set if the index matches the ModifyIndex of that key."
            PutOp::Cas(0) => {
                if existing.is_some() {
                    return Ok(false);
                }
            }
            PutOp::Cas(i) => {
                if existing.as_ref().map(|e| e.modify_index) != Some(*i) {
                    return Ok(false);
                }
            }
            // `acquire`: "If the lock is not held and the session is valid, this increments the
            // LockIndex and sets the Session value of the key in addition to updating the key
            // contents. A key does not need to exist to be acquired. If the lock is already held by
            // the given session, then the LockIndex is not incremented but the key contents are
            // updated."
            PutOp::Acquire(sid) => {
                // developer.hashicorp.com/consul/docs/dynamic-app-config/sessions: after an
                // invalidation "Consul prevents any of the previously held locks from being
                // re-acquired for the lock-delay interval".
                if self.lock_delays.get(key).is_some_and(|until| *until > now) {
                    return Ok(false);
                }
                if !self.sessions.contains_key(sid) {
                    // Consul server behaviour (state store `kvsLockTxn`): an RPC error, i.e. 500.
                    return Err(ApiError::internal(format!("invalid session {sid:?}")));
                }
                if existing.as_ref().is_some_and(|e| e.session.as_deref().is_some_and(|s| s != sid)) {
                    return Ok(false);
                }
            }
            // `release`: "This will leave the LockIndex unmodified but will clear the associated
            // Session of the key. The key must be held by this session to be unlocked."
            PutOp::Release(sid) => match &existing {
                Some(e) if e.session.as_deref() == Some(sid.as_str()) => {}
                _ => return Ok(false),
            },
        }
        let idx = self.bump();
        let mut entry = KvEntry {
            key: key.to_string(),
            value,
            flags: flags.unwrap_or(0),
            create_index: existing.as_ref().map_or(idx, |e| e.create_index),
            modify_index: idx,
            lock_index: existing.as_ref().map_or(0, |e| e.lock_index),
            // A plain write keeps the lock: "an update that does not include the acquire parameter
            // will proceed normally even if another session has locked the key".
            session: existing.as_ref().and_then(|e| e.session.clone()),
        };
        match op {
            PutOp::Acquire(sid) => {
                if entry.session.as_deref() != Some(sid.as_str()) {
                    entry.lock_index += 1;
                }
                entry.session = Some(sid);
            }
            PutOp::Release(_) => entry.session = None,
            PutOp::Set | PutOp::Cas(_) => {}
        }
        self.tombstones.remove(key);
        self.kv.insert(key.to_string(), entry);
        self.kv_index = idx;
        Ok(true)
    }

    /// `DELETE /v1/kv/<key>[?recurse][&cas=]`.
    pub fn kv_delete(&mut self, key: &str, recurse: bool, cas: Option<u64>) -> Result<bool, ApiError> {
        self.require_leader()?;
        if let Some(cas) = cas {
            // developer.hashicorp.com/consul/api-docs/kv#delete-key, `cas`: "Unlike PUT, the index must
            // be greater than 0 for Consul to take any action: a 0 index will not delete the key. If
            // the index is non-zero, the key is only deleted if the index matches the ModifyIndex of
            // that key." A key that is already gone counts as deleted (Consul server behaviour:
            // `kvsDeleteCASTxn` returns `entry == nil`).
            match self.kv.get(key) {
                None => return Ok(true),
                Some(e) if e.modify_index != cas => return Ok(false),
                Some(_) => {}
            }
            let idx = self.bump();
            self.remove_key(key, idx);
            return Ok(true);
        }
        let idx = self.bump();
        if recurse {
            // `recurse`: "Specifies to delete all keys which have the specified prefix."
            let keys: Vec<String> = self
                .kv
                .range(key.to_string()..)
                .take_while(|(k, _)| k.starts_with(key))
                .map(|(k, _)| k.clone())
                .collect();
            for k in keys {
                self.remove_key(&k, idx);
            }
        } else {
            self.remove_key(key, idx);
        }
        Ok(true)
    }

    fn remove_key(&mut self, key: &str, idx: u64) {
        if self.kv.remove(key).is_some() {
            self.tombstones.insert(key.to_string(), idx);
            self.kv_index = idx;
        }
    }

    // ---------------------------------------------------------------- sessions

    /// `PUT /v1/session/create` with the decoded JSON body (field names are matched
    /// case-insensitively, as Consul's JSON decoding does; Patroni sends them lower-case).
    pub fn session_create(&mut self, body: &Map<String, Value>, now: Instant) -> Result<String, ApiError> {
        self.require_leader()?;
        let get = |name: &str| body.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v);
        let bad = |m: String| ApiError::new(400, format!("Request decode failed: {m}"));
        let string = |name: &str| -> Result<String, ApiError> {
            match get(name) {
                None | Some(Value::Null) => Ok(String::new()),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(v) => Err(bad(format!("{name}: expected a string, got {v}"))),
            }
        };
        let list = |name: &str| -> Result<Option<Vec<String>>, ApiError> {
            match get(name) {
                None => Ok(None),
                Some(Value::Null) => Ok(Some(Vec::new())),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|v| {
                        v.as_str().map(String::from).ok_or_else(|| bad(format!("{name}: expected strings")))
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(Some),
                Some(v) => Err(bad(format!("{name}: expected a list, got {v}"))),
            }
        };
        // developer.hashicorp.com/consul/api-docs/session#lockdelay: "LockDelay (string: "15s") …
        // specified as a duration string with a time suffix". A bare number is read as seconds when
        // below 1000 and as nanoseconds otherwise (Consul HTTP behaviour: `FixupLockDelay`).
        let lock_delay = match get("LockDelay") {
            None | Some(Value::Null) => Duration::from_secs(15),
            Some(Value::String(s)) => duration::parse(s).map_err(bad)?,
            Some(Value::Number(n)) => {
                let f = n.as_f64().unwrap_or(0.0).max(0.0);
                if f < 1000.0 { Duration::from_secs_f64(f) } else { Duration::from_nanos(f as u64) }
            }
            Some(v) => return Err(bad(format!("LockDelay: unexpected {v}"))),
        };
        // developer.hashicorp.com/consul/api-docs/session#behavior: "release" (default) or "delete".
        let behavior = match string("Behavior")?.as_str() {
            "" | "release" => Behavior::Release,
            "delete" => Behavior::Delete,
            other => return Err(ApiError::internal(format!("Invalid Behavior setting '{other}'"))),
        };
        // developer.hashicorp.com/consul/api-docs/session#ttl: "If provided, the session is
        // invalidated if it is not renewed before the TTL expires. The lowest practical TTL should be
        // used to keep the number of managed sessions low. … Valid time units include "s", "m" and
        // "h"". The range is `session_ttl_min`..86400s; out of range Consul's server answers
        // "Invalid Session TTL '<ns>', must be between [<min>=<max>]" as a 500 (the text Patroni's
        // `InvalidSessionTTL` matches).
        let ttl = string("TTL")?;
        let ttl_dur = if ttl.is_empty() {
            None
        } else {
            let d = duration::parse(&ttl)
                .map_err(|e| ApiError::internal(format!("Session TTL '{ttl}' invalid: {e}")))?;
            if d.is_zero() {
                None
            } else {
                if d < self.opts.session_ttl_min || d > SESSION_TTL_MAX {
                    return Err(ApiError::internal(format!(
                        "Invalid Session TTL '{}', must be between [{}={}]",
                        d.as_nanos(),
                        duration::format(self.opts.session_ttl_min),
                        duration::format(SESSION_TTL_MAX)
                    )));
                }
                Some(d)
            }
        };
        let node = match string("Node")? {
            n if n.is_empty() => self.opts.node_name.clone(),
            n if n == self.opts.node_name => n,
            n => return Err(ApiError::internal(format!("Missing node registration for '{n}'"))),
        };
        // developer.hashicorp.com/consul/api-docs/session#nodechecks: "Checks" (deprecated alias of
        // NodeChecks); when neither NodeChecks nor ServiceChecks is given the default is
        // `["serfHealth"]`. An explicit empty list binds the session to no check.
        let checks = list("Checks")?;
        let node_checks_in = list("NodeChecks")?;
        let service_checks = list("ServiceChecks")?;
        let node_checks = match (checks, node_checks_in, &service_checks) {
            (None, None, None) => vec!["serfHealth".to_string()],
            (c, n, _) => c.into_iter().chain(n).flatten().collect::<Vec<_>>(),
        };
        let service_checks = service_checks.unwrap_or_default();
        for c in node_checks.iter().chain(service_checks.iter()) {
            let known = c == "serfHealth" || self.services.keys().any(|id| c == &format!("service:{id}"));
            if !known {
                return Err(ApiError::internal(format!("Missing check '{c}' registration")));
            }
        }
        let idx = self.bump();
        let id = uuid::Uuid::new_v4().to_string();
        let deadline = ttl_dur.map(|d| now + d.mul_f64(self.opts.ttl_multiplier));
        self.sessions.insert(
            id.clone(),
            Session {
                id: id.clone(),
                name: string("Name")?,
                node,
                lock_delay,
                behavior,
                ttl,
                ttl_dur,
                node_checks,
                service_checks,
                create_index: idx,
                modify_index: idx,
                deadline,
            },
        );
        Ok(id)
    }

    /// `PUT /v1/session/renew/<id>`: the session, or `None` when unknown (404).
    ///
    /// developer.hashicorp.com/consul/api-docs/session#renew-session: "The return code is 404 if the
    /// session is not found"; a renewal restarts the TTL.
    pub fn session_renew(&mut self, id: &str, now: Instant) -> Result<Option<Session>, ApiError> {
        self.require_leader()?;
        let mult = self.opts.ttl_multiplier;
        Ok(self.sessions.get_mut(id).map(|s| {
            s.deadline = s.ttl_dur.map(|d| now + d.mul_f64(mult));
            s.clone()
        }))
    }

    /// `PUT /v1/session/destroy/<id>`: invalidates the session (behaviour and lock-delay apply).
    pub fn session_destroy(&mut self, id: &str, now: Instant) -> Result<bool, ApiError> {
        self.require_leader()?;
        self.invalidate(id, now);
        Ok(true)
    }

    /// Invalidate a session now: apply its behaviour to the keys it holds and arm their
    /// lock-delay (developer.hashicorp.com/consul/docs/dynamic-app-config/sessions: "When a session
    /// is invalidated, it is destroyed and can no longer be used. What happens to the associated
    /// locks depends on the behavior specified at creation time"). Returns whether it existed.
    pub fn invalidate(&mut self, id: &str, now: Instant) -> bool {
        let Some(sess) = self.sessions.remove(id) else {
            return false;
        };
        let idx = self.bump();
        let held: Vec<String> = self
            .kv
            .iter()
            .filter(|(_, e)| e.session.as_deref() == Some(id))
            .map(|(k, _)| k.clone())
            .collect();
        for k in held {
            if !sess.lock_delay.is_zero() {
                self.lock_delays.insert(k.clone(), now + sess.lock_delay);
            }
            match sess.behavior {
                Behavior::Delete => self.remove_key(&k, idx),
                Behavior::Release => {
                    if let Some(e) = self.kv.get_mut(&k) {
                        e.session = None;
                        e.modify_index = idx;
                        self.kv_index = idx;
                    }
                }
            }
        }
        true
    }

    /// Invalidate every session whose TTL ran out. Sessions do not expire while there is no leader:
    /// TTL timers run on the leader and are reset when one is elected (developer.hashicorp.com/consul/
    /// docs/dynamic-app-config/sessions: "the TTL … is reset on leader failover").
    pub fn expire_due(&mut self, now: Instant) -> usize {
        if !self.leader {
            return 0;
        }
        let due: Vec<String> = self
            .sessions
            .values()
            .filter(|s| s.deadline.is_some_and(|d| d <= now))
            .map(|s| s.id.clone())
            .collect();
        for id in &due {
            self.invalidate(id, now);
        }
        self.lock_delays.retain(|_, until| *until > now);
        due.len()
    }

    /// Lose or regain the cluster leader. Regaining it resets every session TTL timer.
    pub fn set_leader(&mut self, leader: bool, now: Instant) {
        if leader && !self.leader {
            let mult = self.opts.ttl_multiplier;
            for s in self.sessions.values_mut() {
                s.deadline = s.ttl_dur.map(|d| now + d.mul_f64(mult));
            }
        }
        self.leader = leader;
    }

    // ---------------------------------------------------------------- agent

    /// `PUT /v1/agent/service/register` (developer.hashicorp.com/consul/api-docs/agent/service
    /// #register-service). Field names are matched case-insensitively; the stored form uses
    /// Consul's names.
    pub fn service_register(&mut self, body: &Map<String, Value>) -> Result<(), ApiError> {
        let get =
            |name: &str| body.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
        let name = get("Name").and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
        if name.is_empty() {
            return Err(ApiError::new(400, "Missing service name"));
        }
        let id = get("ID")
            .and_then(|v| v.as_str().map(String::from))
            .filter(|s| !s.is_empty())
            .unwrap_or(name.clone());
        // A single `Check` or a list `Checks` (py-consul sends the list).
        let mut checks: Vec<Value> =
            get("Check").and_then(|c| c.as_object().map(canonical_check)).into_iter().collect();
        if let Some(Value::Array(a)) = get("Checks") {
            checks.extend(a.iter().filter_map(|c| c.as_object().map(canonical_check)));
        }
        let svc = json!({
            "ID": id,
            "Service": name,
            "Tags": get("Tags").unwrap_or(json!([])),
            "Address": get("Address").unwrap_or(json!("")),
            "Port": get("Port").unwrap_or(json!(0)),
            "EnableTagOverride": get("EnableTagOverride").unwrap_or(json!(false)),
            "Meta": get("Meta").unwrap_or(json!({})),
            "Datacenter": self.opts.datacenter,
            "Checks": checks,
        });
        self.bump();
        self.services.insert(id, svc);
        Ok(())
    }

    /// `PUT /v1/agent/service/deregister/<id>`: `false` when the service is unknown (404).
    pub fn service_deregister(&mut self, id: &str) -> bool {
        let known = self.services.remove(id).is_some();
        if known {
            self.bump();
        }
        known
    }
}

/// The check definition with Consul's field names (`HTTP`, `Interval`, `DeregisterCriticalServiceAfter`,
/// `TLSServerName`, …), whatever case the client used.
fn canonical_check(m: &Map<String, Value>) -> Value {
    const NAMES: &[&str] = &[
        "CheckID",
        "Name",
        "HTTP",
        "Method",
        "Header",
        "Interval",
        "Timeout",
        "TTL",
        "TCP",
        "Args",
        "Notes",
        "Status",
        "DeregisterCriticalServiceAfter",
        "TLSServerName",
        "TLSSkipVerify",
    ];
    let mut out = Map::new();
    for (k, v) in m {
        let name = NAMES.iter().find(|n| n.eq_ignore_ascii_case(k)).map_or(k.clone(), |n| n.to_string());
        out.insert(name, v.clone());
    }
    Value::Object(out)
}

/// The lock operation of a KV PUT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PutOp {
    /// Plain write.
    Set,
    /// `?cas=<index>`.
    Cas(u64),
    /// `?acquire=<session>`.
    Acquire(String),
    /// `?release=<session>`.
    Release(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn acquire_release_and_lock_index_follow_the_kv_docs() {
        let now = Instant::now();
        let mut s = State::new(Options::default());
        let a =
            s.session_create(&body(json!({"name": "a", "checks": [], "lockdelay": "0.001s"})), now).unwrap();
        let b = s.session_create(&body(json!({"Name": "b", "Checks": []})), now).unwrap();
        assert!(s.kv_put("k", b"a".to_vec(), None, PutOp::Acquire(a.clone()), now).unwrap());
        assert_eq!(s.kv["k"].lock_index, 1);
        assert!(!s.kv_put("k", b"b".to_vec(), None, PutOp::Acquire(b.clone()), now).unwrap());
        // re-acquire by the holder updates the value without incrementing LockIndex
        assert!(s.kv_put("k", b"a2".to_vec(), None, PutOp::Acquire(a.clone()), now).unwrap());
        assert_eq!((s.kv["k"].lock_index, s.kv["k"].value.as_slice()), (1, &b"a2"[..]));
        // a plain write keeps the lock
        assert!(s.kv_put("k", b"x".to_vec(), None, PutOp::Set, now).unwrap());
        assert_eq!(s.kv["k"].session.as_deref(), Some(a.as_str()));
        assert!(!s.kv_put("k", vec![], None, PutOp::Release(b.clone()), now).unwrap());
        assert!(s.kv_put("k", vec![], None, PutOp::Release(a.clone()), now).unwrap());
        assert_eq!(s.kv["k"].session, None);
        assert!(s.kv_put("k", b"b".to_vec(), None, PutOp::Acquire(b), now).unwrap());
        assert_eq!(s.kv["k"].lock_index, 2);
        let err = s.kv_put("k", vec![], None, PutOp::Acquire("nope".into()), now).unwrap_err();
        assert_eq!(err.status, 500);
        assert!(err.body.starts_with("invalid session"));
    }

    #[test]
    fn cas_zero_creates_only_and_delete_cas_zero_never_deletes() {
        let now = Instant::now();
        let mut s = State::new(Options::default());
        assert!(s.kv_put("i", vec![], None, PutOp::Cas(0), now).unwrap());
        assert!(!s.kv_put("i", vec![], None, PutOp::Cas(0), now).unwrap());
        let mi = s.kv["i"].modify_index;
        assert!(!s.kv_put("i", b"1".to_vec(), None, PutOp::Cas(mi + 1), now).unwrap());
        assert!(s.kv_put("i", b"1".to_vec(), None, PutOp::Cas(mi), now).unwrap());
        assert!(!s.kv_delete("i", false, Some(0)).unwrap());
        let mi = s.kv["i"].modify_index;
        assert!(s.kv_delete("i", false, Some(mi)).unwrap());
        let (idx, e) = s.kv_get("i");
        assert!(e.is_none());
        assert!(idx > mi, "tombstone index advances the table index");
    }

    #[test]
    fn session_ttl_range_and_error_text_match_consul() {
        let now = Instant::now();
        let mut s = State::new(Options::default());
        let e = s.session_create(&body(json!({"ttl": "3.0s"})), now).unwrap_err();
        assert_eq!(
            (e.status, e.body.as_str()),
            (500, "Invalid Session TTL '3000000000', must be between [10s=24h0m0s]")
        );
        assert!(s.session_create(&body(json!({"ttl": "86401s"})), now).is_err());
        assert!(s.session_create(&body(json!({"ttl": "10.0s"})), now).is_ok());
    }

    #[test]
    fn expired_session_deletes_or_releases_its_keys_and_arms_lock_delay() {
        let now = Instant::now();
        let mut s = State::new(Options::default());
        let d =
            s.session_create(&body(json!({"ttl": "10s", "behavior": "delete", "checks": []})), now).unwrap();
        let r = s.session_create(&body(json!({"ttl": "20s", "checks": [], "lockdelay": "5s"})), now).unwrap();
        s.kv_put("d", b"1".to_vec(), None, PutOp::Acquire(d), now).unwrap();
        s.kv_put("r", b"1".to_vec(), None, PutOp::Acquire(r), now).unwrap();
        // 2×TTL by default: nothing expires after one TTL
        assert_eq!(s.expire_due(now + Duration::from_secs(11)), 0);
        assert_eq!(s.expire_due(now + Duration::from_secs(21)), 1);
        assert!(!s.kv.contains_key("d"));
        assert_eq!(s.expire_due(now + Duration::from_secs(41)), 1);
        assert_eq!(s.kv["r"].session, None);
        let other = s.session_create(&body(json!({"checks": []})), now).unwrap();
        let t = now + Duration::from_secs(42);
        assert!(!s.kv_put("r", vec![], None, PutOp::Acquire(other.clone()), t).unwrap(), "lock-delay");
        assert!(s.kv_put("r", vec![], None, PutOp::Acquire(other), t + Duration::from_secs(5)).unwrap());
    }

    #[test]
    fn keys_with_separator_fold_subtrees() {
        let now = Instant::now();
        let mut s = State::new(Options::default());
        for k in ["web/a", "web/b", "web/sub/c", "other"] {
            s.kv_put(k, vec![], None, PutOp::Set, now).unwrap();
        }
        assert_eq!(s.kv_keys("web/", Some("/")).1, ["web/a", "web/b", "web/sub/"]);
        assert_eq!(s.kv_keys("web/", None).1, ["web/a", "web/b", "web/sub/c"]);
    }
}
