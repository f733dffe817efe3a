//! The cluster as Patroni stores it in the DCS: one immutable [`Cluster`] snapshot built from the raw
//! keys under `/<namespace>/<scope>/`, plus the value types written back (PATRONI-COMPAT §2.2–2.3).
//!
//! Every backend lists its keys and hands them to [`Cluster::from_entries`], so lenient parsing lives in
//! one place: a value that does not parse reads as empty and is logged, never a crash.

use crate::types::{Lsn, Role};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Opaque version of a key used for compare-and-set: etcd `mod_revision`, Consul `ModifyIndex`,
/// ZooKeeper `stat.version`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version(pub i64);

/// One raw key read from the DCS, relative to the cluster prefix (`leader`, `members/pg0`, …).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawEntry {
    /// Key relative to `/<namespace>/<scope>/`, without a leading slash.
    pub key: String,
    /// The value as stored (UTF-8).
    pub value: String,
    /// Version for compare-and-set.
    pub version: Version,
    /// Who owns the key's liveness: etcd lease id, Consul session id, ZooKeeper ephemeral owner.
    pub owner: Option<String>,
}

/// The data a member publishes in `members/<name>` (PATRONI-COMPAT §2.3).
///
/// Field order is the order Patroni writes; unknown fields written by newer Patroni versions are kept
/// in `extra` and written back unchanged.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MemberData {
    /// `postgres://host:port/postgres`.
    #[serde(default)]
    pub conn_url: String,
    /// `http(s)://host:port/patroni`.
    #[serde(default)]
    pub api_url: String,
    /// PostgreSQL state (`running`, `stopped`, `creating replica`, …).
    #[serde(default)]
    pub state: String,
    /// Role of the node.
    #[serde(default)]
    pub role: Role,
    /// The Patroni version this agent implements.
    #[serde(default)]
    pub version: String,
    /// `postgresql.proxy_address`, published as a URL.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub proxy_url: Option<String>,
    /// `false` on a freshly promoted leader until its post-promote CHECKPOINT finished.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub checkpoint_after_promote: Option<bool>,
    /// Effective tags.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tags: Option<Map<String, Value>>,
    /// A restart is needed for some parameter to take effect.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pending_restart: Option<bool>,
    /// `{param: {old_value, new_value}}`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pending_restart_reason: Option<Value>,
    /// Primary: flush LSN; replica: max of receive and replay LSN.
    #[serde(skip_serializing_if = "Option::is_none", default, deserialize_with = "lenient_u64")]
    pub xlog_location: Option<u64>,
    /// Replay LSN of a replica.
    #[serde(skip_serializing_if = "Option::is_none", default, deserialize_with = "lenient_u64")]
    pub replay_lsn: Option<u64>,
    /// Receive LSN of a replica.
    #[serde(skip_serializing_if = "Option::is_none", default, deserialize_with = "lenient_u64")]
    pub receive_lsn: Option<u64>,
    /// `streaming` or `in archive recovery`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub replication_state: Option<String>,
    /// Current timeline.
    #[serde(skip_serializing_if = "Option::is_none", default, deserialize_with = "lenient_u64")]
    pub timeline: Option<u64>,
    /// `{schedule, postmaster_start_time, role?, postgres_version?, restart_pending?, timeout?}`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub scheduled_restart: Option<Value>,
    /// Present and true while the cluster is paused.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pause: Option<bool>,
    /// Fields this version does not know, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn lenient_u64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    Ok(match v {
        Some(Value::Number(n)) => n.as_u64().or_else(|| n.as_f64().map(|f| f.max(0.0) as u64)),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

impl MemberData {
    /// Parse a member value: Patroni JSON, or the legacy bare `postgres://` URL. Garbage reads as
    /// default data (and the caller logs it).
    pub fn parse(value: &str) -> Result<MemberData, String> {
        let t = value.trim();
        if t.starts_with("postgres://") || t.starts_with("postgresql://") {
            return Ok(MemberData { conn_url: t.to_string(), ..Default::default() });
        }
        serde_json::from_str::<MemberData>(t).map_err(|e| e.to_string())
    }

