//! The health-check table: endpoint × role × lock × lag × tags → the status code Patroni 4.1.5's
//! `RestApiHandler.do_GET` gives. Each row goes through the same query parsing as a request
//! (`?lag=…&tag_…=…&replication_state=…`).

use super::probe::health_status;
use super::server::probe_query;
use super::status::{NodeStatus, Xlog};
use crate::types::Role;
use std::collections::BTreeMap;

/// The leader's WAL position in `/status` for every row.
const OPTIME: u64 = 10_000;

#[derive(Clone, Copy, Debug)]
enum Node {
    /// Running primary holding the lock.
    Leader,
    /// Running primary that lost the lock (or has not got it yet).
    PrimaryWithoutLock,
    /// Streaming replica 10 bytes behind, tags `dc=east`, `nofailover=true`, `failover_priority=1`.
    Replica,
    /// The same replica, 9 000 bytes behind.
    LaggingReplica,
    /// A replica whose PostgreSQL is `starting`.
    StartingReplica,
    /// A replica tagged `noloadbalance`.
    NoLoadBalanceReplica,
    /// A replica listed in `/sync` (non-quorum mode).
    SyncStandby,
    /// A replica listed in `/sync` in quorum mode.
    QuorumStandby,
    /// A sync standby whose agent has no DCS view.
    SyncStandbyWithoutDcs,
    /// Standby cluster: the standby leader holding the lock.
    StandbyLeader,
    /// Paused, no DCS view, PostgreSQL still primary (Patroni falls back to the local role).
    PausedPrimaryWithoutDcs,
    /// A replica whose agent knows no leader optime, only the WAL receiver's `latest_end_lsn`.
    ReplicaWithReceiverLsnOnly,
}

fn node(n: Node) -> NodeStatus {
    let mut s = NodeStatus::initial("demo", "pg1");
    s.state = "running".into();
    s.cluster_known = true;
    s.leader_optime = OPTIME;
    s.server_version = Some(150010);
    let replica = |s: &mut NodeStatus, replayed: u64| {
        s.role = Role::Replica;
        s.replication_state = Some("streaming".into());
        s.xlog = Some(Xlog::Replica {
            received_location: replayed,
            replayed_location: replayed,
            replayed_timestamp: None,
            paused: false,
        });
        s.tags.insert("dc".into(), "east".into());
        s.tags.insert("nofailover".into(), serde_json::Value::Bool(true));
        s.tags.insert("failover_priority".into(), serde_json::json!(1));
    };
    match n {
        Node::Leader | Node::PrimaryWithoutLock | Node::PausedPrimaryWithoutDcs => {
            s.role = Role::Primary;
            s.xlog = Some(Xlog::Primary { location: OPTIME });
            s.tags.insert("dc".into(), "east".into());
            s.is_leader = matches!(n, Node::Leader);
            if matches!(n, Node::PausedPrimaryWithoutDcs) {
                s.pause = true;
                s.cluster_known = false;
            }
        }
        Node::Replica => replica(&mut s, OPTIME - 10),
        Node::LaggingReplica => replica(&mut s, OPTIME - 9_000),
        Node::StartingReplica => {
            replica(&mut s, OPTIME - 10);
            s.state = "starting".into();
        }
        Node::NoLoadBalanceReplica => {
            replica(&mut s, OPTIME - 10);
            s.noloadbalance = true;
        }
        Node::SyncStandby => {
            replica(&mut s, OPTIME - 10);
            s.sync_standby = true;
        }
        Node::QuorumStandby => {
            replica(&mut s, OPTIME - 10);
            s.quorum_standby = true;
        }
        Node::SyncStandbyWithoutDcs => {
            replica(&mut s, OPTIME - 10);
            s.sync_standby = true;
            s.cluster_known = false;
        }
        Node::StandbyLeader => {
            replica(&mut s, OPTIME - 10);
            s.role = Role::StandbyLeader;
            s.is_leader = true;
            s.standby_cluster = true;
        }
        Node::ReplicaWithReceiverLsnOnly => {
            replica(&mut s, OPTIME - 10);
            s.leader_optime = 0;
            s.latest_end_lsn = OPTIME;
        }
    }
    s
}

fn code(n: Node, url: &str) -> u16 {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let q: BTreeMap<String, String> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    health_status(path, &probe_query(&q), &node(n))
}

