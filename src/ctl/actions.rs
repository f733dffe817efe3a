//! The commands that act on a cluster through the members' REST API (patronictl's `switchover`,
//! `failover`, `restart`, `reload`, `reinit`, `flush`, `pause`/`resume`, `version`,
//! `demote-cluster`/`promote-cluster`) and `remove` (DCS). Same requests, bodies, prompts and
//! messages as `ctl.py`, with its DCS fallbacks (switchover/failover write `/failover`, flush
//! writes `{}`).

use super::dsn::{CtlRole, members_with_role};
use super::list::{ListOptions, output_members};
use super::output::Format;
use super::prompt::{confirm, prompt};
use super::rest::{Reply, RestClient};
use super::{CtlError, echo};
use crate::dcs::Dcs;
use crate::dcs::model::{Cluster, Member, value_is_true};
use crate::types::Role;
use chrono::{DateTime, FixedOffset, Local, NaiveDateTime, TimeZone};
use reqwest::Method;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn failed(s: impl Into<String>) -> CtlError {
    CtlError::Failed(s.into())
}

/// patronictl's `timestamp(precision)`: local time, `precision` digits of the fraction (6 or 0).
pub fn timestamp(precision: usize) -> String {
    let s = Local::now().format("%Y-%m-%d %H:%M:%S%.6f").to_string();
    let cut = 26 - (6 - precision.min(6)) - usize::from(precision == 0);
    s[..cut.min(s.len())].to_string()
}

fn members_table(cluster: &Cluster, name: &str) -> String {
    output_members(cluster, name, ListOptions { extended: false, format: Format::Pretty })
}

fn print_members(cluster: &Cluster, name: &str) -> Result<(), CtlError> {
    super::write_out(&members_table(cluster, name))
}

/// `loop_wait` of the cluster's `/config`, else 10.
fn loop_wait(cluster: &Cluster) -> u64 {
    cluster.config.as_ref().and_then(|c| c.data.get("loop_wait")).and_then(Value::as_u64).unwrap_or(10)
}

fn config_value<'a>(cluster: &'a Cluster, key: &str) -> Option<&'a Value> {
    cluster.config.as_ref().and_then(|c| c.data.get(key))
}

fn is_synchronous_mode(cluster: &Cluster) -> bool {
    config_value(cluster, "synchronous_mode").is_some_and(|v| value_is_true(v) || v == "quorum")
        && !is_standby_cluster(cluster)
}

fn is_standby_cluster(cluster: &Cluster) -> bool {
    config_value(cluster, "standby_cluster").and_then(Value::as_object).is_some_and(|o| !o.is_empty())
}

/// `parse_scheduled`: `None`/`now` → immediately; otherwise a timestamp, local time when it has no
/// zone. Accepts ISO 8601 (`2026-12-06T23:00`, `…:00+01:00`, `…Z`) and `YYYY-MM-DD HH:MM[:SS]`.
pub fn parse_scheduled(scheduled: Option<&str>) -> Result<Option<DateTime<FixedOffset>>, CtlError> {
    let Some(s) = scheduled.map(str::trim).filter(|s| !s.is_empty() && *s != "now") else { return Ok(None) };
    let zulu;
    let s = match s.strip_suffix(['Z', 'z']) {
        Some(rest) => {
            zulu = format!("{rest}+00:00");
            zulu.as_str()
        }
        None => s,
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(Some(t));
    }
    for f in ["%Y-%m-%dT%H:%M%:z", "%Y-%m-%d %H:%M%:z", "%Y-%m-%dT%H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%:z"]
    {
        if let Ok(t) = DateTime::parse_from_str(s, f) {
            return Ok(Some(t));
        }
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"] {
        if let Ok(n) = NaiveDateTime::parse_from_str(s, f)
            && let Some(t) = Local.from_local_datetime(&n).earliest()
        {
            return Ok(Some(t.fixed_offset()));
        }
    }
    Err(failed(format!(
        "Unable to parse scheduled timestamp ({s}). It should be in an unambiguous format (e.g. ISO 8601)"
    )))
}

/// Python's `datetime.isoformat()` of an aware timestamp.
pub fn isoformat(t: &DateTime<FixedOffset>) -> String {
    if t.timestamp_subsec_micros() == 0 {
        t.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.6f%:z").to_string()
    }
}

fn next_hour() -> String {
    (Local::now() + chrono::Duration::hours(1)).format("%Y-%m-%dT%H:%M").to_string()
}

