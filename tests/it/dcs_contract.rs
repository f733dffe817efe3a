//! The DCS contract suite: one set of behaviours every [`Dcs`] backend must show, run against each
//! backend by one line, `dcs_contract!(<module>, <factory>)`.
//!
//! # Factory contract
//! `<factory>` is an expression of type `impl Future<Output = Option<F>>` with `F: Fixture`. It is
//! evaluated once per test, so every test gets its own fixture, and a fixture must give its test a
//! cluster no other test touches (a fresh server, or at least a fresh scope). `None` skips the test
//! because the backend's server is not installed; the factory must panic instead when `CI=true`
//! (`support::require_bin` does both). The fixture provides:
//! - [`Fixture::client`]: a client of that one cluster for a member name and a `ttl`, with
//!   `loop_wait` 1 s and `retry_timeout` 1 s (the suite creates several, one per member);
//! - [`Fixture::raw_put`]/[`Fixture::raw_get`]: read and write a full key (`/service/<scope>/…`) as
//!   another tool would, without a session (for etcd: a plain etcd client).
//!
//! Backends must allow a `ttl` of 4 s and expire a session at most [`EXPIRY_MARGIN`] after it.
//! Adding a backend: implement `Fixture` next to its server harness and add a `dcs_contract!` line at
//! the end of this file.

// Test code: the contract functions are not `#[test]`s themselves, so allow what tests allow.
#![allow(clippy::unwrap_used)]

use async_trait::async_trait;
use praetor::dcs::memory::MemoryStore;
use praetor::dcs::model::{Cluster, MemberData, SyncState};
use praetor::dcs::{ClusterKeys, Dcs, DcsParams};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How late after `ttl` a backend may remove the keys of a session that stopped renewing.
pub const EXPIRY_MARGIN: Duration = Duration::from_millis(2500);

/// What the suite needs from one backend (see the module docs).
#[async_trait]
pub trait Fixture: Send + Sync + 'static {
    /// The cluster's scope (unique to this fixture).
    fn scope(&self) -> String;

    /// A client for member `name` with this `ttl` (`loop_wait` 1 s, `retry_timeout` 1 s).
    async fn client(&self, name: &str, ttl: Duration) -> Arc<dyn Dcs>;

    /// Write a full key as another tool would (no lease or session).
    async fn raw_put(&self, full_key: &str, value: &str);

    /// Read a full key as another tool would.
    async fn raw_get(&self, full_key: &str) -> Option<String>;

    /// The key layout of the fixture's cluster.
    fn keys(&self) -> ClusterKeys {
        ClusterKeys::new("/service", &self.scope())
    }
}

/// Parameters the suite's clients use.
pub fn params(scope: &str, name: &str, ttl: Duration) -> DcsParams {
    DcsParams {
        namespace: "/service".into(),
        scope: scope.into(),
        name: name.into(),
        ttl,
        loop_wait: Duration::from_secs(1),
        retry_timeout: Duration::from_secs(1),
    }
}

/// A scope no other test in this process uses.
pub fn unique_scope(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Expands to a module `$name` with one `#[tokio::test]` per contract test, each running it against
/// a fresh fixture from `$factory` (see the module docs for the factory contract).
#[macro_export]
macro_rules! dcs_contract {
    ($name:ident, $factory:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $crate::dcs_contract!(@tests $factory;
                leader_race_has_exactly_one_winner,
                holder_updates_the_leader_key_and_the_loser_cannot,
                lease_expiry_frees_the_leader_key,
                delete_leader_only_deletes_my_own_key,
                take_leader_writes_the_key_unconditionally,
                lost_cas_on_config_is_false_and_a_current_one_succeeds,
                lost_cas_on_failover_is_false_and_clearing_writes_empty_object,
                lost_cas_on_sync_is_none_and_versions_match_the_store,
                initialize_race_has_one_winner,
                watch_wakes_on_leader_delete_and_create,
                watch_times_out_without_a_change,
                touch_member_json_round_trips_into_cluster_members,
                malformed_values_from_another_tool_read_as_empty,
                delete_cluster_removes_every_key,
                close_releases_the_leader_and_member_keys,
            );
        }
    };
    (@tests $factory:expr; $($test:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                $crate::support::init_logging();
                let Some(fx) = $factory.await else { return };
                $crate::dcs_contract::contract::$test(&fx).await;
            }
        )*
    };
}