#[test]
fn health_endpoints_give_patronis_codes() {
    use Node::*;
    #[rustfmt::skip]
    let table: &[(Node, &str, u16)] = &[
        // The leader: every write/leader path, read-only paths, no replica paths; tags ignored on
        // leader paths but applied on read paths.
        (Leader, "/", 200), (Leader, "/primary", 200), (Leader, "/master", 200),
        (Leader, "/read-write", 200), (Leader, "/leader", 200), (Leader, "/standby-leader", 503),
        (Leader, "/standby_leader", 503), (Leader, "/replica", 503), (Leader, "/read-only", 200),
        (Leader, "/sync", 503), (Leader, "/synchronous", 503), (Leader, "/quorum", 503),
        (Leader, "/async", 503), (Leader, "/asynchronous", 503), (Leader, "/read-only-sync", 200),
        (Leader, "/read-only-synchronous", 200), (Leader, "/read-only-quorum", 200),
        (Leader, "/health", 200), (Leader, "/primary?tag_dc=west", 200),
        (Leader, "/read-only?tag_dc=west", 503), (Leader, "/read-only?tag_dc=east", 200),
        (Leader, "/primary?lag=0", 200), (Leader, "/primary/anything", 200), (Leader, "/nonsense", 503),
        // A primary without the lock is nobody's leader, but it is running.
        (PrimaryWithoutLock, "/primary", 503), (PrimaryWithoutLock, "/leader", 503),
        (PrimaryWithoutLock, "/read-only", 503), (PrimaryWithoutLock, "/replica", 503),
        (PrimaryWithoutLock, "/health", 200),
        // A healthy replica: lag (bytes or units), tags, replication_state.
        (Replica, "/", 503), (Replica, "/primary", 503), (Replica, "/leader", 503),
        (Replica, "/replica", 200), (Replica, "/read-only", 200), (Replica, "/async", 200),
        (Replica, "/asynchronous", 200), (Replica, "/sync", 503), (Replica, "/quorum", 503),
        (Replica, "/read-only-sync", 503), (Replica, "/read-only-quorum", 503), (Replica, "/health", 200),
        (Replica, "/replica?lag=10", 200), (Replica, "/replica?lag=9", 503), (Replica, "/replica?lag=1kB", 200),
        (Replica, "/replica?lag=1MB", 200), (Replica, "/replica?lag=bogus", 200),
        (Replica, "/read-only?lag=5", 503), (Replica, "/async?lag=5", 503),
        (Replica, "/replica?tag_dc=east", 200), (Replica, "/replica?tag_dc=west", 503),
        (Replica, "/replica?tag_rack=1", 503), (Replica, "/replica?tag_nofailover=true", 200),
        (Replica, "/replica?tag_nofailover=True", 503), (Replica, "/replica?tag_failover_priority=1", 200),
        (Replica, "/replica?tag_dc=east&tag_nofailover=false", 503),
        (Replica, "/replica?lag=5&tag_dc=east", 503),
        (Replica, "/replica?replication_state=streaming", 200),
        (Replica, "/replica?replication_state=in%20archive%20recovery", 503),
        // Lagging 9 000 bytes: only a tolerant lag passes.
        (LaggingReplica, "/replica", 200), (LaggingReplica, "/replica?lag=16kB", 200),
        (LaggingReplica, "/replica?lag=1kB", 503), (LaggingReplica, "/read-only?lag=1kB", 503),
        (LaggingReplica, "/async?lag=8999", 503), (LaggingReplica, "/async?lag=9000", 200),
        (LaggingReplica, "/health", 200),
        // Not running / noloadbalance: out of rotation.
        (StartingReplica, "/replica", 503), (StartingReplica, "/read-only", 503),
        (StartingReplica, "/async", 503), (StartingReplica, "/health", 503),
        (NoLoadBalanceReplica, "/replica", 503), (NoLoadBalanceReplica, "/read-only", 503),
        (NoLoadBalanceReplica, "/async", 503), (NoLoadBalanceReplica, "/health", 200),
        // Synchronous and quorum standbys.
        (SyncStandby, "/sync", 200), (SyncStandby, "/synchronous", 200), (SyncStandby, "/read-only-sync", 200),
        (SyncStandby, "/read-only-synchronous", 200), (SyncStandby, "/async", 503),
        (SyncStandby, "/quorum", 503), (SyncStandby, "/read-only-quorum", 503),
        (SyncStandby, "/sync?lag=5", 503), (SyncStandby, "/sync?tag_dc=west", 503),
        (SyncStandby, "/replica", 200),
        (QuorumStandby, "/quorum", 200), (QuorumStandby, "/read-only-quorum", 200),
        (QuorumStandby, "/sync", 503), (QuorumStandby, "/read-only-sync", 503), (QuorumStandby, "/async", 503),
        // Without a DCS view the sync/async endpoints cannot answer 200; the replica check still can.
        (SyncStandbyWithoutDcs, "/sync", 503), (SyncStandbyWithoutDcs, "/async", 503),
        (SyncStandbyWithoutDcs, "/read-only-sync", 503), (SyncStandbyWithoutDcs, "/replica", 200),
        // Standby cluster.
        (StandbyLeader, "/standby-leader", 200), (StandbyLeader, "/standby_leader", 200),
        (StandbyLeader, "/leader", 200), (StandbyLeader, "/primary", 503), (StandbyLeader, "/", 503),
        (StandbyLeader, "/replica", 503), (StandbyLeader, "/read-only", 200),
        (StandbyLeader, "/read-only-sync", 200), (StandbyLeader, "/read-only-quorum", 200),
        (StandbyLeader, "/health", 200), (StandbyLeader, "/standby-leader?tag_dc=west", 200),
        // Paused and no DCS: the local role decides.
        (PausedPrimaryWithoutDcs, "/primary", 200), (PausedPrimaryWithoutDcs, "/leader", 200),
        (PausedPrimaryWithoutDcs, "/standby-leader", 503), (PausedPrimaryWithoutDcs, "/read-only", 200),
        // Lag is measured against max(/status optime, WAL receiver latest_end_lsn).
        (ReplicaWithReceiverLsnOnly, "/replica?lag=5", 503), (ReplicaWithReceiverLsnOnly, "/replica?lag=10", 200),
    ];
    let mut wrong = Vec::new();
    for (n, url, want) in table {
        let got = code(*n, url);
        if got != *want {
            wrong.push(format!("{n:?} GET {url}: got {got}, Patroni gives {want}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
