//! Operator requests (REST management endpoints, PATRONI-COMPAT §3.4): the pure rules that accept
//! or refuse them with Patroni's status codes and wording (`P:api.py do_POST_failover`,
//! `do_POST_restart`, `parse_schedule`, `is_failover_possible`, `poll_failover_result`;
//! `P:ha.py restart_matches`, `reinitialize`; `P:utils.py patch_config`).
//!
//! Pure: no runtime, no clock (the caller passes `now`), no I/O. [`super::command`] performs what
//! these functions allow.

use super::snapshot::{PeerStatus, ScheduledRestart};
use crate::dcs::model::{Cluster, Failover, Member};
use crate::types::Role;
use chrono::{DateTime, FixedOffset, Utc};
use serde_json::{Map, Value};
use std::time::Duration;

/// A refusal: HTTP status code and Patroni's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status.
    pub code: u16,
    /// Body.
    pub message: String,
}

impl Refusal {
    /// A refusal with `code`.
    pub fn new(code: u16, message: impl Into<String>) -> Refusal {
        Refusal { code, message: message.into() }
    }
}

/// Patroni `patch_config`: merge `patch` into `config` (a `null` value deletes the key, objects
/// merge recursively, other values replace when their text differs). Returns whether `config`
/// changed.
pub fn patch_config(config: &mut Map<String, Value>, patch: &Map<String, Value>) -> bool {
    let mut changed = false;
    for (name, value) in patch {
        if value.is_null() {
            if config.remove(name).is_some_and(|old| !old.is_null()) {
                changed = true;
            }
            continue;
        }
        match config.get_mut(name) {
            Some(old) => match (old, value) {
                (Value::Object(old), Value::Object(new)) => {
                    if patch_config(old, new) {
                        changed = true;
                    }
                }
                (old, new) => {
                    if new.is_object() || python_str(old) != python_str(new) {
                        *old = new.clone();
                        changed = true;
                    }
                }
            },
            None => {
                config.insert(name.clone(), value.clone());
                changed = true;
            }
        }
    }
    changed
}

/// Python's `str()` of a JSON value, as far as `patch_config` compares values (`1` and `"1"` are
/// equal; `True` and `"true"` are not).
fn python_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Null => "None".into(),
        other => other.to_string(),
    }
}

/// Patroni `parse_schedule`: an ISO-8601 time with a zone, not in the past. 400 without a zone,
/// 422 in the past or unparseable.
pub fn parse_schedule(
    schedule: &Value,
    action: &str,
    now: DateTime<Utc>,
) -> Result<DateTime<FixedOffset>, Refusal> {
    let unparseable = || {
        Refusal::new(
            422,
            "Unable to parse scheduled timestamp. It should be in an unambiguous format, e.g. ISO 8601",
        )
    };
    let Some(s) = schedule.as_str() else { return Err(unparseable()) };
    let s = s.trim();
    let at = match parse_time(s) {
        Some(TimeParse::WithZone(t)) => t,
        Some(TimeParse::NoZone) => {
            return Err(Refusal::new(
                400,
                format!("Timezone information is mandatory for the scheduled {action}"),
            ));
        }
        None => return Err(unparseable()),
    };
    if at < now {
        return Err(Refusal::new(422, format!("Cannot schedule {action} in the past")));
    }
    Ok(at)
}

enum TimeParse {
    WithZone(DateTime<FixedOffset>),
    NoZone,
}

/// ISO-8601 with `T` or a space, optional seconds and fraction, zone `Z`, `+HH:MM`, `+HHMM` or
/// `+HH`.
fn parse_time(s: &str) -> Option<TimeParse> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(TimeParse::WithZone(t));
    }
    let norm = s.replacen(' ', "T", 1);
    for f in ["%Y-%m-%dT%H:%M:%S%.f%:z", "%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M%:z", "%Y-%m-%dT%H:%M%z"] {
        if let Ok(t) = DateTime::parse_from_str(&norm, f) {
            return Some(TimeParse::WithZone(t));
        }
    }
    if let Some(base) = norm.strip_suffix('Z').or_else(|| norm.strip_suffix('z')) {
        return parse_time(&format!("{base}+00:00"));
    }
    // `+HH` only.
    if let Some(i) = norm.rfind(['+', '-'])
        && i > 10
        && norm.len() - i == 3
    {
        return parse_time(&format!("{}:00", norm));
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if chrono::NaiveDateTime::parse_from_str(&norm, f).is_ok() {
            return Some(TimeParse::NoZone);
        }
    }
    None
}

