//! Synchronous replication end to end (PATRONI-COMPAT §6.9): three praetor agents on a real etcd
//! with real PostgreSQL 15. Serial: the path contains `cluster::`.
//!
//! The split-brain write test (primary isolated from the DCS and the replicas while a client keeps
//! writing) needs network namespaces; it belongs to the partition harness (helper h6).

mod cluster {
    use crate::support::agents::{AgentCluster, AgentOpts, Store};
    use crate::support::etcd::EtcdStore;
    use crate::support::wait_for;
    use serde_json::Value;
    use std::collections::BTreeSet;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    type Etcd = EtcdStore;

    fn strict_opts() -> AgentOpts {
        AgentOpts { dcs_extra: STRICT.into(), ..Default::default() }
    }

    const STRICT: &str = "    synchronous_mode: true\n    synchronous_mode_strict: true\n";

    async fn connect(port: u16) -> Option<tokio_postgres::Client> {
        let mut c = tokio_postgres::Config::new();
        c.host("127.0.0.1")
            .port(port)
            .user("postgres")
            .password("su-secret")
            .dbname("postgres")
            .connect_timeout(Duration::from_secs(2));
        let (client, conn) = tokio::time::timeout(Duration::from_secs(3), c.connect(tokio_postgres::NoTls))
            .await
            .ok()?
            .ok()?;
        tokio::spawn(conn);
        Some(client)
    }

    /// The `/sync` key as JSON.
    async fn sync_key(store: &Etcd, scope: &str) -> Option<Value> {
        serde_json::from_str(&store.key(scope, "sync").await?).ok()
    }

    /// Wait until `/sync` names `leader` and at least one standby; the standbys.
    async fn wait_sync_standby(c: &AgentCluster, store: &Etcd, leader: usize) -> Vec<String> {
        let names = Arc::new(Mutex::new(Vec::new()));
        let ok = wait_for(Duration::from_secs(60), || {
            let names = names.clone();
            async move {
                let Some(v) = sync_key(store, &c.scope).await else { return false };
                let standbys: Vec<String> = v["sync_standby"]
                    .as_str()
                    .unwrap_or("")
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                *names.lock().unwrap() = standbys.clone();
                v["leader"] == c.nodes[leader].name.as_str() && !standbys.is_empty()
            }
        })
        .await;
        assert!(ok, "/sync never named a standby of {}\n{}", c.nodes[leader].name, c.logs());
        names.lock().unwrap().clone()
    }

