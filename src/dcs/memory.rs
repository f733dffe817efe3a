//! An in-process [`Dcs`] for unit tests and the contract suite: several clients share one
//! [`MemoryStore`], each with its own session that expires `ttl` after its last renewal, and the store
//! can be taken offline to simulate an outage.
//!
//! It follows the etcd3 backend's semantics (one session per client carrying the leader and member
//! keys; renewal on `update_leader`/`touch_member`), and the contract suite keeps the two honest.

use super::model::{Cluster, Leader, RawEntry, Version};
use super::{ClusterKeys, Dcs, DcsError, DcsParams};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

#[derive(Clone, Debug)]
struct Item {
    value: String,
    version: i64,
    session: Option<u64>,
}

#[derive(Default)]
struct State {
    kv: BTreeMap<String, Item>,
    sessions: BTreeMap<u64, Instant>,
    revision: i64,
    next_session: u64,
    offline: bool,
}

impl State {
    fn expire(&mut self, now: Instant) {
        let dead: Vec<u64> = self.sessions.iter().filter(|(_, d)| **d <= now).map(|(s, _)| *s).collect();
        if dead.is_empty() {
            return;
        }
        for s in &dead {
            self.sessions.remove(s);
        }
        self.kv.retain(|_, i| i.session.is_none_or(|s| !dead.contains(&s)));
        self.revision += 1;
    }

    fn put(&mut self, key: &str, value: &str, session: Option<u64>) -> Version {
        self.revision += 1;
        let version = self.revision;
        self.kv.insert(key.to_string(), Item { value: value.to_string(), version, session });
        Version(version)
    }
}