    /// Compact JSON as Patroni writes it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("MemberData always serializes")
    }

    /// The effective tags as a map (empty when absent).
    pub fn tags(&self) -> Map<String, Value> {
        self.tags.clone().unwrap_or_default()
    }

    /// A tag read with Patroni's boolean rules (`true`, `"on"`, `"yes"`, …).
    pub fn tag_bool(&self, name: &str) -> bool {
        self.tags.as_ref().and_then(|t| t.get(name)).map(value_is_true).unwrap_or(false)
    }

    /// `host` and `port` of `conn_url`.
    pub fn conn_host_port(&self) -> Option<(String, u16)> {
        let u = url::Url::parse(&self.conn_url).ok()?;
        Some((u.host_str()?.to_string(), u.port().unwrap_or(5432)))
    }
}

/// Patroni's `parse_bool` applied to a JSON value.
pub fn value_is_true(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => matches!(s.to_ascii_lowercase().as_str(), "true" | "on" | "yes" | "1" | "y"),
        _ => false,
    }
}

/// A member of the cluster as read from `members/<name>`.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    /// Member name (the key's last component).
    pub name: String,
    /// Parsed value.
    pub data: MemberData,
    /// Version of the key.
    pub version: Version,
    /// Lease/session/ephemeral owner of the key.
    pub owner: Option<String>,
}

impl Member {
    /// Receive/replay/xlog location as Patroni's `Member.lsn`.
    pub fn lsn(&self) -> Option<Lsn> {
        self.data.xlog_location.map(Lsn)
    }
}

/// The holder of the leader key (a plain string value: the member name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leader {
    /// Member name of the holder.
    pub name: String,
    /// Version of the key.
    pub version: Version,
    /// Lease/session/ephemeral owner of the key.
    pub owner: Option<String>,
}

/// The `config` key: the dynamic configuration as a JSON object.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterConfig {
    /// The JSON object (empty when the stored value did not parse).
    pub data: Map<String, Value>,
    /// Version of the key.
    pub version: Version,
}

/// The `sync` key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncState {
    /// The leader that wrote it.
    #[serde(default)]
    pub leader: Option<String>,
    /// Quorum (quorum mode), 0 otherwise.
    #[serde(default, deserialize_with = "lenient_u32")]
    pub quorum: u32,
    /// Sorted member names joined by `,`, or null.
    #[serde(default)]
    pub sync_standby: Option<String>,
    /// Version of the key (not part of the JSON).
    #[serde(skip)]
    pub version: Option<Version>,
}

fn lenient_u32<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    Ok(lenient_u64(d)?.unwrap_or(0).min(u64::from(u32::MAX)) as u32)
}

impl SyncState {
    /// Compact JSON as Patroni writes it: `{"leader":…,"quorum":…,"sync_standby":…}` with names sorted.
    pub fn to_json(leader: &str, standbys: &[String], quorum: u32) -> String {
        let mut names: Vec<&String> = standbys.iter().collect();
        names.sort();
        names.dedup();
        let ss = if names.is_empty() {
            Value::Null
        } else {
            Value::String(names.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(","))
        };
        serde_json::json!({"leader": leader, "quorum": quorum, "sync_standby": ss}).to_string()
    }

    /// The standby names listed in `sync_standby`.
    pub fn members(&self) -> Vec<String> {
        self.sync_standby
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    }

    /// Whether `name` is the leader or a listed standby (case-insensitive, as Patroni compares).
    pub fn matches(&self, name: &str) -> bool {
        self.leader.as_deref().is_some_and(|l| l.eq_ignore_ascii_case(name))
            || self.members().iter().any(|m| m.eq_ignore_ascii_case(name))
    }