/// The contract tests, generic over the fixture.
pub mod contract {
    use super::*;

    const TTL: Duration = Duration::from_secs(4);
    /// "Well under" any timeout the suite passes to `watch`.
    const WAKE_WITHIN: Duration = Duration::from_secs(3);

    async fn load(c: &Arc<dyn Dcs>) -> Cluster {
        c.load_cluster().await.expect("load_cluster")
    }

    async fn leader_name(c: &Arc<dyn Dcs>) -> Option<String> {
        load(c).await.leader.map(|l| l.name)
    }

    async fn clients<F: Fixture>(fx: &F, names: &[&str], ttl: Duration) -> Vec<Arc<dyn Dcs>> {
        let mut out = Vec::new();
        for n in names {
            out.push(fx.client(n, ttl).await);
        }
        out
    }

    fn member(name: &str) -> MemberData {
        let mut d = MemberData::parse(
            r#"{"conn_url":"postgres://127.0.0.1:5432/postgres","api_url":"http://127.0.0.1:8008/patroni","state":"running","role":"replica","version":"4.1.5","xlog_location":50615840,"tags":{"nofailover":false},"timeline":1}"#,
        )
        .expect("valid member JSON");
        d.conn_url = format!("postgres://{name}.example:5432/postgres");
        d
    }

    pub async fn leader_race_has_exactly_one_winner<F: Fixture>(fx: &F) {
        let names = ["pg0", "pg1", "pg2"];
        let c = clients(fx, &names, TTL).await;
        for round in 0..4 {
            let results = futures::future::join_all(c.iter().map(|x| x.attempt_to_acquire_leader())).await;
            let won: Vec<usize> = results
                .iter()
                .enumerate()
                .filter(|(_, r)| *r.as_ref().expect("acquire"))
                .map(|(i, _)| i)
                .collect();
            assert_eq!(won.len(), 1, "round {round}: exactly one winner, got {results:?}");
            let w = won[0];
            assert_eq!(leader_name(&c[(w + 1) % 3]).await.as_deref(), Some(names[w]), "round {round}");
            // The others still lose while it is held.
            assert!(!c[(w + 1) % 3].attempt_to_acquire_leader().await.unwrap());
            assert!(c[w].delete_leader(None).await.unwrap(), "round {round}: winner releases");
            assert_eq!(leader_name(&c[w]).await, None);
        }
    }

    pub async fn holder_updates_the_leader_key_and_the_loser_cannot<F: Fixture>(fx: &F) {
        let c = clients(fx, &["a", "b"], TTL).await;
        assert!(c[0].attempt_to_acquire_leader().await.unwrap());
        assert!(!c[1].attempt_to_acquire_leader().await.unwrap());
        let cl = load(&c[1]).await;
        let leader = cl.leader.clone().expect("leader key");
        assert_eq!(leader.name, "a");
        assert!(leader.owner.is_some(), "the leader key is bound to a lease/session");
        assert!(c[0].update_leader(Some(&leader)).await.unwrap(), "holder keeps it");
        assert!(!c[1].update_leader(Some(&leader)).await.unwrap(), "loser with the real key");
        assert!(!c[1].update_leader(None).await.unwrap(), "loser without a key");
        assert_eq!(leader_name(&c[1]).await.as_deref(), Some("a"), "loser's update changed nothing");
        // Several cycles in a row keep it.
        for _ in 0..3 {
            let l = load(&c[0]).await.leader.expect("still held");
            assert!(c[0].update_leader(Some(&l)).await.unwrap());
        }
        assert_eq!(leader_name(&c[1]).await.as_deref(), Some("a"));
    }

