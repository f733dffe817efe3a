//! etcd v3 backend beyond the shared contract (`dcs_contract.rs`): Patroni's exact raw layout read
//! back with a plain etcd client, the one-lease-per-agent model, the watch's guarantees, timeouts,
//! authentication and failover between etcd members.

use crate::dcs_contract::{EtcdFixture, Fixture, params};
use crate::support::init_logging;
use praetor::dcs::model::{Failover, History, HistoryLine, MemberData, Status, SyncState};
use praetor::dcs::{Dcs, DcsError, DcsParams};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

// Values captured from a live Patroni 4.1.5 cluster on etcd 3.4 (PATRONI-COMPAT §2.2).
const CONFIG: &str = r#"{"ttl":30,"loop_wait":10,"retry_timeout":10,"maximum_lag_on_failover":1048576,"postgresql":{"use_pg_rewind":true,"parameters":{"wal_log_hints":"on"}}}"#;
const MEMBER_PG1: &str = r#"{"conn_url":"postgres://127.0.0.1:45431/postgres","api_url":"http://127.0.0.1:48001/patroni","state":"running","role":"replica","version":"4.1.5","xlog_location":50615840,"replay_lsn":50615840,"receive_lsn":50615840,"replication_state":"streaming","timeline":1}"#;
const STATUS: &str =
    r#"{"optime":50615840,"slots":{"pg0":50615840,"pg1":50615840},"retain_slots":["pg0","pg1"]}"#;
const HISTORY: &str =
    r#"[[1,50615840,"no recovery target specified","2026-11-22T00:09:20.586348+00:00","pg1"]]"#;
const SYSID: &str = "7710780543994972159";

/// Every key under the prefix: relative key → (value, lease).
async fn raw_cluster(fx: &EtcdFixture) -> BTreeMap<String, (String, i64)> {
    let prefix = fx.keys().prefix().to_string();
    let r = fx
        .raw
        .clone()
        .get(prefix.clone(), Some(etcd_client::GetOptions::new().with_prefix()))
        .await
        .expect("raw range");
    r.kvs()
        .iter()
        .map(|kv| {
            let k = String::from_utf8_lossy(kv.key()).into_owned();
            (k[prefix.len()..].to_string(), (String::from_utf8_lossy(kv.value()).into_owned(), kv.lease()))
        })
        .collect()
}

async fn granted_ttl(fx: &EtcdFixture, lease: i64) -> (i64, i64) {
    let r = fx.raw.clone().lease_time_to_live(lease, None).await.expect("lease ttl");
    (r.granted_ttl(), r.ttl())
}

fn p(fx: &EtcdFixture, name: &str, ttl: u64) -> DcsParams {
    params(&fx.scope(), name, Duration::from_secs(ttl))
}