    /// The state is empty (no key, `{}`, or unparsable).
    pub fn is_empty(&self) -> bool {
        self.leader.is_none()
    }
}

/// The `failover` key: a requested switchover or failover.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failover {
    /// The member to switch over from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// The candidate (`member`; Patroni also reads `candidate`).
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "candidate")]
    pub member: Option<String>,
    /// ISO-8601 time with zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_at: Option<String>,
    /// Version of the key (not part of the JSON).
    #[serde(skip)]
    pub version: Option<Version>,
}

impl Failover {
    /// Parse `failover`: JSON, or the legacy `leader:candidate` string. `{}`/garbage reads as `None`.
    pub fn parse(value: &str) -> Option<Failover> {
        let t = value.trim();
        if let Ok(f) = serde_json::from_str::<Failover>(t) {
            return (f.leader.is_some() || f.member.is_some()).then_some(f);
        }
        if !t.starts_with('{')
            && let Some((l, m)) = t.split_once(':')
        {
            let l = (!l.is_empty()).then(|| l.to_string());
            let m = (!m.is_empty()).then(|| m.to_string());
            if l.is_some() || m.is_some() {
                return Some(Failover { leader: l, member: m, ..Default::default() });
            }
        }
        None
    }

    /// Compact JSON as Patroni writes it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("Failover always serializes")
    }
}

/// One line of the `history` key: `[timeline, switch_lsn, reason, timestamp?, new_leader?]`.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryLine {
    /// Timeline that ended.
    pub timeline: u64,
    /// LSN where it ended.
    pub lsn: u64,
    /// Reason from the `.history` file.
    pub reason: String,
    /// ISO timestamp.
    pub timestamp: Option<String>,
    /// Member that promoted.
    pub new_leader: Option<String>,
}

impl HistoryLine {
    fn from_value(v: &Value) -> Option<HistoryLine> {
        let a = v.as_array()?;
        let num = |i: usize| a.get(i).and_then(|x| x.as_u64().or_else(|| x.as_str()?.parse().ok()));
        let s = |i: usize| a.get(i).and_then(|x| x.as_str()).map(String::from);
        Some(HistoryLine {
            timeline: num(0)?,
            lsn: num(1)?,
            reason: s(2).unwrap_or_default(),
            timestamp: s(3),
            new_leader: s(4),
        })
    }

    /// The JSON array form.
    pub fn to_value(&self) -> Value {
        let mut a = vec![Value::from(self.timeline), Value::from(self.lsn), Value::from(self.reason.clone())];
        if let Some(t) = &self.timestamp {
            a.push(Value::from(t.clone()));
            if let Some(n) = &self.new_leader {
                a.push(Value::from(n.clone()));
            }
        }
        Value::Array(a)
    }
}

/// The `history` key.
#[derive(Clone, Debug, PartialEq)]
pub struct History {
    /// Lines in stored order.
    pub lines: Vec<HistoryLine>,
    /// Version of the key.
    pub version: Version,
}

impl History {
    /// Compact JSON of `lines`.
    pub fn to_json(lines: &[HistoryLine]) -> String {
        Value::Array(lines.iter().map(HistoryLine::to_value).collect()).to_string()
    }
}

/// The `status` key written by the leader.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Last known leader LSN.
    #[serde(default)]
    pub optime: Option<u64>,
    /// Slot name → LSN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<BTreeMap<String, u64>>,
    /// Slot names to keep for absent members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain_slots: Option<Vec<String>>,
}

