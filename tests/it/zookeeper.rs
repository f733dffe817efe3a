//! The ZooKeeper backend against a real ZooKeeper 3.8: the DCS contract suite, ZooKeeper-specific
//! session behaviour (ephemeral keys of a killed holder, session expiry, ttl change, failover between
//! servers, auth), the raw znode layout, and interop with Patroni 4.1.5's own ZooKeeper class.

use crate::dcs_contract::{Fixture, params, unique_scope};
use crate::support::zookeeper::{self as zks, TICK, ZooKeeperServer};
use crate::support::{ChildGuard, TestDir, init_logging, wait_for};
use async_trait::async_trait;
use praetor::config::dcs::{DcsSection, ZooKeeperConfig};
use praetor::dcs::model::{Cluster, HistoryLine, MemberData, RawEntry, Status, SyncState, Version};
use praetor::dcs::zookeeper::ZooKeeperDcs;
use praetor::dcs::{Dcs, DcsError, DcsParams};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use zookeeper_client as zk;

/// A real ZooKeeper per test, clients built by the DCS factory from a `zookeeper` section, raw access
/// through a plain ZooKeeper client.
pub struct ZkFixture {
    /// The server.
    pub server: ZooKeeperServer,
    /// A plain client, as another tool would use.
    pub raw: zk::Client,
    scope: String,
}

impl ZkFixture {
    /// Start ZooKeeper; `None` when it is not installed (panics in CI).
    pub async fn new() -> Option<ZkFixture> {
        let server = ZooKeeperServer::start().await?;
        let raw = server.client().await;
        Some(ZkFixture { server, raw, scope: unique_scope("zk") })
    }

    /// A praetor client with explicit parameters and `zookeeper` section.
    pub async fn client_with(&self, p: DcsParams, config: ZooKeeperConfig) -> Arc<dyn Dcs> {
        praetor::dcs::factory::connect(&DcsSection::ZooKeeper(config), p).await.expect("zookeeper client")
    }

    /// The `zookeeper` section for the test server.
    pub fn config(&self) -> ZooKeeperConfig {
        ZooKeeperConfig { hosts: self.server.hosts(), ..Default::default() }
    }

    /// A concrete praetor client (for `session_id`).
    pub fn direct(&self, name: &str, ttl: Duration) -> ZooKeeperDcs {
        ZooKeeperDcs::new(params(&self.scope, name, ttl), &self.config()).expect("zookeeper client")
    }
}

#[async_trait]
impl Fixture for ZkFixture {
    fn scope(&self) -> String {
        self.scope.clone()
    }

    async fn client(&self, name: &str, ttl: Duration) -> Arc<dyn Dcs> {
        self.client_with(params(&self.scope, name, ttl), self.config()).await
    }

    async fn raw_put(&self, full_key: &str, value: &str) {
        zks::raw_put(&self.raw, full_key, value).await;
    }

    async fn raw_get(&self, full_key: &str) -> Option<String> {
        zks::raw_get(&self.raw, full_key).await.map(|(v, _, _)| v)
    }
}

/// The contract suite on ZooKeeper. Two contract tests are replaced by ZooKeeper-specific ones below:
/// - `lease_expiry_frees_the_leader_key` assumes a lease that lapses when the client stops calling; a
///   ZooKeeper session is kept alive by the client library's pings for as long as the process lives,
///   so liveness is the process: see `ephemeral_leader_key_vanishes_within_ttl_after_the_holder_is_killed`.
/// - `lost_cas_on_sync_is_none_and_versions_match_the_store` ends by expecting `sync` to be gone after
///   `delete_sync_state`; on ZooKeeper Patroni clears it by writing `{}` (the `Dcs` docs say so): see
///   `sync_cas_and_clearing_writes_an_empty_object`.
mod contract {
    use super::ZkFixture;
    crate::dcs_contract!(@tests ZkFixture::new();
        leader_race_has_exactly_one_winner,
        holder_updates_the_leader_key_and_the_loser_cannot,
        delete_leader_only_deletes_my_own_key,
        take_leader_writes_the_key_unconditionally,
        lost_cas_on_config_is_false_and_a_current_one_succeeds,
        lost_cas_on_failover_is_false_and_clearing_writes_empty_object,
        initialize_race_has_one_winner,
        watch_wakes_on_leader_delete_and_create,
        watch_times_out_without_a_change,
        touch_member_json_round_trips_into_cluster_members,
        malformed_values_from_another_tool_read_as_empty,
        delete_cluster_removes_every_key,
        close_releases_the_leader_and_member_keys,
    );
}

const TTL: Duration = Duration::from_secs(3);

fn member_json(name: &str, port: u16) -> String {
    format!(
        r#"{{"conn_url":"postgres://127.0.0.1:{port}/postgres","api_url":"http://127.0.0.1:{}/patroni","state":"running","role":"replica","version":"4.1.5","xlog_location":50615840,"timeline":1,"tags":{{"name":"{name}"}}}}"#,
        port + 1000
    )
}

