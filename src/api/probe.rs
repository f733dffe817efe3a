//! Health-check status codes, as a pure function of the published [`NodeStatus`] (Patroni `api.py
//! do_GET`, `_readiness`, `do_GET_liveness`). Table-tested below; the handlers only parse the request.

use super::status::NodeStatus;
use crate::types::Role;
use std::collections::BTreeMap;

/// The query parameters a health check understands, already parsed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProbeQuery {
    /// `lag=`: maximum replication lag in bytes.
    pub lag: Option<u64>,
    /// `replication_state=`: required replication state (e.g. `streaming`).
    pub replication_state: Option<String>,
    /// `tag_<key>=<value>` filters.
    pub tags: BTreeMap<String, String>,
    /// `mode=write` for `/readiness` (default `apply`).
    pub mode_write: bool,
}

/// HTTP status of a generic health check `GET <path>` (paths matched by substring, as Patroni does).
pub fn health_status(path: &str, q: &ProbeQuery, s: &NodeStatus) -> u16 {
    let path = if path == "/" || path.is_empty() { "/primary" } else { path };
    let leader_optime = s.leader_optime.max(s.latest_end_lsn);
    let max_lag = q.lag.unwrap_or(u64::MAX);
    let is_lagging = leader_optime > 0 && leader_optime > s.replayed_location().saturating_add(max_lag);
    let state_matches = q.replication_state.as_ref().is_none_or(|w| s.replication_state.as_ref() == Some(w));
    let running = s.state == "running";
    let replica = if !s.noloadbalance && !is_lagging && s.role == Role::Replica && running && state_matches {
        200
    } else {
        503
    };

    let (leader, primary, standby_leader) = if !s.cluster_known && s.pause {
        let is = |ok: bool| if ok { 200 } else { 503 };
        (
            is(matches!(s.role, Role::Primary | Role::StandbyLeader)),
            is(s.role == Role::Primary),
            is(s.role == Role::StandbyLeader),
        )
    } else if s.is_leader {
        if s.standby_cluster {
            (200, 503, if matches!(s.role, Role::Replica | Role::StandbyLeader) { 200 } else { 503 })
        } else {
            (200, 200, 503)
        }
    } else {
        (503, 503, 503)
    };
    let replica = if s.is_leader && s.standby_cluster { 503 } else { replica };

    let mut ignore_tags = false;
    let mut code = 503;
    if path.contains("standby_leader") || path.contains("standby-leader") {
        code = standby_leader;
        ignore_tags = true;
    } else if path.contains("leader") {
        code = leader;
        ignore_tags = true;
    } else if path.contains("master") || path.contains("primary") || path.contains("read-write") {
        code = primary;
        ignore_tags = true;
    } else if path.contains("replica") {
        code = replica;
    } else if path.contains("read-only") && !path.contains("sync") && !path.contains("quorum") {
        code = if primary == 200 || standby_leader == 200 { 200 } else { replica };
    } else if path.contains("health") {
        code = if running { 200 } else { 503 };
    } else if s.cluster_known {
        let any_leader = primary == 200 || standby_leader == 200;
        match path {
            "/sync" | "/synchronous" if s.sync_standby => code = replica,
            "/quorum" if s.quorum_standby => code = replica,
            "/async" | "/asynchronous" if !s.sync_standby && !s.quorum_standby => code = replica,
            "/read-only-quorum" => {
                if any_leader {
                    code = 200
                } else if s.quorum_standby {
                    code = replica
                }
            }
            "/read-only-sync" | "/read-only-synchronous" => {
                if any_leader {
                    code = 200
                } else if s.sync_standby {
                    code = replica
                }
            }
            _ => {}
        }
    }

    if !ignore_tags && code == 200 {
        for (key, wanted) in &q.tags {
            let ok = match s.tags.get(key) {
                None | Some(serde_json::Value::Null) => false,
                Some(serde_json::Value::String(v)) => v == wanted,
                Some(other) => other.to_string().to_lowercase() == *wanted,
            };
            if !ok {
                code = 503;
                break;
            }
        }
    }
    code
}

/// Why `/readiness` fails, or `None` when ready (`api.py _readiness`).
pub fn readiness_failure(q: &ProbeQuery, s: &NodeStatus, failsafe_active: bool) -> Option<String> {
    if s.is_leader {
        return None;
    }
    if s.state != "running" {
        return Some("PostgreSQL is not running".into());
    }
    if s.replication_state.as_deref() != Some("streaming") {
        return Some("PostgreSQL replication state is not streaming".into());
    }
    if !s.cluster_known && s.latest_end_lsn == 0 {
        return if failsafe_active { None } else { Some("DCS is not accessible".into()) };
    }
    let leader_optime = s.leader_optime.max(s.latest_end_lsn);
    let (mode, location) =
        if q.mode_write { ("write", s.received_location()) } else { ("apply", s.replayed_location()) };
    let lag = leader_optime.saturating_sub(location);
    let max = q.lag.unwrap_or(s.maximum_lag_on_failover);
    (lag > max).then(|| format!("Replication {mode} lag {lag} exceeds maximum allowable {max}"))
}

