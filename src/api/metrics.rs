//! `GET /metrics`: Prometheus text. First every metric Patroni 4.1.5 exposes, same names, types,
//! labels `{scope,name}` and values (PATRONI-COMPAT §3.6), computed from the published
//! [`NodeStatus`]; then praetor's own (`praetor_*`, from [`AgentMetrics`]): HA cycle duration,
//! DCS latency and errors per operation, seconds left on the leader lease, the last decision,
//! leader races won/lost, callback failures.

use super::server::AppState;
use super::status::{NodeStatus, Xlog};
use crate::metrics::{AgentMetrics, DCS_OPS};
use crate::types::Role;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use std::fmt::Write;
use std::sync::atomic::Ordering;

/// Patroni's `PostgresqlState` list; the index is the value of `patroni_postgres_state`.
pub const POSTGRES_STATES: [(&str, &str); 15] = [
    ("initializing new cluster", "initdb"),
    ("initdb failed", "initdb_failed"),
    ("running custom bootstrap script", "custom_bootstrap"),
    ("custom bootstrap failed", "custom_bootstrap_failed"),
    ("creating replica", "creating_replica"),
    ("running", "running"),
    ("starting", "starting"),
    ("starting after custom bootstrap", "bootstrap_starting"),
    ("start failed", "start_failed"),
    ("restarting", "restarting"),
    ("restart failed", "restart_failed"),
    ("stopping", "stopping"),
    ("stopped", "stopped"),
    ("stop failed", "stop_failed"),
    ("crashed", "crashed"),
];

/// A label value with `\`, `"` and newlines escaped.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Epoch seconds of an RFC 3339 timestamp (0 when absent or unparsable), printed like Python's
/// `float`/`int` in Patroni's output.
fn epoch(ts: Option<&str>) -> String {
    match ts.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()) {
        Some(t) => {
            let us = t.timestamp_micros();
            format!("{}", us as f64 / 1e6)
        }
        None => "0".into(),
    }
}

/// Patroni's version as `patroni_version` shows it: each part zero-padded to two digits.
pub fn padded_version(v: &str) -> String {
    v.split('.').map(|p| format!("{p:0>2}")).collect()
}