#[tokio::test]
async fn raw_keys_have_patronis_exact_layout_and_values() {
    init_logging();
    let Some(fx) = EtcdFixture::new().await else { return };
    let pg0 = fx.client_with(p(&fx, "pg0", 10)).await;
    let pg1 = fx.client_with(p(&fx, "pg1", 10)).await;

    assert!(pg0.initialize(true, "").await.unwrap());
    assert_eq!(raw_cluster(&fx).await["initialize"].0, "", "bootstrap in progress is an empty string");
    assert!(pg0.initialize(false, SYSID).await.unwrap());
    assert!(pg0.set_config_value(CONFIG, None).await.unwrap());
    assert!(pg0.attempt_to_acquire_leader().await.unwrap());
    let mut m0 = MemberData::parse(MEMBER_PG1).unwrap();
    m0.conn_url = "postgres://127.0.0.1:45430/postgres".into();
    m0.role = praetor::types::Role::Primary;
    assert!(pg0.touch_member(&m0.to_json()).await.unwrap());
    assert!(pg1.touch_member(&MemberData::parse(MEMBER_PG1).unwrap().to_json()).await.unwrap());
    assert!(pg0.write_status(&Status::parse(STATUS).unwrap().to_json()).await.unwrap());
    let hist = vec![HistoryLine {
        timeline: 1,
        lsn: 50615840,
        reason: "no recovery target specified".into(),
        timestamp: Some("2026-11-22T00:09:20.586348+00:00".into()),
        new_leader: Some("pg1".into()),
    }];
    assert!(pg0.set_history_value(&History::to_json(&hist)).await.unwrap());
    assert!(
        pg0.set_sync_state_value(&SyncState::to_json("pg0", &["pg1".into()], 0), None)
            .await
            .unwrap()
            .is_some()
    );
    let f = Failover { leader: Some("pg0".into()), member: Some("pg1".into()), ..Default::default() };
    assert!(pg0.set_failover_value(&f.to_json(), None).await.unwrap());
    assert_eq!(raw_cluster(&fx).await["failover"].0, r#"{"leader":"pg0","member":"pg1"}"#);
    let v = pg0.load_cluster().await.unwrap().failover.unwrap().version;
    assert!(pg0.set_failover_value("{}", v).await.unwrap());
    assert!(pg0.write_failsafe(r#"{"pg0":"http://127.0.0.1:48000/patroni"}"#).await.unwrap());

    let raw = raw_cluster(&fx).await;
    let keys: Vec<&str> = raw.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "config",
            "failover",
            "failsafe",
            "history",
            "initialize",
            "leader",
            "members/pg0",
            "members/pg1",
            "status",
            "sync"
        ]
    );
    assert!(fx.keys().prefix().starts_with("/service/"), "Patroni's default namespace");
    let val = |k: &str| raw[k].0.as_str();
    assert_eq!(val("leader"), "pg0", "leader is the plain member name");
    assert_eq!(val("initialize"), SYSID, "initialize is the plain system identifier");
    assert_eq!(val("config"), CONFIG);
    assert_eq!(val("members/pg1"), MEMBER_PG1);
    assert_eq!(
        val("members/pg0"),
        MEMBER_PG1.replace("45431", "45430").replace(r#""role":"replica""#, r#""role":"primary""#)
    );
    assert_eq!(val("status"), STATUS);
    assert_eq!(val("history"), HISTORY);
    assert_eq!(val("sync"), r#"{"leader":"pg0","quorum":0,"sync_standby":"pg1"}"#);
    assert_eq!(val("failover"), "{}", "failover is cleared with an empty object");
    assert_eq!(val("failsafe"), r#"{"pg0":"http://127.0.0.1:48000/patroni"}"#);

    // One lease per agent, carrying its leader and member keys; everything else has none.
    let lease0 = raw["leader"].1;
    assert_ne!(lease0, 0, "leader key has a lease");
    assert_eq!(raw["members/pg0"].1, lease0, "pg0's member key shares pg0's lease");
    let lease1 = raw["members/pg1"].1;
    assert!(lease1 != 0 && lease1 != lease0, "pg1 has its own lease");
    for k in ["config", "failover", "failsafe", "history", "initialize", "status", "sync"] {
        assert_eq!(raw[k].1, 0, "{k} must not expire");
    }
    let (granted, left) = granted_ttl(&fx, lease0).await;
    assert_eq!(granted, 10, "lease TTL = ttl");
    assert!(left > 0 && left <= 10);
    // The owner the model reports is the lease id in decimal, as Patroni's JSON gateway shows it.
    let cl = pg1.load_cluster().await.unwrap();
    assert_eq!(cl.leader.unwrap().owner, Some(lease0.to_string()));
}

#[tokio::test]
async fn leader_and_member_keys_survive_update_leader_calls_beyond_ttl() {
    init_logging();
    let Some(fx) = EtcdFixture::new().await else { return };
    let a = fx.client_with(p(&fx, "a", 3)).await;
    assert!(a.touch_member(r#"{"state":"running"}"#).await.unwrap());
    assert!(a.attempt_to_acquire_leader().await.unwrap());
    let lease = raw_cluster(&fx).await["leader"].1;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(8) {
        // One HA cycle: read, keep the lock, publish the member.
        let cl = a.load_cluster().await.unwrap();
        assert_eq!(cl.leader.as_ref().map(|l| l.name.as_str()), Some("a"), "lost after {:?}", t.elapsed());
        assert!(a.update_leader(cl.leader.as_ref()).await.unwrap());
        assert!(a.touch_member(r#"{"state":"running"}"#).await.unwrap());
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let raw = raw_cluster(&fx).await;
    assert_eq!(raw["leader"], ("a".to_string(), lease), "same key on the same lease");
    assert_eq!(raw["members/a"].1, lease);
}

#[tokio::test]
async fn a_revoked_lease_is_replaced_and_the_keys_are_put_again() {
    init_logging();
    let Some(fx) = EtcdFixture::new().await else { return };
    let a = fx.client_with(p(&fx, "a", 10)).await;
    assert!(a.touch_member(r#"{"state":"running"}"#).await.unwrap());
    assert!(a.attempt_to_acquire_leader().await.unwrap());
    let old = raw_cluster(&fx).await["leader"].1;
    fx.raw.clone().lease_revoke(old).await.expect("revoke");
    let cl = a.load_cluster().await.unwrap();
    assert!(cl.leader.is_none() && cl.members.is_empty(), "revoking the lease dropped both keys");
    // etcd3.py _update_leader: keep-alive fails → new lease; the key is gone → create it again.
    assert!(a.update_leader(None).await.unwrap());
    assert!(a.touch_member(r#"{"state":"running"}"#).await.unwrap());
    let raw = raw_cluster(&fx).await;
    let new = raw["leader"].1;
    assert!(new != 0 && new != old, "a new lease");
    assert_eq!(raw["members/a"].1, new, "member key re-put on the new lease");
    assert_eq!(raw["leader"].0, "a");
}

#[tokio::test]
async fn update_leader_rebinds_my_key_to_my_new_lease() {
    init_logging();
    let Some(fx) = EtcdFixture::new().await else { return };
    let a = fx.client_with(p(&fx, "a", 10)).await;
    assert!(a.attempt_to_acquire_leader().await.unwrap());
    let old = raw_cluster(&fx).await["leader"].1;
    // The key survives on another lease (as after a lease loss that another writer papered over).
    let other = fx.raw.clone().lease_grant(30, None).await.unwrap().id();
    let key = fx.keys().path("leader");
    fx.raw.clone().put(key, "a", Some(etcd_client::PutOptions::new().with_lease(other))).await.unwrap();
    fx.raw.clone().lease_revoke(old).await.unwrap();
    let cl = a.load_cluster().await.unwrap();
    assert_eq!(cl.leader.as_ref().unwrap().owner, Some(other.to_string()));
    // compare value == my name → put with my (new) lease.
    assert!(a.update_leader(cl.leader.as_ref()).await.unwrap());
    let lease = raw_cluster(&fx).await["leader"].1;
    assert!(lease != other && lease != old && lease != 0, "rebound to my new lease");
}

#[tokio::test]
async fn acquire_retries_once_with_a_fresh_lease_when_etcd_lost_it() {
    init_logging();
    let Some(fx) = EtcdFixture::new().await else { return };
    let a = fx.client_with(p(&fx, "a", 10)).await;
    assert!(a.touch_member("{}").await.unwrap());
    let old = raw_cluster(&fx).await["members/a"].1;
    fx.raw.clone().lease_revoke(old).await.unwrap();
    // The lease was renewed less than loop_wait ago, so acquire uses it, hits "lease not found",
    // and retries with a new one (etcd3.py _do_attempt_to_acquire_leader).
    assert!(a.attempt_to_acquire_leader().await.unwrap());
    let raw = raw_cluster(&fx).await;
    assert_eq!(raw["leader"].0, "a");
    assert!(raw["leader"].1 != old && raw["leader"].1 != 0);
}

#[tokio::test]
async fn touch_member_skips_the_write_when_nothing_changed() {
    init_logging();
    let Some(fx) = EtcdFixture::new().await else { return };
    let a = fx.client_with(p(&fx, "a", 10)).await;
    let v = r#"{"state":"running","role":"replica"}"#;
    assert!(a.touch_member(v).await.unwrap());
    let rev1 = a.load_cluster().await.unwrap().member("a").unwrap().version;
    // Same data with another key order: no write (ha.py touch_member / deep_compare).
    assert!(a.touch_member(r#"{"role":"replica","state":"running"}"#).await.unwrap());
    assert_eq!(a.load_cluster().await.unwrap().member("a").unwrap().version, rev1);
    assert!(a.touch_member(r#"{"state":"stopped","role":"replica"}"#).await.unwrap());
    assert_ne!(a.load_cluster().await.unwrap().member("a").unwrap().version, rev1);
}

#[tokio::test]
async fn watch_wakes_on_a_config_change_by_another_member_but_not_on_my_own() {
    init_logging();
    let Some(fx) = EtcdFixture::new().await else { return };
    let a = fx.client_with(p(&fx, "a", 10)).await;
    let b = fx.client_with(p(&fx, "b", 10)).await;
    assert!(a.set_config_value(r#"{"ttl":30}"#, None).await.unwrap());
    b.load_cluster().await.unwrap();
    let bb = b.clone();
    let t = Instant::now();
    let w = tokio::spawn(async move { bb.watch(None, Duration::from_secs(10)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(a.set_config_value(r#"{"ttl":20}"#, None).await.unwrap());
    assert!(w.await.unwrap().unwrap(), "config change wakes");
    assert!(t.elapsed() < Duration::from_secs(3));

    // b's own write does not wake b (Patroni updates its cache before the watch event arrives).
    b.load_cluster().await.unwrap();
    assert!(b.set_config_value(r#"{"ttl":25}"#, None).await.unwrap());
    let t = Instant::now();
    assert!(!b.watch(None, Duration::from_millis(1200)).await.unwrap(), "own write woke the watch");
    assert!(t.elapsed() >= Duration::from_millis(1200));
}

#[tokio::test]
async fn watch_wakes_a_replica_when_the_leader_publishes_its_status() {
    init_logging();
    let Some(fx) = EtcdFixture::new().await else { return };
    let a = fx.client_with(p(&fx, "a", 10)).await;
    let b = fx.client_with(p(&fx, "b", 10)).await;
    assert!(a.attempt_to_acquire_leader().await.unwrap());
    assert!(a.write_status(r#"{"optime":1}"#).await.unwrap());
    b.load_cluster().await.unwrap();
    a.load_cluster().await.unwrap();
    assert!(a.write_status(r#"{"optime":2}"#).await.unwrap());
    // etcd3.py KVCache: a status change wakes replicas, not the leader that wrote it.
    let t = Instant::now();
    assert!(b.watch(None, Duration::from_secs(5)).await.unwrap());
    assert!(t.elapsed() < Duration::from_secs(2));
    assert!(!a.watch(None, Duration::from_millis(1000)).await.unwrap(), "the leader woke on its own status");
}

#[tokio::test]
async fn watch_sees_a_leader_change_made_before_it_was_called() {
    init_logging();
    let Some(fx) = EtcdFixture::new().await else { return };
    let a = fx.client_with(p(&fx, "a", 10)).await;
    let b = fx.client_with(p(&fx, "b", 10)).await;
    assert!(a.attempt_to_acquire_leader().await.unwrap());
    let v = b.load_cluster().await.unwrap().leader.unwrap().version;
    assert!(a.delete_leader(None).await.unwrap());
    // Between b's read and b's watch: the watch starts at b's read revision and sees it.
    let t = Instant::now();
    assert!(b.watch(Some(v), Duration::from_secs(10)).await.unwrap());
    assert!(t.elapsed() < Duration::from_secs(2), "took {:?}", t.elapsed());
}

#[tokio::test]
async fn a_new_ttl_moves_the_keys_to_a_new_lease_and_wakes_the_loop() {
    init_logging();
    let Some(fx) = EtcdFixture::new().await else { return };
    let a = fx.client_with(p(&fx, "a", 10)).await;
    assert!(a.touch_member("{}").await.unwrap());
    assert!(a.attempt_to_acquire_leader().await.unwrap());
    let old = raw_cluster(&fx).await["leader"].1;
    a.set_timing(Duration::from_secs(20), Duration::from_secs(1), Duration::from_secs(1)).await.unwrap();
    // etcd3.py set_ttl: the next watch returns at once so the loop applies it.
    let t = Instant::now();
    assert!(a.watch(None, Duration::from_secs(5)).await.unwrap());
    assert!(t.elapsed() < Duration::from_secs(1));
    let cl = a.load_cluster().await.unwrap();
    assert!(a.update_leader(cl.leader.as_ref()).await.unwrap());
    assert!(a.touch_member("{}").await.unwrap());
    let raw = raw_cluster(&fx).await;
    let new = raw["leader"].1;
    assert_ne!(new, old);
    assert_eq!(raw["members/a"].1, new);
    assert_eq!(granted_ttl(&fx, new).await.0, 20);
}

#[tokio::test]
async fn an_unreachable_etcd_fails_with_unavailable_within_retry_timeout() {
    init_logging();
    let Some(mut fx) = EtcdFixture::new().await else { return };
    let mut params = p(&fx, "a", 10);
    params.retry_timeout = Duration::from_secs(2);
    let a = fx.client_with(params).await;
    assert!(a.attempt_to_acquire_leader().await.unwrap());
    fx.server.kill_member(0);
    for what in ["load_cluster", "update_leader", "watch"] {
        let t = Instant::now();
        let r: Result<bool, DcsError> = match what {
            "load_cluster" => a.load_cluster().await.map(|_| true),
            "update_leader" => a.update_leader(None).await,
            _ => a.watch(None, Duration::from_secs(1)).await,
        };
        let took = t.elapsed();
        assert!(took < Duration::from_millis(3500), "{what} took {took:?}");
        if what == "watch" {
            assert!(!r.expect("watch does not fail"), "watch without etcd is a timeout");
        } else {
            assert!(matches!(r, Err(DcsError::Unavailable(_))), "{what}: {r:?}");
        }
    }
}

#[tokio::test]
async fn a_hung_etcd_fails_with_unavailable_within_retry_timeout_and_recovers() {
    init_logging();
    let Some(fx) = EtcdFixture::new().await else { return };
    let mut params = p(&fx, "a", 10);
    params.retry_timeout = Duration::from_secs(2);
    let a = fx.client_with(params).await;
    assert!(a.attempt_to_acquire_leader().await.unwrap());
    let l = a.load_cluster().await.unwrap().leader;
    fx.server.freeze_member(0);
    for what in ["load_cluster", "update_leader", "set_config_value"] {
        let t = Instant::now();
        let r = match what {
            "load_cluster" => a.load_cluster().await.map(|_| true),
            "update_leader" => a.update_leader(l.as_ref()).await,
            _ => a.set_config_value("{}", None).await,
        };
        let took = t.elapsed();
        assert!(matches!(r, Err(DcsError::Unavailable(_))), "{what}: {r:?}");
        assert!(took < Duration::from_millis(2600), "{what} hung for {took:?}");
    }
    let t = Instant::now();
    assert!(!a.watch(None, Duration::from_secs(1)).await.unwrap(), "watch on a hung etcd times out");
    assert!(t.elapsed() < Duration::from_millis(2600));
    fx.server.thaw_member(0);
    let cl = a.load_cluster().await.expect("served again");
    assert!(a.update_leader(cl.leader.as_ref()).await.unwrap(), "the lease outlived the short hang");
}

#[tokio::test]
async fn username_and_password_authenticate_and_a_wrong_password_is_refused() {
    init_logging();
    let Some(fx) = EtcdFixture::new().await else { return };
    let mut raw = fx.raw.clone();
    raw.user_add("root", "rootpw", None).await.unwrap();
    raw.user_grant_role("root", "root").await.unwrap();
    raw.auth_enable().await.unwrap();

    let cfg = |user: Option<&str>, pw: &str| praetor::config::dcs::EtcdConfig {
        hosts: fx.server.hosts(),
        username: user.map(String::from),
        password: Some(praetor::types::Secret(pw.to_string())),
        ..Default::default()
    };
    let fxr = &fx;
    let connect = |c: praetor::config::dcs::EtcdConfig| async move {
        let section = praetor::config::dcs::DcsSection::Etcd3 { config: c, from_v2_section: false };
        praetor::dcs::factory::connect(&section, p(fxr, "a", 10)).await
    };
    let a: Arc<dyn Dcs> = connect(cfg(Some("root"), "rootpw")).await.expect("authenticated");
    assert!(a.attempt_to_acquire_leader().await.unwrap());
    assert_eq!(a.load_cluster().await.unwrap().leader.unwrap().name, "a");

    let wrong = connect(cfg(Some("root"), "nope")).await;
    assert!(matches!(wrong, Err(DcsError::Backend { .. })), "{:?}", wrong.err());
    let anonymous = connect(cfg(None, "")).await.expect("connects lazily");
    let r = anonymous.load_cluster().await;
    assert!(matches!(r, Err(DcsError::Backend { .. })), "no user on an auth-enabled etcd: {r:?}");
}

/// Multi-member etcd: serial, like the other cluster tests.
mod cluster {
    use super::*;
    use crate::support::etcd::EtcdServer;

    #[tokio::test]
    async fn etcd_member_loss_is_survived_through_the_other_endpoints() {
        init_logging();
        let Some(mut server) = EtcdServer::start_cluster(3).await else { return };
        let config = praetor::config::dcs::EtcdConfig { hosts: server.hosts(), ..Default::default() };
        let section = praetor::config::dcs::DcsSection::Etcd3 { config, from_v2_section: false };
        let mut params = params("three", "a", Duration::from_secs(10));
        params.retry_timeout = Duration::from_secs(4);
        let a = praetor::dcs::factory::connect(&section, params).await.unwrap();
        assert!(a.touch_member("{}").await.unwrap());
        assert!(a.attempt_to_acquire_leader().await.unwrap());
        for victim in [0, 1] {
            server.kill_member(victim);
            for cycle in 0..5 {
                let cl = a
                    .load_cluster()
                    .await
                    .unwrap_or_else(|e| panic!("member {victim} down, cycle {cycle}: {e}"));
                assert_eq!(cl.leader.as_ref().map(|l| l.name.as_str()), Some("a"));
                assert!(a.update_leader(cl.leader.as_ref()).await.unwrap(), "cycle {cycle}");
                assert!(a.touch_member("{}").await.unwrap());
            }
            server.restart_member(victim).await;
        }
    }

    #[tokio::test]
    async fn members_missing_from_the_config_are_discovered_and_used_when_the_configured_one_dies() {
        init_logging();
        let Some(mut server) = EtcdServer::start_cluster(3).await else { return };
        // etcd.py: the machines cache is filled from the member list, not only from `hosts`.
        let config =
            praetor::config::dcs::EtcdConfig { host: Some(server.hosts()[0].clone()), ..Default::default() };
        let section = praetor::config::dcs::DcsSection::Etcd3 { config, from_v2_section: false };
        let mut params = params("discover", "a", Duration::from_secs(10));
        params.retry_timeout = Duration::from_secs(4);
        let a = praetor::dcs::factory::connect(&section, params).await.unwrap();
        assert!(a.attempt_to_acquire_leader().await.unwrap());
        a.load_cluster().await.unwrap(); // reads the member list
        server.kill_member(0);
        for cycle in 0..5 {
            let cl = a
                .load_cluster()
                .await
                .unwrap_or_else(|e| panic!("configured member down, cycle {cycle}: {e}"));
            assert!(a.update_leader(cl.leader.as_ref()).await.unwrap(), "cycle {cycle}");
        }
    }

    #[tokio::test]
    async fn with_use_proxies_only_the_configured_endpoint_is_used() {
        init_logging();
        let Some(mut server) = EtcdServer::start_cluster(3).await else { return };
        let config = praetor::config::dcs::EtcdConfig {
            host: Some(server.hosts()[0].clone()),
            use_proxies: Some(true),
            ..Default::default()
        };
        let section = praetor::config::dcs::DcsSection::Etcd3 { config, from_v2_section: false };
        let mut params = params("proxies", "a", Duration::from_secs(10));
        params.retry_timeout = Duration::from_secs(2);
        let a = praetor::dcs::factory::connect(&section, params).await.unwrap();
        a.load_cluster().await.unwrap();
        server.kill_member(0);
        assert!(
            matches!(a.load_cluster().await, Err(DcsError::Unavailable(_))),
            "must not use other members"
        );
    }
}

#[tokio::test]
async fn tls_with_a_client_certificate_connects_and_without_one_is_refused() {
    init_logging();
    let Some(server) = crate::support::etcd::EtcdServer::start_tls().await else { return };
    let tls = server.tls_files().expect("TLS server").clone();
    let cfg = |cert: bool| praetor::config::dcs::EtcdConfig {
        hosts: server.tls_hosts(),
        cacert: Some(tls.ca.clone()),
        cert: cert.then(|| tls.client_cert.clone()),
        key: cert.then(|| tls.client_key.clone()),
        ..Default::default()
    };
    assert!(cfg(true).endpoints().iter().all(|e| e.starts_with("https://")), "cacert selects https");
    let connect = |c: praetor::config::dcs::EtcdConfig| async move {
        let section = praetor::config::dcs::DcsSection::Etcd3 { config: c, from_v2_section: false };
        praetor::dcs::factory::connect(&section, params("tls", "a", Duration::from_secs(10))).await
    };
    let a = connect(cfg(true)).await.expect("client with certificate");
    assert!(a.attempt_to_acquire_leader().await.unwrap());
    assert_eq!(a.load_cluster().await.unwrap().leader.unwrap().name, "a");

    // etcd runs with --client-cert-auth: no certificate, no service.
    let anonymous = connect(cfg(false)).await.expect("connects lazily");
    let r = anonymous.load_cluster().await;
    assert!(r.is_err(), "a client without certificate was served: {r:?}");
}

/// Real Patroni 4.1.5 (its `Etcd3` DCS class, driven from Python) and praetor on one etcd: each
/// reads the other's keys and respects the other's leader lock.
mod patroni_interop {
    use super::*;
    use crate::support::etcd::patroni_etcd3_python;

    /// One Patroni agent's view and actions, printed as JSON. Each run is a new agent (new lease).
    const SCRIPT: &str = r#"
import json, sys
from patroni.dcs import get_dcs
scope, name, host, action = sys.argv[1:5]
dcs = get_dcs({'scope': scope, 'name': name, 'namespace': '/service', 'ttl': 5, 'loop_wait': 1,
               'retry_timeout': 2, 'etcd3': {'hosts': [host]}})
c = dcs.get_cluster()
out = {'leader': c.leader and c.leader.name, 'leader_session': c.leader and str(c.leader.session),
       'members': {m.name: m.data for m in c.members}, 'config': c.config and c.config.data,
       'initialize': c.initialize, 'optime': c.status.last_lsn, 'lease': str(dcs._lease),
       'sync_standby': c.sync.sync_standby, 'failover': c.failover and c.failover.candidate}
if action == 'acquire':
    out['acquired'] = bool(dcs.attempt_to_acquire_leader())
    out['touched'] = bool(dcs.touch_member({'conn_url': 'postgres://127.0.0.1:5433/postgres',
        'api_url': 'http://127.0.0.1:8009/patroni', 'state': 'running', 'role': 'replica', 'version': '4.1.5'}))
print(json.dumps(out))
"#;

    fn patroni(python: &std::path::Path, dir: &crate::support::TestDir, args: &[&str]) -> serde_json::Value {
        let script = dir.join("patroni_dcs.py");
        std::fs::write(&script, SCRIPT).expect("write the Patroni script");
        let out = std::process::Command::new(python).arg(&script).args(args).output().expect("run Patroni");
        assert!(out.status.success(), "Patroni {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("Patroni printed JSON")
    }

    #[tokio::test]
    async fn patroni_and_praetor_read_each_others_keys_and_respect_each_others_lock() {
        init_logging();
        let Some(fx) = EtcdFixture::new().await else { return };
        let Some(python) = patroni_etcd3_python() else { return };
        let host = fx.server.hosts()[0].clone();
        let scope = fx.scope();
        let dir = crate::support::TestDir::new("patroni-etcd3");

        // praetor bootstraps and leads.
        let a = fx.client_with(p(&fx, "a", 5)).await;
        assert!(a.initialize(true, SYSID).await.unwrap());
        assert!(a.set_config_value(CONFIG, None).await.unwrap());
        assert!(a.touch_member(MEMBER_PG1).await.unwrap());
        assert!(a.attempt_to_acquire_leader().await.unwrap());
        assert!(a.write_status(STATUS).await.unwrap());
        assert!(
            a.set_sync_state_value(&SyncState::to_json("a", &["py".into()], 0), None)
                .await
                .unwrap()
                .is_some()
        );
        assert!(a.set_failover_value(r#"{"leader":"a","member":"py"}"#, None).await.unwrap());
        let a_lease = raw_cluster(&fx).await["leader"].1;

        // Patroni sees all of it and cannot take the lock.
        let v = patroni(&python, &dir, &[&scope, "py", &host, "acquire"]);
        assert_eq!(v["leader"], "a");
        assert_eq!(
            v["leader_session"],
            a_lease.to_string(),
            "Patroni sees praetor's lease as the lock owner"
        );
        assert_eq!(v["initialize"], SYSID);
        assert_eq!(v["config"], serde_json::from_str::<serde_json::Value>(CONFIG).unwrap());
        assert_eq!(v["members"]["a"], serde_json::from_str::<serde_json::Value>(MEMBER_PG1).unwrap());
        assert_eq!(v["optime"], 50615840);
        assert_eq!(v["sync_standby"], "py");
        assert_eq!(v["failover"], "py");
        assert_eq!(v["acquired"], false, "Patroni must not take praetor's lock");
        assert_eq!(v["touched"], true);

        // praetor sees Patroni's member key on Patroni's lease.
        let cl = a.load_cluster().await.unwrap();
        let py = cl.member("py").expect("Patroni's member key");
        assert_eq!(py.data.api_url, "http://127.0.0.1:8009/patroni");
        assert_eq!(py.owner.as_deref(), v["lease"].as_str());

        // praetor releases; Patroni takes the lock; praetor then cannot.
        assert!(a.delete_leader(cl.leader.as_ref()).await.unwrap());
        let v = patroni(&python, &dir, &[&scope, "py2", &host, "acquire"]);
        assert_eq!(v["leader"], serde_json::Value::Null);
        assert_eq!(v["acquired"], true);
        let b = fx.client_with(p(&fx, "b", 5)).await;
        assert!(!b.attempt_to_acquire_leader().await.unwrap());
        let cl = b.load_cluster().await.unwrap();
        let l = cl.leader.clone().expect("Patroni's leader key");
        assert_eq!(l.name, "py2");
        assert_eq!(l.owner.as_deref(), v["lease"].as_str());
        assert!(!b.update_leader(Some(&l)).await.unwrap(), "praetor must not take over Patroni's key");
        assert!(!b.delete_leader(Some(&l)).await.unwrap());

        // That Patroni agent is gone (no keep-alive): its lease expires and praetor can lead.
        let t = Instant::now();
        loop {
            if b.attempt_to_acquire_leader().await.unwrap() {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(8), "Patroni's lock did not expire");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let v = patroni(&python, &dir, &[&scope, "py3", &host, "read"]);
        assert_eq!(v["leader"], "b");
    }
}