/// Patroni's `str.title()` of `switchover`/`failover`.
fn title(action: &str) -> String {
    super::failover::title(action)
}

/// Who asked for what in `POST /switchover` or `POST /failover`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailoverRequest {
    /// `switchover`, or `failover` (a failover naming a leader becomes a switchover).
    pub action: String,
    /// The leader to leave.
    pub leader: Option<String>,
    /// The member to promote (`candidate`, or `member`).
    pub candidate: Option<String>,
    /// When (switchover only).
    pub scheduled_at: Option<DateTime<FixedOffset>>,
}

impl FailoverRequest {
    /// The `/failover` key value (Patroni `manual_failover`).
    pub fn key_value(&self) -> String {
        Failover {
            leader: self.leader.clone().filter(|s| !s.is_empty()),
            member: self.candidate.clone().filter(|s| !s.is_empty()),
            scheduled_at: self.scheduled_at.map(|t| t.to_rfc3339()),
            version: None,
        }
        .to_json()
    }
}

fn opt_string(body: &Map<String, Value>, field: &str) -> Result<Option<String>, Refusal> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Refusal::new(400, format!("{field} must be a string"))),
    }
}

/// The cluster facts the request checks read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClusterMode {
    /// `pause` in `/config`.
    pub paused: bool,
    /// `synchronous_mode` on (or quorum).
    pub synchronous: bool,
    /// `synchronous_mode: quorum`.
    pub quorum: bool,
}

impl ClusterMode {
    /// From the `/config` key.
    pub fn from_cluster(cluster: &Cluster) -> ClusterMode {
        let Some(c) = &cluster.config else { return ClusterMode::default() };
        let get = |k: &str| c.data.get(k);
        let paused = get("pause").is_some_and(crate::dcs::model::value_is_true);
        let (synchronous, quorum) = match get("synchronous_mode") {
            Some(Value::String(s)) if s == "quorum" => (true, true),
            Some(v) => (crate::dcs::model::value_is_true(v), false),
            None => (false, false),
        };
        ClusterMode { paused, synchronous, quorum }
    }
}

/// The first part of Patroni `do_POST_failover`: body checks that need no peer. `action` is
/// `switchover` or `failover`. On success the caller checks [`failover_candidates`] (immediate
/// requests only), writes [`FailoverRequest::key_value`] and, unless scheduled, polls with
/// [`poll_verdict`].
pub fn check_failover_request(
    action: &str,
    body: &Map<String, Value>,
    mode: ClusterMode,
    now: DateTime<Utc>,
) -> Result<FailoverRequest, Refusal> {
    let leader = opt_string(body, "leader")?;
    let candidate = match opt_string(body, "candidate")? {
        Some(c) => Some(c),
        None => opt_string(body, "member")?,
    };
    let scheduled = body.get("scheduled_at").filter(|v| !v.is_null() && v.as_str() != Some(""));
    let bad = |m: &str| Err(Refusal::new(400, m));
    if action == "failover" && candidate.is_none() {
        return bad("Failover could be performed only to a specific candidate");
    }
    if action == "switchover" && leader.is_none() {
        return bad("Switchover could be performed only from a specific leader");
    }
    let mut scheduled_at = None;
    if let Some(s) = scheduled {
        if action == "failover" {
            return bad("Failover can't be scheduled");
        }
        if mode.paused {
            return bad("Can't schedule switchover in the paused state");
        }
        scheduled_at = Some(parse_schedule(s, action, now)?);
    }
    if mode.paused && candidate.is_none() {
        return bad("Switchover is possible only to a specific candidate in a paused state");
    }
    let action = if leader.is_some() { "switchover" } else { action };
    if leader == candidate {
        return bad("Switchover target and source are the same");
    }
    Ok(FailoverRequest { action: action.to_string(), leader, candidate, scheduled_at })
}

