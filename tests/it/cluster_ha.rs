//! The HA loop end to end: three `praetor` agents (the built binary) on a real etcd with real
//! PostgreSQL 15, small timings (ttl 10, loop_wait 1, retry_timeout 3). Tests live in `cluster::`
//! so nextest runs them one at a time (see .config/nextest.toml).

mod cluster {
    use crate::support::agents::{AgentCluster, AgentOpts, LOOP_WAIT, TTL};
    use crate::support::etcd::EtcdStore;
    use crate::support::{FrozenPostgres, wait_for};
    use serde_json::{Value, json};
    use std::collections::BTreeSet;
    use std::time::{Duration, Instant};

    /// The shared three-agent cluster (support::agents) on a real etcd, with direct key access.
    struct Cluster {
        // Declared first: the agents stop (and release their keys) while etcd still runs.
        c: AgentCluster,
        store: EtcdStore,
    }

    impl std::ops::Deref for Cluster {
        type Target = AgentCluster;
        fn deref(&self) -> &AgentCluster {
            &self.c
        }
    }

    impl std::ops::DerefMut for Cluster {
        fn deref_mut(&mut self) -> &mut AgentCluster {
            &mut self.c
        }
    }

    /// Poll `f` every 100 ms until it yields a value or `timeout` passes.
    async fn poll<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f().await {
                return Some(v);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    impl Cluster {
        async fn start(scope: &str, opts: AgentOpts) -> Option<Cluster> {
            let store = EtcdStore::start().await?;
            let c = AgentCluster::start_with(scope, &store, opts)?;
            Some(Cluster { c, store })
        }

        /// Wait until one primary holding the leader key and two streaming replicas; the primary.
        async fn wait_healthy(&self, timeout: Duration) -> usize {
            self.c.wait_healthy(&self.store, timeout).await
        }

        async fn key(&self, k: &str) -> Option<String> {
            self.store.key(&self.scope, k).await
        }

        async fn put(&self, k: &str, v: &str) {
            self.store.put(&self.scope, k, v).await
        }

        async fn leader_key(&self) -> Option<String> {
            self.key("leader").await
        }

        /// Patch `/config` as `praetorctl edit-config` would.
        async fn patch_config(&self, patch: Value) {
            let mut v: Value =
                serde_json::from_str(&self.key("config").await.expect("config key")).expect("config JSON");
            for (k, x) in patch.as_object().expect("patch object") {
                v[k] = x.clone();
            }
            self.put("config", &v.to_string()).await;
        }
    }

    async fn assert_patroni_keys(c: &Cluster, leader: usize) {
        let init = c.key("initialize").await.expect("initialize key");
        assert!(init.len() >= 10 && init.bytes().all(|b| b.is_ascii_digit()), "initialize = {init:?}");
        let cfg: Value =
            serde_json::from_str(&c.key("config").await.expect("config key")).expect("config JSON");
        assert_eq!(cfg["ttl"], json!(TTL));
        assert_eq!(cfg["loop_wait"], json!(LOOP_WAIT));
        assert_eq!(c.leader_key().await.as_deref(), Some(c.nodes[leader].name.as_str()));
        let ok = wait_for(Duration::from_secs(15), || async {
            let mut all = true;
            for i in 0..3 {
                let Some(m) = c.key(&format!("members/pg{i}")).await else { return false };
                let v: Value = serde_json::from_str(&m).expect("member JSON");
                all &= v["conn_url"]
                    == json!(format!("postgres://127.0.0.1:{}/postgres", c.nodes[i].pg_port))
                    && v["api_url"] == json!(format!("http://127.0.0.1:{}/patroni", c.nodes[i].api))
                    && v["state"] == "running"
                    && v["role"] == if i == leader { "primary" } else { "replica" }
                    && v["version"] == "4.1.5"
                    && v["xlog_location"].is_u64()
                    && v["timeline"] == 1
                    && (i == leader || v["replication_state"] == "streaming");
            }
            all
        })
        .await;
        assert!(ok, "member keys not in Patroni's format: {:?}", {
            let mut v = Vec::new();
            for i in 0..3 {
                v.push(c.key(&format!("members/pg{i}")).await);
            }
            v
        });
        // Patroni's run-time cache of /config in every data directory (config.py save_cache).
        let cached = wait_for(Duration::from_secs(15), || async {
            (0..3).all(|i| {
                std::fs::read_to_string(c.nodes[i].data_dir.join("patroni.dynamic.json"))
                    .ok()
                    .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                    .is_some_and(|v| cfg.as_object().expect("config object").iter().all(|(k, x)| &v[k] == x))
            })
        })
        .await;
        assert!(cached, "patroni.dynamic.json missing or not the /config value {cfg}\n{}", c.logs());
        let status: Value =
            serde_json::from_str(&c.key("status").await.expect("status key")).expect("status JSON");
        assert!(status["optime"].as_u64().is_some_and(|o| o > 0), "status = {status}");
        let slots: BTreeSet<String> =
            status["slots"].as_object().expect("slots in status").keys().cloned().collect();
        assert_eq!(slots, BTreeSet::from(["pg0".to_string(), "pg1".into(), "pg2".into()]));
    }

    /// PATRONI-COMPAT §6.2–§6.4: bootstrap race, unplanned failover after the lease expires,
    /// rejoin through pg_rewind, graceful stop releasing the key.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn bootstrap_failover_rejoin_and_graceful_stop() {
        let Some(mut c) = Cluster::start("ha-failover", AgentOpts::default()).await else { return };
        let leader = c.wait_healthy(Duration::from_secs(90)).await;
        assert_patroni_keys(&c, leader).await;
        assert!(c.log(leader).contains(&format!("no action. I am (pg{leader}), the leader with the lock")));

        // Make one replica lag by more than maximum_lag_on_failover: freeze its WAL receiver and
        // write ~8 MB on the leader (ha.py: is_lagging / _is_healthiest_node).
        let lagging = (leader + 1) % 3;
        let walrcv = c
            .scalar(lagging, "SELECT pid FROM pg_stat_wal_receiver")
            .await
            .and_then(|p| p.parse::<i32>().ok())
            .expect("wal receiver pid of the lagging replica");
        let walrcv = nix::unistd::Pid::from_raw(walrcv);
        nix::sys::signal::kill(walrcv, nix::sys::signal::Signal::SIGSTOP).expect("freeze the wal receiver");
        c.sql(leader, "CREATE TABLE filler AS SELECT repeat('x', 1000) AS x FROM generate_series(1, 8000)")
            .await
            .expect("write filler");
        // The leader publishes the new optime in /status within a cycle.
        tokio::time::sleep(Duration::from_secs(3 * LOOP_WAIT)).await;

        // Unplanned failover: the leader's agent and its postmaster die together.
        assert!(c.accepts_writes(leader).await);
        c.nodes[leader].agent.as_mut().expect("agent").kill();
        c.kill_postmaster(leader);
        let killed = Instant::now();
        let new_leader = poll(Duration::from_secs(TTL + LOOP_WAIT + 20), || async {
            for i in (0..3).filter(|i| *i != leader) {
                if c.accepts_writes(i).await {
                    return Some(i);
                }
            }
            None
        })
        .await;
        let took = killed.elapsed();
        let _ = nix::sys::signal::kill(walrcv, nix::sys::signal::Signal::SIGCONT);
        let Some(new_leader) = new_leader else {
            panic!("no node accepted writes after the leader died\n{}", c.logs())
        };
        assert_ne!(new_leader, lagging, "the lagging replica was promoted\n{}", c.logs());
        assert!(
            c.log(lagging).contains("My wal position exceeds maximum replication lag"),
            "the lagging replica did not judge itself by its lag\n{}",
            c.logs()
        );
        // ttl + loop_wait plus a margin for the promotion itself and a loaded CI machine.
        assert!(took <= Duration::from_secs(TTL + LOOP_WAIT + 8), "failover took {took:?}");
        assert!(took >= Duration::from_secs(3), "failover before the lease could expire: {took:?}");
        assert_eq!(c.leader_key().await.as_deref(), Some(c.nodes[new_leader].name.as_str()));
        let history = poll(Duration::from_secs(10), || async {
            c.key("history").await.filter(|h| h.starts_with("[["))
        })
        .await
        .expect("history written after promotion");
        let h: Value = serde_json::from_str(&history).expect("history JSON");
        assert_eq!(h[0][0], json!(1), "history = {history}");
        assert_eq!(h[0][4], json!(c.nodes[new_leader].name), "history = {history}");

        // The old leader comes back as a replica of the new timeline and streams.
        let restarted = Instant::now();
        c.start_agent(leader);
        let ok = wait_for(Duration::from_secs(90), || async {
            let (p, s) = c.roles().await;
            p == vec![new_leader] && s.contains(&leader) && s.len() == 2
        })
        .await;
        assert!(ok, "old leader did not rejoin\n{}", c.logs());
        println!(
            "crash: {} streaming again {:?} after its agent started (rewound: {})",
            c.nodes[leader].name,
            restarted.elapsed(),
            c.log(leader).contains("running pg_rewind from")
        );
        // Rewound or not depends on whether the dying leader wrote WAL the new leader never got;
        // `old_leader_rejoins_without_rewind_after_switchover_and_with_rewind_after_diverging`
        // pins both paths.
        let on_tl2 = wait_for(Duration::from_secs(15), || async {
            c.scalar(leader, "SELECT received_tli FROM pg_stat_wal_receiver").await.as_deref() == Some("2")
        })
        .await;
        assert!(on_tl2, "rejoined node does not stream timeline 2\n{}", c.logs());

        // Graceful stop of the leader's agent: it stops PostgreSQL and releases the key; a replica
        // takes over within a few seconds (not after the lease expires).
        c.sql(new_leader, "CREATE TABLE IF NOT EXISTS acked(id int); INSERT INTO acked VALUES (42)")
            .await
            .expect("write");
        let stopping = Instant::now();
        c.nodes[new_leader].agent.as_mut().expect("agent").stop(Duration::from_secs(40));
        let stop_took = stopping.elapsed();
        assert!(c.log(new_leader).contains("Leader key released"), "{}", c.logs());
        let third = poll(Duration::from_secs(TTL), || async {
            for i in (0..3).filter(|i| *i != new_leader) {
                if c.accepts_writes(i).await {
                    return Some(i);
                }
            }
            None
        })
        .await;
        let Some(third) = third else { panic!("no takeover after a graceful stop\n{}", c.logs()) };
        let takeover = stopping.elapsed() - stop_took;
        assert!(takeover < Duration::from_secs(TTL - 2), "takeover took {takeover:?} after the stop");
        assert_eq!(c.scalar(third, "SELECT count(*) FROM acked WHERE id = 42").await.as_deref(), Some("1"));
        // Key released, not expired: the status carries the last LSN of the stopped leader.
        assert!(c.key("status").await.is_some());
        c.stop_all();
    }