    /// Zero acknowledged commits lost, five times: with `synchronous_mode_strict`, a writer commits
    /// sequential ids on the primary and records every acknowledged one; the primary's agent and
    /// postmaster are SIGKILLed together; after failover every acknowledged id is on the new
    /// primary. The killed node rejoins before the next round.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn strict_sync_failover_loses_no_acknowledged_commit() {
        let Some(store) = EtcdStore::start().await else { return };
        let Some(mut c) = AgentCluster::start_with("synczero", &store, strict_opts()) else { return };
        let mut leader = c.wait_healthy(&store, Duration::from_secs(120)).await;
        {
            let db = connect(c.nodes[leader].pg_port).await.expect("connect to the primary");
            wait_sync_standby(&c, &store, leader).await;
            db.batch_execute("CREATE TABLE acked(id bigint PRIMARY KEY)").await.expect("create table");
        }
        let mut next_id: i64 = 1;
        let mut total_acked = 0usize;
        for round in 1..=5 {
            let sync = wait_sync_standby(&c, &store, leader).await;
            let db = connect(c.nodes[leader].pg_port).await.expect("connect to the primary");
            let acked = Arc::new(Mutex::new(Vec::<i64>::new()));
            let round_start = next_id;
            let writer = {
                let acked = acked.clone();
                let start = next_id;
                tokio::spawn(async move {
                    let mut id = start;
                    loop {
                        let r = tokio::time::timeout(
                            Duration::from_secs(30),
                            db.execute("INSERT INTO acked VALUES ($1)", &[&id]),
                        )
                        .await;
                        match r {
                            Ok(Ok(_)) => acked.lock().unwrap().push(id),
                            _ => return id,
                        }
                        id += 1;
                    }
                })
            };
            // Let the writer commit for a while, then kill the primary mid-stream.
            let ok = wait_for(Duration::from_secs(30), || async { acked.lock().unwrap().len() >= 200 }).await;
            assert!(ok, "round {round}: the writer did not get 200 commits acknowledged\n{}", c.logs());
            let old = leader;
            let (new_leader, took) = c.fail_over(&store, old).await;
            let last_tried = tokio::time::timeout(Duration::from_secs(40), writer)
                .await
                .expect("the writer stops once its server died")
                .expect("writer task");
            next_id = last_tried + 1;
            let acked = acked.lock().unwrap().clone();
            assert!(
                sync.contains(&c.nodes[new_leader].name),
                "round {round}: {} promoted though /sync named {sync:?}",
                c.nodes[new_leader].name
            );
            // Every acknowledged id is on the new primary.
            let db = connect(c.nodes[new_leader].pg_port).await.expect("connect to the new primary");
            let rows = db.query("SELECT id FROM acked", &[]).await.expect("read ids");
            let present: BTreeSet<i64> = rows.iter().map(|r| r.get::<_, i64>(0)).collect();
            let missing: Vec<i64> = acked.iter().filter(|id| !present.contains(id)).copied().collect();
            let acked_set: BTreeSet<i64> = acked.iter().copied().collect();
            let in_flight =
                present.iter().filter(|id| **id >= round_start && !acked_set.contains(id)).count();
            println!(
                "round {round}: killed {}, {} promoted after {took:?}; acknowledged {}, missing {}, \
                 unacknowledged but present {in_flight}, rows on the new primary {}",
                c.nodes[old].name,
                c.nodes[new_leader].name,
                acked.len(),
                missing.len(),
                present.len(),
            );
            assert!(
                missing.is_empty(),
                "round {round}: acknowledged commits lost: {missing:?}\n{}",
                c.logs()
            );
            total_acked += acked.len();
            drop(db);
            // The old primary rejoins (rewind) before the next round.
            c.start_agent(old);
            leader = c.wait_healthy(&store, Duration::from_secs(120)).await;
            assert_eq!(leader, new_leader);
        }
        println!("zero-loss: 5 rounds, {total_acked} acknowledged commits, 0 lost");
        c.stop_all();
    }

    /// Strict mode with no standby left: a commit does not return, the primary's status says
    /// `writes_blocked` with a reason, and the commit completes once a standby is back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn strict_sync_blocks_writes_without_standby_until_one_returns() {
        let Some(store) = EtcdStore::start().await else { return };
        let Some(mut c) = AgentCluster::start_with("syncblock", &store, strict_opts()) else { return };
        let leader = c.wait_healthy(&store, Duration::from_secs(120)).await;
        wait_sync_standby(&c, &store, leader).await;
        let db = connect(c.nodes[leader].pg_port).await.expect("connect to the primary");
        db.batch_execute("CREATE TABLE t(x int); INSERT INTO t VALUES (0)")
            .await
            .expect("write with a standby");
        let apis: Vec<u16> = c.nodes.iter().map(|n| n.api).collect();
        let http = c.http.clone();
        let status = |i: usize| {
            let url = format!("http://127.0.0.1:{}/patroni", apis[i]);
            let http = http.clone();
            async move { http.get(url).send().await.ok()?.json::<Value>().await.ok() }
        };
        let st = status(leader).await.expect("status");
        assert!(st.get("writes_blocked").is_none(), "not blocked with a synchronous standby: {st}");

        let standbys: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
        for &i in &standbys {
            c.kill_node(i);
        }
        // /sync must not keep naming a standby that is gone, and the primary keeps the lock.
        let commit = tokio::spawn(async move {
            let started = Instant::now();
            let r = db.execute("INSERT INTO t VALUES (1)", &[]).await;
            (r.map_err(|e| e.to_string()), started.elapsed())
        });
        tokio::time::sleep(Duration::from_secs(8)).await;
        assert!(
            !commit.is_finished(),
            "a commit returned with no synchronous standby in strict mode\n{}",
            c.logs()
        );
        let blocked = wait_for(Duration::from_secs(20), || async {
            status(leader)
                .await
                .is_some_and(|s| s["writes_blocked"] == true && s["writes_blocked_reason"].is_string())
        })
        .await;
        assert!(blocked, "status does not say writes_blocked: {:?}\n{}", status(leader).await, c.logs());
        assert_eq!(
            store.leader(&c.scope).await.as_deref(),
            Some(c.nodes[leader].name.as_str()),
            "the primary keeps the leader key while writes wait"
        );
        let reason = status(leader).await.expect("status")["writes_blocked_reason"].clone();
        println!("blocked: {reason}");

        // One standby comes back: the commit completes and the block clears.
        c.start_agent(standbys[0]);
        let (r, waited) = tokio::time::timeout(Duration::from_secs(120), commit)
            .await
            .expect("the commit completes once a standby is back")
            .expect("commit task");
        r.expect("the blocked commit succeeds");
        println!("the blocked commit returned after {waited:?}");
        assert!(waited >= Duration::from_secs(8));
        let cleared = wait_for(Duration::from_secs(30), || async {
            status(leader).await.is_some_and(|s| s.get("writes_blocked").is_none())
        })
        .await;
        assert!(cleared, "writes_blocked not cleared: {:?}", status(leader).await);
        c.stop_all();
    }
}