/// Patroni `is_failover_possible` (API side), first half: the members to ask `GET /patroni`, or a
/// 412 refusal.
pub fn failover_candidates<'a>(
    cluster: &'a Cluster,
    req: &FailoverRequest,
    mode: ClusterMode,
) -> Result<Vec<&'a Member>, Refusal> {
    let refuse = |m: String| Err(Refusal::new(412, m));
    let action = req.action.as_str();
    let leader_name = cluster.leader.as_ref().map(|l| l.name.as_str());
    if let Some(l) = &req.leader
        && leader_name != Some(l.as_str())
    {
        return refuse("leader name does not match".into());
    }
    let strict_sync = mode.synchronous && !mode.quorum;
    let members: Vec<&Member> = if let Some(c) = &req.candidate {
        if action == "switchover" && strict_sync && !super::failover::sync_matches(&cluster.sync, c, false) {
            return refuse("candidate name does not match with sync_standby".into());
        }
        let m: Vec<&Member> = cluster.members.iter().filter(|m| &m.name == c).collect();
        if m.is_empty() {
            return refuse("candidate does not exists".into());
        }
        m
    } else if strict_sync {
        let m: Vec<&Member> = cluster
            .members
            .iter()
            .filter(|m| super::failover::sync_matches(&cluster.sync, &m.name, false))
            .collect();
        if m.is_empty() {
            return refuse(format!("{action} is not possible: can not find sync_standby"));
        }
        m
    } else {
        let m: Vec<&Member> = cluster
            .members
            .iter()
            .filter(|m| {
                leader_name.is_none() || (Some(m.name.as_str()) != leader_name && !m.data.api_url.is_empty())
            })
            .collect();
        if m.is_empty() {
            return refuse(format!("{action} is not possible: cluster does not have members except leader"));
        }
        m
    };
    Ok(members)
}

/// Patroni `is_failover_possible`, second half: some asked member may promote.
pub fn peers_allow_failover(action: &str, statuses: &[PeerStatus]) -> Result<(), Refusal> {
    if statuses.iter().any(|s| s.failover_limitation().is_none()) {
        Ok(())
    } else {
        Err(Refusal::new(412, format!("{action} is not possible: no good candidates have been found")))
    }
}

/// Patroni `poll_failover_result`, one poll: `Some` when the outcome is known.
pub fn poll_verdict(
    cluster: &Cluster,
    old_leader: Option<&str>,
    candidate: Option<&str>,
    action: &str,
) -> Option<Refusal> {
    let stem = action.strip_suffix("over").unwrap_or(action);
    if let Some(l) = &cluster.leader
        && Some(l.name.as_str()) != old_leader
    {
        return Some(match candidate {
            Some(c) if c != l.name => {
                Refusal::new(200, format!("{}ed over to \"{}\" instead of \"{c}\"", title(stem), l.name))
            }
            _ => Refusal::new(200, format!("Successfully {stem}ed over to \"{}\"", l.name)),
        });
    }
    if cluster.failover.is_none() {
        return Some(Refusal::new(503, format!("{} failed", title(action))));
    }
    None
}

/// How long `POST /switchover` polls (Patroni: `max(10, loop_wait)` × 2 polls of one second).
pub fn poll_budget(loop_wait: Duration) -> u64 {
    loop_wait.as_secs().max(10) * 2
}

/// The verdict when polling ran out.
pub fn poll_timed_out(action: &str) -> Refusal {
    Refusal::new(503, format!("{} status unknown", title(action)))
}

/// `POST /restart` body (Patroni `do_POST_restart`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestartRequest {
    /// When (`None`: now).
    pub schedule: Option<DateTime<FixedOffset>>,
    /// Only when this node has this role.
    pub role: Option<Role>,
    /// Only when the running server is older.
    pub postgres_version: Option<String>,
    /// Start timeout in seconds.
    pub timeout: Option<u64>,
    /// Only when PostgreSQL reports `pending_restart` (the key's presence counts, as in Patroni).
    pub restart_pending: bool,
}

impl RestartRequest {
    /// The scheduled restart to keep, remembering the postmaster start time now.
    pub fn to_scheduled(&self, postmaster_start_time: Option<String>) -> Option<ScheduledRestart> {
        Some(ScheduledRestart {
            schedule: self.schedule?.to_rfc3339(),
            postmaster_start_time,
            role: self.role.clone(),
            postgres_version: self.postgres_version.clone(),
            restart_pending: self.restart_pending,
            timeout: self.timeout.map(Duration::from_secs),
        })
    }
}