/// `get_members`: the members an action applies to, after showing the table and asking what the
/// command line did not say.
#[allow(clippy::too_many_arguments)]
pub fn get_members(
    cluster: &Cluster,
    cluster_name: &str,
    member_names: &[String],
    role: CtlRole,
    force: bool,
    action: &str,
    ask_confirmation: bool,
    role_given: bool,
) -> Result<Vec<Member>, CtlError> {
    let members = members_with_role(cluster, role);
    let candidates: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
    if !force || role_given {
        if member_names.is_empty() && candidates.is_empty() {
            return Err(failed(format!("{cluster_name} cluster doesn't have any members")));
        }
        print_members(cluster, cluster_name)?;
    }
    let mut names: Vec<String> = if !member_names.is_empty() {
        let n: Vec<String> =
            member_names.iter().filter(|n| candidates.contains(&n.as_str())).cloned().collect();
        if n.is_empty() {
            return Err(failed(format!("No {} among provided members", role_repr(role))));
        }
        n
    } else if action != "reinitialize" {
        candidates.iter().map(|s| s.to_string()).collect()
    } else {
        Vec::new()
    };
    if names.is_empty() && !force {
        names = vec![prompt(
            &format!("Which member do you want to {action} [{}]?", candidates.join(", ")),
            Some(""),
        )?];
    }
    for n in &names {
        if !candidates.contains(&n.as_str()) {
            return Err(failed(format!("{n} is not a member of cluster")));
        }
    }
    let chosen: Vec<Member> = members.into_iter().filter(|m| names.contains(&m.name)).cloned().collect();
    if ask_confirmation {
        confirm_members_action(&chosen, force, action, None, false)?;
    }
    Ok(chosen)
}

/// The role as patronictl names it in messages.
pub fn role_repr(role: CtlRole) -> &'static str {
    match role {
        CtlRole::Leader => "leader",
        CtlRole::Primary => "primary",
        CtlRole::StandbyLeader => "standby-leader",
        CtlRole::Replica => "replica",
        CtlRole::Standby => "standby",
        CtlRole::Any => "any",
    }
}

/// `confirm_members_action`.
pub fn confirm_members_action(
    members: &[Member],
    force: bool,
    action: &str,
    scheduled_at: Option<&str>,
    pending: bool,
) -> Result<(), CtlError> {
    if force {
        return Ok(());
    }
    let names = members.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ");
    if let Some(at) = scheduled_at {
        let ok = if pending {
            confirm(
                "The nodes needing a restart will be identified at the scheduled time, and might be different \
                 from the ones showing pending restart right now. Is this fine?",
            )?
        } else {
            confirm(&format!("Are you sure you want to schedule {action} of members {names} at {at}?"))?
        };
        if !ok {
            return Err(failed(format!("Aborted scheduled {action}")));
        }
    } else if !confirm(&format!("Are you sure you want to {action} members {names}?"))? {
        return Err(failed(format!("Aborted {action}")));
    }
    Ok(())
}

/// `check_response`: prints `Failed: …`/`Success: …`; true on success.
fn check_response(r: &Reply, member: &str, action: &str, silent_success: bool) -> Result<bool, CtlError> {
    if r.status >= 400 {
        return report(r, member, action, &[]);
    }
    if !silent_success {
        echo(&format!("Success: {action} for member {member}"))?;
    }
    Ok(true)
}

/// Print the outcome of one member's REST call: the message `table` gives for the status
/// (`(status, success, message)`); any other status is a failure, printed as patronictl does.
/// True on success.
fn report(r: &Reply, member: &str, action: &str, table: &[(u16, bool, String)]) -> Result<bool, CtlError> {
    match table.iter().find(|(status, ..)| *status == r.status) {
        Some((_, ok, message)) => {
            echo(message)?;
            Ok(*ok)
        }
        None => {
            echo(&format!("Failed: {action} for member {member}, status code={}, ({})", r.status, r.body))?;
            Ok(false)
        }
    }
}