    /// How long node `i` takes to stream again as a replica (bounded); panics with the logs.
    async fn wait_streaming(c: &Cluster, i: usize, leader: usize, timeout: Duration) -> Duration {
        let t0 = Instant::now();
        let ok = wait_for(timeout, || async {
            let (p, s) = c.roles().await;
            p == vec![leader] && s.contains(&i)
        })
        .await;
        assert!(ok, "{} did not stream from {} again\n{}", c.nodes[i].name, c.nodes[leader].name, c.logs());
        t0.elapsed()
    }

    /// Rejoin of a former leader (praetor: rewind only when its WAL goes past the new leader's
    /// fork point, rewind.py `_check_timeline_and_lsn`). After a switchover the old leader stopped
    /// cleanly with its shutdown checkpoint streamed: it follows the new timeline with no pg_rewind.
    /// A leader that kept writing after another node was promoted, then crashed, has WAL the new
    /// leader never got: crash recovery, pg_rewind, then it streams. Prints the rejoin times.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn old_leader_rejoins_without_rewind_after_switchover_and_with_rewind_after_diverging() {
        let Some(mut c) = Cluster::start("ha-rejoin", AgentOpts::default()).await else { return };
        let old = c.wait_healthy(Duration::from_secs(90)).await;
        let cand = (old + 1) % 3;
        c.sql(old, "CREATE TABLE t(v text); INSERT INTO t VALUES ('tl1')").await.expect("write");

