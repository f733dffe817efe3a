//! `list` and `topology`: the member table (`ctl.py output_members`), built from the same per-member
//! view as `GET /cluster` (`utils.py cluster_as_json`).

use super::output::{Format, print_output};
use super::pyjson::{parse_bool, py_str, truthy};
use crate::dcs::model::{Cluster, Member};
use crate::types::Lsn;
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};

/// Options of one `list` rendering.
#[derive(Clone, Copy, Debug)]
pub struct ListOptions {
    /// `-e`: always show the pending-restart, scheduled-restart and tags columns.
    pub extended: bool,
    /// Output format; [`Format::Topology`] for the `topology` command.
    pub format: Format,
}

/// The settings of the dynamic configuration that change how members are shown
/// (`global_config.py`).
struct GlobalView {
    paused: bool,
    standby_cluster: bool,
    synchronous: bool,
    quorum: bool,
}

impl GlobalView {
    fn of(cluster: &Cluster) -> GlobalView {
        let empty = Map::new();
        let cfg = cluster.config.as_ref().map(|c| &c.data).unwrap_or(&empty);
        let get = |k: &str| cfg.get(k).cloned().unwrap_or(Value::Null);
        let standby_cluster = cfg.get("standby_cluster").and_then(Value::as_object).is_some_and(|s| {
            ["host", "port", "restore_command"].iter().any(|k| s.get(*k).is_some_and(truthy))
        });
        let quorum = py_str(&get("synchronous_mode")).to_lowercase() == "quorum";
        GlobalView {
            paused: parse_bool(&get("pause")) == Some(true),
            standby_cluster,
            synchronous: (parse_bool(&get("synchronous_mode")) == Some(true) || quorum) && !standby_cluster,
            quorum,
        }
    }
}

/// `host` and `port` PostgreSQL is reached at, as Patroni's `Member.conn_kwargs()` derives them:
/// a legacy `conn_kwargs` object, else `conn_url` parsed like Python's `urlparse` (host lower-cased,
/// port 5432 when absent). `None` when the member publishes neither.
pub fn conn_kwargs(m: &Member) -> Option<(Value, Value)> {
    if let Some(kw) = m.data.extra.get("conn_kwargs").and_then(Value::as_object).filter(|o| !o.is_empty()) {
        return Some((
            kw.get("host").cloned().unwrap_or(Value::Null),
            kw.get("port").cloned().unwrap_or(Value::Null),
        ));
    }
    if m.data.conn_url.is_empty() {
        return None;
    }
    let (host, port) = parse_url_host_port(&m.data.conn_url);
    Some((
        host.map(Value::String).unwrap_or(Value::Null),
        Value::from(port.filter(|p| *p != 0).unwrap_or(5432)),
    ))
}