// P:dcs/zookeeper.py set_sync_state_value / delete_sync_state: `{}` instead of a delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_cas_and_clearing_writes_an_empty_object() {
    init_logging();
    let Some(fx) = ZkFixture::new().await else { return };
    let a = fx.client("a", TTL).await;
    let b = fx.client("b", TTL).await;
    let s1 = SyncState::to_json("a", &["b".into()], 0);
    let v1 = a.set_sync_state_value(&s1, None).await.unwrap().expect("plain write creates it");
    assert_eq!(v1, Version(0), "a fresh znode is at stat.version 0");
    assert_eq!(b.load_cluster().await.unwrap().sync.version, Some(v1));
    let v2 = a
        .set_sync_state_value(&SyncState::to_json("a", &[], 0), Some(v1))
        .await
        .unwrap()
        .expect("current version");
    assert_eq!(v2, Version(1));
    // Version 0 is compared like any other (Patroni's `version or -1` would overwrite here).
    assert_eq!(b.set_sync_state_value(&s1, Some(v1)).await.unwrap(), None, "stale version 0 loses");
    assert!(!b.delete_sync_state(Some(v1)).await.unwrap(), "stale clear loses");
    assert!(a.delete_sync_state(Some(v2)).await.unwrap());
    let sync = b.load_cluster().await.unwrap().sync;
    assert!(sync.is_empty(), "{sync:?}");
    assert_eq!(sync.version, Some(Version(2)), "the cleared key stays, at its next version");
    assert_eq!(fx.raw_get(&fx.keys().path("sync")).await.as_deref(), Some("{}"));
    // A CAS on a missing key fails; a plain write creates it.
    let k = fx.keys();
    fx.raw.delete(&k.path("sync"), None).await.unwrap();
    assert_eq!(a.set_sync_state_value(&s1, Some(v2)).await.unwrap(), None);
    assert_eq!(fx.raw_get(&k.path("sync")).await, None);
}