/// The shared store behind several [`MemoryDcs`] clients.
#[derive(Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// A client for member `params.name`.
    pub fn client(&self, params: DcsParams) -> MemoryDcs {
        MemoryDcs {
            store: self.clone(),
            keys: params.keys(),
            session: Mutex::new(None),
            params: Mutex::new(params),
        }
    }

    /// Make every call fail with `Unavailable` (true) or work again (false).
    pub fn set_offline(&self, offline: bool) {
        self.lock().offline = offline;
    }

    /// Write a raw value as another tool would (no session).
    pub fn raw_put(&self, full_key: &str, value: &str) {
        self.lock().put(full_key, value, None);
        self.changed.notify_waiters();
    }

    /// Read a raw value.
    pub fn raw_get(&self, full_key: &str) -> Option<String> {
        let mut s = self.lock();
        s.expire(Instant::now());
        s.kv.get(full_key).map(|i| i.value.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock only happens in a failing test; keep going with the data.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One client of a [`MemoryStore`].
pub struct MemoryDcs {
    store: MemoryStore,
    keys: ClusterKeys,
    session: Mutex<Option<u64>>,
    params: Mutex<DcsParams>,
}

impl MemoryDcs {
    fn params(&self) -> DcsParams {
        self.params.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Run `f` on the store after expiring dead sessions; fails while offline.
    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> Result<T, DcsError> {
        let out = {
            let mut s = self.store.lock();
            if s.offline {
                return Err(DcsError::Unavailable("memory store is offline".into()));
            }
            s.expire(Instant::now());
            f(&mut s)
        };
        self.store.changed.notify_waiters();
        Ok(out)
    }

    /// My live session, created or renewed now.
    fn renew(&self, s: &mut State) -> u64 {
        let ttl = self.params().ttl;
        let mut mine = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let id = match *mine {
            Some(id) if s.sessions.contains_key(&id) => id,
            _ => {
                s.next_session += 1;
                s.next_session
            }
        };
        s.sessions.insert(id, Instant::now() + ttl);
        *mine = Some(id);
        id
    }

    fn cas(&self, key: &str, value: &str, version: Option<Version>) -> Result<Option<Version>, DcsError> {
        let full = self.keys.path(key);
        self.with(|s| {
            let current = s.kv.get(&full).map(|i| i.version);
            match version {
                Some(v) if current != Some(v.0) => None,
                _ => Some(s.put(&full, value, None)),
            }
        })
    }
}

#[async_trait]
impl Dcs for MemoryDcs {
    fn backend(&self) -> String {
        "memory".into()
    }

    async fn load_cluster(&self) -> Result<Cluster, DcsError> {
        let prefix = self.keys.prefix().to_string();
        let entries = self.with(|s| {
            s.kv.range(prefix.clone()..)
                .take_while(|(k, _)| k.starts_with(&prefix))
                .map(|(k, i)| RawEntry {
                    key: k[prefix.len()..].to_string(),
                    value: i.value.clone(),
                    version: Version(i.version),
                    owner: i.session.map(|s| s.to_string()),
                })
                .collect::<Vec<_>>()
        })?;
        let (cluster, warnings) = Cluster::from_entries(entries);
        for w in warnings {
            tracing::warn!(key = %w.key, "ignoring malformed DCS value: {}", w.problem);
        }
        Ok(cluster)
    }

    async fn attempt_to_acquire_leader(&self) -> Result<bool, DcsError> {
        let full = self.keys.path("leader");
        let name = self.params().name;
        self.with(|s| {
            if s.kv.contains_key(&full) {
                return false;
            }
            let sid = self.renew(s);
            s.put(&full, &name, Some(sid));
            true
        })
    }

    async fn update_leader(&self, _leader: Option<&Leader>) -> Result<bool, DcsError> {
        let full = self.keys.path("leader");
        let name = self.params().name;
        self.with(|s| {
            let sid = self.renew(s);
            // etcd3.py _update_leader: rebind to my lease if it names me, re-create it if it is gone.
            match s.kv.get(&full) {
                Some(i) if i.value == name => {
                    if i.session != Some(sid) {
                        s.put(&full, &name, Some(sid));
                    }
                    true
                }
                None => {
                    s.put(&full, &name, Some(sid));
                    true
                }
                Some(_) => false,
            }
        })
    }

    async fn take_leader(&self) -> Result<bool, DcsError> {
        let full = self.keys.path("leader");
        let name = self.params().name;
        self.with(|s| {
            let sid = self.renew(s);
            s.put(&full, &name, Some(sid));
            true
        })
    }

    async fn delete_leader(&self, _leader: Option<&Leader>) -> Result<bool, DcsError> {
        let full = self.keys.path("leader");
        let name = self.params().name;
        self.with(|s| match s.kv.get(&full) {
            Some(i) if i.value == name => {
                s.kv.remove(&full);
                s.revision += 1;
                true
            }
            _ => false,
        })
    }

    async fn touch_member(&self, data: &str) -> Result<bool, DcsError> {
        let full = self.keys.member(&self.params().name);
        self.with(|s| {
            let sid = self.renew(s);
            s.put(&full, data, Some(sid));
            true
        })
    }

    async fn set_config_value(&self, value: &str, version: Option<Version>) -> Result<bool, DcsError> {
        Ok(self.cas("config", value, version)?.is_some())
    }

    async fn set_failover_value(&self, value: &str, version: Option<Version>) -> Result<bool, DcsError> {
        Ok(self.cas("failover", value, version)?.is_some())
    }

    async fn set_history_value(&self, value: &str) -> Result<bool, DcsError> {
        Ok(self.cas("history", value, None)?.is_some())
    }

    async fn set_sync_state_value(
        &self,
        value: &str,
        version: Option<Version>,
    ) -> Result<Option<Version>, DcsError> {
        self.cas("sync", value, version)
    }

    async fn delete_sync_state(&self, version: Option<Version>) -> Result<bool, DcsError> {
        let full = self.keys.path("sync");
        self.with(|s| match (s.kv.get(&full), version) {
            (Some(i), Some(v)) if i.version != v.0 => false,
            (None, Some(_)) => false,
            _ => {
                s.kv.remove(&full);
                s.revision += 1;
                true
            }
        })
    }

    async fn write_status(&self, value: &str) -> Result<bool, DcsError> {
        Ok(self.cas("status", value, None)?.is_some())
    }

    async fn write_failsafe(&self, value: &str) -> Result<bool, DcsError> {
        Ok(self.cas("failsafe", value, None)?.is_some())
    }

    async fn initialize(&self, create_new: bool, sysid: &str) -> Result<bool, DcsError> {
        let full = self.keys.path("initialize");
        self.with(|s| {
            if create_new && s.kv.contains_key(&full) {
                return false;
            }
            s.put(&full, sysid, None);
            true
        })
    }

    async fn cancel_initialization(&self) -> Result<bool, DcsError> {
        let full = self.keys.path("initialize");
        // Like etcd: deleting an absent key is not a failure.
        self.with(|s| {
            s.kv.remove(&full);
            s.revision += 1;
            true
        })
    }

    async fn delete_cluster(&self) -> Result<bool, DcsError> {
        let prefix = self.keys.prefix().to_string();
        self.with(|s| {
            s.kv.retain(|k, _| !k.starts_with(&prefix));
            s.revision += 1;
            true
        })
    }

    async fn watch(&self, leader_version: Option<Version>, timeout: Duration) -> Result<bool, DcsError> {
        let leader_key = self.keys.path("leader");
        let config_key = self.keys.path("config");
        let deadline = Instant::now() + timeout;
        let read = |s: &State, k: &str| s.kv.get(k).map(|i| Version(i.version));
        let (leader_base, config_base) =
            self.with(|s| (leader_version.or_else(|| read(s, &leader_key)), read(s, &config_key)))?;
        loop {
            let notified = self.store.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (leader, config) = self.with(|s| (read(s, &leader_key), read(s, &config_key)))?;
            if leader != leader_base || config != config_base {
                return Ok(true);
            }
            let next_expiry = {
                let s = self.store.lock();
                s.sessions.values().min().copied()
            };
            let wake = next_expiry.map_or(deadline, |e| e.min(deadline));
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(wake) => {
                    if Instant::now() >= deadline {
                        return Ok(false);
                    }
                }
            }
        }
    }

    async fn set_timing(
        &self,
        ttl: Duration,
        loop_wait: Duration,
        retry_timeout: Duration,
    ) -> Result<(), DcsError> {
        let mut p = self.params.lock().unwrap_or_else(|p| p.into_inner());
        p.ttl = ttl;
        p.loop_wait = loop_wait;
        p.retry_timeout = retry_timeout;
        Ok(())
    }

    async fn close(&self) -> Result<(), DcsError> {
        let sid = self.session.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(sid) = sid {
            self.with(|s| {
                s.sessions.insert(sid, Instant::now());
                s.expire(Instant::now());
            })?;
        }
        Ok(())
    }
}