/// One REST call to member `m`; an unreachable member ends the command.
async fn call(
    rest: &RestClient,
    m: &Member,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Reply, CtlError> {
    rest.request(m, method, Some(path), body).await.map_err(|e| unreachable(&m.name, &e))
}

fn unreachable(member: &str, e: &str) -> CtlError {
    failed(format!("cannot reach the REST API of member {member}: {e}"))
}

/// Options of `switchover`/`failover`.
#[derive(Clone, Debug, Default)]
pub struct SwitchoverOptions {
    /// `--leader`/`--primary` (switchover only).
    pub leader: Option<String>,
    /// `--candidate`.
    pub candidate: Option<String>,
    /// `--scheduled` (switchover only).
    pub scheduled: Option<String>,
    /// `--force`.
    pub force: bool,
}

/// `_do_failover_or_switchover`.
pub async fn failover_or_switchover(
    action: &str,
    cluster_name: &str,
    dcs: &Arc<dyn Dcs>,
    rest: &RestClient,
    opts: SwitchoverOptions,
) -> Result<(), CtlError> {
    let cluster = super::load(dcs, cluster_name).await?;
    echo("Current cluster topology")?;
    print_members(&cluster, cluster_name)?;
    let cluster_leader = cluster.leader.as_ref().map(|l| l.name.clone()).filter(|n| !n.is_empty());
    let force = opts.force;
    let mut switchover_leader = opts.leader.clone();
    if action == "switchover" {
        let Some(cl) = &cluster_leader else { return Err(failed("This cluster has no leader")) };
        if switchover_leader.is_none() {
            switchover_leader = Some(if force {
                cl.clone()
            } else {
                let label = if is_standby_cluster(&cluster) { "Standby Leader" } else { "Primary" };
                prompt(label, Some(cl))?
            });
        }
        if switchover_leader.as_deref() != Some(cl.as_str()) {
            return Err(failed(format!(
                "Member {} is not the leader of cluster {cluster_name}",
                switchover_leader.unwrap_or_default()
            )));
        }
    }
    let mut candidate_names: Vec<String> = cluster
        .members
        .iter()
        .filter(|m| Some(&m.name) != cluster_leader.as_ref() && !m.data.tag_bool("nofailover"))
        .map(|m| m.name.clone())
        .collect();
    candidate_names.sort();
    if candidate_names.is_empty() {
        return Err(failed(format!("No candidates found to {action} to")));
    }
    let mut candidate = opts.candidate.clone();
    if candidate.is_none() && !force {
        let list = candidate_names.iter().map(|c| format!("'{c}'")).collect::<Vec<_>>().join(", ");
        candidate = Some(prompt(&format!("Candidate [{list}]"), Some(""))?);
    }
    let candidate = candidate.filter(|c| !c.is_empty());
    if action == "failover" && candidate.is_none() {
        return Err(failed("Failover could be performed only to a specific candidate"));
    }
    if let Some(c) = &candidate
        && !candidate_names.contains(c)
    {
        if Some(c) == cluster_leader.as_ref() {
            return Err(failed(format!("Member {c} is already the leader of cluster {cluster_name}")));
        }
        return Err(failed(format!(
            "Member {c} does not exist in cluster {cluster_name} or is tagged as nofailover"
        )));
    }
    if !force
        && action == "failover"
        && is_synchronous_mode(&cluster)
        && !cluster.sync.is_empty()
        && !candidate.as_deref().is_some_and(|c| cluster.sync.matches(c))
        && !confirm(&format!(
            "Are you sure you want to failover to the asynchronous node {}?",
            candidate.clone().unwrap_or_default()
        ))?
    {
        return Err(failed(format!("Aborting {action}")));
    }
    let mut scheduled_at = None;
    if action == "switchover" {
        let mut sched = opts.scheduled.clone();
        if sched.is_none() && !force {
            sched = Some(prompt(
                &format!("When should the switchover take place (e.g. {} ) ", next_hour()),
                Some("now"),
            )?);
        }
        scheduled_at = parse_scheduled(sched.as_deref())?;
        if scheduled_at.is_some() && cluster.is_paused() {
            return Err(failed("Can't schedule switchover in the paused state"));
        }
    }
    let scheduled_str = scheduled_at.as_ref().map(isoformat);
    let mut body = Map::new();
    body.insert("candidate".into(), candidate.clone().map(Value::String).unwrap_or(Value::Null));
    if action == "switchover" {
        body.insert("leader".into(), json!(switchover_leader));
    }
    if let Some(s) = &scheduled_str {
        body.insert("scheduled_at".into(), json!(s));
    }
    let body = Value::Object(body);
    tracing::debug!("{body}");
    if !force {
        let demote =
            cluster_leader.as_ref().map(|l| format!(", demoting current leader {l}")).unwrap_or_default();
        if let Some(s) = &scheduled_str {
            if !confirm(&format!(
                "Are you sure you want to schedule switchover of cluster {cluster_name} at {s}{demote}?"
            ))? {
                return Err(failed(format!("Aborting scheduled {action}")));
            }
        } else if !confirm(&format!("Are you sure you want to {action} cluster {cluster_name}{demote}?"))? {
            return Err(failed(format!("Aborting {action}")));
        }
    }
    let target = match cluster.leader_member() {
        Some(m) => Some(m.clone()),
        None => candidate.as_deref().and_then(|c| cluster.member(c)).cloned(),
    };
    let attempt = async {
        let member = target.as_ref().ok_or_else(|| "no member to send the request to".to_string())?;
        let mut r = rest.request(member, Method::POST, Some(action), Some(&body)).await?;
        if r.status == 501
            && action == "switchover"
            && r.body.contains("Server does not support this operation")
        {
            r = rest.request(member, Method::POST, Some("failover"), Some(&body)).await?;
        }
        Ok::<Reply, String>(r)
    };
    let mut cluster = cluster;
    match attempt.await {
        Ok(r) if r.status == 200 || r.status == 202 => {
            cluster = super::load(dcs, cluster_name).await?;
            echo(&format!("{} {}", timestamp(6), r.body))?;
        }
        Ok(r) => {
            let mut title = action.to_string();
            title[..1].make_ascii_uppercase();
            echo(&format!("{title} failed, details: {}, {}", r.status, r.body))?;
            return Err(failed(format!("{action} failed")));
        }
        Err(e) => {
            tracing::warn!("{e}");
            tracing::warn!("Failing over to DCS");
            echo(&format!("{} Could not {action} using Patroni api, falling back to DCS", timestamp(6)))?;
            let mut v = Map::new();
            if let Some(l) = switchover_leader.as_ref().filter(|l| !l.is_empty()) {
                v.insert("leader".into(), json!(l));
            }
            if let Some(c) = &candidate {
                v.insert("member".into(), json!(c));
            }
            if let Some(s) = &scheduled_str {
                v.insert("scheduled_at".into(), json!(s));
            }
            let ok = dcs
                .set_failover_value(&Value::Object(v).to_string(), None)
                .await
                .map_err(|e| failed(format!("cannot write the failover key: {e}")))?;
            if !ok {
                return Err(failed("cannot write the failover key"));
            }
        }
    }
    print_members(&cluster, cluster_name)
}

/// Options of `restart`.
#[derive(Clone, Debug, Default)]
pub struct RestartOptions {
    /// `--role` (`any` when not given).
    pub role: Option<CtlRole>,
    /// `--any`: one random member.
    pub any: bool,
    /// `--scheduled`.
    pub scheduled: Option<String>,
    /// `--pg-version`.
    pub pg_version: Option<String>,
    /// `--pending`.
    pub pending: bool,
    /// `--timeout`.
    pub timeout: Option<String>,
    /// `--force`.
    pub force: bool,
}

/// `postgres_version_to_int`: `X.Y[.Z]` with X.Y ≥ 10 as two parts or older three parts.
pub fn check_pg_version(v: &str) -> Result<(), CtlError> {
    let parts: Vec<&str> = v.split('.').collect();
    let ok =
        (2..=3).contains(&parts.len()) && parts.iter().all(|p| !p.is_empty() && p.parse::<u32>().is_ok());
    if ok { Ok(()) } else { Err(failed(format!("{v} is not a valid PostgreSQL version string"))) }
}

/// `restart`.
pub async fn restart(
    cluster_name: &str,
    member_names: &[String],
    dcs: &Arc<dyn Dcs>,
    rest: &RestClient,
    o: RestartOptions,
) -> Result<(), CtlError> {
    let cluster = super::load(dcs, cluster_name).await?;
    let role = o.role.unwrap_or(CtlRole::Any);
    let mut members =
        get_members(&cluster, cluster_name, member_names, role, o.force, "restart", false, o.role.is_some())?;
    let mut scheduled = o.scheduled.clone();
    if scheduled.is_none() && !o.force {
        scheduled = Some(prompt(
            &format!("When should the restart take place (e.g. {}) ", next_hour()),
            Some("now"),
        )?);
    }
    let scheduled_at = parse_scheduled(scheduled.as_deref())?;
    let mut content = Map::new();
    if o.pending {
        content.insert("restart_pending".into(), json!(true));
        if scheduled_at.is_none() {
            members.retain(|m| m.data.pending_restart.unwrap_or(false));
        }
    }
    if o.any {
        let pick = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as usize)
            % members.len().max(1);
        members = members.into_iter().skip(pick).take(1).collect();
    }
    let sched_str = scheduled_at.as_ref().map(isoformat);
    confirm_members_action(&members, o.force, "restart", sched_str.as_deref(), o.pending)?;
    let mut version = o.pg_version.clone();
    if version.is_none() && !o.force {
        version =
            Some(prompt("Restart if the PostgreSQL version is less than provided (e.g. 9.5.2) ", Some(""))?);
    }
    if let Some(v) = version.filter(|v| !v.is_empty()) {
        check_pg_version(&v)?;
        content.insert("postgres_version".into(), json!(v));
    }
    if let Some(s) = &sched_str {
        if cluster.is_paused() {
            return Err(failed("Can't schedule restart in the paused state"));
        }
        content.insert("schedule".into(), json!(s));
    }
    if let Some(t) = &o.timeout {
        content.insert("timeout".into(), json!(t));
    }
    let body = Value::Object(content);
    let mut all_ok = true;
    for m in &members {
        if body.get("schedule").is_some() && o.force && m.data.scheduled_restart.is_some() {
            let r = call(rest, m, Method::DELETE, "restart", None).await?;
            check_response(&r, &m.name, "flush scheduled restart", true)?;
        }
        let r = call(rest, m, Method::POST, "restart", Some(&body)).await?;
        all_ok &= report(
            &r,
            &m.name,
            "restart",
            &[
                (200, true, format!("Success: restart on member {}", m.name)),
                (202, true, format!("Success: restart scheduled on member {}", m.name)),
                (409, false, format!("Failed: another restart is already scheduled on member {}", m.name)),
            ],
        )?;
    }
    if all_ok { Ok(()) } else { Err(failed("restart failed")) }
}

