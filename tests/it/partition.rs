//! Partitions (issue 13; issue 10's split-brain write test): three praetor agents with PostgreSQL
//! 15 and one etcd, each in its own network namespace on a bridge ([`crate::support::netns`]),
//! and a client in a fourth namespace that writes a sequential id to every node every 50 ms and
//! records each acknowledged commit (node, id, timeline, time). Serial: the path has `cluster::`.
//!
//! Every scenario checks, whatever the failover policy does in between:
//! - no split brain: the acknowledgements of two different nodes never overlap in time (a node's
//!   writes on one timeline form one interval; intervals of different nodes are disjoint), so
//!   after a new leader's first acknowledged write the old one acknowledges nothing more;
//! - with `synchronous_mode_strict`: every acknowledged id is on the final primary;
//! - after the network heals, every node streams from the leader again (bounded wait).
//!
//! Each prints one line `PARTITION-RESULT scenario=… key=value …` with what it measured (also
//! appended to the file named by `PRAETOR_PARTITION_RESULTS`, when set). Timings are reported,
//! not asserted.

pub(crate) mod cluster {
    use crate::support::agents::{AgentCluster, AgentOpts, NodeHost, Store, TTL};
    use crate::support::etcd::EtcdStore;
    use crate::support::netns::{Net, Peer};
    use crate::support::wait_for;
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};
    use tokio::task::JoinHandle;

    const STRICT: &str = "    synchronous_mode: true\n    synchronous_mode_strict: true\n";
    /// How often the client writes to each node.
    const WRITE_EVERY: Duration = Duration::from_millis(50);
    /// A write (or connection attempt) that takes longer is abandoned: a hung node does not stall
    /// the writer, and an abandoned write never counts as acknowledged.
    const STATEMENT_TIMEOUT: Duration = Duration::from_secs(2);
    const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
    /// Bound of the wait for every node to stream again after the heal.
    const REJOIN_TIMEOUT: Duration = Duration::from_secs(120);

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Scenario {
        /// The leader loses the DCS and both replicas; the client still reaches it.
        LeaderIsolated,
        /// The leader loses the DCS only; it still streams to its replicas.
        LeaderCutFromDcs,
        /// The leader loses its replicas only; it still reaches the DCS.
        LeaderCutFromReplicas,
        /// No node reaches the DCS.
        DcsDownForAll,
        /// One replica loses the DCS and the other nodes.
        ReplicaIsolated,
        /// The leader's link goes down and up again, five times.
        LeaderLinkFlaps,
        /// A replica's link goes down and up again, five times.
        ReplicaLinkFlaps,
    }

    impl Scenario {
        fn name(self) -> &'static str {
            match self {
                Scenario::LeaderIsolated => "leader_isolated",
                Scenario::LeaderCutFromDcs => "leader_cut_from_dcs",
                Scenario::LeaderCutFromReplicas => "leader_cut_from_replicas",
                Scenario::DcsDownForAll => "dcs_down_for_all",
                Scenario::ReplicaIsolated => "replica_isolated",
                Scenario::LeaderLinkFlaps => "leader_link_flaps",
                Scenario::ReplicaLinkFlaps => "replica_link_flaps",
            }
        }
    }

    /// One acknowledged write.
    #[derive(Clone, Debug)]
    pub(crate) struct Ack {
        pub(crate) node: usize,
        pub(crate) id: i64,
        /// The timeline the primary wrote on (first 8 hex digits of its WAL file name).
        timeline: String,
        pub(crate) at: Instant,
    }

    /// The client: a task per node, each writing every [`WRITE_EVERY`].
    pub(crate) struct Writer {
        acks: Arc<Mutex<Vec<Ack>>>,
        stop: Arc<AtomicBool>,
        tasks: Vec<JoinHandle<()>>,
    }

    impl Writer {
        pub(crate) fn start(c: &AgentCluster) -> Writer {
            let acks = Arc::new(Mutex::new(Vec::new()));
            let stop = Arc::new(AtomicBool::new(false));
            let next = Arc::new(AtomicI64::new(1));
            let tasks = c
                .nodes
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    tokio::spawn(write_loop(
                        i,
                        n.host.clone(),
                        n.pg_port,
                        next.clone(),
                        acks.clone(),
                        stop.clone(),
                    ))
                })
                .collect();
            Writer { acks, stop, tasks }
        }

        pub(crate) fn acks(&self) -> Vec<Ack> {
            self.acks.lock().unwrap().clone()
        }

        pub(crate) async fn finish(self) -> Vec<Ack> {
            self.stop.store(true, Ordering::SeqCst);
            for t in self.tasks {
                // Each loop ends within one statement timeout.
                let _ = tokio::time::timeout(STATEMENT_TIMEOUT * 3, t).await;
            }
            self.acks.lock().unwrap().clone()
        }
    }

    async fn connect(host: &str, port: u16) -> Option<(tokio_postgres::Client, JoinHandle<()>)> {
        let mut c = tokio_postgres::Config::new();
        c.host(host)
            .port(port)
            .user("postgres")
            .password("su-secret")
            .dbname("postgres")
            .connect_timeout(CONNECT_TIMEOUT);
        let (client, conn) =
            tokio::time::timeout(CONNECT_TIMEOUT, c.connect(tokio_postgres::NoTls)).await.ok()?.ok()?;
        let task = tokio::spawn(async move {
            let _ = conn.await;
        });
        Some((client, task))
    }

    async fn write_loop(
        node: usize,
        host: String,
        port: u16,
        next: Arc<AtomicI64>,
        acks: Arc<Mutex<Vec<Ack>>>,
        stop: Arc<AtomicBool>,
    ) {
        let mut conn: Option<(tokio_postgres::Client, JoinHandle<()>)> = None;
        let mut tick = tokio::time::interval(WRITE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let abandon = |conn: &mut Option<(tokio_postgres::Client, JoinHandle<()>)>| {
            if let Some((_, task)) = conn.take() {
                task.abort();
            }
        };
        while !stop.load(Ordering::SeqCst) {
            tick.tick().await;
            if conn.as_ref().is_none_or(|(c, _)| c.is_closed()) {
                abandon(&mut conn);
                conn = connect(&host, port).await;
            }
            let Some((client, _)) = conn.as_ref() else { continue };
            let id = next.fetch_add(1, Ordering::SeqCst);
            // Simple protocol: the statement's commit (and its synchronous replication wait)
            // happens before CommandComplete, so a returned row is an acknowledged commit.
            let q = format!(
                "INSERT INTO writes VALUES ({id}, {node}) \
                 RETURNING substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8)"
            );
            match tokio::time::timeout(STATEMENT_TIMEOUT, client.simple_query(&q)).await {
                Ok(Ok(msgs)) => {
                    let timeline = msgs
                        .iter()
                        .find_map(|m| match m {
                            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                            _ => None,
                        })
                        .unwrap_or_default();
                    acks.lock().unwrap().push(Ack { node, id, timeline, at: Instant::now() });
                }
                // A replica refuses (read-only): keep the connection.
                Ok(Err(e)) if e.as_db_error().is_some() => {}
                Ok(Err(_)) | Err(_) => abandon(&mut conn),
            }
        }
        abandon(&mut conn);
    }

    /// The overlapping acknowledgement intervals of two different nodes, if any (split brain).
    /// A node's acknowledgements on one timeline form one interval.
    pub(crate) fn split_brain(acks: &[Ack], names: &[String]) -> Vec<String> {
        let mut terms: BTreeMap<(usize, String), (Instant, Instant, usize)> = BTreeMap::new();
        for a in acks {
            let t = terms.entry((a.node, a.timeline.clone())).or_insert((a.at, a.at, 0));
            t.0 = t.0.min(a.at);
            t.1 = t.1.max(a.at);
            t.2 += 1;
        }
        let terms: Vec<_> = terms.into_iter().collect();
        let mut overlaps = Vec::new();
        for (i, ((n1, tl1), (s1, e1, c1))) in terms.iter().enumerate() {
            for ((n2, tl2), (s2, e2, c2)) in &terms[i + 1..] {
                if n1 != n2 && s1 <= e2 && s2 <= e1 {
                    overlaps.push(format!(
                        "{} (timeline {tl1}, {c1} acks over {:?}) and {} (timeline {tl2}, {c2} acks over {:?}) \
                         acknowledged writes at the same time",
                        names[*n1],
                        *e1 - *s1,
                        names[*n2],
                        *e2 - *s2
                    ));
                }
            }
        }
        overlaps
    }

    /// One primary holds the leader key and every other node streams from it: its
    /// `pg_stat_replication` lists them as streaming, with a status reply sent at or after `since`
    /// (a walsender row stays `streaming` on a dead link until `wal_sender_timeout`; a fresh reply
    /// shows the link works). The primary.
    pub(crate) async fn all_streaming(
        c: &AgentCluster,
        store: &EtcdStore,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Option<usize> {
        let (p, s) = c.roles().await;
        if p.len() != 1 || s.len() + 1 != c.nodes.len() {
            return None;
        }
        let l = p[0];
        if store.leader(&c.scope).await.as_deref() != Some(c.nodes[l].name.as_str()) {
            return None;
        }
        let rows = c
            .sql(
                l,
                &format!(
                    "SELECT application_name FROM pg_stat_replication \
                     WHERE state = 'streaming' AND reply_time >= '{}'::timestamptz",
                    since.to_rfc3339()
                ),
            )
            .await
            .ok()?;
        let streaming: BTreeSet<String> = rows
            .iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            })
            .collect();
        let all = (0..c.nodes.len()).filter(|&i| i != l).all(|i| streaming.contains(&c.nodes[i].name));
        all.then_some(l)
    }

    /// The node holding the leader key, per etcd (read from the client).
    pub(crate) async fn key_holder(c: &AgentCluster, store: &EtcdStore) -> Option<usize> {
        let name = store.leader(&c.scope).await?;
        c.nodes.iter().position(|n| n.name == name)
    }

    /// etcd and three agents in `net` (`dcs_extra`: more `bootstrap.dcs` lines), and the healthy
    /// leader; `None` when a server cannot start here (skipped).
    pub(crate) async fn start(
        net: &Net,
        scope: &str,
        dcs_extra: &str,
    ) -> Option<(EtcdStore, AgentCluster, usize)> {
        let store = EtcdStore::start_in(net.addr(Peer::Etcd), net.prefix(Peer::Etcd, false)).await?;
        let hosts = (0..net.nodes())
            .map(|i| NodeHost {
                addr: net.addr(Peer::Node(i)).to_string(),
                api_port: 8008,
                pg_port: 5432,
                cidr: net.cidr(),
                prefix: net.prefix(Peer::Node(i), true),
            })
            .collect();
        let opts = AgentOpts { hosts, dcs_extra: dcs_extra.to_string(), ..Default::default() };
        let c = AgentCluster::start_with(scope, &store, opts)?;
        let leader = c.wait_healthy(&store, Duration::from_secs(120)).await;
        Some((store, c, leader))
    }

    /// Create the `writes` table on the leader and start the writer; returns once the leader has
    /// acknowledged 20 writes.
    pub(crate) async fn warm_up(c: &AgentCluster, leader: usize) -> Writer {
        c.sql(leader, "CREATE TABLE writes(id bigint PRIMARY KEY, node int NOT NULL)")
            .await
            .unwrap_or_else(|e| panic!("create the writes table on the leader: {e}"));
        let writer = Writer::start(c);
        let warm = wait_for(Duration::from_secs(30), || async {
            writer.acks().iter().filter(|a| a.node == leader).count() >= 20
        })
        .await;
        assert!(
            warm,
            "the leader {} did not acknowledge 20 writes before the cut\n{}",
            c.nodes[leader].name,
            c.logs()
        );
        writer
    }

    /// Wait (at most 6 × ttl) until a node other than `old` for which `accept` holds has the
    /// leader key and has acknowledged a write after `cut_at`.
    pub(crate) async fn took_over(
        c: &AgentCluster,
        store: &EtcdStore,
        writer: &Writer,
        old: usize,
        cut_at: Instant,
        accept: impl Fn(usize) -> bool,
    ) -> bool {
        wait_for(Duration::from_secs(TTL * 6), || async {
            let holder = key_holder(c, store).await;
            holder.is_some_and(|h| h != old && accept(h))
                && writer.acks().iter().any(|a| a.at > cut_at && Some(a.node) == holder)
        })
        .await
    }

    /// What [`heal_and_rejoin`] saw.
    pub(crate) struct Healed {
        /// The leader every node streams from.
        pub(crate) leader: usize,
        /// From the heal until every node streamed.
        pub(crate) took: Duration,
        /// When the network healed (wall clock).
        pub(crate) wall: chrono::DateTime<chrono::Utc>,
    }

    /// Heal the network and wait until every node streams from one leader ([`all_streaming`],
    /// bounded by [`REJOIN_TIMEOUT`]) and that leader acknowledges writes again.
    pub(crate) async fn heal_and_rejoin(
        net: &Net,
        c: &AgentCluster,
        store: &EtcdStore,
        writer: &Writer,
    ) -> Healed {
        net.heal();
        let at = Instant::now();
        let wall = chrono::Utc::now();
        let leader = crate::support::Found::new();
        let rejoined = wait_for(REJOIN_TIMEOUT, || async {
            leader.set(all_streaming(c, store, wall).await);
            leader.get().is_some()
        })
        .await;
        let took = at.elapsed();
        assert!(
            rejoined,
            "not every node streams from the leader {REJOIN_TIMEOUT:?} after the heal\n{}",
            c.logs()
        );
        let leader = leader.get().expect("set when rejoined");
        let writes = wait_for(Duration::from_secs(30), || async {
            writer.acks().iter().any(|a| a.node == leader && a.at > at)
        })
        .await;
        assert!(
            writes,
            "the final leader {} acknowledges no write after the heal\n{}",
            c.nodes[leader].name,
            c.logs()
        );
        Healed { leader, took, wall }
    }

    fn ms(d: Duration) -> u128 {
        d.as_millis()
    }

    /// Run `scenario` on a fresh network and cluster (skips without root / namespaces).
    fn run(scenario: Scenario, strict: bool) {
        let Some(net) = Net::create(3) else { return };
        let net = Arc::new(net);
        let body_net = net.clone();
        net.block_on(async move { scenario_body(body_net, scenario, strict).await });
    }

    #[allow(clippy::print_stdout)] // the PARTITION-RESULT line is the test's report
    async fn scenario_body(net: Arc<Net>, scenario: Scenario, strict: bool) {
        let mode = if strict { "strict" } else { "async" };
        let scope = format!("part-{}", scenario.name().replace('_', "-"));
        let Some((store, mut c, leader)) = start(&net, &scope, if strict { STRICT } else { "" }).await else {
            return;
        };
        if strict {
            store.wait_sync_standby(&c, leader).await;
        }
        let names: Vec<String> = c.nodes.iter().map(|n| n.name.clone()).collect();
        let writer = warm_up(&c, leader).await;

        // The partition.
        let replica = (leader + 1) % net.nodes();
        let cut_at = Instant::now();
        let cut_wall = chrono::Utc::now();
        let mut new_leader_at = None;
        match scenario {
            Scenario::LeaderIsolated | Scenario::LeaderCutFromDcs => {
                if scenario == Scenario::LeaderIsolated {
                    net.isolate(leader);
                } else {
                    net.cut_from_dcs(leader);
                }
                // Hold until another node holds the key and acknowledges writes, and 3 s more:
                // the old leader has every chance to acknowledge a write it must not.
                let moved = took_over(&c, &store, &writer, leader, cut_at, |_| true).await;
                if moved {
                    new_leader_at = Some(cut_at.elapsed());
                }
                if scenario == Scenario::LeaderIsolated {
                    assert!(moved, "no other node took over from the isolated leader\n{}", c.logs());
                }
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            Scenario::LeaderCutFromReplicas => {
                net.cut_from_nodes(leader);
                tokio::time::sleep(Duration::from_secs(TTL * 2 + 5)).await;
            }
            Scenario::DcsDownForAll => {
                net.cut_all(&(0..net.nodes()).map(Peer::Node).collect::<Vec<_>>(), &[Peer::Etcd]);
                tokio::time::sleep(Duration::from_secs(TTL + 5)).await;
            }
            Scenario::ReplicaIsolated => {
                net.isolate(replica);
                tokio::time::sleep(Duration::from_secs(TTL + 5)).await;
            }
            Scenario::LeaderLinkFlaps | Scenario::ReplicaLinkFlaps => {
                let node = if scenario == Scenario::LeaderLinkFlaps { leader } else { replica };
                for _ in 0..5 {
                    net.link_down(Peer::Node(node));
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    net.link_up(Peer::Node(node));
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
        let held = cut_at.elapsed();
        let healed = heal_and_rejoin(&net, &c, &store, &writer).await;
        let (final_leader, heal_to_streaming, heal_wall) = (healed.leader, healed.took, healed.wall);
        let acks = writer.finish().await;

        // Split brain.
        let overlaps = split_brain(&acks, &names);

        // Acknowledged commits missing on the final primary.
        let present = c
            .ids(final_leader, "SELECT id FROM writes")
            .await
            .unwrap_or_else(|e| panic!("read the ids on the final leader: {e}"));
        let lost: Vec<&Ack> = acks.iter().filter(|a| !present.contains(&a.id)).collect();

        // What the old leader acknowledged after the cut, and when the next leader took over.
        let old_after: Vec<&Ack> = acks.iter().filter(|a| a.node == leader && a.at > cut_at).collect();
        let old_last = old_after.iter().map(|a| a.at - cut_at).max();
        let first_other =
            acks.iter().filter(|a| a.node != leader && a.at > cut_at).map(|a| a.at - cut_at).min();
        let opt_ms = |d: Option<Duration>| d.map_or_else(|| "none".to_string(), |d| ms(d).to_string());
        let line = format!(
            "PARTITION-RESULT scenario={} mode={mode} old_leader={} final_leader={} held_ms={} \
             acked={} old_leader_acks_after_cut={} old_leader_last_ack_after_cut_ms={} \
             new_leader_first_ack_after_cut_ms={} takeover_ms={} lost={} lost_on_old_leader={} \
             heal_to_streaming_ms={} split_brain={}",
            scenario.name(),
            names[leader],
            names[final_leader],
            ms(held),
            acks.len(),
            old_after.len(),
            opt_ms(old_last),
            opt_ms(first_other),
            opt_ms(new_leader_at),
            lost.len(),
            lost.iter().filter(|a| a.node == leader).count(),
            ms(heal_to_streaming),
            if overlaps.is_empty() { "no" } else { "YES" },
        );
        println!("{line}");
        if let Some(dir) = std::env::var_os("PRAETOR_PARTITION_LOGS") {
            // Every agent's whole log, with the cut and the heal in UTC, for reading a run later.
            let dir = std::path::PathBuf::from(dir);
            let _ = std::fs::create_dir_all(&dir);
            let tag = format!("{}-{mode}", scenario.name());
            let head = format!(
                "{line}\ncut {} heal {}\n",
                cut_wall.format("%H:%M:%S%.3f"),
                heal_wall.format("%H:%M:%S%.3f")
            );
            let _ = std::fs::write(dir.join(format!("{tag}.txt")), head);
            for (i, name) in names.iter().enumerate() {
                let _ = std::fs::write(dir.join(format!("{tag}-{name}.log")), c.log(i));
                let pg_log = c.nodes[i].data_dir.with_file_name("data.postmaster.log");
                let _ = std::fs::copy(pg_log, dir.join(format!("{tag}-{name}.postgres.log")));
            }
        }
        if let Some(path) = std::env::var_os("PRAETOR_PARTITION_RESULTS") {
            use std::io::Write as _;
            if let Ok(mut f) = std::fs::File::options().create(true).append(true).open(path) {
                let _ = writeln!(f, "{line}");
            }
        }

        assert!(overlaps.is_empty(), "split brain: {}\n{}", overlaps.join("\n"), c.logs());
        if strict {
            let ids: Vec<String> =
                lost.iter().take(20).map(|a| format!("{}@{}", a.id, names[a.node])).collect();
            assert!(
                lost.is_empty(),
                "strict synchronous mode lost {} acknowledged commits (first: {})\n{}",
                lost.len(),
                ids.join(", "),
                c.logs()
            );
        }
        c.stop_all();
    }

    /// The leader loses the DCS and both replicas while the client keeps writing to it (async
    /// replication): another node takes over, no split brain, everyone streams after the heal.
    #[test]
    fn isolated_leader_is_replaced_without_split_brain() {
        run(Scenario::LeaderIsolated, false);
    }

    /// Issue 10's split-brain write test: `synchronous_mode_strict`, the primary isolated from the
    /// DCS and the replicas while a client keeps writing to it. No write is acknowledged on the
    /// old primary after the new one is promoted, and no acknowledged commit is lost.
    #[test]
    fn split_brain_write_test_strict_sync_isolated_primary() {
        run(Scenario::LeaderIsolated, true);
    }

    /// The leader loses the DCS but still streams to its replicas (async): no split brain, every
    /// node streams after the heal.
    #[test]
    fn leader_cut_from_dcs_only_without_split_brain() {
        run(Scenario::LeaderCutFromDcs, false);
    }

    /// The leader loses its replicas but still reaches the DCS (async): no split brain, every
    /// node streams after the heal.
    #[test]
    fn leader_cut_from_replicas_only_without_split_brain() {
        run(Scenario::LeaderCutFromReplicas, false);
    }

    /// The same in strict synchronous mode: no split brain and no acknowledged commit lost.
    #[test]
    fn leader_cut_from_replicas_only_strict_sync_loses_nothing() {
        run(Scenario::LeaderCutFromReplicas, true);
    }

    /// No node reaches the DCS for longer than `ttl`: no split brain, a leader and streaming
    /// replicas again after the heal.
    #[test]
    fn dcs_unreachable_for_every_node_without_split_brain() {
        run(Scenario::DcsDownForAll, false);
    }

    /// A replica loses the DCS and the other nodes, strict synchronous mode: no split brain, no
    /// acknowledged commit lost, the replica streams again after the heal.
    #[test]
    fn isolated_replica_rejoins_strict_sync_loses_nothing() {
        run(Scenario::ReplicaIsolated, true);
    }

    /// The leader's link goes down and up five times (2 s each), strict synchronous mode: no split
    /// brain, no acknowledged commit lost, every node streams after the heal.
    #[test]
    fn flapping_leader_link_strict_sync_loses_nothing() {
        run(Scenario::LeaderLinkFlaps, true);
    }

    /// A replica's link goes down and up five times (2 s each), strict synchronous mode: no split
    /// brain, no acknowledged commit lost, every node streams after the heal.
    #[test]
    fn flapping_replica_link_strict_sync_loses_nothing() {
        run(Scenario::ReplicaLinkFlaps, true);
    }
}