/// Patroni's metrics for `s`.
pub fn patroni_metrics(s: &NodeStatus) -> String {
    let labels = format!("{{scope=\"{}\",name=\"{}\"}}", esc(&s.patroni.scope), esc(&s.patroni.name));
    let mut out = String::new();
    let mut m = |name: &str, kind: &str, help: &str, value: &dyn std::fmt::Display| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name}{labels} {value}");
    };
    let b = |x: bool| u8::from(x);
    let (location, received, replayed, replayed_ts, paused) = match &s.xlog {
        Some(Xlog::Primary { location }) => (*location, 0, 0, None, false),
        Some(Xlog::Replica { received_location, replayed_location, replayed_timestamp, paused }) => {
            (0, *received_location, *replayed_location, replayed_timestamp.as_deref(), *paused)
        }
        None => (0, 0, 0, None, false),
    };
    m("patroni_version", "gauge", "Patroni semver without periods.", &padded_version(&s.patroni.version));
    m(
        "patroni_postgres_running",
        "gauge",
        "Value is 1 if Postgres is running, 0 otherwise.",
        &b(s.state == "running"),
    );
    m(
        "patroni_postmaster_start_time",
        "gauge",
        "Epoch seconds since Postgres started.",
        &epoch(s.postmaster_start_time.as_deref()),
    );
    m(
        "patroni_primary",
        "gauge",
        "Value is 1 if this node is the leader, 0 otherwise.",
        &b(s.role == Role::Primary),
    );
    m(
        "patroni_xlog_location",
        "counter",
        "Current location of the Postgres transaction log, 0 if this node is not the leader.",
        &location,
    );
    m(
        "patroni_standby_leader",
        "gauge",
        "Value is 1 if this node is the standby_leader, 0 otherwise.",
        &b(s.role == Role::StandbyLeader),
    );
    m(
        "patroni_replica",
        "gauge",
        "Value is 1 if this node is a replica, 0 otherwise.",
        &b(s.role == Role::Replica),
    );
    m(
        "patroni_sync_standby",
        "gauge",
        "Value is 1 if this node is a sync standby, 0 otherwise.",
        &b(s.sync_standby),
    );
    m(
        "patroni_quorum_standby",
        "gauge",
        "Value is 1 if this node is a quorum standby, 0 otherwise.",
        &b(s.quorum_standby),
    );
    m(
        "patroni_xlog_received_location",
        "counter",
        "Current location of the received Postgres transaction log, 0 if this node is not a replica.",
        &received,
    );
    m(
        "patroni_xlog_replayed_location",
        "counter",
        "Current location of the replayed Postgres transaction log, 0 if this node is not a replica.",
        &replayed,
    );
    m(
        "patroni_xlog_replayed_timestamp",
        "gauge",
        "Current timestamp of the replayed Postgres transaction log, 0 if null.",
        &epoch(replayed_ts),
    );
    m("patroni_xlog_paused", "gauge", "Value is 1 if the Postgres xlog is paused, 0 otherwise.", &b(paused));
    if s.server_version.unwrap_or(0) >= 90600 {
        let rs = s.replication_state.as_deref();
        m(
            "patroni_postgres_streaming",
            "gauge",
            "Value is 1 if Postgres is streaming, 0 otherwise.",
            &b(rs == Some("streaming")),
        );
        m(
            "patroni_postgres_in_archive_recovery",
            "gauge",
            "Value is 1 if Postgres is replicating from archive, 0 otherwise.",
            &b(rs == Some("in archive recovery")),
        );
    }
    m(
        "patroni_postgres_server_version",
        "gauge",
        "Version of Postgres (if running), 0 otherwise.",
        &s.server_version.unwrap_or(0),
    );
    m(
        "patroni_cluster_unlocked",
        "gauge",
        "Value is 1 if the cluster is unlocked, 0 if locked.",
        &b(s.cluster_unlocked),
    );
    m(
        "patroni_failsafe_mode_is_active",
        "gauge",
        "Value is 1 if failsafe mode is active, 0 if inactive.",
        &b(s.failsafe_mode_is_active),
    );
    m(
        "patroni_postgres_timeline",
        "gauge",
        "Postgres timeline of this node (if running), 0 otherwise.",
        &s.timeline.unwrap_or(0),
    );
    m(
        "patroni_dcs_last_seen",
        "gauge",
        "Epoch timestamp when DCS was last contacted successfully by Patroni.",
        &s.dcs_last_seen,
    );
    m(
        "patroni_pending_restart",
        "gauge",
        "Value is 1 if the node needs a restart, 0 otherwise.",
        &b(s.pending_restart),
    );
    m("patroni_is_paused", "gauge", "Value is 1 if auto failover is disabled, 0 otherwise.", &b(s.pause));
    let _ = writeln!(out, "# HELP patroni_postgres_state Numeric representation of Postgres state.");
    let values: Vec<String> =
        POSTGRES_STATES.iter().enumerate().map(|(i, (_, n))| format!("{i}={n}")).collect();
    let _ = writeln!(out, "# Values: {}", values.join(", "));
    let _ = writeln!(out, "# TYPE patroni_postgres_state gauge");
    let state = POSTGRES_STATES.iter().position(|(v, _)| *v == s.state).map_or(-1, |i| i as i64);
    let _ = writeln!(out, "patroni_postgres_state{labels} {state}");
    out
}

/// praetor's own metrics.
pub fn praetor_metrics(scope: &str, name: &str, m: &AgentMetrics) -> String {
    let labels = format!("scope=\"{}\",name=\"{}\"", esc(scope), esc(name));
    let mut out = String::new();
    let head = |out: &mut String, n: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {n} {help}");
        let _ = writeln!(out, "# TYPE {n} {kind}");
    };
    head(&mut out, "praetor_ha_cycle_duration_seconds", "histogram", "Duration of one HA cycle.");
    m.cycle.render(&mut out, "praetor_ha_cycle_duration_seconds", &labels);
    head(&mut out, "praetor_ha_cycles_total", "counter", "HA cycles run.");
    let _ = writeln!(out, "praetor_ha_cycles_total{{{labels}}} {}", m.cycles.load(Ordering::Relaxed));
    head(
        &mut out,
        "praetor_dcs_request_duration_seconds",
        "histogram",
        "Latency of DCS requests by operation.",
    );
    for (op, o) in DCS_OPS.iter().zip(m.dcs.iter()) {
        if o.latency.count() > 0 {
            o.latency.render(
                &mut out,
                "praetor_dcs_request_duration_seconds",
                &format!("{labels},operation=\"{op}\""),
            );
        }
    }
    head(&mut out, "praetor_dcs_request_errors_total", "counter", "DCS requests that failed, by operation.");
    for (op, o) in DCS_OPS.iter().zip(m.dcs.iter()) {
        if o.latency.count() > 0 {
            let e = o.errors.load(Ordering::Relaxed);
            let _ = writeln!(out, "praetor_dcs_request_errors_total{{{labels},operation=\"{op}\"}} {e}");
        }
    }
    head(
        &mut out,
        "praetor_leader_lease_seconds_left",
        "gauge",
        "Seconds left on this node's leader lease at the last HA cycle; 0 when not the leader.",
    );
    let lease = m.lease_left.lock().ok().and_then(|l| *l).unwrap_or(0.0);
    let _ = writeln!(out, "praetor_leader_lease_seconds_left{{{labels}}} {lease}");
    head(&mut out, "praetor_last_decision", "gauge", "The last HA cycle's decision (label), always 1.");
    let decision = m.last_decision.lock().map(|d| d.clone()).unwrap_or_default();
    let _ = writeln!(out, "praetor_last_decision{{{labels},decision=\"{}\"}} 1", esc(&decision));
    head(&mut out, "praetor_leader_races_total", "counter", "Leader races by result.");
    let (won, lost) = (m.races_won.load(Ordering::Relaxed), m.races_lost.load(Ordering::Relaxed));
    let _ = writeln!(out, "praetor_leader_races_total{{{labels},result=\"won\"}} {won}");
    let _ = writeln!(out, "praetor_leader_races_total{{{labels},result=\"lost\"}} {lost}");
    head(
        &mut out,
        "praetor_callback_failures_total",
        "counter",
        "Callbacks that failed to start or exited non-zero.",
    );
    let cf = m.callback_failures.load(Ordering::Relaxed);
    let _ = writeln!(out, "praetor_callback_failures_total{{{labels}}} {cf}");
    out
}