/// `reload`.
pub async fn reload(
    cluster_name: &str,
    member_names: &[String],
    role: Option<CtlRole>,
    force: bool,
    dcs: &Arc<dyn Dcs>,
    rest: &RestClient,
) -> Result<(), CtlError> {
    let cluster = super::load(dcs, cluster_name).await?;
    let members = get_members(
        &cluster,
        cluster_name,
        member_names,
        role.unwrap_or(CtlRole::Any),
        force,
        "reload",
        true,
        role.is_some(),
    )?;
    let mut all_ok = true;
    for m in &members {
        let r = call(rest, m, Method::POST, "reload", None).await?;
        let received = format!(
            "Reload request received for member {} and will be processed within {} seconds",
            m.name,
            loop_wait(&cluster)
        );
        all_ok &= report(
            &r,
            &m.name,
            "reload",
            &[(200, true, format!("No changes to apply on member {}", m.name)), (202, true, received)],
        )?;
    }
    if all_ok { Ok(()) } else { Err(failed("reload failed")) }
}

/// `reinit`.
pub async fn reinit(
    cluster_name: &str,
    member_names: &[String],
    force: bool,
    from_leader: bool,
    wait: bool,
    dcs: &Arc<dyn Dcs>,
    rest: &RestClient,
) -> Result<(), CtlError> {
    let cluster = super::load(dcs, cluster_name).await?;
    let members = get_members(
        &cluster,
        cluster_name,
        member_names,
        CtlRole::Replica,
        force,
        "reinitialize",
        true,
        false,
    )?;
    let mut waiting: Vec<Member> = Vec::new();
    let mut all_ok = true;
    for m in &members {
        let mut body = json!({"force": force, "from_leader": from_leader});
        let started = loop {
            let r = call(rest, m, Method::POST, "reinitialize", Some(&body)).await?;
            let started = check_response(&r, &m.name, "reinitialize", false)?;
            if !started
                && r.body.ends_with(" already in progress")
                && !force
                && confirm("Do you want to cancel it and reinitialize anyway?")?
            {
                body["force"] = json!(true);
                continue;
            }
            break started;
        };
        all_ok &= started;
        if started && wait {
            waiting.push(m.clone());
        }
    }
    let mut shown: Vec<String> = Vec::new();
    while !waiting.is_empty() {
        let names: Vec<String> = waiting.iter().map(|m| m.name.clone()).collect();
        if names != shown {
            echo(&format!("Waiting for reinitialize to complete on: {}", names.join(", ")))?;
            shown = names;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut still = Vec::new();
        for m in waiting {
            let state = match rest.request(&m, Method::GET, Some("patroni"), None).await {
                Ok(r) => serde_json::from_str::<Value>(&r.body)
                    .ok()
                    .and_then(|v| v.get("state").and_then(Value::as_str).map(str::to_string)),
                Err(e) => {
                    tracing::warn!("{}: {e}", m.name);
                    Some("creating replica".into())
                }
            };
            if state.as_deref() != Some("creating replica") {
                echo(&format!("Reinitialize is completed on: {}", m.name))?;
            } else {
                still.push(m);
            }
        }
        waiting = still;
    }
    if all_ok { Ok(()) } else { Err(failed("reinitialize failed")) }
}

/// `get_all_members_leader_first`: members with an `api_url`, the leader first.
fn members_leader_first(cluster: &Cluster) -> Vec<&Member> {
    let leader = cluster.leader_member().filter(|m| !m.data.api_url.is_empty());
    let mut v: Vec<&Member> = leader.into_iter().collect();
    v.extend(
        cluster
            .members
            .iter()
            .filter(|m| !m.data.api_url.is_empty() && Some(&m.name) != leader.map(|l| &l.name)),
    );
    v
}

/// `flush CLUSTER [MEMBER…] restart|switchover`.
pub async fn flush(
    cluster_name: &str,
    member_names: &[String],
    target: &str,
    role: Option<CtlRole>,
    force: bool,
    dcs: &Arc<dyn Dcs>,
    rest: &RestClient,
) -> Result<(), CtlError> {
    let cluster = super::load(dcs, cluster_name).await?;
    if target == "restart" {
        let members = get_members(
            &cluster,
            cluster_name,
            member_names,
            role.unwrap_or(CtlRole::Any),
            force,
            "flush",
            true,
            role.is_some(),
        )?;
        for m in &members {
            if m.data.scheduled_restart.as_ref().is_some_and(|v| !v.is_null()) {
                let r = rest
                    .request(m, Method::DELETE, Some("restart"), None)
                    .await
                    .map_err(|e| unreachable(&m.name, &e))?;
                check_response(&r, &m.name, "flush scheduled restart", false)?;
            } else {
                echo(&format!("No scheduled restart for member {}", m.name))?;
            }
        }
        return Ok(());
    }
    let Some(f) = cluster.failover.as_ref().filter(|f| f.scheduled_at.is_some()) else {
        return echo("No pending scheduled switchover");
    };
    for m in members_leader_first(&cluster) {
        match rest.request(m, Method::DELETE, Some("switchover"), None).await {
            Ok(r) if r.status == 200 || r.status == 404 => {
                let prefix = if r.status == 200 { "Success" } else { "Failed" };
                return echo(&format!("{prefix}: {}", r.body));
            }
            Ok(r) => echo(&format!("Failed: member={}, status_code={}, ({})", m.name, r.status, r.body))?,
            Err(e) => {
                tracing::warn!("{e}");
                tracing::warn!("Member {} is not accessible", m.name);
            }
        }
    }
    tracing::warn!("Failing over to DCS");
    echo(&format!("{} Could not find any accessible member of cluster {cluster_name}", timestamp(6)))?;
    dcs.set_failover_value("{}", f.version)
        .await
        .map_err(|e| failed(format!("cannot write the failover key: {e}")))?;
    Ok(())
}

/// `pause`/`resume`: `PATCH /config {"pause": true|null}` to the first reachable member.
pub async fn toggle_pause(
    cluster_name: &str,
    paused: bool,
    wait: bool,
    dcs: &Arc<dyn Dcs>,
    rest: &RestClient,
) -> Result<(), CtlError> {
    let cluster = super::load(dcs, cluster_name).await?;
    if cluster.is_paused() == paused {
        return Err(failed(format!("Cluster is {} paused", if paused { "already" } else { "not" })));
    }
    let word = if paused { "pause" } else { "resume" };
    let body = json!({"pause": if paused { json!(true) } else { Value::Null }});
    for m in members_leader_first(&cluster) {
        let r = match rest.request(m, Method::PATCH, Some("config"), Some(&body)).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("{e}");
                tracing::warn!("Member {} is not accessible", m.name);
                continue;
            }
        };
        if r.status == 200 {
            if wait {
                return wait_until_pause_is_applied(dcs, cluster_name, paused, &cluster).await;
            }
            return echo(&format!("Success: cluster management is {word}d"));
        }
        echo(&format!("Failed: {word} cluster management status code={}, ({})", r.status, r.body))?;
        return Err(failed(format!("{word} failed")));
    }
    Err(failed("Can not find accessible cluster member"))
}