impl Status {
    /// Parse `status`: JSON object or the legacy bare integer. Garbage reads as empty.
    pub fn parse(value: &str) -> Option<Status> {
        let t = value.trim();
        if let Ok(n) = t.parse::<u64>() {
            return Some(Status { optime: Some(n), ..Default::default() });
        }
        let v: Value = serde_json::from_str(t).ok()?;
        let o = v.as_object()?;
        let optime = o.get("optime").and_then(|x| x.as_u64().or_else(|| x.as_str()?.parse().ok()));
        let slots = o.get("slots").and_then(|s| s.as_object()).map(|m| {
            m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_u64()?))).collect::<BTreeMap<_, _>>()
        });
        let retain_slots = o
            .get("retain_slots")
            .and_then(|s| s.as_array())
            .map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect::<Vec<_>>());
        Some(Status { optime, slots, retain_slots })
    }

    /// Compact JSON as Patroni writes it (`slots`/`retain_slots` omitted when absent).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("Status always serializes")
    }
}

/// The whole cluster at one moment, as read from the DCS. Immutable.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cluster {
    /// `initialize`: `None` when absent, `Some("")` while bootstrapping, else the system identifier.
    pub initialize: Option<String>,
    /// `config`.
    pub config: Option<ClusterConfig>,
    /// `leader`.
    pub leader: Option<Leader>,
    /// `status` (empty when absent).
    pub status: Status,
    /// `members/*`, sorted by name.
    pub members: Vec<Member>,
    /// `failover` (None when absent or cleared with `{}`).
    pub failover: Option<Failover>,
    /// `sync` (empty when absent; `version` set when the key exists).
    pub sync: SyncState,
    /// `history`.
    pub history: Option<History>,
    /// `failsafe`: member name → api_url.
    pub failsafe: Option<BTreeMap<String, String>>,
}

/// A problem found while reading one key; the key reads as empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeWarning {
    /// Relative key.
    pub key: String,
    /// What was wrong.
    pub problem: String,
}

impl Cluster {
    /// Build a snapshot from raw keys relative to the cluster prefix. Unknown keys are ignored; values
    /// that do not parse read as empty and are returned as warnings for the caller to log.
    pub fn from_entries(entries: impl IntoIterator<Item = RawEntry>) -> (Cluster, Vec<DecodeWarning>) {
        let mut c = Cluster::default();
        let mut warnings = Vec::new();
        let mut warn =
            |key: &str, problem: String| warnings.push(DecodeWarning { key: key.to_string(), problem });
        for e in entries {
            let key = e.key.trim_start_matches('/');
            match key {
                "initialize" => c.initialize = Some(e.value.trim().to_string()),
                "config" => {
                    let data = match serde_json::from_str::<Value>(&e.value) {
                        Ok(Value::Object(m)) => m,
                        Ok(_) | Err(_) => {
                            if !e.value.trim().is_empty() {
                                warn(key, "not a JSON object".into());
                            }
                            Map::new()
                        }
                    };
                    c.config = Some(ClusterConfig { data, version: e.version });
                }
                "leader" => {
                    let name = e.value.trim().to_string();
                    if !name.is_empty() {
                        c.leader = Some(Leader { name, version: e.version, owner: e.owner.clone() });
                    }
                }
                "status" => match Status::parse(&e.value) {
                    Some(s) => c.status = s,
                    None => warn(key, "not a JSON object or integer".into()),
                },
                "optime/leader" if c.status.optime.is_none() => {
                    c.status.optime = e.value.trim().parse().ok();
                }
                "failover" => {
                    c.failover = Failover::parse(&e.value).map(|mut f| {
                        f.version = Some(e.version);
                        f
                    })
                }
                "sync" => {
                    let mut s = match serde_json::from_str::<SyncState>(&e.value) {
                        Ok(s) => s,
                        Err(err) => {
                            if !e.value.trim().is_empty() {
                                warn(key, err.to_string());
                            }
                            SyncState::default()
                        }
                    };
                    s.version = Some(e.version);
                    c.sync = s;
                }
                "history" => {
                    let lines = match serde_json::from_str::<Value>(&e.value) {
                        Ok(Value::Array(a)) => a.iter().filter_map(HistoryLine::from_value).collect(),
                        _ => {
                            warn(key, "not a JSON list".into());
                            Vec::new()
                        }
                    };
                    c.history = Some(History { lines, version: e.version });
                }
                "failsafe" => {
                    c.failsafe = match serde_json::from_str::<Value>(&e.value) {
                        Ok(Value::Object(m)) => Some(
                            m.into_iter().filter_map(|(k, v)| Some((k, v.as_str()?.to_string()))).collect(),
                        ),
                        _ => {
                            warn(key, "not a JSON object".into());
                            None
                        }
                    }
                }
                k if k.starts_with("members/") => {
                    let name = &k["members/".len()..];
                    if name.is_empty() || name.contains('/') {
                        continue;
                    }
                    let data = match MemberData::parse(&e.value) {
                        Ok(d) => d,
                        Err(err) => {
                            warn(key, err);
                            MemberData::default()
                        }
                    };
                    c.members.push(Member {
                        name: name.to_string(),
                        data,
                        version: e.version,
                        owner: e.owner.clone(),
                    });
                }
                _ => {}
            }
        }
        c.members.sort_by(|a, b| a.name.cmp(&b.name));
        (c, warnings)
    }