        // 1. Switchover: no rewind, no single-user recovery.
        let t0 = Instant::now();
        c.c.switch_over(&c.store, old, cand).await;
        let rejoin = t0.elapsed() + wait_streaming(&c, old, cand, Duration::from_secs(60)).await;
        println!("switchover: old leader {} streaming again {rejoin:?} after the request", c.nodes[old].name);
        let log = c.log(old);
        assert!(!log.contains("running pg_rewind"), "rewind after a clean switchover\n{}", c.logs());
        assert!(!log.contains("single-user mode"), "crash recovery after a clean switchover\n{}", c.logs());
        let on_tl2 = wait_for(Duration::from_secs(15), || async {
            c.scalar(old, "SELECT received_tli FROM pg_stat_wal_receiver").await.as_deref() == Some("2")
        })
        .await;
        assert!(on_tl2, "old leader does not stream timeline 2\n{}", c.logs());

        // 2. Divergence: the leader's agent dies but its PostgreSQL keeps running as a primary;
        // once another node is promoted, it takes a write nobody else gets, then crashes too.
        let diverged = cand;
        c.nodes[diverged].agent.as_mut().expect("agent").kill();
        let others: Vec<usize> = (0..3).filter(|i| *i != diverged).collect();
        let new_leader = poll(Duration::from_secs(TTL + LOOP_WAIT + 30), || async {
            for &i in &others {
                if c.status(i).await.is_some_and(|v| v["role"] == "primary" && v["state"] == "running")
                    && c.leader_key().await.as_deref() == Some(c.nodes[i].name.as_str())
                {
                    return Some(i);
                }
            }
            None
        })
        .await;
        let Some(new_leader) = new_leader else { panic!("no failover\n{}", c.logs()) };
        c.sql(diverged, "INSERT INTO t SELECT 'lost' FROM generate_series(1, 1000)")
            .await
            .expect("diverging write");
        c.kill_postmaster(diverged);
        c.start_agent(diverged);
        let rejoin = wait_streaming(&c, diverged, new_leader, Duration::from_secs(90)).await;
        println!(
            "diverged crash: {} streaming again {rejoin:?} after its agent started",
            c.nodes[diverged].name
        );
        let log = c.log(diverged);
        assert!(
            log.contains("running pg_rewind from"),
            "diverged leader rejoined without a rewind\n{}",
            c.logs()
        );
        let lost = c.scalar(diverged, "SELECT count(*) FROM t WHERE v = 'lost'").await;
        assert_eq!(lost.as_deref(), Some("0"), "the diverged write survived the rewind");
        c.stop_all();
    }

    /// PATRONI-COMPAT §6.5 (switchover through the `/failover` key, named and scheduled), §6.8
    /// (pause) and the callbacks' arguments, on one cluster.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn switchover_pause_and_callbacks() {
        let Some(mut c) =
            Cluster::start("ha-switchover", AgentOpts { callbacks: true, ..Default::default() }).await
        else {
            return;
        };
        let leader = c.wait_healthy(Duration::from_secs(90)).await;
        let cand = (leader + 1) % 3;

        // Callbacks after bootstrap: the leader started as primary, each replica as replica.
        let ok = wait_for(Duration::from_secs(10), || async {
            c.calls(leader).contains(&format!("on_start primary {}", c.scope))
                && (0..3)
                    .filter(|i| *i != leader)
                    .all(|i| c.calls(i).contains(&format!("on_start replica {}", c.scope)))
        })
        .await;
        assert!(ok, "callbacks: {:?} {:?} {:?}", c.calls(0), c.calls(1), c.calls(2));
        // Exactly once per node: on_start is not repeated when the loop first sees PostgreSQL up.
        for i in 0..3 {
            assert_eq!(c.calls(i).len(), 1, "{}: {:?}", c.nodes[i].name, c.calls(i));
        }

        // Switchover to a named candidate with writes running: no acknowledged write lost.
        c.sql(leader, "CREATE TABLE acked(id int PRIMARY KEY)").await.expect("create table");
        let writer = {
            let ports: Vec<u16> = c.nodes.iter().map(|n| n.pg_port).collect();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(12);
                let mut id = 0;
                while Instant::now() < deadline {
                    for port in &ports {
                        let mut cfg = tokio_postgres::Config::new();
                        cfg.host("127.0.0.1")
                            .port(*port)
                            .user("postgres")
                            .password("su-secret")
                            .dbname("postgres");
                        cfg.connect_timeout(Duration::from_secs(1));
                        if let Ok(Ok((cl, conn))) =
                            tokio::time::timeout(Duration::from_secs(2), cfg.connect(tokio_postgres::NoTls))
                                .await
                        {
                            tokio::spawn(conn);
                            id += 1;
                            let q = format!("INSERT INTO acked VALUES ({id})");
                            if let Ok(Ok(_)) =
                                tokio::time::timeout(Duration::from_secs(2), cl.simple_query(&q)).await
                            {
                                acked.push(id);
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                acked
            })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        c.put("failover", &json!({"leader": c.nodes[leader].name, "member": c.nodes[cand].name}).to_string())
            .await;
        let ok = wait_for(Duration::from_secs(40), || async {
            let (p, _) = c.roles().await;
            p == vec![cand] && c.leader_key().await.as_deref() == Some(c.nodes[cand].name.as_str())
        })
        .await;
        assert!(ok, "switchover to {} did not happen\n{}", c.nodes[cand].name, c.logs());
        let acked = writer.await.expect("writer task");
        assert!(!acked.is_empty());
        let count = c.scalar(cand, "SELECT count(*) FROM acked").await.expect("count");
        let max_ok = wait_for(Duration::from_secs(5), || async {
            let ids = c.sql(cand, "SELECT id FROM acked").await.unwrap_or_default();
            let have: BTreeSet<i64> = ids
                .iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).and_then(|s| s.parse().ok()),
                    _ => None,
                })
                .collect();
            acked.iter().all(|a| have.contains(a))
        })
        .await;
        assert!(max_ok, "acknowledged writes lost: acked {} rows, new primary has {count}", acked.len());
        let new_primary_role = wait_for(Duration::from_secs(10), || async {
            c.calls(cand).contains(&format!("on_role_change primary {}", c.scope))
                && c.calls(leader).contains(&format!("on_role_change replica {}", c.scope))
        })
        .await;
        assert!(new_primary_role, "role change callbacks: {:?} / {:?}", c.calls(cand), c.calls(leader));
        c.wait_healthy(Duration::from_secs(60)).await;
        assert_eq!(c.key("failover").await.as_deref().unwrap_or("{}"), "{}");

        // Scheduled switchover: nothing before `scheduled_at`, done after it.
        let leader = cand;
        let cand = (leader + 1) % 3;
        let at = chrono::Utc::now() + chrono::Duration::seconds(6);
        c.put(
            "failover",
            &json!({"leader": c.nodes[leader].name, "member": c.nodes[cand].name, "scheduled_at": at.to_rfc3339()})
                .to_string(),
        )
        .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(c.roles().await.0, vec![leader], "switched over before scheduled_at");
        let ok = wait_for(Duration::from_secs(40), || async { c.roles().await.0 == vec![cand] }).await;
        assert!(ok, "scheduled switchover did not happen\n{}", c.logs());
        assert!(chrono::Utc::now() >= at);
        let leader = c.wait_healthy(Duration::from_secs(60)).await;

        // Pause: killing the leader's postmaster does not fail over.
        c.patch_config(json!({"pause": true})).await;
        let paused = wait_for(Duration::from_secs(10), || async {
            let mut all = true;
            for i in 0..3 {
                all &= c.status(i).await.is_some_and(|v| v["pause"] == true);
            }
            all
        })
        .await;
        assert!(paused, "pause not applied\n{}", c.logs());
        c.kill_postmaster(leader);
        tokio::time::sleep(Duration::from_secs(TTL + 5)).await;
        let (p, _) = c.roles().await;
        assert!(p.is_empty(), "a replica was promoted while paused: {p:?}\n{}", c.logs());
        for i in (0..3).filter(|i| *i != leader) {
            assert_eq!(c.scalar(i, "SELECT pg_is_in_recovery()").await.as_deref(), Some("t"));
        }

        // Resume: the cluster heals (a leader and two streaming replicas again).
        c.patch_config(json!({"pause": false})).await;
        c.wait_healthy(Duration::from_secs(90)).await;
        c.stop_all();
    }

    /// PATRONI-COMPAT §6.6: DCS outage demotes the primary within ttl; with failsafe_mode and all
    /// members reachable it stays primary; restoring etcd restores the cluster.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn dcs_outage_demotes_unless_failsafe_keeps_the_primary() {
        let Some(mut c) = Cluster::start("ha-dcs", AgentOpts::default()).await else { return };
        let leader = c.wait_healthy(Duration::from_secs(90)).await;

        c.store.server.kill_member(0);
        let down = Instant::now();
        let ok = wait_for(Duration::from_secs(TTL + 5), || async {
            c.scalar(leader, "SELECT pg_is_in_recovery()").await.as_deref() == Some("t")
        })
        .await;
        assert!(ok, "primary did not demote without the DCS\n{}", c.logs());
        assert!(down.elapsed() <= Duration::from_secs(TTL), "demotion took {:?}", down.elapsed());
        assert!(!c.accepts_writes(leader).await);
        assert!(c.log(leader).contains("demoted self because DCS is not accessible and I was a leader"));

        c.store.server.restart_member(0).await;
        c.wait_healthy(Duration::from_secs(90)).await;

        // Failsafe mode: with every member answering POST /failsafe the primary keeps running.
        c.patch_config(json!({"failsafe_mode": true})).await;
        let ok = wait_for(Duration::from_secs(20), || async {
            c.key("failsafe")
                .await
                .and_then(|v| serde_json::from_str::<Value>(&v).ok())
                .is_some_and(|v| v.as_object().is_some_and(|o| o.len() == 3))
        })
        .await;
        assert!(ok, "/failsafe not written\n{}", c.logs());
        // Let every member read the new /failsafe once (the leader judges from its last read).
        tokio::time::sleep(Duration::from_secs(3 * LOOP_WAIT)).await;
        let leader = c.wait_healthy(Duration::from_secs(30)).await;
        c.store.server.kill_member(0);
        tokio::time::sleep(Duration::from_secs(TTL + 5)).await;
        assert!(c.accepts_writes(leader).await, "failsafe primary stopped accepting writes\n{}", c.logs());
        assert!(c.log(leader).contains(
            "continue to run as a leader because failsafe mode is enabled and all members are accessible"
        ));
        c.store.server.restart_member(0).await;
        let again = c.wait_healthy(Duration::from_secs(60)).await;
        assert_eq!(again, leader);

        // SIGHUP reloads the local configuration: a new custom tag is published.
        let n = &c.nodes[leader];
        let mut yaml = std::fs::read_to_string(&n.cfg).expect("read config");
        yaml.push_str("tags:\n  dc: east\n");
        std::fs::write(&n.cfg, yaml).expect("write config");
        let pid = n.agent.as_ref().and_then(|a| a.pid()).expect("agent pid");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGHUP)
            .expect("send SIGHUP");
        let ok = wait_for(Duration::from_secs(10), || async {
            c.status(leader).await.is_some_and(|v| v["tags"]["dc"] == "east")
                && c.key(&format!("members/{}", c.nodes[leader].name))
                    .await
                    .is_some_and(|m| m.contains("\"dc\":\"east\""))
        })
        .await;
        assert!(ok, "SIGHUP did not reload the tags\n{}", c.logs());
        c.stop_all();
    }

    /// What an agent did to PostgreSQL according to `log` (its log since it started): postmasters
    /// started, stops and demotions.
    fn pg_actions(log: &str) -> (usize, usize, usize) {
        let count = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
        (count("starting postmaster"), count("stopping postgres"), count("Demoting self"))
    }

    /// The pid in node `i`'s `postmaster.pid` (None when PostgreSQL is stopped).
    fn postmaster_pid(c: &Cluster, i: usize) -> Option<i32> {
        praetor::postgres::postmaster::PidFile::read(&c.nodes[i].data_dir).ok().flatten().map(|p| p.pid)
    }

    /// Stop node `i`'s agent with SIGTERM (it stops PostgreSQL, a leader releases the key first),
    /// start it again once another node holds the key as a running primary, and check what Patroni
    /// 4.1.5 does: the stopped server is started once, as a replica of that leader, and is not
    /// demoted, stopped or restarted again once it streams.
    #[allow(clippy::print_stdout)] // the rejoin time is the test's report
    async fn restart_after_graceful_stop(c: &mut Cluster, i: usize) {
        let name = c.nodes[i].name.clone();
        c.nodes[i].agent.as_mut().expect("agent").stop(Duration::from_secs(40));
        assert_eq!(postmaster_pid(c, i), None, "{name}: PostgreSQL still runs after a graceful stop");
        let leader = poll(Duration::from_secs(TTL + 20), || async {
            let (p, _) = c.roles().await;
            let l = *p.first().filter(|l| p.len() == 1 && **l != i)?;
            (c.leader_key().await.as_deref() == Some(c.nodes[l].name.as_str())).then_some(l)
        })
        .await
        .unwrap_or_else(|| panic!("no running leader while {name} is stopped\n{}", c.logs()));
        let from = c.log(i).len();
        let calls_before = c.calls(i).len();
        c.start_agent(i);
        let took = wait_streaming(c, i, leader, Duration::from_secs(90)).await;
        let pid = postmaster_pid(c, i);
        // Settled: several more cycles with nothing changed.
        tokio::time::sleep(Duration::from_secs(6 * LOOP_WAIT)).await;
        let (p, s) = c.roles().await;
        assert!(p == vec![leader] && s.contains(&i), "{name} stopped streaming\n{}", c.logs());
        let log = c.log(i)[from..].to_string();
        let (starts, stops, demotions) = pg_actions(&log);
        println!(
            "{name}: streaming {took:?} after its agent started; starts {starts}, stops {stops}, demotions {demotions}"
        );
        assert_eq!(
            (starts, stops, demotions),
            (1, 0, 0),
            "{name} after a graceful stop: PostgreSQL started {starts}x, stopped {stops}x, demoted {demotions}x \
             (Patroni: one start as a replica)\n{log}"
        );
        assert_eq!(postmaster_pid(c, i), pid, "{name}: the postmaster changed after it streamed\n{log}");
        // A new agent has not seen PostgreSQL run (Patroni `cb_called` false): the start fires
        // `on_start` with the role it started in, not `on_role_change` (postgresql `follow`).
        let calls = c.calls(i)[calls_before..].to_vec();
        assert_eq!(
            calls,
            vec![format!("on_start replica {}", c.scope)],
            "{name}: callbacks after the restart"
        );
    }

    /// Patroni's graceful shutdown then a new agent (ha.py `shutdown`, `recover`): a replica, and
    /// a leader (which released the key, so another node took over), each come back with one
    /// PostgreSQL start as a replica of the current leader, with no extra demotion or restart.
    /// (The former leader's data directory says primary: praetor used to keep that role until the
    /// start finished, so a cycle meanwhile demoted it as a primary without the lock and started
    /// it a second time.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn agent_restarted_after_graceful_stop_starts_postgres_once() {
        let Some(mut c) =
            Cluster::start("ha-restart", AgentOpts { callbacks: true, ..Default::default() }).await
        else {
            return;
        };
        let leader = c.wait_healthy(Duration::from_secs(90)).await;
        let replica = (leader + 1) % 3;
        restart_after_graceful_stop(&mut c, replica).await;
        c.wait_healthy(Duration::from_secs(60)).await;

        // The leader: it releases the key, another node takes over, then it rejoins that one.
        restart_after_graceful_stop(&mut c, leader).await;
        c.wait_healthy(Duration::from_secs(60)).await;
        c.stop_all();
    }

    /// The `praetor` backends on node `i` (pids, ascending), read over a connection of the test's.
    async fn agent_backends(c: &Cluster, i: usize) -> Option<Vec<i32>> {
        let v = c
            .scalar(
                i,
                "SELECT coalesce(string_agg(pid::text, ',' ORDER BY pid), '') FROM pg_catalog.pg_stat_activity \
                 WHERE application_name = 'praetor'",
            )
            .await?;
        v.split(',').filter(|p| !p.is_empty()).map(|p| p.parse().ok()).collect()
    }

    /// `praetor_ha_cycles_total` of node `i`.
    async fn cycles(c: &Cluster, i: usize) -> Option<u64> {
        let url = format!("http://127.0.0.1:{}/metrics", c.nodes[i].api);
        let text = c.http.get(url).send().await.ok()?.text().await.ok()?;
        text.lines().find(|l| l.starts_with("praetor_ha_cycles_total{"))?.rsplit(' ').next()?.parse().ok()
    }

    /// The HA loop keeps one connection to its own PostgreSQL across cycles (one `praetor` backend,
    /// the same pid cycle after cycle), opens a new one after PostgreSQL restarts, and keeps
    /// cycling while PostgreSQL is frozen (SIGSTOP on the postmaster and its backends): every SQL
    /// use is bounded, so a hung server costs a cycle at most its observation timeout.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn agent_keeps_one_postgres_connection_reconnects_after_restart_and_cycles_while_frozen() {
        let Some(c) = Cluster::start("pgsession", AgentOpts::default()).await else { return };
        let leader = c.wait_healthy(Duration::from_secs(120)).await;
        let r = (leader + 1) % 3;

        // One connection, kept: the same backend over several cycles.
        let first =
            poll(Duration::from_secs(10), || async { agent_backends(&c, r).await.filter(|b| b.len() == 1) })
                .await
                .unwrap_or_else(|| panic!("no single praetor backend on {}\n{}", c.nodes[r].name, c.logs()));
        let cycles_before = cycles(&c, r).await.expect("cycles");
        tokio::time::sleep(Duration::from_secs(4 * LOOP_WAIT + 1)).await;
        assert!(cycles(&c, r).await.expect("cycles") >= cycles_before + 3, "the loop did not cycle");
        assert_eq!(agent_backends(&c, r).await, Some(first.clone()), "the agent reconnected while idle");

        // PostgreSQL restarts: the agent connects again and carries on.
        let http = reqwest::Client::builder().timeout(Duration::from_secs(90)).build().expect("http client");
        let resp = http
            .post(format!("http://127.0.0.1:{}/restart", c.nodes[r].api))
            .json(&json!({}))
            .send()
            .await
            .expect("POST /restart");
        assert_eq!(resp.status().as_u16(), 200, "restart refused\n{}", c.logs());
        let again = poll(Duration::from_secs(30), || async {
            agent_backends(&c, r).await.filter(|b| b.len() == 1 && *b != first)
        })
        .await;
        assert!(again.is_some(), "no new praetor backend after the restart\n{}", c.logs());
        c.wait_healthy(Duration::from_secs(60)).await;

        // PostgreSQL frozen: the loop keeps cycling (each cycle bounded by the 5 s observation
        // timeout), then reconnects once the server answers again.
        let pid = praetor::postgres::postmaster::PidFile::read(&c.nodes[r].data_dir)
            .expect("read postmaster.pid")
            .expect("postmaster.pid")
            .pid;
        let frozen = FrozenPostgres::freeze(pid);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let frozen_at = cycles(&c, r).await.expect("cycles while frozen");
        tokio::time::sleep(Duration::from_secs(20)).await;
        let later = cycles(&c, r).await.expect("cycles while frozen");
        drop(frozen);
        assert!(
            later >= frozen_at + 2,
            "the loop stalled behind the frozen server: {frozen_at} -> {later}\n{}",
            c.log(r)
        );
        let back =
            poll(Duration::from_secs(30), || async { agent_backends(&c, r).await.filter(|b| b.len() == 1) })
                .await;
        assert!(back.is_some(), "no single praetor backend after the thaw\n{}", c.logs());
        c.wait_healthy(Duration::from_secs(60)).await;
    }
}