/// `urlparse(url).hostname` and `.port`.
fn parse_url_host_port(url: &str) -> (Option<String>, Option<u16>) {
    let Some((_, rest)) = url.split_once("//") else {
        return (None, None);
    };
    let netloc = rest.split(['/', '?', '#']).next().unwrap_or("");
    let hostport = netloc.rsplit_once('@').map(|(_, h)| h).unwrap_or(netloc);
    let (host, port) = if let Some(r) = hostport.strip_prefix('[') {
        match r.split_once(']') {
            Some((h, p)) => (h, p.strip_prefix(':')),
            None => (r, None),
        }
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    let host = (!host.is_empty()).then(|| host.to_lowercase());
    (host, port.and_then(|p| p.parse().ok()))
}

/// `parse_int` of an LSN field: a positive integer, or `None` (Patroni treats 0 as unknown too).
fn lsn_of(v: Option<u64>) -> Option<u64> {
    v.filter(|x| *x > 0)
}

/// Python `datetime.isoformat()` of what `dateutil.parser.parse` reads from `scheduled_at`
/// (`2026-12-01T10:00:00.5Z` → `2026-12-01T10:00:00.500000+00:00`). Unparsable text is shown as is.
pub fn py_isoformat(s: &str) -> String {
    use chrono::{DateTime, NaiveDateTime, Timelike};
    let frac = |nanos: u32| {
        let micros = nanos / 1000;
        if micros == 0 { String::new() } else { format!(".{micros:06}") }
    };
    if let Ok(dt) = DateTime::parse_from_rfc3339(s.trim()) {
        let off = dt.offset().local_minus_utc();
        let sign = if off < 0 { '-' } else { '+' };
        let off = off.abs();
        let mut tz = format!("{sign}{:02}:{:02}", off / 3600, off % 3600 / 60);
        if off % 60 != 0 {
            tz.push_str(&format!(":{:02}", off % 60));
        }
        return format!("{}{}{tz}", dt.format("%Y-%m-%dT%H:%M:%S"), frac(dt.nanosecond()));
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(s.trim(), f) {
            return format!("{}{}", dt.format("%Y-%m-%dT%H:%M:%S"), frac(dt.nanosecond()));
        }
    }
    s.to_string()
}

/// `cluster_as_json(cluster)`: `{members: [...], pause?, scheduled_switchover?}` with each member's
/// role derived from the leader key, `/sync` and `/config`, and lag in bytes against `/status`.
pub fn cluster_as_json(cluster: &Cluster) -> Map<String, Value> {
    let g = GlobalView::of(cluster);
    let leader_name = cluster.leader.as_ref().map(|l| l.name.as_str());
    let cluster_lsn = cluster.status.optime.unwrap_or(0);
    let sync_role = if g.quorum { "quorum_standby" } else { "sync_standby" };
    let mut members = Vec::new();
    for m in &cluster.members {
        let is_leader = Some(m.name.as_str()) == leader_name;
        let role = if is_leader {
            if g.standby_cluster { "standby_leader" } else { "leader" }
        } else if g.synchronous && sync_matches(cluster, &m.name) {
            sync_role
        } else {
            "replica"
        };
        let repl = if role != "leader" {
            m.data.replication_state.clone().unwrap_or_default()
        } else {
            String::new()
        };
        let state = if repl.is_empty() { m.data.state.clone() } else { repl };
        let mut o = Map::new();
        o.insert("name".into(), json!(m.name));
        o.insert("role".into(), json!(role));
        o.insert("state".into(), json!(state));
        let api_url = if m.data.api_url.is_empty() { Value::Null } else { json!(m.data.api_url) };
        o.insert("api_url".into(), api_url);
        if let Some((host, port)) = conn_kwargs(m).filter(|(h, _)| truthy(h)) {
            o.insert("host".into(), host);
            if truthy(&port) {
                let p = port.as_u64().or_else(|| py_str(&port).parse().ok());
                o.insert("port".into(), p.map(Value::from).unwrap_or(port));
            }
        }
        let d = &m.data;
        if let Some(t) = d.timeline {
            o.insert("timeline".into(), json!(t));
        }
        if let Some(p) = d.pending_restart {
            o.insert("pending_restart".into(), json!(p));
        }
        if let Some(r) = &d.pending_restart_reason {
            o.insert("pending_restart_reason".into(), r.clone());
        }
        if let Some(s) = &d.scheduled_restart {
            o.insert("scheduled_restart".into(), s.clone());
        }
        if let Some(t) = &d.tags {
            o.insert("tags".into(), Value::Object(t.clone()));
        }
        if !is_leader {
            for (prefix, lsn) in [
                ("receive_", lsn_of(d.receive_lsn)),
                ("replay_", lsn_of(d.replay_lsn)),
                ("", lsn_of(d.xlog_location)),
            ] {
                let (lsn_key, lag_key) = (format!("{prefix}lsn"), format!("{prefix}lag"));
                match lsn {
                    None => {
                        o.insert(lsn_key, json!("unknown"));
                        o.insert(lag_key, json!("unknown"));
                    }
                    Some(l) => {
                        o.insert(lag_key, json!(cluster_lsn.saturating_sub(l)));
                        o.insert(lsn_key, json!(Lsn(l).to_string()));
                    }
                }
            }
        }
        members.push(Value::Object(o));
    }
    members.sort_by(|a, b| py_str(&a["name"]).cmp(&py_str(&b["name"])));
    let mut ret = Map::new();
    ret.insert("members".into(), Value::Array(members));
    if g.paused {
        ret.insert("pause".into(), json!(true));
    }
    let scheduled = cluster.failover.as_ref().and_then(|f| Some((f, f.scheduled_at.as_deref()?)));
    if let Some((f, at)) = scheduled.filter(|(_, at)| !at.is_empty()) {
        let mut s = Map::new();
        s.insert("at".into(), json!(py_isoformat(at)));
        if let Some(l) = f.leader.as_deref().filter(|s| !s.is_empty()) {
            s.insert("from".into(), json!(l));
        }
        if let Some(c) = f.member.as_deref().filter(|s| !s.is_empty()) {
            s.insert("to".into(), json!(c));
        }
        ret.insert("scheduled_switchover".into(), Value::Object(s));
    }
    ret
}

/// `SyncState.matches(name)`: `name` is listed in `sync_standby` (case-insensitive); the sync key's
/// own leader does not count.
fn sync_matches(cluster: &Cluster, name: &str) -> bool {
    !cluster.sync.is_empty() && cluster.sync.members().iter().any(|m| m.to_lowercase() == name.to_lowercase())
}

/// `get_cluster_service_info`: the footer lines (maintenance mode, scheduled switchover).
fn service_info(c: &Map<String, Value>) -> Vec<String> {
    let mut info = Vec::new();
    if c.get("pause").is_some_and(truthy) {
        info.push("Maintenance mode: on".to_string());
    }
    if let Some(s) = c.get("scheduled_switchover").and_then(Value::as_object) {
        let mut line = format!("Switchover scheduled at: {}", s.get("at").map(py_str).unwrap_or_default());
        for name in ["from", "to"] {
            if let Some(v) = s.get(name) {
                line.push_str(&format!("\n{name:>24}: {}", py_str(v)));
            }
        }
        info.push(line);
    }
    info
}

/// `topology_sort`: members in replication-tree order, names indented with `+ ` per level below the
/// leader. Cascading replicas hang under their `replicatefrom` tag when it names another replica.
fn topology_sort(members: Vec<Map<String, Value>>) -> Vec<Map<String, Value>> {
    let is_leader = |m: &Map<String, Value>| m.get("role").map(py_str).is_some_and(|r| r.ends_with("leader"));
    let leader = members.iter().find(|m| is_leader(m)).cloned();
    let leader_name = leader.as_ref().and_then(|l| l.get("name")).map(py_str);
    let replicas: HashSet<String> =
        members.iter().filter(|m| !is_leader(m)).filter_map(|m| m.get("name")).map(py_str).collect();
    let mut tree: HashMap<Option<String>, Vec<Map<String, Value>>> = HashMap::new();
    for m in members.iter().filter(|m| !is_leader(m)) {
        let name = m.get("name").map(py_str).unwrap_or_default();
        let parent = m
            .get("tags")
            .and_then(Value::as_object)
            .and_then(|t| t.get("replicatefrom"))
            .filter(|p| truthy(p))
            .map(py_str)
            .filter(|p| *p != name && replicas.contains(p));
        tree.entry(parent.or_else(|| leader_name.clone())).or_default().push(m.clone());
    }
    let mut out = Vec::new();
    fn walk(
        level: usize,
        mut member: Option<Map<String, Value>>,
        key: Option<String>,
        tree: &HashMap<Option<String>, Vec<Map<String, Value>>>,
        out: &mut Vec<Map<String, Value>>,
    ) {
        if let Some(m) = member.as_mut() {
            if level > 0 {
                let name = m.get("name").map(py_str).unwrap_or_default();
                m.insert("name".into(), json!(format!("{}+ {name}", " ".repeat((level - 1) * 2))));
            }
            if m.get("name").is_some_and(truthy) {
                out.push(m.clone());
            }
        }
        for child in tree.get(&key).into_iter().flatten() {
            let child_key = child.get("name").map(py_str);
            walk(level + 1, Some(child.clone()), child_key, tree, out);
        }
    }
    walk(0, leader, leader_name, &tree, &mut out);
    out
}

/// Python's `str.round()` of `bytes / 1024 / 1024`: megabytes rounded half to even.
fn lag_mb(bytes: u64) -> u64 {
    (bytes as f64 / 1024.0 / 1024.0).round_ties_even() as u64
}

/// `str.title()` for the role names (`sync standby` → `Sync Standby`).
fn title_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_alpha = false;
    for c in s.chars() {
        if c.is_alphabetic() {
            if prev_alpha {
                out.extend(c.to_lowercase());
            } else {
                out.extend(c.to_uppercase());
            }
            prev_alpha = true;
        } else {
            out.push(c);
            prev_alpha = false;
        }
    }
    out
}