/// praetor's metrics read from the published status: `praetor_writes_blocked` is 1 on a primary
/// whose commits wait for a synchronous standby that is not there (the status's `writes_blocked`),
/// else 0. The reason stays in `GET /patroni` (`writes_blocked_reason`): it quotes
/// `synchronous_standby_names`, which would make a new series at every change as a label.
pub fn praetor_status_metrics(s: &NodeStatus) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP praetor_writes_blocked Value is 1 if commits on this primary wait for a synchronous standby \
         that is not connected, 0 otherwise."
    );
    let _ = writeln!(out, "# TYPE praetor_writes_blocked gauge");
    let _ = writeln!(
        out,
        "praetor_writes_blocked{{scope=\"{}\",name=\"{}\"}} {}",
        esc(&s.patroni.scope),
        esc(&s.patroni.name),
        u8::from(s.writes_blocked)
    );
    out
}

/// `GET /metrics`.
pub(in crate::api) async fn metrics(State(app): State<AppState>) -> Response {
    let s = app.status.borrow().clone();
    let mut body = patroni_metrics(&s);
    body.push_str(&praetor_metrics(&s.patroni.scope, &s.patroni.name, &app.ha.metrics));
    body.push_str(&praetor_status_metrics(&s));
    let mut r = Response::new(Body::from(body));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Every metric name Patroni 4.1.5 exposes (PATRONI-COMPAT §3.6).
    const PATRONI_NAMES: [&str; 23] = [
        "patroni_version",
        "patroni_postgres_running",
        "patroni_postmaster_start_time",
        "patroni_primary",
        "patroni_xlog_location",
        "patroni_standby_leader",
        "patroni_replica",
        "patroni_sync_standby",
        "patroni_quorum_standby",
        "patroni_xlog_received_location",
        "patroni_xlog_replayed_location",
        "patroni_xlog_replayed_timestamp",
        "patroni_xlog_paused",
        "patroni_postgres_streaming",
        "patroni_postgres_in_archive_recovery",
        "patroni_postgres_server_version",
        "patroni_cluster_unlocked",
        "patroni_failsafe_mode_is_active",
        "patroni_postgres_timeline",
        "patroni_dcs_last_seen",
        "patroni_pending_restart",
        "patroni_is_paused",
        "patroni_postgres_state",
    ];

    fn replica() -> NodeStatus {
        let mut s = NodeStatus::initial("demo", "pg1");
        s.state = "running".into();
        s.role = Role::Replica;
        s.server_version = Some(150010);
        s.timeline = Some(3);
        s.replication_state = Some("streaming".into());
        s.postmaster_start_time = Some("2026-12-06T22:00:00.5+00:00".into());
        s.xlog = Some(Xlog::Replica {
            received_location: 5000,
            replayed_location: 4000,
            replayed_timestamp: None,
            paused: false,
        });
        s.dcs_last_seen = 1_765_000_000;
        s.cluster_unlocked = false;
        s
    }

    fn value(text: &str, line_prefix: &str) -> String {
        text.lines()
            .find(|l| l.starts_with(line_prefix) && !l.starts_with('#'))
            .and_then(|l| l.rsplit(' ').next())
            .unwrap_or_else(|| panic!("no {line_prefix} in\n{text}"))
            .to_string()
    }

    #[test]
    fn every_patroni_metric_is_exposed_with_its_type_and_labels() {
        let text = patroni_metrics(&replica());
        for n in PATRONI_NAMES {
            assert!(
                text.contains(&format!("\n{n}{{scope=\"demo\",name=\"pg1\"}} ")) || text.starts_with(n),
                "{n}"
            );
            let kind = if matches!(
                n,
                "patroni_xlog_location" | "patroni_xlog_received_location" | "patroni_xlog_replayed_location"
            ) {
                "counter"
            } else {
                "gauge"
            };
            assert!(text.contains(&format!("# TYPE {n} {kind}\n")), "{n} {kind}");
        }
        assert!(!text.contains("patroni_master"), "removed in Patroni 4.0");
        assert_eq!(value(&text, "patroni_version{"), "040105");
        assert_eq!(value(&text, "patroni_replica{"), "1");
        assert_eq!(value(&text, "patroni_primary{"), "0");
        assert_eq!(value(&text, "patroni_xlog_received_location{"), "5000");
        assert_eq!(value(&text, "patroni_xlog_replayed_location{"), "4000");
        assert_eq!(value(&text, "patroni_xlog_location{"), "0");
        assert_eq!(value(&text, "patroni_postgres_streaming{"), "1");
        assert_eq!(value(&text, "patroni_postgres_timeline{"), "3");
        assert_eq!(value(&text, "patroni_postmaster_start_time{"), "1796594400.5");
        assert_eq!(value(&text, "patroni_postgres_state{"), "5");
        assert!(text.contains("# Values: 0=initdb, 1=initdb_failed, 2=custom_bootstrap"));
    }

    #[test]
    fn primary_and_stopped_node_values() {
        let mut s = NodeStatus::initial("demo", "pg0");
        let text = patroni_metrics(&s);
        assert_eq!(value(&text, "patroni_postgres_state{"), "12");
        assert_eq!(value(&text, "patroni_postgres_running{"), "0");
        assert!(!text.contains("patroni_postgres_streaming"), "only shown for PostgreSQL >= 9.6");
        s.state = "running".into();
        s.role = Role::Primary;
        s.server_version = Some(150010);
        s.xlog = Some(Xlog::Primary { location: 123456 });
        s.pause = true;
        let text = patroni_metrics(&s);
        assert_eq!(value(&text, "patroni_primary{"), "1");
        assert_eq!(value(&text, "patroni_xlog_location{"), "123456");
        assert_eq!(value(&text, "patroni_is_paused{"), "1");
        assert_eq!(value(&text, "patroni_cluster_unlocked{"), "1");
    }

    #[test]
    fn writes_blocked_gauge_follows_the_status() {
        let mut s = NodeStatus::initial("demo", "pg0");
        let text = praetor_status_metrics(&s);
        assert!(text.contains("# TYPE praetor_writes_blocked gauge\n"), "{text}");
        assert_eq!(value(&text, "praetor_writes_blocked{scope=\"demo\",name=\"pg0\"}"), "0");
        s.writes_blocked = true;
        s.writes_blocked_reason = Some("waiting for 1 synchronous standby(s), 0 connected".into());
        let text = praetor_status_metrics(&s);
        assert_eq!(value(&text, "praetor_writes_blocked{"), "1");
        assert!(!text.contains("waiting for"), "the reason is not a label: {text}");
    }

    #[test]
    fn praetor_metrics_exposition() {
        let m = AgentMetrics::default();
        m.record_cycle(
            Duration::from_millis(20),
            "no action. I am (pg0), the leader with the lock",
            Some(Duration::from_millis(9500)),
        );
        m.record_dcs("update_leader", Duration::from_millis(3), true);
        m.races_won.fetch_add(1, Ordering::Relaxed);
        m.callback_failures.fetch_add(2, Ordering::Relaxed);
        let text = praetor_metrics("demo", "pg0", &m);
        let l = "scope=\"demo\",name=\"pg0\"";
        assert!(text.contains("# TYPE praetor_ha_cycle_duration_seconds histogram\n"));
        assert!(
            text.contains(&format!("praetor_ha_cycle_duration_seconds_bucket{{{l},le=\"0.025\"}} 1\n")),
            "{text}"
        );
        assert!(text.contains(&format!(
            "praetor_dcs_request_duration_seconds_count{{{l},operation=\"update_leader\"}} 1\n"
        )));
        assert!(
            text.contains(&format!(
                "praetor_dcs_request_errors_total{{{l},operation=\"update_leader\"}} 0\n"
            ))
        );
        assert!(!text.contains("operation=\"take_leader\""), "unused operations are left out");
        assert!(text.contains(&format!("praetor_leader_lease_seconds_left{{{l}}} 9.5\n")));
        assert!(text.contains(&format!(
            "praetor_last_decision{{{l},decision=\"no action. I am (pg0), the leader with the lock\"}} 1\n"
        )));
        assert!(text.contains(&format!("praetor_leader_races_total{{{l},result=\"won\"}} 1\n")));
        assert!(text.contains(&format!("praetor_leader_races_total{{{l},result=\"lost\"}} 0\n")));
        assert!(text.contains(&format!("praetor_callback_failures_total{{{l}}} 2\n")));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(esc("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(padded_version("4.1.5"), "040105");
    }
}