/// Re-invoked by `ephemeral_leader_key_vanishes_within_ttl_after_the_holder_is_killed` as a separate
/// process (it is ignored in normal runs): takes the leader lock and keeps it until killed.
#[tokio::test]
#[ignore = "helper process, started by another test"]
async fn lock_holder_child_process() {
    let (Ok(hosts), Ok(scope)) = (std::env::var("PRAETOR_ZK_HOSTS"), std::env::var("PRAETOR_ZK_SCOPE"))
    else {
        panic!("run by ephemeral_leader_key_vanishes_within_ttl_after_the_holder_is_killed only");
    };
    let cfg = ZooKeeperConfig { hosts: vec![hosts], ..Default::default() };
    let dcs = ZooKeeperDcs::new(params(&scope, "holder", TTL), &cfg).expect("client");
    assert!(dcs.touch_member(&member_json("holder", 5432)).await.expect("touch_member"));
    assert!(dcs.attempt_to_acquire_leader().await.expect("acquire"), "the lock is free");
    let session = dcs.session_id().expect("a session");
    println!("PRAETOR_ZK_HOLDER_READY session={session}");
    loop {
        // Like a leader's HA loop.
        let _ = dcs.update_leader(None).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

// ZooKeeper liveness: the ephemeral owner's session ends `ttl` after its process stopped talking
// (P:dcs/zookeeper.py: session timeout = ttl, leader and members are ephemeral).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_leader_key_vanishes_within_ttl_after_the_holder_is_killed() {
    init_logging();
    let Some(fx) = ZkFixture::new().await else { return };
    let dir = TestDir::new("zk-holder");
    let log = dir.join("holder.log");
    let exe = std::env::current_exe().expect("test binary path");
    let mut cmd = std::process::Command::new(exe);
    cmd.args([
        "--exact",
        "zookeeper::lock_holder_child_process",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("PRAETOR_ZK_HOSTS", fx.server.host())
    .env("PRAETOR_ZK_SCOPE", fx.scope());
    let mut holder = ChildGuard::spawn("lock holder", &mut cmd, &log);
    let ready = wait_for(Duration::from_secs(30), || async {
        std::fs::read_to_string(&log).is_ok_and(|s| s.contains("PRAETOR_ZK_HOLDER_READY"))
    })
    .await;
    assert!(ready, "holder did not take the lock\n{}", holder.log_tail(4000));
    let text = std::fs::read_to_string(&log).unwrap();
    let session: i64 = text
        .split("PRAETOR_ZK_HOLDER_READY session=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .expect("session id in the holder's output");

    let k = fx.keys();
    let (value, _, owner) = zks::raw_get(&fx.raw, &k.path("leader")).await.expect("leader znode");
    assert_eq!((value.as_str(), owner), ("holder", session), "ephemeral, owned by the holder's session");
    let watcher = fx.client("watcher", TTL).await;
    let c = watcher.load_cluster().await.unwrap();
    assert_eq!(c.leader.as_ref().map(|l| l.name.as_str()), Some("holder"));
    assert_eq!(c.leader.as_ref().and_then(|l| l.owner.clone()), Some(session.to_string()));

    holder.kill();
    let killed = Instant::now();
    tokio::time::sleep(TTL / 2).await;
    assert!(zks::raw_get(&fx.raw, &k.path("leader")).await.is_some(), "gone before ttl");
    let gone = wait_for(TTL + Duration::from_secs(5), || async {
        zks::raw_get(&fx.raw, &k.path("leader")).await.is_none()
    })
    .await;
    let took = killed.elapsed();
    assert!(gone, "leader key still there {took:?} after the holder was killed");
    // Expiry is checked once per tick; allow for our polling and the request.
    assert!(took <= TTL + TICK + Duration::from_millis(400), "leader key outlived ttl + tick: {took:?}");
    assert!(zks::raw_get(&fx.raw, &k.member("holder")).await.is_none(), "member key went with the session");
    assert!(watcher.attempt_to_acquire_leader().await.unwrap(), "the freed lock can be taken");
}

/// A TCP forwarder in front of the test server that can cut the connection (a network partition).
struct Proxy {
    port: u16,
    blocked: Arc<AtomicBool>,
    conns: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(target: u16) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let blocked = Arc::new(AtomicBool::new(false));
        let conns: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (b, c) = (blocked.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if b.load(Ordering::SeqCst) {
                    continue; // dropped: connection refused, in effect
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                c.lock().unwrap().push(task.abort_handle());
            }
        });
        Proxy { port, blocked, conns, accept }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Cut every connection and refuse new ones.
    fn block(&self) {
        self.blocked.store(true, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    fn unblock(&self) {
        self.blocked.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.block();
        self.accept.abort();
    }
}

// The leader must learn that it lost the lock when its session expired (PATRONI-COMPAT §2.4), and the
// backend must carry on with a new session, without an agent restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_session_expired_reports_the_lock_lost_and_gets_a_new_session() {
    init_logging();
    let Some(fx) = ZkFixture::new().await else { return };
    let proxy = Proxy::start(fx.server.port()).await;
    let cfg = ZooKeeperConfig { hosts: vec![proxy.host()], ..Default::default() };
    let leader = ZooKeeperDcs::new(params(&fx.scope(), "a", TTL), &cfg).unwrap();
    let other = fx.client("b", TTL).await;
    assert!(leader.touch_member(&member_json("a", 5432)).await.unwrap());
    assert!(leader.attempt_to_acquire_leader().await.unwrap());
    let old_session = leader.session_id().expect("session");
    assert!(leader.update_leader(None).await.unwrap());

    // Partition the leader from ZooKeeper.
    proxy.block();
    let t = Instant::now();
    let r = leader.update_leader(None).await;
    assert!(matches!(r, Err(DcsError::Unavailable(_))), "during the partition: {r:?}");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "update_leader must give up within retry_timeout: {:?}",
        t.elapsed()
    );

    // The server expires the session after ttl: the lock is free, another member takes it.
    let freed = wait_for(TTL + Duration::from_secs(5), || async {
        other.load_cluster().await.map(|c| c.leader.is_none()).unwrap_or(false)
    })
    .await;
    assert!(freed, "the partitioned leader's key did not expire");
    assert!(other.load_cluster().await.unwrap().member("a").is_none(), "its member key expired too");
    assert!(other.attempt_to_acquire_leader().await.unwrap());

    // Heal: the old leader is told it lost the lock, and keeps working on a new session.
    proxy.unblock();
    let r = leader.update_leader(None).await;
    assert!(matches!(r, Ok(false) | Err(DcsError::SessionExpired)), "after expiry: {r:?}");
    let again =
        wait_for(Duration::from_secs(10), || async { matches!(leader.update_leader(None).await, Ok(false)) })
            .await;
    assert!(again, "update_leader keeps reporting the lock lost once reconnected");
    assert!(leader.touch_member(&member_json("a", 5432)).await.unwrap(), "works again without a restart");
    let new_session = leader.session_id().expect("a new session");
    assert_ne!(new_session, old_session);
    let c = other.load_cluster().await.unwrap();
    assert_eq!(c.leader.as_ref().map(|l| l.name.as_str()), Some("b"));
    assert_eq!(c.member("a").and_then(|m| m.owner.clone()), Some(new_session.to_string()));
    assert!(!leader.attempt_to_acquire_leader().await.unwrap(), "b holds it");
}

// A session outlives a connection: with several `hosts`, the client moves to the next server and
// keeps its ephemeral keys (kazoo does the same for Patroni).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_survives_a_dead_server_in_the_hosts_list() {
    init_logging();
    let Some(fx) = ZkFixture::new().await else { return };
    let p1 = Proxy::start(fx.server.port()).await;
    let p2 = Proxy::start(fx.server.port()).await;
    p2.block();
    // A dead host first, then the two "servers" (proxies to the one real server).
    let dead = format!("127.0.0.1:{}", crate::support::free_port());
    let cfg = ZooKeeperConfig { hosts: vec![dead, p1.host(), p2.host()], ..Default::default() };
    let mut p = params(&fx.scope(), "a", Duration::from_secs(6));
    p.retry_timeout = Duration::from_secs(3);
    let a = ZooKeeperDcs::new(p, &cfg).unwrap();
    assert!(a.attempt_to_acquire_leader().await.unwrap(), "connected past the dead host");
    let session = a.session_id().unwrap();
    // p1 dies, p2 comes up.
    p2.unblock();
    p1.block();
    let moved =
        wait_for(Duration::from_secs(10), || async { matches!(a.update_leader(None).await, Ok(true)) }).await;
    assert!(moved, "could not continue on the other server");
    assert_eq!(a.session_id(), Some(session), "same session");
    let (_, _, owner) = zks::raw_get(&fx.raw, &fx.keys().path("leader")).await.expect("leader kept");
    assert_eq!(owner, session);
}

// Connecting is lazy: an unreachable ensemble is reported by each call within retry_timeout, and
// watch waits out its timeout instead of failing (P:dcs/zookeeper.py watch never raises).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_ensemble_fails_calls_within_retry_timeout() {
    init_logging();
    let nobody = format!("127.0.0.1:{}", crate::support::free_port());
    let cfg = ZooKeeperConfig { hosts: vec![nobody], ..Default::default() };
    let section = DcsSection::ZooKeeper(cfg);
    let dcs =
        praetor::dcs::factory::connect(&section, params("nowhere", "a", TTL)).await.expect("lazy connect");
    assert_eq!(dcs.backend(), "zookeeper");
    let t = Instant::now();
    let err = dcs.load_cluster().await.expect_err("nothing listens there");
    assert!(matches!(err, DcsError::Unavailable(_)), "{err}");
    assert!(t.elapsed() < Duration::from_secs(3), "gave up after {:?}", t.elapsed());
    let t = Instant::now();
    assert!(matches!(dcs.attempt_to_acquire_leader().await, Err(DcsError::Unavailable(_))));
    assert!(t.elapsed() < Duration::from_secs(3), "gave up after {:?}", t.elapsed());
    let t = Instant::now();
    assert!(!dcs.watch(None, Duration::from_millis(1500)).await.unwrap());
    assert!(
        t.elapsed() >= Duration::from_millis(1500) && t.elapsed() < Duration::from_secs(3),
        "{:?}",
        t.elapsed()
    );
}

// kazoo reads a `/chroot` suffix in the hosts string; Patroni passes `hosts` through unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chroot_in_hosts_puts_the_cluster_below_it() {
    init_logging();
    let Some(fx) = ZkFixture::new().await else { return };
    zks::raw_put(&fx.raw, "/tenants/a", "").await;
    let cfg =
        ZooKeeperConfig { hosts: vec![format!("{}/tenants/a", fx.server.host())], ..Default::default() };
    let a = fx.client_with(params(&fx.scope(), "a", TTL), cfg).await;
    assert!(a.attempt_to_acquire_leader().await.unwrap());
    assert!(a.set_config_value("{}", None).await.unwrap());
    let c = a.load_cluster().await.unwrap();
    assert_eq!(c.leader.map(|l| l.name).as_deref(), Some("a"));
    let base = format!("/tenants/a/service/{}", fx.scope());
    assert_eq!(
        zks::raw_get(&fx.raw, &format!("{base}/leader")).await.map(|(v, _, _)| v).as_deref(),
        Some("a")
    );
    assert_eq!(zks::raw_get(&fx.raw, &fx.keys().path("leader")).await, None, "nothing outside the chroot");
}