    /// The member with this name.
    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }

    /// The leader's member entry, if the leader key is held and its member key exists.
    pub fn leader_member(&self) -> Option<&Member> {
        self.leader.as_ref().and_then(|l| self.member(&l.name))
    }

    /// `initialize` holds a system identifier (bootstrap finished).
    pub fn is_initialized(&self) -> bool {
        self.initialize.as_deref().is_some_and(|s| !s.is_empty())
    }

    /// Nobody holds the leader key.
    pub fn is_unlocked(&self) -> bool {
        self.leader.is_none()
    }

    /// `pause: true` in `config`.
    pub fn is_paused(&self) -> bool {
        self.config.as_ref().and_then(|c| c.data.get("pause")).is_some_and(value_is_true)
    }

    /// The cluster timeline derived from `history` (last line's timeline + 1), or 0 if unknown.
    pub fn timeline(&self) -> u64 {
        match &self.history {
            Some(h) => h.lines.last().map(|l| l.timeline + 1).unwrap_or(1),
            None => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(key: &str, value: &str) -> RawEntry {
        RawEntry { key: key.into(), value: value.into(), version: Version(7), owner: None }
    }

    // Values captured from a live Patroni 4.1.5 cluster (PATRONI-COMPAT §2.2).
    const MEMBER_PG1: &str = r#"{"conn_url":"postgres://127.0.0.1:45431/postgres","api_url":"http://127.0.0.1:48001/patroni","state":"running","role":"replica","version":"4.1.5","xlog_location":50615840,"replay_lsn":50615840,"receive_lsn":50615840,"replication_state":"streaming","timeline":1}"#;
    const STATUS: &str =
        r#"{"optime":50615840,"slots":{"pg0":50615840,"pg1":50615840},"retain_slots":["pg0","pg1"]}"#;
    const HISTORY: &str =
        r#"[[1,50615840,"no recovery target specified","2026-11-22T00:09:20.586348+00:00","pg1"]]"#;

    #[test]
    fn patroni_member_value_round_trips_byte_for_byte() {
        let d = MemberData::parse(MEMBER_PG1).unwrap();
        assert_eq!(d.role, Role::Replica);
        assert_eq!(d.xlog_location, Some(50615840));
        assert_eq!(d.conn_host_port(), Some(("127.0.0.1".into(), 45431)));
        // replay_lsn before receive_lsn, as Patroni writes it
        assert_eq!(d.to_json(), MEMBER_PG1);
    }

    #[test]
    fn member_unknown_fields_are_kept() {
        let d = MemberData::parse(r#"{"conn_url":"postgres://h:1/postgres","future":{"x":1}}"#).unwrap();
        assert!(d.to_json().contains(r#""future":{"x":1}"#));
    }

    #[test]
    fn legacy_member_url_is_accepted() {
        let d = MemberData::parse("postgres://repl:pw@10.0.0.1:5433/postgres").unwrap();
        assert_eq!(d.conn_host_port(), Some(("10.0.0.1".into(), 5433)));
    }

    #[test]
    fn status_history_round_trip() {
        let s = Status::parse(STATUS).unwrap();
        assert_eq!(s.to_json(), STATUS);
        assert_eq!(Status::parse("12345").unwrap().optime, Some(12345));
        let s = Status { optime: Some(5), slots: None, retain_slots: None };
        assert_eq!(s.to_json(), r#"{"optime":5}"#);
        let (c, w) = Cluster::from_entries(vec![e("history", HISTORY)]);
        assert!(w.is_empty());
        let h = c.history.unwrap();
        assert_eq!(History::to_json(&h.lines), HISTORY);
        assert_eq!(h.lines[0].new_leader.as_deref(), Some("pg1"));
    }

    #[test]
    fn sync_json_is_sorted_and_compact() {
        assert_eq!(
            SyncState::to_json("pg0", &["pg2".into(), "pg1".into()], 0),
            r#"{"leader":"pg0","quorum":0,"sync_standby":"pg1,pg2"}"#
        );
        assert_eq!(SyncState::to_json("pg0", &[], 0), r#"{"leader":"pg0","quorum":0,"sync_standby":null}"#);
    }

    #[test]
    fn failover_reads_json_legacy_and_cleared_forms() {
        let f =
            Failover::parse(r#"{"leader":"pg0","member":"pg1","scheduled_at":"2026-09-01T10:00:00+00:00"}"#)
                .unwrap();
        assert_eq!(f.member.as_deref(), Some("pg1"));
        assert_eq!(
            f.to_json(),
            r#"{"leader":"pg0","member":"pg1","scheduled_at":"2026-09-01T10:00:00+00:00"}"#
        );
        assert_eq!(Failover::parse("pg0:pg1").unwrap().leader.as_deref(), Some("pg0"));
        assert_eq!(Failover::parse("{}"), None);
        assert_eq!(Failover::parse(""), None);
        assert_eq!(Failover::parse(r#"{"candidate":"pg2"}"#).unwrap().member.as_deref(), Some("pg2"));
    }

    #[test]
    fn malformed_values_read_as_empty_with_a_warning() {
        let (c, w) = Cluster::from_entries(vec![
            e("config", "{not json"),
            e("members/pg9", "<<garbage>>"),
            e("sync", "[1,2]"),
            e("status", "nope"),
            e("history", "{}"),
            e("failsafe", "3"),
            e("leader", "pg0"),
            e("initialize", "7710780543994972159"),
        ]);
        assert_eq!(w.len(), 6, "{w:?}");
        assert!(c.config.as_ref().unwrap().data.is_empty());
        assert_eq!(c.members[0].data, MemberData::default());
        assert!(c.sync.is_empty());
        assert_eq!(c.leader.as_ref().unwrap().name, "pg0");
        assert!(c.is_initialized());
    }

    #[test]
    fn cluster_from_patroni_keys() {
        let (c, w) = Cluster::from_entries(vec![
            e("members/pg1", MEMBER_PG1),
            e("members/pg0", MEMBER_PG1),
            e("status", STATUS),
            e("initialize", ""),
            e("config", r#"{"ttl":30,"pause":true}"#),
            e("sync", r#"{"leader":"pg0","sync_standby":"pg1","quorum":0}"#),
        ]);
        assert!(w.is_empty());
        assert_eq!(c.members.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["pg0", "pg1"]);
        assert_eq!(c.status.optime, Some(50615840));
        assert!(!c.is_initialized());
        assert!(c.is_paused());
        assert!(c.sync.matches("PG1"));
        assert!(c.is_unlocked());
    }
}
