//! praetor's partition rules on a real cluster (issue 13 items 3 and 4, `src/ha/fence.rs`), in
//! the network-namespace harness of [`crate::partition`]: three agents with PostgreSQL 15, one etcd,
//! and a client writing to every node every 50 ms that records each acknowledged commit.
//!
//! - An isolated asynchronous leader stops acknowledging writes quickly (fencing): the last write it
//!   acknowledged after the cut is printed and held to a generous bound.
//! - A strict-synchronous leader cut from its replicas only hands its key to the synchronous
//!   standby: no acknowledged commit lost, no overlap of acknowledged writes between two nodes.
//!
//! Each prints one line `PARTITION-POLICY-RESULT …`. Serial: the path has `cluster::`.

mod cluster {
    use crate::partition::cluster::{heal_and_rejoin, split_brain, start, took_over, warm_up};
    use crate::support::agents::AgentCluster;
    use crate::support::netns::Net;
    use std::collections::BTreeSet;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    /// The isolated leader's last acknowledged write after the cut must come before this. praetor
    /// measures about 1 s; Patroni's rule alone (`loop_wait` 1 + `retry_timeout` 3 here) gives
    /// about 4 s, so the bound fails without fencing.
    const FENCE_BOUND: Duration = Duration::from_millis(2500);

    /// Acknowledged ids missing on `node`.
    async fn missing_on(c: &AgentCluster, node: usize, ids: impl Iterator<Item = i64>) -> Vec<i64> {
        let present =
            c.ids(node, "SELECT id FROM writes").await.unwrap_or_else(|e| panic!("read the ids: {e}"));
        ids.filter(|id| !present.contains(id)).collect()
    }

    /// Issue 13 item 3: the leader loses the DCS and both replicas while the client keeps writing
    /// to it (asynchronous replication). With `praetor.fence_isolated_primary` (the default) it
    /// stops acknowledging writes within about a second of the cut instead of after
    /// `retry_timeout`; another node takes over, no split brain, everyone streams after the heal.
    #[test]
    #[allow(clippy::print_stdout)] // the result line is the test's report
    fn isolated_async_leader_stops_acknowledging_writes_quickly() {
        let Some(net) = Net::create(3) else { return };
        let net = Arc::new(net);
        let n = net.clone();
        net.block_on(async move {
            let Some((store, mut c, leader)) = start(&n, "fence-isolated", "").await else { return };
            let names: Vec<String> = c.nodes.iter().map(|x| x.name.clone()).collect();
            let writer = warm_up(&c, leader).await;
            let cut_at = Instant::now();
            n.isolate(leader);
            let moved = took_over(&c, &store, &writer, leader, cut_at, |_| true).await;
            assert!(moved, "no other node took over from the isolated leader\n{}", c.logs());
            let takeover = cut_at.elapsed();
            tokio::time::sleep(Duration::from_secs(3)).await;
            let healed = heal_and_rejoin(&n, &c, &store, &writer).await;
            let (final_leader, rejoin) = (healed.leader, healed.took);
            let acks = writer.finish().await;
            let old_last = acks.iter().filter(|a| a.node == leader && a.at > cut_at).map(|a| a.at - cut_at).max();
            let old_after = acks.iter().filter(|a| a.node == leader && a.at > cut_at).count();
            let overlaps = split_brain(&acks, &names);
            let fenced = c.log(leader).contains("fenced: demoted self");
            println!(
                "PARTITION-POLICY-RESULT scenario=isolated_async_leader old_leader={} acks_after_cut={old_after} \
                 last_ack_after_cut_ms={} takeover_ms={} heal_to_streaming_ms={} final_leader={} fenced={fenced} \
                 split_brain={}",
                names[leader],
                old_last.map_or_else(|| "none".into(), |d| d.as_millis().to_string()),
                takeover.as_millis(),
                rejoin.as_millis(),
                names[final_leader],
                if overlaps.is_empty() { "no" } else { "YES" },
            );
            assert!(overlaps.is_empty(), "split brain: {}\n{}", overlaps.join("\n"), c.logs());
            assert!(fenced, "the isolated leader did not fence itself\n{}", c.log(leader));
            if let Some(d) = old_last {
                assert!(
                    d < FENCE_BOUND,
                    "the isolated leader acknowledged a write {d:?} after the cut (bound {FENCE_BOUND:?})\n{}",
                    c.log(leader)
                );
            }
            c.stop_all();
        });
    }

    /// Issue 13 item 4: `synchronous_mode_strict` with `praetor.strict_sync_failover`, the leader
    /// cut from both replicas but not from the DCS while the client keeps writing to every node.
    /// Commits block on the leader; after `ttl` without a confirming synchronous standby it stops
    /// PostgreSQL and hands the key to the standby named in `/sync`, which takes over. No
    /// acknowledged commit is lost, two nodes never acknowledge at the same time, and everyone
    /// streams after the heal.
    #[test]
    #[allow(clippy::print_stdout)] // the result line is the test's report
    fn strict_sync_leader_cut_from_replicas_fails_over_to_sync_standby_without_loss() {
        let Some(net) = Net::create(3) else { return };
        let net = Arc::new(net);
        let n = net.clone();
        net.block_on(async move {
            let extra = "    synchronous_mode: true\n    synchronous_mode_strict: true\n    praetor:\n      strict_sync_failover: true\n";
            let Some((store, mut c, leader)) = start(&n, "fence-strict-cut", extra).await else { return };
            let names: Vec<String> = c.nodes.iter().map(|x| x.name.clone()).collect();
            let sync = store.wait_sync_standby(&c, leader).await;
            let writer = warm_up(&c, leader).await;
            let cut_at = Instant::now();
            n.cut_from_nodes(leader);
            let sync_names: BTreeSet<&str> = sync.iter().map(String::as_str).collect();
            let moved =
                took_over(&c, &store, &writer, leader, cut_at, |h| sync_names.contains(names[h].as_str())).await;
            assert!(moved, "the synchronous standby ({sync:?}) did not take over\n{}", c.logs());
            let takeover = cut_at.elapsed();
            tokio::time::sleep(Duration::from_secs(3)).await;
            let healed = heal_and_rejoin(&n, &c, &store, &writer).await;
            let (final_leader, rejoin) = (healed.leader, healed.took);
            let acks = writer.finish().await;
            let overlaps = split_brain(&acks, &names);
            let lost = missing_on(&c, final_leader, acks.iter().map(|a| a.id)).await;
            let old_after = acks.iter().filter(|a| a.node == leader && a.at > cut_at).count();
            let handed = c.log(leader).contains("handed the leader key to the synchronous standby");
            println!(
                "PARTITION-POLICY-RESULT scenario=strict_sync_cut_from_replicas old_leader={} sync={sync:?} \
                 acked={} old_leader_acks_after_cut={old_after} takeover_ms={} heal_to_streaming_ms={} \
                 final_leader={} handed_over={handed} lost={} split_brain={}",
                names[leader],
                acks.len(),
                takeover.as_millis(),
                rejoin.as_millis(),
                names[final_leader],
                lost.len(),
                if overlaps.is_empty() { "no" } else { "YES" },
            );
            assert!(handed, "the cut leader did not hand its key over\n{}", c.log(leader));
            assert!(overlaps.is_empty(), "split brain: {}\n{}", overlaps.join("\n"), c.logs());
            assert!(lost.is_empty(), "acknowledged commits lost: {lost:?}\n{}", c.logs());
            c.stop_all();
        });
    }
}