// P:dcs/zookeeper.py set_ttl: a new session timeout needs a new session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_ttl_restarts_the_session() {
    init_logging();
    let Some(fx) = ZkFixture::new().await else { return };
    let a = fx.direct("a", TTL);
    assert!(a.touch_member(&member_json("a", 5432)).await.unwrap());
    assert!(a.attempt_to_acquire_leader().await.unwrap());
    let s1 = a.session_id().unwrap();
    // Same ttl: nothing happens.
    a.set_timing(TTL, Duration::from_secs(2), Duration::from_secs(2)).await.unwrap();
    assert_eq!(a.session_id(), Some(s1));
    assert!(a.update_leader(None).await.unwrap());
    // New ttl: a new session; the old one's ephemerals are gone.
    a.set_timing(Duration::from_secs(5), Duration::from_secs(1), Duration::from_secs(1)).await.unwrap();
    let c = a.load_cluster().await.unwrap();
    assert!(c.leader.is_none() && c.members.is_empty(), "{c:?}");
    assert_ne!(a.session_id(), Some(s1));
    assert!(!a.update_leader(None).await.unwrap(), "the lock went with the old session");
    assert!(a.attempt_to_acquire_leader().await.unwrap());
}

// P:dcs/zookeeper.py _delete_leader: `self._client.restart()`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voluntary_release_restarts_the_session_like_patroni() {
    init_logging();
    let Some(fx) = ZkFixture::new().await else { return };
    let a = fx.direct("a", TTL);
    assert!(a.touch_member(&member_json("a", 5432)).await.unwrap());
    assert!(a.attempt_to_acquire_leader().await.unwrap());
    let s1 = a.session_id().unwrap();
    assert!(a.delete_leader(None).await.unwrap());
    let k = fx.keys();
    assert_eq!(zks::raw_get(&fx.raw, &k.path("leader")).await, None);
    assert_eq!(zks::raw_get(&fx.raw, &k.member("a")).await, None, "the member key goes too");
    assert!(a.touch_member(&member_json("a", 5432)).await.unwrap(), "and comes back on the next touch");
    let (_, _, owner) = zks::raw_get(&fx.raw, &k.member("a")).await.unwrap();
    assert_ne!(owner, s1);
    assert_eq!(Some(owner), a.session_id());
}