/// Patroni `parse_int(value, 's')` for a timeout: an integer or a number with a time unit.
fn parse_timeout_secs(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f.round() as i64)),
        Value::String(s) => {
            let s = s.trim();
            let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-')).unwrap_or(s.len());
            let (num, unit) = s.split_at(split);
            let n: f64 = num.parse().ok()?;
            let mult = match unit.trim() {
                "" | "s" => 1.0,
                "ms" => 0.001,
                "min" => 60.0,
                "h" => 3600.0,
                "d" => 86400.0,
                _ => return None,
            };
            Some((n * mult).round() as i64)
        }
        _ => None,
    }
}

/// Patroni `postgres_version_to_int`'s message for an invalid `postgres_version`.
fn version_error(v: &str) -> Option<String> {
    let parts: Option<Vec<u32>> = v.split('.').map(|p| p.parse().ok()).collect();
    match parts {
        None => Some(format!("Invalid PostgreSQL version: {v}")),
        Some(p) if p.len() < 2 || p.len() > 3 || (p.len() == 2 && p[0] < 10) => {
            Some(format!("Invalid PostgreSQL version format: X.Y or X.Y.Z is accepted: {v}"))
        }
        Some(_) => None,
    }
}

/// Check a `POST /restart` body (Patroni `do_POST_restart`, in the order Patroni checks).
pub fn check_restart_request(
    body: &Map<String, Value>,
    paused: bool,
    now: DateTime<Utc>,
) -> Result<RestartRequest, Refusal> {
    if paused && body.contains_key("schedule") {
        return Err(Refusal::new(500, "Can't schedule restart in the paused state"));
    }
    let mut r = RestartRequest::default();
    for (k, v) in body {
        match k.as_str() {
            "schedule" => r.schedule = Some(parse_schedule(v, "restart", now)?),
            "role" => {
                r.role = Some(match v.as_str() {
                    Some("primary") => Role::Primary,
                    Some("standby_leader") => Role::StandbyLeader,
                    Some("replica") => Role::Replica,
                    _ => {
                        return Err(Refusal::new(
                            400,
                            "PostgreSQL role should be either primary, standby_leader, or replica",
                        ));
                    }
                })
            }
            "postgres_version" => {
                let s = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if let Some(e) = version_error(&s) {
                    return Err(Refusal::new(400, e));
                }
                r.postgres_version = Some(s);
            }
            "timeout" => match parse_timeout_secs(v) {
                Some(t) if t > 0 => r.timeout = Some(t as u64),
                _ => return Err(Refusal::new(400, "Timeout should be a positive number of seconds")),
            },
            "restart_pending" => r.restart_pending = true,
            other => {
                return Err(Refusal::new(400, format!("Unknown filter for the scheduled restart: {other}")));
            }
        }
    }
    Ok(r)
}

/// What an immediate restart is checked against.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestartFacts {
    /// This node's role.
    pub role: Role,
    /// `server_version` as an integer (150004), 0 when unknown.
    pub server_version: u32,
    /// PostgreSQL reports a pending restart.
    pub pending_restart: bool,
}

/// Patroni `restart_matches`: `None` when the filters allow the restart, else the reason (the last
/// failing filter, as Patroni logs it).
pub fn restart_mismatch(req: &RestartRequest, facts: &RestartFacts) -> Option<&'static str> {
    let mut why = None;
    if req.role.as_ref().is_some_and(|r| *r != facts.role) {
        why = Some("host role mismatch");
    }
    if let Some(v) = req.postgres_version.as_deref().and_then(super::decide::postgres_version_to_int)
        && v <= facts.server_version
    {
        why = Some("postgres version mismatch");
    }
    if req.restart_pending && !facts.pending_restart {
        why = Some("pending restart flag is not set");
    }
    why
}

/// Patroni `Ha.reinitialize` refusals (before the in-progress check).
pub fn reinitialize_refusal(cluster: &Cluster, me: &str, i_hold_the_lock: bool) -> Option<&'static str> {
    if cluster.leader.is_none() {
        Some("Cluster has no leader, can not reinitialize")
    } else if i_hold_the_lock || cluster.leader.as_ref().is_some_and(|l| l.name == me) {
        Some("I am the leader, can not reinitialize")
    } else {
        None
    }
}