/// `/liveness`: 200 when paused or when the HA loop ran within `ttl` (primary) / `2*ttl` (replica).
pub fn liveness_status(s: &NodeStatus, seconds_since_last_cycle: f64, ttl_seconds: f64) -> u16 {
    let is_primary = s.role == Role::Primary && s.state == "running";
    let threshold = ttl_seconds * if is_primary { 1.0 } else { 2.0 };
    if s.pause || seconds_since_last_cycle < threshold { 200 } else { 503 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::status::Xlog;

    fn primary() -> NodeStatus {
        let mut s = NodeStatus::initial("demo", "pg0");
        s.state = "running".into();
        s.role = Role::Primary;
        s.is_leader = true;
        s.cluster_known = true;
        s.xlog = Some(Xlog::Primary { location: 1000 });
        s
    }

    fn replica(replayed: u64) -> NodeStatus {
        let mut s = NodeStatus::initial("demo", "pg1");
        s.state = "running".into();
        s.role = Role::Replica;
        s.cluster_known = true;
        s.leader_optime = 10_000;
        s.replication_state = Some("streaming".into());
        s.xlog = Some(Xlog::Replica {
            received_location: replayed,
            replayed_location: replayed,
            replayed_timestamp: None,
            paused: false,
        });
        s
    }

    fn q() -> ProbeQuery {
        ProbeQuery::default()
    }

    #[test]
    fn health_paths_give_patronis_codes_for_each_role() {
        // api.py do_GET: (path, primary code, replica code)
        let table = [
            ("/", 200, 503),
            ("/primary", 200, 503),
            ("/master", 200, 503),
            ("/read-write", 200, 503),
            ("/leader", 200, 503),
            ("/standby-leader", 503, 503),
            ("/replica", 503, 200),
            ("/read-only", 200, 200),
            ("/health", 200, 200),
            ("/async", 503, 200),
            ("/asynchronous", 503, 200),
            ("/sync", 503, 503),
            ("/read-only-sync", 200, 503),
            ("/read-only-quorum", 200, 503),
            ("/quorum", 503, 503),
            ("/something-unknown", 503, 503),
        ];
        for (path, p, r) in table {
            assert_eq!(health_status(path, &q(), &primary()), p, "primary {path}");
            assert_eq!(health_status(path, &q(), &replica(9_990)), r, "replica {path}");
        }
    }

    #[test]
    fn sync_standby_answers_sync_endpoints_and_not_async() {
        let mut s = replica(10_000);
        s.sync_standby = true;
        assert_eq!(health_status("/sync", &q(), &s), 200);
        assert_eq!(health_status("/synchronous", &q(), &s), 200);
        assert_eq!(health_status("/read-only-sync", &q(), &s), 200);
        assert_eq!(health_status("/async", &q(), &s), 503);
        s.sync_standby = false;
        s.quorum_standby = true;
        assert_eq!(health_status("/quorum", &q(), &s), 200);
        assert_eq!(health_status("/read-only-quorum", &q(), &s), 200);
        assert_eq!(health_status("/sync", &q(), &s), 503);
    }

    #[test]
    fn lagging_replica_fails_replica_check_only_when_lag_is_given() {
        let s = replica(1_000);
        assert_eq!(health_status("/replica", &q(), &s), 200);
        let strict = ProbeQuery { lag: Some(1_000), ..q() };
        assert_eq!(health_status("/replica", &strict, &s), 503);
        let loose = ProbeQuery { lag: Some(9_000), ..q() };
        assert_eq!(health_status("/replica", &loose, &s), 200);
    }

    #[test]
    fn noloadbalance_and_not_running_replicas_are_out_of_rotation() {
        let mut s = replica(10_000);
        s.noloadbalance = true;
        assert_eq!(health_status("/replica", &q(), &s), 503);
        let mut s = replica(10_000);
        s.state = "starting".into();
        assert_eq!(health_status("/replica", &q(), &s), 503);
        assert_eq!(health_status("/health", &q(), &s), 503);
    }

    #[test]
    fn tag_filters_apply_to_replica_checks_but_not_to_leader_checks() {
        let mut s = replica(10_000);
        s.tags.insert("dc".into(), "east".into());
        s.tags.insert("nofailover".into(), serde_json::Value::Bool(true));
        let mut tq = q();
        tq.tags.insert("dc".into(), "east".into());
        assert_eq!(health_status("/replica", &tq, &s), 200);
        tq.tags.insert("nofailover".into(), "true".into());
        assert_eq!(health_status("/replica", &tq, &s), 200);
        tq.tags.insert("dc".into(), "west".into());
        assert_eq!(health_status("/replica", &tq, &s), 503);
        let mut missing = q();
        missing.tags.insert("rack".into(), "1".into());
        assert_eq!(health_status("/replica", &missing, &s), 503);
        assert_eq!(health_status("/primary", &missing, &primary()), 200);
    }

    #[test]
    fn replication_state_filter() {
        let s = replica(10_000);
        let want = |st: &str| ProbeQuery { replication_state: Some(st.into()), ..q() };
        assert_eq!(health_status("/replica", &want("streaming"), &s), 200);
        assert_eq!(health_status("/replica", &want("in archive recovery"), &s), 503);
    }

    #[test]
    fn standby_leader_answers_standby_leader_and_leader_but_not_primary() {
        let mut s = primary();
        s.standby_cluster = true;
        s.role = Role::StandbyLeader;
        assert_eq!(health_status("/standby-leader", &q(), &s), 200);
        assert_eq!(health_status("/standby_leader", &q(), &s), 200);
        assert_eq!(health_status("/leader", &q(), &s), 200);
        assert_eq!(health_status("/primary", &q(), &s), 503);
        assert_eq!(health_status("/replica", &q(), &s), 503);
        assert_eq!(health_status("/read-only", &q(), &s), 200);
    }

    #[test]
    fn paused_node_without_dcs_falls_back_to_local_role() {
        // api.py do_GET: `if not cluster and response.get('pause')`
        let mut s = primary();
        s.is_leader = false;
        s.cluster_known = false;
        s.pause = true;
        assert_eq!(health_status("/primary", &q(), &s), 200);
        s.pause = false;
        assert_eq!(health_status("/primary", &q(), &s), 503);
    }

    #[test]
    fn sync_endpoints_need_a_dcs_view() {
        let mut s = replica(10_000);
        s.sync_standby = true;
        s.cluster_known = false;
        assert_eq!(health_status("/sync", &q(), &s), 503);
    }

    #[test]
    fn readiness_rules() {
        assert_eq!(readiness_failure(&q(), &primary(), false), None);
        let mut s = replica(10_000);
        assert_eq!(readiness_failure(&q(), &s, false), None);
        s.xlog = Some(Xlog::Replica {
            received_location: 9_000,
            replayed_location: 1,
            replayed_timestamp: None,
            paused: false,
        });
        s.maximum_lag_on_failover = 5_000;
        assert_eq!(
            readiness_failure(&q(), &s, false).as_deref(),
            Some("Replication apply lag 9999 exceeds maximum allowable 5000")
        );
        let write = ProbeQuery { mode_write: true, ..q() };
        assert_eq!(readiness_failure(&write, &s, false), None);
        s.replication_state = Some("in archive recovery".into());
        assert_eq!(
            readiness_failure(&q(), &s, false).as_deref(),
            Some("PostgreSQL replication state is not streaming")
        );
        let mut s = replica(10_000);
        s.cluster_known = false;
        assert_eq!(readiness_failure(&q(), &s, false).as_deref(), Some("DCS is not accessible"));
        assert_eq!(readiness_failure(&q(), &s, true), None);
    }

    #[test]
    fn liveness_tolerates_twice_the_ttl_on_replicas_and_anything_when_paused() {
        assert_eq!(liveness_status(&primary(), 29.0, 30.0), 200);
        assert_eq!(liveness_status(&primary(), 31.0, 30.0), 503);
        assert_eq!(liveness_status(&replica(1), 59.0, 30.0), 200);
        assert_eq!(liveness_status(&replica(1), 61.0, 30.0), 503);
        let mut p = primary();
        p.pause = true;
        assert_eq!(liveness_status(&p, 1000.0, 30.0), 200);
    }

    #[test]
    fn status_json_has_patronis_field_names() {
        let mut s = replica(10_000);
        s.timeline = Some(2);
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["role"], "replica");
        assert_eq!(v["xlog"]["replayed_location"], 10_000);
        assert_eq!(v["replication_state"], "streaming");
        assert_eq!(v["patroni"]["version"], "4.1.5");
        assert_eq!(v["patroni"]["scope"], "demo");
        assert!(v.get("is_leader").is_none());
        assert!(v.get("pause").is_none());
        assert_eq!(v["cluster_unlocked"], true);
    }
}