/// The title line value: the system identifier, `uninitialized` or `initializing`.
fn initialize_label(cluster: &Cluster) -> String {
    match cluster.initialize.as_deref() {
        None => "uninitialized".into(),
        Some("") => "initializing".into(),
        Some(s) => s.into(),
    }
}

/// What `patronictl list <name>` (or `topology`) prints for this cluster, footers included.
pub fn output_members(cluster: &Cluster, name: &str, opts: ListOptions) -> String {
    let fmt = opts.format;
    let mut columns: Vec<String> = [
        "Cluster",
        "Member",
        "Host",
        "Role",
        "State",
        "TL",
        "Receive LSN",
        "Receive Lag",
        "Replay LSN",
        "Replay Lag",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let cj = cluster_as_json(cluster);
    let members: Vec<Map<String, Value>> = cj
        .get("members")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|m| m.as_object().cloned()).collect())
        .unwrap_or_default();
    let with_host: Vec<&Map<String, Value>> = members.iter().filter(|m| m.contains_key("host")).collect();
    for c in ["Pending restart", "Pending restart reason", "Scheduled restart", "Tags"] {
        let key = c.to_lowercase().replace(' ', "_");
        if opts.extended || with_host.iter().any(|m| m.get(&key).is_some_and(truthy)) {
            columns.push(c.to_string());
        }
    }
    let hosts: HashSet<String> = with_host.iter().filter_map(|m| m.get("host")).map(py_str).collect();
    let append_port = with_host.iter().any(|m| m.get("port").is_some_and(|p| p.as_u64() != Some(5432)))
        || hosts.len() < with_host.len();

    let ordered = if fmt == Format::Topology { topology_sort(members) } else { members };
    let mut rows = Vec::new();
    for mut m in ordered {
        let hide_long = fmt.is_table();
        let restart_reason = m
            .get("pending_restart_reason")
            .and_then(Value::as_object)
            .map(|r| {
                r.iter()
                    .map(|(param, v)| {
                        let part = |k: &str| v.get(k).map(py_str).unwrap_or_default();
                        let full = format!("{param}: {}->{}", part("old_value"), part("new_value"));
                        if hide_long && full.chars().count() > 50 {
                            format!("{param}: [hidden - too long]")
                        } else {
                            full
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default();
        let get = |m: &Map<String, Value>, k: &str| m.get(k).cloned().unwrap_or(json!(""));
        let (mut receive_lag, mut replay_lag) = (get(&m, "receive_lag"), get(&m, "replay_lag"));
        let (mut receive_lsn, mut replay_lsn) = (get(&m, "receive_lsn"), get(&m, "replay_lsn"));
        let lsn = get(&m, "lsn");
        if receive_lsn == json!("unknown")
            && replay_lsn == json!("unknown")
            && truthy(&lsn)
            && lsn != json!("unknown")
        {
            let lag = get(&m, "lag");
            if m.get("state") == Some(&json!("streaming")) {
                (receive_lag, receive_lsn) = (lag, lsn);
            } else {
                (replay_lag, replay_lsn) = (lag, lsn);
            }
        }
        let to_mb = |lag: Value| match lag.as_u64() {
            Some(b) if !lag.is_f64() => json!(lag_mb(b)),
            _ if lag == json!("unknown") => json!(""),
            _ => lag,
        };
        let member_name = get(&m, "name");
        let role = title_case(&py_str(&get(&m, "role")).replace('_', " "));
        let mut host = get(&m, "host");
        if append_port && truthy(&host) && m.get("port").is_some_and(truthy) {
            host = json!(format!("{}:{}", py_str(&host), py_str(&m["port"])));
        }
        if let Some(sr) = m.get("scheduled_restart").cloned() {
            let mut value = sr.get("schedule").map(py_str).unwrap_or_default();
            if let Some(v) = sr.get("postgres_version") {
                value.push_str(&format!(" if version < {}", py_str(v)));
            }
            m.insert("scheduled_restart".into(), json!(value));
        }
        m.insert("cluster".into(), json!(name));
        m.insert("member".into(), member_name);
        m.insert("host".into(), host);
        m.insert("tl".into(), get(&m, "timeline"));
        m.insert("role".into(), json!(role));
        m.insert("receive_lag".into(), to_mb(receive_lag));
        m.insert("replay_lag".into(), to_mb(replay_lag));
        m.insert("receive_lsn".into(), receive_lsn);
        m.insert("replay_lsn".into(), replay_lsn);
        let pending = if m.get("pending_restart").is_some_and(truthy) { "*" } else { "" };
        m.insert("pending_restart".into(), json!(pending));
        m.insert("pending_restart_reason".into(), json!(restart_reason));
        rows.push(columns.iter().map(|c| get(&m, &c.to_lowercase().replace(' ', "_"))).collect::<Vec<_>>());
    }

    let title = format!(" Cluster: {name} ({}) ", initialize_label(cluster));
    if fmt.is_table() {
        for c in columns.iter_mut() {
            if c == "Receive Lag" || c == "Replay Lag" {
                *c = "Lag".into();
            }
        }
    }
    let mut out =
        print_output(&columns, rows, &["Group", "Receive LSN", "Replay LSN", "Lag", "TL"], fmt, &title);
    if fmt.is_table() {
        let info = service_info(&cj);
        if !info.is_empty() {
            out.push(' ');
            out.push_str(&info.join("\n "));
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_rounds_half_to_even_like_python() {
        assert_eq!(lag_mb(5 * 1024 * 1024 / 2), 2);
        assert_eq!(lag_mb(7 * 1024 * 1024 / 2), 4);
    }

    #[test]
    fn scheduled_at_is_shown_as_python_isoformat() {
        assert_eq!(py_isoformat("2026-12-01T10:00:00.5Z"), "2026-12-01T10:00:00.500000+00:00");
        assert_eq!(py_isoformat("2026-12-01T10:00:00+02:00"), "2026-12-01T10:00:00+02:00");
        assert_eq!(py_isoformat("2026-12-01 10:00:00"), "2026-12-01T10:00:00");
    }

    #[test]
    fn urlparse_host_port() {
        assert_eq!(
            parse_url_host_port("postgres://u:p@DB.example:5433/postgres"),
            (Some("db.example".into()), Some(5433))
        );
        assert_eq!(parse_url_host_port("postgres://[::1]/postgres"), (Some("::1".into()), None));
    }
}
