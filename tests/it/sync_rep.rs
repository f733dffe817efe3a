//! Synchronous replication end to end (PATRONI-COMPAT §6.9): three praetor agents on a real etcd
//! with real PostgreSQL 15. Serial: the path contains `cluster::`.
//!
//! The split-brain write test (primary isolated from the DCS and the replicas while a client keeps
//! writing) needs network namespaces: it is in `partition.rs`.

mod cluster {
    use crate::support::agents::{AgentCluster, AgentOpts, Store};
    use crate::support::etcd::EtcdStore;
    use crate::support::wait_for;
    use serde_json::Value;
    use std::collections::BTreeSet;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

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

    /// Commit ids `start, start + 1, …` one by one on `db`, recording each acknowledged one in
    /// `acked`, until a commit fails or hangs for 30 s; returns the id that did not commit.
    fn spawn_writer(
        db: tokio_postgres::Client,
        start: i64,
        acked: Arc<Mutex<Vec<i64>>>,
    ) -> tokio::task::JoinHandle<i64> {
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
            store.wait_sync_standby(&c, leader).await;
            db.batch_execute("CREATE TABLE acked(id bigint PRIMARY KEY)").await.expect("create table");
        }
        let mut next_id: i64 = 1;
        let mut total_acked = 0usize;
        for round in 1..=5 {
            let sync = store.wait_sync_standby(&c, leader).await;
            let db = connect(c.nodes[leader].pg_port).await.expect("connect to the primary");
            let acked = Arc::new(Mutex::new(Vec::<i64>::new()));
            let round_start = next_id;
            let writer = spawn_writer(db, next_id, acked.clone());
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
        store.wait_sync_standby(&c, leader).await;
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
        // A SIGKILLed postmaster's walreceiver lives on until it notices: it could still
        // acknowledge a commit. Commit only once the primary has no walsender left.
        let gone = wait_for(Duration::from_secs(30), || async {
            c.scalar(leader, "SELECT count(*) FROM pg_stat_replication").await.as_deref() == Some("0")
        })
        .await;
        assert!(gone, "walsenders still connected after the standbys were killed\n{}", c.logs());
        // /sync must not keep naming a standby that is gone, and the primary keeps the lock.
        let commit = tokio::spawn(async move {
            let started = Instant::now();
            let r = db.execute("INSERT INTO t VALUES (1)", &[]).await;
            (r.map_err(|e| e.to_string()), started.elapsed())
        });
        tokio::time::sleep(Duration::from_secs(8)).await;
        if commit.is_finished() {
            let r = commit.await.expect("commit task");
            panic!("a commit returned with no synchronous standby in strict mode: {r:?}\n{}", c.logs());
        }
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
        let gauge =
            format!("praetor_writes_blocked{{scope=\"{}\",name=\"{}\"}}", c.scope, c.nodes[leader].name);
        let metrics = |i: usize| {
            let url = format!("http://127.0.0.1:{}/metrics", apis[i]);
            let http = http.clone();
            async move { http.get(url).send().await.ok()?.text().await.ok() }
        };
        let text = metrics(leader).await.expect("metrics");
        assert!(text.contains(&format!("{gauge} 1\n")), "no {gauge} 1 in\n{text}");

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
        let text = metrics(leader).await.expect("metrics");
        assert!(text.contains(&format!("{gauge} 0\n")), "no {gauge} 0 in\n{text}");
        c.stop_all();
    }

    const QUORUM: &str = "    synchronous_mode: quorum\n";

    /// GET `path` on node `i`'s REST API: the status code.
    async fn probe(c: &AgentCluster, i: usize, path: &str) -> u16 {
        let url = format!("http://127.0.0.1:{}{path}", c.nodes[i].api);
        c.http.get(url).send().await.map(|r| r.status().as_u16()).unwrap_or(0)
    }