    pub async fn lease_expiry_frees_the_leader_key<F: Fixture>(fx: &F) {
        let c = clients(fx, &["a", "b"], TTL).await;
        let t0 = Instant::now();
        assert!(c[0].touch_member(&member("a").to_json()).await.unwrap());
        assert!(c[0].attempt_to_acquire_leader().await.unwrap());
        // a stops renewing now. Half a ttl later the key must still be there ...
        tokio::time::sleep(TTL / 2).await;
        let cl = load(&c[1]).await;
        assert_eq!(cl.leader.map(|l| l.name).as_deref(), Some("a"), "expired before ttl");
        assert!(cl.members.iter().any(|m| m.name == "a"));
        // ... and gone within ttl + margin.
        let limit = TTL + EXPIRY_MARGIN;
        loop {
            let cl = load(&c[1]).await;
            if cl.leader.is_none() {
                assert!(cl.member("a").is_none(), "member key shares the leader's lease/session");
                break;
            }
            assert!(t0.elapsed() < limit, "leader key still held {:?} after the last renewal", t0.elapsed());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(c[1].attempt_to_acquire_leader().await.unwrap(), "the freed key can be taken");
    }

    pub async fn delete_leader_only_deletes_my_own_key<F: Fixture>(fx: &F) {
        let c = clients(fx, &["a", "b"], TTL).await;
        assert!(c[0].attempt_to_acquire_leader().await.unwrap());
        let l = load(&c[1]).await.leader;
        assert!(!c[1].delete_leader(l.as_ref()).await.unwrap(), "b must not delete a's key");
        assert_eq!(leader_name(&c[1]).await.as_deref(), Some("a"));
        assert!(c[0].delete_leader(l.as_ref()).await.unwrap());
        assert_eq!(leader_name(&c[1]).await, None);
        assert!(!c[0].delete_leader(None).await.unwrap(), "nothing left to delete");
    }

    pub async fn take_leader_writes_the_key_unconditionally<F: Fixture>(fx: &F) {
        let c = clients(fx, &["a", "b"], TTL).await;
        assert!(c[0].attempt_to_acquire_leader().await.unwrap());
        assert!(c[1].take_leader().await.unwrap());
        let l = load(&c[0]).await.leader.expect("leader key");
        assert_eq!(l.name, "b");
        assert!(l.owner.is_some());
        assert!(!c[0].update_leader(Some(&l)).await.unwrap(), "a lost it");
        assert!(c[1].update_leader(Some(&l)).await.unwrap());
    }

    pub async fn lost_cas_on_config_is_false_and_a_current_one_succeeds<F: Fixture>(fx: &F) {
        let c = clients(fx, &["a", "b"], TTL).await;
        assert!(c[0].set_config_value(r#"{"ttl":30}"#, None).await.unwrap());
        let v1 = load(&c[0]).await.config.expect("config").version;
        assert!(c[1].set_config_value(r#"{"ttl":20}"#, Some(v1)).await.unwrap(), "current version wins");
        assert!(!c[0].set_config_value(r#"{"ttl":10}"#, Some(v1)).await.unwrap(), "stale version loses");
        let cfg = load(&c[0]).await.config.expect("config");
        assert_eq!(cfg.data.get("ttl"), Some(&serde_json::json!(20)));
        assert_ne!(cfg.version, v1);
        assert_eq!(fx.raw_get(&fx.keys().path("config")).await.as_deref(), Some(r#"{"ttl":20}"#));
        assert!(c[0].set_config_value(r#"{"ttl":10}"#, None).await.unwrap(), "no version: plain write");
        assert_eq!(fx.raw_get(&fx.keys().path("config")).await.as_deref(), Some(r#"{"ttl":10}"#));
    }

    pub async fn lost_cas_on_failover_is_false_and_clearing_writes_empty_object<F: Fixture>(fx: &F) {
        let c = clients(fx, &["a", "b"], TTL).await;
        let f = r#"{"leader":"a","member":"b"}"#;
        assert!(c[0].set_failover_value(f, None).await.unwrap());
        let v1 = load(&c[0]).await.failover.expect("failover").version.expect("version");
        assert!(c[1].set_failover_value(r#"{"leader":"a","member":"c"}"#, Some(v1)).await.unwrap());
        assert!(!c[0].set_failover_value("{}", Some(v1)).await.unwrap(), "stale version loses");
        let fo = load(&c[0]).await.failover.expect("failover still set");
        assert_eq!(fo.member.as_deref(), Some("c"));
        assert!(c[0].set_failover_value("{}", fo.version).await.unwrap());
        assert_eq!(load(&c[0]).await.failover, None, "`{{}}` reads as no failover");
        assert_eq!(fx.raw_get(&fx.keys().path("failover")).await.as_deref(), Some("{}"));
    }

    pub async fn lost_cas_on_sync_is_none_and_versions_match_the_store<F: Fixture>(fx: &F) {
        let c = clients(fx, &["a", "b"], TTL).await;
        let s1 = SyncState::to_json("a", &["b".into()], 0);
        let v1 = c[0].set_sync_state_value(&s1, None).await.unwrap().expect("plain write succeeds");
        let sync = load(&c[1]).await.sync;
        assert_eq!(sync.version, Some(v1), "returned version is the stored one");
        assert_eq!(sync.members(), ["b"]);
        let s2 = SyncState::to_json("a", &[], 0);
        let v2 = c[0].set_sync_state_value(&s2, Some(v1)).await.unwrap().expect("current version wins");
        assert_ne!(v1, v2);
        assert_eq!(c[1].set_sync_state_value(&s1, Some(v1)).await.unwrap(), None, "stale version loses");
        assert_eq!(load(&c[1]).await.sync.version, Some(v2));
        assert!(!c[1].delete_sync_state(Some(v1)).await.unwrap(), "stale delete loses");
        assert!(load(&c[1]).await.sync.version.is_some(), "still there");
        assert!(c[0].delete_sync_state(Some(v2)).await.unwrap());
        let sync = load(&c[1]).await.sync;
        assert!(sync.is_empty() && sync.version.is_none(), "{sync:?}");
    }

    pub async fn initialize_race_has_one_winner<F: Fixture>(fx: &F) {
        let c = clients(fx, &["a", "b", "c"], TTL).await;
        let results = futures::future::join_all(c.iter().map(|x| x.initialize(true, ""))).await;
        let winners: Vec<usize> = results
            .iter()
            .enumerate()
            .filter(|(_, r)| *r.as_ref().expect("initialize"))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(winners.len(), 1, "{results:?}");
        let cl = load(&c[0]).await;
        assert_eq!(cl.initialize.as_deref(), Some(""), "bootstrap in progress");
        assert!(!cl.is_initialized());
        let w = winners[0];
        assert!(c[w].initialize(false, "7710780543994972159").await.unwrap());
        assert!(!c[(w + 1) % 3].initialize(true, "1234567890123").await.unwrap(), "still taken");
        assert_eq!(fx.raw_get(&fx.keys().path("initialize")).await.as_deref(), Some("7710780543994972159"));
        assert!(load(&c[1]).await.is_initialized());
        assert!(c[w].cancel_initialization().await.unwrap());
        assert_eq!(load(&c[1]).await.initialize, None);
        assert!(c[(w + 1) % 3].initialize(true, "").await.unwrap(), "free again after cancel");
    }

    pub async fn watch_wakes_on_leader_delete_and_create<F: Fixture>(fx: &F) {
        let c = clients(fx, &["a", "b"], TTL).await;
        assert!(c[0].attempt_to_acquire_leader().await.unwrap());
        let v = load(&c[1]).await.leader.expect("leader").version;

        // delete
        let b = c[1].clone();
        let t = Instant::now();
        let w = tokio::spawn(async move { b.watch(Some(v), Duration::from_secs(10)).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(c[0].delete_leader(None).await.unwrap());
        let woke = w.await.unwrap().expect("watch");
        assert!(woke, "watch reported a timeout");
        assert!(t.elapsed() < WAKE_WITHIN, "woke after {:?}", t.elapsed());

        // create (by someone else)
        assert!(load(&c[1]).await.leader.is_none());
        let b = c[1].clone();
        let t = Instant::now();
        let w = tokio::spawn(async move { b.watch(None, Duration::from_secs(10)).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(c[0].attempt_to_acquire_leader().await.unwrap());
        assert!(w.await.unwrap().expect("watch"));
        assert!(t.elapsed() < WAKE_WITHIN, "woke after {:?}", t.elapsed());
    }

    pub async fn watch_times_out_without_a_change<F: Fixture>(fx: &F) {
        let c = clients(fx, &["a", "b"], TTL).await;
        assert!(c[0].touch_member(&member("a").to_json()).await.unwrap());
        assert!(c[0].attempt_to_acquire_leader().await.unwrap());
        let v = load(&c[1]).await.leader.expect("leader").version;
        let timeout = Duration::from_millis(1500);
        let b = c[1].clone();
        let t = Instant::now();
        let w = tokio::spawn(async move { b.watch(Some(v), timeout).await });
        // The holder keeps its key and refreshes its member: neither is a leader change.
        let a = c[0].clone();
        let l = load(&a).await.leader;
        assert!(a.update_leader(l.as_ref()).await.unwrap());
        let mut m = member("a");
        m.xlog_location = Some(50615841);
        assert!(a.touch_member(&m.to_json()).await.unwrap());
        let woke = w.await.unwrap().expect("watch");
        let took = t.elapsed();
        assert!(!woke, "woke without a leader change after {took:?}");
        assert!(took >= timeout, "returned early: {took:?}");
        assert!(took < timeout + Duration::from_secs(2), "overslept: {took:?}");
    }

    pub async fn touch_member_json_round_trips_into_cluster_members<F: Fixture>(fx: &F) {
        let c = clients(fx, &["pg0", "pg1"], TTL).await;
        let d0 = member("pg0");
        let json = d0.to_json();
        assert!(c[0].touch_member(&json).await.unwrap());
        let cl = load(&c[1]).await;
        let m = cl.member("pg0").expect("member key");
        assert_eq!(m.data, d0);
        assert!(m.owner.is_some(), "member key is bound to a lease/session");
        assert_eq!(
            fx.raw_get(&fx.keys().member("pg0")).await.as_deref(),
            Some(json.as_str()),
            "stored verbatim"
        );
        // A changed value is published; the other member appears too.
        let mut d1 = d0.clone();
        d1.state = "stopped".into();
        assert!(c[0].touch_member(&d1.to_json()).await.unwrap());
        assert!(c[1].touch_member(&member("pg1").to_json()).await.unwrap());
        let cl = load(&c[0]).await;
        assert_eq!(cl.members.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["pg0", "pg1"]);
        assert_eq!(cl.member("pg0").unwrap().data.state, "stopped");
    }

    pub async fn malformed_values_from_another_tool_read_as_empty<F: Fixture>(fx: &F) {
        let k = fx.keys();
        fx.raw_put(&k.path("config"), "{not json").await;
        fx.raw_put(&k.member("x"), "<<garbage>>").await;
        fx.raw_put(&k.path("sync"), "[1,2]").await;
        fx.raw_put(&k.path("failover"), "nonsense{").await;
        fx.raw_put(&k.path("status"), "nope").await;
        fx.raw_put(&k.path("history"), "{}").await;
        fx.raw_put(&k.path("failsafe"), "3").await;
        fx.raw_put(&k.path("initialize"), "7710780543994972159").await;
        let c = fx.client("a", TTL).await;
        let cl = c.load_cluster().await.expect("malformed values are not an error");
        assert!(cl.config.as_ref().expect("config key exists").data.is_empty());
        assert_eq!(cl.member("x").expect("member x").data, MemberData::default());
        assert!(cl.sync.is_empty());
        assert_eq!(cl.failover, None);
        assert_eq!(cl.status.optime, None);
        assert!(cl.history.as_ref().expect("history key exists").lines.is_empty());
        assert_eq!(cl.failsafe, None);
        assert!(cl.is_initialized(), "the valid key next to them still reads");
        // and a writer can overwrite them
        assert!(c.set_config_value(r#"{"ttl":30}"#, cl.config.map(|x| x.version)).await.unwrap());
    }

    pub async fn delete_cluster_removes_every_key<F: Fixture>(fx: &F) {
        let c = clients(fx, &["a"], TTL).await;
        assert!(c[0].initialize(true, "7710780543994972159").await.unwrap());
        assert!(c[0].set_config_value("{}", None).await.unwrap());
        assert!(c[0].touch_member(&member("a").to_json()).await.unwrap());
        assert!(c[0].attempt_to_acquire_leader().await.unwrap());
        assert!(c[0].write_status(r#"{"optime":1}"#).await.unwrap());
        assert!(c[0].set_history_value("[]").await.unwrap());
        assert!(c[0].delete_cluster().await.unwrap());
        assert_eq!(load(&c[0]).await, Cluster::default());
        assert_eq!(fx.raw_get(&fx.keys().path("initialize")).await, None);
    }

    pub async fn close_releases_the_leader_and_member_keys<F: Fixture>(fx: &F) {
        let c = clients(fx, &["a", "b"], TTL).await;
        assert!(c[0].touch_member(&member("a").to_json()).await.unwrap());
        assert!(c[0].attempt_to_acquire_leader().await.unwrap());
        assert!(c[0].set_config_value("{}", None).await.unwrap());
        c[0].close().await.expect("close");
        let cl = load(&c[1]).await;
        assert!(cl.leader.is_none(), "leader key released at close: {:?}", cl.leader);
        assert!(cl.member("a").is_none(), "member key released at close");
        assert!(cl.config.is_some(), "persistent keys stay");
    }
}

/// The in-process store.
pub struct MemoryFixture {
    store: MemoryStore,
    scope: String,
}

impl MemoryFixture {
    /// A fresh store.
    pub async fn new() -> Option<MemoryFixture> {
        Some(MemoryFixture { store: MemoryStore::new(), scope: unique_scope("mem") })
    }
}

#[async_trait]
impl Fixture for MemoryFixture {
    fn scope(&self) -> String {
        self.scope.clone()
    }

    async fn client(&self, name: &str, ttl: Duration) -> Arc<dyn Dcs> {
        Arc::new(self.store.client(params(&self.scope, name, ttl)))
    }

    async fn raw_put(&self, full_key: &str, value: &str) {
        self.store.raw_put(full_key, value);
    }

    async fn raw_get(&self, full_key: &str) -> Option<String> {
        self.store.raw_get(full_key)
    }
}

/// A real etcd per test, clients built by the DCS factory from an `etcd3` section, raw access
/// through a plain etcd client.
#[cfg(feature = "etcd")]
pub struct EtcdFixture {
    /// The server (public for backend-specific tests).
    pub server: crate::support::etcd::EtcdServer,
    /// A plain client, as another tool would use.
    pub raw: etcd_client::Client,
    scope: String,
}

#[cfg(feature = "etcd")]
impl EtcdFixture {
    /// Start etcd; `None` when it is not installed (panics in CI).
    pub async fn new() -> Option<EtcdFixture> {
        let server = crate::support::etcd::EtcdServer::start().await?;
        let raw = server.client().await;
        Some(EtcdFixture { server, raw, scope: unique_scope("etcd") })
    }

    /// A praetor etcd client with explicit parameters.
    pub async fn client_with(&self, p: DcsParams) -> Arc<dyn Dcs> {
        let config = praetor::config::dcs::EtcdConfig { hosts: self.server.hosts(), ..Default::default() };
        let section = praetor::config::dcs::DcsSection::Etcd3 { config, from_v2_section: false };
        praetor::dcs::factory::connect(&section, p).await.expect("connect to the test etcd")
    }
}

#[cfg(feature = "etcd")]
#[async_trait]
impl Fixture for EtcdFixture {
    fn scope(&self) -> String {
        self.scope.clone()
    }

    async fn client(&self, name: &str, ttl: Duration) -> Arc<dyn Dcs> {
        self.client_with(params(&self.scope, name, ttl)).await
    }

    async fn raw_put(&self, full_key: &str, value: &str) {
        self.raw.clone().put(full_key, value, None).await.expect("raw etcd put");
    }

    async fn raw_get(&self, full_key: &str) -> Option<String> {
        let r = self.raw.clone().get(full_key, None).await.expect("raw etcd get");
        r.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
    }
}

dcs_contract!(memory, MemoryFixture::new());
#[cfg(feature = "etcd")]
dcs_contract!(etcd, EtcdFixture::new());
#[cfg(feature = "consul")]
dcs_contract!(consul, crate::support::consul::ConsulFixture::model());
#[cfg(feature = "consul")]
dcs_contract!(consul_agent, crate::support::consul::ConsulFixture::agent());