/// Patroni `Cluster.get_clone_member`: a running member tagged `clonefrom` other than `me` and the
/// leader, picked by a hash of `me` (Patroni picks randomly), else the leader.
pub fn clone_member_name(cluster: &Cluster, me: &str) -> Option<String> {
    let leader = cluster.leader.as_ref().map(|l| l.name.as_str());
    let candidates: Vec<&str> = cluster
        .members
        .iter()
        .filter(|m| {
            m.data
                .tags
                .as_ref()
                .and_then(|t| t.get("clonefrom"))
                .is_some_and(crate::dcs::model::value_is_true)
                && !m.data.conn_url.is_empty()
                && m.data.state == "running"
                && m.name != me
                && Some(m.name.as_str()) != leader
        })
        .map(|m| m.name.as_str())
        .collect();
    if candidates.is_empty() {
        return leader.map(str::to_string);
    }
    let h =
        me.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    Some(candidates[(h % candidates.len() as u64) as usize].to_string())
}

/// The `scheduled_restart` object Patroni publishes (member key: with `postmaster_start_time`;
/// `GET /patroni`: without).
pub fn scheduled_restart_json(sr: &ScheduledRestart, with_start_time: bool) -> Value {
    let mut m = Map::new();
    m.insert("schedule".into(), Value::String(sr.schedule.clone()));
    if let Some(r) = &sr.role {
        m.insert("role".into(), Value::String(r.as_str().to_string()));
    }
    if let Some(v) = &sr.postgres_version {
        m.insert("postgres_version".into(), Value::String(v.clone()));
    }
    if let Some(t) = sr.timeout {
        m.insert("timeout".into(), Value::from(t.as_secs()));
    }
    if sr.restart_pending {
        m.insert("restart_pending".into(), Value::Bool(true));
    }
    if with_start_time {
        m.insert(
            "postmaster_start_time".into(),
            sr.postmaster_start_time.clone().map(Value::String).unwrap_or(Value::Null),
        );
    }
    Value::Object(m)
}