    /// `praetorctl -c <node i's config> list` (the table).
    async fn ctl_list(c: &AgentCluster, i: usize) -> String {
        let out = tokio::time::timeout(
            Duration::from_secs(30),
            tokio::process::Command::new(env!("CARGO_BIN_EXE_praetorctl"))
                .arg("-c")
                .arg(&c.nodes[i].cfg)
                .arg("list")
                .env_remove("PATRONICTL_CONFIG_FILE")
                .env_remove("DCS_URL")
                .output(),
        )
        .await
        .expect("praetorctl list finishes")
        .expect("run praetorctl");
        assert!(out.status.success(), "praetorctl list: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Wait until the primary `leader` runs quorum commit over both other nodes: `/sync` written by
    /// it with quorum 1 and both standbys as voters, ssn `ANY 1 (a,b)`, both walsenders `quorum`.
    async fn wait_quorum_state(c: &AgentCluster, store: &EtcdStore, leader: usize) -> Vec<usize> {
        let others: Vec<usize> = (0..c.nodes.len()).filter(|i| *i != leader).collect();
        let voters = others.iter().map(|i| c.nodes[*i].name.clone()).collect::<Vec<_>>().join(",");
        let want_key =
            serde_json::json!({"leader": c.nodes[leader].name, "quorum": 1, "sync_standby": voters});
        let ok = wait_for(Duration::from_secs(90), || async {
            store.sync_key(&c.scope).await.as_ref() == Some(&want_key)
                && c.scalar(leader, "SHOW synchronous_standby_names").await
                    == Some(format!("ANY 1 ({voters})"))
                && c.scalar(leader, "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'quorum'")
                    .await
                    == Some("2".into())
        })
        .await;
        assert!(
            ok,
            "no quorum state on {}: /sync {:?}, ssn {:?}\n{}",
            c.nodes[leader].name,
            store.sync_key(&c.scope).await,
            c.scalar(leader, "SHOW synchronous_standby_names").await,
            c.logs()
        );
        others
    }

    /// `synchronous_mode: quorum` on a real 3-node cluster (PATRONI-COMPAT §6.9): ssn is
    /// `ANY 1 (…)` over both standbys, `/sync` holds leader, quorum and voters as Patroni writes
    /// them, `list` and the status say `Quorum Standby`, `/quorum` answers 200 on the standbys
    /// only. Then the leader's agent and postmaster are SIGKILLed while a writer commits: a voter
    /// wins, every acknowledged commit is on it, and it takes over `/sync` and the quorum.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn quorum_mode_reports_quorum_standbys_and_fails_over_without_loss() {
        let Some(store) = EtcdStore::start().await else { return };
        let opts = AgentOpts { dcs_extra: QUORUM.into(), ..Default::default() };
        let Some(mut c) = AgentCluster::start_with("syncquorum", &store, opts) else { return };
        let leader = c.wait_healthy(&store, Duration::from_secs(120)).await;
        let others = wait_quorum_state(&c, &store, leader).await;
        println!("quorum: /sync = {}", store.sync_key(&c.scope).await.expect("/sync"));

        // Status, health checks and `list` on every node.
        let ok = wait_for(Duration::from_secs(20), || async {
            let mut ok = true;
            for &i in &others {
                let st = c.status(i).await.unwrap_or_default();
                ok &= st["quorum_standby"] == true && st.get("sync_standby").is_none();
            }
            let st = c.status(leader).await.unwrap_or_default();
            ok && st.get("quorum_standby").is_none() && st.get("sync_standby").is_none()
        })
        .await;
        assert!(ok, "status flags: {:?} {:?}", c.status(others[0]).await, c.status(leader).await);
        for &i in &others {
            assert_eq!(probe(&c, i, "/quorum").await, 200, "/quorum on {}", c.nodes[i].name);
            assert_eq!(probe(&c, i, "/read-only-quorum").await, 200);
            assert_eq!(probe(&c, i, "/sync").await, 503, "/sync on a quorum standby");
            assert_eq!(probe(&c, i, "/async").await, 503, "/async on a quorum standby");
        }
        assert_eq!(probe(&c, leader, "/quorum").await, 503, "/quorum on the primary");
        assert_eq!(probe(&c, leader, "/read-only-quorum").await, 200, "/read-only-quorum on the primary");
        let table = ctl_list(&c, leader).await;
        println!("{table}");
        for &i in &others {
            let name = format!("| {} ", c.nodes[i].name);
            assert!(
                table.lines().any(|l| l.contains(&name) && l.contains("| Quorum Standby |")),
                "{} is no Quorum Standby in\n{table}",
                c.nodes[i].name
            );
        }
        let name = format!("| {} ", c.nodes[leader].name);
        assert!(table.lines().any(|l| l.contains(&name) && l.contains("| Leader ")), "{table}");

        // Kill the leader while a writer commits; every acknowledged commit survives.
        let db = connect(c.nodes[leader].pg_port).await.expect("connect to the primary");
        db.batch_execute("CREATE TABLE acked(id bigint PRIMARY KEY)").await.expect("create table");
        let acked = Arc::new(Mutex::new(Vec::<i64>::new()));
        let writer = spawn_writer(db, 1, acked.clone());
        let ok = wait_for(Duration::from_secs(30), || async { acked.lock().unwrap().len() >= 200 }).await;
        assert!(ok, "the writer did not get 200 commits acknowledged\n{}", c.logs());
        let (new_leader, took) = c.fail_over(&store, leader).await;
        tokio::time::timeout(Duration::from_secs(40), writer)
            .await
            .expect("the writer stops")
            .expect("writer");
        assert!(others.contains(&new_leader), "{} is no voter", c.nodes[new_leader].name);
        let acked = acked.lock().unwrap().clone();
        let present = c.ids(new_leader, "SELECT id FROM acked").await.expect("read ids on the new primary");
        let missing: Vec<i64> = acked.iter().filter(|id| !present.contains(id)).copied().collect();
        println!(
            "quorum failover: killed {}, {} promoted after {took:?}; acknowledged {}, missing {}, rows {}",
            c.nodes[leader].name,
            c.nodes[new_leader].name,
            acked.len(),
            missing.len(),
            present.len()
        );
        assert!(missing.is_empty(), "acknowledged commits lost: {missing:?}\n{}", c.logs());

        // The old leader rejoins; the new leader owns `/sync` and the quorum over the other two.
        c.start_agent(leader);
        let healthy = c.wait_healthy(&store, Duration::from_secs(120)).await;
        assert_eq!(healthy, new_leader);
        wait_quorum_state(&c, &store, new_leader).await;
        c.stop_all();
    }

    /// The postmaster of node `i` when called; then, polling every 50 ms until it has ended (or
    /// `limit`): when `/sync` stopped naming `i` and when that postmaster ended, after the start.
    async fn release_and_stop(
        c: &AgentCluster,
        store: &EtcdStore,
        i: usize,
        limit: Duration,
    ) -> (Option<Duration>, Option<Duration>) {
        let pid = praetor::postgres::postmaster::PidFile::read(&c.nodes[i].data_dir)
            .ok()
            .flatten()
            .expect("postmaster.pid of the sync standby")
            .pid;
        let alive = || nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
        let start = Instant::now();
        let (mut released, mut stopped) = (None, None);
        while start.elapsed() < limit && stopped.is_none() {
            let named = store
                .sync_key(&c.scope)
                .await
                .and_then(|v| v["sync_standby"].as_str().map(str::to_string))
                .is_some_and(|s| s.split(',').any(|n| n == c.nodes[i].name));
            if !named && released.is_none() {
                released = Some(start.elapsed());
            }
            if !alive() {
                stopped = Some(start.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (released, stopped)
    }

    /// Patroni rule (ha.py `restart` wraps the restart in `while_not_sync_standby`): a
    /// synchronous standby restarted through `POST /restart` — now, and scheduled — first
    /// publishes `nosync` and waits until the primary dropped it from `/sync`; only then does its
    /// postmaster stop. Without that the primary would keep naming a stopped standby.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn restart_of_a_sync_standby_through_rest_waits_for_release_from_sync() {
        let Some(store) = EtcdStore::start().await else { return };
        let opts = AgentOpts { dcs_extra: "    synchronous_mode: true\n".into(), ..Default::default() };
        let Some(mut c) = AgentCluster::start_with("syncrestart", &store, opts) else { return };
        let leader = c.wait_healthy(&store, Duration::from_secs(120)).await;
        let slow = reqwest::Client::builder().timeout(Duration::from_secs(120)).build().expect("client");
        for scheduled in [false, true] {
            let sync = store.wait_sync_standby(&c, leader).await;
            let s = c.nodes.iter().position(|n| n.name == sync[0]).expect("sync standby is a node");
            // Both standbys stream, so the primary has another one to name.
            let ok = wait_for(Duration::from_secs(60), || async { c.roles().await.1.len() == 2 }).await;
            assert!(ok, "both standbys stream\n{}", c.logs());
            if !scheduled {
                // Health checks: the sync standby answers /sync, the other one /async.
                let other = (0..3).find(|i| *i != leader && *i != s).expect("a third node");
                let ok = wait_for(Duration::from_secs(20), || async {
                    probe(&c, s, "/sync").await == 200
                        && probe(&c, s, "/read-only-sync").await == 200
                        && probe(&c, s, "/async").await == 503
                        && probe(&c, other, "/async").await == 200
                        && probe(&c, other, "/sync").await == 503
                        && probe(&c, other, "/read-only-sync").await == 503
                        && probe(&c, leader, "/read-only-sync").await == 200
                        && probe(&c, s, "/quorum").await == 503
                })
                .await;
                assert!(ok, "health checks in sync mode: {:?}\n{}", c.status(s).await, c.logs());
            }
            const ASKING: &str = "Asking the primary to release this node";
            let asked_before = c.log(s).matches(ASKING).count();
            let url = format!("http://127.0.0.1:{}/restart", c.nodes[s].api);
            let body = if scheduled {
                let at = chrono::Utc::now() + chrono::Duration::seconds(3);
                serde_json::json!({"schedule": at.to_rfc3339()})
            } else {
                serde_json::json!({})
            };
            let post = {
                let (slow, url) = (slow.clone(), url.clone());
                tokio::spawn(async move {
                    let r = slow.post(url).json(&body).send().await.expect("POST /restart");
                    (r.status().as_u16(), r.text().await.unwrap_or_default())
                })
            };
            let (released, stopped) = release_and_stop(&c, &store, s, Duration::from_secs(60)).await;
            let (code, text) = post.await.expect("request task");
            println!(
                "{} restart of {}: released from /sync after {released:?}, postmaster stopped after {stopped:?}; \
                 {code} {text}",
                if scheduled { "scheduled" } else { "immediate" },
                c.nodes[s].name
            );
            assert_eq!(code, if scheduled { 202 } else { 200 }, "{text}");
            let stopped = stopped.expect("the postmaster was restarted");
            assert!(
                released.is_some_and(|r| r < stopped),
                "{} stopped PostgreSQL ({stopped:?}) before the primary released it from /sync ({released:?})\n{}\n{}",
                c.nodes[s].name,
                c.log(s),
                c.logs()
            );
            assert!(c.log(s).matches(ASKING).count() > asked_before, "{}", c.log(s));
            c.wait_healthy(&store, Duration::from_secs(120)).await;
        }

        // Synchronous mode off again: `/sync` is deleted and the primary runs with the user's own
        // (here empty) synchronous_standby_names; both standbys answer `/async`.
        let url = format!("http://127.0.0.1:{}/config", c.nodes[leader].api);
        let r = slow
            .patch(url)
            .json(&serde_json::json!({"synchronous_mode": false}))
            .send()
            .await
            .expect("PATCH");
        assert_eq!(r.status().as_u16(), 200, "{:?}", r.text().await);
        let off = wait_for(Duration::from_secs(30), || async {
            let mut ok = store.key(&c.scope, "sync").await.is_none()
                && c.scalar(leader, "SHOW synchronous_standby_names").await.as_deref() == Some("");
            for i in (0..3).filter(|i| *i != leader) {
                ok &= probe(&c, i, "/async").await == 200 && probe(&c, i, "/sync").await == 503;
            }
            ok
        })
        .await;
        assert!(
            off,
            "sync mode off: /sync {:?}, ssn {:?}\n{}",
            store.key(&c.scope, "sync").await,
            c.scalar(leader, "SHOW synchronous_standby_names").await,
            c.logs()
        );
        c.stop_all();
    }
}