async fn wait_until_pause_is_applied(
    dcs: &Arc<dyn Dcs>,
    cluster_name: &str,
    paused: bool,
    old: &Cluster,
) -> Result<(), CtlError> {
    let word = if paused { "pause" } else { "resume" };
    echo(&format!("'{word}' request sent, waiting until it is recognized by all nodes"))?;
    let watched: Vec<(String, crate::dcs::model::Version)> = old
        .members
        .iter()
        .filter(|m| !m.data.api_url.is_empty())
        .map(|m| (m.name.clone(), m.version))
        .collect();
    let lw = loop_wait(old);
    let deadline = Instant::now() + Duration::from_secs(lw + 1);
    let mut cluster;
    loop {
        cluster = super::load(dcs, cluster_name).await?;
        let applied = cluster
            .members
            .iter()
            .filter(|m| watched.iter().any(|(n, _)| *n == m.name))
            .all(|m| m.data.pause.unwrap_or(false) == paused);
        if applied {
            break;
        }
        if Instant::now() >= deadline {
            let remaining: Vec<&str> = cluster
                .members
                .iter()
                .filter(|m| {
                    m.data.pause.unwrap_or(false) != paused
                        && watched.iter().any(|(n, v)| *n == m.name && *v != m.version)
                })
                .map(|m| m.name.as_str())
                .collect();
            if !remaining.is_empty() {
                echo(&format!(
                    "{} members didn't recognized pause state after {lw} seconds",
                    remaining.join(", ")
                ))?;
                return Err(failed(format!("{word} not recognized by all members")));
            }
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    echo(&format!("Success: cluster management is {word}d"))
}

/// `format_pg_version`: 150004 → `15.4`, 90624 → `9.6.24`.
pub fn format_pg_version(v: u64) -> String {
    if v < 100_000 {
        format!("{}.{}.{}", v / 10000, v / 100 % 100, v % 100)
    } else {
        format!("{}.{}", v / 10000, v % 100)
    }
}

/// `version [CLUSTER [MEMBER…]]`.
pub async fn version(
    cluster_name: Option<&str>,
    member_names: &[String],
    dcs: Option<&Arc<dyn Dcs>>,
    rest: Option<&RestClient>,
) -> Result<(), CtlError> {
    echo(&format!(
        "praetorctl version {} (patronictl {} compatible)",
        crate::types::PRAETOR_VERSION,
        crate::types::PATRONI_COMPAT_VERSION
    ))?;
    let (Some(name), Some(dcs), Some(rest)) = (cluster_name, dcs, rest) else { return Ok(()) };
    echo("")?;
    let cluster = super::load(dcs, name).await?;
    for m in &cluster.members {
        if m.data.api_url.is_empty() || !(member_names.is_empty() || member_names.contains(&m.name)) {
            continue;
        }
        match rest.request(m, Method::GET, None, None).await.and_then(|r| {
            serde_json::from_str::<Value>(&r.body).map_err(|e| format!("invalid status JSON: {e}"))
        }) {
            Ok(v) => {
                let ver = v.pointer("/patroni/version").and_then(Value::as_str).unwrap_or("None");
                let pg = v
                    .get("server_version")
                    .and_then(Value::as_u64)
                    .filter(|v| *v > 0)
                    .map(|v| format!(" PostgreSQL {}", format_pg_version(v)))
                    .unwrap_or_default();
                echo(&format!("{}: Patroni {ver}{pg}", m.name))?;
            }
            Err(e) => echo(&format!("{}: failed to get version: {e}", m.name))?,
        }
    }
    Ok(())
}

/// `remove CLUSTER`: three confirmations, then delete every key of the cluster.
pub async fn remove(cluster_name: &str, fmt: Format, dcs: &Arc<dyn Dcs>) -> Result<(), CtlError> {
    let cluster = super::load(dcs, cluster_name).await?;
    super::write_out(&output_members(&cluster, cluster_name, ListOptions { extended: false, format: fmt }))?;
    if prompt("Please confirm the cluster name to remove", None)? != cluster_name {
        return Err(failed("Cluster names specified do not match"));
    }
    let message = "Yes I am aware";
    let answer = prompt(
        &format!(
            "You are about to remove all information in DCS for {cluster_name}, please type: \"{message}\""
        ),
        None,
    )?;
    if answer != message {
        return Err(failed(format!("You did not exactly type \"{message}\"")));
    }
    if let Some(l) = cluster.leader.as_ref().filter(|l| !l.name.is_empty())
        && prompt("This cluster currently is healthy. Please specify the leader name to continue", None)?
            != l.name
    {
        return Err(failed("You did not specify the current leader of the cluster"));
    }
    dcs.delete_cluster().await.map_err(|e| failed(format!("cannot remove the cluster from the DCS: {e}")))?;
    Ok(())
}

/// `demote-cluster` (`standby_config` set) / `promote-cluster` (`None`).
pub async fn change_cluster_role(
    cluster_name: &str,
    force: bool,
    standby_config: Option<Value>,
    dcs: &Arc<dyn Dcs>,
    rest: &RestClient,
) -> Result<(), CtlError> {
    let demote = standby_config.is_some();
    let action = if demote { "demot" } else { "promot" };
    let target = if demote { Role::StandbyLeader } else { Role::Primary };
    let cluster = super::load(dcs, cluster_name).await?;
    let Some(leader) = cluster.leader_member().cloned() else {
        return Err(failed(format!("Cluster has no leader, {action}ion is not possible")));
    };
    if leader.data.role == target {
        return Err(failed("Cluster is already in the required state"));
    }
    echo("Current cluster topology")?;
    print_members(&cluster, cluster_name)?;
    if !force && !confirm(&format!("Are you sure you want to {action}e {cluster_name} cluster?"))? {
        return Err(failed(format!("Aborted cluster {action}ion")));
    }
    let body = json!({"standby_cluster": standby_config});
    let r = rest
        .request(&leader, Method::PATCH, Some("config"), Some(&body))
        .await
        .map_err(|e| failed(format!("Failed to {action}e {cluster_name} cluster: {e}")))?;
    if r.status != 200 {
        return Err(failed(format!(
            "Failed to {action}e {cluster_name} cluster: /config PATCH status code={}, ({})",
            r.status, r.body
        )));
    }
    let mut cluster;
    loop {
        cluster = super::load(dcs, cluster_name).await?;
        let now = Local::now().format("%Y-%m-%d %H:%M:%S");
        let lm = cluster.leader_member();
        let leader_role = lm.map(|m| m.data.role.as_str().to_string());
        let leader_state = lm.map(|m| m.data.state.clone());
        let old_state = cluster.member(&leader.name).map(|m| m.data.state.clone());
        if !cluster.is_unlocked()
            && lm.is_some_and(|m| m.data.role == target)
            && leader_state.as_deref() == Some("running")
            && (!demote || old_state.as_deref() == Some("running"))
        {
            echo(&format!("{now} cluster is successfully {action}ed"))?;
            break;
        }
        let show = |o: &Option<String>| o.clone().unwrap_or_else(|| "None".into());
        let mut parts = vec![
            format!("{now} cluster is unlocked: {}", if cluster.is_unlocked() { "True" } else { "False" }),
            format!("leader role: {}", show(&leader_role)),
            format!("leader state: {}", show(&leader_state)),
        ];
        if demote
            && cluster.leader.as_ref().is_some_and(|l| l.name != leader.name)
            && let Some(s) = &old_state
        {
            parts.push(format!("previous leader state: '{s}'"));
        }
        echo(&parts.join(", "))?;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    print_members(&cluster, cluster_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduled_timestamps_parse_like_dateutil_for_iso_forms() {
        assert_eq!(parse_scheduled(None).unwrap(), None);
        assert_eq!(parse_scheduled(Some("now")).unwrap(), None);
        let t = parse_scheduled(Some("2030-01-02T03:04:05+01:00")).unwrap().unwrap();
        assert_eq!(isoformat(&t), "2030-01-02T03:04:05+01:00");
        let t = parse_scheduled(Some("2030-01-02T03:04Z")).unwrap();
        assert!(t.is_some());
        let t = parse_scheduled(Some("2030-01-02 03:04")).unwrap().unwrap();
        assert!(isoformat(&t).starts_with("2030-01-02T03:04:00"));
        let e = parse_scheduled(Some("tomorrow-ish")).unwrap_err();
        assert!(e.to_string().starts_with("Unable to parse scheduled timestamp (tomorrow-ish)"), "{e}");
    }

    #[test]
    fn pg_versions_print_and_validate_like_patroni() {
        assert_eq!(format_pg_version(150004), "15.4");
        assert_eq!(format_pg_version(90624), "9.6.24");
        assert!(check_pg_version("15.4").is_ok());
        assert!(check_pg_version("9.5.2").is_ok());
        assert!(check_pg_version("15").is_err());
        assert!(check_pg_version("x.1").is_err());
    }

    #[test]
    fn timestamps_have_patronictl_precision() {
        assert_eq!(timestamp(0).len(), "2026-01-01 00:00:00".len());
        assert_eq!(timestamp(6).len(), "2026-01-01 00:00:00.000000".len());
    }

    /// A leader whose REST API answers POST /switchover with `status` and `body`; POST /failover
    /// answers 200. Returns the DCS client and its store.
    async fn leader_answering(
        status: u16,
        body: &'static str,
    ) -> (Arc<dyn Dcs>, crate::dcs::memory::MemoryStore) {
        use axum::{Router, http::StatusCode, routing::post};
        let code = StatusCode::from_u16(status).expect("status");
        let app = Router::new()
            .route("/switchover", post(move || async move { (code, body) }))
            .route("/failover", post(|| async { (StatusCode::OK, "Successfully switched over to \"pg1\"") }));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(l, app).await });
        let store = crate::dcs::memory::MemoryStore::new();
        for (name, role) in [("pg0", "primary"), ("pg1", "replica")] {
            let v = json!({"conn_url": "postgres://127.0.0.1:5432/postgres",
                "api_url": format!("http://{addr}/patroni"), "state": "running", "role": role});
            store.raw_put(&format!("/service/c/members/{name}"), &v.to_string());
        }
        store.raw_put("/service/c/leader", "pg0");
        let params = crate::dcs::DcsParams {
            namespace: "/service".into(),
            scope: "c".into(),
            name: "ctl".into(),
            ttl: Duration::from_secs(30),
            loop_wait: Duration::from_secs(10),
            retry_timeout: Duration::from_secs(10),
        };
        (Arc::new(store.client(params)), store)
    }

    fn forced_switchover() -> SwitchoverOptions {
        SwitchoverOptions {
            leader: Some("pg0".into()),
            candidate: Some("pg1".into()),
            scheduled: Some("now".into()),
            force: true,
        }
    }

    /// patronictl 4.1.5 `_do_failover_or_switchover`: only a REST call that fails falls back to
    /// writing /failover; a 501 is an answer, reported as "Switchover failed, details: 501, …"
    /// (unless its body says the server does not support switchover: then POST /failover).
    #[tokio::test]
    async fn a_501_answer_is_reported_not_a_dcs_fallback() {
        let rest = RestClient::new(&crate::ctl::config::CtlConfig::default()).expect("rest client");
        let (dcs, store) = leader_answering(501, "Not Implemented").await;
        let r = failover_or_switchover("switchover", "c", &dcs, &rest, forced_switchover()).await;
        assert!(r.is_err(), "a 501 answer must fail the switchover: {r:?}");
        assert_eq!(store.raw_get("/service/c/failover"), None, "no DCS fallback on a 501 answer");

        let (dcs, store) = leader_answering(501, "Server does not support this operation").await;
        let r = failover_or_switchover("switchover", "c", &dcs, &rest, forced_switchover()).await;
        assert!(r.is_ok(), "an old server's 501 is retried as POST /failover: {r:?}");
        assert_eq!(store.raw_get("/service/c/failover"), None);
    }
}