/// Read back what [`scheduled_restart_json`] wrote (the persisted schedule). `None` when malformed.
pub fn scheduled_restart_from_json(v: &Value) -> Option<ScheduledRestart> {
    let m = v.as_object()?;
    let schedule = m.get("schedule")?.as_str()?.to_string();
    DateTime::parse_from_rfc3339(&schedule).ok()?;
    Some(ScheduledRestart {
        schedule,
        postmaster_start_time: m.get("postmaster_start_time").and_then(Value::as_str).map(str::to_string),
        role: m.get("role").and_then(Value::as_str).map(Role::parse),
        postgres_version: m.get("postgres_version").and_then(Value::as_str).map(str::to_string),
        restart_pending: m.get("restart_pending").is_some_and(crate::dcs::model::value_is_true),
        timeout: m.get("timeout").and_then(Value::as_u64).map(Duration::from_secs),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dcs::model::{ClusterConfig, Leader, MemberData, SyncState, Version};
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T12:00:00+00:00").expect("time").with_timezone(&Utc)
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("object")
    }

    fn member(name: &str, api: bool) -> Member {
        Member {
            name: name.into(),
            data: MemberData {
                conn_url: format!("postgres://127.0.0.1/{name}"),
                api_url: if api { format!("http://127.0.0.1/{name}/patroni") } else { String::new() },
                state: "running".into(),
                ..Default::default()
            },
            version: Version(1),
            owner: None,
        }
    }

    fn cluster(leader: Option<&str>, members: &[&str]) -> Cluster {
        Cluster {
            leader: leader.map(|l| Leader { name: l.into(), version: Version(1), owner: None }),
            members: members.iter().map(|m| member(m, true)).collect(),
            config: Some(ClusterConfig { data: Map::new(), version: Version(1) }),
            ..Default::default()
        }
    }

    // utils.py: patch_config
    #[test]
    fn patch_config_merges_nested_deletes_null_and_compares_as_text() {
        let mut c = obj(
            json!({"ttl": 30, "postgresql": {"parameters": {"work_mem": "4MB", "max_connections": 100}}}),
        );
        let p = obj(
            json!({"ttl": "30", "postgresql": {"parameters": {"work_mem": null, "shared_buffers": "1GB"}}, "pause": true}),
        );
        assert!(patch_config(&mut c, &p));
        assert_eq!(
            Value::Object(c.clone()),
            json!({"ttl": 30, "postgresql": {"parameters": {"max_connections": 100, "shared_buffers": "1GB"}}, "pause": true})
        );
        // Same values again (numbers vs strings compare by text): no change.
        assert!(!patch_config(&mut c, &obj(json!({"ttl": "30", "missing": null}))));
        // `pause: None` (patronictl resume) deletes the key.
        assert!(patch_config(&mut c, &obj(json!({"pause": null}))));
        assert!(!c.contains_key("pause"));
    }

    // api.py: parse_schedule
    #[test]
    fn schedules_need_a_zone_and_the_future() {
        assert!(parse_schedule(&json!("2026-01-01T13:00:00+02:00"), "restart", now()).is_err());
        assert_eq!(
            parse_schedule(&json!("2026-01-01T13:00:00+00:00"), "restart", now()).map(|t| t.to_rfc3339()),
            Ok("2026-01-01T13:00:00+00:00".into())
        );
        assert!(parse_schedule(&json!("2026-01-01 13:00Z"), "restart", now()).is_ok());
        assert!(parse_schedule(&json!("2026-01-01T13:00:00+0200"), "switchover", now()).is_err());
        assert_eq!(
            parse_schedule(&json!("2026-01-01T14:00:00+01"), "x", now()).map(|t| t.to_rfc3339()),
            Ok("2026-01-01T14:00:00+01:00".into())
        );
        assert_eq!(
            parse_schedule(&json!("2026-01-02T00:00:00"), "switchover", now()),
            Err(Refusal::new(400, "Timezone information is mandatory for the scheduled switchover"))
        );
        assert_eq!(
            parse_schedule(&json!("2025-01-01T00:00:00Z"), "restart", now()).map_err(|r| r.code),
            Err(422)
        );
        assert_eq!(parse_schedule(&json!(17), "restart", now()).map_err(|r| r.code), Err(422));
    }

    // api.py: do_POST_failover, refusals before the peers are asked
    #[test]
    fn failover_request_refusals_follow_patronis_order() {
        let m = ClusterMode::default();
        let paused = ClusterMode { paused: true, ..m };
        let check = |action: &str, body: Value, mode| check_failover_request(action, &obj(body), mode, now());
        let msg = |r: Result<FailoverRequest, Refusal>| r.map_err(|e| (e.code, e.message)).err();
        assert_eq!(
            msg(check("failover", json!({"leader": "pg0"}), m)),
            Some((400, "Failover could be performed only to a specific candidate".into()))
        );
        assert_eq!(
            msg(check("switchover", json!({"candidate": "pg1"}), m)),
            Some((400, "Switchover could be performed only from a specific leader".into()))
        );
        assert_eq!(
            msg(check("failover", json!({"candidate": "pg1", "scheduled_at": "2027-01-01T00:00:00Z"}), m)),
            Some((400, "Failover can't be scheduled".into()))
        );
        assert_eq!(
            msg(check(
                "switchover",
                json!({"leader": "pg0", "scheduled_at": "2027-01-01T00:00:00Z"}),
                paused
            )),
            Some((400, "Can't schedule switchover in the paused state".into()))
        );
        assert_eq!(
            msg(check("switchover", json!({"leader": "pg0"}), paused)),
            Some((400, "Switchover is possible only to a specific candidate in a paused state".into()))
        );
        assert_eq!(
            msg(check("switchover", json!({"leader": "pg0", "member": "pg0"}), m)),
            Some((400, "Switchover target and source are the same".into()))
        );
        assert_eq!(
            msg(check("switchover", json!({"leader": 5}), m)),
            Some((400, "leader must be a string".into()))
        );
        // A failover naming the leader is a switchover.
        let r = check("failover", json!({"leader": "pg0", "candidate": "pg1"}), m).expect("accepted");
        assert_eq!(r.action, "switchover");
        assert_eq!(r.key_value(), r#"{"leader":"pg0","member":"pg1"}"#);
        let r = check("switchover", json!({"leader": "pg0", "scheduled_at": "2027-01-01T00:00:00+00:00"}), m)
            .expect("accepted");
        assert_eq!(r.key_value(), r#"{"leader":"pg0","scheduled_at":"2027-01-01T00:00:00+00:00"}"#);
    }

    // api.py: is_failover_possible
    #[test]
    fn failover_candidates_are_refused_with_412() {
        let c = cluster(Some("pg0"), &["pg0", "pg1", "pg2"]);
        let m = ClusterMode::default();
        let req = |leader: Option<&str>, cand: Option<&str>| FailoverRequest {
            action: "switchover".into(),
            leader: leader.map(str::to_string),
            candidate: cand.map(str::to_string),
            scheduled_at: None,
        };
        let refusal = |r: Result<Vec<&Member>, Refusal>| r.err().map(|e| (e.code, e.message));
        assert_eq!(
            refusal(failover_candidates(&c, &req(Some("pg9"), None), m)),
            Some((412, "leader name does not match".into()))
        );
        assert_eq!(
            refusal(failover_candidates(&c, &req(Some("pg0"), Some("pgX")), m)),
            Some((412, "candidate does not exists".into()))
        );
        let names = |r: Result<Vec<&Member>, Refusal>| {
            r.expect("ok").iter().map(|m| m.name.clone()).collect::<Vec<_>>()
        };
        assert_eq!(names(failover_candidates(&c, &req(Some("pg0"), None), m)), vec!["pg1", "pg2"]);
        assert_eq!(names(failover_candidates(&c, &req(Some("pg0"), Some("pg2")), m)), vec!["pg2"]);
        let alone = cluster(Some("pg0"), &["pg0"]);
        assert_eq!(
            refusal(failover_candidates(&alone, &req(Some("pg0"), None), m)),
            Some((412, "switchover is not possible: cluster does not have members except leader".into()))
        );
        let mut sync = c.clone();
        sync.sync =
            SyncState { leader: Some("pg0".into()), sync_standby: Some("pg1".into()), ..Default::default() };
        let sm = ClusterMode { synchronous: true, ..m };
        assert_eq!(
            refusal(failover_candidates(&sync, &req(Some("pg0"), Some("pg2")), sm)),
            Some((412, "candidate name does not match with sync_standby".into()))
        );
        assert_eq!(names(failover_candidates(&sync, &req(Some("pg0"), None), sm)), vec!["pg1"]);
        // Quorum mode, and failovers to a member outside the sync set, are not held to /sync.
        assert!(
            failover_candidates(&sync, &req(Some("pg0"), Some("pg2")), ClusterMode { quorum: true, ..sm })
                .is_ok()
        );
        let fo = FailoverRequest { action: "failover".into(), ..req(None, Some("pg2")) };
        assert!(failover_candidates(&sync, &fo, sm).is_ok());
        let mut unreachable = PeerStatus::unreachable();
        assert_eq!(
            peers_allow_failover("switchover", std::slice::from_ref(&unreachable)),
            Err(Refusal::new(412, "switchover is not possible: no good candidates have been found"))
        );
        unreachable.reachable = true;
        assert_eq!(peers_allow_failover("switchover", &[unreachable]), Ok(()));
    }

    // api.py: poll_failover_result
    #[test]
    fn poll_reports_the_new_leader_or_the_failure() {
        let mut c = cluster(Some("pg0"), &["pg0", "pg1", "pg2"]);
        c.failover =
            Some(Failover { leader: Some("pg0".into()), member: Some("pg1".into()), ..Default::default() });
        assert_eq!(poll_verdict(&c, Some("pg0"), Some("pg1"), "switchover"), None);
        c.leader = None;
        assert_eq!(poll_verdict(&c, Some("pg0"), Some("pg1"), "switchover"), None);
        c.leader = Some(Leader { name: "pg1".into(), version: Version(2), owner: None });
        assert_eq!(
            poll_verdict(&c, Some("pg0"), Some("pg1"), "switchover"),
            Some(Refusal::new(200, "Successfully switched over to \"pg1\""))
        );
        c.leader = Some(Leader { name: "pg2".into(), version: Version(2), owner: None });
        assert_eq!(
            poll_verdict(&c, Some("pg0"), Some("pg1"), "failover"),
            Some(Refusal::new(200, "Failed over to \"pg2\" instead of \"pg1\""))
        );
        c.leader = Some(Leader { name: "pg0".into(), version: Version(3), owner: None });
        c.failover = None;
        assert_eq!(
            poll_verdict(&c, Some("pg0"), None, "switchover"),
            Some(Refusal::new(503, "Switchover failed"))
        );
        assert_eq!(poll_timed_out("failover"), Refusal::new(503, "Failover status unknown"));
        assert_eq!(poll_budget(Duration::from_secs(5)), 20);
        assert_eq!(poll_budget(Duration::from_secs(15)), 30);
    }

    // ha.py: restart_matches
    #[test]
    fn restart_filters_name_the_last_mismatch() {
        let facts = RestartFacts { role: Role::Replica, server_version: 150004, pending_restart: false };
        let any = RestartRequest::default();
        assert_eq!(restart_mismatch(&any, &facts), None);
        let primary_only = RestartRequest { role: Some(Role::Primary), ..Default::default() };
        assert_eq!(restart_mismatch(&primary_only, &facts), Some("host role mismatch"));
        let older = RestartRequest { postgres_version: Some("15.4".into()), ..Default::default() };
        assert_eq!(restart_mismatch(&older, &facts), Some("postgres version mismatch"));
        let newer = RestartRequest { postgres_version: Some("15.5".into()), ..Default::default() };
        assert_eq!(restart_mismatch(&newer, &facts), None);
        let pending =
            RestartRequest { restart_pending: true, role: Some(Role::Primary), ..Default::default() };
        assert_eq!(restart_mismatch(&pending, &facts), Some("pending restart flag is not set"));
    }

    // api.py: do_POST_restart
    #[test]
    fn restart_request_checks_every_field() {
        let ok = check_restart_request(
            &obj(json!({"role": "primary", "timeout": "2min", "restart_pending": false})),
            false,
            now(),
        )
        .expect("accepted");
        assert_eq!(ok.timeout, Some(120));
        assert!(ok.restart_pending, "the key's presence counts, as in Patroni");
        assert_eq!(
            check_restart_request(&obj(json!({"schedule": "2027-01-01T00:00:00Z"})), true, now()),
            Err(Refusal::new(500, "Can't schedule restart in the paused state"))
        );
        assert_eq!(
            check_restart_request(&obj(json!({"timeout": -3})), false, now()).map_err(|r| r.code),
            Err(400)
        );
        assert_eq!(
            check_restart_request(&obj(json!({"postgres_version": "10"})), false, now()),
            Err(Refusal::new(400, "Invalid PostgreSQL version format: X.Y or X.Y.Z is accepted: 10"))
        );
    }

    // ha.py: reinitialize
    #[test]
    fn reinitialize_is_refused_without_a_leader_and_on_the_leader() {
        let c = cluster(Some("pg0"), &["pg0", "pg1"]);
        assert_eq!(reinitialize_refusal(&c, "pg1", false), None);
        assert_eq!(reinitialize_refusal(&c, "pg0", false), Some("I am the leader, can not reinitialize"));
        assert_eq!(reinitialize_refusal(&c, "pg1", true), Some("I am the leader, can not reinitialize"));
        let none = cluster(None, &["pg0", "pg1"]);
        assert_eq!(
            reinitialize_refusal(&none, "pg1", false),
            Some("Cluster has no leader, can not reinitialize")
        );
    }

    // dcs/__init__.py: Cluster.get_clone_member
    #[test]
    fn clone_source_is_a_running_clonefrom_member_else_the_leader() {
        let mut c = cluster(Some("pg0"), &["pg0", "pg1", "pg2"]);
        assert_eq!(clone_member_name(&c, "pg1").as_deref(), Some("pg0"));
        c.members[2].data.tags = Some(obj(json!({"clonefrom": true})));
        assert_eq!(clone_member_name(&c, "pg1").as_deref(), Some("pg2"));
        assert_eq!(clone_member_name(&c, "pg2").as_deref(), Some("pg0"), "never itself");
    }

    #[test]
    fn scheduled_restart_round_trips_through_its_json() {
        let sr = ScheduledRestart {
            schedule: "2027-01-01T00:00:00+00:00".into(),
            postmaster_start_time: Some("2026-12-31T10:00:00+00:00".into()),
            role: Some(Role::Replica),
            postgres_version: Some("15.9".into()),
            restart_pending: true,
            timeout: Some(Duration::from_secs(30)),
        };
        let v = scheduled_restart_json(&sr, true);
        assert_eq!(scheduled_restart_from_json(&v), Some(sr.clone()));
        assert!(scheduled_restart_json(&sr, false).get("postmaster_start_time").is_none());
        assert_eq!(scheduled_restart_from_json(&json!({"schedule": "soon"})), None);
        assert_eq!(scheduled_restart_from_json(&json!([1])), None);
    }
}