// Raw layout: what Patroni and patronictl read (PATRONI-COMPAT §2.2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_znodes_have_patroni_layout_and_values() {
    init_logging();
    let Some(fx) = ZkFixture::new().await else { return };
    let a = fx.direct("pg0", Duration::from_secs(30));
    let member = member_json("pg0", 5432);
    assert!(a.initialize(true, "").await.unwrap());
    assert!(a.initialize(false, "7710780543994972159").await.unwrap());
    assert!(a.set_config_value(r#"{"ttl":30,"loop_wait":10}"#, None).await.unwrap());
    assert!(a.touch_member(&member).await.unwrap());
    assert!(a.attempt_to_acquire_leader().await.unwrap());
    let status =
        Status { optime: Some(50615840), slots: None, retain_slots: Some(vec!["pg0".into()]) }.to_json();
    assert!(a.write_status(&status).await.unwrap());
    assert!(a.write_failsafe(r#"{"pg0":"http://127.0.0.1:8008/patroni"}"#).await.unwrap());
    assert!(
        a.set_sync_state_value(&SyncState::to_json("pg0", &["pg1".into()], 0), None).await.unwrap().is_some()
    );
    assert!(a.set_failover_value(r#"{"leader":"pg0","member":"pg1"}"#, None).await.unwrap());
    let history = HistoryLine {
        timeline: 1,
        lsn: 50615840,
        reason: "no recovery target specified".into(),
        timestamp: Some("2026-11-22T00:09:20.586348+00:00".into()),
        new_leader: Some("pg0".into()),
    };
    assert!(a.set_history_value(&praetor::dcs::model::History::to_json(&[history])).await.unwrap());
    let session = a.session_id().unwrap();

    let base = format!("/service/{}", fx.scope());
    let mut names = fx.raw.list_children(&base).await.unwrap();
    names.sort();
    assert_eq!(
        names,
        ["config", "failover", "failsafe", "history", "initialize", "leader", "members", "status", "sync"],
        "no other znodes"
    );
    let expect: [(&str, &str, bool); 10] = [
        ("initialize", "7710780543994972159", false),
        ("config", r#"{"ttl":30,"loop_wait":10}"#, false),
        ("leader", "pg0", true),
        ("members/pg0", &member, true),
        ("status", r#"{"optime":50615840,"retain_slots":["pg0"]}"#, false),
        ("failsafe", r#"{"pg0":"http://127.0.0.1:8008/patroni"}"#, false),
        ("sync", r#"{"leader":"pg0","quorum":0,"sync_standby":"pg1"}"#, false),
        ("failover", r#"{"leader":"pg0","member":"pg1"}"#, false),
        (
            "history",
            r#"[[1,50615840,"no recovery target specified","2026-11-22T00:09:20.586348+00:00","pg0"]]"#,
            false,
        ),
        ("members", "", false),
    ];
    for (key, value, ephemeral) in expect {
        let (v, _, owner) =
            zks::raw_get(&fx.raw, &format!("{base}/{key}")).await.unwrap_or_else(|| panic!("{key} missing"));
        assert_eq!(v, value, "{key}");
        assert_eq!(owner, if ephemeral { session } else { 0 }, "{key}: ephemeral owner");
    }
}

// kazoo `auth_data` (P:dcs/zookeeper.py: `auth_data=list(config.get('auth_data', {}).items())`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_data_is_presented_to_the_server() {
    init_logging();
    let Some(fx) = ZkFixture::new().await else { return };
    let k = fx.keys();
    // Another tool, authenticated as digest user `praetor`, creates `config` readable by that user only.
    let owner = zk::Client::connector()
        .with_auth("digest", b"praetor:secret")
        .connect(&fx.server.host())
        .await
        .unwrap();
    owner
        .mkdir(
            &k.prefix()[..k.prefix().len() - 1],
            &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()),
        )
        .await
        .unwrap();
    owner
        .create(
            &k.path("config"),
            br#"{"ttl":30}"#,
            &zk::CreateMode::Persistent.with_acls(zk::Acls::creator_all()),
        )
        .await
        .unwrap();

    let auth: serde_yaml_ng::Value = serde_yaml_ng::from_str("digest: 'praetor:secret'").unwrap();
    let cfg = ZooKeeperConfig { hosts: fx.server.hosts(), auth_data: Some(auth), ..Default::default() };
    let with_auth = fx.client_with(params(&fx.scope(), "a", TTL), cfg).await;
    let c = with_auth.load_cluster().await.expect("authenticated read");
    assert_eq!(c.config.unwrap().data.get("ttl"), Some(&json!(30)));

    let without = fx.client("b", TTL).await;
    let err = without.load_cluster().await.expect_err("config is not readable without auth");
    assert!(matches!(err, DcsError::Backend { .. }), "{err}");
}

// kazoo `default_acl` from `set_acls` (P:dcs/zookeeper.py: x509 ACLs for every created znode).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_acls_are_applied_to_created_znodes() {
    init_logging();
    let Some(fx) = ZkFixture::new().await else { return };
    // Over plain TCP our session has no x509 identity, so below an x509-only directory it cannot create
    // anything (ZooKeeper enforces that). An admin makes the cluster directory world-writable first.
    let admin = fx.server.super_client().await;
    let base = format!("/service/{}", fx.scope());
    admin.mkdir(&base, &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())).await.expect("mkdir");
    let acls: serde_yaml_ng::Value =
        serde_yaml_ng::from_str("'CN=admin': [ALL]\n'CN=reader': [read]").unwrap();
    let cfg = ZooKeeperConfig { hosts: fx.server.hosts(), set_acls: Some(acls), ..Default::default() };
    let a = fx.client_with(params(&fx.scope(), "a", TTL), cfg).await;
    assert!(a.set_config_value("{}", None).await.unwrap());
    let expected = [
        ("x509".to_string(), "CN=admin".to_string(), zk::Permission::ALL),
        ("x509".to_string(), "CN=reader".to_string(), zk::Permission::READ),
    ];
    let acl_of = |path: String| {
        let admin = &admin;
        async move {
            let (acl, _) = admin.get_acl(&path).await.expect("get acl");
            let mut got: Vec<(String, String, zk::Permission)> =
                acl.iter().map(|a| (a.scheme().to_string(), a.id().to_string(), a.permission())).collect();
            got.sort_by(|x, y| x.1.cmp(&y.1));
            got
        }
    };
    assert_eq!(acl_of(fx.keys().path("config")).await, expected);
    // Nobody without a matching client certificate may read it.
    assert_eq!(fx.raw.get_data(&fx.keys().path("config")).await.expect_err("x509 ACL"), zk::Error::NoAuth);
    // A parent created on the way (kazoo's makepath) carries them too, so the member znode below it
    // cannot be created without the x509 identity: a clear error, not a hang.
    let err = a.touch_member(&member_json("a", 5432)).await.expect_err("no CREATE right on members/");
    assert!(err.to_string().contains("member"), "{err}");
    assert_eq!(acl_of(format!("{base}/members")).await, expected);
}

// kazoo TLS options (P:dcs/zookeeper.py: use_ssl, verify → verify_certs, cacert → ca, cert, key) and
// x509 `set_acls` with the client certificate's identity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_client_certificate_and_x509_acls() {
    init_logging();
    let Some(server) = ZooKeeperServer::start_tls().await else { return };
    let tls = server.tls().expect("tls files");
    let scope = unique_scope("zk-tls");
    let acls: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&format!("'{}': [ALL]", zks::TlsFiles::CLIENT_SUBJECT)).unwrap();
    let section = |verify: Option<bool>, with_cert: bool| ZooKeeperConfig {
        hosts: vec![tls.host()],
        use_ssl: Some(true),
        cacert: Some(tls.ca.clone()),
        cert: with_cert.then(|| tls.client_cert.clone()),
        key: with_cert.then(|| tls.client_key.clone()),
        verify,
        set_acls: Some(acls.clone()),
        ..Default::default()
    };
    let connect = |cfg: ZooKeeperConfig| {
        let scope = scope.clone();
        async move {
            praetor::dcs::factory::connect(&DcsSection::ZooKeeper(cfg), params(&scope, "a", TTL))
                .await
                .expect("client")
        }
    };

    // The server certificate names zk.praetor.test, not 127.0.0.1: verification refuses it.
    let strict = connect(section(None, true)).await;
    let err = strict.load_cluster().await.expect_err("host name mismatch");
    assert!(matches!(err, DcsError::Unavailable(_)), "{err}");
    // Without a client certificate the server (ssl.clientAuth=need) refuses us.
    let anonymous = connect(section(Some(false), false)).await;
    assert!(matches!(anonymous.load_cluster().await, Err(DcsError::Unavailable(_))));

    // verify: false skips the host name check (the chain is still checked against cacert).
    let a = connect(section(Some(false), true)).await;
    assert!(a.touch_member(&member_json("a", 5432)).await.unwrap());
    assert!(a.attempt_to_acquire_leader().await.unwrap());
    assert!(a.set_config_value(r#"{"ttl":30}"#, None).await.unwrap());
    let c = a.load_cluster().await.unwrap();
    assert_eq!(c.leader.map(|l| l.name).as_deref(), Some("a"));
    assert_eq!(c.config.unwrap().data.get("ttl"), Some(&json!(30)));

    // Everything it created belongs to its certificate's identity only.
    let admin = server.super_client().await;
    for path in
        [format!("/service/{scope}"), format!("/service/{scope}/config"), format!("/service/{scope}/leader")]
    {
        let (acl, _) = admin.get_acl(&path).await.expect("get acl");
        let got: Vec<(&str, &str, zk::Permission)> =
            acl.iter().map(|a| (a.scheme(), a.id(), a.permission())).collect();
        assert_eq!(got, [("x509", zks::TlsFiles::CLIENT_SUBJECT, zk::Permission::ALL)], "{path}");
    }
    let plain = server.client().await;
    assert_eq!(
        plain.get_data(&format!("/service/{scope}/config")).await.expect_err("x509 only"),
        zk::Error::NoAuth
    );
}

// --- Patroni 4.1.5 interop -------------------------------------------------------------------------

const FIXTURE: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/zookeeper/patroni-4.1.5-znodes.json");

/// Raw entries from a `{key: {value, version, ephemeral}}` dump, the ephemeral ones owned by `session`.
fn entries_from_dump(znodes: &Value, session: i64) -> Vec<RawEntry> {
    znodes
        .as_object()
        .expect("znodes object")
        .iter()
        .map(|(key, z)| RawEntry {
            key: key.clone(),
            value: z["value"].as_str().expect("value").to_string(),
            version: Version(z["version"].as_i64().expect("version")),
            owner: z["ephemeral"].as_bool().expect("ephemeral").then(|| session.to_string()),
        })
        .collect()
}

/// What Patroni 4.1.5 wrote as leader `pg0` (`patroni_zk.py write`), as praetor must read it.
fn assert_patroni_cluster(c: &Cluster, session: i64) {
    assert_eq!(c.initialize.as_deref(), Some("7710780543994972159"));
    let cfg = c.config.as_ref().expect("config");
    assert_eq!(cfg.data.get("ttl"), Some(&json!(30)));
    assert_eq!(cfg.data["postgresql"]["parameters"]["wal_log_hints"], json!("on"));
    let l = c.leader.as_ref().expect("leader");
    assert_eq!(l.name, "pg0");
    assert_eq!(l.owner, Some(session.to_string()));
    assert_eq!(c.members.len(), 1);
    let m = c.member("pg0").expect("member pg0");
    assert_eq!(m.owner, Some(session.to_string()));
    assert_eq!(m.data.conn_host_port(), Some(("127.0.0.1".into(), 45430)));
    assert_eq!(m.data.api_url, "http://127.0.0.1:48000/patroni");
    assert_eq!(m.data.role, praetor::types::Role::parse("primary"));
    assert_eq!(m.data.xlog_location, Some(50615840));
    assert_eq!(m.data.timeline, Some(1));
    assert!(m.data.tag_bool("clonefrom") && !m.data.tag_bool("nofailover"));
    assert_eq!(c.leader_member().map(|m| m.name.as_str()), Some("pg0"));
    assert_eq!(c.status.optime, Some(50615840));
    assert_eq!(c.status.slots.as_ref().map(|s| s.len()), Some(2));
    assert_eq!(c.status.retain_slots.as_deref(), Some(&["pg0".to_string()][..]));
    assert_eq!(c.sync.leader.as_deref(), Some("pg0"));
    assert_eq!(c.sync.members(), ["pg1"]);
    assert_eq!(c.sync.version, Some(Version(0)));
    let f = c.failover.as_ref().expect("failover");
    assert_eq!((f.leader.as_deref(), f.member.as_deref()), (Some("pg0"), Some("pg1")));
    let h = c.history.as_ref().expect("history");
    assert_eq!(h.lines.len(), 1);
    assert_eq!(h.lines[0].new_leader.as_deref(), Some("pg0"));
    assert_eq!(c.timeline(), 2);
    let fs = c.failsafe.as_ref().expect("failsafe");
    assert_eq!(fs.get("pg1").map(String::as_str), Some("http://127.0.0.1:48001/patroni"));
}

#[test]
fn recorded_patroni_znodes_parse_into_the_cluster() {
    let text = std::fs::read_to_string(FIXTURE).expect("fixture");
    let doc: Value = serde_json::from_str(&text).expect("fixture JSON");
    let session = doc["session"].as_i64().expect("session");
    let (c, warnings) = Cluster::from_entries(entries_from_dump(&doc["znodes"], session));
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_patroni_cluster(&c, session);
    // And praetor writes the member value back byte for byte.
    let raw = doc["znodes"]["members/pg0"]["value"].as_str().unwrap();
    assert_eq!(MemberData::parse(raw).unwrap().to_json(), raw);
}

/// Patroni's ZooKeeper class, writing as leader `pg0`; alive (with its session) until dropped.
struct PatroniWriter {
    child: std::process::Child,
    session: i64,
    znodes: Value,
}

impl PatroniWriter {
    fn start(python: &std::path::Path, hosts: &str, scope: &str) -> PatroniWriter {
        use std::io::BufRead;
        let mut child = std::process::Command::new(python)
            .arg(zks::patroni_script())
            .args(["write", hosts, scope])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("run the Patroni script");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) if !l.trim().is_empty() => l,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the Patroni writer printed nothing: {other:?}");
            }
        };
        let out: Value = serde_json::from_str(&line).expect("writer JSON");
        PatroniWriter {
            child,
            session: out["session"].as_i64().expect("session"),
            znodes: out["znodes"].clone(),
        }
    }
}

impl Drop for PatroniWriter {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn patroni_read(python: &std::path::Path, hosts: &str, scope: &str) -> Value {
    let out = std::process::Command::new(python)
        .arg(zks::patroni_script())
        .args(["read", hosts, scope])
        .output()
        .expect("run the Patroni script");
    assert!(out.status.success(), "Patroni read failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("reader JSON")
}

// Interop: Patroni 4.1.5 (real, PyPI) writes, praetor reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn znodes_written_by_patroni_are_read_correctly() {
    init_logging();
    let Some(fx) = ZkFixture::new().await else { return };
    let Some(python) = tokio::task::spawn_blocking(zks::patroni_python).await.unwrap() else { return };
    let (py, host, scope) = (python.clone(), fx.server.host(), fx.scope());
    let writer = tokio::task::spawn_blocking(move || PatroniWriter::start(&py, &host, &scope)).await.unwrap();

    let reader = fx.client("praetor", TTL).await;
    let c = reader.load_cluster().await.unwrap();
    assert_patroni_cluster(&c, writer.session);

    // What Patroni stored is what the recorded fixture holds (versions and all).
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(FIXTURE).unwrap()).unwrap();
    assert_eq!(writer.znodes, doc["znodes"], "Patroni 4.1.5 writes what the fixture recorded");

    // praetor works on Patroni's keys: CAS on the version Patroni left, a leader race it must lose.
    let cfg_version = c.config.as_ref().unwrap().version;
    assert!(
        reader
            .set_config_value(r#"{"ttl":30,"loop_wait":10,"retry_timeout":10}"#, Some(cfg_version))
            .await
            .unwrap()
    );
    assert!(!reader.attempt_to_acquire_leader().await.unwrap(), "Patroni holds the lock");
    let praetor_cluster = reader.load_cluster().await.unwrap();
    let f = praetor_cluster.failover.clone().unwrap();
    assert!(reader.set_failover_value("{}", f.version).await.unwrap());

    // Patroni sees praetor's writes.
    let (py, host, scope) = (python.clone(), fx.server.host(), fx.scope());
    let seen = tokio::task::spawn_blocking(move || patroni_read(&py, &host, &scope)).await.unwrap();
    assert_eq!(seen["config"]["data"], json!({"ttl":30,"loop_wait":10,"retry_timeout":10}));
    assert_eq!(seen["config"]["version"], json!(1));
    assert_eq!(seen["failover"], Value::Null, "`{{}}` reads as no failover in Patroni too");
    assert_eq!(seen["leader"]["name"], json!("pg0"));

    // When Patroni's process goes, its session and ephemerals go with it.
    drop(writer);
    let gone = wait_for(Duration::from_secs(40), || async {
        reader.load_cluster().await.map(|c| c.leader.is_none() && c.members.is_empty()).unwrap_or(false)
    })
    .await;
    assert!(gone, "Patroni's ephemerals outlived its session");
    assert!(reader.attempt_to_acquire_leader().await.unwrap());
}

// Interop: praetor writes, Patroni 4.1.5's get_cluster() reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn znodes_written_by_praetor_are_read_correctly_by_patroni() {
    init_logging();
    let Some(fx) = ZkFixture::new().await else { return };
    let Some(python) = tokio::task::spawn_blocking(zks::patroni_python).await.unwrap() else { return };
    let a = fx.direct("pg0", Duration::from_secs(30));
    let member = r#"{"conn_url":"postgres://127.0.0.1:5432/postgres","api_url":"http://127.0.0.1:8008/patroni","state":"running","role":"primary","version":"4.1.5","xlog_location":67395656,"timeline":3,"tags":{"nosync":true}}"#;
    assert!(a.initialize(true, "").await.unwrap());
    assert!(a.initialize(false, "7277694203142172922").await.unwrap());
    assert!(a.set_config_value(r#"{"ttl":30,"loop_wait":10,"synchronous_mode":true}"#, None).await.unwrap());
    assert!(a.touch_member(member).await.unwrap());
    assert!(a.attempt_to_acquire_leader().await.unwrap());
    let status = Status {
        optime: Some(67395656),
        slots: Some([("pg1".to_string(), 67395656u64)].into_iter().collect()),
        retain_slots: Some(vec!["pg0".into(), "pg1".into()]),
    };
    assert!(a.write_status(&status.to_json()).await.unwrap());
    assert!(a.write_failsafe(r#"{"pg0":"http://127.0.0.1:8008/patroni"}"#).await.unwrap());
    let v = a
        .set_sync_state_value(&SyncState::to_json("pg0", &["pg2".into(), "pg1".into()], 0), None)
        .await
        .unwrap();
    assert!(v.is_some());
    assert!(
        a.set_failover_value(
            r#"{"leader":"pg0","member":"pg1","scheduled_at":"2026-09-01T10:00:00+00:00"}"#,
            None
        )
        .await
        .unwrap()
    );
    assert!(a.set_history_value(r#"[[1,24392648,"no recovery target specified","2023-09-11T22:11:27.125527+00:00","pg0"],[2,50615840,"no recovery target specified"]]"#).await.unwrap());
    let session = a.session_id().unwrap();

    let (py, host, scope) = (python.clone(), fx.server.host(), fx.scope());
    let seen = tokio::task::spawn_blocking(move || patroni_read(&py, &host, &scope)).await.unwrap();
    assert_eq!(seen["initialize"], json!("7277694203142172922"));
    assert_eq!(seen["config"]["data"], json!({"ttl":30,"loop_wait":10,"synchronous_mode":true}));
    assert_eq!(seen["config"]["version"], json!(0));
    assert_eq!(seen["leader"], json!({"name": "pg0", "session": session, "version": 0}));
    let members = seen["members"].as_array().unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0]["name"], json!("pg0"));
    assert_eq!(members[0]["session"], json!(session));
    assert_eq!(members[0]["data"], serde_json::from_str::<Value>(member).unwrap());
    assert_eq!(
        seen["status"],
        json!({"last_lsn": 67395656, "slots": {"pg1": 67395656}, "retain_slots": ["pg0", "pg1"]})
    );
    assert_eq!(seen["failsafe"], json!({"pg0": "http://127.0.0.1:8008/patroni"}));
    assert_eq!(seen["sync"]["leader"], json!("pg0"));
    assert_eq!(seen["sync"]["sync_standby"], json!("pg1,pg2"));
    assert_eq!(seen["sync"]["voters"], json!(["pg1", "pg2"]));
    assert_eq!(seen["sync"]["version"], json!(0));
    assert_eq!(seen["failover"]["leader"], json!("pg0"));
    assert_eq!(seen["failover"]["candidate"], json!("pg1"));
    assert_eq!(seen["failover"]["scheduled_at"], json!("2026-09-01T10:00:00+00:00"));
    assert_eq!(
        seen["history"],
        json!([
            [1, 24392648, "no recovery target specified", "2023-09-11T22:11:27.125527+00:00", "pg0"],
            [2, 50615840, "no recovery target specified"]
        ])
    );

    // Cleared sync (`{}`) and released lock, as Patroni sees them.
    assert!(a.delete_sync_state(v).await.unwrap());
    assert!(a.delete_leader(None).await.unwrap());
    let (py, host, scope) = (python.clone(), fx.server.host(), fx.scope());
    let seen = tokio::task::spawn_blocking(move || patroni_read(&py, &host, &scope)).await.unwrap();
    assert_eq!(seen["sync"]["leader"], Value::Null);
    assert_eq!(seen["sync"]["voters"], json!([]));
    assert_eq!(seen["leader"], Value::Null);
    assert_eq!(seen["members"], json!([]), "the session restart dropped the member key, as in Patroni");
}

/// praetor's own agents on a real ZooKeeper: three nodes bootstrap, an unplanned failover when the
/// leader dies (its session expires after `ttl`), and a switchover through the `failover` key
/// (PATRONI-COMPAT §6.2–§6.5). Serial: the path contains `cluster::`.
mod cluster {
    use crate::support::agents::{AgentCluster, BoxFut, Store};
    use crate::support::zookeeper::{ZooKeeperServer, raw_get, raw_put};
    use std::time::Duration;

    struct Zk {
        server: ZooKeeperServer,
        client: zookeeper_client::Client,
    }

    impl Store for Zk {
        fn yaml(&self) -> String {
            format!("zookeeper:\n  hosts:\n    - {}\n", self.server.host())
        }
        fn leader(&self, scope: &str) -> BoxFut<'_, Option<String>> {
            let path = format!("/service/{scope}/leader");
            Box::pin(async move { raw_get(&self.client, &path).await.map(|(v, _, _)| v) })
        }
        fn put_failover(&self, scope: &str, value: String) -> BoxFut<'_, ()> {
            let path = format!("/service/{scope}/failover");
            Box::pin(async move { raw_put(&self.client, &path, &value).await })
        }
        fn failover(&self, scope: &str) -> BoxFut<'_, Option<String>> {
            let path = format!("/service/{scope}/failover");
            Box::pin(async move { raw_get(&self.client, &path).await.map(|(v, _, _)| v) })
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn praetor_bootstraps_fails_over_and_switches_over_on_zookeeper() {
        let Some(server) = ZooKeeperServer::start().await else { return };
        let client = server.client().await;
        let zk = Zk { server, client };
        let Some(mut c) = AgentCluster::start("hazk", &zk) else { return };
        let leader = c.wait_healthy(&zk, Duration::from_secs(120)).await;
        // The leader znode is ephemeral, owned by the leader's session.
        let (name, _, owner) = raw_get(&zk.client, "/service/hazk/leader").await.expect("leader znode");
        assert_eq!(name, c.nodes[leader].name);
        assert_ne!(owner, 0, "the leader znode must be ephemeral");

        let (new_leader, took) = c.fail_over(&zk, leader).await;
        // The ephemeral key only goes when the dead agent's session expires (ttl).
        assert!(took >= Duration::from_secs(3), "failover before the session could expire: {took:?}");
        let cand = (0..3).find(|i| *i != leader && *i != new_leader).expect("a third node");
        c.switch_over(&zk, new_leader, cand).await;
        c.stop_all();
    }
}
